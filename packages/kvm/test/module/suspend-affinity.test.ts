/**
 * vCPU threads keep their CPU affinity across suspend/resume (tasks are frozen before `freeze_secondary_cpus`
 * takes the CPUs down, and thawed after `thaw_secondary_cpus` brought them back): each vCPU is put when the
 * freeze schedules its thread out (`kvm_sched_out`) and loaded again on its own CPU when the thread next runs
 * there (`kvm_sched_in`). A thread pinned to a CPU that does not come back is unpinned at thaw
 * (`select_fallback_rq`) and its vCPU is loaded on the CPU it lands on.
 */
import { checkInvariants } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { VENDORS } from './helpers.js';
import { fourPinnedSpinners, vacIn, type VcpuThread } from './integration.js';

describe.each(VENDORS)('vCPU threads across suspend/resume on $name', (vendor) => {
  const fourPinned = (): ReturnType<typeof fourPinnedSpinners> => fourPinnedSpinners(vendor.hardware());

  test('each vCPU thread stays pinned and its vCPU is loaded on its own CPU again after resume', () => {
    const { host, threads } = fourPinned();
    threads.forEach((t, cpu) => expect(t.vcpu.loadedOn).toBe(cpu));
    host.suspend();
    // Frozen in place: scheduled out (vCPUs put), not migrated, still pinned.
    for (const [cpu, t] of threads.entries()) {
      expect(t.thread.affinity).toBe(cpu);
      expect(t.thread.cpu).toBe(cpu);
      expect(t.vcpu.loadedOn).toBe(-1);
    }
    expect(checkInvariants(host)).toEqual([]);
    host.resume();
    host.scheduler.run(3);
    for (const [cpu, t] of threads.entries()) {
      expect(t.thread.affinity).toBe(cpu);
      expect(t.thread.cpu).toBe(cpu);
      expect(t.vcpu.loadedOn).toBe(cpu);
      expect(t.vcpu.inGuest).toBe(true);
      expect(t.errors).toEqual(['EINTR']); // kicked once by the freezer, then back in KVM_RUN
      expect(vacIn(host).cpu(cpu).running).toBe(t.label);
      expect(host.raisePmi(cpu).attributedTo).toBe(t.label);
    }
    expect(host.warnings).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('a CPU that fails to come back at resume: its thread is unpinned and its vCPU runs on CPU 0', () => {
    const { host, threads } = fourPinned();
    host.suspend();
    host.hardware.injectEnableFault(2, 'always'); // VAC refuses CPU 2 at resume (EIO): it stays offline
    host.resume();
    expect(host.cpus.map((c) => c.online)).toEqual([true, true, false, true]);
    expect(host.warnings.some((w) => w.message === 'Error taking CPU2 up: -5')).toBe(true);
    const lost = threads[2] as VcpuThread;
    expect(lost.thread.affinity).toBeUndefined();
    expect(lost.thread.cpu).toBe(0);
    host.scheduler.run(3);
    // CPU 0 is shared by two vCPU threads now: whichever ran last there has its vCPU loaded; the other was put.
    expect(threads.map((t) => t.thread.cpu)).toEqual([0, 1, 0, 3]);
    expect([threads[0]?.thread.affinity, threads[1]?.thread.affinity, threads[3]?.thread.affinity]).toEqual([0, 1, 3]);
    expect(lost.vcpu.stats.instructions).toBeGreaterThan(0);
    expect(vacIn(host).cpu(0).running).toBe(lost.label);
    expect(threads[0]?.vcpu.loadedOn).toBe(-1);
    expect(lost.vcpu.loadedOn).toBe(0);
    expect(vacIn(host).cpu(2).running).toBeUndefined();
    for (const cpu of [1, 3]) expect(threads[cpu]?.vcpu.loadedOn).toBe(cpu);
    expect(checkInvariants(host)).toEqual([]);
    // The CPU coming back later does not re-pin the thread (as after a hotplug offline).
    host.hardware.injectEnableFault(2, 'off');
    host.cpuUp(2);
    host.scheduler.run(2);
    expect(lost.thread.cpu).toBe(0);
    expect(checkInvariants(host)).toEqual([]);
  });
});
