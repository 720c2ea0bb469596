import { fc, test as fcTest } from '@fast-check/vitest';
import { describe, expect, test } from 'vitest';
import { Cpu, createHost } from '../../src/index.js';
import type { MsrWriteHook } from '../../src/index.js';
import { fakeHardware } from '../support/fake-hardware.js';

const MSR_TSC_AUX = 0xc000_0103; // above 2^30: not a small integer key in V8, the case MsrSlot exists for
const MSR_FLUSH_CMD = 0x10b;

/** Two CPUs of one host with TSC_AUX and a FLUSH_CMD that refuses reserved bits and counts flushes. */
function rig(): { cpus: readonly Cpu[]; flushes: number[] } {
  const host = createHost({ cpus: 2, hardware: fakeHardware() });
  const flushes = [0, 0];
  const hook: MsrWriteHook = (cpu, _msr, value) => {
    if ((value & ~1n) !== 0n) return false;
    flushes[cpu.id] = (flushes[cpu.id] ?? 0) + Number(value);
    return true;
  };
  for (const cpu of host.cpus) {
    cpu.msrs.set(MSR_TSC_AUX, BigInt(cpu.id));
    cpu.msrs.set(MSR_FLUSH_CMD, 0n);
    cpu.msrWriteHooks.set(MSR_FLUSH_CMD, hook);
  }
  return { cpus: host.cpus, flushes };
}

describe('Cpu MSR slots (wrmsrSlot / rdmsrSlot)', () => {
  test('one slot object per MSR and host, shared by every CPU of the host', () => {
    const { cpus } = rig();
    const [c0, c1] = cpus as [Cpu, Cpu];
    expect(c0.msrSlot(MSR_TSC_AUX)).toBe(c1.msrSlot(MSR_TSC_AUX));
    expect(c0.msrSlot(MSR_TSC_AUX).msr).toBe(MSR_TSC_AUX);
    expect(c0.msrSlot(MSR_TSC_AUX)).not.toBe(c0.msrSlot(MSR_FLUSH_CMD));
  });

  test('a write through a slot lands in that CPU only, runs the hook and can be refused (#GP)', () => {
    const { cpus, flushes } = rig();
    const [c0, c1] = cpus as [Cpu, Cpu];
    const aux = c0.msrSlot(MSR_TSC_AUX);
    expect(c1.wrmsrSlot(aux, 7n)).toBe(true);
    expect([c0.rdmsrSafe(MSR_TSC_AUX), c1.rdmsrSafe(MSR_TSC_AUX), c1.rdmsrSlot(aux)]).toEqual([0n, 7n, 7n]);
    const flush = c0.msrSlot(MSR_FLUSH_CMD);
    expect(c0.wrmsrSlot(flush, 1n)).toBe(true);
    expect(c0.wrmsrSlot(flush, 2n)).toBe(false); // reserved bit: the hook refuses, the value stays
    expect(flushes).toEqual([1, 0]);
    expect(c0.rdmsrSafe(MSR_FLUSH_CMD)).toBe(1n);
  });

  test('an MSR the CPU does not implement faults through a slot too, and the slot adds no MSR', () => {
    const { cpus } = rig();
    const c0 = cpus[0] as Cpu;
    const before = [...c0.msrs.keys()];
    const missing = c0.msrSlot(0x1234);
    expect(c0.wrmsrSlot(missing, 1n)).toBe(false);
    expect(c0.rdmsrSlot(missing)).toBeUndefined();
    expect(c0.msrs.has(0x1234)).toBe(false);
    expect([...c0.msrs.keys()]).toEqual(before);
  });

  test("a slot of another host's tables falls back to the MSR number on this CPU", () => {
    const { cpus } = rig();
    const other = new Cpu(0); // tables of its own
    other.msrs.set(MSR_TSC_AUX, 3n);
    const foreign = other.msrSlot(MSR_TSC_AUX);
    const c1 = cpus[1] as Cpu;
    expect(c1.rdmsrSlot(foreign)).toBe(1n);
    expect(c1.wrmsrSlot(foreign, 9n)).toBe(true);
    expect([c1.rdmsrSafe(MSR_TSC_AUX), other.rdmsrSafe(MSR_TSC_AUX)]).toEqual([9n, 3n]);
  });

  fcTest.prop([
    fc.array(
      fc.record({
        cpu: fc.integer({ min: 0, max: 1 }),
        msr: fc.constantFrom(MSR_TSC_AUX, MSR_FLUSH_CMD, 0x1234),
        value: fc.bigInt({ min: 0n, max: 3n }),
        viaSlot: fc.boolean(),
      }),
      { maxLength: 40 },
    ),
  ])('writes through slots and through MSR numbers are indistinguishable', (writes) => {
    const a = rig();
    const b = rig();
    for (const w of writes) {
      const ca = a.cpus[w.cpu] as Cpu;
      const cb = b.cpus[w.cpu] as Cpu;
      const okA = w.viaSlot ? ca.wrmsrSlot(ca.msrSlot(w.msr), w.value) : ca.wrmsrSafe(w.msr, w.value);
      const okB = cb.wrmsrSafe(w.msr, w.value);
      expect(okA).toBe(okB);
    }
    for (const [i, ca] of a.cpus.entries()) expect([...ca.msrs]).toEqual([...(b.cpus[i] as Cpu).msrs]);
    expect(a.flushes).toEqual(b.flushes);
  });
});
