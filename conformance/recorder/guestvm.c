#include "guestvm.h"

#include <string.h>

void (*guest_before_vcpu)(void);

static struct kvm_regs regs;
static struct kvm_sregs sregs;

static void seg(struct kvm_segment *s, uint16_t sel) {
	s->selector = sel;
	s->base = (uint64_t)sel << 4;
}

void guest_setup(const uint8_t *image, uint32_t slot_flags, const struct guest_regs *r) {
	IO_BIND("sys", KVM_CREATE_VM, 0, "vm");
	uint8_t *m = step_mmap("m0", GUEST_MEM);
	size_t last = GUEST_MEM;
	while (last > 0 && image[last - 1] == 0) last--;
	/* poke the non-zero part in runs, so the golden file stays small */
	for (size_t i = 0; i < last;) {
		if (image[i] == 0) {
			i++;
			continue;
		}
		size_t start = i, zeros = 0;
		while (i < last && zeros < 16) zeros = image[i++] == 0 ? zeros + 1 : 0;
		step_poke("m0", start, image + start, i - start - zeros);
	}
	struct kvm_userspace_memory_region mr = { .slot = 0, .flags = slot_flags, .guest_phys_addr = 0, .memory_size = GUEST_MEM, .userspace_addr = (uint64_t)(uintptr_t)m };
	IO_PTR("vm", KVM_SET_USER_MEMORY_REGION, "kvm_userspace_memory_region", &mr, emit_umr, NULL);
	if (guest_before_vcpu) guest_before_vcpu();
	IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0");
	step_map_run("vcpu0");
	quiet_ioctl("vcpu0", KVM_GET_SREGS, &sregs);
	seg(&sregs.cs, 0);
	seg(&sregs.ds, r->ds);
	seg(&sregs.es, r->es);
	seg(&sregs.ss, r->ss);
	IO_PTR("vcpu0", KVM_SET_SREGS, "kvm_sregs", &sregs, emit_sregs, NULL);
	memset(&regs, 0, sizeof regs);
	regs.rax = r->rax; regs.rbx = r->rbx; regs.rcx = r->rcx; regs.rdx = r->rdx;
	regs.rsi = r->rsi; regs.rdi = r->rdi; regs.rbp = r->rbp; regs.rsp = r->rsp;
	regs.rflags = r->rflags | 2;
	regs.rip = r->rip;
	IO_PTR("vcpu0", KVM_SET_REGS, "kvm_regs", &regs, emit_regs, NULL);
}

struct kvm_run *guest_kvm_run(void) { return run_of("vcpu0"); }

long guest_run(void) {
	struct io io = { .fd = "vcpu0", .name = "KVM_RUN", .nr = KVM_RUN, .kind = IO_ARG_INT, .value = 0,
		.ptr = guest_kvm_run(), .emit_out = (emit_fn)emit_run_exit, .out_key = "run", .out_on_error = 1 };
	return step_io(&io);
}

void guest_get_regs(void) {
	memset(&regs, 0, sizeof regs);
	IO_PTR("vcpu0", KVM_GET_REGS, "kvm_regs", &regs, NULL, emit_regs);
}

void guest_get_segments(void) {
	memset(&sregs, 0, sizeof sregs);
	IO_PTR("vcpu0", KVM_GET_SREGS, "kvm_sregs", &sregs, NULL, emit_sregs_segments);
}
