/**
 * Every knob of the host is checked before it changes anything: moving a process or thread to a CPU (the checked
 * `sched_setaffinity`), the scheduler's settings, `spawn`'s options, the actor of a module load, the load-time
 * parameters. A bad value gets a UsageError naming it or Linux's errno, and the host is exactly as before.
 */
import { describe, expect, test } from 'vitest';
import { KernelError, UsageError, createHost, positiveCount } from '../../src/index.js';
import type { Host, ParamInputs, Process } from '../../src/index.js';
import { expectKernelError, expectUsageError, thrown } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { miscImage, paramsImage } from '../support/images.js';

function newHost(cpus = 4): Host {
  return createHost({ cpus, hardware: fakeHardware() });
}

/** Not numbers, or numbers no CPU mask can hold. */
const NOT_CPU_NUMBERS: ReadonlyArray<[unknown, 'ERR_INVALID_ARG' | 'ERR_OUT_OF_RANGE']> = [
  ['1', 'ERR_INVALID_ARG'],
  [1n, 'ERR_INVALID_ARG'],
  [null, 'ERR_INVALID_ARG'],
  [{ valueOf: () => 1 }, 'ERR_INVALID_ARG'],
  [-1, 'ERR_OUT_OF_RANGE'],
  [1.5, 'ERR_OUT_OF_RANGE'],
  [NaN, 'ERR_OUT_OF_RANGE'],
  [Infinity, 'ERR_OUT_OF_RANGE'],
  [2 ** 53, 'ERR_OUT_OF_RANGE'],
];

describe('moving a process: setAffinity (sched_setaffinity)', () => {
  test('moves it to an online CPU; process.cpu is read-only', () => {
    const host = newHost();
    const p = host.spawn();
    expect(p.cpu).toBe(0);
    p.setAffinity(3);
    expect(p.cpu).toBe(3);
    const e = thrown(() => {
      (p as unknown as { cpu: number }).cpu = 1;
    });
    expect(e).toBeInstanceOf(UsageError);
    expect((e as UsageError).code).toBe('ERR_INVALID_ARG');
    expect((e as UsageError).message).toMatch(/read-only.*setAffinity/);
    expect(p.cpu).toBe(3);
  });

  test('an offline CPU, or one the host does not have → EINVAL (22), and the process stays', () => {
    const host = newHost();
    const p = host.spawn({ cpu: 1 });
    host.cpuDown(2);
    for (const cpu of [2, 4, 1000]) {
      const e = expectKernelError(host, () => p.setAffinity(cpu), 'EINVAL');
      expect(e.op).toBe('sched_setaffinity');
    }
    expect(p.cpu).toBe(1);
  });

  test.each(NOT_CPU_NUMBERS)('%s is a UsageError (%s)', (cpu, code) => {
    const host = newHost();
    const p = host.spawn();
    expectUsageError(host, () => p.setAffinity(cpu as number), code);
    expect(p.cpu).toBe(0);
  });

  test('a killed process → ESRCH (3)', () => {
    const host = newHost();
    const p = host.spawn();
    p.kill();
    expectKernelError(host, () => p.setAffinity(1), 'ESRCH');
  });

  test('a process moved by a cpuDown is moved, not re-pinned: setAffinity to the CPU once it is back works', () => {
    const host = newHost();
    const p = host.spawn({ cpu: 3 });
    host.cpuDown(3);
    expect(p.cpu).toBe(0);
    expectKernelError(host, () => p.setAffinity(3), 'EINVAL');
    host.cpuUp(3);
    p.setAffinity(3);
    expect(p.cpu).toBe(3);
  });
});

