import { describe, expect, test } from 'vitest';
import { KernelError, UsageError, createHost } from '../../src/index.js';
import { kstrtobool, kstrtoll, paramText } from '../../src/internal.js';
import type { Host, ModuleImage } from '../../src/index.js';
import { expectKernelError, expectUsageError, record, thrown } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { libImage, miscImage, paramsImage, STEPS, stepImage, userImage } from '../support/images.js';

function newHost(cpus = 2, modules: ModuleImage[] = []): Host {
  return createHost({ cpus, hardware: fakeHardware(), modules });
}

describe('insmod and lsmod', () => {
  test('a loaded module is live, listed most recent first, with refcount and users', () => {
    const host = newHost();
    const events = record(host, 'module:load');
    const vac = host.insmod(libImage('vac', { abiVersion: 1 }));
    expect(vac.state).toBe('live');
    expect(vac.exports).toEqual({ lib: 'vac' });
    host.insmod(userImage('kvm1', { depends: ['vac'], abi: { vac: 1 } }));
    host.insmod(userImage('kvm0', { depends: ['vac'] }));
    host.insmod(miscImage({ name: 'other', version: '6.12-fix1' }));
    expect(host.lsmod()).toEqual([
      { name: 'other', refcount: 0, usedBy: [], state: 'live', version: '6.12-fix1' },
      { name: 'kvm0', refcount: 0, usedBy: [], state: 'live', version: undefined },
      { name: 'kvm1', refcount: 0, usedBy: [], state: 'live', version: undefined },
      // dependents hold a reference (ref_module), and "Used by" is sorted
      { name: 'vac', refcount: 2, usedBy: ['kvm0', 'kvm1'], state: 'live', version: undefined },
    ]);
    expect(events.map(([, e]) => e['name'])).toEqual(['vac', 'kvm1', 'kvm0', 'other']);
    expect(host.modules.exportsOf('vac')).toEqual({ lib: 'vac' });
    expect(host.modules.exportsOf('nope')).toBeUndefined();
  });

  test('module:load carries the parameters as sysfs shows them', () => {
    const host = newHost();
    const events = record(host, 'module:load');
    host.insmod(paramsImage(), { enable: false, count: '0x10' });
    expect(events).toHaveLength(1);
    expect(events[0]?.[1]).toMatchObject({
      name: 'knobs',
      params: { enable: 'N', count: '16', mask: '0', label: 'none', flush: 'cond' },
    });
  });

  test('loading a name that is loaded → EEXIST (17), the first module untouched', () => {
    const host = newHost();
    const first = host.insmod(miscImage({ name: 'kvm' }));
    const log: string[] = [];
    const e = expectKernelError(host, () => host.insmod(miscImage({ name: 'kvm', device: 'kvm-two', log })), 'EEXIST', { errno: 17 });
    expect(e.op).toBe('init_module');
    expect(log).toEqual([]); // init never ran
    expect(host.modules.get('kvm')).toBe(first);
  });

  test('a missing dependency → ENOENT (2), "Unknown symbol"', () => {
    const host = newHost();
    const log: string[] = [];
    const e = expectKernelError(host, () => host.insmod(userImage('kvm0', { depends: ['vac'], log })), 'ENOENT', { errno: 2 });
    expect(e.message).toContain('Unknown symbol');
    expect(e.message).toContain('vac');
    expect(log).toEqual([]);
  });

  test('a dependency that is still in its init (not live) counts as missing', () => {
    const host = newHost();
    let inner: unknown;
    host.insmod({
      name: 'vac',
      depends: [],
      params: {},
      init(ctx) {
        const before = ctx.host.snapshot();
        inner = thrown(() => ctx.host.insmod(userImage('kvm0', { depends: ['vac'] })));
        expect(ctx.host.snapshot()).toEqual(before);
        return undefined;
      },
    });
    expect(inner).toBeInstanceOf(KernelError);
    expect((inner as KernelError).code).toBe('ENOENT');
    expect(host.lsmod().map((m) => m.name)).toEqual(['vac']);
  });

  test('an image built against another ABI → ENOEXEC (8), "Invalid module format"', () => {
    const host = newHost();
    host.insmod(libImage('vac', { abiVersion: 2 }));
    const e = expectKernelError(host, () => host.insmod(userImage('kvm0', { depends: ['vac'], abi: { vac: 1 } })), 'ENOEXEC', { errno: 8 });
    expect(e.message).toContain('Invalid module format');
    // a dependency that declares no ABI version does not match a required one either
    const host2 = newHost();
    host2.insmod(libImage('vac'));
    expectKernelError(host2, () => host2.insmod(userImage('kvm0', { depends: ['vac'], abi: { vac: 1 } })), 'ENOEXEC', { errno: 8 });
    // the matching ABI loads
    host.insmod(userImage('kvm0', { depends: ['vac'], abi: { vac: 2 } }));
    expect(host.modules.get('kvm0')?.state).toBe('live');
  });

  test('an ill-typed value of a known parameter → EINVAL (22)', () => {
    const host = newHost();
    const e = expectKernelError(host, () => host.insmod(paramsImage(), { count: 'many' }), 'EINVAL', { errno: 22 });
    expect(e.message).toContain("`many' invalid for parameter `count'");
    expect(host.warnings).toEqual([]);
  });

  test("an unknown parameter is ignored with the warning \"<name>: unknown parameter 'x' ignored\"", () => {
    const host = newHost();
    const warnings = record(host, 'warning');
    const m = host.insmod(paramsImage(), { x: 1, count: 7 });
    expect(m.state).toBe('live');
    expect(host.warnings).toEqual([{ source: 'knobs', message: "knobs: unknown parameter 'x' ignored" }]);
    expect(warnings.map(([, w]) => w['message'])).toEqual(["knobs: unknown parameter 'x' ignored"]);
    expect(host.readParam('knobs', 'count')).toBe('7');
    expect(() => host.readParam('knobs', 'x')).toThrow(KernelError);
  });

  test('parameter names that are Object.prototype members are unknown parameters, not crashes', () => {
    const host = newHost();
    const m = host.insmod(paramsImage(), { constructor: 1, toString: 'y', hasOwnProperty: 0 });
    expect(m.state).toBe('live');
    expect(host.warnings.map((w) => w.message)).toEqual([
      "knobs: unknown parameter 'constructor' ignored",
      "knobs: unknown parameter 'toString' ignored",
      "knobs: unknown parameter 'hasOwnProperty' ignored",
    ]);
    expectKernelError(host, () => host.readParam('knobs', 'constructor'), 'ENOENT', { errno: 2 });
    expectKernelError(host, () => host.readParam('knobs', '__proto__'), 'ENOENT', { errno: 2 });
  });

  test('without CAP_SYS_MODULE → EPERM (1) for insmod, modprobe and rmmod', () => {
    const host = newHost(1, [libImage('vac')]);
    host.insmod(miscImage({ name: 'kvm' }));
    const user = host.spawn({ uid: 1000, groups: ['kvm'] });
    const rootNoCaps = host.spawn({ uid: 0, caps: [] });
    for (const p of [user, rootNoCaps]) {
      const log: string[] = [];
      const e = expectKernelError(host, () => host.insmod(miscImage({ name: 'x', log }), {}, { as: p }), 'EPERM', { errno: 1 });
      expect(e.op).toBe('init_module');
      expect(log).toEqual([]);
      expectKernelError(host, () => host.modprobe('vac', {}, { as: p }), 'EPERM', { errno: 1 });
      expect(expectKernelError(host, () => host.rmmod('kvm', { as: p }), 'EPERM', { errno: 1 }).op).toBe('delete_module');
      // EPERM comes before every other check (the module is unknown here)
      expectKernelError(host, () => host.rmmod('nope', { as: p }), 'EPERM', { errno: 1 });
    }
    // a non-root process with the capability may load and unload
    const loader = host.spawn({ uid: 1000, caps: ['CAP_SYS_MODULE'] });
    host.insmod(miscImage({ name: 'x' }), {}, { as: loader });
    host.rmmod('x', { as: loader });
    expect(host.lsmod().map((m) => m.name)).toEqual(['kvm']);
  });

  test('a malformed image is a UsageError naming it, and nothing changes', () => {
    const host = newHost();
    const good = miscImage({ name: 'ok' });
    expectUsageError(host, () => host.insmod({ ...good, name: 'bad name' }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.insmod({ ...good, name: 'x'.repeat(56) }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.insmod({ ...good, depends: 'vac' as unknown as string[] }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.insmod({ ...good, init: undefined as unknown as typeof good.init }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.insmod(null as unknown as typeof good), 'ERR_INVALID_ARG');
  });

  test('ctx.require gives a dependency’s exports and refuses undeclared ones', () => {
    const host = newHost();
    host.insmod(libImage('vac'));
    host.insmod(libImage('other'));
    let got: unknown;
    host.insmod({
      name: 'kvm0',
      depends: ['vac'],
      params: {},
      init(ctx) {
        got = ctx.require('vac');
        expect(() => ctx.require('other')).toThrow(UsageError);
        return undefined;
      },
    });
    expect(got).toEqual({ lib: 'vac' });
  });
});

describe('rmmod', () => {
  test('unloads: exit first, then the deferred undo actions last-first; module:unload; refs dropped', () => {
    const host = newHost();
    const log: string[] = [];
    host.insmod(libImage('vac', { log }));
    host.insmod({
      name: 'kvm0',
      depends: ['vac'],
      params: {},
      init(ctx) {
        ctx.defer(() => log.push('undo:1'));
        ctx.defer(() => log.push('undo:2'));
        ctx.defer(() => log.push('undo:3'));
        return undefined;
      },
      exit() {
        log.push('exit:kvm0');
      },
    });
    const events = record(host, 'module:unload');
    host.rmmod('kvm0');
    expect(log).toEqual(['init:vac', 'exit:kvm0', 'undo:3', 'undo:2', 'undo:1']);
    expect(events.map(([, e]) => e['name'])).toEqual(['kvm0']);
    expect(host.lsmod()).toEqual([{ name: 'vac', refcount: 0, usedBy: [], state: 'live', version: undefined }]);
    host.rmmod('vac');
    expect(host.lsmod()).toEqual([]);
    expect(log.at(-1)).toBe('exit:vac');
  });

  test('an unknown module → ENOENT (2)', () => {
    const host = newHost();
    const e = expectKernelError(host, () => host.rmmod('kvm9'), 'ENOENT', { errno: 2 });
    expect(e.op).toBe('rmmod');
  });

  test('refcount > 0 → EWOULDBLOCK (11) "Module X is in use", until the reference is dropped', () => {
    const host = newHost();
    const m = host.insmod(miscImage({ name: 'kvm' }));
    m.get();
    const e = expectKernelError(host, () => host.rmmod('kvm'), 'EWOULDBLOCK', { errno: 11 });
    expect(e.message).toContain('Module kvm is in use');
    m.put();
    host.rmmod('kvm');
    expect(host.lsmod()).toEqual([]);
  });

  test('modules depending on it → EWOULDBLOCK (11), the message lists them', () => {
    const host = newHost();
    host.insmod(libImage('vac'));
    host.insmod(userImage('kvm1', { depends: ['vac'] }));
    host.insmod(userImage('kvm0', { depends: ['vac'] }));
    const e = expectKernelError(host, () => host.rmmod('vac'), 'EWOULDBLOCK', { errno: 11 });
    expect(e.message).toContain('Module vac is in use by: kvm0 kvm1');
    host.rmmod('kvm0');
    expect(expectKernelError(host, () => host.rmmod('vac'), 'EWOULDBLOCK', { errno: 11 }).message).toContain('by: kvm1');
    host.rmmod('kvm1');
    host.rmmod('vac');
    expect(host.lsmod()).toEqual([]);
  });

  test('a module that is not live (its own init calling rmmod on itself) → EBUSY (16)', () => {
    const host = newHost();
    let inInit: unknown;
    let state: string | undefined;
    host.insmod({
      name: 'selfish',
      depends: [],
      params: {},
      init(ctx) {
        state = ctx.module.state;
        const before = ctx.host.snapshot();
        inInit = thrown(() => ctx.host.rmmod('selfish'));
        expect(ctx.host.snapshot()).toEqual(before);
        return undefined;
      },
    });
    expect(state).toBe('coming');
    expect(inInit).toBeInstanceOf(KernelError);
    expect((inInit as KernelError).code).toBe('EBUSY');
    expect((inInit as KernelError).errno).toBe(16);
    expect(host.lsmod().map((m) => [m.name, m.state])).toEqual([['selfish', 'live']]);
  });

  test('a module going away (its exit calling rmmod on itself) → EBUSY, and its fops cannot be pinned', () => {
    const host = newHost();
    let inExit: unknown;
    let pinned: boolean | undefined;
    host.insmod({
      name: 'going',
      depends: [],
      params: {},
      init: () => undefined,
      exit(ctx) {
        inExit = thrown(() => ctx.host.rmmod('going'));
        pinned = ctx.module.tryGet();
      },
    });
    host.rmmod('going');
    expect((inExit as KernelError).code).toBe('EBUSY');
    expect(pinned).toBe(false);
    expect(host.lsmod()).toEqual([]);
  });

  test('module_put below zero is a UsageError', () => {
    const host = newHost();
    const m = host.insmod(libImage('vac'));
    expectUsageError(host, () => m.put(), 'ERR_INVALID_STATE');
    expect(m.refcount).toBe(0);
  });

  test('a module can be loaded again after rmmod', () => {
    const host = newHost();
    const img = miscImage({ name: 'kvm' });
    host.insmod(img);
    host.rmmod('kvm');
    const again = host.insmod(img);
    expect(again.state).toBe('live');
    expect(host.stat('/dev/kvm')).toMatchObject({ type: 'char', major: 10 });
  });
});

describe('a failing init leaves nothing behind', () => {
  test.each(STEPS.map((s, i) => [i, s] as const))('failing after %d steps (last: %s)', (failAfter) => {
    const host = newHost(2);
    host.insmod(libImage('vac'));
    host.insmod(userImage('kvm0', { depends: ['vac'] }));
    const log: string[] = [];
    const syscore = host.power.syscore().length;
    const reboot = host.power.rebootNotifiers().length;
    const events = record(host, 'device:register', 'device:unregister', 'module:load', 'module:unload');
    const e = expectKernelError(host, () => host.insmod(stepImage({ name: 'broken', depends: ['vac'], failAfter, log })), 'EIO', { errno: 5 });
    expect(e.message).toContain(`after ${failAfter} steps`);
    const done = STEPS.slice(0, failAfter);
    // the deferred undo actions ran, last registered first
    expect(log.filter((l) => l.startsWith('undo:'))).toEqual([...done].reverse().map((s) => `undo:${s}`));
    // the cpuhp state's startup ran on both CPUs, and was torn down again (ascending CPU order)
    if (failAfter >= 2) {
      expect(log.filter((l) => l.startsWith('startup:') || l.startsWith('teardown:'))).toEqual(['startup:0', 'startup:1', 'teardown:0', 'teardown:1']);
    }
    expect(host.modules.get('broken')).toBeUndefined();
    expect(host.lsmod().find((m) => m.name === 'vac')).toMatchObject({ refcount: 1, usedBy: ['kvm0'] });
    expect(host.power.syscore()).toHaveLength(syscore);
    expect(host.power.rebootNotifiers()).toHaveLength(reboot);
    expect(host.raiseNmi(0)).toEqual([]);
    expect(events.some(([n]) => n === 'module:load' || n === 'module:unload')).toBe(false);
    if (failAfter >= 1) expect(events.map(([n]) => n)).toEqual(['device:register', 'device:unregister']);
    // and the same name loads fine afterwards
    host.insmod(stepImage({ name: 'broken', depends: ['vac'] }));
    expect(host.lsmod().find((m) => m.name === 'vac')).toMatchObject({ refcount: 2, usedBy: ['broken', 'kvm0'] });
  });

  test('a successful step image undoes everything at rmmod', () => {
    const host = newHost(2);
    const before = host.snapshot();
    const log: string[] = [];
    host.insmod(stepImage({ name: 'full', log }));
    expect(host.readlink('/dev/full-link')).toBe('/dev/full');
    host.rmmod('full');
    expect(log.filter((l) => l.startsWith('undo:'))).toEqual([...STEPS].reverse().map((s) => `undo:${s}`));
    expect(host.snapshot()).toEqual(before);
  });

  test('an init that throws a plain Error still unwinds (and the error passes through)', () => {
    const host = newHost();
    host.insmod(libImage('vac'));
    const before = host.snapshot();
    const log: string[] = [];
    const e = thrown(() =>
      host.insmod({
        name: 'buggy',
        depends: ['vac'],
        params: {},
        init(ctx) {
          ctx.defer(() => log.push('undone'));
          throw new RangeError('bug in module');
        },
      }),
    );
    expect(e).toBeInstanceOf(RangeError);
    expect(log).toEqual(['undone']);
    expect(host.snapshot()).toEqual(before);
  });
});

describe('modprobe', () => {
  const library = (log?: string[]): ModuleImage[] => [
    libImage('vac', { abiVersion: 1, ...(log === undefined ? {} : { log }) }),
    libImage('mid', { depends: ['vac'], ...(log === undefined ? {} : { log }) }),
    userImage('top', { depends: ['mid', 'vac'], ...(log === undefined ? {} : { log }) }),
    userImage('bad', { depends: ['mid'], fail: 'ENODEV', ...(log === undefined ? {} : { log }) }),
    userImage('orphan', { depends: ['ghost'] }),
    userImage('oldabi', { depends: ['vac'], abi: { vac: 0 } }),
  ];

  test('loads dependencies first, in dependency order', () => {
    const host = newHost(1, library());
    const events = record(host, 'module:load');
    const top = host.modprobe('top');
    expect(top.name).toBe('top');
    expect(events.map(([, e]) => e['name'])).toEqual(['vac', 'mid', 'top']);
    expect(host.lsmod().map((m) => [m.name, m.refcount, m.usedBy])).toEqual([
      ['top', 0, []],
      ['mid', 1, ['top']],
      ['vac', 2, ['mid', 'top']],
    ]);
  });

  test('by image: dependencies come from the library; params go to the target', () => {
    const host = newHost(1, library());
    host.modprobe(paramsImage(), { count: 3 });
    expect(host.readParam('knobs', 'count')).toBe('3');
    const m = host.modprobe(userImage('mine', { depends: ['mid'] }));
    expect(m.state).toBe('live');
    expect(host.lsmod().map((x) => x.name)).toEqual(['mine', 'mid', 'vac', 'knobs']);
  });

  test('a module that is loaded already is a no-op', () => {
    const host = newHost(1, library());
    const vac = host.modprobe('vac');
    const seq = host.events.seq;
    expect(host.modprobe('vac')).toBe(vac);
    expect(host.events.seq).toBe(seq);
  });

  test('an unknown module → ENOENT (2)', () => {
    const host = newHost(1, library());
    expect(expectKernelError(host, () => host.modprobe('kvm7'), 'ENOENT', { errno: 2 }).message).toContain('kvm7');
  });

  test('a dependency missing from the library → ENOENT, nothing loaded', () => {
    const host = newHost(1, library());
    expect(expectKernelError(host, () => host.modprobe('orphan'), 'ENOENT', { errno: 2 }).message).toContain('ghost');
  });

  test('if the target fails, the dependencies loaded for it are unloaded again, last first', () => {
    const log: string[] = [];
    const host = newHost(1, library(log));
    const events = record(host, 'module:load', 'module:unload');
    expectKernelError(host, () => host.modprobe('bad'), 'ENODEV', { errno: 19 });
    expect(events.map(([n, e]) => `${n.slice(7)}:${String(e['name'])}`)).toEqual(['load:vac', 'load:mid', 'unload:mid', 'unload:vac']);
    expect(log).toEqual(['init:vac', 'init:mid', 'init:bad', 'exit:mid', 'exit:vac']);
  });

  test('dependencies that were loaded before the call stay loaded when the target fails', () => {
    const host = newHost(1, library());
    host.modprobe('vac');
    const events = record(host, 'module:load', 'module:unload');
    expectKernelError(host, () => host.modprobe('bad'), 'ENODEV');
    expect(events.map(([n, e]) => `${n.slice(7)}:${String(e['name'])}`)).toEqual(['load:mid', 'unload:mid']);
    expect(host.lsmod()).toEqual([{ name: 'vac', refcount: 0, usedBy: [], state: 'live', version: undefined }]);
  });

  test('ABI mismatch of the target → ENOEXEC, its dependencies unwound', () => {
    const host = newHost(1, library());
    expectKernelError(host, () => host.modprobe('oldabi'), 'ENOEXEC', { errno: 8 });
  });

  test('an ill-typed parameter of the target → EINVAL, its dependencies unwound', () => {
    const host = newHost(1, library());
    const img = { ...paramsImage('pk'), depends: ['mid'] };
    const events = record(host, 'module:load', 'module:unload');
    expectKernelError(host, () => host.modprobe(img, { count: 'lots' }), 'EINVAL', { errno: 22 });
    expect(events.map(([n, e]) => `${n.slice(7)}:${String(e['name'])}`)).toEqual(['load:vac', 'load:mid', 'unload:mid', 'unload:vac']);
  });

  test('loading a dependency by hand in between: modprobe then only loads what is missing', () => {
    const host = newHost(1, library());
    host.modprobe('mid');
    const events = record(host, 'module:load');
    host.modprobe('top');
    expect(events.map(([, e]) => e['name'])).toEqual(['top']);
  });

  test('a dependency cycle → ELOOP (40), nothing loaded', () => {
    const host = newHost(1, [userImage('a', { depends: ['b'] }), userImage('b', { depends: ['a'] })]);
    expect(expectKernelError(host, () => host.modprobe('a'), 'ELOOP', { errno: 40 }).message).toContain('a -> b -> a');
  });

  test('depmod makes more images known', () => {
    const host = newHost(1);
    expectKernelError(host, () => host.modprobe('extra'), 'ENOENT');
    host.modules.depmod(libImage('extra'));
    expect(host.modules.library.has('extra')).toBe(true);
    host.modprobe('extra');
    expect(host.lsmod().map((m) => m.name)).toEqual(['extra']);
  });
});

describe('module parameters', () => {
  test('defaults are readable at /sys/module/<name>/parameters/<param>', () => {
    const host = newHost();
    const m = host.insmod(paramsImage());
    expect(m.exports?.values).toEqual({ enable: true, count: 4, mask: 0, label: 'none', flush: 'cond' });
    expect(host.readParam('knobs', 'enable')).toBe('Y');
    expect(host.readParam('knobs', 'count')).toBe('4');
    expect(host.readParam('knobs', 'mask')).toBe('0');
    expect(host.readParam('knobs', 'label')).toBe('none');
    expect(host.readParam('knobs', 'flush')).toBe('cond');
  });

  test('given values are parsed and shown as the kernel shows them', () => {
    const host = newHost();
    const m = host.insmod(paramsImage(), { enable: 'n', count: -12, mask: '0xff', label: 'hello', flush: 'never' });
    expect(m.exports?.values).toEqual({ enable: false, count: -12, mask: 255, label: 'hello', flush: 'never' });
    expect(host.readParam('knobs', 'enable')).toBe('N');
    expect(host.readParam('knobs', 'count')).toBe('-12');
    expect(host.readParam('knobs', 'mask')).toBe('255');
    expect(host.readParam('knobs', 'label')).toBe('hello');
    expect(host.readParam('knobs', 'flush')).toBe('never');
  });

  test('parameters are read-only after load: writeParam → EACCES (13)', () => {
    const host = newHost();
    host.insmod(paramsImage());
    const e = expectKernelError(host, () => host.modules.writeParam('knobs', 'count', '5'), 'EACCES', { errno: 13 });
    expect(e.message).toContain('/sys/module/knobs/parameters/count');
    expect(host.readParam('knobs', 'count')).toBe('4');
    expectKernelError(host, () => host.modules.writeParam('knobs', 'nope', '5'), 'ENOENT', { errno: 2 });
  });

  test('reading an unknown parameter or module → ENOENT (2)', () => {
    const host = newHost();
    host.insmod(paramsImage());
    const e = expectKernelError(host, () => host.readParam('knobs', 'nope'), 'ENOENT', { errno: 2 });
    expect(e.message).toContain('/sys/module/knobs/parameters/nope');
    expectKernelError(host, () => host.readParam('ghost', 'count'), 'ENOENT', { errno: 2 });
    host.rmmod('knobs');
    expectKernelError(host, () => host.readParam('knobs', 'count'), 'ENOENT', { errno: 2 });
  });

  test.each(['y', 'Y', '1', 't', 'T', 'on', 'ON', 'oN', 'yes', 'true', 'y\n', true])('bool %j → Y', (v) => {
    const host = newHost();
    host.insmod(paramsImage(), { enable: v });
    expect(host.readParam('knobs', 'enable')).toBe('Y');
  });

  test.each(['n', 'N', '0', 'f', 'F', 'off', 'OFF', 'oF', 'no', 'false', false])('bool %j → N', (v) => {
    const host = newHost();
    host.insmod(paramsImage(), { enable: v });
    expect(host.readParam('knobs', 'enable')).toBe('N');
  });

  test.each(['', 'o', 'ox', 'maybe', '2', ' y', 'x'])('bool %j → EINVAL', (v) => {
    const host = newHost();
    expectKernelError(host, () => host.insmod(paramsImage(), { enable: v }), 'EINVAL', { errno: 22 });
  });

  test.each([
    ['0x10', '16'],
    ['0X1f', '31'],
    ['010', '8'],
    ['0', '0'],
    ['+7', '7'],
    ['-0x10', '-16'],
    ['42\n', '42'],
    ['2147483647', '2147483647'],
    ['-2147483648', '-2147483648'],
  ])('int %j → %s', (v, shown) => {
    const host = newHost();
    host.insmod(paramsImage(), { count: v });
    expect(host.readParam('knobs', 'count')).toBe(shown);
  });

  test.each(['2147483648', '-2147483649', '0x80000000', '12abc', '0x', '08', ' 1', '1 ', '1.5', 'ten', '', '--1', '1\n\n', '99999999999999999999'])(
    'int %j → EINVAL',
    (v) => {
      const host = newHost();
      expectKernelError(host, () => host.insmod(paramsImage(), { count: v }), 'EINVAL', { errno: 22 });
    },
  );

  test.each([
    ['4294967295', '4294967295'],
    ['0xffffffff', '4294967295'],
    ['0', '0'],
    ['+5', '5'],
  ])('uint %j → %s', (v, shown) => {
    const host = newHost();
    host.insmod(paramsImage(), { mask: v });
    expect(host.readParam('knobs', 'mask')).toBe(shown);
  });

  test.each(['-1', '-0', '-0x0', '4294967296', '0x100000000'])('uint %j → EINVAL', (v) => {
    const host = newHost();
    expectKernelError(host, () => host.insmod(paramsImage(), { mask: v }), 'EINVAL', { errno: 22 });
  });

  test('numbers, bigints and booleans are given as the command line would spell them', () => {
    expect(paramText(true)).toBe('Y');
    expect(paramText(false)).toBe('N');
    expect(paramText(12)).toBe('12');
    expect(paramText(2n ** 40n)).toBe('1099511627776');
    const host = newHost();
    host.insmod(paramsImage(), { count: 5n, mask: 2n ** 32n - 1n });
    expect(host.readParam('knobs', 'count')).toBe('5');
    expect(host.readParam('knobs', 'mask')).toBe('4294967295');
    expectKernelError(host, () => host.insmod(paramsImage('knobs2'), { count: 1.5 }), 'EINVAL');
  });

  test('enum parameters take one of their words', () => {
    const host = newHost();
    expectKernelError(host, () => host.insmod(paramsImage(), { flush: 'sometimes' }), 'EINVAL', { errno: 22 });
    host.insmod(paramsImage(), { flush: 'always\n' });
    expect(host.readParam('knobs', 'flush')).toBe('always');
  });

  test('charp parameters keep the text as given', () => {
    const host = newHost();
    host.insmod(paramsImage(), { label: 'a b,c' });
    expect(host.readParam('knobs', 'label')).toBe('a b,c');
  });

  test('kstrtobool and kstrtoll directly', () => {
    expect(kstrtobool('Yes')).toBe(true);
    expect(kstrtobool('Off')).toBe(false);
    expect(kstrtobool('')).toBeUndefined();
    expect(kstrtoll('0x7fffffffffffffff')).toBe(2n ** 63n - 1n);
    expect(kstrtoll('-010')).toBe(-8n);
    expect(kstrtoll('0x')).toBeUndefined();
    expect(kstrtoll('-+1')).toBeUndefined();
  });
});
