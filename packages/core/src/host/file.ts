/**
 * Open files and the file operations a driver provides (`struct file`, `struct file_operations`).
 *
 * @module
 */
import type { KernelError } from '../errors.js';
import type { LoadedModule } from './modules.js';
import type { Process } from './process.js';
import type { Syscall, Thread } from './sched.js';

/**
 * A driver's file operations. Every handler may throw a {@link KernelError}, which becomes the syscall's
 * error. A file whose `ioctl` is missing answers ENOTTY; a missing `mmap` answers ENODEV (as `do_mmap`).
 *
 * @typeParam D - the type of the file's private data
 */
export interface FileOperations<D = unknown> {
  /** `fops->owner`: opening the file pins this module until the last reference is released. */
  readonly owner?: LoadedModule | undefined;
  /** `open`: called after permissions are checked and the owner is pinned. */
  open?(file: OpenFile<D>, proc: Process): void;
  /** `release`: the last reference to the file is gone. */
  release?(file: OpenFile<D>): void;
  /**
   * `unlocked_ioctl`. Returns the syscall's non-negative result, or — like a Linux handler returning `-errno` — a
   * {@link KernelError} for `ioctl()` to throw once the kernel operation has ended. Throwing works too; returning is
   * for answers that are part of normal operation (KVM_RUN's EINTR): a JavaScript exception unwinding through the
   * syscall's frames costs about 0.3 µs per frame with a handler.
   */
  ioctl?(file: OpenFile<D>, request: number, arg: unknown, proc: Process): number | KernelError;
  /**
   * A blocking ioctl run from a simulated thread (`KVM_RUN` staying in guest mode across ticks). Return
   * `undefined` from the generator to fall back to the plain `ioctl` for this request.
   */
  ioctlBlocking?(file: OpenFile<D>, request: number, arg: unknown, proc: Process, thread: Thread): Syscall<number | undefined>;
  /**
   * `read` (`pread` when `offset` is given): up to `count` bytes. A file without `read` answers EINVAL (as
   * `vfs_read` for a file not opened for reading has no read method).
   */
  read?(file: OpenFile<D>, count: number, offset: number | undefined, proc: Process): Uint8Array<ArrayBuffer>;
  /** `write`: consume `data`; returns how many bytes were taken. A file without `write` answers EINVAL. */
  write?(file: OpenFile<D>, data: Uint8Array, proc: Process): number;
  /**
   * `setattr` with a new size (`ftruncate`), for a regular file. A file without it answers EINVAL (as
   * `do_ftruncate` for a file that is no regular file).
   */
  truncate?(file: OpenFile<D>, length: number): void;
  /** `mmap`: map `length` bytes at page `offset`; returns the bytes the mapping shows. */
  mmap?(file: OpenFile<D>, length: number, offset: number, proc: Process): Uint8Array<ArrayBuffer>;
}

/** An open file (`struct file`): shared by every fd and mapping that refers to it. */
export class OpenFile<D = unknown> {
  /** The path it was opened by, or `anon_inode:<name>` for anonymous inodes. */
  readonly path: string;
  /** The driver's operations. */
  readonly fops: FileOperations<D>;
  /** The process that opened or created it (`f_cred`, and the mm for KVM's checks). */
  readonly opener: Process;
  /** Driver data (`private_data`). */
  privateData: D;
  /** Open flags (`O_RDWR`, …). */
  readonly flags: number;
  /** @internal References from fd tables and mappings (`f_count`). */
  refs = 0;
  /** True after `release`. */
  released = false;
  /** The module this file pins (`fops->owner`, or the device's owner), unpinned when the file is released. */
  readonly owner: LoadedModule | undefined;

  /** @internal */
  constructor(path: string, fops: FileOperations<D>, opener: Process, privateData: D, flags: number, owner: LoadedModule | undefined = fops.owner) {
    this.path = path;
    this.fops = fops;
    this.opener = opener;
    this.privateData = privateData;
    this.flags = flags;
    this.owner = owner;
  }

  /** @internal `get_file`. */
  hold(): void {
    this.refs++;
  }

  /** @internal `fput`: the last reference releases the file and unpins its owner. */
  drop(): void {
    if (--this.refs > 0) return;
    this.released = true;
    try {
      this.fops.release?.(this);
    } finally {
      this.owner?.put();
    }
  }
}
