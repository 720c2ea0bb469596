/**
 * Mount namespaces, as far as /dev goes (kernel/nsproxy.c `unshare_nsproxy_namespaces`, fs/namespace.c
 * `copy_mnt_ns`, `do_loopback`, `do_new_mount`; fs/namei.c `vfs_mknod`): what a container runtime does to give one
 * VMM its own `/dev/kvm` — `unshare(CLONE_NEWNS)`, then a bind mount of a device node over a path of /dev, or a
 * private /dev (`mount -t tmpfs tmpfs /dev`) filled with `mknod`.
 *
 * Every process has a namespace: the host's (shared by every process spawned without a parent), or its parent's
 * (`host.spawn({ parent })`), or one of its own after `unshare`. A namespace starts as a copy of the caller's; a mount
 * in it changes what its processes see and nothing else — the host's /dev is unchanged.
 *
 * A node reached through a namespace (a bind mount, a node made with `mknod`) is an inode with a device number:
 * `open` checks its mode and owner, then the caller's device cgroup, then finds the driver **by number**
 * (`chrdev_open`): a number no device has answers ENXIO, or ENODEV for a misc minor nobody registered
 * (`misc_open`). So a bind mount of `/dev/kvm1` made before the modules were reloaded opens whichever module has
 * that minor now.
 *
 * Where the model differs (docs/fidelity.md): the filesystem is `/` and `/dev` only, so `mount` takes a bind of a
 * /dev entry onto another, or a tmpfs on `/dev`; there is no propagation (every namespace is private), no
 * `pivot_root`, no user namespaces.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import { MISC_MAJOR, type CharDevice, type DevInode, type DevStat, type Devfs } from './devfs.js';
import { parentOf, walkPath, type DevEntry } from './path-walk.js';
import type { Process } from './process.js';

/** `CLONE_NEWNS`: a new mount namespace. */
export const CLONE_NEWNS = 0x0002_0000;
/** `MS_BIND`: a bind mount. */
export const MS_BIND = 0x1000;
/** `MS_REC`: recursive (accepted with `MS_BIND`; /dev's entries have nothing below them). */
export const MS_REC = 0x4000;
/** `S_IFCHR`: the file type of a character device node, for {@link mknod}. */
export const S_IFCHR = 0o020000;
/** `S_IFMT`. */
const S_IFMT = 0o170000;

/** The flags `unshare` knows (`check_unshare_flags`); the model makes `CLONE_NEWNS` only. */
const UNSHARE_KNOWN =
  0x0001_0000 /* CLONE_THREAD */ | 0x200 /* CLONE_FS */ | CLONE_NEWNS | 0x800 /* CLONE_SIGHAND */ | 0x100 /* CLONE_VM */ |
  0x400 /* CLONE_FILES */ | 0x0004_0000 /* CLONE_SYSVSEM */ | 0x0400_0000 /* CLONE_NEWUTS */ | 0x0800_0000 /* CLONE_NEWIPC */ |
  0x4000_0000 /* CLONE_NEWNET */ | 0x1000_0000 /* CLONE_NEWUSER */ | 0x2000_0000 /* CLONE_NEWPID */ | 0x0200_0000 /* CLONE_NEWCGROUP */ |
  0x80 /* CLONE_NEWTIME */;

/** A mount namespace's view of /dev. */
export class MountNamespace {
  readonly #devfs: Devfs;
  /** A tmpfs mounted on /dev: its entries by name; `undefined` while /dev is the host's devfs. */
  #privateDev: Map<string, DevEntry<DevInode>> | undefined;
  /** Bind mounts over entries of /dev, by name (the mounted inode, with its number). */
  readonly #binds = new Map<string, DevInode>();

