/*
 * Group "vcpu": the state of a vCPU — the reset state of every piece (regs, sregs incl. TR/LDTR/IDTR,
 * sregs2, FPU, XSAVE, XCRs, events, MP state, debug registers, MSRs, CPUID, TSC frequency, APIC base of
 * the BSP and of an AP), GET→SET→GET round trips, KVM_SET_SREGS validation, the other state ioctls'
 * errors, and ioctl numbers a vCPU fd does not know.
 */
#include <stdio.h>
#include <string.h>

#include "groups.h"
#include "structs.h"

#define VM() IO_BIND("sys", KVM_CREATE_VM, 0, "vm")
#define VCPU0() IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0")

static struct kvm_regs regs;
static struct kvm_sregs sregs;
static struct kvm_sregs2 sregs2;
static struct kvm_fpu fpu;
static struct kvm_xcrs xcrs;
static struct kvm_vcpu_events events;
static struct kvm_mp_state mp;
static struct kvm_debugregs dbg;
static struct kvm_xsave xsave;
static struct kvm_lapic_state lapic;
static struct msrs_buf msrs;
static struct cpuid_buf cpuid;

/* A GET ioctl of a fresh vCPU 0 (`irqchip`: after KVM_CREATE_IRQCHIP). */
#define RESET_FACT(id, title, irqchip, NR, type, p, emit) \
	FACT(id, title) { \
		VM(); \
		if (irqchip) IO_INT("vm", KVM_CREATE_IRQCHIP, 0); \
		VCPU0(); \
		memset(p, 0, sizeof *(p)); \
		step_ptr("vcpu0", #NR, NR, type, p, NULL, (emit_fn)(emit)); \
	}

/* GET, SET of what GET gave, GET again. */
#define ROUND_TRIP_FACT(id, title, irqchip, GET, SET, type, p, emit) \
	FACT(id, title) { \
		VM(); \
		if (irqchip) IO_INT("vm", KVM_CREATE_IRQCHIP, 0); \
		VCPU0(); \
		memset(p, 0, sizeof *(p)); \
		step_ptr("vcpu0", #GET, GET, type, p, NULL, (emit_fn)(emit)); \
		step_ptr("vcpu0", #SET, SET, type, p, (emit_fn)(emit), NULL); \
		memset(p, 0, sizeof *(p)); \
		step_ptr("vcpu0", #GET, GET, type, p, NULL, (emit_fn)(emit)); \
	}

static void reset_facts(void) {
	RESET_FACT("vcpu.reset.regs", "KVM_GET_REGS of a new vCPU", 0, KVM_GET_REGS, "kvm_regs", &regs, emit_regs);
	RESET_FACT("vcpu.reset.sregs", "KVM_GET_SREGS of a new vCPU (segments incl. TR and LDTR, GDTR/IDTR, control registers, APIC base)", 0, KVM_GET_SREGS, "kvm_sregs", &sregs, emit_sregs);
	RESET_FACT("vcpu.reset.sregs2", "KVM_GET_SREGS2 of a new vCPU", 0, KVM_GET_SREGS2, "kvm_sregs2", &sregs2, emit_sregs2);
	RESET_FACT("vcpu.reset.fpu", "KVM_GET_FPU of a new vCPU", 0, KVM_GET_FPU, "kvm_fpu", &fpu, emit_fpu);
	RESET_FACT("vcpu.reset.xcrs", "KVM_GET_XCRS of a new vCPU", 0, KVM_GET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs);
	RESET_FACT("vcpu.reset.vcpu-events", "KVM_GET_VCPU_EVENTS of a new vCPU", 0, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events);
	RESET_FACT("vcpu.reset.mp-state", "KVM_GET_MP_STATE of a new vCPU without an in-kernel irqchip", 0, KVM_GET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state);
	RESET_FACT("vcpu.reset.mp-state.irqchip-bsp", "KVM_GET_MP_STATE of vCPU 0 with an in-kernel irqchip", 1, KVM_GET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state);
	RESET_FACT("vcpu.reset.debugregs", "KVM_GET_DEBUGREGS of a new vCPU", 0, KVM_GET_DEBUGREGS, "kvm_debugregs", &dbg, emit_debugregs);
	RESET_FACT("vcpu.reset.xsave", "KVM_GET_XSAVE of a new vCPU (4096 bytes)", 0, KVM_GET_XSAVE, "kvm_xsave", &xsave, emit_xsave);
	RESET_FACT("vcpu.reset.lapic", "KVM_GET_LAPIC of a new vCPU 0 with an in-kernel irqchip", 1, KVM_GET_LAPIC, "kvm_lapic_state", &lapic, emit_lapic);
	RESET_FACT("vcpu.reset.apic-base.bsp", "The APIC base of vCPU 0 (the BSP) after reset", 0, KVM_GET_SREGS, "kvm_sregs", &sregs, emit_sregs_apic_base);
	FACT("vcpu.reset.apic-base.ap", "The APIC base of vCPU 1 (an AP: no BSP bit) after reset") {
		VM();
		VCPU0();
		IO_BIND("vm", KVM_CREATE_VCPU, 1, "vcpu1");
		memset(&sregs, 0, sizeof sregs);
		IO_PTR("vcpu1", KVM_GET_SREGS, "kvm_sregs", &sregs, NULL, emit_sregs_apic_base);
	}
	FACT("vcpu.reset.apic-base.boot-cpu-id", "With KVM_SET_BOOT_CPU_ID(1), vCPU 1 is the BSP and vCPU 0 an AP") {
		VM();
		IO_INT("vm", KVM_SET_BOOT_CPU_ID, 1);
		VCPU0();
		IO_BIND("vm", KVM_CREATE_VCPU, 1, "vcpu1");
		memset(&sregs, 0, sizeof sregs);
		IO_PTR("vcpu0", KVM_GET_SREGS, "kvm_sregs", &sregs, NULL, emit_sregs_apic_base);
		memset(&sregs, 0, sizeof sregs);
		IO_PTR("vcpu1", KVM_GET_SREGS, "kvm_sregs", &sregs, NULL, emit_sregs_apic_base);
	}
	FACT("vcpu.reset.mp-state.irqchip-ap", "KVM_GET_MP_STATE of vCPU 1 (an AP) with an in-kernel irqchip") {
		VM();
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
		VCPU0();
		IO_BIND("vm", KVM_CREATE_VCPU, 1, "vcpu1");
		memset(&mp, 0, sizeof mp);
		IO_PTR("vcpu1", KVM_GET_MP_STATE, "kvm_mp_state", &mp, NULL, emit_mp_state);
	}
	FACT("vcpu.reset.tsc-khz", "KVM_GET_TSC_KHZ of a new vCPU: the host's TSC frequency (not compared)") {
		VM();
		VCPU0();
		IO_INT_OPAQUE("vcpu0", KVM_GET_TSC_KHZ, 0);
	}
	FACT("vcpu.reset.cpuid2", "KVM_GET_CPUID2 of a new vCPU: no entries") {
		VM();
		VCPU0();
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 8;
		IO_PTR("vcpu0", KVM_GET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2_in, emit_cpuid2);
	}

	/* One fact per MSR: KVM_GET_MSRS stops at the first MSR it cannot read. */
	static const struct { const char *name; uint32_t index; } msr[] = {
		{ "apic-base", 0x1b }, { "sysenter-cs", 0x174 }, { "sysenter-esp", 0x175 }, { "sysenter-eip", 0x176 },
		{ "misc-enable", 0x1a0 }, { "pat", 0x277 }, { "mtrr-def-type", 0x2ff }, { "mtrr-cap", 0xfe },
		{ "mcg-cap", 0x179 }, { "mcg-status", 0x17a }, { "tsc-adjust", 0x3b }, { "spec-ctrl", 0x48 },
		{ "efer", 0xc0000080 }, { "star", 0xc0000081 }, { "lstar", 0xc0000082 }, { "cstar", 0xc0000083 },
		{ "sfmask", 0xc0000084 }, { "fs-base", 0xc0000100 }, { "gs-base", 0xc0000101 },
		{ "kernel-gs-base", 0xc0000102 }, { "tsc-aux", 0xc0000103 }, { "xss", 0xda0 },
		{ "kvm-system-time", 0x4b564d01 }, { "kvm-wall-clock", 0x4b564d00 }, { "kvm-async-pf-en", 0x4b564d02 },
		{ "platform-info", 0xce }, { "smbase", 0x9e }, { "unknown", 0x12345678 },
	};
	for (size_t i = 0; i < sizeof msr / sizeof msr[0]; i++) {
		char id[96], title[160];
		snprintf(id, sizeof id, "vcpu.reset.msr.%s", msr[i].name);
		snprintf(title, sizeof title, "KVM_GET_MSRS of MSR 0x%x (%s) of a new vCPU", msr[i].index, msr[i].name);
		FACT(id, title) {
			VM();
			VCPU0();
			memset(&msrs, 0, sizeof msrs);
			msrs.h.nmsrs = 1;
			msrs.e[0].index = msr[i].index;
			IO_PTR("vcpu0", KVM_GET_MSRS, "kvm_msrs", &msrs, emit_msrs, emit_msrs);
		}
	}
}

static void round_trip_facts(void) {
	ROUND_TRIP_FACT("vcpu.round-trip.regs", "KVM_GET_REGS → KVM_SET_REGS → KVM_GET_REGS", 0, KVM_GET_REGS, KVM_SET_REGS, "kvm_regs", &regs, emit_regs);
	ROUND_TRIP_FACT("vcpu.round-trip.sregs", "KVM_GET_SREGS → KVM_SET_SREGS → KVM_GET_SREGS", 0, KVM_GET_SREGS, KVM_SET_SREGS, "kvm_sregs", &sregs, emit_sregs);
	ROUND_TRIP_FACT("vcpu.round-trip.sregs2", "KVM_GET_SREGS2 → KVM_SET_SREGS2 → KVM_GET_SREGS2", 0, KVM_GET_SREGS2, KVM_SET_SREGS2, "kvm_sregs2", &sregs2, emit_sregs2);
	ROUND_TRIP_FACT("vcpu.round-trip.fpu", "KVM_GET_FPU → KVM_SET_FPU → KVM_GET_FPU", 0, KVM_GET_FPU, KVM_SET_FPU, "kvm_fpu", &fpu, emit_fpu);
	ROUND_TRIP_FACT("vcpu.round-trip.xcrs", "KVM_GET_XCRS → KVM_SET_XCRS → KVM_GET_XCRS", 0, KVM_GET_XCRS, KVM_SET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs);
	ROUND_TRIP_FACT("vcpu.round-trip.vcpu-events", "KVM_GET_VCPU_EVENTS → KVM_SET_VCPU_EVENTS → KVM_GET_VCPU_EVENTS", 0, KVM_GET_VCPU_EVENTS, KVM_SET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events);
	ROUND_TRIP_FACT("vcpu.round-trip.mp-state", "KVM_GET_MP_STATE → KVM_SET_MP_STATE → KVM_GET_MP_STATE", 0, KVM_GET_MP_STATE, KVM_SET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state);
	ROUND_TRIP_FACT("vcpu.round-trip.debugregs", "KVM_GET_DEBUGREGS → KVM_SET_DEBUGREGS → KVM_GET_DEBUGREGS", 0, KVM_GET_DEBUGREGS, KVM_SET_DEBUGREGS, "kvm_debugregs", &dbg, emit_debugregs);
	ROUND_TRIP_FACT("vcpu.round-trip.xsave", "KVM_GET_XSAVE → KVM_SET_XSAVE → KVM_GET_XSAVE", 0, KVM_GET_XSAVE, KVM_SET_XSAVE, "kvm_xsave", &xsave, emit_xsave);
	ROUND_TRIP_FACT("vcpu.round-trip.lapic", "KVM_GET_LAPIC → KVM_SET_LAPIC → KVM_GET_LAPIC (in-kernel irqchip)", 1, KVM_GET_LAPIC, KVM_SET_LAPIC, "kvm_lapic_state", &lapic, emit_lapic);
}

/* SET_REGS of `r`, then GET_REGS. */
static void set_regs_fact(const char *id, const char *title, const struct kvm_regs *r) {
	FACT(id, title) {
		VM();
		VCPU0();
		regs = *r;
		IO_PTR("vcpu0", KVM_SET_REGS, "kvm_regs", &regs, emit_regs, NULL);
		memset(&regs, 0, sizeof regs);
		IO_PTR("vcpu0", KVM_GET_REGS, "kvm_regs", &regs, NULL, emit_regs);
	}
}

static void regs_facts(void) {
	struct kvm_regs r = {
		.rax = 0xffffffffffffffffULL, .rbx = 0x8000000000000001ULL, .rcx = 0x20000000000001ULL, .rdx = 0x1234567890abcdefULL,
		.rsi = 1, .rdi = 2, .rsp = 0x7ffe, .rbp = 0xfedcba9876543210ULL,
		.r8 = 8, .r9 = 0x9999999999999999ULL, .r10 = 10, .r11 = 11, .r12 = 12, .r13 = 13, .r14 = 14, .r15 = 0x4000000000000000ULL,
		.rip = 0x100001234ULL, .rflags = 0x246,
	};
	set_regs_fact("vcpu.regs.set-64-bit", "KVM_SET_REGS of 64-bit values (many above 2^53), then KVM_GET_REGS", &r);
	struct kvm_regs z = { .rflags = 0 };
	set_regs_fact("vcpu.regs.rflags-bit-1", "KVM_SET_REGS with RFLAGS 0: KVM_GET_REGS shows bit 1 set", &z);
	struct kvm_regs h = { .rflags = 0xffffffffffffffffULL };
	set_regs_fact("vcpu.regs.rflags-all-ones", "KVM_SET_REGS with RFLAGS all ones", &h);
	struct kvm_regs t = { .rflags = 0x2 | 0x100 /* TF */ };
	set_regs_fact("vcpu.regs.rflags-tf", "KVM_SET_REGS with RFLAGS.TF", &t);
	FACT("vcpu.regs.get-null", "KVM_GET_REGS with a NULL pointer: EFAULT") {
		VM();
		VCPU0();
		IO_NULL("vcpu0", KVM_GET_REGS, "kvm_regs");
	}
	FACT("vcpu.regs.set-null", "KVM_SET_REGS with a NULL pointer: EFAULT") {
		VM();
		VCPU0();
		IO_NULL("vcpu0", KVM_SET_REGS, "kvm_regs");
	}
}

/* The reset sregs with `mutate` applied, through KVM_SET_SREGS; then the control registers. */
static void sregs_fact(const char *id, const char *title, void (*mutate)(struct kvm_sregs *)) {
	FACT(id, title) {
		VM();
		VCPU0();
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &sregs);
		mutate(&sregs);
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &sregs, emit_sregs, NULL);
		memset(&sregs, 0, sizeof sregs);
		IO_PTR("vcpu0", KVM_GET_SREGS, "kvm_sregs", &sregs, NULL, emit_sregs_ctl);
	}
}

static void m_pg_no_pe(struct kvm_sregs *s) { s->cr0 = 0x80000010; }
static void m_pe(struct kvm_sregs *s) { s->cr0 = 0x60000011; }
static void m_nw_no_cd(struct kvm_sregs *s) { s->cr0 = 0x20000010; }
static void m_cd_nw(struct kvm_sregs *s) { s->cr0 = 0x60000010; }
static void m_cr0_high(struct kvm_sregs *s) { s->cr0 |= 1ULL << 32; }
static void m_cr0_clear(struct kvm_sregs *s) { s->cr0 = 0; }
static void m_cr4_reserved(struct kvm_sregs *s) { s->cr4 = 1ULL << 63; }
static void m_cr4_pae(struct kvm_sregs *s) { s->cr4 = 0x20; }
static void m_cr4_vmxe(struct kvm_sregs *s) { s->cr4 = 1u << 13; }
static void m_cr4_pse(struct kvm_sregs *s) { s->cr4 = 0x10; }
static void m_cr4_osfxsr(struct kvm_sregs *s) { s->cr4 = 0x200; }
static void m_efer_lma(struct kvm_sregs *s) { s->efer = 0x400; }
static void m_efer_lme(struct kvm_sregs *s) { s->efer = 0x100; }
static void m_efer_reserved(struct kvm_sregs *s) { s->efer = 1ULL << 63; }
static void m_efer_nx(struct kvm_sregs *s) { s->efer = 0x800; }
static void m_efer_sce(struct kvm_sregs *s) { s->efer = 0x1; }
static void m_cs_l(struct kvm_sregs *s) { s->cs.l = 1; }
static void m_long_no_pae(struct kvm_sregs *s) { s->cr0 = 0x80000011; s->efer = 0x500; s->cs.l = 1; }
static void m_apic_reserved(struct kvm_sregs *s) { s->apic_base |= 1ULL << 63; }
static void m_apic_x2_only(struct kvm_sregs *s) { s->apic_base = 0xfee00000 | 0x100 | 0x400; }
static void m_apic_disabled(struct kvm_sregs *s) { s->apic_base = 0xfee00100; }
static void m_apic_moved(struct kvm_sregs *s) { s->apic_base = 0xfec00900; }
static void m_cr3_high(struct kvm_sregs *s) { s->cr3 = 1ULL << 62; }
static void m_cr8(struct kvm_sregs *s) { s->cr8 = 5; }
static void m_cr8_high(struct kvm_sregs *s) { s->cr8 = 16; }
static void m_cr2(struct kvm_sregs *s) { s->cr2 = 0xdeadbeefcafeULL; }
static void m_intr_bitmap(struct kvm_sregs *s) { s->interrupt_bitmap[0] = 1ULL << 48; }
static void m_real_segments(struct kvm_sregs *s) {
	s->cs.selector = 0x1000; s->cs.base = 0x10000;
	s->ds.selector = 0x2000; s->ds.base = 0x20000;
	s->ss.selector = 0x3000; s->ss.base = 0x30000;
	s->idt.base = 0x400; s->idt.limit = 0x3ff;
	s->gdt.base = 0x800; s->gdt.limit = 0x17;
}
static void m_tr_unusable(struct kvm_sregs *s) { s->tr.unusable = 1; s->tr.present = 0; }

static void sregs_facts(void) {
	sregs_fact("vcpu.sregs.cr0-pg-without-pe", "KVM_SET_SREGS with CR0.PG and not CR0.PE: EINVAL", m_pg_no_pe);
	sregs_fact("vcpu.sregs.cr0-pe", "KVM_SET_SREGS with CR0.PE (protected mode, real-mode segments)", m_pe);
	sregs_fact("vcpu.sregs.cr0-nw-without-cd", "KVM_SET_SREGS with CR0.NW and not CR0.CD: EINVAL", m_nw_no_cd);
	sregs_fact("vcpu.sregs.cr0-cd-nw", "KVM_SET_SREGS with CR0.CD and CR0.NW (the reset value)", m_cd_nw);
	sregs_fact("vcpu.sregs.cr0-bit-32", "KVM_SET_SREGS with CR0 bit 32: EINVAL", m_cr0_high);
	sregs_fact("vcpu.sregs.cr0-zero", "KVM_SET_SREGS with CR0 = 0 (ET clear)", m_cr0_clear);
	sregs_fact("vcpu.sregs.cr4-reserved", "KVM_SET_SREGS with CR4 bit 63: EINVAL", m_cr4_reserved);
	sregs_fact("vcpu.sregs.cr4-pae-without-cpuid", "KVM_SET_SREGS with CR4.PAE and no guest CPUID", m_cr4_pae);
	sregs_fact("vcpu.sregs.cr4-pse-without-cpuid", "KVM_SET_SREGS with CR4.PSE and no guest CPUID", m_cr4_pse);
	sregs_fact("vcpu.sregs.cr4-osfxsr-without-cpuid", "KVM_SET_SREGS with CR4.OSFXSR and no guest CPUID", m_cr4_osfxsr);
	sregs_fact("vcpu.sregs.cr4-vmxe", "KVM_SET_SREGS with CR4.VMXE", m_cr4_vmxe);
	sregs_fact("vcpu.sregs.efer-lma-alone", "KVM_SET_SREGS with EFER.LMA, no LME, no paging: EINVAL", m_efer_lma);
	sregs_fact("vcpu.sregs.efer-lme-without-cpuid", "KVM_SET_SREGS with EFER.LME and no guest CPUID", m_efer_lme);
	sregs_fact("vcpu.sregs.efer-reserved", "KVM_SET_SREGS with EFER bit 63: EINVAL", m_efer_reserved);
	sregs_fact("vcpu.sregs.efer-nx-without-cpuid", "KVM_SET_SREGS with EFER.NXE and no guest CPUID", m_efer_nx);
	sregs_fact("vcpu.sregs.efer-sce-without-cpuid", "KVM_SET_SREGS with EFER.SCE and no guest CPUID", m_efer_sce);
	sregs_fact("vcpu.sregs.cs-l-without-lma", "KVM_SET_SREGS with CS.L in real mode: EINVAL", m_cs_l);
	sregs_fact("vcpu.sregs.long-mode-without-pae", "KVM_SET_SREGS with CR0.PG, EFER.LME|LMA, CS.L and no CR4.PAE: EINVAL", m_long_no_pae);
	sregs_fact("vcpu.sregs.apic-base-reserved", "KVM_SET_SREGS with APIC base bit 63: EINVAL", m_apic_reserved);
	sregs_fact("vcpu.sregs.apic-base-x2apic-only", "KVM_SET_SREGS with APIC base EXTD without EN: EINVAL", m_apic_x2_only);
	sregs_fact("vcpu.sregs.apic-base-disabled", "KVM_SET_SREGS with the APIC disabled (EN clear)", m_apic_disabled);
	sregs_fact("vcpu.sregs.apic-base-moved", "KVM_SET_SREGS with the APIC base moved to 0xfec00000", m_apic_moved);
	sregs_fact("vcpu.sregs.cr3-high", "KVM_SET_SREGS with CR3 bit 62 in real mode", m_cr3_high);
	sregs_fact("vcpu.sregs.cr8", "KVM_SET_SREGS with CR8 = 5", m_cr8);
	sregs_fact("vcpu.sregs.cr8-above-15", "KVM_SET_SREGS with CR8 = 16", m_cr8_high);
	sregs_fact("vcpu.sregs.cr2", "KVM_SET_SREGS with CR2 = 0xdeadbeefcafe", m_cr2);
	sregs_fact("vcpu.sregs.tr-unusable", "KVM_SET_SREGS with TR unusable", m_tr_unusable);

	/* These show the whole state after the SET (segments, interrupt bitmap), not only control registers. */
	FACT("vcpu.sregs.real-mode-segments", "KVM_SET_SREGS of real-mode segments, GDTR and IDTR, then KVM_GET_SREGS") {
		VM();
		VCPU0();
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &sregs);
		m_real_segments(&sregs);
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &sregs, emit_sregs, NULL);
		memset(&sregs, 0, sizeof sregs);
		IO_PTR("vcpu0", KVM_GET_SREGS, "kvm_sregs", &sregs, NULL, emit_sregs);
	}
	FACT("vcpu.sregs.interrupt-bitmap", "KVM_SET_SREGS with vector 48 in interrupt_bitmap: it is queued (KVM_GET_SREGS, KVM_GET_VCPU_EVENTS)") {
		VM();
		VCPU0();
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &sregs);
		m_intr_bitmap(&sregs);
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &sregs, emit_sregs, NULL);
		memset(&sregs, 0, sizeof sregs);
		IO_PTR("vcpu0", KVM_GET_SREGS, "kvm_sregs", &sregs, NULL, emit_sregs);
		memset(&events, 0, sizeof events);
		IO_PTR("vcpu0", KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, NULL, emit_vcpu_events);
	}
	FACT("vcpu.sregs.set-null", "KVM_SET_SREGS with a NULL pointer: EFAULT") {
		VM();
		VCPU0();
		IO_NULL("vcpu0", KVM_SET_SREGS, "kvm_sregs");
	}
	FACT("vcpu.sregs2.bad-flags", "KVM_SET_SREGS2 with an unknown flag: EINVAL") {
		VM();
		VCPU0();
		quiet_ioctl("vcpu0", KVM_GET_SREGS2, &sregs2);
		sregs2.flags = 2;
		IO_PTR("vcpu0", KVM_SET_SREGS2, "kvm_sregs2", &sregs2, emit_sregs2, NULL);
	}
	FACT("vcpu.sregs2.pdptrs-valid-outside-pae", "KVM_SET_SREGS2 with KVM_SREGS2_FLAGS_PDPTRS_VALID in real mode: EINVAL") {
		VM();
		VCPU0();
		quiet_ioctl("vcpu0", KVM_GET_SREGS2, &sregs2);
		sregs2.flags = KVM_SREGS2_FLAGS_PDPTRS_VALID;
		IO_PTR("vcpu0", KVM_SET_SREGS2, "kvm_sregs2", &sregs2, emit_sregs2, NULL);
	}
	FACT("vcpu.sregs.long-mode-with-cpuid", "KVM_SET_CPUID2 (the supported CPUID), then KVM_SET_SREGS of 64-bit long mode") {
		VM();
		VCPU0();
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 256;
		quiet_ioctl("sys", KVM_GET_SUPPORTED_CPUID, &cpuid);
		IO_PTR("vcpu0", KVM_SET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2, NULL);
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &sregs);
		sregs.cr0 = 0x80000011;
		sregs.cr4 = 0x20;
		sregs.efer = 0x500;
		sregs.cr3 = 0x1000;
		struct kvm_segment cs = { .base = 0, .limit = 0xffffffff, .selector = 8, .type = 11, .present = 1, .s = 1, .l = 1, .g = 1 };
		struct kvm_segment ds = { .base = 0, .limit = 0xffffffff, .selector = 16, .type = 3, .present = 1, .s = 1, .db = 1, .g = 1 };
		sregs.cs = cs;
		sregs.ds = sregs.es = sregs.ss = sregs.fs = sregs.gs = ds;
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &sregs, emit_sregs, NULL);
		memset(&sregs, 0, sizeof sregs);
		IO_PTR("vcpu0", KVM_GET_SREGS, "kvm_sregs", &sregs, NULL, emit_sregs_ctl);
	}
}

