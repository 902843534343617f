/**
 * @module test/helpers/thrown
 * The RegistryError a call throws (or a promise rejects with), for asserting its code, status and message.
 */
import { expect } from 'vitest';
import { RegistryError } from '../../src/registry/errors.ts';

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
