/**
 * The SEV ASID space as a VAC resource: what VAC's SVM half brings on a host with SEV. The RFC left
 * `sev_asid_bitmap` in each module, so two modules could hand out the same ASID; owning it in VAC keeps SEV ASIDs
 * unique per VM across modules and a freed one unused until a flush (docs/spec.md §2.3, invariant 3).
 *
 * One {@link SevAsidAllocator} per VAC, present only when CPUID 0x8000001F reports SEV. Each attached KVM instance
 * gets a {@link SevAsidView}; reach it as `port.tryResource(SEV_ASIDS)` (KVM's SVM code: `undefined` on a host
 * without SEV) or `vacOf(host).resource(SEV_ASIDS)` (introspection).
 *
 * @module
 */
import { KernelError, ScopedView, VacResourceKey } from '@vac/core';
import type { ScopedVacResource, VacResource, VcpuTag, Violation } from '@vac/core';
import { SevAsidAllocator } from './sev-asid-allocator.js';

/** What a KVM instance may do with SEV ASIDs. */
export interface SevAsidView {
  /**
   * `sev_asid_new`: one SEV (or SEV-ES when `es`) ASID for the VM `tag` of this instance.
   * @throws KernelError ENOTTY (an empty range), EBUSY (none left even after a recycle)
   */
  alloc(es: boolean, tag: VcpuTag): number;
  /** `sev_asid_free`: the ASID goes to the reclaim bitmap. EPERM if this instance does not hold it. */
  free(asid: number): void;
}

/** The key of the SEV ASID resource. */
export const SEV_ASIDS: VacResourceKey<SevAsidView, SevAsidResource> = new VacResourceKey<SevAsidView, SevAsidResource>('sev-asids');

/** One instance's SEV ASIDs. */
class ScopedSevAsids extends ScopedView<SevAsidView> implements SevAsidView {
  readonly view: SevAsidView = this;
  readonly #asids = new Set<number>();
  readonly #sev: SevAsidAllocator<VcpuTag>;

  constructor(instance: string, sev: SevAsidAllocator<VcpuTag>) {
    super(instance);
    this.#sev = sev;
  }

  alloc(es: boolean, tag: VcpuTag): number {
    this.live('sev_asid_new');
    this.own(tag);
    const asid = this.#sev.alloc(es, tag);
    this.#asids.add(asid);
    return asid;
  }

  free(asid: number): void {
    this.live('sev_asid_free');
    if (!this.#asids.has(asid)) throw new KernelError('EPERM', 'sev_asid_free', `${this.instance} does not hold SEV ASID ${asid}`);
    this.#sev.free(asid);
    this.#asids.delete(asid);
  }

  held(): number {
    return this.#asids.size;
  }

  holdings(): number[] {
    return [...this.#asids].sort((a, b) => a - b);
  }

}

/** The host's SEV ASID space (one per VAC, on hosts with SEV). */
export class SevAsidResource implements VacResource<SevAsidView> {
  /** {@link SEV_ASIDS}. */
  readonly key = SEV_ASIDS;
  /** @internal The allocator. */
  readonly allocator: SevAsidAllocator<VcpuTag>;

  /**
   * @internal Built by VAC's SVM half.
   * @param range - CPUID 0x8000001F ECX (max) and EDX (min)
   * @param flush - `sev_flush_asids`: WBINVD on every CPU, then the firmware's DF_FLUSH (false when it failed)
   */
  constructor(range: { readonly maxSevAsid: number; readonly minSevAsid: number }, flush: () => boolean) {
    this.allocator = new SevAsidAllocator<VcpuTag>(range, { onFlush: flush });
  }

  /** {@link VacResource.scope}. */
  scope(instance: string): ScopedVacResource<SevAsidView> {
    return new ScopedSevAsids(instance, this.allocator);
  }

  /** SEV ASIDs in use by VMs. */
  held(): number {
    return this.allocator.inUse;
  }

  /** In use with their VM, awaiting reclaim, flushes and recycles, and the two ranges. */
  state(): {
    readonly inUse: Array<{ readonly asid: number; readonly holder: string }>;
    readonly awaitingReclaim: readonly number[];
    readonly flushes: number;
    readonly recycles: number;
    readonly range: { readonly sev: readonly [number, number]; readonly sevEs: readonly [number, number] };
  } {
    const s = this.allocator;
    const st = s.state();
    return {
      inUse: st.inUse.map(([asid, tag]) => ({ asid, holder: `${tag.instance}/vm${tag.vm}` })),
      awaitingReclaim: st.awaitingReclaim,
      flushes: st.flushes,
      recycles: st.recycles,
      range: { sev: s.range(false), sevEs: s.range(true) },
    };
  }

  /** {@link VacResource.snapshot}: what is in use and what awaits a flush. */
  snapshot(): unknown {
    const st = this.state();
    return { inUse: st.inUse, awaitingReclaim: st.awaitingReclaim };
  }

  /** Uniqueness is the allocator's by construction; nothing more to check here. */
  check(): Violation[] {
    return [];
  }
}
