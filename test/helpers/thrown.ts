/**
 * @module test/helpers/thrown
 * The RegistryError a call throws (or a promise rejects with), for asserting its code, status and message,
 * and the issues of a ConfigError.
 */
import { expect } from 'vitest';
import { RegistryError } from '../../src/registry/errors.ts';
import { ConfigError } from '../../src/config/config-error.ts';

export function thrown(fn: () => unknown): RegistryError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(RegistryError);
    return err as RegistryError;
  }
  throw new Error('expected a RegistryError, nothing was thrown');
}

export async function rejection(promise: Promise<unknown>): Promise<RegistryError> {
  const err = await promise.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(RegistryError);
  return err as RegistryError;
}

/** The issues of the ConfigError `fn` throws (each names its key path). */
export function configIssues(fn: () => unknown): readonly string[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).issues;
  }
  throw new Error('expected a ConfigError, nothing was thrown');
}
