/**
 * @module upstream/auth/www-authenticate
 * Parses `WWW-Authenticate` into challenges (RFC 9110 §11.6.1, grammar in §11.3 and §11.2):
 *
 *   WWW-Authenticate = #challenge
 *   challenge        = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param       = token BWS "=" BWS ( token / quoted-string )
 *
 * Both challenges and their parameters are comma-separated, so the list is read element by element:
 * `name=value` belongs to the challenge being built, anything else starts a new challenge
 * (the worked example in §11.6.1: `Basic realm="simple", Newauth realm="apps", type=1`).
 *
 * Real registries are not always strict, so the parser is lenient where that is safe: unquoted
 * values may hold `:` and `/` (`realm=https://auth.example/token`, which a strict token would cut
 * at the colon), an unterminated quoted string runs to the end, and a malformed element is skipped
 * up to the next comma instead of discarding the whole header.
 */

export interface AuthChallenge {
  /** The auth-scheme, lower-cased: schemes are case-insensitive (RFC 9110 §11.1). */
  scheme: 'bearer' | 'basic' | (string & {});
  /** Parameters by lower-cased name (§11.2: names match case-insensitively); the first of a repeated name wins. */
  params: Record<string, string>;
  /** The token68 form (`Negotiate abc==`), when the challenge has one instead of parameters. */
  token68?: string;
}

/** tchar (RFC 9110 §5.6.2). */
const TCHAR = /[!#$%&'*+\-.^_`|~0-9A-Za-z]/;
/** token68 characters before its trailing `=` padding (RFC 9110 §11.2). */
const TOKEN68_CHAR = /[A-Za-z0-9\-._~+/]/;

/**
 * Every challenge in the header, in order. Several header lines may be passed as an array: they
 * combine like one comma-joined line (RFC 9110 §5.3). Never throws; junk yields fewer challenges.
 */
export function parseWwwAuthenticate(header: string | readonly string[] | undefined | null): AuthChallenge[] {
  if (header === undefined || header === null) return [];
  const text = typeof header === 'string' ? header : header.join(', ');
  return new Parser(text).parse();
}

class Parser {
  readonly #s: string;
  #i = 0;

  constructor(text: string) {
    this.#s = text;
  }

  parse(): AuthChallenge[] {
    const out: AuthChallenge[] = [];
    let current: AuthChallenge | undefined;
    for (;;) {
      this.#skipListSeparators();
      if (this.#done()) return out;
      const start = this.#i;
      const name = this.#token();
      if (name === '') {
        this.#skipElement();
        continue;
      }
      // `name=value` continues the current challenge's parameter list.
      if (current && current.token68 === undefined && this.#tryParam(name, current)) continue;
      this.#i = start + name.length;
      current = { scheme: name.toLowerCase(), params: {} };
      out.push(current);
      this.#challengeArgument(current);
    }
  }

  /** After the scheme: nothing, one auth-param, or a token68, separated from it by 1*SP. */
  #challengeArgument(challenge: AuthChallenge): void {
    const afterScheme = this.#i;
    this.#skipWhitespace();
    if (this.#done() || this.#peek() === ',') return;
    if (this.#i === afterScheme) {
      // Something glued to the scheme (`Basic"x"`): not a challenge we can use.
      this.#skipElement();
      return;
    }
    const start = this.#i;
    const name = this.#token();
    if (name !== '' && this.#tryParam(name, challenge)) return;
    this.#i = start;
    const token68 = this.#token68();
    this.#skipWhitespace();
    if (token68 !== '' && (this.#done() || this.#peek() === ',')) {
      challenge.token68 = token68;
      return;
    }
    this.#skipElement();
  }

  /**
   * At the end of `name`: consumes `BWS "=" BWS value` and records it, or leaves the position
   * unchanged-enough for the caller to reset and returns false. `abc==` (token68 padding) and
   * `abc=` followed by a comma are not parameters.
   */
  #tryParam(name: string, challenge: AuthChallenge): boolean {
    const save = this.#i;
    this.#skipWhitespace();
    if (this.#peek() !== '=') {
      this.#i = save;
      return false;
    }
    this.#i++;
    this.#skipWhitespace();
    const c = this.#peek();
    if (c === undefined || c === ',' || c === '=') {
      this.#i = save;
      return false;
    }
    const value = c === '"' ? this.#quoted() : this.#bareValue();
    const key = name.toLowerCase();
    if (!(key in challenge.params)) challenge.params[key] = value;
    this.#skipWhitespace();
    if (!this.#done() && this.#peek() !== ',') this.#skipElement();
    return true;
  }

  /** quoted-string with quoted-pair escapes (RFC 9110 §5.6.4); the opening quote is at the cursor. */
  #quoted(): string {
    let value = '';
    this.#i++;
    while (!this.#done()) {
      const c = this.#s[this.#i++] as string;
      if (c === '"') return value;
      if (c === '\\' && !this.#done()) {
        value += this.#s[this.#i++];
        continue;
      }
      value += c;
    }
    return value;
  }

  /** An unquoted value: a token in the grammar, read up to whitespace or a comma to keep URLs whole. */
  #bareValue(): string {
    const start = this.#i;
    while (!this.#done() && !/[\s,"]/.test(this.#s[this.#i] as string)) this.#i++;
    return this.#s.slice(start, this.#i);
  }

  #token(): string {
    const start = this.#i;
    while (!this.#done() && TCHAR.test(this.#s[this.#i] as string)) this.#i++;
    return this.#s.slice(start, this.#i);
  }

  #token68(): string {
    const start = this.#i;
    while (!this.#done() && TOKEN68_CHAR.test(this.#s[this.#i] as string)) this.#i++;
    if (this.#i === start) return '';
    while (this.#peek() === '=') this.#i++;
    return this.#s.slice(start, this.#i);
  }

  /** Skips to the next comma outside a quoted string, so one bad element does not spoil the rest. */
  #skipElement(): void {
    while (!this.#done()) {
      const c = this.#peek();
      if (c === ',') return;
      if (c === '"') this.#quoted();
      else this.#i++;
    }
  }

  /** OWS and empty list elements (`#rule` allows `a, , b`, RFC 9110 §5.6.1). */
  #skipListSeparators(): void {
    while (!this.#done() && /[\s,]/.test(this.#s[this.#i] as string)) this.#i++;
  }

  #skipWhitespace(): void {
    while (!this.#done() && /[ \t\r\n]/.test(this.#s[this.#i] as string)) this.#i++;
  }

  #peek(): string | undefined {
    return this.#s[this.#i];
  }

  #done(): boolean {
    return this.#i >= this.#s.length;
  }
}
