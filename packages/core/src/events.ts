/**
 * The typed event stream of a host.
 *
 * Every observable state change of the simulated host is an event. Payloads are plain objects; each carries
 * `seq`, the host's logical clock (one tick per event, so the same calls always give the same stream), and
 * `tick`, the simulated time of the thread scheduler when it happened.
 *
 * @module
 */
import { EventEmitter } from 'eventemitter3';

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
 * `declare module '@vac/core' { interface ExtensionEvents { 'vcpu:load': (e: …) => void } }`.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-object-type
export interface ExtensionEvents {}

/** All events: the core's and those added by other packages. */
export type AllEvents = HostEvents & ExtensionEvents;

/** The name of an event. */
export type EventName = keyof AllEvents & string;

/** The payload of event `K`, without the stamp. */
export type EventPayload<K extends EventName> = Omit<Parameters<AllEvents[K]>[0], keyof EventStamp>;

/**
 * The event stream of one host: typed `on`/`once`/`off` over eventemitter3, a logical clock, and a cheap
 * `wants()` check so hot paths build no payload when nobody listens.
 */
export class EventBus {
  readonly #emitter = new EventEmitter();
  #seq = 0;
  /** Simulated time, advanced by the scheduler. */
  tick = 0;

  /** The logical clock: how many events have been emitted so far. */
  get seq(): number {
    return this.#seq;
  }

  /**
   * Listen to an event. Returns the function that stops listening (also `Disposable`).
   */
  on<K extends EventName>(name: K, listener: AllEvents[K]): Unsubscribe {
    this.#emitter.on(name, listener as (...args: unknown[]) => void);
    this.#count(name, 1);
    return makeUndo(() => {
      this.#emitter.off(name, listener as (...args: unknown[]) => void);
      this.#count(name, -1);
    });
  }

  /** Listen to the next occurrence of an event only. */
  once<K extends EventName>(name: K, listener: AllEvents[K]): Unsubscribe {
    let undo: Unsubscribe | undefined;
    const wrapped = ((e: EventStamp) => {
      undo?.();
      (listener as (e: EventStamp) => void)(e);
    }) as AllEvents[K];
    undo = this.on(name, wrapped);
    return undo;
  }

  /** Listener counts by name, kept here because eventemitter3's `listenerCount` is slow on hot paths. */
  readonly #counts: Record<string, number> = Object.create(null) as Record<string, number>;

  #count(name: string, delta: number): void {
    this.#counts[name] = (this.#counts[name] ?? 0) + delta;
    this.#total += delta;
  }

  /** Named listeners plus `onAny` listeners: 0 means nobody listens to anything (one load on hot paths). */
  #total = 0;

  /** Listen to every event: `listener(name, payload)`. Used by trace recorders. */
  onAny(listener: (name: EventName, payload: EventStamp) => void): Unsubscribe {
    this.#any.push(listener);
    this.#total++;
    return makeUndo(() => {
      const i = this.#any.indexOf(listener);
      if (i >= 0) {
        this.#any.splice(i, 1);
        this.#total--;
      }
    });
  }

  readonly #any: Array<(name: EventName, payload: EventStamp) => void> = [];

  /** True when someone listens to `name` (or to every event). */
  wants(name: EventName): boolean {
    if (this.#total === 0) return false;
    return this.#any.length > 0 || (this.#counts[name] ?? 0) > 0;
  }

  /**
   * Emit an event. The clock advances whether or not anyone listens, so the stamps of a stream do not
   * depend on who is watching.
   */
  emit<K extends EventName>(name: K, payload: EventPayload<K>): void {
    const seq = this.#seq++;
    if (this.#total === 0 || (this.#any.length === 0 && (this.#counts[name] ?? 0) === 0)) return;
    const event = { seq, tick: this.tick, ...payload } as EventStamp;
    for (const l of this.#any) l(name, event);
    if ((this.#counts[name] ?? 0) > 0) this.#emitter.emit(name, event);
  }

  /**
   * Emit an event whose payload is a fresh object literal the caller gives away, written with `seq: 0, tick: 0`
   * first (so its shape and key order are those of a stamped event): it is stamped in place instead of copied.
   * For hot paths; `emit` copies, so a caller may keep or reuse what it passes there.
   */
  emitOwned<K extends EventName>(name: K, payload: EventPayload<K> & { seq: number; tick: number }): void {
    const seq = this.#seq++;
    if (this.#total === 0 || (this.#any.length === 0 && (this.#counts[name] ?? 0) === 0)) return;
    payload.seq = seq;
    payload.tick = this.tick;
    const event = payload as unknown as EventStamp;
    for (const l of this.#any) l(name, event);
    if ((this.#counts[name] ?? 0) > 0) this.#emitter.emit(name, event);
  }

  /** Advance the logical clock for an event nobody listens to (hot paths call this instead of `emit`). */
  skip(): void {
    this.#seq++;
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
