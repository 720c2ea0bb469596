/**
 * Assertions for failing kernel operations: the right `KernelError` (code and errno), and the host exactly as
 * before (docs/spec.md §4 invariant 7).
 *
 * @module
 */
import { expect } from 'vitest';
import { KernelError, UsageError, errnoOf } from '../../src/index.js';
import type { ErrnoCode, Host, UsageCode } from '../../src/index.js';

/** What `fn` threw, or `undefined`. */
export function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return e;
  }
  return undefined;
}

/**
 * Run `fn` on `host`, expect it to throw a {@link KernelError} with `code` (and the matching errno, or
 * `errno` when given), and expect `host.snapshot()` to be deep-equal to the snapshot before the call.
 * @returns the error, for further checks on its message or op
 */
export function expectKernelError(host: Host, fn: () => unknown, code: ErrnoCode, errno?: number): KernelError {
  const before = host.snapshot();
  const e = thrown(fn);
  expect(e, `expected KernelError ${code}`).toBeInstanceOf(KernelError);
  const ke = e as KernelError;
  expect(ke.code).toBe(code);
  expect(ke.errno).toBe(errno ?? errnoOf(code));
  expect(host.snapshot()).toEqual(before);
  return ke;
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
  expect(host.snapshot()).toEqual(before);
  return e as UsageError;
}

/** Collect the events named `names` from `host` into one ordered list of `[name, payload]`. */
export function record(host: Host, ...names: string[]): Array<[string, Record<string, unknown>]> {
  const out: Array<[string, Record<string, unknown>]> = [];
  host.events.onAny((name, payload) => {
    if (names.length === 0 || names.includes(name)) out.push([name, payload as unknown as Record<string, unknown>]);
  });
  return out;
}
