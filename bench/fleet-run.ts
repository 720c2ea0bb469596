/**
 * `pnpm bench:fleet -- --hosts=N --workers=W`: the fleet run for real, not projected — N hosts of 16 Intel
 * CPUs with 24 VMs × 2 vCPUs each rolled kvm0 (6.12) → kvm1 (6.18) by `runRollout` on W worker threads (canary,
 * 10 %, 50 %, 100 %; every move through the real save/restore ioctls). Prints one line: wall time, the process's CPU
 * time (every thread), both per host, ioctls per move, the report's SHA-256 (the same for any W), and the peak RSS;
 * appends it as JSON to `bench/results/fleet-runs.jsonl`. No timing is asserted.
 */
import { createHash } from 'node:crypto';
import { appendFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { runRollout, type FleetReport } from '@vac/fleet';

const arg = (name: string, dflt: number): number => {
  const a = process.argv.find((x) => x.startsWith(`--${name}=`));
  return a === undefined ? dflt : Number(a.slice(name.length + 3));
};
const hosts = arg('hosts', 100);
const workers = arg('workers', 2);

const c0 = process.cpuUsage();
const t0 = performance.now();
const report: FleetReport = await runRollout(
  { seed: 1, hosts, amdShare: 0, sevShare: 0, cpus: [16], vmsPerHost: [24, 24], vcpus: [2], asyncPfIntShare: 0 },
  { fromBuild: 'linux-6.12', toBuild: 'linux-6.18', hostPlan: { batchSize: 4 } },
  { workers },
);
const wallMs = performance.now() - t0;
const c = process.cpuUsage(c0);
const cpuMs = (c.user + c.system) / 1000;
let moves = 0;
let ioctls = 0;
for (const h of report.hosts) {
  if (h.outcome !== 'upgraded' || h.moves !== 24) throw new Error(`host ${h.id}: ${h.outcome} with ${h.moves} moves (${h.failure ?? ''})`);
  moves += h.moves;
  ioctls += h.moveIoctls;
}
const sha = createHash('sha256').update(JSON.stringify(report)).digest('hex').slice(0, 16);
const rssMiB = process.resourceUsage().maxRSS / 1024;
const line = {
  date: new Date().toISOString(),
  hosts,
  workers,
  wallS: +(wallMs / 1000).toFixed(1),
  cpuS: +(cpuMs / 1000).toFixed(1),
  wallMsPerHost: +(wallMs / hosts).toFixed(1),
  cpuMsPerHost: +(cpuMs / hosts).toFixed(1),
  ioctlsPerMove: +(ioctls / moves).toFixed(1),
  report: sha,
  peakRssMiB: Math.round(rssMiB),
};
process.stdout.write(`${JSON.stringify(line)}\n`);
appendFileSync(fileURLToPath(new URL('results/fleet-runs.jsonl', import.meta.url)), `${JSON.stringify(line)}\n`);
