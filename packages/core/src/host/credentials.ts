/**
 * What a new process is made of: its credentials, its CPU and its fd limit, read from `host.spawn()`'s options
 * once and checked before anything is created (a bad option names itself; a getter on an option runs once).
 *
 * @module
 */
import type { Cpu } from '../cpu.js';
import { UsageError } from '../errors.js';
import { affinityCpu } from './affinity.js';
import type { Process } from './process.js';

/** The capabilities the model checks. */
export type Capability = 'CAP_SYS_MODULE' | 'CAP_SYS_ADMIN' | 'CAP_DAC_OVERRIDE' | 'CAP_SYS_NICE' | 'CAP_MKNOD' | 'CAP_SYS_BOOT';

/** Every capability root has. */
export const ALL_CAPABILITIES: readonly Capability[] = ['CAP_SYS_MODULE', 'CAP_SYS_ADMIN', 'CAP_DAC_OVERRIDE', 'CAP_SYS_NICE', 'CAP_MKNOD', 'CAP_SYS_BOOT'];

/** The largest uid or gid: `uid_t` is 32 bits and (uid_t)-1 means "no id" (include/linux/uidgid.h). */
export const MAX_ID = 2 ** 32 - 2;
/** `NR_OPEN` (1024 × 1024): `fs.nr_open`, the most `RLIMIT_NOFILE` may be (kernel/sys.c `do_prlimit`). */
export const NR_OPEN = 1024 * 1024;
/** `NGROUPS_MAX` (include/uapi/linux/limits.h). */
export const NGROUPS_MAX = 65536;

/** Options of `host.spawn()`. */
export interface SpawnOptions {
  /** User id (default 0, root): an integer in 0 … 2^32 − 2. */
  readonly uid?: number;
  /** Primary group name (default `root`). */
  readonly group?: string;
  /** Supplementary group names, e.g. `['kvm']` (at most `NGROUPS_MAX`). */
  readonly groups?: readonly string[];
  /** Capabilities (default: all for uid 0, none otherwise); each must be a {@link Capability}. */
  readonly caps?: readonly Capability[];
  /** The CPU the process runs on (default 0): it must exist and be online, as for `sched_setaffinity`. */
  readonly cpu?: number;
  /** A name for messages and traces (default `pid<N>`). */
  readonly name?: string;
  /**
   * `RLIMIT_NOFILE` (default 1024, Linux's default soft limit): the bound on fd *numbers*, as `alloc_fd` applies it
   * (fs/file.c): fds 0–2 (stdio) count, so a process may open fds 3 … `nofile - 1`. An integer in 0 … 1,048,576
   * (`fs.nr_open`).
   */
  readonly nofile?: number;
  /**
   * The process that starts this one (`fork` then `execve`): the child inherits the parent's fds that are not
   * close-on-exec, at the same numbers and to the same open files, its `RLIMIT_NOFILE` (unless `nofile` is given),
   * its mount namespace and its device cgroup. Without it the process descends from `init` and shares nothing.
   * Credentials still come from these options (a supervisor starting a VMM as another user).
   */
  readonly parent?: Process;
}

const OPTION_NAMES: ReadonlySet<string> = new Set(['uid', 'group', 'groups', 'caps', 'cpu', 'name', 'nofile', 'parent']);

/** A new process's settings, checked. */
export interface ProcessSettings {
  readonly uid: number;
  readonly gid: number;
  readonly groups: ReadonlySet<number>;
  readonly caps: ReadonlySet<Capability>;
  readonly cpu: number;
  readonly name: string;
  readonly nofile: number;
  readonly parent: Process | undefined;
}

/** What the options are checked against. */
export interface SpawnContext {
  /** The host's CPUs. */
  readonly cpus: readonly Cpu[];
  /** The gid of a group name (UsageError ERR_UNKNOWN_NAME for an unknown one). */
  gid(name: string): number;
  /** Whether `p` is a live process of this host. */
  isProcess(p: unknown): p is Process;
}

