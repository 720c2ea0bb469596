/**
 * The vCPU half of kvm_amd: one VMCB, the ASID it runs with, and the vendor steps around each VMRUN.
 *
 * Follows `arch/x86/kvm/svm/svm.c` and `arch/x86/kvm/svm/sev.c`:
 *
 * - `svm_vcpu_create()` / `svm_vcpu_free()` → the constructor and {@link SvmVcpu.free};
 * - `svm_vcpu_load()` / `svm_vcpu_put()` → {@link SvmVcpu.load} / {@link SvmVcpu.put};
 * - `pre_svm_run()`, `new_asid()`, `pre_sev_run()` and the ASID write-back at the top of `svm_vcpu_run()` →
 *   {@link SvmVcpu.prepareEntry};
 * - `svm_vcpu_run()` around VMRUN (CLGI, VMRUN, `#VMEXIT`, STGI, `tlb_ctl` reset and clean bits) and the
 *   `SVM_EXIT_ERR` branch of `svm_handle_exit()` → {@link SvmVcpu.enter} / {@link SvmVcpu.exit}.
 *
 * Ordinary guests take their ASIDs from VAC's per-CPU generational allocator, shared by every module (docs/spec.md
 * §2.3); SEV guests run with their VM's SEV ASID and flush it when the VMCB changes CPU or another VMCB used
 * that ASID on the CPU last (the host-wide `sev_vmcbs[]`, see `kvm-svm-state.ts`).
 *
 * @module
 */
import { UsageError, vcpuLabel as label } from '@vac/core';
import { checkCpuIndex } from '@vac/core/internal';
import type { UniqueId, VcpuTag, VendorVcpu } from '@vac/core';
import {
  SVM_EXIT,
  TLB_CONTROL_DO_NOTHING,
  TLB_CONTROL_FLUSH_ALL_ASID,
  TLB_CONTROL_FLUSH_ASID,
  VMCB_CLEAN_AFTER_RUN,
} from './arch.js';
import type { SvmModuleContext } from './kvm-svm-state.js';
import type { SvmVm } from './kvm-svm-vm.js';
import type { Vmcb, VmrunResult } from './svm-cpu.js';

/** `VMCB_ASID` clean bit (bit 2 of `enum vmcb_clean`, `arch/x86/kvm/svm/svm.h`). */
const VMCB_ASID_CLEAN = 1 << 2;

/**
 * `SVM_EXIT_ERR` (-1, the APM's `VMEXIT_INVALID`) as the u64 KVM stores in
 * `kvm_run.fail_entry.hardware_entry_failure_reason`. Kernels whose `vmcb_control_area.exit_code` was a u32
 * (before "KVM: SVM: Treat exit_code as an unsigned 64-bit value through all of KVM", 2025) reported
 * 0xffffffff; the hardware writes -1 across `EXITCODE` (64 bits), which current kernels pass on.
 */
export const SVM_EXIT_ERR_U64 = 0xffff_ffff_ffff_ffffn;

/** Counters of one SVM vCPU ({@link SvmVcpu.stats}). */
export type SvmVcpuStats = {
  /** VMRUNs that entered the guest. */
  entries: number;
  /** VMRUNs that failed (`VMEXIT_INVALID`, or #UD once SVM is off): each one a `KVM_EXIT_FAIL_ENTRY`. */
  failedEntries: number;
  /** `new_asid()` calls: ASIDs taken from VAC's per-CPU allocator. */
  newAsids: number;
  /** Entries that asked for `TLB_CONTROL_FLUSH_ALL_ASID` (this vCPU's `new_asid()` rolled its CPU over). */
  fullFlushes: number;
  /** Entries that asked for `TLB_CONTROL_FLUSH_ASID` (flush this ASID only), whatever the cause. */
  asidFlushes: number;
  /** Of {@link SvmVcpuStats.asidFlushes}, those asked by `pre_sev_run()` (SEV guests). */
  sevFlushes: number;
};

/**
 * One vCPU, as kvm_amd sees it (`struct vcpu_svm`): its VMCB (`vmcb01`), `svm->asid`, the CPU it is loaded
 * on and `vcpu->arch.last_vmentry_cpu`. Built by the module's `createVcpu`.
 */
export class SvmVcpu implements VendorVcpu {
  /** VAC's name for the vCPU: the holder of its ASIDs (the same object every time). */
  readonly tag: VcpuTag;
  /** The VM. */
  readonly vm: SvmVm;
  /** The VMCB (`svm->vmcb01`). */
  readonly vmcb: Vmcb;
  /** Counters. */
  readonly stats: SvmVcpuStats = { entries: 0, failedEntries: 0, newAsids: 0, fullFlushes: 0, asidFlushes: 0, sevFlushes: 0 };
  readonly #m: SvmModuleContext;
  /** `svm->asid`: the ASID the next VMRUN uses (0 before the first entry). */
  #asid = 0;
  /** The CPU `vcpu_load` put it on, or -1. */
  #loadedOn = -1;
  /** The CPU whose guest mode this vCPU entered and has not yet left through {@link SvmVcpu.exit}, or -1. */
  #inGuestOn = -1;
  /** `vcpu->arch.last_vmentry_cpu`: the CPU of the last VMRUN attempt, -1 before the first. */
  #lastVmentryCpu = -1;
  #freed = false;

