/*
 * Group "run": KVM_RUN — its argument, immediate_exit (with and without an I/O instruction to complete,
 * and what exit_reason says afterwards), I/O and MMIO exits and their completion, a read-only slot, guest
 * memory the VMM never mapped, a fetch from MMIO (the emulation failure's internal.ndata), a triple fault,
 * and an exception delivered through the IVT.
 */
#include <stdio.h>
#include <string.h>

#include "groups.h"
#include "guestvm.h"

static uint8_t image[GUEST_MEM];

/* `code` at 0x1000, IP 0x1000, SP 0xf000. */
static void setup(const uint8_t *code, size_t n, uint32_t slot_flags, uint16_t ds) {
	memset(image, 0, sizeof image);
	memcpy(image + 0x1000, code, n);
	struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000, .ds = ds };
	guest_setup(image, slot_flags, &r);
}

#define CODE(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

/* `mov ecx, msr; rdmsr; hlt` (or `mov eax, 0x89abcdef; mov edx, 0x01234567; wrmsr; hlt`) at 0x1000 with the
 * user-space MSR exits of `mask` enabled, and a #GP handler (IVT 13 → 0x2000: out 0x13, al; hlt). */
static void msr_setup(uint32_t msr, int write, uint64_t mask) {
	memset(image, 0, sizeof image);
	uint8_t *c = image + 0x1000;
	*c++ = 0x66; *c++ = 0xb9; memcpy(c, &msr, 4); c += 4;
	if (write) {
		const uint8_t set[] = { 0x66, 0xb8, 0xef, 0xcd, 0xab, 0x89, 0x66, 0xba, 0x67, 0x45, 0x23, 0x01 };
		memcpy(c, set, sizeof set);
		c += sizeof set;
	}
	*c++ = 0x0f; *c++ = write ? 0x30 : 0x32; *c++ = 0xf4;
	const uint8_t handler[] = { 0xe6, 0x13, 0xf4 };
	memcpy(image + 0x2000, handler, sizeof handler);
	image[13 * 4] = 0x00; image[13 * 4 + 1] = 0x20;
	struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000, .rax = 0x1111, .rdx = 0x2222 };
	guest_setup(image, 0, &r);
	struct kvm_enable_cap cap = { .cap = KVM_CAP_X86_USER_SPACE_MSR, .args = { mask } };
	IO_PTR("vm", KVM_ENABLE_CAP, "kvm_enable_cap", &cap, emit_enable_cap, NULL);
}

/* An MSR no kernel handles. */
#define UNKNOWN_MSR 0x12345u

static void msr_exit_facts(void) {
	FACT("run.msr-exit.rdmsr-unknown", "KVM_CAP_X86_USER_SPACE_MSR(UNKNOWN): RDMSR of an unknown MSR exits with KVM_EXIT_X86_RDMSR; msr.data goes to EDX:EAX at the next KVM_RUN") {
		msr_setup(UNKNOWN_MSR, 0, KVM_MSR_EXIT_REASON_UNKNOWN);
		guest_run();
		guest_get_regs();
		step_msr_data("vcpu0", 0, 0x1122334455667788ULL);
		guest_run();
		guest_get_regs();
	}
	FACT("run.msr-exit.rdmsr-error", "An RDMSR exit answered with msr.error = 1: #GP through the IVT") {
		msr_setup(UNKNOWN_MSR, 0, KVM_MSR_EXIT_REASON_UNKNOWN);
		guest_run();
		step_msr_data("vcpu0", 1, 0xff);
		guest_run();
		guest_get_regs();
	}
	FACT("run.msr-exit.wrmsr-unknown", "KVM_CAP_X86_USER_SPACE_MSR(UNKNOWN): WRMSR of an unknown MSR exits with EDX:EAX in msr.data; error 0 completes it") {
		msr_setup(UNKNOWN_MSR, 1, KVM_MSR_EXIT_REASON_UNKNOWN);
		guest_run();
		guest_get_regs();
		step_msr_data("vcpu0", 0, 0);
		guest_run();
		guest_get_regs();
	}
	FACT("run.msr-exit.wrmsr-invalid-value", "KVM_CAP_X86_USER_SPACE_MSR(INVAL): WRMSR of EFER with reserved bits set exits with reason INVAL") {
		msr_setup(0xc0000080u, 1, KVM_MSR_EXIT_REASON_INVAL);
		guest_run();
		step_msr_data("vcpu0", 1, 0);
		guest_run();
	}
	FACT("run.msr-exit.not-in-mask", "RDMSR of an unknown MSR with only INVAL and FILTER enabled: #GP, no exit") {
		msr_setup(UNKNOWN_MSR, 0, KVM_MSR_EXIT_REASON_INVAL | KVM_MSR_EXIT_REASON_FILTER);
		guest_run();
	}
	FACT("run.msr-exit.immediate-exit", "immediate_exit after an RDMSR exit: the RDMSR completes, EINTR") {
		msr_setup(UNKNOWN_MSR, 0, KVM_MSR_EXIT_REASON_UNKNOWN);
		guest_run();
		step_msr_data("vcpu0", 0, 0x42);
		step_run_set("vcpu0", "immediate_exit", 1);
		guest_run();
		guest_get_regs();
	}
}

