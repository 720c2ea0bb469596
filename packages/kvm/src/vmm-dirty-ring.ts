/**
 * The dirty ring in a VMM's save and restore of a whole VM, as QEMU does it (accel/kvm/kvm-all.c): before the state
 * is saved, every vCPU's ring is harvested — each entry KVM published (flags DIRTY) is collected and marked RESET
 * (`kvm_dirty_ring_reap_one`) — and KVM_RESET_DIRTY_RINGS recycles them (`kvm_dirty_ring_reap_locked`), so the pages
 * the guest dirtied are known to the VMM and write-protected again. The ring's contents and indices are KVM's own
 * and are not carried over: the target VM gets a ring of the same size, enabled right after KVM_CREATE_VM and before
 * any vCPU (`kvm_dirty_ring_init` in `kvm_init`), which starts empty — as the source's is after the reset.
 *
 * User-space code like the rest of the VMM helpers (`vmm.ts`): it only maps the rings from the vCPU fds.
 *
 * @module
 */
import { UsageError, isKernelError, type Process } from '@vac/core';
import { KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_DIRTY_LOG_PAGE_OFFSET, KVM_ENABLE_CAP, KVM_RESET_DIRTY_RINGS, PAGE_SIZE } from './abi/constants.js';
import { makeKvmEnableCap } from './abi/structs.js';

/** What a VMM enabled of the dirty ring (KVM has no call that reports it: QEMU keeps `dirty-ring-size`). */
export interface DirtyRingConfig {
  /** The ring's size in bytes per vCPU, as given to KVM_ENABLE_CAP. */
  readonly bytes: number;
  /** Whether it was enabled as KVM_CAP_DIRTY_LOG_RING_ACQ_REL (else KVM_CAP_DIRTY_LOG_RING). Default false. */
  readonly acqRel?: boolean;
}

/** One entry harvested from a vCPU's ring (`struct kvm_dirty_gfn` without its flags). */
export interface HarvestedPage {
  /** The vCPU whose ring held it. */
  readonly vcpu: number;
  /** `slot`: the address space in bits 31:16, the slot id in 15:0. */
  readonly slot: number;
  /** `offset`: the page's index in the slot. */
  readonly offset: number;
}

/** The dirty ring of a saved VM. */
export interface SavedDirtyRing {
  /** What the VMM enabled (restored on the target before its vCPUs). */
  readonly config: DirtyRingConfig;
  /**
   * The entries the save harvested (before KVM_RESET_DIRTY_RINGS), vCPU by vCPU in the handle's order, each ring from
   * its oldest entry: the pages the guest wrote since the VMM last harvested, which a VMM copying memory sends last.
   */
  readonly harvested: readonly HarvestedPage[];
}

/** `sizeof(struct kvm_dirty_gfn)`, and its flags. */
const GFN_BYTES = 16;
const F_DIRTY = 1;
const F_RESET = 2;

/**
 * Harvest every vCPU's ring and reset them (KVM_RESET_DIRTY_RINGS), as QEMU does before saving. Without `config`,
 * KVM_RESET_DIRTY_RINGS tells whether the VM has a ring (EINVAL: none, and `undefined` is returned); a VM with one
 * needs its `config`.
 *
 * @throws `UsageError` `ERR_INVALID_STATE` when the VM has a ring and `config` is not given; `KernelError` from the
 *   first failing syscall
 */
export function harvestDirtyRings(proc: Process, vm: number, vcpus: ReadonlyArray<{ readonly id: number; readonly fd: number }>, config: DirtyRingConfig | undefined): SavedDirtyRing | undefined {
  if (config === undefined) {
    try {
      proc.ioctl(vm, KVM_RESET_DIRTY_RINGS, 0);
    } catch (e) {
      if (isKernelError(e, 'EINVAL')) return undefined; // kvm_vm_ioctl_reset_dirty_pages: no ring
      throw e;
    }
    throw new UsageError('ERR_INVALID_STATE', 'saveVm: the VM has a dirty ring; pass its size as VmHandle.dirtyRing (KVM cannot report it)');
  }
  const harvested: HarvestedPage[] = [];
  for (const v of vcpus) {
    const m = proc.mmap(v.fd, config.bytes, KVM_DIRTY_LOG_PAGE_OFFSET * PAGE_SIZE);
    try {
      harvestRing(new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength), v.id, harvested);
    } finally {
      proc.munmap(m.addr, m.length);
    }
  }
  proc.ioctl(vm, KVM_RESET_DIRTY_RINGS, 0);
  return { config, harvested };
}

/**
 * Collect one ring's published entries (DIRTY, not yet RESET) and mark them RESET. The ring's used entries are one run
 * (from KVM's reset index to its dirty index, modulo the size); the walk starts at the run's first entry, found as the
 * used entry after an unused one (QEMU keeps that index as `kvm_fetch_index`; a helper that did not harvest before
 * finds it).
 */
function harvestRing(ring: DataView, vcpu: number, out: HarvestedPage[]): void {
  const size = ring.byteLength / GFN_BYTES;
  const flags = (i: number): number => ring.getUint32((i & (size - 1)) * GFN_BYTES, true);
  let start = -1;
  for (let i = 0; i < size; i++) {
    if (flags(i) !== 0 && flags(i - 1 + size) === 0) {
      start = i;
      break;
    }
  }
  if (start < 0) return; // empty (a ring with every entry used cannot happen: the vCPU exits at the soft limit)
  for (let i = start; i < start + size; i++) {
    const at = (i & (size - 1)) * GFN_BYTES;
    const f = ring.getUint32(at, true);
    if (f === 0) break;
    if ((f & (F_DIRTY | F_RESET)) !== F_DIRTY) continue; // collected before
    out.push({ vcpu, slot: ring.getUint32(at + 4, true), offset: Number(ring.getBigUint64(at + 8, true)) });
    ring.setUint32(at, F_RESET, true); // dirty_gfn_set_collected
  }
}

/** The ring of a restored VM: KVM_ENABLE_CAP with the saved size, right after KVM_CREATE_VM (`kvm_dirty_ring_init`). */
export function enableSavedDirtyRing(proc: Process, vm: number, saved: SavedDirtyRing): void {
  const cap = saved.config.acqRel === true ? KVM_CAP_DIRTY_LOG_RING_ACQ_REL : KVM_CAP_DIRTY_LOG_RING;
  proc.ioctl(vm, KVM_ENABLE_CAP, makeKvmEnableCap({ cap, args: [BigInt(saved.config.bytes), 0n, 0n, 0n] }));
}
