import { describe, expect, test } from 'vitest';
import { CHROME_PID_CPUS, CHROME_PID_MODULES, MODULE_PALETTE, buildTimeline, recordEvents, toChromeTrace } from '../../src/index.js';
import type { ChromeTrace, ChromeTraceEvent } from '../../src/index.js';
import { Emitter, recordedFakeHost, rollingUpgrade } from './scenario.js';

/**
 * The structural rules a trace viewer relies on. Returns the problems found (empty = well-formed).
 */
function problems(trace: ChromeTrace): string[] {
  const out: string[] = [];
  const evs = trace.traceEvents;
  const firstTimed = evs.findIndex((e) => e.ph !== 'M');
  if (firstTimed >= 0 && evs.slice(firstTimed).some((e) => e.ph === 'M')) out.push('metadata after timed events');
  const processNames = new Set(evs.filter((e) => e.ph === 'M' && e.name === 'process_name').map((e) => e.pid));
  const threadNames = new Set(evs.filter((e) => e.ph === 'M' && e.name === 'thread_name').map((e) => `${e.pid}:${String(e.tid)}`));
  const lastTs = new Map<string, number>();
  const stacks = new Map<string, number[]>();
  for (const e of evs) {
    if (typeof e.name !== 'string' || !['X', 'i', 'C', 'M'].includes(e.ph)) out.push(`bad event ${JSON.stringify(e)}`);
    if (!Number.isFinite(e.ts) || e.ts < 0) out.push(`bad ts ${JSON.stringify(e)}`);
    if (e.ph === 'M') continue;
    if (!processNames.has(e.pid)) out.push(`pid ${e.pid} has no process_name`);
    const track = `${e.pid}:${String(e.tid)}`;
    if (e.tid !== undefined && !threadNames.has(track)) out.push(`track ${track} has no thread_name`);
    const prev = lastTs.get(track) ?? -Infinity;
    if (e.ts < prev) out.push(`ts goes back on ${track}: ${prev} → ${e.ts}`);
    lastTs.set(track, e.ts);
    if (e.ph === 'X') {
      if (e.dur === undefined || !(e.dur > 0)) out.push(`X without positive dur: ${JSON.stringify(e)}`);
      const stack = stacks.get(track) ?? [];
      stacks.set(track, stack);
      while (stack.length > 0 && (stack[stack.length - 1] as number) <= e.ts) stack.pop();
      const end = e.ts + (e.dur ?? 0);
      const parentEnd = stack[stack.length - 1];
      if (parentEnd !== undefined && end > parentEnd) out.push(`slice ${e.name} on ${track} overlaps its parent (ends ${end} > ${parentEnd})`);
      stack.push(end);
    }
    if (e.ph === 'i' && !['t', 'p', 'g'].includes(e.s ?? '')) out.push(`instant without scope: ${e.name}`);
    if (e.ph === 'C' && (e.args === undefined || Object.values(e.args).some((v) => typeof v !== 'number'))) out.push(`counter without numeric args: ${e.name}`);
  }
  return out;
}

const meta = (t: ChromeTrace, name: string): ChromeTraceEvent[] => t.traceEvents.filter((e) => e.ph === 'M' && e.name === name);
const threadName = (t: ChromeTrace, pid: number, tid: number | undefined): string | undefined =>
  meta(t, 'thread_name').find((e) => e.pid === pid && e.tid === tid)?.args?.['name'] as string | undefined;

/** A small scenario: vac + kvm0 + kvm1, two VMs, runs, flushes, a PMI, a warning, a CPU offline and back. */
function small(): { trace: ChromeTrace; seqs: Record<string, number> } {
  const { host, rec } = recordedFakeHost(4);
  const e = new Emitter(host, 4);
  const seqs: Record<string, number> = {};
  e.load('vac');
  e.load('kvm0', { vmentry_l1d_flush: 'never' });
  seqs['vm1'] = e.seq;
  e.createVm('kvm0', 1); // usage 1 → VMXON on every CPU
  seqs['run'] = e.seq;
  e.run('kvm0', 1, 0, 1, { tlb: true, pmi: true });
  e.load('kvm1', { vmentry_l1d_flush: 'always' });
  e.createVm('kvm1', 1, 2);
  e.run('kvm1', 1, 0, 1, { l1d: true });
  e.run('kvm1', 1, 1, 2, { l1d: true });
  host.warn({ source: 'kvm1', message: 'L1TF: <flush> & more', cpu: 2 });
  seqs['offline'] = e.seq;
  e.offline(3);
  e.online(3);
  e.destroyVm('kvm0', 1);
  e.unload('kvm0');
  host.suspend();
  host.resume();
  rec.stop();
  return { trace: toChromeTrace(rec.events(), { title: 'small' }), seqs };
}

