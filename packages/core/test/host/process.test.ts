import { describe, expect, test } from 'vitest';
import { KernelError, O_RDONLY, O_RDWR, O_WRONLY, PAGE_SIZE, createHost } from '../../src/index.js';
import type { FileOperations, Host, OpenFile } from '../../src/index.js';
import { expectKernelError, expectUsageError, record, thrown } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { miscImage } from '../support/images.js';
import { InterleavedLog } from '../support/interleaved-log.js';

function newHost(cpus = 2): Host {
  return createHost({ cpus, hardware: fakeHardware() });
}

/** A host with module `kvm1` serving /dev/kvm1 (root:kvm 0660) and the link /dev/kvm -> /dev/kvm1. */
function kvmHost(fops: Omit<FileOperations, 'owner'> = {}, log?: string[]): Host {
  const host = newHost();
  host.insmod(miscImage({ name: 'kvm1', fops, ...(log === undefined ? {} : { log }) }));
  host.symlink('/dev/kvm1', '/dev/kvm');
  return host;
}

const refcount = (host: Host, name: string): number | undefined => host.lsmod().find((m) => m.name === name)?.refcount;

describe('spawn and credentials', () => {
  test('root gets every capability, others none unless given', () => {
    const host = newHost();
    const events = record(host, 'process:spawn');
    const root = host.spawn();
    const user = host.spawn({ uid: 1000, group: 'kvm', groups: ['root'], name: 'qemu', cpu: 1, nofile: 16 });
    const admin = host.spawn({ uid: 1001, caps: ['CAP_SYS_ADMIN'] });
    expect(root.capable('CAP_SYS_MODULE')).toBe(true);
    expect(root.capable('CAP_DAC_OVERRIDE')).toBe(true);
    expect(user.capable('CAP_SYS_MODULE')).toBe(false);
    expect(admin.capable('CAP_SYS_ADMIN')).toBe(true);
    expect(admin.capable('CAP_SYS_MODULE')).toBe(false);
    expect([user.uid, user.gid, [...user.groups], user.name, user.cpu]).toEqual([1000, 36, [0], 'qemu', 1]);
    expect(user.inGroup(36)).toBe(true);
    expect(user.inGroup(0)).toBe(true);
    expect(admin.inGroup(36)).toBe(false);
    expect(root.name).toBe(`pid${root.pid}`);
    expect([root.pid, user.pid, admin.pid]).toEqual([2, 3, 4]);
    expect(events.map(([, e]) => e['pid'])).toEqual([2, 3, 4]);
    expect(host.processes().map((p) => p.pid)).toEqual([1, 2, 3, 4]);
  });

  test('bad credentials are UsageErrors', () => {
    const host = newHost();
    expectUsageError(host, () => host.spawn({ groups: ['wheel'] }), 'ERR_UNKNOWN_NAME');
    expectUsageError(host, () => host.spawn({ group: 'wheel' }), 'ERR_UNKNOWN_NAME');
    expectUsageError(host, () => host.spawn({ uid: -1 }), 'ERR_OUT_OF_RANGE');
    // a CPU the host does not have is sched_setaffinity's EINVAL (see knobs.test.ts)
    expectKernelError(host, () => host.spawn({ cpu: 2 }), 'EINVAL');
  });
});

