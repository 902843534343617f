/**
 * @module config/config-error
 * A bad config stops start-up; the message names the key path and what is wrong.
 */
export class ConfigError extends Error {
  readonly issues: readonly string[];

  constructor(issues: readonly string[], options?: { cause?: unknown }) {
    super(`invalid configuration:\n  - ${issues.join('\n  - ')}`, options);
    this.name = 'ConfigError';
    this.issues = issues;
  }
}
