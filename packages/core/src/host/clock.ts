/**
 * The host's simulated time: one nanosecond clock, since boot, that everything timed reads (the guest TSC, a
 * hypervisor's device timers, `ktime_get`-like host clocks). It is a discrete-event clock, as a simulator's:
 *
 * - **guest execution** moves it forward at a nominal rate ({@link SimClock.nsPerInstruction}, default 1 ns per
 *   instruction), when a hypervisor reports what it executed ({@link SimClock.advanceBy});
 * - **the scheduler** moves it forward by at least one period ({@link SimClock.tickNs}, default 1 ms: a 1000 Hz
 *   tick) at each tick;
 * - when every thread is asleep, the scheduler **jumps** it to the next deadline a timer registered
 *   ({@link SimClock.nextDeadline}), so that a halted guest waiting for its timer costs one tick, not millions.
 *
 * Timers register as {@link ClockTimer}s (`clock.timer(fire)`, then `t.set(deadline)`); whenever the clock moves,
 * every timer whose deadline has come fires, earliest first, with the clock's time (never earlier than its
 * deadline). Nothing reads a wall clock: the same calls give the same times. The clock never goes back.
 *
 * Time is kept as a `number` of ns (exact up to 2^53 ns, about 104 days of simulated time; beyond, a
 * `UsageError`), and given as a `bigint` to the code that computes with it (`now`).
 *
 * @module
 */
import { UsageError } from '../errors.js';
import { makeUndo, type Unsubscribe } from '../events.js';

/** A timer on the {@link SimClock}: armed with an absolute deadline, it fires once the clock reaches it. */
export interface ClockTimer {
  /** Arm (or move) the timer: it fires once the clock is at or past `deadline` (ns since boot). */
  set(deadline: bigint | undefined): void;
  /** The deadline it is armed for, if any. */
  readonly deadline: bigint | undefined;
  /** Unregister (disarm for good). */
  readonly remove: Unsubscribe;
}

interface TimerSlot {
  at: number;
  readonly fire: (now: bigint) => void;
  alive: boolean;
}

const MAX_NS = Number.MAX_SAFE_INTEGER;

/** Arm `slot` of `clock` for `at` ns (set by {@link SimClock}, which alone reaches its fields). */
let armSlot: (clock: SimClock, slot: TimerSlot, at: number) => void;
/** Take `slot` off `clock` for good. */
let removeSlot: (clock: SimClock, slot: TimerSlot) => void;

/** A host's simulated clock (`host.clock`). */
export class SimClock {
  /** Nanoseconds each guest instruction takes at the nominal rate (a non-negative safe integer; default 1). */
  #nsPerInstruction = 1;
  /** The scheduler tick period in ns (a positive safe integer; default 1,000,000: 1 ms). */
  #tickNs = 1_000_000;
  #ns = 0;
  #lastTick = 0;
  /** The earliest deadline of an armed timer (Infinity when none): what the hot path compares with. */
  #due = Infinity;
  #dueDirty = false;
  readonly #timers: TimerSlot[] = [];
  #firing = false;

