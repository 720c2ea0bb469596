/**
 * `memfd_create(2)` (mm/memfd.c `SYSCALL_DEFINE2(memfd_create)`, backed by shmem, mm/shmem.c): an anonymous file of
 * shared memory. `ftruncate` sets its size, `read`/`write` (and `pread`) move bytes at the file position, and every
 * `mmap` of it — in any process, at any address — shows the same bytes. The object lives while an fd or a mapping
 * refers to it (the file's references, `f_count`). This is how a VMM keeps guest RAM that a second process can adopt:
 * pass the fd over a UNIX socket (SCM_RIGHTS), map it there, and register memslots at the new addresses.
 *
 * Where the model differs (docs/fidelity.md, "memfd"): the bytes are allocated at the first `mmap`, `read` or `write`
 * for the file's size (or the mapping's extent), and once mapped the object cannot grow past what was allocated
 * (`ftruncate` or a write past it answers ENOMEM, where Linux would grow the file); pages of a mapping past the end
 * of the file read as zeros (Linux raises SIGBUS); seals (`F_ADD_SEALS`) and `MFD_HUGETLB` are not modelled.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { FileOperations, OpenFile } from './file.js';
import { NAME_MAX } from './path-walk.js';
import { O_CLOEXEC, O_RDWR, PAGE_SIZE, type Process } from './process.js';

/** `MFD_CLOEXEC`: the fd is closed on exec (the model has no exec: recorded only). */
export const MFD_CLOEXEC = 0x0001;
/** `MFD_ALLOW_SEALING`: seals may be added later (the model accepts the flag; it has no `F_ADD_SEALS`). */
export const MFD_ALLOW_SEALING = 0x0002;
/** `MFD_HUGETLB`: back the file with huge pages (not modelled: refused with EINVAL, see the module notes). */
export const MFD_HUGETLB = 0x0004;
/** `MFD_NOEXEC_SEAL`: the file is not executable, sealed so (Linux 6.3). */
export const MFD_NOEXEC_SEAL = 0x0008;
/** `MFD_EXEC`: the file may be executable (Linux 6.3). */
export const MFD_EXEC = 0x0010;
/** `MFD_ALL_FLAGS` (mm/memfd.c). */
const MFD_ALL_FLAGS = MFD_CLOEXEC | MFD_ALLOW_SEALING | MFD_HUGETLB | MFD_NOEXEC_SEAL | MFD_EXEC;
/** `MFD_NAME_PREFIX` ("memfd:") and `MFD_NAME_MAX_LEN` = `NAME_MAX` − its length: 249 bytes of name. */
const MFD_NAME_PREFIX = 'memfd:';
/** `MFD_NAME_MAX_LEN`. */
export const MFD_NAME_MAX_LEN = NAME_MAX - MFD_NAME_PREFIX.length;

/** The shared-memory object behind a memfd (the shmem inode): its name, size and bytes. */
export class MemfdObject {
  /** The name given to `memfd_create` (without the `memfd:` prefix). */
  readonly name: string;
  /** The `memfd_create` flags. */
  readonly flags: number;
  #size = 0;
  /** The bytes, allocated at first use; its length is the capacity. */
  #store: Uint8Array<ArrayBuffer> | undefined;
  /** True once a mapping shows the bytes: from then on the store cannot be replaced by a larger one. */
  #mapped = false;

  /** @internal Made by {@link memfdCreate}. */
  constructor(name: string, flags: number) {
    this.name = name;
    this.flags = flags;
  }

  /** The file size in bytes (`i_size`). */
  get size(): number {
    return this.#size;
  }

  /** The bytes allocated for the object (0 until first mapped, read or written). */
  get allocated(): number {
    return this.#store?.length ?? 0;
  }

