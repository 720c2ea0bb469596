/*
 * Group "xsave": what a VMM's process may give its guests and what KVM then offers it — the XSAVE permission
 * arch_prctl()s (ARCH_GET_XCOMP_SUPP, ARCH_GET/REQ_XCOMP_GUEST_PERM, arch/x86/kernel/fpu/xstate.c
 * fpu_xstate_prctl), KVM_CAP_XSAVE2 before and after the request, KVM_SET_CPUID2 giving a guest AMX tile data
 * without the permission (kvm_check_cpuid → fpu_enable_guest_xfd_features), KVM_GET_XSAVE2 — and the x87 control
 * state a guest changes (FNSTCW, FNINIT, FNSTSW) as KVM_GET_FPU shows it.
 *
 * The permissions are the process's and the first vCPU locks them, so the group runs in a child process of its
 * own that has created no vCPU yet: the facts are in order, and the first one asks before any vCPU exists.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "groups.h"
#include "guestvm.h"

#define ARCH_GET_XCOMP_SUPP 0x1021
#define ARCH_GET_XCOMP_GUEST_PERM 0x1024
#define ARCH_REQ_XCOMP_GUEST_PERM 0x1025

/* KVM_GET_XSAVE2's buffer: the largest answer of KVM_CAP_XSAVE2 (AMX) with room to spare. */
static uint8_t xsave2[16384];

static uint8_t image[GUEST_MEM];

/* A real-mode guest: fnstcw [0x500]; fninit; fnstcw [0x502]; fnstsw [0x504]; hlt (0x504 starts as 0xffff). */
static void x87_guest(void) {
	memset(image, 0, sizeof image);
	const uint8_t code[] = { 0xd9, 0x3e, 0x00, 0x05, 0xdb, 0xe3, 0xd9, 0x3e, 0x02, 0x05, 0xdd, 0x3e, 0x04, 0x05, 0xf4 };
	memcpy(image + 0x1000, code, sizeof code);
	image[0x504] = 0xff;
	image[0x505] = 0xff;
	struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000 };
	guest_setup(image, 0, &r);
}

/* Run it to its HLT; what it stored; KVM_GET_FPU and KVM_GET_XSAVE. */
static void x87_run(void) {
	guest_run();
	step_mem("m0", image, GUEST_MEM);
	static struct kvm_fpu fpu;
	IO_PTR("vcpu0", KVM_GET_FPU, "kvm_fpu", &fpu, NULL, emit_fpu);
	static struct kvm_xsave xs;
	IO_PTR("vcpu0", KVM_GET_XSAVE, "kvm_xsave", &xs, NULL, emit_xsave);
}

static void facts(void) {
	FACT("xsave.guest-perm", "The XSAVE permission arch_prctl()s of a process with no vCPU, KVM_CAP_XSAVE2 before and after ARCH_REQ_XCOMP_GUEST_PERM(XTILE_DATA)") {
		step_arch_prctl("ARCH_GET_XCOMP_SUPP", ARCH_GET_XCOMP_SUPP, 0, 1);
		step_arch_prctl("ARCH_GET_XCOMP_GUEST_PERM", ARCH_GET_XCOMP_GUEST_PERM, 0, 1);
		IO_INT("sys", KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
		step_arch_prctl("ARCH_REQ_XCOMP_GUEST_PERM", ARCH_REQ_XCOMP_GUEST_PERM, 17, 0); /* XTILE_CFG: not dynamic */
		step_arch_prctl("ARCH_REQ_XCOMP_GUEST_PERM", ARCH_REQ_XCOMP_GUEST_PERM, 18, 0); /* XTILE_DATA */
		step_arch_prctl("ARCH_REQ_XCOMP_GUEST_PERM", ARCH_REQ_XCOMP_GUEST_PERM, 64, 0); /* beyond XFEATURE_MAX */
		step_arch_prctl("ARCH_REQ_XCOMP_GUEST_PERM", 0x1026, 18, 0);                    /* no such option */
		step_arch_prctl("ARCH_GET_XCOMP_GUEST_PERM", ARCH_GET_XCOMP_GUEST_PERM, 0, 1);
		IO_INT("sys", KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	}
	FACT("xsave.cpuid-xtiledata", "KVM_SET_CPUID2 whose leaf 0xD gives the guest XTILE_DATA without the permission; KVM_GET_XSAVE and KVM_GET_XSAVE2 after it") {
		/* One entry: leaf 0xD.0 offering x87, SSE, AVX, XTILECFG and XTILEDATA. */
		static struct cpuid_buf c;
		memset(&c, 0, sizeof c);
		c.h.nent = 1;
		c.e[0] = (struct kvm_cpuid_entry2){ .function = 0xd, .index = 0, .flags = KVM_CPUID_FLAG_SIGNIFCANT_INDEX, .eax = 0x60007, .ebx = 11008, .ecx = 11008 };
		IO_BIND("sys", KVM_CREATE_VM, 0, "vm");
		IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
		IO_PTR("vcpu0", KVM_SET_CPUID2, "kvm_cpuid2", &c, emit_cpuid2, NULL);
		step_arch_prctl("ARCH_REQ_XCOMP_GUEST_PERM", ARCH_REQ_XCOMP_GUEST_PERM, 18, 0); /* after a vCPU */
		static struct kvm_xsave xs;
		IO_PTR("vcpu0", KVM_GET_XSAVE, "kvm_xsave", &xs, NULL, NULL);
		IO_PTR("vcpu0", KVM_GET_XSAVE2, "kvm_xsave", xsave2, NULL, NULL);
	}
	FACT("xsave.x87.set-fpu", "KVM_SET_FPU of new control words on a new vCPU (x87 not in XSTATE_BV), then the guest's FNSTCW, FNINIT, FNSTCW, FNSTSW; KVM_GET_FPU and KVM_GET_XSAVE") {
		x87_guest();
		struct kvm_fpu fpu;
		quiet_ioctl("vcpu0", KVM_GET_FPU, &fpu);
		fpu.fcw = 0x27f;
		fpu.fsw = 0x0800;
		fpu.ftwx = 0x80;
		IO_PTR("vcpu0", KVM_SET_FPU, "kvm_fpu", &fpu, emit_fpu, NULL);
		x87_run();
	}
	FACT("xsave.x87.set-xsave", "KVM_SET_XSAVE of new control words with x87 in XSTATE_BV, then the guest's FNSTCW, FNINIT, FNSTCW, FNSTSW; KVM_GET_FPU and KVM_GET_XSAVE") {
		x87_guest();
		static struct kvm_xsave xs;
		quiet_ioctl("vcpu0", KVM_GET_XSAVE, &xs);
		xs.region[0] = 0x0800027f; /* FCW 0x27f, FSW 0x800 (TOP 1) */
		xs.region[1] = 0x80;       /* abridged FTW: ST7 (the register TOP - 1 names) valid */
		xs.region[128] |= 1;       /* XSTATE_BV: x87 */
		IO_PTR("vcpu0", KVM_SET_XSAVE, "kvm_xsave", &xs, emit_xsave, NULL);
		x87_run();
	}
}

void record_xsave(void) {
	fflush(NULL);
	pid_t pid = fork();
	if (pid < 0) {
		perror("fork");
		exit(2);
	}
	if (pid == 0) {
		facts();
		fflush(NULL);
		_exit(0);
	}
	int status;
	if (waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
		fprintf(stderr, "recorder: the xsave group's process failed\n");
		exit(2);
	}
}
