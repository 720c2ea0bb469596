/**
 * The picture of a rollout ({@link renderRolloutSvg}): one row per host, time across (simulated seconds from the
 * rollout's start), each row coloured by the module build the host's VMs run on — the old build, the move to the
 * new one, the new build — with failed upgrades and rolled-back hosts marked, and each wave's start as a dashed
 * line. A fleet larger than `maxRows` is shown by a sample: the failed hosts first, then the rolled-back ones, then
 * hosts evenly spread over the rollout order — drawn in wave order; the subtitle says how many are shown.
 *
 * The picture is laid out `layoutWidth` units wide (600 by default, the width a guide shows it at) with every text
 * at least {@link MIN_TEXT} units, and the document is `width` pixels wide (its full size when opened on its own):
 * wherever it is shown at least `layoutWidth` px wide, its text is at least 11 px.
 *
 * @module
 */
import { MODULE_PALETTE } from '@vac/core';
import type { FleetReport, HostRecord } from './rollout.js';

/** Options of {@link renderRolloutSvg}. */
export interface RolloutSvgOptions {
  /** The title. Default: the builds and the outcome. */
  readonly title?: string;
  /** Width in pixels of the SVG document, its size when opened on its own. Default 1000. */
  readonly width?: number;
  /**
   * The width the picture is laid out for (its `viewBox`), at most `width`. Default: `width` or 600, whichever is
   * smaller (at least 400). Its text is at least 11 px wherever it is shown this wide or wider.
   */
  readonly layoutWidth?: number;
  /** Rows at most. Default 60. */
  readonly maxRows?: number;
}

const OLD = MODULE_PALETTE[0]?.hex ?? '#4387fd';
const NEW = MODULE_PALETTE[1]?.hex ?? '#f44a3f';
const MOVING = '#f6b26b';
const FAIL = '#cf222e';
const INK = '#1f2328';
const MUTED = '#59636e';

/** The smallest font size, in layout units. */
const MIN_TEXT = 11;
/** The width of a character of the 11-unit sans-serif text, generously (for placing labels side by side). */
const CHAR_W = 6.6;

const esc = (t: string): string => t.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const n1 = (x: number): string => String(Math.round(x * 10) / 10);

/** The hosts to draw: all when they fit, else every failed or rolled-back one, then an even sample; in wave order. */
function rows(report: FleetReport, maxRows: number): HostRecord[] {
  const order = [...report.hosts].sort((a, b) => (a.wave < 0 ? 1e9 : a.wave) - (b.wave < 0 ? 1e9 : b.wave) || a.startNs - b.startNs || a.id - b.id);
  if (order.length <= maxRows) return order;
  const marked = [...order.filter((h) => h.outcome === 'failed'), ...order.filter((h) => h.outcome === 'rolled-back')].slice(0, maxRows);
  const chosen = new Set(marked.map((h) => h.id));
  const rest = order.filter((h) => !chosen.has(h.id));
  const room = maxRows - chosen.size;
  for (let i = 0; i < room; i++) chosen.add((rest[Math.floor((i * rest.length) / room)] as HostRecord).id);
  return order.filter((h) => chosen.has(h.id));
}

