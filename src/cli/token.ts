/**
 * @module cli/token
 * `ocimirror token create|list|revoke`: robot tokens for clients, through a running mirror's
 * admin API. `create` prints the secret once on stdout (alone, so scripts can capture it) and
 * what it is on stderr; the mirror keeps only its hash.
 */
import type { Command } from 'commander';
import { AdminClient, mirrorUrl } from './admin-client.ts';
import { CliError, EXIT, handled } from './cli-error.ts';

interface TokenView {
  id: string;
  role: string;
  description: string;
  createdAt: string;
  expiresAt: string | null;
  expired: boolean;
}

type Conn = { url?: string; token?: string };

function client(opts: Conn): AdminClient {
  return new AdminClient({ url: mirrorUrl(opts.url), token: opts.token ?? process.env.OCIMIRROR_ADMIN_TOKEN });
}

export function registerToken(program: Command): void {
  const token = program.command('token').description('robot tokens for clients (admin API of a running mirror)');
  const connection = (cmd: Command) =>
    cmd.option('--url <url>', 'the mirror (default: $OCIMIRROR_URL or http://127.0.0.1:5000)').option('--token <token>', 'admin token (default: $OCIMIRROR_ADMIN_TOKEN)');

  connection(token.command('create').description('create a robot token; prints its secret once'))
    .requiredOption('--description <text>', 'what the token is for (shown by list)')
    .option('--role <role>', 'pull, push or admin', 'pull')
    .option('--expires <duration>', "lifetime such as '30d' or '12h' (default: never)")
    .action(handled(async (opts: Conn & { description: string; role: string; expires?: string }) => {
      if (!['pull', 'push', 'admin'].includes(opts.role)) throw new CliError(`--role must be pull, push or admin, not '${opts.role}'`, EXIT.usage);
      const made = await client(opts).call<TokenView & { token: string }>('POST', '/tokens', { description: opts.description, role: opts.role, expires: opts.expires });
      process.stderr.write(`robot token ${made.id} (${made.role}, expires ${made.expiresAt ?? 'never'}): shown once, store it now\n`);
      process.stdout.write(`${made.token}\n`);
    }));

  connection(token.command('list').description('list robot tokens (never their secrets)'))
    .option('--json', 'print JSON')
    .action(handled(async (opts: Conn & { json?: boolean }) => {
      const { tokens } = await client(opts).call<{ tokens: TokenView[] }>('GET', '/tokens');
      if (opts.json) {
        process.stdout.write(`${JSON.stringify(tokens, null, 2)}\n`);
        return;
      }
      process.stdout.write(`${['ID', 'ROLE', 'CREATED', 'EXPIRES', 'DESCRIPTION'].join('\t')}\n`);
      for (const t of tokens) {
        const expires = t.expiresAt === null ? 'never' : `${t.expiresAt}${t.expired ? ' (expired)' : ''}`;
        process.stdout.write(`${[t.id, t.role, t.createdAt, expires, t.description].join('\t')}\n`);
      }
    }));

  connection(token.command('revoke').description('revoke a robot token: it is refused from now on'))
    .argument('<id>', 'the token id (from list)')
    .action(handled(async (id: string, opts: Conn) => {
      await client(opts).call('DELETE', `/tokens/${encodeURIComponent(id)}`);
      process.stdout.write(`revoked ${id}\n`);
    }));
}
