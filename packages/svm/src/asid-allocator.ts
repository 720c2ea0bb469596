/**
 * VAC's per-CPU generational ASID state for SVM guests (not SEV: see `sev.ts`).
 *
 * Models the ASID fields of `struct svm_cpu_data` (`arch/x86/kvm/svm/svm.h`) and the code that uses them in
 * `arch/x86/kvm/svm/svm.c`:
 *
 * - `svm_hardware_enable()` (v6.12: `svm_enable_virtualization_cpu()`), on every per-CPU enable:
 *   `asid_generation = 1`, `max_asid = cpuid_ebx(0x8000000A) - 1`, `next_asid = max_asid + 1` (so the first
 *   use rolls over), `min_asid = max_sev_asid + 1` (ASIDs 1 … max_sev_asid belong to SEV guests);
 * - `pre_svm_run()`: a vCPU whose VMCB's `asid_generation` differs from the CPU's (or that last ran on
 *   another CPU, which zeroes its generation) calls `new_asid()`;
 * - `new_asid()`: if `next_asid > max_asid`, `++asid_generation`, `next_asid = min_asid` and the VMCB's
 *   `tlb_ctl = TLB_CONTROL_FLUSH_ALL_ASID`; then the vCPU takes `next_asid++` and the CPU's generation.
 *
 * ASIDs therefore belong to a (vCPU, physical CPU, generation) triple. The RFC shares `svm_data` through VAC
 * so that two modules never hold the same ASID on one CPU in one generation (docs/spec.md §2.3, invariant 3); this
 * class is that shared state. Per-CPU numbers live in typed arrays (8,192 CPUs cost about 200 KiB); the
 * "who holds what" index used for introspection is created per CPU on first use, and grows with the holders
 * listed there, not with the ASID space (see {@link AsidAllocator}).
 *
 * A Linux hazard closed on purpose [R]: Linux puts the generation back to 1 on every enable, so a vCPU that
 * kept a generation-2 ASID across a disable/enable on the same CPU (suspend/resume) compares as current again
 * once the CPU rolls over to generation 2. `resetCpu` never reuses a generation number on a CPU (see there
 * and docs/fidelity.md); should an ASID still be handed out twice in one generation of a CPU, the index
 * reports it in {@link AsidAllocator.conflicts} instead of letting it go unnoticed.
 *
 * @module
 */

import { UsageError } from '@vac/core';

/** Geometry of the ASID space, from CPUID. */
export interface AsidAllocatorConfig {
  /** Number of logical CPUs (1 … 8192). */
  readonly nrCpus: number;
  /** Number of ASIDs, `CPUID 0x8000000A EBX` (ASIDs 0 … nrAsids-1; 0 is the host's). */
  readonly nrAsids: number;
  /** `max_sev_asid` (`CPUID 0x8000001F ECX`, 0 without SEV): ASIDs 1 … maxSevAsid are kept for SEV guests. */
  readonly maxSevAsid: number;
}

/** The result of {@link AsidAllocator.newAsid}: what `new_asid()` writes into the VMCB. */
export interface AsidGrant {
  /** The ASID (`vmcb->control.asid`). */
  readonly asid: number;
  /** The CPU's generation it belongs to (recorded in the VMCB as `asid_generation`). */
  readonly generation: number;
  /** Whether this entry must flush every ASID (`tlb_ctl = TLB_CONTROL_FLUSH_ALL_ASID`): the CPU rolled over. */
  readonly flushAll: boolean;
}

/** A holder's current grant, as {@link AsidAllocator.grantOf} reports it. */
export interface AsidHolding {
  /** The physical CPU. */
  readonly cpu: number;
  /** The ASID. */
  readonly asid: number;
  /** The generation it was granted in (the CPU's current one). */
  readonly generation: number;
}

