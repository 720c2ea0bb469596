/**
 * Misuse of the irqchip models is a `UsageError` with a stable code (kernel answers are `KernelError`s, thrown
 * where Linux returns them). `checkUint` is the one range check every entry point uses.
 *
 * @module
 */

import { UsageError } from '@vac/core';

/** Throws `ERR_INVALID_ARG` unless `v` is a number, `ERR_OUT_OF_RANGE` unless it is an integer in `0 .. max`. */
export function checkUint(v: unknown, max: number, what: string): asserts v is number {
  if (typeof v !== 'number') throw new UsageError('ERR_INVALID_ARG', `${what} must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < 0 || v > max) {
    throw new UsageError('ERR_OUT_OF_RANGE', `${what} must be an integer in 0..${String(max)}, got ${String(v)}`);
  }
}
