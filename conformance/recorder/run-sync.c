/*
 * Part of group "run": the registers synchronized through kvm_run (KVM_CAP_SYNC_REGS) — what KVM stores in
 * s.regs for each bit of kvm_valid_regs when KVM_RUN returns (an exit, EINTR of immediate_exit, an EINVAL), what
 * each bit of kvm_dirty_regs loads on entry and how the word is left, and the errno of bits outside
 * KVM_SYNC_X86_VALID_FIELDS (arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl_run, sync_regs, store_regs).
 */
#include <string.h>

#include "groups.h"
#include "guestvm.h"

#define SYNC_REGS 0x1ull   /* KVM_SYNC_X86_REGS */
#define SYNC_SREGS 0x2ull  /* KVM_SYNC_X86_SREGS */
#define SYNC_EVENTS 0x4ull /* KVM_SYNC_X86_EVENTS */

static uint8_t image[GUEST_MEM];

/* `code` at 0x1000 (IP), SP 0xf000, DS 0; a byte 0x77 at 0x2010 and 0x11 at 0x0010 for the DS facts. */
static void setup(const uint8_t *code, size_t n) {
	memset(image, 0, sizeof image);
	memcpy(image + 0x1000, code, n);
	image[0x0010] = 0x11;
	image[0x2010] = 0x77;
	struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000, .rax = 0x55 };
	guest_setup(image, 0, &r);
}

#define CODE(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

/* mov al, 0x41; out 0x10, al; hlt; hlt */
#define OUT_HLT CODE(0xb0, 0x41, 0xe6, 0x10, 0xf4, 0xf4)

static struct kvm_regs regs;
static struct kvm_sregs sregs;
static struct kvm_vcpu_events events;

static void get_regs(void) {
	memset(&regs, 0, sizeof regs);
	IO_PTR("vcpu0", KVM_GET_REGS, "kvm_regs", &regs, NULL, emit_regs);
}

