/**
 * The typed event stream of a host.
 *
 * Every observable state change of the simulated host is an event. Payloads are plain objects; each carries
 * `seq`, the host's logical clock (one tick per event, so the same calls always give the same stream), and
 * `tick`, the simulated time of the thread scheduler when it happened.
 *
 * @module
 */
import { UsageError } from './errors.js';

/** Fields every event carries. */
export interface EventStamp {
  /** Logical clock: the position of this event in the host's stream (0, 1, 2, …). */
  readonly seq: number;
  /** Simulated time (scheduler ticks) when the event happened. */
  readonly tick: number;
}

/** Where a warning came from and what it said; recorded in `host.warnings` and emitted as `warning`. */
export interface WarningRecord {
  /** Who warned: a module name, `'kernel'`, `'perf'`, `'cpuhp'`, … */
  readonly source: string;
  /** The message, worded as the kernel logs it. */
  readonly message: string;
  /** The CPU concerned, if any. */
  readonly cpu?: number;
}

/**
 * Every event of a host, as listener signatures. Names are `area:what`.
 *
 * Packages that build on the core (vendor models, KVM) add their own events through
 * {@link ExtensionEvents}; they are listed in docs/events.md.
 */
export interface HostEvents {
  /** A warning (Linux `WARN`/`pr_warn`), recorded rather than thrown. */
  warning: (e: EventStamp & WarningRecord) => void;
  /** A module finished its init and is live. */
  'module:load': (e: EventStamp & { readonly name: string; readonly params: Readonly<Record<string, string>> }) => void;
  /** A module's exit finished and it is gone. */
  'module:unload': (e: EventStamp & { readonly name: string }) => void;
  /** A character device appeared in /dev. */
  'device:register': (e: EventStamp & { readonly path: string; readonly major: number; readonly minor: number; readonly owner: string | undefined }) => void;
  /** A character device disappeared from /dev. */
  'device:unregister': (e: EventStamp & { readonly path: string }) => void;
  /** A process was created. */
  'process:spawn': (e: EventStamp & { readonly pid: number }) => void;
  /** A process ended (killed or exited); its fds are closed first. */
  'process:exit': (e: EventStamp & { readonly pid: number }) => void;
  /** A file descriptor was installed in a process. */
  'fd:open': (e: EventStamp & { readonly pid: number; readonly fd: number; readonly path: string }) => void;
  /** A file descriptor was closed. */
  'fd:close': (e: EventStamp & { readonly pid: number; readonly fd: number; readonly path: string }) => void;
  /** A CPU came online. */
  'cpu:online': (e: EventStamp & { readonly cpu: number }) => void;
  /** A CPU went offline. */
  'cpu:offline': (e: EventStamp & { readonly cpu: number }) => void;
  /** A power transition began: suspend, resume, reboot or crash. */
  power: (e: EventStamp & { readonly what: 'suspend' | 'resume' | 'reboot' | 'crash' }) => void;
  /** Hardware virtualization was turned on on a CPU (VMXON / EFER.SVME set). */
  'virt:enable': (e: EventStamp & { readonly cpu: number }) => void;
  /** Hardware virtualization was turned off on a CPU (VMXOFF / EFER.SVME cleared). */
  'virt:disable': (e: EventStamp & { readonly cpu: number }) => void;
  /** VAC's global usage count changed. */
  'virt:usage': (e: EventStamp & { readonly count: number; readonly holder: string; readonly delta: 1 | -1 }) => void;
  /** An L1D cache flush before a VM entry (the L1TF mitigation, `vmentry_l1d_flush`). */
  'l1d:flush': (e: EventStamp & { readonly module: string; readonly cpu: number }) => void;
  /** A TLB flush, by kind (`'vpid'`, `'global'`, `'asid'`, `'all-asid'`, `'entry'` for a VPID-0 entry, …). */
  'tlb:flush': (e: EventStamp & { readonly cpu: number; readonly kind: string; readonly module?: string }) => void;
}

/**
 * Extra events declared by packages built on the core. Augment it with declaration merging:
 * `declare module '@vac/core' { interface ExtensionEvents { 'my:event': (e: …) => void } }`.
 */
export interface ExtensionEvents {}

/** All events: the core's and those added by other packages. */
export type AllEvents = HostEvents & ExtensionEvents;

/** The name of an event. */
export type EventName = keyof AllEvents & string;

/** The payload of event `K`, without the stamp. */
export type EventPayload<K extends EventName> = Omit<Parameters<AllEvents[K]>[0], keyof EventStamp>;

/**
 * What an event stands for in a timeline (see `buildTimeline`): packages that add events say so with
 * {@link EventBus.describe}, so the trace tools need not know their names. Each role expects these payload fields:
 *
 * | role | fields | what the timeline makes of it |
 * | --- | --- | --- |
 * | `run:start` | `cpu`, `module`, `vm`, `vcpu` | a vCPU starts running on a CPU (a run slice opens) |
 * | `run:end` | `cpu`, `module`, `vm`, `vcpu` | it stops running there (the slice closes) |
 * | `run:exit` | `cpu`, `module`, `vm`, `vcpu` | it returned to its VMM (counted on the slice) |
 * | `guest:start` | `module`, `vm`, `pid` | a VM is created (its span opens) |
 * | `guest:end` | `module`, `vm` | it is destroyed |
 * | `guest:vcpu` | `module`, `vm` | it got a vCPU |
 * | `mark:pmi` | `cpu`, `module`, `vm`, `vcpu` | a PMI reached that vCPU's module |
 */
