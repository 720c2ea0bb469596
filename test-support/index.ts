/**
 * `@vac/test-support`: what the test suites of every package share — the "fails with this errno and leaves the host
 * exactly as it was" assertion (docs/spec.md §4, invariant 7), snapshot differences named by path, and a seeded
 * PRNG so that "random" scenarios are the same on every run, and turns of the event loop inside long tests. Private to
 * this repository.
 *
 * @module
 */
export { expectKernelError, expectUsageError, thrown, type KernelErrorExpectation } from './failure.js';
export { firstDifference, withoutCounters } from './snapshot.js';
export { Random, prng } from './random.js';
export { idleVacInstance } from './vac-instance.js';
export { runProcess, turnEventLoopIfDue, type ProcessResult } from './event-loop.js';