void record_run_sync(void) {
	FACT("run.sync-regs.valid-regs", "kvm_valid_regs = REGS: KVM_RUN stores the registers in s.regs.regs at every exit; sregs and events stay untouched") {
		setup(OUT_HLT);
		step_sync_set("vcpu0", SYNC_REGS, 0);
		guest_run();
		step_sync_read("vcpu0");
		guest_run();
		step_sync_read("vcpu0");
	}
	FACT("run.sync-regs.valid-sregs", "kvm_valid_regs = SREGS: s.regs.sregs only") {
		setup(OUT_HLT);
		step_sync_set("vcpu0", SYNC_SREGS, 0);
		guest_run();
		step_sync_read("vcpu0");
	}
	FACT("run.sync-regs.valid-events", "kvm_valid_regs = EVENTS: s.regs.events only") {
		setup(OUT_HLT);
		step_sync_set("vcpu0", SYNC_EVENTS, 0);
		guest_run();
		step_sync_read("vcpu0");
	}
	FACT("run.sync-regs.valid-all", "kvm_valid_regs = REGS | SREGS | EVENTS at an I/O exit and at the HLT after it") {
		setup(OUT_HLT);
		step_sync_set("vcpu0", SYNC_REGS | SYNC_SREGS | SYNC_EVENTS, 0);
		guest_run();
		step_sync_read("vcpu0");
		guest_run();
		step_sync_read("vcpu0");
	}
	FACT("run.sync-regs.valid-cleared", "kvm_valid_regs cleared after a run: the next exit leaves s.regs as the last store wrote it") {
		setup(OUT_HLT);
		step_sync_set("vcpu0", SYNC_REGS, 0);
		guest_run();
		step_sync_set("vcpu0", 0, 0);
		guest_run();
		step_sync_read("vcpu0");
	}
	FACT("run.sync-regs.valid-immediate-exit", "kvm_valid_regs with immediate_exit: EINTR, and the registers are stored") {
		setup(OUT_HLT);
		step_sync_set("vcpu0", SYNC_REGS | SYNC_SREGS | SYNC_EVENTS, 0);
		step_run_set("vcpu0", "immediate_exit", 1);
		guest_run();
		step_sync_read("vcpu0");
	}
	FACT("run.sync-regs.dirty-regs", "kvm_dirty_regs = REGS: s.regs.regs (RAX, RIP changed) is loaded on entry and the bit cleared") {
		/* 0x1000: hlt; 0x1001: out 0x10, al; hlt */
		setup(CODE(0xf4, 0xe6, 0x10, 0xf4));
		guest_run();
		quiet_ioctl("vcpu0", KVM_GET_REGS, &regs);
		regs.rax = 0xbeef;
		regs.rbx = 0x1122334455667788ull;
		regs.rip = 0x1001;
		step_sync_write("vcpu0", "regs", &regs);
		step_sync_set("vcpu0", SYNC_REGS, SYNC_REGS);
		guest_run();
		step_sync_read("vcpu0");
		get_regs();
	}
	FACT("run.sync-regs.dirty-regs-immediate-exit", "kvm_dirty_regs = REGS with immediate_exit: loaded, then EINTR") {
		setup(OUT_HLT);
		quiet_ioctl("vcpu0", KVM_GET_REGS, &regs);
		regs.rcx = 0x4321;
		step_sync_write("vcpu0", "regs", &regs);
		step_sync_set("vcpu0", 0, SYNC_REGS);
		step_run_set("vcpu0", "immediate_exit", 1);
		guest_run();
		step_sync_read("vcpu0");
		get_regs();
	}
	FACT("run.sync-regs.dirty-sregs", "kvm_dirty_regs = SREGS: a new DS (base 0x2000) is loaded before the guest reads [0x10]") {
		/* mov al, [0x10]; out 0x10, al; hlt */
		setup(CODE(0xa0, 0x10, 0x00, 0xe6, 0x10, 0xf4));
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &sregs);
		sregs.ds.selector = 0x200;
		sregs.ds.base = 0x2000;
		step_sync_write("vcpu0", "sregs", &sregs);
		step_sync_set("vcpu0", SYNC_SREGS, SYNC_SREGS);
		guest_run();
		step_sync_read("vcpu0");
	}
	FACT("run.sync-regs.dirty-events", "kvm_dirty_regs = EVENTS with an NMI made pending, and immediate_exit: the NMI is pending after") {
		setup(OUT_HLT);
		quiet_ioctl("vcpu0", KVM_GET_VCPU_EVENTS, &events);
		events.nmi.pending = 1;
		events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING;
		step_sync_write("vcpu0", "events", &events);
		step_sync_set("vcpu0", 0, SYNC_EVENTS);
		step_run_set("vcpu0", "immediate_exit", 1);
		guest_run();
		step_sync_read("vcpu0");
		memset(&events, 0, sizeof events);
		IO_PTR("vcpu0", KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, NULL, emit_vcpu_events);
	}
	FACT("run.sync-regs.dirty-bad-sregs", "kvm_dirty_regs = REGS | SREGS with CR0.PG without PE: REGS loaded and its bit cleared, then EINVAL; the valid registers are still stored") {
		setup(OUT_HLT);
		quiet_ioctl("vcpu0", KVM_GET_REGS, &regs);
		regs.rdx = 0x6789;
		step_sync_write("vcpu0", "regs", &regs);
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &sregs);
		sregs.cr0 |= 0x80000000ull;
		sregs.cr0 &= ~1ull;
		step_sync_write("vcpu0", "sregs", &sregs);
		step_sync_set("vcpu0", SYNC_REGS, SYNC_REGS | SYNC_SREGS);
		guest_run();
		step_sync_read("vcpu0");
		get_regs();
	}
	FACT("run.sync-regs.bad-valid-bit", "kvm_valid_regs with bit 3 (outside KVM_SYNC_X86_VALID_FIELDS): EINVAL; the valid sets are still stored") {
		setup(OUT_HLT);
		step_sync_set("vcpu0", SYNC_REGS | 0x8, 0);
		guest_run();
		step_sync_read("vcpu0");
		get_regs();
	}
	FACT("run.sync-regs.bad-dirty-bit", "kvm_dirty_regs with bit 32: EINVAL before anything is loaded") {
		setup(OUT_HLT);
		quiet_ioctl("vcpu0", KVM_GET_REGS, &regs);
		regs.rax = 0x9999;
		step_sync_write("vcpu0", "regs", &regs);
		step_sync_set("vcpu0", SYNC_REGS, SYNC_REGS | (1ull << 32));
		guest_run();
		step_sync_read("vcpu0");
		get_regs();
	}
}
