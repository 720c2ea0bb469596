/**
 * `@vac/vmx`: the Intel hardware model of a vac host and VAC's VMX half.
 *
 * - {@link intel}: the hardware model to pass to `createHost({ cpus, hardware: intel({...}) })` — CPUID, feature
 *   and capability MSRs, per-CPU overrides ("BIOS disabled VMX on CPU 3", "a foreign hypervisor owns CPU 5").
 * - {@link IntelHardware}: what the host gets (`host.hardware`, narrowed with {@link isIntelHardware}): VAC's
 *   per-CPU enable/disable ({@link VacVmx}, after the RFC's `arch/x86/kvm/vmx/vac.c`), the VMX instruction
 *   state machine of every CPU ({@link VmxCpus}, Intel SDM Vol. 3C ch. 24–31), the `loaded_vmcss_on_cpu`
 *   lists shared by every KVM module ({@link LoadedVmcsLists}), counters, an invariant checker and snapshots.
 * - Architectural constants under their Linux names ({@link INTEL_MSR}, {@link FEAT_CTL}, {@link VMXERR}, …).
 * - {@link vmxKvmOps}: kvm_intel folded into every KVM module — its parameters ({@link vmxParams}), its
 *   per-module setup ({@link VmxKvmModule}, {@link VmxKvmConfig}, the L1TF mode) and its VMs and vCPUs
 *   ({@link VmxVm}, {@link VmxVcpu}: VPIDs from VAC, VMCS migration, TLB and L1D flushes).
 *
 * @packageDocumentation
 */
export {
  ARCH_CAP,
  CPUID_BIT,
  CPU_BASED_ACTIVATE_SECONDARY_CONTROLS,
  CR4_VMXE,
  FEAT_CTL,
  INTEL_MSR,
  INVEPT_TYPE,
  INVVPID_TYPE,
  L1D_FLUSH,
  SECONDARY_EXEC,
  VMXERR,
  VMXERR_MESSAGE,
  VMX_EPT_CAP,
  VMX_VPID_CAP,
} from './arch.js';
export type { InveptType, InvvpidType, VmInstructionError } from './arch.js';
export { VMX_COUNTER_NAMES, VmxCpus } from './vmx-cpu.js';
export type {
  Vmcs,
  VmcsLaunchState,
  VmxCapabilities,
  VmxCounterName,
  VmxCounters,
  VmxOutcome,
  VmxRegion,
} from './vmx-cpu.js';
export { LoadedVmcsLists, VAC_WARNING_SOURCE } from './loaded-vmcs.js';
export type { VmcsLoadResult } from './loaded-vmcs.js';
export { VacVmx } from './vac-vmx.js';
export { VPIDS, VpidResource } from './vac-vpids.js';
export type { VpidView } from './vac-vpids.js';
export { VMX_NR_VPIDS, VpidAllocator } from './vpid-allocator.js';
export type { VpidAllocatorOptions } from './vpid-allocator.js';
export { IntelHardware, isIntelHardware } from './hardware.js';
export type { IntelCpuSnapshot, IntelSnapshot, IntelVmcsSnapshot } from './hardware.js';
export { intel } from './model.js';
export type { IntelCpuOptions, IntelModel, IntelOptions } from './model.js';
export { vmxKvmOps, VmxKvmModule } from './kvm-vmx.js';
export type { VmxKvmConfig, VmxUserReturnMsr } from './kvm-vmx.js';
export { vmxParams, VMENTRY_L1D_FLUSH_WORDS } from './kvm-vmx-params.js';
export type { VmentryL1dFlushParam, VmxParams } from './kvm-vmx-params.js';
export { L1TF_MSG_L1D, hasL1tfBug, selectL1tfMitigation } from './kvm-vmx-l1tf.js';
export type { L1dFlushMethod, L1tfChoice, L1tfVmxMitigation } from './kvm-vmx-l1tf.js';
export { VmxVcpu } from './kvm-vmx-vcpu.js';
export { VmxVm } from './kvm-vmx-vm.js';
export type { VmxVcpuStats } from './kvm-vmx-vcpu.js';
