/**
 * The performance plot (bench/plot.ts, docs/performance-scale.svg) tells its series apart even where their values
 * coincide: each has its own colour, marker and dash, the legend shows the same three, and markers that would
 * cover each other are moved apart.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { overlappingTexts, parseSvg, type SvgPicture } from '@vac/test-support/svg';
import { MARKERS, scaleSvg, seriesStyle } from '../bench/plot.js';
import type { ScalePoint } from '../bench/suites/scale.js';

/** Each series' line (colour, dash), its markers (shape, centre) and its legend entry, read from the SVG. */
function seriesOf(p: SvgPicture): Map<string, { color: string; dash: string | null; markers: Array<{ shape: string; x: number; y: number }>; legend: { color: string; dash: string | null } | undefined }> {
  const out = new Map<string, { color: string; dash: string | null; markers: Array<{ shape: string; x: number; y: number }>; legend: { color: string; dash: string | null } | undefined }>();
  for (const line of p.all('polyline')) {
    out.set(line.getAttribute('data-series') ?? '', { color: line.getAttribute('stroke') ?? '', dash: line.getAttribute('stroke-dasharray'), markers: [], legend: undefined });
  }
  for (const kind of ['circle', 'rect', 'polygon']) {
    for (const m of p.all(kind)) {
      const shape = m.getAttribute('data-marker');
      const title = m.getElementsByTagName('title')[0]?.textContent ?? '';
      if (shape === null || title === '') continue;
      const s = out.get(title.slice(0, title.lastIndexOf(':')));
      if (s === undefined) throw new Error(`a marker of no series: ${title}`);
      let x: number;
      let y: number;
      if (kind === 'circle') [x, y] = [Number(m.getAttribute('cx')), Number(m.getAttribute('cy'))];
      else if (kind === 'rect') [x, y] = [Number(m.getAttribute('x')) + 3.6, Number(m.getAttribute('y')) + 3.6];
      else {
        const pts = (m.getAttribute('points') ?? '').split(' ').map((q) => q.split(',').map(Number) as [number, number]);
        x = pts.reduce((a, q) => a + q[0], 0) / pts.length;
        y = shape === 'diamond' ? (pts[0]![1] + pts[2]![1]) / 2 : pts[0]![1] + 4.8;
      }
      expect(m.getAttribute('fill'), title).toBe(s.color);
      s.markers.push({ shape, x, y });
    }
  }
  for (const l of p.all('line')) {
    const name = l.getAttribute('data-legend');
    const s = name === null ? undefined : out.get(name);
    if (s !== undefined) s.legend = { color: l.getAttribute('stroke') ?? '', dash: l.getAttribute('stroke-dasharray') };
  }
  return out;
}

describe('the performance plot', () => {
  // Two series with exactly the same values (as the two "create VM" series nearly have), and two more.
  const same = [10, 100, 1000, 10_000].map((size) => ({ size, nsPerUnit: 6000 }));
  const points: ScalePoint[] = [
    ...same.map((p) => ({ series: 'create VM (one VMM)', ...p })),
    ...same.map((p) => ({ series: 'create VM (one process per VM)', ...p })),
    ...[64, 1024, 8192].map((size, i) => ({ series: 'insmod (per CPU)', size, nsPerUnit: [4350, 686, 1660][i]! })),
    ...same.map((p) => ({ series: 'a third on the same spot', ...p })),
  ];
  const p = parseSvg(scaleSvg(points));
  const series = seriesOf(p);

  test('every series has its own colour, marker and dash, and the legend shows the same', () => {
    expect([...series.keys()]).toEqual(['create VM (one VMM)', 'create VM (one process per VM)', 'insmod (per CPU)', 'a third on the same spot']);
    const styles = [...series.values()].map((s) => `${s.color} ${s.dash ?? 'solid'} ${s.markers[0]?.shape ?? ''}`);
    expect(new Set(styles).size).toBe(4);
    expect(new Set([...series.values()].map((s) => s.dash ?? 'solid')).size).toBe(4);
    expect(new Set([...series.values()].map((s) => s.markers[0]?.shape)).size).toBe(4);
    for (const [name, s] of series) {
      expect(new Set(s.markers.map((m) => m.shape)).size, name).toBe(1);
      expect(s.legend, name).toEqual({ color: s.color, dash: s.dash });
      expect(p.texts.map((t) => t.text)).toContain(name);
    }
    // Twelve series before colour, marker and dash all repeat.
    const twelve = Array.from({ length: 12 }, (_, i) => seriesStyle(i)).map((s) => `${s.color} ${s.marker} ${s.dash ?? ''}`);
    expect(new Set(twelve).size).toBe(12);
    expect(MARKERS).toHaveLength(4);
  });

  test('where values coincide, the markers are moved apart so each series shows', () => {
    const all = [...series.values()].flatMap((s) => s.markers);
    expect(all).toHaveLength(4 + 4 + 3 + 4);
    for (const [i, a] of all.entries()) {
      for (const b of all.slice(i + 1)) expect(Math.hypot(a.x - b.x, a.y - b.y), `${a.shape}@${a.x},${a.y} / ${b.shape}@${b.x},${b.y}`).toBeGreaterThanOrEqual(7.5);
    }
    // Only sideways, by a few pixels: the value (y) is exact.
    const [one, two, three] = [series.get('create VM (one VMM)')!, series.get('create VM (one process per VM)')!, series.get('a third on the same spot')!];
    for (let k = 0; k < 4; k++) {
      expect(two.markers[k]!.y).toBeCloseTo(one.markers[k]!.y, 1);
      expect(Math.abs(two.markers[k]!.x - one.markers[k]!.x)).toBeLessThanOrEqual(8.1);
      expect(Math.abs(three.markers[k]!.x - one.markers[k]!.x)).toBeLessThanOrEqual(8.1);
    }
  });

  test('reads in the guide: as wide as its column, 12-px text, no text overlapping', () => {
    expect(p.viewWidth).toBe(600);
    expect(Math.min(...p.texts.map((t) => t.minSize))).toBeGreaterThanOrEqual(11);
    expect(overlappingTexts(p)).toEqual([]);
  });

  test('the committed plot is the one bench/plot.ts draws from the committed results', () => {
    const root = join(import.meta.dirname, '..');
    const results = JSON.parse(readFileSync(join(root, 'bench', 'results', 'latest.json'), 'utf8')) as { points: ScalePoint[] };
    expect(readFileSync(join(root, 'docs', 'performance-scale.svg'), 'utf8')).toBe(scaleSvg(results.points));
  });
});
