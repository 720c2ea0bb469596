/**
 * KVM_RUN for live VMMs: each call runs in a simulated thread of the VMM's simulated process (the model's own
 * blocking KVM_RUN, `Thread.ioctl` → `runThreaded`), and this module drives the host's scheduler while any such
 * call is in progress, between the bridge's other work on Node's event loop. So a vCPU halted with an in-kernel
 * irqchip sleeps in KVM_RUN, as on Linux, until an interrupt wakes it (an irqfd, a KVM_IRQ_LINE from another VMM
 * thread, the PIT or the LAPIC timer), a kick, or a signal to the VMM thread (EINTR, `KVM_EXIT_INTR`); and a
 * guest that never exits no longer holds the other VMMs up.
 *
 * **Simulated time and wall time.** Guest execution moves the host's clock as the model counts it (its nominal
 * nanoseconds per instruction, plus one scheduler period per tick). When every thread sleeps and a timer is
 * armed, the clock jumps to the timer's deadline — and with `pacing: 'wall'` (the default) not before the wall
 * clock has moved as far: a wait of D simulated ns lasts D ns of wall time, measured from the moment every
 * thread went to sleep. So a guest that sleeps for its PIT tick sleeps about as long as on a real host, while
 * the time it computes is the model's. `pacing: 'jump'` jumps at once (a firmware's timer loop then runs as
 * fast as the model can).
 *
 * @module
 */
import type { Host, Process, Thread } from '@vac/core';

/** How the clock's jumps to a timer deadline are paced while every simulated thread sleeps. */
export type TimePacing = 'wall' | 'jump';

/** What the runner tells the owner of one KVM_RUN. */
export interface RunHooks {
  /**
   * The call is about to go on after a sleep (or after running a while): guest memory should be synced with the
   * VMM's now, so the guest sees what other VMM threads wrote meanwhile.
   */
  readonly sync: () => void;
  /** The KVM_RUN returned `result`, or failed with `error` (once). */
  readonly done: (result: number | undefined, error: unknown) => void;
}

/** A KVM_RUN in progress. */
export interface RunHandle {
  /** The simulated thread it runs in. */
  readonly thread: Thread;
  /** A signal reached the VMM thread: the KVM_RUN returns EINTR at its next check (`signal_pending`). */
  interrupt(): void;
}

interface Run extends RunHandle {
  readonly hooks: RunHooks;
  wasSleeping: boolean;
  lastSync: number;
}

/** How long one turn of the scheduler may hold Node's event loop (ms). */
const TURN_MS = 4;
/** A guest that runs without sleeping sees the VMM's memory writes at least this often (ms of wall time). */
const SYNC_MS = 10;

/** Runs KVM_RUN calls in simulated threads and drives the host's scheduler while they last. */
export class VcpuRunner {
  readonly #host: Host;
  readonly #pacing: TimePacing;
  readonly #runs = new Set<Run>();
  #timer: NodeJS.Timeout | undefined;
  #immediate: NodeJS.Immediate | undefined;
  #driving = false;
  /** When every thread went to sleep: the wall time (ms) and the simulated time (ns). */
  #idleSince: { readonly wall: number; readonly sim: number } | undefined;
  #nextCpu = 0;

  /**
   * @param host - the simulated host
   * @param pacing - see the module notes; default `'wall'`
   */
  constructor(host: Host, pacing: TimePacing = 'wall') {
    this.#host = host;
    this.#pacing = pacing;
  }

  /** KVM_RUN calls in progress. */
  get active(): number {
    return this.#runs.size;
  }

  /** True while the runner has work to do at once (a guest to run): the bridge must give Node's event loop its turns. */
  get wantsTurn(): boolean {
    return this.#immediate !== undefined || this.#driving;
  }

