import { describe, expect, test } from 'vitest';
import { PERF_GUEST_ACTIVE, PERF_GUEST_USER, createHost } from '../../src/index.js';
import type { Host, PerfGuestCallbacks } from '../../src/index.js';
import { record } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';

function newHost(cpus = 2): Host {
  return createHost({ cpus, hardware: fakeHardware() });
}

/** Callbacks that claim a guest on `guestCpus`, with RIP 0x1000 + cpu. */
function perf(name: string, guestCpus: readonly number[] = [], user = false): PerfGuestCallbacks {
  return {
    name,
    state: (cpu) => (guestCpus.includes(cpu) ? PERF_GUEST_ACTIVE | (user ? PERF_GUEST_USER : 0) : 0),
    getIp: (cpu) => 0x1000n + BigInt(cpu),
    attribute: (cpu) => `${name}/vcpu${cpu}`,
  };
}

describe('perf guest-info callbacks', () => {
  test('no callbacks: every PMI is a host PMI (state 0)', () => {
    const host = newHost();
    expect(host.raisePmi(1)).toEqual({ cpu: 1, state: 0, ip: undefined, callbacks: undefined, attributedTo: undefined });
    expect(host.hooks.perfGuestCallbacks).toBeUndefined();
  });

  test('registered callbacks answer: guest state, RIP and attribution only when in a guest', () => {
    const host = newHost();
    host.hooks.registerPerfGuestCallbacks(perf('kvm0', [1], true));
    expect(host.hooks.perfGuestCallbacks).toBe('kvm0');
    expect(host.raisePmi(1)).toEqual({ cpu: 1, state: PERF_GUEST_ACTIVE | PERF_GUEST_USER, ip: 0x1001n, callbacks: 'kvm0', attributedTo: 'kvm0/vcpu1' });
    expect(host.raisePmi(0)).toEqual({ cpu: 0, state: 0, ip: undefined, callbacks: 'kvm0', attributedTo: undefined });
    expect([PERF_GUEST_ACTIVE, PERF_GUEST_USER]).toEqual([1, 2]);
  });

  test('a second registration is a recorded warning and is ignored: the first still answers', () => {
    const host = newHost();
    const first = perf('kvm0', [0]);
    host.hooks.registerPerfGuestCallbacks(first);
    const warnings = record(host, 'warning');
    expect(() => host.hooks.registerPerfGuestCallbacks(perf('kvm1', [0, 1]))).not.toThrow();
    expect(host.warnings).toHaveLength(1);
    expect(host.warnings[0]?.source).toBe('perf');
    expect(host.warnings[0]?.message).toContain('kvm1');
    expect(host.warnings[0]?.message).toContain('kvm0');
    expect(warnings).toHaveLength(1);
    expect(host.hooks.perfGuestCallbacks).toBe('kvm0');
    expect(host.raisePmi(0).callbacks).toBe('kvm0');
    expect(host.raisePmi(1).state).toBe(0);
  });

  test('unregistering callbacks that are not the registered ones warns and changes nothing', () => {
    const host = newHost();
    const first = perf('kvm0', [0]);
    host.hooks.registerPerfGuestCallbacks(first);
    host.hooks.unregisterPerfGuestCallbacks(perf('kvm1'));
    expect(host.warnings.map((w) => [w.source, w.message.includes('kvm1')])).toEqual([['perf', true]]);
    expect(host.hooks.perfGuestCallbacks).toBe('kvm0');
    // the right ones unregister; then anyone may register
    host.hooks.unregisterPerfGuestCallbacks(first);
    expect(host.hooks.perfGuestCallbacks).toBeUndefined();
    expect(host.raisePmi(0).state).toBe(0);
    host.hooks.registerPerfGuestCallbacks(perf('kvm1', [0]));
    expect(host.raisePmi(0).callbacks).toBe('kvm1');
    expect(host.warnings).toHaveLength(1);
  });

  test('unregistering when nothing is registered warns', () => {
    const host = newHost();
    host.hooks.unregisterPerfGuestCallbacks(perf('kvm0'));
    expect(host.warnings).toHaveLength(1);
  });
});

describe('posted-interrupt wakeup handler', () => {
  test('no handler: nothing is woken', () => {
    const host = newHost();
    expect(host.hooks.hasPostedIntrWakeupHandler).toBe(false);
    expect(host.raisePostedIntrWakeup(0)).toEqual([]);
  });

  test('the last writer wins, silently; undefined restores the dummy handler', () => {
    const host = newHost();
    host.hooks.setPostedIntrWakeupHandler((cpu) => [`kvm0:cpu${cpu}`]);
    host.hooks.setPostedIntrWakeupHandler((cpu) => [`kvm1:cpu${cpu}`, 'kvm1:other']);
    expect(host.raisePostedIntrWakeup(1)).toEqual(['kvm1:cpu1', 'kvm1:other']);
    expect(host.warnings).toEqual([]);
    expect(host.hooks.hasPostedIntrWakeupHandler).toBe(true);
    host.hooks.setPostedIntrWakeupHandler(undefined);
    expect(host.hooks.hasPostedIntrWakeupHandler).toBe(false);
    expect(host.raisePostedIntrWakeup(1)).toEqual([]);
  });
});

