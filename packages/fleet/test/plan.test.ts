import { createHost, type Host } from '@vac/core';
import { LINUX_5_7, LINUX_6_18, kvm, type KvmBuild } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import { GuestVmm, countingGuest, describeUpgrade, runUpgrade, upgradeAnnotations, words, type UpgradePlan } from '../src/index.js';

const MSR_KVM_ASYNC_PF_INT = 0x4b564d06;
const state = (host: Host): string => JSON.stringify(host.snapshot(), (_k, v: unknown) => (typeof v === 'bigint' ? `${v}n` : v));

/** A host with kvm0 and `n` VMs on it (VM i has 1 + i % 3 vCPUs; those in `apf` use MSR_KVM_ASYNC_PF_INT). */
function hostWith(n: number, apf: readonly number[] = []): { host: Host; vmms: GuestVmm[] } {
  const host = createHost({ cpus: 8, hardware: intel() });
  host.modprobe(kvm({ postfix: '0' }));
  const vmms = Array.from({ length: n }, (_, i) =>
    GuestVmm.create(host, {
      name: `vm${i + 1}`,
      devPath: '/dev/kvm0',
      code: countingGuest({ busy: 20 + 7 * i }),
      vcpus: 1 + (i % 3),
      cpu: i % 8,
      irqchip: 'kernel',
      ...(apf.includes(i + 1) ? { msrs: [{ index: MSR_KVM_ASYNC_PF_INT, data: 0xecn }] } : {}),
    }),
  );
  for (const v of vmms) v.start();
  host.scheduler.run(5);
  return { host, vmms };
}

const plan = (vmms: GuestVmm[], build: KvmBuild = LINUX_6_18, more: Partial<UpgradePlan> = {}): UpgradePlan => ({ from: 'kvm0', load: { image: kvm({ postfix: '1', build }) }, vmms, ...more });

/** Every vCPU printed 1, 2, 3, … : the guests' words, split by nothing (all vCPUs share the counter), are increasing. */
function countsOn(v: GuestVmm): boolean {
  const w = words(v.output);
  return w.length > 0 && w.every((x, i) => i === 0 || x > (w[i - 1] ?? 0));
}

