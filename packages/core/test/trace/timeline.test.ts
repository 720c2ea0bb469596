import { describe, expect, test } from 'vitest';
import { MODULE_PALETTE, VAC_COLOR, buildTimeline, moduleColors, recordEvents } from '../../src/index.js';
import type { TimelineRole, TraceEvent } from '../../src/index.js';
import { Emitter, recordedFakeHost, rollingUpgrade } from './scenario.js';

describe('buildTimeline', () => {
  test('the clock lists where each tick of the host clock begins, skipped ticks left out', () => {
    const { host, rec } = recordedFakeHost(2);
    const e = new Emitter(host, 2);
    e.load('kvm0');
    const t1 = e.seq;
    host.events.tick = 1;
    e.load('kvm1');
    e.load('kvm2');
    const t4 = e.seq;
    host.events.tick = 4;
    e.unload('kvm1');
    const tl = buildTimeline(rec.events());
    expect(tl.clock).toEqual([
      { tick: 0, seq: tl.start },
      { tick: 1, seq: t1 },
      { tick: 4, seq: t4 },
    ]);
    expect(buildTimeline([]).clock).toEqual([]);
  });

  test('runs go from vcpu:load to vcpu:put on their CPU and count the exits', () => {
    const { host, rec } = recordedFakeHost(4);
    const e = new Emitter(host, 4);
    e.load('kvm0');
    e.createVm('kvm0', 1, 2);
    const s0 = e.seq;
    e.run('kvm0', 1, 0, 2);
    e.run('kvm0', 1, 1, 3, { tlb: true, l1d: true, pmi: true });
    const tl = buildTimeline(rec.events());
    expect(tl.runs).toEqual([
      { cpu: 2, module: 'kvm0', vm: 1, vcpu: 0, exits: 1, start: s0, end: s0 + 2, openStart: false, openEnd: false },
      { cpu: 3, module: 'kvm0', vm: 1, vcpu: 1, exits: 1, start: s0 + 3, end: s0 + 8, openStart: false, openEnd: false },
    ]);
    expect(tl.marks.filter((m) => m.cpu === 3 && m.at >= s0).map((m) => [m.kind, m.detail])).toEqual([
      ['tlb:flush', 'vpid'],
      ['l1d:flush', ''],
      ['pmi', 'kvm0/vm1/vcpu1'],
    ]);
    expect(tl.vms).toEqual([{ module: 'kvm0', vm: 1, pid: 10, vcpus: 2, row: 0, start: expect.any(Number), end: tl.end, openStart: false, openEnd: true }]);
    expect(tl.cpus).toEqual([0, 1, 2, 3]);
    expect(tl.modules).toEqual(['kvm0']);
    expect(tl.usage.map((u) => u.count)).toEqual([1]);
  });

  test('spans not closed by the end are open; spans begun before the stream are open at the start', () => {
    const { host } = recordedFakeHost(4);
    const e = new Emitter(host, 4);
    e.load('kvm0');
    e.createVm('kvm0', 1);
    host.events.emit('vcpu:load', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 1 });
    e.offline(3);
    const rec = recordEvents(host); // starts late
    host.events.emit('vcpu:put', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 1 });
    host.events.emit('cpu:online', { cpu: 3 });
    e.destroyVm('kvm0', 1);
    e.unload('kvm0');
    host.events.emit('vcpu:load', { module: 'kvm1', vm: 4, vcpu: 0, cpu: 0 });
    const tl = buildTimeline(rec.events());
    const first = tl.start;
    expect(tl.runs[0]).toEqual({ cpu: 1, module: 'kvm0', vm: 1, vcpu: 0, exits: 0, start: first, end: first + 1, openStart: true, openEnd: false });
    expect(tl.runs[1]).toMatchObject({ cpu: 0, module: 'kvm1', openStart: false, openEnd: true, end: tl.end });
    expect(tl.offline).toEqual([{ cpu: 3, start: first, end: first + 1, openStart: true, openEnd: false }]);
    expect(tl.vms[0]).toMatchObject({ module: 'kvm0', vm: 1, openStart: true, pid: undefined });
    expect(tl.moduleSpans).toEqual([{ module: 'kvm0', params: {}, start: first, end: expect.any(Number), openStart: true, openEnd: false }]);
  });

  test('a load on a busy CPU ends the run there; offline ends a run; vm:destroy and module:unload end what they own', () => {
    const { host, rec } = recordedFakeHost(4);
    const ev = host.events;
    ev.emit('vcpu:load', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 1 });
    const a = ev.seq;
    ev.emit('vcpu:load', { module: 'kvm0', vm: 2, vcpu: 0, cpu: 1 });
    const b = ev.seq;
    ev.emit('cpu:offline', { cpu: 1 });
    ev.emit('cpu:online', { cpu: 1 });
    ev.emit('vcpu:load', { module: 'kvm0', vm: 3, vcpu: 0, cpu: 2 });
    const c = ev.seq;
    ev.emit('vm:destroy', { module: 'kvm0', vm: 3 });
    ev.emit('vm:create', { module: 'kvm1', vm: 1, pid: 1 });
    ev.emit('vcpu:load', { module: 'kvm1', vm: 1, vcpu: 0, cpu: 3 });
    const d = ev.seq;
    ev.emit('module:unload', { name: 'kvm1' });
    const runs = buildTimeline(rec.events()).runs;
    expect(runs.map((r) => [r.cpu, r.vm, r.end])).toEqual([
      [1, 1, a],
      [1, 2, b],
      [2, 3, c],
      [3, 1, d],
    ]);
  });

  test('a vCPU loaded elsewhere leaves its old CPU; a late vcpu:exit counts on the run that just ended', () => {
    const { host, rec } = recordedFakeHost(4);
    const ev = host.events;
    ev.emit('vcpu:load', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 1 });
    ev.emit('vcpu:load', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 1 }); // already there: nothing
    ev.emit('vcpu:load', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 2 });
    ev.emit('vcpu:put', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 2 });
    ev.emit('vcpu:exit', { module: 'kvm0', vm: 1, vcpu: 0, cpu: 2, reason: 2 });
    const runs = buildTimeline(rec.events()).runs;
    expect(runs.map((r) => [r.cpu, r.exits])).toEqual([
      [1, 0],
      [2, 1],
    ]);
  });

  test('VMs alive at the same time get different rows, first fit', () => {
    const { host, rec } = recordedFakeHost(2);
    const e = new Emitter(host, 2);
    e.createVm('kvm0', 1);
    e.createVm('kvm0', 2);
    e.destroyVm('kvm0', 1);
    e.createVm('kvm0', 3);
    e.createVm('kvm1', 1);
    const tl = buildTimeline(rec.events());
    expect(tl.vms.map((v) => `${v.module}/vm${v.vm}@${v.row}`)).toEqual(['kvm0/vm1@0', 'kvm0/vm2@1', 'kvm0/vm3@0', 'kvm1/vm1@0']);
    expect(tl.vmRows).toEqual({ kvm0: 2, kvm1: 1 });
  });

  test('warnings go to their module when the source is one, else stay with their CPU', () => {
    const { host, rec } = recordedFakeHost(4);
    host.events.emit('module:load', { name: 'kvm0', params: { enable_vpid: 'Y' } });
    host.warn({ source: 'kvm0', message: 'vpid exhausted', cpu: 1 });
    host.warn({ source: 'cpuhp', message: 'x', cpu: 2 });
    host.suspend();
    const tl = buildTimeline(rec.events());
    const w = tl.marks.filter((m) => m.kind === 'warning');
    expect(w.map((m) => [m.module, m.cpu, m.detail])).toEqual([
      ['kvm0', 1, 'vpid exhausted'],
      [undefined, 2, 'x'],
    ]);
    expect(tl.marks.find((m) => m.kind === 'power')?.detail).toBe('suspend');
    expect(tl.moduleSpans[0]?.params).toEqual({ enable_vpid: 'Y' });
  });

  test('an out-of-order stream is read by seq; malformed and unknown events are ignored; empty is fine', () => {
    const mk = (name: string, seq: number, rest: Record<string, unknown>, timeline?: TimelineRole): TraceEvent => ({
      name,
      ...(timeline === undefined ? {} : { meaning: { timeline } }),
      payload: { seq, tick: 0, ...rest },
    });
    const tl = buildTimeline([
      mk('vcpu:put', 5, { module: 'kvm0', vm: 1, vcpu: 0, cpu: 0 }, 'run:end'),
      mk('vcpu:load', 2, { module: 'kvm0', vm: 1, vcpu: 0, cpu: 0 }, 'run:start'),
      mk('vcpu:load', 3, { module: 'kvm0', vm: 1, cpu: 1 }, 'run:start'),
      mk('vcpu:load', 1, { module: 'kvm0', vm: 1, vcpu: 0, cpu: 1 }), // no declared role: ignored
      mk('something:else', 4, { cpu: 7 }),
    ]);
    expect(tl.runs.map((r) => [r.start, r.end])).toEqual([[2, 5]]);
    expect(tl.cpus).toEqual([0]);
    const empty = buildTimeline([]);
    expect([empty.start, empty.end, empty.events, empty.runs.length]).toEqual([0, 1, 0, 0]);
    expect(buildTimeline([], { cpus: 3 }).cpus).toEqual([0, 1, 2]);
  });

  test('module colors: vac is grey, the others follow the palette in order of appearance', () => {
    const tl = buildTimeline(rollingUpgrade({ cpus: 2, vms: 2, rounds: 1 }).events);
    expect(tl.modules).toEqual(['vac', 'kvm0', 'kvm1']);
    const c = moduleColors(tl);
    expect(c.get('vac')).toEqual(VAC_COLOR);
    expect(c.get('kvm0')).toEqual(MODULE_PALETTE[0]);
    expect(c.get('kvm1')).toEqual(MODULE_PALETTE[1]);
    expect(new Set(MODULE_PALETTE.map((p) => p.hex)).size).toBe(MODULE_PALETTE.length);
  });
});
