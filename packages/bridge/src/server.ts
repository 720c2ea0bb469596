/**
 * The bridge server: a Unix socket on which the preload library of each real VMM forwards its /dev/kvm*
 * calls to one simulated host. Each real VMM process is a simulated `Process` with the real process's uid,
 * groups and capabilities (from /proc/PID/status), so /dev permissions apply as on Linux; each call is
 * forwarded to that process's own syscall (`open`, `ioctl`, `mmap`, `munmap`, `close`, `dup`) and the model
 * answers — the bridge adds no answer of its own. Its only work is moving bytes: argument structs (through
 * `codec.ts`), the vCPUs' kvm_run areas, and guest RAM (through `guest-memory.ts`).
 *
 * Calls are served one at a time, in arrival order, on Node's event loop; a KVM_RUN holds the loop until the
 * model returns (the model's KVM_RUN is synchronous and bounded).
 *
 * @module
 */
import { randomBytes } from 'node:crypto';
import { chmodSync, readFileSync, writeSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { EFD_CLOEXEC, KernelError, eventFdOf, eventfd, type Capability, type EventFd, type Host, type OpenFile, type Process } from '@vac/core';
import { _IOC_DIR, _IOC_SIZE, KVM_CHECK_EXTENSION, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_STATS_FD, KVM_RUN, KVM_SET_USER_MEMORY_REGION, KVM_VCPU_MMAP_SIZE, capabilityName, ioctlName, vcpuOf } from '@vac/kvm';
import { installLazyMemory } from './lazy-memory.js';
import { forEachChangedRun } from './byte-runs.js';
import { decodeArg, decodeMemoryRegion, userPointers } from './codec.js';
import { GuestMemoryMirror, type SyncRange } from './guest-memory.js';
import { VcpuRunner, type RunHandle, type TimePacing } from './vcpu-runner.js';
import { RequestFifo, fifoPath, type SpinSettings } from './request-fifo.js';
import { warmUp } from './warm-up.js';
import {
  FdKind,
  HELLO_LIFE,
  HELLO_RELAY,
  IOCTL_HAS_INPUT,
  IOCTL_HAS_RUN,
  IOCTL_INPUT_ZEROED,
  IOCTL_RUN_PATCHES,
  Op,
  ProtocolError,
  RequestReader,
  encodeReply,
  encodeRequest,
  opName,
  type Reply,
  type Request,
} from './protocol.js';

const EIO = 5;
const ESRCH = 3;
const EPROTO = 71;

/** Requests whose result is a new fd. */
const FD_RESULTS: ReadonlySet<number> = new Set([KVM_CREATE_VM, KVM_CREATE_VCPU, KVM_GET_STATS_FD]);

/** One forwarded call, as `vac trace` shows it. */
export interface CallRecord {
  /** Order of arrival. */
  readonly seq: number;
  /** Real pid of the VMM. */
  readonly pid: number;
  /** Real thread id. */
  readonly tid: number;
  /** `open`, `ioctl`, … */
  readonly op: string;
  /** The simulated fd. */
  readonly fd: number;
  /** For an ioctl: the Linux name of the request (or its `_IOC` macro), for an open: the path. */
  readonly what: string;
  /** The result on success. */
  readonly result: number | undefined;
  /** The errno name on failure (`'EINVAL'`, …). */
  readonly error: string | undefined;
  /** The model's message on failure. */
  readonly message: string | undefined;
  /** Microseconds from the request's arrival to its reply (a KVM_RUN's includes the time its vCPU slept). */
  readonly us: number;
  /** When the request arrived: milliseconds since the bridge process started (`performance.now()`, µs precision). */
  readonly at: number;
  /** How the request came: on its connection's socket, or on the request FIFO (`request-fifo.ts`). */
  readonly via: 'socket' | 'fifo';
}

/** Options of {@link BridgeServer}. */
export interface BridgeServerOptions {
  /** The simulated host every VMM runs on. */
  readonly host: Host;
  /** Path of the Unix socket to listen on. */
  readonly socketPath: string;
  /** How many call records to keep at least (the newest; up to a quarter more between trims). Default 100000. */
  readonly keepCalls?: number;
  /** Called with each finished call (after the reply is sent). */
  readonly onCall?: (call: CallRecord) => void;
  /** Called with messages worth a log line (a VMM gone, a protocol error, a memory warning). */
  readonly log?: (line: string) => void;
  /** How a halted vCPU's wait for a timer maps to wall time (`vcpu-runner.ts`); default `'wall'`. */
  readonly pacing?: TimePacing;
  /**
   * How the main thread polls the request FIFO after a served request before it blocks (`request-fifo.ts`, "spin,
   * then block"). Default: `spinSettings(process.env)` — `VAC_NO_SPIN`, `VAC_SPIN_US`, `VAC_SPIN_ALWAYS`.
   */
  readonly spin?: SpinSettings;
  /**
   * Whether {@link BridgeServer.listen} first runs the model's code for a migration's downtime calls on a scratch
   * host (`warm-up.ts`), so that a VMM's first such calls do not pay for V8's compilation. Default: true unless
   * `VAC_NO_WARM_UP` is set (not empty).
   */
  readonly warmUp?: boolean;
}

/** Real credentials of a process, as /proc/PID/status gives them. */
export interface Credentials {
  /** Effective uid. */
  readonly uid: number;
  /** Effective gid. */
  readonly gid: number;
  /** Supplementary gids. */
  readonly groups: readonly number[];
  /** The capabilities the model checks that the process has (CapEff). */
  readonly caps: readonly Capability[];
  /** The command name. */
  readonly name: string;
}

const CAP_BITS: ReadonlyArray<readonly [Capability, number]> = [
  ['CAP_DAC_OVERRIDE', 1],
  ['CAP_SYS_MODULE', 16],
  ['CAP_SYS_ADMIN', 21],
  ['CAP_SYS_BOOT', 22],
  ['CAP_SYS_NICE', 23],
];

/** Parse /proc/PID/status text. */
export function parseStatus(text: string): Credentials {
  const field = (name: string): string => {
    const m = new RegExp(`^${name}:\\s*(.*)$`, 'm').exec(text);
    if (m === null) throw new Error(`/proc status has no ${name} line`);
    return (m[1] as string).trim();
  };
  const ids = (name: string): number[] => field(name).split(/\s+/).filter(Boolean).map(Number);
  const capEff = BigInt(`0x${field('CapEff')}`);
  return {
    uid: ids('Uid')[1] ?? 0,
    gid: ids('Gid')[1] ?? 0,
    groups: ids('Groups'),
    caps: CAP_BITS.filter(([, bit]) => (capEff >> BigInt(bit)) & 1n).map(([c]) => c),
    name: field('Name'),
  };
}

interface VcpuArea {
  /** The model's kvm_run bytes (the vCPU's mmap area). */
  readonly model: Uint8Array;
  /** What the VMM's copy holds, as far as the bridge knows. */
  readonly shadow: Uint8Array;
}

/** A real VMM process and its simulated twin. */
export class Session {
  /** Real pid. */
  readonly pid: number;
  /** The simulated process. */
  readonly proc: Process;
  /** Its guest RAM mirror. */
  readonly memory: GuestMemoryMirror;
  /** @internal A VM file's memslots as the bridge saw them set: slot id → the VMM range. */
  readonly slots = new WeakMap<OpenFile, Map<number, SyncRange>>();
  /** @internal A vCPU file's kvm_run: the model's bytes, and what the VMM's copy holds as far as the bridge knows. */
  readonly areas = new WeakMap<OpenFile, { readonly model: Uint8Array; readonly shadow: Uint8Array }>();
  /** @internal The eventfd relays: relay id → the simulated twin of a real eventfd of the VMM. */
  readonly relays = new Map<number, { readonly fd: number; readonly ctx: EventFd; readonly unwait: () => void }>();
  /** @internal The connection of the library's relay thread (where the model's eventfd signals are sent). */
  relayConn: Socket | undefined;
  /** @internal KVM_RUN calls of this process in progress. */
  running = 0;
  /** @internal Calls of this process waiting for a vCPU's mutex (another of its threads is in KVM_RUN on that vCPU). */
  waiting = 0;

  /** @internal */
  constructor(pid: number, proc: Process) {
    this.pid = pid;
    this.proc = proc;
    this.memory = new GuestMemoryMirror(pid, proc);
  }
}

interface Conn {
  readonly socket: Socket;
  readonly reader: RequestReader;
  session: Session | undefined;
  tid: number;
  life: boolean;
  /** The KVM_RUN this thread waits in. */
  run: RunHandle | undefined;
  /** The simulated CPU this thread's KVM_RUNs run on (chosen at its first). */
  cpu: number | undefined;
  /** Its id and secret token on the request FIFO (a thread connection after its HELLO; 0n: none). */
  fifoId: number;
  fifoToken: bigint;
  /** Where its request being served came from (one at a time per connection). */
  via: 'socket' | 'fifo';
}

function errnoOf(e: unknown): { errno: number; code: string; message: string } {
  if (e instanceof KernelError) return { errno: e.errno, code: e.code, message: e.message };
  const message = e instanceof Error ? e.message : String(e);
  return { errno: EIO, code: 'EIO', message: `bridge: ${message}` };
}

/** The bridge: serves the preload library's calls against one simulated host. */
export class BridgeServer {
  /** The simulated host. */
  readonly host: Host;
  /** The socket path. */
  readonly socketPath: string;
  readonly #server: Server;
  readonly #sessions = new Map<number, Session>();
  readonly #conns = new Set<Conn>();
  readonly #calls: CallRecord[] = [];
  readonly #keep: number;
  readonly #onCall: ((c: CallRecord) => void) | undefined;
  readonly #log: (line: string) => void;
  readonly #runner: VcpuRunner;
  readonly #spin: SpinSettings | undefined;
  readonly #warmUp: boolean;
  /** The request FIFO (`request-fifo.ts`), from {@link BridgeServer.listen} on. */
  #fifo: RequestFifo | undefined;
  /** Thread connections by their FIFO id. */
  readonly #fifoConns = new Map<number, Conn>();
  #nextFifoId = 1;
  #seq = 0;
  /** When the request being served arrived (`performance.now()`). */
  #arrived = 0;
  /**
   * The vCPUs with a KVM_RUN in progress through the bridge (`vcpu->mutex` held), each with the calls waiting for
   * it in order of arrival (a closure that serves one).
   */
  readonly #vcpuBusy = new WeakMap<object, Array<() => void>>();

  /** @param opts - host, socket path, hooks */
  constructor(opts: BridgeServerOptions) {
    this.host = opts.host;
    this.#runner = new VcpuRunner(opts.host, opts.pacing);
    this.#spin = opts.spin;
    this.#warmUp = opts.warmUp ?? (process.env.VAC_NO_WARM_UP === undefined || process.env.VAC_NO_WARM_UP === '');
    this.socketPath = opts.socketPath;
    this.#keep = opts.keepCalls ?? 100_000;
    this.#onCall = opts.onCall;
    this.#log = opts.log ?? (() => {});
    this.#server = createServer((s) => this.#accept(s));
  }

  /** Start listening (a stale socket file at the path is replaced). */
  async listen(): Promise<void> {
    if (this.#warmUp) {
      try {
        const w = warmUp(this.host.hardware.model);
        this.#log(`bridge: warmed up a migration's calls on a scratch host: ${w.calls} calls in ${w.ms.toFixed(0)} ms`);
      } catch (e) {
        // A hardware model on which no KVM module loads or no VM can be made: the served host will say so to its VMMs.
        this.#log(`bridge: no warm-up (${e instanceof Error ? e.message : String(e)})`);
      }
    }
    await unlink(this.socketPath).catch(() => {});
    await new Promise<void>((resolve, reject) => {
      this.#server.once('error', reject);
      this.#server.listen(this.socketPath, () => {
        this.#server.off('error', reject);
        // Any local user may connect: who may open /dev/kvmX is the model's decision (its permissions), as on Linux.
        chmodSync(this.socketPath, 0o666);
        resolve();
      });
    });
    try {
      this.#fifo = new RequestFifo(fifoPath(this.socketPath), {
        deliver: (id, token, bytes) => this.#fromFifo(id, token, bytes),
        mayBlock: () => !this.#runner.wantsTurn,
        log: this.#log,
        ...(this.#spin === undefined ? {} : { spin: this.#spin }),
      });
    } catch (e) {
      // No FIFO (no mkfifo, a file in the way): every request on the sockets, as the library then sends them.
      this.#log(`bridge: no request FIFO (${e instanceof Error ? e.message : String(e)}); requests go on the sockets`);
    }
  }

  /** A request from the FIFO: served as if it came on its connection's socket (where its reply goes). */
  #fromFifo(id: number, token: bigint, bytes: Buffer): void {
    const conn = this.#fifoConns.get(id);
    if (conn === undefined || conn.fifoToken !== token || conn.socket.destroyed) {
      this.#log(`bridge: a request on the FIFO for connection ${id} with ${conn === undefined ? 'no such connection' : 'a wrong token'}; dropped`);
      return;
    }
    this.#data(conn, bytes, 'fifo');
  }

  /** Stop: close every connection (the VMMs' calls then fail with EIO) and the socket. */
  async close(): Promise<void> {
    this.#runner.close();
    this.#fifo?.close();
    for (const c of this.#conns) c.socket.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
    for (const s of this.#sessions.values()) s.memory.close();
  }

  /** The live VMM sessions by real pid. */
  sessions(): ReadonlyMap<number, Session> {
    return this.#sessions;
  }

  /** The calls recorded so far (oldest first; at least the last `keepCalls`, at most a quarter more). */
  calls(): readonly CallRecord[] {
    return this.#calls;
  }

  #accept(socket: Socket): void {
    const conn: Conn = { socket, reader: new RequestReader(), session: undefined, tid: 0, life: false, run: undefined, cpu: undefined, fifoId: 0, fifoToken: 0n, via: 'socket' };
    this.#conns.add(conn);
    socket.on('data', (chunk: Buffer) => this.#data(conn, chunk, 'socket'));
    socket.on('error', () => {});
    socket.on('close', () => {
      this.#conns.delete(conn);
      if (conn.fifoId !== 0) this.#fifoConns.delete(conn.fifoId);
      if (conn.life && conn.session !== undefined) this.#endSession(conn.session, 'its process exited');
    });
  }

  #data(conn: Conn, chunk: Buffer, via: 'socket' | 'fifo'): void {
    conn.via = via;
    conn.reader.push(chunk);
    for (;;) {
      let req: Request | undefined;
      try {
        req = conn.reader.next();
      } catch (e) {
        const message = e instanceof ProtocolError ? e.message : String(e);
        this.#log(`bridge: malformed message from ${conn.session?.pid ?? 'an unknown peer'}: ${message}; connection closed`);
        conn.socket.end(encodeReply({ errno: EPROTO, result: -1, message }));
        conn.socket.destroy();
        return;
      }
      if (req === undefined) break;
      const reply = this.#serve(conn, req);
      if (reply !== undefined) sendReply(conn.socket, reply);
    }
    // What was served may wake a vCPU waiting in KVM_RUN (KVM_IRQ_LINE, an irqfd's signal, a signal).
    this.#runner.poke();
  }

  #endSession(s: Session, why: string): void {
    if (this.#sessions.get(s.pid) !== s) return;
    this.#sessions.delete(s.pid);
    s.memory.close();
    if (s.proc.alive) s.proc.kill();
    this.#log(`bridge: pid ${s.pid} (${s.proc.name}): ${why}; its simulated process was killed`);
  }

  #serve(conn: Conn, req: Request, arrived = performance.now()): Buffer | undefined {
    this.#arrived = arrived;
    if (req.op === Op.HELLO) return encodeReply(this.#hello(conn, req));
    const s = conn.session;
    if (s === undefined) return encodeReply({ errno: EPROTO, result: -1, message: 'no HELLO on this connection' });
    if (!s.proc.alive) return req.op === Op.SIGNAL ? undefined : encodeReply({ errno: ESRCH, result: -1, message: 'the simulated process is gone' });
    if (req.op === Op.SIGNAL) {
      this.#signal(conn, s, req);
      return undefined;
    }
    if (req.op === Op.INTERRUPT) {
      // A signal to a thread outside KVM_RUN (its call returned meanwhile) changes nothing here.
      if (conn.run !== undefined) {
        conn.run.interrupt();
        this.#record(conn, req, 'signal to the thread in KVM_RUN', { errno: 0, result: 0 });
      }
      return undefined;
    }
    let what = '';
    let reply: Reply;
    try {
      switch (req.op) {
        case Op.OPEN: {
          what = Buffer.from(req.payload).toString('utf8');
          const fd = s.proc.open(what, Number(req.a & 0xffffffffn));
          reply = { errno: 0, result: fd, ...this.#fdKind(s.proc, fd) };
          break;
        }
        case Op.CLOSE:
          s.proc.close(req.fd);
          this.#dropRelay(s, req.fd);
          reply = { errno: 0, result: 0 };
          break;
        case Op.DUP:
          reply = { errno: 0, result: s.proc.dup(req.fd) };
          break;
        case Op.MMAP: {
          what = `${req.a} bytes at offset ${req.b}`;
          const m = s.proc.mmap(req.fd, Number(req.a), Number(req.b));
          reply = { errno: 0, result: m.addr };
          break;
        }
        case Op.MUNMAP:
          what = `0x${req.a.toString(16)}, ${req.b}`;
          s.proc.munmap(Number(req.a), Number(req.b));
          reply = { errno: 0, result: 0 };
          break;
        case Op.EVENTFD:
          what = `relay ${req.a}`;
          reply = { errno: 0, result: this.#relay(s, Number(req.a)) };
          break;
        case Op.IOCTL: {
          if (this.#waitForVcpu(conn, s, req, arrived)) return undefined;
          const request = Number(req.a & 0xffffffffn);
          what = describeIoctl(request, req.b);
          if (request === KVM_RUN && this.#startRun(conn, s, req, what)) return undefined;
          reply = this.#ioctl(s, req, request);
          break;
        }
        default:
          reply = { errno: EPROTO, result: -1, message: `unknown operation ${req.op}` };
      }
    } catch (e) {
      const { errno, message } = errnoOf(e);
      reply = { errno, result: -1, message };
    }
    this.#record(conn, req, what, reply);
    return encodeReply(reply);
  }

  /**
   * An ioctl on a vCPU fd whose vCPU is inside a KVM_RUN (another thread's): Linux's `kvm_vcpu_ioctl` takes
   * `vcpu->mutex` with `mutex_lock_killable` first, for every vCPU ioctl on x86, so the call sleeps until that
   * KVM_RUN returns — it does not fail (the model's direct call would answer EBUSY: it cannot sleep). The request
   * is kept and served, in order of arrival, when the KVM_RUN has replied. Only a fatal signal ends such a wait
   * on Linux (the process dies, and with it this connection). True when the request was kept.
   */
  #waitForVcpu(conn: Conn, s: Session, req: Request, arrived: number): boolean {
    let vcpu: object;
    try {
      const file = s.proc.file(req.fd);
      if (!file.path.startsWith('anon_inode:kvm-vcpu')) return false;
      vcpu = vcpuOf(s.proc, req.fd);
    } catch {
      return false; // a bad fd: answered as usual
    }
    const queue = this.#vcpuBusy.get(vcpu);
    if (queue === undefined) return false;
    s.waiting++;
    queue.push(() => {
      s.waiting--;
      if (conn.socket.destroyed) return;
      const reply = this.#serve(conn, req, arrived);
      if (reply !== undefined) sendReply(conn.socket, reply);
    });
    return true;
  }

  /** KVM_RUN on `vcpu` replied: serve the calls that waited for its mutex, until one of them is a KVM_RUN again. */
  #releaseVcpu(vcpu: object): void {
    const queue = this.#vcpuBusy.get(vcpu);
    this.#vcpuBusy.delete(vcpu);
    while (queue !== undefined && queue.length > 0) {
      (queue.shift() as () => void)();
      const again = this.#vcpuBusy.get(vcpu);
      if (again !== undefined) {
        again.unshift(...queue); // a KVM_RUN took the mutex: the rest wait for it, still first in line
        return;
      }
    }
    this.#runner.poke();
  }

  /**
   * A new relay: the simulated eventfd that stands for a real eventfd of the VMM. When the model signals it
   * (`eventfd_signal`: an ioeventfd matched, a resamplefd was notified) and no kernel waiter took the count (an
   * irqfd on the same eventfd does), the count is sent to the library, which adds it to the real eventfd.
   */
  #relay(s: Session, id: number): number {
    if (s.relays.has(id)) throw new ProtocolError(`relay ${id} exists already`);
    const fd = eventfd(s.proc, 0, EFD_CLOEXEC);
    const ctx = eventFdOf(s.proc.file(fd)) as EventFd;
    let seen = ctx.signals;
    const unwait = ctx.addWaiter((why) => {
      if (why !== 'in' || ctx.signals === seen) return; // a write by the relay itself, or the file's release
      seen = ctx.signals;
      queueMicrotask(() => {
        if (ctx.count === 0n || s.relayConn === undefined) return;
        s.relayConn.write(encodeRequest(Op.EVENTFD_WRITE, fd, 0, BigInt(id), ctx.take(), 0n));
      });
    });
    s.relays.set(id, { fd, ctx, unwait });
    return fd;
  }

  /**
   * Simulated fd `fd` was closed: if it was a relay's twin, the VMM released the real eventfd (the library saw its
   * last fd closed), and the relay is no more. The twin's file release did what Linux's does (EPOLLHUP: an irqfd on
   * it shut down); what still holds its context (an ioeventfd) signals no one now.
   */
  #dropRelay(s: Session, fd: number): void {
    for (const [id, r] of s.relays) {
      if (r.fd !== fd) continue;
      r.unwait();
      s.relays.delete(id);
    }
  }

  /** The VMM wrote `count` into the real eventfd of relay `id` (an irqfd's): the same write on its twin. */
  #signal(conn: Conn, s: Session, req: Request): void {
    const relay = s.relays.get(Number(req.a));
    let reply: Reply = { errno: 0, result: 8 };
    try {
      if (relay === undefined) throw new ProtocolError(`no relay ${req.a}`);
      const bytes = new Uint8Array(8);
      new DataView(bytes.buffer).setBigUint64(0, req.b, true);
      s.proc.write(relay.fd, bytes);
    } catch (e) {
      const { errno, message } = errnoOf(e);
      reply = { errno, result: -1, message };
      this.#log(`bridge: pid ${s.pid}: relay ${req.a}: ${message}`);
    }
    this.#record(conn, req, `relay ${req.a} +${req.b}`, reply);
  }

  #record(conn: Conn, req: Request, what: string, reply: Reply, since = this.#arrived): void {
    const rec: CallRecord = {
      seq: this.#seq++,
      pid: conn.session?.pid ?? 0,
      tid: conn.tid,
      op: opLabel(req.op),
      fd: req.fd,
      what,
      result: reply.errno === 0 ? Number(reply.result) : undefined,
      error: reply.errno === 0 ? undefined : errnoName(reply.errno),
      message: reply.errno === 0 ? undefined : reply.message,
      us: Math.round((performance.now() - since) * 1000),
      at: Math.round(since * 1000) / 1000,
      via: conn.via,
    };
    this.#calls.push(rec);
    // Trimmed in batches (a quarter of `keepCalls` at a time): one splice per call would move the whole array each
    // time once it is full, and a live QEMU makes hundreds of thousands of calls.
    if (this.#calls.length > this.#keep + Math.max(1, this.#keep >> 2)) this.#calls.splice(0, this.#calls.length - this.#keep);
    this.#onCall?.(rec);
  }

  #hello(conn: Conn, req: Request): Reply {
    const pid = Number(req.a);
    conn.tid = Number(req.b);
    let s = this.#sessions.get(pid);
    if ((req.flags & HELLO_LIFE) !== 0) {
      if (s !== undefined) this.#endSession(s, 'a new process image took its pid');
      let creds: Credentials;
      try {
        creds = parseStatus(readFileSync(`/proc/${pid}/status`, 'utf8'));
      } catch (e) {
        return { errno: ESRCH, result: -1, message: `no process ${pid}: ${String(e)}` };
      }
      const groupName = (gid: number): string | undefined => this.#groupName(gid);
      const group = groupName(creds.gid);
      const groups = creds.groups.map(groupName).filter((g): g is string => g !== undefined);
      const proc = this.host.spawn({ uid: creds.uid, ...(group === undefined ? {} : { group }), groups, caps: creds.caps, name: `${creds.name}[${pid}]` });
      s = new Session(pid, proc);
      this.#sessions.set(pid, s);
      conn.life = true;
    }
    if (s === undefined) return { errno: ESRCH, result: -1, message: `pid ${pid} has no life connection` };
    conn.session = s;
    if ((req.flags & HELLO_RELAY) !== 0) s.relayConn = conn.socket;
    if ((req.flags & (HELLO_LIFE | HELLO_RELAY)) !== 0 || this.#fifo === undefined || conn.fifoId !== 0) return { errno: 0, result: 0 };
    // A thread connection: its id and token on the request FIFO (u32 id, u32 0, u64 token).
    conn.fifoId = this.#nextFifoId++;
    conn.fifoToken = randomBytes(8).readBigUInt64LE(0) | 1n;
    this.#fifoConns.set(conn.fifoId, conn);
    const out = new Uint8Array(16);
    const v = new DataView(out.buffer);
    v.setUint32(0, conn.fifoId, true);
    v.setBigUint64(8, conn.fifoToken, true);
    return { errno: 0, result: 0, out };
  }

  #groupName(gid: number): string | undefined {
    const g = groupTable().get(gid);
    if (g === undefined) return undefined;
    try {
      return this.host.gid(g) === gid ? g : undefined;
    } catch {
      return undefined;
    }
  }

  #fdKind(proc: Process, fd: number): { fdKind: number; mmapSize?: number } {
    const path = proc.file(fd).path;
    if (path.startsWith('anon_inode:kvm-vcpu')) return { fdKind: FdKind.VCPU, mmapSize: KVM_VCPU_MMAP_SIZE };
    if (path === 'anon_inode:kvm-vm') return { fdKind: FdKind.VM };
    if (path.startsWith('/dev/')) return { fdKind: FdKind.SYSTEM };
    return { fdKind: FdKind.OTHER };
  }

  #area(s: Session, file: OpenFile): VcpuArea | undefined {
    let a = s.areas.get(file);
    if (a === undefined) {
      if (!file.path.startsWith('anon_inode:kvm-vcpu') || file.fops.mmap === undefined) return undefined;
      // The driver's own mmap answer: the very bytes a mapping of the vCPU fd shows (no mapping is made).
      const model = file.fops.mmap.call(file.fops, file, KVM_VCPU_MMAP_SIZE, 0, s.proc);
      a = { model, shadow: new Uint8Array(model.length) };
      s.areas.set(file, a);
    }
    return a;
  }

  /**
   * KVM_RUN on a vCPU fd: in a simulated thread (`vcpu-runner.ts`), so it may sleep (a halted vCPU) while the
   * bridge serves everyone else; the reply is sent when it returns. Returns false for a KVM_RUN on any other
   * fd (the model answers it at once).
   */
  #startRun(conn: Conn, s: Session, req: Request, what: string): boolean {
    const file = s.proc.file(req.fd);
    const area = this.#area(s, file);
    if (area === undefined) return false;
    runInput(area, req);
    // The guest's writes so far go out, and the pages it will touch come in afresh (the VMM may have written them).
    const vcpu = vcpuOf(s.proc, req.fd);
    installLazyMemory(vcpu.vm, s.memory);
    s.memory.sync();
    s.running++;
    this.#vcpuBusy.set(vcpu, []);
    const arrived = this.#arrived;
    conn.cpu ??= this.#runner.pickCpu();
    conn.run = this.#runner.start(s.proc, req.fd, KVM_RUN, decodeArg(KVM_RUN, req.b, undefined, false).arg, conn.cpu, `${s.proc.name}/${conn.tid}`, {
      sync: () => {
        s.memory.sync();
      },
      done: (result, error) => {
        s.running--;
        conn.run = undefined;
        s.memory.sync();
        const runPatches = diffArea(area);
        let reply: Reply;
        if (error === undefined) reply = { errno: 0, result: result ?? 0, runPatches };
        else {
          const { errno, message } = errnoOf(error);
          reply = { errno, result: -1, message, runPatches };
        }
        this.#record(conn, req, what, reply, arrived);
        sendReply(conn.socket, encodeReply(reply));
        this.#releaseVcpu(vcpu);
      },
    });
    return true;
  }

  #ioctl(s: Session, req: Request, request: number): Reply {
    const proc = s.proc;
    const file = proc.file(req.fd);
    const inputLen = Number(req.c);
    const zeroed = (req.flags & IOCTL_INPUT_ZEROED) !== 0;
    if (zeroed && (inputLen !== _IOC_SIZE(request) || (req.flags & IOCTL_HAS_INPUT) !== 0)) throw new ProtocolError(`zeroed input of ${inputLen} bytes for a request of ${_IOC_SIZE(request)}`);
    if (!zeroed && inputLen > req.payload.length) throw new ProtocolError('input length beyond the message');
    const input = zeroed ? new Uint8Array(inputLen) : (req.flags & IOCTL_HAS_INPUT) !== 0 ? req.payload.subarray(0, inputLen) : undefined;
    const hasData = _IOC_DIR(request) !== 0;
    const area = this.#area(s, file);
    let region: { slot: number; size: number; addr: number } | undefined;
    let warning: string | undefined;
    if (request === KVM_SET_USER_MEMORY_REGION && input !== undefined && input.length >= 32) {
      const r = decodeMemoryRegion(input);
      region = { slot: r.slot, size: r.memory_size, addr: r.userspace_addr };
      if (r.memory_size > 0) warning = s.memory.ensure(r.userspace_addr, r.memory_size);
      if (warning !== undefined) this.#log(`bridge: pid ${s.pid}: ${warning}`);
    }
    let synced = false;
    if (request === KVM_RUN && area !== undefined) {
      runInput(area, req);
      installLazyMemory(vcpuOf(proc, req.fd).vm, s.memory);
      s.memory.sync();
      synced = true;
    }
    const decoded = decodeArg(request, req.b, input, hasData);
    let result = 0;
    let failure: unknown;
    try {
      const pointers = userPointers(request, input, (slot) => s.slots.get(file)?.get(slot)?.size);
      result = pointers.length === 0 ? proc.ioctl(req.fd, request, decoded.arg) : s.memory.borrow(pointers, () => proc.ioctl(req.fd, request, decoded.arg));
    } catch (e) {
      failure = e;
    } finally {
      if (synced) s.memory.sync();
    }
    const ok = failure === undefined;
    // A zeroed input (IOCTL_INPUT_ZEROED) was never the VMM's bytes: nothing goes back when the call failed.
    const out = zeroed && !ok ? undefined : decoded.out(ok);
    const runPatches = area === undefined ? undefined : diffArea(area);
    if (!ok) {
      const { errno, message } = errnoOf(failure);
      return { errno, result: -1, message, out, runPatches };
    }
    if (region !== undefined) {
      let slots = s.slots.get(file);
      if (slots === undefined) {
        slots = new Map();
        s.slots.set(file, slots);
      }
      if (region.size === 0) slots.delete(region.slot);
      else slots.set(region.slot, { addr: region.addr, size: region.size });
    }
    if (FD_RESULTS.has(request)) {
      return { errno: 0, result, out, runPatches, ...this.#fdKind(proc, result) };
    }
    return { errno: 0, result, out, runPatches };
  }
}

