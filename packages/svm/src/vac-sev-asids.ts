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
  /**
   * `sev_migrate_from`: the ASID passes to another VM of this instance (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM). EPERM if
   * this instance does not hold it or `to` is another instance's VM.
   */
  transfer(asid: number, to: VcpuTag): void;
  /**
   * Beyond the RFC: take over an ASID another instance holds, as VAC hands it from that instance's VM to `to` (a VM
   * of this instance). Only when VAC allows cross-module moves (its `cross_module_moves` parameter): else EPERM.
   * EPERM too when `from` does not hold it.
   */
  takeOver(asid: number, from: string, to: VcpuTag): void;
  /** Beyond the RFC: whether VAC hands SEV ASIDs between instances (its `cross_module_moves` parameter). */
  readonly crossModuleMoves: boolean;
}

/** The key of the SEV ASID resource. */
export const SEV_ASIDS: VacResourceKey<SevAsidView, SevAsidResource> = new VacResourceKey<SevAsidView, SevAsidResource>('sev-asids');

/** One instance's SEV ASIDs. */
class ScopedSevAsids extends ScopedView<SevAsidView> implements SevAsidView {
  readonly view: SevAsidView = this;
  readonly #asids = new Set<number>();
  readonly #sev: SevAsidAllocator<VcpuTag>;
  readonly #resource: SevAsidResource;

  constructor(instance: string, resource: SevAsidResource) {
    super(instance);
    this.#sev = resource.allocator;
    this.#resource = resource;
  }

  get crossModuleMoves(): boolean {
    return this.#resource.crossModuleMoves;
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

  transfer(asid: number, to: VcpuTag): void {
    this.live('sev_migrate_from');
    if (!this.#asids.has(asid)) throw new KernelError('EPERM', 'sev_migrate_from', `${this.instance} does not hold SEV ASID ${asid}`);
    this.own(to);
    this.#sev.reassign(asid, to);
  }

  takeOver(asid: number, from: string, to: VcpuTag): void {
    this.live('sev_migrate_from');
    this.own(to);
    const res = this.#resource;
    if (!res.crossModuleMoves) throw new KernelError('EPERM', 'vac', `SEV ASID ${asid} belongs to ${from}: VAC does not hand SEV ASIDs between modules (vac.cross_module_moves=N)`);
    const src = res.scopes.get(from);
    if (src === undefined || !src.#asids.has(asid)) throw new KernelError('EPERM', 'vac', `${from} does not hold SEV ASID ${asid}`);
    src.#asids.delete(asid);
    this.#asids.add(asid);
    this.#sev.reassign(asid, to);
  }

  override close(): void {
    super.close();
    if (this.#resource.scopes.get(this.instance) === this) this.#resource.scopes.delete(this.instance);
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
   * @param crossModuleMoves - VAC's `cross_module_moves` parameter (beyond the RFC)
   */
  constructor(range: { readonly maxSevAsid: number; readonly minSevAsid: number }, flush: () => boolean, crossModuleMoves = false) {
    this.allocator = new SevAsidAllocator<VcpuTag>(range, { onFlush: flush });
    this.crossModuleMoves = crossModuleMoves;
  }

  /**
   * Beyond the RFC: whether VAC hands an SEV ASID from one module's VM to another's (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM
   * across modules). VAC's `cross_module_moves` parameter sets it at load; default false, as the RFC.
   */
  readonly crossModuleMoves: boolean;
  /** @internal Each attached instance's scope, by instance name. */
  readonly scopes = new Map<string, ScopedSevAsids>();

  /** {@link VacResource.scope}. */
  scope(instance: string): ScopedVacResource<SevAsidView> {
    const s = new ScopedSevAsids(instance, this);
    this.scopes.set(instance, s);
    return s;
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