  /** Nanoseconds since boot. */
  get now(): bigint {
    return BigInt(this.#ns);
  }

  /** Nanoseconds since boot, as a number (exact: the clock stays below 2^53). */
  get nowNs(): number {
    return this.#ns;
  }

  /** Nanoseconds per guest instruction at the nominal rate. */
  get nsPerInstruction(): number {
    return this.#nsPerInstruction;
  }

  set nsPerInstruction(v: number) {
    if (!Number.isSafeInteger(v) || v < 0) throw new UsageError('ERR_OUT_OF_RANGE', `clock.nsPerInstruction must be a non-negative safe integer, got ${String(v)}`);
    this.#nsPerInstruction = v;
  }

  /** The scheduler tick period in ns. */
  get tickNs(): number {
    return this.#tickNs;
  }

  set tickNs(v: number) {
    if (!Number.isSafeInteger(v) || v < 1) throw new UsageError('ERR_OUT_OF_RANGE', `clock.tickNs must be a positive safe integer, got ${String(v)}`);
    this.#tickNs = v;
  }

  /**
   * `n` guest instructions were executed: the clock moves `n × nsPerInstruction` ns forward, and due timers fire.
   * (The hot path: one multiply-add and one compare when no timer is due.)
   */
  advanceInstructions(n: number): void {
    const ns = this.#ns + n * this.#nsPerInstruction;
    this.#ns = ns;
    if (ns >= this.#due || this.#dueDirty) this.#check(ns);
  }

  /** Move the clock `ns` nanoseconds forward (a non-negative safe integer); due timers fire. */
  advanceBy(ns: number): void {
    if (!Number.isSafeInteger(ns) || ns < 0) throw new UsageError('ERR_OUT_OF_RANGE', `clock.advanceBy: ${String(ns)} is not a non-negative safe integer of ns`);
    this.#move(this.#ns + ns);
  }

  /** Move the clock to `t` ns since boot (not earlier than now); due timers fire. */
  advanceTo(t: bigint): void {
    if (typeof t !== 'bigint') throw new UsageError('ERR_INVALID_ARG', 'clock.advanceTo: the time must be a bigint of ns');
    if (t < BigInt(this.#ns)) throw new UsageError('ERR_OUT_OF_RANGE', `clock.advanceTo: ${String(t)} ns is before now (${this.#ns} ns); the clock does not go back`);
    this.#move(Number(t));
  }

  /**
   * @internal The scheduler's tick: at least one period after the previous tick. With `idle` (every thread asleep)
   * the clock first jumps to the next timer deadline, if there is one later than that.
   */
  tick(idle: boolean): void {
    let t = Math.max(this.#ns, this.#lastTick + this.#tickNs);
    if (idle) {
      const next = this.#nextDue();
      if (next !== Infinity && next > t) t = next;
    }
    this.#lastTick = t;
    this.#move(t);
  }

  /** The earliest deadline of an armed timer, or `undefined`. */
  nextDeadline(): bigint | undefined {
    const d = this.#nextDue();
    return d === Infinity ? undefined : BigInt(d);
  }

  /**
   * Register a timer whose callback runs with the clock's time once its deadline has come. The callback re-arms
   * it if it has more to do.
   */
  timer(fire: (now: bigint) => void): ClockTimer {
    const slot: TimerSlot = { at: Infinity, fire, alive: true };
    this.#timers.push(slot);
    return new SlotTimer(this, slot);
  }

  static {
    armSlot = (clock, slot, at) => {
      if (slot.at === clock.#due) clock.#dueDirty = true;
      slot.at = at;
      if (at < clock.#due) clock.#due = at;
    };
    removeSlot = (clock, slot) => {
      slot.alive = false;
      slot.at = Infinity;
      const i = clock.#timers.indexOf(slot);
      if (i >= 0) clock.#timers.splice(i, 1);
      clock.#dueDirty = true;
    };
  }

  #move(t: number): void {
    if (t > MAX_NS) throw new UsageError('ERR_OUT_OF_RANGE', 'the simulated clock would pass 2^53 ns');
    if (t > this.#ns) this.#ns = t;
    this.#check(this.#ns);
  }

  #nextDue(): number {
    if (this.#dueDirty) {
      let d = Infinity;
      for (const s of this.#timers) if (s.at < d) d = s.at;
      this.#due = d;
      this.#dueDirty = false;
    }
    return this.#due;
  }

  /** Fire every timer due by `now`, earliest first (a timer a callback re-arms into the past fires again). */
  #check(now: number): void {
    if (this.#firing) return;
    this.#firing = true;
    try {
      for (let n = 0; ; n++) {
        if (this.#nextDue() > now) return;
        if (n > 1_000_000) throw new Error('a clock timer keeps re-arming itself in the past');
        let first: TimerSlot | undefined;
        for (const s of this.#timers) if (s.at <= now && (first === undefined || s.at < first.at)) first = s;
        if (first === undefined) return;
        first.at = Infinity;
        this.#dueDirty = true;
        first.fire(BigInt(now));
      }
    } finally {
      this.#firing = false;
    }
  }
}

/**
 * The {@link ClockTimer} of one slot. A class, not an object literal: a literal with a getter gets a hidden class of
 * its own per object, which V8 keeps in old space until a full collection, and with it the getter's closure and all
 * it reaches (the callback, so a destroyed VM's whole irqchip) — every young object reachable from it then survived
 * the scavenges and was promoted.
 */
class SlotTimer implements ClockTimer {
  readonly #clock: SimClock;
  readonly #slot: TimerSlot;
  readonly remove: Unsubscribe;

  constructor(clock: SimClock, slot: TimerSlot) {
    this.#clock = clock;
    this.#slot = slot;
    this.remove = makeUndo(() => removeSlot(clock, slot));
  }

  set(deadline: bigint | undefined): void {
    const slot = this.#slot;
    if (!slot.alive) return;
    const at = deadline === undefined ? Infinity : Math.min(Number(deadline), MAX_NS);
    if (at === slot.at) return;
    armSlot(this.#clock, slot, at);
  }

  get deadline(): bigint | undefined {
    const at = this.#slot.at;
    return at === Infinity ? undefined : BigInt(at);
  }
}
