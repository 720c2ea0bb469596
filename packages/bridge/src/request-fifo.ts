/**
 * The bridge's low-latency request channel: one FIFO (`<socket>.req`) that every VMM thread writes its small
 * requests into, read by Node's main thread — the thread that holds the model — with a **blocking** `read(2)`
 * while VMM calls keep coming, so a request wakes the model's thread directly instead of going through libuv's
 * epoll and the stream machinery (measured: a bare echo of KVM_GET_REGS's sizes 9.7–10.9 µs this way against
 * 15–21 µs with a `net` server on the event loop, same machine, same minute; docs/performance.md).
 *
 * Replies still go back on each thread's Unix socket, which is also the thread's identity: a message on the FIFO
 * names its connection by the id and the 64-bit secret token the bridge gave that connection in its HELLO reply,
 * so a process cannot act on another's connection (it would have to guess the token). A write of up to
 * `PIPE_BUF` (4096) bytes to a FIFO is atomic, so messages of concurrent writers never interleave; the library
 * sends larger requests on its socket as before.
 *
 * **Two modes.** Idle, the FIFO is read by libuv like any socket (a non-blocking open of it, a `net.Socket`).
 * When a request has been served and the vCPU runner has nothing to run right now, the main thread goes into a
 * blocking read of a second, blocking open of the FIFO and serves what arrives there. A watchdog worker thread
 * writes a YIELD marker into the FIFO when that read has blocked for {@link YIELD_MS}: the main thread then gives
 * Node's event loop one turn (timers, the control socket, process exits, the bridge's sockets) and blocks again if
 * it served anything since the last turn, else goes back to the idle mode. It also leaves the blocking mode as
 * soon as the vCPU runner has work to do (a guest to execute), which runs on the event loop as before.
 *
 * **Spin, then block.** After serving a request in the blocking mode, the main thread first polls the FIFO without
 * blocking for up to {@link SPIN_US} (a third, non-blocking open of it, read through {@link NonBlockingReader}),
 * and only then blocks in `read(2)`. A VMM that makes one call after another (QEMU's calls while a migration's
 * source is stopped, a benchmark's loop) then finds the model's thread awake: on an idle machine a blocked
 * thread's wake-up is the wake-up of an idle CPU — in a VM, of a vCPU that sleeps in the hypervisor — which costs
 * tens of µs on each side of a round trip. The spin is bounded: it follows only a served request (an idle bridge
 * never spins, and the idle mode above never does), lasts at most {@link SPIN_US} after each, ends as soon as
 * anything arrives, and happens only while the machine has a CPU to spare or spinning paid lately (`spare-cpu.ts`:
 * on a busy machine the spinner would hold the CPU the VMM needs to send its next request); a YIELD marker still ends the blocking mode
 * within {@link YIELD_MS}. `VAC_NO_SPIN=1` in the bridge's environment (or `spin.us: 0`) turns it off,
 * `VAC_SPIN_US=<µs>` sets the budget, `VAC_SPIN_ALWAYS=1` spins whatever the load (to measure the spin itself).
 *
 * Envelope (16 bytes, little-endian, before the request as `protocol.ts` describes it):
 * `u32 magic "VACF", u32 connection id, u64 token`. The YIELD marker is an envelope with magic "VACY". The library
 * writes one too right after a message it sent on its socket (a request larger than `PIPE_BUF`, an INTERRUPT), so
 * that a blocking period ends at once and the event loop reads that socket (else it would wait for the watchdog).
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import { closeSync, constants, lstatSync, openSync, readSync, unlinkSync } from 'node:fs';
import { Socket } from 'node:net';
import { Worker } from 'node:worker_threads';
import { NonBlockingReader } from './nonblocking-read.js';
import { SpareCpu, SpinCredit } from './spare-cpu.js';
import { VAC_MAGIC } from './protocol.js';

/** `"VACF"`: the first word of a request envelope on the FIFO. */
export const FIFO_MAGIC = 0x46434156;
/** `"VACY"`: the watchdog's yield marker. */
export const YIELD_MAGIC = 0x59434156;
/** Size of the envelope before each request on the FIFO. */
export const FIFO_ENVELOPE = 16;
/** The largest message (envelope and request) the library sends on the FIFO: Linux's `PIPE_BUF`. */
export const FIFO_MAX_MESSAGE = 4096;
/** How long the main thread may stay in a blocking read before the watchdog makes it give the event loop a turn. */
export const YIELD_MS = 1;

