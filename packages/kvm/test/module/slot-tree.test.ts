/**
 * The memslot index (slot-tree.ts) against a plain sorted list: the same answers for every insertion, removal and
 * query, whatever the order; and KVM_SET_USER_MEMORY_REGION filling every slot of a VM.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { SlotTree, type SlotRange } from '../../src/module/slot-tree.js';

type Op = { k: 'add'; page: number; pages: number } | { k: 'remove'; pick: number } | { k: 'query'; page: number; pages: number };

const op: fc.Arbitrary<Op> = fc.oneof(
  fc.record({ k: fc.constant('add' as const), page: fc.integer({ min: 0, max: 200 }), pages: fc.integer({ min: 1, max: 8 }) }),
  fc.record({ k: fc.constant('remove' as const), pick: fc.nat() }),
  fc.record({ k: fc.constant('query' as const), page: fc.integer({ min: 0, max: 210 }), pages: fc.integer({ min: 1, max: 8 }) }),
);

describe('SlotTree', () => {
  test('property: the same answers as a sorted list for insert, remove, floor, containing and overlapping', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 200 }), (ops) => {
        const tree = new SlotTree<SlotRange>();
        const list: SlotRange[] = [];
        const floorOf = (a: number): SlotRange | undefined => list.filter((s) => s.base <= a).at(-1);
        const overlapOf = (b: number, e: number, except: SlotRange | undefined): SlotRange | undefined =>
          list.filter((s) => s !== except && s.base < e && s.end > b).at(-1);
        for (const o of ops) {
          if (o.k === 'add') {
            const s = { base: o.page * 4096, end: (o.page + o.pages) * 4096 };
            // Only slots that do not overlap go in, as KVM_SET_USER_MEMORY_REGION's EEXIST guarantees.
            expect(tree.overlapping(s.base, s.end, undefined)).toBe(overlapOf(s.base, s.end, undefined));
            if (overlapOf(s.base, s.end, undefined) !== undefined) continue;
            tree.insert(s);
            list.push(s);
            list.sort((a, b) => a.base - b.base);
          } else if (o.k === 'remove') {
            if (list.length === 0) {
              expect(tree.remove(4096)).toBe(false);
              continue;
            }
            const s = list.splice(o.pick % list.length, 1)[0] as SlotRange;
            expect(tree.remove(s.base)).toBe(true);
          } else {
            const a = o.page * 4096;
            expect(tree.floor(a)).toBe(floorOf(a));
            const f = floorOf(a);
            expect(tree.containing(a)).toBe(f !== undefined && a < f.end ? f : undefined);
            const except = list[o.page % Math.max(1, list.length)];
            expect(tree.overlapping(a, a + o.pages * 4096, except)).toBe(overlapOf(a, a + o.pages * 4096, except));
          }
          expect(tree.size).toBe(list.length);
          expect([...tree]).toEqual(list);
        }
      }),
      { numRuns: 300 },
    );
  });

  test('32,764 slots inserted in descending order are each found, and the holes between them are not', () => {
    const tree = new SlotTree<SlotRange>();
    for (let i = 32_763; i >= 0; i--) tree.insert({ base: i * 8192, end: i * 8192 + 4096 });
    expect(tree.size).toBe(32_764);
    for (let i = 0; i < 32_764; i += 97) {
      expect(tree.containing(i * 8192 + 100)?.base).toBe(i * 8192);
      expect(tree.containing(i * 8192 + 4096)).toBeUndefined(); // the hole after each slot
    }
  });
});
