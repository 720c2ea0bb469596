/**
 * When the bridge and the library may spin (`spare-cpu.ts`): only while the machine has a CPU to spare, as
 * /proc/loadavg tells it.
 */
import { describe, expect, test } from 'vitest';
import { SPIN_CREDIT, SPIN_PROBE_EVERY, SpareCpu, SpinCredit, spareCpuIn } from '../src/index.js';

describe('spare CPU', () => {
  test('no more runnable threads than CPUs (the reader included): spare, whatever the load averages (they lag)', () => {
    expect(spareCpuIn('0.52 0.58 0.59 2/389 12345\n', 2)).toBe(true);
    expect(spareCpuIn('0.52 0.58 0.59 1/389 12345\n', 1)).toBe(true);
    expect(spareCpuIn('2.50 1.58 0.59 2/389 12345\n', 2)).toBe(true);
  });
  test('more runnable threads than CPUs: none to spare', () => {
    expect(spareCpuIn('0.52 0.58 0.59 3/389 12345\n', 2)).toBe(false);
    expect(spareCpuIn('14.41 13.07 9.90 18/351 20719\n', 2)).toBe(false);
  });
  test('text that is not /proc/loadavg, or none: no spin', () => {
    expect(spareCpuIn('', 2)).toBe(false);
    expect(spareCpuIn('load: low', 2)).toBe(false);
    expect(new SpareCpu(() => '0.10 0.10 0.10 1/100 1\n', 2).now()).toBe(true);
    expect(
      new SpareCpu(() => {
        throw new Error('ENOENT');
      }, 2).now(),
    ).toBe(false);
  });
  test('spins that pay: with no credit one call in SPIN_PROBE_EVERY tries; a catch gives SPIN_CREDIT spins, each spin that runs out halves them', () => {
    expect(SPIN_CREDIT).toBe(8);
    expect(SPIN_PROBE_EVERY).toBe(16);
    const c = new SpinCredit();
    const tries = Array.from({ length: 32 }, () => c.mayTry());
    expect(tries.map((t, i) => (t ? i : -1)).filter((i) => i >= 0)).toEqual([15, 31]);
    c.record(true);
    expect(c.credit).toBe(8);
    expect(c.mayTry()).toBe(true);
    c.record(false);
    expect(c.credit).toBe(4);
    c.record(false);
    c.record(false);
    expect(c.credit).toBe(1);
    expect(c.mayTry()).toBe(true);
    c.record(false);
    expect(c.credit).toBe(0);
    // Out of credit: the next try is the 16th call from here.
    expect(Array.from({ length: 16 }, () => c.mayTry()).filter(Boolean)).toHaveLength(1);
    c.record(true);
    expect(c.credit).toBe(8);
  });
});
