/**
 * @module test/helpers/thrown
 * The RegistryError a call throws, for asserting its code, status and message.
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
