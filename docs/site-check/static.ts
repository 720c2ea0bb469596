/**
 * Checks of the built site that need no browser: no `@internal` declaration of the packages has a page or an
 * anchor, every package page is grouped into categories (none left in "Other"), no word was auto-linked as a URL
 * (`SPEC.md` → http://SPEC.md), and the main entry points show an example.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import ts from 'typescript';

const PACKAGES = ['core', 'vmx', 'svm', 'kvm', 'bridge', 'fleet'] as const;

const sources = (dir: string): string[] =>
  readdirSync(dir, { withFileTypes: true }).flatMap((e) => (e.isDirectory() ? sources(join(dir, e.name)) : e.name.endsWith('.ts') ? [join(dir, e.name)] : []));

const isInternal = (node: ts.Node): boolean => ts.getJSDocTags(node).some((t) => t.tagName.text === 'internal');

/** A declaration marked `@internal`: a top-level name, or a member of a class or interface. */
export interface InternalItem {
  readonly pkg: string;
  readonly owner: string | undefined;
  readonly name: string;
  /** A member with a public accessor of the same name (a getter public, its setter internal) has its anchor. */
  readonly publicTwin: boolean;
}

export function internalItems(root: string): InternalItem[] {
  const items: InternalItem[] = [];
  for (const pkg of PACKAGES) {
    for (const file of sources(join(root, 'packages', pkg, 'src'))) {
      const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, true);
      for (const stmt of sf.statements) {
        const name = (stmt as { name?: ts.Node }).name;
        if (isInternal(stmt) && name && ts.isIdentifier(name)) items.push({ pkg, owner: undefined, name: name.text, publicTwin: false });
        if ((ts.isClassDeclaration(stmt) || ts.isInterfaceDeclaration(stmt)) && stmt.name) {
          const members = stmt.members as ts.NodeArray<ts.ClassElement | ts.TypeElement>;
          for (const m of members) {
            if (!isInternal(m)) continue;
            const mName = ts.isConstructorDeclaration(m) ? 'constructor' : m.name && (ts.isIdentifier(m.name) || ts.isStringLiteral(m.name)) ? m.name.text : undefined;
            if (mName === undefined) continue;
            const publicTwin = members.some((o) => o !== m && !isInternal(o) && o.name !== undefined && ts.isIdentifier(o.name) && o.name.text === mName);
            items.push({ pkg, owner: stmt.name.text, name: mName, publicTwin });
          }
        }
      }
    }
  }
  return items;
}

export function staticChecks(root: string, site: string): { what: string; ok: boolean }[] {
  const results: { what: string; ok: boolean }[] = [];
  const check = (ok: boolean, what: string): void => void results.push({ ok, what });
  const pages = ['classes', 'interfaces', 'functions', 'types', 'variables', 'modules'].flatMap((d) =>
    existsSync(join(site, d)) ? readdirSync(join(site, d)).map((f) => join(d, f)) : [],
  );

  // No internal item on any page.
  const items = internalItems(root);
  const shown: string[] = [];
  for (const it of items) {
    if (it.owner === undefined) {
      if (pages.some((p) => p.endsWith(`/_vac_${it.pkg}.${it.name}.html`))) shown.push(`${it.pkg}: ${it.name}`);
      continue;
    }
    if (it.publicTwin) continue;
    for (const dir of ['classes', 'interfaces']) {
      const page = join(site, dir, `_vac_${it.pkg}.${it.owner}.html`);
      if (existsSync(page) && readFileSync(page, 'utf8').includes(`id="${it.name.toLowerCase()}"`)) shown.push(`${it.pkg}: ${it.owner}.${it.name}`);
    }
  }
  check(items.length > 50 && shown.length === 0, `no page shows one of the ${items.length} @internal declarations${shown.length > 0 ? `; shown: ${shown.join(', ')}` : ''}`);

  // Each package's page is grouped into categories, none of them "Other".
  for (const pkg of PACKAGES) {
    const html = readFileSync(join(site, 'modules', `_vac_${pkg}.html`), 'utf8');
    const categories = [...html.matchAll(/<h2[^>]*>([^<]+)<\/h2>/g)].map((m) => m[1]!.trim()).filter((t) => t !== 'Index' && t !== 'Other');
    check(categories.length >= 4 && !/<h2[^>]*>\s*Other\s*<\/h2>/.test(html), `@vac/${pkg}'s page is in ${categories.length} categories (${categories.join(', ')}), none "Other"`);
  }

  // No bare word auto-linked as a URL: every external link is https and has a path or a real host.
  const bogus = new Set<string>();
  for (const p of [...pages, ...readdirSync(join(site, 'documents')).map((f) => join('documents', f)), 'index.html']) {
    for (const m of readFileSync(join(site, p), 'utf8').matchAll(/href="(https?:\/\/[^"]*)"/g)) {
      const url = m[1]!;
      if (url.startsWith('http://') || /^https?:\/\/[A-Za-z0-9]+\.(md|PE|PG|NP|ts|js)\/?$/.test(url)) bogus.add(url);
    }
  }
  check(bogus.size === 0, `no word auto-linked as a URL${bogus.size > 0 ? `: ${[...bogus].join(', ')}` : ''}`);

  // The main entry points show an example.
  for (const [page, what] of [
    ['functions/_vac_core.createHost.html', 'createHost'],
    ['functions/_vac_kvm.kvm.html', 'kvm()'],
    ['functions/_vac_vmx.intel.html', 'intel()'],
    ['functions/_vac_svm.amd.html', 'amd()'],
    ['classes/_vac_core.Host.html', 'Host.modprobe'],
    ['classes/_vac_core.Process.html', 'Process.ioctl'],
    ['functions/_vac_kvm.saveVm.html', 'saveVm'],
    ['functions/_vac_kvm.restoreVm.html', 'restoreVm'],
    ['functions/_vac_bridge.startDaemon.html', 'startDaemon'],
    ['functions/_vac_core.recordEvents.html', 'recordEvents'],
    ['functions/_vac_core.renderTimelineSvg.html', 'renderTimelineSvg'],
    ['functions/_vac_core.toChromeTrace.html', 'toChromeTrace'],
    ...(['mapKvmRun', 'createRealModeVcpu', 'createRealModeVm', 'releaseRealModeVm', 'msrIndexList', 'saveVcpu', 'restoreVcpu', 'parseSavedVcpu', 'savedVcpuOf', 'parseSavedIrqchip', 'savedIrqchipOf', 'completePendingIo', 'moveRealModeVm'] as const).map(
      (f) => [`functions/_vac_kvm.${f}.html`, f] as const,
    ),
  ] as const) {
    const file = join(site, page);
    check(existsSync(file) && readFileSync(file, 'utf8').includes('<h4 class="tsd-anchor-link" id="example'), `${what} shows an example`);
  }
  return results;
}
