/**
 * Upgrade plans for one host: load the new KVM module next to the old one, move the old one's VMs to it in an order
 * and batch size the plan chooses ({@link moveInPlace} for each), hold each VM to a blackout budget, stop and roll
 * back by a failure rule, and unload the old module at the end — as an upgrade agent on a host would, with nothing
 * but the host's public API and each VMM's `/dev/kvm` calls.
 *
 * {@link describeUpgrade} is the dry run (the plan as text: nothing is loaded or moved); {@link runUpgrade} runs it
 * and returns an {@link UpgradeReport}. Every action is a `fleet:action` event, every move's phases
 * `fleet:move-phase` events, so a recording of the run shows them on the kernel's timeline.
 *
 * @module
 */
import { O_RDWR, UsageError, type AnyModuleImage, type Host, type ParamInputs, type TimelineAnnotation } from '@vac/core';
import { KVM_CREATE_VM, probeModule, type ModuleFacts } from '@vac/kvm';
import type { GuestVmm } from './guest-vmm.js';
import { DEFAULT_SYSCALL_COSTS, MeteredProcess, type SyscallCosts } from './meter.js';
import { moveInPlace, type MovePhase, type MoveResult } from './move.js';
import { SEV_STAYS, sevMayLeave } from './move-run.js';

/** The order VMs are moved in: a named order, or a function that returns them ordered. */
export type MoveOrder = 'as-given' | 'fewest-vcpus-first' | 'most-vcpus-first' | ((vmms: readonly GuestVmm[]) => readonly GuestVmm[]);

/** What a plan does when its failures pass `maxFailures`. */
export interface FailureRule {
  /** Failures tolerated before the rule acts (a failed move, a blackout over budget, an unhealthy VM). Default 0. */
  readonly maxFailures?: number;
  /**
   * `'halt'`: stop moving; what moved stays on the new module and the old one stays loaded.
   * `'rollback'` (default): move every moved VM back to the old module, then unload the new one.
   */
  readonly action?: 'halt' | 'rollback';
}

/** An upgrade plan for one host. */
export interface UpgradePlan {
  /** The module the VMs leave, e.g. `'kvm0'`. */
  readonly from: string;
  /** The new module's image (e.g. `kvm({ postfix: '1', build: LINUX_6_18 })`) and its parameters. */
  readonly load: { readonly image: AnyModuleImage; readonly params?: ParamInputs };
  /** The VMs on `from` to move. */
  readonly vmms: readonly GuestVmm[];
  /** The order. Default `'as-given'`. */
  readonly order?: MoveOrder;
  /** VMs moved back to back in one batch. Default 1. */
  readonly batchSize?: number;
  /** Scheduler ticks run after each batch before the next (the moved VMs run; the health check looks at them). Default 0. */
  readonly ticksBetweenBatches?: number;
  /** Longest blackout a VM may have, in ns of simulated time (a number for all, or per VM); a move over it is a failure. */
  readonly blackoutBudgetNs?: number | ((vmm: GuestVmm) => number);
  /** Before moving anything, create and close a VM on the new module (the module's VM creation works). Default true. */
  readonly smokeTest?: boolean;
  /** After each batch (and its ticks): is this moved VM well? Default: it reported no problem ({@link GuestVmm.problems}). */
  readonly healthy?: (vmm: GuestVmm) => boolean;
  /** The failure rule. */
  readonly onFailure?: FailureRule;
  /** Unload the old module once every VM has left. Default true. */
  readonly unloadOld?: boolean;
  /** Syscall costs of the moves. Default {@link DEFAULT_SYSCALL_COSTS}. */
  readonly costs?: SyscallCosts;
  /** Refuse moves `canMove` refuses (default true). */
  readonly check?: boolean;
  /** Called after each batch (and its ticks), with the report so far. */
  readonly afterBatch?: (batch: number, report: UpgradeReport) => void;
}

