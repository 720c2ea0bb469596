/**
 * Failures injected into a rollout at a rate: the new module's init, the smoke test's VM creation, or the n-th vCPU
 * creation of the moves fails in the host's own kernel (its fault injector); the plan rolls the host back and the
 * rollout policy reacts. Drawn from the seed and the host's id: the same bytes whatever the workers.
 */
import { describe, expect, test } from 'vitest';
import { INJECTED_FAULT_KINDS, drawHostFault, formatFleetReport, generateFleet, runHostJob, runRollout, summarizeRollout, type FleetSpec } from '../src/index.js';

const FLEET: FleetSpec = { seed: 31, hosts: 8, amdShare: 0.5, sevShare: 0, vmsPerHost: [2, 3], vcpus: [1, 2], cpus: [4], asyncPfIntShare: 0 };

describe('injected failures', () => {
  test('drawHostFault: none at rate 0, one on every host at rate 1, of the kinds asked for, the same for the same seed and host', () => {
    const hosts = generateFleet(FLEET);
    expect(hosts.map((h) => drawHostFault(31, h, { rate: 0 }))).toEqual(hosts.map(() => undefined));
    const all = hosts.map((h) => drawHostFault(31, h, { rate: 1 }));
    expect(all.every((f) => f !== undefined && INJECTED_FAULT_KINDS.includes(f.kind))).toBe(true);
    expect(hosts.map((h) => drawHostFault(31, h, { rate: 1 }))).toEqual(all);
    const vcpu = hosts.map((h) => drawHostFault(31, h, { rate: 1, kinds: ['vcpu-create'] })!);
    vcpu.forEach((f, i) => expect(f.nth >= 1 && f.nth <= hosts[i]!.vms.reduce((n, v) => n + v.vcpus, 0)).toBe(true));
    const half = hosts.filter((h) => drawHostFault(31, h, { rate: 0.5 }) !== undefined).length;
    expect(half > 0 && half < hosts.length).toBe(true);
  });

  test.each([
    ['module-init', /^load kvm1: /],
    ['vm-create', /^smoke test on \/dev\/kvm1: /],
    ['vcpu-create', /^vm\d+: move failed at restore: /],
  ] as const)('a %s failure fails the host, which rolls itself back', (kind, failure) => {
    const [host] = generateFleet({ ...FLEET, hosts: 1 });
    const o = runHostJob({ host: host!, seed: 31, fromBuild: 'linux-6.12', toBuild: 'linux-6.18', plan: {}, finalize: 'commit', fault: { kind, nth: 1 } });
    expect(o.outcome).toBe('failed');
    expect(o.failure).toMatch(failure);
    expect(o.injected).toBe(kind === 'vcpu-create' ? 'vcpu-create #1' : kind);
  });

  test('the rollout reacts (a wave over its tolerance rolls back); the report counts the failures that fired; the same bytes with 1 and 2 workers', async () => {
    const policy = { toBuild: 'linux-6.18', canaryHosts: 1, waves: [50, 100], maxFailedHostsPerWave: 0, injectFaults: { rate: 0.4 } };
    const [one, two] = await Promise.all([1, 2].map((workers) => runRollout(FLEET, policy, { workers })));
    expect(formatFleetReport(two!)).toBe(formatFleetReport(one!));
    const s = summarizeRollout(one!);
    const failed = one!.hosts.filter((h) => h.outcome === 'failed');
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.every((h) => h.injected !== undefined)).toBe(true); // nothing else fails with a good build
    expect(Object.values(s.injected).reduce((a, b) => a + b, 0)).toBe(failed.length);
    expect(one!.outcome).toBe('rolled-back');
    expect(formatFleetReport(one!)).toMatch(/^injected failures \(rate 0\.4\): .* on the hosts reached$/m);
    const tolerant = await runRollout(FLEET, { ...policy, maxFailedHostsPerWave: 8 });
    expect(tolerant.outcome).toBe('completed');
    await expect(runRollout(FLEET, { ...policy, injectFaults: { rate: 2 } })).rejects.toThrow(/rate must be in \[0, 1\]/);
    await expect(runRollout(FLEET, { ...policy, injectFaults: { rate: 0.5, kinds: ['oops' as never] } })).rejects.toThrow(/kinds must be/);
  });
});
