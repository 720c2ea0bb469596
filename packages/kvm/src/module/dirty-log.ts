/**
 * Dirty-page logging (virt/kvm/kvm_main.c `kvm_get_dirty_log_protect`, `kvm_clear_dirty_log_protect`,
 * `kvm_alloc_dirty_bitmap`, `mark_page_dirty_in_slot`): a slot made with KVM_MEM_LOG_DIRTY_PAGES gets a bitmap,
 * one bit per page, and every page the guest writes is marked. KVM_GET_DIRTY_LOG copies the bitmap out (and, without
 * KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE, clears it: Linux write-protects those pages again); KVM_CLEAR_DIRTY_LOG
 * clears the bits user space hands back.
 *
 * While any slot logs, the guest runs on {@link DirtyTrackingMemory}: every write goes through it and marks its page
 * (Linux's write-protection faults); reads and writes elsewhere behave exactly as on the slots themselves. Only guest
 * writes are logged, as in Linux (the VMM's own writes to the memory are not KVM's to see).
 *
 * @module
 */
import { KernelError } from '@vac/core';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_USER_MEM_SLOTS, PAGE_SIZE } from '../abi/constants.js';
import { KVM_DIRTY_LOG_INITIALLY_SET, KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE } from '../abi/constants-x86.js';
import type { GuestMemory } from '../guest/memory.js';
import { usesDirtyBitmap } from './dirty-ring.js';
import type { AddressSpaceMemory } from './memslots.js';
import { vmArch } from './vm-arch.js';
import type { Vm } from './vm.js';

/**
 * Where the first write to a write-protected page is logged besides its bit (the dirty ring: dirty-ring.ts). Returns
 * false when it was not logged (no vCPU runs): the page then stays write-protected.
 */
export type FirstWriteLog = (slotId: number, page: number) => boolean;

/**
 * Guest memory that marks the page of every guest write in its slot's dirty bitmap. With a dirty ring the bitmap says
 * which pages are no longer write-protected, and the first write to a protected page is also pushed onto the ring.
 */
export class DirtyTrackingMemory implements GuestMemory {
  readonly #slots: AddressSpaceMemory;
  readonly #dirty: ReadonlyMap<number, Uint8Array>;
  readonly #firstWrite: FirstWriteLog | undefined;

  /**
   * @param slots - the slots of one of the VM's address spaces
   * @param dirty - the bitmaps, by slot (address space << 16 | id)
   * @param firstWrite - with a dirty ring, where a write to a protected page is logged
   */
  constructor(slots: AddressSpaceMemory, dirty: ReadonlyMap<number, Uint8Array>, firstWrite?: FirstWriteLog) {
    this.#slots = slots;
    this.#dirty = dirty;
    this.#firstWrite = firstWrite;
  }

  /** {@link GuestMemory.read8}. */
  read8(gpa: number): number {
    return this.#slots.read8(gpa);
  }

