/**
 * Host control: what `vac modprobe`, `vac lsmod`, `vac ln -s`, … do to the bridge's simulated host, with
 * output in the format of the Linux tool of the same name. {@link HostControl} runs in the bridge daemon;
 * the `vac` command reaches it through the control socket (one JSON line each way, {@link ControlRequest}).
 *
 * @module
 */
import { createConnection } from 'node:net';
import {
  KernelError,
  UsageError,
  createHost,
  recordEvents,
  renderTimelineSvg,
  toChromeTrace,
  type AnyModuleImage,
  type DevStat,
  type Host,
  type ParamInputs,
  type TraceRecorder,
} from '@vac/core';
import { kvm, kvmgt } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import type { BridgeServer, CallRecord } from './server.js';
import { systemGroups } from './server.js';

/** A module to load at boot, with its parameters. */
export interface BootModule {
  /** Module name: `kvm`, `kvm0`, `kvm1`, … (`kvm<postfix>`), or `kvmgt`. */
  readonly name: string;
  /** Parameters, as `modprobe name key=value…` gives them. */
  readonly params?: Readonly<Record<string, string>>;
}

/** What a bridge host is made of (`vac start` flags or a JSON config file of this shape). */
export interface HostDescription {
  /** Logical CPUs (default 4). */
  readonly cpus?: number;
  /** CPU vendor (default `intel`). */
  readonly vendor?: 'intel' | 'amd';
  /** Modules loaded at boot, in order (default `kvm0`). */
  readonly modules?: readonly BootModule[];
  /** Symlinks made at boot: `[target, path]`, e.g. `['/dev/kvm0', '/dev/kvm']`. */
  readonly symlinks?: ReadonlyArray<readonly [string, string]>;
  /**
   * Guest instructions one KVM_RUN may execute before it returns EINTR (the KVM modules' `syncRunLimit`; default
   * the model's, 10,000,000). The bridge serves one call at a time, so a guest that never exits holds every VMM
   * for this long; a smaller limit keeps the host responsive.
   */
  readonly runLimit?: number;
}

/** Check a parsed config file. @throws `UsageError` naming the bad field */
export function parseHostDescription(x: unknown): HostDescription {
  if (typeof x !== 'object' || x === null || Array.isArray(x)) throw new UsageError('ERR_INVALID_ARG', 'host config: must be a JSON object');
  const o = x as Record<string, unknown>;
  const known = new Set(['cpus', 'vendor', 'modules', 'symlinks', 'runLimit']);
  for (const k of Object.keys(o)) if (!known.has(k)) throw new UsageError('ERR_INVALID_ARG', `host config: unknown field ${JSON.stringify(k)} (known: ${[...known].join(', ')})`);
  const out: { cpus?: number; vendor?: 'intel' | 'amd'; modules?: BootModule[]; symlinks?: Array<[string, string]>; runLimit?: number } = {};
  if (o.cpus !== undefined) {
    if (typeof o.cpus !== 'number' || !Number.isInteger(o.cpus)) throw new UsageError('ERR_INVALID_ARG', 'host config: cpus must be an integer');
    out.cpus = o.cpus;
  }
  if (o.runLimit !== undefined) {
    if (typeof o.runLimit !== 'number' || !Number.isInteger(o.runLimit) || o.runLimit < 1) throw new UsageError('ERR_INVALID_ARG', 'host config: runLimit must be a positive integer');
    out.runLimit = o.runLimit;
  }
  if (o.vendor !== undefined) {
    if (o.vendor !== 'intel' && o.vendor !== 'amd') throw new UsageError('ERR_INVALID_ARG', 'host config: vendor must be "intel" or "amd"');
    out.vendor = o.vendor;
  }
  if (o.modules !== undefined) {
    if (!Array.isArray(o.modules)) throw new UsageError('ERR_INVALID_ARG', 'host config: modules must be an array');
    out.modules = o.modules.map((m: unknown, i) => {
      if (typeof m === 'string') return parseModuleSpec(m);
      if (typeof m !== 'object' || m === null || typeof (m as { name?: unknown }).name !== 'string') throw new UsageError('ERR_INVALID_ARG', `host config: modules[${i}] must be "name key=value…" or {name, params}`);
      const mm = m as { name: string; params?: unknown };
      const params: Record<string, string> = {};
      if (mm.params !== undefined) {
        if (typeof mm.params !== 'object' || mm.params === null) throw new UsageError('ERR_INVALID_ARG', `host config: modules[${i}].params must be an object`);
        for (const [k, v] of Object.entries(mm.params)) params[k] = String(v);
      }
      return { name: mm.name, params };
    });
  }
  if (o.symlinks !== undefined) {
    if (!Array.isArray(o.symlinks) || !o.symlinks.every((l: unknown) => Array.isArray(l) && l.length === 2 && l.every((p: unknown) => typeof p === 'string'))) {
      throw new UsageError('ERR_INVALID_ARG', 'host config: symlinks must be [["/dev/kvm1", "/dev/kvm"], …]');
    }
    out.symlinks = o.symlinks as Array<[string, string]>;
  }
  return out;
}

