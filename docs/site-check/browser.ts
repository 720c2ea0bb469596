/**
 * The docs site, tested as a person would use it: build it first (`pnpm run docs`), then this serves `site/`
 * on localhost, opens it in headless Chromium (Debian's `/usr/bin/chromium`, driven by playwright-core),
 * follows the navigation to every guide, checks that every picture renders at its intended size (as wide as the
 * column, or its own width if narrower, never stretched, with text at 11 px or more there) and
 * opens at full size when clicked, and searches the API for `createHost`; first the checks that need no browser
 * (static.ts: no internal item, categories, no bogus links, examples). Screenshots go to `artifacts/screenshots/`
 * (git-ignored; CI keeps them there): each guide's page, each picture as shown and at full size, the searches.
 * Exits non-zero on any failure.
 */
import { createReadStream, existsSync, mkdirSync, readdirSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { extname, join, normalize, resolve } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { staticChecks } from './static.js';

const root = resolve(import.meta.dirname, '..', '..');
const site = join(root, 'site');
const shots = join(root, 'artifacts', 'screenshots');
/** The smallest text a picture may show in a guide, in CSS px (its font size times the scale it is shown at). */
const MIN_TEXT_PX = 10.9;
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript',
  '.css': 'text/css',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
  '.woff2': 'font/woff2',
};

function serve(dir: string): Promise<Server> {
  const server = createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://localhost');
    let path = normalize(join(dir, decodeURIComponent(url.pathname)));
    if (!path.startsWith(dir)) {
      res.writeHead(403).end();
      return;
    }
    if (existsSync(path) && statSync(path).isDirectory()) path = join(path, 'index.html');
    if (!existsSync(path)) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(path)] ?? 'application/octet-stream' });
    createReadStream(path).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

const failures: string[] = [];
const check = (ok: boolean, what: string): void => {
  console.log(`${ok ? 'ok  ' : 'FAIL'} ${what}`);
  if (!ok) failures.push(what);
};

async function imagesRendered(page: Page): Promise<{ total: number; broken: string[] }> {
  return page.evaluate(() => {
    const imgs = [...document.querySelectorAll('.tsd-panel img, .tsd-typography img')] as HTMLImageElement[];
    return { total: imgs.length, broken: imgs.filter((i) => !i.complete || i.naturalWidth === 0).map((i) => i.src) };
  });
}

/** A picture as a guide shows it. */
interface Shown {
  readonly file: string;
  readonly src: string;
  /** Its own size (the SVG's width/height attributes). */
  readonly natural: { readonly w: number; readonly h: number };
  /** Its size on the page, and the width of the column it sits in. */
  readonly shown: { readonly w: number; readonly h: number };
  readonly column: number;
  /** Where a click goes (the enclosing link), if anywhere. */
  readonly href: string | undefined;
  /** The smallest font size in the SVG times the scale it is shown at (px on screen); undefined for a raster. */
  readonly minTextPx: number | undefined;
}

/** Every picture of the page, measured (the SVG is fetched and parsed in the page for its viewBox and fonts). */
async function picturesShown(page: Page): Promise<Shown[]> {
  return page.evaluate(async () => {
    const imgs = [...document.querySelectorAll('.tsd-typography img')] as HTMLImageElement[];
    return Promise.all(
      imgs.map(async (img) => {
        const rect = img.getBoundingClientRect();
        const column = (img.closest('.tsd-typography') as HTMLElement).getBoundingClientRect().width;
        let minTextPx: number | undefined;
        if (img.src.endsWith('.svg')) {
          const doc = new DOMParser().parseFromString(await (await fetch(img.src)).text(), 'image/svg+xml');
          const svg = doc.documentElement;
          const viewW = Number((svg.getAttribute('viewBox') ?? '').split(/\s+/)[2] ?? svg.getAttribute('width'));
          // (No named functions in here: tsx would wrap them in a helper the page does not have.)
          let min = Infinity;
          for (const t of doc.querySelectorAll('text, tspan')) {
            if ((t.textContent ?? '').trim() === '') continue;
            let size = 16;
            for (let n: Element | null = t; n !== null; n = n.parentElement) {
              const v = n.getAttribute('font-size');
              if (v !== null) {
                size = Number(v);
                break;
              }
            }
            min = Math.min(min, size);
          }
          minTextPx = (min * rect.width) / viewW;
        }
        return {
          file: new URL(img.src).pathname.split('/').pop() ?? img.src,
          src: img.src,
          natural: { w: img.naturalWidth, h: img.naturalHeight },
          shown: { w: rect.width, h: rect.height },
          column,
          href: (img.closest('a') as HTMLAnchorElement | null)?.href,
          minTextPx,
        };
      }),
    );
  });
}

