import fc from 'fast-check';
import { describe, expect, test } from 'vitest';

import { UsageError } from '../src/errors.js';
import { IdBitmap } from '../src/id-bitmap.js';

/** The reference model: a plain boolean array and linear scans. */
class NaiveBitmap {
  readonly bits: boolean[];
  constructor(readonly size: number) {
    this.bits = new Array<boolean>(size).fill(false);
  }
  findFirstZero(from = 0, to = this.size - 1): number {
    for (let i = from; i <= to; i++) if (!this.bits[i]) return i;
    return -1;
  }
  findFirstSet(from = 0, to = this.size - 1): number {
    for (let i = from; i <= to; i++) if (this.bits[i]) return i;
    return -1;
  }
  get count(): number {
    return this.bits.filter(Boolean).length;
  }
  setBits(): number[] {
    const out: number[] = [];
    this.bits.forEach((b, i) => {
      if (b) out.push(i);
    });
    return out;
  }
}

describe('IdBitmap basics', () => {
  test('starts empty; set/clear/test/count', () => {
    const b = new IdBitmap(100);
    expect(b.size).toBe(100);
    expect(b.count).toBe(0);
    expect(b.findFirstZero()).toBe(0);
    expect(b.set(3)).toBe(true);
    expect(b.set(3)).toBe(false);
    expect(b.test(3)).toBe(true);
    expect(b.test(4)).toBe(false);
    expect(b.count).toBe(1);
    expect(b.clear(3)).toBe(true);
    expect(b.clear(3)).toBe(false);
    expect(b.count).toBe(0);
  });

  test('summary levels: 0 up to 32 bits, 3 for 65,536', () => {
    expect(new IdBitmap(1).summaryLevels).toBe(0);
    expect(new IdBitmap(32).summaryLevels).toBe(0);
    expect(new IdBitmap(33).summaryLevels).toBe(1);
    expect(new IdBitmap(1024).summaryLevels).toBe(1);
    expect(new IdBitmap(1025).summaryLevels).toBe(2);
    expect(new IdBitmap(32768).summaryLevels).toBe(2);
    expect(new IdBitmap(65536).summaryLevels).toBe(3);
  });

  test('lowest zero first, like find_first_zero_bit', () => {
    const b = new IdBitmap(65536);
    for (let i = 0; i < 60000; i++) b.set(i);
    expect(b.findFirstZero()).toBe(60000);
    b.clear(1234);
    expect(b.findFirstZero()).toBe(1234);
    expect(b.findFirstZero(1235)).toBe(60000);
    expect(b.findFirstZero(1235, 59999)).toBe(-1);
    expect(b.findFirstZero(1234, 1234)).toBe(1234);
  });

  test('full bitmap: -1, including every boundary size', () => {
    for (const size of [1, 31, 32, 33, 1023, 1024, 1025, 32768, 32769, 65536]) {
      const b = new IdBitmap(size);
      for (let i = 0; i < size; i++) b.set(i);
      expect(b.count).toBe(size);
      expect(b.findFirstZero()).toBe(-1);
      expect(b.findFirstZero(size - 1)).toBe(-1);
      expect(b.takeFirstZero()).toBe(-1);
      b.clear(size - 1);
      expect(b.findFirstZero()).toBe(size - 1);
      expect(b.findFirstZero(0, Math.max(0, size - 2))).toBe(size === 1 ? 0 : -1);
    }
  });

  test('empty range finds nothing; bad indices are usage errors', () => {
    const b = new IdBitmap(64);
    expect(b.findFirstZero(10, 9)).toBe(-1);
    expect(b.findFirstSet(10, 9)).toBe(-1);
    expect(() => b.findFirstZero(-1)).toThrow(UsageError);
    expect(() => b.findFirstZero(0, 64)).toThrow(UsageError);
    expect(() => b.set(64)).toThrow(UsageError);
    expect(() => b.set(1.5)).toThrow(UsageError);
    expect(() => b.test(-1)).toThrow(UsageError);
    expect(() => b.clear(Number.NaN)).toThrow(UsageError);
    expect(() => new IdBitmap(0)).toThrow(UsageError);
    expect(() => new IdBitmap(2 ** 31)).toThrow(UsageError);
  });

  test('takeFirstZero sets what it finds', () => {
    const b = new IdBitmap(40);
    expect(b.takeFirstZero()).toBe(0);
    expect(b.takeFirstZero()).toBe(1);
    expect(b.takeFirstZero(35)).toBe(35);
    expect(b.takeFirstZero(35, 36)).toBe(36);
    expect(b.takeFirstZero(35, 36)).toBe(-1);
    expect([...b]).toEqual([0, 1, 35, 36]);
    expect(b.count).toBe(4);
  });

  test('findFirstSet', () => {
    const b = new IdBitmap(100);
    expect(b.findFirstSet()).toBe(-1);
    b.set(70);
    b.set(5);
    expect(b.findFirstSet()).toBe(5);
    expect(b.findFirstSet(6)).toBe(70);
    expect(b.findFirstSet(6, 69)).toBe(-1);
    expect(b.findFirstSet(70, 70)).toBe(70);
  });

  test('padding bits never show', () => {
    const b = new IdBitmap(33);
    expect([...b.setBits()]).toEqual([]);
    for (let i = 0; i < 33; i++) b.set(i);
    expect([...b.setBits()]).toHaveLength(33);
    expect(b.count).toBe(33);
    b.clearAll();
    expect(b.count).toBe(0);
    expect(b.findFirstZero()).toBe(0);
  });

  test('xorWith / andNot / equals / snapshot', () => {
    const a = new IdBitmap(70);
    const r = new IdBitmap(70);
    for (const i of [1, 2, 3, 40, 69]) a.set(i);
    for (const i of [2, 40, 50]) r.set(i);
    const snap = a.snapshot();
    expect(snap.equals(a)).toBe(true);

    a.xorWith(r);
    expect([...a]).toEqual([1, 3, 50, 69]);
    expect(a.count).toBe(4);
    expect(snap.equals(a)).toBe(false);
    expect([...snap]).toEqual([1, 2, 3, 40, 69]);

    snap.andNot(r);
    expect([...snap]).toEqual([1, 3, 69]);
    expect(snap.count).toBe(3);

    expect(() => a.xorWith(new IdBitmap(71))).toThrow(UsageError);
    expect(() => a.andNot(new IdBitmap(69))).toThrow(UsageError);
    expect(a.equals(new IdBitmap(71))).toBe(false);
  });

  test('xor of full words keeps the summary levels right', () => {
    const a = new IdBitmap(65536);
    const r = new IdBitmap(65536);
    for (let i = 0; i < 65536; i++) a.set(i);
    for (let i = 1024; i < 2048; i++) r.set(i);
    a.xorWith(r);
    expect(a.count).toBe(65536 - 1024);
    expect(a.findFirstZero()).toBe(1024);
    expect(a.findFirstZero(2000)).toBe(2000);
    expect(a.findFirstZero(2048)).toBe(-1);
    a.andNot(a.snapshot());
    expect(a.count).toBe(0);
    expect(a.findFirstZero(65535)).toBe(65535);
  });
});

