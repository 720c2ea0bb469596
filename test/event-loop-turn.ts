/**
 * A setup file of every project (vitest.config.ts `setupFiles`): after each test the test worker turns its event loop
 * once.
 *
 * Vitest 3.2's worker reports each test's progress to the main process by RPC (`onTaskUpdate`) without waiting for the
 * answer, and fails the file when an answer has not been *read* within 60 s of the call — a limit no option changes
 * (birpc's default timeout). The runner goes from one test to the next through promise continuations only
 * (microtasks), so while a file runs synchronous tests the worker never reads the answers: they wait in its message
 * queue. Once the file's tests have run 60 s of wall time between two turns of the event loop — a file of 15 s of CPU
 * on a 2-core machine at load 30 — the next turn runs the expired timer before it reads the answer that came long
 * ago, and the file fails with "Timeout calling onTaskUpdate" though every test passed. One turn after each test reads
 * the answers that arrived meanwhile. A single test that runs 60 s without a turn must still yield itself (the
 * reliability runs do: packages/kvm/test/reliability).
 *
 * `node:timers/promises` is not what `vi.useFakeTimers` replaces, so the turn happens under fake timers too.
 */
import { setImmediate } from 'node:timers/promises';
import { afterEach } from 'vitest';

afterEach(async () => {
  await setImmediate();
});
