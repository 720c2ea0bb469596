import { describe, expect, test } from 'vitest';
import { KVM_MINOR, MISC_DYNAMIC_MINOR, MISC_MAJOR, createHost } from '../../src/index.js';
import type { Host } from '../../src/index.js';
import { expectKernelError, expectUsageError, record } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';
import { miscImage } from '../support/images.js';

function newHost(): Host {
  return createHost({ cpus: 1, hardware: fakeHardware() });
}

function dyn(host: Host, name: string): number {
  return host.devfs.miscRegister({ name, minor: MISC_DYNAMIC_MINOR, fops: {} }).minor;
}

describe('misc devices', () => {
  test('constants: MISC_MAJOR 10, KVM_MINOR 232, MISC_DYNAMIC_MINOR 255', () => {
    expect([MISC_MAJOR, KVM_MINOR, MISC_DYNAMIC_MINOR]).toEqual([10, 232, 255]);
  });

  test('a fixed minor: /dev/kvm is char 10:232, root:root 0600 unless told otherwise', () => {
    const host = newHost();
    const reg = host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {} });
    expect(reg.minor).toBe(232);
    expect(reg.path).toBe('/dev/kvm');
    expect(host.stat('/dev/kvm')).toEqual({ type: 'char', path: '/dev/kvm', major: 10, minor: 232, uid: 0, gid: 0, mode: 0o600 });
  });

  test('the udev rule for /dev/kvm: root:kvm 0660', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {}, group: 'kvm', mode: 0o660 });
    expect(host.stat('/dev/kvm')).toMatchObject({ uid: 0, gid: 36, mode: 0o660 });
  });

  test('a second registration of minor 232 → EBUSY (16), nothing changes', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {} });
    const e = expectKernelError(host, () => host.devfs.miscRegister({ name: 'kvm1', minor: KVM_MINOR, fops: {} }), 'EBUSY', { errno: 16 });
    expect(e.op).toBe('misc_register');
    expect(e.message).toContain('232');
    expectKernelError(host, () => host.stat('/dev/kvm1'), 'ENOENT');
  });

  test('deregistering frees the minor and the name', () => {
    const host = newHost();
    const reg = host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {} });
    reg.deregister();
    reg.deregister(); // idempotent
    expect(host.devfs.list()).toEqual([]);
    expect(host.devfs.miscRegister({ name: 'kvm2', minor: KVM_MINOR, fops: {} }).minor).toBe(232);
    expect(host.devfs.miscRegister({ name: 'kvm', minor: 100, fops: {} }).minor).toBe(100);
  });

  test('the deregistration is Disposable (`using`)', () => {
    const host = newHost();
    const reg = host.devfs.miscRegister({ name: 'tmp', minor: 1, fops: {} });
    reg.deregister[Symbol.dispose]();
    expect(host.devfs.list()).toEqual([]);
  });

  test('dynamic minors count down from 127 (misc_minor_alloc), freed ones are reused', () => {
    const host = newHost();
    expect([dyn(host, 'a'), dyn(host, 'b'), dyn(host, 'c')]).toEqual([127, 126, 125]);
    host.devfs.miscRegister({ name: 'fixed', minor: 124, fops: {} });
    expect(dyn(host, 'd')).toBe(123); // skips a taken fixed minor
    const e = host.devfs.miscRegister({ name: 'e', minor: MISC_DYNAMIC_MINOR, fops: {} });
    expect(e.minor).toBe(122);
    // a freed minor is handed out again: the highest free one first
    e.deregister();
    expect(dyn(host, 'f')).toBe(122);
    expect(dyn(host, 'g')).toBe(121);
  });

  test('after the 128 low dynamic minors, allocation continues at 256 upwards', () => {
    const host = newHost();
    const got: number[] = [];
    for (let i = 0; i < 128; i++) got.push(dyn(host, `d${i}`));
    expect(got[0]).toBe(127);
    expect(got[127]).toBe(0);
    expect(new Set(got).size).toBe(128);
    expect(dyn(host, 'more')).toBe(256);
    expect(dyn(host, 'more2')).toBe(257);
  });

  test('a name that exists → EEXIST (17), and a dynamic minor is not consumed', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {} });
    expect(dyn(host, 'x')).toBe(127);
    const e = expectKernelError(host, () => host.devfs.miscRegister({ name: 'kvm', minor: MISC_DYNAMIC_MINOR, fops: {} }), 'EEXIST', { errno: 17 });
    expect(e.message).toContain('/dev/kvm');
    expectKernelError(host, () => host.devfs.miscRegister({ name: 'x', minor: 5, fops: {} }), 'EEXIST', { errno: 17 });
    // neither failed registration kept its minor
    expect(dyn(host, 'y')).toBe(126);
    expect(host.devfs.miscRegister({ name: 'z', minor: 5, fops: {} }).minor).toBe(5);
  });

  test('a symlink of that name → EEXIST as well', () => {
    const host = newHost();
    host.symlink('/dev/kvm1', '/dev/kvm');
    expectKernelError(host, () => host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {} }), 'EEXIST', { errno: 17 });
    expect(host.devfs.miscRegister({ name: 'kvm1', minor: KVM_MINOR, fops: {} }).minor).toBe(232);
  });

  test('misuse is a UsageError and changes nothing', () => {
    const host = newHost();
    expectUsageError(host, () => host.devfs.miscRegister({ name: '', minor: 1, fops: {} }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.devfs.miscRegister({ name: 'a/b', minor: 1, fops: {} }), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.devfs.miscRegister({ name: 'a', minor: -1, fops: {} }), 'ERR_OUT_OF_RANGE');
    expectUsageError(host, () => host.devfs.miscRegister({ name: 'a', minor: 1.5, fops: {} }), 'ERR_OUT_OF_RANGE');
    expectUsageError(host, () => host.devfs.miscRegister({ name: 'a', minor: 1 << 20, fops: {} }), 'ERR_OUT_OF_RANGE');
    expectUsageError(host, () => host.devfs.miscRegister({ name: 'a', minor: MISC_DYNAMIC_MINOR, fops: {}, group: 'wheel' }), 'ERR_UNKNOWN_NAME');
    // the dynamic minor tried above was not kept
    expect(dyn(host, 'a')).toBe(127);
  });

  test('device:register and device:unregister events', () => {
    const host = newHost();
    const events = record(host, 'device:register', 'device:unregister');
    const reg = host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {} });
    host.insmod(miscImage({ name: 'kvm0' }));
    reg.deregister();
    host.rmmod('kvm0');
    expect(events.map(([n, e]) => [n, { ...e, seq: undefined, tick: undefined }])).toEqual([
      ['device:register', { path: '/dev/kvm', major: 10, minor: 232, owner: undefined, seq: undefined, tick: undefined }],
      ['device:register', { path: '/dev/kvm0', major: 10, minor: 127, owner: 'kvm0', seq: undefined, tick: undefined }],
      ['device:unregister', { path: '/dev/kvm', seq: undefined, tick: undefined }],
      ['device:unregister', { path: '/dev/kvm0', seq: undefined, tick: undefined }],
    ]);
    expect(host.devfs.list()).toEqual([]);
  });
});