describe('open', () => {
  test('resolves symlinks: /dev/kvm -> /dev/kvm1, fds 3, 4, … (lowest free)', () => {
    const host = kvmHost();
    const p = host.spawn();
    expect(p.open('/dev/kvm')).toBe(3);
    expect(p.open('/dev/kvm1')).toBe(4);
    expect(p.fds()).toEqual([
      { fd: 3, path: '/dev/kvm1' },
      { fd: 4, path: '/dev/kvm1' },
    ]);
    expect(p.file(3).path).toBe('/dev/kvm1');
    p.close(3);
    expect(p.open('/dev/kvm')).toBe(3);
  });

  test('mode 0660 root:kvm: group kvm may, others → EACCES (13), root may', () => {
    const host = kvmHost();
    const inKvm = host.spawn({ uid: 1000, groups: ['kvm'] });
    const primaryKvm = host.spawn({ uid: 1001, group: 'kvm' });
    const stranger = host.spawn({ uid: 1002 });
    const root = host.spawn();
    const rootNoCaps = host.spawn({ uid: 0, caps: [] });
    expect(inKvm.open('/dev/kvm')).toBe(3);
    expect(primaryKvm.open('/dev/kvm')).toBe(3);
    expect(root.open('/dev/kvm')).toBe(3);
    expect(rootNoCaps.open('/dev/kvm')).toBe(3); // owner bits rw-
    const e = expectKernelError(host, () => stranger.open('/dev/kvm'), 'EACCES', { errno: 13 });
    expect(e.op).toBe('open');
    expectKernelError(host, () => stranger.open('/dev/kvm', O_RDONLY), 'EACCES', { errno: 13 });
    expect(refcount(host, 'kvm1')).toBe(4);
  });

  test('access modes are checked against the right permission bits', () => {
    const host = newHost();
    host.insmod(miscImage({ name: 'ro', mode: 0o640 }));
    host.insmod(miscImage({ name: 'wo', mode: 0o620 }));
    host.insmod(miscImage({ name: 'none', mode: 0o000 }));
    host.insmod(miscImage({ name: 'world', mode: 0o606 }));
    const kvm = host.spawn({ uid: 1000, groups: ['kvm'] });
    const other = host.spawn({ uid: 1001 });
    const rootNoCaps = host.spawn({ uid: 0, caps: [] });
    expect(kvm.open('/dev/ro', O_RDONLY)).toBe(3);
    expectKernelError(host, () => kvm.open('/dev/ro', O_RDWR), 'EACCES');
    expectKernelError(host, () => kvm.open('/dev/ro', O_WRONLY), 'EACCES');
    expect(kvm.open('/dev/wo', O_WRONLY)).toBe(4);
    expectKernelError(host, () => kvm.open('/dev/wo', O_RDONLY), 'EACCES');
    expectKernelError(host, () => kvm.open('/dev/none', O_RDONLY), 'EACCES');
    expectKernelError(host, () => rootNoCaps.open('/dev/none'), 'EACCES');
    expect(host.spawn().open('/dev/none')).toBe(3); // CAP_DAC_OVERRIDE
    expect(other.open('/dev/world')).toBe(3);
    // in the group: the group bits apply, not the (wider) other bits
    expectKernelError(host, () => kvm.open('/dev/world'), 'EACCES');
  });

  test('opening pins the owner module: lsmod shows it, rmmod → EWOULDBLOCK (11) until the last close', () => {
    const host = kvmHost();
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const fd = p.open('/dev/kvm');
    const fd2 = p.dup(fd);
    expect(refcount(host, 'kvm1')).toBe(1); // one file, two fds
    const fd3 = p.open('/dev/kvm1');
    expect(refcount(host, 'kvm1')).toBe(2);
    const e = expectKernelError(host, () => host.rmmod('kvm1'), 'EWOULDBLOCK', { errno: 11 });
    expect(e.message).toContain('Module kvm1 is in use');
    p.close(fd);
    p.close(fd3);
    expect(refcount(host, 'kvm1')).toBe(1);
    expectKernelError(host, () => host.rmmod('kvm1'), 'EWOULDBLOCK', { errno: 11 });
    p.close(fd2);
    expect(refcount(host, 'kvm1')).toBe(0);
    host.rmmod('kvm1');
    expect(host.lsmod()).toEqual([]);
  });

  test('the device owner given as MiscDevice.owner alone pins the module as well', () => {
    const host = newHost();
    const m = host.insmod({
      name: 'drv',
      depends: [],
      params: {},
      init(ctx) {
        const reg = ctx.host.devfs.miscRegister({ name: 'drv', minor: 50, fops: {}, owner: ctx.module });
        ctx.defer(reg.deregister);
        return undefined;
      },
    });
    const p = host.spawn();
    const fd = p.open('/dev/drv');
    expect(m.refcount).toBe(1);
    expectKernelError(host, () => host.rmmod('drv'), 'EWOULDBLOCK');
    p.close(fd);
    expect(m.refcount).toBe(0);
    host.rmmod('drv');
  });

  test('a device whose owner and fops.owner differ is a UsageError', () => {
    const host = newHost();
    const a = host.insmod(miscImage({ name: 'a' }));
    const b = host.insmod(miscImage({ name: 'b' }));
    expectUsageError(host, () => host.devfs.miscRegister({ name: 'x', minor: 60, fops: { owner: a }, owner: b }), 'ERR_INVALID_ARG');
  });

  test('a driver that is going away cannot be opened → ENODEV (19)', () => {
    const host = newHost();
    let inExit: unknown;
    const p = host.spawn();
    host.insmod({
      ...miscImage({ name: 'leaving' }),
      exit() {
        const before = host.snapshot();
        inExit = thrown(() => p.open('/dev/leaving')); // the node is still there until the deferred undo
        expect(host.snapshot()).toEqual(before);
      },
    });
    host.rmmod('leaving');
    expect(inExit).toBeInstanceOf(KernelError);
    expect((inExit as KernelError).code).toBe('ENODEV');
    expect(p.fds()).toEqual([]);
  });

  test('a driver open() that fails: its error, no fd, the module unpinned', () => {
    const host = kvmHost({
      open() {
        throw new KernelError('ENXIO', 'open', 'no such device');
      },
    });
    const p = host.spawn();
    expectKernelError(host, () => p.open('/dev/kvm'), 'ENXIO', { errno: 6 });
    expect(refcount(host, 'kvm1')).toBe(0);
  });

  test('driver open() and release() see the file; release runs once, at the last reference', () => {
    const log: string[] = [];
    const host = kvmHost({
      open(file, proc) {
        file.privateData = { by: proc.pid };
        log.push(`open:${file.path}`);
      },
      release(file) {
        log.push(`release:${JSON.stringify(file.privateData)}`);
      },
    });
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    const fd2 = p.dup(fd);
    p.close(fd);
    expect(log).toEqual(['open:/dev/kvm1']);
    const file = p.file(fd2);
    p.close(fd2);
    expect(log).toEqual(['open:/dev/kvm1', `release:{"by":${p.pid}}`]);
    expect(file.released).toBe(true);
  });

  test('a path that is not there → ENOENT (2)', () => {
    const host = newHost();
    const p = host.spawn();
    expectKernelError(host, () => p.open('/dev/kvm'), 'ENOENT', { errno: 2 });
  });

  test('EMFILE (24) at the RLIMIT_NOFILE limit, for open, dup and anon files', () => {
    const host = kvmHost();
    // fds 0-2 count (alloc_fd bounds fd numbers): nofile 5 leaves fds 3 and 4.
    const p = host.spawn({ nofile: 5 });
    const fd = p.open('/dev/kvm');
    p.dup(fd);
    expectKernelError(host, () => p.open('/dev/kvm'), 'EMFILE', { errno: 24 });
    expectKernelError(host, () => p.dup(fd), 'EMFILE', { errno: 24 });
    expectKernelError(host, () => p.installAnonFile('kvm-vm', {}, undefined), 'EMFILE', { errno: 24 });
    expect(refcount(host, 'kvm1')).toBe(1);
    p.close(fd);
    expect(p.open('/dev/kvm')).toBe(3);
  });

  test('the default limit is 1024: the highest fd is 1023 (fds 0-2 count, as in Linux)', () => {
    const host = kvmHost();
    const p = host.spawn();
    let last = -1;
    for (let i = 0; i < 1021; i++) last = p.open('/dev/kvm');
    expect(last).toBe(1023);
    expectKernelError(host, () => p.open('/dev/kvm'), 'EMFILE');
    expect(refcount(host, 'kvm1')).toBe(1021);
    p.kill();
    expect(refcount(host, 'kvm1')).toBe(0);
  });

  test('a non-string path is a UsageError', () => {
    const host = kvmHost();
    const p = host.spawn();
    expectUsageError(host, () => p.open(3 as unknown as string), 'ERR_INVALID_ARG');
  });
});

