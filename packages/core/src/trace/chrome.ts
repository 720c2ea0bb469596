/**
 * The event stream as a Chrome trace: the JSON object format of the Trace Event Format, which the Perfetto
 * UI (ui.perfetto.dev → "Open trace file") and chrome://tracing open.
 *
 * Layout:
 * - process **CPUs**: one thread (track) per CPU, `CPU 0`, `CPU 1`, …; a slice per vCPU run
 *   (`vcpu:load` → `vcpu:put`) named `kvm0/vm1/vcpu0`, colored per module; `offline` slices for CPU offline
 *   periods; instants where virtualization is turned on and off (`virt:enable`/`virt:disable`), TLB and L1D flushes, guest PMIs and
 *   CPU warnings.
 * - process **Modules**: one thread per module (`vac`, `kvm0`, …) with a slice from load to unload and, nested
 *   in it, a slice per VM from `vm:create` to `vm:destroy`; VMs alive at the same time that do not fit there
 *   go to extra tracks `kvm0 VMs (row 2)`, …; module warnings as instants; a counter `VAC usage count`
 *   (`virt:usage`). Power transitions (suspend, resume, reboot, crash) are global instants.
 *
 * **Time.** A trace timestamp is the event's `seq` (the host's logical clock) times `usPerEvent`
 * microseconds (default 1): `seq` is unique and strictly increasing, so the order in the trace is exactly the
 * order of the stream and the same scenario always gives the same file. A duration in the UI is therefore a
 * number of events, not simulated time; each event's `tick` is kept in its args.
 *
 * Every slice is a complete (`X`) event, so no begin/end pairing can go wrong; the events are sorted by
 * timestamp (parents before children at the same timestamp), after the metadata (`M`) events that name and
 * order the processes and threads.
 *
 * @module
 */
import { UsageError } from '../errors.js';
import { vcpuLabel } from '../vac/handle.js';
import type { TraceEvent } from './recorder.js';
import { buildTimeline, moduleColors, type Mark, type Timeline, type TimelineOptions, type TraceColor } from './timeline.js';

/** An argument value of a Chrome trace event. */
export type ChromeTraceArg = string | number | boolean;

/** One event of the Trace Event Format (the subset this exporter writes). */
export interface ChromeTraceEvent {
  /** Event name (for metadata: `process_name`, `thread_name`, `process_sort_index`, `thread_sort_index`). */
  readonly name: string;
  /** Phase: `X` complete slice, `i` instant, `C` counter, `M` metadata. */
  readonly ph: 'X' | 'i' | 'C' | 'M';
  /** Process id (1 = CPUs, 2 = Modules). */
  readonly pid: number;
  /**
   * Thread id: CPU `n` is `1000 + n`; module tracks count up from 100001 (unique across both processes and
   * different from the pids, as Perfetto wants). Absent on counters and process-wide instants.
   */
  readonly tid?: number;
  /** Timestamp in microseconds (`seq × usPerEvent`). */
  readonly ts: number;
  /** Duration in microseconds (`X` only). */
  readonly dur?: number;
  /** Category: `vcpu`, `cpu`, `module`, `vm`, `virt`, `flush`, `pmi`, `warning`, `power`, `usage`. */
  readonly cat?: string;
  /** Instant scope: thread, process or global. */
  readonly s?: 't' | 'p' | 'g';
  /** A reserved chrome://tracing color name. */
  readonly cname?: string;
  /** Arguments shown when the event is selected. */
  readonly args?: Readonly<Record<string, ChromeTraceArg>>;
}

/** A Chrome trace in the JSON object format: serialize it with `JSON.stringify`. */
export interface ChromeTrace {
  /** The events: metadata first, then by timestamp. */
  readonly traceEvents: readonly ChromeTraceEvent[];
  /** How chrome://tracing displays times. */
  readonly displayTimeUnit: 'ms' | 'ns';
  /** What the file is and how to read its clock. */
  readonly otherData: Readonly<Record<string, string>>;
}