describe('symlinks', () => {
  test('symlink, readlink, stat (follows), lstat (does not), unlink', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm1', minor: 127, fops: {}, group: 'kvm', mode: 0o660 });
    host.symlink('/dev/kvm1', '/dev/kvm');
    expect(host.readlink('/dev/kvm')).toBe('/dev/kvm1');
    expect(host.stat('/dev/kvm')).toEqual({ type: 'char', path: '/dev/kvm1', major: 10, minor: 127, uid: 0, gid: 36, mode: 0o660 });
    expect(host.devfs.lstat('/dev/kvm')).toEqual({ type: 'symlink', path: '/dev/kvm', target: '/dev/kvm1' });
    expect(host.devfs.lstat('/dev/kvm1')).toMatchObject({ type: 'char', minor: 127 });
    expect(host.devfs.list().map((d) => [d.path, d.type])).toEqual([
      ['/dev/kvm', 'symlink'],
      ['/dev/kvm1', 'char'],
    ]);
    host.unlink('/dev/kvm');
    expectKernelError(host, () => host.readlink('/dev/kvm'), 'ENOENT', { errno: 2 });
    expect(host.devfs.list().map((d) => d.path)).toEqual(['/dev/kvm1']);
  });

  test('a relative target is resolved in /dev', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm0', minor: 127, fops: {} });
    host.symlink('kvm0', '/dev/kvm');
    expect(host.readlink('/dev/kvm')).toBe('kvm0');
    expect(host.stat('/dev/kvm')).toMatchObject({ path: '/dev/kvm0' });
  });

  test('links to links resolve; repointing = unlink + symlink', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm0', minor: 127, fops: {} });
    host.devfs.miscRegister({ name: 'kvm1', minor: 126, fops: {} });
    host.symlink('/dev/kvm0', '/dev/kvm-current');
    host.symlink('/dev/kvm-current', '/dev/kvm');
    expect(host.stat('/dev/kvm')).toMatchObject({ minor: 127 });
    host.unlink('/dev/kvm-current');
    host.symlink('/dev/kvm1', '/dev/kvm-current');
    expect(host.stat('/dev/kvm')).toMatchObject({ minor: 126 });
  });

  test('symlink over an existing path → EEXIST (17)', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm0', minor: 127, fops: {} });
    host.symlink('/dev/kvm0', '/dev/kvm');
    expect(expectKernelError(host, () => host.symlink('/dev/kvm1', '/dev/kvm'), 'EEXIST', { errno: 17 }).op).toBe('symlink');
    expectKernelError(host, () => host.symlink('/dev/kvm1', '/dev/kvm0'), 'EEXIST', { errno: 17 });
  });

  test('a dangling symlink: readlink works, stat and open → ENOENT (2)', () => {
    const host = newHost();
    host.symlink('/dev/kvm9', '/dev/kvm');
    expect(host.readlink('/dev/kvm')).toBe('/dev/kvm9');
    expectKernelError(host, () => host.stat('/dev/kvm'), 'ENOENT', { errno: 2 });
    const p = host.spawn();
    expectKernelError(host, () => p.open('/dev/kvm'), 'ENOENT', { errno: 2 });
    // the target appearing later makes the link work
    host.devfs.miscRegister({ name: 'kvm9', minor: 9, fops: {} });
    expect(p.open('/dev/kvm')).toBe(3);
  });

  test('a symlink loop → ELOOP (40)', () => {
    const host = newHost();
    host.symlink('/dev/b', '/dev/a');
    host.symlink('/dev/a', '/dev/b');
    expectKernelError(host, () => host.stat('/dev/a'), 'ELOOP', { errno: 40 });
    host.symlink('/dev/self', '/dev/self');
    const p = host.spawn();
    expectKernelError(host, () => p.open('/dev/self'), 'ELOOP', { errno: 40 });
  });

  test('40 nested links resolve, 41 → ELOOP (MAXSYMLINKS)', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'dev', minor: 1, fops: {} });
    host.symlink('/dev/dev', '/dev/l1');
    for (let i = 2; i <= 41; i++) host.symlink(`/dev/l${i - 1}`, `/dev/l${i}`);
    expect(host.stat('/dev/l40')).toMatchObject({ path: '/dev/dev' });
    expectKernelError(host, () => host.stat('/dev/l41'), 'ELOOP', { errno: 40 });
  });

  test('unlink of a device node → EPERM (1); of nothing → ENOENT (2)', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {} });
    expect(expectKernelError(host, () => host.unlink('/dev/kvm'), 'EPERM', { errno: 1 }).op).toBe('unlink');
    expectKernelError(host, () => host.unlink('/dev/nothing'), 'ENOENT', { errno: 2 });
  });

  test('readlink of a device node → EINVAL (22); stat/lstat of nothing → ENOENT', () => {
    const host = newHost();
    host.devfs.miscRegister({ name: 'kvm', minor: KVM_MINOR, fops: {} });
    expectKernelError(host, () => host.readlink('/dev/kvm'), 'EINVAL', { errno: 22 });
    expectKernelError(host, () => host.stat('/dev/none'), 'ENOENT', { errno: 2 });
    expectKernelError(host, () => host.devfs.lstat('/dev/none'), 'ENOENT', { errno: 2 });
  });

  test('symlinks live under /dev only; an empty target is a UsageError', () => {
    const host = newHost();
    expectUsageError(host, () => host.symlink('/dev/kvm1', '/tmp/kvm'), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.symlink('/dev/kvm1', '/dev/'), 'ERR_INVALID_ARG');
    expectUsageError(host, () => host.symlink('', '/dev/kvm'), 'ERR_INVALID_ARG');
  });

  test('symlinks emit no device events and survive the driver', () => {
    const host = newHost();
    host.insmod(miscImage({ name: 'kvm1' }));
    const events = record(host);
    host.symlink('/dev/kvm1', '/dev/kvm');
    expect(events).toEqual([]);
    host.rmmod('kvm1');
    expect(host.readlink('/dev/kvm')).toBe('/dev/kvm1');
    expectKernelError(host, () => host.stat('/dev/kvm'), 'ENOENT');
  });
});