/** Render the rollout picture (see the module comment). Deterministic: the same report gives the same bytes. */
export function renderRolloutSvg(report: FleetReport, options: RolloutSvgOptions = {}): string {
  const outW = Math.max(400, Math.round(options.width ?? 1000));
  const width = Math.min(outW, Math.max(400, Math.round(options.layoutWidth ?? Math.min(outW, 600))));
  const shown = rows(report, options.maxRows ?? 60);
  const left = 72;
  const right = width - 12;
  const top = 128;
  // Every row gets its host name when the rows are tall enough for 11-unit text; a large sample names every fifth.
  const rowH = shown.length > 40 ? MIN_TEXT : 14;
  const height = top + shown.length * rowH + 32;
  const end = Math.max(1, report.durationNs);
  const x = (ns: number): number => left + ((right - left) * ns) / end;
  const title = options.title ?? `Rollout ${report.fromBuild} → ${report.toBuild}: ${report.outcome}`;
  const out: string[] = [];
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${outW}" height="${Math.round((height * outW) / width)}" viewBox="0 0 ${width} ${height}" font-family="system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif" role="img" aria-label="${esc(title)}">`);
  out.push(`<title>${esc(title)}</title>`, `<rect width="${width}" height="${height}" fill="#ffffff"/>`);
  out.push(`<text x="12" y="22" font-size="16" font-weight="700" fill="${INK}">${esc(title)}</text>`);
  out.push(`<text x="12" y="40" font-size="${MIN_TEXT}" fill="${MUTED}">${shown.length === report.hosts.length ? `${report.hosts.length} hosts` : `${shown.length} of ${report.hosts.length} hosts (every failed or rolled-back one, then an even sample)`}.</text>`);
  out.push(`<text x="12" y="54" font-size="${MIN_TEXT}" fill="${MUTED}">Time is simulated seconds from the rollout's start (seed ${report.seed}).</text>`);
  // The legend: the three bars on one line, the two marks on the next.
  let lx = 12;
  for (const [color, label] of [[OLD, report.fromBuild], [MOVING, 'moving VMs'], [NEW, report.toBuild]] as const) {
    out.push(`<rect x="${lx}" y="63" width="14" height="10" rx="2" fill="${color}"/><text x="${lx + 19}" y="72" font-size="${MIN_TEXT}" fill="${INK}">${esc(label)}</text>`);
    lx += 34 + label.length * CHAR_W;
  }
  out.push(`<text x="12" y="88" font-size="12" font-weight="700" fill="${FAIL}">✕</text><text x="26" y="88" font-size="${MIN_TEXT}" fill="${INK}">upgrade failed (rolled back by the host)</text>`);
  const mark2 = 26 + 'upgrade failed (rolled back by the host)'.length * CHAR_W + 16;
  out.push(`<text x="${n1(mark2)}" y="88" font-size="12" font-weight="700" fill="${INK}">↺</text><text x="${n1(mark2 + 14)}" y="88" font-size="${MIN_TEXT}" fill="${INK}">rolled back with its wave</text>`);
  // Each wave's start, its label on the upper line unless the previous label is still there, then the lower one.
  const lineEnds = [-Infinity, -Infinity];
  for (const w of report.waves) {
    const wx = x(w.startNs);
    const label = `${w.label} (${w.hosts})`;
    const lx0 = Math.min(wx + 3, right - label.length * CHAR_W);
    const line = lineEnds[0]! <= lx0 ? 0 : lineEnds[1]! <= lx0 ? 1 : lineEnds[0]! <= lineEnds[1]! ? 0 : 1;
    lineEnds[line] = lx0 + label.length * CHAR_W + 4;
    const ly = top - 6 - (1 - line) * 12;
    out.push(`<line x1="${n1(wx)}" y1="${ly - 9}" x2="${n1(wx)}" y2="${top + shown.length * rowH}" stroke="${INK}" stroke-width="1" stroke-dasharray="4 3"/>`);
    out.push(`<text x="${n1(lx0)}" y="${ly}" font-size="${MIN_TEXT}" fill="${INK}">${esc(label)}</text>`);
  }
  shown.forEach((h, i) => {
    const y = top + i * rowH;
    // A move lasts milliseconds and a wave's bake minutes: the moving part is drawn at least 3 units wide.
    const bar = (from: number, to: number, color: string, tip: string): void => {
      if (to <= from) return;
      const w = Math.max(color === MOVING ? 3 : 0.5, x(to) - x(from));
      out.push(`<rect x="${n1(x(from))}" y="${y + 1}" width="${n1(w)}" height="${rowH - 2}" fill="${color}"><title>${esc(tip)}</title></rect>`);
    };
    const name = `host${String(h.id + 1).padStart(Math.max(4, String(report.hosts.length).length), '0')}`;
    if (rowH >= 14 || i % 5 === 0) out.push(`<text x="${left - 6}" y="${y + rowH - 2}" font-size="${MIN_TEXT}" text-anchor="end" fill="${MUTED}">${name}</text>`);
    const t1 = h.startNs + h.upgradeNs;
    const t2 = t1 + h.rollbackNs;
    const summary = `${name}: ${h.vms} VMs, ${h.outcome}${h.failure === undefined ? '' : ` — ${h.failure}`}`;
    if (h.outcome === 'not-reached') bar(0, end, OLD, `${summary}`);
    else if (h.outcome === 'upgraded') {
      bar(0, h.startNs, OLD, summary);
      bar(t1, end, NEW, summary);
      bar(h.startNs, t1, MOVING, `${name}: moving ${h.vms} VMs`);
    } else if (h.outcome === 'failed') {
      bar(0, end, OLD, summary);
      bar(h.startNs, t1, MOVING, `${name}: upgrade attempt`);
      out.push(`<text x="${n1(x(t1) + 2)}" y="${y + rowH - 1}" font-size="${rowH}" font-weight="700" fill="${FAIL}">✕<title>${esc(summary)}</title></text>`);
    } else {
      bar(0, h.startNs, OLD, summary);
      bar(h.startNs, t1, MOVING, `${name}: moving ${h.vms} VMs`);
      bar(t1, t2, NEW, `${name}: on ${report.toBuild} until its wave was rolled back`);
      bar(t2, end, OLD, summary);
      out.push(`<text x="${n1(x(t2) + 2)}" y="${y + rowH - 1}" font-size="${rowH}" font-weight="700" fill="${INK}">↺<title>${esc(summary)}</title></text>`);
    }
  });
  const axisY = top + shown.length * rowH + 6;
  out.push(`<line x1="${left}" y1="${axisY}" x2="${right}" y2="${axisY}" stroke="${MUTED}" stroke-width="1"/>`);
  for (let k = 0; k <= 5; k++) {
    const t = (end * k) / 5;
    out.push(`<text x="${n1(x(t))}" y="${axisY + 15}" font-size="${MIN_TEXT}" text-anchor="${k === 0 ? 'start' : k === 5 ? 'end' : 'middle'}" fill="${MUTED}">${(t / 1e9).toFixed(1)} s</text>`);
  }
  out.push('</svg>');
  return `${out.join('\n')}\n`;
}
