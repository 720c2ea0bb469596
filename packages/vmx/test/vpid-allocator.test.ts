import fc from 'fast-check';
import { describe, expect, test } from 'vitest';

import { UsageError } from '@vac/core';
import { VMX_NR_VPIDS, VpidAllocator } from '../src/vpid-allocator.js';

interface Tag {
  module: string;
  vm: number;
  vcpu: number;
}

describe('VpidAllocator (allocate_vpid / free_vpid)', () => {
  test('VMX_NR_VPIDS is 65536', () => {
    expect(VMX_NR_VPIDS).toBe(65536);
  });

  test('first VPID is 1 (0 is the host\'s), then 2, 3, …', () => {
    const v = new VpidAllocator<Tag>();
    expect(v.inUse).toBe(0);
    expect(v.alloc({ module: 'kvm0', vm: 1, vcpu: 0 })).toBe(1);
    expect(v.alloc({ module: 'kvm1', vm: 1, vcpu: 0 })).toBe(2);
    expect(v.alloc({ module: 'kvm0', vm: 1, vcpu: 1 })).toBe(3);
    expect(v.inUse).toBe(3);
    expect(v.isAllocated(0)).toBe(false);
    expect(v.ownerOf(2)).toEqual({ module: 'kvm1', vm: 1, vcpu: 0 });
  });

  test('free(5) then alloc gives 5 back (lowest free first)', () => {
    const v = new VpidAllocator<number>();
    for (let i = 1; i <= 10; i++) expect(v.alloc(i)).toBe(i);
    v.free(5);
    v.free(8);
    expect(v.isAllocated(5)).toBe(false);
    expect(v.ownerOf(5)).toBeUndefined();
    expect(v.alloc(50)).toBe(5);
    expect(v.alloc(80)).toBe(8);
    expect(v.alloc(11)).toBe(11);
  });

  test('after 65535 allocations the next returns 0, no error', () => {
    const v = new VpidAllocator<number>();
    let wrong = 0;
    for (let i = 1; i < VMX_NR_VPIDS; i++) if (v.alloc(i) !== i) wrong++;
    expect(wrong).toBe(0);
    expect(v.inUse).toBe(65535);
    expect(v.exhaustions).toBe(0);
    expect(v.alloc(-1)).toBe(0);
    expect(v.alloc(-2)).toBe(0);
    expect(v.exhaustions).toBe(2);
    expect(v.inUse).toBe(65535);
    v.free(40000);
    expect(v.alloc(40000)).toBe(40000);
    v.free(0); // the fallback VPID: free_vpid(0) is a no-op
    expect(v.inUse).toBe(65535);
  });

  test('free(0) is a no-op; freeing a free or invalid VPID is a usage error', () => {
    const v = new VpidAllocator<string>();
    v.free(0);
    expect(v.inUse).toBe(0);
    expect(() => v.free(1)).toThrow(UsageError);
    const a = v.alloc('a');
    v.free(a);
    expect(() => v.free(a)).toThrow(UsageError);
    expect(() => v.free(65536)).toThrow(UsageError);
    expect(() => v.free(-3)).toThrow(UsageError);
    expect(() => v.free(2.5)).toThrow(UsageError);
    expect(() => v.isAllocated(70000)).toThrow(UsageError);
    expect(v.inUse).toBe(0);
  });

  test('holders() lists (vpid, owner) in VPID order', () => {
    const v = new VpidAllocator<string>();
    v.alloc('a');
    v.alloc('b');
    v.alloc('c');
    v.free(2);
    expect([...v.holders()]).toEqual([
      [1, 'a'],
      [3, 'c'],
    ]);
  });

  test('shouldFail: fail the 3rd allocation (returns 0, nothing taken)', () => {
    let n = 0;
    const v = new VpidAllocator<number>({ shouldFail: () => ++n === 3 });
    expect(v.alloc(1)).toBe(1);
    expect(v.alloc(2)).toBe(2);
    expect(v.alloc(3)).toBe(0);
    expect(v.inUse).toBe(2);
    expect(v.exhaustions).toBe(1);
    expect(v.alloc(4)).toBe(3);
    expect(n).toBe(4);
  });

  test('property: alloc always returns the lowest free VPID; inUse and holders agree', () => {
    const op = fc.oneof(
      { arbitrary: fc.constant<{ kind: 'alloc' }>({ kind: 'alloc' }), weight: 3 },
      { arbitrary: fc.nat().map((k) => ({ kind: 'free' as const, k })), weight: 2 },
    );
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const v = new VpidAllocator<number>();
        const held = new Set<number>();
        let serial = 0;
        for (const o of ops) {
          if (o.kind === 'alloc') {
            let want = 1;
            while (held.has(want)) want++;
            const got = v.alloc(++serial);
            expect(got).toBe(want);
            held.add(got);
            expect(v.ownerOf(got)).toBe(serial);
          } else if (held.size > 0) {
            const victim = [...held][o.k % held.size] as number;
            v.free(victim);
            held.delete(victim);
          }
          expect(v.inUse).toBe(held.size);
        }
        expect([...v.holders()].map(([vpid]) => vpid)).toEqual([...held].sort((a, b) => a - b));
      }),
      { numRuns: 200 },
    );
  });
});
