/**
 * The generic parameters of a KVM module (kvm.ko's, with their Linux names). The vendor parameters
 * (kvm_intel's / kvm_amd's) are folded in by the factory from the vendor ops.
 *
 * @module
 */
import { boolParam, enumParam, uintParam, type ParamSpec } from '@vac/core';

/**
 * kvm.ko parameters (virt/kvm/kvm_main.c, arch/x86/kvm/x86.c, arch/x86/kvm/mmu/mmu.c).
 */
export const kvmParams = {
  /** `enable_virt_at_load` (0444, default Y since 6.12): hold a usage reference from load to unload. */
  enable_virt_at_load: boolParam(true, 'Enable virtualization when KVM is loaded'),
  /** `halt_poll_ns`: how long a halted vCPU polls before blocking (KVM_HALT_POLL_NS_DEFAULT 200000). */
  halt_poll_ns: uintParam(200000, 'Max time to poll on a halted vCPU before blocking (ns)'),
  /** `nx_huge_pages` (iTLB multihit mitigation): `off`, `force`, `auto`. */
  nx_huge_pages: enumParam(['off', 'force', 'auto', 'Y', 'N'], 'auto', 'Mitigate iTLB multihit (split huge pages on exec)'),
  /** `ignore_msrs`: ignore guest accesses to unhandled MSRs. */
  ignore_msrs: boolParam(false, 'Ignore unhandled MSR accesses'),
  /** `mitigate_smt_rsb`: disallow SMT sibling RSB poisoning (only one vCPU per core). */
  mitigate_smt_rsb: boolParam(false, 'Mitigate RSB poisoning across SMT siblings'),
} as const satisfies Record<string, ParamSpec>;

/** The generic parameter specs. */
export type KvmParams = typeof kvmParams;