  /**
   * Make the store hold `extent` bytes: allocate it, or replace it by a larger copy while nothing maps it.
   * @throws {@link KernelError} ENOMEM when it cannot (mapped, or more than the JS heap can back)
   */
  #reserve(extent: number, op: string): Uint8Array<ArrayBuffer> {
    const store = this.#store;
    if (store !== undefined && store.length >= extent) return store;
    if (store !== undefined && this.#mapped) {
      throw new KernelError('ENOMEM', op, `memfd:${this.name} is mapped with ${store.length} bytes and cannot grow to ${extent} in the model (docs/fidelity.md)`);
    }
    let next: Uint8Array<ArrayBuffer>;
    try {
      next = new Uint8Array(extent);
    } catch {
      throw new KernelError('ENOMEM', op, `cannot allocate ${extent} bytes`);
    }
    if (store !== undefined) next.set(store.subarray(0, this.#size));
    this.#store = next;
    return next;
  }

  /**
   * `shmem_setattr` for a new size: growing shows zeros, shrinking drops the bytes past the end (a later growth
   * shows zeros there too, as the pages were freed).
   * @throws {@link KernelError} ENOMEM (see {@link MemfdObject} notes)
   */
  truncate(length: number): void {
    const store = this.#store;
    if (store !== undefined && length > store.length) this.#reserve(length, 'ftruncate');
    if (length < this.#size) this.#store?.fill(0, length, this.#size);
    this.#size = length;
  }

  /** `shmem_file_read_iter`: up to `count` bytes from `pos`, none past the end of the file. */
  read(pos: number, count: number): Uint8Array<ArrayBuffer> {
    const end = Math.min(this.#size, pos + count);
    if (end <= pos) return new Uint8Array(0);
    return this.#reserve(this.#size, 'read').slice(pos, end);
  }

  /** `shmem_file_write_iter`: write `data` at `pos`, growing the file past its end. @returns bytes written */
  write(pos: number, data: Uint8Array): number {
    const end = pos + data.length;
    const store = this.#reserve(Math.max(end, this.#size), 'write');
    store.set(data, pos);
    if (end > this.#size) this.#size = end;
    return data.length;
  }

  /** `shmem_mmap`: the bytes of `[offset, offset + length)`, shared with every other mapping of the object. */
  map(offset: number, length: number): Uint8Array<ArrayBuffer> {
    const store = this.#reserve(Math.max(offset + length, this.#size), 'mmap');
    this.#mapped = true;
    return store.subarray(offset, offset + length);
  }
}

/** What an open memfd holds: the shared object and this open file's position (`f_pos`). */
interface MemfdFile {
  readonly object: MemfdObject;
  pos: number;
}

const MEMFD_FOPS: FileOperations<MemfdFile> = {
  read(file: OpenFile<MemfdFile>, count: number, offset: number | undefined) {
    const f = file.privateData;
    const out = f.object.read(offset ?? f.pos, count);
    if (offset === undefined) f.pos += out.length;
    return out;
  },
  write(file: OpenFile<MemfdFile>, data: Uint8Array) {
    const f = file.privateData;
    const n = f.object.write(f.pos, data);
    f.pos += n;
    return n;
  },
  mmap(file: OpenFile<MemfdFile>, length: number, offset: number) {
    return file.privateData.object.map(offset * PAGE_SIZE, length);
  },
  truncate(file: OpenFile<MemfdFile>, length: number) {
    file.privateData.object.truncate(length);
  },
};

/** The {@link MemfdObject} behind an open file, or `undefined` when the file is no memfd. */
export function memfdOf(file: OpenFile): MemfdObject | undefined {
  return file.fops === (MEMFD_FOPS as FileOperations) ? (file.privateData as MemfdFile).object : undefined;
}

/**
 * `memfd_create(name, flags)` in process `proc`: a new anonymous shared-memory file of size 0, open read-write.
 * Its path (as `/proc/PID/fd` shows it) is `/memfd:<name> (deleted)`; the name stops at a NUL, as a C string does.
 * @returns the new fd (the lowest free number)
 * @throws {@link KernelError} EINVAL (unknown flags; `MFD_EXEC` with `MFD_NOEXEC_SEAL`; a name of more than
 *   {@link MFD_NAME_MAX_LEN} bytes; `MFD_HUGETLB`, which the model does not have), EMFILE; {@link UsageError} when
 *   `name` is no string or `flags` no unsigned int
 * @example
 * ```ts
 * import { createHost, memfdCreate } from '@vac/core';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 1, hardware: intel() });
 * const vmm = host.spawn({ name: 'qemu' });
 * const fd = memfdCreate(vmm, 'pc.ram');
 * vmm.ftruncate(fd, 0x10000);
 * const ram = vmm.mmap(fd, 0x10000); // MAP_SHARED: every mapping of the memfd shows these bytes
 * ram.bytes[0] = 0xf4;
 * console.log(vmm.read(fd, 1, 0)[0]); // 244
 * ```
 */
export function memfdCreate(proc: Process, name: string, flags = 0): number {
  if (typeof name !== 'string') throw new UsageError('ERR_INVALID_ARG', `memfd_create: name must be a string, got ${typeof name}`);
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffff_ffff) throw new UsageError('ERR_INVALID_ARG', `memfd_create: flags ${String(flags)} is not an unsigned int`);
  // The checks in the order of SYSCALL_DEFINE2(memfd_create): flags, EXEC with NOEXEC_SEAL, the name, then the fd.
  if ((flags & ~MFD_ALL_FLAGS) !== 0) throw new KernelError('EINVAL', 'memfd_create', `unknown flags 0x${flags.toString(16)}`);
  if ((flags & MFD_EXEC) !== 0 && (flags & MFD_NOEXEC_SEAL) !== 0) throw new KernelError('EINVAL', 'memfd_create', 'MFD_EXEC and MFD_NOEXEC_SEAL together');
  const nul = name.indexOf('\0');
  const cname = nul < 0 ? name : name.slice(0, nul);
  const bytes = new TextEncoder().encode(cname).length;
  if (bytes > MFD_NAME_MAX_LEN) throw new KernelError('EINVAL', 'memfd_create', `a name of ${bytes} bytes (at most ${MFD_NAME_MAX_LEN})`);
  if ((flags & MFD_HUGETLB) !== 0) throw new KernelError('EINVAL', 'memfd_create', 'MFD_HUGETLB: the model has no huge pages (docs/fidelity.md)');
  const file: MemfdFile = { object: new MemfdObject(cname, flags), pos: 0 };
  return proc.installFile(`/${MFD_NAME_PREFIX}${cname} (deleted)`, MEMFD_FOPS, file, O_RDWR | ((flags & MFD_CLOEXEC) !== 0 ? O_CLOEXEC : 0));
}
