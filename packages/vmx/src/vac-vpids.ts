/**
 * The VPID space as a VAC resource: what VAC's VMX half brings (RFC `arch/x86/kvm/vmx/vac.c` exports
 * `allocate_vpid` / `free_vpid` so that VPIDs are unique across every `kvmX.ko`; docs/spec.md §2.3, invariant 2).
 *
 * One {@link VpidAllocator} per VAC; each attached KVM instance gets a {@link VpidView} that records the VPIDs it
 * took, refuses to free another instance's (EPERM, as VAC refuses to act for another instance), and keeps the
 * instance attached while it holds any. Reach it as `port.resource(VPIDS)` (KVM's VMX code) or
 * `vacOf(host).resource(VPIDS)` (introspection).
 *
 * @module
 */
import { KernelError, ScopedView, VacResourceKey, defineFaultSite, vcpuLabel } from '@vac/core';
import { IdBitmap } from '@vac/core/internal';
import type { ScopedVacResource, VacResource, VacResourceContext, VcpuTag, Violation } from '@vac/core';
import { VMX_NR_VPIDS, VpidAllocator } from './vpid-allocator.js';

declare module '@vac/core' {
  interface FaultSites {
    /** `allocate_vpid` (fails soft: the vCPU gets VPID 0, no error). */
    vpid: true;
  }
}
defineFaultSite('vpid', '`allocate_vpid` (fails soft: the vCPU gets VPID 0, no error)');

/** What a KVM instance may do with VPIDs. */
export interface VpidView {
  /** `allocate_vpid`: the lowest free VPID for the vCPU `tag` (of this instance), or 0 when none is left. */
  allocate(tag: VcpuTag): number;
  /** `free_vpid`: 0 is a no-op; a VPID this instance does not hold → EPERM. */
  free(vpid: number): void;
}

/** The key of the VPID resource. */
export const VPIDS: VacResourceKey<VpidView, VpidResource> = new VacResourceKey<VpidView, VpidResource>('vpids');

/** One instance's VPIDs. */
class ScopedVpids extends ScopedView<VpidView> implements VpidView {
  readonly view: VpidView = this;
  /**
   * The VPIDs this instance holds. A bitmap, not a `Set`: VPIDs are reused lowest-first, and V8's hash tables
   * degrade when the same key is added and deleted over and over, which made KVM_CREATE_VCPU O(VPIDs held).
   */
  readonly vpids = new IdBitmap(VMX_NR_VPIDS);
  readonly #allocator: VpidAllocator<VcpuTag>;
  readonly #onClose: () => void;

  constructor(instance: string, allocator: VpidAllocator<VcpuTag>, onClose: () => void) {
    super(instance);
    this.#allocator = allocator;
    this.#onClose = onClose;
  }

  allocate(tag: VcpuTag): number {
    this.live('allocate_vpid');
    this.own(tag);
    const v = this.#allocator.alloc(tag);
    if (v !== 0) this.vpids.set(v);
    return v;
  }

  free(vpid: number): void {
    this.live('free_vpid');
    if (vpid === 0) return;
    if (vpid < 0 || vpid >= VMX_NR_VPIDS || (vpid | 0) !== vpid || !this.vpids.test(vpid)) {
      throw new KernelError('EPERM', 'free_vpid', `${this.instance} does not hold VPID ${vpid}`);
    }
    this.#allocator.free(vpid);
    this.vpids.clear(vpid);
  }

  held(): number {
    return this.vpids.count;
  }

  holdings(): number[] {
    return [...this.vpids.setBits()];
  }

  override close(): void {
    super.close();
    this.#onClose();
  }
}

/** The host's VPID space (one per VAC). */
export class VpidResource implements VacResource<VpidView> {
  /** {@link VPIDS}. */
  readonly key = VPIDS;
  /** @internal The allocator. */
  readonly allocator: VpidAllocator<VcpuTag>;
  readonly #scopes = new Set<ScopedVpids>();

  /** @internal Built by VAC's VMX half. */
  constructor(ctx: VacResourceContext) {
    this.allocator = new VpidAllocator<VcpuTag>({ shouldFail: () => ctx.shouldFail('vpid') });
  }

  /** {@link VacResource.scope}. */
  scope(instance: string): ScopedVacResource<VpidView> {
    const s: ScopedVpids = new ScopedVpids(instance, this.allocator, () => this.#scopes.delete(s));
    this.#scopes.add(s);
    return s;
  }

  /** VPIDs held by vCPUs (VPID 0, the host's, not counted). */
  held(): number {
    return this.allocator.inUse;
  }

  /** Which vCPU holds which VPID, in VPID order. */
  holders(): Array<{ readonly vpid: number; readonly holder: string }> {
    return [...this.allocator.holders()].map(([vpid, tag]) => ({ vpid, holder: vcpuLabel(tag) }));
  }

  /** How many allocations returned 0 because the space was exhausted (or an injected fault said so). */
  get exhaustions(): number {
    return this.allocator.exhaustions;
  }

  /** {@link VacResource.snapshot}: the holders. */
  snapshot(): unknown {
    return this.holders();
  }

  /**
   * Invariant 2: a VPID an instance holds is allocated to that instance and to no other instance (VPID 0 is the
   * host's: `alloc` returns it only to mean "none", and views do not record it).
   */
  check(): Violation[] {
    const out: Violation[] = [];
    const holderOf = new Map<number, string>();
    for (const s of this.#scopes) {
      for (const vpid of s.vpids.setBits()) {
        const prev = holderOf.get(vpid);
        if (prev !== undefined) out.push({ invariant: 2, id: vpid, message: `VPID ${vpid} is held by ${prev} and ${s.instance}` });
        holderOf.set(vpid, s.instance);
        if (vpid === 0 || this.allocator.ownerOf(vpid)?.instance !== s.instance) {
          out.push({ invariant: 2, id: vpid, message: `${s.instance} holds VPID ${vpid}, which is not allocated to it` });
        }
      }
    }
    return out;
  }
}
