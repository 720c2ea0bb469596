/**
 * The measuring side of the benchmarks: tinybench runs, per-operation numbers, result rows and target
 * checks.
 *
 * tinybench times every call of a task function with two clock reads, which costs tens of nanoseconds: more
 * than many of the operations measured here. So a task function runs a batch of `opsPerCall` operations and
 * the harness divides: `ns/op = median latency of one call / opsPerCall` (the mean is kept too). Setup that must not be timed goes in
 * `beforeEach` / `afterEach` (tinybench runs them outside the clock reads).
 *
 * Nothing here asserts on time. {@link check} only records whether a number met a target; correctness
 * checks (same IDs, the right exit) throw, because a benchmark that measures the wrong thing is a bug.
 */
import { Bench } from 'tinybench';

/** How long to measure: the full run or the quick (CI) run. */
export interface Budget {
  /** True in `--quick` mode: tiny budgets, numbers not meaningful. */
  readonly quick: boolean;
  /** Minimum time of one micro-benchmark task (ms). */
  readonly time: number;
  /** Minimum number of calls of one task. */
  readonly iterations: number;
  /** Warm-up time (ms). */
  readonly warmupTime: number;
  /** Minimum warm-up calls. */
  readonly warmupIterations: number;
}

/** The budgets of a full run (about 2 minutes in all on a 2-core machine) and of `--quick`. */
export function budget(quick: boolean): Budget {
  return quick
    ? { quick, time: 15, iterations: 5, warmupTime: 5, warmupIterations: 2 }
    : { quick, time: 500, iterations: 20, warmupTime: 100, warmupIterations: 10 };
}

/** One measured row. */
export interface Row {
  /** Benchmark group, e.g. `1. VPID allocator`. */
  readonly group: string;
  /** What ran, e.g. `VpidAllocator (ours)`. */
  readonly name: string;
  /** The case, e.g. `60,000 held`. */
  readonly variant: string;
  /** Operations per second (1e9 / nsPerOp). */
  readonly opsPerSec: number;
  /** Nanoseconds per operation (median of the timed calls). */
  readonly nsPerOp: number;
  /** Nanoseconds per operation (mean of the timed calls). */
  readonly meanNsPerOp: number;
  /** Relative margin of error of the mean, in percent (tinybench's `rme`), or 0 when not sampled. */
  readonly rme: number;
  /** Number of timed calls. */
  readonly samples: number;
  /** The row this one is compared with (its `name` and `variant`), or `undefined` for a baseline itself. */
  readonly baseline: string | undefined;
  /** `nsPerOp / baseline nsPerOp` (1 for the baseline itself). */
  readonly ratio: number;
  /** The unit of "op" when it is not obvious (`per CPU`, `bytes per VM`, …). */
  readonly unit: string;
  /** A short note (what exactly is measured). */
  readonly note: string;
}

/** One target of the issue, with the number that decides it. */
export interface TargetCheck {
  /** The target as the issue states it. */
  readonly target: string;
  /** The measured number, formatted. */
  readonly measured: string;
  /** Whether it was met. */
  readonly met: boolean;
  /** By how much (e.g. `3.1× under the limit`, `2.4× over`). */
  readonly margin: string;
}

/** A measurement before it becomes a row. */
export interface Measurement {
  /** Nanoseconds per operation: the median over the timed calls (robust to other load on the machine). */
  readonly nsPerOp: number;
  /** Nanoseconds per operation: the mean over the timed calls (includes every GC pause and preemption). */
  readonly meanNsPerOp: number;
  /** Relative margin of error (%). */
  readonly rme: number;
  /** Timed calls. */
  readonly samples: number;
}

/** Options of {@link measure}. */
export interface MeasureOptions {
  /** Operations per task call (the batch size). Default 1. */
  readonly opsPerCall?: number;
  /** Untimed, before every call. */
  readonly beforeEach?: (() => void) | undefined;
  /** Untimed, after every call. */
  readonly afterEach?: (() => void) | undefined;
  /** Override the budget's time (ms). */
  readonly time?: number;
  /** Override the budget's minimum iterations. */
  readonly iterations?: number;
  /** Override the warm-up time (ms). */
  readonly warmupTime?: number;
  /** Override the warm-up iterations. */
  readonly warmupIterations?: number;
}

/**
 * Run `fn` under tinybench and return the time per operation. `fn` must do `opsPerCall` operations per
 * call. Throws what `fn` throws.
 */
