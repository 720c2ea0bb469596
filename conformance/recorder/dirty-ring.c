/*
 * Part of group "vm": the dirty ring's setup answers (virt/kvm/kvm_main.c kvm_vm_ioctl_enable_dirty_log_ring,
 * kvm_vm_ioctl_reset_dirty_pages, kvm_vm_ioctl_get_dirty_log; virt/kvm/dirty_ring.c): KVM_ENABLE_CAP of
 * KVM_CAP_DIRTY_LOG_RING / _ACQ_REL with good and bad sizes, once only, before any vCPU; KVM_RESET_DIRTY_RINGS
 * without and with a ring; the dirty bitmap's ioctls on a VM with a ring. The ring's entries as a guest writes are
 * group "dirty-ring" (dirty-ring-guest.c).
 */
#include <string.h>

#include "groups.h"
#include "structs.h"

#define VM() IO_BIND("sys", KVM_CREATE_VM, 0, "vm")

#ifndef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
#define KVM_CAP_DIRTY_LOG_RING_ACQ_REL 223
#endif

static void enable_ring(uint32_t cap, uint64_t size) {
	struct kvm_enable_cap c = { .cap = cap, .args = { size } };
	IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
}

static void size_fact(const char *id, const char *title, uint32_t cap, uint64_t size) {
	FACT(id, title) {
		VM();
		enable_ring(cap, size);
	}
}

void record_vm_dirty_ring(void) {
	size_fact("vm.dirty-ring.enable-64k", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, 65536): 4096 entries", KVM_CAP_DIRTY_LOG_RING, 65536);
	size_fact("vm.dirty-ring.enable-acq-rel-64k", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 65536)", KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 65536);
	size_fact("vm.dirty-ring.enable-page", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, 4096): one page (enough without PML's reserved entries)", KVM_CAP_DIRTY_LOG_RING, 4096);
	size_fact("vm.dirty-ring.enable-zero", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, 0): EINVAL", KVM_CAP_DIRTY_LOG_RING, 0);
	size_fact("vm.dirty-ring.enable-not-power-of-two", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, 12288): EINVAL (not a power of two)", KVM_CAP_DIRTY_LOG_RING, 12288);
	size_fact("vm.dirty-ring.enable-below-page", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, 2048): EINVAL (below a page)", KVM_CAP_DIRTY_LOG_RING, 2048);
	size_fact("vm.dirty-ring.enable-max", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, 1 MiB): the largest (65536 entries)", KVM_CAP_DIRTY_LOG_RING, 1u << 20);
	size_fact("vm.dirty-ring.enable-too-large", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, 2 MiB): E2BIG", KVM_CAP_DIRTY_LOG_RING, 2u << 20);
	size_fact("vm.dirty-ring.enable-above-u32", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING, 2^32 + 65536): the size is a u32 (65536)", KVM_CAP_DIRTY_LOG_RING, (1ull << 32) + 65536);
	FACT("vm.dirty-ring.enable-twice", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING) twice: EINVAL the second time (also with the other cap)") {
		VM();
		enable_ring(KVM_CAP_DIRTY_LOG_RING, 65536);
		enable_ring(KVM_CAP_DIRTY_LOG_RING, 65536);
		enable_ring(KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 8192);
	}
	FACT("vm.dirty-ring.enable-after-vcpu", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING) after KVM_CREATE_VCPU: EINVAL") {
		VM();
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		enable_ring(KVM_CAP_DIRTY_LOG_RING, 65536);
	}
	FACT("vm.dirty-ring.enable-flags", "KVM_ENABLE_CAP(KVM_CAP_DIRTY_LOG_RING) with flags 1") {
		VM();
		struct kvm_enable_cap c = { .cap = KVM_CAP_DIRTY_LOG_RING, .flags = 1, .args = { 65536 } };
		IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
	}
	FACT("vm.dirty-ring.reset-without-ring", "KVM_RESET_DIRTY_RINGS on a VM without a dirty ring: EINVAL") {
		VM();
		IO_INT("vm", KVM_RESET_DIRTY_RINGS, 0);
	}
	FACT("vm.dirty-ring.reset-empty", "KVM_RESET_DIRTY_RINGS with a ring and a vCPU, nothing harvested: 0 entries reset") {
		VM();
		enable_ring(KVM_CAP_DIRTY_LOG_RING, 65536);
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		IO_INT("vm", KVM_RESET_DIRTY_RINGS, 0);
	}
	FACT("vm.dirty-ring.get-dirty-log", "KVM_GET_DIRTY_LOG of a KVM_MEM_LOG_DIRTY_PAGES slot on a VM with a dirty ring: ENXIO") {
		VM();
		enable_ring(KVM_CAP_DIRTY_LOG_RING, 65536);
		void *m = step_mmap("m0", 0x10000);
		struct kvm_userspace_memory_region mr = { .slot = 0, .flags = KVM_MEM_LOG_DIRTY_PAGES, .memory_size = 0x10000, .userspace_addr = (uint64_t)(uintptr_t)m };
		IO_PTR("vm", KVM_SET_USER_MEMORY_REGION, "kvm_userspace_memory_region", &mr, emit_umr, NULL);
		step_mmap("m1", 4096);
		struct kvm_dirty_log d = { .slot = 0, .dirty_bitmap = buf_addr("m1") };
		IO_PTR("vm", KVM_GET_DIRTY_LOG, "kvm_dirty_log", &d, emit_dirty_log, NULL);
	}
}
