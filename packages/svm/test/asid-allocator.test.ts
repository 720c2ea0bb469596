import fc from 'fast-check';
import { describe, expect, test } from 'vitest';

import { UsageError } from '@vac/core';
import { AsidAllocator, type AsidConflict, type AsidGrant } from '../src/asid-allocator.js';

/** nrAsids 16, max_sev_asid 4 → ordinary ASIDs 5 … 15 (11 per generation). */
function small(nrCpus = 2): AsidAllocator<string> {
  return new AsidAllocator<string>({ nrCpus, nrAsids: 16, maxSevAsid: 4 });
}

describe('AsidAllocator (svm_cpu_data, new_asid, pre_svm_run)', () => {
  test('geometry: max = nrAsids - 1, min = max_sev_asid + 1, next starts at max + 1', () => {
    const a = small();
    expect(a.maxAsid).toBe(15);
    expect(a.minAsid).toBe(5);
    expect(a.generation(0)).toBe(0);
    a.resetCpu(0);
    expect(a.generation(0)).toBe(1);
    expect(a.nextAsid(0)).toBe(16);
  });

  test('the first new_asid after enable rolls over (generation 2, flush all)', () => {
    const a = small();
    a.resetCpu(0);
    expect(a.newAsid(0, 'v0')).toEqual({ asid: 5, generation: 2, flushAll: true });
    expect(a.newAsid(0, 'v1')).toEqual({ asid: 6, generation: 2, flushAll: false });
    expect(a.rollovers).toBe(1);
    expect(a.holders(0)).toEqual([
      [5, 'v0'],
      [6, 'v1'],
    ]);
  });

  test('rollover when next > max: generation + 1, next = min, flushAll', () => {
    const a = small();
    a.resetCpu(0);
    const asids: number[] = [];
    for (let i = 0; i < 11; i++) asids.push(a.newAsid(0, `v${i}`).asid);
    expect(asids).toEqual([5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
    expect(a.nextAsid(0)).toBe(16);
    expect(a.isCurrent(0, 2)).toBe(true);
    const g = a.newAsid(0, 'v11');
    expect(g).toEqual({ asid: 5, generation: 3, flushAll: true });
    expect(a.rollovers).toBe(2);
    expect(a.isCurrent(0, 2)).toBe(false);
    // Older-generation holders are stale: only v11 is current.
    expect(a.holders(0)).toEqual([[5, 'v11']]);
    expect(a.holderOf(0, 6)).toBeUndefined();
    expect(a.grantOf('v0')).toBeUndefined();
    expect(a.grantOf('v11')).toEqual({ cpu: 0, asid: 5, generation: 3 });
    expect(a.conflicts).toEqual([]);
  });

  test('CPUs are independent; isCurrent compares the recorded generation', () => {
    const a = small(3);
    a.resetCpu(0);
    a.resetCpu(1);
    const g0 = a.newAsid(0, 'x');
    const g1 = a.newAsid(1, 'y');
    expect(g0.asid).toBe(5);
    expect(g1.asid).toBe(5);
    expect(a.isCurrent(0, g0.generation)).toBe(true);
    expect(a.isCurrent(0, 0)).toBe(false); // pre_svm_run zeroes the generation of a vCPU that moved CPUs
    expect(a.isCurrent(2, 0)).toBe(false); // CPU 2 never enabled
    expect(() => a.newAsid(2, 'z')).toThrow(UsageError);
    expect(() => a.newAsid(3, 'z')).toThrow(UsageError);
  });

  test('a holder that takes a new ASID (migration, or asid_generation--) drops its old entry', () => {
    const a = small();
    a.resetCpu(0);
    a.resetCpu(1);
    a.newAsid(0, 'v');
    a.newAsid(0, 'v');
    expect(a.holders(0)).toEqual([[6, 'v']]);
    a.newAsid(1, 'v');
    expect(a.holders(0)).toEqual([]);
    expect(a.holders(1)).toEqual([[5, 'v']]);
    a.releaseHolder('v');
    expect(a.holders(1)).toEqual([]);
    expect(a.grantOf('v')).toBeUndefined();
    a.releaseHolder('never-seen');
  });

  test('8192 CPUs are cheap (typed arrays, lazy holder maps)', () => {
    const a = new AsidAllocator<number>({ nrCpus: 8192, nrAsids: 32768, maxSevAsid: 509 });
    for (let cpu = 0; cpu < 8192; cpu++) a.resetCpu(cpu);
    expect(a.newAsid(8191, 1)).toEqual({ asid: 510, generation: 2, flushAll: true });
    expect(a.generation(4000)).toBe(1);
  });

  test('invalid geometry is a usage error', () => {
    expect(() => new AsidAllocator({ nrCpus: 0, nrAsids: 16, maxSevAsid: 0 })).toThrow(UsageError);
    expect(() => new AsidAllocator({ nrCpus: 8193, nrAsids: 16, maxSevAsid: 0 })).toThrow(UsageError);
    expect(() => new AsidAllocator({ nrCpus: 1, nrAsids: 1, maxSevAsid: 0 })).toThrow(UsageError);
    expect(() => new AsidAllocator({ nrCpus: 1, nrAsids: 16, maxSevAsid: 15 })).toThrow(UsageError);
    expect(new AsidAllocator({ nrCpus: 1, nrAsids: 16, maxSevAsid: 14 }).minAsid).toBe(15);
  });

  test('two modules sharing the state never get the same ASID on a CPU in a generation', () => {
    const a = small(1);
    a.resetCpu(0);
    const kvm0 = a.newAsid(0, 'kvm0/vm1/vcpu0');
    const kvm1 = a.newAsid(0, 'kvm1/vm1/vcpu0');
    expect(kvm0.generation).toBe(kvm1.generation);
    expect(kvm0.asid).not.toBe(kvm1.asid);
  });

  test('re-enable never reuses a generation (Linux resets to 1; VAC continues), so a stale grant stays stale', () => {
    const a = small(1);
    a.resetCpu(0);
    const old = a.newAsid(0, 'A'); // generation 2, ASID 5
    expect(old).toEqual({ asid: 5, generation: 2, flushAll: true });
    a.resetCpu(0); // suspend/resume: Linux's svm_hardware_enable would set asid_generation = 1 again
    expect(a.generation(0)).toBe(3);
    const b = a.newAsid(0, 'B'); // rolls over to generation 4, ASID 5, flushing every ASID
    expect(b).toEqual({ asid: 5, generation: 4, flushAll: true });
    expect(a.isCurrent(0, old.generation)).toBe(false); // A must take a new ASID
    expect(a.conflicts).toEqual([]);
  });

  test('property: no duplicate ASID within a CPU generation; ASIDs stay in [min, max]', () => {
    const step = fc.tuple(fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 29 }), fc.boolean());
    fc.assert(
      fc.property(fc.array(step, { maxLength: 300 }), (steps) => {
        const a = small(3);
        for (let cpu = 0; cpu < 3; cpu++) a.resetCpu(cpu);
        // What each vCPU's VMCB recorded: (cpu, generation, asid).
        const vmcb = new Map<string, { cpu: number; generation: number; asid: number }>();
        for (const [cpu, v, release] of steps) {
          const holder = `v${v}`;
          if (release) {
            a.releaseHolder(holder);
            vmcb.delete(holder);
            continue;
          }
          // pre_svm_run: a new ASID when the vCPU moved or its generation is stale.
          const rec = vmcb.get(holder);
          if (rec === undefined || rec.cpu !== cpu || !a.isCurrent(cpu, rec.generation)) {
            const g = a.newAsid(cpu, holder);
            expect(g.asid).toBeGreaterThanOrEqual(a.minAsid);
            expect(g.asid).toBeLessThanOrEqual(a.maxAsid);
            vmcb.set(holder, { cpu, generation: g.generation, asid: g.asid });
          }
          for (let c = 0; c < 3; c++) {
            const current = [...vmcb.values()].filter((r) => r.cpu === c && a.isCurrent(c, r.generation));
            const asids = current.map((r) => r.asid);
            expect(new Set(asids).size).toBe(asids.length);
            expect(a.holders(c).map(([asid]) => asid)).toEqual([...asids].sort((x, y) => x - y));
          }
        }
        expect(a.conflicts).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });
});

// ---- The optimised allocator against a plain model ---------------------------------------------------------

/** A holder's grant in the model. */
interface RefGrant {
  cpu: number;
  asid: number;
  generation: number;
}

/**
 * The reference: `svm_cpu_data` and `new_asid()` written the obvious way, with the "who holds what" index as
 * one `Map` keyed by (CPU, generation, ASID) and each holder's latest grant in another (what AsidAllocator
 * did before it was optimised).
 */
class RefAsids<H> {
  readonly maxAsid: number;
  readonly minAsid: number;
  readonly generations: number[];
  readonly next: number[];
  readonly conflicts: AsidConflict<H>[] = [];
  rollovers = 0;
  readonly index = new Map<string, H>();
  readonly grants = new Map<H, RefGrant>();

  constructor(
    readonly nrCpus: number,
    nrAsids: number,
    maxSevAsid: number,
  ) {
    this.maxAsid = nrAsids - 1;
    this.minAsid = maxSevAsid + 1;
    this.generations = new Array<number>(nrCpus).fill(0);
    this.next = new Array<number>(nrCpus).fill(nrAsids);
  }

  static key(cpu: number, generation: number, asid: number): string {
    return `${cpu}/${generation}/${asid}`;
  }

  check(cpu: number): void {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.nrCpus) {
      throw new UsageError('ERR_NO_SUCH_CPU', `CPU ${String(cpu)} is not in [0, ${this.nrCpus - 1}]`);
    }
  }

  generation(cpu: number): number {
    this.check(cpu);
    return this.generations[cpu]!;
  }

  nextAsid(cpu: number): number {
    this.check(cpu);
    return this.next[cpu]!;
  }

  resetCpu(cpu: number): void {
    this.check(cpu);
    this.generations[cpu]!++;
    this.next[cpu] = this.maxAsid + 1;
  }

  isCurrent(cpu: number, generation: number): boolean {
    this.check(cpu);
    return this.generations[cpu] !== 0 && this.generations[cpu] === generation;
  }

  newAsid(cpu: number, holder: H): AsidGrant {
    this.check(cpu);
    if (this.generations[cpu] === 0) {
      throw new UsageError('ERR_INVALID_STATE', `new_asid: CPU ${cpu} has no ASID state (SVM was never enabled on it)`);
    }
    let flushAll = false;
    if (this.next[cpu]! > this.maxAsid) {
      this.generations[cpu]!++;
      this.next[cpu] = this.minAsid;
      flushAll = true;
      this.rollovers++;
    }
    const asid = this.next[cpu]!;
    this.next[cpu] = asid + 1;
    const generation = this.generations[cpu]!;
    this.drop(holder);
    const k = RefAsids.key(cpu, generation, asid);
    const previous = this.index.get(k);
    if (previous !== undefined) this.conflicts.push({ cpu, asid, generation, previous, next: holder });
    this.index.set(k, holder);
    this.grants.set(holder, { cpu, asid, generation });
    return { asid, generation, flushAll };
  }

  /** Remove the holder's latest grant from the index, if it is still the one indexed there. */
  drop(holder: H): void {
    const g = this.grants.get(holder);
    if (g === undefined) return;
    const k = RefAsids.key(g.cpu, g.generation, g.asid);
    if (this.index.get(k) === holder) this.index.delete(k);
  }

  holderOf(cpu: number, asid: number): H | undefined {
    this.check(cpu);
    return this.index.get(RefAsids.key(cpu, this.generations[cpu]!, asid));
  }

  holders(cpu: number): [number, H][] {
    this.check(cpu);
    const out: [number, H][] = [];
    for (const [k, h] of this.index) {
      const [c, g, a] = k.split('/').map(Number) as [number, number, number];
      if (c === cpu && g === this.generations[cpu]) out.push([a, h]);
    }
    return out.sort((x, y) => x[0] - y[0]);
  }

  grantOf(holder: H): RefGrant | undefined {
    const g = this.grants.get(holder);
    return g !== undefined && this.generations[g.cpu] === g.generation ? g : undefined;
  }

  releaseHolder(holder: H): void {
    this.drop(holder);
    this.grants.delete(holder);
  }
}

/** The outcome of a call: its value, or the class and message of what it threw. */
function outcome(f: () => unknown): unknown {
  try {
    return { value: f() };
  } catch (e) {
    return { threw: (e as Error).constructor.name, message: (e as Error).message };
  }
}

/**
 * Break invariant 3 on purpose: set `next_asid` of a CPU back, so the next grants repeat ASIDs of the
 * current generation. Nothing in the API can do this; the allocator's conflict reporting exists for a
 * state corrupted this way, so the test reaches into its private per-CPU array (and the model's).
 */
function rewind(a: AsidAllocator<unknown>, cpu: number, next: number): void {
  (a as unknown as { nextAsids: Float64Array }).nextAsids[cpu] = next;
}

type Op =
  | { k: 'new'; cpu: number; h: number }
  | { k: 'reset'; cpu: number }
  | { k: 'release'; h: number }
  | { k: 'rewind'; cpu: number; by: number };

describe('AsidAllocator against a plain Map-based model', () => {
  const NR_CPUS = 3;
  const NR_HOLDERS = 24;

  /** The calls both answer the same way (the model has the allocator's public methods, by the same names). */
  type Observable = Pick<
    AsidAllocator<object>,
    'rollovers' | 'conflicts' | 'generation' | 'nextAsid' | 'holders' | 'holderOf' | 'isCurrent' | 'grantOf'
  >;

  /**
   * Every observable, as one string (holders by their index): results of every query on every CPU, with
   * out-of-range CPUs and ASIDs, and the errors thrown. `grantOf` must also return the same object twice for
   * the same grant, as before.
   */
  function observe(x: Observable, holders: readonly object[], nrAsids: number): string {
    const id = (h: object | undefined): number | undefined => (h === undefined ? undefined : holders.indexOf(h));
    const conflicts = x.conflicts.map((c) => ({ ...c, previous: id(c.previous), next: id(c.next) }));
    const out: unknown[] = [x.rollovers, conflicts];
    for (let cpu = 0; cpu < NR_CPUS; cpu++) {
      const g = x.generation(cpu);
      out.push(g, x.nextAsid(cpu), x.holders(cpu).map(([asid, h]) => [asid, id(h)]));
      for (let asid = -1; asid <= nrAsids; asid++) out.push(id(x.holderOf(cpu, asid)));
      for (const gen of [0, g - 1, g, g + 1]) out.push(x.isCurrent(cpu, gen));
    }
    for (const h of holders) {
      const grant = x.grantOf(h);
      out.push(grant === undefined ? null : { ...grant, same: x.grantOf(h) === grant });
    }
    return JSON.stringify(out);
  }

  /** Compare, with a readable diff only when they differ (expect on every value would be slow). */
  function compare(a: AsidAllocator<object>, m: RefAsids<object>, holders: readonly object[], nrAsids: number): void {
    const got = observe(a, holders, nrAsids);
    const want = observe(m, holders, nrAsids);
    if (got !== want) expect(JSON.parse(got)).toEqual(JSON.parse(want));
  }

  const op: fc.Arbitrary<Op> = fc.oneof(
    {
      weight: 12,
      arbitrary: fc.record({
        k: fc.constant('new' as const),
        cpu: fc.integer({ min: -1, max: NR_CPUS }), // -1 and NR_CPUS: not CPUs
        h: fc.nat(NR_HOLDERS - 1),
      }),
    },
    { weight: 1, arbitrary: fc.record({ k: fc.constant('reset' as const), cpu: fc.nat(NR_CPUS - 1) }) },
    { weight: 2, arbitrary: fc.record({ k: fc.constant('release' as const), h: fc.nat(NR_HOLDERS - 1) }) },
    {
      weight: 1,
      arbitrary: fc.record({
        k: fc.constant('rewind' as const),
        cpu: fc.nat(NR_CPUS - 1),
        by: fc.integer({ min: 1, max: 6 }),
      }),
    },
  );

  /** Run `ops` on both, comparing results after every step. */
  function replay(nrAsids: number, maxSevAsid: number, ops: readonly Op[], resetFirst: boolean): void {
    const a = new AsidAllocator<object>({ nrCpus: NR_CPUS, nrAsids, maxSevAsid });
    const m = new RefAsids<object>(NR_CPUS, nrAsids, maxSevAsid);
    const holders = Array.from({ length: NR_HOLDERS }, (_, i) => ({ vcpu: i }));
    if (resetFirst) {
      for (let cpu = 0; cpu < NR_CPUS - 1; cpu++) {
        a.resetCpu(cpu);
        m.resetCpu(cpu);
      }
    }
    for (const o of ops) {
      switch (o.k) {
        case 'new': {
          const h = holders[o.h]!;
          expect(outcome(() => a.newAsid(o.cpu, h))).toEqual(outcome(() => m.newAsid(o.cpu, h)));
          break;
        }
        case 'reset':
          a.resetCpu(o.cpu);
          m.resetCpu(o.cpu);
          break;
        case 'release':
          a.releaseHolder(holders[o.h]!);
          m.releaseHolder(holders[o.h]!);
          break;
        case 'rewind': {
          // next_asid - by (at least min): the next grants repeat ASIDs of this generation (or, right after a
          // reset, are made in the reset's generation without a rollover).
          const next = Math.max(m.minAsid, m.next[o.cpu]! - o.by);
          rewind(a, o.cpu, next);
          m.next[o.cpu] = next;
          break;
        }
      }
      compare(a, m, holders, nrAsids);
    }
    // Errors for CPU numbers that are not CPUs (once per run: exceptions are slow to make).
    for (const cpu of [-1, NR_CPUS, 0.5, Number.NaN, -0]) {
      expect(outcome(() => a.holders(cpu))).toEqual(outcome(() => m.holders(cpu)));
      expect(outcome(() => a.isCurrent(cpu, 1))).toEqual(outcome(() => m.isCurrent(cpu, 1)));
      expect(outcome(() => a.generation(cpu))).toEqual(outcome(() => m.generation(cpu)));
      expect(outcome(() => a.nextAsid(cpu))).toEqual(outcome(() => m.nextAsid(cpu)));
      expect(outcome(() => a.holderOf(cpu, 5))).toEqual(outcome(() => m.holderOf(cpu, 5)));
      const h = holders[0]!;
      expect(outcome(() => a.newAsid(cpu, h))).toEqual(outcome(() => m.newAsid(cpu, h)));
    }
    // Not even a number (JavaScript callers): rejected as before, not read as an index.
    for (const cpu of ['0', '1', null] as unknown as number[]) {
      expect(outcome(() => a.isCurrent(cpu, 1))).toEqual(outcome(() => m.isCurrent(cpu, 1)));
      expect(outcome(() => a.newAsid(cpu, holders[0]!))).toEqual(outcome(() => m.newAsid(cpu, holders[0]!)));
    }
  }

  test('property: same results as the model for every call, with rollovers, releases and conflicts', () => {
    const geometry = fc
      .integer({ min: 2, max: 40 })
      .chain((nrAsids) => fc.tuple(fc.constant(nrAsids), fc.integer({ min: 0, max: Math.min(4, nrAsids - 2) })));
    fc.assert(
      fc.property(
        geometry,
        fc.array(op, { maxLength: 200, size: 'max' }),
        fc.boolean(),
        ([nrAsids, maxSev], ops, resetFirst) => replay(nrAsids, maxSev, ops, resetFirst),
      ),
      { numRuns: 150 },
    );
  }, 30_000);

  test('conflicts: a duplicate grant is reported, displaces the listed holder, and the rest follows the model', () => {
    const a = small(1);
    const [x, y, z] = ['x', 'y', 'z'];
    a.resetCpu(0);
    expect(a.newAsid(0, x)).toEqual({ asid: 5, generation: 2, flushAll: true });
    expect(a.newAsid(0, y)).toEqual({ asid: 6, generation: 2, flushAll: false });
    rewind(a as AsidAllocator<unknown>, 0, 5);
    expect(a.newAsid(0, z)).toEqual({ asid: 5, generation: 2, flushAll: false });
    expect(a.conflicts).toEqual([{ cpu: 0, asid: 5, generation: 2, previous: x, next: z }]);
    expect(a.holderOf(0, 5)).toBe(z);
    expect(a.holders(0)).toEqual([
      [5, z],
      [6, y],
    ]);
    // The displaced holder keeps its grant, but no longer holds the ASID: releasing it changes nothing.
    expect(a.grantOf(x)).toEqual({ cpu: 0, asid: 5, generation: 2 });
    a.releaseHolder(x);
    expect(a.holderOf(0, 5)).toBe(z);
    // The same holder given its own ASID again is no conflict (next_asid is 6 after the rewind).
    expect(a.newAsid(0, y)).toEqual({ asid: 6, generation: 2, flushAll: false });
    expect(a.conflicts).toHaveLength(1);
    // A repeated ASID whose holder has moved on is no conflict either.
    expect(a.newAsid(0, y)).toEqual({ asid: 7, generation: 2, flushAll: false });
    rewind(a as AsidAllocator<unknown>, 0, 6);
    expect(a.newAsid(0, x)).toEqual({ asid: 6, generation: 2, flushAll: false });
    expect(a.conflicts).toHaveLength(1);
    expect(a.holders(0)).toEqual([
      [5, z],
      [6, x],
      [7, y],
    ]);
    expect(a.grantOf(x)).toEqual({ cpu: 0, asid: 6, generation: 2 });
  });

  test('a CPU list stays proportional to the holders on it, not to the grants or the ASID space', () => {
    const a = new AsidAllocator<number>({ nrCpus: 2, nrAsids: 32768, maxSevAsid: 509 });
    a.resetCpu(0);
    a.resetCpu(1);
    // Four vCPUs bouncing between two CPUs: 100,000 grants, never more than four holders per CPU.
    for (let i = 0; i < 100_000; i++) a.newAsid(i & 1, (i >> 1) & 3);
    expect(a.rollovers).toBeGreaterThan(2);
    const lists = (a as unknown as { lists: ({ recs: unknown[] } | undefined)[] }).lists;
    for (const list of lists) expect(list?.recs.length).toBeLessThanOrEqual(16);
    expect(a.holders(0).length + a.holders(1).length).toBe(4);
  });
});
