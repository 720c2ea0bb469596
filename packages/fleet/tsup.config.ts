/**
 * The npm build of @vac/fleet: the shared one (../../tsup.config.ts) with one more entry, the worker-thread script
 * the fleet's worker pool starts from `dist/fleet/worker.js`.
 */
import { defineConfig, type Options } from 'tsup';
import shared from '../../tsup.config.js';

export default defineConfig({ ...(shared as Options), entry: { index: 'src/index.ts', 'fleet/worker': 'src/fleet/worker.ts' } });
