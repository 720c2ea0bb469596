/**
 * Rolling upgrade, the reason the RFC exists: "deploy fixes, mitigations, and/or new features without
 * having to drain all VMs from the host".
 *
 * A 16-CPU Intel host runs 24 VMs on kvm0, each its own VMM process with its own guest program (it counts in its
 * own memory and prints the count on COM1) on its own vCPU thread. An upgrade plan (@vac/fleet `runUpgrade`)
 * loads a fixed kvm1 next to kvm0 and moves every VM to it, one at a time, in place: the VMM pauses its vCPU
 * (immediate_exit + a signal), saves the whole VM through the ABI, checks that kvm1 can take it (`canMove`),
 * recreates it on /dev/kvm1 over the *same* guest memory, resumes, and closes the old VM. The guest never
 * notices: its counter goes on from where it stopped. Meanwhile `rmmod kvm0` is refused; once the last VM has
 * left, the plan unloads it.
 *
 * The whole run is recorded and written as a Chrome trace (open it in https://ui.perfetto.dev) and as an SVG
 * timeline, under out/ next to this file.
 *
 * Exits non-zero if anything it shows does not hold.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { checkInvariants, createHost, isKernelError, recordEvents, renderTimelineSvg, toChromeTrace, vacOf, type TimelineAnnotation } from '@vac/core';
import { GuestVmm, countingGuest, describeUpgrade, runUpgrade, upgradeAnnotations, type ExitHandler, type UpgradePlan } from '@vac/fleet';
import { KVM_EXIT_IO, kvm } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { Checks, table } from '@vac/example-support';

const checks = new Checks();
const expect = checks.expect;

const CPUS = 16;
const NR_VMS = 24;
const host = createHost({ cpus: CPUS, hardware: intel() });
const recorder = recordEvents(host, { exclude: ['fd:open', 'fd:close'] });
host.modprobe(kvm({ postfix: '0', version: '6.12' }));

// ---- 24 VMs on kvm0, each printing a counter on COM1 at its own pace ----------------------------------

/** What each VM printed: the count, the tick, and the module it ran on. */
const printed = new Map<string, Array<{ readonly value: number; readonly tick: number; readonly dev: string }>>();
const onExit: ExitHandler = (vmm, _vcpu, run) => {
  if (run.exit_reason !== KVM_EXIT_IO) {
    vmm.problems.push(`unexpected exit ${run.exit_reason}`);
    return 'stop';
  }
  const o = run.io.data_offset;
  printed.get(vmm.name)?.push({ value: (run.bytes[o] ?? 0) | ((run.bytes[o + 1] ?? 0) << 8), tick: host.events.tick, dev: vmm.devPath.slice(5) });
  return 'continue';
};
const vmms: GuestVmm[] = [];
for (let n = 1; n <= NR_VMS; n++) {
  const name = `vmm${String(n).padStart(2, '0')}`;
  printed.set(name, []);
  vmms.push(GuestVmm.create(host, { name, devPath: '/dev/kvm0', code: countingGuest({ busy: 900 + 61 * n }), cpu: (n - 1) % CPUS, onExit }));
}
for (const v of vmms) v.start();
host.scheduler.run(12);

// ---- the plan: kvm1 with the L1TF fix, every VM moved one at a time ------------------------------------

let refusals = 0;
let firstRefusal: number | undefined;
const plan: UpgradePlan = {
  from: 'kvm0',
  load: { image: kvm({ postfix: '1', version: '6.12-l1tf-fix' }), params: { vmentry_l1d_flush: 'always' } },
  vmms,
  batchSize: 1,
  ticksBetweenBatches: 3,
  blackoutBudgetNs: 5_000_000,
  // After each move, kvm0 cannot go while any VM is left on it.
  afterBatch: (batch) => {
    if (batch === NR_VMS) return;
    try {
      host.rmmod('kvm0');
      checks.fail(`rmmod kvm0 succeeded after batch ${batch}`);
    } catch (e) {
      expect(isKernelError(e, 'EWOULDBLOCK'), `rmmod kvm0 after batch ${batch}: ${String(e)} (expected EWOULDBLOCK)`);
      firstRefusal ??= host.events.seq;
      refusals++;
    }
  },
};
console.log(`Rolling upgrade on a ${CPUS}-CPU Intel host: ${NR_VMS} VMs moved from kvm0 to kvm1 through the /dev/kvm ABI\n`);
console.log('The plan (dry run):');
for (const line of describeUpgrade(plan).filter((l, i, all) => i < 4 || i >= all.length - 3)) console.log(`  ${line.startsWith('batch 3') ? '…' : line}`);
const lsmodBefore: string[] = [];
host.events.once('module:load', () => lsmodBefore.push(...host.lsmod().map((m) => `${m.name}:${m.version ?? ''}:${m.refcount} ${m.usedBy.join(',')}`)));
const report = runUpgrade(host, plan);
host.scheduler.run(12);
for (const v of vmms) v.pause();

// ---- checks --------------------------------------------------------------------------------------

