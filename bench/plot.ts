/**
 * The scale plot of docs/performance.md: cost per unit against size for the scale benchmarks, log–log, as a
 * dependency-free SVG. A flat line is what "scales" means here.
 *
 * `run.ts` calls {@link scaleSvg} after a full run; to redraw from saved results:
 * `tsx --conditions=@vac/source bench/plot.ts [bench/results/latest.json] [docs/performance-scale.svg]`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ScalePoint } from './suites/scale.js';

const W = 760;
const H = 440;
const M = { left: 78, right: 20, top: 44, bottom: 118 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];

function fmtNs(ns: number): string {
  if (ns < 1000) return `${Number(ns.toPrecision(3))} ns`;
  if (ns < 1e6) return `${Number((ns / 1e3).toPrecision(3))} µs`;
  return `${Number((ns / 1e6).toPrecision(3))} ms`;
}

function fmtSize(n: number): string {
  return n >= 1000 ? `${Number((n / 1000).toPrecision(3))}k` : String(n);
}

function xmlEscape(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** Draw the points (grouped by series) on log–log axes. */
export function scaleSvg(points: readonly ScalePoint[]): string {
  const series = new Map<string, ScalePoint[]>();
  for (const p of points) {
    const list = series.get(p.series) ?? [];
    list.push(p);
    series.set(p.series, list);
  }
  const xs = points.map((p) => p.size);
  const ys = points.map((p) => p.nsPerUnit);
  const x0 = Math.floor(Math.log10(Math.min(...xs, 10)));
  const x1 = Math.ceil(Math.log10(Math.max(...xs, 10)));
  const y0 = Math.floor(Math.log10(Math.min(...ys, 10)));
  const y1 = Math.ceil(Math.log10(Math.max(...ys, 100)));
  const pw = W - M.left - M.right;
  const ph = H - M.top - M.bottom;
  const px = (v: number): number => M.left + ((Math.log10(v) - x0) / (x1 - x0 || 1)) * pw;
  const py = (v: number): number => M.top + ph - ((Math.log10(v) - y0) / (y1 - y0 || 1)) * ph;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="system-ui, sans-serif" font-size="12">`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(`<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="600">Cost per unit against size (log–log; flat = scales)</text>`);
  // Grid and tick labels at every decade.
  for (let e = x0; e <= x1; e++) {
    const x = px(10 ** e).toFixed(1);
    out.push(`<line x1="${x}" y1="${M.top}" x2="${x}" y2="${M.top + ph}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${x}" y="${M.top + ph + 16}" text-anchor="middle">${fmtSize(10 ** e)}</text>`);
  }
  for (let e = y0; e <= y1; e++) {
    const y = py(10 ** e).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${y}" x2="${M.left + pw}" y2="${y}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${M.left - 6}" y="${(Number(y) + 4).toFixed(1)}" text-anchor="end">${fmtNs(10 ** e)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#555"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${M.top + ph + 34}" text-anchor="middle">size: CPUs (insmod), VMs alive (create), VMs moved (upgrade)</text>`);
  out.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">time per unit</text>`);
  // Series.
  let i = 0;
  for (const [name, list] of series) {
    const color = COLORS[i % COLORS.length] as string;
    const sorted = [...list].sort((a, b) => a.size - b.size);
    const path = sorted.map((p) => `${px(p.size).toFixed(1)},${py(p.nsPerUnit).toFixed(1)}`).join(' ');
    out.push(`<polyline points="${path}" fill="none" stroke="${color}" stroke-width="2"/>`);
    for (const p of sorted) {
      const cx = px(p.size).toFixed(1);
      const cy = py(p.nsPerUnit).toFixed(1);
      out.push(`<circle cx="${cx}" cy="${cy}" r="3.5" fill="${color}"><title>${xmlEscape(`${name}: ${fmtSize(p.size)} → ${fmtNs(p.nsPerUnit)}`)}</title></circle>`);
    }
    const lx = M.left + (i % 2) * (pw / 2);
    const ly = M.top + ph + 56 + Math.floor(i / 2) * 18;
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 22}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${lx + 28}" y="${ly}">${xmlEscape(name)}</text>`);
    i++;
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}

// Run directly: redraw from a results file.
if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const from = process.argv[2] ?? fileURLToPath(new URL('./results/latest.json', import.meta.url));
  const to = process.argv[3] ?? fileURLToPath(new URL('../docs/performance-scale.svg', import.meta.url));
  const parsed = JSON.parse(readFileSync(from, 'utf8')) as { points?: ScalePoint[] };
  writeFileSync(to, scaleSvg(parsed.points ?? []));
  process.stdout.write(`wrote ${to}\n`);
}
