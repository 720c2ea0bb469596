/**
 * The dirty ring (virt/kvm/dirty_ring.c; virt/kvm/kvm_main.c `kvm_vm_ioctl_enable_dirty_log_ring`,
 * `kvm_vm_ioctl_reset_dirty_pages`, `mark_page_dirty_in_slot`, `kvm_vcpu_fault`; arch/x86/kvm/x86.c
 * `vcpu_enter_guest`): instead of a bitmap per slot, every vCPU gets a ring of `struct kvm_dirty_gfn` entries that
 * user space maps from the vCPU fd at page {@link KVM_DIRTY_LOG_PAGE_OFFSET}.
 *
 * - KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING / _ACQ_REL, size in bytes) turns it on, once per VM and before any vCPU.
 * - The first guest write to a page of a KVM_MEM_LOG_DIRTY_PAGES slot pushes `{flags: DIRTY, slot: as_id << 16 | id,
 *   offset: page}` onto the writing vCPU's ring; later writes to that page push nothing until the page is
 *   write-protected again (Linux's write-protection fault is what pushes).
 * - When the ring holds its soft limit (the size less the reserved entries), the vCPU's next entry into the guest
 *   exits with KVM_EXIT_DIRTY_RING_FULL (`KVM_REQ_DIRTY_RING_SOFT_FULL`), and keeps exiting until user space has
 *   harvested entries (flags set to RESET) and called KVM_RESET_DIRTY_RINGS.
 * - KVM_RESET_DIRTY_RINGS walks each vCPU's ring from its reset index over the entries marked RESET, clears their
 *   flags, write-protects their pages again (the next write pushes again) and answers how many it reset.
 *
 * The guest runs in passes of at most as many instructions as can be pushed without passing the soft limit
 * ({@link dirtyRingPass}), so the exit comes right after the instruction that filled the ring to its soft limit and
 * the ring can never overflow.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_CAP_DIRTY_LOG_RING, KVM_CAP_DIRTY_LOG_RING_ACQ_REL, KVM_DIRTY_LOG_PAGE_OFFSET, KVM_RESET_DIRTY_RINGS, KVM_USER_MEM_SLOTS, PAGE_SIZE } from '../abi/constants.js';
import { bytesDigest } from './bytes-digest.js';
import { checkExtension } from './caps.js';
import { trackDirtyWrites } from './dirty-log.js';
import type { VmFile } from './files.js';
import type { IoctlDef } from './ioctl-table.js';
import { vmArch } from './vm-arch.js';
import type { Vcpu } from './vcpu.js';
import type { Vm } from './vm.js';

/** `sizeof(struct kvm_dirty_gfn)`: `__u32 flags; __u32 slot; __u64 offset;`. */
export const KVM_DIRTY_GFN_SIZE = 16;
/** `KVM_DIRTY_GFN_F_DIRTY`: the kernel published the entry. */
export const KVM_DIRTY_GFN_F_DIRTY = 1;
/** `KVM_DIRTY_GFN_F_RESET`: user space harvested the entry (KVM_RESET_DIRTY_RINGS may recycle it). */
export const KVM_DIRTY_GFN_F_RESET = 2;
/** `KVM_DIRTY_RING_RSVD_ENTRIES`: entries kept free beyond the soft limit. */
export const KVM_DIRTY_RING_RSVD_ENTRIES = 64;
/** `KVM_DIRTY_RING_MAX_ENTRIES`. */
export const KVM_DIRTY_RING_MAX_ENTRIES = 65536;
/** The largest ring, in bytes: what KVM_CHECK_EXTENSION answers for both ring capabilities on x86. */
export const KVM_DIRTY_RING_MAX_BYTES = KVM_DIRTY_RING_MAX_ENTRIES * KVM_DIRTY_GFN_SIZE;

/**
 * `kvm_cpu_dirty_log_size()`: the entries a CPU can log before KVM sees them (PML's 512 on VMX with `enable_pml`). The
 * model's CPUs have no PML control, so `enable_pml` is off on VMX and the answer is 0 on both vendors.
 */
