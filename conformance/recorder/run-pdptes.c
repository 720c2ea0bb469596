/*
 * Part of group "run": the PAE PDPTEs KVM loads (arch/x86/kvm/x86.c load_pdptrs, pdptr_rsvd_bits): a guest MOV CR0
 * that starts PAE paging with a reserved bit in a present PDPTE (kvm_set_cr0 refuses it: #GP through the IVT), and
 * KVM_SET_SREGS into PAE paging with such a PDPTE (__set_sregs_common ignores the failed load: KVM_GET_SREGS2 shows
 * the PDPTRs it had).
 */
#include <string.h>

#include "groups.h"
#include "guestvm.h"

static uint8_t image[GUEST_MEM];

#define PDPT 0x5000

/* The guest image: `code` at 0x1000 (IP), SP 0xf000, the #GP handler (IVT 13) at 0x3000 `out 0x13; hlt`, PDPTE 0
 * at 0x5000 = `pdpte0`. */
static void setup(const uint8_t *code, size_t n, uint64_t pdpte0) {
	memset(image, 0, sizeof image);
	memcpy(image + 0x1000, code, n);
	const uint8_t gp[] = { 0xe6, 0x13, 0xf4 };
	memcpy(image + 0x3000, gp, sizeof gp);
	image[13 * 4 + 1] = 0x30;
	memcpy(image + PDPT, &pdpte0, sizeof pdpte0);
	struct guest_regs r = { .rip = 0x1000, .rsp = 0xf000 };
	guest_setup(image, 0, &r);
}

#define CODE(...) ((const uint8_t[]){ __VA_ARGS__ }), sizeof((const uint8_t[]){ __VA_ARGS__ })

/* mov eax, 0x20; mov cr4, eax; mov eax, 0x5000; mov cr3, eax; mov eax, 0x80000011; mov cr0, eax; out 0x10; hlt */
#define PAE_PAGING_ON CODE(0x66, 0xb8, 0x20, 0, 0, 0, 0x0f, 0x22, 0xe0, 0x66, 0xb8, 0x00, 0x50, 0, 0, 0x0f, 0x22, 0xd8, \
	0x66, 0xb8, 0x11, 0, 0, 0x80, 0x0f, 0x22, 0xc0, 0xe6, 0x10, 0xf4)

static void get_sregs2(void) {
	struct kvm_sregs2 s;
	memset(&s, 0, sizeof s);
	IO_PTR("vcpu0", KVM_GET_SREGS2, "kvm_sregs2", &s, NULL, emit_sregs2);
}

void record_run_pdptes(void) {
	FACT("run.pdpte.mov-cr0-reserved-bit", "MOV CR0 starting PAE paging with bit 5 set in a present PDPTE: #GP through the IVT, paging off") {
		setup(PAE_PAGING_ON, 0x6021);
		guest_run();
		guest_get_regs();
		struct kvm_sregs s;
		memset(&s, 0, sizeof s);
		IO_PTR("vcpu0", KVM_GET_SREGS, "kvm_sregs", &s, NULL, emit_sregs_ctl);
	}
	FACT("run.pdpte.mov-cr0-above-maxphyaddr", "MOV CR0 starting PAE paging with bit 52 set in a present PDPTE: #GP through the IVT") {
		setup(PAE_PAGING_ON, 0x0010000000006001ull);
		guest_run();
		guest_get_regs();
	}
	FACT("run.pdpte.set-sregs-reserved-bit", "KVM_SET_SREGS into PAE paging: the PDPTEs loaded; again with bit 6 set in a present one: 0, the PDPTRs unchanged") {
		setup(CODE(0xf4), 0x6001);
		struct kvm_sregs s;
		quiet_ioctl("vcpu0", KVM_GET_SREGS, &s);
		s.cr0 |= 0x80000001u;
		s.cr4 = 0x20;
		s.cr3 = PDPT;
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &s, emit_sregs, NULL);
		get_sregs2();
		const uint64_t bad[2] = { 0x7001, 0x8041 };
		step_poke("m0", PDPT, bad, sizeof bad);
		IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &s, emit_sregs, NULL);
		get_sregs2();
	}
}
