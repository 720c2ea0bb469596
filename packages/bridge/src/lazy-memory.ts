/**
 * The view the bridge puts over a VM's guest memory (`Vm.guestMemoryView`): every guest access first tells the
 * process's {@link GuestMemoryMirror} which VMM page it touches, so the page is read from the VMM on its first
 * touch since the last sync and, when written, written back at the next one. Reads and writes then go to the
 * memory the guest would run on without the bridge (the slots, or the dirty-logging view, so KVM_GET_DIRTY_LOG
 * still sees every guest write).
 *
 * @module
 */
import type { Memslots, Vm } from '@vac/kvm';
import type { GuestMemoryMirror } from './guest-memory.js';

type GuestMemory = Vm['guestMemory'];

/** Guest memory whose pages are fetched from a real VMM on first touch. */
export class LazyGuestMemory implements GuestMemory {
  readonly #inner: GuestMemory;
  readonly #slots: Memslots;
  readonly #mirror: GuestMemoryMirror;

  /**
   * @param inner - the memory the guest runs on without the bridge
   * @param slots - the VM's memory slots (guest-physical to VMM addresses)
   * @param mirror - the VMM process's mirror
   */
  constructor(inner: GuestMemory, slots: Memslots, mirror: GuestMemoryMirror) {
    this.#inner = inner;
    this.#slots = slots;
    this.#mirror = mirror;
  }

  /** `GuestMemory.read8`, after fetching the page. */
  read8(gpa: number): number {
    const s = this.#slots.lookup(gpa);
    if (s !== undefined) this.#mirror.touch(s.userspaceAddr + (gpa - s.base), false);
    return this.#inner.read8(gpa);
  }

  /** `GuestMemory.write8`, after fetching the page, which is then written back at the next sync. */
  write8(gpa: number, value: number): boolean {
    const s = this.#slots.lookup(gpa);
    if (s === undefined || s.readonly) return this.#inner.write8(gpa, value);
    this.#mirror.touch(s.userspaceAddr + (gpa - s.base), true);
    return this.#inner.write8(gpa, value);
  }
}

/** Put a {@link LazyGuestMemory} over `vm`'s guest memory (once; dirty-logging changes keep it on top). */
export function installLazyMemory(vm: Vm, mirror: GuestMemoryMirror): void {
  if (vm.guestMemoryView !== undefined) return;
  vm.guestMemoryView = (inner) => new LazyGuestMemory(inner, vm.memslots, mirror);
  vm.guestMemory = vm.guestMemoryView(vm.guestMemory);
}