const CPU_DIRTY_LOG_SIZE = 0;

/** `kvm_dirty_ring_get_rsvd_entries`. */
export function dirtyRingReservedEntries(): number {
  return KVM_DIRTY_RING_RSVD_ENTRIES + CPU_DIRTY_LOG_SIZE;
}

/** Largest number of pages one budget unit of the interpreter can write: an access or a stack frame crossing a page, and an exception frame. */
const PUSHES_PER_UNIT = 4;
/** Pages KVM may write at an entry before the guest runs (an injected interrupt's frame, the kvmclock page). */
const PUSHES_AT_ENTRY = 4;

/** One vCPU's ring (`struct kvm_dirty_ring`): its entries live in the pages user space maps. */
export class DirtyRing {
  /** The ring's pages, as user space maps them (`dirty_gfns`). */
  readonly bytes: Uint8Array<ArrayBuffer>;
  readonly #view: DataView;
  /** Entries (`size`, a power of two). */
  readonly size: number;
  /** `soft_limit`: used entries at which the vCPU exits with KVM_EXIT_DIRTY_RING_FULL. */
  readonly softLimit: number;
  /** `dirty_index`: entries pushed, ever (u32). */
  dirtyIndex = 0;
  /** `reset_index`: entries reset, ever (u32). */
  resetIndex = 0;

  /** @param bytes - the ring's size in bytes, as KVM_ENABLE_CAP accepted it */
  constructor(bytes: number) {
    this.bytes = new Uint8Array(bytes);
    this.#view = new DataView(this.bytes.buffer);
    this.size = bytes / KVM_DIRTY_GFN_SIZE;
    this.softLimit = this.size - dirtyRingReservedEntries();
  }

  /**
   * A plain copy for `host.snapshot()`: the ring's pages (as a fingerprint: up to 1 MiB), both indices and whether
   * it is soft-full — everything of the ring the vCPU's next entry and KVM_RESET_DIRTY_RINGS depend on.
   */
  snapshot(): { readonly bytes: string; readonly dirtyIndex: number; readonly resetIndex: number; readonly softFull: boolean } {
    return { bytes: bytesDigest(this.bytes), dirtyIndex: this.dirtyIndex, resetIndex: this.resetIndex, softFull: this.softFull };
  }

  /** `kvm_dirty_ring_used`. */
  get used(): number {
    return (this.dirtyIndex - this.resetIndex) >>> 0;
  }

  /** `kvm_dirty_ring_soft_full`. */
  get softFull(): boolean {
    return this.used >= this.softLimit;
  }

  /**
   * `kvm_dirty_ring_push`: publish `(slot, offset)` with flags DIRTY. Returns false, pushing nothing, when the ring
   * is full (Linux warns and overwrites; the model's passes keep that from happening).
   */
  push(slot: number, offset: number): boolean {
    if (this.used >= this.size) return false;
    const at = (this.dirtyIndex & (this.size - 1)) * KVM_DIRTY_GFN_SIZE;
    const v = this.#view;
    v.setUint32(at + 4, slot, true);
    v.setBigUint64(at + 8, BigInt(offset), true);
    v.setUint32(at, KVM_DIRTY_GFN_F_DIRTY, true);
    this.dirtyIndex = (this.dirtyIndex + 1) >>> 0;
    return true;
  }

