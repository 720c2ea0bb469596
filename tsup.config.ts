/**
 * The npm build of every package (run by each package's `build` script from its own directory): its public entry
 * point, and `src/internal.ts` where a package has one (its `./internal` export, for the other packages).
 */
import { existsSync } from 'node:fs';
import { defineConfig } from 'tsup';

export default defineConfig({
  entry: ['src/index.ts', ...(existsSync('src/internal.ts') ? ['src/internal.ts'] : [])],
  format: ['esm'],
  dts: true,
  clean: true,
  sourcemap: true,
  target: 'node20',
  tsconfig: 'tsconfig.build.json',
});