/** One VM in an {@link UpgradeReport}. */
export interface VmOutcome {
  /** The VMM's name. */
  readonly vmm: string;
  /** Its vCPUs. */
  readonly vcpus: number;
  /**
   * Where it ended up: `moved` (on the new module), `moved-back` (moved, then rolled back), `failed` (its move
   * rolled back), `not-moved`, or `stays`: an SEV guest that cannot leave its module because VAC does not mediate
   * (`vac.cross_module_moves=N`, as in the RFC) — not a failure, but the old module cannot be unloaded.
   */
  readonly outcome: 'moved' | 'moved-back' | 'failed' | 'not-moved' | 'stays';
  /** Its batch (1-based; 0 when not reached). */
  readonly batch: number;
  /** Its move's blackout, ns (0 when not moved). */
  readonly blackoutNs: number;
  /** Its move's duration, ns. */
  readonly durationNs: number;
  /** The ioctls its move made. */
  readonly ioctls: number;
  /** The phase its move failed at. */
  readonly failedPhase?: MovePhase;
  /** Why it counts as a failure (a failed move, over budget, unhealthy). */
  readonly failure?: string;
}

/** An action the plan took. */
export interface PlanAction {
  /** The host's event sequence number when it was taken (for timeline annotations). */
  readonly seq: number;
  /** Simulated time, ns. */
  readonly ns: number;
  /** What: `load`, `smoke-test`, `batch`, `halt`, `rollback`, `unload`, `load-failed`, … */
  readonly action: string;
  /** Details in words. */
  readonly detail: string;
}

/** What {@link runUpgrade} did. */
export interface UpgradeReport {
  /** The module left. */
  readonly from: string;
  /** The module loaded. */
  readonly to: string;
  /**
   * `completed`: every VM that can leave the old module moved (and the old module was unloaded when asked and no SEV
   * guest stays on it); `halted`; `rolled-back`; `load-failed`.
   */
  readonly outcome: 'completed' | 'halted' | 'rolled-back' | 'load-failed';
  /** Whether the old module is still loaded at the end because SEV guests stay on it (VMs with outcome `stays`). */
  readonly oldModuleKept: boolean;
  /** Per VM, in the order moved. */
  readonly vms: readonly VmOutcome[];
  /** The failures, in order. */
  readonly failures: readonly string[];
  /** The actions, in order. */
  readonly actions: readonly PlanAction[];
  /** Simulated time of the whole plan, ns. */
  readonly durationNs: number;
  /** ioctls made by the moves and the plan's own probes. */
  readonly ioctls: number;
}

/** The VMs in the plan's order. */
export function orderVms(vmms: readonly GuestVmm[], order: MoveOrder = 'as-given'): GuestVmm[] {
  const n = (v: GuestVmm): number => v.current.handle.vcpus.length;
  if (typeof order === 'function') return [...order(vmms)];
  if (order === 'fewest-vcpus-first') return [...vmms].sort((a, b) => n(a) - n(b));
  if (order === 'most-vcpus-first') return [...vmms].sort((a, b) => n(b) - n(a));
  if (order === 'as-given') return [...vmms];
  throw new UsageError('ERR_INVALID_ARG', `upgrade plan: unknown order ${JSON.stringify(order)}`);
}

function checkPlan(plan: UpgradePlan): { batchSize: number; ticks: number } {
  const batchSize = plan.batchSize ?? 1;
  const ticks = plan.ticksBetweenBatches ?? 0;
  if (!Number.isSafeInteger(batchSize) || batchSize < 1) throw new UsageError('ERR_OUT_OF_RANGE', `upgrade plan: batchSize must be a positive integer, got ${String(batchSize)}`);
  if (!Number.isSafeInteger(ticks) || ticks < 0) throw new UsageError('ERR_OUT_OF_RANGE', `upgrade plan: ticksBetweenBatches must be a non-negative integer, got ${String(ticks)}`);
  const max = plan.onFailure?.maxFailures ?? 0;
  if (!Number.isSafeInteger(max) || max < 0) throw new UsageError('ERR_OUT_OF_RANGE', `upgrade plan: maxFailures must be a non-negative integer, got ${String(max)}`);
  for (const v of plan.vmms) {
    if (v.devPath !== `/dev/${plan.from}`) throw new UsageError('ERR_INVALID_ARG', `upgrade plan: ${v.name} runs on ${v.devPath}, not on /dev/${plan.from}`);
  }
  return { batchSize, ticks };
}

