/**
 * A VM's memory slots (`struct kvm_memslots`) and `KVM_SET_USER_MEMORY_REGION`
 * (virt/kvm/kvm_main.c `kvm_set_memory_region` / `__kvm_set_memory_region`, `check_memory_region_flags`).
 *
 * Guest memory is process memory: a slot names a range of the VM owner's address space
 * (`userspace_addr`), and guest accesses read and write those very bytes. The same bytes can back a VM
 * on kvm0 and then one on kvm1.
 *
 * @module
 */
import { KernelError, type Process } from '@vac/core';
import { KVM_MEM_LOG_DIRTY_PAGES, KVM_MEM_READONLY, KVM_USER_MEM_SLOTS, PAGE_SIZE } from '../abi/constants.js';
import type { GuestMemory, GuestMemorySlot } from '../guest/memory.js';
import type { MemoryRegionArg } from './memslot-region.js';
import { SlotTree } from './slot-tree.js';

/** `KVM_ADDRESS_SPACE_NUM` on x86 with SMM: address space 0 (normal) and 1 (SMM). */
export const KVM_ADDRESS_SPACE_NUM = 2;
/** `KVM_MEM_MAX_NR_PAGES` = (1UL << 31) - 1. */
const KVM_MEM_MAX_NR_PAGES = 2 ** 31 - 1;
/** The end of the user address range `access_ok` accepts (x86-64 with 4-level paging). */
const USER_ADDRESS_END = 2 ** 47;
/** The end of what `kvm_mmu_max_gfn` lets a slot reach (52 guest-physical address bits). */
const GUEST_PHYS_END = 2 ** 52;

/** What one `KVM_SET_USER_MEMORY_REGION` did to its slot (`enum kvm_mr_change`; `none`: nothing to do). */
export type MemslotChange = 'create' | 'delete' | 'move' | 'flags' | 'none';

/** One memory slot. */
export interface Memslot extends GuestMemorySlot {
  /** Slot id within its address space. */
  readonly id: number;
  /** Address space (0 = normal, 1 = SMM). */
  readonly asId: number;
  /** `KVM_MEM_*` flags. */
  readonly flags: number;
  /** The user-space address it maps. */
  readonly userspaceAddr: number;
  /** Size in bytes. */
  readonly size: number;
  /** False when the user range was not (wholly) mapped at creation: a guest access there faults (EFAULT). */
  readonly backed: boolean;
}

/**
 * The guest-physical memory of one address space: its backed slots, and the last one found (the interpreter asks for
 * the same slot again and again). {@link Memslots} is address space 0's; a vCPU in SMM runs on address space 1's
 * (`kvm_arch_vcpu_memslots_id`: `is_smm(vcpu) ? 1 : 0`), where KVM's own accesses for it (the SMM save state) go too
 * (`kvm_vcpu_memslots`).
 */
export class AddressSpaceMemory implements GuestMemory {
  readonly #tree: SlotTree<Memslot>;
  #last: Memslot | undefined;

  /** @param tree - the address space's slots (`gfn_tree`) */
  constructor(tree: SlotTree<Memslot>) {
    this.#tree = tree;
  }

  /** The slots changed: forget the last one found. */
  protected invalidate(): void {
    this.#last = undefined;
  }

  /** {@link GuestMemory.lookup}, the interpreter's fast path: the backed slot containing `gpa`. */
  readonly lookup = (gpa: number): Memslot | undefined => {
    const l = this.#last;
    if (l !== undefined && gpa >= l.base && gpa < l.end) return l;
    const m = this.#tree.containing(gpa);
    if (m === undefined || !m.backed) return undefined;
    this.#last = m;
    return m;
  };

  /** {@link GuestMemory.read8}. */
  read8(gpa: number): number {
    const s = this.lookup(gpa);
    return s === undefined ? -1 : (s.bytes[gpa - s.base] as number);
  }

  /** {@link GuestMemory.write8}. */
  write8(gpa: number, value: number): boolean {
    const s = this.lookup(gpa);
    if (s === undefined || s.readonly) return false;
    s.bytes[gpa - s.base] = value;
    return true;
  }
}

/** Address space 1's memory, whose slot cache {@link Memslots} drops when the slots change. */
class SmmAddressSpace extends AddressSpaceMemory {
  /** The slots changed. */
  changed(): void {
    this.invalidate();
  }
}

