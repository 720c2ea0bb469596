/**
 * `pnpm bench` (full) and `pnpm bench:quick` (`--quick`): every benchmark of issue 7, with tinybench.
 *
 * Full: about two minutes on a 2-core machine; writes `bench/results/latest.json` and `latest.md`, and the
 * scale plot `docs/performance-scale.svg`. Quick: tiny budgets and smaller populations (checks the harness
 * and the correctness checks, not speed); writes `bench/results/quick.json` and `quick.md`.
 *
 * No timing is asserted anywhere: targets are reported as met or missed. The correctness checks inside the
 * benchmarks (same lowest-free IDs, the expected exits, invariants) throw, and then the run fails.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { budget, type Row, type TargetCheck } from './lib/harness.js';
import { machine, markdown, writeResults, type Results } from './lib/report.js';
import { scaleSvg } from './plot.js';
import { runAsid } from './suites/asid.js';
import { runCosts } from './suites/costs.js';
import { runFleet } from './suites/fleet.js';
import { runIrqDelivery } from './suites/irq-delivery.js';
import { runKvmRun } from './suites/kvm-run.js';
import { runPmi } from './suites/pmi.js';
import { runScale, type ScalePoint } from './suites/scale.js';
import { runUpgrade } from './suites/upgrade.js';
import { runVcpuState } from './suites/vcpu-state.js';
import { runMemslots } from './suites/memslots.js';
import { runVpid } from './suites/vpid.js';

const quick = process.argv.includes('--quick');
const only = process.argv.find((a) => a.startsWith('--only='))?.slice('--only='.length);
const b = budget(quick);
const started = performance.now();

const rows: Row[] = [];
const targets: TargetCheck[] = [];
const points: ScalePoint[] = [];
const suites: Array<[string, () => { rows: Row[]; targets: TargetCheck[]; points?: ScalePoint[] }]> = [
  ['vpid', () => runVpid(b)],
  ['asid', () => runAsid(b)],
  ['pmi', () => runPmi(b)],
  ['kvm-run', () => runKvmRun(b)],
  ['scale', () => runScale(b)],
  ['upgrade', () => runUpgrade(b)],
  ['costs', () => runCosts(b)],
  ['vcpu-state', () => runVcpuState(b)],
  ['memslots', () => runMemslots(b)],
  ['irq-delivery', () => runIrqDelivery(b)],
  ['fleet', () => runFleet(b)],
];
for (const [name, run] of suites) {
  if (only !== undefined && !only.split(',').includes(name)) continue;
  const t0 = performance.now();
  const r = run();
  rows.push(...r.rows);
  targets.push(...r.targets);
  points.push(...(r.points ?? []));
  process.stderr.write(`bench: ${name} done in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
}

const results: Results = {
  mode: quick ? 'quick' : 'full',
  date: new Date().toISOString(),
  durationSeconds: (performance.now() - started) / 1000,
  machine: machine(),
  rows,
  targets,
  points,
};
const here = fileURLToPath(new URL('.', import.meta.url));
const partial = only !== undefined;
const base = `${here}results/${quick ? 'quick' : partial ? 'partial' : 'latest'}`;
writeResults(base, results);
if (!quick && !partial) writeFileSync(fileURLToPath(new URL('../docs/performance-scale.svg', import.meta.url)), scaleSvg(points));
process.stdout.write(markdown(results));
process.stdout.write(`\nwrote ${base}.json and ${base}.md${!quick && !partial ? ' and docs/performance-scale.svg' : ''}\n`);