/** Indices near the summary boundaries of a bitmap of `size` bits (32, 1024, 32768, 65536 and the ends). */
function boundaryIndex(size: number): fc.Arbitrary<number> {
  const anchors = [0, 32, 1024, 32768, 65536, size].filter((a) => a <= size);
  return fc.oneof(
    fc.integer({ min: 0, max: size - 1 }),
    fc
      .tuple(fc.constantFrom(...anchors), fc.integer({ min: -2, max: 1 }))
      .map(([a, d]) => Math.min(size - 1, Math.max(0, a + d))),
  );
}

type Op =
  | { kind: 'set' | 'clear' | 'take'; i: number }
  | { kind: 'fill' | 'find' | 'findSet'; i: number; j: number }
  | { kind: 'xor' | 'andNot'; bits: number[] }
  | { kind: 'clearAll' };

function opArb(size: number): fc.Arbitrary<Op> {
  const idx = boundaryIndex(size);
  const range = fc.tuple(idx, idx).map(([a, b]): [number, number] => (a <= b ? [a, b] : [b, a]));
  return fc.oneof(
    { arbitrary: idx.map((i): Op => ({ kind: 'set', i })), weight: 20 },
    { arbitrary: idx.map((i): Op => ({ kind: 'clear', i })), weight: 20 },
    { arbitrary: idx.map((i): Op => ({ kind: 'take', i })), weight: 15 },
    { arbitrary: range.map(([i, j]): Op => ({ kind: 'fill', i, j })), weight: 10 },
    { arbitrary: range.map(([i, j]): Op => ({ kind: 'find', i, j })), weight: 20 },
    { arbitrary: range.map(([i, j]): Op => ({ kind: 'findSet', i, j })), weight: 5 },
    { arbitrary: fc.array(idx, { maxLength: 40 }).map((bits): Op => ({ kind: 'xor', bits })), weight: 5 },
    { arbitrary: fc.array(idx, { maxLength: 40 }).map((bits): Op => ({ kind: 'andNot', bits })), weight: 5 },
    { arbitrary: fc.constant<Op>({ kind: 'clearAll' }), weight: 1 },
  );
}

