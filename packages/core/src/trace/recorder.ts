/**
 * Recording a host's event stream.
 *
 * {@link recordEvents} listens to every event of a host (`host.events.onAny`) and keeps them, in order, for
 * the trace exporters ({@link toChromeTrace}, {@link renderTimelineSvg}) or for assertions. It sits on hot
 * paths (a `KVM_RUN` round trip emits `vcpu:load`, `vcpu:exit` and `vcpu:put` as soon as anyone listens), so
 * the per-event work is two array stores: no wrapper object, no copy of the payload (the bus builds a fresh
 * payload object per event and nobody mutates it). With a `limit` the recorder keeps only the newest events
 * in a ring buffer, so a long run cannot exhaust memory.
 *
 * ```ts
 * using rec = recordEvents(host);
 * host.modprobe(kvm({ postfix: '0' }));
 * const trace = toChromeTrace(rec.events());
 * ```
 *
 * @module
 */
import { UsageError } from '../errors.js';
import type { EventBus, EventMeaning, EventName, EventStamp } from '../events.js';

/**
 * One event of a stream: its name and its payload (which carries `seq` and `tick`). This is what the trace
 * exporters read; the names are plain strings so a stream may hold events of packages the core does not
 * know (`vcpu:load`, `vm:create`, …).
 */
export interface TraceEvent {
  /** The event name (`'module:load'`, `'cpu:offline'`, …). */
  readonly name: string;
  /** What the event means to trace readers, as its package declared it (`EventBus.describe`), if it did. */
  readonly meaning?: EventMeaning;
  /** The payload as emitted: the stamp plus the event's own fields. */
  readonly payload: EventStamp;
}

/** One recorded event: a {@link TraceEvent} whose name is a declared event name. */
export interface RecordedEvent extends TraceEvent {
  /** The event name. */
  readonly name: EventName;
}

/** Options of {@link recordEvents}. */
export interface RecordOptions {
  /**
   * Keep at most this many events (the newest; older ones are dropped and counted in
   * {@link TraceRecorder.dropped}). Default: unbounded.
   */
  readonly limit?: number;
  /** Event names not to record (for example `['fd:open', 'fd:close']`). */
  readonly exclude?: Iterable<string>;
}

/** A running (or stopped) recording of a host's events. Stopping is idempotent; also `Disposable`. */
export interface TraceRecorder extends Disposable {
  /** Whether it is still listening. */
  readonly recording: boolean;
  /** How many events it holds now. */
  readonly size: number;
  /** How many events were dropped because of the `limit` (excluded names are not counted). */
  readonly dropped: number;
  /** The recorded events, oldest first (a new array each call; the payloads are the emitted objects). */
  events(): RecordedEvent[];
  /** Forget the events recorded so far (and the dropped count); keeps recording if it was. */
  clear(): void;
  /** Stop listening; the events recorded so far stay readable. Calling it again is harmless. */
  stop(): void;
  /** Same as {@link TraceRecorder.stop}. */
  dispose(): void;
}

/** Anything with an event bus: a {@link Host}, or a test double. */
export interface TraceSource {
  /** The event stream to record. */
  readonly events: EventBus;
}

/**
 * Start recording every event of `host` (from now on), in emission order.
 *
 * @param host - the host (or anything with an `events` bus)
 * @param options - a memory bound and names to leave out
 * @returns the recorder; `stop()` it (or `using` it) when done
 * @throws UsageError (ERR_OUT_OF_RANGE) when `limit` is not a positive integer
 *
 * @example
 * ```ts
 * import { createHost, recordEvents } from '@vac/core';
 * import { kvm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 2, hardware: intel() });
 * const rec = recordEvents(host, { exclude: ['fd:open', 'fd:close'] });
 * host.modprobe(kvm({ postfix: '0' }));
 * rec.stop();
 * console.log(rec.events()[0]?.name); // 'module:load' (vac's, then kvm0's, its CPUs enabled, …)
 * ```
 */
export function recordEvents(host: TraceSource, options: RecordOptions = {}): TraceRecorder {
  const limit = options.limit ?? Infinity;
  if (limit !== Infinity && (!Number.isInteger(limit) || limit < 1)) {
    throw new UsageError('ERR_OUT_OF_RANGE', `recordEvents: limit must be a positive integer, got ${String(limit)}`);
  }
  const exclude = new Set<string>(options.exclude ?? []);
  // Parallel arrays: one store per field, no wrapper object per event.
  let names: EventName[] = [];
  let payloads: EventStamp[] = [];
  /** Ring-buffer mode only: where the oldest kept event is. */
  let head = 0;
  let dropped = 0;

  const push = (name: EventName, payload: EventStamp): void => {
    if (names.length < limit) {
      names.push(name);
      payloads.push(payload);
      return;
    }
    names[head] = name;
    payloads[head] = payload;
    head = head + 1 === limit ? 0 : head + 1;
    dropped++;
  };
  const listener =
    exclude.size === 0
      ? limit === Infinity
        ? (name: EventName, payload: EventStamp): void => {
            names.push(name);
            payloads.push(payload);
          }
        : push
      : (name: EventName, payload: EventStamp): void => {
          if (!exclude.has(name)) push(name, payload);
        };
  let unsubscribe: (() => void) | undefined = host.events.onAny(listener);

  const stop = (): void => {
    if (unsubscribe === undefined) return;
    const u = unsubscribe;
    unsubscribe = undefined;
    u();
  };
  return {
    get recording() {
      return unsubscribe !== undefined;
    },
    get size() {
      return names.length;
    },
    get dropped() {
      return dropped;
    },
    events(): RecordedEvent[] {
      const n = names.length;
      const out = new Array<RecordedEvent>(n);
      for (let i = 0; i < n; i++) {
        const j = (head + i) % n;
        const name = names[j] as EventName;
        const meaning = host.events.meaning(name);
        out[i] = meaning === undefined ? { name, payload: payloads[j] as EventStamp } : { name, meaning, payload: payloads[j] as EventStamp };
      }
      return out;
    },
    clear() {
      names = [];
      payloads = [];
      head = 0;
      dropped = 0;
    },
    stop,
    dispose: stop,
    [Symbol.dispose]: stop,
  };
}