/** Two holders given the same ASID on the same CPU in the same generation (a broken invariant 3). */
export interface AsidConflict<Holder> {
  /** The physical CPU. */
  readonly cpu: number;
  /** The ASID. */
  readonly asid: number;
  /** The generation. */
  readonly generation: number;
  /** The holder that had it first. */
  readonly previous: Holder;
  /** The holder that was just given it. */
  readonly next: Holder;
}

/** The error of a CPU number out of range (built out of line, so the checks stay small enough to inline). */
function badCpu(cpu: number, nrCpus: number): UsageError {
  return new UsageError('ERR_NO_SUCH_CPU', `CPU ${String(cpu)} is not in [0, ${nrCpus - 1}]`);
}

/** Initial capacity of a CPU's list (doubled when it is full and more than half of it is live). */
const INITIAL_LIST = 8;

/**
 * One holder: its latest grant, and where that grant is listed. One per holder for its whole life, updated
 * in place by every grant.
 */
class HolderRecord<Holder> {
  /** The holder. */
  readonly holder: Holder;
  /** CPU of the latest grant. */
  cpu = 0;
  /** ASID of the latest grant. */
  asid = 0;
  /** Generation of the latest grant. */
  generation = 0;
  /**
   * Index of the latest grant's entry in its CPU's list, or -1 when it is not listed (released, or displaced
   * by a duplicate grant). The entry at index `i` of CPU `c`'s list is **live** iff its record has
   * `pos === i && cpu === c && generation === ` the CPU's current generation; any other entry is dead.
   */
  pos = -1;
  /** What {@link AsidAllocator.grantOf} last returned, returned again while it describes the latest grant. */
  holding: AsidHolding | undefined = undefined;

  /** @param holder - the holder */
  constructor(holder: Holder) {
    this.holder = holder;
  }
}

/**
 * The grants of one CPU's current generation, in grant order, which is increasing ASID order (`new_asid`
 * counts up within a generation): a grant is an append. A holder that moves on (a new grant anywhere, or
 * released) leaves a dead entry behind and nothing else is touched; dead entries are dropped when the list
 * is full, and the list only doubles when more than half of it is live, so its size follows the number of
 * holders listed, not the ASID space. Emptied when the CPU's generation changes.
 */
class CpuList<Holder> {
  /** The entries; `null` at and above `len`. */
  recs: (HolderRecord<Holder> | null)[] = new Array<HolderRecord<Holder> | null>(INITIAL_LIST).fill(null);
  /** Entries in use (live and dead). */
  len = 0;
  /** The highest ASID appended since the list was last emptied (0: none): a normal grant exceeds it. */
  top = 0;

  /** Forget every entry (the CPU's generation changed). */
  clear(): void {
    const recs = this.recs;
    for (let i = 0; i < this.len; i++) recs[i] = null;
    this.len = 0;
    this.top = 0;
  }

  /** Drop the dead entries (keeping the order) for a CPU in `generation`; returns how many are left. */
  compact(cpu: number, generation: number): number {
    const recs = this.recs;
    const n = this.len;
    let kept = 0;
    for (let i = 0; i < n; i++) {
      const r = recs[i] as HolderRecord<Holder>;
      if (r.pos !== i || r.cpu !== cpu || r.generation !== generation) continue;
      recs[kept] = r;
      r.pos = kept;
      kept++;
    }
    for (let i = kept; i < n; i++) recs[i] = null;
    this.len = kept;
    return kept;
  }

  /** Room for one more entry: compact, then double if still more than half full. */
  makeRoom(cpu: number, generation: number): void {
    const kept = this.compact(cpu, generation);
    if (kept * 2 <= this.recs.length) return;
    const recs = new Array<HolderRecord<Holder> | null>(this.recs.length * 2).fill(null);
    for (let i = 0; i < kept; i++) recs[i] = this.recs[i] as HolderRecord<Holder>;
    this.recs = recs;
  }
}