export function measure(b: Budget, name: string, fn: () => unknown, opts: MeasureOptions = {}): Measurement {
  const bench = new Bench({
    name,
    time: opts.time ?? b.time,
    iterations: opts.iterations ?? b.iterations,
    warmupTime: opts.warmupTime ?? b.warmupTime,
    warmupIterations: opts.warmupIterations ?? b.warmupIterations,
    throws: true,
  });
  const hooks: { beforeEach?: () => void; afterEach?: () => void } = {};
  if (opts.beforeEach !== undefined) hooks.beforeEach = opts.beforeEach;
  if (opts.afterEach !== undefined) hooks.afterEach = opts.afterEach;
  // tinybench calls a task function once when it is added, to see whether it returns a promise; that call
  // would run outside beforeEach/afterEach and disturb stateful benchmarks, so it is turned into a no-op.
  let armed = false;
  bench.add(name, () => (armed ? fn() : undefined), hooks);
  armed = true;
  bench.runSync();
  const task = bench.tasks[0];
  const r = task?.result;
  if (r === undefined) throw new Error(`${name}: tinybench produced no result`);
  if (r.error !== undefined) throw r.error;
  const perCall = opts.opsPerCall ?? 1;
  // tinybench reports latencies in milliseconds.
  const median = r.latency.p50 ?? r.latency.mean;
  return { nsPerOp: (median * 1e6) / perCall, meanNsPerOp: (r.latency.mean * 1e6) / perCall, rme: r.latency.rme, samples: r.latency.samples.length };
}

/** Build a row from a measurement; `base` is the baseline's measurement (or `undefined` for a baseline). */
export function row(
  group: string,
  name: string,
  variant: string,
  m: Measurement,
  base: { readonly label: string; readonly m: Measurement } | undefined,
  extra: { readonly unit?: string; readonly note?: string } = {},
): Row {
  return {
    group,
    name,
    variant,
    opsPerSec: 1e9 / m.nsPerOp,
    nsPerOp: m.nsPerOp,
    meanNsPerOp: m.meanNsPerOp,
    rme: m.rme,
    samples: m.samples,
    baseline: base?.label,
    ratio: base === undefined ? 1 : m.nsPerOp / base.m.nsPerOp,
    unit: extra.unit ?? 'op',
    note: extra.note ?? '',
  };
}

/**
 * Record whether `value` is at most `limit` (`lowerIsBetter`) or at least `limit`: no assertion, only the
 * verdict and the margin for the report.
 */
export function check(target: string, measured: string, value: number, limit: number, lowerIsBetter = true): TargetCheck {
  const met = lowerIsBetter ? value <= limit : value >= limit;
  const factor = lowerIsBetter ? limit / value : value / limit;
  const margin = met ? `met with ${fmtFactor(factor)} to spare` : `missed: ${fmtFactor(1 / factor)} over`;
  return { target, measured, met, margin };
}

/** `2.35×` / `12×` / `1.04×`. */
export function fmtFactor(f: number): string {
  return `${f >= 10 ? f.toFixed(0) : f.toFixed(2)}×`;
}

/** Nanoseconds, human-sized: `4.12 ns`, `812 ns`, `12.3 µs`, `4.56 ms`. */
export function fmtNs(ns: number): string {
  if (ns < 10) return `${ns.toFixed(2)} ns`;
  if (ns < 1000) return `${ns.toFixed(ns < 100 ? 1 : 0)} ns`;
  if (ns < 1e6) return `${(ns / 1e3).toFixed(ns < 1e4 ? 2 : 1)} µs`;
  if (ns < 1e9) return `${(ns / 1e6).toFixed(ns < 1e7 ? 2 : 1)} ms`;
  return `${(ns / 1e9).toFixed(2)} s`;
}

/** Operations per second, human-sized: `241.3M`, `1.52M`, `84.1k`, `12.0`. */
export function fmtOps(ops: number): string {
  if (ops >= 1e9) return `${(ops / 1e9).toFixed(2)}G`;
  if (ops >= 1e6) return `${(ops / 1e6).toFixed(ops >= 1e8 ? 0 : ops >= 1e7 ? 1 : 2)}M`;
  if (ops >= 1e3) return `${(ops / 1e3).toFixed(ops >= 1e5 ? 0 : 1)}k`;
  return ops.toFixed(ops >= 100 ? 0 : 1);
}

/** A value the optimiser cannot prove unused: benchmarks fold their results into it. */
export const sink = { n: 0 };