/* SET of `p` (after `prep`), then GET into a zeroed buffer. */
#define SET_GET_FACT(id, title, SET, GET, type, p, emit, prep) \
	FACT(id, title) { \
		VM(); \
		VCPU0(); \
		memset(p, 0, sizeof *(p)); \
		quiet_ioctl("vcpu0", GET, p); \
		prep; \
		if (step_ptr("vcpu0", #SET, SET, type, p, (emit_fn)(emit), NULL) == 0) { \
			memset(p, 0, sizeof *(p)); \
			step_ptr("vcpu0", #GET, GET, type, p, NULL, (emit_fn)(emit)); \
		} \
	}

static void state_facts(void) {
	SET_GET_FACT("vcpu.fpu.set", "KVM_SET_FPU of new control words, an x87 register and an XMM register", KVM_SET_FPU, KVM_GET_FPU, "kvm_fpu", &fpu, emit_fpu,
		(fpu.fcw = 0x27f, fpu.mxcsr = 0x1fa0, fpu.fsw = 0x3800, fpu.ftwx = 0x80, memset(fpu.xmm[0], 0xa5, 16), memset(fpu.fpr[7], 0x11, 10)));
	SET_GET_FACT("vcpu.fpu.mxcsr-reserved", "KVM_SET_FPU with a reserved MXCSR bit", KVM_SET_FPU, KVM_GET_FPU, "kvm_fpu", &fpu, emit_fpu, (fpu.mxcsr = 0xffffffff));
	SET_GET_FACT("vcpu.xcrs.x87", "KVM_SET_XCRS of XCR0 = 1 (x87)", KVM_SET_XCRS, KVM_GET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs, (xcrs.nr_xcrs = 1, xcrs.xcrs[0].xcr = 0, xcrs.xcrs[0].value = 1));
	SET_GET_FACT("vcpu.xcrs.sse-without-cpuid", "KVM_SET_XCRS of XCR0 = 3 (x87|SSE) with no guest CPUID", KVM_SET_XCRS, KVM_GET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs, (xcrs.nr_xcrs = 1, xcrs.xcrs[0].xcr = 0, xcrs.xcrs[0].value = 3));
	SET_GET_FACT("vcpu.xcrs.x87-clear", "KVM_SET_XCRS of XCR0 = 0 (x87 clear): EINVAL", KVM_SET_XCRS, KVM_GET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs, (xcrs.nr_xcrs = 1, xcrs.xcrs[0].xcr = 0, xcrs.xcrs[0].value = 0));
	SET_GET_FACT("vcpu.xcrs.other-index", "KVM_SET_XCRS of XCR 1", KVM_SET_XCRS, KVM_GET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs, (xcrs.nr_xcrs = 1, xcrs.xcrs[0].xcr = 1, xcrs.xcrs[0].value = 1));
	SET_GET_FACT("vcpu.xcrs.too-many", "KVM_SET_XCRS with nr_xcrs = 17 (above KVM_MAX_XCRS): EINVAL", KVM_SET_XCRS, KVM_GET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs, (xcrs.nr_xcrs = 17));
	SET_GET_FACT("vcpu.xcrs.bad-flags", "KVM_SET_XCRS with flags = 1", KVM_SET_XCRS, KVM_GET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs, (xcrs.flags = 1));
	SET_GET_FACT("vcpu.vcpu-events.nmi-masked", "KVM_SET_VCPU_EVENTS with NMIs masked", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.nmi.masked = 1, events.flags = 0));
	SET_GET_FACT("vcpu.vcpu-events.nmi-pending", "KVM_SET_VCPU_EVENTS with an NMI pending (KVM_VCPUEVENT_VALID_NMI_PENDING)", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.nmi.pending = 1, events.flags = KVM_VCPUEVENT_VALID_NMI_PENDING));
	SET_GET_FACT("vcpu.vcpu-events.exception", "KVM_SET_VCPU_EVENTS with #GP(0) injected", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.exception.injected = 1, events.exception.nr = 13, events.exception.has_error_code = 1, events.flags = 0));
	SET_GET_FACT("vcpu.vcpu-events.exception-nr-32", "KVM_SET_VCPU_EVENTS with exception vector 32: EINVAL", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.exception.injected = 1, events.exception.nr = 32, events.flags = 0));
	SET_GET_FACT("vcpu.vcpu-events.interrupt", "KVM_SET_VCPU_EVENTS with interrupt 0x30 injected", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.interrupt.injected = 1, events.interrupt.nr = 0x30, events.flags = 0));
	SET_GET_FACT("vcpu.vcpu-events.shadow", "KVM_SET_VCPU_EVENTS with an interrupt shadow (KVM_VCPUEVENT_VALID_SHADOW)", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.interrupt.shadow = 1, events.flags = KVM_VCPUEVENT_VALID_SHADOW));
	SET_GET_FACT("vcpu.vcpu-events.bad-flags", "KVM_SET_VCPU_EVENTS with an unknown flag: EINVAL", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.flags = 0x1000));
	SET_GET_FACT("vcpu.vcpu-events.smm", "KVM_SET_VCPU_EVENTS entering SMM (KVM_VCPUEVENT_VALID_SMM)", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.smi.smm = 1, events.flags = KVM_VCPUEVENT_VALID_SMM));
	SET_GET_FACT("vcpu.vcpu-events.payload-without-cap", "KVM_SET_VCPU_EVENTS with KVM_VCPUEVENT_VALID_PAYLOAD, KVM_CAP_EXCEPTION_PAYLOAD not enabled: EINVAL", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.flags = KVM_VCPUEVENT_VALID_PAYLOAD));
	SET_GET_FACT("vcpu.vcpu-events.triple-fault-without-cap", "KVM_SET_VCPU_EVENTS with KVM_VCPUEVENT_VALID_TRIPLE_FAULT, the cap not enabled: EINVAL", KVM_SET_VCPU_EVENTS, KVM_GET_VCPU_EVENTS, "kvm_vcpu_events", &events, emit_vcpu_events, (events.triple_fault.pending = 1, events.flags = KVM_VCPUEVENT_VALID_TRIPLE_FAULT));
	SET_GET_FACT("vcpu.mp-state.halted", "KVM_SET_MP_STATE(HALTED)", KVM_SET_MP_STATE, KVM_GET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state, (mp.mp_state = KVM_MP_STATE_HALTED));
	SET_GET_FACT("vcpu.mp-state.uninitialized", "KVM_SET_MP_STATE(UNINITIALIZED) without an in-kernel irqchip", KVM_SET_MP_STATE, KVM_GET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state, (mp.mp_state = KVM_MP_STATE_UNINITIALIZED));
	SET_GET_FACT("vcpu.mp-state.init-received", "KVM_SET_MP_STATE(INIT_RECEIVED) without an in-kernel irqchip", KVM_SET_MP_STATE, KVM_GET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state, (mp.mp_state = KVM_MP_STATE_INIT_RECEIVED));
	SET_GET_FACT("vcpu.mp-state.sipi-received", "KVM_SET_MP_STATE(SIPI_RECEIVED) without an in-kernel irqchip", KVM_SET_MP_STATE, KVM_GET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state, (mp.mp_state = KVM_MP_STATE_SIPI_RECEIVED));
	SET_GET_FACT("vcpu.mp-state.stopped", "KVM_SET_MP_STATE(STOPPED, an s390 state): EINVAL", KVM_SET_MP_STATE, KVM_GET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state, (mp.mp_state = KVM_MP_STATE_STOPPED));
	SET_GET_FACT("vcpu.mp-state.bad", "KVM_SET_MP_STATE(100): EINVAL", KVM_SET_MP_STATE, KVM_GET_MP_STATE, "kvm_mp_state", &mp, emit_mp_state, (mp.mp_state = 100));
	SET_GET_FACT("vcpu.debugregs.set", "KVM_SET_DEBUGREGS of DR0–3, DR6, DR7", KVM_SET_DEBUGREGS, KVM_GET_DEBUGREGS, "kvm_debugregs", &dbg, emit_debugregs,
		(dbg.db[0] = 0x1000, dbg.db[1] = 0x2000, dbg.db[2] = 0xffffffff80000000ULL, dbg.db[3] = 0x4000, dbg.dr6 = 0xffff4ff0, dbg.dr7 = 0x401));
	SET_GET_FACT("vcpu.debugregs.bad-flags", "KVM_SET_DEBUGREGS with flags = 1: EINVAL", KVM_SET_DEBUGREGS, KVM_GET_DEBUGREGS, "kvm_debugregs", &dbg, emit_debugregs, (dbg.flags = 1));
	SET_GET_FACT("vcpu.debugregs.dr6-high", "KVM_SET_DEBUGREGS with DR6 bit 32: EINVAL", KVM_SET_DEBUGREGS, KVM_GET_DEBUGREGS, "kvm_debugregs", &dbg, emit_debugregs, (dbg.dr6 = 0x1ffff0ff0ULL));
	SET_GET_FACT("vcpu.debugregs.dr7-high", "KVM_SET_DEBUGREGS with DR7 bit 32: EINVAL", KVM_SET_DEBUGREGS, KVM_GET_DEBUGREGS, "kvm_debugregs", &dbg, emit_debugregs, (dbg.dr7 = 0x100000400ULL));
	SET_GET_FACT("vcpu.xsave.xcomp-bv", "KVM_SET_XSAVE with XCOMP_BV set (the compacted format): EINVAL", KVM_SET_XSAVE, KVM_GET_XSAVE, "kvm_xsave", &xsave, emit_xsave, (xsave.region[128] = 0x3, xsave.region[130] = 0x3, xsave.region[131] = 0x80000000));
	SET_GET_FACT("vcpu.xsave.header-reserved", "KVM_SET_XSAVE with a reserved XSAVE header byte set: EINVAL", KVM_SET_XSAVE, KVM_GET_XSAVE, "kvm_xsave", &xsave, emit_xsave, (xsave.region[128] = 0x3, xsave.region[140] = 0x1));
	SET_GET_FACT("vcpu.xsave.mxcsr-reserved-x87-only", "KVM_SET_XSAVE with XSTATE_BV = x87 and a reserved MXCSR bit: EINVAL", KVM_SET_XSAVE, KVM_GET_XSAVE, "kvm_xsave", &xsave, emit_xsave, (xsave.region[128] = 0x1, xsave.region[6] = 0xffffffff));
	SET_GET_FACT("vcpu.xsave.x87-only", "KVM_SET_XSAVE with XSTATE_BV = x87 and new x87 state", KVM_SET_XSAVE, KVM_GET_XSAVE, "kvm_xsave", &xsave, emit_xsave, (xsave.region[128] = 0x1, xsave.region[0] = 0x27f, xsave.region[8] = 0x11111111));
	SET_GET_FACT("vcpu.xsave.xstate-bv-unsupported", "KVM_SET_XSAVE with an XSTATE_BV bit the guest cannot have: EINVAL", KVM_SET_XSAVE, KVM_GET_XSAVE, "kvm_xsave", &xsave, emit_xsave, (xsave.region[128] = 0x4, xsave.region[129] = 0x1));
}