const OP_LABELS = new Map<number, string>();

/** A recorded call's `op`: the operation's name in lower case (`ioctl`), made once per operation. */
function opLabel(op: number): string {
  let label = OP_LABELS.get(op);
  if (label === undefined) {
    label = opName(op).toLowerCase();
    OP_LABELS.set(op, label);
  }
  return label;
}

/** `KVM_CHECK_EXTENSION(KVM_CAP_X86_SMM)`, `KVM_CREATE_VM(0)`, `KVM_RUN`, `KVM_GET_REGS`: a request and, without data, its value. */
function describeIoctl(request: number, value: bigint): string {
  const name = ioctlName(request);
  if (_IOC_DIR(request) !== 0) return name;
  if (request === KVM_CHECK_EXTENSION) return `${name}(${capabilityName(Number(value & 0xffffffffn))})`;
  if (request === KVM_RUN && value === 0n) return name;
  return `${name}(${value > 0xffffn ? `0x${value.toString(16)}` : value.toString()})`;
}

/**
 * The VMM's kvm_run as a KVM_RUN request brings it, into the model's and the shadow: the byte runs the VMM changed
 * (`IOCTL_RUN_PATCHES`; all checked before any is applied, so a malformed message changes nothing) or the whole area
 * (`IOCTL_HAS_RUN`). @throws {@link ProtocolError}
 */