/**
 * The `svm_data` ASID state of every CPU, shared by all modules.
 *
 * How it is kept: per CPU, `asid_generation` and `next_asid` in typed arrays, and (from the CPU's first
 * grant) a list (`CpuList`) of the grants of its current generation; per holder, a record of its latest
 * grant, found through one `Map` lookup. {@link AsidAllocator.newAsid} updates the record and appends it to
 * the CPU's list, and does not touch the CPU the holder came from (its old entry is recognised as dead). It
 * allocates only the {@link AsidGrant} it returns.
 *
 * @typeParam Holder - the identity of an ASID user (a vCPU's VMCB: e.g. `{ module, vm, vcpu }`), compared
 *   with `===`
 */
export class AsidAllocator<Holder = unknown> {
  /** Number of logical CPUs. */
  readonly nrCpus: number;
  /** `max_asid = nrAsids - 1`, the highest ASID ordinary guests use. */
  readonly maxAsid: number;
  /** `min_asid = max_sev_asid + 1`, the lowest ASID ordinary guests use. */
  readonly minAsid: number;
  /** Every duplicate grant seen (empty while invariant 3 holds). */
  readonly conflicts: AsidConflict<Holder>[] = [];
  /** `asid_generation` per CPU (a u64 in Linux; exact here up to 2^53). 0 = never enabled. */
  private readonly generations: Float64Array;
  /** `next_asid` per CPU. */
  private readonly nextAsids: Float64Array;
  /** Per CPU, the grants of its current generation; created on the CPU's first grant. */
  private readonly lists: (CpuList<Holder> | undefined)[];
  /** Each holder's record, until {@link AsidAllocator.releaseHolder}. */
  private readonly records = new Map<Holder, HolderRecord<Holder>>();
  /** Total rollovers over all CPUs. */
  private nrRollovers = 0;

  /**
   * @param config - CPU count and ASID geometry
   * @throws UsageError when the geometry leaves no ASID for ordinary guests or a number is out of range
   */
  constructor(config: AsidAllocatorConfig) {
    const { nrCpus, nrAsids, maxSevAsid } = config;
    if (!Number.isInteger(nrCpus) || nrCpus < 1 || nrCpus > 8192) {
      throw new UsageError('ERR_OUT_OF_RANGE', `AsidAllocator: nrCpus must be an integer in [1, 8192], got ${String(nrCpus)}`);
    }
    if (!Number.isInteger(nrAsids) || nrAsids < 2 || nrAsids > 2 ** 32) {
      throw new UsageError('ERR_OUT_OF_RANGE', `AsidAllocator: nrAsids must be an integer in [2, 2^32], got ${String(nrAsids)}`);
    }
    if (!Number.isInteger(maxSevAsid) || maxSevAsid < 0 || maxSevAsid + 1 > nrAsids - 1) {
      throw new UsageError('ERR_INVALID_ARG', 
        `AsidAllocator: maxSevAsid ${String(maxSevAsid)} leaves no ASID for ordinary guests (nrAsids ${nrAsids})`,
      );
    }
    this.nrCpus = nrCpus;
    this.maxAsid = nrAsids - 1;
    this.minAsid = maxSevAsid + 1;
    this.generations = new Float64Array(nrCpus);
    this.nextAsids = new Float64Array(nrCpus).fill(this.maxAsid + 1);
    this.lists = new Array<CpuList<Holder> | undefined>(nrCpus).fill(undefined);
  }

  /** How many holders have a grant record (until {@link AsidAllocator.releaseHolder}). */
  get holderCount(): number {
    return this.records.size;
  }

  /** Total number of generation rollovers (each one a `TLB_CONTROL_FLUSH_ALL_ASID` entry) over all CPUs. */
  get rollovers(): number {
    return this.nrRollovers;
  }

  /** The CPU's `asid_generation` (0 before its first {@link AsidAllocator.resetCpu}). */
  generation(cpu: number): number {
    this.checkCpu(cpu);
    return this.generations[cpu] as number;
  }

