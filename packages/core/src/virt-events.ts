/**
 * The per-CPU virtualization events (`virt:enable`, `virt:disable`) as the hardware models emit them: stamped first,
 * with a payload built only when someone listens (they are emitted once per CPU, 8,192 times in a module load on a
 * big host).
 *
 * @module
 */
import type { EventBus } from './events.js';

/** Emit `virt:enable` or `virt:disable` for `cpu`. */
export function emitVirtEvent(events: EventBus, name: 'virt:enable' | 'virt:disable', cpu: number): void {
  const seq = events.stamp(name);
  if (seq >= 0) events.deliver(name, { seq, tick: events.tick, cpu });
}