describe('threads: setAffinity and spawn options', () => {
  test('setAffinity: EINVAL for a missing or offline CPU, ESRCH once the thread has ended, UsageError for a non-CPU', () => {
    const host = newHost();
    const p = host.spawn();
    const t = host.scheduler.spawn(p, { name: 'worker' }, function* () {
      yield;
    });
    host.cpuDown(3);
    expectKernelError(host, () => t.setAffinity(3), 'EINVAL');
    expectKernelError(host, () => t.setAffinity(4), 'EINVAL');
    expectUsageError(host, () => t.setAffinity(-1), 'ERR_OUT_OF_RANGE');
    expect(t.affinity).toBeUndefined();
    t.setAffinity(2);
    expect(t.affinity).toBe(2);
    t.setAffinity(undefined);
    expect(t.affinity).toBeUndefined();
    host.scheduler.runUntilIdle();
    expect(t.alive).toBe(false);
    expectKernelError(host, () => t.setAffinity(1), 'ESRCH');
  });

  test('spawn: a CPU that is missing or offline → EINVAL; unknown options, a name that is not a string, a body that is not a function → UsageError', () => {
    const host = newHost();
    const p = host.spawn();
    const body = function* (): Generator<void, void, void> {
      yield;
    };
    host.cpuDown(1);
    expectKernelError(host, () => host.scheduler.spawn(p, { cpu: 9 }, body), 'EINVAL');
    expectKernelError(host, () => host.scheduler.spawn(p, { cpu: 1 }, body), 'EINVAL');
    expectUsageError(host, () => host.scheduler.spawn(p, { cpu: 0.5 }, body), 'ERR_OUT_OF_RANGE');
    expect(thrown(() => host.scheduler.spawn(p, { core: 1 } as never, body))).toMatchObject({ code: 'ERR_UNKNOWN_NAME', message: expect.stringContaining('"core"') });
    expectUsageError(host, () => host.scheduler.spawn(p, { name: 7 } as never, body), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.scheduler.spawn(p, null as never, body), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.scheduler.spawn(p, {}, 'run' as never), 'ERR_INVALID_ARG');
    expect(host.scheduler.threads()).toEqual([]);
    const t = host.scheduler.spawn(p, { cpu: 2 }, body);
    expect(t.tid).toBe(1); // no tid was used by the refused calls
  });
});

describe('scheduler settings', () => {
  test.each([0, -1, 1.5, NaN, Infinity, -Infinity, 2 ** 53])('quantum = %s → ERR_OUT_OF_RANGE naming scheduler.quantum; the quantum stays', (bad) => {
    const host = newHost();
    host.scheduler.quantum = 250;
    const e = expectUsageError(host, () => {
      host.scheduler.quantum = bad;
    }, 'ERR_OUT_OF_RANGE');
    expect(e.message).toContain('scheduler.quantum');
    expect(host.scheduler.quantum).toBe(250);
  });

  test('quantum of the wrong type → ERR_INVALID_ARG; 1 and 2^53 - 1 are accepted', () => {
    const host = newHost();
    expectUsageError(host, () => {
      host.scheduler.quantum = '10' as unknown as number;
    }, 'ERR_INVALID_ARG');
    host.scheduler.quantum = 1;
    expect(host.scheduler.quantum).toBe(1);
    host.scheduler.quantum = Number.MAX_SAFE_INTEGER;
    expect(host.scheduler.quantum).toBe(Number.MAX_SAFE_INTEGER);
  });

  test('run(n) and runUntilIdle(max) take non-negative safe integers only', () => {
    const host = newHost();
    for (const bad of [-1, 0.5, NaN, Infinity]) {
      expectUsageError(host, () => host.scheduler.run(bad), 'ERR_OUT_OF_RANGE');
      expectUsageError(host, () => host.scheduler.runUntilIdle(bad), 'ERR_OUT_OF_RANGE');
    }
    expectUsageError(host, () => host.scheduler.runUntilIdle('9' as unknown as number), 'ERR_INVALID_ARG');
    expect(host.scheduler.runUntilIdle(0)).toBe(0);
  });

  test('positiveCount names the setting it refuses', () => {
    expect(positiveCount(3, 'x')).toBe(3);
    expect(thrown(() => positiveCount(0, 'kvm({ syncRunLimit })'))).toMatchObject({ code: 'ERR_OUT_OF_RANGE', message: expect.stringContaining('kvm({ syncRunLimit })') });
  });
});