/** The memslots of one VM; as guest memory, address space 0 (the interpreter's view outside SMM). */
export class Memslots extends AddressSpaceMemory {
  /** Every slot by (address space << 16 | id) (`id_hash`). */
  readonly #byId = new Map<number, Memslot>();
  /** Each address space's slots ordered by base (`gfn_tree`). */
  readonly #trees: readonly SlotTree<Memslot>[];
  /** Address space 1 (SMM) as guest memory. */
  readonly #smm: SmmAddressSpace;

  /** No slots yet. */
  constructor() {
    const trees = Array.from({ length: KVM_ADDRESS_SPACE_NUM }, () => new SlotTree<Memslot>());
    super(trees[0] as SlotTree<Memslot>);
    this.#trees = trees;
    this.#smm = new SmmAddressSpace(trees[1] as SlotTree<Memslot>);
  }
  /** Bumped on every change (so cached translations can be dropped). */
  generation = 0;

  /** Every slot (copy), sorted by (address space, id). */
  list(): Memslot[] {
    return [...this.#byId.values()].sort((a, b) => a.asId - b.asId || a.id - b.id);
  }

  /** Slot `id` of address space `asId`, if it exists (`id_to_memslot`). */
  get(asId: number, id: number): Memslot | undefined {
    return this.#byId.get((asId << 16) | id);
  }

  /** Number of slots in use. */
  get count(): number {
    return this.#byId.size;
  }

  /**
   * `KVM_SET_USER_MEMORY_REGION` (`kvm_set_memory_region`): create, move, change flags of, or delete (size 0) a
   * slot. The checks come in Linux's order on the exact values (`mem`'s 64-bit fields are bigints from 2^53 up).
   * @returns what changed (`KVM_MR_CREATE`/`MOVE`/`FLAGS_ONLY`/`DELETE`), or `none` when the slot stays as it was
   * @throws `KernelError` EINVAL (bad flags, slot id, alignment, size, user range; a range that wraps or ends beyond
   * the guest-physical address width; changing a slot's size, user address or read-only flag; deleting a slot that
   * does not exist), EEXIST (overlaps another slot)
   */
  set(mem: MemoryRegionArg, owner: Process): MemslotChange {
    const op = 'KVM_SET_USER_MEMORY_REGION';
    // check_memory_region_flags: x86 accepts LOG_DIRTY_PAGES and READONLY.
    if ((mem.flags & ~(KVM_MEM_LOG_DIRTY_PAGES | KVM_MEM_READONLY)) !== 0) throw new KernelError('EINVAL', op, `invalid flags 0x${mem.flags.toString(16)}`);
    const { memory_size: size, guest_phys_addr: gpa, userspace_addr: uaddr } = mem;
    if (typeof size === 'number' && typeof gpa === 'number' && typeof uaddr === 'number') {
      if (size % PAGE_SIZE !== 0) throw new KernelError('EINVAL', op, 'memory_size is not page-aligned');
      if (gpa % PAGE_SIZE !== 0) throw new KernelError('EINVAL', op, 'guest_phys_addr is not page-aligned');
      // "We can read the guest memory with __xxx_user() later on": alignment and access_ok only.
      if (uaddr % PAGE_SIZE !== 0 || uaddr + size > USER_ADDRESS_END) throw new KernelError('EINVAL', op, 'bad userspace_addr');
    } else {
      // A value from 2^53 up, exact: the same checks on bigints. Past them only guest_phys_addr can be one.
      const size64 = BigInt(size);
      if (size64 % BigInt(PAGE_SIZE) !== 0n) throw new KernelError('EINVAL', op, 'memory_size is not page-aligned');
      if (BigInt(gpa) % BigInt(PAGE_SIZE) !== 0n) throw new KernelError('EINVAL', op, 'guest_phys_addr is not page-aligned');
      if (BigInt(uaddr) % BigInt(PAGE_SIZE) !== 0n || BigInt(uaddr) + size64 > BigInt(USER_ADDRESS_END)) throw new KernelError('EINVAL', op, 'bad userspace_addr');
    }
    const asId = mem.slot >>> 16;
    const id = mem.slot & 0xffff;
    if (asId >= KVM_ADDRESS_SPACE_NUM || id >= KVM_USER_MEM_SLOTS) throw new KernelError('EINVAL', op, `invalid slot ${mem.slot}`);
    if (BigInt(gpa) + BigInt(size) >= 2n ** 64n) throw new KernelError('EINVAL', op, 'guest_phys_addr + memory_size wraps');
    if (Number(size) / PAGE_SIZE > KVM_MEM_MAX_NR_PAGES) throw new KernelError('EINVAL', op, 'memory_size too large');
    // From here the size and the user address are below 2^47 (numbers); the guest address may still be a bigint.
    const bytes = Number(size);
    const user = Number(uaddr);
    const old = this.#byId.get((asId << 16) | id);
    if (bytes === 0) {
      if (old === undefined) throw new KernelError('EINVAL', op, `slot ${mem.slot} does not exist`);
      this.#replace(old, undefined);
      return 'delete';
    }
    if (old !== undefined) {
      if (old.userspaceAddr !== user || old.size !== bytes || ((old.flags ^ mem.flags) & KVM_MEM_READONLY) !== 0) {
        throw new KernelError('EINVAL', op, 'a slot\'s size, address and read-only flag cannot change');
      }
      if (old.base === gpa) {
        if (old.flags === mem.flags) return 'none';
        this.#replace(old, { ...old, flags: mem.flags });
        return 'flags';
      }
      const base = this.#placeable(asId, gpa, bytes, old);
      this.#replace(old, { ...old, base, end: base + bytes, flags: mem.flags });
      return 'move';
    }
    const base = this.#placeable(asId, gpa, bytes, undefined);
    const memory = owner.userMemory(user, bytes);
    const slot: Memslot = {
      id,
      asId,
      flags: mem.flags,
      userspaceAddr: user,
      size: bytes,
      base,
      end: base + bytes,
      readonly: (mem.flags & KVM_MEM_READONLY) !== 0,
      bytes: memory ?? new Uint8Array(0),
      backed: memory !== undefined,
    };
    this.#replace(undefined, slot);
    return 'create';
  }

  /**
   * Where a created or moved slot can go: no overlap with another slot of its address space
   * (`kvm_check_memslot_overlap`: EEXIST), then below the guest-physical address width
   * (x86 `kvm_arch_prepare_memory_region`, `kvm_mmu_max_gfn`: EINVAL). A `bigint` address (2^53 up) overlaps no slot.
   */
  #placeable(asId: number, gpa: number | bigint, size: number, except: Memslot | undefined): number {
    if (typeof gpa === 'number') this.#checkOverlap(asId, gpa, size, except);
    if (typeof gpa === 'bigint' || gpa + size > GUEST_PHYS_END) {
      throw new KernelError('EINVAL', 'KVM_SET_USER_MEMORY_REGION', 'the slot ends beyond the guest-physical address width');
    }
    return gpa;
  }