  /**
   * `kvm_dirty_ring_reset`: from the reset index, every entry user space marked RESET gets flags 0 and its page is
   * write-protected again through `reprotect`, runs of pages of one slot within 64 pages of each other coalesced into
   * one mask as Linux does (`kvm_reset_dirty_gfn` checks the whole mask against the slot). @returns entries reset
   */
  reset(reprotect: (slot: number, offset: bigint, mask: bigint) => void): number {
    const v = this.#view;
    let count = 0;
    let first = true;
    let curSlot = 0;
    let curOffset = 0n;
    let mask = 0n;
    for (;;) {
      const at = (this.resetIndex & (this.size - 1)) * KVM_DIRTY_GFN_SIZE;
      if ((v.getUint32(at, true) & KVM_DIRTY_GFN_F_RESET) === 0) break;
      const nextSlot = v.getUint32(at + 4, true);
      const nextOffset = v.getBigUint64(at + 8, true);
      v.setUint32(at, 0, true); // kvm_dirty_gfn_set_invalid
      this.resetIndex = (this.resetIndex + 1) >>> 0;
      count++;
      if (!first && nextSlot === curSlot) {
        const delta = BigInt.asIntN(64, nextOffset - curOffset);
        if (delta >= 0n && delta < 64n) {
          mask |= 1n << delta;
          continue;
        }
        // A backwards step: shift the mask up when no bit falls off its top.
        if (delta > -64n && delta < 0n && BigInt.asUintN(64, mask << -delta) >> -delta === mask) {
          curOffset = nextOffset;
          mask = BigInt.asUintN(64, mask << -delta) | 1n;
          continue;
        }
      }
      reprotect(curSlot, curOffset, mask);
      curSlot = nextSlot;
      curOffset = nextOffset;
      mask = 1n;
      first = false;
    }
    reprotect(curSlot, curOffset, mask);
    return count;
  }
}

/**
 * KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING / _ACQ_REL) (`kvm_vm_ioctl_enable_cap_generic`,
 * `kvm_vm_ioctl_enable_dirty_log_ring`): `args[0]` taken as a u32 byte size; flags not looked at.
 * @throws KernelError EINVAL (no capability, not a power of two, below a page or the reserved entries, set before,
 * vCPUs exist), E2BIG (above {@link KVM_DIRTY_RING_MAX_BYTES})
 */
export function enableDirtyRing(vm: Vm, cap: number, arg0: bigint, op: string): number {
  if (checkExtension(vm.instance, cap, vm) === 0) throw new KernelError('EINVAL', op, `capability ${cap} is not offered`);
  const size = Number(arg0 & 0xffff_ffffn);
  if (size === 0 || (size & (size - 1)) !== 0) throw new KernelError('EINVAL', op, `ring size ${size} is not a power of two`);
  if (size < dirtyRingReservedEntries() * KVM_DIRTY_GFN_SIZE || size < PAGE_SIZE) throw new KernelError('EINVAL', op, `ring size ${size} is below a page or the reserved entries`);
  if (size > KVM_DIRTY_RING_MAX_BYTES) throw new KernelError('E2BIG', op, `ring size ${size} is above ${KVM_DIRTY_RING_MAX_BYTES}`);
  const a = vmArch(vm);
  if (a.dirtyRingSize !== 0) throw new KernelError('EINVAL', op, `the dirty ring is set already (${a.dirtyRingSize} bytes)`);
  if (vm.createdVcpus > 0) throw new KernelError('EINVAL', op, 'vCPUs exist already');
  a.dirtyRingSize = size;
  // Slots already logging dirty pages push onto the ring from now on (mark_page_dirty_in_slot looks at the ring first).
  trackDirtyWrites(vm);
  return 0;
}

/** `kvm_use_dirty_bitmap`: false once the VM has a dirty ring (KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG are ENXIO). */
export function usesDirtyBitmap(vm: Vm): boolean {
  return vmArch(vm).dirtyRingSize === 0;
}

/** `kvm_dirty_ring_alloc` at vCPU creation, when the VM has a dirty ring. */
export function allocDirtyRing(v: Vcpu): void {
  const size = vmArch(v.vm).dirtyRingSize;
  if (size !== 0) v.dirtyRing = new DirtyRing(size);
}

/**
 * The vCPU fd's mmap of the ring's pages (`kvm_page_in_dirty_ring` / `kvm_dirty_ring_get_page`): `undefined` when
 * `pgoff` is not in the ring. @throws KernelError EINVAL when the range starts in the ring but runs past it
 */