/** `"kvm1 vmentry_l1d_flush=always"` or `"kvm1:vmentry_l1d_flush=always,vpid=0"` → a {@link BootModule}. */
export function parseModuleSpec(spec: string): BootModule {
  const [name = '', ...rest] = spec.trim().split(/[\s:,]+/);
  return { name, params: parseParams(rest) };
}

/** `['a=1', 'b']` → `{ a: '1', b: '1' }` (a bare name is a boolean parameter set to 1, as the kernel reads it). */
export function parseParams(words: readonly string[]): Record<string, string> {
  const params: Record<string, string> = {};
  for (const w of words) {
    if (w === '') continue;
    const i = w.indexOf('=');
    if (i < 0) params[w] = '1';
    else params[w.slice(0, i)] = w.slice(i + 1);
  }
  return params;
}

/** The image of a module name (`kvm<postfix>` or `kvmgt`). @throws `UsageError` for other names */
function imageFor(name: string, cache: Map<string, AnyModuleImage>, runLimit: number | undefined): AnyModuleImage {
  let image = cache.get(name);
  if (image !== undefined) return image;
  if (name === 'kvmgt') image = kvmgt as AnyModuleImage;
  else {
    const m = /^kvm([a-z0-9_]{0,16})$/.exec(name);
    // modprobe's own failure (no such module file), not the kernel's.
    if (m === null) throw new UsageError('ERR_UNKNOWN_NAME', `FATAL: Module ${name} not found in directory /lib/modules/vac`);
    image = kvm({ postfix: m[1] as string, ...(runLimit === undefined ? {} : { syncRunLimit: runLimit }) }) as AnyModuleImage;
  }
  cache.set(name, image);
  return image;
}

/** Host control with Linux-tool output. */
export class HostControl {
  /** The simulated host. */
  readonly host: Host;
  /** Every host event since boot (for `vac trace`). */
  readonly recorder: TraceRecorder;
  readonly #images = new Map<string, AnyModuleImage>();
  readonly #vendor: 'intel' | 'amd';
  readonly #runLimit: number | undefined;
  #bridge: BridgeServer | undefined;

