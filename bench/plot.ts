/**
 * The scale plot of docs/performance.md: cost per unit against size for the scale benchmarks, log–log, as a
 * dependency-free SVG. A flat line is what "scales" means here.
 *
 * Every series has its own colour, marker and dash pattern, shown in the legend, so two series with the same
 * values stay apart: a dashed line over a solid one shows both, and markers that would sit within a few pixels of
 * another series' marker are moved sideways (their tooltip keeps the exact value).
 *
 * `run.ts` calls {@link scaleSvg} after a full run; to redraw from saved results:
 * `tsx --conditions=@vac/source bench/plot.ts [bench/results/latest.json] [docs/performance-scale.svg]`.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { ScalePoint } from './suites/scale.js';

/** 600 px: the width of a guide's column, so its 12-px text reads at 12 px there. */
const W = 600;
/** Height of the plot area. */
const PH = 280;
const M = { left: 78, right: 20, top: 44 };
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b'];
/** Marker shapes, one per series (in order). */
export const MARKERS = ['circle', 'square', 'triangle', 'diamond'] as const;
/** Dash patterns, one per series (in order; `undefined` is solid). */
export const DASHES = [undefined, '7 4', '2 3', '9 3 2 3'] as const;
/** Markers of different series closer than this (px) are moved sideways. */
const NEAR = 9;
/** How far a crowded marker moves per series sharing its place (px). */
const DODGE = 8;

/** The style of the `i`-th series: colour, marker, dash; no two of the first 12 share all three. */
export function seriesStyle(i: number): { color: string; marker: (typeof MARKERS)[number]; dash: string | undefined } {
  return { color: COLORS[i % COLORS.length] as string, marker: MARKERS[i % MARKERS.length] as (typeof MARKERS)[number], dash: DASHES[i % DASHES.length] };
}

/** A marker of `shape` centred at (cx, cy). */
function marker(shape: (typeof MARKERS)[number], cx: number, cy: number, color: string, title: string): string {
  const t = title === '' ? '' : `<title>${xmlEscape(title)}</title>`;
  const c = (n: number): string => n.toFixed(1);
  const paint = `fill="${color}" stroke="#ffffff" stroke-width="1" data-marker="${shape}"`;
  switch (shape) {
    case 'circle':
      return `<circle cx="${c(cx)}" cy="${c(cy)}" r="4" ${paint}>${t}</circle>`;
    case 'square':
      return `<rect x="${c(cx - 3.6)}" y="${c(cy - 3.6)}" width="7.2" height="7.2" ${paint}>${t}</rect>`;
    case 'triangle':
      return `<polygon points="${c(cx)},${c(cy - 4.8)} ${c(cx + 4.6)},${c(cy + 3.4)} ${c(cx - 4.6)},${c(cy + 3.4)}" ${paint}>${t}</polygon>`;
    case 'diamond':
      return `<polygon points="${c(cx)},${c(cy - 5)} ${c(cx + 5)},${c(cy)} ${c(cx)},${c(cy + 5)} ${c(cx - 5)},${c(cy)}" ${paint}>${t}</polygon>`;
  }
}

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
  const ph = PH;
  // Below the plot: tick labels, the axis title, then the legend, one series a line.
  const H = M.top + ph + 56 + series.size * 18;
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
    out.push(`<text x="${x}" y="${M.top + ph + 18}" text-anchor="middle">${fmtSize(10 ** e)}</text>`);
  }
  for (let e = y0; e <= y1; e++) {
    const y = py(10 ** e).toFixed(1);
    out.push(`<line x1="${M.left}" y1="${y}" x2="${M.left + pw}" y2="${y}" stroke="#e3e3e3"/>`);
    out.push(`<text x="${M.left - 6}" y="${(Number(y) + 4).toFixed(1)}" text-anchor="end">${fmtNs(10 ** e)}</text>`);
  }
  out.push(`<rect x="${M.left}" y="${M.top}" width="${pw}" height="${ph}" fill="none" stroke="#555"/>`);
  out.push(`<text x="${M.left + pw / 2}" y="${M.top + ph + 34}" text-anchor="middle">size: CPUs (insmod), VMs (create), VMs moved (upgrade)</text>`);
  out.push(`<text transform="translate(16 ${M.top + ph / 2}) rotate(-90)" text-anchor="middle">time per unit</text>`);
  // Series: where each marker goes. A marker within NEAR px of an earlier series' marker moves sideways, one
  // DODGE step per series already there (alternating right and left), so every series stays visible.
  const placed: Array<{ x: number; y: number }> = [];
  const drawn = [...series].map(([name, list], i) => {
    const sorted = [...list].sort((a, b) => a.size - b.size);
    const at = sorted.map((p) => {
      const x = px(p.size);
      const y = py(p.nsPerUnit);
      const crowd = placed.filter((q) => Math.hypot(q.x - x, q.y - y) < NEAR).length;
      const dx = crowd === 0 ? 0 : (crowd % 2 === 1 ? 1 : -1) * Math.ceil(crowd / 2) * DODGE;
      return { p, x: x + dx, y };
    });
    placed.push(...at);
    return { name, style: seriesStyle(i), at };
  });
  for (const { name, style, at } of drawn) {
    const path = at.map((q) => `${q.x.toFixed(1)},${q.y.toFixed(1)}`).join(' ');
    out.push(`<polyline points="${path}" fill="none" stroke="${style.color}" stroke-width="2"${style.dash === undefined ? '' : ` stroke-dasharray="${style.dash}"`} data-series="${xmlEscape(name)}"/>`);
  }
  for (const { name, style, at } of drawn) {
    for (const q of at) out.push(marker(style.marker, q.x, q.y, style.color, `${name}: ${fmtSize(q.p.size)} → ${fmtNs(q.p.nsPerUnit)}`));
  }
  // The legend: each series' line sample (colour and dash) with its marker, then its name.
  for (const [i, { name, style }] of drawn.entries()) {
    const lx = M.left;
    const ly = M.top + ph + 56 + i * 18;
    out.push(`<line x1="${lx}" y1="${ly - 4}" x2="${lx + 26}" y2="${ly - 4}" stroke="${style.color}" stroke-width="2"${style.dash === undefined ? '' : ` stroke-dasharray="${style.dash}"`} data-legend="${xmlEscape(name)}"/>`);
    out.push(marker(style.marker, lx + 13, ly - 4, style.color, ''));
    out.push(`<text x="${lx + 32}" y="${ly}">${xmlEscape(name)}</text>`);
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
