/**
 * No raw TypeError or RangeError escapes the host's entry points: every argument of the wrong kind — a bigint, a
 * symbol, an object, NaN, a string — gets Linux's errno or a UsageError, and the host is exactly as before. A caller's
 * own exception (a Proxy whose traps throw, passed where an object is read) propagates as it is, also with the host
 * unchanged: the call reads its arguments before it changes anything.
 */
import { describe, expect, test } from 'vitest';
import { KernelError, UsageError, createHost } from '../../src/index.js';
import type { Host } from '../../src/index.js';
import { firstDifference } from '@vac/test-support';
import { fakeHardware } from '../support/fake-hardware.js';
import { miscImage } from '../support/images.js';

const TRAP = new Error('trap');
const trapping = new Proxy(
  {},
  {
    get() {
      throw TRAP;
    },
    ownKeys() {
      throw TRAP;
    },
    getOwnPropertyDescriptor() {
      throw TRAP;
    },
  },
);

/** Arguments of every wrong kind, and the trapping Proxy last. */
const BAD: ReadonlyArray<[string, unknown]> = [
  ['undefined', undefined],
  ['null', null],
  ['NaN', NaN],
  ['-1', -1],
  ['1.5', 1.5],
  ['2^53', 2 ** 53],
  ['Infinity', Infinity],
  ['1n', 1n],
  ['-1n', -1n],
  ['"x"', 'x'],
  ['"1"', '1'],
  ['a symbol', Symbol('s')],
  ['{}', {}],
  ['[]', []],
  ['a function', () => 1],
  ['true', true],
  ['a trapping Proxy', trapping],
];

/** A host with a device, a process holding an fd and a thread. */
function setup(): { host: Host; calls: ReadonlyArray<[string, (bad: unknown) => unknown]> } {
  const host = createHost({ cpus: 2, hardware: fakeHardware() });
  host.insmod(miscImage({ name: 'kvm1' }));
  const p = host.spawn({ groups: ['kvm'] });
  const fd = p.open('/dev/kvm1');
  const t = host.scheduler.spawn(p, {}, function* () {
    yield;
  });
  const b = (x: unknown): never => x as never;
  return {
    host,
    calls: [
      ['cpuUp', (x) => host.cpuUp(b(x))],
      ['cpuDown', (x) => host.cpuDown(b(x))],
      ['raisePmi', (x) => host.raisePmi(b(x))],
      ['raiseNmi', (x) => host.raiseNmi(b(x))],
      ['raisePostedIntrWakeup', (x) => host.raisePostedIntrWakeup(b(x))],
      ['spawn', (x) => host.spawn(b(x))],
      ['gid', (x) => host.gid(b(x))],
      ['readParam', (x) => host.readParam(b(x), b(x))],
      ['symlink target', (x) => host.symlink(b(x), '/dev/x')],
      ['symlink path', (x) => host.symlink('/dev/kvm1', b(x))],
      ['unlink', (x) => host.unlink(b(x))],
      ['readlink', (x) => host.readlink(b(x))],
      ['stat', (x) => host.stat(b(x))],
      ['rmmod', (x) => host.rmmod(b(x))],
      ['rmmod options', (x) => host.rmmod('kvm1', b(x))],
      ['insmod', (x) => host.insmod(b(x))],
      ['modprobe', (x) => host.modprobe(b(x))],
      ['insmod params', (x) => host.insmod(miscImage({ name: 'k2' }), b(x))],
      ['open path', (x) => p.open(b(x))],
      ['open flags', (x) => p.open('/dev/kvm1', b(x))],
      ['close', (x) => p.close(b(x))],
      ['dup', (x) => p.dup(b(x))],
      ['ioctl fd', (x) => p.ioctl(b(x), 0)],
      ['ioctl request', (x) => p.ioctl(fd, b(x))],
      ['mmap fd', (x) => p.mmap(b(x), 4096)],
      ['mmap length', (x) => p.mmap(fd, b(x))],
      ['mmap offset', (x) => p.mmap(fd, 4096, b(x))],
      ['mmapAnonymous', (x) => p.mmapAnonymous(b(x))],
      ['munmap addr', (x) => p.munmap(b(x), 4096)],
      ['munmap length', (x) => p.munmap(4096, b(x))],
      ['setAffinity', (x) => p.setAffinity(b(x))],
      ['thread setAffinity', (x) => t.setAffinity(b(x))],
      ['scheduler.run', (x) => host.scheduler.run(b(x))],
      ['runUntilIdle', (x) => host.scheduler.runUntilIdle(b(x))],
      ['quantum', (x) => {
        host.scheduler.quantum = b(x);
      }],
      ['scheduler.spawn options', (x) => host.scheduler.spawn(p, b(x), function* () {
        yield;
      })],
      ['scheduler.preempt', (x) => host.scheduler.preempt(b(x))],
      ['scheduler.currentOn', (x) => host.scheduler.currentOn(b(x))],
      ['failNth site', (x) => host.faults.failNth(b(x), 1)],
      ['failNth n', (x) => host.faults.failNth('mmap', b(x))],
      ['failModuleInit', (x) => host.faults.failModuleInit(b(x), b(x))],
      ['events.on', (x) => host.events.on(b(x), (() => undefined) as never)],
    ],
  };
}

describe('no raw TypeError or RangeError escapes the host', () => {
  test.each(BAD)('%s, passed to every entry point', (_label, bad) => {
    const { host, calls } = setup();
    const raw: string[] = [];
    for (const [name, call] of calls) {
      const before = host.snapshot();
      let error: unknown;
      try {
        call(bad);
      } catch (e) {
        error = e;
      }
      if (error === undefined) continue; // some values are valid somewhere (-1 to close is EBADF; '1' … no)
      const ok = error instanceof KernelError || error instanceof UsageError || error === TRAP;
      if (!ok) raw.push(`${name}: ${(error as Error).name}: ${(error as Error).message}`);
      const d = firstDifference(before, host.snapshot());
      if (d !== undefined) raw.push(`${name}: failed but changed the host at ${d}`);
    }
    expect(raw).toEqual([]);
  });
});
