/*
 * Group "dirty-ring": the dirty ring as a real-mode guest writes (virt/kvm/kvm_main.c mark_page_dirty_in_slot,
 * kvm_vm_ioctl_reset_dirty_pages; virt/kvm/dirty_ring.c kvm_dirty_ring_push, kvm_dirty_ring_reset,
 * kvm_dirty_ring_soft_full; arch/x86/kvm/x86.c vcpu_enter_guest's KVM_REQ_DIRTY_RING_SOFT_FULL): the entries pushed
 * (flags, slot, offset) and their order, a page written again before and after its entry is harvested, what
 * KVM_RESET_DIRTY_RINGS answers, and the soft-full exit (KVM_EXIT_DIRTY_RING_FULL).
 */
#include <string.h>

#include "groups.h"
#include "guestvm.h"

#ifndef KVM_CAP_DIRTY_LOG_RING_ACQ_REL
#define KVM_CAP_DIRTY_LOG_RING_ACQ_REL 223
#endif

static uint8_t image[GUEST_MEM];
static uint64_t ring_bytes;

static void enable_ring(void) {
	struct kvm_enable_cap c = { .cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL, .args = { ring_bytes } };
	IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &c, emit_enable_cap, NULL);
}

/* `code` at 0x1000 (DS = 0, SP 0xf000) on a VM with a dirty ring of `bytes` and its slot logging dirty pages. */
static void setup(const uint8_t *code, size_t n, uint64_t bytes) {
	memset(image, 0, sizeof image);
	memcpy(image + 0x1000, code, n);
	ring_bytes = bytes;
	guest_before_vcpu = enable_ring;
	struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000 };
	guest_setup(image, KVM_MEM_LOG_DIRTY_PAGES, &r);
	guest_before_vcpu = NULL;
	step_map_ring("vcpu0", bytes);
}

#define CODE(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })
/* mov byte [addr], v */
#define STB(addr, v) 0xc6, 0x06, (addr) & 0xff, (addr) >> 8, (v)

void record_dirty_ring(void) {
	FACT("dirty-ring.guest-writes", "Guest writes under the dirty ring: the entries pushed and their order; a page written again before its entry is harvested, after the harvest, after KVM_RESET_DIRTY_RINGS") {
		setup(CODE(STB(0x3000, 1), STB(0x4000, 2), STB(0x3001, 3), STB(0x5000, 4), 0xe6, 0x10,
			STB(0x3002, 5), STB(0x6000, 6), 0xe6, 0x11,
			STB(0x3003, 7), STB(0x4001, 8), 0xe6, 0x12, 0xf4), 65536);
		guest_run();
		uint32_t at = 0, n = step_ring_read("vcpu0", at);
		step_ring_harvest("vcpu0", at, n);
		at += n;
		guest_run();
		n = step_ring_read("vcpu0", at);
		IO_INT("vm", KVM_RESET_DIRTY_RINGS, 0);
		step_ring_harvest("vcpu0", at, n);
		at += n;
		IO_INT("vm", KVM_RESET_DIRTY_RINGS, 0);
		guest_run();
		n = step_ring_read("vcpu0", at);
		guest_get_regs();
	}
	FACT("dirty-ring.soft-full", "A one-page ring (256 entries, soft limit 192): a guest writing one page 300 times; KVM_EXIT_DIRTY_RING_FULL, again until harvest and reset, then the guest goes on") {
		/* mov cx, 300; l: mov [0x3000], cl; loop l; out 0x13; hlt */
		setup(CODE(0xb9, 0x2c, 0x01, 0x88, 0x0e, 0x00, 0x30, 0xe2, 0xfa, 0xe6, 0x13, 0xf4), 4096);
		guest_run();
		guest_get_regs();
		uint32_t n = step_ring_read("vcpu0", 0);
		guest_run();
		step_ring_harvest("vcpu0", 0, n);
		IO_INT("vm", KVM_RESET_DIRTY_RINGS, 0);
		guest_run();
		guest_get_regs();
		step_ring_read("vcpu0", n % 256);
	}
}