  /** The CPU's `next_asid` (`maxAsid + 1` right after a reset: the next grant rolls over). */
  nextAsid(cpu: number): number {
    this.checkCpu(cpu);
    return this.nextAsids[cpu] as number;
  }

  /**
   * Per-CPU enable (`svm_hardware_enable`): `next_asid = max_asid + 1`, and the generation starts at 1 the
   * first time. **Deliberate difference:** Linux sets `asid_generation = 1` on every enable, so after a
   * disable/enable cycle on a CPU (suspend/resume of CPU 0) a vCPU that last ran there in generation 2 can
   * look current again next to a vCPU that just got the same ASID in the new generation 2. VAC never
   * reuses a generation number on a CPU (re-enable continues from the last one + 1), which closes that
   * hole; the first `new_asid` after an enable still rolls over and flushes every ASID, as in Linux.
   * See docs/fidelity.md.
   */
  resetCpu(cpu: number): void {
    this.checkCpu(cpu);
    this.generations[cpu] = (this.generations[cpu] as number) + 1;
    this.nextAsids[cpu] = this.maxAsid + 1;
    this.lists[cpu]?.clear();
  }

  /**
   * Whether a VMCB that recorded (`cpu`, `generation`) may keep its ASID on `cpu` (the test in `pre_svm_run`:
   * `svm->current_vmcb->asid_generation != sd->asid_generation` → `new_asid`). A vCPU that moved CPUs has
   * its generation zeroed by `pre_svm_run`, and 0 is never current.
   */
  isCurrent(cpu: number, generation: number): boolean {
    // The CPU check of checkCpu, folded into the load: a typed array gives `undefined` for any number that
    // is not one of its indices (negative, too large, fractional, NaN), and only for those.
    const g = this.generations[cpu];
    if (g === undefined || typeof cpu !== 'number') throw badCpu(cpu, this.nrCpus);
    return g === generation && generation !== 0;
  }

  /**
   * `new_asid()`: give `holder` the CPU's next ASID, rolling over to a new generation (and flushing every
   * ASID) when the space is used up. The holder's previous grant, on any CPU, is dropped from the index.
   *
   * @throws UsageError when the CPU's ASID state was never initialised ({@link AsidAllocator.resetCpu})
   */
  newAsid(cpu: number, holder: Holder): AsidGrant {
    const generations = this.generations;
    const current = generations[cpu]; // undefined exactly when `cpu` is not a CPU number (see isCurrent)
    if (current === undefined || typeof cpu !== 'number') throw badCpu(cpu, this.nrCpus);
    let generation = current;
    if (generation === 0) {
      throw new UsageError('ERR_INVALID_STATE', `new_asid: CPU ${cpu} has no ASID state (SVM was never enabled on it)`);
    }
    let list = this.lists[cpu];
    if (list === undefined) {
      list = new CpuList<Holder>();
      this.lists[cpu] = list;
    }
    let flushAll = false;
    let asid = this.nextAsids[cpu] as number;
    if (asid > this.maxAsid) {
      generation++;
      generations[cpu] = generation;
      asid = this.minAsid;
      flushAll = true;
      this.nrRollovers++;
      list.clear();
    }
    this.nextAsids[cpu] = asid + 1;

    let rec = this.records.get(holder);
    if (rec === undefined) {
      rec = new HolderRecord(holder);
      this.records.set(holder, rec);
    }
    // Its previous entry, on whatever CPU, is dead from here on (see HolderRecord.pos).
    rec.cpu = cpu;
    rec.asid = asid;
    rec.generation = generation;
    if (asid > list.top) {
      // Always, while invariant 3 holds: ASIDs increase within a generation.
      list.top = asid;
      if (list.len === list.recs.length) list.makeRoom(cpu, generation);
      const i = list.len;
      list.recs[i] = rec;
      list.len = i + 1;
      rec.pos = i;
    } else {
      this.listOutOfOrder(list, rec);
    }
    return { asid, generation, flushAll };
  }

