/**
 * Errors of the simulated kernel and of the library itself.
 *
 * A failing kernel operation throws a {@link KernelError} carrying the Linux errno name and number, as a
 * syscall would return `-errno`. Misuse of the library (a wrong argument type in TypeScript terms, a CPU
 * number that does not exist, …) throws a {@link UsageError}: that is a bug in the calling program, not an
 * answer the kernel would give.
 *
 * @module
 */

/**
 * The Linux errno numbers this model can produce (x86-64 values, from `include/uapi/asm-generic/errno-base.h`
 * and `errno.h`).
 */
export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  EMFILE: 24,
  ENOTTY: 25,
  ENOSPC: 28,
  ESPIPE: 29,
  EPIPE: 32,
  ENAMETOOLONG: 36,
  ELOOP: 40,
  ENOTSOCK: 88,
  EPROTONOSUPPORT: 93,
  ESOCKTNOSUPPORT: 94,
  EOPNOTSUPP: 95,
  EAFNOSUPPORT: 97,
} as const;

/**
 * An errno name. `EWOULDBLOCK` is Linux's alias of `EAGAIN` (both 11); `delete_module(2)` on a module in use
 * is reported under that name, as kmod's "Module X is in use" does.
 */
export type ErrnoCode = keyof typeof ERRNO | 'EWOULDBLOCK';

/** The errno number for a code (`EWOULDBLOCK` → 11). */
export function errnoOf(code: ErrnoCode): number {
  return code === 'EWOULDBLOCK' ? ERRNO.EAGAIN : ERRNO[code];
}

/**
 * A failure of a simulated kernel operation: what a syscall returning `-errno` becomes in this library.
 *
 * Match on {@link KernelError.code}, never on the message text.
 */
export class KernelError extends Error {
  /** The errno name, e.g. `'EBUSY'`. */
  readonly code: ErrnoCode;
  /** The Linux errno number, e.g. 16. */
  readonly errno: number;
  /** The operation that failed, named after the syscall or kernel function it models (e.g. `'rmmod'`). */
  readonly op: string;

  /**
   * @param code - errno name
   * @param op - the failing operation
   * @param message - a human-readable explanation (as the kernel would log it)
   */
  constructor(code: ErrnoCode, op: string, message?: string) {
    super(`${op}: ${code}${message === undefined ? '' : `: ${message}`}`);
    this.name = 'KernelError';
    this.code = code;
    this.errno = errnoOf(code);
    this.op = op;
  }

  /**
   * A KernelError with no stack trace, for answers that are part of normal operation rather than faults — KVM_RUN's
   * EINTR (a signal, `immediate_exit`, a halted vCPU nothing can wake) and EAGAIN: a VMM meets them on every pause,
   * and capturing a stack (about 5 µs in Node 20) would cost more than the whole ioctl. Its `stack` is the name and
   * message only; everything else is as {@link KernelError}'s constructor makes it.
   */
  static withoutStack(code: ErrnoCode, op: string, message?: string): KernelError {
    const limit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
      return new KernelError(code, op, message);
    } finally {
      Error.stackTraceLimit = limit;
    }
  }
}

/**
 * The kinds of library misuse, as the stable `code` of a {@link UsageError}. Match on the code, never on the
 * message text (messages say what was wrong in words and may be improved at any time).
 *
 * | code | meaning |
 * | --- | --- |
 * | `ERR_INVALID_ARG` | an argument of the wrong type or shape (a string where a number belongs, a malformed option object, a bad name syntax) |
 * | `ERR_OUT_OF_RANGE` | a number outside what the call accepts (negative, NaN, too big, not an integer) |
 * | `ERR_NO_SUCH_CPU` | a CPU number the host does not have |
 * | `ERR_UNKNOWN_NAME` | a name that does not exist (an option, a fault site, a group, a counter, a struct member, a label) |
 * | `ERR_DUPLICATE` | registering or defining something a second time |
 * | `ERR_DESTROYED` | use of an object after it was freed, detached, destroyed or torn down |
 * | `ERR_INVALID_STATE` | a call the object's current state forbids (a CPU in guest mode, freeing what is not held, …) |
 * | `ERR_NOT_SUPPORTED` | a feature this hardware or configuration does not have, or an encoding that does not exist |
 */
export type UsageCode =
  | 'ERR_INVALID_ARG'
  | 'ERR_OUT_OF_RANGE'
  | 'ERR_NO_SUCH_CPU'
  | 'ERR_UNKNOWN_NAME'
  | 'ERR_DUPLICATE'
  | 'ERR_DESTROYED'
  | 'ERR_INVALID_STATE'
  | 'ERR_NOT_SUPPORTED';

/** Every {@link UsageCode}, for documentation and tests. */
export const USAGE_CODES: readonly UsageCode[] = [
  'ERR_INVALID_ARG',
  'ERR_OUT_OF_RANGE',
  'ERR_NO_SUCH_CPU',
  'ERR_UNKNOWN_NAME',
  'ERR_DUPLICATE',
  'ERR_DESTROYED',
  'ERR_INVALID_STATE',
  'ERR_NOT_SUPPORTED',
];

/**
 * Misuse of the library by the calling program (not a kernel answer). Match on {@link UsageError.code}.
 */
export class UsageError extends TypeError {
  /** What kind of misuse, stable across releases. */
  readonly code: UsageCode;

  /**
   * @param code - the kind of misuse
   * @param message - what was wrong with the call, in words
   */
  constructor(code: UsageCode, message: string) {
    super(message);
    this.name = 'UsageError';
    this.code = code;
  }
}

/** True when `e` is a {@link UsageError}, optionally with the given code. */
export function isUsageError(e: unknown, code?: UsageCode): e is UsageError {
  return e instanceof UsageError && (code === undefined || e.code === code);
}

/** True when `e` is a {@link KernelError}, optionally with the given code. */
export function isKernelError(e: unknown, code?: ErrnoCode): e is KernelError {
  return e instanceof KernelError && (code === undefined || e.code === code);
}
