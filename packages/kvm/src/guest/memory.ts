/**
 * How the guest interpreter sees guest-physical memory.
 *
 * The VM's memslots (`KVM_SET_USER_MEMORY_REGION`) decide what a guest-physical address (GPA) is: RAM
 * backed by a user-space buffer, read-only RAM (`KVM_MEM_READONLY`), or nothing at all. An access that no
 * memslot satisfies is MMIO and exits to user space with `KVM_EXIT_MMIO`; that includes a write to a
 * read-only slot (Documentation/virt/kvm/api.rst, `KVM_MEM_READONLY`: "writes … will be posted to
 * userspace as KVM_EXIT_MMIO exits").
 *
 * {@link GuestMemory} is the minimal contract (one byte at a time); {@link GuestMemory.lookup} is an
 * optional fast path that hands out a whole slot so instruction fetch and data accesses inside one slot do
 * not call a function per byte. {@link SlotListMemory} implements both over a small list of slots, for
 * tests and for simple VMMs.
 *
 * @module
 */
import { UsageError } from '@vac/core';

/**
 * One contiguous run of guest RAM: guest-physical addresses `[base, end)` map to `bytes[gpa - base]`.
 * `bytes.length` is at least `end - base`.
 */
export interface GuestMemorySlot {
  /** The backing bytes (user space's buffer for the memslot). */
  readonly bytes: Uint8Array;
  /** First guest-physical address of the slot. */
  readonly base: number;
  /** One past the last guest-physical address of the slot. */
  readonly end: number;
  /**
   * True when the guest's writes may not go to `bytes` directly: reads hit RAM, and each write goes through
   * {@link GuestMemory.write8}, which refuses it for a `KVM_MEM_READONLY` slot (an MMIO exit) — or takes it, for a slot
   * whose writes the memory must see one by one (`@vac/bridge`'s view of a real VMM's RAM while a slot logs dirty
   * pages).
   */
  readonly readonly: boolean;
}

/** Guest-physical memory as the interpreter reads and writes it. */
export interface GuestMemory {
  /** Reads one byte; returns -1 when no memslot covers `gpa` (the access is MMIO). */
  read8(gpa: number): number;
  /** Writes one byte; returns false (writing nothing) when `gpa` is not RAM or is read-only (MMIO). */
  write8(gpa: number, value: number): boolean;
  /**
   * Optional fast path: the slot containing `gpa`, or `undefined` when none does. The interpreter caches
   * the returned slot for the rest of one `runGuest` call, so slots must not change during a run.
   */
  readonly lookup?: (gpa: number) => GuestMemorySlot | undefined;
}

/** One slot description accepted by {@link SlotListMemory}. */
export interface SlotListEntry {
  /** Guest-physical address of `bytes[0]` (`kvm_userspace_memory_region.guest_phys_addr`). */
  readonly guestPhysAddr: number;
  /** The backing buffer; its length is the slot size (`memory_size`). */
  readonly bytes: Uint8Array;
  /** Whether the slot is read-only (`KVM_MEM_READONLY`). Default false. */
  readonly readonly?: boolean;
}

class Slot implements GuestMemorySlot {
  constructor(
    readonly bytes: Uint8Array,
    readonly base: number,
    readonly end: number,
    readonly readonly: boolean,
  ) {}
}

/**
 * A {@link GuestMemory} over a fixed list of non-overlapping slots. Lookups scan the (short) list, starting
 * with the slot that answered last. The slot objects are created once, so {@link SlotListMemory.lookup}
 * never allocates.
 */
export class SlotListMemory implements GuestMemory {
  readonly #slots: Slot[];
  #last: Slot | undefined;

  /** Builds the memory; throws a `UsageError` when two slots overlap or an address is not a safe integer. */
  constructor(slots: readonly SlotListEntry[]) {
    this.#slots = slots.map((s) => {
      const base = s.guestPhysAddr;
      const end = base + s.bytes.length;
      if (!Number.isSafeInteger(base) || base < 0 || !Number.isSafeInteger(end)) {
        throw new UsageError('ERR_OUT_OF_RANGE', `guest memory slot at ${String(base)} is not a valid guest-physical range`);
      }
      return new Slot(s.bytes, base, end, s.readonly === true);
    });
    for (let i = 0; i < this.#slots.length; i++) {
      for (let j = i + 1; j < this.#slots.length; j++) {
        const a = this.#slots[i]!;
        const b = this.#slots[j]!;
        if (a.base < b.end && b.base < a.end && a.end > a.base && b.end > b.base) {
          throw new UsageError('ERR_INVALID_ARG', `guest memory slots at 0x${a.base.toString(16)} and 0x${b.base.toString(16)} overlap`);
        }
      }
    }
    this.#last = this.#slots[0];
  }

  /** The slot containing `gpa`, or `undefined`. */
  readonly lookup = (gpa: number): GuestMemorySlot | undefined => {
    const last = this.#last;
    if (last !== undefined && gpa >= last.base && gpa < last.end) return last;
    for (const slot of this.#slots) {
      if (gpa >= slot.base && gpa < slot.end) {
        this.#last = slot;
        return slot;
      }
    }
    return undefined;
  };

  /** Reads one byte, or -1 when no slot covers `gpa`. */
  read8(gpa: number): number {
    const slot = this.lookup(gpa);
    return slot === undefined ? -1 : slot.bytes[gpa - slot.base]!;
  }

  /** Writes one byte; false when no slot covers `gpa` or the slot is read-only. */
  write8(gpa: number, value: number): boolean {
    const slot = this.lookup(gpa);
    if (slot === undefined || slot.readonly) return false;
    slot.bytes[gpa - slot.base] = value;
    return true;
  }
}