/** Options of {@link toChromeTrace}. */
export interface ChromeTraceOptions extends TimelineOptions {
  /** Names of the virtualization instants (default: as the hardware declared them, e.g. `VMXON`/`VMXOFF`). */
  readonly virtLabels?: { readonly enable: string; readonly disable: string };
  /** Microseconds per event (`seq` step) on the trace's time axis. Default 1. */
  readonly usPerEvent?: number;
  /** Include TLB and L1D flush instants (default true; they can be most of a long trace). */
  readonly flushes?: boolean;
  /** A title, stored in `otherData.title`. */
  readonly title?: string;
}

/** The process id of the CPU tracks. */
export const CHROME_PID_CPUS = 1;
/** The process id of the module tracks. */
export const CHROME_PID_MODULES = 2;
const CPU_TID_BASE = 1000;
const MODULE_TID_BASE = 100_001;


/**
 * Turn an event stream into a Chrome trace (see the module description for the layout and the clock).
 *
 * @param events - a recorded stream (`recorder.events()`) or an already built {@link Timeline}
 * @param options - naming, time scale, flushes on/off, title, CPUs to show
 * @returns the trace object; `JSON.stringify(trace)` is the file
 *
 * @example
 * ```ts
 * import { createHost, recordEvents, toChromeTrace } from '@vac/core';
 * import { kvm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 2, hardware: intel() });
 * const rec = recordEvents(host);
 * host.modprobe(kvm({ postfix: '0' }));
 * const trace = toChromeTrace(rec.events(), { cpus: 2, title: 'modprobe kvm0' });
 * console.log(trace.traceEvents.length > 0); // true: JSON.stringify(trace) to a file opens in the Perfetto UI
 * ```
 */
