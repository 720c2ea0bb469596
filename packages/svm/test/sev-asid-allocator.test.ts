import fc from 'fast-check';
import { describe, expect, test } from 'vitest';

import { KernelError, UsageError, isKernelError } from '@vac/core';
import { SevAsidAllocator, type SevAsidState } from '../src/sev-asid-allocator.js';

/** CPUID 0x8000001F with ECX = max_sev_asid = 10, EDX = min_sev_asid = 5: SEV [5, 10], SEV-ES [1, 4]. */
function make(onFlush?: () => boolean | void): SevAsidAllocator<string> {
  return SevAsidAllocator.fromCpuid<string>(
    { eax: 0, ebx: 0, ecx: 10, edx: 5 },
    onFlush === undefined ? {} : { onFlush },
  );
}

function catchError(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe('SevAsidAllocator (sev_asid_new / sev_asid_free / __sev_recycle_asids)', () => {
  test('geometry from CPUID 0x8000001F', () => {
    const s = make();
    expect(s.maxSevAsid).toBe(10);
    expect(s.minSevAsid).toBe(5);
    expect(s.nrAsids).toBe(11);
    expect(s.range(false)).toEqual([5, 10]);
    expect(s.range(true)).toEqual([1, 4]);
  });

  test('SEV takes [min, max], SEV-ES [1, min-1], lowest first, with owners', () => {
    const s = make();
    expect(s.alloc(false, 'vmA')).toBe(5);
    expect(s.alloc(false, 'vmB')).toBe(6);
    expect(s.alloc(true, 'vmC')).toBe(1);
    expect(s.alloc(true, 'vmD')).toBe(2);
    expect(s.inUse).toBe(4);
    expect(s.ownerOf(6)).toBe('vmB');
    expect(s.isInUse(1)).toBe(true);
    expect(s.isInUse(0)).toBe(false);
    expect(s.state().inUse).toEqual([
      [1, 'vmC'],
      [2, 'vmD'],
      [5, 'vmA'],
      [6, 'vmB'],
    ]);
  });

  test('an empty range is ENOTTY (sev_asid_new: min_asid > max_asid)', () => {
    const noEs = new SevAsidAllocator({ maxSevAsid: 10, minSevAsid: 1 });
    const e = catchError(() => noEs.alloc(true, 'x'));
    expect(isKernelError(e, 'ENOTTY')).toBe(true);
    expect((e as KernelError).errno).toBe(25);
    expect((e as KernelError).op).toBe('sev_asid_new');
    expect(noEs.alloc(false, 'y')).toBe(1);

    const noSev = new SevAsidAllocator({ maxSevAsid: 10, minSevAsid: 11 }); // all ASIDs kept for SEV-ES
    expect(isKernelError(catchError(() => noSev.alloc(false, 'x')), 'ENOTTY')).toBe(true);
    expect(noSev.alloc(true, 'y')).toBe(1);

    const none = SevAsidAllocator.fromCpuid({ eax: 0, ebx: 0, ecx: 0, edx: 0 });
    expect(isKernelError(catchError(() => none.alloc(false, 'x')), 'ENOTTY')).toBe(true);
    expect(isKernelError(catchError(() => none.alloc(true, 'x')), 'ENOTTY')).toBe(true);
    expect(none.state()).toEqual({ inUse: [], awaitingReclaim: [], flushes: 0, recycles: 0 });
  });

  test('a freed ASID is not reused before a recycle', () => {
    const s = make();
    expect(s.alloc(false, 'a')).toBe(5);
    s.free(5);
    expect(s.isInUse(5)).toBe(false);
    expect(s.isAwaitingReclaim(5)).toBe(true);
    expect(s.ownerOf(5)).toBeUndefined();
    expect(s.alloc(false, 'b')).toBe(6);
    expect(s.inUse).toBe(1);
    expect(s.flushes).toBe(0);
  });

  test('exhaustion with nothing to reclaim: EBUSY, no flush, state unchanged', () => {
    const s = make();
    for (let i = 0; i < 6; i++) s.alloc(false, `vm${i}`);
    const before = s.state();
    const e = catchError(() => s.alloc(false, 'late'));
    expect(isKernelError(e, 'EBUSY')).toBe(true);
    expect((e as KernelError).errno).toBe(16);
    expect(s.state()).toEqual(before);
    expect(s.flushes).toBe(0);
  });

  test('exhaustion then recycle: one flush (WBINVD + DF_FLUSH), freed ASIDs come back', () => {
    let hook = 0;
    const s = make(() => {
      hook++;
    });
    for (let i = 0; i < 6; i++) s.alloc(false, `vm${i}`); // 5 … 10
    s.free(7);
    s.free(9);
    expect(s.state().awaitingReclaim).toEqual([7, 9]);
    expect(s.alloc(false, 'new1')).toBe(7); // recycle, retry
    expect(s.flushes).toBe(1);
    expect(s.recycles).toBe(1);
    expect(hook).toBe(1);
    expect(s.state().awaitingReclaim).toEqual([]);
    expect(s.alloc(false, 'new2')).toBe(9); // already recycled: no new flush
    expect(s.flushes).toBe(1);
    expect(isKernelError(catchError(() => s.alloc(false, 'new3')), 'EBUSY')).toBe(true);
    expect(s.flushes).toBe(1);
    expect(hook).toBe(1);
  });

  test('the flush is only done when the requested range has something to reclaim, but recycles both ranges', () => {
    const s = make();
    for (let i = 0; i < 6; i++) s.alloc(false, `sev${i}`);
    for (let i = 0; i < 4; i++) s.alloc(true, `es${i}`);
    s.free(2); // an SEV-ES ASID awaits reclaim; the SEV range has none
    const before = s.state();
    expect(isKernelError(catchError(() => s.alloc(false, 'x')), 'EBUSY')).toBe(true);
    expect(s.state()).toEqual(before); // sev_flush_asids: find_next_bit(reclaim, nr_asids, min) > max → -EBUSY
    s.free(8);
    expect(s.alloc(true, 'es-new')).toBe(2); // flush: recycles 2 and 8
    expect(s.flushes).toBe(1);
    expect(s.alloc(false, 'sev-new')).toBe(8); // no second flush needed
    expect(s.flushes).toBe(1);
    expect(s.inUse).toBe(10);
  });

  test('DF_FLUSH failure: EBUSY, the flush (WBINVD) stays counted, nothing else changes', () => {
    let ok = false;
    const s = make(() => ok);
    for (let i = 0; i < 6; i++) s.alloc(false, `vm${i}`);
    s.free(6);
    const before = s.state();
    const e = catchError(() => s.alloc(false, 'x'));
    expect(isKernelError(e, 'EBUSY')).toBe(true);
    // The one real effect of the failed call, as in Linux: WBINVD ran on all CPUs and DF_FLUSH was issued.
    expect(s.flushes).toBe(1);
    expect(s.state()).toEqual({ ...before, flushes: 1 });
    expect(s.recycles).toBe(0);
    expect(s.isAwaitingReclaim(6)).toBe(true);
    ok = true;
    expect(s.alloc(false, 'y')).toBe(6);
    expect(s.flushes).toBe(2);
    expect(s.recycles).toBe(1);
  });

  test('free of an ASID not in use is a usage error', () => {
    const s = make();
    expect(() => s.free(5)).toThrow(UsageError);
    const a = s.alloc(false, 'a');
    s.free(a);
    expect(() => s.free(a)).toThrow(UsageError); // double free: already awaiting reclaim
    expect(() => s.free(0)).toThrow(UsageError);
    expect(() => s.free(11)).toThrow(UsageError);
    expect(() => new SevAsidAllocator({ maxSevAsid: 10, minSevAsid: 0 })).toThrow(UsageError);
    expect(() => new SevAsidAllocator({ maxSevAsid: -1, minSevAsid: 1 })).toThrow(UsageError);
  });

  test('unique across modules: one allocator, every VM gets its own ASID', () => {
    const s = make();
    const got = [s.alloc(false, 'kvm0/vm1'), s.alloc(false, 'kvm1/vm1'), s.alloc(false, 'kvm2/vm1')];
    expect(new Set(got).size).toBe(3);
    expect(isKernelError(new KernelError('EBUSY', 'x'), 'EBUSY')).toBe(true);
  });
});

// ---- The allocator against a plain model --------------------------------------------------------------------

/**
 * The reference: `sev_asid_new` / `sev_asid_free` / `__sev_recycle_asids` with sets instead of bitmaps, and
 * the same errors (including the one for an SEV-ES range that runs past the bitmaps: `min_sev_asid - 1 >
 * max_sev_asid`, which the old `IdBitmap` reported as an index out of range).
 */
class RefSev {
  readonly taken = new Set<number>();
  readonly reclaim = new Set<number>();
  readonly owners = new Map<number, string>();
  flushes = 0;
  recycles = 0;

  constructor(
    readonly maxSevAsid: number,
    readonly minSevAsid: number,
    readonly onFlush: () => boolean,
  ) {}

  range(es: boolean): [number, number] {
    return es ? [1, this.minSevAsid - 1] : [Math.max(1, this.minSevAsid), this.maxSevAsid];
  }

  alloc(es: boolean, owner: string): number {
    const [min, max] = this.range(es);
    const kind = es ? 'SEV-ES' : 'SEV';
    if (min > max) throw new KernelError('ENOTTY', 'sev_asid_new', `no ${kind} ASIDs (range [${min}, ${max}])`);
    for (const i of [min, max]) {
      if (i > this.maxSevAsid) throw new UsageError('ERR_OUT_OF_RANGE', `IdBitmap: index ${i} is not in [0, ${this.maxSevAsid}]`);
    }
    for (let retry = true; ; retry = false) {
      let asid = min;
      while (asid <= max && this.taken.has(asid)) asid++;
      if (asid <= max) {
        this.taken.add(asid);
        this.owners.set(asid, owner);
        return asid;
      }
      if (retry && [...this.reclaim].some((a) => a >= min && a <= max)) {
        this.flushes++;
        if (this.onFlush()) {
          for (const a of this.reclaim) this.taken.delete(a);
          this.reclaim.clear();
          this.recycles++;
          continue;
        }
      }
      throw new KernelError('EBUSY', 'sev_asid_new', `no free ${kind} ASID in [${min}, ${max}]`);
    }
  }

  valid(asid: number): boolean {
    return Number.isInteger(asid) && asid >= 1 && asid <= this.maxSevAsid;
  }

  free(asid: number): void {
    if (!this.valid(asid)) {
      throw new UsageError('ERR_OUT_OF_RANGE', `sev_asid_free: ASID ${String(asid)} is not in [1, ${this.maxSevAsid}]`);
    }
    if (!this.taken.has(asid) || this.reclaim.has(asid)) {
      throw new UsageError('ERR_INVALID_STATE', `sev_asid_free: ASID ${asid} is not in use`);
    }
    this.reclaim.add(asid);
    this.owners.delete(asid);
  }

  isInUse(asid: number): boolean {
    return this.valid(asid) && this.taken.has(asid) && !this.reclaim.has(asid);
  }

  isAwaitingReclaim(asid: number): boolean {
    return this.valid(asid) && this.reclaim.has(asid);
  }

  ownerOf(asid: number): string | undefined {
    return this.valid(asid) ? this.owners.get(asid) : undefined;
  }

  get inUse(): number {
    return this.taken.size - this.reclaim.size;
  }

  state(): SevAsidState<string> {
    const inUse = [...this.taken]
      .filter((a) => !this.reclaim.has(a))
      .sort((a, b) => a - b)
      .map((a) => [a, this.owners.get(a) as string] as const);
    const awaitingReclaim = [...this.reclaim].sort((a, b) => a - b);
    return { inUse, awaitingReclaim, flushes: this.flushes, recycles: this.recycles };
  }
}

/** The outcome of a call: its value, or what it threw (class, message, errno name). */
function outcome(f: () => unknown): unknown {
  try {
    return { value: f() };
  } catch (e) {
    const err = e as Error & { code?: string };
    return { threw: err.constructor.name, message: err.message, code: err.code };
  }
}

type SevOp =
  | { k: 'alloc'; es: boolean; n: number }
  | { k: 'free'; asid: number }
  | { k: 'freeHeld'; i: number }
  | { k: 'flushFails'; fails: boolean };

describe('SevAsidAllocator against a plain set-based model', () => {
  /** Everything the allocator tells, as one string. */
  function observe(x: SevAsidAllocator<string> | RefSev, maxSevAsid: number): string {
    const out: unknown[] = [x.state(), x.inUse, x.range(false), x.range(true)];
    for (let asid = -1; asid <= maxSevAsid + 2; asid++) {
      out.push(x.isInUse(asid), x.isAwaitingReclaim(asid), x.ownerOf(asid));
    }
    out.push(x.isInUse(1.5), x.ownerOf(Number.NaN));
    return JSON.stringify(out);
  }

  const op: fc.Arbitrary<SevOp> = fc.oneof(
    {
      weight: 6,
      arbitrary: fc.record({ k: fc.constant('alloc' as const), es: fc.boolean(), n: fc.integer({ min: 1, max: 12 }) }),
    },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('free' as const), asid: fc.integer({ min: -1, max: 90 }) }) },
    { weight: 6, arbitrary: fc.record({ k: fc.constant('freeHeld' as const), i: fc.nat() }) },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('flushFails' as const), fails: fc.boolean() }) },
  );

  /** Run `ops` on both, comparing everything after every step. */
  function replay(maxSevAsid: number, minSevAsid: number, ops: readonly SevOp[]): void {
    let fails = false;
    let hooked = 0;
    const s = new SevAsidAllocator<string>({ maxSevAsid, minSevAsid }, { onFlush: () => (hooked++, !fails) });
    const m = new RefSev(maxSevAsid, minSevAsid, () => !fails);
    let serial = 0;
    for (const o of ops) {
      switch (o.k) {
        case 'alloc':
          for (let i = 0; i < o.n; i++) {
            const owner = `vm${serial++}`;
            const got = outcome(() => s.alloc(o.es, owner));
            expect(got).toEqual(outcome(() => m.alloc(o.es, owner)));
          }
          break;
        case 'free':
          expect(outcome(() => s.free(o.asid))).toEqual(outcome(() => m.free(o.asid)));
          break;
        case 'freeHeld': {
          const held = m.state().inUse;
          if (held.length === 0) break;
          const asid = held[o.i % held.length]![0];
          s.free(asid);
          m.free(asid);
          break;
        }
        case 'flushFails':
          fails = o.fails;
          break;
      }
      expect(s.flushes).toBe(m.flushes);
      expect(s.recycles).toBe(m.recycles);
      expect(hooked).toBe(m.flushes);
      const got = observe(s, maxSevAsid);
      const want = observe(m, maxSevAsid);
      if (got !== want) expect(JSON.parse(got)).toEqual(JSON.parse(want));
    }
  }

  test('property: same ASIDs, errors, flushes, recycles and state as the model', () => {
    // Up to 80 ASIDs (three bitmap words); min_sev_asid from 0 (no SEV) to past max_sev_asid + 1.
    const geometry = fc
      .integer({ min: 0, max: 80 })
      .chain((max) =>
        fc.tuple(fc.constant(max), max === 0 ? fc.integer({ min: 0, max: 3 }) : fc.integer({ min: 1, max: max + 3 })),
      );
    fc.assert(
      fc.property(geometry, fc.array(op, { maxLength: 120, size: 'max' }), ([max, min], ops) => replay(max, min, ops)),
      { numRuns: 200 },
    );
  }, 30_000);

  test('property: large bitmaps (the full-word summary spans several words), filled and recycled', () => {
    // 1,100 … 2,200 ASIDs: 35 … 69 bitmap words, so "this word is full" needs 2 or 3 summary words.
    const geometry = fc
      .integer({ min: 1100, max: 2200 })
      .chain((max) => fc.tuple(fc.constant(max), fc.integer({ min: 1, max: 64 })));
    const bigOp: fc.Arbitrary<SevOp> = fc.oneof(
      {
        weight: 3,
        arbitrary: fc.record({
          k: fc.constant('alloc' as const),
          es: fc.boolean(),
          n: fc.integer({ min: 1, max: 900 }),
        }),
      },
      { weight: 4, arbitrary: fc.record({ k: fc.constant('freeHeld' as const), i: fc.nat() }) },
    );
    fc.assert(
      fc.property(geometry, fc.array(bigOp, { maxLength: 25, size: 'max' }), ([max, min], ops) =>
        replay(max, min, ops),
      ),
      { numRuns: 15 },
    );
  }, 60_000);
});
