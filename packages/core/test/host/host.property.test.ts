/**
 * Property: random sequences of host operations never throw anything but KernelError / UsageError, and every
 * failing operation leaves host.snapshot() exactly as before (docs/spec.md §4 invariant 7). Module refcounts always
 * equal the open files that pin the module plus the modules that depend on it.
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { KVM_MINOR, KernelError, MISC_DYNAMIC_MINOR, PAGE_SIZE, UsageError, createHost } from '../../src/index.js';
import type { Host, LoadedModule, ModuleImage, OpenFile, Process } from '../../src/index.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { stepImage } from '../support/images.js';

/** The images of the world; `refuse` makes `base`'s hotplug startup fail on those CPUs. */
function world(refuse: Set<number>): ModuleImage[] {
  const devModule = (name: string, device: string, minor: number, depends: string[], slot?: 'CPUHP_AP_KVM_ONLINE'): ModuleImage => ({
    name,
    depends,
    params: {},
    init(ctx) {
      if (slot !== undefined) ctx.defer(ctx.host.cpuhp.setup(`${name}/cpu:online`, {}, { slot }));
      const reg = ctx.host.devfs.miscRegister({
        name: device,
        minor,
        mode: 0o660,
        group: 'kvm',
        fops: {
          owner: ctx.module,
          ioctl: (_f, req) => {
            if (req === 1) throw new KernelError('EINVAL', 'ioctl', 'bad request');
            return 0;
          },
          mmap: (_f, len) => new Uint8Array(len),
        },
      });
      ctx.defer(reg.deregister);
      return undefined;
    },
  });
  return [
    {
      name: 'base',
      depends: [],
      abiVersion: 1,
      params: {},
      init(ctx) {
        ctx.defer(
          ctx.host.cpuhp.setup('base:online', {
            startup(cpu) {
              if (refuse.has(cpu)) throw new KernelError('EIO', 'base', `CPU ${cpu} refused`);
            },
          }),
        );
        ctx.defer(ctx.host.power.registerSyscore({ name: 'base' }));
        return undefined;
      },
    },
    { ...devModule('dev', 'dev', MISC_DYNAMIC_MINOR, ['base']), abi: { base: 1 } },
    devModule('kvm', 'kvm', KVM_MINOR, ['base'], 'CPUHP_AP_KVM_ONLINE'),
    // wants the same minor and the same cpuhp slot as kvm: EBUSY while kvm is loaded
    devModule('kvm2', 'kvm2', KVM_MINOR, ['base'], 'CPUHP_AP_KVM_ONLINE'),
    { ...devModule('old', 'old', MISC_DYNAMIC_MINOR, ['base']), abi: { base: 0 } },
    stepImage({ name: 'broken', depends: ['base'], failAfter: 4 }),
  ];
}

const NAMES = ['base', 'dev', 'kvm', 'kvm2', 'old', 'broken', 'ghost'] as const;
const PATHS = ['/dev/kvm', '/dev/dev', '/dev/kvm2', '/dev/link', '/dev/loop', '/dev/none'] as const;
const NCPUS = 4;

type Cmd =
  | { op: 'insmod' | 'modprobe'; image: number; params: Record<string, string> }
  | { op: 'rmmod'; name: number; asUser: boolean }
  | { op: 'spawn'; kind: number; nofile: number }
  | { op: 'open'; proc: number; path: number; flags: number }
  | { op: 'close' | 'dup' | 'mmap' | 'ioctl'; proc: number; fd: number; arg: number }
  | { op: 'munmap'; proc: number; index: number }
  | { op: 'kill'; proc: number }
  | { op: 'cpuUp' | 'cpuDown' | 'refuse'; cpu: number }
  | { op: 'symlink' | 'unlink'; path: number; target: number }
  | { op: 'suspendResume' };

