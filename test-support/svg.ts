/**
 * Reading an SVG picture as a person would look at it: its size, its texts with where they sit and how big they
 * are, and its lines, so a test can check positions ("this mark is at that event", "no two labels overlap",
 * "no text under 11 px") instead of only that a string appears. Parsed with @xmldom/xmldom, which throws on a
 * document that is not well-formed XML.
 *
 * Text extents are estimated the way the renderer estimates them (0.6 em per character, a tenth more when
 * bold), from the baseline: 0.8 em above it, 0.25 em below.
 *
 * @module
 */
import { DOMParser, type Element } from '@xmldom/xmldom';

/** A rectangle in the picture's coordinates (its viewBox). */
export interface Box {
  readonly x0: number;
  readonly x1: number;
  readonly y0: number;
  readonly y1: number;
}

/** One `<text>` element. */
export interface SvgText {
  /** Its text (tspans included, entities decoded). */
  readonly text: string;
  /** Its anchor point (`x`, `y` attributes): the baseline. */
  readonly x: number;
  readonly y: number;
  /** Its font size (of the element; a tspan may differ). */
  readonly size: number;
  /** The smallest font size used in it (tspans included). */
  readonly minSize: number;
  readonly anchor: 'start' | 'middle' | 'end';
  readonly bold: boolean;
  readonly italic: boolean;
  /** Where it is drawn (estimated). */
  readonly box: Box;
}

/** One `<line>` element. */
export interface SvgLine {
  readonly x1: number;
  readonly y1: number;
  readonly x2: number;
  readonly y2: number;
  readonly dash: string | undefined;
  readonly stroke: string | undefined;
}

/** A parsed picture. */
export interface SvgPicture {
  /** The `width`/`height` attributes: its size when shown on its own. */
  readonly width: number;
  readonly height: number;
  /** The viewBox size: the coordinates everything below is in. */
  readonly viewWidth: number;
  readonly viewHeight: number;
  readonly texts: readonly SvgText[];
  readonly lines: readonly SvgLine[];
  /** Every element with that tag name, in document order. */
  all(tag: string): Element[];
}

const num = (e: Element, name: string, fallback = 0): number => {
  const v = e.getAttribute(name);
  return v === null || v === '' ? fallback : Number(v);
};

/** A presentation attribute as it applies to `e`: its own, or the nearest ancestor's. */
const inherited = (e: Element, name: string): string | null => {
  for (let n: Element | null = e; n !== null; n = n.parentNode as Element | null) {
    if (n.nodeType !== n.ELEMENT_NODE) break;
    const v = n.getAttribute(name);
    if (v !== null && v !== '') return v;
  }
  return null;
};

const widthOf = (text: string, size: number, bold: boolean): number => text.length * size * 0.6 * (bold ? 1.1 : 1);

/** Parse `svg` (throws when it is not well-formed). */
export function parseSvg(svg: string): SvgPicture {
  const errors: string[] = [];
  const doc = new DOMParser({
    onError: (level, message) => {
      if (level !== 'warning') errors.push(message);
    },
  }).parseFromString(svg, 'image/svg+xml');
  if (errors.length > 0) throw new Error(`not well-formed: ${errors.join('; ')}`);
  const root = doc.documentElement;
  if (root === null || root.tagName !== 'svg') throw new Error('no <svg> root');
  const [, , vw, vh] = (root.getAttribute('viewBox') ?? '').split(/\s+/).map(Number);
  const all = (tag: string): Element[] => Array.from(root.getElementsByTagName(tag));
  const texts = all('text').map((e): SvgText => {
    const size = Number(inherited(e, 'font-size') ?? 16);
    const bold = (e.getAttribute('font-weight') ?? '400') >= '600';
    const anchor = (e.getAttribute('text-anchor') ?? 'start') as SvgText['anchor'];
    let width = 0;
    let minSize = size;
    let text = '';
    for (const node of Array.from(e.childNodes)) {
      if (node.nodeType === node.TEXT_NODE) {
        const t = node.nodeValue ?? '';
        text += t;
        width += widthOf(t, size, bold);
      } else if (node.nodeType === node.ELEMENT_NODE) {
        const span = node as Element;
        const s = num(span, 'font-size', size);
        const b = (span.getAttribute('font-weight') ?? (bold ? '700' : '400')) >= '600';
        const t = span.textContent ?? '';
        text += t;
        minSize = Math.min(minSize, s);
        width += num(span, 'dx') + widthOf(t, s, b);
      }
    }
    const x = num(e, 'x');
    const y = num(e, 'y');
    const left = anchor === 'end' ? x - width : anchor === 'middle' ? x - width / 2 : x;
    return {
      text,
      x,
      y,
      size,
      minSize,
      anchor,
      bold,
      italic: e.getAttribute('font-style') === 'italic',
      box: { x0: left, x1: left + width, y0: y - 0.8 * size, y1: y + 0.25 * size },
    };
  });
  const lines = all('line').map((e) => ({
    x1: num(e, 'x1'),
    y1: num(e, 'y1'),
    x2: num(e, 'x2'),
    y2: num(e, 'y2'),
    dash: e.getAttribute('stroke-dasharray') ?? undefined,
    stroke: e.getAttribute('stroke') ?? undefined,
  }));
  return { width: num(root, 'width'), height: num(root, 'height'), viewWidth: vw ?? 0, viewHeight: vh ?? 0, texts, lines, all };
}

/** Whether two boxes share any area. */
export function overlaps(a: Box, b: Box): boolean {
  return a.x0 < b.x1 && b.x0 < a.x1 && a.y0 < b.y1 && b.y0 < a.y1;
}

/** Every pair of texts of `picture` that overlap, as "a" / "b" strings (empty when none do). */
export function overlappingTexts(picture: SvgPicture): string[] {
  const out: string[] = [];
  const t = picture.texts;
  for (let i = 0; i < t.length; i++) {
    for (let j = i + 1; j < t.length; j++) {
      const a = t[i] as SvgText;
      const b = t[j] as SvgText;
      if (overlaps(a.box, b.box)) out.push(`"${a.text}" (${a.x}, ${a.y}) / "${b.text}" (${b.x}, ${b.y})`);
    }
  }
  return out;
}
