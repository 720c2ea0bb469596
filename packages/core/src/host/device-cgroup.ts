/**
 * The device controller of cgroup v1 (security/device_cgroup.c): per cgroup, a default behaviour (allow or deny
 * every device) and a list of exceptions written as `devices.allow` / `devices.deny` lines — `c 10:232 rwm`: type
 * (`a`ll, `c`har, `b`lock), major:minor (`*` for any), access (`r`ead, `w`rite, `m`knod). Opening a device node or
 * making one is checked against the caller's cgroup (`devcgroup_inode_permission`, `devcgroup_inode_mknod`): EPERM
 * when it is not allowed.
 *
 * Rules name devices **by number**. KVM modules other than the un-postfixed `/dev/kvm` (10:232) take dynamic misc
 * minors in load order (127, 126, … — see `Devfs`), so a rule written for `/dev/kvm1` by number names another
 * device, or none, after the modules are reloaded in another order: resolve the node by name (`stat`) when the
 * VMM starts and write the rule then.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';

/** A device type in a rule: `a` (all), `c` (char), `b` (block). */
export type DeviceType = 'a' | 'c' | 'b';

/** One exception (`struct dev_exception_item`): `major`/`minor` `undefined` is `*`. */
interface DevException {
  readonly type: DeviceType;
  readonly major: number | undefined;
  readonly minor: number | undefined;
  /** `r`, `w`, `m` bits: 1, 2, 4 (Linux numbers them `DEVCG_ACC_MKNOD` 1, `_READ` 2, `_WRITE` 4). */
  readonly access: number;
}

const ACC_READ = 1;
const ACC_WRITE = 2;
const ACC_MKNOD = 4;
/** Major and minor numbers of a rule are parsed as `u32` (`kstrtou32`). */
const MAX_U32 = 0xffff_ffff;

/** An access to check: what `open` (read, write) or `mknod` asks for. */
export interface DeviceAccess {
  readonly read?: boolean;
  readonly write?: boolean;
  readonly mknod?: boolean;
}

/** A cgroup of the device controller: its behaviour, its exceptions and its member processes' permissions. */
export class DeviceCgroup {
  /** The cgroup's path, e.g. `/` or `/machine/vmm-a`. */
  readonly path: string;
  /** The parent cgroup (`undefined` for the root). */
  readonly parent: DeviceCgroup | undefined;
  #allowByDefault: boolean;
  #exceptions: DevException[];
  readonly #children: DeviceCgroup[] = [];

  /** @internal Use `host.createDeviceCgroup()`; the root is `host.rootDeviceCgroup`. */
  constructor(path: string, parent: DeviceCgroup | undefined) {
    this.path = path;
    this.parent = parent;
    // devcgroup_online: a child starts as a copy of its parent.
    this.#allowByDefault = parent === undefined ? true : parent.#allowByDefault;
    this.#exceptions = parent === undefined ? [] : parent.#exceptions.slice();
    if (parent !== undefined) parent.#children.push(this);
  }

  /**
   * Write a line to `devices.allow` (`devcgroup_update_access` with `DEVCG_ALLOW`): `a` allows every device (when
   * the parent does) and clears the exceptions; otherwise a rule is added as an exception to a deny-all cgroup, or
   * removes the matching exception of an allow-all one.
   * @throws {@link KernelError} EINVAL (a malformed line; `a` on a cgroup with children), EPERM (the parent does not
   *   allow it)
   */
  allow(line: string): void {
    this.#update(line, true);
  }

  /**
   * Write a line to `devices.deny`: `a` denies every device and clears the exceptions; otherwise a rule is added as
   * an exception to an allow-all cgroup, or removes the matching exception of a deny-all one.
   * @throws {@link KernelError} EINVAL (a malformed line; `a` on a cgroup with children)
   */
  deny(line: string): void {
    this.#update(line, false);
  }