  /**
   * `svm_vcpu_create()`: allocate the VMCB (owner: the module name). An SEV guest's VMCB gets the
   * `SEV_ENABLE` / `SEV_ES_ENABLE` control bits (`init_vmcb()` → `sev_init_vmcb()`); vCPUs of an SEV VM are
   * created after `KVM_SEV_INIT`, which refuses VMs that already have vCPUs.
   *
   * @internal Use the module's `createVcpu`.
   */
  constructor(m: SvmModuleContext, vm: SvmVm, tag: VcpuTag) {
    this.#m = m;
    this.vm = vm;
    this.tag = tag;
    this.vmcb = m.hw.allocVmcb(m.env.module);
    this.vmcb.sev = vm.encryption;
  }

  /** The CPU it is loaded on, or -1. */
  get loadedOn(): number {
    return this.#loadedOn;
  }

  /** `svm->asid`: the ASID of the last (or next) VMRUN; 0 before the first entry. */
  get asid(): number {
    return this.#asid;
  }

  /** `vcpu->arch.last_vmentry_cpu`, -1 before the first VMRUN. */
  get lastVmentryCpu(): number {
    return this.#lastVmentryCpu;
  }

  /** Whether {@link SvmVcpu.free} ran. */
  get freed(): boolean {
    return this.#freed;
  }