export type TimelineRole = 'run:start' | 'run:end' | 'run:exit' | 'guest:start' | 'guest:end' | 'guest:vcpu' | 'mark:pmi';

/** What an event means to readers of a trace (declared with {@link EventBus.describe}). */
export interface EventMeaning {
  /** Its role in a timeline. */
  readonly timeline?: TimelineRole;
  /** How to name it in a picture (`virt:enable` is `'VMXON'` on Intel hardware). */
  readonly label?: string;
}

/** A listener of one event, as stored. */
type AnyListener = (event: EventStamp) => void;

/** A listener of every event. */
type AnyEventListener = (name: EventName, event: EventStamp) => void;

/** What the bus does with an exception thrown by a listener (the host records it as a warning). */
export type ListenerErrorHandler = (name: EventName, error: unknown) => void;

/** The full event `K` as listeners receive it: the stamp and the payload. */
export type EventOf<K extends EventName> = Parameters<AllEvents[K]>[0];

/**
 * The event stream of one host: typed `on`/`once`/`onAny`, a logical clock, and delivery that cannot hurt the
 * kernel.
 *
 * **The rule: listeners observe, after the fact.** An event is stamped (`seq`, `tick`) where it happens, but a
 * listener runs only when no kernel operation is in progress: events emitted inside an operation (a syscall, a
 * module load, a scheduler tick, a power transition, …) are queued and delivered, in `seq` order, once the
 * outermost operation has returned or thrown — as user space reads a trace buffer. So a listener always sees a
 * host in a consistent state, and whatever it calls back (`rmmod`, `kill`, `KVM_RUN`, `suspend`, …) is a new
 * operation of its own, never a re-entry into a half-done one; the events that call emits are delivered after
 * the ones already queued. An exception thrown by a listener is caught: the other listeners still run, and the
 * host records a warning (source `events`) naming the event and the error.
 *
 * Hot paths stamp first and build a payload only when someone listens: `const seq = bus.stamp(name)` advances
 * the clock and returns the event's `seq`, or -1 when nobody listens to `name`; `bus.deliver(name, event)` then
 * hands over a fresh stamped event. The clock advances for every event, listened to or not, so the stamps of a
 * stream do not depend on who is watching.
 */
export class EventBus {
  #seq = 0;
  /** Simulated time, advanced by the scheduler. */
  tick = 0;
  /** Listeners by event name (replaced, never mutated, so (un)subscribing during delivery is safe). */
  readonly #listeners: Record<string, readonly AnyListener[]> = Object.create(null) as Record<string, readonly AnyListener[]>;
  #any: readonly AnyEventListener[] = [];
  /** Named listeners plus `onAny` listeners: 0 means nobody listens to anything (one load on hot paths). */
  #total = 0;
  /** Kernel operations in progress (nested calls count). */
  #depth = 0;
  /** Events waiting for delivery, as name, event, name, event, … */
  readonly #queue: Array<EventName | EventStamp> = [];
  #delivering = false;
  readonly #onListenerError: ListenerErrorHandler;
  readonly #meanings = new Map<string, EventMeaning>();

  /**
   * @param onListenerError - called with each exception a listener throws (default: ignored). The host passes
   *   one that records a warning.
   */
  constructor(onListenerError: ListenerErrorHandler = () => undefined) {
    this.#onListenerError = onListenerError;
  }

  /** The logical clock: how many events have been emitted so far. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Say what event `name` means to trace readers (its timeline role, its label). Merged with what was said
   * before; a plug-in says it when it is set up (the hardware model when the host is created, KVM at load).
   */
  describe(name: EventName, meaning: EventMeaning): void {
    this.#meanings.set(name, { ...this.#meanings.get(name), ...meaning });
  }

  /** What was said of event `name` with {@link EventBus.describe}, if anything. */
  meaning(name: string): EventMeaning | undefined {
    return this.#meanings.get(name);
  }

  /** True while a kernel operation is in progress (listeners never see this as true). */
  get inKernel(): boolean {
    return this.#depth > 0;
  }

  /**
   * Listen to an event. Returns the function that stops listening (also `Disposable`).
   */
  on<K extends EventName>(name: K, listener: AllEvents[K]): Unsubscribe {
    if (typeof name !== 'string' || typeof listener !== 'function') throw new UsageError('ERR_INVALID_ARG', 'on(name, listener): the name must be an event name and the listener a function');
    const l = listener as unknown as AnyListener;
    this.#listeners[name] = [...(this.#listeners[name] ?? []), l];
    this.#total++;
    return makeUndo(() => {
      const list = this.#listeners[name] ?? [];
      const i = list.indexOf(l);
      if (i < 0) return;
      this.#listeners[name] = [...list.slice(0, i), ...list.slice(i + 1)];
      this.#total--;
    });
  }

