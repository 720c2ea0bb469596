/**
 * The timeline model behind the trace exporters: an event stream folded into spans and marks.
 *
 * {@link buildTimeline} reads a recorded stream (see {@link recordEvents}) once and returns what the pictures
 * show: which vCPU ran on which CPU and when, when CPUs were offline, each module's lifetime (`module:load` →
 * `module:unload`), each VM's lifetime, point events (virtualization turned on and off, TLB and L1D flushes, PMIs,
 * warnings, power transitions) and VAC's usage count. The core's own events are known by name; the events other
 * packages add (a KVM module's vCPU loads, VM creations, …) by the {@link TimelineRole} their package declared for
 * them (`EventBus.describe`), which the recorder keeps with each event.
 * {@link toChromeTrace} and {@link renderTimelineSvg} both draw from it, so the two pictures always agree.
 *
 * **Time is the logical clock.** Every position is an event's `seq` (the host's event counter), not its
 * `tick`: `seq` is strictly increasing and unique, so ordering is exact and two runs of the same scenario
 * give the same picture; `tick` (scheduler time) stands still during direct `KVM_RUN` calls and many events
 * share one tick. A span covers `[start, end)` in seq units; marks carry their `tick` as well, and
 * {@link Timeline.clock} tells where each tick begins, so a picture can label its axis in ticks.
 *
 * The stream may be partial (a recorder started late, or a bounded recorder dropped the oldest events): a
 * span whose beginning was not seen starts at the first event and is flagged `openStart`; one still going at
 * the last event ends one past it and is flagged `openEnd`.
 *
 * @module
 */
import type { EventStamp, TimelineRole } from '../events.js';
import { vcpuLabel } from '../vac/handle.js';
import type { TraceEvent } from './recorder.js';

/** A stretch of the logical clock, `[start, end)` in `seq` units. */
export interface Span {
  /** `seq` of the event that began it (or the stream's first `seq` when {@link Span.openStart}). */
  readonly start: number;
  /** `seq` of the event that ended it (or one past the stream's last `seq` when {@link Span.openEnd}). */
  readonly end: number;
  /** The beginning happened before the stream starts. */
  readonly openStart: boolean;
  /** Still going when the stream ends. */
  readonly openEnd: boolean;
}

/** A vCPU loaded on a CPU: from `run:start` to `run:end` (or the CPU going offline, or the VM dying). */
export interface RunSlice extends Span {
  /** The CPU. */
  readonly cpu: number;
  /** The KVM module that owns the vCPU (`'kvm0'`). */
  readonly module: string;
  /** The VM id within that module. */
  readonly vm: number;
  /** The vCPU id within the VM. */
  readonly vcpu: number;
  /** `run:exit` events (returns to the VMM) while loaded. */
  readonly exits: number;
}

/** A CPU offline: from `cpu:offline` to `cpu:online`. */
export interface OfflineSpan extends Span {
  /** The CPU. */
  readonly cpu: number;
}

/** A module loaded: from `module:load` to `module:unload`. */
export interface ModuleSpan extends Span {
  /** The module name (`'vac'`, `'kvm0'`, …). */
  readonly module: string;
  /** Its parameters as given at load (empty when the load was not seen). */
  readonly params: Readonly<Record<string, string>>;
}

/** A VM alive: from `guest:start` to `guest:end`. */
export interface VmSpan extends Span {
  /** The KVM module it belongs to. */
  readonly module: string;
  /** Its id within the module. */
  readonly vm: number;
  /** The process that created it, when known. */
  readonly pid: number | undefined;
  /** vCPUs created in it (`guest:vcpu` events seen). */
  readonly vcpus: number;
  /** Row within its module's VM rows: VMs alive at the same time get different rows (first fit, from 0). */
  readonly row: number;
}

/** The kinds of point events. */
export type MarkKind = 'virt:enable' | 'virt:disable' | 'tlb:flush' | 'l1d:flush' | 'pmi' | 'warning' | 'power';

/** A point event and where it belongs. */
export interface Mark {
  /** What happened. */
  readonly kind: MarkKind;
  /** Its `seq`. */
  readonly at: number;
  /** Its `tick`. */
  readonly tick: number;
  /** The CPU lane it belongs to, if any. */
  readonly cpu: number | undefined;
  /** The module lane it belongs to, if any (a warning whose source is a module; a flush by a module). */
  readonly module: string | undefined;
  /**
   * Details: the flush kind (`'vpid'`, …), the warning message, the power transition (`'suspend'`, …), the
   * vCPU a PMI went to (`'kvm0/vm1/vcpu0'`).
   */
  readonly detail: string;
}

