import { describe, expect, test } from 'vitest';
import { CPUHP_AP_ONLINE_DYN, CPUHP_FIXED_STATES, KernelError, createHost } from '../../src/index.js';
import type { CpuhpCallbacks, Host } from '../../src/index.js';
import { expectKernelError, expectUsageError, record } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';

function newHost(cpus = 4): Host {
  return createHost({ cpus, hardware: fakeHardware() });
}

/** Callbacks that log `<name>:up:<cpu>` / `<name>:down:<cpu>`, failing startup on `failOn`. */
function logging(log: string[], name: string, failOn: readonly number[] = []): CpuhpCallbacks {
  return {
    startup(cpu) {
      if (failOn.includes(cpu)) {
        log.push(`${name}:fail:${cpu}`);
        throw new KernelError('EIO', 'cpuhp', `${name} refuses CPU ${cpu}`);
      }
      log.push(`${name}:up:${cpu}`);
    },
    teardown(cpu) {
      log.push(`${name}:down:${cpu}`);
    },
  };
}

const online = (host: Host): number[] => host.cpus.filter((c) => c.online).map((c) => c.id);

describe('cpu up and down', () => {
  test('startups run in state order on cpuUp, teardowns in reverse on cpuDown', () => {
    const host = newHost();
    const log: string[] = [];
    host.events.on('cpu:online', (e) => log.push(`online:${e.cpu}`));
    host.events.on('cpu:offline', (e) => log.push(`offline:${e.cpu}`));
    host.cpuhp.setup('dyn-a', logging(log, 'a'), { invoke: false });
    host.cpuhp.setup('kvm', logging(log, 'kvm'), { slot: 'CPUHP_AP_KVM_ONLINE', invoke: false });
    host.cpuhp.setup('dyn-b', logging(log, 'b'), { invoke: false });
    // the fixed KVM state comes before the dynamic ones, the scheduler's CPUHP_AP_ACTIVE last
    expect(host.cpuhp.states()).toEqual([
      { name: 'kvm', slot: 'CPUHP_AP_KVM_ONLINE' },
      { name: 'dyn-a', slot: CPUHP_AP_ONLINE_DYN },
      { name: 'dyn-b', slot: CPUHP_AP_ONLINE_DYN },
      { name: 'sched:active', slot: 'CPUHP_AP_ACTIVE' },
    ]);
    expect(log).toEqual([]);
    host.cpuDown(2);
    expect(log).toEqual(['b:down:2', 'a:down:2', 'kvm:down:2', 'offline:2']);
    expect(online(host)).toEqual([0, 1, 3]);
    log.length = 0;
    host.cpuUp(2);
    expect(log).toEqual(['kvm:up:2', 'a:up:2', 'b:up:2', 'online:2']);
    expect(online(host)).toEqual([0, 1, 2, 3]);
  });

  test('the fixed states are ordered as in cpuhotplug.h', () => {
    expect(CPUHP_FIXED_STATES.CPUHP_AP_KVM_ONLINE).toBeLessThan(CPUHP_FIXED_STATES.CPUHP_AP_ACTIVE);
  });

  test('a failing startup rolls back the earlier states on that CPU, the CPU stays offline, the error is thrown', () => {
    const host = newHost();
    const log: string[] = [];
    host.cpuhp.setup('kvm', logging(log, 'kvm'), { slot: 'CPUHP_AP_KVM_ONLINE', invoke: false });
    host.cpuhp.setup('a', logging(log, 'a'), { invoke: false });
    host.cpuhp.setup('bad', logging(log, 'bad', [3]), { invoke: false });
    host.cpuhp.setup('c', logging(log, 'c'), { invoke: false });
    host.cpuDown(3);
    log.length = 0;
    const events = record(host, 'cpu:online', 'cpu:offline');
    const e = expectKernelError(host, () => host.cpuUp(3), 'EIO', { errno: 5 });
    expect(e.message).toContain('bad refuses CPU 3');
    expect(log).toEqual(['kvm:up:3', 'a:up:3', 'bad:fail:3', 'a:down:3', 'kvm:down:3']);
    expect(host.cpus[3]?.online).toBe(false);
    expect(events).toEqual([]);
    // other CPUs are unaffected
    host.cpuDown(1);
    log.length = 0;
    host.cpuUp(1);
    expect(log).toEqual(['kvm:up:1', 'a:up:1', 'bad:up:1', 'c:up:1']);
  });

  test('cpuDown(0) → EBUSY (16): the boot CPU stays', () => {
    const host = newHost();
    const e = expectKernelError(host, () => host.cpuDown(0), 'EBUSY', { errno: 16 });
    expect(e.op).toBe('cpu_down');
  });

  test('cpuUp of an online CPU and cpuDown of an offline CPU are no-ops', () => {
    const host = newHost();
    const log: string[] = [];
    host.cpuhp.setup('a', logging(log, 'a'), { invoke: false });
    const seq = host.events.seq;
    const before = host.snapshot();
    host.cpuUp(1);
    expect(host.snapshot()).toEqual(before);
    expect(host.events.seq).toBe(seq);
    host.cpuDown(1);
    log.length = 0;
    const seq2 = host.events.seq;
    host.cpuDown(1);
    expect(log).toEqual([]);
    expect(host.events.seq).toBe(seq2);
  });

  test('a single-CPU host: nothing to take down but CPU 0', () => {
    const host = newHost(1);
    expectKernelError(host, () => host.cpuDown(0), 'EBUSY');
    host.cpuUp(0);
    expect(online(host)).toEqual([0]);
  });
});

