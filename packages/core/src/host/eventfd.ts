/**
 * `eventfd(2)` (fs/eventfd.c): a file holding a 64-bit counter. `write` adds an 8-byte value to it; `read` returns
 * the counter and resets it to 0 (or, with `EFD_SEMAPHORE`, returns 1 and decrements it). Kernel code signals one
 * with {@link EventFd.signal} (`eventfd_signal`), as KVM does for an ioeventfd whose guest write matched.
 *
 * A read of a zero counter would block in Linux; a process here has no thread that could wait inside a direct
 * call, so it answers EAGAIN, as with `EFD_NONBLOCK` (docs/fidelity.md).
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import { makeUndo, type Unsubscribe } from '../events.js';
import type { FileOperations, OpenFile } from './file.js';
import { O_CLOEXEC, O_RDWR, type Process } from './process.js';

/** `EFD_SEMAPHORE`: a read takes 1 instead of the whole count. */
export const EFD_SEMAPHORE = 1;
/** `EFD_CLOEXEC` (= `O_CLOEXEC`). */
export const EFD_CLOEXEC = O_CLOEXEC;
/** `EFD_NONBLOCK` (= `O_NONBLOCK`, 0o4000 on x86). */
export const EFD_NONBLOCK = 0o4000;

/** `ULLONG_MAX - 1`: the largest count an eventfd holds (`eventfd_write` refuses to pass it). */
const EVENTFD_MAX = 0xffff_ffff_ffff_fffen;

/** What a wait-queue entry of an eventfd is woken with: `in` (the count went up), `hup` (the file was released). */
export type EventFdWake = 'in' | 'hup';

/** The counter behind an eventfd file (`struct eventfd_ctx`). */
export class EventFd {
  /** The count. */
  count: bigint;
  /** `EFD_SEMAPHORE`. */
  readonly semaphore: boolean;
  /** How many times kernel code signalled it (`eventfd_signal` calls), for introspection. */
  signals = 0;

  /** @internal Made by {@link eventfd}. */
  constructor(initval: bigint, semaphore: boolean) {
    this.count = initval;
    this.semaphore = semaphore;
  }

  /** The wait queue (`ctx->wqh`): kernel code polling the eventfd (KVM's irqfd). */
  readonly #waiters: Array<(why: EventFdWake) => void> = [];

  /** `eventfd_signal`: add 1 (saturating at the maximum, as Linux does), then wake the wait queue. */
  signal(): void {
    this.signals++;
    if (this.count < EVENTFD_MAX) this.count++;
    this.wake('in');
  }

  /**
   * `add_wait_queue` on the eventfd (what `vfs_poll` with a custom poll table does): `fn` runs with `in` each time
   * the count goes up (a write, a signal) and with `hup` when the file is released. Returns the removal.
   */
  addWaiter(fn: (why: EventFdWake) => void): Unsubscribe {
    this.#waiters.push(fn);
    return makeUndo(() => {
      const i = this.#waiters.indexOf(fn);
      if (i >= 0) this.#waiters.splice(i, 1);
    });
  }

  /** `eventfd_ctx_do_read`: take the whole count (a waiter consuming the event), returning it. */
  take(): bigint {
    const v = this.count;
    this.count = 0n;
    return v;
  }

  /** @internal `wake_up_locked_poll(&ctx->wqh, …)`. */
  wake(why: EventFdWake): void {
    const waiters = this.#waiters;
    // One waiter (an irqfd), the usual case: no copy of the queue to walk (it may change under a waiter).
    if (waiters.length === 1) (waiters[0] as (why: EventFdWake) => void)(why);
    else for (const w of [...waiters]) w(why);
  }
}

const EVENTFD_FOPS: FileOperations<EventFd> = {
  read(file: OpenFile<EventFd>, count: number) {
    // eventfd_read: the buffer must hold a __u64.
    if (count < 8) throw new KernelError('EINVAL', 'read', 'an eventfd is read 8 bytes at a time');
    const ctx = file.privateData;
    if (ctx.count === 0n) throw new KernelError('EAGAIN', 'read', 'the eventfd counter is 0 (a direct read does not block)');
    const v = ctx.semaphore ? 1n : ctx.count;
    ctx.count -= v;
    const out = new Uint8Array(8);
    new DataView(out.buffer).setBigUint64(0, v, true);
    return out;
  },
  write(file: OpenFile<EventFd>, data: Uint8Array) {
    // eventfd_write: exactly a __u64; ULLONG_MAX is refused; a sum past the maximum would block (EAGAIN here).
    if (data.length < 8) throw new KernelError('EINVAL', 'write', 'an eventfd is written 8 bytes at a time');
    const v = readU64(data);
    if (v === 0xffff_ffff_ffff_ffffn) throw new KernelError('EINVAL', 'write', 'ULLONG_MAX cannot be added to an eventfd');
    const ctx = file.privateData;
    if (EVENTFD_MAX - ctx.count < v) throw new KernelError('EAGAIN', 'write', 'the eventfd counter would overflow (a direct write does not block)');
    ctx.count += v;
    ctx.wake('in'); // even for a 0 written: eventfd_write wakes the wait queue whenever it adds
    return 8;
  },
  release(file: OpenFile<EventFd>) {
    // eventfd_release: EPOLLHUP to the wait queue (an irqfd on it shuts down).
    file.privateData.wake('hup');
  },
};

/** The little-endian `__u64` in the first 8 bytes of `data` (without a `DataView` per write). */
function readU64(data: Uint8Array): bigint {
  const lo = ((data[0] as number) | ((data[1] as number) << 8) | ((data[2] as number) << 16) | ((data[3] as number) << 24)) >>> 0;
  const hi = ((data[4] as number) | ((data[5] as number) << 8) | ((data[6] as number) << 16) | ((data[7] as number) << 24)) >>> 0;
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** The {@link EventFd} behind an open file, or `undefined` when the file is not an eventfd (`eventfd_ctx_fileget`). */
export function eventFdOf(file: OpenFile): EventFd | undefined {
  return file.fops === (EVENTFD_FOPS as FileOperations) ? (file.privateData as EventFd) : undefined;
}

/**
 * `eventfd(initval, flags)` in process `proc`.
 * @returns the new fd (`anon_inode:[eventfd]`)
 * @throws {@link KernelError} EINVAL (unknown flags), EMFILE; {@link UsageError} for an initial value that is no
 *   unsigned int or flags that are no int
 */
export function eventfd(proc: Process, initval = 0, flags = 0): number {
  // initval is an unsigned int and flags an int in C: other values are a caller's mistake, not the kernel's to judge.
  if (!Number.isInteger(initval) || initval < 0 || initval > 0xffff_ffff) throw new UsageError('ERR_OUT_OF_RANGE', `eventfd: the initial value ${String(initval)} is not an unsigned int`);
  if (!Number.isInteger(flags) || flags < -(2 ** 31) || flags >= 2 ** 31) throw new UsageError('ERR_INVALID_ARG', `eventfd: flags ${String(flags)} is not an int`);
  // do_eventfd: flags & ~EFD_FLAGS_SET → EINVAL.
  if ((flags & ~(EFD_SEMAPHORE | EFD_CLOEXEC | EFD_NONBLOCK)) !== 0) throw new KernelError('EINVAL', 'eventfd', `unknown flags 0x${(flags >>> 0).toString(16)}`);
  return proc.installAnonFile('[eventfd]', EVENTFD_FOPS, new EventFd(BigInt(initval), (flags & EFD_SEMAPHORE) !== 0), O_RDWR);
}
