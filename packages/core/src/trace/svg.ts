/**
 * A dependency-free SVG timeline of an event stream, for the pictures in the guides.
 *
 * {@link renderTimelineSvg} draws, left to right along the host clock (scheduler ticks, the unit the examples
 * print) or, for a stream within one tick, the logical clock (`seq`, see {@link buildTimeline} and
 * {@link timeScale}):
 * - a lane per CPU: a bar in the module's color while one of its vCPUs is loaded there (labelled
 *   `kvm0/vm1/vcpu0` where it fits), hatched where the CPU is offline, ▲/▼ where virtualization is turned on/off, ticks at TLB and
 *   L1D flushes, dots at guest PMIs;
 * - a lane per module: a light bar from load to unload, then one row per VM alive at the same time with a
 *   solid bar per VM lifetime (or, above `maxVmRows`, one row with the number of VMs alive);
 * - VAC's usage count as a step chart with a scale (0 and its maximum);
 * - a time axis, a legend (module → color, then the symbols used), a title and annotations (vertical lines
 *   with a label: "kvm1 loaded", "rmmod kvm0 refused"); power transitions are annotated automatically.
 *
 * It stays readable for many events: adjacent runs of one module on a CPU that are less than a pixel apart are
 * drawn as one bar, and point markers closer than a few pixels are merged (their tooltip gives the count).
 * The output depends only on the events and the options: the same input gives a byte-identical SVG.
 *
 * **Readable where it is shown.** The picture is laid out {@link TimelineSvgOptions.layoutWidth} wide (600 px by
 * default, a guide's column) with no text under 11 px, and scaled to {@link TimelineSvgOptions.width}: in a guide
 * it reads at 11 px or more, and opened on its own (at `width`) it shows the same picture larger. Labels never
 * overlap: annotation labels take as many rows as they need, and lane text is drawn only where it fits.
 *
 * @module
 */
import type { TraceEvent } from './recorder.js';
import { timeScale, type TimelineAxis } from './clock.js';
import { buildTimeline, moduleColors, type Mark, type MarkKind, type Timeline, type TimelineOptions } from './timeline.js';

/** A labelled vertical line on the timeline. */
export interface TimelineAnnotation {
  /** Where: a `seq` of the stream (for example `host.events.seq` read just before or after a step). */
  readonly at: number;
  /** What to write there (plain text; it is escaped). */
  readonly label: string;
}

/** Options of {@link renderTimelineSvg}. */
export interface TimelineSvgOptions extends TimelineOptions {
  /** The title at the top (default `'vac timeline'`). */
  readonly title?: string;
  /** The line under the title (default: how many events, the range of the axis and what its unit is). */
  readonly subtitle?: string;
  /** Width in pixels of the SVG document, its size when opened on its own (default 1000, at least 400). */
  readonly width?: number;
  /**
   * The width the picture is laid out for (default: `width` or 600, whichever is smaller; at least 400 and at
   * most `width`). Its text is at least 11 px at this width, so the picture reads wherever it is shown at least
   * this wide; the document scales it to `width` (its `viewBox` is this wide).
   */
  readonly layoutWidth?: number;
  /**
   * The unit of the x axis: `'tick'` (the host clock, as the examples print it; each tick gets the same
   * width) or `'seq'` (one unit per event). Default: `'tick'` when the stream spans more than one tick.
   */
  readonly axis?: TimelineAxis;
  /** Height of one lane in pixels (default: 18, or less when there are many lanes; at least 8). */
  readonly laneHeight?: number;
  /** Marked moments. */
  readonly annotations?: readonly TimelineAnnotation[];
  /** Annotate suspend/resume/reboot/crash automatically (default true). */
  readonly powerAnnotations?: boolean;
  /**
   * On a CPU lane, fill the gap between two runs of the same module (in a lighter shade) when it is shorter
   * than this fraction of the timeline and the CPU did not go offline in between: the CPU "belongs" to that
   * module's vCPUs between their `KVM_RUN`s. Default 0.1; 0 draws the runs only.
   */
  readonly gapFill?: number;
  /** Draw TLB and L1D flush ticks (default true). */
  readonly flushes?: boolean;
  /** Above this many VM rows a module shows the number of VMs alive instead of one row per VM (default 32). */
  readonly maxVmRows?: number;
  /** Override module colors (`#rrggbb`) by name. */
  readonly colors?: Readonly<Record<string, string>>;
  /** Names of the virtualization markers (default: as the hardware declared them, e.g. `VMXON`/`VMXOFF`). */
  readonly virtLabels?: { readonly enable: string; readonly disable: string };
}

/** The smallest text of a picture, in px at its layout width. */
const TEXT = 11;
/** Line height of {@link TEXT}-sized text. */
const LINE = 14;
const FONT = "system-ui, -apple-system, 'Segoe UI', 'DejaVu Sans', Helvetica, Arial, sans-serif";
const LABEL_W = 128;
const RIGHT_PAD = 18;
const INK = '#1f2328';
const MUTED = '#59636e';
const GRID = '#e6e9ed';
const STRIPE = '#f6f8fa';
const VIRT_ON_FILL = '#1a7f37';
const VIRT_OFF_FILL = '#cf222e';
const FLUSH_STROKE = '#1f2328';
const PMI_FILL = '#f2cc0c';
const WARN_FILL = '#fb8500';

/** Escape text for SVG/XML content and attribute values. */
export function escapeXml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => (c === '&' ? '&amp;' : c === '<' ? '&lt;' : c === '>' ? '&gt;' : c === '"' ? '&quot;' : '&#39;'));
}

/** A number with at most one decimal, as SVG coordinates are written. */
function f(n: number): string {
  const r = Math.round(n * 10) / 10;
  return String(r === 0 ? 0 : r);
}

/** Rough width of a text in the sans-serif font, to decide whether a label fits. */
function textWidth(text: string, size: number): number {
  return text.length * size * 0.6;
}

