/**
 * The local APIC timer, Linux's `struct kvm_timer` and its functions in arch/x86/kvm/lapic.c: one-shot,
 * periodic and TSC-deadline modes, counted in simulated time (see `time.ts`).
 *
 * Modelled as KVM's software timer (`start_sw_period`, `start_sw_tscdeadline`, `apic_timer_fn`): an expiry
 * raises `pending` and kicks the vCPU; the interrupt is delivered through LVTT when the vCPU next checks
 * (`kvm_inject_apic_timer_irqs`). Simplified: the VMX preemption timer and posted timer interrupts (same
 * deadlines, other plumbing) are not modelled, and `timer_advance_ns` is 0 — Linux arms a TSC-deadline timer
 * up to 1 µs early and busy-waits to the deadline before entering the guest, so the guest sees the deadline.
 *
 * @module
 */

import type { ApicRegs } from './apic-regs.js';
import {
  APIC_LVT_TIMER_ONESHOT,
  APIC_LVT_TIMER_PERIODIC,
  APIC_LVT_TIMER_TSCDEADLINE,
  APIC_LVTT,
  APIC_TDCR,
  APIC_TMCCT,
  APIC_TMICT,
  MIN_TIMER_PERIOD_US,
} from './constants.js';
import { SimTimer } from './time.js';

/** What the timer needs from its APIC and vCPU. */
export interface LapicTimerOwner {
  readonly regs: ApicRegs;
  /** `kvm->arch.apic_bus_cycle_ns`. */
  readonly busCycleNs: number;
  /** The guest TSC at `now` (`kvm_read_l1_tsc(vcpu, rdtsc())`). */
  guestTsc(now: bigint): bigint;
  /** `vcpu->arch.virtual_tsc_khz` (0: unknown, TSC deadline never arms). */
  tscKhz(): number;
  /** KVM_REQ_UNBLOCK + `kvm_vcpu_kick` after an expiry from the timer callback. */
  kickForTimer(): void;
}

/** `struct kvm_timer` and the functions that drive it. */
export class LapicTimer {
  /** `timer_mode`: the LVTT mode bits in effect. */
  mode = APIC_LVT_TIMER_ONESHOT;
  /** `timer_mode_mask`: 0 until KVM_SET_CPUID, then periodic (and TSC deadline when the CPUID has it). */
  modeMask = 0;
  /** `period` in ns (0: stopped). */
  period = 0n;
  /** `target_expiration`, absolute ns. */
  targetExpiration = 0n;
  /** `tscdeadline` in guest TSC cycles. */
  tscdeadline = 0n;
  /** `expired_tscdeadline`. */
  expiredTscdeadline = 0n;
  /** `pending`: expiries not yet injected (0 or 1: `apic_timer_expired` ignores an expiry while one is pending). */
  pending = 0;
  /** `divide_count`. */
  divideCount = 2;
  readonly #hrtimer = new SimTimer();
  readonly #owner: LapicTimerOwner;

  constructor(owner: LapicTimerOwner) {
    this.#owner = owner;
  }

  get isPeriodic(): boolean {
    return this.mode === APIC_LVT_TIMER_PERIODIC;
  }

  get isOneshot(): boolean {
    return this.mode === APIC_LVT_TIMER_ONESHOT;
  }

  get isTscDeadline(): boolean {
    return this.mode === APIC_LVT_TIMER_TSCDEADLINE;
  }

  /** When the hrtimer fires next. */
  deadline(): bigint | undefined {
    return this.#hrtimer.deadline();
  }

  /** `update_divide_count`. */
  updateDivideCount(): void {
    const tmp1 = this.#owner.regs.get(APIC_TDCR) & 0xf;
    const tmp2 = ((tmp1 & 0x3) | ((tmp1 & 0x8) >> 1)) + 1;
    this.divideCount = 1 << (tmp2 & 0x7);
  }

  /** `tmict_to_ns`. */
  #countToNs(count: number): bigint {
    return BigInt(count >>> 0) * BigInt(this.#owner.busCycleNs) * BigInt(this.divideCount);
  }

  /** `nsec_to_cycles` (exact `ns * khz / 10^6`; Linux scales with a mult/shift pair). */
  #nsToCycles(ns: bigint): bigint {
    return (ns * BigInt(this.#owner.tscKhz())) / 1_000_000n;
  }

  /** `limit_periodic_timer_frequency`. */
  #limitPeriod(): void {
    const min = BigInt(MIN_TIMER_PERIOD_US) * 1000n;
    if (this.isPeriodic && this.period !== 0n && this.period < min) this.period = min;
  }

  /** `cancel_apic_timer`. */
  cancel(): void {
    this.#hrtimer.cancel();
    this.pending = 0;
  }

  /** `hrtimer_cancel` alone. */
  cancelHrtimer(): void {
    this.#hrtimer.cancel();
  }

  /** `apic_update_lvtt`: follow the LVTT mode bits. */
  updateLvtt(): void {
    const mode = this.#owner.regs.get(APIC_LVTT) & this.modeMask;
    if (this.mode === mode) return;
    if (this.isTscDeadline !== (mode === APIC_LVT_TIMER_TSCDEADLINE)) {
      this.cancel();
      this.#owner.regs.set(APIC_TMICT, 0);
      this.period = 0n;
      this.tscdeadline = 0n;
    }
    this.mode = mode;
    this.#limitPeriod();
  }

