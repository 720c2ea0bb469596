import { describe, expect, test } from 'vitest';
import { KVM_MINOR, createHost } from '../../src/index.js';
import type { Host } from '../../src/index.js';
import { expectKernelError, expectUsageError } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';

/** A host with /dev/kvm (root:kvm 0660) and a process that may open it. */
function kvmHost(): { host: Host; open: (path: string) => number } {
  const host = createHost({ cpus: 1, hardware: fakeHardware() });
  host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {}, group: 'kvm', mode: 0o660 });
  const p = host.spawn();
  return { host, open: (path) => p.open(path) };
}

describe('paths are walked as the VFS walks them (fs/namei.c)', () => {
  test('repeated slashes, "." and ".." name the same node: //dev///kvm, /dev/./kvm, /dev/../dev/kvm, /../dev/kvm, dev/kvm', () => {
    const { host, open } = kvmHost();
    const paths = ['//dev///kvm', '/dev/./kvm', '/dev/../dev/kvm', '/../dev/kvm', '/./dev/.//./kvm', '/dev/../../dev/kvm', 'dev/kvm', './dev/kvm'];
    for (const path of paths) {
      expect(host.stat(path), path).toEqual({ type: 'char', path: '/dev/kvm', major: 10, minor: KVM_MINOR, uid: 0, gid: 36, mode: 0o660 });
      const fd = open(path);
      expect(host.processes()[1]?.fds().find((f) => f.fd === fd)?.path, path).toBe('/dev/kvm');
    }
  });

  test('a trailing slash after a device node or a symlink → ENOTDIR (20); after a missing name → ENOENT', () => {
    const { host, open } = kvmHost();
    host.symlink('/dev/kvm', '/dev/link');
    for (const path of ['/dev/kvm/', '/dev/kvm//', '/dev/kvm/.', '/dev/link/', '/dev/kvm/x', '/dev/kvm/..']) {
      expectKernelError(host, () => open(path), 'ENOTDIR');
      expectKernelError(host, () => host.stat(path), 'ENOTDIR');
    }
    expectKernelError(host, () => host.devfs.lstat('/dev/link/'), 'ENOTDIR');
    expectKernelError(host, () => host.readlink('/dev/link/'), 'ENOTDIR');
    expectKernelError(host, () => open('/dev/none/'), 'ENOENT');
  });

  test('directories: open → EISDIR (21); unlink → EISDIR; stat describes /dev entries only (UsageError)', () => {
    const { host, open } = kvmHost();
    for (const path of ['/', '/dev/', '//dev/./', '/dev/..']) expectUsageError(host, () => host.stat(path), 'ERR_NOT_SUPPORTED');
    for (const path of ['/', '/dev', '/dev/', '/dev/.', '/dev/..']) expectKernelError(host, () => open(path), 'EISDIR');
    for (const path of ['/dev', '/dev/', '/', '/dev/.', '/dev/..']) expectKernelError(host, () => host.unlink(path), 'EISDIR');
  });

  test('outside /dev nothing exists: ENOENT (2)', () => {
    const { host, open } = kvmHost();
    for (const path of ['/tmp/kvm', '/kvm', 'kvm', '/dev/../kvm', '/devx/kvm']) {
      expectKernelError(host, () => open(path), 'ENOENT');
      expectKernelError(host, () => host.stat(path), 'ENOENT');
    }
  });

  test('an empty path → ENOENT; PATH_MAX bytes or a component over NAME_MAX → ENAMETOOLONG (36)', () => {
    const { host, open } = kvmHost();
    expectKernelError(host, () => open(''), 'ENOENT');
    expectKernelError(host, () => host.stat(''), 'ENOENT');
    const long = `/dev/${'a'.repeat(256)}`;
    expectKernelError(host, () => open(long), 'ENAMETOOLONG');
    expect(() => host.stat(`/dev/${'a'.repeat(255)}`)).toThrow(/ENOENT/);
    const deep = `/dev/${'./'.repeat(2044)}kvm`;
    expect(deep.length).toBe(4096);
    expectKernelError(host, () => open(deep), 'ENAMETOOLONG');
    const fits = `/dev/${'./'.repeat(2043)}kvm`;
    expect(fits.length).toBe(4094);
    expect(host.stat(fits).path).toBe('/dev/kvm');
    expectKernelError(host, () => host.symlink('x'.repeat(4096), '/dev/l'), 'ENAMETOOLONG');
  });

  test('symlink, unlink and readlink take the same paths; the link is created in /dev under its last component', () => {
    const { host, open } = kvmHost();
    host.symlink('kvm', '//dev/./alias');
    expect(host.readlink('/dev/alias')).toBe('kvm');
    expect(host.readlink('/dev/../dev//alias')).toBe('kvm');
    expect(host.devfs.lstat('dev/alias')).toEqual({ type: 'symlink', path: '/dev/alias', target: 'kvm' });
    expect(open('/dev/alias')).toBe(3);
    expectKernelError(host, () => host.symlink('kvm', '/dev/../dev/alias'), 'EEXIST');
    expectKernelError(host, () => host.symlink('kvm', '/dev/other/'), 'ENOENT');
    expectKernelError(host, () => host.unlink('/dev/alias/'), 'ENOTDIR');
    host.unlink('/dev/./alias');
    expectKernelError(host, () => host.readlink('/dev/alias'), 'ENOENT');
    expect(host.devfs.list().map((d) => d.path)).toEqual(['/dev/kvm']);
  });

  test('a relative target is read from /dev, "." and ".." in it too; a link to /dev is a directory in the middle of a path', () => {
    const { host, open } = kvmHost();
    host.symlink('../dev/./kvm', '/dev/rel');
    expect(host.stat('/dev/rel').path).toBe('/dev/kvm');
    host.symlink('/dev', '/dev/d');
    host.symlink('.', '/dev/here');
    expect(host.stat('/dev/d/kvm').path).toBe('/dev/kvm');
    expect(host.stat('/dev/here/here/d/kvm').path).toBe('/dev/kvm');
    expect(host.devfs.lstat('/dev/d')).toEqual({ type: 'symlink', path: '/dev/d', target: '/dev' });
    expect(open('/dev/d/kvm')).toBe(3);
    // a link in the middle that is not a directory
    host.symlink('kvm', '/dev/k');
    expectKernelError(host, () => host.stat('/dev/k/kvm'), 'ENOTDIR');
  });

  test('every link followed in one lookup counts towards MAXSYMLINKS (40), in the middle of a path too', () => {
    const { host } = kvmHost();
    host.symlink('.', '/dev/s');
    expect(host.stat(`/dev/${'s/'.repeat(40)}kvm`).path).toBe('/dev/kvm');
    expectKernelError(host, () => host.stat(`/dev/${'s/'.repeat(41)}kvm`), 'ELOOP');
  });
});
