/**
 * `pnpm conformance:figures`: recompute the conformance figures and write them into docs/fidelity.md, between
 * the `conformance-figures` markers (`--check`: only print them).
 *
 * @module
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { DIVERGENCES } from '../divergences.js';
import { MODEL_VENDORS } from '../replay/facts.js';
import { computeFigures, figuresMarkdown } from '../replay/figures.js';
import { loadMachine } from '../replay/golden.js';
import { replayAll } from '../replay/run-all.js';

const START = '<!-- conformance-figures:start -->';
const END = '<!-- conformance-figures:end -->';

const { facts, mismatches } = replayAll();
const m = loadMachine();
const pvm = m.modules.some((x) => x.name === 'kvm_pvm') ? ', vendor module kvm_pvm' : '';
const text = figuresMarkdown(computeFigures(facts, mismatches, DIVERGENCES, MODEL_VENDORS.length), `Linux ${m.uname.release}${pvm}, ${m.cpu.model_name}, ${m.online_cpus} CPUs`);
if (process.argv.includes('--check')) {
  console.log(text);
} else {
  const path = new URL('../../docs/fidelity.md', import.meta.url);
  const doc = readFileSync(path, 'utf8');
  const a = doc.indexOf(START);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`docs/fidelity.md has no ${START} … ${END} block`);
  writeFileSync(path, `${doc.slice(0, a + START.length)}\n${text}\n${doc.slice(b)}`);
  console.log('docs/fidelity.md: conformance figures updated.');
}
