/**
 * VMX's part of System Management Mode (arch/x86/kvm/vmx/vmx.c `vmx_smi_allowed`, `vmx_enter_smm`,
 * `vmx_leave_smm`).
 *
 * On Intel the SMM save state has no field of the vendor's: what VMX adds is the nested guest — an SMI taken in VMX
 * non-root mode leaves L2 first (`nested_vmx_vmexit`) and VMX operation is suspended until RSM (`nested.smm.vmxon`,
 * `nested.smm.guest_mode`), and an SMI waits while a nested VM entry is pending (`nested_run_pending`: -EBUSY). The
 * model's guests never execute VMXON (nested VMX is not offered), so there is no VMX operation to suspend or resume:
 * an SMI is allowed exactly when the vCPU is outside SMM, and entry and RSM change nothing of VMX's.
 *
 * @module
 */
import type { SmmVcpu, VendorSmm } from '@vac/core';

/** The VMX {@link VendorSmm}. */
export function vmxSmm(): VendorSmm {
  return {
    smiAllowed(vcpu: SmmVcpu): number {
      // vmx_smi_allowed: -EBUSY while nested_run_pending (never: no nested VMX), else !is_smm(vcpu).
      return vcpu.inSmm ? 0 : 1;
    },
    // vmx_enter_smm: nested.smm.vmxon = nested.vmxon (false: no VMXON in the model's guests), leave L2 (never in it).
    enterSmm: () => undefined,
    // vmx_leave_smm: VMX operation and L2 come back only if they were there at the SMI (never in the model).
    leaveSmm: () => undefined,
  };
}