describe('fds: close, dup, ioctl, EBADF', () => {
  test('EBADF (9) on a bad or closed fd', () => {
    const host = kvmHost({ ioctl: () => 0, mmap: (_f, len) => new Uint8Array(len) });
    const p = host.spawn();
    for (const fd of [0, 1, 2, 3, -1, 99, 1.5]) {
      expectKernelError(host, () => p.close(fd), 'EBADF', { errno: 9 });
      expectKernelError(host, () => p.ioctl(fd, 0), 'EBADF', { errno: 9 });
      expectKernelError(host, () => p.mmap(fd, PAGE_SIZE), 'EBADF', { errno: 9 });
      expectKernelError(host, () => p.dup(fd), 'EBADF', { errno: 9 });
      expectKernelError(host, () => p.file(fd), 'EBADF', { errno: 9 });
    }
    const fd = p.open('/dev/kvm');
    p.close(fd);
    const e = expectKernelError(host, () => p.close(fd), 'EBADF', { errno: 9 });
    expect(e.message).toContain(String(fd));
    expectKernelError(host, () => p.ioctl(fd, 0), 'EBADF', { errno: 9 });
  });

  test('fds are per process', () => {
    const host = kvmHost();
    const a = host.spawn();
    const b = host.spawn();
    const fd = a.open('/dev/kvm');
    expectKernelError(host, () => b.close(fd), 'EBADF');
  });

  test('dup gives the lowest free fd for the same open file; fd:open and fd:close events', () => {
    const host = kvmHost();
    const p = host.spawn();
    const events = record(host, 'fd:open', 'fd:close');
    const fd = p.open('/dev/kvm1');
    const d = p.dup(fd);
    expect(d).toBe(4);
    expect(p.file(d)).toBe(p.file(fd));
    p.close(fd);
    expect(p.dup(d)).toBe(3);
    expect(events.map(([n, e]) => [n, e['pid'], e['fd'], e['path']])).toEqual([
      ['fd:open', p.pid, 3, '/dev/kvm1'],
      ['fd:open', p.pid, 4, '/dev/kvm1'],
      ['fd:close', p.pid, 3, '/dev/kvm1'],
      ['fd:open', p.pid, 3, '/dev/kvm1'],
    ]);
  });

  test('ioctl calls the handler with the request as u32, the argument and the caller', () => {
    const seen: unknown[] = [];
    const host = kvmHost({
      ioctl(file: OpenFile, request, arg, proc) {
        seen.push([file.path, request, arg, proc.pid]);
        if (request === 0xae01) throw new KernelError('EINVAL', 'ioctl', 'bad');
        return 7;
      },
    });
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    expect(p.ioctl(fd, 0xae00, { x: 1 })).toBe(7);
    expect(p.ioctl(fd, -1)).toBe(7);
    expectKernelError(host, () => p.ioctl(fd, 0xae01), 'EINVAL', { errno: 22 });
    expect(seen).toEqual([
      ['/dev/kvm1', 0xae00, { x: 1 }, p.pid],
      ['/dev/kvm1', 0xffffffff, undefined, p.pid],
      ['/dev/kvm1', 0xae01, undefined, p.pid],
    ]);
  });

  test('a KernelError the handler returns (a -errno return) is thrown by ioctl, the same object, after the operation ends', () => {
    const eintr = KernelError.withoutStack('EINTR', 'KVM_RUN', 'returned');
    const host = kvmHost({ ioctl: (_f, request) => (request === 1 ? eintr : 3) });
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    expect(thrown(() => p.ioctl(fd, 1))).toBe(eintr);
    // The kernel operation was closed: the next syscalls run normally, and an fd:open event is delivered at once.
    const seen: string[] = [];
    const off = host.events.on('fd:open', (e) => seen.push(e.path));
    expect(p.ioctl(fd, 2)).toBe(3);
    p.open('/dev/kvm');
    off();
    expect(seen).toEqual(['/dev/kvm1']);
  });

  test('ioctl on a file without an ioctl handler → ENOTTY (25)', () => {
    const host = kvmHost();
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    const e = expectKernelError(host, () => p.ioctl(fd, 0xae00), 'ENOTTY', { errno: 25 });
    expect(e.op).toBe('ioctl');
  });

  test('installAnonFile: an anon_inode file that pins the owner', () => {
    const host = kvmHost({
      ioctl(_file, _req, _arg, proc) {
        return proc.installAnonFile('kvm-vm', { owner: host.modules.get('kvm1') }, { vm: 1 });
      },
    });
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    const vm = p.ioctl(fd, 0xae01);
    expect(vm).toBe(4);
    expect(p.fds()).toEqual([
      { fd: 3, path: '/dev/kvm1' },
      { fd: 4, path: 'anon_inode:kvm-vm' },
    ]);
    expect(p.file(vm).privateData).toEqual({ vm: 1 });
    expect(refcount(host, 'kvm1')).toBe(2);
    p.close(fd);
    expect(refcount(host, 'kvm1')).toBe(1);
    expectKernelError(host, () => host.rmmod('kvm1'), 'EWOULDBLOCK');
    p.close(vm);
    host.rmmod('kvm1');
  });
});

