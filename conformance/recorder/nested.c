/*
 * Part of group "vcpu": KVM_GET_NESTED_STATE / KVM_SET_NESTED_STATE (arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl and
 * the vendor's nested_ops->get_state / set_state) on a vCPU that never entered VMX/SVM operation: the state
 * answered for a large buffer and for one too small, the state set back, and bad sizes, flags and formats.
 */
#include <string.h>

#include "groups.h"
#include "structs.h"

#define VM() IO_BIND("sys", KVM_CREATE_VM, 0, "vm")
#define VCPU0() IO_BIND("vm", KVM_CREATE_VCPU, 0, "vcpu0")

static struct kvm_nested_state st;

/* A "no VMXON" VMX header of `size` with `flags` and `format`. */
static void no_vmxon(uint32_t size, uint16_t flags, uint16_t format) {
	memset(&st, 0, sizeof st);
	st.size = size;
	st.flags = flags;
	st.format = format;
	st.hdr.vmx.vmxon_pa = ~0ull;
	st.hdr.vmx.vmcs12_pa = ~0ull;
}

static void set_fact(const char *id, const char *title, uint32_t size, uint16_t flags, uint16_t format) {
	FACT(id, title) {
		VM();
		VCPU0();
		no_vmxon(size, flags, format);
		IO_PTR("vcpu0", KVM_SET_NESTED_STATE, "kvm_nested_state", &st, emit_nested_state, NULL);
	}
}

void record_vcpu_nested(void) {
	FACT("vcpu.nested-state.get", "KVM_GET_NESTED_STATE with a buffer of 0x3000 bytes on a new vCPU") {
		VM();
		VCPU0();
		memset(&st, 0, sizeof st);
		st.size = 0x3000;
		IO_PTR_ALWAYS("vcpu0", KVM_GET_NESTED_STATE, "kvm_nested_state", &st, emit_nested_state, emit_nested_state);
	}
	FACT("vcpu.nested-state.get-small", "KVM_GET_NESTED_STATE with size 0: E2BIG and the needed size (VMX/SVM)") {
		VM();
		VCPU0();
		memset(&st, 0, sizeof st);
		IO_PTR_ALWAYS("vcpu0", KVM_GET_NESTED_STATE, "kvm_nested_state", &st, emit_nested_state, emit_nested_state);
	}
	FACT("vcpu.nested-state.get-null", "KVM_GET_NESTED_STATE with a NULL pointer") {
		VM();
		VCPU0();
		IO_NULL("vcpu0", KVM_GET_NESTED_STATE, "kvm_nested_state");
	}
	set_fact("vcpu.nested-state.set-vmx-no-vmxon", "KVM_SET_NESTED_STATE of a VMX header without VMXON (vmxon_pa = vmcs12_pa = -1, size 128)", 128, 0, 0);
	set_fact("vcpu.nested-state.set-svm-gif", "KVM_SET_NESTED_STATE of an SVM header with GIF set, size 128", 128, 0x100, 1);
	set_fact("vcpu.nested-state.set-size-small", "KVM_SET_NESTED_STATE with size 127: EINVAL", 127, 0, 0);
	set_fact("vcpu.nested-state.set-bad-flag", "KVM_SET_NESTED_STATE with flag 0x10 (no such flag): EINVAL", 128, 0x10, 0);
	set_fact("vcpu.nested-state.set-run-pending", "KVM_SET_NESTED_STATE with RUN_PENDING without GUEST_MODE: EINVAL", 128, 0x2, 0);
	set_fact("vcpu.nested-state.set-bad-format", "KVM_SET_NESTED_STATE with format 2: EINVAL", 128, 0, 2);
	FACT("vcpu.nested-state.set-null", "KVM_SET_NESTED_STATE with a NULL pointer") {
		VM();
		VCPU0();
		IO_NULL("vcpu0", KVM_SET_NESTED_STATE, "kvm_nested_state");
	}
}
