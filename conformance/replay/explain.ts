/**
 * Holding the differences against the divergence list (`conformance/divergences.ts`): every difference must
 * be a listed divergence, and every listed divergence must still diverge.
 *
 * @module
 */
import type { Mismatch } from './compare.js';

/** Why the model and the recording machine differ. */
export type DivergenceClass =
  /** The recording machine's vendor module or its instruction emulator differs from VMX/SVM (the model follows VMX/SVM). */
  | 'emulator-vendor'
  /** The recording machine's CPU, kernel configuration or module parameters differ from the model's hosts. */
  | 'host-config'
  /** Linux 6.18 (the recording machine) differs from Linux 6.12 (the model). */
  | 'linux-version'
  /** The model chooses to differ (the reason is in docs/fidelity.md). */
  | 'deliberate'
  /** The model lacks it yet. */
  | 'not-modelled';

/** Every class, in the order figures list them. */
export const DIVERGENCE_CLASSES: readonly DivergenceClass[] = ['not-modelled', 'emulator-vendor', 'host-config', 'linux-version', 'deliberate'];

/** A known difference between the model and the real kernel. */
export interface Divergence {
  /** A short stable name. */
  readonly id: string;
  readonly class: DivergenceClass;
  /** What differs, in one sentence. */
  readonly summary: string;
  /** The Linux source of the real behaviour: `file function`. */
  readonly linux: readonly string[];
  /** `deliberate`: why (as docs/fidelity.md says); others: any note. */
  readonly reason?: string;
  /**
   * The facts it covers: exact ids, or patterns with `*` (any characters). Each exact id must still
   * diverge (on each of `vendors`); each pattern must still match some divergence.
   */
  readonly facts: readonly string[];
  /** Which differences of those facts: a pattern over the path (`steps.*.errno`), or a test. Default: any. */
  readonly where?: string | ((m: Mismatch) => boolean);
  /** The model vendors it applies to (default both). */
  readonly vendors?: readonly Mismatch['vendor'][];
}

/** A pattern with `*` as a regular expression over the whole string. */
export function globRegExp(pattern: string): RegExp {
  return new RegExp(`^${pattern.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
}

function isPattern(s: string): boolean {
  return s.includes('*');
}

/** Whether divergence `d` covers mismatch `m`. */
export function covers(d: Divergence, m: Mismatch): boolean {
  if (d.vendors !== undefined && !d.vendors.includes(m.vendor)) return false;
  if (!d.facts.some((f) => (isPattern(f) ? globRegExp(f).test(m.fact) : f === m.fact))) return false;
  const w = d.where;
  if (w === undefined) return true;
  return typeof w === 'string' ? globRegExp(w).test(m.path) : w(m);
}

/** The outcome of holding differences against the list. */
export interface Explanation {
  /** Differences no divergence covers. */
  readonly unexplained: readonly Mismatch[];
  /** Listed facts (or patterns) that no longer diverge as listed: `divergence-id: fact (vendor)`. */
  readonly stale: readonly string[];
  /** Listed fact ids that no golden fact has (a typo, or a fact that was renamed). */
  readonly unknown: readonly string[];
  /** Divergence ids used twice. */
  readonly duplicates: readonly string[];
  /** For each divergence, the facts it covers with a difference, per vendor. */
  readonly covered: ReadonlyMap<string, ReadonlySet<string>>;
}

/** Hold `mismatches` (of the facts `factIds`, replayed on `vendors`) against `list`. */
export function explain(mismatches: readonly Mismatch[], factIds: ReadonlySet<string>, list: readonly Divergence[], vendors: readonly Mismatch['vendor'][]): Explanation {
  const unexplained: Mismatch[] = [];
  const covered = new Map<string, Set<string>>(list.map((d) => [d.id, new Set<string>()]));
  for (const m of mismatches) {
    let any = false;
    for (const d of list) {
      if (!covers(d, m)) continue;
      any = true;
      covered.get(d.id)?.add(`${m.fact}@${m.vendor}`);
    }
    if (!any) unexplained.push(m);
  }
  const stale: string[] = [];
  const unknown: string[] = [];
  for (const d of list) {
    const hit = covered.get(d.id) ?? new Set<string>();
    for (const v of d.vendors ?? vendors) {
      for (const f of d.facts) {
        if (isPattern(f)) {
          const re = globRegExp(f);
          if (![...hit].some((h) => h.endsWith(`@${v}`) && re.test(h.slice(0, -v.length - 1)))) stale.push(`${d.id}: no fact matching ${f} diverges on ${v}`);
        } else if (factIds.has(f) && !hit.has(`${f}@${v}`)) {
          stale.push(`${d.id}: ${f} agrees on ${v}`);
        }
      }
    }
    for (const f of d.facts) if (!isPattern(f) && !factIds.has(f)) unknown.push(`${d.id}: ${f}`);
  }
  const seen = new Set<string>();
  const duplicates = list.map((d) => d.id).filter((id) => (seen.has(id) ? true : (seen.add(id), false)));
  return { unexplained, stale, unknown, duplicates, covered };
}
