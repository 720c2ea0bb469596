import { describe, expect, expectTypeOf, test } from 'vitest';
import { EventBus, KernelError, createHost, makeUndo } from '../../src/index.js';
import type { EventName, EventPayload, EventStamp, HardwareModel, Host, HostEvents } from '../../src/index.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { miscImage, paramsImage, stepImage } from '../support/images.js';

type Recorded = { name: string; payload: EventStamp & Record<string, unknown> };

/** A host whose whole event stream, from its very first event, is recorded (the hardware subscribes at create). */
function recordedHost(cpus = 4): { host: Host; stream: Recorded[] } {
  const stream: Recorded[] = [];
  const inner = fakeHardware();
  const hardware: HardwareModel = {
    name: 'recording',
    vendor: 'intel',
    create(env) {
      env.events.onAny((name, payload) => stream.push({ name, payload: payload as EventStamp & Record<string, unknown> }));
      return inner.create(env);
    },
  };
  return { host: createHost({ cpus, hardware }), stream };
}

/** The same calls, whatever the host: modules, devices, processes, hotplug, power, failures. */
function scenario(host: Host): void {
  host.insmod(miscImage({ name: 'kvm1', fops: { ioctl: () => 0 } }));
  host.insmod(paramsImage(), { count: '0x20', bogus: 1 });
  host.symlink('/dev/kvm1', '/dev/kvm');
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const fd = p.open('/dev/kvm');
  p.dup(fd);
  p.mmapAnonymous(8192);
  try {
    host.rmmod('kvm1');
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
  }
  try {
    host.insmod(stepImage({ name: 'broken', failAfter: 3 }));
  } catch (e) {
    if (!(e instanceof KernelError)) throw e;
  }
  host.events.tick++;
  host.cpuDown(3);
  host.cpuUp(3);
  host.suspend();
  host.resume();
  p.kill();
  host.rmmod('kvm1');
  host.warn({ source: 'test', message: 'done', cpu: 2 });
  host.reboot();
}

