/**
 * Writing results: `results/<name>.json` (everything, machine-readable) and `results/<name>.md` (the tables).
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { arch, cpus, platform, release, totalmem } from 'node:os';
import { dirname } from 'node:path';
import type { ScalePoint } from '../suites/scale.js';
import { fmtNs, fmtOps, type Row, type TargetCheck } from './harness.js';

/** The machine the numbers come from. */
export interface Machine {
  readonly cpuModel: string;
  readonly logicalCpus: number;
  readonly memoryGiB: number;
  readonly os: string;
  readonly node: string;
  readonly v8: string;
}

/** Everything one run produced. */
export interface Results {
  readonly mode: 'full' | 'quick';
  readonly date: string;
  readonly durationSeconds: number;
  readonly machine: Machine;
  readonly rows: readonly Row[];
  readonly targets: readonly TargetCheck[];
  readonly points: readonly ScalePoint[];
}

/** Describe this machine. */
export function machine(): Machine {
  const c = cpus();
  return {
    cpuModel: c[0]?.model.trim() ?? 'unknown',
    logicalCpus: c.length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    os: `${platform()} ${release()} ${arch()}`,
    node: process.version,
    v8: process.versions.v8,
  };
}

function esc(s: string): string {
  return s.replace(/\|/g, '\\|');
}

/** The Markdown tables of a run. */
export function markdown(r: Results): string {
  const out: string[] = [];
  out.push(`Mode: **${r.mode}**${r.mode === 'quick' ? ' (tiny budgets: checks the harness, the numbers mean nothing)' : ''} · ${r.date} · ${r.durationSeconds.toFixed(0)} s`);
  out.push(`Machine: ${r.machine.cpuModel}, ${r.machine.logicalCpus} logical CPUs, ${r.machine.memoryGiB} GiB · ${r.machine.os} · Node ${r.machine.node} (V8 ${r.machine.v8})`);
  out.push('');
  out.push('| Benchmark | Contender | Case | ops/s | ns/op (median) | mean | ± (mean) | Ratio | Baseline (ratio = this ÷ baseline) |');
  out.push('| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const x of r.rows) {
    const bytes = x.unit === 'byte';
    const per = x.unit === 'op' || bytes ? '' : ` / ${x.unit}`;
    const ops = bytes ? '—' : `${fmtOps(x.opsPerSec)}${per}`;
    const ns = bytes ? `${x.nsPerOp.toFixed(0)} B` : `${fmtNs(x.nsPerOp)}${per}`;
    const mean = bytes ? '—' : fmtNs(x.meanNsPerOp);
    const rme = x.samples > 1 ? `${x.rme.toFixed(1)}%` : '—';
    const note = x.note === '' ? '' : ` (${x.note})`;
    out.push(`| ${esc(x.group)} | ${esc(x.name)}${esc(note)} | ${esc(x.variant)} | ${ops} | ${ns} | ${mean} | ${rme} | ${x.baseline === undefined ? '**1** (baseline)' : `${x.ratio.toFixed(2)}×`} | ${esc(x.baseline ?? '—')} |`);
  }
  out.push('');
  out.push('| Target (issue 7) | Measured | Verdict |');
  out.push('| --- | --- | --- |');
  for (const t of r.targets) out.push(`| ${esc(t.target)} | ${esc(t.measured)} | ${t.met ? '✅' : '❌'} ${esc(t.margin)} |`);
  out.push('');
  return out.join('\n');
}

/** Write `<base>.json` and `<base>.md`. */
export function writeResults(base: string, r: Results): void {
  mkdirSync(dirname(base), { recursive: true });
  writeFileSync(`${base}.json`, `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(`${base}.md`, markdown(r));
}