static void set_debug(uint32_t control, uint64_t bp0, uint64_t dr7) {
	struct kvm_guest_debug d = { .control = control, .arch = { .debugreg = { bp0, 0, 0, 0, 0, 0, 0, dr7 } } };
	IO_PTR("vcpu0", KVM_SET_GUEST_DEBUG, "kvm_guest_debug", &d, emit_guest_debug, NULL);
}

static void guest_debug_facts(void) {
	FACT("run.guest-debug.singlestep", "KVM_GUESTDBG_SINGLESTEP: KVM_EXIT_DEBUG after each instruction, then the HLT exit") {
		setup(CODE(0xb0, 0x01, 0xb3, 0x02, 0xf4), 0, 0);
		set_debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, 0, 0);
		guest_run();
		guest_get_regs();
		guest_run();
		guest_run();
		guest_get_regs();
	}
	FACT("run.guest-debug.singlestep-in", "KVM_GUESTDBG_SINGLESTEP over an IN: the I/O exit, then the step reported when the next KVM_RUN completes it") {
		setup(CODE(0xe4, 0x60, 0x90, 0xf4), 0, 0);
		set_debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP, 0, 0);
		guest_run();
		step_pio_data("vcpu0", (const uint8_t[]){ 0x5a }, 1);
		guest_run();
		guest_get_regs();
	}
	FACT("run.guest-debug.sw-bp", "KVM_GUESTDBG_USE_SW_BP: INT3 exits with exception 3 at its address, again at the next KVM_RUN") {
		setup(CODE(0x90, 0xcc, 0xf4), 0, 0);
		set_debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_SW_BP, 0, 0);
		guest_run();
		guest_get_regs();
		guest_run();
		guest_get_regs();
	}
	FACT("run.guest-debug.hw-bp", "KVM_GUESTDBG_USE_HW_BP: an instruction breakpoint in DR0 exits before the instruction with DR6.B0") {
		setup(CODE(0x90, 0x90, 0xb0, 0x07, 0xf4), 0, 0);
		set_debug(KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_USE_HW_BP, 0x1002, 0x401);
		guest_run();
		guest_get_regs();
	}
}