  /**
   * `svm_vcpu_load()`: note the CPU. Nothing ASID-related happens here — `pre_svm_run()` decides at the next
   * entry. (`sd->current_vmcb` and the IBPB that comes with a change of VMCB are the hardware model's
   * business: it records the current VMCB at VMRUN.)
   */
  load(cpu: number): void {
    this.#live('load');
    checkCpuIndex('kvm_amd: vcpu_load', cpu, this.#m.hw.nrCpus);
    this.#loadedOn = cpu;
  }

  /** `svm_vcpu_put()` → `svm_prepare_host_switch()`: the vCPU is no longer loaded on `cpu`. */
  put(cpu: number): void {
    if (this.#loadedOn === cpu) this.#loadedOn = -1;
  }

  /**
   * Everything between `vcpu_enter_guest()`'s call of `svm_vcpu_run()` and VMRUN that concerns the TLB tag:
   *
   * - `pre_svm_run()`: a VMCB that last ran on another CPU gets `asid_generation = 0`, all clean bits
   *   cleared (`vmcb_mark_all_dirty()`) and the new CPU recorded;
   * - SEV guest → `pre_sev_run()` (`sev.c`): `svm->asid` = the VM's SEV ASID; no flush if this CPU's
   *   `sev_vmcbs[asid]` is this VMCB and the last VMRUN was on this CPU, else record the VMCB there and set
   *   `TLB_CONTROL_FLUSH_ASID`;
   * - otherwise, a generation that is not the CPU's current one → `new_asid()` through VAC (shared by every
   *   module): a rollover sets `TLB_CONTROL_FLUSH_ALL_ASID`;
   * - then `svm_vcpu_run()`: `if (svm->asid != vmcb->control.asid)` write it and clear the `VMCB_ASID` clean bit.
   *
   * @throws UsageError when the vCPU is not loaded on `cpu`
   */
  prepareEntry(cpu: number): void {
    this.#live('prepareEntry');
    this.#onCpu('prepareEntry', cpu);
    const m = this.#m;
    const vmcb = this.vmcb;
    // if (unlikely(svm->current_vmcb->cpu != vcpu->cpu)) { asid_generation = 0; vmcb_mark_all_dirty(); cpu = … }
    if (vmcb.lastCpu !== cpu) {
      vmcb.asidGeneration = 0;
      vmcb.clean = 0;
      vmcb.lastCpu = cpu;
    }
    if (this.vm.encryption !== 'none') {
      this.#preSevRun(cpu);
    } else if (!m.asids.isCurrent(cpu, vmcb.asidGeneration)) {
      // new_asid(svm, sd): the per-CPU state is VAC's.
      const grant = m.asids.newAsid(cpu, this.tag);
      this.stats.newAsids++;
      if (grant.flushAll) {
        vmcb.tlbControl = TLB_CONTROL_FLUSH_ALL_ASID;
        vmcb.clean &= ~VMCB_ASID_CLEAN;
        this.stats.fullFlushes++;
      }
      vmcb.asidGeneration = grant.generation;
      this.#asid = grant.asid;
    }
    if (vmcb.asid !== this.#asid) {
      vmcb.asid = this.#asid;
      vmcb.clean &= ~VMCB_ASID_CLEAN;
    }
  }

  /** `pre_sev_run(svm, cpu)` (`arch/x86/kvm/svm/sev.c`). */
  #preSevRun(cpu: number): void {
    const vmcb = this.vmcb;
    const asid = this.vm.sevAsid;
    const table = this.#m.sevVmcbs;
    // svm->asid = asid;
    this.#asid = asid;
    // if (sd->sev_vmcbs[asid] == svm->vmcb && svm->vcpu.arch.last_vmentry_cpu == cpu) return 0;
    if (table.get(cpu, asid) === vmcb && this.#lastVmentryCpu === cpu) return;
    table.set(cpu, asid, vmcb);
    vmcb.tlbControl = TLB_CONTROL_FLUSH_ASID;
    vmcb.clean &= ~VMCB_ASID_CLEAN;
    this.stats.asidFlushes++;
    this.stats.sevFlushes++;
  }

  /**
   * `svm_vcpu_run()` around the world switch: CLGI, VMRUN of the VMCB, and on failure the rest of the run
   * path (STGI, `tlb_ctl = TLB_CONTROL_DO_NOTHING`, `vmcb_mark_all_clean()`). `last_vmentry_cpu` becomes
   * `cpu` either way (`vcpu_enter_guest()`).
   *
   * - Entered → `undefined`; the guest runs until {@link SvmVcpu.exit}.
   * - `VMEXIT_INVALID` → `svm_handle_exit()`'s `SVM_EXIT_ERR` branch: the failure reason is the VMCB's exit
   *   code, {@link SVM_EXIT_ERR_U64}; `dump_vmcb()` logs the VMCB with `dump_invalid_vmcb`, else the
   *   ratelimited hint "set kvm_amd.dump_invalid_vmcb=1 to dump internal KVM state." (here named after the
   *   module).
   * - `#UD` (EFER.SVME is clear): the VMRUN fault is fixed up only while `kvm_rebooting` (the exception table
   *   entry of `__svm_vcpu_run`, `arch/x86/kvm/svm/vmenter.S`); otherwise Linux hits `ud2` (a kernel BUG),
   *   which the model logs. Either way the model fails the entry with {@link SVM_EXIT_ERR_U64} (Linux, when
   *   it survives the fault, goes on with whatever exit code the VMCB still holds).
   *
   * After a reboot or crash (VAC's `rebooting`) a failed VMRUN is tolerated silently: no warning storm.
   *
   * @returns `undefined`, or the failure reason for `KVM_EXIT_FAIL_ENTRY`
   * @throws UsageError when the vCPU is not loaded on `cpu` or is already in guest mode
   */
  enter(cpu: number): bigint | undefined {
    this.#live('enter');
    this.#onCpu('enter', cpu);
    if (this.#inGuestOn >= 0) throw this.#inGuestError(cpu);
    // CLGI + VMRUN in one call of the hardware model (a usage error of the model, an offline CPU or a VMCB already
    // running, leaves GIF as it was); GIF was cleared unless both faulted (#UD: EFER.SVME is clear).
    const result = this.#m.hw.svm.clgiVmrun(cpu, this.vmcb);
    this.#lastVmentryCpu = cpu;
    if (result === 'entered') {
      this.#inGuestOn = cpu;
      this.stats.entries++;
      return undefined;
    }
    return this.#entryFailed(cpu, result, result !== '#UD');
  }

  /** The failed VMRUN: the rest of the run path, the warnings, the failure reason. */
  #entryFailed(cpu: number, result: Exclude<VmrunResult, 'entered'>, gifCleared: boolean): bigint {
    const m = this.#m;
    const vmcb = this.vmcb;
    this.stats.failedEntries++;
    if (result === '#UD') {
      // The fixed-up VMRUN returns into svm_vcpu_run(), which goes on as after any run.
      vmcb.tlbControl = TLB_CONTROL_DO_NOTHING;
      vmcb.clean = VMCB_CLEAN_AFTER_RUN;
    }
    if (gifCleared) m.hw.svm.stgi(cpu);
    const vac = m.env.vac;
    if (!vac.rebooting) {
      if (result === '#UD') {
        m.env.warn(`kernel BUG: VMRUN faulted (#UD) on CPU ${cpu} for ${label(this.tag)}: EFER.SVME is clear`, cpu);
      } else if (m.features.dumpInvalidVmcb) {
        m.env.warn(
          `VMCB ${vmcb.id} (pa 0x${vmcb.pa.toString(16)}), last attempted VMRUN on CPU ${cpu}: ` +
            `asid ${vmcb.asid}, exit_code 0x${BigInt.asUintN(64, BigInt(vmcb.exitCode)).toString(16)}, sev ${vmcb.sev}`,
          cpu,
        );
      } else if (m.ratelimit()) {
        m.env.warn(`set ${m.env.module}.dump_invalid_vmcb=1 to dump internal KVM state.`, cpu);
      }
    }
    return SVM_EXIT_ERR_U64;
  }

  /**
   * The `#VMEXIT` that ends the guest run entered with {@link SvmVcpu.enter}, then the rest of
   * `svm_vcpu_run()`: STGI (the hardware model already resets `tlb_ctl` and marks the VMCB clean at
   * `#VMEXIT`). If the CPU was already forced out of guest mode (the disable IPI or the crash NMI), only the
   * host-side steps remain; a faulting STGI (SVM turned off meanwhile) is tolerated while rebooting.
   *
   * The generic run loop does not say why the guest stopped; `exitCode` defaults to `SVM_EXIT_INTR` (the
   * physical interrupt that ends a time slice). Callers that know better may pass the `SVM_EXIT_*` code.
   *
   * @throws UsageError when the vCPU did not enter the guest on `cpu`
   */
  exit(cpu: number, exitCode: number = SVM_EXIT.INTR): void {
    if (this.#inGuestOn !== cpu) throw this.#notInGuestError(cpu);
    // Out of guest mode before STGI (whose usage error, the CPU in guest mode with another VMCB, then finds this vCPU
    // out, as before); #VMEXIT cannot fail here: this VMCB runs on `cpu`, or the CPU was forced out already.
    this.#inGuestOn = -1;
    // #VMEXIT + STGI in one call of the hardware model.
    if (this.#m.hw.svm.vmexitStgi(cpu, exitCode, this.vmcb) !== undefined) this.#stgiFaulted(cpu);
  }

  #stgiFaulted(cpu: number): void {
    if (!this.#m.env.vac.rebooting) this.#m.env.warn(`kernel BUG: STGI faulted (#UD) on CPU ${cpu} after a VM exit of ${label(this.tag)}`, cpu);
  }

  /** The TLB tag in use: `{ kind: 'asid', value: svm->asid }` (0 before the first entry). */
  tlbTag(): { readonly kind: 'asid'; readonly value: number } {
    return { kind: 'asid', value: this.#asid };
  }

  /** None: an ASID is unique only on its CPU within a generation (the ASID resource checks that). */
  uniqueIds(): readonly UniqueId[] {
    return [];
  }

  /**
   * `svm_vcpu_free()`: VAC forgets the vCPU's ASID grants (its ASID is not reused before a rollover anyway),
   * and the VMCB is freed (which clears it as any CPU's current VMCB, `svm_clear_current_vmcb()`). A second
   * call does nothing.
   *
   * @throws UsageError when the vCPU is in guest mode
   */
  free(): void {
    if (this.#freed) return;
    if (this.#inGuestOn >= 0) throw new UsageError('ERR_INVALID_STATE', `${label(this.tag)}: freed while in guest mode on CPU ${this.#inGuestOn}`);
    const m = this.#m;
    m.asids.release(this.tag);
    m.sevVmcbs.clearVmcb(this.vmcb);
    m.hw.svm.freeVmcb(this.vmcb);
    this.#freed = true;
    this.#loadedOn = -1;
  }

  #live(op: string): void {
    if (this.#freed) throw this.#freedError(op);
  }

  /** The misuse errors of the entry path, built out of line (they would cost the inlining of the entry). */
  #freedError(op: string): UsageError {
    return new UsageError('ERR_DESTROYED', `${label(this.tag)}: ${op} after free`);
  }

  #inGuestError(cpu: number): UsageError {
    return new UsageError('ERR_INVALID_STATE', `${label(this.tag)}: enter on CPU ${cpu} while in guest mode on CPU ${this.#inGuestOn}`);
  }

  #notInGuestError(cpu: number): UsageError {
    return new UsageError('ERR_INVALID_STATE', `${label(this.tag)}: exit on CPU ${cpu} without a VM entry there`);
  }

  /** Throw unless loaded on `cpu` (a compare on the entry path; the message is built apart). */
  #onCpu(op: string, cpu: number): void {
    if (this.#loadedOn !== cpu) throw this.#notOnCpu(op, cpu);
  }

  #notOnCpu(op: string, cpu: number): UsageError {
    return new UsageError('ERR_INVALID_STATE', `${label(this.tag)}: ${op} on CPU ${cpu}, but the vCPU is loaded on ${this.#loadedOn < 0 ? 'no CPU' : `CPU ${this.#loadedOn}`}`);
  }
}