  /** Build the host of `desc`: CPUs, vendor, boot modules and symlinks. */
  constructor(desc: HostDescription = {}) {
    this.#vendor = desc.vendor ?? 'intel';
    this.#runLimit = desc.runLimit;
    this.host = createHost({ cpus: desc.cpus ?? 4, hardware: this.#vendor === 'amd' ? amd() : intel(), groups: systemGroups() });
    this.recorder = recordEvents(this.host, { limit: 1_000_000 });
    for (const m of desc.modules ?? [{ name: 'kvm0' }]) this.modprobe(m.name, m.params ?? {});
    for (const [target, path] of desc.symlinks ?? []) this.host.symlink(target, path);
  }

  /** Attach the bridge whose calls `trace` shows. */
  attach(bridge: BridgeServer): void {
    this.#bridge = bridge;
  }

  /** `modprobe name params…`: load with dependencies. Like modprobe, loading a loaded module is a no-op. */
  modprobe(name: string, params: Readonly<Record<string, string>> = {}): string {
    if (this.host.lsmod().some((m) => m.name === name)) return '';
    this.host.modprobe(imageFor(name, this.#images, this.#runLimit), params as ParamInputs);
    return this.#warnings();
  }

  /** `insmod name params…`: load without dependencies (a missing `vac` is ENOENT, "Unknown symbol"). */
  insmod(name: string, params: Readonly<Record<string, string>> = {}): string {
    this.host.insmod(imageFor(name, this.#images, this.#runLimit), params as ParamInputs);
    return this.#warnings();
  }

  #seenWarnings = 0;
  #warnings(): string {
    const w = this.host.warnings.slice(this.#seenWarnings);
    this.#seenWarnings = this.host.warnings.length;
    return w.map((x) => `${x.message}\n`).join('');
  }

  /** `rmmod name`. */
  rmmod(name: string): string {
    this.host.rmmod(name);
    return '';
  }

  /** `lsmod`, as kmod prints it (the model has no module text: Size is 0). */
  lsmod(): string {
    let out = `${'Module'.padEnd(19)} ${'Size'.padStart(8)}  Used by\n`;
    for (const m of this.host.lsmod()) {
      out += `${m.name.padEnd(19)} ${'0'.padStart(8)}  ${m.refcount}`;
      if (m.usedBy.length > 0) out += ` ${m.usedBy.join(',')}`;
      out += '\n';
    }
    return out;
  }

  /** `ln -s target path` in /dev. */
  ln(target: string, path: string): string {
    this.host.symlink(target, path);
    return '';
  }

  /** `rm path` (a /dev symlink). */
  rm(path: string): string {
    this.host.unlink(path);
    return '';
  }

  /** `ls -l /dev` (or one path), without dates: the model has no wall clock. */
  ls(path?: string): string {
    const all = this.host.devfs.list();
    const list = path === undefined || path === '/dev' || path === '/dev/' ? all : [this.host.devfs.lstat(path)];
    return list.map((d) => this.#lsLine(d)).join('');
  }

  #user(uid: number): string {
    return uid === 0 ? 'root' : String(uid);
  }

  #group(gid: number): string {
    for (const g of ['root', 'kvm']) if (this.host.gid(g) === gid) return g;
    const sys = Object.entries(systemGroups()).find(([, id]) => id === gid);
    return sys?.[0] ?? String(gid);
  }

  #lsLine(d: DevStat): string {
    const name = d.path.slice('/dev/'.length);
    if (d.type === 'symlink') return `lrwxrwxrwx 1 root root ${d.target.length} ${name} -> ${d.target}\n`;
    return `c${modeString(d.mode)} 1 ${this.#user(d.uid)} ${this.#group(d.gid)} ${d.major}, ${d.minor} ${name}\n`;
  }

  /** `cpu N online|offline`. */
  cpu(n: number, state: 'online' | 'offline'): string {
    if (state === 'online') this.host.cpuUp(n);
    else this.host.cpuDown(n);
    return '';
  }

  /** Suspend and resume the host (`echo mem > /sys/power/state`). */
  suspend(): string {
    this.host.suspend();
    this.host.resume();
    return '';
  }

  /** The bridge's forwarded calls, one line each as strace prints them. */
  calls(): string {
    return (this.#bridge?.calls() ?? []).map(formatCall).join('');
  }

  /** The host's events, one line each. */
  events(): string {
    return this.recorder
      .events()
      .map((e) => `${e.name} ${JSON.stringify(e.payload, (_k, v: unknown) => (typeof v === 'bigint' ? `0x${v.toString(16)}` : v))}\n`)
      .join('');
  }

  /** The Chrome trace (Perfetto) JSON of the host's events since boot. */
  chromeTrace(): string {
    return JSON.stringify(toChromeTrace(this.recorder.events(), { title: 'vac bridge host' }));
  }

  /** The SVG timeline of the host's events since boot. */
  svg(): string {
    return renderTimelineSvg(this.recorder.events(), {});
  }

  /** A one-screen status: CPUs, modules, VMM processes. */
  status(): string {
    const online = this.host.cpus.filter((c) => c.online).length;
    const sessions = [...(this.#bridge?.sessions().values() ?? [])];
    return (
      `cpus: ${this.host.cpus.length} (${online} online), vendor: ${this.#vendor}\n` +
      `modules: ${this.host.lsmod().map((m) => m.name).join(' ')}\n` +
      `vmms: ${sessions.length === 0 ? 'none' : sessions.map((s) => `${s.pid} (${s.proc.fds().length} fds)`).join(', ')}\n`
    );
  }
}

function modeString(mode: number): string {
  const bits = 'rwxrwxrwx';
  let s = '';
  for (let i = 0; i < 9; i++) s += (mode >> (8 - i)) & 1 ? bits[i] : '-';
  return s;
}

/** One call as a trace line, with its time as `strace -T` shows it: `[pid tid] ioctl(5, KVM_RUN) = 0 <0.000042>` or `… = -1 EINVAL (message) <…>`. */
export function formatCall(c: CallRecord): string {
  const args = c.op === 'open' ? `"${c.what}"` : c.op === 'munmap' ? c.what : c.what === '' ? String(c.fd) : `${c.fd}, ${c.what}`;
  const res = c.error === undefined ? `= ${c.result}` : `= -1 ${c.error} (${c.message ?? ''})`;
  return `[${c.pid} ${c.tid}] ${c.op}(${args}) ${res} <${(c.us / 1e6).toFixed(6)}>\n`;
}

/** A request on the control socket. */
export interface ControlRequest {
  /** The verb: `modprobe`, `insmod`, `rmmod`, `lsmod`, `ln`, `rm`, `ls`, `cpu`, `suspend`, `trace`, `status`, `stop`. */
  readonly cmd: string;
  /** Its words. */
  readonly args: readonly string[];
}

/** A reply on the control socket. */
export interface ControlReply {
  /** Whether it worked. */
  readonly ok: boolean;
  /** What to print on stdout. */
  readonly output: string;
  /** What to print on stderr when it failed (the tool's message). */
  readonly error?: string;
  /** The errno name of a kernel failure (`EWOULDBLOCK`, …). */
  readonly code?: string;
  /** The exit status to use. */
  readonly status: number;
}

/**
 * Run one control request against `control`. Failures are replies, never throws: the message is the
 * Linux tool's (`rmmod: ERROR: Module kvm0 is in use`), the exit status 1.
 */
export function runControl(control: HostControl, req: ControlRequest): ControlReply {
  const a = req.args;
  const tool = req.cmd;
  try {
    let output: string;
    switch (req.cmd) {
      case 'modprobe':
        output = control.modprobe(need(a[0], 'module name'), parseParams(a.slice(1)));
        break;
      case 'insmod':
        output = control.insmod(need(a[0], 'module name'), parseParams(a.slice(1)));
        break;
      case 'rmmod':
        output = a.map((n) => control.rmmod(n)).join('');
        if (a.length === 0) throw new UsageError('ERR_INVALID_ARG', 'missing module name');
        break;
      case 'lsmod':
        output = control.lsmod();
        break;
      case 'ln':
        output = control.ln(need(a[0], 'target'), need(a[1], 'link path'));
        break;
      case 'rm':
        output = control.rm(need(a[0], 'path'));
        break;
      case 'ls':
        output = control.ls(a[0]);
        break;
      case 'cpu':
        output = control.cpu(Number(need(a[0], 'cpu number')), a[1] === 'online' ? 'online' : a[1] === 'offline' ? 'offline' : badState(a[1]));
        break;
      case 'suspend':
        output = control.suspend();
        break;
      case 'trace':
        output = a[0] === 'events' ? control.events() : a[0] === 'chrome' ? control.chromeTrace() : a[0] === 'svg' ? control.svg() : control.calls();
        break;
      case 'status':
        output = control.status();
        break;
      default:
        throw new UsageError('ERR_INVALID_ARG', `unknown command ${JSON.stringify(req.cmd)}`);
    }
    return { ok: true, output, status: 0 };
  } catch (e) {
    if (e instanceof KernelError) return { ok: false, output: '', error: toolMessage(tool, a, e), code: e.code, status: 1 };
    return { ok: false, output: '', error: `${tool}: ${e instanceof Error ? e.message : String(e)}`, status: 1 };
  }
}

function need(x: string | undefined, what: string): string {
  if (x === undefined || x === '') throw new UsageError('ERR_INVALID_ARG', `missing ${what}`);
  return x;
}

function badState(x: string | undefined): never {
  throw new UsageError('ERR_INVALID_ARG', `cpu state must be online or offline, got ${String(x)}`);
}

const STRERROR: Readonly<Record<string, string>> = {
  EPERM: 'Operation not permitted',
  ENOENT: 'No such file or directory',
  EEXIST: 'File exists',
  EBUSY: 'Device or resource busy',
  EWOULDBLOCK: 'Resource temporarily unavailable',
  EAGAIN: 'Resource temporarily unavailable',
  EINVAL: 'Invalid argument',
  ENOEXEC: 'Exec format error',
  EIO: 'Input/output error',
  EOPNOTSUPP: 'Operation not supported',
  EACCES: 'Permission denied',
};

/** The message the Linux tool prints for a kernel error. */
function toolMessage(tool: string, args: readonly string[], e: KernelError): string {
  const name = args[0] ?? '';
  const strerror = STRERROR[e.code] ?? e.code;
  switch (tool) {
    case 'rmmod':
      if (e.code === 'EWOULDBLOCK' || e.code === 'EAGAIN') return `rmmod: ERROR: Module ${name} is in use${e.message.includes('by:') ? ` ${e.message.slice(e.message.indexOf('by:'))}` : ''}`;
      if (e.code === 'ENOENT') return `rmmod: ERROR: Module ${name} is not currently loaded`;
      return `rmmod: ERROR: could not remove module ${name}: ${strerror}`;
    case 'modprobe':
      return `modprobe: ERROR: could not insert '${name}': ${strerror}`;
    case 'insmod':
      return `insmod: ERROR: could not insert module ${name}: ${strerror}`;
    case 'ln':
      return `ln: failed to create symbolic link '${args[1] ?? ''}': ${strerror}`;
    case 'rm':
      return `rm: cannot remove '${name}': ${strerror}`;
    default:
      return `${tool}: ${strerror} (${e.message})`;
  }
}

/** Send one request to a bridge daemon's control socket and wait for its reply. */
export async function controlCall(socketPath: string, req: ControlRequest, timeoutMs = 30_000): Promise<ControlReply> {
  return await new Promise<ControlReply>((resolve, reject) => {
    const s = createConnection(socketPath);
    let buf = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no answer from the vac bridge at ${socketPath} within ${timeoutMs} ms`));
    }, timeoutMs);
    s.on('connect', () => s.write(`${JSON.stringify(req)}\n`));
    s.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      try {
        resolve(JSON.parse(buf) as ControlReply);
      } catch {
        reject(new Error(`the vac bridge at ${socketPath} closed the connection without an answer`));
      }
    });
  });
}
