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
import { NAME_MAX, PATH_MAX, parentOf, walkPath, type DevEntry, type Found } from './path-walk.js';

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

/** A device inode: where it was found, its number, owner and mode (a mount namespace's nodes are these). */
export interface DevInode {
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
}

/** A character device node: an inode with its driver. */
export interface CharDevice extends DevInode {
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

/** The /dev filesystem of a host. */
export class Devfs {
  readonly #host: Host;
  readonly #nodes = new Map<string, CharDevice>();
  readonly #links = new Map<string, string>();
  readonly #miscMinors = new Set<number>();
  /** The nodes by device number (`major << 20 | minor`), for a lookup by number (`chrdev_open`). */
  readonly #byNumber = new Map<number, CharDevice>();

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
    if (typeof dev.name !== 'string' || dev.name.length === 0 || dev.name.length > NAME_MAX || dev.name.includes('/') || dev.name === '.' || dev.name === '..') {
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
    this.#byNumber.set(MISC_MAJOR * (MINORMASK + 1) + minor, node);
    this.#host.events.emit('device:register', { path, major: MISC_MAJOR, minor, owner: owner?.name });
    const deregister = makeUndo(() => {
      this.#nodes.delete(path);
      this.#byNumber.delete(MISC_MAJOR * (MINORMASK + 1) + minor);
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

  /**
   * `symlink(target, path)`: create a symbolic link in /dev. `path` is looked up as the VFS does (`//dev///kvm`,
   * `/dev/./kvm` and `/dev/../dev/kvm` name `/dev/kvm`); the target is stored as given and need not exist.
   * @throws {@link KernelError} EEXIST (the name exists, `/dev` itself included), ENOENT (empty target; a trailing
   * slash after a name that does not exist), ENAMETOOLONG, or the lookup's ENOTDIR / ELOOP;
   * {@link UsageError} for a link outside /dev (the model's filesystem has nothing else)
   */
  symlink(target: string, path: string): void {
    if (typeof target !== 'string') throw new UsageError('ERR_INVALID_ARG', `symlink: target must be a string, got ${typeof target}`);
    if (typeof path !== 'string') throw new UsageError('ERR_INVALID_ARG', `symlink: path must be a string, got ${typeof path}`);
    if (target.length === 0) throw new KernelError('ENOENT', 'symlink', 'empty target');
    if (target.length >= PATH_MAX) throw new KernelError('ENAMETOOLONG', 'symlink', `target of ${target.length} bytes`);
    const at = parentOf(path, this.#lookup, 'symlink');
    if (at.name === '' || at.name === '.' || at.name === '..' || (at.dir === '/' && at.name === 'dev')) {
      throw new KernelError('EEXIST', 'symlink', `${path} exists`);
    }
    if (at.dir !== '/dev') throw new UsageError('ERR_INVALID_ARG', `${JSON.stringify(path)} is not a path under /dev`);
    const full = `/dev/${at.name}`;
    if (this.#nodes.has(full) || this.#links.has(full)) throw new KernelError('EEXIST', 'symlink', `${path} exists`);
    if (at.trailingSlash) throw new KernelError('ENOENT', 'symlink', `${path}: No such file or directory`);
    this.#links.set(full, target);
  }

  /**
   * `unlink(path)`: remove a symlink (device nodes belong to their driver: EPERM).
   * @throws {@link KernelError} ENOENT (absent), EPERM (a device node), EISDIR (a directory), ENOTDIR (a trailing
   * slash after a name that is not a directory)
   */
  unlink(path: string): void {
    checkPathArg(path, 'unlink');
    const at = parentOf(path, this.#lookup, 'unlink');
    if (at.name === '' || at.name === '.' || at.name === '..' || (at.dir === '/' && at.name === 'dev')) {
      throw new KernelError('EISDIR', 'unlink', `${path}: Is a directory`);
    }
    const full = `/dev/${at.name}`;
    const exists = at.dir === '/dev' && (this.#links.has(full) || this.#nodes.has(full));
    if (!exists) throw new KernelError('ENOENT', 'unlink', `${path}: No such file or directory`);
    if (at.trailingSlash) throw new KernelError('ENOTDIR', 'unlink', `${path}: Not a directory`);
    if (this.#nodes.has(full)) throw new KernelError('EPERM', 'unlink', `${full} is a device node owned by its driver`);
    this.#links.delete(full);
  }

  /** `readlink(path)`: the target of the symlink `path`. EINVAL if it is not a symlink, ENOENT if absent. */
  readlink(path: string): string {
    checkPathArg(path, 'readlink');
    const found = walkPath(path, this.#lookup, false, 'readlink');
    if (found.kind !== 'link') throw new KernelError('EINVAL', 'readlink', `${path} is not a symbolic link`);
    return found.target;
  }

  /**
   * `lstat(path)`: a symlink at the end of the path is reported as one.
   * @throws {@link KernelError} from the path walk; {@link UsageError} ERR_NOT_SUPPORTED for a directory (`/`, `/dev`:
   * the model's stat describes the entries of /dev only)
   */
  lstat(path: string): DevStat {
    checkPathArg(path, 'stat');
    return this.#statOf(walkPath(path, this.#lookup, false, 'stat'));
  }

  /** `stat(path)`: follows symlinks. Throws as {@link Devfs.lstat} does. */
  stat(path: string): DevStat {
    checkPathArg(path, 'stat');
    return this.#statOf(walkPath(path, this.#lookup, true, 'stat'));
  }

  #statOf(found: Found<CharDevice>): DevStat {
    switch (found.kind) {
      case 'dir':
        throw new UsageError('ERR_NOT_SUPPORTED', `stat of ${found.path}: the model's stat describes the entries of /dev, not its directories`);
      case 'link':
        return { type: 'symlink', path: found.path, target: found.target };
      case 'node': {
        const n = found.node;
        return { type: 'char', path: n.path, major: n.major, minor: n.minor, uid: n.uid, gid: n.gid, mode: n.mode };
      }
    }
  }

  /**
   * The device node `path` names, following symlinks (`open`).
   * @throws {@link KernelError} ENOENT (dangling or absent), ELOOP (too many links), ENOTDIR, ENAMETOOLONG, EISDIR (a
   * directory: the model's directories cannot be opened)
   */
  resolve(path: string): CharDevice {
    checkPathArg(path, 'open');
    const found = walkPath(path, this.#lookup, true, 'open');
    if (found.kind !== 'node') throw new KernelError('EISDIR', 'open', `${path}: Is a directory`);
    return found.node;
  }

  /** The device with number `major`:`minor`, if one is registered (`chrdev_open`'s lookup by `dev_t`). */
  byNumber(major: number, minor: number): CharDevice | undefined {
    return this.#byNumber.get(major * (MINORMASK + 1) + minor);
  }

  /** @internal The entry of /dev called `name` (a node or a symlink), for a mount namespace's path walk. */
  entry(name: string): DevEntry<CharDevice> | undefined {
    return this.#lookup(name);
  }

  /** The entry of /dev called `name`, for the path walk. */
  readonly #lookup = (name: string): DevEntry<CharDevice> | undefined => {
    const path = `/dev/${name}`;
    const node = this.#nodes.get(path);
    if (node !== undefined) return { kind: 'node', node };
    const target = this.#links.get(path);
    return target === undefined ? undefined : { kind: 'link', target };
  };

  /** The device nodes that have an owner module, with it (for the ownership invariants). */
  ownedBy(): Array<{ readonly path: string; readonly owner: LoadedModule }> {
    const out: Array<{ readonly path: string; readonly owner: LoadedModule }> = [];
    for (const n of this.#nodes.values()) if (n.owner !== undefined) out.push({ path: n.path, owner: n.owner });
    return out;
  }

  /** Every node and link, sorted by path (`ls -l /dev`). */
  list(): DevStat[] {
    const paths = [...this.#nodes.keys(), ...this.#links.keys()].sort();
    return paths.map((p): DevStat => {
      const target = this.#links.get(p);
      return target !== undefined ? { type: 'symlink', path: p, target } : this.#statOf({ kind: 'node', path: p, node: this.#nodes.get(p) as CharDevice });
    });
  }
}

function checkPathArg(path: unknown, op: string): void {
  if (typeof path !== 'string') throw new UsageError('ERR_INVALID_ARG', `${op}: path must be a string, got ${typeof path}`);
}
