/**
 * What the guest's `cpuid`, `rdmsr`/`wrmsr` and `rdtsc` answer from: the vCPU's x86 state ({@link VcpuArch}), the
 * same state KVM_GET/SET_CPUID2, KVM_GET/SET_MSRS and the TSC ioctls read and write.
 *
 * - `cpuid`: the table KVM_SET_CPUID2 gave (`kvm_emulate_cpuid` → `kvm_cpuid`, arch/x86/kvm/cpuid.c), with the
 *   bits KVM keeps current at run time (`kvm_update_cpuid_runtime`: OSXSAVE from CR4, the APIC bit from the APIC
 *   base, OSPKE from CR4).
 * - `rdmsr` / `wrmsr`: the VM's MSR filter first (`kvm_msr_allowed`, arch/x86/kvm/x86.c), then the guest-initiated
 *   access of `vcpu-msrs.ts` (`kvm_get_msr` / `kvm_set_msr`). A failed access is #GP — unless its reason (denied by
 *   the filter, an MSR KVM does not know, a refused value: `kvm_msr_reason`) is in the VM's KVM_CAP_X86_USER_SPACE_MSR
 *   mask: then it goes to user space (`kvm_msr_user_space`: KVM_EXIT_X86_RDMSR/WRMSR), and the instruction is
 *   executed again at the next KVM_RUN with user space's answer (`complete_emulated_msr_access`: #GP when
 *   `msr.error` is set, else EDX:EAX ← `msr.data` for RDMSR).
 * - `rdtsc`: the guest TSC (`kvm_read_l1_tsc`): the host's TSC, scaled, plus the vCPU's offset. The host's time is its
 *   simulated clock, which a run's instructions move only once the run ends; a guest instruction reads it as far into
 *   its run as it is (its earlier instructions at the clock's nominal rate), so two `rdtsc`s in a row differ, as on a
 *   real vCPU (recorded: `run.rdtsc-twice`); RDMSR/WRMSR of IA32_TSC likewise. Nothing else is kept, so the TSC a
 *   guest reads is what KVM_GET_MSRS would report at that point and KVM_SET_MSRS sets.
 *
 * @module
 */
import { CpuidTable, type GuestPlatform } from '../guest/platform.js';
import { KVM_MSR_EXIT_REASON_FILTER, KVM_MSR_EXIT_REASON_INVAL, KVM_MSR_EXIT_REASON_UNKNOWN, KVM_X86_DISABLE_EXITS_PAUSE } from '../abi/constants.js';
import { KVM_MSR_FILTER_READ, KVM_MSR_FILTER_WRITE } from '../abi/constants-x86.js';
import type { kvm_cpuid_entry2 } from '../abi/structs.js';
import { vcpuArch, type VcpuArch } from './vcpu-arch.js';
import { guestReadMsr, guestWriteMsr, type GuestMsrFailure } from './vcpu-msrs.js';
import { guestCr0Allowed } from './vcpu-cr.js';
import { apicBaseOf } from './vcpu-sregs.js';
import { guestTsc } from './vcpu-tsc.js';
import type { Vcpu } from './vcpu.js';
import { vmArch, type MsrFilter } from './vm-arch.js';

/**
 * `kvm_msr_allowed`: whether the guest may make this access under `filter`. The first range of the right kind
 * that covers the MSR decides (its bit: 1 allows); an MSR no range covers gets the default action. The x2APIC
 * range (0x800–0x8ff) is always allowed, as Linux never filters it.
 */
export function msrAllowed(filter: MsrFilter | undefined, msr: number, kind: number): boolean {
  if (filter === undefined) return true;
  if (msr >= 0x800 && msr <= 0x8ff) return true;
  for (const r of filter.ranges) {
    if ((r.flags & kind) === 0) continue;
    if (msr >= r.base && msr < r.base + r.nmsrs) {
      const bit = msr - r.base;
      return ((r.bitmap[bit >> 3] as number) & (1 << (bit & 7))) !== 0;
    }
  }
  return filter.defaultAllow;
}

