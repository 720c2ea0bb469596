/**
 * VAC's VMX half: the per-CPU enable/disable that VAC calls (`VirtOps` with `name: 'vmx'`),
 * written after the RFC's `arch/x86/kvm/vmx/vac.c` (patches 10–12 and 14), which took
 * `vmx_hardware_enable`, `vmx_hardware_disable`, `vmx_emergency_disable` and `__kvm_is_vmx_supported` out of
 * `arch/x86/kvm/vmx/vmx.c`.
 *
 * Every CPU gets its VMXON region (`vmxarea`) when the hardware is created, with the boot CPU's
 * IA32_VMX_BASIC revision id written into it (Linux `vmcs_config.revision_id`). Beyond the RFC (where each KVM
 * module allocated them and called `vac_set_vmxarea`, so the last module to load won), VAC owns these pages,
 * as `root_vmcs` in the 2025 x86/virt series does.
 *
 * Not modelled: eVMCS / Hyper-V's VP assist page check (step 2 of `vmx_hardware_enable`) and
 * `intel_pt_handle_vmx`.
 *
 * @module
 */
import { cpuAt } from '@vac/core/internal';
import type { AnyVacResource, Cpu, ErrnoCode, HardwareEnv, VacResourceContext, VirtOps } from '@vac/core';
import { CPUID_BIT, CR4_VMXE, FEAT_CTL, INTEL_MSR } from './arch.js';
import { VAC_WARNING_SOURCE } from './loaded-vmcs.js';
import type { LoadedVmcsLists } from './loaded-vmcs.js';
import { VpidResource } from './vac-vpids.js';
import type { VmxCpus, VmxOutcome, VmxRegion } from './vmx-cpu.js';

const FEAT_CTL_VMX_USABLE = BigInt(FEAT_CTL.FEAT_CTL_LOCKED | FEAT_CTL.FEAT_CTL_VMX_ENABLED_OUTSIDE_SMX);

/** VAC's VMX half for one host: the `VirtOps` of an Intel host. */
export class VacVmx implements VirtOps {
  /** Always `'vmx'`. */
  readonly name = 'vmx' as const;
  readonly #env: HardwareEnv;
  readonly #vmx: VmxCpus;
  readonly #lists: LoadedVmcsLists;
  /** `per_cpu(vmxarea, cpu)`. */
  readonly #vmxarea: readonly VmxRegion[];
  /** 1 where VAC's VMXON succeeded and no VMXOFF followed. */
  readonly #enabled: Uint8Array;
  /** `WARN_ONCE` state of the "VMXON faulted" warning (one per VAC instance, i.e. per host). */
  #vmxonFaultWarned = false;

  /**
   * @param env - the host
   * @param vmx - the VMX instructions of the host's CPUs
   * @param lists - the shared `loaded_vmcss_on_cpu` lists
   */
  constructor(env: HardwareEnv, vmx: VmxCpus, lists: LoadedVmcsLists) {
    this.#env = env;
    this.#vmx = vmx;
    this.#lists = lists;
    const n = vmx.size;
    const areas: VmxRegion[] = new Array<VmxRegion>(n);
    for (let i = 0; i < n; i++) areas[i] = vmx.allocVmxonRegion(`vac/vmxarea/${i}`);
    this.#vmxarea = areas;
    this.#enabled = new Uint8Array(n);
    env.events.describe('virt:enable', { label: 'VMXON' });
    env.events.describe('virt:disable', { label: 'VMXOFF' });
  }

  #cpu(cpu: number): Cpu {
    return cpuAt('vmx', this.#env.cpus, cpu);
  }

