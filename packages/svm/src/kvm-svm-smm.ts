/**
 * SVM's part of System Management Mode (arch/x86/kvm/svm/svm.c `svm_smi_allowed`, `svm_enter_smm`,
 * `svm_leave_smm`).
 *
 * AMD's 64-bit save state has fields of the vendor's: `svm_guest_flag` (0xFED8) and `svm_guest_vmcb_gpa` (0xFEE0)
 * say that the SMI came while an L2 guest ran, and RSM re-enters that guest from them. The model's guests never
 * execute VMRUN (nested SVM is not offered) and the global interrupt flag is never cleared (no CLGI), so an SMI is
 * allowed exactly when the vCPU is outside SMM and entry writes no SVM field. RSM still checks the fields the handler
 * may have written, as Linux does: a save state claiming an L2 guest is refused when the guest has no SVM or the
 * saved EFER has no SVME — and, where Linux would map the VMCB and enter L2, refused too, since the model has no L2
 * (docs/fidelity.md).
 *
 * @module
 */
import type { SmmVcpu, VendorSmm } from '@vac/core';

/** `svm_guest_flag` in the 64-bit save state (offset 0xFED8 from SMBASE, 0xD8 into the 512 bytes). */
const SMRAM64_SVM_GUEST_FLAG = 0xd8;
/** `efer` in the 64-bit save state (0xFED0). */
const SMRAM64_EFER = 0xd0;
/** `EFER_SVME`. */
const EFER_SVME = 1n << 12n;

/** The SVM {@link VendorSmm}. */
export function svmSmm(): VendorSmm {
  return {
    smiAllowed(vcpu: SmmVcpu): number {
      // svm_smi_allowed: -EBUSY while nested_run_pending (never); svm_smi_blocked: !gif_set (GIF is always set in
      // the model) || is_smm(vcpu).
      return vcpu.inSmm ? 0 : 1;
    },
    // svm_enter_smm: nothing outside guest mode (the model's vCPUs never run L2): svm_guest_flag stays 0.
    enterSmm: () => undefined,
    leaveSmm(vcpu: SmmVcpu, smram: Uint8Array): string | undefined {
      // svm_leave_smm: only the 64-bit layout has the SVM fields, and only a non-zero svm_guest_flag asks for L2.
      if (!vcpu.longMode) return undefined;
      const dv = new DataView(smram.buffer, smram.byteOffset, smram.byteLength);
      if (dv.getBigUint64(SMRAM64_SVM_GUEST_FLAG, true) === 0n) return undefined;
      if (!vcpu.guestHas('80000001.ecx', 2)) return 'svm_guest_flag is set but the guest has no SVM';
      if ((dv.getBigUint64(SMRAM64_EFER, true) & EFER_SVME) === 0n) return 'svm_guest_flag is set but the saved EFER has no SVME';
      return 'svm_guest_flag asks for the L2 guest of svm_guest_vmcb_gpa, and the model has no nested SVM';
    },
  };
}