describe('the event stream', () => {
  test('every event carries seq 0, 1, 2, … (strictly increasing, no gaps) and tick', () => {
    const { host, stream } = recordedHost();
    scenario(host);
    expect(stream.length).toBeGreaterThan(20);
    expect(stream.map((e) => e.payload.seq)).toEqual(stream.map((_, i) => i));
    expect(host.events.seq).toBe(stream.length);
    for (const e of stream) expect(typeof e.payload.tick).toBe('number');
    // the first event is init's spawn
    expect(stream[0]).toEqual({ name: 'process:spawn', payload: { seq: 0, tick: 0, pid: 1 } });
    // tick is the scheduler's simulated time when the event happened
    const ticks = stream.map((e) => e.payload.tick);
    expect(ticks[0]).toBe(0);
    expect(ticks.at(-1)).toBe(1);
    expect([...ticks].sort((a, b) => a - b)).toEqual(ticks);
  });

  test('the stream covers the scenario in order', () => {
    const { host, stream } = recordedHost();
    scenario(host);
    expect(stream.map((e) => e.name)).toEqual([
      'process:spawn', // init
      'device:register',
      'module:load',
      'warning', // knobs: unknown parameter 'bogus' ignored
      'module:load',
      'process:spawn',
      'fd:open',
      'fd:open',
      'device:register', // broken's device …
      'device:unregister', // … undone
      'cpu:offline',
      'cpu:online',
      'power',
      'cpu:offline',
      'cpu:offline',
      'cpu:offline',
      'power',
      'cpu:online',
      'cpu:online',
      'cpu:online',
      'fd:close',
      'fd:close',
      'process:exit',
      'device:unregister',
      'module:unload',
      'warning',
      'power',
    ]);
  });

  test('the same calls on two hosts give identical event streams (determinism)', () => {
    const a = recordedHost();
    const b = recordedHost();
    scenario(a.host);
    scenario(b.host);
    expect(b.stream).toEqual(a.stream);
    expect(JSON.stringify(b.stream)).toBe(JSON.stringify(a.stream));
    expect(b.host.warnings).toEqual(a.host.warnings);
    expect(b.host.snapshot()).toEqual(a.host.snapshot());
  });

  test('the clock advances whether or not anyone listens', () => {
    const { host: quiet } = recordedHost();
    const plain = createHost({ cpus: 4, hardware: fakeHardware() });
    scenario(quiet);
    scenario(plain);
    expect(plain.events.seq).toBe(quiet.events.seq);
  });

  test('on / once / onAny return their undo (idempotent, Disposable); wants() reports listeners', () => {
    const bus = new EventBus();
    const seen: string[] = [];
    expect(bus.wants('cpu:online')).toBe(false);
    const off = bus.on('cpu:online', (e) => seen.push(`on:${e.cpu}:${e.seq}`));
    bus.once('cpu:online', (e) => seen.push(`once:${e.cpu}`));
    expect(bus.wants('cpu:online')).toBe(true);
    expect(bus.wants('cpu:offline')).toBe(false);
    bus.emit('cpu:online', { cpu: 1 });
    bus.emit('cpu:online', { cpu: 2 });
    off();
    off();
    bus.emit('cpu:online', { cpu: 3 });
    expect(seen).toEqual(['on:1:0', 'once:1', 'on:2:1']);
    expect(bus.seq).toBe(3);
    const any: string[] = [];
    const offAny = bus.onAny((name, e) => any.push(`${name}@${e.seq}`));
    expect(bus.wants('cpu:offline')).toBe(true);
    bus.emit('cpu:offline', { cpu: 1 });
    expect(bus.stamp('power')).toBe(4); // stamped, never delivered: the clock still moves
    bus.emit('cpu:online', { cpu: 1 });
    offAny[Symbol.dispose]();
    bus.emit('cpu:online', { cpu: 1 });
    expect(any).toEqual(['cpu:offline@3', 'cpu:online@5']);
    expect(bus.seq).toBe(7);
  });

  test('stamp() returns -1 when nobody listens, the seq otherwise; deliver() hands the event over as it is', () => {
    const bus = new EventBus();
    expect(bus.stamp('cpu:online')).toBe(-1);
    const got: unknown[] = [];
    bus.on('cpu:online', (e) => got.push(e));
    const seq = bus.stamp('cpu:online');
    expect(seq).toBe(1);
    const event = { seq, tick: bus.tick, cpu: 3 };
    bus.deliver('cpu:online', event);
    expect(got).toEqual([{ seq: 1, tick: 0, cpu: 3 }]);
    expect(got[0]).toBe(event);
    expect(bus.seq).toBe(2);
  });

  test('inside a kernel operation events are queued; they reach listeners in seq order when the outermost one ends', () => {
    const bus = new EventBus();
    const seen: string[] = [];
    bus.on('cpu:online', (e) => seen.push(`online ${e.cpu} inKernel=${String(bus.inKernel)}`));
    bus.onAny((name, e) => seen.push(`any ${name}@${e.seq}`));
    bus.op(() => {
      bus.emit('cpu:online', { cpu: 1 });
      bus.op(() => bus.emit('cpu:offline', { cpu: 2 }));
      expect(seen).toEqual([]);
      bus.emit('cpu:online', { cpu: 3 });
    });
    expect(seen).toEqual(['any cpu:online@0', 'online 1 inKernel=false', 'any cpu:offline@1', 'any cpu:online@2', 'online 3 inKernel=false']);
  });

  test('a throwing operation still delivers what it emitted', () => {
    const bus = new EventBus();
    const seen: number[] = [];
    bus.on('cpu:offline', (e) => seen.push(e.cpu));
    expect(() =>
      bus.op(() => {
        bus.emit('cpu:offline', { cpu: 5 });
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(seen).toEqual([5]);
    expect(bus.inKernel).toBe(false);
  });

  test('a listener that throws is reported and does not stop the others', () => {
    const errors: Array<[string, unknown]> = [];
    const bus = new EventBus((name, e) => errors.push([name, e]));
    const seen: string[] = [];
    bus.on('cpu:online', () => {
      throw new Error('first');
    });
    bus.on('cpu:online', (e) => seen.push(`second ${e.cpu}`));
    bus.onAny(() => {
      throw new Error('any');
    });
    bus.emit('cpu:online', { cpu: 7 });
    expect(seen).toEqual(['second 7']);
    expect(errors.map(([n, e]) => `${n}: ${(e as Error).message}`)).toEqual(['cpu:online: any', 'cpu:online: first']);
  });

  test('events emitted by an operation a listener starts are delivered after those already queued', () => {
    const bus = new EventBus();
    const seen: string[] = [];
    bus.on('cpu:online', (e) => {
      seen.push(`online ${e.cpu}`);
      if (e.cpu === 1) bus.op(() => bus.emit('cpu:offline', { cpu: 9 }));
    });
    bus.on('cpu:offline', (e) => seen.push(`offline ${e.cpu}`));
    bus.op(() => {
      bus.emit('cpu:online', { cpu: 1 });
      bus.emit('cpu:online', { cpu: 2 });
    });
    expect(seen).toEqual(['online 1', 'online 2', 'offline 9']);
  });

  test('subscribing or unsubscribing during delivery takes effect from the next event', () => {
    const bus = new EventBus();
    const seen: string[] = [];
    let off: (() => void) | undefined;
    bus.on('cpu:online', (e) => {
      seen.push(`a${e.cpu}`);
      off?.();
      bus.on('cpu:online', (x) => seen.push(`late${x.cpu}`));
    });
    off = bus.on('cpu:online', (e) => seen.push(`b${e.cpu}`));
    bus.emit('cpu:online', { cpu: 1 });
    bus.emit('cpu:online', { cpu: 2 });
    expect(seen).toEqual(['a1', 'b1', 'a2', 'late2']);
  });

  test('makeUndo runs its action at most once, via call, dispose() or Symbol.dispose', () => {
    let n = 0;
    const u = makeUndo(() => n++);
    u.dispose();
    u();
    u[Symbol.dispose]();
    expect(n).toBe(1);
  });
});

describe('event types', () => {
  test('payloads are typed', () => {
    const host = createHost({ cpus: 1, hardware: fakeHardware() });
    host.events.on('module:load', (e) => {
      expectTypeOf(e.name).toEqualTypeOf<string>();
      expectTypeOf(e.params).toEqualTypeOf<Readonly<Record<string, string>>>();
      expectTypeOf(e.seq).toEqualTypeOf<number>();
      expectTypeOf(e.tick).toEqualTypeOf<number>();
    });
    host.events.on('device:register', (e) => {
      expectTypeOf(e.owner).toEqualTypeOf<string | undefined>();
      expectTypeOf(e.minor).toEqualTypeOf<number>();
    });
    host.events.on('power', (e) => {
      expectTypeOf(e.what).toEqualTypeOf<'suspend' | 'resume' | 'reboot' | 'crash'>();
    });
    host.events.on('virt:usage', (e) => {
      expectTypeOf(e.delta).toEqualTypeOf<1 | -1>();
    });
    expectTypeOf<EventPayload<'cpu:online'>>().toEqualTypeOf<{ readonly cpu: number }>();
    expectTypeOf<EventPayload<'module:unload'>>().toEqualTypeOf<{ readonly name: string }>();
    expectTypeOf<'module:load'>().toMatchTypeOf<EventName>();
    expectTypeOf<keyof HostEvents>().toMatchTypeOf<EventName>();
  });

  test('unknown events and wrong payloads are type errors', () => {
    const bus = new EventBus();
    // @ts-expect-error: no such event
    bus.on('module:loaded', () => undefined);
    // @ts-expect-error: no such event
    bus.emit('nope', {});
    // @ts-expect-error: cpu:online needs a cpu
    bus.emit('cpu:online', {});
    // @ts-expect-error: name is a string
    bus.emit('module:unload', { name: 1 });
    bus.on('cpu:online', (e) => {
      // @ts-expect-error: cpu:online has no name
      void e.name;
    });
    expectTypeOf<'nope'>().not.toMatchTypeOf<EventName>();
    expect(bus.seq).toBe(3); // the three ill-typed emits still ran at runtime
  });
});