describe('toChromeTrace', () => {
  test('is well-formed: metadata first, named tracks, X slices nested per track, ts non-decreasing per track', () => {
    const { trace } = small();
    expect(problems(trace)).toEqual([]);
    expect(trace.displayTimeUnit).toBe('ms');
    expect(trace.otherData['clock']).toMatch(/seq/);
    expect(trace.otherData['title']).toBe('small');
    // Serializable as is, and nothing is lost (no undefined, no functions).
    expect(JSON.parse(JSON.stringify(trace))).toEqual(trace);
  });

  test('has a CPUs process with a track per CPU and a Modules process with a track per module', () => {
    const { trace } = small();
    expect(meta(trace, 'process_name').map((e) => [e.pid, e.args?.['name']])).toEqual([
      [CHROME_PID_CPUS, 'CPUs'],
      [CHROME_PID_MODULES, 'Modules'],
    ]);
    const threads = (pid: number): unknown[] => meta(trace, 'thread_name').filter((e) => e.pid === pid).map((e) => e.args?.['name']);
    expect(threads(CHROME_PID_CPUS)).toEqual(['CPU 0', 'CPU 1', 'CPU 2', 'CPU 3']);
    expect(threads(CHROME_PID_MODULES)).toEqual(['vac', 'kvm0', 'kvm1']);
    const sort = meta(trace, 'thread_sort_index').filter((e) => e.pid === CHROME_PID_CPUS).map((e) => e.args?.['sort_index']);
    expect(sort).toEqual([0, 1, 2, 3]);
  });

  test('vCPU runs are slices on their CPU track, named module/vm/vcpu and colored per module', () => {
    const { trace, seqs } = small();
    const runs = trace.traceEvents.filter((e) => e.cat === 'vcpu');
    expect(runs.map((e) => [e.name, threadName(trace, e.pid, e.tid)])).toEqual([
      ['kvm0/vm1/vcpu0', 'CPU 1'],
      ['kvm1/vm1/vcpu0', 'CPU 1'],
      ['kvm1/vm1/vcpu1', 'CPU 2'],
    ]);
    const first = runs[0] as ChromeTraceEvent;
    expect(first).toMatchObject({ ph: 'X', ts: seqs['run'], dur: 4, cname: MODULE_PALETTE[0]?.cname });
    expect(first.args).toMatchObject({ module: 'kvm0', vm: 1, vcpu: 0, exits: 1, color: MODULE_PALETTE[0]?.hex });
    expect(runs[1]?.cname).toBe(MODULE_PALETTE[1]?.cname);
  });

  test('VMXON/VMXOFF, flushes and PMIs are instants on the CPU tracks; offline is a slice', () => {
    const { trace, seqs } = small();
    const on = (name: string): string[] =>
      trace.traceEvents.filter((e) => e.ph === 'i' && e.name === name).map((e) => threadName(trace, e.pid, e.tid) ?? '?');
    expect(on('VMXON')).toEqual(['CPU 0', 'CPU 1', 'CPU 2', 'CPU 3', 'CPU 3']);
    expect(on('VMXOFF')).toEqual(['CPU 3']);
    expect(on('TLB flush (vpid)')).toEqual(['CPU 1']);
    expect(on('L1D flush')).toEqual(['CPU 1', 'CPU 2']);
    expect(on('PMI → kvm0/vm1/vcpu0')).toEqual(['CPU 1']);
    const off = trace.traceEvents.filter((e) => e.name === 'offline');
    // CPU 3 by hotplug, then every secondary CPU by the suspend (freeze_secondary_cpus).
    expect(off.map((x) => threadName(trace, x.pid, x.tid)).sort()).toEqual(['CPU 1', 'CPU 2', 'CPU 3', 'CPU 3']);
    expect(off[0]).toMatchObject({ ph: 'X', pid: CHROME_PID_CPUS, tid: 1003, ts: (seqs['offline'] ?? 0) + 1, dur: 1 });
  });

  test('modules are slices from load to unload with their VMs nested; warnings on the module; power is global', () => {
    const { trace, seqs } = small();
    const mods = trace.traceEvents.filter((e) => e.cat === 'module');
    expect(mods.map((e) => [e.name, threadName(trace, e.pid, e.tid), e.args?.['stillRunningAtEnd'] ?? false])).toEqual([
      ['vac', 'vac', true],
      ['kvm0', 'kvm0', false],
      ['kvm1', 'kvm1', true],
    ]);
    expect(mods[1]?.args?.['vmentry_l1d_flush']).toBe('never');
    const vms = trace.traceEvents.filter((e) => e.cat === 'vm');
    expect(vms.map((e) => [e.name, threadName(trace, e.pid, e.tid)])).toEqual([
      ['kvm0/vm1', 'kvm0'],
      ['kvm1/vm1', 'kvm1'],
    ]);
    expect(vms[0]?.ts).toBe(seqs['vm1'] !== undefined ? seqs['vm1'] + 5 : -1); // after the usage and 4 VMXONs
    expect(vms[1]?.args).toMatchObject({ vcpus: 2, pid: 10 });
    const kvm0 = mods[1] as ChromeTraceEvent;
    const vm = vms[0] as ChromeTraceEvent;
    expect(vm.ts).toBeGreaterThan(kvm0.ts);
    expect(vm.ts + (vm.dur ?? 0)).toBeLessThanOrEqual(kvm0.ts + (kvm0.dur ?? 0));
    const warn = trace.traceEvents.filter((e) => e.cat === 'warning');
    expect(warn.map((e) => [e.name, threadName(trace, e.pid, e.tid), e.s])).toEqual([['warning: L1TF: <flush> & more', 'kvm1', 't']]);
    const power = trace.traceEvents.filter((e) => e.cat === 'power');
    expect(power.map((e) => [e.name, e.s])).toEqual([
      ['suspend', 'g'],
      ['resume', 'g'],
    ]);
  });

  test('VAC usage count is a counter', () => {
    const { trace } = small();
    const c = trace.traceEvents.filter((e) => e.ph === 'C');
    expect(c.map((e) => [e.name, e.pid, e.args?.['count']])).toEqual([
      ['VAC usage count', CHROME_PID_MODULES, 1],
      ['VAC usage count', CHROME_PID_MODULES, 2],
      ['VAC usage count', CHROME_PID_MODULES, 1],
    ]);
  });

  test('VMs alive at the same time that do not nest get extra tracks of their module', () => {
    const s = rollingUpgrade({ cpus: 4, vms: 3, rounds: 1 });
    const trace = toChromeTrace(s.events);
    expect(problems(trace)).toEqual([]);
    const names = meta(trace, 'thread_name').filter((e) => e.pid === CHROME_PID_MODULES).map((e) => e.args?.['name']);
    expect(names).toEqual(['vac', 'kvm0', 'kvm0 VMs (row 2)', 'kvm0 VMs (row 3)', 'kvm1', 'kvm1 VMs (row 2)', 'kvm1 VMs (row 3)']);
    const vms = trace.traceEvents.filter((e) => e.cat === 'vm');
    expect(vms).toHaveLength(6);
  });

  test('options: AMD names, no flushes, a time scale; a Timeline can be passed instead of events', () => {
    const s = rollingUpgrade({ cpus: 2, vms: 2, rounds: 2 });
    const amd = toChromeTrace(s.events, { virtLabels: { enable: 'EFER.SVME=1', disable: 'EFER.SVME=0' }, flushes: false, usPerEvent: 10 });
    expect(problems(amd)).toEqual([]);
    expect(amd.traceEvents.some((e) => e.name === 'EFER.SVME=1')).toBe(true);
    expect(amd.traceEvents.some((e) => e.name === 'VMXON')).toBe(false);
    expect(amd.traceEvents.some((e) => e.cat === 'flush')).toBe(false);
    const plain = toChromeTrace(s.events);
    const run = (t: ChromeTrace): ChromeTraceEvent => t.traceEvents.find((e) => e.cat === 'vcpu') as ChromeTraceEvent;
    expect(run(amd).ts).toBe(run(plain).ts * 10);
    expect(run(amd).dur).toBe((run(plain).dur ?? 0) * 10);
    expect(toChromeTrace(buildTimeline(s.events))).toEqual(plain);
    expect(() => toChromeTrace(s.events, { usPerEvent: 0 })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
  });

  test('the same scenario gives the same trace; a partial stream (bounded recorder) is still well-formed', () => {
    const a = JSON.stringify(toChromeTrace(rollingUpgrade({ cpus: 4, vms: 5 }).events));
    const b = JSON.stringify(toChromeTrace(rollingUpgrade({ cpus: 4, vms: 5 }).events));
    expect(a).toBe(b);

    const { host } = recordedFakeHost(4);
    const e = new Emitter(host, 4);
    e.load('kvm0');
    e.createVm('kvm0', 1);
    host.events.emit('vcpu:load', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 2 });
    e.offline(3);
    const rec = recordEvents(host, { limit: 6 });
    host.events.emit('vcpu:put', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 2 });
    for (let i = 0; i < 3; i++) e.run('kvm0', 1, 0, i);
    e.online(3);
    e.destroyVm('kvm0', 1);
    const partial = toChromeTrace(rec.events());
    expect(problems(partial)).toEqual([]);
    expect(partial.traceEvents.some((x) => x.args?.['beganBeforeTrace'] === true)).toBe(true);
    expect(rec.dropped).toBeGreaterThan(0);
  });

  test('an empty stream gives just the two processes', () => {
    const t = toChromeTrace([]);
    expect(problems(t)).toEqual([]);
    expect(t.traceEvents.map((e) => e.name)).toEqual(['process_name', 'process_sort_index', 'process_name', 'process_sort_index']);
  });
});
