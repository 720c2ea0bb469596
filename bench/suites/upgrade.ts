/**
 * 6. The whole rolling-upgrade scenario (see `lib/upgrade.ts`) at 1×, 4× and 16× its size: from creating the
 * host to `rmmod kvm0`, timed as one call. Reported per VM moved, with the ratio to 1×: linear growth keeps
 * the ratio near 1.
 */
import { check, fmtFactor, fmtNs, measure, row, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';
import { UPGRADE_BASE, rollingUpgrade, verifyUpgrade, type UpgradeOutcome } from '../lib/upgrade.js';
import type { ScalePoint } from './scale.js';

const GROUP = '6. Rolling upgrade';

/** Run the group. */
export function runUpgrade(b: Budget): { rows: Row[]; targets: TargetCheck[]; points: ScalePoint[] } {
  const rows: Row[] = [];
  const points: ScalePoint[] = [];
  let base: { label: string; m: Measurement } | undefined;
  let last: Measurement | undefined;
  const whole = new Map<number, Measurement>();
  for (const scale of [1, 4, 16]) {
    let outcome: UpgradeOutcome | undefined;
    const m = measure(
      b,
      `upgrade x${scale}`,
      () => {
        outcome = rollingUpgrade(scale);
      },
      {
        time: b.quick ? 1 : scale === 16 ? 1500 : 400,
        iterations: b.quick ? 1 : scale === 16 ? 8 : 15,
        warmupTime: b.quick ? 0 : scale === 16 ? 200 : 100,
        warmupIterations: b.quick ? 0 : scale === 16 ? 2 : 10,
        afterEach: () => {
          verifyUpgrade(outcome as UpgradeOutcome, scale);
          outcome = undefined;
        },
      },
    );
    whole.set(scale, m);
    const vms = UPGRADE_BASE.vms * scale;
    const perVm: Measurement = { ...m, nsPerOp: m.nsPerOp / vms, meanNsPerOp: m.meanNsPerOp / vms };
    rows.push(
      row(GROUP, 'rolling upgrade kvm0 → kvm1', `${scale}×: ${UPGRADE_BASE.cpus * scale} CPUs, ${vms} VMs × ${UPGRADE_BASE.vcpusPerVm} vCPUs`, perVm, base, {
        unit: 'VM moved',
        note: `whole scenario: ${fmtNs(m.nsPerOp)}`,
      }),
    );
    points.push({ series: 'rolling upgrade (per VM moved)', size: vms, nsPerUnit: perVm.nsPerOp });
    base ??= { label: 'rolling upgrade at 1×, per VM', m: perVm };
    last = perVm;
  }
  // Linear growth = a constant cost per added VM. Per VM moved, the 1× run also carries the fixed cost of
  // the scenario (two module loads, a host), spread over only 24 VMs, so compare marginal costs too.
  const t = (scale: number): number => (whole.get(scale) as Measurement).nsPerOp;
  const vms = (scale: number): number => UPGRADE_BASE.vms * scale;
  const marginalLow = (t(4) - t(1)) / (vms(4) - vms(1));
  const marginalHigh = (t(16) - t(4)) / (vms(16) - vms(4));
  const ratio = (last as Measurement).nsPerOp / (base as { m: Measurement }).m.nsPerOp;
  const targets = [
    check('rolling upgrade: time per VM moved at 16× ≤ 1.5× that at 1×', `${fmtFactor(ratio)} (${fmtNs((last as Measurement).nsPerOp)} vs ${fmtNs((base as { m: Measurement }).m.nsPerOp)} per VM)`, ratio, 1.5),
    check('rolling upgrade grows linearly: marginal cost per VM, 4×→16× vs 1×→4×, ≤ 1.5×', `${fmtNs(marginalHigh)} vs ${fmtNs(marginalLow)} per added VM (${fmtFactor(marginalHigh / marginalLow)})`, marginalHigh / marginalLow, 1.5),
  ];
  return { rows, targets, points };
}
