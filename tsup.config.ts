/**
 * The npm build of every package (run by each package's `build` script from its own directory): its public entry
 * point, and `src/internal.ts` where a package has one (its `./internal` export, for the other packages).
 *
 * {@link bundled}: the options every package's build shares; @vac/fleet and @vac/bridge add their own entries.
 */
import { existsSync } from 'node:fs';
import { defineConfig, type Options } from 'tsup';

/** What every package's build shares: ESM for Node 20, bundled, source maps, the build tsconfig (`stripInternal`). */
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
  entry: ['src/index.ts', ...(existsSync('src/internal.ts') ? ['src/internal.ts'] : [])],
});
