import { describe, expect, test } from 'vitest';
import { LINUX_6_18_APF_REVERTED, formatFleetReport, generateFleet, percentile, renderRolloutSvg, runHostJob, runRollout, summarizeRollout, type FleetSpec } from '../src/index.js';

const FLEET: FleetSpec = { seed: 11, hosts: 6, vmsPerHost: [2, 4], vcpus: [1, 2], cpus: [4, 8] };

describe('generateFleet', () => {
  test('the same seed gives the same fleet; a host depends only on the seed and its index', () => {
    const a = generateFleet({ seed: 5, hosts: 40 });
    expect(generateFleet({ seed: 5, hosts: 40 })).toEqual(a);
    expect(generateFleet({ seed: 5, hosts: 10 })).toEqual(a.slice(0, 10));
    expect(generateFleet({ seed: 6, hosts: 40 })).not.toEqual(a);
    expect(a.every((h) => h.vms.length >= 8 && h.vms.length <= 24 && [16, 32, 64].includes(h.cpus) && (!h.sev || h.vendor === 'amd'))).toBe(true);
    expect(new Set(a.map((h) => h.vendor))).toEqual(new Set(['intel', 'amd']));
  });
  test('bad input is a usage error', () => {
    expect(() => generateFleet({ seed: 1, hosts: 0 })).toThrow(/hosts must be a positive integer/);
    expect(() => generateFleet({ seed: 1, hosts: 2, amdShare: 2 })).toThrow(/amdShare must be in \[0, 1\]/);
    expect(() => generateFleet({ seed: 1, hosts: 2, vmsPerHost: [5, 2] })).toThrow(/vmsPerHost/);
  });
});

test('percentile is nearest-rank', () => {
  const xs = Array.from({ length: 100 }, (_, i) => i + 1);
  expect([percentile(xs, 50), percentile(xs, 90), percentile(xs, 99), percentile(xs, 100), percentile([], 50), percentile([7], 1)]).toEqual([50, 90, 99, 100, 0, 7]);
});

