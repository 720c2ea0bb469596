/**
 * Simulated time for the timer devices (PIT, LAPIC timer) and the one delayed action of the IOAPIC.
 *
 * **Time is a `bigint` count of nanoseconds of simulated time**, passed by the caller to every operation whose
 * result depends on it (a PIT counter read, a LAPIC TMICT write, …). The devices never read a clock of their
 * own: the same calls with the same times give the same results. Time may stand still but must not go back;
 * a device given an earlier time than it has already seen throws a `UsageError`.
 *
 * A device that has something to do at a later time says when through `nextDeadline()`; the caller then calls
 * `advance(now)` at or after that time, and the device runs every expiry due by `now`, in order, each at its own
 * expiry time (so a periodic timer advanced across three periods fires three times, as three hrtimer
 * callbacks would have).
 *
 * @module
 */

import { UsageError } from '@vac/core';

/** Nanoseconds per second. */
export const NSEC_PER_SEC = 1_000_000_000n;

/** `mul_u64_u32_div(a, mul, div)`: `a * mul / div` without intermediate overflow (truncated). */
export function mulDiv(a: bigint, mul: bigint, div: bigint): bigint {
  return (a * mul) / div;
}

/** A time argument checked to be a non-negative bigint. */
export function checkTime(now: unknown, what = 'now'): asserts now is bigint {
  if (typeof now !== 'bigint') throw new UsageError('ERR_INVALID_ARG', `${what} must be a bigint of nanoseconds`);
  if (now < 0n) throw new UsageError('ERR_OUT_OF_RANGE', `${what} must not be negative`);
}

/**
 * The latest time a device has seen; refuses an earlier one. Shared by every timed device so that "time does
 * not go back" is one rule.
 */
export class DeviceClock {
  #last = 0n;

  /** The latest time seen. */
  get last(): bigint {
    return this.#last;
  }

  /** Record `now` (must be ≥ every earlier time) and return it. */
  see(now: bigint): bigint {
    checkTime(now);
    if (now < this.#last) {
      throw new UsageError('ERR_OUT_OF_RANGE', `simulated time went back: ${String(now)} ns after ${String(this.#last)} ns`);
    }
    this.#last = now;
    return now;
  }
}

// Every SimTimer's deadline changes counted (SimTimer.changes).
let timerChanges = 0;

/**
 * A one-shot timer in simulated time, the model of a Linux `hrtimer`: it is armed with an absolute expiry and
 * stays armed until it fires or is cancelled. Like an hrtimer, its expiry stays readable after it fired or was
 * cancelled (`hrtimer_get_remaining` keeps counting from it), which the PIT's counter relies on.
 */
export class SimTimer {
  #expires = 0n;
  #armed = false;

  /**
   * How many times any timer's deadline may have changed (armed, re-armed, moved, cancelled, taken): a number that
   * changes with every call that can change some {@link SimTimer.deadline}. A caller that kept the earliest deadline
   * of its devices together with this count knows that deadline still holds while the count is the same.
   */
  static get changes(): number {
    return timerChanges;
  }

  /** The absolute expiry last set (kept after firing or cancelling, as `hrtimer_get_expires`). */
  get expires(): bigint {
    return this.#expires;
  }

  /** Whether the timer is armed (`hrtimer_active`). */
  get armed(): boolean {
    return this.#armed;
  }

  /** Arm for `expires` (`hrtimer_start`, absolute mode). */
  start(expires: bigint): void {
    this.#expires = expires;
    this.#armed = true;
    timerChanges++;
  }

  /** Set the expiry without arming (`hrtimer_set_expires`). */
  setExpires(expires: bigint): void {
    this.#expires = expires;
    timerChanges++;
  }

  /** Disarm; returns whether it was armed (`hrtimer_cancel`). */
  cancel(): boolean {
    const was = this.#armed;
    this.#armed = false;
    timerChanges++;
    return was;
  }

  /** `hrtimer_get_remaining`: expiry minus `now` (negative once past). */
  remaining(now: bigint): bigint {
    return this.#expires - now;
  }

  /** The expiry if armed and due by `now`, else `undefined`; disarms it (the callback decides whether to re-arm). */
  takeDue(now: bigint): bigint | undefined {
    if (!this.#armed || this.#expires > now) return undefined;
    this.#armed = false;
    timerChanges++;
    return this.#expires;
  }

  /** The expiry if armed. */
  deadline(): bigint | undefined {
    return this.#armed ? this.#expires : undefined;
  }
}

/** The earliest of some optional deadlines. */
export function earliest(...deadlines: (bigint | undefined)[]): bigint | undefined {
  let min: bigint | undefined;
  for (const d of deadlines) if (d !== undefined && (min === undefined || d < min)) min = d;
  return min;
}
