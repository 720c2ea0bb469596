/**
 * Comparing host snapshots.
 *
 * @module
 */
import type { HostSnapshot } from '@vac/core';

const big = (_k: string, v: unknown): unknown => (typeof v === 'bigint' ? `${v}n` : v);

/** The first path where two plain values differ (`.providers.vac.virt.count: 1 ≠ 0`), or `undefined`. */
export function firstDifference(a: unknown, b: unknown, path = ''): string | undefined {
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
 * A snapshot without the hardware's per-CPU counters (VMXON/VMXOFF, SVME on/off, STGI, INVEPT, WBINVD …): they
 * count instructions executed, which is history, not state — a rolled-back 0→1 enable really did execute them.
 */
export function withoutCounters(s: HostSnapshot): unknown {
  const hw = s.hardware as { cpus?: ReadonlyArray<Record<string, unknown>> } & Record<string, unknown>;
  if (!Array.isArray(hw.cpus)) return s;
  return { ...s, hardware: { ...hw, cpus: hw.cpus.map(({ counters: _c, ...rest }: Record<string, unknown>) => rest) } };
}
