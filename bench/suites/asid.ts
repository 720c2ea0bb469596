/**
 * 2. SEV ASID and per-CPU ASID paths (VAC's `AsidAllocator` and `SevAsidAllocator`, called directly).
 *
 * Baselines are Linux's algorithms written lean here, without what the model adds (the grant object, the
 * "who holds what" index that reports duplicate ASIDs, argument checks, owner tags):
 *
 * - per-CPU: `svm_cpu_data` as two typed arrays and `new_asid()` writing into the vCPU's VMCB fields;
 * - SEV: `sev_asid_bitmap` / `sev_reclaim_asid_bitmap` as flat `Uint32Array`s with `find_next_zero_bit`,
 *   `find_next_bit` and `bitmap_xor` (`arch/x86/kvm/svm/sev.c`).
 */
import { AsidAllocator, SevAsidAllocator } from '@vac/svm';
import { measure, row, sink, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';

const GROUP = '2. ASID paths';

/** What `new_asid()` writes into a VMCB. */
interface VmcbAsid {
  asid: number;
  generation: number;
  flushAll: boolean;
}

/** Linux's per-CPU ASID state and `new_asid()`, lean. */
class LeanAsids {
  readonly #gen: Float64Array;
  readonly #next: Float64Array;
  readonly #max: number;
  readonly #min: number;

  constructor(nrCpus: number, nrAsids: number, maxSevAsid: number) {
    this.#max = nrAsids - 1;
    this.#min = maxSevAsid + 1;
    this.#gen = new Float64Array(nrCpus).fill(1);
    this.#next = new Float64Array(nrCpus).fill(this.#max + 1);
  }

  newAsid(cpu: number, vmcb: VmcbAsid): void {
    let next = this.#next[cpu] as number;
    let flush = false;
    if (next > this.#max) {
      this.#gen[cpu] = (this.#gen[cpu] as number) + 1;
      next = this.#min;
      flush = true;
    }
    vmcb.asid = next;
    vmcb.generation = this.#gen[cpu] as number;
    vmcb.flushAll = flush;
    this.#next[cpu] = next + 1;
  }

  isCurrent(cpu: number, generation: number): boolean {
    return this.#gen[cpu] === generation;
  }
}

/** Linux's SEV ASID bitmaps (`sev_asid_new`, `sev_asid_free`, `__sev_recycle_asids`), lean. */
class LeanSev {
  readonly #bitmap: Uint32Array;
  readonly #reclaim: Uint32Array;
  readonly #min: number;
  readonly #max: number;
  recycles = 0;

  constructor(maxSevAsid: number, minSevAsid: number) {
    const words = Math.ceil((maxSevAsid + 1) / 32);
    this.#bitmap = new Uint32Array(words);
    this.#reclaim = new Uint32Array(words);
    this.#min = minSevAsid;
    this.#max = maxSevAsid;
  }

  /** `find_next_zero_bit(bitmap, max + 1, min)`, or -1. */
  #findZero(): number {
    const w = this.#bitmap;
    for (let i = this.#min; i <= this.#max; ) {
      const word = (w[i >>> 5] as number) | ((1 << (i & 31)) - 1);
      if (word !== -1 && word !== 0xffffffff) {
        const inv = ~word;
        const id = (i & ~31) | (31 - Math.clz32(inv & -inv));
        return id <= this.#max ? id : -1;
      }
      i = (i | 31) + 1;
    }
    return -1;
  }

  /** `find_next_bit(reclaim, nr_asids, min) <= max`. */
  #anyReclaim(): boolean {
    const r = this.#reclaim;
    for (let i = this.#min; i <= this.#max; ) {
      const word = (r[i >>> 5] as number) & ~((1 << (i & 31)) - 1);
      if (word !== 0) {
        const id = (i & ~31) | (31 - Math.clz32(word & -word));
        return id <= this.#max;
      }
      i = (i | 31) + 1;
    }
    return false;
  }

  alloc(): number {
    let retry = true;
    for (;;) {
      const asid = this.#findZero();
      if (asid >= 0) {
        this.#bitmap[asid >>> 5] = (this.#bitmap[asid >>> 5] as number) | (1 << (asid & 31));
        return asid;
      }
      if (retry && this.#anyReclaim()) {
        // wbinvd_on_all_cpus(); sev_guest_df_flush(); bitmap_xor(); bitmap_zero(reclaim)
        const a = this.#bitmap;
        const r = this.#reclaim;
        for (let i = 0; i < a.length; i++) a[i] = (a[i] as number) ^ (r[i] as number);
        r.fill(0);
        this.recycles++;
        retry = false;
        continue;
      }
      throw new Error('LeanSev: EBUSY');
    }
  }

  free(asid: number): void {
    this.#reclaim[asid >>> 5] = (this.#reclaim[asid >>> 5] as number) | (1 << (asid & 31));
  }
}

