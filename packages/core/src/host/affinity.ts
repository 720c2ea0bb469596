/**
 * The one check every move of a task to a CPU goes through: `sched_setaffinity` with a one-CPU mask
 * (kernel/sched/core.c `__set_cpus_allowed_ptr_locked`: the new mask and the active CPUs must meet, else EINVAL).
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { Cpu } from '../cpu.js';

/**
 * Check the CPU of a `sched_setaffinity` call.
 * @param cpus - the host's CPUs
 * @param cpu - the CPU asked for
 * @param what - the call, for the message of a {@link UsageError}
 * @returns `cpu`
 * @throws {@link UsageError} ERR_INVALID_ARG (not a number), ERR_OUT_OF_RANGE (not a non-negative integer: no mask
 * can hold it); {@link KernelError} EINVAL for a CPU the host does not have or one that is offline (the mask
 * holds no active CPU)
 */
export function affinityCpu(cpus: readonly Cpu[], cpu: unknown, what: string): number {
  const n = cpuNumber(cpu, what);
  const c = cpus[n];
  if (c === undefined) throw new KernelError('EINVAL', 'sched_setaffinity', `CPU ${n} does not exist (the host has CPUs 0…${cpus.length - 1})`);
  if (!c.online) throw new KernelError('EINVAL', 'sched_setaffinity', `CPU ${c.id} is offline`);
  return c.id;
}

/**
 * The argument checks of {@link affinityCpu} alone (what no CPU mask can hold), made before the call looks at its
 * target (a dead task is ESRCH only for a well-formed call).
 * @throws {@link UsageError} ERR_INVALID_ARG (not a number), ERR_OUT_OF_RANGE (not a non-negative integer)
 */
export function cpuNumber(cpu: unknown, what: string): number {
  if (typeof cpu !== 'number') throw new UsageError('ERR_INVALID_ARG', `${what}: the CPU must be a number, got ${typeof cpu}`);
  if (!Number.isSafeInteger(cpu) || cpu < 0) throw new UsageError('ERR_OUT_OF_RANGE', `${what}: ${String(cpu)} is not a CPU number (a non-negative integer)`);
  return cpu;
}