/** Split `text` into lines no wider than `max` at `size` (words are kept whole; a longer word gets its own line). */
function wrap(text: string, size: number, max: number): string[] {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    const next = line === '' ? word : `${line} ${word}`;
    if (line !== '' && textWidth(next, size) > max) {
      lines.push(line);
      line = word;
    } else line = next;
  }
  if (line !== '') lines.push(line);
  return lines;
}

/** Black or white text, whichever reads better on `hex`. */
function inkOn(hex: string): string {
  const m = /^#([0-9a-f]{2})([0-9a-f]{2})([0-9a-f]{2})$/i.exec(hex);
  if (m === null) return '#ffffff';
  const [r, g, b] = [m[1], m[2], m[3]].map((x) => parseInt(x ?? '0', 16) / 255) as [number, number, number];
  return 0.2126 * r + 0.7152 * g + 0.0722 * b > 0.6 ? INK : '#ffffff';
}

/** A "nice" step (1, 2 or 5 × 10^k) close to `raw`. */
function niceStep(raw: number): number {
  const p = 10 ** Math.floor(Math.log10(Math.max(raw, 1e-9)));
  const m = raw / p;
  return (m <= 1 ? 1 : m <= 2 ? 2 : m <= 5 ? 5 : 10) * p;
}

type LaneKind = 'cpu' | 'module' | 'vmrow' | 'vmcount' | 'usage';

interface Lane {
  readonly kind: LaneKind;
  readonly y: number;
  /** Height in px. */
  readonly h: number;
  readonly key: string;
  readonly cpu?: number;
  readonly module?: string;
  readonly row?: number;
}

/** Group marks closer than `gap` px; returns the kept x, first mark and count. */
function thin(marks: readonly Mark[], x: (seq: number) => number, gap: number): Array<{ x: number; first: Mark; last: Mark; n: number }> {
  const out: Array<{ x: number; first: Mark; last: Mark; n: number }> = [];
  for (const m of marks) {
    const mx = x(m.at);
    const cur = out[out.length - 1];
    if (cur !== undefined && mx - cur.x < gap) {
      cur.n++;
      cur.last = m;
    } else out.push({ x: mx, first: m, last: m, n: 1 });
  }
  return out;
}

/**
 * Render an event stream as an SVG timeline (see the module description for what it shows).
 *
 * @param events - a recorded stream (`recorder.events()`) or an already built {@link Timeline}
 * @param options - title, size, annotations, colors, …
 * @returns the SVG document as a string (UTF-8 text, starting with `<svg`)
 *
 * @example
 * ```ts
 * import { createHost, recordEvents, renderTimelineSvg } from '@vac/core';
 * import { kvm } from '@vac/kvm';
 * import { intel } from '@vac/vmx';
 *
 * const host = createHost({ cpus: 2, hardware: intel() });
 * const rec = recordEvents(host);
 * host.modprobe(kvm({ postfix: '0' }));
 * const at = host.events.seq; // the next event's seq: where kvm1's load begins
 * host.modprobe(kvm({ postfix: '1' }));
 * const svg = renderTimelineSvg(rec.events(), { title: 'Two KVM modules', annotations: [{ at, label: 'kvm1 loaded' }] });
 * console.log(svg.startsWith('<svg')); // true: write it to a .svg file and open it in a browser
 * ```
 */
