/**
 * The per-CPU ASID generations as a VAC resource: what VAC's SVM half brings (the RFC keeps `new_asid` and the
 * per-CPU `svm_data` ASID fields in `arch/x86/kvm/svm/vac.c`, so that the modules' vCPUs sharing a CPU never get
 * the same ASID in one generation; docs/spec.md §2.3, invariant 3).
 *
 * One {@link AsidAllocator} per VAC. Its per-CPU state starts afresh each time VAC's enable of a CPU is kept
 * (`svm_hardware_enable`: `asid_generation = 1`, `next_asid = max_asid + 1`) — {@link AsidResource.cpuEnabled}.
 * Each attached KVM instance gets an {@link AsidView}; reach it as `port.resource(ASIDS)` (KVM's SVM code) or
 * `vacOf(host).resource(ASIDS)` (introspection).
 *
 * @module
 */
import { ScopedView, VacResourceKey, vcpuLabel } from '@vac/core';
import type { ScopedVacResource, VacResource, VacResourceContext, VcpuTag, Violation } from '@vac/core';
import { AsidAllocator, type AsidGrant } from './asid-allocator.js';

/** What a KVM instance may do with ASIDs. */
export interface AsidView {
  /** `new_asid` on `cpu` for the vCPU `tag` of this instance (the same object each time); may roll the CPU's generation over. */
  newAsid(cpu: number, tag: VcpuTag): AsidGrant;
  /** Whether `generation` is still `cpu`'s current ASID generation (else the vCPU needs {@link AsidView.newAsid}). */
  isCurrent(cpu: number, generation: number): boolean;
  /** The vCPU `tag` is destroyed: forget its ASIDs. */
  release(tag: VcpuTag): void;
}

/** The key of the ASID resource. */
export const ASIDS: VacResourceKey<AsidView, AsidResource> = new VacResourceKey<AsidView, AsidResource>('asids');

/** One instance's ASID holders. */
class ScopedAsids extends ScopedView<AsidView> implements AsidView {
  readonly view: AsidView = this;
  readonly #holders = new Set<VcpuTag>();
  readonly #asids: AsidAllocator<VcpuTag>;

  constructor(instance: string, asids: AsidAllocator<VcpuTag>) {
    super(instance);
    this.#asids = asids;
  }

  newAsid(cpu: number, tag: VcpuTag): AsidGrant {
    this.live('new_asid');
    this.own(tag);
    const grant = this.#asids.newAsid(cpu, tag);
    this.#holders.add(tag);
    return grant;
  }

  isCurrent(cpu: number, generation: number): boolean {
    return this.#asids.isCurrent(cpu, generation);
  }

  release(tag: VcpuTag): void {
    this.live('svm_vcpu_free');
    if (!this.#holders.has(tag)) return;
    this.#asids.releaseHolder(tag);
    this.#holders.delete(tag);
  }

  held(): number {
    return this.#holders.size;
  }

  holdings(): number {
    return this.#holders.size;
  }

}

/** The host's per-CPU ASID generations (one per VAC). */
export class AsidResource implements VacResource<AsidView> {
  /** {@link ASIDS}. */
  readonly key = ASIDS;
  /** @internal The allocator. */
  readonly allocator: AsidAllocator<VcpuTag>;
  readonly #ctx: VacResourceContext;

  /**
   * @internal Built by VAC's SVM half.
   * @param nrAsids - CPUID 0x8000000A.EBX
   * @param maxSevAsid - the highest SEV ASID (ordinary guests use the ASIDs above it)
   */
  constructor(ctx: VacResourceContext, nrAsids: number, maxSevAsid: number) {
    this.#ctx = ctx;
    this.allocator = new AsidAllocator<VcpuTag>({ nrCpus: ctx.nrCpus, nrAsids, maxSevAsid });
  }

  /** {@link VacResource.scope}. */
  scope(instance: string): ScopedVacResource<AsidView> {
    return new ScopedAsids(instance, this.allocator);
  }

  /** `svm_hardware_enable`'s ASID part: a new generation 1 on `cpu`, next ASID = max ASID + 1. */
  cpuEnabled(cpu: number): void {
    this.allocator.resetCpu(cpu);
  }

  /** vCPUs holding ASID grants, over all CPUs and instances. */
  held(): number {
    return this.allocator.holderCount;
  }

  /** On `cpu`: the ASID generation, the next ASID, and who holds which ASID in that generation. */
  cpuState(cpu: number): { readonly generation: number; readonly nextAsid: number; readonly holders: Array<{ readonly asid: number; readonly holder: string }> } {
    const a = this.allocator;
    return {
      generation: a.generation(cpu),
      nextAsid: a.nextAsid(cpu),
      holders: a.holders(cpu).map(([asid, tag]) => ({ asid, holder: vcpuLabel(tag) })),
    };
  }

  /** Total ASID generation rollovers over all CPUs (each one flushed every ASID on its CPU). */
  get rollovers(): number {
    return this.allocator.rollovers;
  }

  /** {@link VacResource.snapshot}: each enabled CPU's state (a disabled CPU's is meaningless until its next enable resets it). */
  snapshot(): unknown {
    const out: unknown[] = [];
    for (let cpu = 0; cpu < this.#ctx.nrCpus; cpu++) out.push(this.#ctx.isEnabled(cpu) ? this.cpuState(cpu) : null);
    return out;
  }

  /** Invariant 3: no two vCPUs got the same ASID on one CPU in one generation. */
  check(): Violation[] {
    return this.allocator.conflicts.map((k) => ({
      invariant: 3,
      cpu: k.cpu,
      id: k.asid,
      message: `ASID ${k.asid} given to ${vcpuLabel(k.previous)} and ${vcpuLabel(k.next)} in generation ${k.generation}`,
    }));
  }
}
