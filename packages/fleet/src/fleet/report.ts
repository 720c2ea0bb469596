/**
 * A fleet rollout's report as numbers ({@link summarizeRollout}: counts, blackout percentiles, ioctls per move, memory
 * per host) and as text ({@link formatFleetReport}). Both depend only on the report, so the same seed prints the
 * same bytes whatever the number of worker threads.
 *
 * @module
 */
import { INJECTED_FAULT_KINDS } from './faults.js';
import type { FleetReport } from './rollout.js';

/** The numbers of a rollout. */
export interface RolloutSummary {
  /** Hosts by outcome. */
  readonly hosts: { readonly upgraded: number; readonly failed: number; readonly rolledBack: number; readonly notReached: number };
  /** Moves that went through (forward and back), and those that failed and rolled back. */
  readonly moves: number;
  /** Moves that failed. */
  readonly failedMoves: number;
  /** Blackout of the forward moves, ns: nearest-rank percentiles. */
  readonly blackoutNs: { readonly p50: number; readonly p90: number; readonly p99: number; readonly max: number };
  /** ioctls per move that went through (mean, rounded to 0.1). */
  readonly ioctlsPerMove: number;
  /** Bytes mapped per host at its peak (guest memory and `kvm_run` areas): mean (rounded) and max. */
  readonly mappedBytesPerHost: { readonly mean: number; readonly max: number };
  /**
   * SEV guests of the hosts reached: those that stayed on the old module (their VAC does not mediate, as in the
   * RFC), those that moved with VAC mediating, and the upgraded hosts whose old module stays loaded because of them.
   */
  readonly sev: { readonly stayed: number; readonly moved: number; readonly oldModuleKeptOnHosts: number };
  /** Hosts reached whose injected failure fired, by kind (`module-init`, `vm-create`, `vcpu-create`), in that order. */
  readonly injected: Readonly<Record<string, number>>;
}

/** The nearest-rank percentile `p` (0–100) of sorted `xs` (0 for none). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1] as number;
}

/** The numbers of a rollout report. */
export function summarizeRollout(report: FleetReport): RolloutSummary {
  const hs = report.hosts;
  const reached = hs.filter((h) => h.outcome !== 'not-reached');
  const blackouts = reached.flatMap((h) => h.blackoutsNs).sort((a, b) => a - b);
  const moves = reached.reduce((a, h) => a + h.moves, 0);
  const ioctls = reached.reduce((a, h) => a + h.moveIoctls, 0);
  const mapped = reached.map((h) => h.mappedBytes);
  return {
    hosts: {
      upgraded: hs.filter((h) => h.outcome === 'upgraded').length,
      failed: hs.filter((h) => h.outcome === 'failed').length,
      rolledBack: hs.filter((h) => h.outcome === 'rolled-back').length,
      notReached: hs.filter((h) => h.outcome === 'not-reached').length,
    },
    moves,
    failedMoves: reached.reduce((a, h) => a + h.failedMoves, 0),
    blackoutNs: { p50: percentile(blackouts, 50), p90: percentile(blackouts, 90), p99: percentile(blackouts, 99), max: blackouts.at(-1) ?? 0 },
    ioctlsPerMove: moves === 0 ? 0 : Math.round((10 * ioctls) / moves) / 10,
    mappedBytesPerHost: { mean: mapped.length === 0 ? 0 : Math.round(mapped.reduce((a, b) => a + b, 0) / mapped.length), max: Math.max(0, ...mapped) },
    sev: {
      stayed: reached.reduce((a, h) => a + h.sevStayed, 0),
      moved: reached.filter((h) => h.outcome === 'upgraded').reduce((a, h) => a + h.sevVms - h.sevStayed, 0),
      oldModuleKeptOnHosts: reached.filter((h) => h.oldModuleKept).length,
    },
    injected: Object.fromEntries(INJECTED_FAULT_KINDS.map((k) => [k, reached.filter((h) => h.injected?.split(' ')[0] === k).length] as const).filter(([, n]) => n > 0)),
  };
}

const us = (ns: number): string => `${(ns / 1000).toFixed(1)} µs`;
const s = (ns: number): string => `${(ns / 1e9).toFixed(3)} s`;

function columns(rows: ReadonlyArray<readonly string[]>): string[] {
  const widths = rows[0]?.map((_, c) => Math.max(...rows.map((r) => (r[c] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, c) => cell.padEnd(widths[c] ?? 0)).join('  ').trimEnd());
}

/** The report as text: the fleet, the outcome, each wave, the numbers. */
export function formatFleetReport(report: FleetReport): string {
  const sum = summarizeRollout(report);
  const f = report.fleet;
  const lines = [
    `Fleet rollout ${report.fromBuild} → ${report.toBuild} (seed ${report.seed})`,
    `fleet: ${report.hosts.length} hosts (${f.intel} Intel, ${f.amd} AMD of which ${f.sev} with SEV, ${f.sevMediated} of them with VAC mediating SEV moves), ${f.vms} VMs (${f.sevVms} SEV guests), ${f.vcpus} vCPUs`,
    `outcome: ${report.outcome} after ${report.waves.length} wave${report.waves.length === 1 ? '' : 's'}, ${s(report.durationNs)} of simulated time`,
    '',
    ...columns([
      ['wave', 'hosts', 'upgraded', 'failed', 'rolled back', 'start', 'end', 'verdict'],
      ['----', '-----', '--------', '------', '-----------', '-----', '---', '-------'],
      ...report.waves.map((w) => [w.label, String(w.hosts), String(w.upgraded), String(w.failed), String(w.rolledBack), s(w.startNs), s(w.endNs), w.verdict]),
    ]),
    ...report.waves.flatMap((w) => w.failures.map((x) => `  ${w.label}: ${x}`)),
    '',
    `hosts: ${sum.hosts.upgraded} upgraded, ${sum.hosts.failed} failed, ${sum.hosts.rolledBack} rolled back, ${sum.hosts.notReached} not reached`,
    `moves: ${sum.moves} made, ${sum.failedMoves} refused and rolled back; ${sum.ioctlsPerMove} ioctls per move`,
    `blackout per VM: p50 ${us(sum.blackoutNs.p50)}, p90 ${us(sum.blackoutNs.p90)}, p99 ${us(sum.blackoutNs.p99)}, max ${us(sum.blackoutNs.max)}`,
    `mapped per host (guest memory, kvm_run): mean ${sum.mappedBytesPerHost.mean} bytes, max ${sum.mappedBytesPerHost.max} bytes`,
    ...(report.injectedFaultRate > 0
      ? [`injected failures (rate ${report.injectedFaultRate}): ${Object.entries(sum.injected).map(([k, n]) => `${n} ${k}`).join(', ') || 'none fired'} on the hosts reached`]
      : []),
    `SEV guests: ${sum.sev.stayed} stayed on ${report.fromBuild} (no VAC mediation), ${sum.sev.moved} moved with VAC mediating; old module kept loaded on ${sum.sev.oldModuleKeptOnHosts} upgraded host${sum.sev.oldModuleKeptOnHosts === 1 ? '' : 's'}`,
  ];
  return `${lines.join('\n')}\n`;
}