/**
 * How long (µs) the main thread polls the FIFO after a served request before it blocks (module notes). Chosen by
 * measurement (docs/performance.md, "spin, then block"): it covers the gap between two calls of one VMM thread
 * that makes them back to back — the library's own work between a reply and its next request, and QEMU's between
 * consecutive calls while a migration's source is stopped — and costs at most this much CPU per call.
 */
export const SPIN_US = 50;

/** How the main thread spins before it blocks (module notes). */
export interface SpinSettings {
  /** The budget after each served request, µs; 0: no spin. */
  readonly us: number;
  /** Spin whatever the machine's load (else only while it has a CPU to spare, `spare-cpu.ts`). */
  readonly always: boolean;
}

/**
 * The spin a bridge started with environment `env` uses: a budget of 0 with `VAC_NO_SPIN` set (not empty), else
 * `VAC_SPIN_US` when it is a whole number, else {@link SPIN_US}; whatever the load with `VAC_SPIN_ALWAYS` set.
 * (The preload library reads the same variables for its own spin.)
 */
export function spinSettings(env: NodeJS.ProcessEnv = process.env): SpinSettings {
  const set = (v: string | undefined): boolean => v !== undefined && v !== '';
  const us = env.VAC_SPIN_US === undefined ? NaN : Number(env.VAC_SPIN_US);
  return { us: set(env.VAC_NO_SPIN) ? 0 : Number.isInteger(us) && us >= 0 ? us : SPIN_US, always: set(env.VAC_SPIN_ALWAYS) };
}

/** The FIFO's path next to a bridge socket. */
export function fifoPath(socketPath: string): string {
  return `${socketPath}.req`;
}

/** What {@link RequestFifo} needs from the bridge. */
export interface FifoHandlers {
  /** One request arrived for connection `id` with `token` (`bytes`: the request, copied). */
  readonly deliver: (id: number, token: bigint, bytes: Buffer) => void;
  /** False while the main thread must not block (the vCPU runner has work to do now). */
  readonly mayBlock: () => boolean;
  /** Called with a log line (a malformed envelope). */
  readonly log: (line: string) => void;
  /** The spin (module notes); default {@link spinSettings} of the process's environment. */
  readonly spin?: SpinSettings;
}

// The watchdog, as a CommonJS script evaluated in a worker (no file to resolve from a bundle or from tsx).
// state[0]: a generation, odd while the main thread blocks; state[1]: 1 once the watchdog runs (the main thread
// never blocks before: nobody would end the wait). It writes one YIELD marker when a blocking period lasts
// YIELD_MS, then waits for the next one.
const WATCHDOG = `
const { workerData } = require('node:worker_threads');
const fs = require('node:fs');
const state = new Int32Array(workerData.state);
const fd = fs.openSync(workerData.path, fs.constants.O_WRONLY | fs.constants.O_NONBLOCK);
const marker = Buffer.alloc(${FIFO_ENVELOPE});
marker.writeUInt32LE(${YIELD_MAGIC}, 0);
Atomics.store(state, 1, 1);
for (;;) {
  const g = Atomics.load(state, 0);
  if (g < 0) break;
  if ((g & 1) === 0) { Atomics.wait(state, 0, g); continue; }
  if (Atomics.wait(state, 0, g, workerData.ms) !== 'timed-out') continue;
  try { fs.writeSync(fd, marker); } catch {}
  while (Atomics.load(state, 0) === g) Atomics.wait(state, 0, g);
}
fs.closeSync(fd);
`;

