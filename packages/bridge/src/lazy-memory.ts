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
 * **The fast path** (`GuestMemory.lookup`, which the interpreter uses to reach a slot's bytes without a call per
 * byte): the view answers with the one guest page that holds the address, as a page-sized slot over the memslot's
 * bytes — after touching that page in the mirror, as a write would (a writable slot's page is marked written whole).
 * The memory under the view reads and writes those very bytes (the slots themselves, or the dirty-logging view over
 * them, `Vm.guestMemory`). A slot that logs dirty pages (`KVM_MEM_LOG_DIRTY_PAGES`: QEMU's VGA memory, all of RAM
 * during a live migration) is handed out marked `readonly`, which makes the interpreter send each write to that slot
 * through {@link LazyGuestMemory.write8} — so the dirty-logging view under it marks the page — while its reads take
 * the fast path; a `KVM_MEM_READONLY` slot's writes are refused there as before (MMIO exits). The interpreter keeps
 * such a slot only for the rest of one `runGuest`, and
 * the bridge syncs between runs, so every page the guest reaches in a run has been read from the VMM first. The
 * write-back stays exact: a page marked written is compared with the VMM's bytes as they were read (its shadow)
 * and only the byte runs that differ are written, so a byte the guest did not change is never written over what a
 * VMM thread put there (`byte-runs.ts`).
 *
 * @module
 */
import { KVM_MEM_LOG_DIRTY_PAGES, type Memslot, type Memslots, type Vm } from '@vac/kvm';
import type { GuestMemoryMirror } from './guest-memory.js';

type GuestMemory = Vm['guestMemory'];
type GuestMemorySlot = NonNullable<ReturnType<NonNullable<GuestMemory['lookup']>>>;

const PAGE = 4096;

/** Whether new views offer the fast path (see {@link setLazyLookup}). */
let fastPath = true;

/**
 * @internal Turn the fast path of views made from now on off or on (default on): for bench/seabios-boot.ts, which
 * measures a boot with and without it in one process.
 */
export function setLazyLookup(on: boolean): void {
  fastPath = on;
}

/** Where a guest-physical address of one address space is in the VMM: its backed slot, if any. */
export type SlotFinder = (gpa: number) => Memslot | undefined;

/** A page-sized slot the fast path handed out, and the memslot it is a page of. */
interface PageSlot {
  readonly slot: GuestMemorySlot;
  readonly of: Memslot;
}

/** Guest memory whose pages are fetched from a real VMM on first touch. */
export class LazyGuestMemory implements GuestMemory {
  readonly #inner: GuestMemory;
  readonly #find: SlotFinder;
  readonly #mirror: GuestMemoryMirror;
  /** Page-sized slots by guest page number (made once per page and slot). */
  readonly #pages = new Map<number, PageSlot>();
  /** `GuestMemory.lookup`: the fast path (module notes); absent when turned off ({@link setLazyLookup}). */
  readonly lookup?: (gpa: number) => GuestMemorySlot | undefined;

  /**
   * @param inner - the memory the guest runs on without the bridge (one address space's)
   * @param find - that address space's backed slots (guest-physical to VMM addresses)
   * @param mirror - the VMM process's mirror
   */
  constructor(inner: GuestMemory, find: SlotFinder, mirror: GuestMemoryMirror) {
    this.#inner = inner;
    this.#find = find;
    this.#mirror = mirror;
    if (fastPath) this.lookup = (gpa) => this.#page(gpa);
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

  /**
   * The fast path: the guest page holding `gpa` as a slot of its own, touched (and, when the guest may write it
   * directly, marked written); `readonly` when its writes must go through {@link write8} (module notes).
   */
  #page(gpa: number): GuestMemorySlot | undefined {
    const of = this.#find(gpa);
    if (of === undefined) return undefined;
    const pageNo = Math.floor(gpa / PAGE);
    const start = Math.max(pageNo * PAGE, of.base);
    const end = Math.min(pageNo * PAGE + PAGE, of.end);
    const direct = !of.readonly && (of.flags & KVM_MEM_LOG_DIRTY_PAGES) === 0;
    this.#mirror.touchRange(of.userspaceAddr + (start - of.base), end - start, direct);
    let p = this.#pages.get(pageNo);
    if (p === undefined || p.of !== of) {
      p = { of, slot: { bytes: of.bytes.subarray(start - of.base, end - of.base), base: start, end, readonly: !direct } };
      this.#pages.set(pageNo, p);
    }
    return p.slot;
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
