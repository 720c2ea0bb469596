/**
 * DeviceClock (`time.ts`): every timed device checks the simulated time it is handed — a bigint of ns, never
 * negative, never before the last one it saw — and a bad time is a `UsageError` that leaves the last time as it was.
 */
import { describe, expect, test } from 'vitest';
import { UsageError } from '@vac/core';
import { DeviceClock } from '../../src/irqchip/index.js';

function usageError(fn: () => unknown): { code: string; message: string } {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(UsageError);
    return { code: (e as UsageError).code, message: (e as UsageError).message };
  }
  throw new Error('no UsageError');
}

describe('DeviceClock.see', () => {
  test('takes equal and later times and returns them; last is the latest', () => {
    const c = new DeviceClock();
    expect(c.last).toBe(0n);
    expect(c.see(0n)).toBe(0n);
    expect(c.see(5n)).toBe(5n);
    expect(c.see(5n)).toBe(5n);
    expect(c.see(2n ** 70n)).toBe(2n ** 70n);
    expect(c.last).toBe(2n ** 70n);
  });

  test('a time that is not a bigint, a negative one, one before the last: each its own error, last unchanged', () => {
    const c = new DeviceClock();
    c.see(100n);
    expect(usageError(() => c.see(100 as unknown as bigint))).toEqual({ code: 'ERR_INVALID_ARG', message: 'now must be a bigint of nanoseconds' });
    expect(usageError(() => c.see(-1n))).toEqual({ code: 'ERR_OUT_OF_RANGE', message: 'now must not be negative' });
    expect(usageError(() => c.see(99n))).toEqual({ code: 'ERR_OUT_OF_RANGE', message: 'simulated time went back: 99 ns after 100 ns' });
    expect(c.last).toBe(100n);
    // At the start (last 0), a negative time is still "negative", not "went back".
    expect(usageError(() => new DeviceClock().see(-5n))).toEqual({ code: 'ERR_OUT_OF_RANGE', message: 'now must not be negative' });
  });
});
