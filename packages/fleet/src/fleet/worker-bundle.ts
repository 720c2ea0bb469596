/**
 * The worker script of a fleet run from the TypeScript sources (tests, examples and benchmarks under tsx or vitest),
 * compiled once per process into one ES module file: {@link sourceWorkerFile}.
 *
 * Loading `worker.ts` through tsx in each worker thread costs every worker tsx's own start-up, a loader-hooks thread
 * and one round trip to it per module (about 0.6 s of CPU per worker). Instead the sources are bundled here by the
 * esbuild tsx runs on, with tsx's own transform settings (the running Node as target, function names kept, the
 * workspace's `@vac/source` condition), so a worker runs the same compiled functions it would under tsx and starts
 * from one file. The file is named by its content's hash, kept in the package's `node_modules/.cache/fleet-worker/`
 * (a tool cache of this checkout, as Vite's) and written only when missing.
 *
 * @module
 */
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

/** The part of esbuild's API used here. */
interface Esbuild {
  buildSync(options: {
    entryPoints: string[];
    bundle: true;
    write: false;
    platform: 'node';
    format: 'esm';
    target: string;
    keepNames: true;
    minifyWhitespace: true;
    conditions: string[];
    logLevel: 'error';
  }): { outputFiles: Array<{ text: string }> };
}

let built: URL | undefined;

/** The esbuild that tsx depends on (the workspace's TypeScript runner; not a dependency of this package). */
function tsxEsbuild(): Esbuild {
  const fromHere = createRequire(import.meta.url);
  const fromTsx = createRequire(fromHere.resolve('tsx/package.json'));
  return fromTsx('esbuild') as Esbuild;
}

/**
 * The file URL of `worker.ts` and everything it imports compiled into one ES module (built at the first call of the
 * process, then the same URL).
 */
export function sourceWorkerFile(): URL {
  if (built !== undefined) return built;
  const entry = fileURLToPath(new URL('./worker.ts', import.meta.url));
  const out = tsxEsbuild().buildSync({
    entryPoints: [entry],
    bundle: true,
    write: false,
    platform: 'node',
    format: 'esm',
    target: `node${process.versions.node}`,
    keepNames: true,
    minifyWhitespace: true,
    conditions: ['@vac/source'],
    logLevel: 'error',
  });
  const text = out.outputFiles.map((f) => f.text).join('');
  const dir = fileURLToPath(new URL('../../node_modules/.cache/fleet-worker/', import.meta.url));
  const file = join(dir, `${createHash('sha256').update(text).digest('hex').slice(0, 16)}.mjs`);
  if (!existsSync(file)) {
    mkdirSync(dir, { recursive: true });
    // Written under a name of its own, then renamed: a process starting workers at the same time reads a whole file.
    const part = `${file}.${String(process.pid)}.part`;
    writeFileSync(part, text);
    renameSync(part, file);
  }
  built = pathToFileURL(file);
  return built;
}
