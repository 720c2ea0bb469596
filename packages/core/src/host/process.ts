/**
 * Processes: credentials, an fd table, an address space, and the syscalls a VMM uses
 * (`open`, `close`, `ioctl`, `mmap`, `munmap`, `kill`).
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import { IdBitmap } from '../id-bitmap.js';
import { OpenFile, type FileOperations } from './file.js';
import type { Host } from './host.js';
import { describeArg } from '../describe-arg.js';
import { getname } from './path-walk.js';
import { affinityCpu, cpuNumber } from './affinity.js';
import type { Capability, ProcessSettings } from './credentials.js';
import type { DevStat } from './devfs.js';
import type { DeviceCgroup } from './device-cgroup.js';
import type { MountNamespace } from './mount-ns.js';
import { XstatePermissions, fpuUserConfig } from './xstate-perm.js';

export { ALL_CAPABILITIES, type Capability, type SpawnOptions } from './credentials.js';

/** `O_RDONLY`. */
export const O_RDONLY = 0;
/** `O_WRONLY`. */
export const O_WRONLY = 1;
/** `O_RDWR`. */
export const O_RDWR = 2;
/** `O_CLOEXEC` (x86). */
export const O_CLOEXEC = 0o2000000;

/** `PAGE_SIZE` on x86. */
export const PAGE_SIZE = 4096;

/** A region of a process's address space. */
export interface Mapping {
  /** Start address (page-aligned). */
  readonly addr: number;
  /** Length in bytes (page-aligned). */
  readonly length: number;
  /** The bytes the mapping shows; the process and the kernel see the same memory. */
  readonly bytes: Uint8Array<ArrayBuffer>;
  /** The file mapped, if any. */
  readonly file: OpenFile | undefined;
}

const MMAP_BASE = 0x7f00_0000_0000;

/**
 * `anon_inode:<name>` paths, one string per name for every process: a VMM has a `kvm-vcpu:N` file per vCPU,
 * and the same few names recur in every VM. Bounded, in case a driver makes up a new name per file.
 */
const anonPaths = new Map<string, string>();
const ANON_PATHS_MAX = 16384;

function anonPath(name: string): string {
  let path = anonPaths.get(name);
  if (path === undefined) {
    path = `anon_inode:${name}`;
    if (anonPaths.size < ANON_PATHS_MAX) anonPaths.set(name, path);
  }
  return path;
}

/** A process of the simulated host. */
export class Process {
  /** Process id. */
  readonly pid: number;
  /** A name for messages. */
  readonly name: string;
  /** User id. */
  readonly uid: number;
  /** Primary group id. */
  readonly gid: number;
  readonly #groups: ReadonlySet<number>;
  #cpu: number;
  /** False once killed. */
  alive = true;
  readonly #host: Host;
  readonly #caps: ReadonlySet<Capability>;
  /**
   * The fd table, indexed by fd (`fdtable.fd`). An array, not a `Map`: fds are reused lowest-first, and V8's hash
   * tables degrade when the same key is added and deleted over and over.
   */
  readonly #fds: Array<OpenFile | undefined> = [];
  /** When each fd was installed (for `fds()` and `kill()`, which go by order of opening). */
  readonly #openedAt: number[] = [];
  /** The close-on-exec flag of each fd (`fdtable.close_on_exec`): such fds are not inherited by a child. */
  readonly #cloexec: boolean[] = [];
  #opened = 0;
  #nfds = 0;
  /** `fdtable.open_fds` with summary levels (Linux adds `full_fds_bits`): the lowest free fd in O(levels). */
  readonly #fdBits: IdBitmap;
  readonly #nofile: number;
  readonly #mappings: Mapping[] = [];
  #nextAddr = MMAP_BASE;
  readonly #exitHooks: Array<() => void> = [];
  #mountNs: MountNamespace;
  #devCgroup: DeviceCgroup;
  /** The thread group's XSAVE permissions (`group_leader->thread.fpu.perm` / `.guest_perm`), made at first use. */
  #xstatePerm: XstatePermissions | undefined;