  /** @internal The host's namespace is made by the host; others by {@link unshare}. */
  constructor(devfs: Devfs, from?: MountNamespace) {
    this.#devfs = devfs;
    if (from !== undefined) {
      this.#privateDev = from.#privateDev === undefined ? undefined : new Map(from.#privateDev);
      for (const [k, v] of from.#binds) this.#binds.set(k, v);
    }
  }

  /** True while the namespace shows the host's /dev as it is (nothing mounted). */
  get plain(): boolean {
    return this.#privateDev === undefined && this.#binds.size === 0;
  }

  /** The entry of this namespace's /dev called `name`, for the path walk. */
  readonly #lookup = (name: string): DevEntry<DevInode> | undefined => {
    const bound = this.#binds.get(name);
    if (bound !== undefined) return { kind: 'node', node: { ...bound, path: `/dev/${name}` } };
    if (this.#privateDev !== undefined) return this.#privateDev.get(name);
    return this.#devfs.entry(name);
  };

  /**
   * The inode `path` names in this namespace, following symlinks (`open`). A devfs node is returned as itself.
   * @throws {@link KernelError} from the path walk (ENOENT, ELOOP, ENOTDIR, ENAMETOOLONG), EISDIR for a directory
   */
  resolve(path: string): DevInode {
    if (this.plain) return this.#devfs.resolve(path);
    if (typeof path !== 'string') throw new UsageError('ERR_INVALID_ARG', `open: path must be a string, got ${typeof path}`);
    const found = walkPath(path, this.#lookup, true, 'open');
    if (found.kind !== 'node') throw new KernelError('EISDIR', 'open', `${path}: Is a directory`);
    return found.node;
  }

  /** `stat(path)` in this namespace (follows symlinks). */
  stat(path: string): DevStat {
    if (this.plain) return this.#devfs.stat(path);
    const n = this.resolve(path);
    return { type: 'char', path: n.path, major: n.major, minor: n.minor, uid: n.uid, gid: n.gid, mode: n.mode };
  }

  /** Every entry of this namespace's /dev, sorted by path (`ls -l /dev`). */
  list(): DevStat[] {
    if (this.plain) return this.#devfs.list();
    const names = new Set<string>(this.#binds.keys());
    if (this.#privateDev !== undefined) for (const k of this.#privateDev.keys()) names.add(k);
    else for (const s of this.#devfs.list()) names.add(s.path.slice('/dev/'.length));
    return [...names].sort().map((name): DevStat => {
      const e = this.#lookup(name) as DevEntry<DevInode>;
      const path = `/dev/${name}`;
      return e.kind === 'link' ? { type: 'symlink', path, target: e.target } : { type: 'char', path, major: e.node.major, minor: e.node.minor, uid: e.node.uid, gid: e.node.gid, mode: e.node.mode };
    });
  }

  /**
   * The driver of `inode`: a devfs node is its own; another inode finds it by number (`chrdev_open`, `misc_open`).
   * @throws {@link KernelError} ENODEV (a misc minor nobody has), ENXIO (a number no device has)
   */
  driverOf(inode: DevInode): CharDevice {
    if (isCharDevice(inode)) return inode;
    const dev = this.#devfs.byNumber(inode.major, inode.minor);
    if (dev !== undefined) return dev;
    if (inode.major === MISC_MAJOR) throw new KernelError('ENODEV', 'open', `${inode.path}: no misc device ${inode.major}:${inode.minor}`);
    throw new KernelError('ENXIO', 'open', `${inode.path}: No such device or address (${inode.major}:${inode.minor})`);
  }

  /** The /dev entry name a mount or `mknod` at `path` acts on (`/dev/<name>` after the parent's walk). */
  #nameIn(path: string, op: string): string {
    const at = parentOf(path, this.#lookup, op);
    if (at.dir !== '/dev' || at.name === '' || at.name === '.' || at.name === '..') throw new UsageError('ERR_INVALID_ARG', `${op}: ${JSON.stringify(path)} is not an entry of /dev (the model's mounts are in /dev)`);
    return at.name;
  }

  /** @internal `do_loopback`: mount `source` (an inode) over the /dev entry at `target` (which must exist). */
  bind(source: DevInode, target: string): void {
    const found = walkPath(target, this.#lookup, true, 'mount');
    if (found.kind === 'dir') throw new KernelError('ENOTDIR', 'mount', `${target} is a directory; ${source.path} is not`);
    const name = found.path.slice('/dev/'.length);
    this.#binds.set(name, { path: source.path, major: source.major, minor: source.minor, uid: source.uid, gid: source.gid, mode: source.mode });
  }

  /** Whether `path` names the directory /dev in this namespace (a tmpfs can be mounted there). */
  isDevDir(path: string): boolean {
    const found = walkPath(path, this.#lookup, true, 'mount');
    return found.kind === 'dir' && found.path === '/dev';
  }

  /** @internal `mount -t tmpfs tmpfs /dev`: an empty /dev of this namespace's own, over the host's. */
  mountPrivateDev(): void {
    this.#privateDev = new Map();
    this.#binds.clear();
  }

  /** @internal `umount(target)`: a bind mount over a /dev entry, or the tmpfs on /dev. @throws EINVAL when nothing is mounted there */
  umount(target: string): void {
    const whole = walkPath(target, this.#lookup, false, 'umount');
    if (whole.kind === 'dir' && whole.path === '/dev' && this.#privateDev !== undefined) {
      this.#privateDev = undefined;
      this.#binds.clear();
      return;
    }
    const name = whole.kind === 'dir' ? undefined : whole.path.slice('/dev/'.length);
    if (name === undefined || !this.#binds.delete(name)) throw new KernelError('EINVAL', 'umount', `${target} is not a mount point`);
  }

  /** @internal `vfs_mknod` in a private /dev. */
  mknod(path: string, inode: Omit<DevInode, 'path'>): void {
    const name = this.#nameIn(path, 'mknod');
    const dev = this.#privateDev;
    if (dev === undefined) throw new UsageError('ERR_NOT_SUPPORTED', `mknod ${path}: the host's /dev belongs to its drivers; mount a tmpfs on /dev in a namespace of its own first`);
    if (dev.has(name) || this.#binds.has(name)) throw new KernelError('EEXIST', 'mknod', `${path} exists`);
    dev.set(name, { kind: 'node', node: { ...inode, path: `/dev/${name}` } });
  }
}

function isCharDevice(inode: DevInode): inode is CharDevice {
  return 'fops' in inode;
}

function requireCap(proc: Process, op: string, cap: 'CAP_SYS_ADMIN' | 'CAP_MKNOD'): void {
  if (!proc.alive) throw new KernelError('ESRCH', op, `process ${proc.pid} has exited`);
  if (!proc.capable(cap)) throw new KernelError('EPERM', op, `Operation not permitted (needs ${cap})`);
}

/**
 * `unshare(flags)`: with `CLONE_NEWNS`, the process gets a mount namespace of its own, a copy of the one it was in;
 * its children started afterwards share it. 0 does nothing.
 * @throws {@link KernelError} EINVAL (a flag Linux does not know), EPERM (`CLONE_NEWNS` without `CAP_SYS_ADMIN`);
 *   {@link UsageError} ERR_NOT_SUPPORTED for the other namespaces and sharing flags, which the model does not have
 */
export function unshare(proc: Process, flags: number): void {
  if (!Number.isInteger(flags) || flags < 0 || flags > 0xffff_ffff) throw new UsageError('ERR_INVALID_ARG', `unshare: flags ${String(flags)} is not an unsigned long`);
  if ((flags & ~UNSHARE_KNOWN) !== 0) throw new KernelError('EINVAL', 'unshare', `unknown flags 0x${flags.toString(16)}`);
  if ((flags & ~CLONE_NEWNS) !== 0) throw new UsageError('ERR_NOT_SUPPORTED', `unshare: the model makes CLONE_NEWNS only (flags 0x${flags.toString(16)})`);
  if (flags === 0) return;
  requireCap(proc, 'unshare', 'CAP_SYS_ADMIN');
  proc.setMountNamespace(new MountNamespace(proc.host.devfs, proc.mountNamespace));
}

/**
 * `mount(source, target, fstype, flags)` in the caller's namespace: `MS_BIND` mounts the device node `source`
 * (followed if a symlink) over the existing /dev entry `target` (also followed, as Linux walks it); fstype `tmpfs`
 * on `/dev` gives the namespace an empty /dev of its own (fill it with {@link mknod}).
 * @throws {@link KernelError} EPERM (no `CAP_SYS_ADMIN`), ENOENT (source or target missing), ENOTDIR (a node over
 *   a directory); {@link UsageError} ERR_NOT_SUPPORTED for other mounts
 * @example
 * ```ts
 * import { CLONE_NEWNS, MS_BIND, createHost, mount, unshare } from '@vac/core';
 * import { kvm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 2, hardware: intel() });
 * host.modprobe(kvm({ postfix: '0' }));
 * host.modprobe(kvm({ postfix: '1' }));
 * host.symlink('/dev/kvm0', '/dev/kvm'); // the host's /dev/kvm is kvm0
 * const runtime = host.spawn({ name: 'runtime' });
 * unshare(runtime, CLONE_NEWNS);
 * mount(runtime, '/dev/kvm1', '/dev/kvm', '', MS_BIND);
 * const vmm = host.spawn({ uid: 1000, groups: ['kvm'], parent: runtime }); // shares the runtime's namespace
 * const fd = vmm.open('/dev/kvm'); // kvm1's device, found by its number
 * console.log(vmm.file(fd).owner?.name, host.stat('/dev/kvm')); // kvm1, and the host's /dev/kvm is still kvm0's
 * ```
 */
export function mount(proc: Process, source: string, target: string, fstype: string, flags: number): void {
  if (typeof source !== 'string' || typeof target !== 'string' || typeof fstype !== 'string') throw new UsageError('ERR_INVALID_ARG', 'mount: source, target and fstype must be strings');
  requireCap(proc, 'mount', 'CAP_SYS_ADMIN');
  const ns = proc.mountNamespace;
  if ((flags & MS_BIND) !== 0) {
    if ((flags & ~(MS_BIND | MS_REC)) !== 0) throw new UsageError('ERR_NOT_SUPPORTED', `mount: flags 0x${flags.toString(16)} (the model takes MS_BIND and MS_REC)`);
    ns.bind(ns.resolve(source), target);
    return;
  }
  if (flags === 0 && fstype === 'tmpfs') {
    if (!ns.isDevDir(target)) throw new UsageError('ERR_NOT_SUPPORTED', `mount: the model mounts a tmpfs on /dev only, not on ${target}`);
    ns.mountPrivateDev();
    return;
  }
  throw new UsageError('ERR_NOT_SUPPORTED', `mount: the model has bind mounts and a tmpfs on /dev only (fstype ${JSON.stringify(fstype)}, flags 0x${flags.toString(16)})`);
}

/**
 * `umount(target)` in the caller's namespace: remove the bind mount over a /dev entry, or the tmpfs on /dev.
 * @throws {@link KernelError} EPERM (no `CAP_SYS_ADMIN`), EINVAL (nothing is mounted there), ENOENT
 */
export function umount(proc: Process, target: string): void {
  requireCap(proc, 'umount', 'CAP_SYS_ADMIN');
  proc.mountNamespace.umount(target);
}

/**
 * `mknod(path, S_IFCHR | perm, makedev(major, minor))` in a private /dev (after {@link mount} of a tmpfs on /dev):
 * a character device node by number, owned by the caller. Opening it finds the driver by number.
 * @throws {@link KernelError} EPERM (no `CAP_MKNOD`, or the device cgroup does not allow `m` for the number),
 *   EEXIST, EINVAL (a file type other than `S_IFCHR`); {@link UsageError} in the host's /dev (it belongs to its
 *   drivers)
 */
export function mknod(proc: Process, path: string, mode: number, major: number, minor: number): void {
  if (!Number.isInteger(mode) || !Number.isInteger(major) || !Number.isInteger(minor) || major < 0 || minor < 0 || major > 0xfff || minor > 0xfffff) {
    throw new UsageError('ERR_INVALID_ARG', `mknod: mode ${String(mode)}, major ${String(major)}, minor ${String(minor)} are not a mode and a device number`);
  }
  if ((mode & S_IFMT) !== S_IFCHR) throw new KernelError('EINVAL', 'mknod', 'the model makes character device nodes only (S_IFCHR)');
  requireCap(proc, 'mknod', 'CAP_MKNOD');
  if (!proc.deviceCgroup.permits('c', major, minor, { mknod: true })) throw new KernelError('EPERM', 'mknod', `the device cgroup ${proc.deviceCgroup.path} does not allow mknod of c ${major}:${minor}`);
  proc.mountNamespace.mknod(path, { major, minor, uid: proc.uid, gid: proc.gid, mode: mode & 0o7777 });
}