/* KVM_SET_CPUID2 of everything KVM_GET_SUPPORTED_CPUID reports, on the current fact's vcpu0. */
static void set_supported_cpuid(void) {
	memset(&cpuid, 0, sizeof cpuid);
	cpuid.h.nent = 256;
	quiet_ioctl("sys", KVM_GET_SUPPORTED_CPUID, &cpuid);
	IO_PTR("vcpu0", KVM_SET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2, NULL);
}

/* A VM and vCPU 0 with the supported CPUID, then KVM_SET_XCRS of XCR0 = `xcr0` (and KVM_GET_XCRS after it). */
static void supported_cpuid_then_xcr0(uint64_t xcr0, int get) {
	VM();
	VCPU0();
	set_supported_cpuid();
	memset(&xcrs, 0, sizeof xcrs);
	xcrs.nr_xcrs = 1;
	xcrs.xcrs[0].value = xcr0;
	IO_PTR("vcpu0", KVM_SET_XCRS, "kvm_xcrs", &xcrs, emit_xcrs, NULL);
	if (!get)
		return;
	memset(&xcrs, 0, sizeof xcrs);
	IO_PTR("vcpu0", KVM_GET_XCRS, "kvm_xcrs", &xcrs, NULL, emit_xcrs);
}

/* KVM_SET_MSRS of `n` entries, then KVM_GET_MSRS of the same indices. */
static void set_msrs_fact(const char *id, const char *title, const uint32_t *idx, const uint64_t *val, unsigned n) {
	FACT(id, title) {
		VM();
		VCPU0();
		memset(&msrs, 0, sizeof msrs);
		msrs.h.nmsrs = n;
		for (unsigned i = 0; i < n; i++) msrs.e[i] = (struct kvm_msr_entry){ .index = idx[i], .data = val[i] };
		IO_PTR("vcpu0", KVM_SET_MSRS, "kvm_msrs", &msrs, emit_msrs, NULL);
		memset(&msrs, 0, sizeof msrs);
		msrs.h.nmsrs = n;
		for (unsigned i = 0; i < n; i++) msrs.e[i].index = idx[i];
		IO_PTR("vcpu0", KVM_GET_MSRS, "kvm_msrs", &msrs, emit_msrs, emit_msrs);
	}
}

