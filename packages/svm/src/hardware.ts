/**
 * {@link AmdHardware}: one host's AMD hardware — the SVM state of its CPUs ({@link SvmCpus}) and VAC's SVM
 * half ({@link VacSvm}) — with counters, an invariant checker, snapshots and the fault knobs.
 *
 * @module
 */
import { checkCpuIndex } from '@vac/core/internal';
import type { FaultMode, HardwareEnv, HostHardware, Violation } from '@vac/core';
import type { AmdCpuConfig, AmdModel } from './model.js';
import { SvmCpus } from './svm-cpu.js';
import type { AmdSnapshot, SvmCounters, SvmCpuState, Vmcb } from './svm-cpu.js';
import { VacSvm } from './vac-svm.js';

/**
 * One host's AMD hardware (a {@link @vac/core!HostHardware}). Built by `amd(...).create(env)`; reach it as
 * `host.hardware` and narrow it with {@link isAmdHardware}.
 *
 * - {@link AmdHardware.virt}: VAC's SVM half (what VAC calls to enable/disable a CPU, the ASID space);
 * - {@link AmdHardware.svm}: the SVM instructions of every CPU, for the KVM module's vCPU ops (VMRUN,
 *   `#VMEXIT`, STGI, CLGI, VMCBs, WBINVD);
 * - counters, {@link AmdHardware.check} and {@link AmdHardware.snapshot} for tests.
 */
export class AmdHardware implements HostHardware {
  /** The model it was built from. */
  readonly model: AmdModel;
  /** VAC's SVM half. */
  readonly virt: VacSvm;
  /** The SVM state of every CPU and the SVM instructions. */
  readonly svm: SvmCpus;
  readonly #configs: readonly AmdCpuConfig[];

  /**
   * Build the hardware of a host whose CPUs' CPUID leaves and MSRs are already filled in (the model's
   * `create` does that first).
   *
   * @param model - the model
   * @param env - the host
   * @param configs - the resolved options of each CPU
   */
  constructor(model: AmdModel, env: HardwareEnv, configs: readonly AmdCpuConfig[]) {
    this.model = model;
    this.#configs = configs;
    this.svm = new SvmCpus(env);
    this.virt = new VacSvm(env, this.svm);
  }

  /** The number of CPUs. */
  get nrCpus(): number {
    return this.svm.nrCpus;
  }

  /** The resolved options `cpu` was created with. */
  config(cpu: number): AmdCpuConfig {
    checkCpuIndex('amd.config', cpu, this.svm.nrCpus);
    return this.#configs[cpu] as AmdCpuConfig;
  }

  /** A read-only view of `cpu`'s SVM state: EFER.SVME, VM_HSAVE_PA, GIF, guest mode, current VMCB, owner. */
  cpu(cpu: number): SvmCpuState {
    return this.svm.state(cpu);
  }

  /** The counters of `cpu`: see {@link SvmCounters}. */
  counters(cpu: number): SvmCounters {
    return this.svm.counters(cpu);
  }

  /** The counters summed over all CPUs. */
  totals(): SvmCounters {
    return this.svm.totals();
  }

  /** Allocate a VMCB for `owner` (e.g. `'kvm0'`); see {@link SvmCpus.allocVmcb}. */
  allocVmcb(owner: string): Vmcb {
    return this.svm.allocVmcb(owner);
  }

  /** Whether EFER.SVME is set on `cpu` (anyone's). */
  svme(cpu: number): boolean {
    checkCpuIndex('amd.svme', cpu, this.svm.nrCpus);
    return this.svm.svme(cpu);
  }

  /** The VMCB of the last VMRUN on `cpu` (`svm_data.current_vmcb`), or `undefined`. */
  currentVmcb(cpu: number): Vmcb | undefined {
    return this.svm.currentVmcb(cpu);
  }

  /** Whether a foreign hypervisor claims SVM on `cpu`. */
  foreignOwner(cpu: number): boolean {
    return this.svm.foreignOwner(cpu);
  }

  /** Hardware-side violations of docs/spec.md §4 invariant 1 (see {@link SvmCpus.violations}). */
  check(): Violation[] {
    return this.svm.violations();
  }

  /** A deep, plain-data (JSON-safe) copy of the hardware state (fault knobs excluded). */
  snapshot(): AmdSnapshot {
    return this.svm.snapshot();
  }

  /** Fault knob: see {@link SvmCpus.setForeignOwner}. */
  setForeignOwner(cpu: number, owned: boolean): void {
    this.svm.setForeignOwner(cpu, owned);
  }

  /** Fault knob: see {@link SvmCpus.injectEnableFault}. */
  injectEnableFault(cpu: number, mode: FaultMode): void {
    this.svm.injectEnableFault(cpu, mode);
  }
}

/** Whether a host's hardware is the AMD model's (narrows `host.hardware`). */
export function isAmdHardware(hw: HostHardware): hw is AmdHardware {
  return hw instanceof AmdHardware;
}
