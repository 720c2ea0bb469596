/**
 * `rmmod` unloads completely or not at all. Its checks come first (EPERM, ESRCH, ENOENT, EBUSY, EWOULDBLOCK: nothing
 * changes); once a module's `exit` starts, the unload goes to the end whatever the module's code does, as
 * `delete_module` (kernel/module/main.c) does not fail after `->exit()`: an `exit` or an undo action that throws is a
 * bug of the module, recorded as a warning, and every other undo action still runs.
 */
import { describe, expect, test } from 'vitest';
import { KernelError, MISC_DYNAMIC_MINOR, checkInvariants, createHost } from '../../src/index.js';
import type { Host, ModuleImage } from '../../src/index.js';
import { record, thrown } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { libImage } from '../support/images.js';

function newHost(): Host {
  return createHost({ cpus: 2, hardware: fakeHardware() });
}

/** A module that registers a device, a syscore op and a reboot notifier (three undo actions), on `base`. */
function threeSteps(o: { readonly exitThrows?: boolean; readonly undoThrows?: 'device' | 'syscore' | 'reboot'; readonly initFails?: boolean; readonly log: string[] }): ModuleImage<Record<string, never>, undefined> {
  return {
    name: 'drv',
    depends: ['base'],
    params: {},
    init(ctx) {
      const { host } = ctx;
      const step = (name: 'device' | 'syscore' | 'reboot', undo: () => void): void => {
        ctx.defer(() => {
          o.log.push(`undo:${name}`);
          if (o.undoThrows === name) throw new Error(`${name} undo failed`);
          undo();
        });
      };
      const dev = host.devfs.miscRegister({ name: 'drv', minor: MISC_DYNAMIC_MINOR, fops: { owner: ctx.module }, owner: ctx.module });
      step('device', dev.deregister);
      step('syscore', host.power.registerSyscore({ name: 'drv' }));
      step('reboot', host.power.registerRebootNotifier({ name: 'drv', notify: () => undefined }));
      if (o.initFails === true) throw new KernelError('EIO', 'init_module', 'drv refused');
      return undefined;
    },
    exit() {
      o.log.push('exit');
      if (o.exitThrows === true) throw new TypeError('exit blew up');
    },
  };
}

function loaded(host: Host): string[] {
  return host.lsmod().map((m) => `${m.name}:${m.refcount}:${m.state}:${m.usedBy.join(',')}`);
}

describe('rmmod is atomic', () => {
  test('an exit that throws: the unload goes on — every undo runs, the module is gone, its dependency released, a warning says so', () => {
    const host = newHost();
    const log: string[] = [];
    host.insmod(libImage('base'));
    host.insmod(threeSteps({ exitThrows: true, log }));
    const events = record(host, 'module:unload', 'device:unregister', 'warning');
    expect(host.rmmod('drv')).toBeUndefined();
    expect(log).toEqual(['exit', 'undo:reboot', 'undo:syscore', 'undo:device']);
    expect(loaded(host)).toEqual(['base:0:live:']);
    expect(host.devfs.list()).toEqual([]);
    expect(host.power.syscore()).toEqual([]);
    expect(host.power.rebootNotifiers()).toEqual([]);
    expect(host.warnings.at(-1)).toEqual({ source: 'drv', message: 'BUG: module_exit of drv threw (TypeError: exit blew up); the module is unloaded anyway: delete_module goes on once ->exit has started' });
    expect(events.map(([n]) => n)).toEqual(['warning', 'device:unregister', 'module:unload']);
    expect(checkInvariants(host)).toEqual([]);
    host.rmmod('base');
    expect(host.lsmod()).toEqual([]);
  });

  test('an undo action that throws: the others still run and the module is gone; what it held stays, and the checker says whose it was', () => {
    const host = newHost();
    const log: string[] = [];
    host.insmod(libImage('base'));
    host.insmod(threeSteps({ undoThrows: 'syscore', log }));
    host.insmod(libImage('other'));
    expect(thrown(() => host.rmmod('drv'))).toBeUndefined();
    expect(log).toEqual(['exit', 'undo:reboot', 'undo:syscore', 'undo:device']);
    expect(loaded(host)).toEqual(['other:0:live:', 'base:0:live:']);
    expect(host.power.syscore().map((o) => o.name)).toEqual(['drv']); // the leak
    expect(host.power.rebootNotifiers()).toEqual([]);
    expect(host.warnings.at(-1)?.message).toBe('BUG: an undo action at unload of drv threw (Error: syscore undo failed); the module is unloaded anyway: delete_module goes on once ->exit has started');
    expect(checkInvariants(host)).toEqual([]); // a syscore op has no owner the host could name
  });

  test('an undo action that fails to deregister a device: the node of a module that is gone is reported (invariant 6)', () => {
    const host = newHost();
    const log: string[] = [];
    host.insmod(libImage('base'));
    host.insmod(threeSteps({ undoThrows: 'device', log }));
    host.rmmod('drv');
    expect(host.devfs.list().map((d) => d.path)).toEqual(['/dev/drv']);
    expect(checkInvariants(host)).toEqual([{ invariant: 6, message: '/dev/drv belongs to module drv, which is not loaded' }]);
  });

  test('a failed init whose undo action throws: the init error is thrown, the other undo actions run, the load is gone', () => {
    const host = newHost();
    const log: string[] = [];
    host.insmod(libImage('base'));
    const e = thrown(() => host.insmod(threeSteps({ initFails: true, undoThrows: 'reboot', log })));
    expect(e).toBeInstanceOf(KernelError);
    expect((e as KernelError).code).toBe('EIO');
    expect(log).toEqual(['undo:reboot', 'undo:syscore', 'undo:device']);
    expect(loaded(host)).toEqual(['base:0:live:']);
    expect(host.devfs.list()).toEqual([]);
    expect(host.power.syscore()).toEqual([]);
    expect(host.warnings.at(-1)?.message).toBe('BUG: an undo action of a failed init of drv threw (Error: reboot undo failed); the rest of the failed load is undone');
  });

  test("modprobe's rollback of a dependency whose exit throws: the load's own error is thrown, the dependency is unloaded", () => {
    const host = newHost();
    const log: string[] = [];
    host.modules.depmod({ ...libImage('base', { log }), exit: () => {
      log.push('exit:base');
      throw new Error('base exit');
    } });
    const e = thrown(() => host.modprobe(threeSteps({ initFails: true, log })));
    expect((e as KernelError).code).toBe('EIO');
    expect(log).toEqual(['init:base', 'undo:reboot', 'undo:syscore', 'undo:device', 'exit:base']);
    expect(host.lsmod()).toEqual([]);
    expect(host.warnings.map((w) => w.source)).toEqual(['base']);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('a refused rmmod changes nothing, whatever the reason', () => {
    const host = newHost();
    const log: string[] = [];
    host.insmod(libImage('base'));
    host.insmod(threeSteps({ exitThrows: true, log }));
    const user = host.spawn({ uid: 1000 });
    const before = host.snapshot();
    for (const [fn, code] of [
      [() => host.rmmod('base'), 'EWOULDBLOCK'],
      [() => host.rmmod('nope'), 'ENOENT'],
      [() => host.rmmod('drv', { as: user }), 'EPERM'],
    ] as const) {
      expect((thrown(fn) as KernelError).code).toBe(code);
      expect(host.snapshot()).toEqual(before);
    }
    expect(log).toEqual([]);
  });
});