const cmd: fc.Arbitrary<Cmd> = fc.oneof(
  {
    weight: 3,
    arbitrary: fc.record({
      op: fc.constantFrom('insmod' as const, 'modprobe' as const, 'modprobe' as const),
      image: fc.oneof(fc.constantFrom(1, 2), fc.nat({ max: 5 })),
      params: fc.dictionary(fc.constantFrom('x', 'y'), fc.constantFrom('1', 'n')),
    }),
  },
  { weight: 2, arbitrary: fc.record({ op: fc.constant('rmmod' as const), name: fc.nat({ max: NAMES.length - 1 }), asUser: fc.boolean() }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('spawn' as const), kind: fc.nat({ max: 2 }), nofile: fc.integer({ min: 1, max: 4 }) }) },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constant('open' as const),
      proc: fc.nat({ max: 4 }),
      path: fc.oneof(fc.constantFrom(0, 1), fc.nat({ max: PATHS.length - 1 })),
      flags: fc.constantFrom(2, 2, 0, 1),
    }),
  },
  {
    weight: 4,
    arbitrary: fc.record({
      op: fc.constantFrom('close' as const, 'dup' as const, 'mmap' as const, 'ioctl' as const),
      proc: fc.nat({ max: 4 }),
      fd: fc.integer({ min: 2, max: 6 }),
      arg: fc.nat({ max: 2 }),
    }),
  },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('munmap' as const), proc: fc.nat({ max: 4 }), index: fc.nat({ max: 2 }) }) },
  { weight: 1, arbitrary: fc.record({ op: fc.constant('kill' as const), proc: fc.nat({ max: 4 }) }) },
  { weight: 2, arbitrary: fc.record({ op: fc.constantFrom('cpuUp' as const, 'cpuDown' as const, 'refuse' as const), cpu: fc.nat({ max: NCPUS - 1 }) }) },
  {
    weight: 1,
    arbitrary: fc.record({
      op: fc.constantFrom('symlink' as const, 'unlink' as const),
      path: fc.nat({ max: PATHS.length - 1 }),
      target: fc.nat({ max: PATHS.length - 1 }),
    }),
  },
  { weight: 1, arbitrary: fc.constant({ op: 'suspendResume' as const }) },
);

/** Every distinct open file a live process holds (through an fd or a mapping). */
function openFiles(host: Host): Set<OpenFile> {
  const files = new Set<OpenFile>();
  for (const p of host.processes()) {
    for (const { fd } of p.fds()) files.add(p.file(fd));
    for (const m of p.mappings()) if (m.file !== undefined) files.add(m.file);
  }
  return files;
}

function checkRefcounts(host: Host): void {
  const files = [...openFiles(host)];
  for (const m of host.modules.loaded()) {
    const pins = files.filter((f) => f.owner === (m as LoadedModule)).length;
    expect(m.refcount, `refcount of ${m.name}`).toBe(pins + m.usedBy.size);
    expect(m.state).toBe('live');
  }
  for (const f of files) expect(f.released).toBe(false);
}

function run(cmds: readonly Cmd[]): void {
  const refuse = new Set<number>();
  const images = world(refuse);
  const host = createHost({ cpus: NCPUS, hardware: fakeHardware(), modules: images });
  const procs: Process[] = [host.spawn({ uid: 1000, groups: ['kvm'] }), host.spawn({ uid: 1001 })];
  // mostly a live process (index 4: any process, possibly a dead one)
  const proc = (i: number): Process => {
    const live = procs.filter((p) => p.alive);
    return (i < 4 && live.length > 0 ? live[i % live.length] : procs[i % procs.length]) as Process;
  };
  // for fd operations: mostly a live process that has fds
  const holder = (i: number): Process => {
    const withFds = procs.filter((p) => p.alive && p.fds().length > 0);
    return i < 4 && withFds.length > 0 ? (withFds[i % withFds.length] as Process) : proc(i);
  };
  // mostly one of the process's fds (2 and 6 may be free numbers)
  const fdOf = (p: Process, i: number): number => {
    const fds = p.fds();
    return i === 2 || i === 6 || fds.length === 0 ? i : (fds[(i - 3) % fds.length]?.fd ?? i);
  };
  const apply = (c: Cmd): void => {
    switch (c.op) {
      case 'insmod':
        host.insmod(images[c.image] as ModuleImage, c.params);
        return;
      case 'modprobe':
        host.modprobe(images[c.image] as ModuleImage, c.params);
        return;
      case 'rmmod':
        host.rmmod(NAMES[c.name] as string, c.asUser ? { as: proc(0) } : {});
        return;
      case 'spawn':
        procs.push(host.spawn([{}, { uid: 1000, groups: ['kvm'], nofile: c.nofile }, { uid: 1002, nofile: c.nofile }][c.kind] ?? {}));
        return;
      case 'open':
        proc(c.proc).open(PATHS[c.path] as string, c.flags);
        return;
      case 'close': {
        const p = holder(c.proc);
        p.close(fdOf(p, c.fd));
        return;
      }
      case 'dup': {
        const p = holder(c.proc);
        p.dup(fdOf(p, c.fd));
        return;
      }
      case 'mmap': {
        const p = holder(c.proc);
        p.mmap(fdOf(p, c.fd), PAGE_SIZE * (c.arg + 1), c.arg === 2 ? 1 : 0);
        return;
      }
      case 'ioctl': {
        const p = holder(c.proc);
        p.ioctl(fdOf(p, c.fd), c.arg);
        return;
      }
      case 'munmap': {
        const mapped = procs.filter((x) => x.alive && x.mappings().length > 0);
        const p = c.proc < 4 && mapped.length > 0 ? (mapped[c.proc % mapped.length] as Process) : proc(c.proc);
        const m = p.mappings()[c.index];
        p.munmap(m?.addr ?? 0x1000, m?.length ?? PAGE_SIZE);
        return;
      }
      case 'kill':
        proc(c.proc).kill();
        return;
      case 'cpuUp':
        host.cpuUp(c.cpu);
        return;
      case 'cpuDown':
        host.cpuDown(c.cpu);
        return;
      case 'refuse':
        // a test knob, not a host operation: toggles whether base refuses this CPU
        if (refuse.has(c.cpu)) refuse.delete(c.cpu);
        else refuse.add(c.cpu);
        return;
      case 'symlink':
        host.symlink(PATHS[c.target] as string, c.path === 4 ? '/dev/loop' : (PATHS[c.path] as string));
        return;
      case 'unlink':
        host.unlink(PATHS[c.path] as string);
        return;
      case 'suspendResume':
        host.suspend();
        host.resume();
        return;
    }
  };
  for (const c of cmds) {
    const before = host.snapshot();
    let error: unknown;
    try {
      apply(c);
    } catch (e) {
      error = e;
    }
    if (error !== undefined) {
      if (!(error instanceof KernelError) && !(error instanceof UsageError)) throw error;
      expect(host.snapshot(), `after failing ${JSON.stringify(c)}: ${String(error)}`).toEqual(before);
    }
    checkRefcounts(host);
  }
  // tear everything down: all processes die, every module unloads, and nothing is left
  for (const p of host.processes()) if (p !== host.init) p.kill();
  for (let i = 0; i < NAMES.length && host.lsmod().length > 0; i++) {
    for (const m of host.lsmod()) if (m.usedBy.length === 0) host.rmmod(m.name);
  }
  expect(host.lsmod()).toEqual([]);
  expect(host.devfs.list().every((d) => d.type === 'symlink')).toBe(true);
  expect(host.cpuhp.states().map((s) => s.name)).toEqual(['sched:active']);
  expect(host.power.syscore()).toEqual([]);
}