export function dirtyRingMapping(v: Vcpu, length: number, pgoff: number): Uint8Array<ArrayBuffer> | undefined {
  const ring = v.dirtyRing;
  if (ring === undefined || pgoff < KVM_DIRTY_LOG_PAGE_OFFSET) return undefined;
  const off = (pgoff - KVM_DIRTY_LOG_PAGE_OFFSET) * PAGE_SIZE;
  if (off >= ring.bytes.length) return undefined;
  if (off + length > ring.bytes.length) throw new KernelError('EINVAL', 'mmap', `the dirty ring is ${ring.bytes.length} bytes`);
  return ring.bytes.subarray(off, off + length);
}

/**
 * `vcpu_enter_guest`'s `kvm_dirty_ring_check_request`, and the length of the pass: 0 when the ring is at its soft limit
 * (the entry exits with KVM_EXIT_DIRTY_RING_FULL), else how many of `budget` instructions the guest may run before the
 * next check — few enough that the pushes cannot pass the soft limit. The ring takes the VM's guest writes meanwhile
 * (`kvm_get_running_vcpu`).
 */
export function dirtyRingPass(v: Vcpu, ring: DirtyRing, budget: number): number {
  if (ring.softFull) return 0;
  vmArch(v.vm).dirtyRingWriter = ring;
  const room = ring.softLimit - ring.used - PUSHES_AT_ENTRY;
  return Math.min(budget, Math.max(1, Math.floor(room / PUSHES_PER_UNIT)));
}

/** `kvm_reset_dirty_gfn`: write-protect again the pages `mask` names from `offset` in `slot`, if they are all in it. */
function reprotectPages(vm: Vm, slot: number, offset: bigint, mask: bigint): void {
  if (mask === 0n) return;
  const asId = slot >>> 16;
  const id = slot & 0xffff;
  // kvm_arch_nr_memslot_as_ids: 2 on x86 (SMM)
  if (asId >= 2 || id >= KVM_USER_MEM_SLOTS) return;
  const memslot = vm.memslots.get(asId, id);
  const fls = BigInt(mask.toString(2).length - 1);
  if (memslot === undefined || offset + fls >= BigInt(memslot.size / PAGE_SIZE)) return;
  // The model write-protects through the slot's page bitmap (dirty-log.ts): a clear bit pushes again.
  const bitmap = vmArch(vm).dirty.get(slot);
  if (bitmap === undefined) return;
  const base = Number(offset);
  for (let b = 0; b < 64; b++) {
    if (((mask >> BigInt(b)) & 1n) === 0n) continue;
    const page = base + b;
    bitmap[page >> 3] = (bitmap[page >> 3] as number) & ~(1 << (page & 7));
  }
}

/** `kvm_vm_ioctl_reset_dirty_pages`: every vCPU's ring reset in turn. @throws KernelError EINVAL without a ring */
export function resetDirtyRings(vm: Vm): number {
  if (vmArch(vm).dirtyRingSize === 0) throw KernelError.withoutStack('EINVAL', 'KVM_RESET_DIRTY_RINGS', 'the VM has no dirty ring'); // saveVm's probe on every save
  let cleared = 0;
  for (const v of vm.vcpus.values()) {
    const ring = v.dirtyRing;
    if (ring !== undefined) cleared += ring.reset((slot, offset, mask) => reprotectPages(vm, slot, offset, mask));
  }
  return cleared;
}

/** The VM ioctl of the dirty ring. */
export const DIRTY_RING_VM_IOCTLS: readonly IoctlDef<VmFile>[] = [
  {
    name: 'KVM_RESET_DIRTY_RINGS',
    request: KVM_RESET_DIRTY_RINGS,
    arg: { dir: 'none' },
    run: ({ vm }) => resetDirtyRings(vm),
  },
];

/** Whether `cap` is one of the two ring capabilities KVM_ENABLE_CAP hands to {@link enableDirtyRing}. */
export function isDirtyRingCap(cap: number): boolean {
  return cap === KVM_CAP_DIRTY_LOG_RING || cap === KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
}