/** The request FIFO of one bridge server (see the module notes). */
export class RequestFifo {
  /** The FIFO's path. */
  readonly path: string;
  readonly #handlers: FifoHandlers;
  readonly #blockingFd: number;
  /** A non-blocking open of the FIFO for the spin, and its reader; undefined when the spin is off. */
  readonly #spinFd: number | undefined;
  readonly #spinner: NonBlockingReader | undefined;
  /** The spin budget in ms. */
  readonly #spinMs: number;
  /** Whether the machine has a CPU to spare now; undefined: spin whatever the load. */
  readonly #spare: SpareCpu | undefined;
  /** Whether spinning paid lately, asked when {@link RequestFifo.#spare} says no (`spare-cpu.ts`). */
  readonly #credit = new SpinCredit();
  readonly #socket: Socket;
  readonly #state = new Int32Array(new SharedArrayBuffer(8));
  readonly #watchdog: Worker;
  readonly #buf = Buffer.alloc(64 * 1024);
  /** Bytes read but not yet a whole message (a writer's message is atomic, but a read may end inside the next). */
  #pending: Buffer = Buffer.alloc(0);
  #blocking = false;
  #scheduled: NodeJS.Immediate | undefined;
  #closed = false;
  /** Messages served since the main thread last gave the event loop a turn. */
  #served = 0;

  /**
   * Create the FIFO at `path` (any user may write it, only the bridge's user read it) and start reading it.
   * @throws when no FIFO can be made there (`mkfifo` missing or failing)
   */
  constructor(path: string, handlers: FifoHandlers) {
    this.path = path;
    this.#handlers = handlers;
    try {
      if (!lstatSync(path).isFIFO()) throw new Error(`${path} exists and is not a FIFO`);
      unlinkSync(path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    // Node has no mkfifo(3); coreutils' mkfifo is on every Linux the bridge runs on.
    execFileSync('mkfifo', ['-m', '0622', path], { stdio: 'ignore' });
    // Read and write: a FIFO opened so never blocks the open, never reads end-of-file, and always has a reader.
    this.#blockingFd = openSync(path, constants.O_RDWR);
    const spin = handlers.spin ?? spinSettings();
    const spinUs = spin.us;
    this.#spare = spin.always ? undefined : new SpareCpu();
    let spinFd: number | undefined;
    let spinner: NonBlockingReader | undefined;
    if (spinUs > 0) {
      spinFd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
      try {
        spinner = new NonBlockingReader(spinFd);
      } catch (e) {
        handlers.log(`bridge: request FIFO: no spin (${(e as Error).message})`);
        closeSync(spinFd);
        spinFd = undefined;
      }
    }
    this.#spinFd = spinFd;
    this.#spinner = spinner;
    this.#spinMs = spinner === undefined ? 0 : spinUs / 1000;
    const idleFd = openSync(path, constants.O_RDWR | constants.O_NONBLOCK);
    this.#socket = new Socket({ fd: idleFd, readable: true, writable: false });
    this.#socket.on('data', (chunk: Buffer) => this.#take(chunk));
    this.#socket.on('error', (e) => this.#handlers.log(`bridge: request FIFO: ${e.message}`));
    this.#socket.unref();
    this.#watchdog = new Worker(WATCHDOG, { eval: true, workerData: { state: this.#state.buffer, path, ms: YIELD_MS } });
    this.#watchdog.unref();
  }

  /** Stop reading, end the watchdog and remove the FIFO. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#scheduled !== undefined) clearImmediate(this.#scheduled);
    Atomics.store(this.#state, 0, -1);
    Atomics.notify(this.#state, 0);
    void this.#watchdog.terminate();
    this.#socket.destroy();
    closeSync(this.#blockingFd);
    if (this.#spinFd !== undefined) closeSync(this.#spinFd);
    try {
      unlinkSync(this.path);
    } catch {
      // already gone
    }
  }

  /** Split `chunk` (with what was pending) into messages and deliver each; true when a YIELD marker was among them. */
  #take(chunk: Buffer): boolean {
    let buf = this.#pending.length === 0 ? chunk : Buffer.concat([this.#pending, chunk]);
    let yielded = false;
    let o = 0;
    while (buf.length - o >= FIFO_ENVELOPE) {
      const magic = buf.readUInt32LE(o);
      if (magic === YIELD_MAGIC) {
        yielded = true;
        o += FIFO_ENVELOPE;
        continue;
      }
      const len = buf.length - o >= FIFO_ENVELOPE + 8 ? buf.readUInt32LE(o + FIFO_ENVELOPE + 4) : undefined;
      if (magic !== FIFO_MAGIC || buf.readUInt32LE(o + FIFO_ENVELOPE) !== VAC_MAGIC || (len !== undefined && (len < 8 || FIFO_ENVELOPE + len > FIFO_MAX_MESSAGE))) {
        // Not a message a library wrote (each is one atomic write): skip to the next envelope's magic.
        const next = indexOfMagic(buf, o + 1);
        this.#handlers.log(`bridge: request FIFO: ${next - o} bytes that are no message skipped`);
        o = next;
        continue;
      }
      if (len === undefined || buf.length - o < FIFO_ENVELOPE + len) break;
      const id = buf.readUInt32LE(o + 4);
      const token = buf.readBigUInt64LE(o + 8);
      const bytes = Buffer.from(buf.subarray(o + FIFO_ENVELOPE, o + FIFO_ENVELOPE + len));
      o += FIFO_ENVELOPE + len;
      this.#served++;
      this.#handlers.deliver(id, token, bytes);
    }
    buf = buf.subarray(o);
    this.#pending = buf.length === 0 ? Buffer.alloc(0) : Buffer.from(buf);
    if (!this.#blocking && this.#served > 0) this.#scheduleBlock();
    return yielded;
  }

  #scheduleBlock(): void {
    if (this.#closed || this.#scheduled !== undefined) return;
    this.#scheduled = setImmediate(() => {
      this.#scheduled = undefined;
      this.#block();
    });
  }

