/**
 * A deterministic scheduler of simulated threads.
 *
 * On Linux a vCPU thread sits inside `KVM_RUN`, in guest mode on its CPU, while other threads run and
 * interrupts arrive. The model expresses that with threads whose bodies are generators: a blocking
 * syscall (`yield* t.ioctl(fd, KVM_RUN)`) yields while it is in progress, and the scheduler hands out
 * one slice per runnable thread per {@link Scheduler.tick}, in thread-id order. Between ticks anything
 * else may happen (a PMI, a CPU going offline, a process being killed), and the same calls always give
 * the same interleaving.
 *
 * Only one thread runs on a CPU at a time: when another thread gets a slice on that CPU, the previous one
 * is scheduled out, and preempt notifiers (`kvm_sched_out` / `kvm_sched_in`) let KVM put and load vCPUs.
 * A CPU going offline migrates its threads first (the scheduler's `CPUHP_AP_ACTIVE` teardown); a thread
 * pinned to it is no longer pinned (`select_fallback_rq`: "no longer affine to cpu%d").
 *
 * A suspend is different: tasks are frozen before the non-boot CPUs go down, so they sleep where they are
 * and keep their affinity (only runnable tasks are migrated off a dying CPU: `sched_cpu_dying` →
 * `migrate_tasks`). At resume the CPUs come back first; thawing then wakes each thread on its own CPU, and
 * only a thread whose CPU did not come back goes through `select_fallback_rq` (see `scheduler.thaw()`).
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { EventBus } from '../events.js';
import type { Host } from './host.js';
import { affinityCpu, cpuNumber } from './affinity.js';
import { positiveCount } from '../settings.js';
import { badRequest, type Process } from './process.js';

/** A blocking kernel call: it yields while in progress and returns the syscall's result. */
export type Syscall<T> = Generator<void, T, void>;

/** Preempt notifiers (`struct preempt_ops`): called when the thread leaves or gets a CPU. */
export interface PreemptNotifier {
  /** The thread is scheduled out of `cpu` (another thread runs there, or it migrates). */
  schedOut(cpu: number): void;
  /** The thread is scheduled in on `cpu`. */
  schedIn(cpu: number): void;
}

/** A thread body: a generator that may `yield*` blocking calls. */
export type ThreadBody = (t: Thread) => Generator<void, void, void>;

/** Options of {@link Scheduler.spawn}. */
export interface ThreadOptions {
  /** A name for traces. */
  readonly name?: string;
  /** Pin the thread to this CPU (`sched_setaffinity`); default: the process's CPU, unpinned. */
  readonly cpu?: number;
}

/** The state of a thread. */
export type ThreadState = 'runnable' | 'done' | 'failed' | 'killed';

/** A simulated thread of a process. */
export class Thread {
  /** Thread id. */
  readonly tid: number;
  /** Its process. */
  readonly proc: Process;
  /** A name for traces. */
  readonly name: string;
  #cpu: number;
  #affinity: number | undefined;
  #state: ThreadState = 'runnable';
  /** What a failed thread threw. */
  error: unknown;
  /** A signal is pending (interrupts a blocking call: EINTR). */
  signalPending = false;
  /**
   * The thread sleeps in a blocking call until something wakes it (a halted vCPU in `KVM_RUN`). When every thread
   * sleeps, a tick jumps the host's clock to the next timer deadline.
   */
  sleeping = false;
  /** @internal */
  gen: Generator<void, void, void> | undefined;
  readonly #notifiers: PreemptNotifier[] = [];
  readonly #sched: Scheduler;

  /** @internal */
  constructor(sched: Scheduler, tid: number, proc: Process, name: string, cpu: number, affinity: number | undefined) {
    this.#sched = sched;
    this.tid = tid;
    this.proc = proc;
    this.name = name;
    this.#cpu = cpu;
    this.#affinity = affinity;
  }

  /** The CPU it runs on (while frozen for a suspend: the CPU it last ran on, which may be offline). */
  get cpu(): number {
    return this.#cpu;
  }

  /** Read-only: assigning throws a {@link UsageError} pointing at {@link Thread.setAffinity}. */
  set cpu(_: never) {
    throw readOnly(this, 'cpu');
  }

