/**
 * The model against the facts recorded from a real /dev/kvm (conformance/golden/): every fact is replayed on
 * both model vendors, every difference must be a listed divergence (conformance/divergences.ts), and every
 * listed divergence must still diverge. Reads only the golden files: no /dev/kvm needed.
 */
import { describe, expect, test } from 'vitest';
import { DIVERGENCES } from '../divergences.js';
import type { Mismatch } from '../replay/compare.js';
import { explain } from '../replay/explain.js';
import { MODEL_VENDORS } from '../replay/facts.js';
import { replayAll } from '../replay/run-all.js';

const { facts, mismatches } = replayAll();
const factIds = new Set(facts.map((f) => f.id));
const result = explain(mismatches, factIds, DIVERGENCES, MODEL_VENDORS.map((v) => v.name));

function line(m: Mismatch): string {
  return `${m.fact} [${m.vendor}] ${m.path} (${m.step}): kernel ${m.expected}, model ${m.actual}`;
}

describe('conformance with a real /dev/kvm', () => {
  test('the golden files hold facts with unique ids', () => {
    expect(facts.length).toBeGreaterThan(800);
    expect(factIds.size).toBe(facts.length);
  });

  test('every difference from the kernel is a listed divergence (pnpm conformance:diff lists them)', () => {
    expect(result.unexplained.map(line)).toEqual([]);
  });

  test('every listed divergence still diverges, and names recorded facts', () => {
    expect({ stale: result.stale, unknown: result.unknown, duplicates: result.duplicates }).toEqual({ stale: [], unknown: [], duplicates: [] });
  });

  test('every divergence has a class, a summary and a Linux source; deliberate ones a reason', () => {
    for (const d of DIVERGENCES) {
      expect(d.summary.length, d.id).toBeGreaterThan(20);
      expect(d.linux.length, d.id).toBeGreaterThan(0);
      expect(d.facts.length, d.id).toBeGreaterThan(0);
      if (d.class === 'deliberate') expect(d.reason ?? '', d.id).toMatch(/fidelity\.md/);
    }
  });
});
