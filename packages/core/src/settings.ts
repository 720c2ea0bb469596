/**
 * Checks shared by the settings of the model that count something: each must be a positive safe integer, so that
 * the loops they bound end (a KVM_RUN slice, a direct KVM_RUN, a scheduler step).
 *
 * @module
 */
import { UsageError } from './errors.js';

/**
 * A setting that counts something that must happen at least once per step (guest instructions per slice, per
 * direct KVM_RUN): a positive safe integer. 0, NaN, negatives, fractions and infinities are refused, naming the
 * setting (with them a slice would never end, and a direct KVM_RUN would never return).
 * @param n - the value given
 * @param what - the setting's name, for the message (`scheduler.quantum`, `kvm({ syncRunLimit })`)
 * @returns `n`
 * @throws {@link UsageError} ERR_INVALID_ARG (not a number), ERR_OUT_OF_RANGE (not a positive safe integer)
 */
export function positiveCount(n: unknown, what: string): number {
  if (typeof n !== 'number') throw new UsageError('ERR_INVALID_ARG', `${what} must be a number, got ${typeof n}`);
  if (!Number.isSafeInteger(n) || n < 1) throw new UsageError('ERR_OUT_OF_RANGE', `${what} must be a positive integer, got ${String(n)}`);
  return n;
}
