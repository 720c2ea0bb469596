/**
 * Assertions for failing kernel operations: the right `KernelError` (code and errno), and the host exactly as
 * before (docs/spec.md §4 invariant 7).
 *
 * @module
 */
import type { Host } from '../../src/index.js';

export { expectKernelError, expectUsageError, thrown } from '@vac/test-support';

/** Collect the events named `names` from `host` into one ordered list of `[name, payload]`. */
export function record(host: Host, ...names: string[]): Array<[string, Record<string, unknown>]> {
  const out: Array<[string, Record<string, unknown>]> = [];
  host.events.onAny((name, payload) => {
    if (names.length === 0 || names.includes(name)) out.push([name, payload as unknown as Record<string, unknown>]);
  });
  return out;
}
