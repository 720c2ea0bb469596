/**
 * Failure assertions: the right error, and the host exactly as it was before (docs/spec.md §4, invariant 7).
 *
 * @module
 */
import { KernelError, UsageError, checkInvariants, errnoOf, type ErrnoCode, type Host, type UsageCode } from '@vac/core';
import { expect } from 'vitest';
import { firstDifference, withoutCounters } from './snapshot.js';

/** What `fn` threw, or `undefined`. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/** Options of {@link expectKernelError}. */
export interface KernelErrorExpectation {
  /** The errno number, when it is not the code's own (default `errnoOf(code)`). */
  readonly errno?: number;
  /**
   * The operation executed (and undid) virtualization instructions, so the hardware's counters may have moved;
   * everything else must be exactly as before.
   */
  readonly countersMayMove?: boolean;
  /** Also expect `checkInvariants(host)` to be empty afterwards. */
  readonly invariants?: boolean;
  /** What was attempted, for the failure messages. */
  readonly what?: string;
}

/**
 * Run `fn` on `host`, expect it to throw a {@link KernelError} with `code` (and the matching errno), and expect
 * `host.snapshot()` to be what it was before the call (the first difference is named by its path).
 * @returns the error, for further checks on its message or op
 */
export function expectKernelError(host: Host, fn: () => unknown, code: ErrnoCode, opts: KernelErrorExpectation = {}): KernelError {
  const what = opts.what === undefined ? '' : `${opts.what}: `;
  const view = opts.countersMayMove === true ? withoutCounters : (s: unknown): unknown => s;
  const before = view(host.snapshot());
  const e = thrown(fn);
  if (!(e instanceof KernelError)) {
    throw new Error(`${what}expected KernelError ${code}, got ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
  }
  expect(e.code, `${what}${e.message}`).toBe(code);
  expect(e.errno).toBe(opts.errno ?? errnoOf(code));
  expect(firstDifference(before, view(host.snapshot())), `${what}the failed operation changed the host`).toBeUndefined();
  if (opts.invariants === true) expect(checkInvariants(host), what).toEqual([]);
  return e;
}

/**
 * Like {@link expectKernelError} for a {@link UsageError} (library misuse) with `code`: the host is unchanged too.
 * @returns the error, for further checks (its message names the bad argument)
 */
export function expectUsageError(host: Host, fn: () => unknown, code: UsageCode): UsageError {
  const before = host.snapshot();
  const e = thrown(fn);
  expect(e, `expected UsageError ${code}`).toBeInstanceOf(UsageError);
  expect((e as UsageError).code).toBe(code);
  expect(firstDifference(before, host.snapshot()), 'the failed call changed the host').toBeUndefined();
  return e as UsageError;
}