  /** The CPU it is pinned to, if any (kept across a suspend). */
  get affinity(): number | undefined {
    return this.#affinity;
  }

  /** Read-only: assigning throws a {@link UsageError} pointing at {@link Thread.setAffinity}. */
  set affinity(_: never) {
    throw readOnly(this, 'affinity');
  }

  /** Its state. */
  get state(): ThreadState {
    return this.#state;
  }

  /** @internal The scheduler puts the thread on `cpu`. */
  moveTo(cpu: number): void {
    this.#cpu = cpu;
  }

  /** @internal `select_fallback_rq`: the thread is no longer affine to the CPU it was pinned to. */
  unpin(): void {
    this.#affinity = undefined;
  }

  /** @internal The thread ends. */
  end(state: ThreadState): void {
    this.#state = state;
  }

  /**
   * `ioctl` from this thread. A driver that implements `ioctlBlocking` (KVM_RUN) runs across ticks;
   * anything else completes at once.
   */
  *ioctl(fd: number, request: number, arg?: unknown): Syscall<number> {
    if (typeof request !== 'number') throw badRequest(request);
    const f = this.proc.file(fd);
    const blocking = f.fops.ioctlBlocking;
    if (blocking !== undefined) {
      // fdget/fdput: the call holds the file, so closing the fd meanwhile does not release it (and, for a
      // vCPU, destroy its VM) under the running call; the last reference goes when the call returns.
      f.hold();
      try {
        const r = yield* inOperation(this.#sched.host.events, blocking.call(f.fops, f, request >>> 0, arg, this.proc, this));
        if (r !== undefined) return r;
      } finally {
        f.drop();
      }
    }
    return this.proc.ioctl(fd, request, arg);
  }

  /** Yield the rest of this slice (`sched_yield`). */
  *yield(): Syscall<void> {
    yield;
  }

  /** `pthread_kill(thread, sig)`: a blocking call in progress returns EINTR at its next check. */
  signal(): void {
    this.signalPending = true;
  }

  /** Register preempt notifiers (`preempt_notifier_register`); returns the unregister function. */
  addPreemptNotifier(n: PreemptNotifier): () => void {
    this.#notifiers.push(n);
    return () => {
      const i = this.#notifiers.indexOf(n);
      if (i >= 0) this.#notifiers.splice(i, 1);
    };
  }

  /** @internal */
  notifyOut(cpu: number): void {
    for (const n of this.#notifiers) n.schedOut(cpu);
  }

  /** @internal */
  notifyIn(cpu: number): void {
    for (const n of this.#notifiers) n.schedIn(cpu);
  }

  /**
   * Pin to `cpu` (`sched_setaffinity` with that one CPU), or unpin with `undefined`; the thread moves at its next
   * slice.
   * @throws {@link UsageError} when `cpu` is not a non-negative integer; {@link KernelError} ESRCH (the thread has
   * ended), EINVAL (no such CPU, or it is offline)
   */
  setAffinity(cpu: number | undefined): void {
    if (cpu !== undefined) cpuNumber(cpu, 'setAffinity');
    if (!this.alive) throw new KernelError('ESRCH', 'sched_setaffinity', `thread ${this.tid} has ended`);
    this.#affinity = cpu === undefined ? undefined : affinityCpu(this.#sched.host.cpus, cpu, 'setAffinity');
  }

  /** True while the thread has not finished. */
  get alive(): boolean {
    return this.#state === 'runnable';
  }
}

/** The scheduler of a host. */
export class Scheduler {
  /** @internal */
  readonly host: Host;
  #quantum = 1000;
  #threads: Thread[] = [];
  #nextTid = 1;
  /** The thread that last ran on each CPU and has not been scheduled out. */
  readonly #current: Array<Thread | undefined>;
  /** Tasks are frozen (between `scheduler.freeze()` and `scheduler.thaw()`). */
  #frozen = false;
  /**
   * Processes whose default CPU went offline while frozen: where it was (`home`) and where it was moved
   * (`to`), so that thawing puts it back.
   */
  readonly #movedWhileFrozen = new Map<Process, { readonly home: number; readonly to: number }>();

  /** @internal */
  constructor(host: Host) {
    this.host = host;
    this.#current = new Array<Thread | undefined>(host.cpus.length).fill(undefined);
    // sched_cpu_deactivate: threads leave a CPU before anything else is torn down.
    host.cpuhp.setup('sched:active', { teardown: (cpu) => this.#evacuate(cpu) }, { slot: 'CPUHP_AP_ACTIVE', invoke: false });
  }

  /** Guest instructions a vCPU thread executes per slice (one VM entry per slice); default 1000. */
  get quantum(): number {
    return this.#quantum;
  }

  /** @throws {@link UsageError} unless a positive safe integer (0, NaN, negatives, fractions and infinities would never end a slice) */
  set quantum(n: number) {
    this.#quantum = positiveCount(n, 'scheduler.quantum');
  }

  /** Start a thread in `proc` running `body`. */
  spawn(proc: Process, opts: ThreadOptions, body: ThreadBody): Thread {
    const o = threadOptions(opts);
    if (typeof body !== 'function') throw new UsageError('ERR_INVALID_ARG', `spawn: the thread body must be a generator function, got ${typeof body}`);
    if (o.cpu !== undefined) cpuNumber(o.cpu, 'spawn: cpu');
    if (!proc.alive) throw new KernelError('ESRCH', 'clone', `process ${proc.pid} has exited`);
    const affinity = o.cpu === undefined ? undefined : affinityCpu(this.host.cpus, o.cpu, 'spawn: cpu');
    const cpu = affinity ?? proc.cpu;
    if (this.host.cpus[cpu]?.online !== true) throw new KernelError('EINVAL', 'sched_setaffinity', `CPU ${cpu} is offline`);
    const t = new Thread(this, this.#nextTid++, proc, o.name ?? `${proc.name}/t${this.#nextTid - 1}`, cpu, affinity);
    t.gen = body(t);
    this.#threads.push(t);
    proc.onExit(() => this.#kill(t));
    return t;
  }

  /** Every thread that has not finished, in tid order. */
  threads(): Thread[] {
    return this.#threads.filter((t) => t.alive);
  }

  /** The thread currently on `cpu` (the last one that ran there and was not scheduled out). */
  currentOn(cpu: number): Thread | undefined {
    return this.#current[this.host.checkCpu(cpu)];
  }

  /**
   * Schedule out whoever is current on `cpu` (its preempt notifiers run: KVM puts its vCPU), as the kernel
   * does when another task takes the CPU — used when a thread outside the scheduler (a direct syscall of
   * a process) runs there.
   */
  preempt(cpu: number): void {
    const cur = this.#current[this.host.checkCpu(cpu)];
    // Nobody there, the usual case of a direct KVM_RUN: this stays small enough to inline into it.
    if (cur !== undefined) this.#scheduleOut(cur, cpu);
  }

  #scheduleOut(cur: Thread, cpu: number): void {
    const ev = this.host.events;
    ev.enter();
    try {
      cur.notifyOut(cpu);
      this.#current[cpu] = undefined;
    } finally {
      ev.leave();
    }
  }

  /** True between `scheduler.freeze()` and `scheduler.thaw()` (the host is suspending or suspended). */
  get frozen(): boolean {
    return this.#frozen;
  }

  /**
   * @internal `freeze_processes` (called by `host.suspend()` after the freezers ran): every thread stops where
   * it is. Each CPU's current thread is scheduled out (preempt notifiers: KVM puts its vCPU); nothing runs
   * until `scheduler.thaw()`. While frozen, a CPU going offline does not move or unpin the threads: a
   * frozen task sleeps in the refrigerator, not on a runqueue, and only runnable tasks are migrated off a
   * dying CPU (`sched_cpu_dying` → `migrate_tasks`; "sleeping tasks will be migrated by
   * try_to_wake_up()->select_task_rq()").
   */
  freeze(): void {
    this.#frozen = true;
    this.#movedWhileFrozen.clear();
    for (const c of this.host.cpus) this.preempt(c.id);
  }

  /**
   * @internal `thaw_processes` (called by `host.resume()`, and by a failed `host.suspend()`, after the CPUs came
   * back): every frozen thread is woken (`try_to_wake_up` → `select_task_rq`). A thread whose CPU is online again
   * runs there at its next slice, pinned as before. One pinned to a CPU that did not come back has no allowed
   * CPU left: `select_fallback_rq` widens its affinity (the model unpins it) and it goes to the first online CPU,
   * as on a hotplug offline. An unpinned thread whose CPU is offline goes to the first online CPU. A process's
   * default CPU that was moved off a CPU taken down by the suspend goes back to it if it is online.
   */
  thaw(): void {
    if (!this.#frozen) return;
    this.#frozen = false;
    const fallback = this.#fallbackCpu();
    for (const t of this.#threads) {
      if (!t.alive) continue;
      if (t.affinity !== undefined) {
        if (this.#online(t.affinity)) continue; // it moves there (if it is not there already) at its next slice
        // select_fallback_rq: "process %d (%s) no longer affine to cpu%d"
        t.unpin();
      }
      if (!this.#online(t.cpu)) t.moveTo(fallback);
    }
    for (const [p, { home, to }] of this.#movedWhileFrozen) {
      if (p.alive && p.cpu === to && this.#online(home)) p.migrate(home);
    }
    this.#movedWhileFrozen.clear();
  }

  /** One tick: every runnable thread gets one slice, in tid order. Returns how many ran. */
  tick(): number {
    const host = this.host;
    if (host.systemState !== 'running') return 0;
    const ev = host.events;
    ev.tick++;
    ev.enter();
    let ran = 0;
    let idle = true;
    for (const t of this.#threads) if (t.alive && (!t.sleeping || t.signalPending)) idle = false;
    try {
      host.clock.tick(idle);
      for (const t of this.#threads) {
        if (!t.alive) continue;
        this.#place(t);
        ran++;
        try {
          const r = t.gen?.next();
          if (r?.done === true) this.#finish(t, 'done');
        } catch (e) {
          t.error = e;
          this.#finish(t, 'failed');
        }
      }
      // The list without the threads that ended (a new array only when one did: this runs every tick).
      const threads = this.#threads;
      for (let i = 0; i < threads.length; i++) {
        if (!(threads[i] as Thread).alive) {
          this.#threads = threads.filter((t) => t.alive);
          break;
        }
      }
    } finally {
      ev.leave();
    }
    return ran;
  }

  /** Run `n` ticks (a non-negative safe integer). */
  run(n: number): void {
    tickCount(n, 'scheduler.run: ticks');
    for (let i = 0; i < n; i++) if (this.tick() === 0) break;
  }

  /** Tick until no thread is left or `maxTicks` (a non-negative safe integer) pass. Returns the ticks used. */
  runUntilIdle(maxTicks = 1_000_000): number {
    tickCount(maxTicks, 'scheduler.runUntilIdle: maxTicks');
    let n = 0;
    while (n < maxTicks && this.tick() > 0) n++;
    return n;
  }

  /** Put `t` on its CPU, scheduling out whoever was there (preempt notifiers). */
  #place(t: Thread): void {
    const host = this.host;
    let cpu = t.affinity ?? t.cpu;
    if (host.cpus[cpu]?.online !== true) cpu = this.#fallbackCpu();
    if (t.cpu !== cpu) {
      if (this.#current[t.cpu] === t) {
        t.notifyOut(t.cpu);
        this.#current[t.cpu] = undefined;
      }
      t.moveTo(cpu);
    }
    const cur = this.#current[cpu];
    if (cur !== t) {
      if (cur !== undefined) cur.notifyOut(cpu);
      this.#current[cpu] = t;
      t.notifyIn(cpu);
    }
  }

  #fallbackCpu(): number {
    for (const c of this.host.cpus) if (c.online) return c.id;
    return 0;
  }

  #online(cpu: number): boolean {
    return this.host.cpus[cpu]?.online === true;
  }

  /**
   * CPU going offline: its current thread is scheduled out; the runnable threads there move to the first other
   * online CPU, and one pinned to it is unpinned (`migrate_tasks` → `select_fallback_rq`). Frozen threads (a
   * suspend) stay where they are, pinned: `scheduler.thaw()` deals with them.
   */
  #evacuate(cpu: number): void {
    const cur = this.#current[cpu];
    if (cur !== undefined) {
      cur.notifyOut(cpu);
      this.#current[cpu] = undefined;
    }
    const target = this.host.cpus.find((c) => c.online && c.id !== cpu)?.id ?? 0;
    if (!this.#frozen) {
      for (const t of this.#threads) {
        if (!t.alive || (t.cpu !== cpu && t.affinity !== cpu)) continue;
        if (t.affinity === cpu) {
          // select_fallback_rq: "process %d (%s) no longer affine to cpu%d"
          t.unpin();
        }
        t.moveTo(target);
      }
    }
    // Every process's main thread (its default CPU) moves too, frozen or not: the model does not freeze direct
    // syscalls, and a task never runs on an offline CPU, so a direct (non-threaded) ioctl such as KVM_RUN must
    // not load a vCPU there. After a suspend, thawing puts it back.
    for (const p of this.host.processes()) {
      if (p.cpu !== cpu) continue;
      if (this.#frozen && !this.#movedWhileFrozen.has(p)) this.#movedWhileFrozen.set(p, { home: cpu, to: target });
      p.migrate(target);
    }
  }

  #finish(t: Thread, state: ThreadState): void {
    if (this.#current[t.cpu] === t) {
      t.notifyOut(t.cpu);
      this.#current[t.cpu] = undefined;
    }
    t.end(state);
  }

  /** The process died: the thread's blocking call is interrupted and it ends. */
  #kill(t: Thread): void {
    if (!t.alive) return;
    t.signalPending = true;
    try {
      t.gen?.return(undefined);
    } catch (e) {
      t.error = e;
    }
    this.#finish(t, 'killed');
  }
}

const THREAD_OPTIONS: ReadonlySet<string> = new Set(['name', 'cpu']);

/** Read and check a thread's options once. */
function threadOptions(opts: unknown): { readonly name: string | undefined; readonly cpu: unknown } {
  if (opts === undefined) return { name: undefined, cpu: undefined };
  if (typeof opts !== 'object' || opts === null || Array.isArray(opts)) throw new UsageError('ERR_INVALID_ARG', `spawn: thread options must be an object, got ${opts === null ? 'null' : typeof opts}`);
  for (const key of Object.keys(opts)) {
    if (!THREAD_OPTIONS.has(key)) throw new UsageError('ERR_UNKNOWN_NAME', `spawn: unknown thread option ${JSON.stringify(key)} (known: name, cpu)`);
  }
  const { name, cpu } = opts as { name?: unknown; cpu?: unknown };
  if (name !== undefined && typeof name !== 'string') throw new UsageError('ERR_INVALID_ARG', `spawn: the thread name must be a string, got ${typeof name}`);
  return { name, cpu };
}

/** A count of ticks: a non-negative safe integer. */
function tickCount(n: unknown, what: string): number {
  if (typeof n !== 'number') throw new UsageError('ERR_INVALID_ARG', `${what} must be a number, got ${typeof n}`);
  if (!Number.isSafeInteger(n) || n < 0) throw new UsageError('ERR_OUT_OF_RANGE', `${what} must be a non-negative integer, got ${String(n)}`);
  return n;
}


function readOnly(t: Thread, field: string): UsageError {
  return new UsageError('ERR_INVALID_ARG', `thread ${t.tid}: ${field} is read-only; move the thread with setAffinity(cpu), the checked sched_setaffinity`);
}

/**
 * Run a blocking kernel call as a kernel operation at each of its steps: every resumption (and the final return, when
 * the thread is killed) is bracketed, so its events reach listeners between steps, never inside one — also when the
 * thread is driven by hand rather than by {@link Scheduler.tick}.
 */
function* inOperation<T>(events: EventBus, gen: Generator<void, T, void>): Generator<void, T, void> {
  let finished = false;
  try {
    for (;;) {
      events.enter();
      let step: IteratorResult<void, T>;
      try {
        step = gen.next();
      } finally {
        events.leave();
      }
      if (step.done === true) {
        finished = true;
        return step.value;
      }
      yield;
    }
  } finally {
    if (!finished) {
      events.enter();
      try {
        gen.return(undefined as T);
      } finally {
        events.leave();
      }
    }
  }
}
