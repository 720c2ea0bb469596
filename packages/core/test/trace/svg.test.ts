import { describe, expect, test } from 'vitest';
import { MODULE_PALETTE, buildTimeline, renderTimelineSvg } from '../../src/index.js';
import { escapeXml } from '../../src/trace/svg.js';
import { overlappingTexts, parseSvg, type SvgPicture } from '@vac/test-support/svg';
import { Emitter, recordedFakeHost, rollingUpgrade } from './scenario.js';

const ENTITY = /^&(?:amp|lt|gt|quot|#39|#\d+|#x[0-9a-fA-F]+);/;
const TAG = /<(\/?)([A-Za-z][\w:.-]*)((?:\s+[A-Za-z_:][\w:.-]*="[^"<]*")*)\s*(\/?)>/y;

/**
 * A small XML well-formedness check (no dependencies): one root element, tags balanced and properly nested,
 * attribute values quoted and free of `<`, every `&` an entity, no stray `<`. Returns the problems found.
 */
function xmlProblems(xml: string): string[] {
  const out: string[] = [];
  const stack: string[] = [];
  let roots = 0;
  let i = 0;
  const checkEntities = (text: string, where: number): void => {
    for (let k = text.indexOf('&'); k >= 0; k = text.indexOf('&', k + 1)) {
      if (!ENTITY.test(text.slice(k, k + 12))) out.push(`bare & at ${where + k}: ${text.slice(k, k + 20)}`);
    }
  };
  const checkText = (text: string, where: number): void => {
    checkEntities(text, where);
    if (stack.length === 0 && text.trim() !== '') out.push(`text outside the root at ${where}`);
  };
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const textEnd = lt < 0 ? xml.length : lt;
    checkText(xml.slice(i, textEnd), i);
    if (lt < 0) break;
    TAG.lastIndex = lt;
    const m = TAG.exec(xml);
    if (m === null) {
      out.push(`malformed tag at ${lt}: ${xml.slice(lt, lt + 40)}`);
      break;
    }
    const [whole, close, name = '', attrs = '', self] = m;
    checkEntities(attrs, lt);
    const attrNames = [...attrs.matchAll(/\s([\w:.-]+)="/g)].map((a) => a[1]);
    if (new Set(attrNames).size !== attrNames.length) out.push(`duplicate attribute in <${name}> at ${lt}`);
    if (close === '/') {
      const open = stack.pop();
      if (open !== name) out.push(`</${name}> closes <${String(open)}> at ${lt}`);
    } else {
      if (stack.length === 0) roots++;
      if (self !== '/') stack.push(name);
    }
    i = lt + whole.length;
  }
  if (stack.length > 0) out.push(`unclosed: ${stack.join(' > ')}`);
  if (roots !== 1) out.push(`${roots} root elements`);
  return out;
}

const texts = (svg: string): string[] => [...svg.matchAll(/>([^<>]+)</g)].map((m) => m[1] ?? '');

describe('renderTimelineSvg', () => {
  const upgrade = rollingUpgrade({ cpus: 8, vms: 6, rounds: 3, hotplug: true });
  const svg = renderTimelineSvg(upgrade.events, { title: 'Rolling upgrade', annotations: upgrade.annotations });

  test('is a well-formed SVG document', () => {
    expect(xmlProblems(svg)).toEqual([]);
    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg" width="1000" height="')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    // The checker itself catches what it should.
    expect(xmlProblems('<svg><g></svg>')).not.toEqual([]);
    expect(xmlProblems('<svg><text>a & b</text></svg>')).not.toEqual([]);
    expect(xmlProblems('<svg><text>a < b</text></svg>')).not.toEqual([]);
    expect(xmlProblems('<svg x=1></svg>')).not.toEqual([]);
  });

  test('has a labelled lane per CPU and per module, VM rows, the usage lane, a title and an axis', () => {
    const t = texts(svg);
    for (let c = 0; c < 8; c++) expect(t).toContain(`CPU ${c}`);
    for (const m of ['vac', 'kvm0', 'kvm1']) expect(t).toContain(m);
    expect(t).toContain('Rolling upgrade');
    expect(t).toContain('CPUs');
    expect(t).toContain('Modules');
    expect(t).toContain('VMs (6)');
    expect(t).toContain('VAC usage count');
    expect(t).toContain('host clock (scheduler ticks)');
    expect(t).toContain('kvm0 unloaded');
    expect(t).toContain('vm1');
    expect(t.filter((x) => x === 'offline').length).toBeGreaterThan(0);
  });

  test('has a legend: module → color, then the symbols that occur', () => {
    const t = texts(svg);
    for (const label of ['vac (base module)', 'kvm0', 'kvm1', 'CPU offline', 'VMXON', 'VMXOFF', 'TLB flush (tick from below)', 'L1D flush (tick from above)', 'guest PMI']) expect(t).toContain(label);
    expect(t).not.toContain('warning');
    expect(svg).toContain(`fill="${MODULE_PALETTE[0]?.hex}"`);
    expect(svg).toContain(`fill="${MODULE_PALETTE[1]?.hex}"`);
  });

  test('draws the annotations', () => {
    const t = texts(svg);
    for (const a of upgrade.annotations) expect(t).toContain(a.label);
    expect(t).toContain('rmmod kvm0 refused (EBUSY)');
    // One dashed line per annotation.
    expect(svg.match(/stroke-dasharray="5 3"/g)).toHaveLength(upgrade.annotations.length);
  });

  test('is deterministic: the same events give a byte-identical SVG, also from a second identical run', () => {
    expect(renderTimelineSvg(upgrade.events, { title: 'Rolling upgrade', annotations: upgrade.annotations })).toBe(svg);
    const again = rollingUpgrade({ cpus: 8, vms: 6, rounds: 3, hotplug: true });
    expect(renderTimelineSvg(again.events, { title: 'Rolling upgrade', annotations: again.annotations })).toBe(svg);
    expect(renderTimelineSvg(buildTimeline(upgrade.events), { title: 'Rolling upgrade', annotations: upgrade.annotations })).toBe(svg);
  });

  test('escapes <, &, > and quotes in the title, annotations, module names and messages', () => {
    const { host, rec } = recordedFakeHost(2);
    const e = new Emitter(host, 2);
    e.load('kvm<&>"1\'');
    host.warn({ source: 'kvm<&>"1\'', message: 'bad <vmcs> & "stuff"', cpu: 1 });
    e.createVm('kvm<&>"1\'', 1);
    e.run('kvm<&>"1\'', 1, 0, 1);
    const out = renderTimelineSvg(rec.events(), {
      title: 'a <b> & c',
      subtitle: '"quoted" & <tagged>',
      annotations: [{ at: 3, label: 'rmmod <kvm0> & "co"' }],
    });
    expect(xmlProblems(out)).toEqual([]);
    expect(out).toContain('a &lt;b&gt; &amp; c');
    expect(out).toContain('rmmod &lt;kvm0&gt; &amp; &quot;co&quot;');
    expect(out).toContain('kvm&lt;&amp;&gt;&quot;1&#39;');
    expect(out).toContain('bad &lt;vmcs&gt; &amp; &quot;stuff&quot;');
    expect(out).not.toContain('<b>');
    expect(out).not.toContain('<kvm0>');
    expect(out).not.toContain('<vmcs>');
    expect(escapeXml(`<&>"'`)).toBe('&lt;&amp;&gt;&quot;&#39;');
  });

  test('thousands of events stay small: adjacent runs merge, instants thin out', () => {
    const { host, rec } = recordedFakeHost(2);
    const e = new Emitter(host, 2);
    e.load('kvm0');
    e.createVm('kvm0', 1);
    for (let i = 0; i < 3000; i++) e.run('kvm0', 1, 0, 0, { tlb: true, l1d: true });
    for (let i = 0; i < 1000; i++) host.events.emit('virt:enable', { cpu: 1 });
    const out = renderTimelineSvg(rec.events());
    expect(xmlProblems(out)).toEqual([]);
    expect(rec.size).toBeGreaterThan(15_000);
    expect(out.length).toBeLessThan(60_000);
    // CPU 0: one stint, its solid bars merged to at most one per pixel.
    const stints = out.match(/kvm0\/vm1\/vcpu0 on CPU 0/g) ?? [];
    expect(stints).toHaveLength(1);
    const bars = out.match(/<path d="(M[\d.]+ [\d.]+h[\d.]+v[\d.]+h-[\d.]+z)+" fill=/g) ?? [];
    const subpaths = bars.join('').split('z').length - 1;
    expect(subpaths).toBeGreaterThan(0);
    expect(subpaths).toBeLessThan(860);
    // Flush ticks: at most one per 2 px per kind and lane.
    const ticks = (out.match(/v-\d+/g) ?? []).length;
    expect(ticks).toBeLessThanOrEqual(2 * 430);
    // 1000 VMXONs on one CPU become a few markers whose tooltips count them.
    const markers = out.match(/<title>VMXON ×\d+/g) ?? [];
    expect(markers.length).toBeGreaterThan(0);
    expect(markers.length).toBeLessThan(200);
  });

  test('64 CPUs and many VMs stay within a readable page', () => {
    const big = rollingUpgrade({ cpus: 64, vms: 40, rounds: 1 });
    const out = renderTimelineSvg(big.events, { cpus: 64, maxVmRows: 40 });
    expect(xmlProblems(out)).toEqual([]);
    const t = texts(out);
    for (let c = 0; c < 64; c++) expect(t).toContain(`CPU ${c}`);
    const height = parseSvg(out).viewHeight;
    expect(height).toBeGreaterThan(600);
    expect(height).toBeLessThan(2000);
    // Above maxVmRows a module shows the number of VMs alive instead of a row per VM.
    expect(texts(out)).toContain('VMs (40)');
    const compact = renderTimelineSvg(big.events); // default maxVmRows: 32
    expect(texts(compact)).not.toContain('VMs (40)');
    expect(texts(compact).filter((x) => x === 'VMs alive')).toHaveLength(2);
    expect(parseSvg(compact).viewHeight).toBeLessThan(height);
  });

  test('options: width, lane height, colors, vendor, power annotations, flushes off, gap fill off', () => {
    const { host, rec } = recordedFakeHost(4);
    const e = new Emitter(host, 4);
    e.load('kvm0');
    e.createVm('kvm0', 1);
    e.run('kvm0', 1, 0, 1, { tlb: true });
    e.run('kvm0', 1, 0, 1, { tlb: true });
    host.suspend();
    host.resume();
    const events = rec.events();
    const base = renderTimelineSvg(events);
    expect(texts(base)).toContain('suspend');
    expect(texts(base)).toContain('TLB flush (tick from below)');
    const out = renderTimelineSvg(events, { width: 1200, laneHeight: 24, colors: { kvm0: '#123456' }, virtLabels: { enable: 'EFER.SVME=1', disable: 'EFER.SVME=0' }, powerAnnotations: false, flushes: false, gapFill: 0 });
    expect(xmlProblems(out)).toEqual([]);
    expect(out).toContain('width="1200"');
    expect(out).toContain('fill="#123456"');
    expect(texts(out)).toContain('EFER.SVME=1');
    expect(texts(out)).not.toContain('suspend');
    expect(texts(out)).not.toContain('TLB flush (tick from below)');
    expect(out).not.toContain('fill-opacity="0.3"'); // no light fill between runs
    expect(base).toContain('fill-opacity="0.3"');
  });

  test('an empty stream and a stream without modules still render', () => {
    expect(xmlProblems(renderTimelineSvg([]))).toEqual([]);
    const { host, rec } = recordedFakeHost(2);
    host.cpuDown(1);
    host.cpuUp(1);
    const out = renderTimelineSvg(rec.events(), { annotations: [{ at: -50, label: 'before' }, { at: 1e9, label: 'after' }] });
    expect(xmlProblems(out)).toEqual([]);
    expect(texts(out)).toContain('CPU 1');
    expect(texts(out)).toContain('before');
    expect(texts(out)).toContain('after');
  });

  test('is laid out 600 wide and scaled to its width: no text under 11 px, none overlapping, even with many labels at one place', () => {
    const p = parseSvg(svg);
    expect([p.width, p.viewWidth]).toEqual([1000, 600]);
    expect(p.height).toBe(Math.round((p.viewHeight * 1000) / 600));
    expect(Math.min(...p.texts.map((t) => t.minSize))).toBeGreaterThanOrEqual(11);
    expect(overlappingTexts(p)).toEqual([]);
    // Eight labels at one moment take eight rows (no cap where they would start to overlap).
    const crowd = Array.from({ length: 8 }, (_, i) => ({ at: upgrade.annotations[2]?.at ?? 0, label: `step ${i} of a crowded moment` }));
    const crowded = parseSvg(renderTimelineSvg(upgrade.events, { annotations: crowd }));
    expect(overlappingTexts(crowded)).toEqual([]);
    const rows = new Set(crowded.texts.filter((t) => t.text.startsWith('step ')).map((t) => t.y));
    expect(rows.size).toBe(8);
    // Laid out at its full width when asked: the same text sizes, more room.
    const wide = parseSvg(renderTimelineSvg(upgrade.events, { width: 1400, layoutWidth: 1400 }));
    expect([wide.width, wide.viewWidth]).toEqual([1400, 1400]);
    // The checker sees an overlap when there is one.
    expect(overlappingTexts(parseSvg('<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 100 100"><text x="10" y="20" font-size="11">abc</text><text x="15" y="22" font-size="11">def</text></svg>'))).toHaveLength(1);
  });

  test('lanes thinner than a line of text: every other CPU labelled, no text in the bars, still nothing overlapping', () => {
    const thin = parseSvg(renderTimelineSvg(upgrade.events, { laneHeight: 8, annotations: upgrade.annotations }));
    const cpuLabels = thin.texts.filter((t) => /^CPU \d+$/.test(t.text)).map((t) => t.text);
    expect(cpuLabels).toEqual(['CPU 0', 'CPU 2', 'CPU 4', 'CPU 6']);
    expect(thin.texts.some((t) => t.text.startsWith('kvm0/vm'))).toBe(false);
    expect(Math.min(...thin.texts.map((t) => t.minSize))).toBeGreaterThanOrEqual(11);
    expect(overlappingTexts(thin)).toEqual([]);
  });

  /** The axis of a picture: tick value → x, from its first two numeric labels under the plot. */
  const axisOf = (p: SvgPicture): ((x: number) => number) => {
    const title = p.texts.find((t) => t.text === 'host clock (scheduler ticks)' || t.text === 'event sequence number (seq)');
    const labels = p.texts.filter((t) => /^\d+$/.test(t.text) && t.anchor === 'middle' && title !== undefined && t.y < title.y && t.y > title.y - 20);
    const [a, b] = labels;
    if (a === undefined || b === undefined) throw new Error('no axis labels');
    // The label sits on its tick line unless it was moved inwards at an end: use the tick marks' x.
    const tickX = (t: typeof a): number => p.lines.find((l) => l.x1 === l.x2 && Math.abs(l.y2 - l.y1) === 4 && Math.abs(l.x1 - t.x) < 15)?.x1 ?? t.x;
    const [xa, xb] = [tickX(a), tickX(b)];
    return (x) => Number(a.text) + ((x - xa) * (Number(b.text) - Number(a.text))) / (xb - xa);
  };

  test('the x axis is the host clock in ticks: each tick as wide as the next, events of a tick spread over it in order', () => {
    const { host, rec } = recordedFakeHost(2);
    const e = new Emitter(host, 2);
    e.load('kvm0');
    e.createVm('kvm0', 1);
    const notes: Array<{ at: number; label: string }> = [];
    for (let t = 0; t < 40; t++) {
      // Tick 10 is busy (15 runs: 45 events), tick 20 holds two runs, the others one (3 events).
      if (t === 10) notes.push({ at: e.seq, label: 'tick 10 begins' });
      const runs = t === 10 ? 15 : t === 20 ? 2 : 1;
      for (let r = 0; r < runs; r++) {
        if (t === 10 && r === 5) notes.push({ at: e.seq, label: 'a third into tick 10' });
        if (t === 20 && r === 1) notes.push({ at: e.seq, label: 'half way through tick 20' });
        e.run('kvm0', 1, 0, t % 2);
      }
      host.events.tick++;
    }
    const p = parseSvg(renderTimelineSvg(rec.events(), { annotations: notes }));
    expect(p.texts.map((t) => t.text)).toContain('host clock (scheduler ticks)');
    const tickAt = axisOf(p);
    const lineOf = (label: string): number => {
      const text = p.texts.find((t) => t.text === label);
      const line = p.lines.find((l) => l.dash === '5 3' && text !== undefined && Math.abs(l.x1 - (text.anchor === 'end' ? text.x + 3 : text.x - 3)) < 0.05);
      if (line === undefined) throw new Error(`no line for ${label}`);
      return line.x1;
    };
    expect(tickAt(lineOf('tick 10 begins'))).toBeCloseTo(10, 1);
    expect(tickAt(lineOf('a third into tick 10'))).toBeCloseTo(10 + 20 / 60, 1);
    expect(tickAt(lineOf('half way through tick 20'))).toBeCloseTo(20.5, 1);
    // The subtitle says what the axis is.
    expect(p.texts.some((t) => t.text.includes('ticks 0–39 of the host clock'))).toBe(true);
    // Tooltips name the tick too (with the seq, exact).
    const titles = p.all('title').map((t) => t.textContent ?? '');
    expect(titles).toContainEqual(expect.stringMatching(/^kvm0 loaded at tick 0 \(seq \d+\), still loaded at the end$/));
    expect(titles).toContainEqual(expect.stringMatching(/^kvm0\/vm1 \(pid 10\), 1 vCPU: created at tick 0 \(seq \d+\), alive at the end$/));
    expect(titles).toContainEqual(expect.stringMatching(/^kvm0\/vm1\/vcpu0 on CPU 0, ticks 0–\d+ \(seq \d+–\d+\): \d+ runs/));
    // On request, or when everything happened within one tick, the axis is the event number.
    const bySeq = parseSvg(renderTimelineSvg(rec.events(), { annotations: notes, axis: 'seq' }));
    expect(bySeq.texts.map((t) => t.text)).toContain('event sequence number (seq)');
    const first = notes[0]?.at ?? 0;
    expect(axisOf(bySeq)(bySeq.lines.find((l) => l.dash === '5 3')?.x1 ?? 0)).toBeCloseTo(first, 0);
    const { host: still, rec: rec2 } = recordedFakeHost(2);
    new Emitter(still, 2).load('kvm0');
    expect(parseSvg(renderTimelineSvg(rec2.events())).texts.map((t) => t.text)).toContain('event sequence number (seq)');
  });

  test('the usage count has a scale: 0 at its baseline and its maximum at the top of the step chart', () => {
    const p = parseSvg(svg);
    const lane = p.texts.find((t) => t.text === 'VAC usage count');
    expect(lane).toBeDefined();
    const path = p.all('path').find((e) => (e.getElementsByTagName('title')[0]?.textContent ?? '').startsWith('VAC usage count: max '));
    expect(path).toBeDefined();
    // Six VMs, and one more while each moves (the new VM is created before the old one goes).
    expect(path?.getElementsByTagName('title')[0]?.textContent).toMatch(/^VAC usage count: max 7,/);
    const ys = [...(path?.getAttribute('d') ?? '').matchAll(/V([\d.]+)/g)].map((m) => Number(m[1]));
    const [top, base] = [Math.min(...ys), Math.max(...ys)];
    // The scale's labels: right-aligned left of the plot, centred on the top and base of the chart, each with a tick.
    const scale = p.texts.filter((t) => t.anchor === 'end' && Math.abs(t.y - (lane?.y ?? 0)) < 40 && /^\d+$/.test(t.text));
    expect(scale.map((t) => t.text)).toEqual(['7', '0']);
    expect(Math.abs(scale[0]!.y - 11 * 0.36 - top)).toBeLessThan(0.2);
    expect(Math.abs(scale[1]!.y - 11 * 0.36 - base)).toBeLessThan(0.2);
    for (const y of [top, base]) expect(p.lines.some((l) => l.y1 === y && l.y2 === y && l.x2 - l.x1 === 4)).toBe(true);
    expect(base - top).toBeGreaterThan(20);
  });
});