/** A change of VAC's usage count (`virt:usage`). */
export interface UsagePoint {
  /** Its `seq`. */
  readonly at: number;
  /** The count after the change. */
  readonly count: number;
  /** Who took or dropped the reference. */
  readonly holder: string;
  /** +1 or -1. */
  readonly delta: number;
}

/** Where a tick of the host clock begins in a stream. */
export interface ClockPoint {
  /** The tick (the scheduler's clock, an event's `tick`). */
  readonly tick: number;
  /** The first `seq` seen with that tick. */
  readonly seq: number;
}

/** An event stream folded into spans and marks (see {@link buildTimeline}). */
export interface Timeline {
  /** Names of the virtualization on/off marks, as the hardware declared them (default `virt on` / `virt off`). */
  readonly virtLabels: { readonly enable: string; readonly disable: string };
  /** The first `seq` of the stream (0 for an empty stream). */
  readonly start: number;
  /** One past the last `seq` of the stream (so `end > start`). */
  readonly end: number;
  /** Events read. */
  readonly events: number;
  /** The CPUs that have a lane, ascending. */
  readonly cpus: readonly number[];
  /** Module names in order of first appearance. */
  readonly modules: readonly string[];
  /** Module lifetimes, by start. A module loaded twice has two spans. */
  readonly moduleSpans: readonly ModuleSpan[];
  /** VM lifetimes, by start. */
  readonly vms: readonly VmSpan[];
  /** VM rows per module (the highest {@link VmSpan.row} + 1; 0 when it had no VM). */
  readonly vmRows: Readonly<Record<string, number>>;
  /** vCPU run slices, by start (then CPU). On one CPU they never overlap. */
  readonly runs: readonly RunSlice[];
  /** CPU offline periods, by start. */
  readonly offline: readonly OfflineSpan[];
  /** Point events, by `seq`. */
  readonly marks: readonly Mark[];
  /** VAC's usage count, by `seq`. */
  readonly usage: readonly UsagePoint[];
  /**
   * The host clock: the first `seq` of each tick the stream covers, by `seq` (one entry when everything
   * happened within one tick; none for an empty stream). The pictures use it to label their axis in ticks.
   */
  readonly clock: readonly ClockPoint[];
}

/** Options of {@link buildTimeline}. */
export interface TimelineOptions {
  /** Give CPUs 0 … `cpus - 1` a lane even if no event names them (say `host.cpus.length`). */
  readonly cpus?: number;
}

type Fields = Readonly<Record<string, unknown>>;