describe('random host operations', () => {
  test('only KernelError/UsageError, and a failed operation changes nothing', () => {
    fc.assert(
      fc.property(fc.array(cmd, { minLength: 5, maxLength: 80, size: 'max' }), (cmds) => {
        run(cmds);
      }),
      { numRuns: 300 },
    );
  });

  test('a hand-picked sequence exercising every failure path', () => {
    run([
      { op: 'insmod', image: 1, params: {} }, // dev without base: ENOENT
      { op: 'modprobe', image: 1, params: { x: '1' } }, // base + dev
      { op: 'insmod', image: 4, params: {} }, // old: ENOEXEC
      { op: 'insmod', image: 2, params: {} }, // kvm
      { op: 'insmod', image: 3, params: {} }, // kvm2: EBUSY (slot)
      { op: 'modprobe', image: 5, params: {} }, // broken: EIO, base stays
      { op: 'open', proc: 0, path: 0, flags: 2 },
      { op: 'open', proc: 1, path: 0, flags: 2 }, // EACCES
      { op: 'mmap', proc: 0, fd: 3, arg: 0 },
      { op: 'mmap', proc: 0, fd: 3, arg: 2 }, // EINVAL offset
      { op: 'ioctl', proc: 0, fd: 3, arg: 1 }, // EINVAL from the driver
      { op: 'close', proc: 0, fd: 3, arg: 0 },
      { op: 'rmmod', name: 2, asUser: false }, // EWOULDBLOCK (mapped)
      { op: 'rmmod', name: 0, asUser: false }, // EWOULDBLOCK (dependents)
      { op: 'rmmod', name: 0, asUser: true }, // EPERM
      { op: 'rmmod', name: 6, asUser: false }, // ENOENT
      { op: 'refuse', cpu: 2 },
      { op: 'cpuDown', cpu: 2 },
      { op: 'cpuUp', cpu: 2 }, // EIO
      { op: 'cpuDown', cpu: 0 }, // EBUSY
      { op: 'symlink', path: 3, target: 0 },
      { op: 'symlink', path: 4, target: 4 },
      { op: 'open', proc: 0, path: 4, flags: 2 }, // ELOOP
      { op: 'unlink', path: 0, target: 0 }, // EPERM
      { op: 'suspendResume' },
      { op: 'munmap', proc: 0, index: 0 },
      { op: 'kill', proc: 0 },
      { op: 'kill', proc: 0 }, // ESRCH
    ]);
  });
});