describe('runHostJob', () => {
  const [host] = generateFleet({ ...FLEET, asyncPfIntShare: 1 });
  test('the bad build fails on a host whose guests use MSR_KVM_ASYNC_PF_INT: the model refuses the move, the host rolls itself back', () => {
    const o = runHostJob({ host: host!, seed: 11, fromBuild: 'linux-6.12', toBuild: LINUX_6_18_APF_REVERTED.name, plan: {}, finalize: 'commit' });
    expect(o.outcome).toBe('failed');
    expect(o.failure).toMatch(/^vm1: move failed at check: canMove refuses: KVM_SET_MSRS: vCPU 0: MSR 0x4b564d06 = 0xf3 is not in the target's KVM_GET_MSR_INDEX_LIST/);
    expect(o.failedMoves).toBe(1);
  });
  test('the same job gives the same outcome; a rollback job moves every VM back', () => {
    const job = { host: host!, seed: 11, fromBuild: 'linux-6.12', toBuild: 'linux-6.18', plan: { batchSize: 2 }, finalize: 'commit' as const };
    const a = runHostJob(job);
    expect(runHostJob(job)).toEqual(a);
    expect(a.outcome).toBe('upgraded');
    expect(a.moves).toBe(host!.vms.length);
    const b = runHostJob({ ...job, finalize: 'rollback' });
    expect(b.outcome).toBe('rolled-back');
    expect(b.moves).toBe(2 * host!.vms.length);
    expect(b.upgradeNs).toBe(a.upgradeNs);
    expect(b.rollbackNs).toBeGreaterThan(0);
  });
});

describe('runRollout', () => {
  test('a good build goes through the canary and every wave; the report is the same bytes with 1 and 2 workers', async () => {
    const one = await runRollout(FLEET, { toBuild: 'linux-6.18', waves: [50, 100] }, { workers: 1 });
    const two = await runRollout(FLEET, { toBuild: 'linux-6.18', waves: [50, 100] }, { workers: 2 });
    expect(formatFleetReport(two)).toBe(formatFleetReport(one));
    expect(JSON.stringify(two)).toBe(JSON.stringify(one));
    expect(renderRolloutSvg(two)).toBe(renderRolloutSvg(one));
    expect(one.outcome).toBe('completed');
    expect(one.waves.map((w) => `${w.label}:${w.hosts}:${w.verdict}`)).toEqual(['canary:1:passed', '50%:2:passed', '100%:3:passed']);
    const s = summarizeRollout(one);
    expect(s.hosts).toEqual({ upgraded: 6, failed: 0, rolledBack: 0, notReached: 0 });
    expect(s.sev.stayed).toBe(one.fleet.sevVms); // SEV guests stay on kvm0 without VAC mediating (the default)
    expect(s.moves + s.sev.stayed).toBe(one.fleet.vms);
    expect(s.blackoutNs.p50).toBeGreaterThan(0);
    expect(s.blackoutNs.p50 <= s.blackoutNs.p90 && s.blackoutNs.p90 <= s.blackoutNs.p99 && s.blackoutNs.p99 <= s.blackoutNs.max).toBe(true);
    // Waves follow each other: each starts when the one before ended.
    one.waves.slice(1).forEach((w, i) => expect(w.startNs).toBe(one.waves[i]!.endNs));
  });

  test('the canary catches the bad build: the rollout stops at the canary, nothing else is touched', async () => {
    const r = await runRollout({ ...FLEET, asyncPfIntShare: 0.5 }, { toBuild: LINUX_6_18_APF_REVERTED.name }, { workers: 0 });
    expect(r.outcome).toBe('rolled-back');
    expect(r.waves).toHaveLength(1);
    expect(r.waves[0]).toMatchObject({ label: 'canary', hosts: 1, failed: 1, verdict: 'rolled-back' });
    expect(summarizeRollout(r).hosts).toEqual({ upgraded: 0, failed: 1, rolledBack: 0, notReached: 5 });
    expect(formatFleetReport(r)).toContain('is not in the target\'s KVM_GET_MSR_INDEX_LIST');
  });

  test("a failed wave with 'rollback-wave' moves its upgraded hosts back; 'halt' leaves them", async () => {
    // Half the VMs use the MSR: with 3 hosts in the first wave after a canary of 0, some fail and some upgrade.
    const fleet = { ...FLEET, hosts: 8, asyncPfIntShare: 0.15 };
    const back = await runRollout(fleet, { toBuild: LINUX_6_18_APF_REVERTED.name, canaryHosts: 0, waves: [50, 100] });
    const w = back.waves[0]!;
    expect(w.verdict).toBe('rolled-back');
    expect(w.failed).toBeGreaterThan(0);
    expect(w.rolledBack).toBeGreaterThan(0);
    expect(w.upgraded).toBe(0);
    const halt = await runRollout(fleet, { toBuild: LINUX_6_18_APF_REVERTED.name, canaryHosts: 0, waves: [50, 100], onWaveFailure: 'halt' });
    expect(halt.waves[0]).toMatchObject({ verdict: 'halted', failed: w.failed, upgraded: w.rolledBack, rolledBack: 0 });
    expect(halt.outcome).toBe('halted');
  });

  test('a malformed policy is a usage error', async () => {
    await expect(runRollout(FLEET, { toBuild: 'linux-9.9' })).rejects.toThrow(/no build "linux-9.9"/);
    await expect(runRollout(FLEET, { toBuild: 'linux-6.18', waves: [50, 40, 100] })).rejects.toThrow(/increasing percentages ending at 100/);
    await expect(runRollout(FLEET, { toBuild: 'linux-6.18', canaryHosts: 7 })).rejects.toThrow(/canaryHosts must be an integer in \[0, 6\]/);
  });
});
