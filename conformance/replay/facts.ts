/**
 * Replaying a recorded fact on the model: the same calls, through the public API a VMM uses
 * (`host.spawn`, `open('/dev/kvm0')`, `ioctl`, `mmap`), on a host with one KVM module, and each answer
 * compared with the kernel's.
 *
 * A step whose result (`ret`, `errno`) or exit (any `kvm_run` field) differs ends the replay of its fact:
 * later steps depend on it (a vCPU that was not created, a guest that stopped elsewhere), so their
 * differences would only repeat the first one.
 *
 * @module
 */
import { O_RDWR, createHost, isKernelError, type Host, type HostOptions, type Mapping, type Process } from '@vac/core';
import { KVM_CREATE_VCPU, KVM_GET_VCPU_MMAP_SIZE, KVM_IOCTLS, KVM_RUN_OFFSETS, KvmRunView, kvm, type kvm_regs, type kvm_sregs, type kvm_vcpu_events } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { compareValue, show, type Mismatch } from './compare.js';
import type { Fact, IoctlStep, Json, Step } from './golden.js';
import { isOpaque, jsonInt, structArg, type ValueContext } from './values.js';

/** A model vendor the facts are replayed on. */
export interface ModelVendor {
  readonly name: 'intel' | 'amd';
  readonly hardware: () => HostOptions['hardware'];
}

/** Both model vendors: `intel()` from @vac/vmx and `amd()` from @vac/svm. */
export const MODEL_VENDORS: readonly ModelVendor[] = [
  { name: 'intel', hardware: () => intel() },
  { name: 'amd', hardware: () => amd() },
];

/** The device the facts are replayed on (`kvm({ postfix: '0' })`). */
export const MODEL_DEVICE = '/dev/kvm0';

