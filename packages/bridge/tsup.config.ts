/** The npm build of @vac/bridge: the library and the `vac` command (bin/vac.mjs loads dist/cli/main.js). */
import { defineConfig } from 'tsup';
import { bundled } from '../../tsup.config.js';

export default defineConfig({
  ...bundled,
  entry: { index: 'src/index.ts', 'cli/main': 'src/cli/main.ts' },
});
