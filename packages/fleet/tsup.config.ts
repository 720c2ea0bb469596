/**
 * The npm build of @vac/fleet: the shared options (`bundled` of ../../tsup.config.ts) with one more entry, the
 * worker-thread script the fleet's worker pool starts from `dist/fleet/worker.js`.
 */
import { defineConfig } from 'tsup';
import { bundled } from '../../tsup.config.js';

export default defineConfig({ ...bundled, entry: { index: 'src/index.ts', 'fleet/worker': 'src/fleet/worker.ts' } });
