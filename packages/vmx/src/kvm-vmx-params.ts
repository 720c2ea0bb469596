/**
 * kvm_intel's module parameters, folded into every KVM module (RFC patch 02 folds `kvm_intel.ko` into
 * `kvm.ko`), with Linux's names, types and defaults (`arch/x86/kvm/vmx/vmx.c`, `module_param*`).
 *
 * They are read-only after load, as in Linux (0444; `vmentry_l1d_flush` is 0644 in Linux but its runtime
 * write path is not modelled). What a parameter asks for and what the module runs with can differ: like
 * `vmx_hardware_setup`, the vendor turns a feature off when the CPU lacks it — see
 * {@link VmxKvmConfig} (`module.config`) for the values in effect.
 *
 * @module
 */
import { boolParam, enumParam } from '@vac/core';
import type { ParamSpec } from '@vac/core';

/**
 * The words `vmentry_l1d_flush` accepts (`vmentry_l1d_param[]` entries with `for_parse = true`, `vmx.c`):
 * `auto` (the host's `l1tf=` choice: `cond` with the default `l1tf=flush`), `never`, `cond`, `always`.
 */
export const VMENTRY_L1D_FLUSH_WORDS = ['auto', 'never', 'cond', 'always'] as const;

/** A value of the `vmentry_l1d_flush` parameter. */
export type VmentryL1dFlushParam = (typeof VMENTRY_L1D_FLUSH_WORDS)[number];

/**
 * kvm_intel's parameters (the ones that shape isolation, mitigations and TLB behaviour), with Linux's
 * defaults. Each entry cites the variable behind it in `arch/x86/kvm/vmx/vmx.c` (RFC patch 01 moved `nested`
 * to x86.c, i.e. still `kvm.ko`; its spec is the same `bool` as SVM's `nested`).
 */
export const vmxParams = {
  /**
   * `vpid` → `enable_vpid` (bool, default Y): give each vCPU its own VPID from VAC's shared space (RFC patch
   * 14: `enable_vpid ? allocate_vpid() : 0`). N: every vCPU runs with VPID 0 and the CPU flushes its TLB
   * on every VM entry and exit.
   */
  vpid: boolParam(true, 'Use Virtual Processor Identifiers (per-vCPU TLB tags); N flushes the TLB on every VM entry'),
  /**
   * `ept` → `enable_ept` (bool, default Y): two-dimensional paging. Turned off when the CPU lacks EPT,
   * 4-level walks, WB paging structures or global INVEPT. Without EPT the L1TF VM-entry flush is moot
   * (`l1tf_vmx_mitigation` = "EPT disabled").
   */
  ept: boolParam(true, 'Use Extended Page Tables (two-dimensional paging)'),
  /** `eptad` → `enable_ept_ad_bits` (bool, default Y): EPT accessed/dirty bits; needs EPT and the A/D capability. */
  eptad: boolParam(true, 'Use EPT accessed and dirty bits'),
  /**
   * `unrestricted_guest` → `enable_unrestricted_guest` (bool, default Y): run real mode and unpaged protected
   * mode natively; needs EPT and the "unrestricted guest" secondary control.
   */
  unrestricted_guest: boolParam(true, 'Run real-mode and unpaged guest code natively (needs EPT)'),
  /**
   * `flexpriority` → `flexpriority_enabled` (bool, default Y): TPR shadow plus "virtualize APIC accesses".
   */
  flexpriority: boolParam(true, 'Use TPR shadowing and APIC-access virtualization (FlexPriority)'),
  /**
   * `nested` (bool, default Y): guests may use VMX and run their own guests. Nested VMX itself (vmcs02, vpid02)
   * is not modelled; the value is shown and recorded.
   */
  nested: boolParam(true, 'Allow guests to use VMX (nested virtualization)'),
  /**
   * `enable_apicv` (bool, default Y): APIC register virtualization, virtual-interrupt delivery and posted
   * interrupts; off unless the CPU offers all three.
   */
  enable_apicv: boolParam(true, 'Use APIC virtualization and posted interrupts'),
  /** `pml` → `enable_pml` (bool, default Y): page-modification logging; needs EPT, EPT A/D bits and the PML control. */
  pml: boolParam(true, 'Use Page Modification Logging for dirty tracking (needs EPT A/D bits)'),
  /**
   * `preemption_timer` → `enable_preemption_timer` (bool, default Y): emulate the guest's LAPIC timer with the
   * VMX-preemption timer; off unless the pin-based control exists.
   */
  preemption_timer: boolParam(true, 'Use the VMX-preemption timer for the guest LAPIC timer'),
  /**
   * `vmentry_l1d_flush` (L1TF / CVE-2018-3646 mitigation; `module_param_cb` with `vmentry_l1d_flush_ops`):
   * - `always`: flush the L1 data cache before every VM entry;
   * - `cond`: flush only when the vCPU was (re)loaded — scheduled in, or back from user space — or after an
   *   exit KVM handled through code that may have pulled secrets into L1D (the emulator);
   * - `never`: no flush (Linux warns at the first VM on an affected CPU);
   * - `auto`: the host's `l1tf=` choice (`cond` by default).
   *
   * Default `cond` (Linux's stored default is `auto`, which resolves to and is shown as `cond` on an affected
   * CPU with the default `l1tf=flush`). On a CPU without the L1TF bug, or that tells KVM to skip the flush
   * (`ARCH_CAP_SKIP_VMENTRY_L1DFLUSH`), the mode becomes "not required"; with EPT off it is "EPT disabled".
   */
  vmentry_l1d_flush: enumParam<VmentryL1dFlushParam>(
    VMENTRY_L1D_FLUSH_WORDS,
    'cond',
    'L1D cache flush on VM entry (L1TF mitigation): always, cond, never, auto',
  ),
  /**
   * `error_on_inconsistent_vmcs_config` (bool, default Y): fail the load when the VM-entry/VM-exit control
   * pairs read in `setup_vmcs_config` disagree (N: warn and drop the feature). The model's CPUs expose no
   * VM-entry/VM-exit control MSRs, so that check never finds anything; the value is shown and recorded.
   * (The per-CPU comparison of `vmx_check_processor_compat` fails the load whatever this says.)
   */
  error_on_inconsistent_vmcs_config: boolParam(true, 'Fail the load on inconsistent VM-entry/VM-exit controls'),
  /**
   * `dump_invalid_vmcs` (bool, default N; 0644 in Linux): on a failed VM entry, dump the VMCS (`dump_vmcs`)
   * instead of the rate-limited hint "set kvm_intel.dump_invalid_vmcs=1 to dump internal KVM state.".
   */
  dump_invalid_vmcs: boolParam(false, 'Dump the VMCS when a VM entry fails'),
} as const satisfies Record<string, ParamSpec>;

/** The type of {@link vmxParams}. */
export type VmxParams = typeof vmxParams;
