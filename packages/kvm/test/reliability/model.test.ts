/**
 * Model-based random testing of the whole host (issue 6): random sequences of every public operation, on
 * both vendors, checked against the model after every command (see model.ts).
 *
 * CI: a fixed seed and budget. Soak: `npx --yes pnpm@10.34.9 soak` (SOAK_RUNS sequences, default 100,000; SOAK_SEED
 * to pick the seed). A failure prints its seed and path; `REPLAY_SEED=… REPLAY_PATH=… npx vitest run --project
 * kvm test/reliability` replays it (and shrinks nothing: the path is already the shrunk counterexample).
 */
import { describe, expect, test } from 'vitest';
import { runModel, settingsFromEnv } from './commands.js';
import { newStats } from './model.js';
import { progressReporter } from './progress.js';

/** CI budget: 6,000 sequences of up to 150 commands (about 35 s on the 2-core CI machine). */
const CI_RUNS = 6000;
const CI_SEED = 0x5eed;
const MAX_COMMANDS = 150;
/**
 * Sequences per fast-check run (a failure names its chunk's seed). The worker's event loop turns inside the runs, about
 * once a second (vitest's worker RPC times out after 60 s without a turn: `turnEventLoopIfDue` of test-support).
 */
const CHUNK = 100;

describe('model-based random testing', () => {
  const settings = settingsFromEnv(CI_RUNS, CI_SEED, MAX_COMMANDS);
  test(`${settings.mode}: ${settings.runs} sequences of up to ${settings.maxCommands} commands (seed ${settings.seed})`, async () => {
    const t0 = performance.now();
    const stats = newStats();
    if (settings.mode === 'replay') {
      await runModel(settings, stats);
    } else {
      // Chunk i runs with seed + i: a failure names the chunk's own seed, which replays on its own. A progress
      // line every tenth of the run (vitest prints a test's console output as it comes, so CI shows it live).
      const progress = progressReporter(`[model] ${settings.mode}`, settings.runs, CHUNK);
      for (let done = 0, i = 0; done < settings.runs; done += CHUNK, i++) {
        await runModel({ ...settings, seed: settings.seed + i, runs: Math.min(CHUNK, settings.runs - done) }, stats);
        const line = progress(stats, performance.now() - t0);
        if (line !== undefined) console.log(line);
        await new Promise((r) => setImmediate(r));
      }
    }
    const ms = performance.now() - t0;
    console.log(
      `[model] ${settings.mode}: seed ${settings.seed}: ${stats.sequences} sequences, ${stats.commands} commands (${stats.skipped} skipped), ` +
        `${stats.failedAsExpected} expected failures, ${stats.faultsInjected} faults planned / ${stats.faultsFired} fired, ` +
        `${stats.badInputs} bad inputs, ${stats.ticks} ticks in ${(ms / 1000).toFixed(1)} s`,
    );
    console.log(`[model] commands by kind: ${JSON.stringify(stats.byKind)}`);
    console.log(`[model] listener callbacks by behaviour: ${JSON.stringify(stats.callbacks)}`);
    console.log(`[model] skipped (nothing to act on) by kind: ${JSON.stringify(stats.skippedByKind)}`);
    expect(stats.sequences).toBe(settings.runs);
  }, 24 * 3600 * 1000);
});
