/**
 * The kernel's copy of a `KVM_SET_USER_MEMORY_REGION(2)` argument: the public structures' fields with the three
 * 64-bit ones exact above 2^53 (`u64exact`: a `number` below 2^53, a `bigint` from there), so
 * `kvm_set_memory_region` (virt/kvm/kvm_main.c) sees exactly the values C would pass — an address or size no
 * `number` can hold is EINVAL there, as in Linux, not a bad pointer.
 *
 * @module
 */
import { defineStruct, u32, u64exact, type StructCodec } from '../abi/codec.js';
import { KVM_LAYOUTS } from '../abi/layout.js';

/** A `struct kvm_userspace_memory_region` as the kernel copied it. */
export interface MemoryRegionArg {
  /** Bits 0–15 the slot id, bits 16–31 the address space. */ slot: number;
  /** `KVM_MEM_*`. */ flags: number;
  /** Guest-physical start. */ guest_phys_addr: number | bigint;
  /** Size in bytes; 0 deletes the slot. */ memory_size: number | bigint;
  /** User address of the backing memory. */ userspace_addr: number | bigint;
}

/** A `struct kvm_userspace_memory_region2` as the kernel copied it. */
export interface MemoryRegion2Arg extends MemoryRegionArg {
  /** Offset into the guest_memfd (with KVM_MEM_GUEST_MEMFD). */ guest_memfd_offset: number | bigint;
  /** The guest_memfd (with KVM_MEM_GUEST_MEMFD). */ guest_memfd: number;
}

/** `struct kvm_userspace_memory_region` with exact 64-bit fields. */
export const MEMORY_REGION_ARG_CODEC: StructCodec<MemoryRegionArg> = defineStruct<MemoryRegionArg>(KVM_LAYOUTS.kvm_userspace_memory_region, {
  slot: u32,
  flags: u32,
  guest_phys_addr: u64exact,
  memory_size: u64exact,
  userspace_addr: u64exact,
});

/** `struct kvm_userspace_memory_region2` with exact 64-bit fields (`pad1`, `pad2` ignored, as Linux ignores them). */
export const MEMORY_REGION2_ARG_CODEC: StructCodec<MemoryRegion2Arg> = defineStruct<MemoryRegion2Arg>(KVM_LAYOUTS.kvm_userspace_memory_region2, {
  slot: u32,
  flags: u32,
  guest_phys_addr: u64exact,
  memory_size: u64exact,
  userspace_addr: u64exact,
  guest_memfd_offset: u64exact,
  guest_memfd: u32,
});
