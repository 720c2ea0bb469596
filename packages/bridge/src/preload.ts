/**
 * The preload library: `native/vac-preload.c`, compiled with the system C compiler on first use into a
 * cache directory, keyed by a hash of the source (so an upgraded package rebuilds it).
 *
 * @module
 */
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, renameSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** `native/vac-preload.c` of this package, found upwards from this module (src/, dist/ or a dist/ chunk). */
function findSource(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 4; i++) {
    const p = join(dir, 'native', 'vac-preload.c');
    if (existsSync(p)) return p;
    dir = dirname(dir);
  }
  return fileURLToPath(new URL('../native/vac-preload.c', import.meta.url));
}

/** The C source of the preload library. */
export const PRELOAD_SOURCE = findSource();

/** The library could not be built; the message names what is missing. */
export class PreloadBuildError extends Error {
  /** @param message - what is missing and how to get it */
  constructor(message: string) {
    super(message);
    this.name = 'PreloadBuildError';
  }
}

/** The C compiler to use: `$CC`, else the first of `cc`, `gcc`, `clang` that runs; `undefined` if none does. */
export function findCompiler(env: NodeJS.ProcessEnv = process.env): string | undefined {
  const candidates = [env.CC, 'cc', 'gcc', 'clang'].filter((c): c is string => c !== undefined && c !== '');
  for (const c of candidates) {
    const r = spawnSync(c, ['--version'], { stdio: 'ignore', env });
    if (r.status === 0) return c;
  }
  return undefined;
}

/**
 * Compile C sources with the system compiler.
 * @throws {@link PreloadBuildError} naming the missing compiler or headers, or with the compiler's output
 */
export function compileC(sources: readonly string[], output: string, flags: readonly string[], libs: readonly string[] = [], env: NodeJS.ProcessEnv = process.env): void {
  const cc = findCompiler(env);
  if (cc === undefined) {
    throw new PreloadBuildError(
      `vac: no C compiler found (tried ${[env.CC ? `$CC (${env.CC})` : undefined, 'cc', 'gcc', 'clang'].filter(Boolean).join(', ')}); ` +
        'install one (e.g. `apt-get install gcc`) or set CC',
    );
  }
  const tmp = `${output}.${process.pid}.tmp`;
  const r = spawnSync(cc, [...flags, '-o', tmp, ...sources, ...libs], { encoding: 'utf8', env });
  if (r.status !== 0) {
    const out = `${r.stderr ?? ''}${r.stdout ?? ''}`;
    const header = /fatal error: ([\w./]+\.h): No such file/.exec(out);
    if (header !== null) {
      const hint = header[1]?.startsWith('linux/') ? 'linux-libc-dev' : 'libc6-dev';
      throw new PreloadBuildError(`vac: ${cc} cannot find the header ${header[1]}; install the C library headers (e.g. \`apt-get install ${hint}\`)`);
    }
    throw new PreloadBuildError(`vac: ${cc} failed to compile ${sources.join(' ')}:\n${out}`);
  }
  renameSync(tmp, output);
}

/** Where built libraries are cached: `$VAC_CACHE_DIR`, else `$XDG_CACHE_HOME/vac`, else `~/.cache/vac`. */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env.VAC_CACHE_DIR ?? join(env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'vac');
}

/**
 * The path of the preload library, compiling it first if this version of the source has not been built.
 * @throws {@link PreloadBuildError} when it cannot be built
 */
export function preloadLibrary(env: NodeJS.ProcessEnv = process.env): string {
  const source = readFileSync(PRELOAD_SOURCE);
  const hash = createHash('sha256').update(source).digest('hex').slice(0, 16);
  const dir = cacheDir(env);
  const out = join(dir, `vac-preload-${hash}.so`);
  if (existsSync(out)) return out;
  mkdirSync(dir, { recursive: true });
  compileC([PRELOAD_SOURCE], out, ['-O2', '-Wall', '-shared', '-fPIC', '-pthread'], ['-ldl'], env);
  return out;
}