export function renderTimelineSvg(events: Iterable<TraceEvent> | Timeline, options: TimelineSvgOptions = {}): string {
  const tl: Timeline = !(Symbol.iterator in events) && 'runs' in events ? events : buildTimeline(events, options.cpus === undefined ? {} : { cpus: options.cpus });
  const outW = Math.max(400, Math.round(options.width ?? 1000));
  /** The layout width: every coordinate below is in these units (the viewBox), text at least {@link TEXT}. */
  const W = Math.min(outW, Math.max(400, Math.round(options.layoutWidth ?? Math.min(outW, 600))));
  const x0 = LABEL_W;
  const x1 = W - RIGHT_PAD;
  const scale = timeScale(tl, options.axis);
  const span = scale.to - scale.from;
  /** The x of an axis value (a seq or a tick). */
  const xv = (v: number): number => x0 + ((v - scale.from) / span) * (x1 - x0);
  const x = (seq: number): number => xv(scale.valueOf(seq));
  /** Where an event is, for tooltips: its tick (on the tick axis, the console's unit) and its seq. */
  const at = (seq: number): string => (scale.unit === 'tick' ? `tick ${Math.floor(scale.valueOf(seq))} (seq ${seq})` : `seq ${seq}`);
  /** A stretch `[a, b)` for tooltips; `b` is the seq of the event that ended it. */
  const between = (a: number, b: number): string => {
    if (scale.unit !== 'tick') return `seq ${a}–${b}`;
    const [ta, tb] = [Math.floor(scale.valueOf(a)), Math.floor(scale.valueOf(b))];
    return `${ta === tb ? `tick ${ta}` : `ticks ${ta}–${tb}`} (seq ${a}–${b})`;
  };
  const names = options.virtLabels ?? tl.virtLabels;
  const maxVmRows = options.maxVmRows ?? 32;
  const palette = moduleColors(tl);
  const colorOf = (m: string): string => {
    const o = options.colors?.[m];
    return o !== undefined && /^#[0-9a-fA-F]{6}$/.test(o) ? o : (palette.get(m)?.hex ?? '#7d7d7d');
  };

  // ---- lanes ------------------------------------------------------------------------------------
  const rowsOf = (m: string): number => tl.vmRows[m] ?? 0;
  const countMode = (m: string): boolean => rowsOf(m) > maxVmRows;
  // CPU, module and usage lanes get the full height; VM rows get less when there are many of them.
  let laneCount = tl.cpus.length + (tl.usage.length > 0 ? 1 : 0);
  let vmRowCount = 0;
  for (const m of tl.modules) {
    laneCount += 1 + (countMode(m) ? 1 : 0);
    if (!countMode(m)) vmRowCount += rowsOf(m);
  }
  const laneH = Math.max(8, Math.round(options.laneHeight ?? (laneCount <= 24 ? 18 : laneCount <= 48 ? 14 : 11)));
  const vmH = options.laneHeight !== undefined || vmRowCount <= 12 ? laneH : Math.min(laneH, vmRowCount <= 32 ? 12 : vmRowCount <= 64 ? 10 : 8);
  /** Step charts (VMs alive, usage count) get more height than a lane: room for their scale. */
  const chartH = Math.max(3 * LINE, Math.round(laneH * 2.5));
  /** Text inside bars: {@link TEXT} where the bar is tall enough, none otherwise. */
  const barSize = laneH - 3 >= TEXT ? TEXT : 0;
  const vmLabelSize = vmH - 2 >= TEXT ? TEXT : 0;
  const labelSize = TEXT;
  /** Lane labels on the left: every lane when lanes are at least a line of text tall, else every n-th. */
  const labelEvery = laneH >= TEXT ? 1 : Math.ceil(TEXT / laneH);

  const out: string[] = [];
  const defs: string[] = [];
  const body: string[] = [];

  // ---- header: title, subtitle, legend -----------------------------------------------------------
  const title = options.title ?? 'vac timeline';
  const subtitle =
    options.subtitle ??
    (scale.unit === 'tick'
      ? `${tl.events} events over ticks ${scale.from}–${scale.to - 1} of the host clock (scheduler ticks, as the console prints them); within a tick, events keep their order.`
      : `${tl.events} events, seq ${tl.start}–${tl.end - 1}. The x axis is the host's logical clock (event number), not wall time.`);
  let y = 0;
  const head: string[] = [];
  for (const [i, line] of wrap(title, 16, W - 32).entries()) head.push(`<text x="16" y="${f(22 + i * 20)}" font-size="16" font-weight="700" fill="${INK}">${escapeXml(line)}</text>`);
  y = 22 + (wrap(title, 16, W - 32).length - 1) * 20 + 18;
  for (const line of wrap(subtitle, TEXT, W - 32)) {
    head.push(`<text x="16" y="${f(y)}" font-size="${TEXT}" fill="${MUTED}">${escapeXml(line)}</text>`);
    y += LINE;
  }

  const kinds = new Set<MarkKind>(tl.marks.map((m) => m.kind));
  const flushesOn = options.flushes ?? true;
  type LegendItem = { readonly label: string; readonly draw: (lx: number, ly: number) => string };
  const legend: LegendItem[] = [];
  for (const m of tl.modules) {
    const c = colorOf(m);
    legend.push({ label: m === 'vac' ? 'vac (base module)' : m, draw: (lx, ly) => `<rect x="${f(lx)}" y="${f(ly - 9)}" width="14" height="10" rx="2" fill="${c}"/>` });
  }
  if (tl.offline.length > 0) legend.push({ label: 'CPU offline', draw: (lx, ly) => `<rect x="${f(lx)}" y="${f(ly - 9)}" width="14" height="10" fill="url(#offline)" stroke="#8c959f" stroke-width="0.75"/>` });
  if (kinds.has('virt:enable')) legend.push({ label: names.enable, draw: (lx, ly) => triangle(lx + 7, ly - 4, 5, true) });
  if (kinds.has('virt:disable')) legend.push({ label: names.disable, draw: (lx, ly) => triangle(lx + 7, ly - 4, 5, false) });
  const flushKey = (lx: number, ly: number, fromTop: boolean): string =>
    `<rect x="${f(lx)}" y="${f(ly - 10)}" width="14" height="12" fill="${STRIPE}" stroke="#d0d7de" stroke-width="0.5"/><path d="M${f(lx + 4)} ${f(fromTop ? ly - 10 : ly + 2)}v${fromTop ? 5 : -5}M${f(lx + 8)} ${f(fromTop ? ly - 10 : ly + 2)}v${fromTop ? 5 : -5}M${f(lx + 11)} ${f(fromTop ? ly - 10 : ly + 2)}v${fromTop ? 5 : -5}" stroke="${FLUSH_STROKE}" stroke-width="1.2"/>`;
  if (flushesOn && kinds.has('tlb:flush')) legend.push({ label: 'TLB flush (tick from below)', draw: (lx, ly) => flushKey(lx, ly, false) });
  if (flushesOn && kinds.has('l1d:flush')) legend.push({ label: 'L1D flush (tick from above)', draw: (lx, ly) => flushKey(lx, ly, true) });
  if (kinds.has('pmi')) legend.push({ label: 'guest PMI', draw: (lx, ly) => `<circle cx="${f(lx + 7)}" cy="${f(ly - 4)}" r="3.5" fill="${PMI_FILL}" stroke="${INK}" stroke-width="0.75"/>` });
  if (kinds.has('warning')) legend.push({ label: 'warning', draw: (lx, ly) => diamond(lx + 7, ly - 4, 5) });
  {
    let lx = 16;
    let ly = y + 10;
    for (const item of legend) {
      const w = 20 + textWidth(item.label, TEXT) + 16;
      if (lx + w > W - 16 && lx > 16) {
        lx = 16;
        ly += 17;
      }
      head.push(item.draw(lx, ly));
      head.push(`<text x="${f(lx + 19)}" y="${f(ly)}" font-size="11" fill="${INK}">${escapeXml(item.label)}</text>`);
      lx += w;
    }
    y = ly + 12;
  }

  // ---- annotation labels (placed in rows above the lanes) ----------------------------------------
  const notes: Array<{ at: number; label: string; auto: boolean }> = (options.annotations ?? []).map((a) => ({ at: a.at, label: a.label, auto: false }));
  if (options.powerAnnotations ?? true) for (const m of tl.marks) if (m.kind === 'power') notes.push({ at: m.at, label: m.detail, auto: true });
  let bandTop = 0;
  const placed: Array<{ x: number; label: string; auto: boolean; row: number; anchorEnd: boolean; w: number }> = [];
  {
    const order = notes.map((n, i) => ({ ...n, i })).filter((n) => Number.isFinite(n.at));
    order.sort((a, b) => a.at - b.at || a.i - b.i);
    // Each label takes the first row where it clears the labels already there; rows are added as needed, so
    // no two labels overlap.
    const rowEnd: number[] = [];
    for (const n of order) {
      const nx = Math.min(x1, Math.max(x0, x(n.at)));
      const w = textWidth(n.label, TEXT) * 1.08 + 8; // the labels are semi-bold
      const anchorEnd = nx + 3 + w > W - 4;
      const from = anchorEnd ? nx - 3 - w : nx;
      const to = anchorEnd ? nx : nx + 3 + w;
      let row = rowEnd.findIndex((e) => e + 4 <= from);
      if (row < 0) row = rowEnd.length;
      rowEnd[row] = to;
      placed.push({ x: nx, label: n.label, auto: n.auto, row, anchorEnd, w });
    }
    const rows = rowEnd.length;
    y += 4;
    bandTop = y;
    for (const p of placed) {
      const ty = y + p.row * 15 + 11;
      const tx = p.anchorEnd ? p.x - 3 : p.x + 3;
      const color = p.auto ? MUTED : INK;
      head.push(`<rect x="${f(p.anchorEnd ? p.x - 3 - p.w + 4 : p.x + 1)}" y="${f(ty - 10.5)}" width="${f(p.w - 2)}" height="14" rx="2" fill="#ffffff" fill-opacity="0.9"/>`);
      head.push(`<text x="${f(tx)}" y="${f(ty)}" font-size="${TEXT}" fill="${color}"${p.anchorEnd ? ' text-anchor="end"' : ''}${p.auto ? ' font-style="italic"' : ' font-weight="600"'}>${escapeXml(p.label)}</text>`);
    }
    y += rows * 15 + (rows > 0 ? 4 : 0);
  }
  const annotationTop = y;

  // ---- lane layout --------------------------------------------------------------------------------
  const lanes: Lane[] = [];
  const sections: Array<{ y: number; title: string; note: readonly string[] }> = [];
  /** A section heading: its title, then its note on the same line where it fits, wrapped below otherwise. */
  const section = (title: string, note: string): void => {
    const titleW = textWidth(title, 12.5) * 1.1 + 10;
    const oneLine = 12 + titleW + textWidth(note, TEXT) <= W - 16;
    const lines = oneLine ? [note] : wrap(note, TEXT, W - 28);
    sections.push({ y, title, note: lines });
    y += 18 + (oneLine ? 0 : lines.length * LINE);
  };
  y += 6;
  if (tl.cpus.length > 0) {
    section('CPUs', 'solid: a vCPU of the module is loaded (KVM_RUN); light: between runs of that module’s vCPUs');
    for (const cpu of tl.cpus) {
      lanes.push({ kind: 'cpu', y, h: laneH, key: `CPU ${cpu}`, cpu });
      y += laneH;
    }
    y += 8;
  }
  if (tl.modules.length > 0 || tl.usage.length > 0) {
    section('Modules', 'light bar: loaded; solid bars: VMs alive');
    for (const m of tl.modules) {
      // A module lane and its VM rows are each at least a line of text tall, so that their labels (the module's
      // name, "VMs (n)") never run into the next ones when lanes are thin.
      const moduleH = Math.max(laneH, LINE);
      lanes.push({ kind: 'module', y, h: moduleH, key: m, module: m });
      y += moduleH;
      if (countMode(m)) {
        lanes.push({ kind: 'vmcount', y, h: chartH, key: `${m} VMs`, module: m });
        y += chartH;
      } else {
        for (let r = 0; r < rowsOf(m); r++) {
          lanes.push({ kind: 'vmrow', y, h: vmH, key: `${m} VMs`, module: m, row: r });
          y += vmH;
        }
        if (rowsOf(m) > 0) y += Math.max(0, LINE - rowsOf(m) * vmH);
      }
    }
    if (tl.usage.length > 0) {
      lanes.push({ kind: 'usage', y, h: chartH, key: 'VAC usage count' });
      y += chartH;
    }
  }
  const plotTop = annotationTop;
  const plotBottom = y + 2;

  // ---- grid and axis --------------------------------------------------------------------------------
  const step = Math.max(scale.unit === 'tick' ? 1 : 0, niceStep(span / Math.max(1, (x1 - x0) / 90)));
  const ticks: number[] = [];
  for (let t = Math.ceil(scale.from / step) * step; t <= scale.to; t += step) ticks.push(t);
  for (const t of ticks) body.push(`<line x1="${f(xv(t))}" y1="${f(plotTop)}" x2="${f(xv(t))}" y2="${f(plotBottom)}" stroke="${GRID}" stroke-width="1"/>`);

  // ---- lane stripes, labels and section titles ----------------------------------------------------
  const labels: string[] = [];
  for (const s of sections) {
    const [first, ...rest] = s.note;
    if (rest.length === 0 && first !== undefined) {
      labels.push(`<text x="12" y="${f(s.y + 13)}" font-size="12.5" font-weight="700" fill="${INK}">${escapeXml(s.title)}<tspan dx="10" font-weight="400" fill="${MUTED}" font-size="${TEXT}">${escapeXml(first)}</tspan></text>`);
    } else {
      labels.push(`<text x="12" y="${f(s.y + 13)}" font-size="12.5" font-weight="700" fill="${INK}">${escapeXml(s.title)}</text>`);
      for (const [i, line] of s.note.entries()) labels.push(`<text x="12" y="${f(s.y + 13 + (i + 1) * LINE)}" font-size="${TEXT}" fill="${MUTED}">${escapeXml(line)}</text>`);
    }
  }
  lanes.forEach((lane, i) => {
    if (i % 2 === 0) body.push(`<rect x="${f(x0)}" y="${f(lane.y)}" width="${f(x1 - x0)}" height="${f(lane.h)}" fill="${STRIPE}"/>`);
    const ty = lane.y + lane.h / 2 + labelSize * 0.36;
    if (lane.kind === 'cpu' && (lane.cpu ?? 0) % labelEvery === 0) labels.push(`<text x="${f(x0 - 8)}" y="${f(ty)}" font-size="${labelSize}" text-anchor="end" fill="${INK}">${escapeXml(lane.key)}</text>`);
    else if (lane.kind === 'module') {
      const m = lane.module ?? '';
      labels.push(`<rect x="12" y="${f(lane.y + lane.h / 2 - 5)}" width="10" height="10" rx="2" fill="${colorOf(m)}"/>`);
      labels.push(`<text x="27" y="${f(ty)}" font-size="${labelSize}" font-weight="700" fill="${INK}">${escapeXml(m)}</text>`);
    } else if (lane.kind === 'vmrow' && lane.row === 0) {
      const n = tl.vms.filter((v) => v.module === lane.module).length;
      // The first VM row may be thinner than a line of text: the label sits on the first line below the module.
      labels.push(`<text x="27" y="${f(Math.max(ty, lane.y + labelSize * 0.8))}" font-size="${labelSize}" fill="${MUTED}">${escapeXml(`VMs (${n})`)}</text>`);
    } else if (lane.kind === 'vmcount') {
      labels.push(`<text x="27" y="${f(ty)}" font-size="${labelSize}" fill="${MUTED}">VMs alive</text>`);
    } else if (lane.kind === 'usage') {
      labels.push(`<text x="12" y="${f(ty)}" font-size="${labelSize}" font-weight="700" fill="${INK}">VAC usage count</text>`);
    }
  });
  // A bracket in the module's color joining a module lane with its VM rows.
  for (const m of tl.modules) {
    const mine = lanes.filter((l) => l.module === m);
    const a = mine[0];
    const b = mine[mine.length - 1];
    if (a !== undefined && b !== undefined && mine.length > 1) {
      labels.push(`<line x1="19" y1="${f(a.y + a.h / 2 + 5)}" x2="19" y2="${f(b.y + b.h - 2)}" stroke="${colorOf(m)}" stroke-width="2"/>`);
    }
  }

  defs.push(
    `<pattern id="offline" width="6" height="6" patternUnits="userSpaceOnUse" patternTransform="rotate(45)"><rect width="6" height="6" fill="#eaeef2"/><line x1="0" y1="0" x2="0" y2="6" stroke="#8c959f" stroke-width="2"/></pattern>`,
  );

  const cpuLane = new Map<number, Lane>();
  for (const l of lanes) if (l.kind === 'cpu' && l.cpu !== undefined) cpuLane.set(l.cpu, l);
  const barTop = (l: Lane): number => l.y + 1.5;
  const barH = laneH - 3;

  // ---- CPU lanes: offline periods ------------------------------------------------------------------
  for (const o of tl.offline) {
    const l = cpuLane.get(o.cpu);
    if (l === undefined) continue;
    const ax = x(o.start);
    const w = Math.max(1, x(o.end) - ax);
    body.push(
      `<rect x="${f(ax)}" y="${f(barTop(l))}" width="${f(w)}" height="${f(barH)}" fill="url(#offline)" stroke="#8c959f" stroke-width="0.75"><title>${escapeXml(`CPU ${o.cpu} offline, ${o.openStart ? 'from before the trace, ' : ''}${between(o.start, o.end)}${o.openEnd ? ', still at the end' : ''}`)}</title></rect>`,
    );
    if (barSize > 0 && w > textWidth('offline', barSize) + 6) body.push(`<text x="${f(ax + 4)}" y="${f(barTop(l) + barH / 2 + barSize * 0.36)}" font-size="${barSize}" fill="${MUTED}">offline</text>`);
  }

  // ---- CPU lanes: stints of a module (light) and its runs (solid, merged when under a pixel apart) -------
  {
    interface Stint {
      readonly cpu: number;
      readonly module: string;
      readonly from: number;
      to: number;
      runs: number;
      exits: number;
      readonly vcpus: string[];
      /** Solid bars, [x0, x1] in px. */
      readonly bars: Array<[number, number]>;
    }
    const maxGap = Math.max(0, options.gapFill ?? 0.1) * (x1 - x0); // in px, so it means the same on either axis
    const offlineOf = new Map<number, Array<{ start: number; end: number }>>();
    for (const o of tl.offline) {
      const list = offlineOf.get(o.cpu) ?? [];
      list.push(o);
      offlineOf.set(o.cpu, list);
    }
    const crossesOffline = (cpu: number, a: number, b: number): boolean => (offlineOf.get(cpu) ?? []).some((o) => o.start < b && o.end > a);
    const stints: Stint[] = [];
    const last = new Map<number, Stint>();
    const byCpu = [...tl.runs].sort((a, b) => a.cpu - b.cpu || a.start - b.start);
    for (const r of byCpu) {
      const rx0 = x(r.start);
      const rx1 = Math.max(x(r.end), rx0 + 1);
      const key = `vm${r.vm}/vcpu${r.vcpu}`;
      let st = last.get(r.cpu);
      if (st === undefined || st.module !== r.module || x(r.start) - x(st.to) > maxGap || crossesOffline(r.cpu, st.to, r.start)) {
        st = { cpu: r.cpu, module: r.module, from: r.start, to: r.end, runs: 0, exits: 0, vcpus: [], bars: [] };
        stints.push(st);
        last.set(r.cpu, st);
      }
      st.to = Math.max(st.to, r.end);
      st.runs++;
      st.exits += r.exits;
      if (!st.vcpus.includes(key)) st.vcpus.push(key);
      const bar = st.bars[st.bars.length - 1];
      if (bar !== undefined && rx0 - bar[1] < 1) bar[1] = Math.max(bar[1], rx1);
      else st.bars.push([rx0, rx1]);
    }
    for (const st of stints) {
      const l = cpuLane.get(st.cpu);
      if (l === undefined) continue;
      const c = colorOf(st.module);
      const ax = x(st.from);
      const w = Math.max(1, x(st.to) - ax);
      const top = barTop(l);
      const who =
        st.vcpus.length === 1
          ? `${st.module}/${st.vcpus[0] ?? ''}`
          : `${st.module}: ${st.vcpus.length} vCPUs (${st.vcpus.slice(0, 6).join(', ')}${st.vcpus.length > 6 ? ', …' : ''})`;
      const tip = `${who} on CPU ${st.cpu}, ${between(st.from, st.to)}: ${st.runs} run${st.runs === 1 ? '' : 's'}, ${st.exits} exit${st.exits === 1 ? '' : 's'}`;
      if (st.runs > 1) body.push(`<rect x="${f(ax)}" y="${f(top)}" width="${f(w)}" height="${f(barH)}" fill="${c}" fill-opacity="0.3"><title>${escapeXml(tip)}</title></rect>`);
      const d = st.bars.map(([a, b]) => `M${f(a)} ${f(top)}h${f(Math.max(1, b - a))}v${f(barH)}h-${f(Math.max(1, b - a))}z`).join('');
      body.push(`<path d="${d}" fill="${c}">${st.runs > 1 ? '' : `<title>${escapeXml(tip)}</title>`}</path>`);
      const candidates = st.vcpus.length === 1 ? [`${st.module}/${st.vcpus[0] ?? ''}`, st.vcpus[0] ?? '', st.module] : [st.module];
      const text = barSize === 0 ? undefined : candidates.find((t) => t !== '' && textWidth(t, barSize) + 8 <= w);
      if (text !== undefined) {
        const solid = st.runs === 1 && st.bars.length === 1;
        const paint = solid ? `fill="${inkOn(c)}"` : `fill="${INK}" stroke="#ffffff" stroke-width="2.4" stroke-opacity="0.85" paint-order="stroke"`;
        body.push(`<text x="${f(ax + 4)}" y="${f(top + barH / 2 + barSize * 0.36)}" font-size="${barSize}" ${paint}>${escapeXml(text)}</text>`);
      }
    }
  }

  // ---- module lanes: lifetimes, VMs, VM counts -----------------------------------------------------
  const moduleLane = new Map<string, Lane>();
  const rowLane = new Map<string, Lane>();
  for (const l of lanes) {
    if (l.kind === 'module' && l.module !== undefined) moduleLane.set(l.module, l);
    if (l.kind === 'vmrow' && l.module !== undefined) rowLane.set(`${l.module}#${l.row ?? 0}`, l);
    if (l.kind === 'vmcount' && l.module !== undefined) rowLane.set(`${l.module}#count`, l);
  }
  for (const s of tl.moduleSpans) {
    const l = moduleLane.get(s.module);
    if (l === undefined) continue;
    const c = colorOf(s.module);
    const ax = x(s.start);
    const bx = x(s.end);
    const w = Math.max(1, bx - ax);
    const params = Object.entries(s.params)
      .map(([k, v]) => `${k}=${v}`)
      .join(' ');
    const tip = `${s.module} ${s.openStart ? 'loaded before the trace' : `loaded at ${at(s.start)}`}${s.openEnd ? ', still loaded at the end' : `, unloaded at ${at(s.end)}`}${params === '' ? '' : ` (${params})`}`;
    body.push(`<rect x="${f(ax)}" y="${f(barTop(l))}" width="${f(w)}" height="${f(barH)}" rx="2" fill="${c}" fill-opacity="0.22" stroke="${c}" stroke-width="1"><title>${escapeXml(tip)}</title></rect>`);
    const ty = barTop(l) + barH / 2 + barSize * 0.36;
    const loaded = s.openStart ? 'loaded' : `${s.module} loaded`;
    if (barSize > 0 && textWidth(loaded, barSize) + 8 <= w) body.push(`<text x="${f(ax + 4)}" y="${f(ty)}" font-size="${barSize}" fill="${INK}">${escapeXml(loaded)}</text>`);
    if (!s.openEnd) {
      body.push(`<rect x="${f(bx - 1.5)}" y="${f(l.y)}" width="3" height="${f(l.h)}" fill="${c}"/>`);
      const un = `${s.module} unloaded`;
      if (barSize === 0) {
        // No room for text in the lane: the tooltip says it.
      } else if (bx + 5 + textWidth(un, barSize) <= x1) body.push(`<text x="${f(bx + 5)}" y="${f(ty)}" font-size="${barSize}" fill="${INK}">${escapeXml(un)}</text>`);
      else if (textWidth(un, barSize) + textWidth(loaded, barSize) + 20 <= w) {
        body.push(`<text x="${f(bx - 5)}" y="${f(ty)}" font-size="${barSize}" text-anchor="end" fill="${INK}">${escapeXml(un)}</text>`);
      }
    }
  }
  for (const v of tl.vms) {
    if (countMode(v.module)) continue;
    const l = rowLane.get(`${v.module}#${v.row}`);
    if (l === undefined) continue;
    const c = colorOf(v.module);
    const ax = x(v.start);
    const w = Math.max(1, x(v.end) - ax);
    const tip = `${v.module}/vm${v.vm}${v.pid === undefined ? '' : ` (pid ${v.pid})`}, ${v.vcpus} vCPU${v.vcpus === 1 ? '' : 's'}: ${v.openStart ? 'created before the trace' : `created at ${at(v.start)}`}${v.openEnd ? ', alive at the end' : `, destroyed at ${at(v.end)}`}`;
    const pad = l.h >= 12 ? 2.5 : 1.5;
    body.push(`<rect x="${f(ax)}" y="${f(l.y + pad)}" width="${f(w)}" height="${f(l.h - 2 * pad)}" rx="1.5" fill="${c}"><title>${escapeXml(tip)}</title></rect>`);
    const label = `vm${v.vm}`;
    if (vmLabelSize > 0 && textWidth(label, vmLabelSize) + 6 <= w) {
      body.push(`<text x="${f(ax + 3)}" y="${f(l.y + l.h / 2 + vmLabelSize * 0.36)}" font-size="${f(vmLabelSize)}" fill="${inkOn(c)}">${escapeXml(label)}</text>`);
    }
  }
  for (const m of tl.modules) {
    const l = rowLane.get(`${m}#count`);
    if (l === undefined) continue;
    const changes: Array<{ at: number; d: number }> = [];
    for (const v of tl.vms) {
      if (v.module !== m) continue;
      changes.push({ at: v.start, d: 1 });
      if (!v.openEnd) changes.push({ at: v.end, d: -1 });
    }
    changes.sort((a, b) => a.at - b.at || a.d - b.d);
    const pts: Array<[number, number]> = [];
    let n = 0;
    for (const ch of changes) {
      n += ch.d;
      pts.push([ch.at, n]);
    }
    const chart = stepChart(pts, tl.start, tl.end, x, at, l, colorOf(m), `${m}: VMs alive`);
    body.push(chart.plot);
    labels.push(...chart.scale);
  }
  // ---- VAC usage count --------------------------------------------------------------------------------
  {
    const l = lanes.find((k) => k.kind === 'usage');
    if (l !== undefined) {
      const chart = stepChart(tl.usage.map((u) => [u.at, u.count] as [number, number]), tl.start, tl.end, x, at, l, '#57606a', 'VAC usage count');
      body.push(chart.plot);
      labels.push(...chart.scale);
    }
  }

  // ---- point marks ----------------------------------------------------------------------------------
  {
    const perLane = new Map<Lane, Map<MarkKind, Mark[]>>();
    const add = (l: Lane | undefined, m: Mark): void => {
      if (l === undefined) return;
      let k = perLane.get(l);
      if (k === undefined) perLane.set(l, (k = new Map()));
      const list = k.get(m.kind);
      if (list === undefined) k.set(m.kind, [m]);
      else list.push(m);
    };
    for (const m of tl.marks) {
      if (m.kind === 'power') continue;
      if ((m.kind === 'tlb:flush' || m.kind === 'l1d:flush') && !flushesOn) continue;
      if (m.kind === 'warning' && m.module !== undefined && moduleLane.has(m.module)) add(moduleLane.get(m.module), m);
      else if (m.cpu !== undefined) add(cpuLane.get(m.cpu), m);
    }
    const symbols: string[] = [];
    for (const l of lanes) {
      const byKind = perLane.get(l);
      if (byKind === undefined) continue;
      const bottom = l.y + l.h - 1.5;
      for (const kind of ['tlb:flush', 'l1d:flush'] as const) {
        const list = byKind.get(kind);
        if (list === undefined) continue;
        const groups = thin(list, x, 2);
        const h = Math.max(3, Math.round(l.h * 0.3));
        // TLB flushes rise from the bottom edge of the lane, L1D flushes hang from the top edge.
        const d = groups.map((g) => (kind === 'tlb:flush' ? `M${f(g.x)} ${f(bottom)}v-${h}` : `M${f(g.x)} ${f(l.y + 1.5)}v${h}`)).join('');
        body.push(`<path d="${d}" stroke="${FLUSH_STROKE}" stroke-width="1" stroke-opacity="0.8"><title>${escapeXml(`${list.length} ${kind === 'tlb:flush' ? 'TLB' : 'L1D'} flush${list.length === 1 ? '' : 'es'}`)}</title></path>`);
      }
      const size = Math.max(4, l.h * 0.45);
      const cy = l.y + l.h / 2;
      for (const kind of ['pmi', 'warning', 'virt:disable', 'virt:enable'] as const) {
        const list = byKind.get(kind);
        if (list === undefined) continue;
        for (const g of thin(list, x, kind === 'pmi' ? 3 : 5)) {
          const what = kind === 'virt:enable' ? names.enable : kind === 'virt:disable' ? names.disable : kind === 'pmi' ? `PMI → ${g.first.detail}` : `warning (${g.first.module ?? 'kernel'}): ${g.first.detail}`;
          const tip = `${what}${g.n > 1 ? ` ×${g.n}` : ''}, ${g.n > 1 ? between(g.first.at, g.last.at) : at(g.first.at)}`;
          const shape =
            kind === 'virt:enable'
              ? triangle(g.x, cy, size, true)
              : kind === 'virt:disable'
                ? triangle(g.x, cy, size, false)
                : kind === 'pmi'
                  ? `<circle cx="${f(g.x)}" cy="${f(l.y + 3)}" r="${f(Math.min(2.5, l.h * 0.16))}" fill="${PMI_FILL}" stroke="${INK}" stroke-width="0.5"/>`
                  : diamond(g.x, cy, size);
          symbols.push(`<g>${shape}<title>${escapeXml(tip)}</title></g>`);
        }
      }
    }
    body.push(...symbols);
  }

  // ---- annotation lines --------------------------------------------------------------------------------
  for (const p of placed) {
    const top = bandTop + p.row * 15 + 14;
    body.push(
      `<line x1="${f(p.x)}" y1="${f(top)}" x2="${f(p.x)}" y2="${f(plotBottom)}" stroke="${p.auto ? MUTED : INK}" stroke-width="${p.auto ? 1 : 1.25}" stroke-dasharray="${p.auto ? '2 3' : '5 3'}"/>`,
    );
  }

  // ---- axis -------------------------------------------------------------------------------------------
  const axis: string[] = [];
  axis.push(`<line x1="${f(x0)}" y1="${f(plotBottom)}" x2="${f(x1)}" y2="${f(plotBottom)}" stroke="${MUTED}" stroke-width="1"/>`);
  for (const t of ticks) {
    axis.push(`<line x1="${f(xv(t))}" y1="${f(plotBottom)}" x2="${f(xv(t))}" y2="${f(plotBottom + 4)}" stroke="${MUTED}" stroke-width="1"/>`);
    // The tick's value, centred under it (shifted inwards at the ends so it stays on the picture).
    const half = textWidth(String(t), TEXT) / 2;
    const tx = Math.min(W - 2 - half, Math.max(x0 - 8 + half, xv(t)));
    axis.push(`<text x="${f(tx)}" y="${f(plotBottom + 16)}" font-size="${TEXT}" text-anchor="middle" fill="${MUTED}">${t}</text>`);
  }
  const unit = scale.unit === 'tick' ? 'host clock (scheduler ticks)' : 'event sequence number (seq)';
  axis.push(`<text x="${f((x0 + x1) / 2)}" y="${f(plotBottom + 32)}" font-size="${TEXT}" text-anchor="middle" fill="${MUTED}">${unit}</text>`);
  const H = Math.ceil(plotBottom + 42);
  // The document is `outW` wide; its viewBox is the layout, so everything scales by outW / W.
  const outH = Math.round((H * outW) / W);

  out.push(
    `<svg xmlns="http://www.w3.org/2000/svg" width="${outW}" height="${outH}" viewBox="0 0 ${W} ${H}" font-family="${escapeXml(FONT)}" role="img" aria-label="${escapeXml(title)}">`,
  );
  out.push(`<title>${escapeXml(title)}</title>`);
  out.push(`<defs>${defs.join('')}</defs>`);
  out.push(`<rect width="${W}" height="${H}" fill="#ffffff"/>`);
  out.push(...head, ...body, ...labels, ...axis);
  out.push('</svg>');
  return out.join('\n') + '\n';
}

