/**
 * The register check's fast path (`registersCanonical`, one direct load per field) and its field lists (used to
 * name what is wrong) cover the same registers: corrupting any listed field, in any way, fails the fast path and is
 * named by the slow one; a fresh vCPU passes.
 */
import { describe, expect, test } from 'vitest';
import { GuestCpuState } from '../../src/guest/cpu-state.js';
import { CHECKED_REGISTERS, registersCanonical, vcpuStateViolations } from '../../src/module/vm-check.js';
import type { Vcpu } from '../../src/module/vcpu.js';

function vcpuWith(regs: GuestCpuState): Vcpu {
  return { regs, label: 'kvmT/vm1/vcpu0' } as unknown as Vcpu;
}

describe('registersCanonical and vcpuStateViolations agree on every checked register', () => {
  test('a fresh vCPU is canonical', () => {
    const r = new GuestCpuState();
    expect(registersCanonical(r)).toBe(true);
    expect(vcpuStateViolations(vcpuWith(r))).toEqual([]);
  });

  const numberCases: ReadonlyArray<readonly ['u32' | 'u16', unknown]> = [
    ['u32', NaN], ['u32', -1], ['u32', 1.5], ['u32', 2 ** 32], ['u32', Infinity],
    ['u16', NaN], ['u16', -1], ['u16', 0.5], ['u16', 0x10000],
  ];
  for (const [kind, bad] of numberCases) {
    test(`every ${kind} field set to ${String(bad)} is caught and named`, () => {
      for (const field of CHECKED_REGISTERS[kind]) {
        const r = new GuestCpuState();
        (r as unknown as Record<string, unknown>)[field] = bad;
        expect(registersCanonical(r), field).toBe(false);
        expect(vcpuStateViolations(vcpuWith(r)).map((v) => v.message), field).toEqual([`kvmT/vm1/vcpu0: ${field} is ${String(bad)}, not an unsigned ${kind === 'u32' ? 32 : 16}-bit integer`]);
      }
    });
  }

  test('every control register out of 64 bits, or not a bigint, is caught; CR0.PG without PE too', () => {
    for (const field of CHECKED_REGISTERS.u64) {
      for (const bad of [-1n, 1n << 64n, 5]) {
        const r = new GuestCpuState();
        (r as unknown as Record<string, unknown>)[field] = bad;
        expect(registersCanonical(r), `${field}=${String(bad)}`).toBe(false);
        expect(vcpuStateViolations(vcpuWith(r)).length, `${field}=${String(bad)}`).toBeGreaterThan(0);
      }
    }
    const r = new GuestCpuState();
    r.cr0 = 0x8000_0000n;
    expect(registersCanonical(r)).toBe(false);
    r.cr0 = 0x8000_0001n;
    expect(registersCanonical(r)).toBe(true);
  });

  test('the lists hold 58 32-bit, 8 16-bit and 4 64-bit fields, each a field of GuestCpuState', () => {
    const r = new GuestCpuState() as unknown as Record<string, unknown>;
    expect([CHECKED_REGISTERS.u32.length, CHECKED_REGISTERS.u16.length, CHECKED_REGISTERS.u64.length]).toEqual([58, 8, 4]);
    for (const f of [...CHECKED_REGISTERS.u32, ...CHECKED_REGISTERS.u16, ...CHECKED_REGISTERS.u64]) expect(f in r, f).toBe(true);
  });
});
