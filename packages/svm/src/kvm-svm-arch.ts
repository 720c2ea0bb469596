/**
 * The SVM answers to KVM's generic x86 code ({@link VendorArch} of `@vac/core`): the `kvm_caps` that
 * `svm_hardware_setup` fills, `svm_has_emulated_msr`, `svm_get_feature_msr`, `svm_set_cpu_caps` and the SVM vCPU
 * MSRs (`svm_get_msr` / `svm_set_msr`) — all in `arch/x86/kvm/svm/svm.c` unless noted.
 *
 * Nested SVM is not modelled, so X86_FEATURE_SVM and the 0x8000000A features Linux offers with `nested=1` are not
 * offered (docs/abi.md, "Not modelled yet"); KVM_GET/SET_NESTED_STATE, which Linux offers with either value, answer
 * for a vCPU outside SVM operation (kvm-svm-nested-state.ts).
 *
 * @module
 */
import type { Cpu, CpuCapsEditor, VendorArch, VendorMsrSpec } from '@vac/core';
import { SVM_FEATURE } from './arch.js';
import type { SvmFeatures } from './kvm-svm-state.js';
import { svmNestedState } from './kvm-svm-nested-state.js';
import { svmSmm } from './kvm-svm-smm.js';

/** `MSR_IA32_SMBASE`. */
const MSR_IA32_SMBASE = 0x9e;
/** `MSR_VM_HSAVE_PA`. */
const MSR_VM_HSAVE_PA = 0xc0010117;
/** `MSR_AMD64_VIRT_SPEC_CTRL`. */
const MSR_AMD64_VIRT_SPEC_CTRL = 0xc001011f;
/** `MSR_AMD64_TSC_RATIO`. */
const MSR_AMD64_TSC_RATIO = 0xc0000104;
/** `MSR_AMD64_DE_CFG` (a feature MSR: `svm_get_feature_msr`). */
const MSR_AMD64_DE_CFG = 0xc0011029;
/** `MSR_IA32_MCG_EXT_CTL` (Intel LMCE). */
const MSR_IA32_MCG_EXT_CTL = 0x4d0;
/** `SVM_TSC_RATIO_DEFAULT`: 1.0 in 8.32 fixed point. */
const SVM_TSC_RATIO_DEFAULT = 0x0100000000n;
/** `SVM_TSC_RATIO_RSVD`: bits 63:40. */
const SVM_TSC_RATIO_RSVD = 0xffffff0000000000n;
/** `SPEC_CTRL_SSBD` (bit 2): the only bit of VIRT_SPEC_CTRL. */
const SPEC_CTRL_SSBD = 1n << 2n;
/** `PAGE_MASK`. */
const PAGE_MASK = ~0xfffn & 0xffff_ffff_ffff_ffffn;

/**
 * The SVM vCPU MSRs: `MSR_VM_HSAVE_PA` (only page-aligned values are kept; nested SVM, which would use it, is not
 * modelled), `MSR_AMD64_VIRT_SPEC_CTRL` (`SPEC_CTRL_SSBD` only) and `MSR_AMD64_TSC_RATIO` (bits 63:40 reserved;
 * user space may write it only with `tsc_scaling`).
 */
function svmVcpuMsrs(tscScaling: boolean): ReadonlyMap<number, VendorMsrSpec> {
  return new Map<number, VendorMsrSpec>([
    // if (!msr->host_initiated && !page_address_valid(vcpu, data)) return 1; svm->nested.hsave_msr = data & PAGE_MASK;
    [MSR_VM_HSAVE_PA, { reset: 0n, accepts: (v, host) => host || (v & 0xfffn) === 0n, normalize: (v) => v & PAGE_MASK }],
    // if (!msr->host_initiated && !guest_cpu_cap_has(vcpu, X86_FEATURE_VIRT_SSBD)) return 1; if (data & ~SPEC_CTRL_SSBD) return 1;
    [MSR_AMD64_VIRT_SPEC_CTRL, { reset: 0n, accepts: (v, host) => host && (v & ~SPEC_CTRL_SSBD) === 0n }],
    // if (!guest_cpu_cap_has(vcpu, X86_FEATURE_TSCRATEMSR) && (!msr->host_initiated || !tsc_scaling)) return 1;
    [MSR_AMD64_TSC_RATIO, { reset: SVM_TSC_RATIO_DEFAULT, accepts: (v, host) => host && tscScaling && (v & SVM_TSC_RATIO_RSVD) === 0n }],
  ]);
}