  /** `apic_get_tmcct`: the current count at `now`. */
  currentCount(now: bigint): number {
    if (this.#owner.regs.get(APIC_TMICT) === 0 || this.period === 0n) return 0;
    let remaining = this.targetExpiration - now;
    if (remaining < 0n) remaining = 0n;
    const ns = remaining % this.period;
    return Number(ns / (BigInt(this.#owner.busCycleNs) * BigInt(this.divideCount)));
  }

  /** `apic_timer_expired`. */
  #expired(fromTimerFn: boolean): void {
    if (this.pending) return;
    if (this.isTscDeadline) this.expiredTscdeadline = this.tscdeadline;
    this.pending++;
    if (fromTimerFn) this.#owner.kickForTimer();
  }

  /** `set_target_expiration`. */
  #setTargetExpiration(now: bigint, countReg: number): boolean {
    const regs = this.#owner.regs;
    this.period = this.#countToNs(regs.get(APIC_TMICT));
    if (this.period === 0n) {
      this.tscdeadline = 0n;
      return false;
    }
    this.#limitPeriod();
    let deadline = this.period;
    if ((this.isPeriodic || this.isOneshot) && countReg !== APIC_TMICT) {
      deadline = this.#countToNs(regs.get(countReg));
      if (deadline <= 0n) {
        deadline = this.isPeriodic ? this.period : 0n;
      } else if (deadline > this.period) {
        regs.set(countReg, 0);
        deadline = this.period;
      }
    }
    this.tscdeadline = this.#owner.guestTsc(now) + this.#nsToCycles(deadline);
    this.targetExpiration = now + deadline;
    return true;
  }

  /** `advance_periodic_target_expiration`. */
  #advancePeriodic(now: bigint): void {
    this.targetExpiration += this.period;
    if (this.targetExpiration < now) this.targetExpiration = now;
    this.tscdeadline = this.#owner.guestTsc(now) + this.#nsToCycles(this.targetExpiration - now);
  }

  /** `start_sw_period`. */
  #startSwPeriod(now: bigint): void {
    if (this.period === 0n) return;
    if (now > this.targetExpiration) {
      this.#expired(false);
      if (this.isOneshot) return;
      this.#advancePeriodic(now);
    }
    this.#hrtimer.start(this.targetExpiration);
  }

  /** `start_sw_tscdeadline`. */
  #startSwTscDeadline(now: bigint): void {
    const khz = this.#owner.tscKhz();
    if (this.tscdeadline === 0n || khz === 0) return;
    const guestTsc = this.#owner.guestTsc(now);
    if (this.tscdeadline > guestTsc) {
      const ns = ((this.tscdeadline - guestTsc) * 1_000_000n) / BigInt(khz);
      if (ns > 0n) {
        this.#hrtimer.start(now + ns);
        return;
      }
    }
    this.#expired(false);
  }

  /** `restart_apic_timer` (software timer: `start_sw_timer`). */
  restart(now: bigint): void {
    if (!this.isPeriodic && this.pending) return;
    if (this.isPeriodic || this.isOneshot) this.#startSwPeriod(now);
    else if (this.isTscDeadline) this.#startSwTscDeadline(now);
  }

  /** `__start_apic_timer(apic, countReg)`. */
  start(now: bigint, countReg = APIC_TMICT): void {
    this.pending = 0;
    if ((this.isPeriodic || this.isOneshot) && !this.#setTargetExpiration(now, countReg)) return;
    this.restart(now);
  }

  /** The TDCR write path: `update_target_expiration` then restart. */
  divisorChanged(now: bigint, oldDivisor: number): void {
    if (this.divideCount === oldDivisor || this.period === 0n) return;
    this.#hrtimer.cancel();
    this.period = this.#countToNs(this.#owner.regs.get(APIC_TMICT));
    this.#limitPeriod();
    let remaining = this.targetExpiration - now;
    if (remaining < 0n) remaining = 0n;
    const next = (remaining * BigInt(this.divideCount)) / BigInt(oldDivisor);
    this.tscdeadline += this.#nsToCycles(next) - this.#nsToCycles(remaining);
    this.targetExpiration = now + next;
    this.restart(now);
  }

  /** `kvm_set_lapic_tscdeadline_msr` once the mode check passed. */
  setTscDeadline(now: bigint, value: bigint): void {
    this.#hrtimer.cancel();
    this.tscdeadline = value;
    this.start(now);
  }

  /**
   * Run the hrtimer callbacks due by `now` (`apic_timer_fn`), each at its expiry. While an expiry is pending a
   * periodic timer's further expiries only move the target (as `apic_timer_expired` returns early), so they
   * are stepped over in one go.
   */
  advance(now: bigint): void {
    for (;;) {
      const at = this.#hrtimer.takeDue(now);
      if (at === undefined) return;
      this.#expired(true);
      if (!this.isPeriodic || this.period === 0n) return;
      this.#advancePeriodic(at);
      if (this.pending && this.targetExpiration <= now) {
        const skipped = (now - this.targetExpiration) / this.period;
        const last = this.targetExpiration + skipped * this.period;
        this.targetExpiration = last;
        this.#advancePeriodic(last);
      }
      this.#hrtimer.setExpires(this.targetExpiration);
      this.#hrtimer.start(this.targetExpiration);
    }
  }

  /** After LVTT delivery (`kvm_apic_inject_pending_timer_irqs`): a one-shot or deadline timer is spent. */
  delivered(): void {
    if (this.isTscDeadline) {
      this.tscdeadline = 0n;
    } else if (this.isOneshot) {
      this.tscdeadline = 0n;
      this.targetExpiration = 0n;
    }
  }

  /** The timer's registers as the current-count read sees them (for `TMCCT` in KVM_GET_LAPIC). */
  tmcct(now: bigint): number {
    return this.isTscDeadline ? 0 : this.currentCount(now);
  }

  /** Which register holds the current count (for `__start_apic_timer` from KVM_SET_LAPIC). */
  static readonly CURRENT_COUNT_REG = APIC_TMCCT;
}
