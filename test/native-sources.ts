/**
 * The model's sources as plain ESM that Node loads itself in vitest's workers (vitest.config.ts).
 *
 * vite-node runs every module it loads as a function whose imports are properties of the imported module's exports
 * object: a prototype-less object of getters, so a dictionary-mode object in V8. Every use of an imported binding in
 * the model's hot paths (`R.ip`, `getR32(…)`, a `case FORM_…:` label of the interpreter's switch) is then a hash
 * lookup and a getter call that V8 cannot inline, and the guest interpreter ran 6× slower under vitest than under tsx
 * (docs/performance.md, "The test command"). Loading the sources through tsx's loader in each worker instead costs
 * ~1 s of CPU per test file (the loader's thread, every module transformed or read from its cache again), more than
 * the light files gain. So {@link compileSources} transforms packages/<name>/src once per run, with the esbuild
 * transform vite-node used (the same tsconfig options), into packages/<name>/node_modules/.vac-test/src — file for
 * file, so module identity and live bindings stay ESM's — and {@link nativeSources} resolves every import of a
 * source file to its compiled copy, which vitest then leaves to Node (`server.deps.external`).
 *
 * The compiled copy differs from the source only where the location shows: a workspace package's name
 * (`'@vac/core'`) becomes the relative path of its compiled entry point (Node would resolve it to the TypeScript
 * source), and `import.meta.url` stays the source file's URL (the bridge finds its C sources, the fleet its worker
 * script, relative to it). Stack traces name the compiled files.
 *
 * @module
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { dirname, join, relative } from 'node:path';
import { pathToFileURL } from 'node:url';
import { createHash } from 'node:crypto';
import { transformWithEsbuild, version as viteVersion, type Plugin } from 'vite';

/** Where a package's compiled sources go, relative to the package's directory (git-ignored, as all node_modules). */
const OUT = join('node_modules', '.vac-test');

/** Matches the ids of the compiled sources (for `server.deps.external`). */
export const COMPILED = /\/node_modules\/\.vac-test\//;

/** The `.ts` files under `dir`, recursively (declaration files excluded). */
function sourcesUnder(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts') && !e.name.endsWith('.d.ts'))
    .map((e) => join(e.parentPath, e.name));
}


/** The workspace packages' export specifiers (`@vac/core`, `@vac/core/internal`, …) and their source files. */
function sourceExports(packageDirs: readonly string[]): Map<string, string> {
  const map = new Map<string, string>();
  for (const dir of packageDirs) {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name: string; exports?: Record<string, Record<string, string>> };
    for (const [sub, conditions] of Object.entries(pkg.exports ?? {})) {
      const source = conditions['@vac/source'];
      if (source !== undefined) map.set(sub === '.' ? pkg.name : `${pkg.name}/${sub.slice(2)}`, join(dir, source));
    }
  }
  return map;
}

/**
 * Compiles every packages/<name>/src file of the workspace at `root` whose copy is missing or older than it (all of
 * them when this compiler, tsconfig.base.json or vite changed), removes copies whose source is gone, and returns the
 * map from source file to compiled copy.
 */
export async function compileSources(root: string): Promise<Map<string, string>> {
  const packagesDir = join(root, 'packages');
  const packageDirs = readdirSync(packagesDir)
    .map((name) => join(packagesDir, name))
    .filter((dir) => existsSync(join(dir, 'package.json')) && existsSync(join(dir, 'src')));
  const specifiers = sourceExports(packageDirs);
  const compiled = new Map<string, string>();
  // What the copies depend on besides their source: this compiler, the shared compiler options, vite's esbuild.
  const stamp = createHash('sha256')
    .update(readFileSync(new URL(import.meta.url)))
    .update(readFileSync(join(root, 'tsconfig.base.json')))
    .update(viteVersion)
    .digest('hex');
  for (const dir of packageDirs) {
    const out = join(dir, OUT);
    const stampFile = join(out, 'stamp');
    if ((existsSync(stampFile) ? readFileSync(stampFile, 'utf8') : '') !== stamp) rmSync(join(out, 'src'), { recursive: true, force: true });
    mkdirSync(out, { recursive: true });
    writeFileSync(stampFile, stamp);
    // The copies are ESM: a .js file's module type comes from the nearest package.json, which Node does not look for
    // above a node_modules directory.
    const marker = join(out, 'package.json');
    if (!existsSync(marker)) writeFileSync(marker, '{ "type": "module" }\n');
    for (const file of sourcesUnder(join(dir, 'src'))) compiled.set(file, join(out, relative(dir, file).replace(/\.ts$/, '.js')));
    for (const copy of existsSync(join(out, 'src')) ? readdirSync(join(out, 'src'), { recursive: true, encoding: 'utf8' }) : []) {
      const source = join(dir, 'src', copy.replace(/\.js$/, '.ts'));
      if (copy.endsWith('.js') && !compiled.has(source)) rmSync(join(out, 'src', copy));
    }
  }
  await Promise.all(
    [...compiled].map(async ([file, copy]) => {
      if (existsSync(copy) && statSync(copy).mtimeMs >= statSync(file).mtimeMs) return;
      const { code } = await transformWithEsbuild(readFileSync(file, 'utf8'), file, { loader: 'ts', format: 'esm', target: 'node20', sourcemap: false });
      const rewritten = code
        .replace(/(\bfrom\s*|\bimport\s*\(\s*|\bimport\s*)"(@vac\/[^"]+)"/g, (whole, lead: string, specifier: string) => {
          const target = compiled.get(specifiers.get(specifier) ?? '');
          if (target === undefined) return whole;
          const path = relative(dirname(copy), target);
          return `${lead}${JSON.stringify(path.startsWith('.') ? path : `./${path}`)}`;
        })
        .replaceAll('import.meta.url', JSON.stringify(pathToFileURL(file).href));
      mkdirSync(dirname(copy), { recursive: true });
      // Written whole, then renamed: a second vitest run at the same time never imports half a file.
      const tmp = `${copy}.${process.pid}.tmp`;
      writeFileSync(tmp, rewritten);
      renameSync(tmp, copy);
    }),
  );
  return compiled;
}

/**
 * A Vite plugin resolving every import of a model source file (`@vac/kvm`, `../src/index.js`, …) to its compiled
 * copy from `compiled` ({@link compileSources}).
 */
export function nativeSources(compiled: ReadonlyMap<string, string>): Plugin {
  return {
    name: 'vac:native-sources',
    enforce: 'pre',
    async resolveId(source, importer, options) {
      const resolved = await this.resolve(source, importer, { ...options, skipSelf: true });
      const copy = resolved === null ? undefined : compiled.get(resolved.id);
      return copy === undefined ? resolved : copy;
    },
  };
}
