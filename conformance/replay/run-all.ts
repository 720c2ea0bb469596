/**
 * Replaying every recorded fact on both model vendors: what the test, the figures and `conformance:diff`
 * share.
 *
 * @module
 */
import type { Mismatch } from './compare.js';
import { MODEL_VENDORS, modelHost, replayFact } from './facts.js';
import { GROUPS, loadGroup, loadMachine, type Fact } from './golden.js';
import { loadPrograms, programFlagsMask } from './guest.js';

/** The facts of every group, and the differences of each vendor's replay. */
export interface Replayed {
  readonly facts: readonly Fact[];
  readonly mismatches: readonly Mismatch[];
}

/** Replay every golden fact on both model vendors (a host like the recording machine for each). */
export function replayAll(): Replayed {
  const machine = loadMachine();
  const facts = GROUPS.flatMap((g) => loadGroup(g).facts);
  const programs = new Map(loadPrograms().programs.map((p) => [p.id, p]));
  const mismatches: Mismatch[] = [];
  for (const v of MODEL_VENDORS) {
    const host = modelHost(v, machine.online_cpus);
    for (const f of facts) {
      const program = programs.get(f.id);
      mismatches.push(...replayFact(host, v.name, f, program === undefined ? undefined : programFlagsMask(f, program)));
    }
  }
  return { facts, mismatches };
}