function num(p: Fields, k: string): number | undefined {
  const v = p[k];
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function str(p: Fields, k: string): string | undefined {
  const v = p[k];
  return typeof v === 'string' ? v : undefined;
}

interface OpenRun {
  readonly cpu: number;
  readonly module: string;
  readonly vm: number;
  readonly vcpu: number;
  readonly start: number;
  readonly openStart: boolean;
  exits: number;
}

interface OpenVm {
  readonly module: string;
  readonly vm: number;
  readonly pid: number | undefined;
  readonly start: number;
  readonly openStart: boolean;
  vcpus: number;
}

/**
 * Fold an event stream into a {@link Timeline}. Events are read by `seq` (a stream out of order is sorted
 * first); unknown events are ignored, and so are events that lack the fields they should carry.
 *
 * @param events - the stream, for example `recorder.events()`
 * @param options - CPUs that must have a lane
 */
export function buildTimeline(events: Iterable<TraceEvent>, options: TimelineOptions = {}): Timeline {
  let list = Array.isArray(events) ? (events as readonly TraceEvent[]) : [...events];
  for (let i = 1; i < list.length; i++) {
    if ((list[i] as TraceEvent).payload.seq < (list[i - 1] as TraceEvent).payload.seq) {
      list = [...list].sort((a, b) => a.payload.seq - b.payload.seq);
      break;
    }
  }
  const first = list[0];
  const last = list[list.length - 1];
  const start = first === undefined ? 0 : first.payload.seq;
  const end = last === undefined ? 1 : last.payload.seq + 1;

  const cpuSet = new Set<number>();
  for (let c = 0; c < (options.cpus ?? 0); c++) cpuSet.add(c);
  const modules: string[] = [];
  const moduleSeen = new Set<string>();
  const seeModule = (m: string): void => {
    if (moduleSeen.has(m)) return;
    moduleSeen.add(m);
    modules.push(m);
  };

  const runs: RunSlice[] = [];
  const offline: OfflineSpan[] = [];
  const moduleSpans: ModuleSpan[] = [];
  const vmsOut: Array<Omit<VmSpan, 'row'>> = [];
  const marks: Array<Mark & { source?: string }> = [];
  const usage: UsagePoint[] = [];

  const openRun = new Map<number, OpenRun>(); // by CPU
  const runCpu = new Map<string, number>(); // vCPU key → CPU it is loaded on
  const lastRun = new Map<number, number>(); // by CPU: index in `runs` of the run that ended last there
  const openOffline = new Map<number, { start: number; openStart: boolean }>();
  const openModule = new Map<string, { start: number; openStart: boolean; params: Readonly<Record<string, string>> }>();
  const openVm = new Map<string, OpenVm>(); // by `module/vm`

  const closeRun = (cpu: number, at: number, openEnd: boolean): void => {
    const r = openRun.get(cpu);
    if (r === undefined) return;
    openRun.delete(cpu);
    runCpu.delete(vcpuLabel({ instance: r.module, vm: r.vm, vcpu: r.vcpu }));
    lastRun.set(cpu, runs.length);
    runs.push({ cpu, module: r.module, vm: r.vm, vcpu: r.vcpu, exits: r.exits, start: r.start, end: Math.max(at, r.start + 1), openStart: r.openStart, openEnd });
  };
  const closeVm = (key: string, at: number, openEnd: boolean): void => {
    const v = openVm.get(key);
    if (v === undefined) return;
    openVm.delete(key);
    vmsOut.push({ module: v.module, vm: v.vm, pid: v.pid, vcpus: v.vcpus, start: v.start, end: Math.max(at, v.start + 1), openStart: v.openStart, openEnd });
  };

  const virtLabels = { enable: 'virt on', disable: 'virt off' };
  const clock: ClockPoint[] = [];
  for (const e of list) {
    const p = e.payload as EventStamp & Fields;
    const at = p.seq;
    if (Number.isFinite(p.tick) && (clock.length === 0 || p.tick > (clock[clock.length - 1] as ClockPoint).tick)) clock.push({ tick: p.tick, seq: at });
    const label = e.meaning?.label;
    if (label !== undefined && e.name === 'virt:enable') virtLabels.enable = label;
    if (label !== undefined && e.name === 'virt:disable') virtLabels.disable = label;
    switch (e.meaning?.timeline ?? e.name) {
      case 'run:start': {
        const cpu = num(p, 'cpu');
        const module = str(p, 'module');
        const vm = num(p, 'vm');
        const vcpu = num(p, 'vcpu');
        if (cpu === undefined || module === undefined || vm === undefined || vcpu === undefined) break;
        cpuSet.add(cpu);
        seeModule(module);
        const key = vcpuLabel({ instance: module, vm, vcpu });
        const was = runCpu.get(key);
        if (was === cpu) break; // already loaded here
        if (was !== undefined) closeRun(was, at, false);
        closeRun(cpu, at, false);
        openRun.set(cpu, { cpu, module, vm, vcpu, start: at, openStart: false, exits: 0 });
        runCpu.set(key, cpu);
        break;
      }
      case 'run:end': {
        const cpu = num(p, 'cpu');
        const module = str(p, 'module');
        const vm = num(p, 'vm');
        const vcpu = num(p, 'vcpu');
        if (cpu === undefined || module === undefined || vm === undefined || vcpu === undefined) break;
        cpuSet.add(cpu);
        seeModule(module);
        const r = openRun.get(cpu);
        if (r !== undefined && r.module === module && r.vm === vm && r.vcpu === vcpu) {
          closeRun(cpu, at, false);
        } else if (r === undefined && !runCpu.has(vcpuLabel({ instance: module, vm, vcpu }))) {
          // Loaded before the stream starts.
          lastRun.set(cpu, runs.length);
          runs.push({ cpu, module, vm, vcpu, exits: 0, start, end: Math.max(at, start + 1), openStart: true, openEnd: false });
        }
        break;
      }
      case 'run:exit': {
        const cpu = num(p, 'cpu');
        if (cpu === undefined) break;
        const r = openRun.get(cpu);
        if (r !== undefined) r.exits++;
        else {
          // Exit reported after the put: count it on the run that just ended there.
          const module = str(p, 'module');
          const vm = num(p, 'vm');
          const vcpu = num(p, 'vcpu');
          const i = lastRun.get(cpu);
          const prev = i === undefined ? undefined : runs[i];
          if (i !== undefined && prev !== undefined && prev.module === module && prev.vm === vm && prev.vcpu === vcpu) {
            runs[i] = { ...prev, exits: prev.exits + 1 };
          }
        }
        break;
      }
      case 'cpu:offline': {
        const cpu = num(p, 'cpu');
        if (cpu === undefined) break;
        cpuSet.add(cpu);
        closeRun(cpu, at, false);
        if (!openOffline.has(cpu)) openOffline.set(cpu, { start: at, openStart: false });
        break;
      }
      case 'cpu:online': {
        const cpu = num(p, 'cpu');
        if (cpu === undefined) break;
        cpuSet.add(cpu);
        const o = openOffline.get(cpu) ?? { start, openStart: true };
        openOffline.delete(cpu);
        offline.push({ cpu, start: o.start, end: Math.max(at, o.start + 1), openStart: o.openStart, openEnd: false });
        break;
      }
      case 'module:load': {
        const name = str(p, 'name');
        if (name === undefined) break;
        seeModule(name);
        const raw = p['params'];
        const params: Record<string, string> = {};
        if (typeof raw === 'object' && raw !== null) {
          for (const [k, v] of Object.entries(raw as Fields)) if (typeof v === 'string') params[k] = v;
        }
        openModule.set(name, { start: at, openStart: false, params });
        break;
      }
      case 'module:unload': {
        const name = str(p, 'name');
        if (name === undefined) break;
        seeModule(name);
        for (const [key, v] of [...openVm]) if (v.module === name) closeVm(key, at, false);
        for (const [cpu, r] of [...openRun]) if (r.module === name) closeRun(cpu, at, false);
        const m = openModule.get(name) ?? { start, openStart: true, params: {} };
        openModule.delete(name);
        moduleSpans.push({ module: name, params: m.params, start: m.start, end: Math.max(at, m.start + 1), openStart: m.openStart, openEnd: false });
        break;
      }
      case 'guest:start': {
        const module = str(p, 'module');
        const vm = num(p, 'vm');
        if (module === undefined || vm === undefined) break;
        seeModule(module);
        const key = `${module}/vm${vm}`;
        closeVm(key, at, false);
        openVm.set(key, { module, vm, pid: num(p, 'pid'), start: at, openStart: false, vcpus: 0 });
        break;
      }
      case 'guest:end': {
        const module = str(p, 'module');
        const vm = num(p, 'vm');
        if (module === undefined || vm === undefined) break;
        seeModule(module);
        const key = `${module}/vm${vm}`;
        for (const [cpu, r] of [...openRun]) if (r.module === module && r.vm === vm) closeRun(cpu, at, false);
        if (openVm.has(key)) closeVm(key, at, false);
        else vmsOut.push({ module, vm, pid: undefined, vcpus: 0, start, end: Math.max(at, start + 1), openStart: true, openEnd: false });
        break;
      }
      case 'guest:vcpu': {
        const module = str(p, 'module');
        const vm = num(p, 'vm');
        if (module === undefined || vm === undefined) break;
        const v = openVm.get(`${module}/vm${vm}`);
        if (v !== undefined) v.vcpus++;
        break;
      }
      case 'virt:enable':
      case 'virt:disable':
      case 'tlb:flush':
      case 'l1d:flush': {
        const cpu = num(p, 'cpu');
        if (cpu === undefined) break;
        cpuSet.add(cpu);
        marks.push({ kind: e.name as MarkKind, at, tick: p.tick, cpu, module: str(p, 'module'), detail: str(p, 'kind') ?? '' });
        break;
      }
      case 'mark:pmi': {
        const cpu = num(p, 'cpu');
        const module = str(p, 'module');
        const vm = num(p, 'vm');
        const vcpu = num(p, 'vcpu');
        if (cpu === undefined || module === undefined || vm === undefined || vcpu === undefined) break;
        cpuSet.add(cpu);
        marks.push({ kind: 'pmi', at, tick: p.tick, cpu, module, detail: vcpuLabel({ instance: module, vm, vcpu }) });
        break;
      }
      case 'warning': {
        const cpu = num(p, 'cpu');
        if (cpu !== undefined) cpuSet.add(cpu);
        marks.push({ kind: 'warning', at, tick: p.tick, cpu, module: undefined, detail: str(p, 'message') ?? '', source: str(p, 'source') ?? '' });
        break;
      }
      case 'power': {
        marks.push({ kind: 'power', at, tick: p.tick, cpu: undefined, module: undefined, detail: str(p, 'what') ?? '' });
        break;
      }
      case 'virt:usage': {
        const count = num(p, 'count');
        if (count === undefined) break;
        usage.push({ at, count, holder: str(p, 'holder') ?? '', delta: num(p, 'delta') ?? 0 });
        break;
      }
      default:
        break;
    }
  }

  // Close what is still open at the end of the stream.
  for (const cpu of [...openRun.keys()]) closeRun(cpu, end, true);
  for (const [cpu, o] of openOffline) offline.push({ cpu, start: o.start, end, openStart: o.openStart, openEnd: true });
  for (const key of [...openVm.keys()]) closeVm(key, end, true);
  for (const [module, m] of openModule) moduleSpans.push({ module, params: m.params, start: m.start, end, openStart: m.openStart, openEnd: true });

  // A warning whose source is a module goes to that module's lane (the kernel, cpuhp, perf… stay on the CPU).
  const finalMarks: Mark[] = marks.map((m) => {
    const { source, ...rest } = m;
    return source !== undefined && moduleSeen.has(source) ? { ...rest, module: source } : rest;
  });

  const bySpan = (a: Span & { readonly cpu?: number }, b: Span & { readonly cpu?: number }): number =>
    a.start - b.start || (a.cpu ?? 0) - (b.cpu ?? 0) || a.end - b.end;
  runs.sort(bySpan);
  offline.sort(bySpan);
  moduleSpans.sort(bySpan);
  vmsOut.sort(bySpan);

  // VM rows: first fit per module, in order of creation.
  const rowEnds = new Map<string, number[]>();
  const vmRows: Record<string, number> = {};
  for (const m of modules) vmRows[m] = 0;
  const vms: VmSpan[] = vmsOut.map((v) => {
    const ends = rowEnds.get(v.module) ?? [];
    rowEnds.set(v.module, ends);
    let row = ends.findIndex((e) => e <= v.start);
    if (row < 0) row = ends.length;
    ends[row] = v.end;
    vmRows[v.module] = Math.max(vmRows[v.module] ?? 0, row + 1);
    return { ...v, row };
  });

  return {
    virtLabels,
    start,
    end,
    events: list.length,
    cpus: [...cpuSet].sort((a, b) => a - b),
    modules,
    moduleSpans,
    vms,
    vmRows,
    runs,
    offline,
    marks: finalMarks,
    usage,
    clock,
  };
}

/** A color of the trace palette: a Chrome trace-viewer reserved color name and the same color as hex. */
export interface TraceColor {
  /** The reserved `cname` chrome://tracing understands (Perfetto ignores it and colors by name). */
  readonly cname: string;
  /** The same color as `#rrggbb`, for SVG and for the `color` arg of Chrome trace slices. */
  readonly hex: string;
}

/** The color of VAC (the base module): neutral grey. */
export const VAC_COLOR: TraceColor = { cname: 'generic_work', hex: '#7d7d7d' };

/**
 * Colors for KVM modules, in order of first appearance (the first module is blue, the second red, …); each
 * is a reserved chrome://tracing color with its RGB value.
 */
export const MODULE_PALETTE: readonly TraceColor[] = [
  { cname: 'rail_response', hex: '#4387fd' },
  { cname: 'rail_animation', hex: '#f44a3f' },
  { cname: 'rail_load', hex: '#0da861' },
  { cname: 'thread_state_iowait', hex: '#ff8c00' },
  { cname: 'detailed_memory_dump', hex: '#b400b4' },
  { cname: 'background_memory_dump', hex: '#00b4b4' },
  { cname: 'bad', hex: '#b47d00' },
  { cname: 'thread_state_uninterruptible', hex: '#b67d8f' },
  { cname: 'light_memory_dump', hex: '#0000b4' },
  { cname: 'good', hex: '#007d00' },
  { cname: 'olive', hex: '#646400' },
  { cname: 'terrible', hex: '#b40000' },
];

/**
 * The color of every module of a timeline: `vac` gets {@link VAC_COLOR}, the others {@link MODULE_PALETTE}
 * in order of first appearance (wrapping around after 12).
 */
export function moduleColors(timeline: Pick<Timeline, 'modules'>): ReadonlyMap<string, TraceColor> {
  const out = new Map<string, TraceColor>();
  let i = 0;
  for (const m of timeline.modules) {
    if (m === 'vac') out.set(m, VAC_COLOR);
    else out.set(m, MODULE_PALETTE[i++ % MODULE_PALETTE.length] as TraceColor);
  }
  return out;
}