describe('mmap', () => {
  const mmapFops = (log: string[]): Omit<FileOperations, 'owner'> => ({
    mmap(_file, length, offset) {
      log.push(`mmap:${length}:${offset}`);
      const b = new Uint8Array(length);
      b[0] = 0x5a;
      return b;
    },
    release() {
      log.push('release');
    },
  });

  test('mmap of a file without mmap → ENODEV (19)', () => {
    const host = kvmHost();
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    const e = expectKernelError(host, () => p.mmap(fd, PAGE_SIZE), 'ENODEV', { errno: 19 });
    expect(e.op).toBe('mmap');
  });

  test('maps the driver’s bytes, page-rounded, offset in pages', () => {
    const log: string[] = [];
    const host = kvmHost(mmapFops(log));
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    const m = p.mmap(fd, 100, 2 * PAGE_SIZE);
    expect(m.length).toBe(PAGE_SIZE);
    expect(m.addr % PAGE_SIZE).toBe(0);
    expect(m.file).toBe(p.file(fd));
    expect(m.bytes[0]).toBe(0x5a);
    expect(log).toEqual([`mmap:${PAGE_SIZE}:2`]);
    const m2 = p.mmap(fd, PAGE_SIZE + 1);
    expect(m2.length).toBe(2 * PAGE_SIZE);
    expect(m2.addr).toBeGreaterThanOrEqual(m.addr + m.length);
    expect(p.mappings()).toEqual([m, m2]);
  });

  test('bad length or offset → EINVAL (22)', () => {
    const host = kvmHost(mmapFops([]));
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    for (const len of [0, -1, 1.5]) expectKernelError(host, () => p.mmap(fd, len), 'EINVAL', { errno: 22 });
    for (const off of [1, -PAGE_SIZE, 0.5]) expectKernelError(host, () => p.mmap(fd, PAGE_SIZE, off), 'EINVAL', { errno: 22 });
    expectKernelError(host, () => p.mmapAnonymous(0), 'EINVAL', { errno: 22 });
  });

  test('a mapping holds a file reference: close the fd, the file is released at munmap', () => {
    const log: string[] = [];
    const host = kvmHost(mmapFops(log));
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    const m = p.mmap(fd, PAGE_SIZE);
    p.close(fd);
    expect(log).toEqual([`mmap:${PAGE_SIZE}:0`]);
    expect(m.file?.released).toBe(false);
    expect(refcount(host, 'kvm1')).toBe(1);
    expectKernelError(host, () => host.rmmod('kvm1'), 'EWOULDBLOCK');
    const before = host.snapshot();
    p.munmap(m.addr + PAGE_SIZE, PAGE_SIZE); // the guard page: nothing mapped there, not an error (Linux)
    expect(host.snapshot()).toEqual(before);
    expectKernelError(host, () => p.munmap(m.addr, 2 * PAGE_SIZE), 'EINVAL', { errno: 22 });
    expectKernelError(host, () => p.munmap(m.addr + 1, PAGE_SIZE), 'EINVAL', { errno: 22 });
    p.munmap(m.addr, PAGE_SIZE);
    expect(log).toEqual([`mmap:${PAGE_SIZE}:0`, 'release']);
    expect(m.file?.released).toBe(true);
    expect(refcount(host, 'kvm1')).toBe(0);
    expect(p.mappings()).toEqual([]);
  });

  test('a failing driver mmap leaves no mapping and no extra reference', () => {
    const host = kvmHost({
      mmap() {
        throw new KernelError('EINVAL', 'mmap', 'bad offset for this file');
      },
    });
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    expectKernelError(host, () => p.mmap(fd, PAGE_SIZE, PAGE_SIZE), 'EINVAL');
    p.close(fd);
    expect(refcount(host, 'kvm1')).toBe(0);
  });

  test('userMemory: the process and the kernel see the same bytes of an anonymous mapping', () => {
    const host = newHost();
    const p = host.spawn();
    const m = p.mmapAnonymous(3 * PAGE_SIZE);
    expect(m.file).toBeUndefined();
    expect(m.bytes.every((b) => b === 0)).toBe(true);
    m.bytes.set([1, 2, 3, 4], PAGE_SIZE);
    const k = p.userMemory(m.addr + PAGE_SIZE, 4);
    expect(k && [...k]).toEqual([1, 2, 3, 4]);
    k?.fill(9);
    expect([...m.bytes.subarray(PAGE_SIZE, PAGE_SIZE + 5)]).toEqual([9, 9, 9, 9, 0]);
    expect(p.userMemory(m.addr, 3 * PAGE_SIZE)?.length).toBe(3 * PAGE_SIZE);
    expect(p.userMemory(m.addr, 3 * PAGE_SIZE + 1)).toBeUndefined();
    expect(p.userMemory(m.addr - 1, 2)).toBeUndefined();
    expect(p.userMemory(0x1000, 8)).toBeUndefined();
    const m2 = p.mmapAnonymous(PAGE_SIZE);
    // two mappings never merge into one range (guard page)
    expect(p.userMemory(m.addr + 3 * PAGE_SIZE - 1, 2)).toBeUndefined();
    expect(p.userMemory(m2.addr, 1)).toBeDefined();
    p.munmap(m.addr, 3 * PAGE_SIZE);
    expect(p.userMemory(m.addr, 1)).toBeUndefined();
    expect(host.snapshot().processes.find((x) => x.pid === p.pid)?.mappings).toEqual([{ addr: m2.addr, length: PAGE_SIZE, file: undefined }]);
  });

  test('mapExternal: outside bytes at a fixed address, seen through userMemory; overlap is EEXIST', () => {
    const host = newHost();
    const p = host.spawn();
    const outside = new Uint8Array(2 * PAGE_SIZE);
    const addr = 0x7fca_8dcf_5000;
    const m = p.mapExternal(addr, outside);
    expect([m.addr, m.length, m.file]).toEqual([addr, 2 * PAGE_SIZE, undefined]);
    outside[PAGE_SIZE + 1] = 7;
    const k = p.userMemory(addr + PAGE_SIZE, 2);
    expect(k && [...k]).toEqual([0, 7]);
    k?.fill(5);
    expect(outside[PAGE_SIZE]).toBe(5);
    expectKernelError(host, () => p.mapExternal(addr + PAGE_SIZE, new Uint8Array(2 * PAGE_SIZE)), 'EEXIST');
    expectKernelError(host, () => p.mapExternal(addr + 1, new Uint8Array(PAGE_SIZE)), 'EINVAL');
    expectKernelError(host, () => p.mapExternal(addr + 4 * PAGE_SIZE, new Uint8Array(100)), 'EINVAL');
    p.munmap(addr, 2 * PAGE_SIZE);
    expect(p.userMemory(addr, 1)).toBeUndefined();
    expect(p.mapExternal(addr + PAGE_SIZE, new Uint8Array(PAGE_SIZE)).addr).toBe(addr + PAGE_SIZE);
  });

  test('munmap of nothing succeeds and changes nothing, as Linux', () => {
    const host = newHost();
    const p = host.spawn();
    const before = host.snapshot();
    p.munmap(0x7f00_0000_0000, PAGE_SIZE);
    expect(host.snapshot()).toEqual(before);
  });
});

