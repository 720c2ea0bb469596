/*
 * Part of group "run": events around an entry — an exception user space injected (KVM_SET_VCPU_EVENTS) together with
 * a pending NMI, an NMI or an interrupt set as being injected (arch/x86/kvm/x86.c kvm_check_and_inject_events:
 * can_inject, req_immediate_exit; vmx/vmx.c __vmx_complete_interrupts, svm/svm.c svm_complete_interrupts), and the
 * interrupt shadow of an instruction completed from an MMIO read (complete_emulated_mmio → x86_emulate_instruction →
 * toggle_interruptibility), seen by a KVM_NMI queued while the read waits for user space; an NMI and an interrupt both
 * set as being injected (only the NMI is re-injected: kvm_check_and_inject_events' if/else; the exit clears the
 * interrupt queue), KVM_GUESTDBG_BLOCKIRQ beside an interrupt KVM_INTERRUPT queued (re-injected: BLOCKIRQ is tested
 * after the re-injections) and beside a KVM_NMI (held until BLOCKIRQ is cleared); two RDTSCs in a row.
 */
#include <string.h>

#include "groups.h"
#include "guestvm.h"

static uint8_t image[GUEST_MEM];

#define CODE(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

/* Real-mode handler `out port, al; iret` at `at` for IVT `vector`. */
static void handler(unsigned vector, uint16_t at, uint8_t port) {
	const uint8_t code[] = { 0xe6, port, 0xcf };
	memcpy(image + at, code, sizeof code);
	image[vector * 4] = at & 0xff;
	image[vector * 4 + 1] = at >> 8;
}

/* `code` at 0x1000 (IP), SP 0xf000, DS `ds`, RFLAGS `rflags`; the NMI handler at 0x2000 (out 0x20), #UD's at 0x3000
 * (out 0x30), vector 0x40's at 0x4000 (out 0x40). */
static void setup_flags(const uint8_t *code, size_t n, uint16_t ds, uint64_t rflags) {
	memset(image, 0, sizeof image);
	memcpy(image + 0x1000, code, n);
	handler(2, 0x2000, 0x20);
	handler(6, 0x3000, 0x30);
	handler(0x40, 0x4000, 0x40);
	struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000, .ds = ds, .rflags = rflags };
	guest_setup(image, 0, &r);
}

static void setup(const uint8_t *code, size_t n, uint16_t ds) {
	setup_flags(code, n, ds, 0);
}

static void set_debug(uint32_t control) {
	struct kvm_guest_debug d = { .control = control };
	IO_PTR("vcpu0", KVM_SET_GUEST_DEBUG, "kvm_guest_debug", &d, emit_guest_debug, NULL);
}

static void get_events(void) {
	struct kvm_vcpu_events events;
	memset(&events, 0, sizeof events);
	IO_PTR("vcpu0", KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, NULL, emit_vcpu_events);
}

/* KVM_SET_VCPU_EVENTS: #UD injected, with `flags`, an NMI pending or injected, an interrupt injected. */
static void inject_ud(uint32_t flags, uint8_t nmi_pending, uint8_t nmi_injected, uint8_t irq) {
	struct kvm_vcpu_events events;
	quiet_ioctl("vcpu0", KVM_GET_VCPU_EVENTS, &events);
	events.flags = flags;
	events.exception.injected = 1;
	events.exception.nr = 6;
	events.nmi.pending = nmi_pending;
	events.nmi.injected = nmi_injected;
	if (irq) {
		events.interrupt.injected = 1;
		events.interrupt.nr = irq;
	}
	IO_PTR("vcpu0", KVM_SET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, NULL);
}

/* KVM_SET_VCPU_EVENTS: an NMI and interrupt `irq` set as being injected, no exception. */
static void inject_nmi_and_irq(uint8_t irq) {
	struct kvm_vcpu_events events;
	quiet_ioctl("vcpu0", KVM_GET_VCPU_EVENTS, &events);
	events.flags = 0;
	events.nmi.injected = 1;
	events.interrupt.injected = 1;
	events.interrupt.nr = irq;
	IO_PTR("vcpu0", KVM_SET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, NULL);
}

/* main: out 0x10; hlt */
#define MAIN CODE(0xe6, 0x10, 0xf4)
/* main: out 0x10; out 0x11; hlt */
#define MAIN2 CODE(0xe6, 0x10, 0xe6, 0x11, 0xf4)

