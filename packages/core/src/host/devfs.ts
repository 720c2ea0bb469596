/**
 * devfs: character devices, the misc class, and symlinks under /dev.
 *
 * Misc devices are major 10 (`MISC_MAJOR`). A fixed minor that is taken → EBUSY; dynamic minors are
 * handed out as in `misc_minor_alloc` (drivers/char/misc.c, v6.6): 127 downwards first, then 256 upwards.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import { makeUndo, type Unsubscribe } from '../events.js';
import type { Host } from './host.js';
import type { FileOperations } from './file.js';
import type { LoadedModule } from './modules.js';

/** `MISC_MAJOR`. */
export const MISC_MAJOR = 10;
/** `KVM_MINOR`: the misc minor of /dev/kvm (include/linux/miscdevice.h). */
export const KVM_MINOR = 232;
/** `MISC_DYNAMIC_MINOR`: ask for a dynamic minor. */
export const MISC_DYNAMIC_MINOR = 255;
/** `DYNAMIC_MINORS` (v6.6). */
const DYNAMIC_MINORS = 128;
/** `MINORMASK`. */
const MINORMASK = (1 << 20) - 1;

/** A character device node. */
export interface CharDevice {
  /** The path, e.g. `/dev/kvm0`. */
  readonly path: string;
  /** Major number. */
  readonly major: number;
  /** Minor number. */
  readonly minor: number;
  /** Owner uid. */
  readonly uid: number;
  /** Owner gid. */
  readonly gid: number;
  /** Permission bits, e.g. `0o660`. */
  readonly mode: number;
  /** The driver's file operations. */
  readonly fops: FileOperations;
  /** The module whose code serves the device (`fops->owner`); opening pins it. */
  readonly owner: LoadedModule | undefined;
}

/** What `stat` reports for a /dev path (`lstat` semantics: a symlink is reported as one). */
export type DevStat =
  | { readonly type: 'char'; readonly path: string; readonly major: number; readonly minor: number; readonly uid: number; readonly gid: number; readonly mode: number }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string };

/** A misc device to register (`struct miscdevice`). */
export interface MiscDevice {
  /** Device name; the node is `/dev/<name>`. */
  readonly name: string;
  /** A fixed minor, or {@link MISC_DYNAMIC_MINOR}. */
  readonly minor: number;
  /** The driver's file operations. */
  readonly fops: FileOperations;
  /** The owning module (`fops->owner`). */
  readonly owner?: LoadedModule;
  /** Mode of the node (default 0o600). */
  readonly mode?: number;
  /** Group name of the node (default `root`); udev rules make /dev/kvm `root:kvm 0660`. */
  readonly group?: string;
}

/** The result of a misc registration: the minor it got, and how to undo it. */
export interface MiscRegistration {
  /** The minor the device got. */
  readonly minor: number;
  /** The device node path. */
  readonly path: string;
  /** `misc_deregister`. */
  readonly deregister: Unsubscribe;
}

const MAX_SYMLINK_HOPS = 40;

/** The /dev filesystem of a host. */
export class Devfs {
  readonly #host: Host;
  readonly #nodes = new Map<string, CharDevice>();
  readonly #links = new Map<string, string>();
  readonly #miscMinors = new Set<number>();

  /** @internal */
  constructor(host: Host) {
    this.#host = host;
  }