/** Run the group. */
export function runAsid(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const rows: Row[] = [];
  const batch = 512;
  const nrCpus = 64;
  const holders = Array.from({ length: 64 }, (_, i) => ({ instance: 'kvm0', vm: 1 + (i >> 2), vcpu: i & 3 }));

  // ---- new_asid, steady (amd() geometry: 32,768 ASIDs, SEV up to 509: a rollover every 32,258 grants) ----
  const steady = (nrAsids: number, maxSev: number, label: string, note: string): void => {
    const lean = new LeanAsids(nrCpus, nrAsids, maxSev);
    const vmcbs: VmcbAsid[] = holders.map(() => ({ asid: 0, generation: 0, flushAll: false }));
    const mLean = measure(
      b,
      `lean new_asid ${label}`,
      () => {
        for (let i = 0; i < batch; i++) lean.newAsid(i & 63, vmcbs[i & 63] as VmcbAsid);
        sink.n += (vmcbs[0] as VmcbAsid).asid;
      },
      { opsPerCall: batch },
    );
    const base = { label: `lean new_asid (Linux), ${label}`, m: mLean };
    rows.push(row(GROUP, 'lean new_asid (Linux; baseline)', label, mLean, undefined, { note }));
    const ours = new AsidAllocator<(typeof holders)[number]>({ nrCpus, nrAsids, maxSevAsid: maxSev });
    for (let c = 0; c < nrCpus; c++) ours.resetCpu(c);
    const mOurs = measure(
      b,
      `AsidAllocator.newAsid ${label}`,
      () => {
        let acc = 0;
        // 64 vCPUs, each on its own CPU in turn, so every grant replaces the holder's previous one.
        for (let i = 0; i < batch; i++) acc += ours.newAsid(i & 63, holders[(i + (i >> 6)) & 63] as (typeof holders)[number]).asid;
        sink.n += acc;
      },
      { opsPerCall: batch },
    );
    if (ours.conflicts.length > 0) throw new Error(`AsidAllocator reported ${ours.conflicts.length} duplicate grants`);
    rows.push(row(GROUP, 'AsidAllocator.newAsid (ours)', label, mOurs, base, { note }));
  };
  steady(32768, 509, 'steady (32,768 ASIDs)', 'new_asid on entry; rollover amortised (1 in 32,258)');
  steady(2, 0, 'rollover every call (1 ASID)', 'new_asid that rolls the generation over and flushes');

  // ---- pre_svm_run: is the VMCB's generation current? (what most entries do instead of new_asid) ----
  {
    const lean = new LeanAsids(nrCpus, 32768, 509);
    const mLean = measure(
      b,
      'lean isCurrent',
      () => {
        let acc = 0;
        for (let i = 0; i < batch; i++) if (lean.isCurrent(i & 63, 1)) acc++;
        sink.n += acc;
      },
      { opsPerCall: batch },
    );
    rows.push(row(GROUP, 'lean generation check (Linux; baseline)', 'pre_svm_run check', mLean, undefined, { note: 'asid_generation == sd->asid_generation' }));
    const ours = new AsidAllocator({ nrCpus, nrAsids: 32768, maxSevAsid: 509 });
    for (let c = 0; c < nrCpus; c++) ours.resetCpu(c);
    const mOurs = measure(
      b,
      'AsidAllocator.isCurrent',
      () => {
        let acc = 0;
        for (let i = 0; i < batch; i++) if (ours.isCurrent(i & 63, 1)) acc++;
        sink.n += acc;
      },
      { opsPerCall: batch },
    );
    rows.push(row(GROUP, 'AsidAllocator.isCurrent (ours)', 'pre_svm_run check', mOurs, { label: 'lean generation check', m: mLean }, { note: 'asid_generation == sd->asid_generation' }));
  }

  // ---- SEV: alloc + free (amd() geometry: SEV ASIDs 100…509), a recycle every 410 pairs ----
  const maxSev = 509;
  const minSev = 100;
  {
    const lean = new LeanSev(maxSev, minSev);
    const mLean = measure(
      b,
      'lean sev alloc+free',
      () => {
        let acc = 0;
        for (let i = 0; i < batch; i++) {
          const a = lean.alloc();
          lean.free(a);
          acc += a;
        }
        sink.n += acc;
      },
      { opsPerCall: batch },
    );
    const base = { label: 'lean SEV bitmaps (Linux), alloc+free', m: mLean };
    rows.push(row(GROUP, 'lean SEV bitmaps (Linux; baseline)', 'SEV alloc+free, recycle amortised', mLean, undefined, { note: '410 SEV ASIDs: a recycle every 410 pairs' }));
    let flushes = 0;
    const ours = new SevAsidAllocator<string>({ maxSevAsid: maxSev, minSevAsid: minSev }, { onFlush: () => void flushes++ });
    const mOurs = measure(
      b,
      'SevAsidAllocator alloc+free',
      () => {
        let acc = 0;
        for (let i = 0; i < batch; i++) {
          const a = ours.alloc(false, 'vm');
          ours.free(a);
          acc += a;
        }
        sink.n += acc;
      },
      { opsPerCall: batch },
    );
    if (flushes === 0 || ours.recycles !== flushes) throw new Error(`SevAsidAllocator: ${flushes} flushes, ${ours.recycles} recycles`);
    rows.push(row(GROUP, 'SevAsidAllocator (ours)', 'SEV alloc+free, recycle amortised', mOurs, base, { note: '410 SEV ASIDs: a recycle every 410 pairs' }));
  }

  // ---- SEV: the allocation that recycles (every SEV ASID freed and awaiting reclaim) ----
  {
    const range = maxSev - minSev + 1;
    const recycleOpts = { time: b.quick ? 5 : 60, iterations: b.quick ? 5 : 400 };
    /** Time one allocation from the state "every ASID of the range reclaimable"; the untimed part gets there. */
    const timeRecycle = (name: string, alloc: () => number, free: (a: number) => void): Measurement => {
      const held: number[] = [];
      return measure(b, name, () => void held.push(alloc()), {
        ...recycleOpts,
        beforeEach: () => {
          // Take what is left of the range (no recycle: there are free ASIDs), then free everything.
          while (held.length < range) held.push(alloc());
          for (const a of held) free(a);
          held.length = 0;
        },
      });
    };
    const lean = new LeanSev(maxSev, minSev);
    const mLean = timeRecycle('lean sev recycle', () => lean.alloc(), (a) => lean.free(a));
    const base = { label: 'lean SEV bitmaps (Linux), recycle', m: mLean };
    rows.push(row(GROUP, 'lean SEV bitmaps (Linux; baseline)', 'SEV alloc that recycles', mLean, undefined, { note: 'flush + bitmap_xor + bitmap_zero, then the allocation' }));
    const ours = new SevAsidAllocator<string>({ maxSevAsid: maxSev, minSevAsid: minSev });
    const mOurs = timeRecycle('SevAsidAllocator recycle', () => ours.alloc(false, 'vm'), (a) => ours.free(a));
    // Every timed allocation must have recycled (correctness of the setup, not timing).
    if (ours.recycles < mOurs.samples || lean.recycles < mLean.samples) throw new Error(`SEV recycle: ours recycled ${ours.recycles} times in ${mOurs.samples} calls, the baseline ${lean.recycles} in ${mLean.samples}`);
    rows.push(row(GROUP, 'SevAsidAllocator (ours)', 'SEV alloc that recycles', mOurs, base, { note: 'flush + bitmap_xor + bitmap_zero, then the allocation' }));
  }
  return { rows, targets: [] };
}