/**
 * The {@link VendorArch} of one module's SVM half.
 * @param features - what `svm_hardware_setup` settled on
 * @param boot - the boot CPU
 */
export function svmArch(features: SvmFeatures, boot: Cpu): VendorArch {
  const svmEdx = boot.readCpuid(0x8000000a).edx;
  // tsc_scaling (default on): kept only with X86_FEATURE_TSCRATEMSR, then kvm_caps.has_tsc_control = true.
  const tscScaling = (svmEdx & SVM_FEATURE.TSCRATEMSR) !== 0;
  return {
    tscControl: tscScaling,
    // allow_smaller_maxphyaddr = !npt_enabled;
    smallerMaxPhyAddr: !features.npt,
    tdp: features.npt,
    busLockExit: false,
    notifyVmexit: false,
    // amd_pmu_ops.EVENTSEL_EVENT = AMD64_EVENTSEL_EVENT (ARCH_PERFMON_EVENTSEL_EVENT | 0xf << 32)
    pmuEventselEvent: 0xf_0000_00ffn,
    mceCapExtra: 0n,
    archCapabilitiesExtra: 0n,
    hasEmulatedMsr(msr, vm) {
      // svm_has_emulated_msr
      if (msr === MSR_IA32_MCG_EXT_CTL) return false;
      // MSR_IA32_SMBASE: "SEV-ES guests do not support SMM, so report false".
      if (msr === MSR_IA32_SMBASE && vm?.encryption === 'sev-es') return false;
      if (msr >= 0x480 && msr <= 0x491) return false; // KVM_FIRST/LAST_EMULATED_VMX_MSR
      return true;
    },
    featureMsr(msr) {
      // svm_get_feature_msr: MSR_AMD64_DE_CFG, with LFENCE_SERIALIZE when the host serializes LFENCE (not modelled: 0).
      return msr === MSR_AMD64_DE_CFG ? 0n : undefined;
    },
    setCpuCaps(caps: CpuCapsEditor) {
      // svm_set_cpu_caps: the 0x8000000A features need nested SVM (not modelled).
      // CPUID 0x80000008: VIRT_SSBD when the host has LS_CFG_SSBD or AMD_SSBD.
      if (caps.hostHas('80000008.ebx', 24)) caps.set('80000008.ebx', 25);
      // sev_set_cpu_caps: SEV / SEV-ES in 0x8000001F.
      if (features.sev) caps.set('8000001f.eax', 1);
      if (features.sevEs) caps.set('8000001f.eax', 3);
      // "Don't advertise Bus Lock Detect to guest if SVM support is absent"
      caps.clear('7.0.ecx', 24);
    },
    vcpuMsrs: svmVcpuMsrs(tscScaling),
    fxsaveMxcsrMask: 0x2ffff,
    x2apicIcrIsSplit: true, // svm_x86_ops.x2apic_icr_is_split
    nestedState: svmNestedState(),
    smm: svmSmm(),
    // sev_hardware_setup: BIT(KVM_X86_SEV_VM) with SEV, BIT(KVM_X86_SEV_ES_VM) with SEV-ES.
    linuxExtraVmTypes: (features.sev ? 1 << 2 : 0) | (features.sevEs ? 1 << 3 : 0),
    resetTrType: 3,
    // svm_set_interrupt_shadow: one SVM_INTERRUPT_SHADOW_MASK bit for either; svm_get_interrupt_shadow: MOV_SS.
    normalizeInterruptShadow: (shadow) => (shadow !== 0 ? 1 : 0),
    initUnblocksNmi: false,
  };
}
