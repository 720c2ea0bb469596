/**
 * A VAC instance that does nothing: what tests attach to VAC when they need a handle (a fake KVM module, a tool, an
 * intruder under a taken name) without a KVM behind it.
 *
 * @module
 */
import type { VacInstanceOps } from '@vac/core';

/**
 * The callbacks of an instance with no vCPUs: perf sees no guest, no vCPU runs, wakes, takes an NMI or a PMI, and
 * going offline or kicking has nothing to put.
 */
export function idleVacInstance(name: string): VacInstanceOps {
  return {
    name,
    perfGuestState: () => 0,
    perfGuestIp: () => 0n,
    runningLabel: () => undefined,
    postedIntrWakeup: () => [],
    nmiExit: () => undefined,
    pmiExit: () => undefined,
    cpuOffline: () => undefined,
    kickAll: () => undefined,
  };
}