function triangle(cx: number, cy: number, size: number, up: boolean): string {
  const h = size;
  const half = size * 0.75;
  const pts = up ? `${f(cx - half)},${f(cy + h / 2)} ${f(cx + half)},${f(cy + h / 2)} ${f(cx)},${f(cy - h / 2)}` : `${f(cx - half)},${f(cy - h / 2)} ${f(cx + half)},${f(cy - h / 2)} ${f(cx)},${f(cy + h / 2)}`;
  return `<polygon points="${pts}" fill="${up ? VIRT_ON_FILL : VIRT_OFF_FILL}" stroke="#ffffff" stroke-width="0.75"/>`;
}

function diamond(cx: number, cy: number, size: number): string {
  const r = size * 0.6;
  return `<polygon points="${f(cx)},${f(cy - r)} ${f(cx + r)},${f(cy)} ${f(cx)},${f(cy + r)} ${f(cx - r)},${f(cy)}" fill="${WARN_FILL}" stroke="#ffffff" stroke-width="0.75"/>`;
}

/**
 * A step chart of `points` ([seq, value], by seq) in one lane, with its scale left of the plot: 0 at the
 * baseline and the maximum at the top, each with a tick and a light grid line across.
 */
function stepChart(
  points: ReadonlyArray<readonly [number, number]>,
  start: number,
  end: number,
  x: (seq: number) => number,
  where: (seq: number) => string,
  lane: { readonly y: number; readonly h: number },
  color: string,
  what: string,
): { plot: string; scale: string[] } {
  let max = 1;
  for (const p of points) if (p[1] > max) max = p[1];
  // Room for a line of text around the top and bottom values.
  const top = lane.y + TEXT * 0.75;
  const base = lane.y + lane.h - TEXT * 0.55;
  const yv = (v: number): number => base - (v / max) * (base - top);
  // One point per pixel column is enough (the last value in it wins).
  const cols: Array<[number, number]> = [];
  for (const [at, v] of points) {
    const px = Math.round(x(at) * 2) / 2;
    const lastCol = cols[cols.length - 1];
    if (lastCol !== undefined && lastCol[0] === px) lastCol[1] = v;
    else cols.push([px, v]);
  }
  const left = x(start);
  const right = x(end);
  let d = `M${f(left)} ${f(base)}`;
  for (const [px, v] of cols) d += `H${f(px)}V${f(yv(v))}`;
  d += `H${f(right)}V${f(base)}Z`;
  const last = points[points.length - 1];
  const tip = `${what}: max ${max}${last === undefined ? '' : `, ${last[1]} at ${where(last[0])}`}`;
  const scale: string[] = [];
  for (const v of [max, 0]) {
    const vy = yv(v);
    scale.push(`<line x1="${f(left - 4)}" y1="${f(vy)}" x2="${f(left)}" y2="${f(vy)}" stroke="${MUTED}" stroke-width="1"/>`);
    scale.push(`<text x="${f(left - 6)}" y="${f(vy + TEXT * 0.36)}" font-size="${TEXT}" text-anchor="end" fill="${MUTED}">${v}</text>`);
  }
  const grid = `<line x1="${f(left)}" y1="${f(yv(max))}" x2="${f(right)}" y2="${f(yv(max))}" stroke="${GRID}" stroke-width="1" stroke-dasharray="3 3"/>`;
  return { plot: `${grid}\n<path d="${d}" fill="${color}" fill-opacity="0.25" stroke="${color}" stroke-width="1.2"><title>${escapeXml(tip)}</title></path>`, scale };
}
