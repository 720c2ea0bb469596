/**
 * A seeded pseudo-random generator for fleets: the same seed gives the same fleet on every machine and in every
 * worker. mulberry32 (Tommy Ettinger's 32-bit generator; public domain), one stream per purpose and host so that a
 * host's draw does not depend on how many hosts were drawn before it elsewhere.
 *
 * @module
 */

/** A stream of numbers in [0, 1). */
export type Random = () => number;

/** mix32 of MurmurHash3's finalizer: spreads a 32-bit value over all bits. */
function mix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** A generator for `seed` and the stream `parts` (e.g. `[hostId]`). */
export function seededRandom(seed: number, ...parts: number[]): Random {
  let s = mix(seed >>> 0);
  for (const p of parts) s = mix(s ^ mix(p >>> 0) ^ 0x9e3779b9);
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** One element of `items`, drawn from `r`. */
export function pick<T>(r: Random, items: readonly T[]): T {
  return items[Math.floor(r() * items.length)] as T;
}