function runInput(a: VcpuArea, req: Request): void {
  const inputLen = Number(req.c);
  if (inputLen > req.payload.length) throw new ProtocolError('input length beyond the message');
  const rest = req.payload.subarray(inputLen);
  if ((req.flags & IOCTL_HAS_RUN) !== 0) {
    const run = rest.subarray(0, a.model.length);
    a.model.set(run);
    a.shadow.set(run);
    return;
  }
  if ((req.flags & IOCTL_RUN_PATCHES) === 0) return;
  const v = new DataView(rest.buffer, rest.byteOffset, rest.byteLength);
  const patches: Array<[number, Uint8Array]> = [];
  for (let o = 0; o < rest.length; ) {
    if (o + 8 > rest.length) throw new ProtocolError('a kvm_run patch header beyond the message');
    const off = v.getUint32(o, true);
    const n = v.getUint32(o + 4, true);
    if (o + 8 + n > rest.length || off + n > a.model.length) throw new ProtocolError(`a kvm_run patch of ${n} bytes at ${off} beyond the message or the area`);
    patches.push([off, rest.subarray(o + 8, o + 8 + n)]);
    o += 8 + n;
  }
  for (const [off, bytes] of patches) {
    a.model.set(bytes, off);
    a.shadow.set(bytes, off);
  }
}

