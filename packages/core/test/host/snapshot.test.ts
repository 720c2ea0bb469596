import { describe, expect, test } from 'vitest';
import { createHost } from '../../src/index.js';
import type { Host } from '../../src/index.js';
import { expectUsageError } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import type { FakeHostHardware } from '../support/fake-hardware.js';
import { miscImage, paramsImage } from '../support/images.js';

function newHost(): Host {
  return createHost({ cpus: 2, hardware: fakeHardware() });
}

describe('host.snapshot()', () => {
  test('a fresh host', () => {
    const host = newHost();
    const s = host.snapshot();
    expect(s.systemState).toBe('running');
    expect(s.cpus).toEqual([
      { online: true, cr4: 0, msrs: [] },
      { online: true, cr4: 0, msrs: [] },
    ]);
    expect(s.hardware).toEqual([
      { enabled: false, foreign: false },
      { enabled: false, foreign: false },
    ]);
    expect(s.modules).toEqual([]);
    expect(s.devices).toEqual([]);
    expect(s.processes).toEqual([{ pid: 1, fds: [], mappings: [] }]);
    expect(s.cpuhp).toEqual([{ name: 'sched:active', slot: 'CPUHP_AP_ACTIVE' }]);
    expect(s.providers).toEqual({});
    expect(s.hooks).toEqual({
      syscore: [],
      rebootNotifiers: [],
      freezers: [],
      perfGuestCallbacks: undefined,
      postedIntrWakeupHandler: false,
      emergencyVirtCallback: false,
      nmiHandlers: 0,
    });
  });

  test('it is a deep copy: later changes do not show in an earlier snapshot', () => {
    const host = newHost();
    const s = host.snapshot();
    const copy = structuredClone(s);
    host.insmod(paramsImage(), { count: 9 });
    host.insmod(miscImage({ name: 'kvm' }));
    host.spawn().open('/dev/kvm');
    host.cpuDown(1);
    host.cpus[0]?.msrs.set(0x10, 5n);
    expect(s).toEqual(copy);
    const t = host.snapshot();
    expect(t.modules.map((m) => [m.name, m.refcount, m.params])).toEqual([
      ['kvm', 1, {}],
      ['knobs', 0, { enable: 'Y', count: '9', mask: '0', label: 'none', flush: 'cond' }],
    ]);
    expect(t.processes.at(-1)?.fds).toEqual([{ fd: 3, path: '/dev/kvm' }]);
    expect(t.cpus[0]?.msrs).toEqual([[0x10, 5n]]);
  });

  test('it covers every registration a failing operation could leak', () => {
    const host = newHost();
    const steps: Array<[string, () => unknown]> = [
      ['syscore', () => host.power.registerSyscore({ name: 's' })],
      ['reboot', () => host.power.registerRebootNotifier({ name: 'r', notify: () => undefined })],
      ['freezer', () => host.power.registerFreezer({ name: 'f', freeze: () => undefined })],
      ['perf', () => host.hooks.registerPerfGuestCallbacks({ name: 'p', state: () => 0, getIp: () => 0n })],
      ['pi', () => host.hooks.setPostedIntrWakeupHandler(() => [])],
      ['emergency', () => host.hooks.registerEmergencyVirtCallback(() => undefined)],
      ['nmi', () => host.hooks.registerNmiHandler(() => undefined)],
      ['cpuhp', () => host.cpuhp.setup('x', {})],
      ['symlink', () => host.symlink('/dev/a', '/dev/b')],
      ['provider', () => host.registerSnapshotProvider('vac', () => ({ usage: 0 }))],
      ['hardware', () => host.hardware.setForeignOwner(1, true)],
      ['state', () => host.crash()],
    ];
    for (const [what, step] of steps) {
      const before = host.snapshot();
      step();
      expect(host.snapshot(), what).not.toEqual(before);
    }
  });

  test('warnings and the event clock are not part of it', () => {
    const host = newHost();
    const before = host.snapshot();
    host.warn({ source: 'x', message: 'y' });
    host.events.tick++;
    expect(host.snapshot()).toEqual(before);
  });

  test('snapshot providers and invariant checkers are named once', () => {
    const host = newHost();
    const off = host.registerSnapshotProvider('p', () => 1);
    expectUsageError(host, () => host.registerSnapshotProvider('p', () => 2), 'ERR_DUPLICATE');
    off();
    host.registerSnapshotProvider('p', () => 2);
    expect(host.snapshot().providers).toEqual({ p: 2 });
    const offC = host.registerInvariantChecker('c', () => []);
    expect(() => host.registerInvariantChecker('c', () => [])).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_DUPLICATE' }));
    expect([...host.invariantCheckers().keys()]).toContain('c');
    offC();
    expect([...host.invariantCheckers().keys()]).not.toContain('c');
  });
});

describe('the fake hardware', () => {
  test('enable/disable per CPU, foreign owner → EBUSY, injected faults → EFAULT, counters, check()', () => {
    const host = newHost();
    const hw = host.hardware as FakeHostHardware;
    const virt = hw.virt;
    expect(virt.name).toBe('fake');
    expect(virt.unsupported(0)).toBeUndefined();
    expect(virt.enableCpu(0)).toBeUndefined();
    expect(virt.isEnabled(0)).toBe(true);
    expect(virt.enabledByVac(0)).toBe(true);
    expect(virt.enableCpu(0)).toBe('EBUSY'); // already on
    hw.setForeignOwner(1, true);
    expect(virt.isEnabled(1)).toBe(true);
    expect(virt.enableCpu(1)).toBe('EBUSY');
    hw.setForeignOwner(1, false);
    hw.injectEnableFault(1, 'once');
    expect(virt.enableCpu(1)).toBe('EFAULT');
    expect(virt.enableCpu(1)).toBeUndefined();
    virt.disableCpu(1);
    hw.injectEnableFault(1, 'always');
    expect(virt.enableCpu(1)).toBe('EFAULT');
    expect(virt.enableCpu(1)).toBe('EFAULT');
    hw.injectEnableFault(1, 'off');
    expect(virt.enableCpu(1)).toBeUndefined();
    expect(hw.enabledCpus()).toEqual([0, 1]);
    expect(hw.counters(1)).toEqual({ enable: 2, disable: 1, emergency: 0, enableFailed: 4 });
    expect(hw.check()).toEqual([]);
    hw.setForeignOwner(0, true);
    expect(hw.check()).toEqual([{ invariant: 1, message: 'CPU 0 has two owners of its virtualization', cpu: 0 }]);
    virt.emergencyDisable(0);
    expect(hw.counters(0)).toMatchObject({ emergency: 1 });
    expect(hw.snapshot()).toEqual([
      { enabled: false, foreign: true },
      { enabled: true, foreign: false },
    ]);
    expect(() => hw.counters(2)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_NO_SUCH_CPU' }));
  });

  test('CPUs can be marked unsupported, with the kernel message', () => {
    const host = createHost({ cpus: 2, hardware: fakeHardware({ unsupported: { 1: 'virtualization disabled by BIOS on CPU 1' } }) });
    const virt = host.hardware.virt;
    expect(virt.unsupported(0)).toBeUndefined();
    expect(virt.unsupported(1)).toBe('virtualization disabled by BIOS on CPU 1');
    expect(virt.enableCpu(0)).toBeUndefined();
    expect(host.cpus[0]?.cr4).toBe(0); // the fake has no CR4 semantics
  });
});