  /** @internal Use `host.spawn()` (which checks the options with `processSettings`). */
  constructor(host: Host, pid: number, settings: ProcessSettings) {
    this.#host = host;
    this.pid = pid;
    this.uid = settings.uid;
    this.gid = settings.gid;
    this.#groups = settings.groups;
    this.#caps = settings.caps;
    this.#cpu = settings.cpu;
    this.name = settings.name;
    this.#nofile = settings.nofile;
    this.#mountNs = settings.parent?.mountNamespace ?? host.mountNamespace;
    this.#devCgroup = settings.parent?.deviceCgroup ?? host.rootDeviceCgroup;
    // fds 0-2 are stdio (taken); alloc_fd refuses an fd number >= RLIMIT_NOFILE, so the last one is nofile - 1.
    this.#fdBits = new IdBitmap(Math.max(this.#nofile, 3));
    this.#fdBits.set(0);
    this.#fdBits.set(1);
    this.#fdBits.set(2);
  }

  /** The host the process runs on. */
  get host(): Host {
    return this.#host;
  }

  /** The mount namespace: what the process's /dev shows (see `unshare`, `mount`). */
  get mountNamespace(): MountNamespace {
    return this.#mountNs;
  }

  /** @internal `switch_task_namespaces` (for `unshare`). */
  setMountNamespace(ns: MountNamespace): void {
    this.#mountNs = ns;
  }

  /** The device cgroup the process is in (`host.rootDeviceCgroup` unless moved or inherited). */
  get deviceCgroup(): DeviceCgroup {
    return this.#devCgroup;
  }

  /** @internal `cgroup_attach_task` (for `DeviceCgroup.attach`). */
  setDeviceCgroup(cg: DeviceCgroup): void {
    this.#devCgroup = cg;
  }

  /** `stat(path)` as this process sees it (its mount namespace; follows symlinks). */
  stat(path: string): DevStat {
    return this.#mountNs.stat(path);
  }

  /** `RLIMIT_NOFILE`: fds are numbered below it. */
  get nofile(): number {
    return this.#nofile;
  }

  /** The CPU its direct syscalls run on, and its threads by default (change it with {@link Process.setAffinity}). */
  get cpu(): number {
    return this.#cpu;
  }

  /** Read-only: assigning throws a {@link UsageError} (ERR_INVALID_ARG) pointing at {@link Process.setAffinity}. */
  set cpu(_: never) {
    throw new UsageError('ERR_INVALID_ARG', `process ${this.pid}: cpu is read-only; move the process with setAffinity(cpu), the checked sched_setaffinity`);
  }

  /**
   * `sched_setaffinity(pid, {cpu})`: the process runs on `cpu` from now on (its direct syscalls — a KVM_RUN loads
   * the vCPU there — and the threads it spawns without a CPU of their own).
   * @throws {@link UsageError} when `cpu` is not a non-negative integer; {@link KernelError} ESRCH (the process has
   * exited), EINVAL (no such CPU, or it is offline)
   */
  setAffinity(cpu: number): void {
    cpuNumber(cpu, 'setAffinity');
    this.#live('sched_setaffinity');
    this.#cpu = affinityCpu(this.#host.cpus, cpu, 'setAffinity');
  }

  /** @internal The scheduler moves the process off a CPU going offline (`select_fallback_rq`), and back at thaw. */
  migrate(cpu: number): void {
    this.#cpu = cpu;
  }

  /** `capable(cap)`. */
  capable(cap: Capability): boolean {
    return this.#caps.has(cap);
  }

  /** Supplementary group ids (a copy). */
  get groups(): ReadonlySet<number> {
    return new Set(this.#groups);
  }

  /** Whether the process is in group `gid` (primary or supplementary). */
  inGroup(gid: number): boolean {
    return this.gid === gid || this.#groups.has(gid);
  }

  #live(op: string): void {
    if (!this.alive) throw new KernelError('ESRCH', op, `process ${this.pid} has exited`);
  }