  /** The holder of `asid` on `cpu` in the CPU's current generation, if any. */
  holderOf(cpu: number, asid: number): Holder | undefined {
    this.checkCpu(cpu);
    const list = this.lists[cpu];
    if (list === undefined) return undefined;
    const generation = this.generations[cpu] as number;
    for (let i = 0; i < list.len; i++) {
      const r = list.recs[i] as HolderRecord<Holder>;
      if (r.asid === asid && r.pos === i && r.cpu === cpu && r.generation === generation) return r.holder;
    }
    return undefined;
  }

  /** The holders of the CPU's current generation, by increasing ASID. */
  holders(cpu: number): [asid: number, holder: Holder][] {
    this.checkCpu(cpu);
    const out: [asid: number, holder: Holder][] = [];
    const list = this.lists[cpu];
    if (list === undefined) return out;
    const generation = this.generations[cpu] as number;
    for (let i = 0; i < list.len; i++) {
      const r = list.recs[i] as HolderRecord<Holder>;
      if (r.pos === i && r.cpu === cpu && r.generation === generation) out.push([r.asid, r.holder]);
    }
    return out;
  }

  /** The holder's latest grant if it is still current on its CPU, else `undefined` (stale or never granted). */
  grantOf(holder: Holder): AsidHolding | undefined {
    const rec = this.records.get(holder);
    if (rec === undefined || this.generations[rec.cpu] !== rec.generation) return undefined;
    // The same object for the same grant (a later grant differs in CPU, ASID or generation).
    const h = rec.holding;
    if (h !== undefined && h.cpu === rec.cpu && h.asid === rec.asid && h.generation === rec.generation) return h;
    rec.holding = { cpu: rec.cpu, asid: rec.asid, generation: rec.generation };
    return rec.holding;
  }

  /** Forget a destroyed vCPU: drop its grant from the index (its ASID is not reused before a rollover anyway). */
  releaseHolder(holder: Holder): void {
    const rec = this.records.get(holder);
    if (rec === undefined) return;
    this.records.delete(holder);
    rec.pos = -1; // its entry, if any, is dead
  }

  /**
   * List `rec`'s new grant on a CPU whose list already went up to its ASID: only reachable when invariant 3
   * is broken (the ASID was handed out before in this generation). A holder listed for the same ASID is
   * displaced, and the duplicate recorded in {@link AsidAllocator.conflicts}; the displaced holder keeps its
   * grant (as {@link AsidAllocator.grantOf} reports it) but is no longer the ASID's holder.
   */
  private listOutOfOrder(list: CpuList<Holder>, rec: HolderRecord<Holder>): void {
    const { cpu, asid, generation } = rec;
    rec.pos = -1; // the holder's own earlier entry, if listed here, is dead
    const n = list.compact(cpu, generation);
    // Every entry is live now, by increasing ASID.
    const recs = list.recs;
    let at = 0;
    while (at < n && (recs[at] as HolderRecord<Holder>).asid < asid) at++;
    const same = at < n ? (recs[at] as HolderRecord<Holder>) : undefined;
    if (same !== undefined && same.asid === asid) {
      this.conflicts.push({ cpu, asid, generation, previous: same.holder, next: rec.holder });
      same.pos = -1;
      recs[at] = rec;
      rec.pos = at;
      return;
    }
    if (n === recs.length) list.makeRoom(cpu, generation);
    const room = list.recs;
    for (let i = n; i > at; i--) {
      const moved = room[i - 1] as HolderRecord<Holder>;
      room[i] = moved;
      moved.pos = i;
    }
    room[at] = rec;
    rec.pos = at;
    list.len = n + 1;
  }

  /** Throw a {@link UsageError} unless `cpu` is a CPU number of this host. */
  private checkCpu(cpu: number): void {
    if ((cpu >>> 0) !== cpu || cpu >= this.nrCpus) throw badCpu(cpu, this.nrCpus);
  }
}
