/**
 * Turns of the test worker's event loop inside a long test, and child processes that do not block it.
 *
 * Vitest 3.2's worker reports a test's progress to the main process by RPC and fails the run when an answer has not
 * been read within 60 s of the call (`[vitest-worker]: Timeout calling "onTaskUpdate"`); the worker reads answers
 * only between turns of its event loop. The setup file `test/event-loop-turn.ts` turns it after every test; a test
 * that runs longer — on a 2-core machine at load 30 a test of 4 s of CPU can take a minute — calls
 * {@link turnEventLoopIfDue} in its loop. The turns depend only on elapsed time, never on what the test does, so the
 * test runs exactly the same cases whatever the load.
 *
 * @module
 */
import { execFile } from 'node:child_process';
import { setImmediate } from 'node:timers/promises';

/** Wall time between two turns of {@link turnEventLoopIfDue} (ms): far below the RPC's 60 s at any load. */
const TURN_EVERY_MS = 1000;

let lastTurn = performance.now();

/**
 * Turn the event loop once (`setImmediate`: the answers that arrived are read first) when a second has passed since
 * the last turn; otherwise resolve at once (a microtask). Await it in a long loop.
 */
export async function turnEventLoopIfDue(): Promise<void> {
  const now = performance.now();
  if (now - lastTurn < TURN_EVERY_MS) return;
  await setImmediate();
  lastTurn = performance.now();
}

/** What {@link runProcess} returns: as `spawnSync`'s `status`, `stdout` and `stderr` (text). */
export interface ProcessResult {
  /** The exit status, or `null` when a signal ended the process (a timeout, for one). */
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/**
 * Run `file` with `args` to its end, as `spawnSync` would — but without blocking the test worker's event loop while the
 * child runs (a `tsc` over the sources took 74 s at load 30: the worker's RPC timed out meanwhile). `timeout` (ms)
 * kills the child with SIGTERM, as `spawnSync`'s does.
 */
export function runProcess(file: string, args: readonly string[], options: { readonly cwd?: string; readonly env?: NodeJS.ProcessEnv; readonly timeout?: number } = {}): Promise<ProcessResult> {
  return new Promise((resolve) => {
    execFile(file, args, { ...options, encoding: 'utf8', maxBuffer: 256 * 1024 * 1024 }, (error, stdout, stderr) => {
      let status: number | null = 0;
      if (error !== null) status = typeof error.code === 'number' ? error.code : null;
      resolve({ status, stdout, stderr });
    });
  });
}
