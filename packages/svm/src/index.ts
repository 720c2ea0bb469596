/**
 * `@vac/svm`: the AMD hardware model of a vac host and VAC's SVM half.
 *
 * - {@link amd} — the hardware model to create a host with: `createHost({ cpus, hardware: amd({...}) })`,
 *   with host-wide options and per-CPU overrides (`cpus: { 2: { svmDisabledByBios: true } }`);
 * - {@link AmdHardware} — one host's AMD hardware: counters, invariant check, snapshot, fault knobs;
 * - {@link SvmCpus} — per-CPU SVM state after AMD APM Vol. 2 ch. 15: EFER.SVME, VM_CR, VM_HSAVE_PA, GIF,
 *   VMCBs, VMRUN/`#VMEXIT`, STGI/CLGI, TLB flushes by `TLB_CONTROL`, WBINVD;
 * - {@link VacSvm} — VAC's per-CPU enable/disable (RFC `arch/x86/kvm/svm/vac.c`), the ASID space read from
 *   CPUID and the SEV flush;
 * - {@link svmKvmOps} — kvm_amd folded into every KVM module (`@vac/kvm` calls it): its parameters, SEV VMs
 *   ({@link SvmVm}) and vCPUs ({@link SvmVcpu}) that take ASIDs from VAC's shared allocators;
 * - the architectural constants, under their Linux names.
 *
 * @packageDocumentation
 */
export * from './arch.js';
export { amd, AMD_DEFAULTS } from './model.js';
export type { AmdCpuConfig, AmdCpuOptions, AmdModel, AmdOptions } from './model.js';
export { AmdHardware, isAmdHardware } from './hardware.js';
export { FOREIGN_SAVE_AREA_BASE, SVM_COUNTER_NAMES, SvmCpus, VMCB_AREA_BASE, Vmcb } from './svm-cpu.js';
export type {
  AmdCpuSnapshot,
  AmdSnapshot,
  AmdVmcbSnapshot,
  CpuOwner,
  SvmCounterName,
  SvmCounters,
  SvmCpuState,
  SvmFault,
  VmcbSev,
  VmrunResult,
} from './svm-cpu.js';
export { SAVE_AREA_BASE, VacSvm } from './vac-svm.js';
export type { AsidSpace } from './vac-svm.js';
export { ASIDS, AsidResource } from './vac-asids.js';
export type { AsidView } from './vac-asids.js';
export { SEV_ASIDS, SevAsidResource } from './vac-sev-asids.js';
export type { SevAsidView } from './vac-sev-asids.js';
export { AsidAllocator } from './asid-allocator.js';
export type { AsidAllocatorConfig, AsidConflict, AsidGrant, AsidHolding } from './asid-allocator.js';
export { SevAsidAllocator } from './sev-asid-allocator.js';
export type { SevAsidAllocatorOptions, SevAsidConfig, SevAsidState } from './sev-asid-allocator.js';
export { svmKvmOps, SvmKvmModule } from './kvm-svm.js';
export { svmParams } from './kvm-svm-params.js';
export type { SvmParams } from './kvm-svm-params.js';
export { SvmVm } from './kvm-svm-vm.js';
export type { SvmEncryption } from './kvm-svm-vm.js';
export { SVM_EXIT_ERR_U64, SvmVcpu } from './kvm-svm-vcpu.js';
export type { SvmVcpuStats } from './kvm-svm-vcpu.js';
export { SevVmcbTable, sevVmcbsOf } from './kvm-svm-state.js';
export type { SvmFeatures } from './kvm-svm-state.js';
