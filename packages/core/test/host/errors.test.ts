import { describe, expect, test } from 'vitest';
import { ERRNO, KernelError, UsageError, errnoOf, isKernelError, isUsageError } from '../../src/index.js';
import type { ErrnoCode } from '../../src/index.js';

describe('errors', () => {
  test('KernelError carries code, errno and op, and is an Error', () => {
    const e = new KernelError('EBUSY', 'rmmod', 'Module kvm is not live');
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(KernelError);
    expect(e.name).toBe('KernelError');
    expect(e.code).toBe('EBUSY');
    expect(e.errno).toBe(16);
    expect(e.op).toBe('rmmod');
    expect(e.message).toBe('rmmod: EBUSY: Module kvm is not live');
    expect(new KernelError('ENOENT', 'open').message).toBe('open: ENOENT');
  });

  test('EWOULDBLOCK is EAGAIN: errno 11', () => {
    expect(errnoOf('EWOULDBLOCK')).toBe(11);
    expect(errnoOf('EAGAIN')).toBe(11);
    const e = new KernelError('EWOULDBLOCK', 'rmmod', 'Module vac is in use');
    expect(e.code).toBe('EWOULDBLOCK');
    expect(e.errno).toBe(11);
  });

  const linux: Array<[ErrnoCode, number]> = [
    ['EPERM', 1],
    ['ENOENT', 2],
    ['ESRCH', 3],
    ['EINTR', 4],
    ['EIO', 5],
    ['ENXIO', 6],
    ['E2BIG', 7],
    ['ENOEXEC', 8],
    ['EBADF', 9],
    ['EAGAIN', 11],
    ['ENOMEM', 12],
    ['EACCES', 13],
    ['EFAULT', 14],
    ['EBUSY', 16],
    ['EEXIST', 17],
    ['ENODEV', 19],
    ['ENOTDIR', 20],
    ['EISDIR', 21],
    ['EINVAL', 22],
    ['EMFILE', 24],
    ['ENOTTY', 25],
    ['ENOSPC', 28],
    ['ESPIPE', 29],
    ['EPIPE', 32],
    ['ENAMETOOLONG', 36],
    ['ELOOP', 40],
    ['ENOTSOCK', 88],
    ['EPROTONOSUPPORT', 93],
    ['ESOCKTNOSUPPORT', 94],
    ['EOPNOTSUPP', 95],
    ['EAFNOSUPPORT', 97],
    ['EWOULDBLOCK', 11],
  ];
  test.each(linux)('%s is errno %d (x86-64 Linux)', (code, errno) => {
    expect(errnoOf(code)).toBe(errno);
    expect(new KernelError(code, 'op').errno).toBe(errno);
  });

  test('the ERRNO table has exactly the codes above', () => {
    expect(Object.keys(ERRNO).sort()).toEqual(linux.map(([c]) => c).filter((c) => c !== 'EWOULDBLOCK').sort());
  });

  test('UsageError is a TypeError and not a KernelError', () => {
    const e = new UsageError('ERR_INVALID_ARG', 'cpus must be an integer');
    expect(e).toBeInstanceOf(TypeError);
    expect(e).toBeInstanceOf(Error);
    expect(e).toBeInstanceOf(UsageError);
    expect(e).not.toBeInstanceOf(KernelError);
    expect(e.name).toBe('UsageError');
    expect(e.message).toBe('cpus must be an integer');
    expect(e.code).toBe('ERR_INVALID_ARG');
  });

  test('isUsageError matches on class and, optionally, code', () => {
    const e = new UsageError('ERR_NO_SUCH_CPU', 'no CPU 9');
    expect(isUsageError(e)).toBe(true);
    expect(isUsageError(e, 'ERR_NO_SUCH_CPU')).toBe(true);
    expect(isUsageError(e, 'ERR_INVALID_ARG')).toBe(false);
    expect(isUsageError(new KernelError('EINVAL', 'x'))).toBe(false);
    expect(isUsageError({ name: 'UsageError', code: 'ERR_NO_SUCH_CPU' })).toBe(false);
  });

  test('isKernelError matches on class and, optionally, code', () => {
    const e = new KernelError('EEXIST', 'init_module');
    expect(isKernelError(e)).toBe(true);
    expect(isKernelError(e, 'EEXIST')).toBe(true);
    expect(isKernelError(e, 'ENOENT')).toBe(false);
    expect(isKernelError(new UsageError('ERR_INVALID_ARG', 'x'))).toBe(false);
    expect(isKernelError(new Error('EEXIST'))).toBe(false);
    expect(isKernelError({ code: 'EEXIST', errno: 17 })).toBe(false);
    expect(isKernelError(undefined)).toBe(false);
  });
});

describe('KernelError.withoutStack', () => {
  test('the same error as the constructor makes, with no stack frames, and Error.stackTraceLimit left as it was', () => {
    const limit = Error.stackTraceLimit;
    const e = KernelError.withoutStack('EINTR', 'KVM_RUN', 'immediate_exit');
    const full = new KernelError('EINTR', 'KVM_RUN', 'immediate_exit');
    expect(e).toBeInstanceOf(KernelError);
    expect([e.name, e.code, e.errno, e.op, e.message]).toEqual([full.name, full.code, full.errno, full.op, full.message]);
    expect(e.stack).toBe('KernelError: KVM_RUN: EINTR: immediate_exit');
    expect(full.stack?.split('\n').length).toBeGreaterThan(1);
    expect(Error.stackTraceLimit).toBe(limit);
  });
});
