/**
 * @module auth/rules
 * Who may do what where: roles (pull ⊂ push ⊂ admin), the registry actions each allows, and the
 * configured access rules, matched first-to-last by account or group and by repository pattern
 * (`*` one path component, `**` any number). Repositories are named as clients see them through
 * the mirror, registry first: `docker.io/library/alpine`.
 */

export type Role = 'pull' | 'push' | 'admin';
/** Registry token actions (distribution's token scopes). */
export type Action = 'pull' | 'push' | 'delete' | '*';

const RANK: Record<Role, number> = { pull: 1, push: 2, admin: 3 };
const ACTIONS: Record<Role, readonly Action[]> = {
  pull: ['pull'],
  push: ['pull', 'push'],
  admin: ['pull', 'push', 'delete', '*'],
};

export function isRole(value: unknown): value is Role {
  return value === 'pull' || value === 'push' || value === 'admin';
}

/** The actions a role allows; none for no role. */
export function actionsOf(role: Role | undefined): readonly Action[] {
  return role === undefined ? [] : ACTIONS[role];
}

/** The stronger of two roles. */
export function maxRole(a: Role | undefined, b: Role | undefined): Role | undefined {
  if (a === undefined) return b;
  if (b === undefined) return a;
  return RANK[a] >= RANK[b] ? a : b;
}

export interface RuleConfig {
  readonly accounts: readonly string[];
  readonly groups: readonly string[];
  readonly repositories: readonly string[];
  readonly roles: readonly Role[];
}

/** A repository pattern as a RegExp: `*` within one component, `**` across components. */
export function compilePattern(pattern: string): RegExp {
  let re = '';
  for (let i = 0; i < pattern.length; i++) {
    const ch = pattern[i] as string;
    if (ch === '*' && pattern[i + 1] === '*') {
      re += '.*';
      i++;
    } else if (ch === '*') re += '[^/]*';
    else re += ch.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

interface CompiledRule {
  accounts: Set<string>;
  groups: readonly string[];
  repositories: RegExp[];
  role: Role | undefined;
}

export class AccessRules {
  readonly #rules: CompiledRule[];
  readonly #groups: Map<string, Set<string>>;

  constructor(rules: readonly RuleConfig[], groups: Readonly<Record<string, readonly string[]>> = {}) {
    this.#groups = new Map(Object.entries(groups).map(([name, members]) => [name, new Set(members)]));
    this.#rules = rules.map((r) => ({
      accounts: new Set(r.accounts),
      groups: r.groups,
      repositories: r.repositories.map(compilePattern),
      role: r.roles.reduce<Role | undefined>((acc, role) => maxRole(acc, role), undefined),
    }));
  }

  /** The role of the first rule naming `account` (directly, by group or by `*`) whose pattern matches `repository`. */
  roleFor(account: string, repository: string): Role | undefined {
    for (const rule of this.#rules) {
      if (this.#names(rule, account) && rule.repositories.some((re) => re.test(repository))) return rule.role;
    }
    return undefined;
  }

  /** Whether any rule naming `account` grants admin (which also opens the admin API). */
  isAdmin(account: string): boolean {
    return this.#rules.some((rule) => rule.role === 'admin' && this.#names(rule, account));
  }

  #names(rule: CompiledRule, account: string): boolean {
    if (rule.accounts.has(account) || rule.accounts.has('*')) return true;
    return rule.groups.some((g) => this.#groups.get(g)?.has(account) === true);
  }
}