void record_run_events(void) {
	FACT("run.events.exception-and-nmi-pending", "#UD injected and an NMI pending: the NMI's handler runs first, over #UD's frame") {
		setup(MAIN, 0);
		inject_ud(KVM_VCPUEVENT_VALID_NMI_PENDING, 1, 0, 0);
		get_events();
		guest_run();
		get_events();
		guest_get_regs();
		guest_run();
		guest_run();
	}
	FACT("run.events.exception-and-nmi-injected", "#UD injected and an NMI set as being injected: only #UD is delivered") {
		setup(MAIN, 0);
		inject_ud(0, 0, 1, 0);
		get_events();
		guest_run();
		get_events();
		guest_run();
	}
	FACT("run.events.exception-and-interrupt-injected", "#UD injected and interrupt 0x40 set as being injected: only #UD is delivered") {
		setup(MAIN, 0);
		inject_ud(0, 0, 0, 0x40);
		get_events();
		guest_run();
		get_events();
		guest_run();
	}
	/* DS = 0x2000: [0] is guest-physical 0x20000, past the 64 KiB of memory (MMIO). */
	FACT("run.mmio-shadow.mov-ss", "MOV SS, [mmio] completed with an NMI queued meanwhile: the MOV SS shadow holds the NMI for one instruction") {
		setup(CODE(0x8e, 0x16, 0x00, 0x00, 0xe6, 0x10, 0xe6, 0x11, 0xf4), 0x2000);
		guest_run();
		step_mmio_data("vcpu0", (const uint8_t[]){ 0x00, 0x00 }, 2);
		IO_INT("vcpu0", KVM_NMI, 0);
		guest_run();
		get_events();
		guest_run();
		guest_run();
	}
	FACT("run.mmio-shadow.after-sti", "STI; MOV AX, [mmio] completed with an NMI queued meanwhile: the STI shadow ends with the read, the NMI comes next") {
		setup(CODE(0xfb, 0xa1, 0x00, 0x00, 0xe6, 0x10, 0xe6, 0x11, 0xf4), 0x2000);
		guest_run();
		step_mmio_data("vcpu0", (const uint8_t[]){ 0x34, 0x12 }, 2);
		IO_INT("vcpu0", KVM_NMI, 0);
		guest_run();
		guest_get_regs();
		guest_run();
	}
	FACT("run.events.nmi-and-interrupt-injected", "An NMI and interrupt 0x40 both set as being injected: the NMI is delivered, the interrupt is dropped") {
		setup(MAIN2, 0);
		inject_nmi_and_irq(0x40);
		get_events();
		guest_run();
		get_events();
		guest_run();
		guest_run();
		guest_run();
	}
	FACT("run.events.blockirq-interrupt", "KVM_GUESTDBG_BLOCKIRQ, then KVM_INTERRUPT(0x40) with IF = 1: the queued interrupt is injected all the same") {
		setup_flags(MAIN2, 0, 0x200);
		set_debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_BLOCKIRQ);
		struct kvm_interrupt i = { .irq = 0x40 };
		IO_PTR("vcpu0", KVM_INTERRUPT, "kvm_interrupt", &i, emit_interrupt, NULL);
		guest_run();
		guest_run();
		get_events();
	}
	FACT("run.events.blockirq-nmi", "KVM_GUESTDBG_BLOCKIRQ with a KVM_NMI: no NMI while it is set; the first entry after it is cleared takes it") {
		setup(MAIN2, 0);
		set_debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_BLOCKIRQ);
		IO_INT("vcpu0", KVM_NMI, 0);
		guest_run();
		get_events();
		set_debug(0);
		guest_run();
		guest_run();
		guest_run();
	}
	/* rdtsc; mov ebx, eax; rdtsc; cmp ebx, eax; setne al; out 0x10, al; hlt */
	FACT("run.rdtsc-twice", "RDTSC twice in a row in one KVM_RUN: the low halves differ (the OUT's byte is SETNE's 1)") {
		setup(CODE(0x0f, 0x31, 0x66, 0x89, 0xc3, 0x0f, 0x31, 0x66, 0x39, 0xc3, 0x0f, 0x95, 0xc0, 0xe6, 0x10, 0xf4), 0);
		guest_run();
	}
}
