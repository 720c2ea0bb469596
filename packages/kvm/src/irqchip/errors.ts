/**
 * Misuse of the irqchip models — a value outside its C type, time running backwards — is a `UsageError`, built
 * here so its shape changes in one place. (Kernel answers are `KernelError`s, thrown where Linux returns them.)
 *
 * @module
 */

import { UsageError } from '@vac/core';

/** A `UsageError` for an argument outside its contract. */
export function badArgument(message: string): UsageError {
  return new UsageError(message);
}


/** Throws a `UsageError` unless `v` is an integer in `0 .. max`. */
export function checkUint(v: unknown, max: number, what: string): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw badArgument(`${what} must be an integer in 0..${String(max)}, got ${String(v)}`);
  }
}
