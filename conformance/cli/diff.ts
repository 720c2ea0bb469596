/**
 * `pnpm conformance:diff [--all] [pattern]`: the differences between the model and the recorded kernel.
 * By default only those no divergence explains (what makes the test fail), then the stale entries; with
 * `--all`, every difference with the divergence that covers it. `pattern` (with `*`) filters fact ids.
 *
 * @module
 */
import { DIVERGENCES } from '../divergences.js';
import { covers, explain, globRegExp } from '../replay/explain.js';
import { MODEL_VENDORS } from '../replay/facts.js';
import { replayAll } from '../replay/run-all.js';

const args = process.argv.slice(2);
const all = args.includes('--all');
const pattern = args.find((a) => !a.startsWith('--'));
const re = pattern === undefined ? undefined : globRegExp(pattern.includes('*') ? pattern : `${pattern}*`);

const { facts, mismatches } = replayAll();
const result = explain(mismatches, new Set(facts.map((f) => f.id)), DIVERGENCES, MODEL_VENDORS.map((v) => v.name));
const shown = (all ? mismatches : result.unexplained).filter((m) => re === undefined || re.test(m.fact));
for (const m of shown) {
  const by = DIVERGENCES.filter((d) => covers(d, m)).map((d) => d.id);
  console.log(`${m.fact} [${m.vendor}] ${m.path} (${m.step}): kernel ${m.expected}, model ${m.actual}${all ? `  ← ${by.join(', ') || 'UNEXPLAINED'}` : ''}`);
}
for (const s of result.stale) console.log(`stale: ${s}`);
for (const u of result.unknown) console.log(`unknown fact: ${u}`);
console.log(`${facts.length} facts, ${mismatches.length} differences, ${result.unexplained.length} unexplained, ${result.stale.length} stale`);
