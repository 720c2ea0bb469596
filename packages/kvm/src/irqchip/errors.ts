/**
 * The two kinds of failure of the irqchip models: a {@link KernelError} where Linux returns an errno, a
 * {@link UsageError} where the calling program broke the library's contract (a value outside its C type, time
 * running backwards). One place builds them, so their shape changes in one place.
 *
 * @module
 */

import { KernelError, UsageError, type ErrnoCode } from '@vac/core';

/** A `UsageError` for an argument outside its contract. */
export function badArgument(message: string): UsageError {
  return new UsageError(message);
}

/** A `KernelError` as the named Linux function returns it. */
export function kernelError(code: ErrnoCode, op: string, message: string): KernelError {
  return new KernelError(code, op, message);
}

/** Throws a `UsageError` unless `v` is an integer in `0 .. max`. */
export function checkUint(v: unknown, max: number, what: string): asserts v is number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) {
    throw badArgument(`${what} must be an integer in 0..${String(max)}, got ${String(v)}`);
  }
}