describe('spawn options', () => {
  test('an unknown capability is named; so is an unknown option', () => {
    const host = newHost();
    const e = expectUsageError(host, () => host.spawn({ caps: ['CAP_SYS_MODULE', 'CAP_SYS_ROOT' as never] }), 'ERR_UNKNOWN_NAME');
    expect(e.message).toContain('"CAP_SYS_ROOT"');
    expect(expectUsageError(host, () => host.spawn({ nofiles: 4 } as never), 'ERR_UNKNOWN_NAME').message).toContain('"nofiles"');
    expectUsageError(host, () => host.spawn({ caps: [7 as never] }), 'ERR_UNKNOWN_NAME');
  });

  test.each([
    [{ uid: -1 }, 'ERR_OUT_OF_RANGE', 'uid'],
    [{ uid: 2 ** 32 - 1 }, 'ERR_OUT_OF_RANGE', 'uid'],
    [{ uid: 1.5 }, 'ERR_OUT_OF_RANGE', 'uid'],
    [{ uid: NaN }, 'ERR_OUT_OF_RANGE', 'uid'],
    [{ uid: '0' }, 'ERR_INVALID_ARG', 'uid'],
    [{ nofile: -1 }, 'ERR_OUT_OF_RANGE', 'nofile'],
    [{ nofile: 1024 * 1024 + 1 }, 'ERR_OUT_OF_RANGE', 'nofile'],
    [{ nofile: Infinity }, 'ERR_OUT_OF_RANGE', 'nofile'],
    [{ group: 36 }, 'ERR_INVALID_ARG', 'group'],
    [{ groups: 'kvm' }, 'ERR_INVALID_ARG', 'groups'],
    [{ groups: ['kvm', 36] }, 'ERR_INVALID_ARG', 'groups[1]'],
    [{ caps: 'CAP_SYS_ADMIN' }, 'ERR_INVALID_ARG', 'caps'],
    [{ name: 42 }, 'ERR_INVALID_ARG', 'name'],
    [{ cpu: 'one' }, 'ERR_INVALID_ARG', 'cpu'],
    [{ cpu: -2 }, 'ERR_OUT_OF_RANGE', 'cpu'],
  ] as const)('%j → %s naming %s; no pid is used', (opts, code, what) => {
    const host = newHost();
    const e = expectUsageError(host, () => host.spawn(opts as never), code);
    expect(e.message).toContain(what);
    expect(host.spawn().pid).toBe(2);
  });

  test('options that are not an object → ERR_INVALID_ARG', () => {
    const host = newHost();
    for (const bad of [null, 7, 'root', []]) expectUsageError(host, () => host.spawn(bad as never), 'ERR_INVALID_ARG');
  });

  test('a missing or offline CPU → EINVAL, as sched_setaffinity answers', () => {
    const host = newHost();
    host.cpuDown(2);
    expectKernelError(host, () => host.spawn({ cpu: 2 }), 'EINVAL');
    expectKernelError(host, () => host.spawn({ cpu: 4 }), 'EINVAL');
  });

  test('the limits are accepted: uid 2^32 - 2, nofile 0 (then every open is EMFILE) and 1,048,576', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm', minor: 232, fops: {}, mode: 0o666 });
    expect(host.spawn({ uid: 2 ** 32 - 2 }).uid).toBe(2 ** 32 - 2);
    const none = host.spawn({ nofile: 0 });
    expectKernelError(host, () => none.open('/dev/kvm'), 'EMFILE');
    const big = host.spawn({ nofile: 1024 * 1024 });
    expect(big.open('/dev/kvm')).toBe(3);
  });

  test('each option is read once, before anything is created (a getter cannot change what was checked)', () => {
    const host = newHost();
    const reads: string[] = [];
    const opts = {
      get uid(): number {
        reads.push('uid');
        return reads.length === 1 ? 1000 : -1;
      },
      get groups(): string[] {
        reads.push('groups');
        return ['kvm'];
      },
    };
    const p: Process = host.spawn(opts as never);
    expect(reads).toEqual(['uid', 'groups']);
    expect(p.uid).toBe(1000);
    expect(p.inGroup(36)).toBe(true);
  });
});

