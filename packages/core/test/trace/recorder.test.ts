import { describe, expect, test } from 'vitest';
import { createHost, recordEvents } from '../../src/index.js';
import type { EventStamp } from '../../src/index.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { Emitter } from './scenario.js';

function host(cpus = 4) {
  return createHost({ cpus, hardware: fakeHardware() });
}

describe('recordEvents', () => {
  test('records every event from now on, in order, with the emitted payload objects', () => {
    const h = host();
    const before = h.events.seq;
    const seen: EventStamp[] = [];
    h.events.onAny((_, p) => seen.push(p));
    const rec = recordEvents(h);
    expect(rec.recording).toBe(true);
    const p = h.spawn({ name: 'vmm' });
    h.cpuDown(2);
    h.cpuUp(2);
    h.warn({ source: 'test', message: 'hello', cpu: 1 });
    p.kill();
    const events = rec.events();
    expect(events.map((e) => e.name)).toEqual(['process:spawn', 'cpu:offline', 'cpu:online', 'warning', 'process:exit']);
    expect(events.map((e) => e.payload.seq)).toEqual([before, before + 1, before + 2, before + 3, before + 4]);
    expect(events[1]?.payload).toMatchObject({ cpu: 2 });
    expect(events[3]?.payload).toMatchObject({ source: 'test', message: 'hello', cpu: 1 });
    // No copy: the recorder keeps the object every listener got.
    expect(events.map((e) => e.payload)).toEqual(seen);
    expect(events[0]?.payload).toBe(seen[0]);
    expect(rec.size).toBe(5);
    expect(rec.dropped).toBe(0);
  });

  test('stop() ends the recording, keeps what was recorded, and is idempotent; dispose and Symbol.dispose stop too', () => {
    const h = host();
    const rec = recordEvents(h);
    h.spawn();
    rec.stop();
    expect(rec.recording).toBe(false);
    h.spawn();
    expect(rec.events().map((e) => e.name)).toEqual(['process:spawn']);
    rec.stop();
    rec.dispose();
    expect(rec.size).toBe(1);
    // Nobody listens any more: the hot paths are back to building no payload.
    expect(h.events.wants('vcpu:load')).toBe(false);

    const a = recordEvents(h);
    const b = recordEvents(h);
    a.dispose();
    b[Symbol.dispose]();
    h.spawn();
    expect(a.size + b.size).toBe(0);
    expect(a.recording || b.recording).toBe(false);
  });

  test('events() returns a fresh array each call', () => {
    const h = host();
    const rec = recordEvents(h);
    h.spawn();
    const first = rec.events();
    first.length = 0;
    expect(rec.events()).toHaveLength(1);
  });

  test('a limit keeps the newest events in a ring buffer and counts the dropped ones', () => {
    const h = host(8);
    const e = new Emitter(h, 8);
    const rec = recordEvents(h, { limit: 10 });
    const start = h.events.seq;
    for (let i = 0; i < 7; i++) e.run('kvm0', 1, 0, i % 8); // 3 events each: load, exit, put
    expect(rec.size).toBe(10);
    expect(rec.dropped).toBe(11);
    const seqs = rec.events().map((x) => x.payload.seq);
    expect(seqs).toEqual(Array.from({ length: 10 }, (_, i) => start + 11 + i));
    expect(rec.events()[9]?.name).toBe('vcpu:put');
    rec.clear();
    expect(rec.size).toBe(0);
    expect(rec.dropped).toBe(0);
    e.run('kvm0', 1, 0, 0);
    expect(rec.events().map((x) => x.name)).toEqual(['vcpu:load', 'vcpu:exit', 'vcpu:put']);
  });

  test('a limit larger than the stream keeps everything', () => {
    const h = host();
    const rec = recordEvents(h, { limit: 1000 });
    for (let i = 0; i < 20; i++) h.spawn();
    expect(rec.size).toBe(20);
    expect(rec.dropped).toBe(0);
  });

  test('exclude leaves names out (and they do not count as dropped)', () => {
    const h = host();
    const e = new Emitter(h, 4);
    const rec = recordEvents(h, { exclude: ['vcpu:exit', 'process:spawn'], limit: 4 });
    h.spawn();
    e.run('kvm0', 1, 0, 0);
    e.run('kvm0', 1, 0, 1);
    expect(rec.events().map((x) => x.name)).toEqual(['vcpu:load', 'vcpu:put', 'vcpu:load', 'vcpu:put']);
    expect(rec.dropped).toBe(0);
    e.run('kvm0', 1, 0, 2);
    expect(rec.dropped).toBe(2);
  });

  test('rejects a limit that is not a positive integer', () => {
    const h = host();
    for (const limit of [0, -1, 1.5, Number.NaN]) expect(() => recordEvents(h, { limit })).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
  });

  test('clear() while stopped empties it and it stays stopped', () => {
    const h = host();
    const rec = recordEvents(h);
    h.spawn();
    rec.stop();
    rec.clear();
    h.spawn();
    expect(rec.size).toBe(0);
    expect(rec.recording).toBe(false);
  });

  // Its speed is measured in bench/ (the traced KVM_RUN of the kvm-run suite), never by a timed assertion here.
  test('a bounded recorder on a hot path keeps `limit` events and counts the rest as dropped', () => {
    const h = host(8);
    const e = new Emitter(h, 8);
    const rec = recordEvents(h, { limit: 50_000 });
    for (let i = 0; i < 100_000; i++) e.run('kvm0', 1, 0, i & 7);
    expect(rec.size).toBe(50_000);
    expect(rec.dropped).toBe(250_000);
  });
});
