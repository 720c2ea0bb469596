/**
 * The view the bridge puts over a VM's guest memory (`Vm.guestMemoryView`): every guest access first tells the
 * process's {@link GuestMemoryMirror} which VMM page it touches, so the page is read from the VMM on its first
 * touch since the last sync and, when written, written back at the next one. Reads and writes then go to the
 * memory the guest would run on without the bridge (the slots, or the dirty-logging view, so KVM_GET_DIRTY_LOG
 * still sees every guest write).
 *
 * **Address spaces.** A vCPU in SMM runs on address space 1 (`Vm.smmMemory`, `kvm_arch_vcpu_memslots_id`), whose
 * slots may map other VMM memory at the same guest-physical addresses (QEMU's SMRAM at 0xa0000, where address
 * space 0 has the VGA window) or memory address space 0 does not map at all. Each view translates guest-physical
 * addresses through the slots of the address space it is over, so SMRAM is read from the VMM and written back like
 * any other guest page.
 *
 * @module
 */
import type { Memslot, Memslots, Vm } from '@vac/kvm';
import type { GuestMemoryMirror } from './guest-memory.js';

type GuestMemory = Vm['guestMemory'];

/** Where a guest-physical address of one address space is in the VMM: its backed slot, if any. */
export type SlotFinder = (gpa: number) => Memslot | undefined;

/** Guest memory whose pages are fetched from a real VMM on first touch. */
export class LazyGuestMemory implements GuestMemory {
  readonly #inner: GuestMemory;
  readonly #find: SlotFinder;
  readonly #mirror: GuestMemoryMirror;

  /**
   * @param inner - the memory the guest runs on without the bridge (one address space's)
   * @param find - that address space's backed slots (guest-physical to VMM addresses)
   * @param mirror - the VMM process's mirror
   */
  constructor(inner: GuestMemory, find: SlotFinder, mirror: GuestMemoryMirror) {
    this.#inner = inner;
    this.#find = find;
    this.#mirror = mirror;
  }

  /** `GuestMemory.read8`, after fetching the page. */
  read8(gpa: number): number {
    const s = this.#find(gpa);
    if (s !== undefined) this.#mirror.touch(s.userspaceAddr + (gpa - s.base), false);
    return this.#inner.read8(gpa);
  }

  /** `GuestMemory.write8`, after fetching the page, which is then written back at the next sync. */
  write8(gpa: number, value: number): boolean {
    const s = this.#find(gpa);
    if (s === undefined || s.readonly) return this.#inner.write8(gpa, value);
    this.#mirror.touch(s.userspaceAddr + (gpa - s.base), true);
    return this.#inner.write8(gpa, value);
  }
}

/**
 * The backed slots of address space `asId` of `slots`, found by guest-physical address: address space 0's own
 * lookup, or — for address space 1 (SMM) — a search of its few slots, refreshed when the slots change.
 */
export function slotFinder(slots: Memslots, asId: number): SlotFinder {
  if (asId === 0) return (gpa) => slots.lookup(gpa);
  let generation = -1;
  let list: Memslot[] = [];
  let last: Memslot | undefined;
  return (gpa) => {
    if (generation !== slots.generation) {
      generation = slots.generation;
      list = slots.list().filter((m) => m.asId === asId && m.backed);
      last = undefined;
    }
    if (last !== undefined && gpa >= last.base && gpa < last.end) return last;
    for (const m of list) {
      if (gpa >= m.base && gpa < m.end) {
        last = m;
        return m;
      }
    }
    return undefined;
  };
}

/**
 * Put a {@link LazyGuestMemory} over `vm`'s guest memory (once; dirty-logging changes keep it on top): over address
 * space 0's memory and, for a vCPU in SMM, over address space 1's (`Vm.smmMemory` applies the same view to
 * `Vm.smmSlotsMemory`).
 */
export function installLazyMemory(vm: Vm, mirror: GuestMemoryMirror): void {
  if (vm.guestMemoryView !== undefined) return;
  const as0 = slotFinder(vm.memslots, 0);
  const as1 = slotFinder(vm.memslots, 1);
  vm.guestMemoryView = (inner) => new LazyGuestMemory(inner, inner === vm.smmSlotsMemory ? as1 : as0, mirror);
  vm.guestMemory = vm.guestMemoryView(vm.guestMemory);
}