describe('emergency virtualization callback', () => {
  test('a second registration is a recorded warning and is ignored', () => {
    const host = newHost(2);
    const calls: string[] = [];
    const first = (cpu: number): void => void calls.push(`first:${cpu}`);
    host.hooks.registerEmergencyVirtCallback(first);
    host.hooks.registerEmergencyVirtCallback((cpu) => void calls.push(`second:${cpu}`));
    expect(host.warnings).toHaveLength(1);
    expect(host.warnings[0]?.source).toBe('kernel');
    expect(host.warnings[0]?.message).toContain('already registered');
    expect(host.hooks.hasEmergencyVirtCallback).toBe(true);
    host.crash();
    expect(calls).toEqual(['first:0', 'first:1']);
  });

  test('unregistering another callback warns; the right one unregisters', () => {
    const host = newHost(1);
    const calls: number[] = [];
    const cb = (cpu: number): void => void calls.push(cpu);
    host.hooks.registerEmergencyVirtCallback(cb);
    host.hooks.unregisterEmergencyVirtCallback(() => undefined);
    expect(host.warnings).toHaveLength(1);
    expect(host.hooks.hasEmergencyVirtCallback).toBe(true);
    host.hooks.unregisterEmergencyVirtCallback(cb);
    expect(host.hooks.hasEmergencyVirtCallback).toBe(false);
    host.crash();
    expect(calls).toEqual([]);
  });
});

describe('NMI handlers', () => {
  test('raiseNmi asks every handler in registration order and collects the claims', () => {
    const host = newHost(2);
    expect(host.raiseNmi(0)).toEqual([]);
    host.hooks.registerNmiHandler((cpu) => (cpu === 1 ? 'kvm0/vcpu3' : undefined));
    const off = host.hooks.registerNmiHandler(() => 'perf');
    host.hooks.registerNmiHandler((cpu) => `kvm1/cpu${cpu}`);
    expect(host.raiseNmi(1)).toEqual(['kvm0/vcpu3', 'perf', 'kvm1/cpu1']);
    expect(host.raiseNmi(0)).toEqual(['perf', 'kvm1/cpu0']);
    off();
    expect(host.raiseNmi(0)).toEqual(['kvm1/cpu0']);
  });
});

describe('warnings', () => {
  test('are recorded in order with the CPU when given, and emitted as events', () => {
    const host = newHost();
    const events = record(host, 'warning');
    host.warn({ source: 'kvm0', message: 'one' });
    host.warn({ source: 'kernel', message: 'two', cpu: 1 });
    expect(host.warnings).toEqual([
      { source: 'kvm0', message: 'one' },
      { source: 'kernel', message: 'two', cpu: 1 },
    ]);
    expect(events.map(([, e]) => [e['source'], e['message'], e['cpu']])).toEqual([
      ['kvm0', 'one', undefined],
      ['kernel', 'two', 1],
    ]);
  });

  test('a module warns through its context, with its name as the source', () => {
    const host = newHost();
    host.insmod({
      name: 'noisy',
      depends: [],
      params: {},
      init(ctx) {
        ctx.warn('hello');
        ctx.warn('on a CPU', 1);
        return undefined;
      },
    });
    expect(host.warnings).toEqual([
      { source: 'noisy', message: 'hello' },
      { source: 'noisy', message: 'on a CPU', cpu: 1 },
    ]);
  });

  test('every registration returns its undo (a function, also Disposable); undoing twice is harmless', () => {
    const host = newHost();
    const h = host.hooks;
    const perfUndo = h.registerPerfGuestCallbacks(perf('kvm0', [0]));
    const piUndo = h.setPostedIntrWakeupHandler(() => ['x']);
    const emUndo = h.registerEmergencyVirtCallback(() => undefined);
    const nmiUndo = h.registerNmiHandler(() => 'n');
    expect([h.perfGuestCallbacks, h.hasPostedIntrWakeupHandler, h.hasEmergencyVirtCallback, h.nmiHandlerCount]).toEqual(['kvm0', true, true, 1]);
    perfUndo();
    piUndo[Symbol.dispose]();
    emUndo.dispose();
    nmiUndo();
    nmiUndo();
    expect([h.perfGuestCallbacks, h.hasPostedIntrWakeupHandler, h.hasEmergencyVirtCallback, h.nmiHandlerCount]).toEqual([undefined, false, false, 0]);
    expect(host.warnings).toEqual([]);
  });

  test('the undo of an ignored second registration is the unregister Linux makes: it WARNs and leaves the first in place', () => {
    const host = newHost();
    const first = perf('kvm0');
    host.hooks.registerPerfGuestCallbacks(first);
    const second = host.hooks.registerPerfGuestCallbacks(perf('kvm1'));
    second();
    expect(host.hooks.perfGuestCallbacks).toBe('kvm0');
    expect(host.warnings.map((w) => w.message)).toEqual([
      'perf_register_guest_info_callbacks: kvm1: callbacks of kvm0 already registered, ignored',
      'perf_unregister_guest_info_callbacks: kvm1: not the registered callbacks, ignored',
    ]);
  });
});