export function toChromeTrace(events: Iterable<TraceEvent> | Timeline, options: ChromeTraceOptions = {}): ChromeTrace {
  const tl = isTimeline(events) ? events : buildTimeline(events, options.cpus === undefined ? {} : { cpus: options.cpus });
  const scale = options.usPerEvent ?? 1;
  if (!(scale > 0) || !Number.isFinite(scale)) throw new UsageError('ERR_OUT_OF_RANGE', `toChromeTrace: usPerEvent must be a positive number, got ${String(scale)}`);
  const ts = (seq: number): number => seq * scale;
  const names = options.virtLabels ?? tl.virtLabels;
  const colors = moduleColors(tl);
  const colorOf = (m: string | undefined): TraceColor | undefined => (m === undefined ? undefined : colors.get(m));

  const meta: ChromeTraceEvent[] = [];
  const timed: ChromeTraceEvent[] = [];
  const cpuTid = (cpu: number): number => CPU_TID_BASE + cpu;

  meta.push({ name: 'process_name', ph: 'M', pid: CHROME_PID_CPUS, ts: 0, args: { name: 'CPUs' } });
  meta.push({ name: 'process_sort_index', ph: 'M', pid: CHROME_PID_CPUS, ts: 0, args: { sort_index: 1 } });
  meta.push({ name: 'process_name', ph: 'M', pid: CHROME_PID_MODULES, ts: 0, args: { name: 'Modules' } });
  meta.push({ name: 'process_sort_index', ph: 'M', pid: CHROME_PID_MODULES, ts: 0, args: { sort_index: 2 } });
  for (const cpu of tl.cpus) {
    meta.push({ name: 'thread_name', ph: 'M', pid: CHROME_PID_CPUS, tid: cpuTid(cpu), ts: 0, args: { name: `CPU ${cpu}` } });
    meta.push({ name: 'thread_sort_index', ph: 'M', pid: CHROME_PID_CPUS, tid: cpuTid(cpu), ts: 0, args: { sort_index: cpu } });
  }
  // Module tracks: the module's own track, then its extra VM rows.
  const moduleTid = new Map<string, number>();
  const rowTid = new Map<string, number>();
  let tid = MODULE_TID_BASE;
  let order = 0;
  for (const m of tl.modules) {
    const own = tid++;
    moduleTid.set(m, own);
    rowTid.set(`${m}#0`, own);
    meta.push({ name: 'thread_name', ph: 'M', pid: CHROME_PID_MODULES, tid: own, ts: 0, args: { name: m } });
    meta.push({ name: 'thread_sort_index', ph: 'M', pid: CHROME_PID_MODULES, tid: own, ts: 0, args: { sort_index: order++ } });
    for (let r = 1; r < (tl.vmRows[m] ?? 0); r++) {
      const t = tid++;
      rowTid.set(`${m}#${r}`, t);
      meta.push({ name: 'thread_name', ph: 'M', pid: CHROME_PID_MODULES, tid: t, ts: 0, args: { name: `${m} VMs (row ${r + 1})` } });
      meta.push({ name: 'thread_sort_index', ph: 'M', pid: CHROME_PID_MODULES, tid: t, ts: 0, args: { sort_index: order++ } });
    }
  }

  const withColor = (e: ChromeTraceEvent, c: TraceColor | undefined): ChromeTraceEvent =>
    c === undefined ? e : { ...e, cname: c.cname, args: { ...e.args, color: c.hex } };
  const openArgs = (s: { readonly openStart: boolean; readonly openEnd: boolean }): Record<string, ChromeTraceArg> => ({
    ...(s.openStart ? { beganBeforeTrace: true } : {}),
    ...(s.openEnd ? { stillRunningAtEnd: true } : {}),
  });

  for (const r of tl.runs) {
    timed.push(
      withColor(
        {
          name: vcpuLabel({ instance: r.module, vm: r.vm, vcpu: r.vcpu }),
          ph: 'X',
          cat: 'vcpu',
          pid: CHROME_PID_CPUS,
          tid: cpuTid(r.cpu),
          ts: ts(r.start),
          dur: ts(r.end) - ts(r.start),
          args: { module: r.module, vm: r.vm, vcpu: r.vcpu, exits: r.exits, fromSeq: r.start, toSeq: r.end, ...openArgs(r) },
        },
        colorOf(r.module),
      ),
    );
  }
  for (const o of tl.offline) {
    timed.push({
      name: 'offline',
      ph: 'X',
      cat: 'cpu',
      pid: CHROME_PID_CPUS,
      tid: cpuTid(o.cpu),
      ts: ts(o.start),
      dur: ts(o.end) - ts(o.start),
      cname: 'grey',
      args: { fromSeq: o.start, toSeq: o.end, ...openArgs(o) },
    });
  }
  for (const m of tl.moduleSpans) {
    timed.push(
      withColor(
        {
          name: m.module,
          ph: 'X',
          cat: 'module',
          pid: CHROME_PID_MODULES,
          tid: moduleTid.get(m.module) ?? MODULE_TID_BASE,
          ts: ts(m.start),
          dur: ts(m.end) - ts(m.start),
          args: { loadSeq: m.start, unloadSeq: m.end, ...m.params, ...openArgs(m) },
        },
        colorOf(m.module),
      ),
    );
  }
  for (const v of tl.vms) {
    timed.push(
      withColor(
        {
          name: `${v.module}/vm${v.vm}`,
          ph: 'X',
          cat: 'vm',
          pid: CHROME_PID_MODULES,
          tid: rowTid.get(`${v.module}#${v.row}`) ?? MODULE_TID_BASE,
          ts: ts(v.start),
          dur: ts(v.end) - ts(v.start),
          args: { module: v.module, vm: v.vm, vcpus: v.vcpus, createSeq: v.start, destroySeq: v.end, ...(v.pid === undefined ? {} : { pid: v.pid }), ...openArgs(v) },
        },
        colorOf(v.module),
      ),
    );
  }
  const flushes = options.flushes ?? true;
  for (const k of tl.marks) {
    const e = markEvent(k, names, flushes, cpuTid, moduleTid, ts);
    if (e !== undefined) timed.push(e);
  }
  for (const u of tl.usage) {
    timed.push({ name: 'VAC usage count', ph: 'C', cat: 'usage', pid: CHROME_PID_MODULES, ts: ts(u.at), args: { count: u.count } });
  }

  // By timestamp; at the same timestamp longer slices first (parents before children), then the rest.
  const rank = (e: ChromeTraceEvent): number => (e.ph === 'X' ? 0 : e.ph === 'C' ? 1 : 2);
  const indexed = timed.map((e, i) => ({ e, i }));
  indexed.sort((a, b) => a.e.ts - b.e.ts || rank(a.e) - rank(b.e) || (b.e.dur ?? 0) - (a.e.dur ?? 0) || a.i - b.i);

  return {
    traceEvents: [...meta, ...indexed.map((x) => x.e)],
    displayTimeUnit: 'ms',
    otherData: {
      generator: '@vac/core toChromeTrace',
      clock: `ts = seq × ${scale} µs: one event of the host's stream per ${scale} µs (logical clock, not simulated time)`,
      events: String(tl.events),
      seqRange: `${tl.start}..${tl.end - 1}`,
      ...(options.title === undefined ? {} : { title: options.title }),
    },
  };
}

