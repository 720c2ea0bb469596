/**
 * The VMX answers to KVM's generic x86 code ({@link VendorArch} of `@vac/core`): which capabilities `kvm_caps`
 * gets from `vmx_hardware_setup`, `vmx_has_emulated_msr`, `vmx_get_feature_msr`, `vmx_set_cpu_caps` and the VMX
 * vCPU MSRs (`vmx_get_msr` / `vmx_set_msr`) — all in `arch/x86/kvm/vmx/vmx.c` unless noted.
 *
 * Nested VMX is not modelled (a guest cannot VMXON), so what Linux offers only with `nested=1` — X86_FEATURE_VMX
 * in the supported CPUID, the VMX capability MSRs as emulated and feature MSRs — is not offered whatever `nested`
 * says (docs/abi.md, "Not modelled yet"). KVM_GET/SET_NESTED_STATE, which Linux offers with either value, answer
 * for a vCPU outside VMX operation (kvm-vmx-nested-state.ts).
 *
 * @module
 */
import type { Cpu, CpuCapsEditor, VendorArch, VendorMsrSpec } from '@vac/core';
import { FEAT_CTL, INTEL_MSR, SECONDARY_EXEC } from './arch.js';
import type { VmxKvmConfig } from './kvm-vmx.js';
import { vmxNestedState } from './kvm-vmx-nested-state.js';
import { vmxSmm } from './kvm-vmx-smm.js';

/** `MCG_CMCI_P` (MCG_CAP bit 10): corrected machine-check interrupts. */
const MCG_CMCI_P = 1n << 10n;
/** `MCG_LMCE_P` (MCG_CAP bit 27): local machine-check exceptions. */
const MCG_LMCE_P = 1n << 27n;
/** `MSR_AMD64_VIRT_SPEC_CTRL`: AMD only. */
const MSR_AMD64_VIRT_SPEC_CTRL = 0xc001011f;
/** `MSR_AMD64_TSC_RATIO`: AMD only. */
const MSR_AMD64_TSC_RATIO = 0xc0000104;
/** `KVM_FIRST_EMULATED_VMX_MSR` … `KVM_LAST_EMULATED_VMX_MSR` (IA32_VMX_BASIC … IA32_VMX_VMFUNC). */
const FIRST_VMX_MSR = 0x480;
const LAST_VMX_MSR = 0x491;

/** Secondary processor-based control bit 2 (`SECONDARY_EXEC_DESC`): descriptor-table exiting (UMIP emulation). */
const SECONDARY_EXEC_DESC = 1 << 2;
/** Secondary control bit 12 (`SECONDARY_EXEC_ENABLE_INVPCID`). */
const SECONDARY_EXEC_ENABLE_INVPCID = 1 << 12;
/** Secondary control bit 20 (`SECONDARY_EXEC_ENABLE_XSAVES`). */
const SECONDARY_EXEC_ENABLE_XSAVES = 1 << 20;
/** Secondary control bit 25 (`SECONDARY_EXEC_TSC_SCALING`). */
const SECONDARY_EXEC_TSC_SCALING = 1 << 25;
/** Secondary control bit 26 (`SECONDARY_EXEC_ENABLE_USR_WAIT_PAUSE`): WAITPKG. */
const SECONDARY_EXEC_ENABLE_USR_WAIT_PAUSE = 1 << 26;
/** Secondary control bit 30 (`SECONDARY_EXEC_BUS_LOCK_DETECTION`). */
const SECONDARY_EXEC_BUS_LOCK_DETECTION = 1 << 30;
/** Secondary control bit 31 (`SECONDARY_EXEC_NOTIFY_VM_EXITING`). */
const SECONDARY_EXEC_NOTIFY_VM_EXITING = 2 ** 31;

/**
 * The VMX vCPU MSRs beyond KVM's common ones: IA32_FEATURE_CONTROL (`vmx_set_msr` → `vmx_feature_control_msr_valid`:
 * only the lock bit, and the VMX-outside-SMX bit that only nested VMX would use, which the model does not offer).
 */
function vmxVcpuMsrs(): ReadonlyMap<number, VendorMsrSpec> {
  const valid = BigInt(FEAT_CTL.FEAT_CTL_LOCKED);
  return new Map<number, VendorMsrSpec>([
    [
      INTEL_MSR.MSR_IA32_FEAT_CTL,
      {
        reset: 0n,
        // A locked IA32_FEATURE_CONTROL faults on a guest write; user space may always restore it.
        accepts: (v, host) => (v & ~valid) === 0n && host,
      },
    ],
  ]);
}

