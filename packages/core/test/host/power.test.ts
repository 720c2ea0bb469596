import { describe, expect, test } from 'vitest';
import { KernelError, createHost } from '../../src/index.js';
import type { HardwareEnv, HardwareModel, Host } from '../../src/index.js';
import { expectKernelError, record } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { InterleavedLog } from '../support/interleaved-log.js';

function newHost(cpus = 4): Host {
  return createHost({ cpus, hardware: fakeHardware() });
}

const online = (host: Host): number[] => host.cpus.filter((c) => c.online).map((c) => c.id);

/** Log hotplug teardown/startup and CPU events into `log`. */
function watchCpus(host: Host, log: { push(text: string): unknown }, failUp?: () => readonly number[]): void {
  host.cpuhp.setup(
    'watch',
    {
      startup(cpu) {
        if (failUp?.().includes(cpu) === true) throw new KernelError('EIO', 'cpuhp', `CPU ${cpu} will not come up`);
        log.push(`up:${cpu}`);
      },
      teardown: (cpu) => log.push(`down:${cpu}`),
    },
    { invoke: false },
  );
}

function syscore(host: Host, log: { push(text: string): unknown }, name: string, failSuspend = false): void {
  host.power.registerSyscore({
    name,
    suspend() {
      if (failSuspend) {
        log.push(`suspend-fail:${name}`);
        throw new KernelError('EBUSY', 'syscore_suspend', `${name} cannot suspend`);
      }
      log.push(`suspend:${name}`);
    },
    resume: () => log.push(`resume:${name}`),
    shutdown: () => log.push(`shutdown:${name}`),
  });
}

