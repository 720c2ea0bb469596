/**
 * Running host jobs on worker threads ({@link HostPool}): jobs go out in small chunks to whichever worker is free,
 * and the outcomes are put back in job order, so the result does not depend on the number of workers or on which
 * worker ran what. With 0 workers the jobs run in this thread.
 *
 * @module
 */
import { Worker } from 'node:worker_threads';
import { UsageError } from '@vac/core';
import { runHostJob, type HostJob, type HostOutcome } from './host-job.js';
import type { WorkerAnswer, WorkerRequest } from './worker.js';
import { sourceWorkerFile } from './worker-bundle.js';

/** Jobs per message to a worker. */
const CHUNK = 4;

/**
 * A worker running the worker script next to this module: `fleet/worker.js` of the build, or — when this module runs
 * from its TypeScript source (tests, examples under tsx) — `worker.ts` and what it imports compiled into one file as
 * tsx compiles them (`worker-bundle.ts`).
 */
function startWorker(): Worker {
  if (!import.meta.url.endsWith('.ts')) return new Worker(new URL('./fleet/worker.js', import.meta.url));
  return new Worker(sourceWorkerFile());
}

/** A pool of worker threads running {@link HostJob}s. */
export class HostPool {
  readonly #workers: Worker[] = [];
  #closed = false;

  /**
   * @param workers how many threads (0: run in this thread)
   * @throws UsageError `ERR_OUT_OF_RANGE` for a count that is not a non-negative integer
   */
  constructor(workers: number) {
    if (!Number.isSafeInteger(workers) || workers < 0) throw new UsageError('ERR_OUT_OF_RANGE', `HostPool: workers must be a non-negative integer, got ${String(workers)}`);
    for (let i = 0; i < workers; i++) this.#workers.push(startWorker());
  }

  /** The number of worker threads. */
  get size(): number {
    return this.#workers.length;
  }

  /** Run `jobs`; the outcomes come back in the jobs' order. */
  async run(jobs: readonly HostJob[]): Promise<HostOutcome[]> {
    if (this.#closed) throw new UsageError('ERR_INVALID_STATE', 'HostPool: closed');
    if (this.#workers.length === 0) return jobs.map(runHostJob);
    const out: HostOutcome[] = new Array<HostOutcome>(jobs.length);
    let next = 0;
    const feed = (w: Worker): Promise<void> =>
      new Promise<void>((resolve, reject) => {
        const send = (): void => {
          if (next >= jobs.length) {
            w.off('message', onMessage);
            w.off('error', reject);
            resolve();
            return;
          }
          const start = next;
          next += CHUNK;
          const req: WorkerRequest = { id: start, jobs: jobs.slice(start, start + CHUNK) };
          w.postMessage(req);
        };
        const onMessage = (a: WorkerAnswer): void => {
          if (a.error !== undefined || a.outcomes === undefined) {
            w.off('message', onMessage);
            reject(new Error(`a fleet worker failed: ${a.error ?? 'no outcomes'}`));
            return;
          }
          a.outcomes.forEach((o, i) => (out[a.id + i] = o));
          send();
        };
        w.on('message', onMessage);
        w.on('error', reject);
        send();
      });
    await Promise.all(this.#workers.map(feed));
    return out;
  }

  /** Stop the worker threads. */
  async close(): Promise<void> {
    this.#closed = true;
    await Promise.all(this.#workers.map((w) => w.terminate()));
  }
}