  /**
   * Poll the FIFO without blocking for up to the spin budget (module notes): the number of bytes read into the
   * buffer, 0 when nothing came (or the spin is off).
   */
  #spin(): number {
    const spinner = this.#spinner;
    if (spinner === undefined) return 0;
    const gated = this.#spare?.now() === false;
    if (gated && !this.#credit.mayTry()) return 0;
    const end = performance.now() + this.#spinMs;
    let n: number;
    do n = spinner.read(this.#buf);
    while (n === 0 && performance.now() < end);
    if (gated) this.#credit.record(n > 0);
    return n;
  }

  /** Serve from a blocking read until the watchdog's YIELD or until the runner has work (module notes). */
  #block(): void {
    if (this.#closed) return;
    if (Atomics.load(this.#state, 1) !== 1 || !this.#handlers.mayBlock()) {
      this.#served = 0; // not now: the idle mode
      return;
    }
    this.#served = 0;
    this.#socket.pause();
    this.#blocking = true;
    Atomics.add(this.#state, 0, 1);
    Atomics.notify(this.#state, 0);
    let yielded = false;
    try {
      // What the stream holds (read by libuv, not yet emitted) came before what the FIFO still holds.
      // (`read()` emits 'data' with what it returns, and the 'data' listener takes it.)
      this.#socket.read();
      while (!yielded && !this.#closed && this.#handlers.mayBlock()) {
        let n = this.#spin();
        if (n === 0) n = readSync(this.#blockingFd, this.#buf, 0, this.#buf.length, null);
        yielded = this.#take(this.#buf.subarray(0, n));
      }
    } finally {
      this.#blocking = false;
      Atomics.add(this.#state, 0, 1);
      Atomics.notify(this.#state, 0);
    }
    if (this.#closed) return;
    // The socket is paused only inside a blocking period: whatever comes during the event loop's turn is read there.
    this.#socket.resume();
    // Busy since the last turn (and free to block): one turn of the event loop, then block again; else idle.
    if (this.#served > 0 && this.#handlers.mayBlock()) this.#scheduleBlock();
    else this.#served = 0;
  }
}

/** The offset of the next envelope magic ("VACF" or "VACY") at or after `from`, else the buffer's length. */
function indexOfMagic(buf: Buffer, from: number): number {
  for (let i = from; i + 4 <= buf.length; i++) {
    const w = buf.readUInt32LE(i);
    if (w === FIFO_MAGIC || w === YIELD_MAGIC) return i;
  }
  return buf.length;
}