/** Check each picture of the guide now open, and keep a screenshot of it as shown and at full size. */
async function checkPictures(browser: Browser, page: Page, guide: string, base: string): Promise<void> {
  for (const p of await picturesShown(page)) {
    const name = `${guide} ${p.file}`;
    const intended = Math.min(p.natural.w, p.column);
    check(Math.abs(p.shown.w - intended) <= 1, `${name}: shown ${p.shown.w.toFixed(0)} px wide, as intended (its ${p.natural.w} px, the column ${p.column.toFixed(0)} px)`);
    const stretch = (p.shown.h / p.shown.w) * (p.natural.w / p.natural.h);
    check(Math.abs(stretch - 1) < 0.01, `${name}: not stretched (height/width as its own, ×${stretch.toFixed(3)})`);
    // Every SVG of the guides — the renderers' (renderTimelineSvg, renderRolloutSvg, bench/plot.ts) and the
    // hand-drawn docs/architecture.svg — is laid out 600 units wide with text of 11 units or more.
    if (p.minTextPx !== undefined) check(p.minTextPx >= MIN_TEXT_PX, `${name}: smallest text ${p.minTextPx.toFixed(1)} px as shown (at least 11)`);
    check(p.href === p.src, `${name}: a click opens the picture itself (${p.href ?? 'no link'})`);
    const img = page.locator(`.tsd-typography img[src$="${p.file}"]`).first();
    await img.scrollIntoViewIfNeeded();
    await img.screenshot({ path: join(shots, 'pictures', `${guide}--${p.file}.png`) });
    // At full size: the file on its own, as wide as it says.
    // (The viewport is the picture's size: a full-page screenshot of a bare SVG document never settles.)
    const full = await browser.newPage({ viewport: { width: Math.max(1280, p.natural.w + 40), height: Math.min(4000, p.natural.h + 20) } });
    await full.goto(p.src.startsWith(base) ? p.src : `${base}/${p.src}`);
    const w = await full.evaluate(() => document.documentElement.getBoundingClientRect().width);
    check(Math.abs(w - p.natural.w) <= 1, `${name}: opened on its own it is ${w.toFixed(0)} px wide (its full size)`);
    await full.screenshot({ path: join(shots, 'pictures', `${guide}--${p.file}--full.png`) });
    await full.close();
  }
}

async function main(): Promise<void> {
  if (!existsSync(join(site, 'index.html'))) throw new Error('site/ is missing: run `npx --yes pnpm@10.34.9 run docs` first');
  if (!existsSync(CHROMIUM)) throw new Error(`${CHROMIUM} is missing: apt-get install chromium (or set CHROMIUM_PATH)`);
  mkdirSync(join(shots, 'pictures'), { recursive: true });
  for (const r of staticChecks(root, site)) check(r.ok, r.what);
  const guides = readdirSync(join(site, 'documents')).filter((f) => f.endsWith('.html')).map((f) => f.replace(/\.html$/, ''));
  const server = await serve(site);
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    page.on('pageerror', (e) => errors.push(String(e)));
    await page.goto(`${base}/index.html`);
    check((await page.title()).includes('vac'), 'the home page opens and is titled vac');
    await page.screenshot({ path: join(shots, 'home.png'), fullPage: false });

    // Every guide, reached by clicking its link in the navigation (rendered by typedoc's script).
    for (const guide of guides) {
      await page.goto(`${base}/index.html`);
      const link = page.locator(`.tsd-navigation a[href$="documents/${guide}.html"]`).first();
      await link.waitFor({ state: 'attached', timeout: 10_000 });
      await link.click();
      await page.waitForURL(`**/documents/${guide}.html`);
      const h1 = await page.locator('.tsd-typography h1, h1').first().textContent();
      check(typeof h1 === 'string' && h1.trim().length > 0, `guide ${guide}: reached through the navigation, heading "${h1?.trim() ?? ''}"`);
      const imgs = await imagesRendered(page);
      check(imgs.broken.length === 0, `guide ${guide}: ${imgs.total} picture(s) rendered${imgs.broken.length > 0 ? `, broken: ${imgs.broken.join(', ')}` : ''}`);
      await checkPictures(browser, page, guide, base);
      await page.screenshot({ path: join(shots, `${guide}.png`), fullPage: true });
    }
    const withPictures = ['Architecture', 'Rolling_upgrade'];
    for (const g of withPictures) {
      await page.goto(`${base}/documents/${g}.html`);
      check((await imagesRendered(page)).total > 0, `guide ${g} shows its picture`);
    }

    // API search.
    await page.goto(`${base}/index.html`);
    await page.locator('#tsd-search-trigger').click();
    await page.locator('#tsd-search-input').fill('createHost');
    const hit = page.locator('#tsd-search-results li', { hasText: 'createHost' }).first();
    await hit.waitFor({ timeout: 10_000 });
    check(await hit.isVisible(), 'the API search finds createHost');
    await page.screenshot({ path: join(shots, 'search-createHost.png') });
    await hit.click();
    await page.waitForLoadState();
    check(page.url().includes('createHost'), `the search result opens createHost's page (${page.url()})`);
    await page.screenshot({ path: join(shots, 'createHost.png') });
    // Full-text search reaches the guides' text, not only the API's names.
    await page.goto(`${base}/index.html`);
    await page.locator('#tsd-search-trigger').click();
    await page.locator('#tsd-search-input').fill('Perfetto');
    const guideHit = page.locator('#tsd-search-results li a[href*="documents/"]').first();
    const found = await guideHit.waitFor({ timeout: 10_000 }).then(() => true, () => false);
    check(found, `searching "Perfetto" (a word of the guides' text) finds a guide${found ? ` (${await guideHit.getAttribute('href')})` : ''}`);
    await page.screenshot({ path: join(shots, 'search-guides.png') });
    check(errors.length === 0, `no page errors${errors.length > 0 ? `: ${errors.join('; ')}` : ''}`);
  } finally {
    await browser.close();
    server.close();
  }
  console.log(`screenshots: ${shots}`);
  if (failures.length > 0) {
    console.error(`${failures.length} site check(s) failed`);
    process.exit(1);
  }
}

await main();
