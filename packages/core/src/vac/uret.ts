/**
 * VAC's user-return MSRs: MSRs that hold a guest value while a vCPU thread is in the kernel and get the host
 * value back only when the thread returns to user space.
 *
 * Models `arch/x86/kvm/x86.c` (`KVM_MAX_NR_USER_RETURN_MSRS`, `kvm_add_user_return_msr`,
 * `kvm_find_user_return_msr`, `kvm_set_user_return_msr`, `kvm_on_user_return`,
 * `kvm_user_return_msr_cpu_online`, `drop_user_return_notifiers`), which the VAC RFC moved to
 * `arch/x86/kvm/vac.c` so that all modules share one slot list, one host snapshot and one return-to-user
 * notifier per CPU (docs/spec.md §2.3).
 *
 * Deliberate differences from Linux and the RFC ("beyond the RFC"):
 *
 * - **Shared slots.** Linux appends every registration (no de-duplication), so with VAC each `kvmX.ko` load
 *   would append its ~6 MSRs again and the third module would hit `BUG_ON(kvm_nr_uret_msrs >= 16)`. Here
 *   registering an MSR that is already listed returns its slot and takes a reference;
 *   {@link UserReturnMsrs.release} drops one, and the slot is freed (its host value restored everywhere)
 *   with the last.
 * - **A 17th distinct MSR is an error** (`KernelError` `ENOSPC`, "no slot left"), not a `BUG_ON` crash.
 * - **A late registration snapshots the host value on every CPU.** Linux registers at vendor setup, before
 *   any CPU is enabled, and `kvm_user_return_msr_cpu_online` snapshots later; with VAC a module can load
 *   while CPUs are already enabled, and a slot whose `host` was never read would "restore" 0 into the MSR.
 *
 * MSRs are accessed through the simulated {@link Cpu}'s `rdmsrSafe` / `wrmsrSafe`; "this CPU" of the Linux
 * code is the `cpu` argument.
 *
 * @module
 */

import type { Cpu, MsrSlot } from '../cpu.js';
import { KernelError, UsageError } from '../errors.js';

/** `KVM_MAX_NR_USER_RETURN_MSRS` (`arch/x86/kvm/x86.c`; `arch/x86/kvm/vac.h` in the RFC): 16 slots. */
export const KVM_MAX_NR_USER_RETURN_MSRS = 16;

/** A listed MSR (`kvm_uret_msrs_list[slot]`) and how many registrations share it. */
export interface UretSlot {
  /** The slot index modules pass to `kvm_set_user_return_msr` (`VacPort.setUserReturnMsr`). */
  readonly slot: number;
  /** The MSR number. */
  readonly msr: number;
  /** Number of registrations sharing the slot (≥ 1). */
  readonly refs: number;
}

/** One slot's values on one CPU (`struct kvm_user_return_msrs.values[slot]`). */
export interface UretValue {
  /** The slot index. */
  readonly slot: number;
  /** The MSR number. */
  readonly msr: number;
  /** The host's value, restored on return to user space. */
  readonly host: bigint;
  /** The value the MSR holds now (the guest's while it differs from `host`). */
  readonly curr: bigint;
}

/** A guest value to load into a user-return MSR slot at vcpu_load (`VacPort.loadUserReturnMsrs`). */
export interface UretGuestValue {
  /** The slot index. */
  readonly slot: number;
  /** The guest's value (all 64 bits are taken). */
  readonly value: bigint;
}

/** One CPU's user-return state (`struct kvm_user_return_msrs`). */
export interface UretCpuState {
  /** Whether the CPU's return-to-user notifier is registered (a guest value is loaded). */
  readonly registered: boolean;
  /** The values of every listed slot, by slot. */
  readonly values: readonly UretValue[];
}

/** Mask of a 64-bit register. */
const U64 = (1n << 64n) - 1n;

/**
 * The user-return MSR list and every CPU's values, shared by all modules.
 */
