/*
 * Group "irq": interrupts delivered to a real-mode guest through its IVT by the in-kernel irqchip — a KVM_IRQ_LINE
 * pulse taken by a halted guest, an interrupt held while IF = 0 and taken after STI's shadow, PIT ticks counted by a
 * halted guest, an AP started by INIT-SIPI-SIPI sent through the BSP's x2APIC ICR (KVM_RUN of the waiting AP, and
 * KVM_GET_MP_STATE on the way), the LAPIC timer in TSC-deadline mode armed by the guest's WRMSR, and
 * KVM_IRQ_LINE_STATUS's answers.
 *
 * Every guest is set up so that no KVM_RUN can block for ever: an interrupt is already pending, or a timer is armed,
 * before a KVM_RUN reaches a HLT.
 */
#include <string.h>

#include "groups.h"
#include "guestvm.h"

static uint8_t image[GUEST_MEM];

static void irqchip_only(void) {
	IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
}

static void irqchip_and_pit(void) {
	IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
	struct kvm_pit_config pc = { 0 };
	IO_PTR("vm", KVM_CREATE_PIT2, "kvm_pit_config", &pc, emit_pit_config, NULL);
}

/*
 * `code` at 0x1000 (IP), `at2000` (`an` bytes) at 0x2000, SP 0x8000, IVT entries `vectors[i]` → 0000:`handlers[i]`;
 * `before_vcpu` makes the irqchip.
 */
static void setup(const uint8_t *code, size_t n, const uint8_t *at2000, size_t an, const uint8_t *vectors, const uint16_t *handlers, size_t nh, void (*before_vcpu)(void)) {
	memset(image, 0, sizeof image);
	memcpy(image + 0x1000, code, n);
	if (an > 0) memcpy(image + 0x2000, at2000, an);
	for (size_t i = 0; i < nh; i++) {
		image[vectors[i] * 4] = handlers[i] & 0xff;
		image[vectors[i] * 4 + 1] = handlers[i] >> 8;
	}
	struct guest_regs r = { .rip = 0x1000, .rsp = 0x8000 };
	guest_before_vcpu = before_vcpu;
	guest_setup(image, 0, &r);
	guest_before_vcpu = NULL;
}

static void irq_line(uint32_t irq, uint32_t level) {
	struct kvm_irq_level l = { .irq = irq, .level = level };
	IO_PTR("vm", KVM_IRQ_LINE, "kvm_irq_level", &l, emit_irq_level, NULL);
}

static long run_vcpu(const char *vcpu) {
	struct io io = { .fd = vcpu, .name = "KVM_RUN", .nr = KVM_RUN, .kind = IO_ARG_INT, .value = 0,
		.ptr = run_of(vcpu), .emit_out = (emit_fn)emit_run_exit, .out_key = "run", .out_on_error = 1 };
	return step_io(&io);
}

static void mp_state(const char *vcpu) {
	struct kvm_mp_state m = { 0 };
	IO_PTR(vcpu, KVM_GET_MP_STATE, "kvm_mp_state", &m, NULL, emit_mp_state);
}

/* KVM_SET_CPUID2 of leaves 0 and 1 with `ecx1` in leaf 1's ECX. */
static void set_cpuid(const char *vcpu, uint32_t ecx1) {
	static struct cpuid_buf c;
	memset(&c, 0, sizeof c);
	c.h.nent = 2;
	c.e[0] = (struct kvm_cpuid_entry2){ .function = 0, .eax = 1, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69 };
	c.e[1] = (struct kvm_cpuid_entry2){ .function = 1, .eax = 0x50657, .ecx = ecx1, .edx = 0x0781abfd };
	IO_PTR(vcpu, KVM_SET_CPUID2, "kvm_cpuid2", &c, emit_cpuid2, NULL);
}

#define CODE(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })
#define B32(x) (uint8_t)((x) & 0xff), (uint8_t)(((x) >> 8) & 0xff), (uint8_t)(((x) >> 16) & 0xff), (uint8_t)(((x) >> 24) & 0xff)
/* mov ecx, msr; mov eax, lo; mov edx, hi; wrmsr */
#define WRMSR(msr, lo, hi) 0x66, 0xb9, B32(msr), 0x66, 0xb8, B32(lo), 0x66, 0xba, B32(hi), 0x0f, 0x30
/* mov ecx, IA32_APICBASE; rdmsr; or eax, 0xc00; wrmsr (x2APIC on) */
#define X2APIC_ON 0x66, 0xb9, B32(0x1b), 0x0f, 0x32, 0x66, 0x0d, B32(0xc00), 0x0f, 0x30
/* The master PIC: ICW1-4 (vectors 8-15, cascade on IRQ 2, 8086 mode), then `mask` in OCW1. */
#define PIC_INIT(mask) 0xb0, 0x11, 0xe6, 0x20, 0xb0, 0x08, 0xe6, 0x21, 0xb0, 0x04, 0xe6, 0x21, 0xb0, 0x01, 0xe6, 0x21, 0xb0, (mask), 0xe6, 0x21

