/**
 * A log of kernel callbacks and events in the order they happened. Listeners run after the kernel operation
 * that emitted their event (see `EventBus`), so a test that wants to see a callback *between* two events puts
 * each entry at its place on the logical clock instead: a callback at the clock's value when it ran (after
 * every event stamped before it), an event at its own `seq`.
 *
 * @module
 */
import type { EventStamp, Host } from '../../src/index.js';

/** See the module comment. */
export class InterleavedLog {
  readonly #host: Host;
  readonly #entries: Array<{ readonly at: number; readonly order: number; readonly text: string }> = [];

  constructor(host: Host) {
    this.#host = host;
  }

  /** A kernel callback ran now (a hotplug step, a syscore op, a driver's release, …). */
  push(text: string): void {
    this.#entries.push({ at: this.#host.events.seq - 0.5, order: this.#entries.length, text });
  }

  /** An event was delivered (call from its listener). */
  event(text: string, e: EventStamp): void {
    this.#entries.push({ at: e.seq, order: this.#entries.length, text });
  }

  /** Forget what was logged so far. */
  clear(): void {
    this.#entries.length = 0;
  }

  /** The entries in the order they happened. */
  lines(): string[] {
    return [...this.#entries].sort((a, b) => a.at - b.at || a.order - b.order).map((e) => e.text);
  }
}
