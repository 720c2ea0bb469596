/**
 * Comparing host snapshots in the reliability suites: the first path where two differ, and the normalisation that
 * leaves out the history VAC keeps for CPUs where virtualization is off.
 *
 * @module
 */
import type { HostSnapshot } from '@vac/core';

function big(_k: string, v: unknown): unknown {
  return typeof v === 'bigint' ? `${v}n` : v;
}

/** The first path where two plain values differ, or undefined. */
export function firstDifference(a: unknown, b: unknown, path: string): string | undefined {
  if (Object.is(a, b)) return undefined;
  if (typeof a !== typeof b || typeof a !== 'object' || a === null || b === null) return `${path || '(root)'}: ${JSON.stringify(a, big)} ≠ ${JSON.stringify(b, big)}`;
  if (Array.isArray(a) !== Array.isArray(b)) return `${path}: array vs object`;
  const ka = Object.keys(a as object);
  const kb = Object.keys(b as object);
  if (ka.length !== kb.length) return `${path}: keys ${JSON.stringify(ka)} ≠ ${JSON.stringify(kb)}`;
  for (const k of ka) {
    const d = firstDifference((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k], `${path}.${k}`);
    if (d !== undefined) return d;
  }
  return undefined;
}

/**
 * A snapshot without the ASID state (generation, next ASID) of CPUs where VAC has virtualization off. That
 * state is history: the next enable resets it (`svm_hardware_enable`), and VAC deliberately never reuses a
 * generation number, so an operation that turned virtualization on and off again before failing (a 0→1
 * KVM_CREATE_VM whose fd allocation failed, a module init failing after its usage reference) moves it on.
 * See docs/reliability.md ("findings").
 */
export function normalize(s: HostSnapshot): HostSnapshot {
  const vac = s.providers['vac'] as { virt?: { enabled?: number[] }; asids?: Array<{ generation: number; nextAsid: number } | undefined> } | undefined;
  if (vac?.asids === undefined || vac.virt?.enabled === undefined) return s;
  const enabled = vac.virt.enabled;
  const asids = vac.asids.map((x, cpu) => (x !== undefined && enabled[cpu] === 0 ? { ...x, generation: 0, nextAsid: 0 } : x));
  return { ...s, providers: { ...s.providers, vac: { ...vac, asids } } };
}