describe('the actor of a module load or unload', () => {
  test('a killed process → ESRCH (3) for insmod, modprobe and rmmod, whatever its capabilities', () => {
    const host = newHost();
    const root = host.spawn();
    host.insmod(miscImage({ name: 'kvm1' }));
    root.kill();
    expectKernelError(host, () => host.insmod(miscImage({ name: 'x' }), {}, { as: root }), 'ESRCH');
    expectKernelError(host, () => host.modprobe(miscImage({ name: 'y' }), {}, { as: root }), 'ESRCH');
    expectKernelError(host, () => host.rmmod('kvm1', { as: root }), 'ESRCH');
    expect(host.lsmod().map((m) => m.name)).toEqual(['kvm1']);
  });

  test('a process of another host, or something that is not a process → ERR_INVALID_ARG; unknown options → ERR_UNKNOWN_NAME', () => {
    const host = newHost();
    const other = newHost().spawn();
    expectUsageError(host, () => host.insmod(miscImage({ name: 'x' }), {}, { as: other }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.insmod(miscImage({ name: 'x' }), {}, { as: { capable: () => true } as never }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.rmmod('x', { actor: host.init } as never), 'ERR_UNKNOWN_NAME');
    expectUsageError(host, () => host.rmmod('x', null as never), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.rmmod(7 as never), 'ERR_INVALID_ARG');
  });
});

describe('load-time parameters are read once, before the load changes anything', () => {
  test("a value's toString or valueOf never runs: only strings, numbers, booleans and bigints are values", () => {
    const host = newHost();
    let calls = 0;
    const sneaky = {
      toString(): string {
        calls++;
        host.rmmod('vac');
        return '1';
      },
      valueOf(): number {
        calls++;
        return 1;
      },
    };
    const e = expectUsageError(host, () => host.insmod(paramsImage(), { count: sneaky as never }), 'ERR_INVALID_ARG');
    expect(e.message).toContain("'count'");
    expectUsageError(host, () => host.modprobe(paramsImage(), { count: sneaky as never }), 'ERR_INVALID_ARG');
    for (const bad of [null, undefined, Symbol('x'), () => 1, [1]]) expectUsageError(host, () => host.insmod(paramsImage(), { count: bad as never }), 'ERR_INVALID_ARG');
    expect(calls).toBe(0);
    expectUsageError(host, () => host.insmod(paramsImage(), 'count=1' as never), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.insmod(paramsImage(), null as never), 'ERR_INVALID_ARG');
  });

  test('a getter on the parameters runs once, before any module is loaded (modprobe reads them before loading the dependencies)', () => {
    const host = newHost();
    host.modules.depmod(miscImage({ name: 'base' }));
    const image = { ...paramsImage('user'), depends: ['base'] };
    const seen: string[][] = [];
    const params = {
      get count(): string {
        seen.push(host.lsmod().map((m) => m.name));
        return '7';
      },
    };
    const m = host.modprobe(image, params as ParamInputs);
    expect(seen).toEqual([[]]);
    expect(m.exports?.values['count']).toBe(7);
    expect(host.lsmod().map((x) => x.name)).toEqual(['user', 'base']);
  });

  test('numbers, booleans and bigints are turned into the text insmod would pass', () => {
    const host = newHost();
    const m = host.insmod(paramsImage(), { count: -5, mask: 0xffn, enable: false, label: 'x' });
    expect(m.paramText).toEqual({ enable: 'N', count: '-5', mask: '255', label: 'x', flush: 'cond' });
    expect(thrown(() => host.insmod(paramsImage('k2'), { count: NaN }))).toBeInstanceOf(KernelError);
  });
});
