/**
 * VMX's half of KVM_GET/SET_NESTED_STATE (arch/x86/kvm/vmx/nested.c `vmx_get_nested_state`,
 * `vmx_set_nested_state`), for a model whose guests never execute VMXON: `nested_vmx_allowed` is false (the model
 * offers no X86_FEATURE_VMX to guests, whatever `nested` says), so a vCPU is never in VMX operation and its state is
 * the header alone — `vmxon_pa` and `vmcs12_pa` −1, no flags.
 *
 * @module
 */
import type { NestedStateHeader, VendorNestedState } from '@vac/core';

/** `KVM_STATE_NESTED_FORMAT_VMX`. */
const KVM_STATE_NESTED_FORMAT_VMX = 0;
/** `KVM_STATE_NESTED_EVMCS`. */
const KVM_STATE_NESTED_EVMCS = 0x4;
/** `KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE`. */
const KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE = 0x1;
/** `sizeof(struct kvm_nested_state)`. */
const HEADER_SIZE = 128;
/** `VMCS12_SIZE` (`KVM_STATE_NESTED_VMX_VMCS_SIZE`): each of `vmcs12` and `shadow_vmcs12` in the data. */
const VMCS12_SIZE = 0x1000;
/** `INVALID_GPA`. */
const INVALID_GPA = 0xffff_ffff_ffff_ffffn;

/** Offsets in `struct kvm_vmx_nested_state_hdr`. */
const HDR = { vmxonPa: 0, vmcs12Pa: 8, smmFlags: 16, flags: 20 } as const;
const HDR_BYTES = 120;

/** The nested-state ops of a VMX module. */
export function vmxNestedState(): VendorNestedState {
  // The header of a vCPU outside VMX operation, made once (the generic half copies it out).
  const outside = new Uint8Array(HDR_BYTES);
  const dv = new DataView(outside.buffer);
  dv.setBigUint64(HDR.vmxonPa, INVALID_GPA, true);
  dv.setBigUint64(HDR.vmcs12Pa, INVALID_GPA, true);
  const current = { flags: 0, hdr: outside };
  return {
    format: KVM_STATE_NESTED_FORMAT_VMX,
    // vmx_get_nested_state(NULL, …): the header and struct kvm_vmx_nested_state_data (vmcs12 + shadow_vmcs12).
    maxSize: HEADER_SIZE + 2 * VMCS12_SIZE,
    current() {
      return current;
    },
    refuse(_vcpu, state: NestedStateHeader) {
      const dv = new DataView(state.hdr.buffer, state.hdr.byteOffset, state.hdr.byteLength);
      const smmFlags = dv.getUint16(HDR.smmFlags, true);
      if (dv.getBigUint64(HDR.vmxonPa, true) !== INVALID_GPA) return 'vmxon_pa is set, and the guest cannot use VMX (nested_vmx_allowed is false)';
      if (smmFlags !== 0) return 'smm.flags without VMX operation';
      if (dv.getBigUint64(HDR.vmcs12Pa, true) !== INVALID_GPA) return 'vmcs12_pa without VMX operation';
      if ((state.flags & ~KVM_STATE_NESTED_EVMCS) !== 0) return `flags 0x${state.flags.toString(16)} without VMX operation`;
      if ((dv.getUint32(HDR.flags, true) & ~KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE) !== 0) return 'hdr.vmx.flags has unknown bits';
      // No enlightened VMCS (Hyper-V's, KVM_CAP_HYPERV_ENLIGHTENED_VMCS) is modelled.
      if ((state.flags & KVM_STATE_NESTED_EVMCS) !== 0) return 'KVM_STATE_NESTED_EVMCS without an enlightened VMCS';
      // vmx_leave_nested: nothing to leave; vmxon_pa is -1, so nothing more is loaded.
      return undefined;
    },
  };
}
