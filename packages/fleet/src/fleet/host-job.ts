/**
 * One fleet host's part of a rollout, as a pure function of its description ({@link runHostJob}): build the host
 * (its vendor, SEV, CPUs, the old module, its VMs each its own VMM running a guest), run the host's upgrade plan
 * with the old module kept loaded, then commit (unload the old module) or roll back (move every VM back and unload
 * the new one). It depends on nothing but the job, so any worker thread gives the same outcome.
 *
 * @module
 */
import { createHost, type Host } from '@vac/core';
import { kvm, probeModule } from '@vac/kvm';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { GuestVmm } from '../guest-vmm.js';
import { countingGuest } from '../guests.js';
import { moveInPlace } from '../move.js';
import { runUpgrade } from '../plan.js';
import type { SyscallCosts } from '../meter.js';
import { fleetBuild } from './builds.js';
import { armHostFault, describeFault, type InjectedFault } from './faults.js';
import { seededRandom } from './random.js';
import type { FleetHostSpec } from './spec.js';

/** `MSR_KVM_ASYNC_PF_INT`. */
const MSR_KVM_ASYNC_PF_INT = 0x4b564d06;
/** The vector a Linux guest puts in it (`HYPERVISOR_CALLBACK_VECTOR`, 0xf3). */
const APF_VECTOR = 0xf3n;

/** How each host runs its upgrade. */
export interface HostPlanSettings {
  /** VMs per batch. Default 4. */
  readonly batchSize?: number;
  /** Ticks between batches. Default 0. */
  readonly ticksBetweenBatches?: number;
  /** Ticks the VMs run before the upgrade. Default 2. */
  readonly warmupTicks?: number;
  /** Per-VM blackout budget, ns. */
  readonly blackoutBudgetNs?: number;
  /** Syscall costs. */
  readonly costs?: SyscallCosts;
}

/** One host's job. */
export interface HostJob {
  /** The host. */
  readonly host: FleetHostSpec;
  /** The fleet's seed (the guests' paces are drawn from it). */
  readonly seed: number;
  /** The build the host runs (as kvm0). */
  readonly fromBuild: string;
  /** The build it upgrades to (as kvm1). */
  readonly toBuild: string;
  /** kvm1's parameters. */
  readonly toParams?: Readonly<Record<string, string | number | boolean>>;
  /** The host's plan. */
  readonly plan: HostPlanSettings;
  /** After a successful upgrade: unload the old module, or move every VM back and unload the new one. */
  readonly finalize: 'commit' | 'rollback';
  /** A failure injected into the upgrade (armed in the host's fault injector before the plan runs). */
  readonly fault?: InjectedFault;
}

/** What happened on one host. */
export interface HostOutcome {
  /** The host's id. */
  readonly id: number;
  /** `upgraded`; `failed` (its own plan failed and rolled back); `rolled-back` (upgraded, then rolled back with its wave). */
  readonly outcome: 'upgraded' | 'failed' | 'rolled-back';
  /** VMs on the host. */
  readonly vms: number;
  /** Moves made (forward and back) that went through. */
  readonly moves: number;
  /** Moves that failed and rolled back. */
  readonly failedMoves: number;
  /** Each forward move's blackout, ns, in move order. */
  readonly blackoutsNs: readonly number[];
  /** ioctls of the moves that went through. */
  readonly moveIoctls: number;
  /** Simulated time of the upgrade, ns. */
  readonly upgradeNs: number;
  /** Simulated time of the rollback, ns (0 without one). */
  readonly rollbackNs: number;
  /** The first failure, in words. */
  readonly failure?: string;
  /** SEV guests on the host. */
  readonly sevVms: number;
  /** SEV guests that stayed on the old module (VAC does not mediate): not failures, but the old module stays loaded. */
  readonly sevStayed: number;
  /** Whether the old module is still loaded at the end because SEV guests stay on it. */
  readonly oldModuleKept: boolean;
  /** The injected failure that fired during the upgrade (`describeFault` of it: `vcpu-create #3`), if one did. */
  readonly injected?: string;
  /** Bytes the host's processes had mapped at the peak (guest memory and `kvm_run` areas, both modules loaded). */
  readonly mappedBytes: number;
}

function mappedBytes(host: Host): number {
  let n = 0;
  for (const p of host.processes()) for (const m of p.mappings()) n += m.length;
  return n;
}