/** A guest RDMSR/WRMSR handed to user space (what `kvm_msr_user_space` puts in `kvm_run.msr`). */
export interface MsrUserExit {
  /** WRMSR (else RDMSR). */
  readonly write: boolean;
  /** `KVM_MSR_EXIT_REASON_*`. */
  readonly reason: number;
  /** The MSR (ECX). */
  readonly index: number;
  /** The value written (EDX:EAX of a WRMSR); 0 for a RDMSR. */
  readonly data: bigint;
}

/** `kvm_msr_reason`: the exit reason of a failed access. */
function msrReason(failure: GuestMsrFailure | 'filtered'): number {
  return failure === 'filtered' ? KVM_MSR_EXIT_REASON_FILTER : failure === 'unsupported' ? KVM_MSR_EXIT_REASON_UNKNOWN : KVM_MSR_EXIT_REASON_INVAL;
}

/** The vCPU's {@link GuestPlatform}. */
export class ArchPlatform implements GuestPlatform {
  readonly #vcpu: Vcpu;
  readonly #arch: VcpuArch;
  #table: CpuidTable = new CpuidTable([]);
  #tableOf: readonly kvm_cpuid_entry2[] | undefined;

  /** @param v - the vCPU */
  constructor(v: Vcpu) {
    this.#vcpu = v;
    this.#arch = vcpuArch(v);
  }

  /**
   * {@inheritDoc GuestPlatform.pauseExits} Pause-loop exiting is on unless user space disabled PAUSE exits
   * (KVM_CAP_X86_DISABLE_EXITS), and only matters with another vCPU to run (`kvm_vcpu_on_spin`).
   */
  pauseExits(): boolean {
    const vm = this.#vcpu.vm;
    return vm.vcpus.size > 1 && (vmArch(vm).disabledExits & KVM_X86_DISABLE_EXITS_PAUSE) === 0;
  }