export class UserReturnMsrs {
  /** The CPUs, indexed by CPU number. */
  readonly #cpus: readonly Cpu[];
  /** Registrations per slot (0 = free). */
  readonly #refs = new Uint32Array(KVM_MAX_NR_USER_RETURN_MSRS);
  /** `kvm_nr_uret_msrs`: one past the highest slot in use. */
  #nrUretMsrs = 0;
  /**
   * `kvm_uret_msrs_list`: the MSR of each slot (`undefined` for a freed slot), as an {@link MsrSlot} looked up
   * once, so the KVM_RUN path writes it without a hash lookup.
   */
  readonly #msrList: (MsrSlot | undefined)[] = new Array<MsrSlot | undefined>(KVM_MAX_NR_USER_RETURN_MSRS).fill(undefined);
  /**
   * `values[slot].host`, one column per slot indexed by CPU, made when the slot is first listed (a host of 8,192 CPUs
   * does not fill 16 × 8,192 values at VAC's load). Plain arrays of bigints rather than BigUint64Arrays: reading a
   * BigUint64Array element allocates a new BigInt, and KVM_RUN compares these twice.
   */
  readonly #host: bigint[][] = [];
  /** `values[slot].curr`, one column per slot indexed by CPU. */
  readonly #curr: bigint[][] = [];
  /** `registered` of every CPU (1 = notifier registered). */
  readonly #registered: Uint8Array;
  /** Faulting writes on the restore path (Linux's unchecked `wrmsrl` warns and goes on). */
  #restoreFaults = 0;
  /**
   * Per CPU, a count of the changes to its current values (a write of `set`, a restore, `cpuOnline`) and of the
   * slots freed (`release`): while it stays the same, every listed slot's `curr` on the CPU is what it was. (A slot
   * `add` lists is new: no loaded list names it.)
   */
  readonly #generation: Float64Array;
  /** Per CPU, the guest values {@link UserReturnMsrs.loadGuest} last loaded there in full, and at which generation. */
  readonly #loadedGuest: Array<ReadonlyArray<UretGuestValue> | undefined>;
  readonly #loadedAt: Float64Array;

  /**
   * @param cpus - the host's CPUs, indexed by CPU number (at least one: registration probes on CPU 0)
   * @throws UsageError when `cpus` is empty
   */
  constructor(cpus: readonly Cpu[]) {
    if (cpus.length === 0) throw new UsageError('ERR_NO_SUCH_CPU', 'UserReturnMsrs: the host has no CPU');
    this.#cpus = cpus;
    this.#registered = new Uint8Array(cpus.length);
    this.#generation = new Float64Array(cpus.length);
    this.#loadedGuest = new Array<ReadonlyArray<UretGuestValue> | undefined>(cpus.length).fill(undefined);
    this.#loadedAt = new Float64Array(cpus.length);
  }

  /** `kvm_nr_uret_msrs`: one past the highest slot in use (slots below it may be free after a release). */
  get nrSlots(): number {
    return this.#nrUretMsrs;
  }

  /** Number of faulting MSR writes while restoring host values (Linux: "unchecked MSR access error" WARN). */
  get uncheckedFaults(): number {
    return this.#restoreFaults;
  }

