/**
 * Where a migration's downtime goes between QEMU's calls (`bench/bridge.ts --migration --times`): the preload
 * library's times of each call (`VAC_PRELOAD_TIMES`: CLOCK_MONOTONIC when the VMM thread sent the request and when it
 * saw the first bytes of the reply, the CPU at each, whether its spin caught the reply) joined with the bridge's call
 * records (arrival and reply, `performance.now()`, turned into CLOCK_MONOTONIC with the bridge's offset), so that each
 * call of the stopped source splits into: the request's way to the bridge, the bridge's work, the reply's way back,
 * and QEMU's own time before its next call.
 */
import { readFileSync } from 'node:fs';
import type { CallRecord } from '../../packages/bridge/src/index.js';

/** One call as the library saw it (a line of `<VAC_PRELOAD_TIMES>.<pid>`). */
export interface LibraryCall {
  readonly tid: number;
  readonly op: number;
  readonly request: number;
  /** CLOCK_MONOTONIC ns when the thread started sending the request. */
  readonly sendNs: number;
  /** CLOCK_MONOTONIC ns when it saw the first bytes of the reply. */
  readonly seenNs: number;
  readonly cpuSend: number;
  readonly cpuSeen: number;
  /** 0: the spin caught the reply; 1: after a sleep. */
  readonly how: number;
}

/** The library's times file of one process (empty when it is missing: the process did not exit normally). */
export function readLibraryCalls(file: string): LibraryCall[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch {
    return [];
  }
  return text
    .split('\n')
    .slice(1)
    .filter((l) => l !== '')
    .map((l) => {
      const [tid, op, request, sendNs, seenNs, cpuSend, cpuSeen, how] = l.split(' ').map(Number) as [number, number, number, number, number, number, number, number];
      return { tid, op, request, sendNs, seenNs, cpuSend, cpuSeen, how };
    });
}

/** The offset (ns) that turns the bridge's `performance.now()` ms into CLOCK_MONOTONIC ns (Node's clock is libuv's hrtime). */
export function monotonicOffsetNs(): number {
  const before = process.hrtime.bigint();
  const now = performance.now();
  const after = process.hrtime.bigint();
  return Number((before + after) / 2n) - Math.round(now * 1e6);
}

/** One stopped-source call split (µs), with its bridge record. */
export interface SplitCall {
  readonly what: string;
  readonly tid: number;
  /** From QEMU's previous call's reply seen (any thread of the process) to this request's send: QEMU's own time. */
  readonly qemuUs: number;
  /** From the send to the bridge's arrival. */
  readonly upUs: number;
  /** The bridge's work (arrival to reply record). */
  readonly bridgeUs: number;
  /** From the bridge's reply record to the library seeing it. */
  readonly downUs: number;
  /** Whether the library's spin caught the reply. */
  readonly spun: boolean;
  /** Whether the thread was on another CPU when it saw the reply than when it sent. */
  readonly moved: boolean;
}

/**
 * The stopped source's calls from the stop (the kick-ended KVM_RUN's reply) to `downtimeMs` after, split. Each
 * library call is matched to the bridge record of the same thread whose arrival lies between its send and its reply.
 */
export function splitCalls(lib: readonly LibraryCall[], records: readonly CallRecord[], offsetNs: number, downtimeMs: number): SplitCall[] {
  const mono = (ms: number): number => ms * 1e6 + offsetNs;
  const lastRun = records.findLast((c) => c.what === 'KVM_RUN');
  if (lastRun === undefined) return [];
  const stop = mono(lastRun.at + lastRun.us / 1000);
  const end = stop + downtimeMs * 1e6;
  const calls = lib.filter((c) => c.sendNs >= stop - 1e5 && c.sendNs <= end).sort((a, b) => a.sendNs - b.sendNs);
  const byTid = new Map<number, CallRecord[]>();
  for (const r of records) {
    const at = mono(r.at);
    if (at < stop - 1e6 || at > end + 1e6) continue;
    const list = byTid.get(r.tid);
    if (list === undefined) byTid.set(r.tid, [r]);
    else list.push(r);
  }
  const out: SplitCall[] = [];
  let prevSeen = stop;
  for (const c of calls) {
    const r = (byTid.get(c.tid) ?? []).find((x) => mono(x.at) >= c.sendNs - 2e3 && mono(x.at) <= c.seenNs);
    if (r === undefined) continue;
    const arrive = mono(r.at);
    const replied = arrive + r.us * 1e3;
    out.push({ what: r.what, tid: c.tid, qemuUs: (c.sendNs - prevSeen) / 1e3, upUs: (arrive - c.sendNs) / 1e3, bridgeUs: r.us, downUs: (c.seenNs - replied) / 1e3, spun: c.how === 0, moved: c.cpuSend !== c.cpuSeen });
    prevSeen = Math.max(prevSeen, c.seenNs);
  }
  return out;
}

function median(v: readonly number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.floor(s.length / 2)] as number);
}

/** A row of the report: totals (ms) and medians (µs) of each part, the spin's catches and the CPU moves. */
export function gapsRow(calls: readonly SplitCall[]): string {
  const sum = (k: 'qemuUs' | 'upUs' | 'bridgeUs' | 'downUs'): string => (calls.reduce((t, c) => t + c[k], 0) / 1000).toFixed(2);
  const med = (k: 'qemuUs' | 'upUs' | 'bridgeUs' | 'downUs'): string => median(calls.map((c) => c[k])).toFixed(0);
  const big = calls.filter((c) => c.upUs + c.downUs + c.qemuUs > 200).length;
  return `${calls.length} | ${sum('qemuUs')} (${med('qemuUs')}) | ${sum('upUs')} (${med('upUs')}) | ${sum('bridgeUs')} (${med('bridgeUs')}) | ${sum('downUs')} (${med('downUs')}) | ${calls.filter((c) => c.spun).length} | ${calls.filter((c) => c.moved).length} | ${big}`;
}

/** The header of {@link gapsRow}'s table. */
export const GAPS_HEADER = '| run | downtime, bridge / real (ms) | calls | QEMU between calls, ms (median µs) | request → bridge | bridge work | reply → QEMU | replies the spin caught | calls that changed CPU | calls with > 200 µs outside the bridge |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n';