describe('suspend and resume', () => {
  test('suspend: CPUs 1 … N-1 go offline through hotplug (freeze_secondary_cpus order), then syscore suspend in reverse registration order', () => {
    const host = newHost(4);
    const log = new InterleavedLog(host);
    watchCpus(host, log);
    syscore(host, log, 'first');
    syscore(host, log, 'second');
    host.power.registerSyscore({ name: 'none' }); // no callbacks: skipped
    syscore(host, log, 'third');
    host.power.registerFreezer({ name: 'tasks', freeze: () => log.push('freeze'), thaw: () => log.push('thaw') });
    host.events.on('power', (e) => log.event(`power:${e.what}`, e));
    host.events.on('cpu:offline', (e) => log.event(`offline:${e.cpu}`, e));
    host.suspend();
    expect(log.lines()).toEqual([
      'power:suspend',
      'freeze',
      'down:1',
      'offline:1',
      'down:2',
      'offline:2',
      'down:3',
      'offline:3',
      'suspend:third',
      'suspend:second',
      'suspend:first',
    ]);
    expect(host.systemState).toBe('suspended');
    expect(online(host)).toEqual([0]);
  });

  test('resume: syscore resume in registration order, then the CPUs come back ascending', () => {
    const host = newHost(4);
    const log = new InterleavedLog(host);
    watchCpus(host, log);
    syscore(host, log, 'first');
    syscore(host, log, 'second');
    host.power.registerFreezer({ name: 'tasks', freeze: () => undefined, thaw: () => log.push('thaw') });
    host.suspend();
    log.clear();
    host.events.on('power', (e) => log.event(`power:${e.what}`, e));
    host.events.on('cpu:online', (e) => log.event(`online:${e.cpu}`, e));
    host.resume();
    expect(log.lines()).toEqual(['power:resume', 'resume:first', 'resume:second', 'up:1', 'online:1', 'up:2', 'online:2', 'up:3', 'online:3', 'thaw']);
    expect(host.systemState).toBe('running');
    expect(online(host)).toEqual([0, 1, 2, 3]);
    expect(host.warnings).toEqual([]);
  });

  test('a CPU that was offline before suspend stays offline after resume', () => {
    const host = newHost(4);
    const log: string[] = [];
    host.cpuDown(2);
    watchCpus(host, log);
    host.suspend();
    expect(log).toEqual(['down:1', 'down:3']);
    host.resume();
    expect(log).toEqual(['down:1', 'down:3', 'up:1', 'up:3']);
    expect(online(host)).toEqual([0, 1, 3]);
  });

  test('a CPU that fails to come up at resume: warning "Error taking CPU%d up: -5", it stays offline', () => {
    const host = newHost(4);
    const log: string[] = [];
    let refuse: number[] = [];
    watchCpus(host, log, () => refuse);
    host.suspend();
    refuse = [2];
    const warnings = record(host, 'warning');
    host.resume();
    expect(host.warnings).toEqual([{ source: 'kernel', message: 'Error taking CPU2 up: -5', cpu: 2 }]);
    expect(warnings).toHaveLength(1);
    expect(online(host)).toEqual([0, 1, 3]);
    expect(host.systemState).toBe('running');
    // it can be brought up by hand later
    refuse = [];
    host.cpuUp(2);
    expect(online(host)).toEqual([0, 1, 2, 3]);
  });

  test('a non-KernelError from a startup at resume is reported as -EIO', () => {
    const host = newHost(2);
    let boom = false;
    host.cpuhp.setup('x', {
      startup: () => {
        if (boom) throw new Error('bug');
      },
    });
    host.suspend();
    boom = true;
    host.resume();
    expect(host.warnings.map((w) => w.message)).toEqual(['Error taking CPU1 up: -5']);
  });

  test('the errno in the warning is the startup’s', () => {
    const host = newHost(2);
    let fail = false;
    host.cpuhp.setup('x', {
      startup: () => {
        if (fail) throw new KernelError('ENOMEM', 'x');
      },
    });
    host.suspend();
    fail = true;
    host.resume();
    expect(host.warnings.map((w) => w.message)).toEqual(['Error taking CPU1 up: -12']);
  });

  test('a failing syscore suspend: the ones already done resume, the CPUs come back, the error is thrown', () => {
    const host = newHost(3);
    const log: string[] = [];
    watchCpus(host, log);
    syscore(host, log, 'first');
    syscore(host, log, 'refuses', true);
    syscore(host, log, 'third');
    syscore(host, log, 'fourth');
    host.power.registerFreezer({ name: 'tasks', freeze: () => log.push('freeze'), thaw: () => log.push('thaw') });
    const e = expectKernelError(host, () => host.suspend(), 'EBUSY', { errno: 16 });
    expect(e.message).toContain('refuses cannot suspend');
    expect(log).toEqual([
      'freeze',
      'down:1',
      'down:2',
      'suspend:fourth',
      'suspend:third',
      'suspend-fail:refuses',
      'resume:third',
      'resume:fourth',
      'up:1',
      'up:2',
      'thaw',
    ]);
    expect(host.systemState).toBe('running');
    // and a later suspend works once the refusal is gone
    const host2 = newHost(2);
    syscore(host2, [], 'ok');
    host2.suspend();
    expect(host2.systemState).toBe('suspended');
  });

  test('while suspended: suspend/cpuUp/cpuDown/reboot → EBUSY, resume when running → EINVAL', () => {
    const host = newHost(2);
    expectKernelError(host, () => host.resume(), 'EINVAL', { errno: 22 });
    host.suspend();
    expectKernelError(host, () => host.suspend(), 'EBUSY', { errno: 16 });
    expectKernelError(host, () => host.cpuUp(1), 'EBUSY', { errno: 16 });
    expectKernelError(host, () => host.cpuDown(1), 'EBUSY', { errno: 16 });
    expectKernelError(host, () => host.reboot(), 'EBUSY', { errno: 16 });
    host.resume();
    expectKernelError(host, () => host.resume(), 'EINVAL', { errno: 22 });
  });

  test('suspend and resume on a single-CPU host only run syscore', () => {
    const host = newHost(1);
    const log: string[] = [];
    syscore(host, log, 'only');
    host.suspend();
    host.resume();
    expect(log).toEqual(['suspend:only', 'resume:only']);
  });

  test('unregistered syscore ops are not called', () => {
    const host = newHost(1);
    const log: string[] = [];
    const undo = host.power.registerSyscore({ name: 'gone', suspend: () => log.push('called') });
    undo();
    undo();
    host.suspend();
    expect(log).toEqual([]);
  });
});