static void msr_facts(void) {
	static const uint32_t sysenter[] = { 0x174, 0x175, 0x176 };
	static const uint64_t sysenter_v[] = { 0x10, 0xffffffff81000000ULL, 0x12345678 };
	set_msrs_fact("vcpu.msrs.set-sysenter", "KVM_SET_MSRS of SYSENTER_CS/ESP/EIP (3 written), then read back", sysenter, sysenter_v, 3);
	static const uint32_t stop[] = { 0x174, 0x12345678, 0x175 };
	static const uint64_t stop_v[] = { 0x10, 1, 0x20 };
	set_msrs_fact("vcpu.msrs.set-stops-at-unknown", "KVM_SET_MSRS stops at an MSR that does not exist (1 written)", stop, stop_v, 3);
	static const uint32_t pat[] = { 0x277 };
	static const uint64_t pat_ok[] = { 0x0606060606060606ULL };
	static const uint64_t pat_bad[] = { 0x0202020202020202ULL };
	set_msrs_fact("vcpu.msrs.set-pat", "KVM_SET_MSRS of PAT = all write-back", pat, pat_ok, 1);
	set_msrs_fact("vcpu.msrs.set-pat-reserved-type", "KVM_SET_MSRS of PAT with memory type 2 (reserved): not written", pat, pat_bad, 1);
	static const uint32_t efer[] = { 0xc0000080 };
	static const uint64_t efer_lme[] = { 0x100 };
	set_msrs_fact("vcpu.msrs.set-efer-lme-without-cpuid", "KVM_SET_MSRS of EFER.LME with no guest CPUID", efer, efer_lme, 1);
	static const uint32_t apic[] = { 0x1b };
	static const uint64_t apic_v[] = { 0xfee00800 };
	set_msrs_fact("vcpu.msrs.set-apic-base-not-bsp", "KVM_SET_MSRS of APIC_BASE without the BSP bit", apic, apic_v, 1);
	static const uint32_t mtrr[] = { 0x2ff };
	static const uint64_t mtrr_v[] = { 0xc06 };
	set_msrs_fact("vcpu.msrs.set-mtrr-def-type", "KVM_SET_MSRS of MTRRdefType = enabled, write-back", mtrr, mtrr_v, 1);
	static const uint32_t misc[] = { 0x1a0 };
	static const uint64_t misc_v[] = { 0x1801 };
	set_msrs_fact("vcpu.msrs.set-misc-enable", "KVM_SET_MSRS of MISC_ENABLE with fast-strings", misc, misc_v, 1);
	static const uint32_t lstar[] = { 0xc0000082 };
	static const uint64_t lstar_nc[] = { 0x0000800000000000ULL };
	set_msrs_fact("vcpu.msrs.set-lstar-non-canonical", "KVM_SET_MSRS of a non-canonical LSTAR", lstar, lstar_nc, 1);
	FACT("vcpu.msrs.get-too-many", "KVM_GET_MSRS on a vCPU with nmsrs = 256 (MAX_IO_MSRS): E2BIG") {
		VM();
		VCPU0();
		memset(&msrs, 0, sizeof msrs);
		msrs.h.nmsrs = 256;
		IO_PTR("vcpu0", KVM_GET_MSRS, "kvm_msrs", &msrs, emit_msrs, NULL);
	}
	FACT("vcpu.msrs.get-none", "KVM_GET_MSRS on a vCPU with nmsrs = 0: 0") {
		VM();
		VCPU0();
		memset(&msrs, 0, sizeof msrs);
		IO_PTR("vcpu0", KVM_GET_MSRS, "kvm_msrs", &msrs, emit_msrs, emit_msrs);
	}
}