  /**
   * `__kvm_is_vmx_supported` (RFC `vmx/vac.c`): `undefined` when `cpu` can run VMX, else the kernel's message —
   * "VMX not supported by CPU %d" (CPUID.1:ECX.VMX clear) or "VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL
   * on CPU %d" (IA32_FEATURE_CONTROL missing, unlocked, or locked without VMX outside SMX: the kernel's
   * `init_ia32_feat_ctl` then cleared `X86_FEATURE_VMX`).
   */
  unsupported(cpu: number): string | undefined {
    const c = this.#cpu(cpu);
    if ((c.readCpuid(1).ecx & CPUID_BIT.VMX) === 0) return `VMX not supported by CPU ${cpu}`;
    const featCtl = c.rdmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL);
    if (featCtl === undefined || (featCtl & FEAT_CTL_VMX_USABLE) !== FEAT_CTL_VMX_USABLE) {
      return `VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL on CPU ${cpu}`;
    }
    return undefined;
  }

  /**
   * `vmx_hardware_enable` (RFC `vmx/vac.c`; `vmx_enable_virtualization_cpu` since 6.12), on `cpu`:
   * 1. CR4.VMXE already set (another hypervisor, or an earlier enable) → `'EBUSY'`, nothing changed.
   * 2. `kvm_cpu_vmxon`: set CR4.VMXE, VMXON on `vmxarea[cpu]`. If VMXON faults: `WARN_ONCE` "VMXON faulted,
   *    MSR_IA32_FEAT_CTL (0x3a) = 0x…", clear CR4.VMXE, → `'EFAULT'`. If it fails with VMfailInvalid (region
   *    revision id ≠ this CPU's IA32_VMX_BASIC), the same, with a warning saying so (docs/spec.md §2.2; Linux's
   *    `kvm_cpu_vmxon` only catches faults and would go on outside VMX operation).
   * 3. A global INVEPT, whatever the KVM modules' `enable_ept` (RFC patch 14: "we can have a mix of KVMs with
   *    enable_ept=0 and =1"). Beyond the RFC: skipped on a CPU without global INVEPT, where the RFC's
   *    unconditional `ept_sync_global()` would #UD (`kvm_spurious_fault`); no module can use EPT there
   *    (`vmx_hardware_setup` turns `enable_ept` off without `cpu_has_vmx_invept_global`).
   *
   * Emits `virt:enable` on success. Allocation-free.
   */
  enableCpu(cpu: number): ErrnoCode | undefined {
    const c = this.#cpu(cpu);
    if ((c.cr4 & CR4_VMXE) !== 0) return 'EBUSY';
    // kvm_cpu_vmxon(): cr4_set_bits(X86_CR4_VMXE); vmxon
    c.cr4 |= CR4_VMXE;
    const area = this.#vmxarea[cpu]!;
    const outcome = this.#vmx.vmxon(cpu, area);
    if (outcome !== 'VMsucceed') {
      this.#warnVmxonFailed(c, outcome, area);
      c.cr4 &= ~CR4_VMXE;
      return 'EFAULT';
    }
    if (this.#vmx.supportsInveptGlobal(cpu)) this.#vmx.invept(cpu, 'global'); // ept_sync_global()
    this.#enabled[cpu] = 1;
    this.#env.events.emit('virt:enable', { cpu });
    return undefined;
  }

  #warnVmxonFailed(c: Cpu, outcome: VmxOutcome, area: VmxRegion): void {
    if (outcome === '#GP' || outcome === '#UD') {
      if (this.#vmxonFaultWarned) return; // WARN_ONCE
      this.#vmxonFaultWarned = true;
      const featCtl = c.rdmsrSafe(INTEL_MSR.MSR_IA32_FEAT_CTL) ?? 0xdeadbeefn;
      this.#env.warn({
        source: VAC_WARNING_SOURCE,
        cpu: c.id,
        message: `VMXON faulted, MSR_IA32_FEAT_CTL (0x3a) = 0x${featCtl.toString(16)}`,
      });
      return;
    }
    const basic = this.#vmx.capabilities(c.id).revisionId;
    this.#env.warn({
      source: VAC_WARNING_SOURCE,
      cpu: c.id,
      message:
        `VMXON failed (${outcome}) on CPU ${c.id}: VMXON region revision id 0x${area.revisionId.toString(16)}, ` +
        `IA32_VMX_BASIC revision id 0x${basic.toString(16)}`,
    });
  }

  /**
   * `vmx_hardware_disable` (RFC `vmx/vac.c`; `vmx_disable_virtualization_cpu` since 6.12), on `cpu`:
   * `vmclear_local_loaded_vmcss()` (every VMCS on the CPU's list, all modules: VMCLEAR, off the list,
   * `loaded_vmcs->cpu = -1`), then `kvm_cpu_vmxoff()`: VMXOFF and clear CR4.VMXE — even if VMXOFF faults, in
   * which case `kvm_spurious_fault()` (`BUG_ON(!kvm_rebooting)`) is recorded as a warning unless the host is
   * rebooting. Emits `virt:disable`.
   */
  disableCpu(cpu: number): void {
    const c = this.#cpu(cpu);
    this.#lists.clearLocal(cpu);
    const outcome = this.#vmx.vmxoff(cpu);
    c.cr4 &= ~CR4_VMXE;
    this.#enabled[cpu] = 0;
    if (outcome !== 'VMsucceed' && !this.#env.rebooting) {
      this.#env.warn({
        source: VAC_WARNING_SOURCE,
        cpu,
        message: `kernel BUG: kvm_spurious_fault: vmxoff faulted (${outcome}) on CPU ${cpu} while not rebooting`,
      });
    }
    this.#env.events.emit('virt:disable', { cpu });
  }

  /**
   * `vmx_emergency_disable` (RFC `vmx/vac.c`; the crash / emergency-reboot callback): nothing if CR4.VMXE is
   * clear; else VMCLEAR every VMCS on the CPU's list (the list itself is left as is, as in Linux), VMXOFF and
   * clear CR4.VMXE, ignoring faults. Setting `kvm_rebooting` is VAC's (the caller's) job. Emits `virt:disable`
   * when it turned VMX off.
   */
  emergencyDisable(cpu: number): void {
    const c = this.#cpu(cpu);
    if ((c.cr4 & CR4_VMXE) === 0) return;
    this.#lists.emergencyClear(cpu);
    this.#vmx.vmxoff(cpu);
    c.cr4 &= ~CR4_VMXE;
    this.#enabled[cpu] = 0;
    this.#env.events.emit('virt:disable', { cpu });
  }

  /** Whether `cpu` is in VMX operation (VAC's or a foreign hypervisor's). */
  isEnabled(cpu: number): boolean {
    return this.#vmx.inVmxOperation(cpu);
  }

  /** Whether VAC's VMXON on `cpu` succeeded and no VMXOFF followed (VAC's claim on the CPU). */
  enabledByVac(cpu: number): boolean {
    this.#cpu(cpu);
    return this.#enabled[cpu] === 1;
  }

  /** The resources VAC's VMX half brings (RFC `arch/x86/kvm/vmx/vac.c`): the host's VPID space ({@link VpidResource}). */
  vacResources(ctx: VacResourceContext): readonly AnyVacResource[] {
    return [new VpidResource(ctx)];
  }

  /** `per_cpu(vmxarea, cpu)`: the VMXON region VAC uses on `cpu`. */
  vmxarea(cpu: number): VmxRegion {
    this.#cpu(cpu);
    return this.#vmxarea[cpu]!;
  }
}
