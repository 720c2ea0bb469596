/**
 * Strategies side by side: four ways to update what runs under a host's VMs, each modelled on a simulated host
 * with the same VMs ({@link compareStrategies}), each duration either measured on the model or a stated
 * assumption ({@link StrategyAssumptions}, every default citing its source or saying it has none):
 *
 * - `module-swap` (multi-KVM): load the new KVM module, move the VMs one at a time in place, unload the old
 *   ({@link runUpgrade}) — **measured**: per-VM blackout and total, from the calls made.
 * - `cpr-restart` (QEMU's CPR: a new VMM process adopts the guest memory on the same host, the same KVM): each VM's
 *   state saved and restored into a new VM on the same module (**measured** on the model), plus the VMM's restart
 *   (`vmmRestartNs`, assumed). It updates the VMM only, not KVM.
 * - `kexec-live-update` (Linux 6.19's Live Update Orchestrator over Kexec HandOver): every VM paused for the
 *   kexec into the new kernel (`kexecHandoverNs`, assumed), then restored (the restores **measured**, one after the
 *   other). It updates the whole kernel, VAC included.
 * - `drain` (live migration to other hosts, then a plain reboot): each VM's memory copied at `migrationBytesPerSec`,
 *   its blackout the stop-and-copy `migrationDowntimeNs` (both QEMU's defaults), one VM at a time; then the reboot
 *   (`rebootNs`, assumed). It updates everything, and needs spare hosts.
 *
 * @module
 */
import { UsageError, createHost, type Host } from '@vac/core';
import { LINUX_6_18, kvm, restoreVm, saveVm } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { GuestVmm } from './guest-vmm.js';
import { countingGuest } from './guests.js';
import { MeteredProcess, DEFAULT_SYSCALL_COSTS, type SyscallCosts } from './meter.js';
import { runUpgrade } from './plan.js';

/** The strategies, in the order {@link compareStrategies} reports them. */
export const STRATEGIES = ['module-swap', 'cpr-restart', 'kexec-live-update', 'drain'] as const;

/** One strategy. */
export type Strategy = (typeof STRATEGIES)[number];

/** The durations the model cannot measure, in ns (bandwidth in bytes/s). */
export interface StrategyAssumptions {
  /**
   * A VMM process's restart for CPR: exec of the new binary and its start-up before it adopts the memory. Default
   * 100 ms — an assumption: no published figure is cited here.
   */
  readonly vmmRestartNs?: number;
  /**
   * The kexec into the new kernel with the VMs' memory preserved (Live Update Orchestrator, Kexec HandOver): from the
   * last VM paused to the new kernel ready to restore them. Default 1 s — an assumption: the LUO and KHO documentation
   * (Documentation/core-api/liveupdate.rst, kho/) gives no figure.
   */
  readonly kexecHandoverNs?: number;
  /** Live migration's stop-and-copy downtime per VM. Default 300 ms: QEMU's `downtime-limit` default (migration/options.c, DEFAULT_MIGRATE_SET_DOWNTIME). */
  readonly migrationDowntimeNs?: number;
  /** Live migration's bandwidth, bytes/s. Default 128 MiB/s: QEMU's `max-bandwidth` default (migration/options.c, MAX_THROTTLE). */
  readonly migrationBytesPerSec?: number;
  /** Guest memory per VM for the migration's copy, bytes. Default 4 GiB — an assumption about the VMs. */
  readonly vmMemoryBytes?: number;
  /** A plain reboot of the drained host into the new kernel. Default 60 s — an assumption (firmware and boot). */
  readonly rebootNs?: number;
}

/** The host the strategies are compared on. */
export interface StrategyHost {
  /** `intel` or `amd`. Default `intel`. */
  readonly vendor?: 'intel' | 'amd';
  /** CPUs. Default 16. */
  readonly cpus?: number;
  /** VMs. Default 24. */
  readonly vms?: number;
  /** vCPUs per VM. Default 2. */
  readonly vcpus?: number;
  /** Syscall costs of the measured parts. Default {@link DEFAULT_SYSCALL_COSTS}. */
  readonly costs?: SyscallCosts;
}

/** One strategy's figures. */
export interface StrategyResult {
  /** The strategy. */
  readonly strategy: Strategy;
  /** What it updates. */
  readonly updates: string;
  /** Each VM's blackout, ns. */
  readonly blackoutsNs: readonly number[];
  /** The longest. */
  readonly maxBlackoutNs: number;
  /** From the first action to the last VM running on the update, ns. */
  readonly totalNs: number;
  /** Which figures were measured on the model and which assumed. */
  readonly basis: string;
}

const DEFAULTS: Required<StrategyAssumptions> = {
  vmmRestartNs: 100_000_000,
  kexecHandoverNs: 1_000_000_000,
  migrationDowntimeNs: 300_000_000,
  migrationBytesPerSec: 128 * 2 ** 20,
  vmMemoryBytes: 4 * 2 ** 30,
  rebootNs: 60_000_000_000,
};

