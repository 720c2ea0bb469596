/*
 * Group "memslots": KVM_SET_USER_MEMORY_REGION (and …2) — slot ids and address spaces, flags, alignment,
 * sizes and addresses (also above 2^53), overlaps, moving, resizing, deleting, re-creating.
 */
#include <stdio.h>
#include <string.h>

#include "groups.h"
#include "structs.h"

#define VM() IO_BIND("sys", KVM_CREATE_VM, 0, "vm")
#define MB (1024 * 1024)

/* KVM_SET_USER_MEMORY_REGION of `slot` at `gpa`, `size` bytes at `uaddr`, with `flags`. */
static long umr(uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, uint64_t uaddr) {
	struct kvm_userspace_memory_region m = { .slot = slot, .flags = flags, .guest_phys_addr = gpa, .memory_size = size, .userspace_addr = uaddr };
	return IO_PTR("vm", KVM_SET_USER_MEMORY_REGION, "kvm_userspace_memory_region", &m, emit_umr, NULL);
}

static long umr2(uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size, uint64_t uaddr) {
	struct kvm_userspace_memory_region2 m = { .slot = slot, .flags = flags, .guest_phys_addr = gpa, .memory_size = size, .userspace_addr = uaddr };
	return IO_PTR("vm", KVM_SET_USER_MEMORY_REGION2, "kvm_userspace_memory_region2", &m, emit_umr2, NULL);
}

/* A fact with a VM and 1 MiB of memory "m0" at `m`. */
#define SLOT_FACT(id, title) FACT(id, title) for (uint64_t m __attribute__((unused)) = (VM(), (uint64_t)(uintptr_t)step_mmap("m0", 2 * MB)), once_ = 1; once_; once_ = 0)

