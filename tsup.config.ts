/**
 * The npm build of every package (run by each package's `build` script from its own directory).
 *
 * @vac/core, @vac/kvm, @vac/vmx and @vac/svm (this file's default): every source file transpiled on its own into
 * `dist/` (the same tree as `src/`), **not bundled** — the module graph users run is the one the tests and benches
 * run from the sources. Bundling (esbuild) rewrites every module's top-level `const` into `var`, and V8 then cannot
 * treat those bindings as constants where it inlines a function (the run context `R`, the flag tables, the shared
 * errors): the bundled build measured 20–50 ns slower per KVM_RUN than the same code unbundled (docs/performance.md,
 * "Issues 11 and 12: KVM_RUN, eighth round"). The type declarations are still rolled up from the public entry
 * points: `src/index.ts`, and `src/internal.ts` where a package has one (its `./internal` export, for the other
 * packages).
 *
 * {@link bundled}: the options the packages with a bundled build of their own entries use (@vac/fleet, @vac/bridge).
 */
import { existsSync } from 'node:fs';
import { defineConfig, type Options } from 'tsup';

/** What every package's build shares: ESM for Node 20, source maps, the build tsconfig (`stripInternal`). */
export const bundled: Options = {
  format: ['esm'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  tsconfig: 'tsconfig.build.json',
};

export default defineConfig({
  ...bundled,
  entry: ['src/**/*.ts'],
  bundle: false,
  dts: { entry: ['src/index.ts', ...(existsSync('src/internal.ts') ? ['src/internal.ts'] : [])] },
});