  #update(line: string, allow: boolean): void {
    const op = allow ? 'devices.allow' : 'devices.deny';
    if (typeof line !== 'string') throw new UsageError('ERR_INVALID_ARG', `${op}: a line must be a string`);
    const rule = parseRule(line.trim(), op);
    if (rule === 'all') {
      if (this.#children.length > 0) throw new KernelError('EINVAL', op, `${this.path} has children`);
      if (allow && this.parent !== undefined && !this.parent.#allowByDefault) throw new KernelError('EPERM', op, `the parent of ${this.path} does not allow every device`);
      this.#exceptions = allow && this.parent !== undefined ? this.parent.#exceptions.slice() : [];
      this.#allowByDefault = allow;
      return;
    }
    if (allow && this.parent !== undefined && !this.parent.#permits(rule)) throw new KernelError('EPERM', op, `the parent of ${this.path} does not allow ${line.trim()}`);
    if (allow === this.#allowByDefault) {
      // dev_exception_rm: take the access bits away from exceptions of the same device.
      this.#exceptions = this.#exceptions
        .map((e) => (sameDevice(e, rule) ? { ...e, access: e.access & ~rule.access } : e))
        .filter((e) => e.access !== 0);
    } else {
      // dev_exception_add: merge the access into an exception of the same device, or add one.
      const at = this.#exceptions.findIndex((e) => sameDevice(e, rule));
      if (at >= 0) this.#exceptions[at] = { ...rule, access: (this.#exceptions[at] as DevException).access | rule.access };
      else this.#exceptions.push(rule);
    }
  }

  /** `devices.list`: `a *:* rwm` for an allow-all cgroup without exceptions, else the exceptions (allowed devices of a deny-all cgroup, denied ones of an allow-all one). */
  list(): string[] {
    if (this.#allowByDefault && this.#exceptions.length === 0) return ['a *:* rwm'];
    return this.#exceptions.map(formatRule);
  }

  /** True when the cgroup allows every device except its exceptions (`DEVCG_DEFAULT_ALLOW`). */
  get allowsByDefault(): boolean {
    return this.#allowByDefault;
  }

  /**
   * `devcgroup_check_permission`: may a member open (`read`, `write`) or make (`mknod`) the device `type`
   * `major`:`minor`? An allow-all cgroup denies what any exception touches; a deny-all one allows what one
   * exception covers entirely.
   */
  permits(type: 'c' | 'b', major: number, minor: number, access: DeviceAccess): boolean {
    const acc = (access.read === true ? ACC_READ : 0) | (access.write === true ? ACC_WRITE : 0) | (access.mknod === true ? ACC_MKNOD : 0);
    return this.#permits({ type, major, minor, access: acc });
  }

  #permits(want: DevException): boolean {
    if (this.#allowByDefault) return !this.#exceptions.some((e) => covers(e, want, true));
    return this.#exceptions.some((e) => covers(e, want, false));
  }
}

/** `match_exception` (all of the access) or `match_exception_partial` (any of it). */
function covers(ex: DevException, want: DevException, partial: boolean): boolean {
  if (ex.type !== 'a' && want.type !== 'a' && ex.type !== want.type) return false;
  if (ex.major !== undefined && want.major !== undefined && ex.major !== want.major) return false;
  if (ex.minor !== undefined && want.minor !== undefined && ex.minor !== want.minor) return false;
  // match_exception: a range asked for (a `*` of a new rule checked against the parent) needs a `*` exception.
  if (!partial && want.major === undefined && ex.major !== undefined) return false;
  if (!partial && want.minor === undefined && ex.minor !== undefined) return false;
  return partial ? (ex.access & want.access) !== 0 : (want.access & ~ex.access) === 0;
}

function sameDevice(a: DevException, b: DevException): boolean {
  return a.type === b.type && a.major === b.major && a.minor === b.minor;
}

function formatRule(e: DevException): string {
  const n = (v: number | undefined): string => (v === undefined ? '*' : String(v));
  const acc = `${(e.access & ACC_READ) !== 0 ? 'r' : ''}${(e.access & ACC_WRITE) !== 0 ? 'w' : ''}${(e.access & ACC_MKNOD) !== 0 ? 'm' : ''}`;
  return `${e.type} ${n(e.major)}:${n(e.minor)} ${acc}`;
}

/**
 * Parse a `devices.allow`/`devices.deny` line as `devcgroup_update_access` does: a line that starts with `a` means
 * every device (the rest is not read); otherwise `TYPE MAJ:MIN ACCESS` with TYPE `b` or `c`, MAJ/MIN a decimal
 * `u32` or `*`, and ACCESS up to three of `r`, `w`, `m` (repeats allowed, none is an empty access; characters after
 * the third are not read).
 */
function parseRule(line: string, op: string): DevException | 'all' {
  if (line.startsWith('a')) return 'all';
  const m = /^([bc])\s(\*|\d{1,11}):(\*|\d{1,11})\s(.*)$/s.exec(line);
  const bad = (): KernelError => new KernelError('EINVAL', op, `malformed rule ${JSON.stringify(line)} (expected e.g. "c 10:232 rwm" or "a")`);
  const num = (s: string): number | undefined => (s === '*' ? undefined : Number(s));
  const major = num(m?.[2] ?? '0');
  const minor = num(m?.[3] ?? '0');
  if (m === null || (major ?? 0) > MAX_U32 || (minor ?? 0) > MAX_U32) throw bad();
  // At most three access characters are read; what follows them is not looked at.
  let access = 0;
  for (const ch of (m[4] as string).slice(0, 3)) {
    if (ch === '\n') break;
    const bit = ch === 'r' ? ACC_READ : ch === 'w' ? ACC_WRITE : ch === 'm' ? ACC_MKNOD : 0;
    if (bit === 0) throw bad();
    access |= bit;
  }
  return { type: m[1] as DeviceType, major, minor, access };
}