  /**
   * `misc_register`: create `/dev/<name>` as char 10:minor.
   * @throws {@link KernelError} EBUSY when the fixed minor is taken or no dynamic minor is left; EEXIST when
   * the node name exists.
   */
  miscRegister(dev: MiscDevice): MiscRegistration {
    if (typeof dev.name !== 'string' || dev.name.length === 0 || dev.name.includes('/')) {
      throw new UsageError('ERR_INVALID_ARG', `misc device name ${JSON.stringify(dev.name)} is not a valid node name`);
    }
    const path = `/dev/${dev.name}`;
    let minor: number;
    if (dev.minor === MISC_DYNAMIC_MINOR) {
      minor = this.#allocDynamicMinor();
    } else {
      if (!Number.isInteger(dev.minor) || dev.minor < 0 || dev.minor > MINORMASK) throw new UsageError('ERR_OUT_OF_RANGE', `bad misc minor ${dev.minor}`);
      if (this.#miscMinors.has(dev.minor)) throw new KernelError('EBUSY', 'misc_register', `misc minor ${dev.minor} is taken`);
      minor = dev.minor;
    }
    if (this.#nodes.has(path) || this.#links.has(path)) throw new KernelError('EEXIST', 'misc_register', `${path} exists`);
    const gid = this.#host.gid(dev.group ?? 'root');
    // `owner` and `fops.owner` name the same thing (fops->owner): either one pins the module on open.
    if (dev.owner !== undefined && dev.fops.owner !== undefined && dev.owner !== dev.fops.owner) {
      throw new UsageError('ERR_INVALID_ARG', `misc device ${dev.name}: owner ${dev.owner.name} differs from fops.owner ${dev.fops.owner.name}`);
    }
    const owner = dev.owner ?? dev.fops.owner;
    this.#miscMinors.add(minor);
    const node: CharDevice = { path, major: MISC_MAJOR, minor, uid: 0, gid, mode: dev.mode ?? 0o600, fops: dev.fops, owner };
    this.#nodes.set(path, node);
    this.#host.events.emit('device:register', { path, major: MISC_MAJOR, minor, owner: owner?.name });
    const deregister = makeUndo(() => {
      this.#nodes.delete(path);
      this.#miscMinors.delete(minor);
      this.#host.events.emit('device:unregister', { path });
    });
    return { minor, path, deregister };
  }

  #allocDynamicMinor(): number {
    for (let i = 0; i < DYNAMIC_MINORS; i++) {
      const m = DYNAMIC_MINORS - i - 1;
      if (!this.#miscMinors.has(m)) return m;
    }
    for (let m = MISC_DYNAMIC_MINOR + 1; m <= MINORMASK; m++) if (!this.#miscMinors.has(m)) return m;
    throw new KernelError('EBUSY', 'misc_register', 'no dynamic misc minor left');
  }

  /** `symlink(target, path)`: create a symbolic link; EEXIST if `path` exists. The target need not exist. */
  symlink(target: string, path: string): void {
    checkDevPath(path);
    if (typeof target !== 'string' || target.length === 0) throw new UsageError('ERR_INVALID_ARG', 'symlink target must be a non-empty string');
    if (this.#nodes.has(path) || this.#links.has(path)) throw new KernelError('EEXIST', 'symlink', `${path} exists`);
    this.#links.set(path, target);
  }

  /** `unlink(path)`: remove a symlink (device nodes belong to their driver: EPERM). ENOENT if absent. */
  unlink(path: string): void {
    if (this.#links.delete(path)) return;
    if (this.#nodes.has(path)) throw new KernelError('EPERM', 'unlink', `${path} is a device node owned by its driver`);
    throw new KernelError('ENOENT', 'unlink', `${path}: No such file or directory`);
  }

  /** `readlink(path)`; EINVAL if it is not a symlink, ENOENT if absent. */
  readlink(path: string): string {
    const t = this.#links.get(path);
    if (t !== undefined) return t;
    if (this.#nodes.has(path)) throw new KernelError('EINVAL', 'readlink', `${path} is not a symbolic link`);
    throw new KernelError('ENOENT', 'readlink', `${path}: No such file or directory`);
  }

  /** `lstat(path)`. */
  lstat(path: string): DevStat {
    const t = this.#links.get(path);
    if (t !== undefined) return { type: 'symlink', path, target: t };
    const n = this.#nodes.get(path);
    if (n === undefined) throw new KernelError('ENOENT', 'stat', `${path}: No such file or directory`);
    return { type: 'char', path, major: n.major, minor: n.minor, uid: n.uid, gid: n.gid, mode: n.mode };
  }

  /** `stat(path)`: follows symlinks. */
  stat(path: string): DevStat {
    const n = this.resolve(path);
    return { type: 'char', path: n.path, major: n.major, minor: n.minor, uid: n.uid, gid: n.gid, mode: n.mode };
  }

  /** Follow symlinks to a device node. ENOENT (dangling or absent), ELOOP (too many links). */
  resolve(path: string): CharDevice {
    let p = path;
    for (let hops = 0; hops <= MAX_SYMLINK_HOPS; hops++) {
      const n = this.#nodes.get(p);
      if (n !== undefined) return n;
      const t = this.#links.get(p);
      if (t === undefined) throw new KernelError('ENOENT', 'open', `${path}: No such file or directory`);
      p = t.startsWith('/') ? t : `/dev/${t}`;
    }
    throw new KernelError('ELOOP', 'open', `${path}: Too many levels of symbolic links`);
  }

  /** Every node and link, sorted by path (`ls -l /dev`). */
  list(): DevStat[] {
    const paths = [...this.#nodes.keys(), ...this.#links.keys()].sort();
    return paths.map((p) => this.lstat(p));
  }
}

function checkDevPath(path: string): void {
  if (typeof path !== 'string' || !path.startsWith('/dev/') || path.length <= 5) {
    throw new UsageError('ERR_INVALID_ARG', `${JSON.stringify(path)} is not a path under /dev`);
  }
}