/** The byte runs of a vCPU's kvm_run that the model changed since the VMM's copy was last synced. */
function diffArea(a: VcpuArea): Array<[number, Uint8Array]> | undefined {
  let patches: Array<[number, Uint8Array]> | undefined;
  // Runs fewer than 16 equal bytes apart are joined (fewer, larger patches: the VMM's copy holds those bytes already).
  forEachChangedRun(
    a.model,
    a.shadow,
    0,
    a.model.length,
    (start, end) => {
      (patches ??= []).push([start, a.model.slice(start, end)]);
      a.shadow.set(a.model.subarray(start, end), start);
    },
    16,
  );
  return patches;
}

let groups: Map<number, string> | undefined;

/** gid → group name from /etc/group (read once). */
function groupTable(): Map<number, string> {
  if (groups === undefined) {
    groups = new Map();
    try {
      for (const line of readFileSync('/etc/group', 'utf8').split('\n')) {
        const [name, , gid] = line.split(':');
        if (name && gid !== undefined && /^\d+$/.test(gid) && !groups.has(Number(gid))) groups.set(Number(gid), name);
      }
    } catch {
      // no /etc/group: only root and kvm by number
    }
  }
  return groups;
}

/** The groups of /etc/group as `createHost`'s `groups` option takes them (name → gid). */
export function systemGroups(): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [gid, name] of groupTable()) if (/^[a-z_][a-z0-9_-]*\$?$/i.test(name)) out[name] = gid;
  return out;
}