/** A model host like the recording machine: `cpus` CPUs, `vac` and `kvm0` loaded. */
export function modelHost(vendor: ModelVendor, cpus: number): Host {
  const host = createHost({ cpus, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  return host;
}

/** The `kvm_run` fields the recorder writes, read from the model's mapped `kvm_run` (lazily, by getters). */
function runFields(view: KvmRunView): Record<string, unknown> {
  return {
    get exit_reason() { return view.exit_reason; },
    get io() {
      const io = view.io;
      return { direction: io.direction, size: io.size, port: io.port, count: io.count, data_offset: io.data_offset };
    },
    get pio_data() {
      const io = view.io;
      const at = Number(io.data_offset);
      return view.bytes.subarray(at, at + io.size * io.count);
    },
    get mmio() {
      const m = view.mmio;
      return { phys_addr: m.phys_addr, data: m.is_write !== 0 ? m.data.subarray(0, m.len) : [], len: m.len, is_write: m.is_write };
    },
    get internal() {
      const i = view.internal;
      const data: bigint[] = [];
      for (let k = 0; k < Math.min(i.ndata, 16); k++) data.push(i.data(k));
      return { suberror: i.suberror, ndata: i.ndata, data };
    },
    get fail_entry() { return { hardware_entry_failure_reason: view.fail_entry.hardware_entry_failure_reason }; },
    get system_event() { return { type: view.system_event.type }; },
    get debug() {
      const d = view.debug;
      return { exception: d.exception, pc: d.pc, dr6: d.dr6, dr7: d.dr7 };
    },
    get msr() {
      const m = view.msr;
      return { error: m.error, reason: m.reason, index: m.index, data: m.data };
    },
  };
}

/** The `[offset, hex]` runs where `now` differs from `before`. */
export function changedRuns(before: Uint8Array, now: Uint8Array): Array<[number, string]> {
  const runs: Array<[number, string]> = [];
  let i = 0;
  while (i < now.length) {
    if (now[i] === before[i]) {
      i++;
      continue;
    }
    const start = i;
    let hex = '';
    while (i < now.length && now[i] !== before[i]) hex += (now[i] as number).toString(16).padStart(2, '0'), i++;
    runs.push([start, hex]);
  }
  return runs;
}

function hexBytes(hex: string): Uint8Array {
  const b = new Uint8Array(hex.length / 2);
  for (let i = 0; i < b.length; i++) b[i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
  return b;
}

/** The model's side of one fact while it is replayed. */
class Replay implements ValueContext {
  readonly fds = new Map<string, number>();
  readonly bufs = new Map<string, { map: Mapping; poked: Uint8Array }>();
  readonly runs = new Map<string, KvmRunView>();
  /** Each vCPU's mapped dirty ring. */
  readonly rings = new Map<string, DataView>();
  /** What each step left (its struct argument after the call, its kvm_run fields), for `$ref`. */
  readonly results = new Map<number, { out?: unknown; run?: unknown }>();
  readonly proc: Process;

  constructor(proc: Process) {
    this.proc = proc;
    this.fds.set('sys', proc.open(MODEL_DEVICE, O_RDWR));
  }

  ring(vcpu: string): DataView {
    const ring = this.rings.get(vcpu);
    if (ring === undefined) throw new Error(`no dirty ring mapped for ${vcpu}`);
    return ring;
  }

  fd(name: string): number {
    const fd = this.fds.get(name);
    if (fd === undefined) throw new Error(`no fd named ${name}`);
    return fd;
  }

  bufferAddress(buf: string): number {
    const b = this.bufs.get(buf);
    if (b === undefined) throw new Error(`no mapping named ${buf}`);
    return b.map.addr;
  }

  reference(path: string): unknown {
    const m = /^steps\.(\d+)\.(out|run)\.(.+)$/.exec(path);
    if (m === null) throw new Error(`bad reference ${path}`);
    let x: unknown = this.results.get(Number(m[1]))?.[m[2] as 'out' | 'run'];
    for (const k of (m[3] as string).split('.')) x = typeof x === 'object' && x !== null ? (x as Record<string, unknown>)[k] : undefined;
    return x;
  }

  run(vcpu: string): KvmRunView {
    const r = this.runs.get(vcpu);
    if (r === undefined) throw new Error(`the kvm_run of ${vcpu} is not mapped`);
    return r;
  }
}

/** The model's integer argument: a number when exact, else a bigint. */
function intArg(hex: string): number | bigint {
  const v = BigInt(hex);
  return v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
}

/** Per step: FLAGS bits not to compare in that step's `kvm_regs` (the SDM leaves them undefined there). */
export type FlagsMask = (step: number) => bigint | undefined;

/** Compare a `kvm_regs` out value with `mask` bits of RFLAGS left out. */
function compareRegs(path: string, expected: Json, actual: unknown, mask: bigint, report: (path: string, expected: string, actual: string) => void): void {
  const { rflags, ...rest } = expected as { readonly rflags?: Json };
  compareValue(path, rest, actual, report);
  if (rflags === undefined) return;
  const got = (actual as { rflags?: unknown } | undefined)?.rflags;
  const want = jsonInt(rflags) & ~mask;
  const have = typeof got === 'bigint' || typeof got === 'number' ? BigInt(got) & ~mask : undefined;
  if (have !== want) report(`${path}.rflags`, `${show(want)} (undefined bits 0x${mask.toString(16)} left out)`, have === undefined ? show(got) : show(have));
}

/** Run one ioctl step on the model; returns false when the replay must stop (a different result). */
function ioctlStep(r: Replay, i: number, s: IoctlStep, report: (path: string, expected: string, actual: string) => void, mask: bigint | undefined): boolean {
  const known = (KVM_IOCTLS as Readonly<Record<string, number>>)[s.name];
  if (known !== undefined && known >>> 0 !== s.nr >>> 0) report(`steps.${i}.nr`, show(s.nr >>> 0), show(known >>> 0));
  const a = s.arg;
  const arg: unknown = 'int' in a ? intArg(a.int) : a.null === true ? null : structArg(a.struct, a.value, s.out, r);
  let ret: number | 'fd';
  let errno: string | undefined;
  try {
    const n = r.proc.ioctl(r.fd(s.fd), s.nr, arg);
    ret = s.bind !== undefined ? 'fd' : n;
    if (s.bind !== undefined) r.fds.set(s.bind, n);
  } catch (e) {
    if (!isKernelError(e)) {
      report(`steps.${i}.errno`, s.errno ?? '(success)', `threw ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`);
      return false;
    }
    ret = -1;
    errno = e.code;
  }
  const result: { out?: unknown; run?: unknown } = {};
  if (typeof arg === 'object' && arg !== null) result.out = arg;
  const view = s.name === 'KVM_RUN' ? r.runs.get(s.fd) : undefined;
  if (view !== undefined) result.run = runFields(view);
  r.results.set(i, result);
  let same = true;
  // A result the recorder marked as the host's (a TSC frequency) must be a success, whatever its value.
  const retDiffers = isOpaque(s.ret as unknown as Json) ? typeof ret !== 'number' || ret < 0 : ret !== s.ret;
  if (retDiffers) {
    report(`steps.${i}.ret`, isOpaque(s.ret as unknown as Json) ? '(a result)' : String(s.ret), String(ret));
    same = false;
  }
  if (errno !== s.errno) {
    report(`steps.${i}.errno`, s.errno ?? '(none)', errno ?? '(none)');
    same = false;
  }
  if (!same) return false;
  if (s.out !== undefined) {
    if (mask !== undefined && s.name === 'KVM_GET_REGS') compareRegs(`steps.${i}.out`, s.out, result.out, mask, report);
    else compareValue(`steps.${i}.out`, s.out, result.out, report);
  }
  if (s.run !== undefined) {
    if (result.run === undefined) {
      report(`steps.${i}.run`, 'the kvm_run fields', '(kvm_run not mapped)');
      return false;
    }
    const run = s.run as { readonly exit_reason?: Json };
    const got = (result.run as { exit_reason: number }).exit_reason;
    if (run.exit_reason !== undefined && jsonInt(run.exit_reason) !== BigInt(got)) {
      report(`steps.${i}.run.exit_reason`, show(jsonInt(run.exit_reason)), show(got));
      return false;
    }
    // A different exit (another port, address or size) means the guest is elsewhere: the rest would only repeat it.
    let exitDiffers = false;
    compareValue(`steps.${i}.run`, s.run, result.run, (p, e, a) => {
      exitDiffers = true;
      report(p, e, a);
    });
    if (exitDiffers) return false;
  }
  return true;
}

/** `KVM_DIRTY_LOG_PAGE_OFFSET` on x86, `sizeof(struct kvm_dirty_gfn)`, `KVM_DIRTY_GFN_F_DIRTY` / `_RESET`. */
const DIRTY_LOG_PAGE_OFFSET = 64;
const DIRTY_GFN_SIZE = 16;
const DIRTY_GFN_F_DIRTY = 1;
const DIRTY_GFN_F_RESET = 2;

/** The published entries of `ring` from index `from` on (as the recorder writes them: `"flags slot 0xoffset"`). */
function ringEntries(ring: DataView, from: number): string[] {
  const n = ring.byteLength / DIRTY_GFN_SIZE;
  const out: string[] = [];
  for (let k = 0; k < n; k++) {
    const at = ((from + k) % n) * DIRTY_GFN_SIZE;
    const flags = ring.getUint32(at, true);
    if ((flags & DIRTY_GFN_F_DIRTY) === 0) break;
    out.push(`${flags} ${ring.getUint32(at + 4, true)} 0x${ring.getBigUint64(at + 8, true).toString(16)}`);
  }
  return out;
}

/** Run one non-ioctl step on the model. */
function otherStep(r: Replay, i: number, s: Exclude<Step, IoctlStep>, report: (path: string, expected: string, actual: string) => void): void {
  switch (s.op) {
    case 'mmap': {
      const map = r.proc.mmapAnonymous(s.size);
      r.bufs.set(s.buf, { map, poked: new Uint8Array(map.bytes.length) });
      return;
    }
    case 'map-run': {
      const size = r.proc.ioctl(r.fd('sys'), KVM_GET_VCPU_MMAP_SIZE, 0);
      const m = r.proc.mmap(r.fd(s.vcpu), size);
      r.runs.set(s.vcpu, new KvmRunView(m.bytes.buffer, m.bytes.byteOffset));
      return;
    }
    case 'run-set':
      r.run(s.vcpu)[s.field] = s.value;
      return;
    case 'sync-set': {
      const v = r.run(s.vcpu);
      v.view.setBigUint64(KVM_RUN_OFFSETS.kvm_valid_regs, BigInt(s.valid), true);
      v.view.setBigUint64(KVM_RUN_OFFSETS.kvm_dirty_regs, BigInt(s.dirty), true);
      return;
    }
    case 'sync-write': {
      const v = r.run(s.vcpu);
      if (s.set === 'regs') v.setSyncRegs(structArg('kvm_regs', s.value, undefined, r) as kvm_regs);
      else if (s.set === 'sregs') v.setSyncSregs(structArg('kvm_sregs', s.value, undefined, r) as kvm_sregs);
      else v.setSyncEvents(structArg('kvm_vcpu_events', s.value, undefined, r) as kvm_vcpu_events);
      return;
    }
    case 'sync-read': {
      const v = r.run(s.vcpu);
      const words = { valid: v.view.getBigUint64(KVM_RUN_OFFSETS.kvm_valid_regs, true), dirty: v.view.getBigUint64(KVM_RUN_OFFSETS.kvm_dirty_regs, true) };
      compareValue(`steps.${i}`, { valid: s.valid, dirty: s.dirty }, words, report);
      compareValue(`steps.${i}.regs`, s.regs, v.getSyncRegs(), report);
      compareValue(`steps.${i}.sregs`, s.sregs, v.getSyncSregs(), report);
      compareValue(`steps.${i}.events`, s.events, v.getSyncEvents(), report);
      return;
    }
    case 'poke': {
      const b = r.bufs.get(s.buf);
      if (b === undefined) throw new Error(`no mapping named ${s.buf}`);
      const bytes = hexBytes(s.hex);
      b.map.bytes.set(bytes, s.offset);
      b.poked.set(bytes, s.offset);
      return;
    }
    case 'pio-data': {
      const v = r.run(s.vcpu);
      v.bytes.set(hexBytes(s.hex), Number(v.io.data_offset));
      return;
    }
    case 'mmio-data':
      r.run(s.vcpu).mmio.data.set(hexBytes(s.hex));
      return;
    case 'msr-data': {
      const msr = r.run(s.vcpu).msr;
      msr.error = s.error;
      msr.data = BigInt(s.data);
      return;
    }
    case 'create-vcpus': {
      let created = 0;
      let errno: string | undefined;
      for (let id = s.first; id < s.first + s.count; id++) {
        try {
          r.proc.close(r.proc.ioctl(r.fd(s.fd), KVM_CREATE_VCPU, id));
          created++;
        } catch (e) {
          if (!isKernelError(e)) throw e;
          errno = e.code;
          break;
        }
      }
      if (created !== s.created) report(`steps.${i}.created`, String(s.created), String(created));
      if (errno !== s.errno) report(`steps.${i}.errno`, s.errno ?? '(none)', errno ?? '(none)');
      return;
    }
    case 'close':
      r.proc.close(r.fd(s.fd));
      return;
    case 'map-ring': {
      const m = r.proc.mmap(r.fd(s.vcpu), Number(BigInt(s.size)), DIRTY_LOG_PAGE_OFFSET * 4096);
      r.rings.set(s.vcpu, new DataView(m.bytes.buffer, m.bytes.byteOffset, m.bytes.byteLength));
      return;
    }
    case 'ring': {
      const got = ringEntries(r.ring(s.vcpu), s.from).join(', ');
      const want = s.entries.join(', ');
      if (got !== want) report(`steps.${i}.entries`, want === '' ? '(none)' : want, got === '' ? '(none)' : got);
      return;
    }
    case 'ring-harvest': {
      const ring = r.ring(s.vcpu);
      const n = ring.byteLength / DIRTY_GFN_SIZE;
      for (let k = 0; k < s.count; k++) ring.setUint32(((s.from + k) % n) * DIRTY_GFN_SIZE, DIRTY_GFN_F_RESET, true);
      return;
    }
    case 'arch-prctl': {
      const out = new BigUint64Array(1);
      let ret: number;
      let errno: string | undefined;
      try {
        ret = r.proc.archPrctl(s.option, s.arg === undefined ? out : BigInt(s.arg));
      } catch (e) {
        if (!isKernelError(e)) throw e;
        ret = -1;
        errno = e.code;
      }
      if (ret !== s.ret) report(`steps.${i}.ret`, String(s.ret), String(ret));
      if (errno !== s.errno) report(`steps.${i}.errno`, s.errno ?? '(none)', errno ?? '(none)');
      if (s.out !== undefined && ret >= 0 && BigInt(s.out) !== out[0]) report(`steps.${i}.out`, s.out, `0x${out[0]!.toString(16)}`);
      return;
    }
    case 'mem': {
      const b = r.bufs.get(s.buf);
      if (b === undefined) throw new Error(`no mapping named ${s.buf}`);
      const got = changedRuns(b.poked, b.map.bytes).map(([o, h]) => `${o.toString(16)}:${h}`).join(' ');
      const want = s.changes.map(([o, h]) => `${o.toString(16)}:${h}`).join(' ');
      if (got !== want) report(`steps.${i}.changes`, want === '' ? '(none)' : want, got === '' ? '(none)' : got);
      return;
    }
    default: {
      const unknown: never = s;
      throw new Error(`unknown step ${JSON.stringify(unknown)}`);
    }
  }
}

/** The name of step `s` for messages. */
export function stepName(s: Step | undefined): string {
  if (s === undefined) return '?';
  return s.op === 'ioctl' ? s.name : s.op;
}

/**
 * Replay `fact` on `host` (a {@link modelHost} of `vendor`) and return every difference from the kernel.
 * `flagsMask` gives, for a step, the FLAGS bits its `kvm_regs` may differ in (guest programs).
 */
export function replayFact(host: Host, vendor: ModelVendor['name'], fact: Fact, flagsMask?: FlagsMask): Mismatch[] {
  const out: Mismatch[] = [];
  const proc = host.spawn({ name: 'conformance' });
  let current = -1;
  const report = (path: string, expected: string, actual: string): void => {
    out.push({ fact: fact.id, vendor, path, step: stepName(fact.steps[current]), expected, actual });
  };
  try {
    const r = new Replay(proc);
    for (let i = 0; i < fact.steps.length; i++) {
      current = i;
      const s = fact.steps[i] as Step;
      if (s.op === 'ioctl') {
        if (!ioctlStep(r, i, s, report, flagsMask?.(i))) break;
        continue;
      }
      try {
        otherStep(r, i, s, report);
      } catch (e) {
        if (!isKernelError(e)) throw e;
        report(`steps.${i}.errno`, '(success)', e.code);
        break;
      }
    }
  } finally {
    proc.kill();
  }
  return out;
}