/** The VMs that stay on the old module: SEV guests, when VAC does not hand encryption contexts between modules. */
function staying(plan: UpgradePlan): Set<GuestVmm> {
  return new Set(plan.vmms.filter((v) => v.sev && !sevMayLeave(v.host)));
}

/** The batches of a plan: the ordered VMs (those that can leave the old module), `batchSize` at a time. */
function batches(plan: UpgradePlan, batchSize: number): GuestVmm[][] {
  const stays = staying(plan);
  const ordered = orderVms(plan.vmms, plan.order).filter((v) => !stays.has(v));
  const out: GuestVmm[][] = [];
  for (let i = 0; i < ordered.length; i += batchSize) out.push(ordered.slice(i, i + batchSize));
  return out;
}

const budgetOf = (plan: UpgradePlan, v: GuestVmm): number | undefined => (typeof plan.blackoutBudgetNs === 'function' ? plan.blackoutBudgetNs(v) : plan.blackoutBudgetNs);

/**
 * The dry run: the plan's steps as lines of text — what it would load, each batch with its VMs and their budgets,
 * the failure rule, the unload. Nothing on the host changes.
 *
 * @throws UsageError for a malformed plan (as {@link runUpgrade} would)
 */
export function describeUpgrade(plan: UpgradePlan): string[] {
  const { batchSize, ticks } = checkPlan(plan);
  const rule = plan.onFailure ?? {};
  const lines = [`load ${plan.load.image.name}${Object.keys(plan.load.params ?? {}).length > 0 ? ` ${Object.entries(plan.load.params ?? {}).map(([k, v]) => `${k}=${String(v)}`).join(' ')}` : ''} next to ${plan.from}`];
  if (plan.smokeTest !== false) lines.push(`smoke test: create and close a VM on /dev/${plan.load.image.name}`);
  batches(plan, batchSize).forEach((b, i) => {
    const vms = b.map((v) => {
      const budget = budgetOf(plan, v);
      return `${v.name} (${v.current.handle.vcpus.length} vCPU${v.current.handle.vcpus.length === 1 ? '' : 's'}${budget === undefined ? '' : `, budget ${budget} ns`})`;
    });
    lines.push(`batch ${i + 1}: move ${vms.join(', ')}${ticks > 0 ? `; then run ${ticks} ticks and check health` : ''}`);
  });
  const stays = [...staying(plan)];
  if (stays.length > 0) lines.push(`stay on ${plan.from}: ${stays.map((v) => v.name).join(', ')} (SEV guests; vac.cross_module_moves=N)`);
  lines.push(`on failure: after ${rule.maxFailures ?? 0} tolerated, ${rule.action ?? 'rollback'}`);
  if (plan.unloadOld !== false) lines.push(stays.length > 0 ? `keep ${plan.from} loaded (the SEV guests hold it)` : `unload ${plan.from}`);
  return lines;
}

/**
 * Run an upgrade plan on `host` (see the module comment).
 *
 * @throws UsageError for a malformed plan (nothing is done); a failure of the upgrade itself is in the report
 */