static void cpuid_facts(void) {
	static const struct kvm_cpuid_entry2 two[] = {
		{ .function = 0, .eax = 1, .ebx = 0x756e6547, .ecx = 0x6c65746e, .edx = 0x49656e69 },
		{ .function = 1, .eax = 0x306a9, .ebx = 0, .ecx = 0x80000000, .edx = 0x0781abfd },
	};
	FACT("vcpu.cpuid2.set-get", "KVM_SET_CPUID2 of two entries, then KVM_GET_CPUID2") {
		VM();
		VCPU0();
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 2;
		memcpy(cpuid.e, two, sizeof two);
		IO_PTR("vcpu0", KVM_SET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2, NULL);
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 8;
		IO_PTR("vcpu0", KVM_GET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2_in, emit_cpuid2);
	}
	FACT("vcpu.cpuid2.get-too-small", "KVM_GET_CPUID2 with room for 1 of 2 entries: E2BIG") {
		VM();
		VCPU0();
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 2;
		memcpy(cpuid.e, two, sizeof two);
		IO_PTR("vcpu0", KVM_SET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2, NULL);
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 1;
		IO_PTR_ALWAYS("vcpu0", KVM_GET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2_in, emit_cpuid2_count);
	}
	FACT("vcpu.cpuid2.set-too-many", "KVM_SET_CPUID2 with nent = 257 (above KVM_MAX_CPUID_ENTRIES): E2BIG") {
		VM();
		VCPU0();
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 257;
		IO_PTR("vcpu0", KVM_SET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2_in, NULL);
	}
	FACT("vcpu.cpuid2.set-empty", "KVM_SET_CPUID2 with no entries") {
		VM();
		VCPU0();
		memset(&cpuid, 0, sizeof cpuid);
		IO_PTR("vcpu0", KVM_SET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2, NULL);
	}
	FACT("vcpu.cpuid2.set-supported", "KVM_SET_CPUID2 of everything KVM_GET_SUPPORTED_CPUID reports") {
		VM();
		VCPU0();
		memset(&cpuid, 0, sizeof cpuid);
		cpuid.h.nent = 256;
		quiet_ioctl("sys", KVM_GET_SUPPORTED_CPUID, &cpuid);
		IO_PTR("vcpu0", KVM_SET_CPUID2, "kvm_cpuid2", &cpuid, emit_cpuid2, NULL);
	}
	FACT("vcpu.xcrs.sse-with-cpuid", "KVM_SET_CPUID2 (the supported CPUID), then KVM_SET_XCRS of XCR0 = 3") {
		supported_cpuid_then_xcr0(3, 1);
	}
	FACT("vcpu.xcrs.avx-with-cpuid", "KVM_SET_CPUID2 (the supported CPUID), then KVM_SET_XCRS of XCR0 = 7 (x87|SSE|AVX)") {
		supported_cpuid_then_xcr0(7, 1);
	}
	FACT("vcpu.xcrs.avx-without-sse", "KVM_SET_CPUID2 (the supported CPUID), then KVM_SET_XCRS of XCR0 = 5 (AVX without SSE): EINVAL") {
		supported_cpuid_then_xcr0(5, 0);
	}
	FACT("vcpu.xsave.avx-with-cpuid", "KVM_SET_CPUID2 (the supported CPUID), KVM_SET_XSAVE with XSTATE_BV = x87|SSE|AVX and YMM0's upper half, KVM_GET_XSAVE") {
		VM();
		VCPU0();
		set_supported_cpuid();
		memset(&xsave, 0, sizeof xsave);
		quiet_ioctl("vcpu0", KVM_GET_XSAVE, &xsave);
		xsave.region[128] = 7;
		xsave.region[144] = 0x12345678; /* byte 576: the AVX component */
		xsave.region[151] = 0x9abcdef0;
		IO_PTR("vcpu0", KVM_SET_XSAVE, "kvm_xsave", &xsave, emit_xsave, NULL);
		memset(&xsave, 0, sizeof xsave);
		IO_PTR("vcpu0", KVM_GET_XSAVE, "kvm_xsave", &xsave, NULL, emit_xsave);
	}
}

