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
 * so that two modules never hold the same ASID on one CPU in one generation (SPEC §2.3, invariant 3); this
 * class is that shared state. Per-CPU numbers live in typed arrays (8,192 CPUs cost a few tens of KiB); the
 * "who holds what" index used for introspection is created per CPU on first use.
 *
 * A Linux hazard closed on purpose [R]: Linux puts the generation back to 1 on every enable, so a vCPU that
 * kept a generation-2 ASID across a disable/enable on the same CPU (suspend/resume) compares as current again
 * once the CPU rolls over to generation 2. `resetCpu` never reuses a generation number on a CPU (see there
 * and docs/fidelity.md); the index still remembers every grant, so a duplicate would be reported in
 * {@link AsidAllocator.conflicts} instead of going unnoticed.
 *
 * @module
 */

import { UsageError } from '../errors.js';

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

/** Per-CPU "who holds what": generation → ASID → holder. Only generations with live grants have an entry. */
type CpuIndex<Holder> = Map<number, Map<number, Holder>>;

/**
 * The `svm_data` ASID state of every CPU, shared by all modules.
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
  /** Introspection index per CPU, created on first grant there. */
  private readonly index: (CpuIndex<Holder> | undefined)[];
  /** Each holder's latest grant. */
  private readonly grants = new Map<Holder, AsidHolding>();
  /** Total rollovers over all CPUs. */
  private nrRollovers = 0;

  /**
   * @param config - CPU count and ASID geometry
   * @throws UsageError when the geometry leaves no ASID for ordinary guests or a number is out of range
   */
  constructor(config: AsidAllocatorConfig) {
    const { nrCpus, nrAsids, maxSevAsid } = config;
    if (!Number.isInteger(nrCpus) || nrCpus < 1 || nrCpus > 8192) {
      throw new UsageError(`AsidAllocator: nrCpus must be an integer in [1, 8192], got ${String(nrCpus)}`);
    }
    if (!Number.isInteger(nrAsids) || nrAsids < 2 || nrAsids > 2 ** 32) {
      throw new UsageError(`AsidAllocator: nrAsids must be an integer in [2, 2^32], got ${String(nrAsids)}`);
    }
    if (!Number.isInteger(maxSevAsid) || maxSevAsid < 0 || maxSevAsid + 1 > nrAsids - 1) {
      throw new UsageError(
        `AsidAllocator: maxSevAsid ${String(maxSevAsid)} leaves no ASID for ordinary guests (nrAsids ${nrAsids})`,
      );
    }
    this.nrCpus = nrCpus;
    this.maxAsid = nrAsids - 1;
    this.minAsid = maxSevAsid + 1;
    this.generations = new Float64Array(nrCpus);
    this.nextAsids = new Float64Array(nrCpus).fill(this.maxAsid + 1);
    this.index = new Array<CpuIndex<Holder> | undefined>(nrCpus).fill(undefined);
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
  }

  /**
   * Whether a VMCB that recorded (`cpu`, `generation`) may keep its ASID on `cpu` (the test in `pre_svm_run`:
   * `svm->current_vmcb->asid_generation != sd->asid_generation` → `new_asid`). A vCPU that moved CPUs has
   * its generation zeroed by `pre_svm_run`, and 0 is never current.
   */
  isCurrent(cpu: number, generation: number): boolean {
    this.checkCpu(cpu);
    const g = this.generations[cpu] as number;
    return g !== 0 && g === generation;
  }

  /**
   * `new_asid()`: give `holder` the CPU's next ASID, rolling over to a new generation (and flushing every
   * ASID) when the space is used up. The holder's previous grant, on any CPU, is dropped from the index.
   *
   * @throws UsageError when the CPU's ASID state was never initialised ({@link AsidAllocator.resetCpu})
   */
  newAsid(cpu: number, holder: Holder): AsidGrant {
    this.checkCpu(cpu);
    let generation = this.generations[cpu] as number;
    if (generation === 0) {
      throw new UsageError(`new_asid: CPU ${cpu} has no ASID state (SVM was never enabled on it)`);
    }
    let flushAll = false;
    let next = this.nextAsids[cpu] as number;
    if (next > this.maxAsid) {
      generation++;
      this.generations[cpu] = generation;
      next = this.minAsid;
      flushAll = true;
      this.nrRollovers++;
    }
    const asid = next;
    this.nextAsids[cpu] = next + 1;
    this.record(cpu, generation, asid, holder);
    return { asid, generation, flushAll };
  }

  /** The holder of `asid` on `cpu` in the CPU's current generation, if any. */
  holderOf(cpu: number, asid: number): Holder | undefined {
    this.checkCpu(cpu);
    return this.index[cpu]?.get(this.generations[cpu] as number)?.get(asid);
  }

  /** The holders of the CPU's current generation, by increasing ASID. */
  holders(cpu: number): [asid: number, holder: Holder][] {
    this.checkCpu(cpu);
    const current = this.index[cpu]?.get(this.generations[cpu] as number);
    if (current === undefined) return [];
    return [...current].sort((a, b) => a[0] - b[0]);
  }

  /** The holder's latest grant if it is still current on its CPU, else `undefined` (stale or never granted). */
  grantOf(holder: Holder): AsidHolding | undefined {
    const g = this.grants.get(holder);
    if (g === undefined || !this.isCurrent(g.cpu, g.generation)) return undefined;
    return g;
  }

  /** Forget a destroyed vCPU: drop its grant from the index (its ASID is not reused before a rollover anyway). */
  releaseHolder(holder: Holder): void {
    const g = this.grants.get(holder);
    if (g === undefined) return;
    this.grants.delete(holder);
    this.unindex(g, holder);
  }

  /** Record a grant in the index, replacing the holder's previous one and reporting a duplicate. */
  private record(cpu: number, generation: number, asid: number, holder: Holder): void {
    const prev = this.grants.get(holder);
    if (prev !== undefined) this.unindex(prev, holder);
    let cpuIndex = this.index[cpu];
    if (cpuIndex === undefined) {
      cpuIndex = new Map();
      this.index[cpu] = cpuIndex;
    }
    let byAsid = cpuIndex.get(generation);
    if (byAsid === undefined) {
      byAsid = new Map();
      cpuIndex.set(generation, byAsid);
    }
    if (byAsid.has(asid)) {
      const previous = byAsid.get(asid) as Holder;
      this.conflicts.push({ cpu, asid, generation, previous, next: holder });
    }
    byAsid.set(asid, holder);
    this.grants.set(holder, { cpu, asid, generation });
  }

  /** Remove `holder`'s entry for grant `g` from the index (if it is still the one recorded there). */
  private unindex(g: AsidHolding, holder: Holder): void {
    const cpuIndex = this.index[g.cpu];
    const byAsid = cpuIndex?.get(g.generation);
    if (cpuIndex === undefined || byAsid === undefined || byAsid.get(g.asid) !== holder) return;
    byAsid.delete(g.asid);
    if (byAsid.size === 0) cpuIndex.delete(g.generation);
  }

  /** Throw a {@link UsageError} unless `cpu` is a CPU number of this host. */
  private checkCpu(cpu: number): void {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.nrCpus) {
      throw new UsageError(`CPU ${String(cpu)} is not in [0, ${this.nrCpus - 1}]`);
    }
  }
}