  /** {@inheritDoc GuestPlatform.cr0PagingAllowed} (`kvm_set_cr0`'s `load_pdptrs`: `vcpu-cr.ts`). */
  cr0PagingAllowed(value: number): boolean {
    return guestCr0Allowed(this.#vcpu, BigInt(value >>> 0) | (this.#vcpu.regs.cr0 & ~0xffff_ffffn));
  }

  /** {@inheritDoc GuestPlatform.inSmm} */
  inSmm(): boolean {
    return this.#vcpu.smm;
  }

  /**
   * {@inheritDoc GuestPlatform.iret} NMIs are unblocked (in SMM too: RSM then blocks them again only if the SMI came
   * inside an NMI handler); the run ends when an NMI waits (`enable_nmi_window`: the NMI-window exit).
   */
  iret(): boolean {
    const a = this.#arch;
    if (!a.nmiMasked) return false;
    a.nmiMasked = false;
    return a.nmiInjected || a.nmiPending > 0 || a.nmiQueued > 0;
  }

  /** {@inheritDoc GuestPlatform.requestPending} */
  requestPending(): boolean {
    return this.#vcpu.requests !== 0;
  }

  /** {@inheritDoc GuestPlatform.fxState} The vCPU's FPU image (`vcpu->arch.guest_fpu`), as KVM_GET/SET_FPU and XSAVE see it. */
  get fxState(): Uint8Array {
    return this.#arch.fpu;
  }

  /** {@inheritDoc GuestPlatform.cpuid} */
  cpuid(fn: number, index: number, out: Uint32Array): void {
    const entries = this.#arch.cpuid;
    if (this.#tableOf !== entries) {
      this.#table = new CpuidTable(entries);
      this.#tableOf = entries;
    }
    this.#table.lookup(fn, index, out);
    if (entries.length === 0) return;
    // kvm_update_cpuid_runtime's bits, as the registers are now (the table holds what KVM_SET_CPUID2 gave).
    const cr4 = this.#vcpu.regs.cr4;
    if (fn >>> 0 === 1 && entries.some((e) => e.function === 1)) {
      out[2] = (cr4 & (1n << 18n)) !== 0n ? ((out[2] as number) | (1 << 27)) >>> 0 : ((out[2] as number) & ~(1 << 27)) >>> 0;
      out[3] = (apicBaseOf(this.#vcpu) & (1n << 11n)) !== 0n ? ((out[3] as number) | (1 << 9)) >>> 0 : ((out[3] as number) & ~(1 << 9)) >>> 0;
    } else if (fn >>> 0 === 7 && index >>> 0 === 0 && entries.some((e) => e.function === 7 && e.index === 0)) {
      out[2] = (cr4 & (1n << 22n)) !== 0n ? ((out[2] as number) | (1 << 4)) >>> 0 : ((out[2] as number) & ~(1 << 4)) >>> 0;
    }
  }

  /**
   * The access that went to user space at the last exit (KVM_EXIT_X86_RDMSR/WRMSR), until the next KVM_RUN completes
   * it (`vcpu->arch.complete_userspace_io`).
   */
  userExit: MsrUserExit | undefined;
  /** User space's answer to {@link ArchPlatform.userExit}, for the one execution of the instruction that completes it. */
  #answer: { readonly error: boolean; readonly data: bigint } | undefined;

  /**
   * `complete_emulated_msr_access`: the next `rdmsr`/`wrmsr` takes user space's answer (`msr.error`, `msr.data`) instead
   * of accessing the MSR. {@link ArchPlatform.endCompletion} drops it after that one instruction.
   */
  beginCompletion(error: boolean, data: bigint): void {
    this.#answer = { error, data };
    this.userExit = undefined;
  }

  /** The instruction that completes a user-space MSR access has run (or did not reach the access). */
  endCompletion(): void {
    this.#answer = undefined;
  }

  /** {@inheritDoc GuestPlatform.rdmsr} */
  rdmsr(msr: number, executed = 0): bigint | undefined | null {
    const answer = this.#answer;
    if (answer !== undefined) {
      this.#answer = undefined;
      return answer.error ? undefined : answer.data;
    }
    if (!msrAllowed(vmArch(this.#vcpu.vm).msrFilter, msr, KVM_MSR_FILTER_READ)) return this.#failed(false, 'filtered', msr, 0n);
    const arch = this.#arch;
    arch.runAheadNs = this.#aheadNs(executed);
    const r = guestReadMsr(this.#vcpu, msr);
    arch.runAheadNs = 0n;
    return typeof r === 'bigint' ? r : this.#failed(false, r, msr, 0n);
  }

  /** {@inheritDoc GuestPlatform.wrmsr} */
  wrmsr(msr: number, value: bigint, executed = 0): boolean | null {
    const answer = this.#answer;
    if (answer !== undefined) {
      this.#answer = undefined;
      return !answer.error;
    }
    const data = BigInt.asUintN(64, value);
    let r: true | GuestMsrFailure | 'filtered' = 'filtered';
    if (msrAllowed(vmArch(this.#vcpu.vm).msrFilter, msr, KVM_MSR_FILTER_WRITE)) {
      const arch = this.#arch;
      arch.runAheadNs = this.#aheadNs(executed);
      r = guestWriteMsr(this.#vcpu, msr, data);
      arch.runAheadNs = 0n;
    }
    if (r === true) return true;
    return this.#failed(true, r, msr, data) === null ? null : false;
  }

  /** `kvm_msr_user_space`: `null` (to user space) when the failure's reason is in the VM's mask, else `undefined` (#GP). */
  #failed(write: boolean, failure: GuestMsrFailure | 'filtered', index: number, data: bigint): null | undefined {
    const reason = msrReason(failure);
    if ((vmArch(this.#vcpu.vm).userSpaceMsrMask & reason) === 0) return undefined;
    this.userExit = { write, reason, index, data };
    return null;
  }

  /** {@inheritDoc GuestPlatform.tsc} */
  tsc(executed = 0): bigint {
    const arch = this.#arch;
    arch.runAheadNs = this.#aheadNs(executed);
    const t = guestTsc(this.#vcpu, arch);
    arch.runAheadNs = 0n;
    return t;
  }

  /**
   * @internal Instructions the pass in progress completed in earlier runs of the interpreter (a debugged vCPU runs one
   * instruction per run), which the host's clock has not counted yet; 0 otherwise.
   */
  passExecuted = 0;

  /**
   * How far the host's clock will have moved once the pass's earlier instructions — `executed` of this run and
   * {@link ArchPlatform.passExecuted} — are counted (`advanceInstructions`).
   */
  #aheadNs(executed: number): bigint {
    const n = executed + this.passExecuted;
    return n === 0 ? 0n : BigInt(n * this.#vcpu.vm.instance.host.clock.nsPerInstruction);
  }
}