  /** Listen to the next occurrence of an event only. */
  once<K extends EventName>(name: K, listener: AllEvents[K]): Unsubscribe {
    let undo: Unsubscribe | undefined;
    const wrapped = ((e: EventStamp) => {
      undo?.();
      (listener as unknown as AnyListener)(e);
    }) as unknown as AllEvents[K];
    undo = this.on(name, wrapped);
    return undo;
  }

  /** Listen to every event: `listener(name, event)`. Used by trace recorders. */
  onAny(listener: (name: EventName, event: EventStamp) => void): Unsubscribe {
    if (typeof listener !== 'function') throw new UsageError('ERR_INVALID_ARG', 'onAny(listener): the listener must be a function');
    this.#any = [...this.#any, listener];
    this.#total++;
    return makeUndo(() => {
      const i = this.#any.indexOf(listener);
      if (i < 0) return;
      this.#any = [...this.#any.slice(0, i), ...this.#any.slice(i + 1)];
      this.#total--;
    });
  }

  /** True when anyone listens to anything (a hot path with nothing to deliver may skip its bracket). */
  get listening(): boolean {
    return this.#total !== 0;
  }

  /** True when someone listens to `name` (or to every event). */
  wants(name: EventName): boolean {
    if (this.#total === 0) return false;
    return this.#any.length > 0 || this.#listeners[name] !== undefined && (this.#listeners[name] as readonly AnyListener[]).length > 0;
  }

  /**
   * Emit an event: stamp it now, deliver it when no kernel operation is in progress. The payload is copied, so
   * a caller may keep or reuse what it passes.
   */
  emit<K extends EventName>(name: K, payload: EventPayload<K>): void {
    const seq = this.#seq++;
    if (!this.wants(name)) return;
    this.#publish(name, { seq, tick: this.tick, ...payload } as EventStamp);
  }

  /**
   * Stamp an event about to happen on a hot path: advances the clock, and returns the event's `seq` when someone
   * listens to `name`, -1 when nobody does (then build nothing). Pair with {@link EventBus.deliver}.
   */
  stamp(name: EventName): number {
    const seq = this.#seq++;
    return this.wants(name) ? seq : -1;
  }

  /**
   * Hand over an event stamped with {@link EventBus.stamp} (`seq` from it, `tick` from {@link EventBus.tick}). The
   * object is given away: the bus keeps it as it is.
   */
  deliver<K extends EventName>(name: K, event: EventOf<K>): void {
    this.#publish(name, event as EventStamp);
  }

  /**
   * @internal A kernel operation begins: events it emits are delivered after the matching
   * {@link EventBus.leave}. Host, process, loader and scheduler entry points bracket their work with these.
   */
  enter(): void {
    this.#depth++;
  }

  /** @internal A kernel operation ends; at the outermost one, the queued events are delivered. */
  leave(): void {
    if (--this.#depth === 0 && this.#queue.length !== 0 && !this.#delivering) this.#drain();
  }

  /**
   * @hidden Run `op` as one kernel operation ({@link EventBus.enter} … {@link EventBus.leave}). Not for users, but
   * not stripped from the published `.d.ts` either: the KVM modules call it.
   */
  op<T>(op: () => T): T {
    this.#depth++;
    try {
      return op();
    } finally {
      this.leave();
    }
  }

  #publish(name: EventName, event: EventStamp): void {
    this.#queue.push(name, event);
    if (this.#depth === 0 && !this.#delivering) this.#drain();
  }

  /** Deliver the queue in order; events queued meanwhile (by operations listeners start) are delivered too. */
  #drain(): void {
    this.#delivering = true;
    const q = this.#queue;
    try {
      for (let i = 0; i < q.length; i += 2) this.#dispatch(q[i] as EventName, q[i + 1] as EventStamp);
    } finally {
      q.length = 0;
      this.#delivering = false;
    }
  }

  #dispatch(name: EventName, event: EventStamp): void {
    for (const l of this.#any) {
      try {
        l(name, event);
      } catch (e) {
        this.#onListenerError(name, e);
      }
    }
    const named = this.#listeners[name];
    if (named === undefined) return;
    for (const l of named) {
      try {
        l(event);
      } catch (e) {
        this.#onListenerError(name, e);
      }
    }
  }
}

/** A function that undoes a registration; calling it twice is harmless. Also usable with `using`. */
export interface Unsubscribe extends Disposable {
  (): void;
  /** Same as calling it. */
  dispose(): void;
}

/** Wrap an undo action so that it runs at most once and is `Disposable`. */
export function makeUndo(undo: () => void): Unsubscribe {
  let done = false;
  const run = (): void => {
    if (done) return;
    done = true;
    undo();
  };
  const f = run as Unsubscribe;
  Object.defineProperty(f, 'dispose', { value: run });
  Object.defineProperty(f, Symbol.dispose, { value: run });
  return f;
}
