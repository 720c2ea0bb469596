/**
 * Mount namespaces for /dev (kernel/nsproxy.c, fs/namespace.c): a process gets its own view of /dev with
 * `unshare(CLONE_NEWNS)` and a bind mount, or a private /dev with `mknod`; children share their parent's namespace;
 * the host's /dev does not change. Nodes reached through a namespace find their driver by number.
 */
import { describe, expect, test } from 'vitest';
import { CLONE_NEWNS, MS_BIND, O_RDWR, S_IFCHR, createHost, mknod, mount, umount, unshare, type Host } from '../../src/index.js';
import { expectKernelError, expectUsageError } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { miscImage } from '../support/images.js';

/** A host with kvm0 (10:127) and kvm1 (10:126), as two KVM modules loaded in that order, and /dev/kvm -> kvm0. */
function twoModules(): Host {
  const host = createHost({ cpus: 1, hardware: fakeHardware() });
  host.insmod(miscImage({ name: 'kvm0' }));
  host.insmod(miscImage({ name: 'kvm1' }));
  host.symlink('/dev/kvm0', '/dev/kvm');
  return host;
}

const ownerOf = (p: ReturnType<Host['spawn']>, fd: number): string | undefined => p.file(fd).owner?.name;

describe('unshare(CLONE_NEWNS) and bind mounts', () => {
  test('a bind of /dev/kvm1 over /dev/kvm in a new namespace: its processes open kvm1 there, everyone else kvm0', () => {
    const host = twoModules();
    const runtime = host.spawn({ name: 'runtime' });
    unshare(runtime, CLONE_NEWNS);
    // /dev/kvm is a symlink: the mount follows it and covers /dev/kvm0 in this namespace, as Linux's walk does.
    mount(runtime, '/dev/kvm1', '/dev/kvm', '', MS_BIND);
    const vmmB = host.spawn({ uid: 1000, groups: ['kvm'], parent: runtime });
    const vmmA = host.spawn({ uid: 1000, groups: ['kvm'] });
    expect(ownerOf(vmmB, vmmB.open('/dev/kvm', O_RDWR))).toBe('kvm1');
    expect(ownerOf(vmmA, vmmA.open('/dev/kvm', O_RDWR))).toBe('kvm0');
    expect(vmmB.stat('/dev/kvm')).toEqual({ type: 'char', path: '/dev/kvm0', major: 10, minor: 126, uid: 0, gid: 36, mode: 0o660 });
    expect(vmmA.stat('/dev/kvm')).toMatchObject({ path: '/dev/kvm0', minor: 127 });
    // the host's /dev is unchanged
    expect(host.stat('/dev/kvm')).toMatchObject({ minor: 127 });
    expect(host.devfs.list()).toEqual(host.mountNamespace.list());
    expect(vmmB.mountNamespace).toBe(runtime.mountNamespace);
    expect(vmmA.mountNamespace).toBe(host.mountNamespace);
  });

  test('a namespace starts as a copy: a later mount in the parent\'s namespace is not seen in the child\'s', () => {
    const host = twoModules();
    const a = host.spawn();
    unshare(a, CLONE_NEWNS);
    mount(a, '/dev/kvm1', '/dev/kvm0', '', MS_BIND);
    const b = host.spawn({ parent: a });
    unshare(b, CLONE_NEWNS);
    umount(a, '/dev/kvm0');
    expect(a.stat('/dev/kvm0')).toMatchObject({ minor: 127 });
    expect(b.stat('/dev/kvm0')).toMatchObject({ minor: 126 });
  });

  test('without CAP_SYS_ADMIN: EPERM; unknown flags: EINVAL; other namespaces: not modelled; nothing changes', () => {
    const host = twoModules();
    const user = host.spawn({ uid: 1000 });
    expectKernelError(host, () => unshare(user, CLONE_NEWNS), 'EPERM');
    expectKernelError(host, () => mount(user, '/dev/kvm1', '/dev/kvm', '', MS_BIND), 'EPERM');
    expectKernelError(host, () => umount(user, '/dev/kvm'), 'EPERM');
    expectKernelError(host, () => unshare(user, 0x1), 'EINVAL');
    expectUsageError(host, () => unshare(user, 0x4000_0000 /* CLONE_NEWNET */), 'ERR_NOT_SUPPORTED');
    unshare(user, 0);
    expect(user.mountNamespace).toBe(host.mountNamespace);
  });

  test('mount errors: a missing source or target → ENOENT; umount of what is not mounted → EINVAL', () => {
    const host = twoModules();
    const rt = host.spawn();
    unshare(rt, CLONE_NEWNS);
    expectKernelError(host, () => mount(rt, '/dev/kvm9', '/dev/kvm', '', MS_BIND), 'ENOENT');
    expectKernelError(host, () => mount(rt, '/dev/kvm1', '/dev/nope', '', MS_BIND), 'ENOENT');
    expectKernelError(host, () => mount(rt, '/dev/kvm1', '/dev', '', MS_BIND), 'ENOTDIR');
    expectKernelError(host, () => umount(rt, '/dev/kvm1'), 'EINVAL');
    expectUsageError(host, () => mount(rt, 'proc', '/proc', 'proc', 0), 'ERR_NOT_SUPPORTED');
  });

  test('a bind mount keeps the device number: after kvm1 is unloaded, opening it is ENODEV; a module that takes minor 126 later is what it opens', () => {
    const host = twoModules();
    const rt = host.spawn();
    unshare(rt, CLONE_NEWNS);
    mount(rt, '/dev/kvm1', '/dev/kvm', '', MS_BIND);
    host.rmmod('kvm1');
    expectKernelError(host, () => rt.open('/dev/kvm'), 'ENODEV');
    host.insmod(miscImage({ name: 'other' })); // the next dynamic minor: 126 again
    expect(ownerOf(rt, rt.open('/dev/kvm'))).toBe('other');
  });
});