void record_irq(void) {
	/*
	 * 1000: PIC (IRQ 3 only); out 0x81; sti; hlt; mov al, 0x55; out 0x82, al; hlt
	 * 2000 (IRQ 3 → vector 11): inc byte [0x500]; mov al, 0x20; out 0x20, al; mov al, [0x500]; out 0x80, al; iret
	 */
	static const uint8_t irq3[] = { 11 };
	static const uint16_t irq3_handler[] = { 0x2000 };
	static const uint8_t count_handler[] = { 0xfe, 0x06, 0x00, 0x05, 0xb0, 0x20, 0xe6, 0x20, 0xa0, 0x00, 0x05, 0xe6, 0x80, 0xcf };
	FACT("irq.line.halted-guest", "KVM_IRQ_LINE 1/0 on IRQ 3 (edge) while the guest is about to STI; HLT: the halted vCPU takes it through IVT 11, the handler EOIs and IRETs past the HLT") {
		setup(CODE(PIC_INIT(0xf7), 0xe6, 0x81, 0xfb, 0xf4, 0xb0, 0x55, 0xe6, 0x82, 0xf4), count_handler, sizeof count_handler, irq3, irq3_handler, 1, irqchip_only);
		guest_run();
		irq_line(3, 1);
		irq_line(3, 0);
		guest_run();
		guest_get_regs();
		guest_run();
		guest_get_regs();
		step_mem("m0", image, GUEST_MEM);
	}
	FACT("irq.line.held-while-if-clear", "An IRQ raised while IF = 0 is held; after STI it is taken once the next instruction (the shadow) completes") {
		/* PIC (IRQ 3); out 0x81; out 0x83; sti; nop; mov al, 0x55; out 0x82, al; hlt */
		setup(CODE(PIC_INIT(0xf7), 0xe6, 0x81, 0xe6, 0x83, 0xfb, 0x90, 0xb0, 0x55, 0xe6, 0x82, 0xf4), count_handler, sizeof count_handler, irq3, irq3_handler, 1, irqchip_only);
		guest_run();
		irq_line(3, 1);
		irq_line(3, 0);
		guest_run();
		guest_get_regs();
		guest_run();
		guest_get_regs();
		guest_run();
		guest_get_regs();
	}
	FACT("irq.line-status", "KVM_IRQ_LINE_STATUS: the status of a raise the PIC takes, of a raise of a line already high, of a lower") {
		setup(CODE(0xf4), NULL, 0, NULL, NULL, 0, irqchip_only);
		struct kvm_irq_level l = { .irq = 4, .level = 1 };
		IO_PTR("vm", KVM_IRQ_LINE_STATUS, "kvm_irq_level", &l, emit_irq_level, emit_irq_level);
		l = (struct kvm_irq_level){ .irq = 4, .level = 1 };
		IO_PTR("vm", KVM_IRQ_LINE_STATUS, "kvm_irq_level", &l, emit_irq_level, emit_irq_level);
		l = (struct kvm_irq_level){ .irq = 4, .level = 0 };
		IO_PTR("vm", KVM_IRQ_LINE_STATUS, "kvm_irq_level", &l, emit_irq_level, emit_irq_level);
		l = (struct kvm_irq_level){ .irq = 1024, .level = 1 };
		IO_PTR("vm", KVM_IRQ_LINE_STATUS, "kvm_irq_level", &l, emit_irq_level, emit_irq_level);
	}
	{
		/*
		 * 1000: PIC (IRQ 0); PIT channel 0 mode 2, count 1193 (about 1 ms); sti;
		 *       l: hlt; cmp word [0x500], 3; jb l; mov ax, [0x500]; out 0x80, al; hlt
		 * 2000 (IRQ 0 → vector 8): inc word [0x500]; push ax; mov al, 0x20; out 0x20, al; pop ax; iret
		 */
		static const uint8_t irq0[] = { 8 };
		static const uint16_t irq0_handler[] = { 0x2000 };
		static const uint8_t tick[] = { 0xff, 0x06, 0x00, 0x05, 0x50, 0xb0, 0x20, 0xe6, 0x20, 0x58, 0xcf };
		FACT("irq.pit.ticks", "PIT channel 0 in mode 2 and the master PIC programmed by the guest; a halted guest counts three ticks through IVT 8") {
			setup(CODE(PIC_INIT(0xfe), 0xb0, 0x34, 0xe6, 0x43, 0xb0, 0xa9, 0xe6, 0x40, 0xb0, 0x04, 0xe6, 0x40, 0xfb,
				0xf4, 0x83, 0x3e, 0x00, 0x05, 0x03, 0x72, 0xf8, 0xa1, 0x00, 0x05, 0xe6, 0x80, 0xf4), tick, sizeof tick, irq0, irq0_handler, 1, irqchip_and_pit);
			guest_run();
			guest_get_regs();
		}
	}
	{
		/*
		 * BSP 1000: x2APIC on; SVR = 0x1ff; ICR = INIT to APIC 1; out 0x80; ICR = SIPI vector 2 (twice); out 0x80; hlt
		 * AP  2000 (CS 0x200): mov ax, 0x1234; mov [0x600], ax; out 0x81, al; hlt
		 */
		static const uint8_t ap[] = { 0xb8, 0x34, 0x12, 0xa3, 0x00, 0x06, 0xe6, 0x81, 0xf4 };
		FACT("irq.init-sipi.ap-run", "INIT-SIPI-SIPI through the BSP's x2APIC ICR; KVM_RUN of the AP that waited in KVM_MP_STATE_UNINITIALIZED, then again") {
			setup(CODE(X2APIC_ON, WRMSR(0x80f, 0x1ff, 0), WRMSR(0x830, 0x4500, 1), 0xe6, 0x80,
				WRMSR(0x830, 0x4602, 1), WRMSR(0x830, 0x4602, 1), 0xe6, 0x80, 0xf4), ap, sizeof ap, NULL, NULL, 0, irqchip_only);
			IO_BIND("vm", KVM_CREATE_VCPU, 1, "vcpu1");
			step_map_run("vcpu1");
			set_cpuid("vcpu0", 1u << 21);
			mp_state("vcpu1");
			guest_run();
			guest_run();
			run_vcpu("vcpu1");
			run_vcpu("vcpu1");
			struct kvm_regs r = { 0 };
			IO_PTR("vcpu1", KVM_GET_REGS, "kvm_regs", &r, NULL, emit_regs);
			struct kvm_sregs s = { 0 };
			IO_PTR("vcpu1", KVM_GET_SREGS, "kvm_sregs", &s, NULL, emit_sregs_segments);
			step_mem("m0", image, GUEST_MEM);
		}
		FACT("irq.init-sipi.mp-state", "KVM_GET_MP_STATE of the AP after the INIT (INIT_RECEIVED) and after the SIPI (RUNNABLE at vector:0)") {
			setup(CODE(X2APIC_ON, WRMSR(0x80f, 0x1ff, 0), WRMSR(0x830, 0x4500, 1), 0xe6, 0x80,
				WRMSR(0x830, 0x4602, 1), WRMSR(0x830, 0x4602, 1), 0xe6, 0x80, 0xf4), NULL, 0, NULL, NULL, 0, irqchip_only);
			IO_BIND("vm", KVM_CREATE_VCPU, 1, "vcpu1");
			set_cpuid("vcpu0", 1u << 21);
			guest_run();
			mp_state("vcpu1");
			guest_run();
			mp_state("vcpu1");
			struct kvm_sregs s = { 0 };
			IO_PTR("vcpu1", KVM_GET_SREGS, "kvm_sregs", &s, NULL, emit_sregs_segments);
		}
	}
	{
		/*
		 * 1000: x2APIC on; SVR = 0x1ff; LVTT = vector 0x40, TSC-deadline mode; rdtsc; add eax, 100000; adc edx, 0;
		 *       mov esi, eax; mov edi, edx; mov ecx, 0x6e0; wrmsr; rdmsr; xor eax, esi; xor edx, edi; or eax, edx;
		 *       mov [0x540], eax; xor esi, esi; xor edi, edi; sti; l: hlt; cmp byte [0x500], 1; jb l;
		 *       mov al, [0x500]; out 0x80, al; hlt
		 * 2000 (vector 0x40): inc byte [0x500]; EOI (wrmsr 0x80b = 0); iret
		 */
		static const uint8_t v40[] = { 0x40 };
		static const uint16_t v40_handler[] = { 0x2000 };
		static const uint8_t timer[] = { 0xfe, 0x06, 0x00, 0x05, WRMSR(0x80b, 0, 0), 0xcf };
		FACT("irq.tsc-deadline", "The guest arms IA32_TSC_DEADLINE 100000 cycles ahead in TSC-deadline mode, reads it back (the same value), halts and takes vector 0x40") {
			setup(CODE(X2APIC_ON, WRMSR(0x80f, 0x1ff, 0), WRMSR(0x832, 0x40040, 0),
				0x0f, 0x31, 0x66, 0x05, B32(100000), 0x66, 0x83, 0xd2, 0x00, 0x66, 0x89, 0xc6, 0x66, 0x89, 0xd7,
				0x66, 0xb9, B32(0x6e0), 0x0f, 0x30, 0x0f, 0x32, 0x66, 0x31, 0xf0, 0x66, 0x31, 0xfa, 0x66, 0x09, 0xd0,
				0x66, 0xa3, 0x40, 0x05, 0x66, 0x31, 0xf6, 0x66, 0x31, 0xff, 0xfb,
				0xf4, 0x80, 0x3e, 0x00, 0x05, 0x01, 0x72, 0xf8, 0xa0, 0x00, 0x05, 0xe6, 0x80, 0xf4), timer, sizeof timer, v40, v40_handler, 1, irqchip_only);
			set_cpuid("vcpu0", (1u << 21) | (1u << 24));
			guest_run();
			guest_get_regs();
			step_mem("m0", image, GUEST_MEM);
		}
	}
}