describe('cpuhp_setup_state', () => {
  test('with invoke (the default): startup on every online CPU, ascending; removal tears down on every online CPU', () => {
    const host = newHost();
    host.cpuDown(2);
    const log: string[] = [];
    const remove = host.cpuhp.setup('a', logging(log, 'a'));
    expect(log).toEqual(['a:up:0', 'a:up:1', 'a:up:3']);
    log.length = 0;
    remove();
    expect(log).toEqual(['a:down:0', 'a:down:1', 'a:down:3']);
    remove(); // idempotent
    expect(log).toHaveLength(3);
    expect(host.cpuhp.states().map((s) => s.name)).toEqual(['sched:active']);
  });

  test('_nocalls (invoke: false): no callbacks at setup or removal', () => {
    const host = newHost();
    const log: string[] = [];
    const remove = host.cpuhp.setup('a', logging(log, 'a'), { invoke: false });
    remove();
    expect(log).toEqual([]);
  });

  test('a failing startup at setup rolls back the CPUs already done (ascending, as cpuhp_rollback_install) and installs nothing', () => {
    const host = newHost();
    const log: string[] = [];
    const e = expectKernelError(host, () => host.cpuhp.setup('bad', logging(log, 'bad', [2])), 'EIO', { errno: 5 });
    expect(e.message).toContain('CPU 2');
    expect(log).toEqual(['bad:up:0', 'bad:up:1', 'bad:fail:2', 'bad:down:0', 'bad:down:1']);
    expect(host.cpuhp.states().map((s) => s.name)).toEqual(['sched:active']);
    // the failed state is not run on later hotplug operations
    host.cpuDown(1);
    host.cpuUp(1);
    expect(log).toHaveLength(5);
  });

  test('a failure at setup on the first CPU rolls back nothing', () => {
    const host = newHost();
    const log: string[] = [];
    expectKernelError(host, () => host.cpuhp.setup('bad', logging(log, 'bad', [0]), { slot: 'CPUHP_AP_KVM_ONLINE' }), 'EIO');
    expect(log).toEqual(['bad:fail:0']);
    // the fixed slot is free again
    host.cpuhp.setup('kvm', {}, { slot: 'CPUHP_AP_KVM_ONLINE' });
  });

  test('the fixed slot CPUHP_AP_KVM_ONLINE has one owner: the second → EBUSY (16)', () => {
    const host = newHost();
    const log: string[] = [];
    const remove = host.cpuhp.setup('kvm0/cpu:online', logging(log, 'kvm0'), { slot: 'CPUHP_AP_KVM_ONLINE' });
    log.length = 0;
    const e = expectKernelError(host, () => host.cpuhp.setup('kvm1/cpu:online', logging(log, 'kvm1'), { slot: 'CPUHP_AP_KVM_ONLINE' }), 'EBUSY', { errno: 16 });
    expect(e.message).toContain('kvm0/cpu:online');
    expect(log).toEqual([]); // no callback of the refused state ran
    remove();
    host.cpuhp.setup('kvm1/cpu:online', logging(log, 'kvm1'), { slot: 'CPUHP_AP_KVM_ONLINE' });
    expect(host.cpuhp.states()[0]).toEqual({ name: 'kvm1/cpu:online', slot: 'CPUHP_AP_KVM_ONLINE' });
  });

  test('40 dynamic slots, then ENOSPC (28); a freed slot can be reused', () => {
    const host = newHost(2);
    const removes = Array.from({ length: 40 }, (_, i) => host.cpuhp.setup(`dyn${i}`, {}));
    expect(host.cpuhp.states().filter((s) => s.slot === CPUHP_AP_ONLINE_DYN)).toHaveLength(40);
    const e = expectKernelError(host, () => host.cpuhp.setup('one-too-many', {}), 'ENOSPC', { errno: 28 });
    expect(e.op).toBe('cpuhp_setup_state');
    // fixed slots are not dynamic ones
    host.cpuhp.setup('kvm', {}, { slot: 'CPUHP_AP_KVM_ONLINE' });
    removes[7]?.();
    host.cpuhp.setup('reused', {});
    // it takes the freed position in the order
    expect(host.cpuhp.states().map((s) => s.name).indexOf('reused')).toBe(1 + 7);
  });

  test('an unknown slot is a UsageError', () => {
    const host = newHost();
    expectUsageError(host, () => host.cpuhp.setup('x', {}, { slot: 'CPUHP_NOPE' as 'CPUHP_AP_ACTIVE' }), 'ERR_UNKNOWN_NAME');
  });

  test('states appear in host.snapshot()', () => {
    const host = newHost();
    host.cpuhp.setup('mine', {});
    expect(host.snapshot().cpuhp).toContainEqual({ name: 'mine', slot: CPUHP_AP_ONLINE_DYN });
  });

  test('the undo is Disposable', () => {
    const host = newHost();
    const remove = host.cpuhp.setup('mine', {});
    remove[Symbol.dispose]();
    expect(host.cpuhp.states().map((s) => s.name)).toEqual(['sched:active']);
  });
});
