/**
 * What `checkInvariants` sees that it used to miss (issue 14): virtualization on where no module needs it, and a
 * module half loaded or unloaded — a state flag left behind, a dependency gone under a live module, a device, an open
 * file or a VAC attachment of a module that is no longer loaded. Each bad state is made the way a buggy module or a
 * half-done operation would leave it (through the loader's internal seams where no public path leads there any more).
 */
import { describe, expect, test } from 'vitest';
import { idleVacInstance } from '@vac/test-support';
import { MISC_DYNAMIC_MINOR, checkInvariants, createHost, vacImage, vacOf } from '../../src/index.js';
import type { Host, ModuleImage, Vac } from '../../src/index.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { libImage, miscImage, userImage } from '../support/images.js';

function newHost(cpus = 4): Host {
  return createHost({ cpus, hardware: fakeHardware() });
}

describe('virtualization on where no module needs it (invariant 1)', () => {
  test('no VAC loaded, a CPU enabled through the vendor half: reported for that CPU', () => {
    const host = newHost();
    expect(host.hardware.virt.enableCpu(2)).toBeUndefined();
    expect(checkInvariants(host)).toEqual([{ invariant: 1, cpu: 2, message: 'CPU 2 has virtualization on, but no loaded module needs it (no VAC has it enabled)' }]);
    host.hardware.virt.disableCpu(2);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('VAC unloaded while a CPU it had enabled stays on (its disable skipped): reported', () => {
    const host = newHost();
    const user: ModuleImage<Record<string, never>, undefined> = {
      name: 'user',
      depends: ['vac'],
      params: {},
      init(ctx) {
        ctx.require<Vac>('vac').attach(idleVacInstance('user')).enableVirtualization();
        return undefined;
      },
    };
    host.modprobe(user);
    expect(checkInvariants(host)).toEqual([]);
    // A buggy user: it never drops its reference nor detaches. Make VAC go anyway, as a half-done unload would.
    const vacModule = host.modules.get('vac');
    vacModule?.removeUser('user');
    vacModule?.put();
    host.rmmod('vac');
    const v = checkInvariants(host);
    expect(v.filter((x) => x.invariant === 1).map((x) => x.cpu)).toEqual([0, 1, 2, 3]);
  });

  test('a loaded VAC that enabled the CPUs answers for them: nothing reported', () => {
    const host = newHost();
    host.modprobe(vacImage);
    const h = (vacOf(host) as Vac).attach(idleVacInstance('kvmx'));
    h.enableVirtualization();
    expect(checkInvariants(host)).toEqual([]);
    h.disableVirtualization();
    h.detach();
    expect(checkInvariants(host)).toEqual([]);
  });
});

describe('a module half loaded or unloaded (invariant 6)', () => {
  test('a module left "going" or "coming" outside a load or unload', () => {
    const host = newHost();
    const m = host.insmod(libImage('lib'));
    m.setState('going');
    expect(checkInvariants(host)).toEqual([{ invariant: 6, message: 'module lib is going outside a load or unload: half unloaded' }]);
    m.setState('coming');
    expect(checkInvariants(host)).toEqual([{ invariant: 6, message: 'module lib is coming outside a load or unload: half loaded' }]);
    m.setState('live');
    expect(checkInvariants(host)).toEqual([]);
  });

  test('a dependency unloaded under a live module (what a throwing module:load listener made of modprobe)', () => {
    const host = newHost();
    host.insmod(libImage('base'));
    host.insmod(userImage('user', { depends: ['base'] }));
    const base = host.modules.get('base');
    base?.removeUser('user');
    base?.put();
    host.rmmod('base');
    expect(checkInvariants(host)).toEqual([{ invariant: 6, message: 'module user is loaded but its dependency base is not' }]);
  });

  test('a user list that disagrees with the dependencies, and a refcount below the number of users', () => {
    const host = newHost();
    host.insmod(libImage('base'));
    host.insmod(libImage('other'));
    const base = host.modules.get('base');
    base?.addUser('other');
    expect(checkInvariants(host)).toEqual([
      { invariant: 6, message: 'module base lists other as a user, but other does not depend on it' },
      { invariant: 6, message: 'module base has refcount 0 with 1 user module(s)' },
    ]);
  });

  test('an open file served by a module that is gone (a driver dropped a reference it did not hold)', () => {
    const host = newHost();
    const m = host.insmod(miscImage({ name: 'drv', fops: {} }));
    const p = host.spawn();
    const fd = p.open('/dev/drv');
    m.put(); // the bug: the file's reference is gone
    host.rmmod('drv');
    expect(checkInvariants(host)).toEqual([{ invariant: 6, message: `fd ${fd} of process ${p.pid} (/dev/drv) is served by module drv, which is not loaded` }]);
  });

  test('a device node left by a module that is gone', () => {
    const host = newHost();
    const leaky: ModuleImage<Record<string, never>, undefined> = {
      name: 'leaky',
      depends: [],
      params: {},
      init(ctx) {
        ctx.host.devfs.miscRegister({ name: 'leaky', minor: MISC_DYNAMIC_MINOR, fops: {}, owner: ctx.module }); // no undo
        return undefined;
      },
    };
    host.insmod(leaky);
    host.rmmod('leaky');
    expect(checkInvariants(host)).toEqual([{ invariant: 6, message: '/dev/leaky belongs to module leaky, which is not loaded' }]);
  });

  test('a module still attached to VAC after it was unloaded (its detach skipped)', () => {
    const host = newHost();
    const noDetach: ModuleImage<Record<string, never>, undefined> = {
      name: 'kvmz',
      depends: ['vac'],
      params: {},
      init(ctx) {
        ctx.require<Vac>('vac').attach(idleVacInstance('kvmz')); // no ctx.defer(detach)
        return undefined;
      },
    };
    host.modprobe(noDetach);
    expect(checkInvariants(host)).toEqual([]);
    host.rmmod('kvmz');
    expect(checkInvariants(host)).toEqual([{ invariant: 6, message: 'kvmz is attached to VAC, but module kvmz is no longer loaded (half unloaded)' }]);
  });

  test('an instance that is not a module may attach to VAC (tests, tools): not reported', () => {
    const host = newHost();
    host.modprobe(vacImage);
    (vacOf(host) as Vac).attach(idleVacInstance('tool'));
    expect(checkInvariants(host)).toEqual([]);
  });
});
