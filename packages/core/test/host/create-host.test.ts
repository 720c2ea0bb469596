import { describe, expect, test } from 'vitest';
import { Host, MAX_CPUS, UsageError, createHost } from '../../src/index.js';
import type { HardwareModel } from '../../src/index.js';
import { expectKernelError, expectUsageError } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import type { FakeHostHardware } from '../support/fake-hardware.js';
import { miscImage } from '../support/images.js';

describe('createHost', () => {
  test('builds a host with N online CPUs, the init process and an empty module list', () => {
    const host = createHost({ cpus: 4, hardware: fakeHardware() });
    expect(host).toBeInstanceOf(Host);
    expect(host.cpus.map((c) => [c.id, c.online])).toEqual([
      [0, true],
      [1, true],
      [2, true],
      [3, true],
    ]);
    expect(host.systemState).toBe('running');
    expect(host.init.pid).toBe(1);
    expect(host.init.capable('CAP_SYS_MODULE')).toBe(true);
    expect(host.lsmod()).toEqual([]);
    expect(host.devfs.list()).toEqual([]);
    expect(host.hardware.model.name).toBe('fake');
    expect(host.gid('root')).toBe(0);
    expect(host.gid('kvm')).toBe(36);
  });

  test.each([1, 2, MAX_CPUS])('accepts %d CPUs', (cpus) => {
    const host = createHost({ cpus, hardware: fakeHardware() });
    expect(host.cpus).toHaveLength(cpus);
    expect(host.cpus[cpus - 1]?.id).toBe(cpus - 1);
  });

  test('MAX_CPUS is 8192 (NR_CPUS with MAXSMP)', () => {
    expect(MAX_CPUS).toBe(8192);
  });

  test.each([0, -1, 8193, 1.5, Number.NaN, Number.POSITIVE_INFINITY])('rejects %d CPUs with a UsageError', (cpus) => {
    expect(() => createHost({ cpus, hardware: fakeHardware() })).toThrow(UsageError);
  });

  test('rejects a non-number CPU count', () => {
    expect(() => createHost({ cpus: '4' as unknown as number, hardware: fakeHardware() })).toThrow(UsageError);
  });

  test('rejects missing options', () => {
    expect(() => createHost(undefined as unknown as Parameters<typeof createHost>[0])).toThrow(UsageError);
  });

  const bad: Array<[string, unknown]> = [
    ['undefined', undefined],
    ['null', null],
    ['a string', 'intel'],
    ['an object without create', { name: 'x', vendor: 'intel' }],
    ['an object without a name', { vendor: 'intel', create: () => ({}) }],
  ];
  test.each(bad)('rejects %s as hardware with a UsageError', (_what, hardware) => {
    expect(() => createHost({ cpus: 1, hardware: hardware as HardwareModel })).toThrow(UsageError);
  });

  test('rejects a hardware model whose create() builds nothing usable', () => {
    const broken: HardwareModel = { name: 'broken', vendor: 'intel', create: () => undefined as unknown as ReturnType<HardwareModel['create']> };
    const e = (() => {
      try {
        createHost({ cpus: 1, hardware: broken });
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(UsageError);
    expect((e as Error).message).toContain('broken');
  });

  test('rejects a bad extra group id', () => {
    expect(() => createHost({ cpus: 1, hardware: fakeHardware(), groups: { wheel: -1 } })).toThrow(UsageError);
    const host = createHost({ cpus: 1, hardware: fakeHardware(), groups: { wheel: 10 } });
    expect(host.gid('wheel')).toBe(10);
    expect(() => host.gid('nope')).toThrow(UsageError);
  });

  test('checkCpu: a CPU that does not exist is a UsageError', () => {
    const host = createHost({ cpus: 2, hardware: fakeHardware() });
    expect(host.checkCpu(1)).toBe(1);
    expectUsageError(host, () => host.checkCpu(2), 'ERR_NO_SUCH_CPU');
    expectUsageError(host, () => host.checkCpu(-1), 'ERR_NO_SUCH_CPU');
    expectUsageError(host, () => host.checkCpu(0.5), 'ERR_NO_SUCH_CPU');
    expectUsageError(host, () => host.cpuUp(7), 'ERR_NO_SUCH_CPU');
    expectUsageError(host, () => host.cpuDown(2), 'ERR_NO_SUCH_CPU');
    expectUsageError(host, () => host.raisePmi(2), 'ERR_NO_SUCH_CPU');
    expectUsageError(host, () => host.raiseNmi(-1), 'ERR_NO_SUCH_CPU');
    expectUsageError(host, () => host.raisePostedIntrWakeup(9), 'ERR_NO_SUCH_CPU');
  });

  test('the hardware model is created once per host, with that host’s CPUs', () => {
    const created: number[] = [];
    const inner = fakeHardware();
    const counting: HardwareModel = {
      name: 'counting',
      vendor: 'intel',
      create(env) {
        created.push(env.cpus.length);
        return inner.create(env);
      },
    };
    createHost({ cpus: 2, hardware: counting });
    createHost({ cpus: 3, hardware: counting });
    expect(created).toEqual([2, 3]);
  });

  test('two hosts share nothing', () => {
    const hw = fakeHardware();
    const a = createHost({ cpus: 2, hardware: hw });
    const b = createHost({ cpus: 2, hardware: hw });
    const bBefore = b.snapshot();
    const bSeq = b.events.seq;

    a.insmod(miscImage({ name: 'kvm' }));
    a.symlink('/dev/kvm', '/dev/kvm-alias');
    const p = a.spawn({ uid: 1000, groups: ['kvm'] });
    p.open('/dev/kvm');
    a.cpuDown(1);
    a.hardware.setForeignOwner(0, true);
    a.hooks.registerEmergencyVirtCallback(() => undefined);
    a.power.registerSyscore({ name: 'x' });
    a.warn({ source: 'test', message: 'only on a' });

    expect(b.snapshot()).toEqual(bBefore);
    expect(b.events.seq).toBe(bSeq);
    expect(b.warnings).toEqual([]);
    expect(b.lsmod()).toEqual([]);
    expect(b.hooks.hasEmergencyVirtCallback).toBe(false);
    expect(b.power.syscore()).toEqual([]);
    expect((b.hardware as FakeHostHardware).foreignOwned(0)).toBe(false);
    // The same image loads on b independently.
    b.insmod(miscImage({ name: 'kvm' }));
    expect(b.lsmod().map((m) => [m.name, m.refcount])).toEqual([['kvm', 0]]);
    expect(a.lsmod().map((m) => [m.name, m.refcount])).toEqual([['kvm', 1]]);
    // pids are per host
    expect(b.spawn().pid).toBe(2);
  });

  test('a module loaded on one host is unknown on another', () => {
    const a = createHost({ cpus: 1, hardware: fakeHardware() });
    const b = createHost({ cpus: 1, hardware: fakeHardware() });
    a.insmod(miscImage({ name: 'm' }));
    expectKernelError(b, () => b.rmmod('m'), 'ENOENT');
    expect(a.lsmod().map((m) => m.name)).toEqual(['m']);
  });
});