/**
 * Read and check `host.spawn()`'s options (each read once).
 * @throws {@link UsageError} naming the option: ERR_INVALID_ARG (not an object, a value of the wrong type),
 * ERR_UNKNOWN_NAME (an unknown option, group or capability), ERR_OUT_OF_RANGE (an id or limit out of range);
 * `KernelError` EINVAL for a CPU that does not exist or is offline
 */
export function processSettings(ctx: SpawnContext, opts: unknown, pid: number): ProcessSettings {
  if (opts === undefined) opts = {};
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw new UsageError('ERR_INVALID_ARG', `spawn: options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  const o: Record<string, unknown> = {};
  for (const key of Object.keys(opts)) {
    if (!OPTION_NAMES.has(key)) throw new UsageError('ERR_UNKNOWN_NAME', `spawn: unknown option ${JSON.stringify(key)} (known: ${[...OPTION_NAMES].join(', ')})`);
    o[key] = (opts as Record<string, unknown>)[key];
  }
  const uid = o['uid'] === undefined ? 0 : integerOption(o['uid'], 'uid', MAX_ID);
  const gid = ctx.gid(o['group'] === undefined ? 'root' : stringOption(o['group'], 'group'));
  const groupNames = o['groups'] === undefined ? [] : listOption(o['groups'], 'groups');
  if (groupNames.length > NGROUPS_MAX) throw new UsageError('ERR_OUT_OF_RANGE', `spawn: groups: ${groupNames.length} groups, NGROUPS_MAX is ${NGROUPS_MAX}`);
  const groups = new Set(groupNames.map((g, i) => ctx.gid(stringOption(g, `groups[${i}]`))));
  let caps: ReadonlySet<Capability>;
  if (o['caps'] === undefined) caps = new Set(uid === 0 ? ALL_CAPABILITIES : []);
  else {
    const names = listOption(o['caps'], 'caps');
    for (const c of names) {
      if (!(ALL_CAPABILITIES as readonly unknown[]).includes(c)) {
        throw new UsageError('ERR_UNKNOWN_NAME', `spawn: caps: unknown capability ${typeof c === 'string' ? JSON.stringify(c) : String(c)} (known: ${ALL_CAPABILITIES.join(', ')})`);
      }
    }
    caps = new Set(names as Capability[]);
  }
  const name = o['name'] === undefined ? `pid${pid}` : stringOption(o['name'], 'name');
  const parent = o['parent'];
  if (parent !== undefined && !ctx.isProcess(parent)) throw new UsageError('ERR_INVALID_ARG', 'spawn: parent must be a live process of this host');
  const nofile = o['nofile'] === undefined ? (parent?.nofile ?? 1024) : integerOption(o['nofile'], 'nofile', NR_OPEN);
  const cpu = affinityCpu(ctx.cpus, o['cpu'] === undefined ? 0 : o['cpu'], 'spawn: cpu');
  return { uid, gid, groups, caps, cpu, name, nofile, parent };
}

function integerOption(v: unknown, what: string, max: number): number {
  if (typeof v !== 'number') throw new UsageError('ERR_INVALID_ARG', `spawn: ${what} must be a number, got ${typeof v}`);
  if (!Number.isInteger(v) || v < 0 || v > max) throw new UsageError('ERR_OUT_OF_RANGE', `spawn: ${what} must be an integer in 0…${max}, got ${String(v)}`);
  return v;
}

function stringOption(v: unknown, what: string): string {
  if (typeof v !== 'string') throw new UsageError('ERR_INVALID_ARG', `spawn: ${what} must be a string, got ${typeof v}`);
  return v;
}

/** An array option, copied once (a getter or proxy behind it runs here, not later). */
function listOption(v: unknown, what: string): unknown[] {
  if (!Array.isArray(v)) throw new UsageError('ERR_INVALID_ARG', `spawn: ${what} must be an array, got ${typeof v}`);
  return Array.from(v as unknown[]);
}