/**
 * The {@link VendorArch} of one module's VMX half.
 * @param config - what `vmx_hardware_setup` settled on
 * @param boot - the boot CPU (its VMX capability MSRs)
 */
export function vmxArch(config: VmxKvmConfig, boot: Cpu): VendorArch {
  // vmcs_config.cpu_based_2nd_exec_ctrl: the allowed-1 settings of IA32_VMX_PROCBASED_CTLS2 (bits 63:32).
  const secondary = Number(((boot.rdmsrSafe(INTEL_MSR.MSR_IA32_VMX_PROCBASED_CTLS2) ?? 0n) >> 32n) & 0xffff_ffffn);
  const has = (bit: number): boolean => (secondary & bit) !== 0;
  return {
    // if (cpu_has_vmx_tsc_scaling()) kvm_caps.has_tsc_control = true;
    tscControl: has(SECONDARY_EXEC_TSC_SCALING),
    // vmx_init: "Shadow paging doesn't have a (further) performance penalty from GUEST_MAXPHYADDR < HOST_MAXPHYADDR".
    smallerMaxPhyAddr: !config.ept,
    tdp: config.ept,
    busLockExit: has(SECONDARY_EXEC_BUS_LOCK_DETECTION),
    notifyVmexit: has(SECONDARY_EXEC_NOTIFY_VM_EXITING),
    // intel_pmu_ops.EVENTSEL_EVENT = ARCH_PERFMON_EVENTSEL_EVENT
    pmuEventselEvent: 0xffn,
    // kvm_caps.supported_mce_cap |= MCG_LMCE_P; kvm_caps.supported_mce_cap |= MCG_CMCI_P;
    mceCapExtra: MCG_LMCE_P | MCG_CMCI_P,
    // if (l1tf_vmx_mitigation != VMENTER_L1D_FLUSH_NEVER) data |= ARCH_CAP_SKIP_VMENTRY_L1DFLUSH;
    archCapabilitiesExtra: config.l1tf === 'never' ? 0n : 1n << 3n,
    hasEmulatedMsr(msr) {
      // vmx_has_emulated_msr
      // MSR_IA32_SMBASE: enable_unrestricted_guest || emulate_invalid_guest_state (true by default): emulated.
      if (msr >= FIRST_VMX_MSR && msr <= LAST_VMX_MSR) return false; // nested VMX not modelled
      if (msr === MSR_AMD64_VIRT_SPEC_CTRL || msr === MSR_AMD64_TSC_RATIO) return false; // "This is AMD only."
      return true;
    },
    // vmx_get_feature_msr: only the nested VMX MSRs, not offered.
    featureMsr: () => undefined,
    setCpuCaps(caps: CpuCapsEditor) {
      // vmx_set_cpu_caps (X86_FEATURE_VMX only with nested VMX, not modelled).
      if (!has(SECONDARY_EXEC_ENABLE_INVPCID)) caps.clear('7.0.ebx', 10); // INVPCID
      caps.clear('1.ecx', 15); // PDCM: !enable_pmu (no PMU in the model)
      caps.clear('7.0.ebx', 2); // SGX: !enable_sgx
      caps.clear('7.0.ecx', 30); // SGX_LC
      if (has(SECONDARY_EXEC_DESC)) caps.set('7.0.ecx', 2); // vmx_umip_emulated() → UMIP
      if (!has(SECONDARY_EXEC_ENABLE_XSAVES)) caps.clear('d.1.eax', 3); // XSAVES
      if (!has(SECONDARY_EXEC.SECONDARY_EXEC_ENABLE_RDTSCP)) {
        caps.clear('80000001.edx', 27); // RDTSCP
        caps.clear('7.0.ecx', 22); // RDPID
      }
      if (has(SECONDARY_EXEC_ENABLE_USR_WAIT_PAUSE) && caps.hostHas('7.0.ecx', 5)) caps.set('7.0.ecx', 5); // WAITPKG
    },
    vcpuMsrs: vmxVcpuMsrs(),
    fxsaveMxcsrMask: 0xffff,
    x2apicIcrIsSplit: false, // vt_x86_ops.x2apic_icr_is_split
    nestedState: vmxNestedState(),
    smm: vmxSmm(),
    linuxExtraVmTypes: 0,
    resetTrType: 11,
    // vmx_set_interrupt_shadow / vmx_get_interrupt_shadow: GUEST_INTR_STATE_STI and _MOV_SS, both kept.
    normalizeInterruptShadow: (shadow) => shadow & 3,
    initUnblocksNmi: true,
  };
}
