/**
 * State shared by the halves of kvm_amd folded into a KVM module: the features one module runs with after
 * `svm_hardware_setup()` (module-wide), and the per-CPU `svm_data.sev_vmcbs[]` table (host-wide, shared by
 * every module).
 *
 * `sev_vmcbs[asid]` (`struct svm_cpu_data`, `arch/x86/kvm/svm/svm.h`) remembers, per physical CPU, which VMCB
 * last ran with each SEV ASID there, so that `pre_sev_run()` can skip the ASID flush when the same VMCB runs
 * again on the same CPU. SEV ASIDs are unique per VM across modules (VAC owns them), so two modules' VMCBs
 * may meet in one slot only after a VM is destroyed and its ASID recycled; one table per host is therefore
 * the RFC's "svm_data shared through VAC" applied to this field. It is kept in a `WeakMap` keyed by the
 * host's {@link AmdHardware}, so every module's vCPUs on that host see the same table and nothing outlives
 * the host.
 *
 * @module
 */
import type { KvmVendorEnv, ParamSpecs } from '@vac/core';
import type { AmdHardware } from './hardware.js';
import type { Vmcb } from './svm-cpu.js';
import type { AsidView } from './vac-asids.js';
import type { SevAsidView } from './vac-sev-asids.js';

/**
 * What one KVM module's folded-in kvm_amd runs with, after `svm_hardware_setup()` and `sev_hardware_setup()`
 * (`arch/x86/kvm/svm/svm.c`, `arch/x86/kvm/svm/sev.c`) combined the module parameters with the boot CPU's
 * features. In Linux these are the parameter variables themselves (`npt_enabled`, `nrips`, `sev_enabled`, …),
 * rewritten at setup; here the parameters stay as loaded and the effective values live here.
 */
export interface SvmFeatures {
  /** `npt_enabled`: the `npt` parameter and CPUID 0x8000000A EDX.NP. */
  readonly npt: boolean;
  /** `nested`: the `nested` parameter (not modelled further: no nested SVM). */
  readonly nested: boolean;
  /** `avic` / `enable_apicv`: the parameter, NPT and CPUID AVIC (`avic_hardware_setup()`). */
  readonly avic: boolean;
  /** `nrips`: the parameter and CPUID NRIPS. */
  readonly nrips: boolean;
  /** `vls`: the parameter, NPT and CPUID V_VMSAVE_VMLOAD. */
  readonly vls: boolean;
  /** `vgif`: the parameter and CPUID VGIF. */
  readonly vgif: boolean;
  /** `lbrv`: the parameter and CPUID LBRV. */
  readonly lbrv: boolean;
  /** `pause_filter_count`: the parameter, or 0 without CPUID PAUSEFILTER. */
  readonly pauseFilterCount: number;
  /** `dump_invalid_vmcb`: a failed VMRUN logs the VMCB instead of a hint. */
  readonly dumpInvalidVmcb: boolean;
  /** `sev_enabled` after `sev_hardware_setup()`: `KVM_SEV_INIT` works in this module. */
  readonly sev: boolean;
  /** `sev_es_enabled` after `sev_hardware_setup()`: `KVM_SEV_ES_INIT` works in this module. */
  readonly sevEs: boolean;
  /** `tsc_aux_uret_slot`: VAC's user-return slot of `MSR_TSC_AUX`, or -1 when the MSR could not be probed. */
  readonly tscAuxSlot: number;
}

/** @internal What a module's VMs and vCPUs share: the setup environment, the hardware and the features. */
export interface SvmModuleContext {
  /** The setup environment without the parameters (host, module name, VAC handle, warn). */
  readonly env: Omit<KvmVendorEnv<ParamSpecs>, 'params'>;
  /** The host's AMD hardware. */
  readonly hw: AmdHardware;
  /** The effective features. */
  readonly features: SvmFeatures;
  /** The per-CPU `sev_vmcbs[]` of the host. */
  readonly sevVmcbs: SevVmcbTable;
  /** The module's view of VAC's per-CPU ASID generations. */
  readonly asids: AsidView;
  /** The module's view of VAC's SEV ASID space (`undefined` on a host without SEV). */
  readonly sevAsids: SevAsidView | undefined;
  /**
   * `pr_warn_ratelimited()` for this module: whether one more warning may be logged. The kernel's default
   * ratelimit (`DEFAULT_RATELIMIT_BURST` = 10 per 5 s) has no time base here; the model lets the first 10
   * through and suppresses the rest.
   */
  ratelimit(): boolean;
}

/**
 * `per_cpu(svm_data, cpu).sev_vmcbs[]` of every CPU of one host: the VMCB that last ran with each SEV ASID on
 * each CPU. Rows are created on first use (a host with 8,192 CPUs and no SEV guest costs one array).
 */
export class SevVmcbTable {
  readonly #rows: (Map<number, Vmcb> | undefined)[];

  /**
   * @param nrCpus - the number of CPUs of the host
   */
  constructor(nrCpus: number) {
    this.#rows = new Array<Map<number, Vmcb> | undefined>(nrCpus).fill(undefined);
  }

  /** `sd->sev_vmcbs[asid]` on `cpu`. */
  get(cpu: number, asid: number): Vmcb | undefined {
    return this.#rows[cpu]?.get(asid);
  }

  /** `sd->sev_vmcbs[asid] = vmcb` on `cpu`. */
  set(cpu: number, asid: number, vmcb: Vmcb): void {
    let row = this.#rows[cpu];
    if (row === undefined) {
      row = new Map();
      this.#rows[cpu] = row;
    }
    row.set(asid, vmcb);
  }

  /** `sev_asid_free()`: `sd->sev_vmcbs[asid] = NULL` for every possible CPU. */
  clearAsid(asid: number): void {
    for (const row of this.#rows) row?.delete(asid);
  }

  /**
   * Forget a VMCB being freed. Linux leaves the stale pointer, which can only match a later VMCB allocated
   * at the same address (the reason upstream later switched to `sev_vcpus[]`); model VMCBs are never reused,
   * so dropping the entry changes nothing but lets the object go.
   */
  clearVmcb(vmcb: Vmcb): void {
    for (const row of this.#rows) {
      if (row === undefined) continue;
      for (const [asid, v] of row) if (v === vmcb) row.delete(asid);
    }
  }
}

const tables = new WeakMap<AmdHardware, SevVmcbTable>();

/**
 * The host-wide `sev_vmcbs[]` table of `hw`: which VMCB last ran with each SEV ASID on each CPU, shared by
 * every KVM module of the host (created on first use).
 */
export function sevVmcbsOf(hw: AmdHardware): SevVmcbTable {
  let t = tables.get(hw);
  if (t === undefined) {
    t = new SevVmcbTable(hw.nrCpus);
    tables.set(hw, t);
  }
  return t;
}