describe('reboot', () => {
  test('reboot notifiers by priority, system_state restart, then syscore shutdown in reverse order', () => {
    const host = newHost(2);
    const log: string[] = [];
    const states: string[] = [];
    syscore(host, log, 'first');
    syscore(host, log, 'second');
    const notifier = (name: string, priority?: number): void => {
      host.power.registerRebootNotifier({
        name,
        ...(priority === undefined ? {} : { priority }),
        notify(reason) {
          states.push(host.systemState);
          log.push(`notify:${name}:${reason}`);
        },
      });
    };
    notifier('zero-a');
    notifier('high', 10);
    notifier('low', -1);
    notifier('zero-b', 0);
    notifier('higher', 20);
    expect(host.power.rebootNotifiers().map((n) => n.name)).toEqual(['higher', 'high', 'zero-a', 'zero-b', 'low']);
    const events = record(host, 'power');
    host.reboot();
    expect(log).toEqual([
      'notify:higher:restart',
      'notify:high:restart',
      'notify:zero-a:restart',
      'notify:zero-b:restart',
      'notify:low:restart',
      'shutdown:second',
      'shutdown:first',
    ]);
    expect(states).toEqual(['running', 'running', 'running', 'running', 'running']);
    expect(host.systemState).toBe('restart');
    expect(events.map(([, e]) => e['what'])).toEqual(['reboot']);
  });

  test('a second reboot → EBUSY (16); hotplug and suspend are refused after it; a crash is still possible', () => {
    const host = newHost(2);
    host.reboot();
    expectKernelError(host, () => host.reboot(), 'EBUSY', { errno: 16 });
    expectKernelError(host, () => host.cpuDown(1), 'EBUSY');
    expectKernelError(host, () => host.suspend(), 'EBUSY');
    host.crash();
    expect(host.systemState).toBe('crashed');
  });

  test('the hardware sees rebooting (kvm_rebooting) after a reboot', () => {
    let env: HardwareEnv | undefined;
    const inner = fakeHardware();
    const spy: HardwareModel = {
      name: 'spy',
      vendor: 'intel',
      create(e) {
        env = e;
        return inner.create(e);
      },
    };
    const host = createHost({ cpus: 1, hardware: spy });
    expect(env?.rebooting).toBe(false);
    host.reboot();
    expect(env?.rebooting).toBe(true);
  });

  test('unregistered reboot notifiers are not called', () => {
    const host = newHost(1);
    const log: string[] = [];
    const undo = host.power.registerRebootNotifier({ name: 'x', notify: () => log.push('x') });
    undo();
    host.reboot();
    expect(log).toEqual([]);
  });
});

describe('crash', () => {
  test('the emergency callback runs on CPU 0 first, then on every other online CPU', () => {
    const host = newHost(5);
    host.cpuDown(3);
    const cpus: number[] = [];
    host.hooks.registerEmergencyVirtCallback((cpu) => cpus.push(cpu));
    const events = record(host, 'power');
    host.crash();
    expect(cpus).toEqual([0, 1, 2, 4]);
    expect(host.systemState).toBe('crashed');
    expect(events.map(([, e]) => e['what'])).toEqual(['crash']);
  });

  test('crash after crash → EBUSY; reboot after crash → EBUSY; rebooting is set', () => {
    const host = newHost(2);
    host.crash();
    expectKernelError(host, () => host.crash(), 'EBUSY', { errno: 16 });
    expectKernelError(host, () => host.reboot(), 'EBUSY', { errno: 16 });
    expectKernelError(host, () => host.cpuUp(1), 'EBUSY', { errno: 16 });
  });

  test('a crash while suspended reaches CPU 0 only (the others are offline)', () => {
    const host = newHost(3);
    const cpus: number[] = [];
    host.hooks.registerEmergencyVirtCallback((cpu) => cpus.push(cpu));
    host.suspend();
    host.crash();
    expect(cpus).toEqual([0]);
  });

  test('a crash with no emergency callback does nothing else', () => {
    const host = newHost(2);
    host.crash();
    expect(host.systemState).toBe('crashed');
  });
});