static void misc_facts(void) {
	FACT("vcpu.tsc-khz.set-zero", "KVM_SET_TSC_KHZ(0)") {
		VM();
		VCPU0();
		IO_INT("vcpu0", KVM_SET_TSC_KHZ, 0);
	}
	FACT("vcpu.tsc-khz.set-1ghz", "KVM_SET_TSC_KHZ(1000000)") {
		VM();
		VCPU0();
		IO_INT("vcpu0", KVM_SET_TSC_KHZ, 1000000);
	}
	FACT("vcpu.signal-mask.null", "KVM_SET_SIGNAL_MASK(NULL): no mask") {
		VM();
		VCPU0();
		IO_NULL("vcpu0", KVM_SET_SIGNAL_MASK, "kvm_signal_mask");
	}
	FACT("vcpu.kvmclock-ctrl", "KVM_KVMCLOCK_CTRL without a guest kvmclock: EINVAL") {
		VM();
		VCPU0();
		IO_INT("vcpu0", KVM_KVMCLOCK_CTRL, 0);
	}
	static const struct { const char *id; const char *title; uint64_t cap; } mce[] = {
		{ "vcpu.setup-mce.ten-banks", "KVM_X86_SETUP_MCE with 10 banks and MCG_CTL_P", 10 | (1u << 8) },
		{ "vcpu.setup-mce.no-banks", "KVM_X86_SETUP_MCE with 0 banks: EINVAL", 0 },
		{ "vcpu.setup-mce.33-banks", "KVM_X86_SETUP_MCE with 33 banks (above KVM_MAX_MCE_BANKS): EINVAL", 33 },
		{ "vcpu.setup-mce.unsupported-bit", "KVM_X86_SETUP_MCE with MCG_CAP bit 11 (MCG_TES_P, not supported)", 10 | (1u << 11) },
	};
	for (size_t i = 0; i < sizeof mce / sizeof mce[0]; i++) {
		FACT(mce[i].id, mce[i].title) {
			VM();
			VCPU0();
			uint64_t cap = mce[i].cap;
			IO_PTR("vcpu0", KVM_X86_SETUP_MCE, "__u64", &cap, emit_u64p, NULL);
		}
	}
	FACT("vcpu.get-stats-fd", "KVM_GET_STATS_FD on a vCPU fd: a new fd") {
		VM();
		VCPU0();
		IO_BIND("vcpu0", KVM_GET_STATS_FD, 0, "stats");
	}
	FACT("vcpu.guest-debug.singlestep", "KVM_SET_GUEST_DEBUG(ENABLE | SINGLESTEP)") {
		VM();
		VCPU0();
		struct kvm_guest_debug g = { .control = KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_SINGLESTEP };
		IO_PTR("vcpu0", KVM_SET_GUEST_DEBUG, "kvm_guest_debug", &g, emit_guest_debug, NULL);
	}
	FACT("vcpu.guest-debug.bad-control", "KVM_SET_GUEST_DEBUG with an unknown control bit: EINVAL") {
		VM();
		VCPU0();
		struct kvm_guest_debug g = { .control = KVM_GUESTDBG_ENABLE | (1u << 30) };
		IO_PTR("vcpu0", KVM_SET_GUEST_DEBUG, "kvm_guest_debug", &g, emit_guest_debug, NULL);
	}
	FACT("vcpu.translate.real-mode", "KVM_TRANSLATE of linear 0x12345 in real mode") {
		VM();
		VCPU0();
		struct kvm_translation t = { .linear_address = 0x12345 };
		IO_PTR("vcpu0", KVM_TRANSLATE, "kvm_translation", &t, emit_translation, emit_translation);
	}
	FACT("vcpu.translate.above-4g", "KVM_TRANSLATE of linear 0x123456789000 in real mode: the address as it is") {
		VM();
		VCPU0();
		struct kvm_translation t = { .linear_address = 0x123456789000ULL };
		IO_PTR("vcpu0", KVM_TRANSLATE, "kvm_translation", &t, emit_translation, emit_translation);
	}
	FACT("vcpu.translate.all-ones", "KVM_TRANSLATE of linear 2^64 - 1 without paging: INVALID_GPA, not valid") {
		VM();
		VCPU0();
		struct kvm_translation t = { .linear_address = ~0ULL, .valid = 1, .usermode = 1 };
		IO_PTR("vcpu0", KVM_TRANSLATE, "kvm_translation", &t, emit_translation, emit_translation);
	}
	FACT("vcpu.translate.protected-mode", "KVM_TRANSLATE of linear 0xfffff000 with CR0.PE (KVM_SET_SREGS), no paging") {
		VM();
		VCPU0();
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &sregs);
		sregs.cr0 |= 1;
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &sregs, emit_sregs, NULL);
		struct kvm_translation t = { .linear_address = 0xfffff000ULL, .physical_address = 0x1234 };
		IO_PTR("vcpu0", KVM_TRANSLATE, "kvm_translation", &t, emit_translation, emit_translation);
	}
	/* KVM_CAP_VCPU_ATTRIBUTES: the TSC offset attribute (x86.c kvm_vcpu_ioctl_device_attr). */
	FACT("vcpu.attr.has-tsc-offset", "KVM_HAS_DEVICE_ATTR(KVM_VCPU_TSC_CTRL, KVM_VCPU_TSC_OFFSET) on a vCPU fd") {
		VM();
		VCPU0();
		struct kvm_device_attr a = { .group = 0, .attr = 0 };
		IO_PTR("vcpu0", KVM_HAS_DEVICE_ATTR, "kvm_device_attr", &a, emit_device_attr, NULL);
	}
	FACT("vcpu.attr.has-unknown-attr", "KVM_HAS_DEVICE_ATTR(KVM_VCPU_TSC_CTRL, 1) on a vCPU fd: ENXIO") {
		VM();
		VCPU0();
		struct kvm_device_attr a = { .group = 0, .attr = 1 };
		IO_PTR("vcpu0", KVM_HAS_DEVICE_ATTR, "kvm_device_attr", &a, emit_device_attr, NULL);
	}
	FACT("vcpu.attr.has-unknown-group", "KVM_HAS_DEVICE_ATTR(group 1) on a vCPU fd: ENXIO") {
		VM();
		VCPU0();
		struct kvm_device_attr a = { .group = 1, .attr = 0 };
		IO_PTR("vcpu0", KVM_HAS_DEVICE_ATTR, "kvm_device_attr", &a, emit_device_attr, NULL);
	}
	FACT("vcpu.attr.tsc-offset.set-get", "KVM_SET_DEVICE_ATTR of the TSC offset (flags 7, ignored), then KVM_GET_DEVICE_ATTR reads it back") {
		VM();
		VCPU0();
		uint8_t *m = step_mmap("m0", 4096);
		uint8_t before[16] = { 0 };
		uint64_t offset = 0x123456789abcULL;
		memcpy(before, &offset, 8);
		step_poke("m0", 0, &offset, 8);
		struct kvm_device_attr set = { .flags = 7, .group = 0, .attr = 0, .addr = (uint64_t)(uintptr_t)m };
		IO_PTR("vcpu0", KVM_SET_DEVICE_ATTR, "kvm_device_attr", &set, emit_device_attr, NULL);
		struct kvm_device_attr get = { .group = 0, .attr = 0, .addr = (uint64_t)(uintptr_t)(m + 8) };
		IO_PTR("vcpu0", KVM_GET_DEVICE_ATTR, "kvm_device_attr", &get, emit_device_attr, NULL);
		step_mem("m0", before, sizeof before);
	}
	FACT("vcpu.attr.tsc-offset.get-null", "KVM_GET_DEVICE_ATTR of the TSC offset with addr 0: EFAULT") {
		VM();
		VCPU0();
		struct kvm_device_attr a = { .group = 0, .attr = 0, .addr = 0 };
		IO_PTR("vcpu0", KVM_GET_DEVICE_ATTR, "kvm_device_attr", &a, emit_device_attr, NULL);
	}
	FACT("vcpu.attr.tsc-offset.set-null", "KVM_SET_DEVICE_ATTR of the TSC offset with addr 0: EFAULT") {
		VM();
		VCPU0();
		struct kvm_device_attr a = { .group = 0, .attr = 0, .addr = 0 };
		IO_PTR("vcpu0", KVM_SET_DEVICE_ATTR, "kvm_device_attr", &a, emit_device_attr, NULL);
	}
	FACT("vcpu.get-xsave2", "KVM_GET_XSAVE2 with the size KVM_CHECK_EXTENSION(KVM_CAP_XSAVE2) gives") {
		VM();
		VCPU0();
		memset(&xsave, 0, sizeof xsave);
		IO_PTR("vcpu0", KVM_GET_XSAVE2, "kvm_xsave", &xsave, NULL, emit_xsave);
	}
	FACT("vcpu.lapic.without-irqchip", "KVM_GET_LAPIC without an in-kernel irqchip") {
		VM();
		VCPU0();
		memset(&lapic, 0, sizeof lapic);
		IO_PTR("vcpu0", KVM_GET_LAPIC, "kvm_lapic_state", &lapic, NULL, emit_lapic);
	}
	FACT("vcpu.vapic-addr.without-irqchip", "KVM_SET_VAPIC_ADDR without an in-kernel irqchip") {
		VM();
		VCPU0();
		struct kvm_vapic_addr v = { .vapic_addr = 0xfee00000 };
		IO_PTR("vcpu0", KVM_SET_VAPIC_ADDR, "kvm_vapic_addr", &v, NULL, NULL);
	}
	FACT("vcpu.interrupt.user-space-pic", "KVM_INTERRUPT(0x20) without an in-kernel irqchip") {
		VM();
		VCPU0();
		struct kvm_interrupt i = { .irq = 0x20 };
		IO_PTR("vcpu0", KVM_INTERRUPT, "kvm_interrupt", &i, emit_interrupt, NULL);
	}
	FACT("vcpu.interrupt.bad-vector", "KVM_INTERRUPT(256) without an in-kernel irqchip: EINVAL") {
		VM();
		VCPU0();
		struct kvm_interrupt i = { .irq = 256 };
		IO_PTR("vcpu0", KVM_INTERRUPT, "kvm_interrupt", &i, emit_interrupt, NULL);
	}
	FACT("vcpu.interrupt.with-irqchip", "KVM_INTERRUPT with an in-kernel irqchip: ENXIO") {
		VM();
		IO_INT("vm", KVM_CREATE_IRQCHIP, 0);
		VCPU0();
		struct kvm_interrupt i = { .irq = 0x20 };
		IO_PTR("vcpu0", KVM_INTERRUPT, "kvm_interrupt", &i, emit_interrupt, NULL);
	}
	FACT("vcpu.nmi", "KVM_NMI") {
		VM();
		VCPU0();
		IO_INT("vcpu0", KVM_NMI, 0);
	}
	FACT("vcpu.smi", "KVM_SMI") {
		VM();
		VCPU0();
		IO_INT("vcpu0", KVM_SMI, 0);
	}
	FACT("vcpu.unknown-ioctl", "An ioctl number a vCPU fd does not know (_IO(KVMIO, 0xff)): EINVAL") {
		VM();
		VCPU0();
		IO_INT("vcpu0", _IO(KVMIO, 0xff), 0);
	}
	FACT("vcpu.wrong-ioc-type", "KVM_RUN's number with _IOC_TYPE 0xAF: EINVAL") {
		VM();
		VCPU0();
		IO_INT("vcpu0", _IO(0xAF, 0x80), 0);
	}
	FACT("vcpu.vm-ioctl", "A VM ioctl (KVM_CREATE_VCPU) on a vCPU fd: EINVAL") {
		VM();
		VCPU0();
		IO_INT("vcpu0", KVM_CREATE_VCPU, 1);
	}
	FACT("vcpu.system-ioctl", "A /dev/kvm ioctl (KVM_GET_API_VERSION) on a vCPU fd: EINVAL") {
		VM();
		VCPU0();
		IO_INT("vcpu0", KVM_GET_API_VERSION, 0);
	}
	FACT("vcpu.check-extension", "KVM_CHECK_EXTENSION(KVM_CAP_USER_MEMORY) on a vCPU fd") {
		VM();
		VCPU0();
		IO_INT("vcpu0", KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY);
	}
}

void record_vcpu(void) {
	reset_facts();
	round_trip_facts();
	regs_facts();
	sregs_facts();
	state_facts();
	msr_facts();
	cpuid_facts();
	misc_facts();
	record_vcpu_nested();
}