  /** A CPU for a VMM thread's KVM_RUNs: the online CPUs in turn, so a VMM's vCPU threads spread as they would. */
  pickCpu(): number {
    const cpus = this.#host.cpus.filter((c) => c.online).map((c) => c.id);
    const cpu = cpus[this.#nextCpu % cpus.length] ?? 0;
    this.#nextCpu++;
    return cpu;
  }

  /**
   * Start `KVM_RUN(arg)` on `fd` of `proc` in a new simulated thread on `cpu` (the first online CPU if that one
   * is offline now); `hooks.done` is called when it returns.
   */
  start(proc: Process, fd: number, request: number, arg: unknown, cpu: number, name: string, hooks: RunHooks): RunHandle {
    const online = this.#host.cpus[cpu]?.online === true ? cpu : (this.#host.cpus.find((c) => c.online)?.id ?? 0);
    let finished = false;
    const finish = (result: number | undefined, error: unknown): void => {
      if (finished) return;
      finished = true;
      hooks.done(result, error);
    };
    const thread = this.#host.scheduler.spawn(proc, { name, cpu: online }, function* (t) {
      let result: number | undefined;
      let error: unknown;
      try {
        result = yield* t.ioctl(fd, request, arg);
      } catch (e) {
        error = e;
      } finally {
        // A killed process ends the thread here too (its KVM_RUN never returns to anyone).
        if (proc.alive) finish(result, error);
      }
    });
    const run: Run = {
      thread,
      hooks,
      wasSleeping: false,
      lastSync: performance.now(),
      interrupt: () => {
        if (!thread.alive) return;
        thread.signal();
        this.poke();
      },
    };
    this.#runs.add(run);
    this.#drive();
    return run;
  }

  /** Something happened that may wake a sleeping vCPU (an interrupt, a signal): look again now. */
  poke(): void {
    if (this.#runs.size > 0 && !this.#driving) this.#drive();
  }

  /** Stop driving (the bridge is closing). */
  close(): void {
    clearTimeout(this.#timer);
    if (this.#immediate !== undefined) clearImmediate(this.#immediate);
    this.#runs.clear();
  }

  #later(ms: number): void {
    if (ms <= 0) {
      this.#immediate ??= setImmediate(() => {
        this.#immediate = undefined;
        this.#drive();
      });
      return;
    }
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      this.#drive();
    }, Math.ceil(ms));
  }

  /** True when every simulated thread sleeps and none has a signal pending. */
  #idle(): boolean {
    for (const t of this.#host.scheduler.threads()) if (!t.sleeping || t.signalPending) return false;
    return true;
  }

  #drive(): void {
    if (this.#driving) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#driving = true;
    const start = performance.now();
    try {
      const sched = this.#host.scheduler;
      const clock = this.#host.clock;
      for (const r of [...this.#runs]) if (!r.thread.alive) this.#runs.delete(r);
      while (this.#runs.size > 0) {
        if (this.#host.systemState !== 'running') return this.#later(20); // suspended: nothing runs until resume
        const idle = this.#idle();
        if (idle) {
          const next = clock.nextDeadline();
          if (next === undefined) return; // only an event from outside can wake a thread now
          if (this.#pacing === 'wall') {
            this.#idleSince ??= { wall: performance.now(), sim: clock.nowNs };
            const wait = this.#idleSince.wall + (Number(next) - this.#idleSince.sim) / 1e6 - performance.now();
            if (wait >= 1) return this.#later(wait);
          }
        } else this.#idleSince = undefined;
        const now = performance.now();
        for (const r of this.#runs) {
          // Woken (or about to be, by the timer the clock jumps to), or running a long while: see the VMM's memory.
          if (idle || (r.wasSleeping && !r.thread.sleeping) || (!r.thread.sleeping && now - r.lastSync >= SYNC_MS)) {
            r.hooks.sync();
            r.lastSync = now;
          }
        }
        sched.tick();
        for (const r of [...this.#runs]) {
          if (!r.thread.alive) this.#runs.delete(r);
          else r.wasSleeping = r.thread.sleeping;
        }
        if (performance.now() - start >= TURN_MS) return this.#later(0);
      }
    } finally {
      this.#driving = false;
    }
  }
}