describe('a private /dev (tmpfs) with mknod', () => {
  test('mount a tmpfs on /dev: empty; mknod c 10:126 as /dev/kvm; opening it reaches kvm1; umount brings the host\'s /dev back', () => {
    const host = twoModules();
    const rt = host.spawn();
    unshare(rt, CLONE_NEWNS);
    mount(rt, 'tmpfs', '/dev', 'tmpfs', 0);
    expect(rt.mountNamespace.list()).toEqual([]);
    expectKernelError(host, () => rt.open('/dev/kvm0'), 'ENOENT');
    mknod(rt, '/dev/kvm', S_IFCHR | 0o666, 10, 126);
    expect(rt.stat('/dev/kvm')).toEqual({ type: 'char', path: '/dev/kvm', major: 10, minor: 126, uid: 0, gid: 0, mode: 0o666 });
    const vmm = host.spawn({ uid: 1000, parent: rt });
    expect(ownerOf(vmm, vmm.open('/dev/kvm'))).toBe('kvm1');
    expect(vmm.fds()).toEqual([{ fd: 3, path: '/dev/kvm' }]);
    umount(rt, '/dev');
    expect(rt.stat('/dev/kvm')).toMatchObject({ minor: 127 });
  });

  test('a node whose number no device has: ENODEV for a misc minor, ENXIO for another major', () => {
    const host = twoModules();
    const rt = host.spawn();
    unshare(rt, CLONE_NEWNS);
    mount(rt, 'tmpfs', '/dev', 'tmpfs', 0);
    mknod(rt, '/dev/gone', S_IFCHR | 0o600, 10, 50);
    mknod(rt, '/dev/tty9', S_IFCHR | 0o600, 4, 9);
    expectKernelError(host, () => rt.open('/dev/gone'), 'ENODEV');
    expectKernelError(host, () => rt.open('/dev/tty9'), 'ENXIO');
  });

  test('mknod: EPERM without CAP_MKNOD; EEXIST; EINVAL for a file type other than S_IFCHR; the host\'s /dev is not writable this way', () => {
    const host = twoModules();
    const rt = host.spawn();
    expectUsageError(host, () => mknod(rt, '/dev/x', S_IFCHR | 0o600, 10, 1), 'ERR_NOT_SUPPORTED');
    unshare(rt, CLONE_NEWNS);
    mount(rt, 'tmpfs', '/dev', 'tmpfs', 0);
    mknod(rt, '/dev/x', S_IFCHR | 0o600, 10, 1);
    expectKernelError(host, () => mknod(rt, '/dev/x', S_IFCHR | 0o600, 10, 1), 'EEXIST');
    expectKernelError(host, () => mknod(rt, '/dev/y', 0o060000 /* S_IFBLK */ | 0o600, 8, 0), 'EINVAL');
    const noMknod = host.spawn({ parent: rt, caps: ['CAP_SYS_ADMIN'] });
    expectKernelError(host, () => mknod(noMknod, '/dev/z', S_IFCHR | 0o600, 10, 2), 'EPERM');
  });
});