expect(report.outcome === 'completed', `the plan completed (it says ${report.outcome}: ${report.failures.join('; ')})`);
for (const v of vmms) {
  const values = (printed.get(v.name) ?? []).map((p) => p.value);
  expect(values.every((x, i) => x === i + 1), `${v.name}: the counter runs 1, 2, 3, … without a gap or a repeat (got …${values.slice(-5).join(',')})`);
  const on0 = (printed.get(v.name) ?? []).filter((p) => p.dev === 'kvm0');
  const on1 = (printed.get(v.name) ?? []).filter((p) => p.dev === 'kvm1');
  expect(on0.length > 0 && on1.length > 0, `${v.name} printed on both modules`);
  expect(v.problems.length === 0, `${v.name}: ${v.problems.join('; ')}`);
  expect(v.devPath === '/dev/kvm1' && v.slots[0]?.userspace_addr === v.memory.addr, `${v.name} runs on kvm1 over its original memory`);
}
expect(refusals === NR_VMS - 1, `rmmod kvm0 refused ${refusals} times (expected ${NR_VMS - 1}: after every move but the last)`);
expect(host.lsmod().every((m) => m.name !== 'kvm0'), 'kvm0 unloads once empty');
expect(vacOf(host)?.usageHolders().every(([h]) => h.startsWith('kvm1')) === true, 'every usage reference left is kvm1’s');
const bad = checkInvariants(host);
expect(bad.length === 0, `invariants at the end: ${bad.map((x) => x.message).join('; ')}`);

// ---- the account ---------------------------------------------------------------------------------

const lsmodRow = (s: string): Record<string, string> => {
  const [name, version, used] = s.split(':');
  return { Module: name ?? '', Version: version ?? '', 'Used by': used ?? '' };
};
console.log('\n$ lsmod   (after loading kvm1)');
table(lsmodBefore.map(lsmodRow));
const us = (ns: number): string => (ns / 1000).toFixed(0);
console.log('\nPer VM');
table(
  report.vms.map((r) => {
    const p = printed.get(r.vmm) ?? [];
    const last0 = p.filter((x) => x.dev === 'kvm0').at(-1);
    const first1 = p.find((x) => x.dev === 'kvm1');
    return { VM: r.vmm, CPU: (Number(r.vmm.slice(3)) - 1) % CPUS, batch: r.batch, 'blackout µs': Number(us(r.blackoutNs)), ioctls: r.ioctls, counter: `${last0?.value ?? 0} → ${first1?.value ?? '?'} … ${p.at(-1)?.value ?? 0}`, 'ticks kvm0 → kvm1': `${last0?.tick ?? '?'} → ${first1?.tick ?? '?'}` };
  }),
);
const blackouts = report.vms.map((r) => r.blackoutNs);
console.log('\nTotals');
table([
  { What: 'VMs moved kvm0 → kvm1', Value: `${report.vms.filter((r) => r.outcome === 'moved').length} / ${NR_VMS}` },
  { What: 'plan outcome', Value: report.outcome },
  { What: 'longest blackout (µs of simulated time)', Value: us(Math.max(...blackouts)) },
  { What: 'ioctls, all moves and probes', Value: String(report.ioctls) },
  { What: 'plan duration (ms of simulated time)', Value: (report.durationNs / 1e6).toFixed(1) },
  { What: '`rmmod kvm0` refused (EWOULDBLOCK)', Value: String(refusals) },
  { What: 'actions', Value: report.actions.map((a) => a.action).filter((a) => a !== 'batch').join(', ') },
]);
console.log('\n$ lsmod   (at the end)');
table(host.lsmod().map((m) => lsmodRow(`${m.name}:${m.version ?? ''}:${m.refcount} ${m.usedBy.join(',')}`.trim())));

// ---- the pictures: a Chrome trace and an SVG timeline of the whole run ---------------------------------

recorder.stop();
const batchSeq = (n: number): number => report.actions.filter((a) => a.action === 'batch')[n]?.seq ?? 0;
const annotations: TimelineAnnotation[] = [
  ...upgradeAnnotations(report).filter((a) => !a.label.startsWith('smoke-test')),
  { at: batchSeq(0), label: 'first move (vmm01)' },
  ...(firstRefusal === undefined ? [] : [{ at: firstRefusal, label: 'rmmod kvm0: EWOULDBLOCK' }]),
  { at: batchSeq(NR_VMS - 1), label: `last move (vmm${NR_VMS})` },
].sort((a, b) => a.at - b.at);
const here = dirname(fileURLToPath(import.meta.url));
const outDir = join(here, 'out');
mkdirSync(outDir, { recursive: true });
const events = recorder.events();
const traceFile = join(outDir, 'rolling-upgrade.trace.json');
writeFileSync(traceFile, JSON.stringify(toChromeTrace(events, { cpus: CPUS, title: 'rolling upgrade: 24 VMs from kvm0 to kvm1' })));
const svgFile = join(outDir, 'rolling-upgrade.svg');
const svg = renderTimelineSvg(events, { cpus: CPUS, title: `Rolling upgrade: ${NR_VMS} VMs move from kvm0 to kvm1 one at a time, then kvm0 unloads`, annotations, width: 1400, flushes: false });
writeFileSync(svgFile, svg);
// `VAC_PICTURES_DIR` puts a copy where the guides embed it (`npx --yes pnpm@10.34.9 pictures`).
const picturesDir = process.env['VAC_PICTURES_DIR'];
if (picturesDir !== undefined) {
  mkdirSync(picturesDir, { recursive: true });
  writeFileSync(join(picturesDir, 'rolling-upgrade.svg'), svg);
}
const root = resolve(here, '../..');
console.log(`\nTrace (${events.length} events; open in https://ui.perfetto.dev): ${relative(root, traceFile)}`);
console.log(`Timeline picture: ${relative(root, svgFile)}`);

checks.conclude(`All checks hold: every guest kept counting across its move, the longest blackout was ${us(Math.max(...blackouts))} µs of simulated time, kvm0 refused to unload until empty, invariants clean.`);
