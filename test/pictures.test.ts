/**
 * The guides' pictures tell the truth about where things happen and read at the size the guides show them: every
 * mark on the hotplug-and-power timeline sits at the event it names, both timelines use the console's unit (host
 * clock ticks) on their axis, no text is under 11 px where a guide shows them (TypeDoc's column is 608 px wide in a
 * 1280-px window; the browser check measures it), and no two labels overlap. The SVGs checked are the committed
 * ones; .ci/run checks that they are exactly what the examples render (`npx --yes pnpm@10.34.9 pictures`).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, test } from 'vitest';
import { overlappingTexts, parseSvg, type SvgPicture, type SvgText } from '@vac/test-support/svg';

const root = join(import.meta.dirname, '..');
const picture = (name: string): SvgPicture => parseSvg(readFileSync(join(root, 'docs', 'pictures', `${name}.svg`), 'utf8'));
/** The width of the guides' text column at a 1280-px window (what docs/site-check/browser.ts measures). */
const GUIDE_COLUMN = 608;

interface Mark {
  readonly text: string;
  readonly auto: boolean;
  /** The x of its dashed line (the mark itself). */
  readonly at: number;
}

/** The annotations: a semi-bold (or, for power transitions, italic) label 3 px beside its dashed line. */
function marks(p: SvgPicture): Mark[] {
  return p.texts
    .filter((t) => t.bold || t.italic)
    .map((t: SvgText) => ({ t, at: t.anchor === 'end' ? t.x + 3 : t.x - 3 }))
    .filter(({ at }) => p.lines.some((l) => (l.dash === '5 3' || l.dash === '2 3') && Math.abs(l.x1 - at) < 0.05 && l.x1 === l.x2))
    .map(({ t, at }) => ({ text: t.text, auto: t.italic, at }));
}

/** The offline periods drawn: their x range and the seqs their tooltip names. */
function offline(p: SvgPicture): Array<{ cpu: number; x0: number; x1: number }> {
  return p
    .all('rect')
    .filter((r) => r.getAttribute('fill') === 'url(#offline)' && r.getElementsByTagName('title').length > 0)
    .map((r) => {
      const m = /^CPU (\d+) offline/.exec(r.getElementsByTagName('title')[0]?.textContent ?? '');
      const x = Number(r.getAttribute('x'));
      return { cpu: Number(m?.[1]), x0: x, x1: x + Number(r.getAttribute('width')) };
    });
}

describe.each([
  ['pictures/fleet-canary.svg', 'renderRolloutSvg'],
  ['pictures/fleet-rollout.svg', 'renderRolloutSvg'],
  ['architecture.svg', 'drawn by hand'],
])('docs/%s (%s)', (file) => {
  const p = parseSvg(readFileSync(join(root, 'docs', file), 'utf8'));

  test('reads at 11 px or more in the guide: laid out for its column, scaled up when opened on its own; no two texts overlap', () => {
    expect(p.viewWidth).toBeLessThanOrEqual(GUIDE_COLUMN);
    expect(p.width).toBeGreaterThan(p.viewWidth);
    expect(p.texts.length).toBeGreaterThan(10);
    expect(Math.min(...p.texts.map((t) => t.minSize))).toBeGreaterThanOrEqual(11);
    expect(overlappingTexts(p)).toEqual([]);
  });
});

