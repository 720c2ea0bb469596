/** Comparing golden values with the model's, and building the model's arguments from golden values. */
import { makeKvmRegs, makeKvmUserspaceMemoryRegion } from '@vac/kvm';
import { describe, expect, test } from 'vitest';
import { compareValue } from '../replay/compare.js';
import type { Json } from '../replay/golden.js';
import { constructorName, structArg, toModel, zeroShape, type ValueContext } from '../replay/values.js';

function diff(expected: Json, actual: unknown): string[] {
  const out: string[] = [];
  compareValue('v', expected, actual, (p, e, a) => out.push(`${p}: ${e} vs ${a}`));
  return out;
}

const ctx: ValueContext = {
  bufferAddress: (b) => (b === 'm0' ? 0x7f0000000000 : NaN),
  reference: (p) => (p === 'steps.0.out.nmsrs' ? 40 : undefined),
};

describe('compareValue', () => {
  test('integers compare by value, whatever their type; 64-bit values exactly', () => {
    expect(diff('0xffffffffffffffff', 0xffffffffffffffffn)).toEqual([]);
    expect(diff('0x10', 16)).toEqual([]);
    expect(diff(16, 16n)).toEqual([]);
    expect(diff('0xffffffffffffffff', 2 ** 64)).toHaveLength(1);
    expect(diff('0x20000000000001', 2 ** 53)).toHaveLength(1);
  });

  test('only the fields the kernel answered are compared; a missing one is a difference', () => {
    expect(diff({ a: 1 }, { a: 1, extra: 5 })).toEqual([]);
    expect(diff({ a: 1, b: 2 }, { a: 1 })).toEqual(['v.b: 2 vs (missing)']);
  });

  test('opaque fields must exist but are not compared', () => {
    expect(diff({ clock: { $opaque: '0x123' } }, { clock: 99n })).toEqual([]);
    expect(diff({ clock: { $opaque: '0x123' } }, {})).toHaveLength(1);
  });

  test('arrays and typed arrays compare element by element, and by length', () => {
    expect(diff([1, 2], Uint8Array.from([1, 2]))).toEqual([]);
    expect(diff([1, 2], [1])).toEqual(['v.length: 2 vs 1']);
    expect(diff('0102', Uint8Array.from([1, 2]))).toEqual([]);
    expect(diff('0102', Uint8Array.from([1, 3]))).toHaveLength(1);
  });
});

describe('the model arguments', () => {
  test('constructor names follow the struct names', () => {
    expect(constructorName('kvm_userspace_memory_region')).toBe('makeKvmUserspaceMemoryRegion');
    expect(constructorName('kvm_cpuid_entry2')).toBe('makeKvmCpuidEntry2');
  });

  test('a struct with a make… constructor takes its field types; mappings become model addresses', () => {
    const a = structArg('kvm_userspace_memory_region', { slot: 1, flags: 0, guest_phys_addr: '0x1000', memory_size: '0x2000', userspace_addr: { $buf: 'm0', offset: 4096 } }, undefined, ctx);
    expect(a).toEqual(makeKvmUserspaceMemoryRegion({ slot: 1, guest_phys_addr: 0x1000, memory_size: 0x2000, userspace_addr: 0x7f0000001000 }));
    const r = structArg('kvm_regs', { rax: '0xffffffffffffffff' }, undefined, ctx);
    expect(r).toEqual(makeKvmRegs({ rax: 0xffffffffffffffffn }));
  });

  test('a number field keeps a value above 2^53 exact, as a bigint, rather than rounding it', () => {
    expect(toModel('0x20000000000001', 0, ctx)).toBe(0x20000000000001n);
    expect(toModel('0x1000', 0, ctx)).toBe(0x1000);
  });

  test('a struct the model has no constructor for is built from the golden value; an output buffer from the answer\'s shape', () => {
    expect(structArg('kvm_no_such', { nmsrs: { $ref: 'steps.0.out.nmsrs', add: -1, $value: 39 } }, undefined, ctx)).toEqual({ nmsrs: 39 });
    expect(structArg('kvm_no_such', undefined, { fcw: 895, last_ip: '0x0', xmm: [[1, 2]] }, ctx)).toEqual({ fcw: 0, last_ip: 0n, xmm: [[0, 0]] });
    expect(zeroShape({ x: { $opaque: '0x5' } })).toEqual({ x: 0n });
  });
});