  /** {@link GuestMemory.write8}: the write, and its page marked dirty (`mark_page_dirty_in_slot`). */
  write8(gpa: number, value: number): boolean {
    if (!this.#slots.write8(gpa, value)) return false;
    const slot = this.#slots.lookup(gpa);
    if (slot !== undefined) {
      const key = (slot.asId << 16) | slot.id;
      const bitmap = this.#dirty.get(key);
      if (bitmap !== undefined) {
        const page = Math.floor((gpa - slot.base) / PAGE_SIZE);
        const byte = bitmap[page >> 3] as number;
        const bit = 1 << (page & 7);
        if ((byte & bit) === 0 && (this.#firstWrite === undefined || this.#firstWrite(key, page))) bitmap[page >> 3] = byte | bit;
      }
    }
    return true;
  }
}

/** `kvm_dirty_bitmap_bytes`: one bit per page, rounded up to whole longs. */
export function dirtyBitmapBytes(pages: number): number {
  return Math.ceil(pages / 64) * 8;
}

/**
 * After KVM_SET_USER_MEMORY_REGION: give a slot that now logs a bitmap (all set with KVM_DIRTY_LOG_INITIALLY_SET),
 * keep it across a flags-only change, drop it when the slot stops logging or goes; then pick the memory the guest
 * runs on.
 */
export function updateDirtyLogging(vm: Vm, id: number, asId: number, kind: 'create' | 'move' | 'flags' | 'delete'): void {
  const a = vmArch(vm);
  const key = (asId << 16) | id;
  const slot = vm.memslots.get(asId, id);
  const logging = slot !== undefined && (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) !== 0;
  if (!logging) a.dirty.delete(key);
  else if (kind !== 'flags' || !a.dirty.has(key)) {
    const bitmap = new Uint8Array(dirtyBitmapBytes(slot.size / PAGE_SIZE));
    if ((a.manualDirtyLogProtect & KVM_DIRTY_LOG_INITIALLY_SET) !== 0) {
      const pages = slot.size / PAGE_SIZE;
      for (let p = 0; p < pages; p++) bitmap[p >> 3] = (bitmap[p >> 3] as number) | (1 << (p & 7));
    }
    a.dirty.set(key, bitmap);
  }
  trackDirtyWrites(vm);
}

/**
 * The guest memory views that log writes to the logging slots: into their bitmaps, and with a dirty ring the first
 * write to a protected page onto the running vCPU's ring too. Made again whenever the slots or the ring change (a ring
 * enabled after a logging slot was made logs that slot's writes from then on, as `mark_page_dirty_in_slot` does).
 */
export function trackDirtyWrites(vm: Vm): void {
  const a = vmArch(vm);
  // With a dirty ring, the first write to a protected page goes to the running vCPU's ring (its slot: as_id << 16 | id).
  const firstWrite: FirstWriteLog | undefined = a.dirtyRingSize === 0 ? undefined : (slotKey, page) => a.dirtyRingWriter?.push(slotKey, page) === true;
  const keys = [...a.dirty.keys()];
  const memory = keys.some((k) => k >>> 16 === 0) ? new DirtyTrackingMemory(vm.memslots, a.dirty, firstWrite) : vm.memslots;
  vm.guestMemory = vm.guestMemoryView === undefined ? memory : vm.guestMemoryView(memory);
  // Address space 1 (SMM): the same, for a vCPU in SMM (Vm.smmMemory puts the view over it).
  vm.smmSlotsMemory = keys.some((k) => k >>> 16 === 1) ? new DirtyTrackingMemory(vm.memslots.smm, a.dirty, firstWrite) : vm.memslots.smm;
}

/** `kvm_use_dirty_bitmap` as the dirty-log ioctls check it first. @throws KernelError ENXIO with a dirty ring */
export function requireDirtyBitmap(vm: Vm, op: string): void {
  if (!usesDirtyBitmap(vm)) throw new KernelError('ENXIO', op, 'the VM logs dirty pages in its dirty ring');
}

/**
 * The logging slot `slot` names, or ENXIO (the VM has a dirty ring: `kvm_use_dirty_bitmap`), EINVAL / ENOENT as
 * `kvm_get_dirty_log_protect` answers.
 */
export function loggingSlot(vm: Vm, slotArg: number, op: string): { bitmap: Uint8Array; pages: number } {
  requireDirtyBitmap(vm, op);
  const asId = slotArg >>> 16;
  const id = slotArg & 0xffff;
  // kvm_arch_nr_memslot_as_ids: 2 on x86 (SMM)
  if (asId >= 2 || id >= KVM_USER_MEM_SLOTS) throw new KernelError('EINVAL', op, `invalid slot ${slotArg}`);
  const slot = vm.memslots.get(asId, id);
  const bitmap = vmArch(vm).dirty.get((asId << 16) | id);
  if (slot === undefined || bitmap === undefined) throw new KernelError('ENOENT', op, `slot ${slotArg} does not log dirty pages`);
  return { bitmap, pages: slot.size / PAGE_SIZE };
}

/** Whether KVM_GET_DIRTY_LOG leaves the bitmap to KVM_CLEAR_DIRTY_LOG (manual protection). */
export function manualProtect(vm: Vm): boolean {
  return (vmArch(vm).manualDirtyLogProtect & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE) !== 0;
}
