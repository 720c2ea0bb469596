/**
 * VAC's VPID allocator (VMX): one 16-bit VPID space shared by every KVM module on the host.
 *
 * Models `allocate_vpid()` / `free_vpid()` of `arch/x86/kvm/vmx/vmx.c`, which the VAC RFC moved to
 * `arch/x86/kvm/vmx/vac.c` and exported so VPIDs are unique across all `kvmX.ko` (docs/spec.md §2.3, invariant 2):
 *
 * - `VMX_NR_VPIDS = 1 << 16` (`arch/x86/include/asm/vmx.h`); bit 0 is set once at setup, "0 is reserved for
 *   host" (`vmx_hardware_setup`);
 * - allocation takes the lowest free VPID (`find_first_zero_bit`); when none is free it returns **0**, no
 *   error: the vCPU then runs without VPID and every VM entry and exit flushes its TLB (the caller counts
 *   that);
 * - `free_vpid(0)` is a no-op.
 *
 * The `enable_vpid` test of Linux is the caller's: with the RFC's patch 14 a module loaded with `vpid=0`
 * never calls the allocator (`enable_vpid ? allocate_vpid() : 0`).
 *
 * @module
 */

import { UsageError } from '@vac/core';
import { IdBitmap } from '@vac/core/internal';

/** Number of VPIDs, `VMX_NR_VPIDS` (`arch/x86/include/asm/vmx.h`): 65,536, VPID 0 being the host's. */
export const VMX_NR_VPIDS = 1 << 16;

/** The error of a VPID out of range (built out of line, so the range check stays small enough to inline). */
function badVpid(vpid: number): UsageError {
  return new UsageError('ERR_OUT_OF_RANGE', `VPID ${String(vpid)} is not in [0, ${VMX_NR_VPIDS - 1}]`);
}

/** Options of a {@link VpidAllocator}. */
export interface VpidAllocatorOptions {
  /**
   * Fault injection: consulted once per {@link VpidAllocator.alloc}; when it returns `true` that allocation
   * behaves as if the space were exhausted (returns 0, nothing changes). Models "fail the N-th allocation".
   */
  readonly shouldFail?: () => boolean;
}

/**
 * The host-wide VPID bitmap with an owner tag per VPID.
 *
 * @typeParam Owner - what the caller records per VPID so VAC can say which vCPU holds it (e.g.
 *   `{ module, vm, vcpu }`); opaque to the allocator.
 */
export class VpidAllocator<Owner = unknown> {
  /** `vmx_vpid_bitmap`: bit v set iff VPID v is taken (bit 0 always, for the host). */
  readonly #bitmap = new IdBitmap(VMX_NR_VPIDS);
  /**
   * Owner tag per allocated VPID. A map, not a 65,536-slot array: a host holds a few hundred VPIDs at most, and the
   * array was 512 KiB of heap written at every VAC load (each fleet host loads one).
   */
  readonly #owners = new Map<number, Owner>();
  /** The fault-injection hook, if any. */
  readonly #shouldFail: (() => boolean) | undefined;
  /** Allocations that returned 0 (space exhausted or injected failure). */
  #zeroes = 0;

  /**
   * @param options - optional fault injection
   */
  constructor(options: VpidAllocatorOptions = {}) {
    this.#shouldFail = options.shouldFail;
    // vmx_hardware_setup(): set_bit(0, vmx_vpid_bitmap); /* 0 is reserved for host */
    this.#bitmap.set(0);
  }

  /** Number of VPIDs held by vCPUs (the reserved VPID 0 not counted): 0 … 65,535. */
  get inUse(): number {
    return this.#bitmap.count - 1;
  }

  /** Number of allocations that returned 0 because no VPID was free (or an injected failure said so). */
  get exhaustions(): number {
    return this.#zeroes;
  }

  /**
   * `allocate_vpid()`: take the lowest free VPID for `owner`.
   *
   * @param owner - the tag to record for the VPID
   * @returns the VPID (1 … 65,535), or **0** when none is free: no error, the vCPU runs without VPID
   */
  alloc(owner: Owner): number {
    if (this.#shouldFail !== undefined && this.#shouldFail()) {
      this.#zeroes++;
      return 0;
    }
    // vpid = find_first_zero_bit(vmx_vpid_bitmap, VMX_NR_VPIDS); if (vpid < VMX_NR_VPIDS) __set_bit(...)
    const vpid = this.#bitmap.takeLowestZero();
    if (vpid < 0) {
      this.#zeroes++;
      return 0;
    }
    this.#owners.set(vpid, owner);
    return vpid;
  }

  /**
   * `free_vpid(vpid)`: give a VPID back. `free(0)` is a no-op, as in Linux.
   *
   * Linux's `__clear_bit` silently accepts a VPID that is not allocated; here that is a bug in the caller
   * (it would let two vCPUs end up with the same VPID), so it throws.
   *
   * @throws UsageError when `vpid` is out of range or not allocated
   */
  free(vpid: number): void {
    if (vpid === 0) return;
    this.#checkVpid(vpid);
    if (!this.#bitmap.clearChecked(vpid)) throw new UsageError('ERR_INVALID_STATE', `free_vpid: VPID ${vpid} is not allocated`);
    this.#owners.delete(vpid);
  }

  /** Whether `vpid` is held by a vCPU (0, the host's, is never "allocated"). */
  isAllocated(vpid: number): boolean {
    if (vpid === 0) return false;
    this.#checkVpid(vpid);
    return this.#bitmap.test(vpid);
  }

  /** The owner tag recorded for `vpid`, or `undefined` when it is free (or 0). */
  ownerOf(vpid: number): Owner | undefined {
    if (vpid === 0) return undefined;
    this.#checkVpid(vpid);
    return this.#owners.get(vpid);
  }

  /** Every allocated VPID with its owner, in increasing VPID order. Do not allocate or free while iterating. */
  *holders(): IterableIterator<[vpid: number, owner: Owner]> {
    for (const vpid of this.#bitmap.setBits()) {
      if (vpid !== 0) yield [vpid, this.#owners.get(vpid) as Owner];
    }
  }

  /** Throw a {@link UsageError} unless `vpid` is an integer in [0, 65535]. */
  #checkVpid(vpid: number): void {
    if ((vpid | 0) !== vpid || vpid < 0 || vpid >= VMX_NR_VPIDS) throw badVpid(vpid);
  }
}