describe('runUpgrade', () => {
  test('moves every VM in the chosen order and batch size, then unloads the old module', () => {
    const { host, vmms } = hostWith(6);
    const r = runUpgrade(host, plan(vmms, LINUX_6_18, { order: 'most-vcpus-first', batchSize: 2, ticksBetweenBatches: 3 }));
    expect(r.outcome).toBe('completed');
    expect(r.vms.map((v) => `${v.vmm}:${v.vcpus}:${v.batch}:${v.outcome}`)).toEqual(['vm3:3:1:moved', 'vm6:3:1:moved', 'vm2:2:2:moved', 'vm5:2:2:moved', 'vm1:1:3:moved', 'vm4:1:3:moved']);
    expect(r.actions.map((a) => a.action)).toEqual(['load', 'smoke-test', 'batch', 'batch', 'batch', 'unload']);
    expect(r.failures).toEqual([]);
    expect(host.lsmod().map((m) => m.name).sort()).toEqual(['kvm1', 'vac']);
    expect(vmms.every((v) => v.devPath === '/dev/kvm1')).toBe(true);
    host.scheduler.run(5);
    expect(vmms.every(countsOn)).toBe(true);
    // Each VM's blackout is its pause plus what its calls cost; more vCPUs, more calls.
    const byVcpus = (n: number): number => r.vms.find((v) => v.vcpus === n)?.ioctls ?? 0;
    expect(byVcpus(3) - byVcpus(2)).toBe(byVcpus(2) - byVcpus(1));
    // Besides the moves: the smoke test's KVM_CREATE_VM and one probe of each module (261 KVM_CHECK_EXTENSION, 2
    // KVM_GET_MSR_INDEX_LIST, 1 KVM_GET_SUPPORTED_CPUID); the moves themselves probe nothing.
    expect(r.ioctls - r.vms.reduce((a, v) => a + v.ioctls, 0)).toBe(1 + 2 * (261 + 2 + 1));
    expect(r.vms.every((v) => v.ioctls < 200)).toBe(true);
    expect(upgradeAnnotations(r).map((a) => a.label)).toEqual(['kvm1 loaded next to kvm0', 'smoke-test: a VM was created and closed on /dev/kvm1', 'kvm0 unloaded']);
  });

  test('the dry run says what it would do and changes nothing', () => {
    const { host, vmms } = hostWith(4);
    const before = state(host);
    expect(describeUpgrade(plan(vmms, LINUX_6_18, { batchSize: 3, ticksBetweenBatches: 2, blackoutBudgetNs: 5_000_000, load: { image: kvm({ postfix: '1' }), params: { vmentry_l1d_flush: 'always' } } }))).toEqual([
      'load kvm1 vmentry_l1d_flush=always next to kvm0',
      'smoke test: create and close a VM on /dev/kvm1',
      'batch 1: move vm1 (1 vCPU, budget 5000000 ns), vm2 (2 vCPUs, budget 5000000 ns), vm3 (3 vCPUs, budget 5000000 ns); then run 2 ticks and check health',
      'batch 2: move vm4 (1 vCPU, budget 5000000 ns); then run 2 ticks and check health',
      'on failure: after 0 tolerated, rollback',
      'unload kvm0',
    ]);
    expect(state(host)).toBe(before);
  });

  test('a VM the new build cannot take fails its move; the rule rolls the moved ones back and unloads the new module', () => {
    const { host, vmms } = hostWith(5, [3]);
    const r = runUpgrade(host, plan(vmms, LINUX_5_7));
    expect(r.outcome).toBe('rolled-back');
    expect(r.vms.map((v) => `${v.vmm}:${v.outcome}`)).toEqual(['vm1:moved-back', 'vm2:moved-back', 'vm3:failed', 'vm4:not-moved', 'vm5:not-moved']);
    expect(r.vms[2]?.failedPhase).toBe('check');
    expect(r.failures).toHaveLength(1);
    expect(r.failures[0]).toMatch(/^vm3: move failed at check: canMove refuses: KVM_SET_MSRS: vCPU 0: MSR 0x4b564d06 = 0xec/);
    expect(r.actions.map((a) => a.action)).toEqual(['load', 'smoke-test', 'batch', 'batch', 'batch', 'rollback', 'unload']);
    expect(host.lsmod().map((m) => m.name).sort()).toEqual(['kvm0', 'vac']);
    expect(vmms.every((v) => v.devPath === '/dev/kvm0')).toBe(true);
    host.scheduler.run(5);
    expect(vmms.every(countsOn)).toBe(true);
  });

  test("'halt' stops where the failures pass the tolerance and leaves both modules", () => {
    const { host, vmms } = hostWith(5, [2, 4]);
    const r = runUpgrade(host, plan(vmms, LINUX_5_7, { onFailure: { maxFailures: 1, action: 'halt' } }));
    expect(r.outcome).toBe('halted');
    expect(r.vms.map((v) => `${v.vmm}:${v.outcome}`)).toEqual(['vm1:moved', 'vm2:failed', 'vm3:moved', 'vm4:failed', 'vm5:not-moved']);
    expect(host.lsmod().map((m) => m.name).sort()).toEqual(['kvm0', 'kvm1', 'vac']);
    expect(vmms.map((v) => v.devPath)).toEqual(['/dev/kvm1', '/dev/kvm0', '/dev/kvm1', '/dev/kvm0', '/dev/kvm0']);
  });

  test('a blackout over budget is a failure', () => {
    const { host, vmms } = hostWith(3);
    const r = runUpgrade(host, plan(vmms, LINUX_6_18, { blackoutBudgetNs: (v) => (v.name === 'vm2' ? 1_000 : 10_000_000) }));
    expect(r.outcome).toBe('rolled-back');
    expect(r.failures[0]).toMatch(/^vm2: blackout \d+ ns over its budget of 1000 ns$/);
    expect(r.vms.map((v) => v.outcome)).toEqual(['moved-back', 'moved-back', 'not-moved']);
  });

  test('an unhealthy VM after its batch is a failure', () => {
    const { host, vmms } = hostWith(3);
    const r = runUpgrade(host, plan(vmms, LINUX_6_18, { ticksBetweenBatches: 2, healthy: (v) => v.name !== 'vm1' }));
    expect(r.outcome).toBe('rolled-back');
    expect(r.failures).toEqual(['vm1: unhealthy after its move']);
    expect(r.vms.map((v) => v.outcome)).toEqual(['moved-back', 'not-moved', 'not-moved']);
  });

  test('a module that fails to load: nothing else happens', () => {
    const { host, vmms } = hostWith(2);
    const before = state(host);
    host.faults.failModuleInit('kvm1', 1);
    const r = runUpgrade(host, plan(vmms));
    expect(r.outcome).toBe('load-failed');
    expect(r.actions.map((a) => a.action)).toEqual(['load-failed']);
    expect(r.failures[0]).toMatch(/^load kvm1: /);
    expect(state(host)).toBe(before);
  });

  test('VM creation failing on the new module stops the plan before any move, and unloads it', () => {
    const { host, vmms } = hostWith(2);
    host.faults.failNth('vm', 1);
    const r = runUpgrade(host, plan(vmms));
    expect(r.outcome).toBe('rolled-back');
    expect(r.failures[0]).toMatch(/^smoke test on \/dev\/kvm1: .*ENOMEM/);
    expect(r.vms.map((v) => v.outcome)).toEqual(['not-moved', 'not-moved']);
    expect(host.lsmod().map((m) => m.name).sort()).toEqual(['kvm0', 'vac']);
  });

  test('a malformed plan is a usage error and changes nothing', () => {
    const { host, vmms } = hostWith(2);
    const before = state(host);
    expect(() => runUpgrade(host, plan(vmms, LINUX_6_18, { batchSize: 0 }))).toThrow(/batchSize must be a positive integer/);
    expect(() => runUpgrade(host, { ...plan(vmms), from: 'kvm3' })).toThrow(/vm1 runs on \/dev\/kvm0, not on \/dev\/kvm3/);
    expect(state(host)).toBe(before);
  });
});