  /**
   * `open(path, flags)`: resolve symlinks, check permissions, pin the driver's module, call its `open`.
   * @returns the new fd (the lowest free number ≥ 3)
   * @throws {@link KernelError} ENOENT, ELOOP, EACCES, ENODEV (driver going away), EMFILE, or the driver's error
   */
  open(path: string, flags: number = O_RDWR): number {
    this.#live('open');
    if (typeof path !== 'string') throw new UsageError('ERR_INVALID_ARG', 'open: path must be a string');
    if (typeof flags !== 'number' || !Number.isInteger(flags)) throw new UsageError('ERR_INVALID_ARG', `open: flags must be an integer (O_RDONLY, O_WRONLY, O_RDWR, …), got ${describeArg(flags)}`);
    // do_sys_openat2: the name is copied in (getname), then get_unused_fd_flags (EMFILE), then the path walk.
    getname(path, 'open');
    this.#checkFdRoom('open');
    const ns = this.#mountNs;
    const inode = ns.resolve(path);
    const acc = flags & 3;
    const want = acc === O_RDONLY ? 4 : acc === O_WRONLY ? 2 : 6;
    if (!this.#mayAccess(inode.uid, inode.gid, inode.mode, want)) throw new KernelError('EACCES', 'open', `${path}: Permission denied`);
    // inode_permission: the mode bits, then devcgroup_inode_permission.
    if (!this.#devCgroup.permits('c', inode.major, inode.minor, { read: (want & 4) !== 0, write: (want & 2) !== 0 })) {
      throw new KernelError('EPERM', 'open', `${path}: the device cgroup ${this.#devCgroup.path} does not allow c ${inode.major}:${inode.minor}`);
    }
    const node = ns.driverOf(inode);
    const owner = node.owner;
    if (owner !== undefined && !owner.tryGet()) throw new KernelError('ENODEV', 'open', `${path}: driver is going away`);
    const file = new OpenFile(inode.path, node.fops, this, undefined as unknown, flags, owner);
    return this.#host.events.op(() => {
      try {
        node.fops.open?.(file, this);
      } catch (e) {
        owner?.put();
        throw e;
      }
      return this.#install(file, node.path, (flags & O_CLOEXEC) !== 0);
    });
  }

  #mayAccess(uid: number, gid: number, mode: number, want: number): boolean {
    if (this.capable('CAP_DAC_OVERRIDE')) return true;
    const bits = this.uid === uid ? (mode >> 6) & 7 : this.inGroup(gid) ? (mode >> 3) & 7 : mode & 7;
    return (bits & want) === want;
  }

  /** `alloc_fd(0, rlimit(RLIMIT_NOFILE))`: the lowest free fd (≥ 3 here: stdio holds 0–2) must lie below the limit. */
  #checkFdRoom(op: string): void {
    if (this.#nfds + 3 >= this.#nofile) throw new KernelError('EMFILE', op, 'Too many open files');
  }

  #install(file: OpenFile, path: string, cloexec: boolean): number {
    const fd = this.#fdBits.takeFirstZero(3);
    file.hold();
    this.#fds[fd] = file;
    this.#cloexec[fd] = cloexec;
    this.#openedAt[fd] = this.#opened++;
    this.#nfds++;
    this.#host.events.emit('fd:open', { pid: this.pid, fd, path });
    return fd;
  }

  /**
   * Kernel side of `anon_inode_getfd`: install a new file with the given operations. The owner module is
   * pinned (`__module_get`, the caller already holds a reference through the file it is called from).
   * `O_CLOEXEC` in `flags` makes the new fd close-on-exec (it is not kept in the file's flags).
   * @throws {@link KernelError} EMFILE
   */
  installAnonFile<D>(name: string, fops: FileOperations<D>, privateData: D, flags: number = O_RDWR): number {
    return this.#installNew(anonPath(name), fops, privateData, flags, 'anon_inode_getfd');
  }

  /**
   * Kernel side of a syscall that makes a file of its own (`memfd_create`, `socketpair`): install a new file shown
   * as `path` (in `/proc/PID/fd`) with the given operations, as {@link Process.installAnonFile} does.
   * @returns the new fd (the lowest free number)
   * @throws {@link KernelError} EMFILE, ENOMEM (an injected `fd` fault)
   */
  installFile<D>(path: string, fops: FileOperations<D>, privateData: D, flags: number = O_RDWR): number {
    return this.#installNew(path, fops, privateData, flags, 'fd_install');
  }

  #installNew<D>(path: string, fops: FileOperations<D>, privateData: D, flags: number, op: string): number {
    this.#live(op);
    this.#checkFdRoom(op);
    if (this.#host.faults.shouldFail('fd')) throw new KernelError('ENOMEM', op, 'injected allocation failure');
    fops.owner?.get();
    // anon_inode_getfd: O_CLOEXEC goes to the fd (get_unused_fd_flags), not to the file's flags.
    const file = new OpenFile<D>(path, fops, this, privateData, flags & ~O_CLOEXEC);
    return this.#install(file as OpenFile, file.path, (flags & O_CLOEXEC) !== 0);
  }

  /**
   * Kernel side of `receive_fd` (an fd passed with SCM_RIGHTS): a new fd, the lowest free number, for an open file
   * another process holds. The file gains a reference; nothing about it changes (the same offset, flags, driver
   * data).
   * @param cloexec - the new fd's close-on-exec flag (`MSG_CMSG_CLOEXEC`)
   * @returns the new fd
   * @throws {@link KernelError} ESRCH (the process has exited), EMFILE
   */
  receiveFile(file: OpenFile, cloexec = false): number {
    this.#live('receive_fd');
    this.#checkFdRoom('receive_fd');
    return this.#host.events.op(() => this.#install(file, file.path, cloexec));
  }

  /** Whether `fd` is close-on-exec (`FD_CLOEXEC`, as `fcntl(fd, F_GETFD)` reports it). @throws {@link KernelError} EBADF */
  closeOnExec(fd: number): boolean {
    this.file(fd);
    return this.#cloexec[fd] === true;
  }

  /**
   * @internal The fds a child of this process inherits (`dup_fd` then `do_close_on_exec`): those that are not
   * close-on-exec, in order of opening.
   * @throws {@link UsageError} when one is at or above the child's `nofile`
   */
  inheritableFds(childNofile: number): number[] {
    const out = this.#openFds().filter((fd) => this.#cloexec[fd] !== true);
    const over = out.find((fd) => fd >= childNofile);
    if (over !== undefined) throw new UsageError('ERR_OUT_OF_RANGE', `spawn: the parent's fd ${over} is not below the child's nofile ${childNofile}`);
    return out;
  }

  /** @internal Take the parent's `fds` (from {@link Process.inheritableFds}) at the same numbers, in that order. */
  inheritFds(parent: Process, fds: readonly number[]): void {
    for (const fd of fds) {
      const file = parent.file(fd);
      this.#fdBits.set(fd);
      file.hold();
      this.#fds[fd] = file;
      this.#cloexec[fd] = false;
      this.#openedAt[fd] = this.#opened++;
      this.#nfds++;
      this.#host.events.emit('fd:open', { pid: this.pid, fd, path: file.path });
    }
  }

  /** Kernel side of `fdget`: the open file behind `fd`. @throws {@link KernelError} EBADF */
  file(fd: number): OpenFile {
    const f = this.alive && typeof fd === 'number' && (fd | 0) === fd && fd >= 0 ? this.#fds[fd] : undefined;
    if (f === undefined) throw new KernelError('EBADF', 'fdget', `bad file descriptor ${describeArg(fd)}`);
    return f;
  }

  /** `close(fd)`. @throws {@link KernelError} EBADF */
  close(fd: number): void {
    this.#live('close');
    const f = this.file(fd);
    this.#host.events.op(() => {
      this.#fds[fd] = undefined;
      this.#nfds--;
      this.#fdBits.clear(fd);
      this.#host.events.emit('fd:close', { pid: this.pid, fd, path: f.path });
      f.drop();
    });
  }

  /** The open fds in order of opening. */
  #openFds(): number[] {
    const out: number[] = [];
    for (const fd of this.#fdBits.setBits()) if (fd >= 3) out.push(fd);
    return out.sort((a, b) => (this.#openedAt[a] as number) - (this.#openedAt[b] as number));
  }

  /** `dup(fd)`: a second fd for the same open file. */
  dup(fd: number): number {
    this.#live('dup');
    const f = this.file(fd);
    this.#checkFdRoom('dup');
    return this.#host.events.op(() => this.#install(f, f.path, false));
  }

  /**
   * `ioctl(fd, request, arg)`. Structs are passed as objects the kernel reads from or fills in
   * (`copy_from_user`/`copy_to_user`).
   * @returns the syscall's non-negative result (a new fd for `KVM_CREATE_VM`, 0 for most)
   * @throws {@link KernelError} EBADF, ENOTTY (no ioctl handler), or the driver's error
   * @example
   * ```ts
   * import { createHost, O_RDWR } from '@vac/core';
   * import { KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_API_VERSION, kvm } from '@vac/kvm';
   * import { intel } from '@vac/vmx';
   *
   * const host = createHost({ cpus: 2, hardware: intel() });
   * host.modprobe(kvm({ postfix: '0' }));
   * const vmm = host.spawn({ uid: 1000, groups: ['kvm'] });
   * const sys = vmm.open('/dev/kvm0', O_RDWR);
   * console.log(vmm.ioctl(sys, KVM_GET_API_VERSION)); // 12
   * const vm = vmm.ioctl(sys, KVM_CREATE_VM, 0); // a new fd
   * const vcpu = vmm.ioctl(vm, KVM_CREATE_VCPU, 0);
   * ```
   */
  ioctl(fd: number, request: number, arg?: unknown): number {
    if (typeof request !== 'number') throw badRequest(request);
    this.#live('ioctl');
    const f = this.file(fd);
    const fops = f.fops;
    const handler = fops.ioctl;
    if (handler === undefined) throw noIoctl(f);
    const ev = this.#host.events;
    ev.enter();
    let r: number | KernelError;
    try {
      r = handler.call(fops, f, request >>> 0, arg, this);
    } finally {
      ev.leave();
    }
    // An error the handler returned (FileOperations.ioctl) is thrown here, after the kernel operation ended. The
    // number is tested first: with `instanceof` alone, KVM_RUN's usual return measured ~20 ns slower. The throw stays
    // in this function: a helper that only ever throws never returns, so V8 never gives it feedback or optimises it,
    // and a throw from its interpreted frame cost ~2× one from here (KVM_RUN's EINTR, docs/performance.md).
    if (typeof r === 'number') return r;
    if (r instanceof KernelError) throw r;
    return r as number;
  }

  /**
   * `read(fd, buf, count)`, or `pread(fd, buf, count, offset)` when `offset` is given: the bytes the file hands
   * back (at most `count`). The file's own rules apply (an eventfd wants 8 bytes; a stats fd is read at offsets).
   * @throws {@link KernelError} EBADF (a closed fd, or one not opened for reading), EINVAL (a file that cannot be
   * read, a bad count or offset), or the driver's error
   */
  read(fd: number, count: number, offset?: number): Uint8Array<ArrayBuffer> {
    this.#live('read');
    const f = this.file(fd);
    if ((f.flags & 3) === O_WRONLY) throw new KernelError('EBADF', 'read', `fd ${fd} is not open for reading`);
    if (!Number.isSafeInteger(count) || count < 0) throw new KernelError('EINVAL', 'read', `bad count ${String(count)}`);
    if (offset !== undefined && (!Number.isSafeInteger(offset) || offset < 0)) throw new KernelError('EINVAL', 'pread', `bad offset ${String(offset)}`);
    if (f.fops.read === undefined) throw new KernelError('EINVAL', 'read', `${f.path} cannot be read`);
    return f.fops.read.call(f.fops, f, count, offset, this);
  }

  /**
   * `write(fd, data, data.length)`.
   * @returns how many bytes the file took
   * @throws {@link KernelError} EBADF (a closed fd, or one not opened for writing), EINVAL (a file that cannot be
   * written), or the driver's error
   */
  write(fd: number, data: Uint8Array): number {
    this.#live('write');
    const f = this.file(fd);
    if ((f.flags & 3) === O_RDONLY) throw new KernelError('EBADF', 'write', `fd ${fd} is not open for writing`);
    if (!(data instanceof Uint8Array)) throw new UsageError('ERR_INVALID_ARG', 'write: data must be a Uint8Array');
    if (f.fops.write === undefined) throw new KernelError('EINVAL', 'write', `${f.path} cannot be written`);
    return f.fops.write.call(f.fops, f, data, this);
  }

  /**
   * `ftruncate(fd, length)`: set the size of a regular file (a memfd).
   * @throws {@link KernelError} EINVAL (a negative length; a file that is no regular file, or not open for writing),
   *   EBADF, or the file's error; {@link UsageError} when `length` is not an integer
   */
  ftruncate(fd: number, length: number): void {
    this.#live('ftruncate');
    if (typeof length !== 'number' || !Number.isSafeInteger(length)) throw new UsageError('ERR_INVALID_ARG', `ftruncate: length must be an integer, got ${describeArg(length)}`);
    // ksys_ftruncate: the length first, then the fd; do_ftruncate: a regular file open for writing.
    if (length < 0) throw new KernelError('EINVAL', 'ftruncate', `negative length ${length}`);
    const f = this.file(fd);
    const truncate = f.fops.truncate;
    if (truncate === undefined || (f.flags & 3) === O_RDONLY) throw new KernelError('EINVAL', 'ftruncate', `fd ${fd} is no regular file open for writing`);
    truncate.call(f.fops, f, length);
  }

  /**
   * `mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_SHARED, fd, offset)`. The mapping holds a reference on
   * the file (closing the fd does not release it while mapped).
   * @throws {@link KernelError} EBADF, ENODEV (file cannot be mapped), EINVAL (bad length/offset) or the driver's error
   */
  mmap(fd: number, length: number, offset = 0): Mapping {
    this.#live('mmap');
    const f = this.file(fd);
    const len = pageAlign(length, 'mmap');
    if (typeof offset !== 'number' || !Number.isInteger(offset) || offset < 0 || offset % PAGE_SIZE !== 0) throw new KernelError('EINVAL', 'mmap', `bad offset ${describeArg(offset)}`);
    if (f.fops.mmap === undefined) throw new KernelError('ENODEV', 'mmap', `${f.path} cannot be mapped`);
    if (this.#host.faults.shouldFail('mmap')) throw new KernelError('ENOMEM', 'mmap', 'injected allocation failure');
    const map = f.fops.mmap;
    return this.#host.events.op(() => {
      const bytes = map.call(f.fops, f, len, offset / PAGE_SIZE, this);
      f.hold();
      return this.#map(len, bytes, f);
    });
  }

  /** `mmap(NULL, length, PROT_READ|PROT_WRITE, MAP_PRIVATE|MAP_ANONYMOUS, -1, 0)`: zeroed memory. */
  mmapAnonymous(length: number): Mapping {
    this.#live('mmap');
    const len = pageAlign(length, 'mmap');
    if (this.#host.faults.shouldFail('mmap')) throw new KernelError('ENOMEM', 'mmap', 'injected allocation failure');
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(len);
    } catch {
      // More than the simulated address space (the JS heap) can back: ENOMEM, as do_mmap for a too-large len.
      throw new KernelError('ENOMEM', 'mmap', `cannot map ${len} bytes`);
    }
    return this.#map(len, bytes, undefined);
  }

  /**
   * `mmap(addr, bytes.length, PROT_READ|PROT_WRITE, MAP_SHARED|MAP_FIXED_NOREPLACE, …)` of memory that lives
   * outside the model: the process (and the kernel, through {@link Process.userMemory}) sees `bytes` at
   * `addr`. This is how `@vac/bridge` shows a real VMM's guest RAM at the VMM's own addresses, so memslot
   * `userspace_addr`s mean the same in the model as in the real process.
   * @returns the mapping (remove it with {@link Process.munmap})
   * @throws {@link KernelError} EINVAL (address or length not page-aligned, or empty), EEXIST (overlaps a mapping)
   */
  mapExternal(addr: number, bytes: Uint8Array<ArrayBuffer>): Mapping {
    this.#live('mmap');
    const length = bytes.length;
    if (!Number.isSafeInteger(addr) || addr < 0 || addr % PAGE_SIZE !== 0 || length === 0 || length % PAGE_SIZE !== 0) {
      throw new KernelError('EINVAL', 'mmap', `bad external mapping of ${length} bytes at 0x${addr.toString(16)}`);
    }
    for (const m of this.#mappings) {
      if (addr < m.addr + m.length && m.addr < addr + length) throw new KernelError('EEXIST', 'mmap', `0x${addr.toString(16)} overlaps a mapping at 0x${m.addr.toString(16)}`);
    }
    const m: Mapping = { addr, length, bytes, file: undefined };
    this.#mappings.push(m);
    return m;
  }

  #map(length: number, bytes: Uint8Array<ArrayBuffer>, file: OpenFile | undefined): Mapping {
    const m: Mapping = Object.freeze({ addr: this.#nextAddr, length, bytes, file });
    this.#nextAddr += length + PAGE_SIZE; // leave a guard page between mappings
    this.#mappings.push(m);
    return m;
  }

  /**
   * `munmap(addr, length)`. Nothing mapped at `addr` is not an error (as Linux). The model unmaps whole
   * mappings only: a length that differs from the mapping's is EINVAL (docs/fidelity.md).
   */
  munmap(addr: number, length: number): void {
    this.#live('munmap');
    const len = pageAlign(length, 'munmap');
    if (typeof addr !== 'number' || !Number.isSafeInteger(addr) || addr % PAGE_SIZE !== 0) throw new KernelError('EINVAL', 'munmap', `address ${typeof addr === 'number' && Number.isSafeInteger(addr) ? `0x${addr.toString(16)}` : describeArg(addr)} is not a page-aligned address`);
    const i = this.#mappings.findIndex((m) => m.addr === addr);
    const m = this.#mappings[i];
    if (m === undefined) return;
    if (len !== m.length) {
      throw new KernelError('EINVAL', 'munmap', `no mapping of ${length} bytes at 0x${addr.toString(16)}`);
    }
    this.#mappings.splice(i, 1);
    if (m.file !== undefined) {
      const file = m.file;
      this.#host.events.op(() => file.drop());
    }
  }

  /**
   * Kernel side of `get_user_pages`: the bytes of `[addr, addr + length)` if one mapping covers them.
   * @returns the bytes, or `undefined` when the range is not (wholly) mapped
   */
  userMemory(addr: number, length: number): Uint8Array<ArrayBuffer> | undefined {
    for (const m of this.#mappings) {
      if (addr >= m.addr && addr + length <= m.addr + m.length) {
        return m.bytes.subarray(addr - m.addr, addr - m.addr + length);
      }
    }
    return undefined;
  }

  /** @internal Call `fn` with every open fd and its file, in fd order (for invariant checks: no sorting, no copies). */
  forEachOpenFile(fn: (fd: number, file: OpenFile) => void): void {
    const fds = this.#fds;
    for (let fd = 3; fd < fds.length; fd++) {
      const file = fds[fd];
      if (file !== undefined) fn(fd, file);
    }
  }

  /** Open fds in order of opening, with their paths (for introspection, as /proc/PID/fd). */
  fds(): Array<{ readonly fd: number; readonly path: string }> {
    return this.#openFds().map((fd) => ({ fd, path: (this.#fds[fd] as OpenFile).path }));
  }

  /** The mappings of the address space (as /proc/PID/maps): a copy of the list; each mapping is frozen. */
  mappings(): readonly Mapping[] {
    return this.#mappings.slice();
  }

  /** Kernel side: run `hook` when the process dies, before its fds are closed (thread teardown). */
  onExit(hook: () => void): () => void {
    this.#exitHooks.push(hook);
    return () => {
      const i = this.#exitHooks.indexOf(hook);
      if (i >= 0) this.#exitHooks.splice(i, 1);
    };
  }

  /**
   * `arch_prctl(option, arg2)` for the XSAVE permission options (`fpu_xstate_prctl`): `ARCH_GET_XCOMP_SUPP`,
   * `ARCH_GET_XCOMP_PERM` and `ARCH_GET_XCOMP_GUEST_PERM` write a `u64` into `arg2` (a `BigUint64Array`);
   * `ARCH_REQ_XCOMP_PERM` and `ARCH_REQ_XCOMP_GUEST_PERM` ask for the dynamic feature `arg2` (18, AMX tile data) for
   * the process or its guests. A VMM that gives its guests AMX asks with `ARCH_REQ_XCOMP_GUEST_PERM` before it
   * creates its first vCPU; KVM then offers the tile state (KVM_CAP_XSAVE2, KVM_GET_SUPPORTED_CPUID).
   * @returns 0
   * @throws {@link KernelError} EINVAL (an unknown option or a feature number ≥ 19), EOPNOTSUPP (a feature that is not
   * dynamic, or one the host does not support), EBUSY (a guest request once the process has a vCPU), EFAULT
   * @example
   * ```ts
   * const perm = new BigUint64Array(1);
   * vmm.archPrctl(ARCH_GET_XCOMP_GUEST_PERM, perm); // perm[0]: 0x7 (x87, SSE, AVX) on the default Intel model
   * ```
   */
  archPrctl(option: number, arg2?: number | bigint | BigUint64Array): number {
    this.#live('arch_prctl');
    return this.xstatePermissions().prctl(option, arg2);
  }

  /** @internal The process's XSAVE permissions (the host's FPU code and KVM read and lock the guest ones). */
  xstatePermissions(): XstatePermissions {
    this.#xstatePerm ??= new XstatePermissions(fpuUserConfig(this.#host.cpus[0]!));
    return this.#xstatePerm;
  }

  /**
   * `kill -9`: threads stop first, then every fd is closed in reverse order of opening and every mapping
   * is removed; the process is gone. Killing a dead process is ESRCH.
   */
  kill(): void {
    this.#live('kill');
    this.#host.events.op(() => this.#exit());
  }

  #exit(): void {
    while (this.#exitHooks.length > 0) this.#exitHooks.pop()?.();
    const fds = this.#openFds().reverse();
    for (const fd of fds) this.close(fd);
    while (this.#mappings.length > 0) {
      const m = this.#mappings.pop();
      m?.file?.drop();
    }
    this.alive = false;
    this.#host.reap(this);
  }
}

/** ENOTTY: a file whose operations have no `ioctl`. */
function noIoctl(f: OpenFile): KernelError {
  return new KernelError('ENOTTY', 'ioctl', `${f.path}: Inappropriate ioctl for device`);
}

/** An ioctl request that is not a number (`unsigned int cmd` in C): the library's misuse. */
export function badRequest(request: unknown): UsageError {
  return new UsageError('ERR_INVALID_ARG', `ioctl: the request must be a number (an ioctl number such as KVM_RUN), got ${describeArg(request)}`);
}

function pageAlign(length: number, op: string): number {
  if (typeof length !== 'number' || !Number.isInteger(length) || length <= 0) throw new KernelError('EINVAL', op, `bad length ${describeArg(length)}`);
  return Math.ceil(length / PAGE_SIZE) * PAGE_SIZE;
}