describe('kill', () => {
  test('exit hooks first (last registered first), then fds close in reverse order of opening, then mappings go', () => {
    let log: { push(text: string): unknown } = [];
    const host = kvmHost({
      mmap: (_f, len) => new Uint8Array(len),
      release: (f) => log.push(`release:${f.path}`),
    });
    host.insmod(miscImage({ name: 'other', fops: { release: (f) => log.push(`release:${f.path}`) } }));
    const p = host.spawn();
    const a = p.open('/dev/kvm'); // 3
    const b = p.open('/dev/other'); // 4
    const c = p.open('/dev/kvm1'); // 5
    p.close(a);
    expect(log).toEqual(['release:/dev/kvm1']);
    const order = new InterleavedLog(host);
    log = order;
    const d = p.open('/dev/other'); // 3 again, but opened last
    const m = p.mmap(c, PAGE_SIZE);
    p.onExit(() => log.push('hook:1'));
    const cancel = p.onExit(() => log.push('hook:cancelled'));
    p.onExit(() => log.push('hook:2'));
    cancel();
    const events = record(host, 'fd:close', 'process:exit');
    host.events.on('fd:close', (e) => order.event(`close:${e.fd}`, e));
    host.events.on('process:exit', (e) => order.event(`exit:${e.pid}`, e));
    p.kill();
    expect(events.map(([n, e]) => [n, e['fd'] ?? e['pid']])).toEqual([
      ['fd:close', d],
      ['fd:close', c],
      ['fd:close', b],
      ['process:exit', p.pid],
    ]);
    expect(order.lines()).toEqual([
      'hook:2',
      'hook:1',
      'close:3',
      'release:/dev/other',
      'close:5', // still mapped: not released yet
      'close:4',
      'release:/dev/other',
      'release:/dev/kvm1', // the mapping goes
      `exit:${p.pid}`,
    ]);
    expect(m.file?.released).toBe(true);
    expect(p.alive).toBe(false);
    expect(host.processes().map((x) => x.pid)).not.toContain(p.pid);
    expect(host.lsmod().map((x) => x.refcount)).toEqual([0, 0]);
    expect(host.snapshot().processes.map((x) => x.pid)).toEqual([1]);
  });

  test('operations on a killed process → ESRCH (3)', () => {
    const host = kvmHost({ ioctl: () => 0 });
    const p = host.spawn();
    const fd = p.open('/dev/kvm');
    p.kill();
    const ops: Array<[string, () => unknown]> = [
      ['open', () => p.open('/dev/kvm')],
      ['close', () => p.close(fd)],
      ['dup', () => p.dup(fd)],
      ['ioctl', () => p.ioctl(fd, 0)],
      ['mmap', () => p.mmap(fd, PAGE_SIZE)],
      ['mmap anon', () => p.mmapAnonymous(PAGE_SIZE)],
      ['munmap', () => p.munmap(0, PAGE_SIZE)],
      ['anon file', () => p.installAnonFile('x', {}, undefined)],
      ['kill', () => p.kill()],
    ];
    for (const [, op] of ops) expectKernelError(host, op, 'ESRCH', { errno: 3 });
    // the kernel-side fd lookup of a dead process finds nothing
    expectKernelError(host, () => p.file(fd), 'EBADF');
    expect(p.fds()).toEqual([]);
  });

  test('killing a process with nothing open just reaps it', () => {
    const host = newHost();
    const p = host.spawn();
    const events = record(host);
    p.kill();
    expect(events.map(([n]) => n)).toEqual(['process:exit']);
  });
});