describe.each(['hotplug-and-power', 'rolling-upgrade'])('the %s picture', (name) => {
  const p = picture(name);

  test('reads at 11 px or more in the guide: laid out for its column, scaled up when opened on its own', () => {
    expect(p.viewWidth).toBeLessThanOrEqual(GUIDE_COLUMN);
    expect(p.width).toBeGreaterThan(p.viewWidth);
    expect(Math.min(...p.texts.map((t) => t.minSize))).toBeGreaterThanOrEqual(11);
  });

  test('its axis is the host clock in ticks, the unit the example prints', () => {
    const texts = p.texts.map((t) => t.text);
    expect(texts).toContain('host clock (scheduler ticks)');
    expect(texts).not.toContain('event sequence number (seq)');
  });

  test('its usage-count lane has a scale: 0 and the maximum', () => {
    const lane = p.texts.find((t) => t.text === 'VAC usage count');
    expect(lane).toBeDefined();
    const scale = p.texts.filter((t) => t.anchor === 'end' && /^\d+$/.test(t.text) && Math.abs(t.y - (lane?.y ?? 0)) < 30);
    expect(scale.map((t) => t.text).at(-1)).toBe('0');
    expect(Number(scale[0]?.text)).toBeGreaterThan(0);
    expect(scale[0]!.y).toBeLessThan(scale[1]!.y);
  });

  test('no two texts overlap', () => {
    expect(overlappingTexts(p)).toEqual([]);
  });
});

describe('the hotplug-and-power picture', () => {
  const p = picture('hotplug-and-power');
  const all = marks(p);
  const mark = (text: string): Mark => {
    const m = all.find((x) => x.text === text);
    expect(m, `a mark "${text}" (marks: ${all.map((x) => x.text).join(', ')})`).toBeDefined();
    return m!;
  };
  const periods = offline(p);
  /** One tick, in px: a step drawn one step late would be at least this far off. */
  const tickPx = (() => {
    const labels = p.texts.filter((t) => /^\d+$/.test(t.text) && t.anchor === 'middle');
    const [a, b] = labels.slice(1, 3);
    return (b!.x - a!.x) / (Number(b!.text) - Number(a!.text));
  })();

  test('has its marks: each step, the refused online, and suspend/resume/reboot where they happened', () => {
    expect(all.map((m) => m.text)).toEqual(['cpuDown(2)', 'cpuUp(2); pin C to 2', 'cpuUp(3) → EIO', 'suspend', 'resume', 'reboot', 'KVM_CREATE_VM → EBUSY']);
    expect(all.filter((m) => m.auto).map((m) => m.text)).toEqual(['suspend', 'resume', 'reboot']);
  });

  test('cpuDown(2) is marked where CPU 2 goes offline, cpuUp(2) where it comes back (not a step later)', () => {
    const cpu2 = periods.find((o) => o.cpu === 2)!;
    // The mark is the seq read just before the call: the offline period starts within the step's first events.
    expect(mark('cpuDown(2)').at).toBeLessThanOrEqual(cpu2.x0 + 0.5);
    expect(cpu2.x0 - mark('cpuDown(2)').at).toBeLessThan(tickPx / 3);
    expect(mark('cpuUp(2); pin C to 2').at).toBeLessThanOrEqual(cpu2.x1 + 0.5);
    expect(cpu2.x1 - mark('cpuUp(2); pin C to 2').at).toBeLessThan(tickPx / 3);
  });

  test('the refused online of CPU 3 is marked inside the time CPU 3 was offline', () => {
    const cpu3 = periods.filter((o) => o.cpu === 3)[0]!;
    expect(mark('cpuUp(3) → EIO').at).toBeGreaterThanOrEqual(cpu3.x0 - 0.5);
    expect(mark('cpuUp(3) → EIO').at).toBeLessThanOrEqual(cpu3.x1 + 0.5);
  });

  test('suspend comes where the CPUs go offline for it, resume after, KVM_CREATE_VM → EBUSY after the reboot', () => {
    // Suspend takes the non-boot CPUs offline; the earliest of those periods begins just after the mark.
    const forSuspend = periods.filter((o) => o.x0 >= mark('suspend').at - 0.5);
    expect(forSuspend.map((o) => o.cpu).sort()).toEqual([1, 2, 3]);
    expect(Math.min(...forSuspend.map((o) => o.x0)) - mark('suspend').at).toBeLessThan(tickPx / 2);
    expect(mark('resume').at).toBeGreaterThan(mark('suspend').at);
    expect(mark('KVM_CREATE_VM → EBUSY').at).toBeGreaterThanOrEqual(mark('reboot').at);
  });
});
