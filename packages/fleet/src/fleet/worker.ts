/**
 * The worker-thread side of a fleet run: it receives batches of {@link HostJob}s and answers each with the
 * {@link HostOutcome}s of {@link runHostJob}, in order.
 *
 * @module
 */
import { parentPort } from 'node:worker_threads';
import { runHostJob, type HostJob, type HostOutcome } from './host-job.js';

/** A request to a worker. */
export interface WorkerRequest {
  /** The index of its first job in the run, echoed in the answer. */
  readonly id: number;
  /** The jobs. */
  readonly jobs: readonly HostJob[];
}

/** A worker's answer. */
export interface WorkerAnswer {
  /** The request's `id`. */
  readonly id: number;
  /** The outcomes, in the jobs' order; or the error that stopped the batch. */
  readonly outcomes?: readonly HostOutcome[];
  /** The error's message and stack. */
  readonly error?: string;
}

parentPort?.on('message', (req: WorkerRequest) => {
  try {
    parentPort?.postMessage({ id: req.id, outcomes: req.jobs.map(runHostJob) } satisfies WorkerAnswer);
  } catch (e) {
    parentPort?.postMessage({ id: req.id, error: e instanceof Error ? (e.stack ?? e.message) : String(e) } satisfies WorkerAnswer);
  }
});