function markEvent(
  k: Mark,
  names: { readonly enable: string; readonly disable: string },
  flushes: boolean,
  cpuTid: (cpu: number) => number,
  moduleTid: ReadonlyMap<string, number>,
  ts: (seq: number) => number,
): ChromeTraceEvent | undefined {
  const base = { ph: 'i' as const, ts: ts(k.at) };
  const onCpu = k.cpu === undefined ? undefined : { pid: CHROME_PID_CPUS, tid: cpuTid(k.cpu), s: 't' as const };
  switch (k.kind) {
    case 'virt:enable':
    case 'virt:disable':
      if (onCpu === undefined) return undefined;
      return { ...base, ...onCpu, name: k.kind === 'virt:enable' ? names.enable : names.disable, cat: 'virt', cname: k.kind === 'virt:enable' ? 'good' : 'terrible', args: { seq: k.at, tick: k.tick } };
    case 'tlb:flush':
    case 'l1d:flush': {
      if (!flushes || onCpu === undefined) return undefined;
      const name = k.kind === 'tlb:flush' ? `TLB flush (${k.detail})` : 'L1D flush';
      return { ...base, ...onCpu, name, cat: 'flush', cname: 'generic_work', args: { seq: k.at, tick: k.tick, ...(k.module === undefined ? {} : { module: k.module }) } };
    }
    case 'pmi':
      if (onCpu === undefined) return undefined;
      return { ...base, ...onCpu, name: `PMI → ${k.detail}`, cat: 'pmi', cname: 'yellow', args: { seq: k.at, tick: k.tick } };
    case 'warning': {
      const args = { seq: k.at, tick: k.tick, message: k.detail };
      const mt = k.module === undefined ? undefined : moduleTid.get(k.module);
      if (mt !== undefined) return { ...base, pid: CHROME_PID_MODULES, tid: mt, s: 't', name: `warning: ${k.detail}`, cat: 'warning', cname: 'bad', args };
      if (onCpu !== undefined) return { ...base, ...onCpu, name: `warning: ${k.detail}`, cat: 'warning', cname: 'bad', args };
      return { ...base, pid: CHROME_PID_MODULES, s: 'p', name: `warning: ${k.detail}`, cat: 'warning', cname: 'bad', args };
    }
    case 'power':
      return { ...base, pid: CHROME_PID_MODULES, s: 'g', name: k.detail, cat: 'power', cname: 'black', args: { seq: k.at, tick: k.tick } };
  }
}

function isTimeline(x: Iterable<TraceEvent> | Timeline): x is Timeline {
  return !(Symbol.iterator in x) && 'runs' in x;
}