function hostWith(spec: StrategyHost): { host: Host; vmms: GuestVmm[] } {
  const cpus = spec.cpus ?? 16;
  const host = createHost({ cpus, hardware: spec.vendor === 'amd' ? amd() : intel() });
  host.modprobe(kvm({ postfix: '0' }));
  const vmms = Array.from({ length: spec.vms ?? 24 }, (_, i) => GuestVmm.create(host, { name: `vm${i + 1}`, devPath: '/dev/kvm0', code: countingGuest({ busy: 50 + i }), vcpus: spec.vcpus ?? 2, cpu: i % cpus, irqchip: 'kernel' }));
  for (const v of vmms) v.start();
  host.scheduler.run(2);
  return { host, vmms };
}

/** Each VM's state saved and restored into a new VM on the same module, as a VMM restart does: the simulated ns each took. */
function restoresOnSameModule(spec: StrategyHost): number[] {
  const { host, vmms } = hostWith(spec);
  return vmms.map((v) => {
    const t0 = host.clock.nowNs;
    v.pause();
    const m = new MeteredProcess(host, v.proc, spec.costs ?? DEFAULT_SYSCALL_COSTS);
    const saved = saveVm(m.proc, v.current.handle);
    restoreVm(m.proc, '/dev/kvm0', saved, { slots: v.slots });
    return host.clock.nowNs - t0;
  });
}

/**
 * The four strategies on one host (see the module comment), with the same VMs.
 *
 * @throws UsageError `ERR_OUT_OF_RANGE` for an assumption that is not a non-negative safe integer (a bandwidth: positive)
 */
export function compareStrategies(spec: StrategyHost = {}, assumptions: StrategyAssumptions = {}): StrategyResult[] {
  const a = { ...DEFAULTS, ...assumptions };
  for (const [k, v] of Object.entries(a)) {
    if (!Number.isSafeInteger(v) || v < (k === 'migrationBytesPerSec' ? 1 : 0)) throw new UsageError('ERR_OUT_OF_RANGE', `compareStrategies: ${k} must be a ${k === 'migrationBytesPerSec' ? 'positive' : 'non-negative'} safe integer, got ${String(v)}`);
  }
  const max = (xs: readonly number[]): number => Math.max(0, ...xs);
  const sum = (xs: readonly number[]): number => xs.reduce((x, y) => x + y, 0);
  // module-swap: measured.
  const swap = hostWith(spec);
  const report = runUpgrade(swap.host, { from: 'kvm0', load: { image: kvm({ postfix: '1', build: LINUX_6_18 }) }, vmms: swap.vmms, ...(spec.costs === undefined ? {} : { costs: spec.costs }) });
  if (report.outcome !== 'completed') throw new UsageError('ERR_INVALID_STATE', `compareStrategies: the module swap did not complete: ${report.failures.join('; ')}`);
  const swapBlackouts = report.vms.map((v) => v.blackoutNs);
  // cpr-restart and kexec-live-update: the restores measured, the rest assumed.
  const restores = restoresOnSameModule(spec);
  const cpr = restores.map((ns) => ns + a.vmmRestartNs);
  let done = a.kexecHandoverNs;
  const kexec = restores.map((ns) => (done += ns));
  // drain: all assumed.
  const copyNs = Math.round((a.vmMemoryBytes / a.migrationBytesPerSec) * 1e9);
  const n = restores.length;
  return [
    { strategy: 'module-swap', updates: 'the KVM module (kvmX); not VAC, the rest of the kernel or the VMM', blackoutsNs: swapBlackouts, maxBlackoutNs: max(swapBlackouts), totalNs: report.durationNs, basis: 'measured on the model (runUpgrade: pause, save, check, restore, resume, release per VM)' },
    { strategy: 'cpr-restart', updates: 'the VMM only (the same kernel and KVM)', blackoutsNs: cpr, maxBlackoutNs: max(cpr), totalNs: sum(cpr), basis: `save and restore on the same module measured on the model; VMM restart assumed (${a.vmmRestartNs} ns)` },
    { strategy: 'kexec-live-update', updates: 'the whole kernel, VAC and KVM included', blackoutsNs: kexec, maxBlackoutNs: max(kexec), totalNs: done, basis: `kexec handover assumed (${a.kexecHandoverNs} ns, every VM paused); the restores measured on the model, one after the other` },
    { strategy: 'drain', updates: 'everything (the host reboots empty); needs spare capacity elsewhere', blackoutsNs: new Array<number>(n).fill(a.migrationDowntimeNs), maxBlackoutNs: n === 0 ? 0 : a.migrationDowntimeNs, totalNs: n * copyNs + a.rebootNs, basis: `assumed: QEMU's defaults (downtime ${a.migrationDowntimeNs} ns, ${a.migrationBytesPerSec} bytes/s) for ${a.vmMemoryBytes}-byte VMs one at a time, then a ${a.rebootNs}-ns reboot` },
  ];
}

/** The comparison as text: one line per strategy. */
export function formatStrategies(results: readonly StrategyResult[]): string {
  const ms = (ns: number): string => `${(ns / 1e6).toFixed(1)} ms`;
  return `${results.map((r) => `${r.strategy.padEnd(17)}  max blackout ${ms(r.maxBlackoutNs).padStart(10)}  total ${ms(r.totalNs).padStart(12)}  updates ${r.updates}\n${' '.repeat(19)}(${r.basis})`).join('\n')}\n`;
}