  /**
   * `kvm_add_user_return_msr(msr)`: list an MSR, or share its slot if it is listed already.
   *
   * A new MSR is probed on CPU 0 first (`rdmsrl_safe` then `wrmsrl_safe` of the same value), then its host
   * value is read on every CPU (beyond the RFC, see the module comment).
   *
   * @returns the slot index
   * @throws KernelError `ENOSPC` when 16 distinct MSRs are listed already — Linux `BUG_ON`s here; the error
   *   is our deliberate difference (docs/spec.md §2.3: "a 17th distinct MSR is an error, not a crash").
   * @throws KernelError `EIO` when the probe faults. Linux returns a bare `-1` (not meant as an errno, though
   *   numerically `-EPERM`) and callers only test `< 0` to treat the MSR as unsupported; EIO is what the
   *   `msr` driver returns for a faulting `rdmsr_safe`/`wrmsr_safe` (`arch/x86/kernel/msr.c`), the closest
   *   meaning.
   * @throws UsageError when `msr` is not a 32-bit MSR number
   */
  add(msr: number): number {
    this.#checkMsr(msr);
    const existing = this.find(msr);
    if (existing >= 0) {
      this.#refs[existing] = (this.#refs[existing] as number) + 1;
      return existing;
    }
    // The lowest free slot: every slot at or above kvm_nr_uret_msrs is free, so this is at most nrSlots.
    const slot = this.#msrList.indexOf(undefined);
    if (slot < 0) {
      throw new KernelError(
        'ENOSPC',
        'kvm_add_user_return_msr',
        `all ${KVM_MAX_NR_USER_RETURN_MSRS} user-return MSR slots are in use (MSR ${hex(msr)})`,
      );
    }
    // kvm_probe_user_return_msr(): preempt_disable(); ret = rdmsrl_safe(msr, &val); if (!ret) ret = wrmsrl_safe(msr, val);
    const cpu0 = this.#cpus[0] as Cpu;
    const val = cpu0.rdmsrSafe(msr);
    if (val === undefined || !cpu0.wrmsrSafe(msr, val)) {
      throw new KernelError('EIO', 'kvm_add_user_return_msr', `MSR ${hex(msr)} faults on CPU 0`);
    }
    const msrSlot = cpu0.msrSlot(msr);
    this.#msrList[slot] = msrSlot;
    this.#refs[slot] = 1;
    if (slot >= this.#nrUretMsrs) this.#nrUretMsrs = slot + 1;
    const cpus = this.#cpus;
    const host = new Array<bigint>(cpus.length);
    for (let cpu = 0; cpu < cpus.length; cpu++) host[cpu] = u64((cpus[cpu] as Cpu).rdmsrSlot(msrSlot) ?? 0n);
    this.#host[slot] = host;
    this.#curr[slot] = host.slice();
    return slot;
  }

  /**
   * Drop one registration of `msr`. With the last one the slot is freed: every CPU whose MSR still holds a
   * guest value gets its host value back first (so invariant 6 — every user-return MSR holds its host value
   * after all modules unload — holds), and the slot may be reused by a later {@link UserReturnMsrs.add}.
   * Other slots keep their indices. (Linux has no per-MSR unregister; v6.12's
   * `kvm_destroy_user_return_msrs` resets the whole list when the vendor module exits.)
   *
   * @throws UsageError when `msr` is not listed
   */
  release(msr: number): void {
    this.#checkMsr(msr);
    const slot = this.find(msr);
    if (slot < 0) throw new UsageError('ERR_UNKNOWN_NAME', `user-return MSR ${hex(msr)} is not registered`);
    const refs = (this.#refs[slot] as number) - 1;
    this.#refs[slot] = refs;
    if (refs > 0) return;
    const host = this.#host[slot] as bigint[];
    const curr = this.#curr[slot] as bigint[];
    for (let cpu = 0; cpu < this.#cpus.length; cpu++) {
      const h = host[cpu] as bigint;
      if (h !== curr[cpu]) this.#restore(cpu, slot, h);
    }
    this.#msrList[slot] = undefined;
    while (this.#nrUretMsrs > 0 && this.#msrList[this.#nrUretMsrs - 1] === undefined) this.#nrUretMsrs--;
    this.#changedEverywhere();
  }

  /** The slot list changed: every CPU's generation moves on. */
  #changedEverywhere(): void {
    const g = this.#generation;
    for (let cpu = 0; cpu < g.length; cpu++) g[cpu] = (g[cpu] as number) + 1;
  }

  /** `kvm_find_user_return_msr(msr)`: the slot of `msr`, or -1. */
  find(msr: number): number {
    for (let slot = 0; slot < this.#nrUretMsrs; slot++) if (this.#msrList[slot]?.msr === msr) return slot;
    return -1;
  }

  /** The MSR listed in `slot`, or `undefined` for a free slot. */
  msrAt(slot: number): number | undefined {
    return this.#msrList[slot]?.msr;
  }

  /**
   * `kvm_set_user_return_msr(slot, value, mask)` on `cpu`: load a guest value.
   *
   * The MSR gets `(value & mask) | (host & ~mask)`. Nothing happens when that equals the current value.
   * Otherwise it is written; the first write on a CPU registers its return-to-user notifier.
   *
   * @returns 0 on success; **1** when the write faults (as Linux: nothing changes, the caller decides)
   * @throws UsageError when `cpu` or `slot` is invalid
   */
  set(cpu: number, slot: number, value: bigint, mask: bigint): 0 | 1 {
    this.#checkCpu(cpu);
    const msrSlot = this.#checkSlot(slot);
    const curr = this.#curr[slot] as bigint[];
    // value = (value & mask) | (msrs->values[slot].host & ~mask);  (mask = all ones: the value itself)
    const v = BigInt.asUintN(64, mask === U64 ? value : (value & mask) | (((this.#host[slot] as bigint[])[cpu] as bigint) & ~mask));
    if (v === curr[cpu]) return 0;
    // err = wrmsrl_safe(kvm_uret_msrs_list[slot], value); if (err) return 1;
    if (!(this.#cpus[cpu] as Cpu).wrmsrSlot(msrSlot, v)) return 1;
    curr[cpu] = v;
    this.#generation[cpu] = (this.#generation[cpu] as number) + 1;
    // if (!msrs->registered) { msrs->urn.on_user_return = kvm_on_user_return; user_return_notifier_register(&msrs->urn); ... }
    this.#registered[cpu] = 1;
    return 0;
  }

  /**
   * A vCPU's guest values loaded on `cpu` at `vcpu_load` (`vmx_prepare_switch_to_guest` / `svm_prepare_switch_to_guest`):
   * {@link UserReturnMsrs.set} of each entry in order, with all mask bits (the results are not looked at, as the
   * callers in Linux do not look at them).
   *
   * When the same `entries` (the same array: a list whose values change must be a new one) were loaded on `cpu` in
   * full and none of the CPU's current values nor the slot list changed since, every `set` would find its value current
   * and change nothing: then nothing is done, one comparison instead of one per entry. That is the case when the
   * guest's values equal the host's (nothing was written, so the return to user space restored nothing) and when a vCPU
   * is loaded again without a return to user space in between (a preempted vCPU thread scheduled in again).
   * @throws UsageError when `cpu` or a slot is invalid
   */
  loadGuest(cpu: number, entries: ReadonlyArray<UretGuestValue>): void {
    this.#checkCpu(cpu);
    if (this.#loadedGuest[cpu] === entries && this.#loadedAt[cpu] === this.#generation[cpu]) return;
    this.#loadGuestValues(cpu, entries);
  }

  #loadGuestValues(cpu: number, entries: ReadonlyArray<UretGuestValue>): void {
    let faulted = false;
    for (let i = 0; i < entries.length; i++) {
      const e = entries[i] as UretGuestValue;
      if (this.set(cpu, e.slot, e.value, U64) !== 0) faulted = true;
    }
    // A faulting write is tried again at the next load, as each load's sets would.
    this.#loadedGuest[cpu] = faulted ? undefined : entries;
    this.#loadedAt[cpu] = this.#generation[cpu] as number;
  }

  /** Whether the CPU's return-to-user notifier is registered (some slot holds a guest value). */
  isRegistered(cpu: number): boolean {
    this.#checkCpu(cpu);
    return this.#registered[cpu] === 1;
  }

  /**
   * `kvm_on_user_return()`: the notifier callback, run when a task returns to user space on `cpu` (the host
   * calls it while {@link UserReturnMsrs.isRegistered}). Unregisters the notifier, then writes the host value
   * of every slot whose current value differs.
   */
  onUserReturn(cpu: number): void {
    this.#checkCpu(cpu);
    this.#onUserReturn(cpu);
  }

  /**
   * A task returns to user space on `cpu`: {@link UserReturnMsrs.onUserReturn} when the notifier is registered
   * ({@link UserReturnMsrs.isRegistered}), else nothing — one call and one CPU check on every KVM_RUN's way out.
   */
  returnToUser(cpu: number): void {
    this.#checkCpu(cpu);
    if (this.#registered[cpu] === 1) this.#onUserReturn(cpu);
  }

  #onUserReturn(cpu: number): void {
    // if (msrs->registered) { msrs->registered = false; user_return_notifier_unregister(urn); }
    this.#registered[cpu] = 0;
    for (let slot = 0; slot < this.#nrUretMsrs; slot++) {
      if (this.#msrList[slot] === undefined) continue;
      const host = (this.#host[slot] as bigint[])[cpu] as bigint;
      // if (values->host != values->curr) { wrmsrl(kvm_uret_msrs_list[slot], values->host); values->curr = values->host; }
      if (host !== (this.#curr[slot] as bigint[])[cpu]) this.#restore(cpu, slot, host);
    }
  }

  /**
   * `kvm_user_return_msr_cpu_online()`, run on per-CPU enable: read every listed MSR into both `host` and
   * `curr` (a faulting read gives 0, as `rdmsrl_safe` leaves it).
   */
  cpuOnline(cpu: number): void {
    this.#checkCpu(cpu);
    const c = this.#cpus[cpu] as Cpu;
    for (let slot = 0; slot < this.#nrUretMsrs; slot++) {
      const msrSlot = this.#msrList[slot];
      if (msrSlot === undefined) continue;
      const v = u64(c.rdmsrSlot(msrSlot) ?? 0n);
      (this.#host[slot] as bigint[])[cpu] = v;
      (this.#curr[slot] as bigint[])[cpu] = v;
    }
    this.#generation[cpu] = (this.#generation[cpu] as number) + 1;
  }

  /**
   * `drop_user_return_notifiers()`, run on per-CPU disable: if the notifier is registered, run it (restoring
   * the host values).
   */
  dropCpu(cpu: number): void {
    this.#checkCpu(cpu);
    if (this.#registered[cpu] === 1) this.onUserReturn(cpu);
  }

  /** The listed MSRs with their slots and reference counts, by slot. */
  slots(): UretSlot[] {
    const out: UretSlot[] = [];
    for (let slot = 0; slot < this.#nrUretMsrs; slot++) {
      const msr = this.#msrList[slot]?.msr;
      if (msr !== undefined) out.push({ slot, msr, refs: this.#refs[slot] as number });
    }
    return out;
  }

  /** The CPU's notifier flag and the host/current values of every listed slot. */
  cpuState(cpu: number): UretCpuState {
    this.#checkCpu(cpu);
    const values: UretValue[] = [];
    for (let slot = 0; slot < this.#nrUretMsrs; slot++) {
      const msr = this.#msrList[slot]?.msr;
      if (msr === undefined) continue;
      values.push({ slot, msr, host: (this.#host[slot] as bigint[])[cpu] as bigint, curr: (this.#curr[slot] as bigint[])[cpu] as bigint });
    }
    return { registered: this.#registered[cpu] === 1, values };
  }

  /** Write `host` back (Linux's unchecked `wrmsrl`: a fault is counted and ignored) and set `curr = host`. */
  #restore(cpu: number, slot: number, host: bigint): void {
    if (!(this.#cpus[cpu] as Cpu).wrmsrSlot(this.#msrList[slot] as MsrSlot, host)) this.#restoreFaults++;
    (this.#curr[slot] as bigint[])[cpu] = host;
    this.#generation[cpu] = (this.#generation[cpu] as number) + 1;
  }

  /** Throw a {@link UsageError} unless `cpu` is a CPU number of this host. */
  #checkCpu(cpu: number): void {
    if (!Number.isInteger(cpu) || cpu < 0 || cpu >= this.#cpus.length) throw this.#noCpu(cpu);
  }

  #noCpu(cpu: number): UsageError {
    return new UsageError('ERR_NO_SUCH_CPU', `CPU ${String(cpu)} is not in [0, ${this.#cpus.length - 1}]`);
  }

  /** The MSR of a listed slot; throws a {@link UsageError} for anything else. */
  #checkSlot(slot: number): MsrSlot {
    const msr = Number.isInteger(slot) && slot >= 0 && slot < this.#nrUretMsrs ? this.#msrList[slot] : undefined;
    if (msr === undefined) throw slotNotInUse(slot);
    return msr;
  }


  /** Throw a {@link UsageError} unless `msr` is a 32-bit MSR number. */
  #checkMsr(msr: number): void {
    if (!Number.isInteger(msr) || msr < 0 || msr > 0xffffffff) {
      throw new UsageError('ERR_OUT_OF_RANGE', `MSR ${String(msr)} is not a 32-bit MSR number`);
    }
  }
}

/** `0x…` form of an MSR number for messages. */
/** `value` as an unsigned 64-bit number; the same bigint when it already is one (no allocation: this runs per CPU). */
function u64(value: bigint): bigint {
  return value >= 0n && value <= U64 ? value : BigInt.asUintN(64, value);
}

function slotNotInUse(slot: number): UsageError {
  return new UsageError('ERR_INVALID_STATE', `user-return MSR slot ${String(slot)} is not in use`);
}

function hex(msr: number): string {
  return `0x${msr.toString(16)}`;
}
