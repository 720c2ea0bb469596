/**
 * Heap measurement: a forced full GC, then V8's used heap plus the bytes of live ArrayBuffers (typed arrays
 * keep their bytes outside the V8 heap).
 *
 * `global.gc` exists only under `node --expose-gc`; `pnpm bench` runs plain `tsx`, so the flag is switched
 * on at run time and the `gc` function taken from a fresh context, where V8 installs it.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

let gcFn: (() => void) | undefined;

/** The `gc()` function, exposing it on first use. */
export function getGc(): () => void {
  if (gcFn !== undefined) return gcFn;
  const existing: unknown = (globalThis as { gc?: unknown }).gc;
  if (typeof existing === 'function') {
    gcFn = existing as () => void;
    return gcFn;
  }
  setFlagsFromString('--expose-gc');
  const fromContext: unknown = runInNewContext('gc');
  if (typeof fromContext !== 'function') throw new Error('cannot expose gc: run node with --expose-gc');
  gcFn = fromContext as () => void;
  return gcFn;
}

/** Bytes in use after a full collection (run twice so weak references and finalizers settle). */
export function usedBytes(): number {
  const gc = getGc();
  gc();
  gc();
  const m = process.memoryUsage();
  return m.heapUsed + m.arrayBuffers;
}
