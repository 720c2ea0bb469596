/**
 * The horizontal scale of a timeline picture: where an event's `seq` lands along the x axis, and what the axis
 * is labelled in.
 *
 * Two units: the logical clock (`seq`, one unit per event) and the host clock (`tick`, the scheduler's tick,
 * which is what the examples print). On the tick scale every tick of the stream gets the same width, and the
 * events of one tick are spread evenly over it in their order, so the picture stays in `seq` order (nothing is
 * drawn out of order) while its axis reads in the unit the console uses.
 *
 * @module
 */
import type { ClockPoint } from './timeline.js';

/** The unit of a timeline's x axis: the logical clock (`'seq'`) or the host clock (`'tick'`). */
export type TimelineAxis = 'seq' | 'tick';

/** Where events land along a timeline's x axis (see {@link timeScale}). */
export interface TimeScale {
  /** The unit of the axis. */
  readonly unit: TimelineAxis;
  /** The first value of the axis (a seq or a tick). */
  readonly from: number;
  /** The last value of the axis (exclusive end: one past the last seq, or the end of the last tick). */
  readonly to: number;
  /** The axis value where the event numbered `seq` sits (within `[from, to]`). */
  valueOf(seq: number): number;
}

/** The span of a stream and where its ticks begin, as {@link buildTimeline} reports them. */
export interface ClockSource {
  /** The first `seq`. */
  readonly start: number;
  /** One past the last `seq`. */
  readonly end: number;
  /** The first `seq` of each tick, by `seq`. */
  readonly clock: readonly ClockPoint[];
}

/**
 * The scale of a timeline: `'tick'` by default when the stream spans more than one tick (a run driven by the
 * scheduler), `'seq'` otherwise (all of it happened within one tick, for example direct `KVM_RUN` calls).
 *
 * @param tl - the timeline's span and clock
 * @param unit - the axis unit, or `undefined` for the default
 */
export function timeScale(tl: ClockSource, unit?: TimelineAxis): TimeScale {
  const clock = tl.clock;
  const first = clock[0];
  const last = clock[clock.length - 1];
  const useTicks = unit === 'tick' || (unit === undefined && clock.length > 1);
  if (!useTicks || first === undefined || last === undefined) {
    return { unit: 'seq', from: tl.start, to: tl.end, valueOf: (seq) => Math.min(tl.end, Math.max(tl.start, seq)) };
  }
  const to = last.tick + 1;
  const valueOf = (seq: number): number => {
    if (seq <= first.seq) return first.tick;
    if (seq >= tl.end) return to;
    // The last tick that began at or before `seq` (binary search: the clock is sorted by seq).
    let lo = 0;
    let hi = clock.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if ((clock[mid] as ClockPoint).seq <= seq) lo = mid;
      else hi = mid - 1;
    }
    const here = clock[lo] as ClockPoint;
    const nextSeq = clock[lo + 1]?.seq ?? tl.end;
    return here.tick + (seq - here.seq) / (nextSeq - here.seq);
  };
  return { unit: 'tick', from: first.tick, to, valueOf };
}
