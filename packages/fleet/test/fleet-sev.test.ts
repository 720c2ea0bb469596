/**
 * SEV hosts in a fleet: their SEV guests cannot leave the old module as the RFC stands (EBADF across modules), so
 * they stay and the old module stays loaded on those hosts; on hosts whose VAC mediates (`vac.cross_module_moves=Y`)
 * they move with the others. The report counts both, the same bytes with 1, 2 and 4 workers.
 */
import { describe, expect, test } from 'vitest';
import { formatFleetReport, generateFleet, runHostJob, runRollout, summarizeRollout, type FleetSpec } from '../src/index.js';

/** Small AMD hosts, all with SEV, half with VAC mediating. */
const SEV_FLEET: FleetSpec = { seed: 2026, hosts: 6, amdShare: 1, sevShare: 1, sevVmShare: 0.5, vacMediatedShare: 0.5, vmsPerHost: [2, 4], vcpus: [1], cpus: [4], asyncPfIntShare: 0 };

describe('SEV guests in a fleet', () => {
  test('generateFleet draws SEV guests on SEV hosts only, and VAC mediation on SEV hosts only, from a stream of their own', () => {
    const hosts = generateFleet({ seed: 3, hosts: 60 });
    expect(hosts.some((h) => h.vms.some((v) => v.sev))).toBe(true);
    expect(hosts.every((h) => h.sev || (!h.vacMediates && h.vms.every((v) => !v.sev)))).toBe(true);
    expect(hosts.every((h) => !h.vacMediates)).toBe(true); // the RFC by default
    expect(generateFleet({ seed: 3, hosts: 60, vacMediatedShare: 1 }).filter((h) => h.vacMediates).length).toBe(hosts.filter((h) => h.sev).length);
    // The other draws do not change with the SEV ones.
    const strip = (hs: typeof hosts): unknown => hs.map((h) => ({ ...h, vacMediates: undefined, vms: h.vms.map((v) => ({ ...v, sev: undefined })) }));
    expect(strip(generateFleet({ seed: 3, hosts: 60, sevVmShare: 0 }))).toEqual(strip(hosts));
    expect(() => generateFleet({ seed: 1, hosts: 2, sevVmShare: -1 })).toThrow(/sevVmShare must be in \[0, 1\]/);
  });

  test('a host without VAC mediation: its SEV guests stay on kvm0, which stays loaded; with it, every VM moves and kvm0 goes', () => {
    const [h] = generateFleet({ ...SEV_FLEET, hosts: 1, sevVmShare: 1, vmsPerHost: [3, 3] });
    const job = { host: { ...h!, vacMediates: false }, seed: 1, fromBuild: 'linux-6.12', toBuild: 'linux-6.18', plan: {}, finalize: 'commit' as const };
    expect(runHostJob(job)).toMatchObject({ outcome: 'upgraded', sevVms: 3, sevStayed: 3, moves: 0, oldModuleKept: true });
    expect(runHostJob({ ...job, host: { ...h!, vacMediates: true } })).toMatchObject({ outcome: 'upgraded', sevVms: 3, sevStayed: 0, moves: 3, oldModuleKept: false });
    // A rollback moves back only what moved.
    expect(runHostJob({ ...job, finalize: 'rollback' })).toMatchObject({ outcome: 'rolled-back', moves: 0, sevStayed: 3 });
    expect(runHostJob({ ...job, host: { ...h!, vacMediates: true }, finalize: 'rollback' })).toMatchObject({ outcome: 'rolled-back', moves: 6 });
  });

  test('the report counts SEV guests that stayed and moved, and the hosts that keep the old module: the same bytes with 1, 2 and 4 workers', async () => {
    const policy = { toBuild: 'linux-6.18', waves: [50, 100] };
    const [one, two, four] = await Promise.all([1, 2, 4].map((workers) => runRollout(SEV_FLEET, policy, { workers })));
    const text = formatFleetReport(one!);
    expect(formatFleetReport(two!)).toBe(text);
    expect(formatFleetReport(four!)).toBe(text);
    expect(JSON.stringify(four)).toBe(JSON.stringify(one));
    const hosts = generateFleet(SEV_FLEET);
    const sevOn = (mediated: boolean): number => hosts.filter((x) => x.vacMediates === mediated).reduce((a, x) => a + x.vms.filter((v) => v.sev).length, 0);
    expect(sevOn(true)).toBeGreaterThan(0);
    expect(sevOn(false)).toBeGreaterThan(0);
    const s = summarizeRollout(one!);
    expect(one!.outcome).toBe('completed');
    expect(s.sev).toEqual({ stayed: sevOn(false), moved: sevOn(true), oldModuleKeptOnHosts: hosts.filter((x) => !x.vacMediates && x.vms.some((v) => v.sev)).length });
    expect(s.moves + s.sev.stayed).toBe(one!.fleet.vms);
    expect(text).toContain(`SEV guests: ${sevOn(false)} stayed on linux-6.12 (no VAC mediation), ${sevOn(true)} moved with VAC mediating; old module kept loaded on ${s.sev.oldModuleKeptOnHosts} upgraded hosts`);
  });
});