function runOps(size: number, ops: Op[]): void {
  const b = new IdBitmap(size);
  const m = new NaiveBitmap(size);
  for (const op of ops) {
    switch (op.kind) {
      case 'set':
        expect(b.set(op.i)).toBe(!m.bits[op.i]);
        m.bits[op.i] = true;
        break;
      case 'clear':
        expect(b.clear(op.i)).toBe(m.bits[op.i] === true);
        m.bits[op.i] = false;
        break;
      case 'take': {
        const want = m.findFirstZero(op.i);
        expect(b.takeFirstZero(op.i)).toBe(want);
        if (want >= 0) m.bits[want] = true;
        break;
      }
      case 'fill':
        for (let k = op.i; k <= op.j; k++) {
          b.set(k);
          m.bits[k] = true;
        }
        break;
      case 'find':
        expect(b.findFirstZero(op.i, op.j)).toBe(m.findFirstZero(op.i, op.j));
        break;
      case 'findSet':
        expect(b.findFirstSet(op.i, op.j)).toBe(m.findFirstSet(op.i, op.j));
        break;
      case 'xor':
      case 'andNot': {
        const other = new IdBitmap(size);
        for (const k of op.bits) other.set(k);
        if (op.kind === 'xor') {
          b.xorWith(other);
          for (const k of new Set(op.bits)) m.bits[k] = !m.bits[k];
        } else {
          b.andNot(other);
          for (const k of op.bits) m.bits[k] = false;
        }
        break;
      }
      case 'clearAll':
        b.clearAll();
        m.bits.fill(false);
        break;
    }
    expect(b.count).toBe(m.count);
    expect(b.findFirstZero()).toBe(m.findFirstZero());
  }
  expect([...b.setBits()]).toEqual(m.setBits());
  const snap = b.snapshot();
  expect(snap.equals(b)).toBe(true);
  expect(snap.findFirstZero()).toBe(m.findFirstZero());
}

describe('IdBitmap agrees with a naive model', () => {
  for (const size of [1, 31, 32, 33, 100, 1023, 1024, 1025, 2048, 32769]) {
    test(`random operations, size ${size}`, () => {
      fc.assert(
        fc.property(fc.array(opArb(size), { maxLength: 60 }), (ops) => runOps(size, ops)),
        { numRuns: size > 2048 ? 40 : 150 },
      );
    });
  }

  test('random operations, size 65536 (three summary levels)', () => {
    fc.assert(
      fc.property(fc.array(opArb(65536), { maxLength: 40 }), (ops) => runOps(65536, ops)),
      { numRuns: 25 },
    );
  });

  test('nearly full 65536-bit map: every range query matches', () => {
    fc.assert(
      fc.property(
        fc.uniqueArray(boundaryIndex(65536), { minLength: 0, maxLength: 12 }),
        fc.array(fc.tuple(boundaryIndex(65536), boundaryIndex(65536)), { minLength: 1, maxLength: 20 }),
        (holes, queries) => {
          const b = new IdBitmap(65536);
          const m = new NaiveBitmap(65536);
          for (let i = 0; i < 65536; i++) b.set(i);
          m.bits.fill(true);
          for (const h of holes) {
            b.clear(h);
            m.bits[h] = false;
          }
          for (const [x, y] of queries) {
            const [from, to] = x <= y ? [x, y] : [y, x];
            expect(b.findFirstZero(from, to)).toBe(m.findFirstZero(from, to));
          }
          expect(b.count).toBe(65536 - holes.length);
        },
      ),
      { numRuns: 60 },
    );
  });
});