export function runUpgrade(host: Host, plan: UpgradePlan): UpgradeReport {
  const { batchSize, ticks } = checkPlan(plan);
  const to = plan.load.image.name;
  const t0 = host.clock.nowNs;
  const actions: PlanAction[] = [];
  const failures: string[] = [];
  const outcomes = new Map<GuestVmm, VmOutcome>();
  const stays = staying(plan);
  for (const v of stays) outcomes.set(v, { vmm: v.name, vcpus: v.current.handle.vcpus.length, outcome: 'stays', batch: 0, blackoutNs: 0, durationNs: 0, ioctls: 0 });
  let ioctls = 0;
  const act = (action: string, detail: string): void => {
    actions.push({ seq: host.events.seq, ns: host.clock.nowNs, action, detail });
    host.events.emit('fleet:action', { action, detail });
  };
  const report = (outcome: UpgradeReport['outcome']): UpgradeReport => ({
    from: plan.from,
    to,
    outcome,
    vms: orderVms(plan.vmms, plan.order).map((v) => outcomes.get(v) ?? { vmm: v.name, vcpus: v.current.handle.vcpus.length, outcome: 'not-moved', batch: 0, blackoutNs: 0, durationNs: 0, ioctls: 0 }),
    failures: [...failures],
    actions: [...actions],
    durationNs: host.clock.nowNs - t0,
    ioctls,
    oldModuleKept: stays.size > 0 && host.lsmod().some((m) => m.name === plan.from),
  });

  // 1. Load the new module; its facts (and the old one's) are probed once, as a VMM does at start-up.
  try {
    host.modprobe(plan.load.image, plan.load.params);
  } catch (e) {
    failures.push(`load ${to}: ${(e as Error).message}`);
    act('load-failed', (e as Error).message);
    return report('load-failed');
  }
  act('load', `${to} loaded next to ${plan.from}`);
  const agent = host.spawn({ uid: 0, name: 'upgrade-agent' });
  const meter = new MeteredProcess(host, agent, plan.costs ?? DEFAULT_SYSCALL_COSTS);
  const rollBackLoad = (why: string): UpgradeReport => {
    agent.kill();
    failures.push(why);
    act('rollback', why);
    host.rmmod(to);
    act('unload', `${to} unloaded`);
    return report('rolled-back');
  };
  let facts: { source: ModuleFacts; target: ModuleFacts };
  try {
    if (plan.smokeTest !== false) {
      const sys = meter.proc.open(`/dev/${to}`, O_RDWR);
      try {
        meter.proc.close(meter.proc.ioctl(sys, KVM_CREATE_VM, 0));
      } finally {
        meter.proc.close(sys);
      }
      act('smoke-test', `a VM was created and closed on /dev/${to}`);
    }
    facts = { source: probeModule(meter.proc, `/dev/${plan.from}`), target: probeModule(meter.proc, `/dev/${to}`) };
  } catch (e) {
    ioctls += meter.count().ioctls;
    return rollBackLoad(`smoke test on /dev/${to}: ${(e as Error).message}`);
  }
  ioctls += meter.count().ioctls;
  agent.kill();

  // 2. The batches.
  const moved: GuestVmm[] = [];
  const rule = plan.onFailure ?? {};
  let failureCount = 0;
  let stopped: 'halt' | 'rollback' | undefined;
  const all = batches(plan, batchSize);
  for (let b = 0; b < all.length && stopped === undefined; b++) {
    const batch = all[b] as GuestVmm[];
    act('batch', `batch ${b + 1}/${all.length}: ${batch.map((v) => v.name).join(', ')}`);
    const movedNow: GuestVmm[] = [];
    for (const v of batch) {
      const r: MoveResult = moveInPlace(v, `/dev/${to}`, { facts, ...(plan.costs === undefined ? {} : { costs: plan.costs }), ...(plan.check === undefined ? {} : { check: plan.check }) });
      ioctls += r.syscalls.ioctls;
      const base = { vmm: v.name, vcpus: v.current.handle.vcpus.length, batch: b + 1, blackoutNs: r.blackoutNs, durationNs: r.durationNs, ioctls: r.syscalls.ioctls };
      if (r.outcome === 'rolled-back') {
        const failure = `${v.name}: move failed at ${r.failedPhase ?? '?'}: ${r.error instanceof Error ? r.error.message : String(r.error)}`;
        outcomes.set(v, { ...base, outcome: 'failed', ...(r.failedPhase === undefined ? {} : { failedPhase: r.failedPhase }), failure });
        failures.push(failure);
        failureCount++;
      } else {
        moved.push(v);
        movedNow.push(v);
        const budget = budgetOf(plan, v);
        if (budget !== undefined && r.blackoutNs > budget) {
          const failure = `${v.name}: blackout ${r.blackoutNs} ns over its budget of ${budget} ns`;
          outcomes.set(v, { ...base, outcome: 'moved', failure });
          failures.push(failure);
          failureCount++;
        } else {
          outcomes.set(v, { ...base, outcome: 'moved' });
        }
      }
      if (failureCount > (rule.maxFailures ?? 0)) break;
    }
    if (ticks > 0 && failureCount <= (rule.maxFailures ?? 0)) host.scheduler.run(ticks);
    for (const v of movedNow) {
      if ((plan.healthy ?? ((x: GuestVmm) => x.problems.length === 0))(v)) continue;
      const failure = `${v.name}: unhealthy after its move${v.problems.length > 0 ? ` (${v.problems.join('; ')})` : ''}`;
      const prev = outcomes.get(v);
      if (prev !== undefined) outcomes.set(v, { ...prev, failure });
      failures.push(failure);
      failureCount++;
    }
    if (failureCount > (rule.maxFailures ?? 0)) stopped = rule.action ?? 'rollback';
    plan.afterBatch?.(b + 1, report('completed'));
  }

  // 3. The end: halt, roll back, or unload the old module.
  if (stopped === 'halt') {
    act('halt', `${failureCount} failure${failureCount === 1 ? '' : 's'}: stopped with ${moved.length} VM${moved.length === 1 ? '' : 's'} on ${to}`);
    return report('halted');
  }
  if (stopped === 'rollback') {
    act('rollback', `${failureCount} failure${failureCount === 1 ? '' : 's'}: moving ${moved.length} VM${moved.length === 1 ? '' : 's'} back to ${plan.from}`);
    let stuck = 0;
    for (const v of [...moved].reverse()) {
      const r = moveInPlace(v, `/dev/${plan.from}`, { facts: { source: facts.target, target: facts.source }, ...(plan.costs === undefined ? {} : { costs: plan.costs }) });
      ioctls += r.syscalls.ioctls;
      const prev = outcomes.get(v);
      if (r.outcome === 'moved' && prev !== undefined) outcomes.set(v, { ...prev, outcome: 'moved-back' });
      else {
        stuck++;
        failures.push(`${v.name}: could not move back: ${r.error instanceof Error ? r.error.message : String(r.error)}`);
      }
    }
    if (stuck === 0) {
      host.rmmod(to);
      act('unload', `${to} unloaded`);
    }
    return report('rolled-back');
  }
  if (stays.size > 0) {
    act('keep', `${plan.from} stays loaded: ${stays.size} SEV guest${stays.size === 1 ? '' : 's'} cannot leave it (${SEV_STAYS.replace(/^an SEV guest cannot leave its module: /, '')})`);
  } else if (plan.unloadOld !== false) {
    try {
      host.rmmod(plan.from);
    } catch (e) {
      const why = `unload ${plan.from}: ${(e as Error).message}`;
      failures.push(why);
      act('halt', why);
      return report('halted');
    }
    act('unload', `${plan.from} unloaded`);
  }
  return report('completed');
}

/** Timeline annotations for a run's actions (`renderTimelineSvg`'s `annotations`): one per action, at its event. */
export function upgradeAnnotations(report: UpgradeReport): TimelineAnnotation[] {
  return report.actions.filter((a) => a.action !== 'batch').map((a) => ({ at: a.seq, label: a.action === 'load' || a.action === 'unload' ? a.detail : `${a.action}: ${a.detail}` }));
}
