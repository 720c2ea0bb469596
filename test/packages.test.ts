/**
 * The published packages as a user installs them: license, metadata, a README whose example runs.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, test, vi } from 'vitest';

const root = join(import.meta.dirname, '..');
const published = ['core', 'vmx', 'svm', 'kvm', 'bridge', 'fleet'] as const;
const gen = join(import.meta.dirname, '.gen-packages');

interface Manifest {
  readonly name: string;
  readonly license?: string;
  readonly type?: string;
  readonly keywords?: readonly string[];
  readonly engines?: { readonly node?: string };
  readonly files?: readonly string[];
  readonly sideEffects?: boolean;
  readonly exports?: Record<string, { readonly import?: string; readonly types?: string }>;
  readonly dependencies?: Record<string, string>;
  readonly devDependencies?: Record<string, string>;
}
const manifest = (dir: string): Manifest => JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8')) as Manifest;
const rootManifest = manifest('.');
const license = readFileSync(join(root, 'LICENSE'), 'utf8');

mkdirSync(gen, { recursive: true });
afterAll(() => rmSync(gen, { recursive: true, force: true }));

describe('the repository', () => {
  test('has an MIT LICENSE, copyright the vac authors', () => {
    expect(license).toMatch(/^MIT License\n\nCopyright \(c\) \d{4} the vac authors\n/);
  });
  test('takes every tool version from the pnpm catalog', () => {
    const specs = Object.entries(rootManifest.devDependencies ?? {}).filter(([name]) => !name.startsWith('@vac/'));
    expect(specs.length).toBeGreaterThan(10);
    expect(specs.filter(([, spec]) => spec !== 'catalog:')).toEqual([]);
    const catalog = readFileSync(join(root, 'pnpm-workspace.yaml'), 'utf8').split('\ncatalog:\n')[1] ?? '';
    for (const [name] of specs) expect(catalog, name).toMatch(new RegExp(`^  '?${name.replace(/[/.]/g, '\\$&')}'?: \\d+\\.\\d+\\.\\d+$`, 'm'));
  });
});

describe.each(published)('@vac/%s', (pkg) => {
  const dir = join('packages', pkg);
  const m = manifest(dir);
  test('is MIT with the LICENSE, ESM only, Node >= 20, with keywords', () => {
    expect(m.name).toBe(`@vac/${pkg}`);
    expect(m.license).toBe('MIT');
    expect(readFileSync(join(root, dir, 'LICENSE'), 'utf8')).toBe(license);
    expect(m.type).toBe('module');
    expect(m.engines?.node).toBe(rootManifest.engines?.node);
    expect(m.keywords).toContain('kvm');
    expect(m.files).toEqual(expect.arrayContaining(['dist', 'README.md', 'LICENSE']));
    for (const e of Object.values(m.exports ?? {})) expect(e.import).toMatch(/^\.\/dist\/.*\.js$/); // no require condition
  });
  test('says sideEffects: true exactly when a module of it registers something at import', () => {
    // registerCoreImage (core), defineFaultSite (vmx, kvm): top-level calls a bundler must not drop.
    const registers = ['core', 'vmx', 'kvm'].includes(pkg);
    expect(m.sideEffects).toBe(registers);
  });
  test('has a README: what it is, how to install it, an example, the docs', () => {
    const readme = readFileSync(join(root, dir, 'README.md'), 'utf8');
    expect(readme.startsWith(`# @vac/${pkg}\n`)).toBe(true);
    expect(readme).toContain('## Install');
    expect(readme).toContain('README.md#use-it-in-your-own-project');
    expect(readme).toContain('## Example');
    expect(readme).toContain('## Documentation');
    for (const link of readme.matchAll(/\]\((\.\.\/[^)#]+)/g)) expect(existsSync(join(root, dir, link[1]!)), link[1]).toBe(true);
  });
  test("the README's example runs and prints", async () => {
    const readme = readFileSync(join(root, dir, 'README.md'), 'utf8');
    const blocks = [...readme.matchAll(/^```ts\n([\s\S]*?)^```/gm)].map((b) => b[1] ?? '');
    expect(blocks).toHaveLength(1);
    const path = join(gen, `${pkg}.ts`);
    writeFileSync(path, blocks[0]!);
    const lines: string[] = [];
    const log = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => void lines.push(a.join(' ')));
    try {
      await import(path);
    } finally {
      log.mockRestore();
    }
    expect(lines.join('\n')).not.toBe('');
  });
});

describe('the release flow (changesets)', () => {
  const config = JSON.parse(readFileSync(join(root, '.changeset', 'config.json'), 'utf8')) as { fixed: string[][]; privatePackages: { version: boolean } };
  test('the published packages are one fixed group; private packages are never versioned', () => {
    expect(config.fixed).toEqual([published.map((p) => `@vac/${p}`)]);
    expect(config.privatePackages.version).toBe(false);
    for (const dir of ['examples/quickstart', 'examples/support', 'test-support']) expect(JSON.parse(readFileSync(join(root, dir, 'package.json'), 'utf8'))).toMatchObject({ private: true });
  });
  test('every pending changeset names only published packages, with a valid bump and a summary', () => {
    const dir = join(root, '.changeset');
    const files = readdirSync(dir).filter((f) => f.endsWith('.md') && f !== 'README.md');
    for (const f of files) {
      const m = /^---\n([\s\S]*?)\n---\n\n(\S[\s\S]*)$/.exec(readFileSync(join(dir, f), 'utf8'));
      expect(m, f).not.toBeNull();
      for (const line of m![1]!.split('\n')) expect(line, f).toMatch(/^'@vac\/(core|vmx|svm|kvm|bridge|fleet)': (patch|minor|major)$/);
    }
  });
  test('RELEASING.md names scripts that exist', () => {
    const text = readFileSync(join(root, 'RELEASING.md'), 'utf8');
    const scripts = (rootManifest as unknown as { scripts: Record<string, string> }).scripts;
    for (const m of text.matchAll(/npx --yes pnpm@10\.34\.9 ([a-z:]+)/g)) expect(scripts, m[1]).toHaveProperty(m[1]!);
  });
});
