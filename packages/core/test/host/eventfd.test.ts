/**
 * eventfd(2) (fs/eventfd.c) in the simulated host: a counter a process creates, writes and reads through its fd,
 * and kernel code signals (`eventfd_signal`, as KVM's ioeventfds do).
 */
import { describe, expect, test } from 'vitest';
import { EFD_NONBLOCK, EFD_SEMAPHORE, KernelError, createHost, eventFdOf, eventfd } from '../../src/index.js';
import { expectKernelError, expectUsageError } from '../support/expect-failure.js';
import { fakeHardware } from '../support/fake-hardware.js';

function setup() {
  const host = createHost({ cpus: 1, hardware: fakeHardware() });
  const p = host.spawn({ name: 'vmm' });
  return { host, p };
}

const u64 = (v: bigint): Uint8Array => {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, v, true);
  return b;
};
const value = (b: Uint8Array): bigint => new DataView(b.buffer, b.byteOffset, 8).getBigUint64(0, true);

describe('eventfd', () => {
  test('write adds, read returns the count and resets it; a zero count is EAGAIN (a direct read does not block)', () => {
    const { host, p } = setup();
    const fd = eventfd(p, 3);
    expect(p.write(fd, u64(4n))).toBe(8);
    expect(value(p.read(fd, 8))).toBe(7n);
    expectKernelError(host, () => p.read(fd, 8), 'EAGAIN');
  });

  test('a write is the little-endian __u64 of the buffer, all 64 bits, wherever the bytes sit in their ArrayBuffer', () => {
    const { p } = setup();
    const fd = eventfd(p);
    const big = new Uint8Array(16);
    big.set(u64(0x8000_0001_0000_0002n), 3);
    expect(p.write(fd, big.subarray(3, 11))).toBe(8);
    expect(p.write(fd, u64(0xffff_fffen))).toBe(8);
    expect(value(p.read(fd, 8))).toBe(0x8000_0002_0000_0000n);
  });

  test('EFD_SEMAPHORE: each read takes 1', () => {
    const { p } = setup();
    const fd = eventfd(p, 2, EFD_SEMAPHORE);
    expect(value(p.read(fd, 8))).toBe(1n);
    expect(value(p.read(fd, 8))).toBe(1n);
    expect(() => p.read(fd, 8)).toThrow(KernelError);
  });

  test('kernel code signals it (eventfd_signal): +1 each', () => {
    const { p } = setup();
    const fd = eventfd(p, 0, EFD_NONBLOCK);
    const ctx = eventFdOf(p.file(fd));
    expect(ctx).toBeDefined();
    ctx?.signal();
    ctx?.signal();
    expect(value(p.read(fd, 8))).toBe(2n);
    expect(ctx?.signals).toBe(2);
  });

  test('reads and writes of fewer than 8 bytes, and ULLONG_MAX, are EINVAL; an overflowing sum is EAGAIN; the count is unchanged', () => {
    const { host, p } = setup();
    const fd = eventfd(p, 5);
    expectKernelError(host, () => p.read(fd, 4), 'EINVAL');
    expectKernelError(host, () => p.write(fd, new Uint8Array(4)), 'EINVAL');
    expectKernelError(host, () => p.write(fd, u64(0xffff_ffff_ffff_ffffn)), 'EINVAL');
    expectKernelError(host, () => p.write(fd, u64(0xffff_ffff_ffff_fffen)), 'EAGAIN');
    expect(value(p.read(fd, 8))).toBe(5n);
  });

  test('unknown flags are EINVAL; an initial value or flags C could not pass is a UsageError; nothing is created', () => {
    const { host, p } = setup();
    expectKernelError(host, () => eventfd(p, 0, 0x10), 'EINVAL');
    expectUsageError(host, () => eventfd(p, -1), 'ERR_OUT_OF_RANGE');
    expectUsageError(host, () => eventfd(p, 2 ** 32), 'ERR_OUT_OF_RANGE');
    expectUsageError(host, () => eventfd(p, 0, 0.5), 'ERR_INVALID_ARG');
  });

  test('eventFdOf tells an eventfd from another file; a file without read/write answers EINVAL to them', () => {
    const { host, p } = setup();
    const fd = eventfd(p);
    expect(eventFdOf(p.file(fd))).toBeDefined();
    const other = p.installAnonFile('other', {}, undefined);
    expect(eventFdOf(p.file(other))).toBeUndefined();
    expectKernelError(host, () => p.read(other, 8), 'EINVAL');
    expectKernelError(host, () => p.write(other, u64(1n)), 'EINVAL');
    p.close(fd);
    expectKernelError(host, () => p.read(fd, 8), 'EBADF');
  });
});

describe('eventfd wait queue', () => {
  test('a waiter is woken with in on every write and signal (a 0 too), with hup on release; take() consumes', () => {
    const h = createHost({ cpus: 1, hardware: fakeHardware() });
    const p = h.spawn();
    const fd = eventfd(p);
    const ctx = eventFdOf(p.file(fd));
    if (ctx === undefined) throw new Error('not an eventfd');
    const seen: string[] = [];
    const undo = ctx.addWaiter((why) => seen.push(`${why}:${ctx.count}`));
    const eight = (v: bigint): Uint8Array => {
      const b = new Uint8Array(8);
      new DataView(b.buffer).setBigUint64(0, v, true);
      return b;
    };
    p.write(fd, eight(2n));
    p.write(fd, eight(0n));
    ctx.signal();
    expect(seen).toEqual(['in:2', 'in:2', 'in:3']);
    expect(ctx.take()).toBe(3n);
    expect(ctx.count).toBe(0n);
    p.close(fd);
    expect(seen.at(-1)).toBe('hup:0');
    undo();
  });
});
