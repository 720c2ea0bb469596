/**
 * The guides' pictures tell the truth about where things happen: every mark on the hotplug-and-power timeline
 * sits at the event it names, and no two labels overlap. The SVG checked is the committed one; .ci/run checks
 * that it is exactly what the example renders (`npx --yes pnpm@10.34.9 pictures` regenerates it).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';

const root = join(import.meta.dirname, '..');
const svg = readFileSync(join(root, 'docs', 'pictures', 'hotplug-and-power.svg'), 'utf8');
const num = (s: string | undefined): number => Number(s);

interface Label {
  readonly text: string;
  readonly auto: boolean;
  /** The x of its dashed line (the mark itself). */
  readonly at: number;
  readonly box: { readonly x0: number; readonly x1: number; readonly y0: number; readonly y1: number };
}

/** The annotation labels: a white box, then the text 3 px right of its line (or left, anchored at its end). */
const labels: Label[] = [...svg.matchAll(/<rect x="([\d.]+)" y="([\d.]+)" width="([\d.]+)" height="14" rx="2" fill="#ffffff" fill-opacity="0.9"\/>\s*<text x="([\d.]+)"[^>]*?( text-anchor="end")?( font-style="italic"| font-weight="600")>([^<]*)<\/text>/g)].map(
  (m) => ({
    text: m[7]!.replace(/&gt;/g, '>').replace(/&amp;/g, '&'),
    auto: m[6] === ' font-style="italic"',
    at: num(m[4]) + (m[5] ? 3 : -3),
    box: { x0: num(m[1]), x1: num(m[1]) + num(m[3]), y0: num(m[2]), y1: num(m[2]) + 14 },
  }),
);
/** The axis: seq → x from two of its tick labels. */
const ticks = [...svg.matchAll(/<text x="([\d.]+)" y="[\d.]+" font-size="10" text-anchor="middle" fill="#59636e">(\d+)<\/text>/g)].map((m) => ({ x: num(m[1]), seq: num(m[2]) }));
const [t1, t2] = [ticks[1]!, ticks[2]!];
const seqAt = (x: number): number => t1.seq + ((x - t1.x) * (t2.seq - t1.seq)) / (t2.x - t1.x);
/** The offline periods the picture draws, from their tooltips. */
const offline = [...svg.matchAll(/<title>CPU (\d+) offline, seq (\d+)–(\d+)<\/title>/g)].map((m) => ({ cpu: num(m[1]), from: num(m[2]), to: num(m[3]) }));
const label = (text: string): Label => {
  const l = labels.find((x) => x.text === text);
  expect(l, `a label "${text}" (labels: ${labels.map((x) => x.text).join(', ')})`).toBeDefined();
  return l!;
};

describe('the hotplug-and-power picture', () => {
  test('has its marks: each step, the refused online, and suspend/resume/reboot where they happened', () => {
    expect(labels.map((l) => l.text)).toEqual(['cpuDown(2)', 'cpuUp(2); pin C to 2', 'cpuUp(3) → EIO', 'suspend', 'resume', 'reboot', 'KVM_CREATE_VM → EBUSY']);
    expect(ticks.length).toBeGreaterThan(3);
    for (const l of labels) expect(svg, l.text).toMatch(new RegExp(`<line x1="${l.at}" y1="[\\d.]+" x2="${l.at}"`));
  });

  test('cpuDown(2) is marked where CPU 2 goes offline, cpuUp(2) where it comes back (not a step later)', () => {
    const cpu2 = offline.find((o) => o.cpu === 2)!;
    const down = seqAt(label('cpuDown(2)').at);
    const up = seqAt(label('cpuUp(2); pin C to 2').at);
    // The mark is the seq read just before the call: the offline period starts within the step's first events.
    expect(down).toBeLessThanOrEqual(cpu2.from + 0.5);
    expect(cpu2.from - down).toBeLessThan(5);
    expect(up).toBeLessThanOrEqual(cpu2.to + 0.5);
    expect(cpu2.to - up).toBeLessThan(5);
  });

  test('the refused online of CPU 3 is marked inside the time CPU 3 was offline', () => {
    const cpu3 = offline.find((o) => o.cpu === 3)!;
    const refused = seqAt(label('cpuUp(3) → EIO').at);
    expect(refused).toBeGreaterThanOrEqual(cpu3.from - 0.5);
    expect(refused).toBeLessThanOrEqual(cpu3.to + 0.5);
  });

  test('KVM_CREATE_VM → EBUSY comes after the reboot', () => {
    expect(label('KVM_CREATE_VM → EBUSY').at).toBeGreaterThanOrEqual(label('reboot').at);
    expect(seqAt(label('resume').at)).toBeGreaterThan(seqAt(label('suspend').at));
  });

  test('no two labels overlap', () => {
    for (const [i, a] of labels.entries()) {
      for (const b of labels.slice(i + 1)) {
        const overlap = a.box.x0 < b.box.x1 && b.box.x0 < a.box.x1 && a.box.y0 < b.box.y1 && b.box.y0 < a.box.y1;
        expect(overlap, `"${a.text}" and "${b.text}" overlap`).toBe(false);
      }
    }
  });
});