void record_run(void) {
	FACT("run.hlt", "HLT without an in-kernel irqchip: KVM_EXIT_HLT, RIP after the HLT") {
		setup(CODE(0xf4), 0, 0);
		guest_run();
		guest_get_regs();
	}
	FACT("run.hlt-then-continue", "KVM_RUN after a HLT exit continues with the next instruction") {
		setup(CODE(0xf4, 0xb0, 0x07, 0xe6, 0x10, 0xf4), 0, 0);
		guest_run();
		guest_run();
		guest_run();
		guest_get_regs();
	}
	FACT("run.out-byte", "OUT imm8, AL: KVM_EXIT_IO (out, size 1, count 1, the byte in the PIO page); the registers at the exit") {
		setup(CODE(0xb0, 0x41, 0xe6, 0x10, 0xf4), 0, 0);
		guest_run();
		guest_get_regs();
		guest_run();
		guest_get_regs();
	}
	FACT("run.out-dx-word", "OUT DX, AX: KVM_EXIT_IO of 2 bytes to port DX") {
		setup(CODE(0xba, 0xf8, 0x03, 0xb8, 0x34, 0x12, 0xef, 0xf4), 0, 0);
		guest_run();
		guest_get_regs();
		guest_run();
	}
	FACT("run.out-dword", "OUT DX, EAX (0x66 prefix): KVM_EXIT_IO of 4 bytes") {
		setup(CODE(0xba, 0x80, 0x00, 0x66, 0xb8, 0x78, 0x56, 0x34, 0x12, 0x66, 0xef, 0xf4), 0, 0);
		guest_run();
		guest_get_regs();
		guest_run();
	}
	FACT("run.in-byte", "IN AL, imm8: KVM_EXIT_IO (in); the data user space writes is in AL after the next KVM_RUN") {
		setup(CODE(0xe4, 0x60, 0xf4), 0, 0);
		guest_run();
		guest_get_regs();
		step_pio_data("vcpu0", (const uint8_t[]){ 0x5a }, 1);
		guest_run();
		guest_get_regs();
	}
	FACT("run.in-dx-word", "IN AX, DX: a 2-byte IN completed by the next KVM_RUN") {
		setup(CODE(0xba, 0x71, 0x00, 0xb8, 0xff, 0xff, 0xed, 0xf4), 0, 0);
		guest_run();
		step_pio_data("vcpu0", (const uint8_t[]){ 0x34, 0x12 }, 2);
		guest_run();
		guest_get_regs();
	}
	FACT("run.nonzero-arg", "KVM_RUN with a non-zero argument: EINVAL") {
		setup(CODE(0xf4), 0, 0);
		IO_INT("vcpu0", KVM_RUN, 1);
	}
	FACT("run.immediate-exit.fresh", "immediate_exit = 1 on a vCPU that never ran: EINTR, and exit_reason after") {
		setup(CODE(0xf4), 0, 0);
		step_run_set("vcpu0", "immediate_exit", 1);
		guest_run();
		guest_get_regs();
	}
	FACT("run.immediate-exit.after-hlt", "immediate_exit = 1 after a HLT exit: EINTR, and exit_reason after") {
		setup(CODE(0xf4, 0xf4), 0, 0);
		guest_run();
		step_run_set("vcpu0", "immediate_exit", 1);
		guest_run();
		guest_get_regs();
	}
	FACT("run.immediate-exit.after-out", "immediate_exit = 1 after an OUT exit: the OUT is completed, EINTR") {
		setup(CODE(0xb0, 0x41, 0xe6, 0x10, 0xf4), 0, 0);
		guest_run();
		step_run_set("vcpu0", "immediate_exit", 1);
		guest_run();
		guest_get_regs();
		step_run_set("vcpu0", "immediate_exit", 0);
		guest_run();
	}
	FACT("run.immediate-exit.after-in", "immediate_exit = 1 after an IN exit: the IN completes with the data, EINTR") {
		setup(CODE(0xe4, 0x60, 0xf4), 0, 0);
		guest_run();
		step_pio_data("vcpu0", (const uint8_t[]){ 0xa7 }, 1);
		step_run_set("vcpu0", "immediate_exit", 1);
		guest_run();
		guest_get_regs();
	}
	FACT("run.mmio-write-byte", "MOV [mem], imm8 outside every slot: KVM_EXIT_MMIO write of 1 byte") {
		setup(CODE(0xc6, 0x06, 0x10, 0x00, 0x77, 0xf4), 0, 0x2000);
		guest_run();
		guest_get_regs();
		guest_run();
	}
	FACT("run.mmio-write-word", "MOV [mem], AX outside every slot: KVM_EXIT_MMIO write of 2 bytes") {
		setup(CODE(0xb8, 0x34, 0x12, 0xa3, 0x10, 0x00, 0xf4), 0, 0x2000);
		guest_run();
		guest_run();
	}
	FACT("run.mmio-read-byte", "MOV AL, [mem] outside every slot: KVM_EXIT_MMIO read; the data is in AL after the next KVM_RUN") {
		setup(CODE(0xa0, 0x10, 0x00, 0xf4), 0, 0x2000);
		guest_run();
		guest_get_regs();
		step_mmio_data("vcpu0", (const uint8_t[]){ 0x99 }, 1);
		guest_run();
		guest_get_regs();
	}
	FACT("run.mmio-read-word", "MOV AX, [mem] outside every slot: a 2-byte MMIO read") {
		setup(CODE(0xa1, 0x10, 0x00, 0xf4), 0, 0x2000);
		guest_run();
		step_mmio_data("vcpu0", (const uint8_t[]){ 0x22, 0x11 }, 2);
		guest_run();
		guest_get_regs();
	}
	FACT("run.readonly-slot-write", "A write to a KVM_MEM_READONLY slot: KVM_EXIT_MMIO write; memory unchanged") {
		setup(CODE(0xc6, 0x06, 0x00, 0x80, 0x55, 0xf4), KVM_MEM_READONLY, 0);
		guest_run();
		guest_run();
		step_mem("m0", image, GUEST_MEM);
	}
	FACT("run.readonly-slot-read", "A read from a KVM_MEM_READONLY slot reads memory") {
		memset(image, 0, sizeof image);
		const uint8_t code[] = { 0xa0, 0x00, 0x80, 0xf4 }; /* mov al, [0x8000]; hlt */
		memcpy(image + 0x1000, code, sizeof code);
		image[0x8000] = 0xc3;
		struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000 };
		guest_setup(image, KVM_MEM_READONLY, &r);
		guest_run();
		guest_get_regs();
	}
	FACT("run.fetch-outside-memory", "Executing at a guest-physical address with no slot: the exit and its internal data") {
		setup(CODE(0xea, 0x00, 0x00, 0x00, 0x20), 0, 0); /* jmp 0x2000:0000 */
		guest_run();
	}
	FACT("run.reset-vector-no-memory", "KVM_RUN of a new vCPU (CS:IP F000:FFF0) in a VM without memory") {
		IO_BIND("sys", KVM_CREATE_VM, 0, "vm");
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		step_map_run("vcpu0");
		guest_run();
	}
	FACT("run.unmapped-user-memory", "A slot whose user memory is not mapped: KVM_RUN fails") {
		IO_BIND("sys", KVM_CREATE_VM, 0, "vm");
		struct kvm_userspace_memory_region mr = { .slot = 0, .guest_phys_addr = 0, .memory_size = GUEST_MEM, .userspace_addr = 0x10000000000ULL };
		IO_PTR("vm", KVM_SET_USER_MEMORY_REGION, "kvm_userspace_memory_region", &mr, emit_umr, NULL);
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		step_map_run("vcpu0");
		struct kvm_sregs s;
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &s);
		s.cs.selector = 0;
		s.cs.base = 0;
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &s, emit_sregs, NULL);
		struct kvm_regs r = { .rip = 0x1000, .rflags = 2 };
		IO_PTR("vcpu0", KVM_SET_REGS, "kvm_regs", &r, emit_regs, NULL);
		guest_run();
	}
	FACT("run.triple-fault", "INT3 with an IDT limit of 0 in real mode: a triple fault, KVM_EXIT_SHUTDOWN") {
		memset(image, 0, sizeof image);
		image[0x1000] = 0xcc;
		struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000 };
		guest_setup(image, 0, &r);
		struct kvm_sregs s;
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &s);
		s.idt.limit = 0;
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &s, emit_sregs, NULL);
		guest_run();
	}
	FACT("run.dirty-log", "KVM_GET_DIRTY_LOG after the guest writes pages 2 and 5 of a KVM_MEM_LOG_DIRTY_PAGES slot, then again") {
		static const uint8_t none[4096];
		/* mov byte [0x2000], 1; mov byte [0x5003], 2; hlt */
		setup(CODE(0xc6, 0x06, 0x00, 0x20, 0x01, 0xc6, 0x06, 0x03, 0x50, 0x02, 0xf4), KVM_MEM_LOG_DIRTY_PAGES, 0);
		guest_run();
		step_mmap("m1", 4096);
		struct kvm_dirty_log d = { .slot = 0, .dirty_bitmap = buf_addr("m1") };
		IO_PTR("vm", KVM_GET_DIRTY_LOG, "kvm_dirty_log", &d, emit_dirty_log, NULL);
		step_mem("m1", none, sizeof none);
		step_mmap("m2", 4096);
		d.dirty_bitmap = buf_addr("m2");
		IO_PTR("vm", KVM_GET_DIRTY_LOG, "kvm_dirty_log", &d, emit_dirty_log, NULL);
		step_mem("m2", none, sizeof none);
	}
	FACT("run.dirty-log.not-logging", "KVM_GET_DIRTY_LOG of a slot without KVM_MEM_LOG_DIRTY_PAGES: ENOENT") {
		setup(CODE(0xf4), 0, 0);
		step_mmap("m1", 4096);
		struct kvm_dirty_log d = { .slot = 0, .dirty_bitmap = buf_addr("m1") };
		IO_PTR("vm", KVM_GET_DIRTY_LOG, "kvm_dirty_log", &d, emit_dirty_log, NULL);
	}
	FACT("run.clear-dirty-log.without-manual-protect", "KVM_CLEAR_DIRTY_LOG without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled") {
		setup(CODE(0xf4), KVM_MEM_LOG_DIRTY_PAGES, 0);
		uint8_t *bm = step_mmap("m1", 4096);
		struct kvm_clear_dirty_log c = { .slot = 0, .first_page = 0, .num_pages = 16, .dirty_bitmap = bm };
		IO_PTR("vm", KVM_CLEAR_DIRTY_LOG, "kvm_clear_dirty_log", &c, emit_clear_dirty_log, NULL);
	}
	msr_exit_facts();
	guest_debug_facts();
	FACT("run.ud2-through-ivt", "UD2 in real mode: #UD through IVT entry 6 to a handler that does OUT") {
		memset(image, 0, sizeof image);
		image[0x1000] = 0x0f;
		image[0x1001] = 0x0b;
		const uint8_t handler[] = { 0xe6, 0x11, 0xf4 }; /* out 0x11, al; hlt */
		memcpy(image + 0x2000, handler, sizeof handler);
		image[6 * 4] = 0x00; image[6 * 4 + 1] = 0x20; /* IP 0x2000, CS 0 */
		struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000, .rax = 0x66 };
		guest_setup(image, 0, &r);
		guest_run();
		guest_get_regs();
		step_mem("m0", image, GUEST_MEM);
	}
	record_run_sync();
	record_run_events();
	record_run_pdptes();
}