const ERRNO_NAMES: Readonly<Record<number, string>> = {
  1: 'EPERM', 2: 'ENOENT', 3: 'ESRCH', 4: 'EINTR', 5: 'EIO', 6: 'ENXIO', 7: 'E2BIG', 9: 'EBADF', 11: 'EAGAIN', 12: 'ENOMEM',
  13: 'EACCES', 14: 'EFAULT', 16: 'EBUSY', 17: 'EEXIST', 19: 'ENODEV', 22: 'EINVAL', 24: 'EMFILE', 25: 'ENOTTY', 28: 'ENOSPC',
  34: 'ERANGE', 38: 'ENOSYS', 71: 'EPROTO', 95: 'EOPNOTSUPP',
};

/** The errno name of a number (`22` → `'EINVAL'`). */
export function errnoName(errno: number): string {
  return ERRNO_NAMES[errno] ?? `errno ${errno}`;
}

/**
 * Write a reply to a VMM thread's socket: with `write(2)` on the socket's fd when the stream has nothing queued before
 * it, else (or when the write does not take it whole) through the stream. Node's stream `write` of a small reply costs
 * its JavaScript machinery on top of the same system call, on the way of every round trip; a thread waits for its
 * reply and reads it whole, so a reply of a few hundred bytes always fits the socket's buffer and the order is kept.
 * (The socket's fd is Node's internal `_handle.fd`; without one, the stream writes it.) Measured with
 * `bench/bridge-replay.ts`: 3–7 µs less bridge CPU per call (docs/performance.md, issue 13's eighth round).
 */
function sendReply(socket: Socket, reply: Buffer): void {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (fd !== undefined && fd >= 0 && socket.writableLength === 0 && !socket.destroyed) {
    let n: number;
    try {
      n = writeSync(fd, reply);
    } catch {
      n = 0; // EAGAIN, EPIPE: the stream writes it, or reports the error as before
    }
    if (n === reply.length) return;
    socket.write(n === 0 ? reply : reply.subarray(n));
    return;
  }
  socket.write(reply);
}