  #checkOverlap(asId: number, gpa: number, size: number, except: Memslot | undefined): void {
    const s = (this.#trees[asId] as SlotTree<Memslot>).overlapping(gpa, gpa + size, except);
    if (s !== undefined) {
      throw new KernelError('EEXIST', 'KVM_SET_USER_MEMORY_REGION', `overlaps slot ${s.id} [0x${s.base.toString(16)}, 0x${s.end.toString(16)})`);
    }
  }

  #replace(old: Memslot | undefined, next: Memslot | undefined): void {
    if (old !== undefined) {
      this.#byId.delete((old.asId << 16) | old.id);
      (this.#trees[old.asId] as SlotTree<Memslot>).remove(old.base);
    }
    if (next !== undefined) {
      this.#byId.set((next.asId << 16) | next.id, next);
      (this.#trees[next.asId] as SlotTree<Memslot>).insert(next);
    }
    this.invalidate();
    this.#smm.changed();
    this.generation++;
  }

  /** @internal The guest memory of address space 1 (SMRAM and whatever else user space put there), for a vCPU in SMM. */
  get smm(): AddressSpaceMemory {
    return this.#smm;
  }

  /** The address-space-0 slot covering `gpa` (backed or not), if any. */
  slotAt(gpa: number): Memslot | undefined {
    return (this.#trees[0] as SlotTree<Memslot>).containing(gpa);
  }
}