void record_memslots(void) {
	SLOT_FACT("memslot.create", "A 1 MiB slot 0 at guest-physical 0") {
		umr(0, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.create-at-4g", "A slot at guest-physical 4 GiB") {
		umr(0, 0, 1ULL << 32, MB, m);
	}
	SLOT_FACT("memslot.slot-last", "Slot 32763 (KVM_USER_MEM_SLOTS - 1)") {
		umr(32763, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.slot-too-big", "Slot 32764 (KVM_USER_MEM_SLOTS): EINVAL") {
		umr(32764, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.slot-private-range", "Slot 32765 (KVM's private slots): EINVAL") {
		umr(32765, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.address-space-1", "Slot 0 of address space 1 (SMM): (1 << 16) | 0") {
		umr(1u << 16, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.address-space-2", "Slot 0 of address space 2: EINVAL") {
		umr(2u << 16, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.address-spaces-overlap", "The same guest range in address spaces 0 and 1: no overlap") {
		umr(0, 0, 0, MB, m);
		umr(1u << 16, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.flag-log-dirty", "KVM_MEM_LOG_DIRTY_PAGES") {
		umr(0, KVM_MEM_LOG_DIRTY_PAGES, 0, MB, m);
	}
	SLOT_FACT("memslot.flag-readonly", "KVM_MEM_READONLY") {
		umr(0, KVM_MEM_READONLY, 0, MB, m);
	}
	SLOT_FACT("memslot.flag-guest-memfd-v1", "KVM_MEM_GUEST_MEMFD through KVM_SET_USER_MEMORY_REGION: EINVAL") {
		umr(0, KVM_MEM_GUEST_MEMFD, 0, MB, m);
	}
	SLOT_FACT("memslot.flag-unknown", "An unknown flag (bit 3): EINVAL") {
		umr(0, 1u << 3, 0, MB, m);
	}
	SLOT_FACT("memslot.flag-high", "An unknown flag (bit 31): EINVAL") {
		umr(0, 1u << 31, 0, MB, m);
	}
	SLOT_FACT("memslot.size-unaligned", "memory_size not a multiple of 4 KiB: EINVAL") {
		umr(0, 0, 0, MB + 1, m);
	}
	SLOT_FACT("memslot.gpa-unaligned", "guest_phys_addr not page-aligned: EINVAL") {
		umr(0, 0, 0x800, MB, m);
	}
	SLOT_FACT("memslot.uaddr-unaligned", "userspace_addr not page-aligned: EINVAL") {
		umr(0, 0, 0, MB, m + 8);
	}
	SLOT_FACT("memslot.uaddr-kernel", "userspace_addr in the kernel half (0xffff800000000000): EINVAL") {
		umr(0, 0, 0, MB, 0xffff800000000000ULL);
	}
	SLOT_FACT("memslot.uaddr-above-47-bits", "userspace_addr at 2^47, the first address above user space: EINVAL") {
		umr(0, 0, 0, MB, 1ULL << 47);
	}
	SLOT_FACT("memslot.uaddr-not-mapped", "userspace_addr page-aligned but not mapped: accepted") {
		umr(0, 0, 0, MB, 0x10000000000ULL);
	}
	SLOT_FACT("memslot.size-above-max-pages", "2^31 pages (above KVM_MEM_MAX_NR_PAGES): EINVAL") {
		umr(0, 0, 0, 1ULL << 43, 0x100000000000ULL);
	}
	SLOT_FACT("memslot.gpa-above-maxphyaddr", "guest_phys_addr at 2^52: EINVAL") {
		umr(0, 0, 1ULL << 52, MB, m);
	}
	SLOT_FACT("memslot.gpa-above-2-53", "guest_phys_addr at 2^53 + 4 KiB (not a safe JS integer): EINVAL") {
		umr(0, 0, (1ULL << 53) + 0x1000, MB, m);
	}
	SLOT_FACT("memslot.gpa-top", "guest_phys_addr at 2^64 - 1 MiB: EINVAL") {
		umr(0, 0, 0ULL - MB, MB, m);
	}
	SLOT_FACT("memslot.gpa-wraps", "guest_phys_addr + memory_size wraps past 2^64: EINVAL") {
		umr(0, 0, 0ULL - 0x1000, MB, m);
	}
	SLOT_FACT("memslot.size-above-2-53", "memory_size 2^53 + 4 KiB: EINVAL") {
		umr(0, 0, 0, (1ULL << 53) + 0x1000, 0x100000000000ULL);
	}
	SLOT_FACT("memslot.uaddr-above-2-53", "userspace_addr 2^53 + 4 KiB: EINVAL") {
		umr(0, 0, 0, MB, (1ULL << 53) + 0x1000);
	}
	SLOT_FACT("memslot.gpa-maxphyaddr-edge", "A slot ending exactly at 2^MAXPHYADDR of the recording host (2^48)") {
		umr(0, 0, (1ULL << 48) - MB, MB, m);
	}
	SLOT_FACT("memslot.delete-missing", "Deleting (size 0) a slot that does not exist: EINVAL") {
		umr(0, 0, 0, 0, m);
	}
	SLOT_FACT("memslot.delete", "Create, delete, delete again (EINVAL), create again") {
		umr(0, 0, 0, MB, m);
		umr(0, 0, 0, 0, m);
		umr(0, 0, 0, 0, m);
		umr(0, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.delete-ignores-fields", "Deleting needs only the slot id: other fields may be anything") {
		umr(0, 0, 0, MB, m);
		umr(0, KVM_MEM_READONLY, 0x123000, 0, m + MB);
	}
	SLOT_FACT("memslot.delete-bad-flags", "Deleting with an unknown flag: EINVAL") {
		umr(0, 0, 0, MB, m);
		umr(0, 1u << 3, 0, 0, m);
	}
	SLOT_FACT("memslot.overlap", "A second slot overlapping the first: EEXIST") {
		umr(0, 0, 0, MB, m);
		umr(1, 0, MB / 2, MB, m + MB);
	}
	SLOT_FACT("memslot.overlap-inside", "A second slot inside the first: EEXIST") {
		umr(0, 0, 0, MB, m);
		umr(1, 0, 0x1000, 0x1000, m + MB);
	}
	SLOT_FACT("memslot.adjacent", "A second slot right after the first") {
		umr(0, 0, 0, MB, m);
		umr(1, 0, MB, MB, m + MB);
	}
	SLOT_FACT("memslot.same-memory-twice", "Two slots backed by the same user memory") {
		umr(0, 0, 0, MB, m);
		umr(1, 0, MB, MB, m);
	}
	SLOT_FACT("memslot.move", "Moving a slot to another guest-physical address") {
		umr(0, 0, 0, MB, m);
		umr(0, 0, 4 * MB, MB, m);
	}
	SLOT_FACT("memslot.move-onto-other", "Moving a slot over another slot: EEXIST") {
		umr(0, 0, 0, MB, m);
		umr(1, 0, 4 * MB, MB, m + MB);
		umr(0, 0, 4 * MB, MB, m);
	}
	SLOT_FACT("memslot.move-overlapping-itself", "Moving a slot by half its size (overlapping its old place)") {
		umr(0, 0, 0, MB, m);
		umr(0, 0, MB / 2, MB, m);
	}
	SLOT_FACT("memslot.resize", "Changing a slot's size: EINVAL") {
		umr(0, 0, 0, MB, m);
		umr(0, 0, 0, MB / 2, m);
	}
	SLOT_FACT("memslot.change-uaddr", "Changing a slot's userspace_addr: EINVAL") {
		umr(0, 0, 0, MB, m);
		umr(0, 0, 0, MB, m + MB);
	}
	SLOT_FACT("memslot.toggle-log-dirty", "Turning KVM_MEM_LOG_DIRTY_PAGES on and off") {
		umr(0, 0, 0, MB, m);
		umr(0, KVM_MEM_LOG_DIRTY_PAGES, 0, MB, m);
		umr(0, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.toggle-readonly", "Changing KVM_MEM_READONLY of a slot: EINVAL") {
		umr(0, 0, 0, MB, m);
		umr(0, KVM_MEM_READONLY, 0, MB, m);
	}
	SLOT_FACT("memslot.unchanged", "Setting a slot again unchanged") {
		umr(0, 0, 0, MB, m);
		umr(0, 0, 0, MB, m);
	}
	SLOT_FACT("memslot.move-and-flags", "Moving a slot and changing LOG_DIRTY in one call") {
		umr(0, 0, 0, MB, m);
		umr(0, KVM_MEM_LOG_DIRTY_PAGES, 4 * MB, MB, m);
	}
	SLOT_FACT("memslot.null", "KVM_SET_USER_MEMORY_REGION with a NULL pointer: EFAULT") {
		IO_NULL("vm", KVM_SET_USER_MEMORY_REGION, "kvm_userspace_memory_region");
	}
	SLOT_FACT("memslot.after-vcpu", "A slot created after a vCPU exists") {
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		umr(0, 0, 0, MB, m);
	}
	SLOT_FACT("memslot2.create", "KVM_SET_USER_MEMORY_REGION2: a 1 MiB slot") {
		umr2(0, 0, 0, MB, m);
	}
	SLOT_FACT("memslot2.guest-memfd", "KVM_SET_USER_MEMORY_REGION2 with KVM_MEM_GUEST_MEMFD on a default VM: EINVAL") {
		umr2(0, KVM_MEM_GUEST_MEMFD, 0, MB, m);
	}
	SLOT_FACT("memslot2.unknown-flag", "KVM_SET_USER_MEMORY_REGION2 with an unknown flag: EINVAL") {
		umr2(0, 1u << 3, 0, MB, m);
	}
	SLOT_FACT("memslot2.then-v1", "A slot made with …REGION2 moved with KVM_SET_USER_MEMORY_REGION") {
		umr2(0, 0, 0, MB, m);
		umr(0, 0, 4 * MB, MB, m);
	}
}
