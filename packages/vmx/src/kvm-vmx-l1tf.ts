/**
 * The L1TF VM-entry mitigation of one KVM module: how `vmx_setup_l1d_flush` (`arch/x86/kvm/vmx/vmx.c`) turns
 * the `vmentry_l1d_flush` parameter and the CPU into `l1tf_vmx_mitigation`.
 *
 * In Linux `l1tf_vmx_mitigation` is one kernel-wide variable (exported by `arch/x86/kernel/cpu/bugs.c` for
 * `/sys/devices/system/cpu/vulnerabilities/l1tf`). With several KVM modules each has its own mode — that is
 * the point of "different mitigations for trusted VMs" — so here it is a property of the module; which one
 * the kernel-wide file would report is left open (beyond the RFC, which does not discuss it).
 *
 * @module
 */
import type { Cpu } from '@vac/core';
import { ARCH_CAP, CPUID_BIT, INTEL_MSR } from './arch.js';
import type { VmentryL1dFlushParam } from './kvm-vmx-params.js';

/**
 * `l1tf_vmx_mitigation`, spelled as `vmentry_l1d_param[]` shows it in sysfs (`vmx.c`):
 * - `'never'`, `'cond'`, `'always'`: the flush mode in effect;
 * - `'EPT disabled'` (`VMENTER_L1D_FLUSH_EPT_DISABLED`): no EPT, so no VM-entry flush (shadow paging's PTE
 *   inversion protects the host);
 * - `'not required'` (`VMENTER_L1D_FLUSH_NOT_REQUIRED`): the CPU is not affected, or says the flush is not
 *   needed (`ARCH_CAP_SKIP_VMENTRY_L1DFLUSH`); never flushes.
 */
export type L1tfVmxMitigation = 'never' | 'cond' | 'always' | 'EPT disabled' | 'not required';

/**
 * How a flush is done (`vmx_l1d_flush`): `'msr'` = write `L1D_FLUSH` to IA32_FLUSH_CMD (the boot CPU has
 * `X86_FEATURE_FLUSH_L1D`); `'software'` = read 64 KiB of `vmx_l1d_flush_pages` (not seen by the hardware
 * model's `l1dFlush` counter; the vCPU's `l1dFlushes` still counts it); `'none'` = the mode never flushes.
 */
export type L1dFlushMethod = 'msr' | 'software' | 'none';

/** The result of {@link selectL1tfMitigation}. */
export interface L1tfChoice {
  /** `l1tf_vmx_mitigation`. */
  readonly mitigation: L1tfVmxMitigation;
  /** How flushes are done. */
  readonly method: L1dFlushMethod;
  /** `boot_cpu_has_bug(X86_BUG_L1TF)`: the CPU is affected. */
  readonly affected: boolean;
}

/**
 * Whether the boot CPU has `X86_BUG_L1TF` (`cpu_set_bug_bits`, `arch/x86/kernel/cpu/common.c`): every Intel
 * CPU of the model is affected unless IA32_ARCH_CAPABILITIES says `ARCH_CAP_RDCL_NO` (the model has no CPU
 * whitelist; a CPU without the MSR reads as 0).
 */
export function hasL1tfBug(boot: Cpu): boolean {
  const caps = boot.rdmsrSafe(INTEL_MSR.MSR_IA32_ARCH_CAPABILITIES) ?? 0n;
  return (caps & BigInt(ARCH_CAP.ARCH_CAP_RDCL_NO)) === 0n;
}

/**
 * `vmx_setup_l1d_flush(vmentry_l1d_flush_param)` (`vmx.c`), in Linux's order:
 * 1. no `X86_BUG_L1TF` → "not required";
 * 2. `!enable_ept` → "EPT disabled";
 * 3. IA32_ARCH_CAPABILITIES has `ARCH_CAP_SKIP_VMENTRY_L1DFLUSH` → "not required";
 * 4. `auto` → the host's `l1tf_mitigation`: the model's host boots with the default `l1tf=flush`
 *    (`L1TF_MITIGATION_FLUSH`) → `cond`;
 * 5. otherwise the parameter. The flush method is IA32_FLUSH_CMD when the boot CPU has
 *    `X86_FEATURE_FLUSH_L1D` (CPUID.7.EDX[28]), else the software fill of `vmx_l1d_flush_pages`.
 *
 * @param boot - the boot CPU (CPU 0), whose features Linux's `boot_cpu_has` reads
 * @param param - the `vmentry_l1d_flush` value
 * @param enableEpt - `enable_ept` after `vmx_hardware_setup`
 */
export function selectL1tfMitigation(boot: Cpu, param: VmentryL1dFlushParam, enableEpt: boolean): L1tfChoice {
  const affected = hasL1tfBug(boot);
  if (!affected) return { mitigation: 'not required', method: 'none', affected };
  if (!enableEpt) return { mitigation: 'EPT disabled', method: 'none', affected };
  const caps = boot.rdmsrSafe(INTEL_MSR.MSR_IA32_ARCH_CAPABILITIES) ?? 0n;
  if ((caps & BigInt(ARCH_CAP.ARCH_CAP_SKIP_VMENTRY_L1DFLUSH)) !== 0n) {
    return { mitigation: 'not required', method: 'none', affected };
  }
  const mitigation: L1tfVmxMitigation = param === 'auto' ? 'cond' : param;
  if (mitigation === 'never') return { mitigation, method: 'none', affected };
  const flushL1d = (boot.readCpuid(7).edx & CPUID_BIT.FLUSH_L1D) !== 0;
  return { mitigation, method: flushL1d ? 'msr' : 'software', affected };
}

/**
 * `L1TF_MSG_L1D` (`vmx.c`), printed once (`pr_warn_once`) by `vmx_vm_init` when the first VM starts on an
 * affected CPU with `l1tf_vmx_mitigation == VMENTER_L1D_FLUSH_NEVER` (and the host's `l1tf=` is not `off` or
 * `flush,nowarn`). Wording from memory [M].
 */
export const L1TF_MSG_L1D =
  'L1TF CPU bug present and virtualization mitigation disabled, data leak possible. See CVE-2018-3646 and ' +
  'https://www.kernel.org/doc/html/latest/admin-guide/hw-vuln/l1tf.html for details.';