/** Run one host's job (see the module comment). */
export function runHostJob(job: HostJob): HostOutcome {
  const spec = job.host;
  const host = createHost({ cpus: spec.cpus, hardware: spec.vendor === 'intel' ? intel() : amd({ sev: spec.sev }) });
  if (spec.vacMediates) host.modprobe('vac', { cross_module_moves: 'Y' }); // a boot-time choice: VAC is loaded before any kvmX
  host.modprobe(kvm({ postfix: '0', build: fleetBuild(job.fromBuild) }));
  const r = seededRandom(job.seed, spec.id, 1);
  const vmms = spec.vms.map((vm, i) =>
    GuestVmm.create(host, {
      name: `vm${i + 1}`,
      devPath: '/dev/kvm0',
      code: countingGuest({ busy: 40 + Math.floor(r() * 60) }),
      vcpus: vm.vcpus,
      cpu: i % spec.cpus,
      irqchip: 'kernel',
      ...(vm.sev ? { sev: true } : {}),
      ...(vm.asyncPfInt ? { msrs: [{ index: MSR_KVM_ASYNC_PF_INT, data: APF_VECTOR }] } : {}),
    }),
  );
  for (const v of vmms) v.start();
  host.scheduler.run(job.plan.warmupTicks ?? 2);
  const t0 = host.clock.nowNs;
  if (job.fault !== undefined) armHostFault(host, job.fault, 'kvm1');
  const report = runUpgrade(host, {
    from: 'kvm0',
    load: { image: kvm({ postfix: '1', build: fleetBuild(job.toBuild) }), ...(job.toParams === undefined ? {} : { params: job.toParams }) },
    vmms,
    batchSize: job.plan.batchSize ?? 4,
    ticksBetweenBatches: job.plan.ticksBetweenBatches ?? 0,
    ...(job.plan.blackoutBudgetNs === undefined ? {} : { blackoutBudgetNs: job.plan.blackoutBudgetNs }),
    ...(job.plan.costs === undefined ? {} : { costs: job.plan.costs }),
    unloadOld: false,
    onFailure: { action: 'rollback' },
  });
  const upgradeNs = host.clock.nowNs - t0;
  const injected = job.fault !== undefined && host.faults.fired.length > 0 ? describeFault(job.fault) : undefined;
  host.faults.clear();
  const peak = mappedBytes(host);
  const forward = report.vms.filter((v) => v.outcome === 'moved' || v.outcome === 'moved-back');
  const base = {
    id: spec.id,
    vms: vmms.length,
    failedMoves: report.vms.filter((v) => v.outcome === 'failed').length,
    blackoutsNs: forward.map((v) => v.blackoutNs),
    upgradeNs,
    mappedBytes: peak,
    sevVms: vmms.filter((v) => v.sev).length,
    sevStayed: report.vms.filter((v) => v.outcome === 'stays').length,
    ...(injected === undefined ? {} : { injected }),
  };
  const movedBack = report.vms.filter((v) => v.outcome === 'moved-back').length;
  const forwardIoctls = forward.reduce((a, v) => a + v.ioctls, 0);
  if (report.outcome !== 'completed') {
    return { ...base, outcome: 'failed', moves: forward.length + movedBack, moveIoctls: forwardIoctls, rollbackNs: 0, failure: report.failures[0] ?? report.outcome, oldModuleKept: false };
  }
  if (job.finalize === 'commit') {
    // SEV guests that could not leave kvm0 hold it: it stays loaded next to kvm1.
    if (base.sevStayed === 0) host.rmmod('kvm0');
    return { ...base, outcome: 'upgraded', moves: forward.length, moveIoctls: forwardIoctls, rollbackNs: 0, oldModuleKept: base.sevStayed > 0 };
  }
  // The wave failed elsewhere: every VM goes back to kvm0 (still loaded), then kvm1 is unloaded.
  const t1 = host.clock.nowNs;
  const agent = host.spawn({ uid: 0, name: 'rollback-agent' });
  const facts = { source: probeModule(agent, '/dev/kvm1'), target: probeModule(agent, '/dev/kvm0') };
  agent.kill();
  let back = 0;
  let backIoctls = 0;
  let failure: string | undefined;
  for (const v of [...vmms].reverse()) {
    if (v.devPath === '/dev/kvm0') continue; // an SEV guest that stayed
    const m = moveInPlace(v, '/dev/kvm0', { facts, ...(job.plan.costs === undefined ? {} : { costs: job.plan.costs }) });
    if (m.outcome === 'moved') {
      back++;
      backIoctls += m.syscalls.ioctls;
    } else failure ??= `${v.name}: could not move back: ${String(m.error)}`;
  }
  if (failure === undefined) host.rmmod('kvm1');
  return { ...base, outcome: 'rolled-back', moves: forward.length + back, moveIoctls: forwardIoctls + backIoctls, rollbackNs: host.clock.nowNs - t1, oldModuleKept: false, ...(failure === undefined ? {} : { failure }) };
}
