/**
 * A fleet rollout with a canary. 24 simulated hosts — Intel and AMD (some with SEV), 4 to 16 CPUs, 4 to 8 VMs of 1
 * or 2 vCPUs each, every VM its own VMM process — all drawn from a seed. Each host upgrades by loading the new KVM
 * module next to the old one and moving its VMs across in place (@vac/fleet `runUpgrade`); the hosts run on
 * worker threads.
 *
 * 1. The bad build (`linux-6.18-apf-reverted`: 6.18 with the interrupt-based async page fault series reverted)
 *    goes first to one canary host. Some of its guests use MSR_KVM_ASYNC_PF_INT, which the build cannot hold:
 *    `canMove` refuses their moves, the host rolls itself back, and the policy stops the rollout at the canary.
 *    The failure is the model's own: nothing is drawn at random but the fleet.
 * 2. The good build (`linux-6.18`) goes to the canary, then 25%, 50% and 100% of the fleet. On an SEV host whose
 *    VAC does not mediate (the RFC), its SEV guests cannot move (KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM across modules is
 *    EBADF): they stay on the old module, which stays loaded; where VAC mediates (`vac.cross_module_moves=Y`) they
 *    move with the others. The report counts both.
 *
 * Each rollout runs with 1 and with 4 worker threads, and the two reports must be the same bytes.
 * Usage: main.ts [--seed N]. Exits non-zero if anything it shows does not hold.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Checks } from '@vac/example-support';
import { LINUX_6_18_APF_REVERTED, formatFleetReport, renderRolloutSvg, runRollout, summarizeRollout, type FleetSpec, type RolloutPolicy } from '@vac/fleet';

const seedArg = process.argv.indexOf('--seed');
const seed = seedArg > 0 ? Number(process.argv[seedArg + 1]) : 2026;
// Half the SEV hosts' VMs are SEV guests; half the SEV hosts run VAC with cross_module_moves=Y (beyond the RFC).
const fleet: FleetSpec = { seed, hosts: 24, cpus: [4, 8, 16], vmsPerHost: [4, 8], vcpus: [1, 2], asyncPfIntShare: 0.25, sevVmShare: 0.5, vacMediatedShare: 0.5 };
const checks = new Checks();

async function rollout(title: string, policy: RolloutPolicy): Promise<{ text: string; svg: string; report: Awaited<ReturnType<typeof runRollout>> }> {
  const one = await runRollout(fleet, policy, { workers: 1 });
  const four = await runRollout(fleet, policy, { workers: 4 });
  const text = formatFleetReport(one);
  if (formatFleetReport(four) !== text) checks.fail(`${title}: the report with 4 workers differs from the one with 1`);
  console.log(`== ${title} ==\n`);
  console.log(text);
  return { text, svg: renderRolloutSvg(one, { title }), report: one };
}

const policy = { canaryHosts: 1, waves: [25, 50, 100], maxFailedHostsPerWave: 0, onWaveFailure: 'rollback-wave', hostPlan: { batchSize: 4, blackoutBudgetNs: 5_000_000 } } as const;
const bad = await rollout(`Canary: ${LINUX_6_18_APF_REVERTED.name}`, { ...policy, toBuild: LINUX_6_18_APF_REVERTED.name });
const good = await rollout('Rollout: linux-6.18', { ...policy, toBuild: 'linux-6.18' });

const b = summarizeRollout(bad.report);
if (bad.report.outcome !== 'rolled-back' || bad.report.waves.length !== 1 || b.hosts.failed !== 1 || b.hosts.notReached !== fleet.hosts - 1) checks.fail(`the canary did not stop the bad build (${bad.report.outcome}, ${JSON.stringify(b.hosts)})`);
if (!bad.text.includes("MSR 0x4b564d06 = 0xf3 is not in the target's KVM_GET_MSR_INDEX_LIST")) checks.fail('the canary failure is not the async-PF MSR the bad build lacks');
const g = summarizeRollout(good.report);
if (good.report.outcome !== 'completed' || g.hosts.upgraded !== fleet.hosts) checks.fail(`the good build did not reach every host (${good.report.outcome}, ${JSON.stringify(g.hosts)})`);
// SEV guests: without VAC mediating they stay on the old module (which then stays loaded); with it they move.
const sevHosts = good.report.hosts.filter((h) => h.sevVms > 0);
if (g.sev.stayed === 0 || g.sev.moved === 0) checks.fail(`the good rollout should show SEV guests both staying and moving (${JSON.stringify(g.sev)})`);
if (g.moves + g.sev.stayed !== good.report.fleet.vms) checks.fail(`every VM should have moved or (an SEV guest without mediation) stayed: ${g.moves} + ${g.sev.stayed} != ${good.report.fleet.vms}`);
if (g.sev.oldModuleKeptOnHosts !== sevHosts.filter((h) => h.sevStayed > 0).length) checks.fail('the hosts that keep the old module are not those whose SEV guests stayed');

const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, 'out');
mkdirSync(outDir, { recursive: true });
writeFileSync(join(outDir, 'fleet-canary.svg'), bad.svg);
writeFileSync(join(outDir, 'fleet-rollout.svg'), good.svg);
const picturesDir = process.env['VAC_PICTURES_DIR'];
if (picturesDir !== undefined) {
  mkdirSync(picturesDir, { recursive: true });
  writeFileSync(join(picturesDir, 'fleet-canary.svg'), bad.svg);
  writeFileSync(join(picturesDir, 'fleet-rollout.svg'), good.svg);
}
const root = resolve(here, '../..');
console.log(`Pictures: ${relative(root, join(outDir, 'fleet-canary.svg'))}, ${relative(root, join(outDir, 'fleet-rollout.svg'))}`);

checks.conclude('All checks hold: the canary caught the bad build and the rollout stopped there; the good build reached every host, SEV guests moving only where VAC mediates (elsewhere they and the old module stay); the reports are the same bytes with 1 and 4 worker threads.');
