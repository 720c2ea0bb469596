/**
 * SVM's half of KVM_GET/SET_NESTED_STATE (arch/x86/kvm/svm/nested.c `svm_get_nested_state`,
 * `svm_set_nested_state`), for a model whose guests never execute VMRUN: EFER.SVME is a reserved bit for them (no
 * nested SVM is offered), so a vCPU is never in guest mode, GIF is always set, and its state is the header alone —
 * flags `KVM_STATE_NESTED_GIF_SET`, `vmcb_pa` 0.
 *
 * @module
 */
import type { NestedStateHeader, NestedStateVcpu, VendorNestedState } from '@vac/core';

/** `KVM_STATE_NESTED_FORMAT_SVM`. */
const KVM_STATE_NESTED_FORMAT_SVM = 1;
/** `KVM_STATE_NESTED_GUEST_MODE`. */
const KVM_STATE_NESTED_GUEST_MODE = 0x1;
/** `KVM_STATE_NESTED_RUN_PENDING`. */
const KVM_STATE_NESTED_RUN_PENDING = 0x2;
/** `KVM_STATE_NESTED_GIF_SET`. */
const KVM_STATE_NESTED_GIF_SET = 0x100;
/** `sizeof(struct kvm_nested_state)`. */
const HEADER_SIZE = 128;
/** `KVM_STATE_NESTED_SVM_VMCB_SIZE`. */
const VMCB_SIZE = 0x1000;
/** EFER.SVME. */
const EFER_SVME = 1n << 12n;
const HDR_BYTES = 120;

/** The nested-state ops of an SVM module. */
export function svmNestedState(): VendorNestedState {
  // Not in guest mode: vmcb_pa stays 0; gif_set(svm) is true. Made once (the generic half copies it out).
  const current = { flags: KVM_STATE_NESTED_GIF_SET, hdr: new Uint8Array(HDR_BYTES) };
  return {
    format: KVM_STATE_NESTED_FORMAT_SVM,
    // svm_get_nested_state(NULL, …): the header and the VMCB page.
    maxSize: HEADER_SIZE + VMCB_SIZE,
    current() {
      return current;
    },
    refuse(vcpu: NestedStateVcpu, state: NestedStateHeader) {
      if ((state.flags & ~(KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_RUN_PENDING | KVM_STATE_NESTED_GIF_SET)) !== 0) return `flags 0x${state.flags.toString(16)} has bits SVM does not take`;
      // GIF = 1 and no guest mode are required when EFER.SVME is clear.
      if ((vcpu.efer & EFER_SVME) === 0n && state.flags !== KVM_STATE_NESTED_GIF_SET) return 'EFER.SVME is clear: the flags must be exactly KVM_STATE_NESTED_GIF_SET';
      // EFER.SVME is reserved for the model's guests, so what follows in Linux (GIF cleared, entering guest mode) is
      // never reached; refused rather than pretended.
      if (state.flags !== KVM_STATE_NESTED_GIF_SET) return 'a nested SVM guest (EFER.SVME) is not modelled';
      // svm_leave_nested, svm_set_gif(true): the state the vCPU already has.
      return undefined;
    },
  };
}
