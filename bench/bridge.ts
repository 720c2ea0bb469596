/**
 * `pnpm bench:bridge` (`--quick` for tiny counts): the cost of the /dev/kvm bridge.
 *
 * A real C program (bench/bridge-roundtrip.c) makes the calls through the preload library and a bridge in
 * this process: the median of KVM_GET_REGS (a plain struct ioctl) and of KVM_RUN with one OUT exit per run,
 * with 4 KiB and with 16 MiB of guest RAM, untouched and with every page written by the VMM first (the RAM
 * sync reads the populated pages of every memslot per KVM_RUN: docs/bridge.md).
 * The bridge's own work per call (its call records' time from a request's arrival to its reply) is reported beside
 * each row. The same calls made directly on the simulated process (`proc.ioctl`) are one baseline, and the same C program
 * on the machine's real /dev/kvm (where it can be opened) the other; the report gives both ratios. The floor of
 * the transport is measured in the same run: the same program's round trips of a KVM_GET_REGS-sized message to a
 * Node server in this process that answers each and does nothing else (a bare echo). Then QEMU
 * (where installed): the time from exec to the hello firmware's line on the serial port, through the bridge and
 * on the real /dev/kvm (medians of 5); and QEMU's live migration of a guest that keeps writing its RAM, kvm0 →
 * kvm1 through the bridge and on the real /dev/kvm, alternating: QEMU's reported downtime of every run (5 of each;
 * issue 13 asks for every run within 2× of the real KVM's). Nothing is asserted about speed. Needs a C compiler.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { accessSync, constants, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHost, O_RDWR } from '@vac/core';
import { KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_REGS, KVM_RUN, KVM_SET_REGS, KVM_SET_SREGS, KVM_GET_SREGS, KVM_SET_USER_MEMORY_REGION, kvm, makeKvmRegs, makeKvmSregs } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { compileC, findCompiler, preloadLibrary, socketPaths, spinSettings, startDaemon, type CallRecord } from '../packages/bridge/src/index.js';
import { FIRMWARE_LINE, counterFirmware, helloFirmware } from '../packages/bridge/test/support/firmware.js';
import { GAPS_HEADER, gapsRow, monotonicOffsetNs, readLibraryCalls, splitCalls, type SplitCall } from './lib/call-gaps.js';
import { migrateWithPrecopy } from '../packages/bridge/test/support/migration.js';
import { until } from '../packages/bridge/test/support/native.js';
import { connectQmp } from '../packages/bridge/test/support/qmp.js';

const quick = process.argv.includes('--quick');
/**
 * `--regs`: only KVM_GET_REGS (and the same program's KVM_RUN with one OUT exit) — through the request FIFO with
 * both sides' spin (the default), through the FIFO with the spin off on both sides (`VAC_NO_SPIN`, a second
 * bridge with `spinUs: 0`), through the socket alone, and the echo floor — in rounds.
 */
const regsOnly = process.argv.includes('--regs');
/**
 * `--migration`: only the live migrations (5 pairs, or `--runs=N`), each through-the-bridge run with what its
 * source QEMU called while stopped: the vCPU's KVM_RUN that the stop's kick ended, and every later call within
 * QEMU's reported downtime after it — how many of each, their bridge time, the gaps between them (`bench/results/
 * bridge-downtime.md`, and the calls themselves in `bridge-downtime.json`, one line each).
 */
const migrationOnly = process.argv.includes('--migration');
const runsArg = process.argv.find((a) => a.startsWith('--runs='));
/**
 * `--trace` (with `--migration`): both QEMUs of every run also log QEMU's own trace events of the stop and of the
 * downtime's work (`-trace`, the log backend: a wall-clock timestamp per event), and `bridge-downtime-trace.json`
 * holds each run's timeline — QEMU's events of both sides and the bridge's call records (their arrival and reply),
 * in ms from the migration thread's stop (QEMU's `downtime_start` is taken just before it). The trace costs each
 * event a line written to a file, so traced downtimes are a little longer than untraced ones.
 */
const traceQemu = process.argv.includes('--trace');
/**
 * `--smm=off` (with `--migration`): both QEMUs run `-M pc,smm=off`. The model has SMM (KVM_CAP_X86_SMM 1, as Linux
 * with CONFIG_KVM_SMM), this machine's KVM has not, so by default QEMU's guest through the bridge has SMRAM and
 * the real one not: QEMU then keeps a second KVM memory listener (address space 1, SMRAM over all of RAM) and every
 * dirty-bitmap sync reads and clears each slot twice — 12 KVM_GET_DIRTY_LOG and 128 KVM_CLEAR_DIRTY_LOG in the
 * stopped source's last sync against the real KVM's 6 and 64. With `smm=off` both migrate the same guest.
 */
const smmOff = process.argv.includes('--smm=off');
/**
 * `--times` (with `--migration`): the bridged QEMUs run with `VAC_PRELOAD_TIMES`, so the preload library logs each
 * call's send and reply-seen times (CLOCK_MONOTONIC); joined with the bridge's records, each call of the stopped
 * source splits into QEMU's own time before it, the request's way to the bridge, the bridge's work and the reply's
 * way back (`bench/lib/call-gaps.ts`; the report's last table, and every call in `bridge-downtime*-times.json`).
 */
const timesCalls = process.argv.includes('--times');
/** The QEMU trace events `--trace` enables (the stop, the completion's sections and dirty-bitmap syncs, every KVM ioctl). */
const QEMU_TRACE_EVENTS = ['migrate_set_state', 'runstate_set', 'vm_state_notify', 'vm_stop_flush_all', 'savevm_state_complete_precopy', 'savevm_section_start', 'savevm_section_end', 'migration_bitmap_sync_start', 'migration_bitmap_sync_end', 'migration_thread_after_loop', 'migration_completion_vm_stop', 'kvm_vcpu_ioctl', 'kvm_vm_ioctl', 'kvm_run_exit', 'qemu_file_fclose', 'qemu_loadvm_state_section', 'qemu_loadvm_state_post_main', 'loadvm_state_cleanup', 'migrate_transferred'];
const N = quick ? 200 : 5000;
const CODE = [0xba, 0xf8, 0x03, 0xee, 0xfe, 0x06, 0x00, 0x18, 0xeb, 0xf9];

function medianNs(samples: number[]): number {
  const s = [...samples].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] as number;
}

/** The same calls made directly on a simulated process. */
function direct(ram: number): { getRegs: number; run: number } {
  const host = createHost({ cpus: 2, hardware: intel() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn();
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const m = p.mmapAnonymous(ram);
  m.bytes.set(CODE, 0);
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: ram, userspace_addr: m.addr });
  const vcpu = p.ioctl(vm, KVM_CREATE_VCPU, 0);
  const s = makeKvmSregs();
  p.ioctl(vcpu, KVM_GET_SREGS, s);
  s.cs.base = 0n;
  s.cs.selector = 0;
  s.ds.base = 0n;
  s.ds.selector = 0;
  p.ioctl(vcpu, KVM_SET_SREGS, s);
  p.ioctl(vcpu, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n }));
  const regs = makeKvmRegs();
  const t: number[] = [];
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    p.ioctl(vcpu, KVM_GET_REGS, regs);
    t.push(Number(process.hrtime.bigint() - t0));
  }
  const getRegs = medianNs(t);
  t.length = 0;
  for (let i = 0; i < N; i++) {
    const t0 = process.hrtime.bigint();
    p.ioctl(vcpu, KVM_RUN, 0);
    t.push(Number(process.hrtime.bigint() - t0));
  }
  return { getRegs, run: medianNs(t) };
}

/** The C program through the bridge (`preload` and `socket`), or on the real /dev/kvm (neither). */
/** The C program's medians (ns): KVM_GET_REGS, KVM_RUN with one OUT exit, then KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG of its slot. */
interface Medians {
  readonly getRegs: number;
  readonly run: number;
  readonly getDirtyLog: number;
  readonly clearDirtyLog: number;
}

async function bridged(bin: string, preload: string | undefined, socket: string | undefined, ram: number, touch: boolean, extraEnv: NodeJS.ProcessEnv = {}): Promise<Medians> {
  const env = preload === undefined ? { ...process.env } : { ...process.env, LD_PRELOAD: preload, VAC_SOCKET: socket, ...extraEnv };
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(bin, [String(N), String(ram), ...(touch ? ['touch'] : [])], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`${bin} exited with ${String(code)}`))));
  });
  const v = (k: string): number => Number(new RegExp(`^${k}=(\\d+)$`, 'm').exec(out)?.[1] ?? NaN);
  return { getRegs: v('get_regs_ns'), run: v('run_ns'), getDirtyLog: v('get_dirty_log_ns'), clearDirtyLog: v('clear_dirty_log_ns') };
}

/**
 * The bridge's own share of the calls just made: the median of its call records' time from a request's arrival to
 * its reply (µs, whole), for KVM_GET_REGS and KVM_RUN, from the newest `N` records of each.
 */
function bridgeWork(): Medians {
  const calls = d.bridge.calls();
  const of = (what: string): number => medianNs(calls.filter((c) => c.what === what).slice(-N).map((c) => c.us));
  return { getRegs: of('KVM_GET_REGS'), run: of('KVM_RUN'), getDirtyLog: of('KVM_GET_DIRTY_LOG'), clearDirtyLog: of('KVM_CLEAR_DIRTY_LOG') };
}

if (findCompiler() === undefined) {
  process.stdout.write('bench:bridge skipped: no C compiler\n');
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'vac-bench-'));
const preload = preloadLibrary({ ...process.env, VAC_CACHE_DIR: dir });
const bin = join(dir, 'roundtrip');
compileC([fileURLToPath(new URL('bridge-roundtrip.c', import.meta.url))], bin, ['-O2']);
const d = await startDaemon({ runDir: dir, host: { cpus: 2, modules: [{ name: 'kvm0' }, { name: 'kvm1' }], symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: process.env.VAC_BENCH_LOG === undefined ? () => {} : (l) => process.stderr.write(`${l}\n`) });
const realKvm = ((): boolean => {
  try {
    accessSync('/dev/kvm', constants.R_OK | constants.W_OK);
    return true;
  } catch {
    return false;
  }
})();
const rows: Array<{ what: string; bridgeUs: number; workUs: number; directUs: number; ratio: number; realUs: number | undefined }> = [];

/**
 * The transport's floor: the C program's round trips (`echo` mode) to a Node server in this process that answers
 * each 192-byte request with a 184-byte reply — KVM_GET_REGS's sizes — and does nothing else.
 */
async function echoFloor(): Promise<number> {
  const path = join(dir, 'echo.sock');
  const reply = Buffer.alloc(184);
  const server = createServer((s) => {
    let have = 0;
    s.on('data', (chunk: Buffer) => {
      have += chunk.length;
      for (; have >= 192; have -= 192) s.write(reply);
    });
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  try {
    const out = await new Promise<string>((resolve, reject) => {
      const child = spawn(bin, ['echo', path, String(N)], { stdio: ['ignore', 'pipe', 'inherit'] });
      let text = '';
      child.stdout.on('data', (b: Buffer) => (text += b.toString()));
      child.on('error', reject);
      child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`echo exited with ${String(code)}`))));
    });
    return Number(/^echo_ns=(\d+)$/m.exec(out)?.[1] ?? NaN);
  } finally {
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
const loadBefore = loadavg()[0] as number;
// One pass of the program through the bridge first, not counted: the bridge's code is compiled by V8 as it runs,
// and the first row would otherwise pay for that (the direct baseline warms up within its own loop).
await bridged(bin, preload, socketPaths(dir).bridge, 4096, false);
if (regsOnly) {
  // Rounds of: the echo floor, KVM_GET_REGS through the request FIFO with both sides' spin as configured by default
  // (this bridge; both sides spin only while the machine has a CPU to spare), the same with the spin forced whatever
  // the load (a bridge with `always`, the library with VAC_SPIN_ALWAYS=1), with the spin off on both sides (a
  // bridge with a budget of 0, the library with VAC_NO_SPIN=1), through the socket alone (VAC_NO_FIFO=1: the
  // transport before the FIFO), and the real /dev/kvm.
  const host = { cpus: 2, modules: [{ name: 'kvm0' }], symlinks: [['/dev/kvm0', '/dev/kvm']] as Array<[string, string]> };
  const forced = await startDaemon({ runDir: join(dir, 'spin'), host, log: () => {}, spin: { us: spinSettings().us, always: true } });
  const quiet = await startDaemon({ runDir: join(dir, 'nospin'), host, log: () => {}, spin: { us: 0, always: false } });
  const ways = {
    auto: [socketPaths(dir).bridge, {}],
    forced: [socketPaths(forced.runDir).bridge, { VAC_SPIN_ALWAYS: '1' }],
    still: [socketPaths(quiet.runDir).bridge, { VAC_NO_SPIN: '1' }],
  } as const;
  for (const [socket, env] of Object.values(ways)) await bridged(bin, preload, socket, 4096, false, env);
  const rounds = quick ? 2 : 5;
  let md = `# KVM_GET_REGS round trip, ${rounds} rounds of ${N} calls (medians, µs; load average ${loadBefore.toFixed(1)})\n\n| round | echo floor | FIFO, spin (default) | FIFO, spin forced | FIFO, no spin | ÷ floor (default, forced, none) | socket only | real /dev/kvm | KVM_RUN, one OUT exit: default / forced / none | KVM_CLEAR_DIRTY_LOG: default / forced / none (real) |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n`;
  for (let i = 0; i < rounds; i++) {
    const floor = (await echoFloor()) / 1000;
    const auto = await bridged(bin, preload, ways.auto[0], 4096, false, ways.auto[1]);
    const spun = await bridged(bin, preload, ways.forced[0], 4096, false, ways.forced[1]);
    const still = await bridged(bin, preload, ways.still[0], 4096, false, ways.still[1]);
    const sock = (await bridged(bin, preload, ways.still[0], 4096, false, { VAC_NO_FIFO: '1', VAC_NO_SPIN: '1' })).getRegs / 1000;
    const realRun = realKvm ? await bridged(bin, undefined, undefined, 4096, false) : undefined;
    const real = realRun === undefined ? undefined : realRun.getRegs / 1000;
    const us = [auto, spun, still].map((r) => r.getRegs / 1000);
    md += `| ${i + 1} | ${floor.toFixed(1)} | ${us.map((u) => u.toFixed(1)).join(' | ')} | ${us.map((u) => (u / floor).toFixed(2)).join(', ')} | ${sock.toFixed(1)} | ${real?.toFixed(2) ?? '—'} | ${[auto, spun, still].map((r) => (r.run / 1000).toFixed(1)).join(' / ')} | ${[auto, spun, still].map((r) => (r.clearDirtyLog / 1000).toFixed(1)).join(' / ')} (${realRun === undefined ? '—' : (realRun.clearDirtyLog / 1000).toFixed(2)}) |\n`;
  }
  md += `\nLoad average after: ${(loadavg()[0] as number).toFixed(1)}.\n`;
  process.stdout.write(md);
  await forced.stop();
  await quiet.stop();
  await d.stop();
  process.exit(0);
}
const echoNs = migrationOnly ? NaN : await echoFloor();
for (const [label, ram, touch] of migrationOnly ? [] : [['4 KiB', 4096, false], ['16 MiB untouched', 16 * 1024 * 1024, false], ['16 MiB all written', 16 * 1024 * 1024, true]] as const) {
  const b = await bridged(bin, preload, socketPaths(dir).bridge, ram, touch);
  const work = bridgeWork();
  const dd = direct(ram);
  const real = realKvm ? await bridged(bin, undefined, undefined, ram, touch) : undefined;
  if (label === '4 KiB') rows.push({ what: 'KVM_GET_REGS', bridgeUs: b.getRegs / 1000, workUs: work.getRegs, directUs: dd.getRegs / 1000, ratio: b.getRegs / dd.getRegs, realUs: real === undefined ? undefined : real.getRegs / 1000 });
  rows.push({ what: `KVM_RUN, one OUT exit, ${label} RAM`, bridgeUs: b.run / 1000, workUs: work.run, directUs: dd.run / 1000, ratio: b.run / dd.run, realUs: real === undefined ? undefined : real.run / 1000 });
  if (label === '4 KiB') {
    // What a migration's stopped source calls most (docs/bridge.md, "Costs"); no direct baseline.
    rows.push({ what: 'KVM_GET_DIRTY_LOG, a one-page slot', bridgeUs: b.getDirtyLog / 1000, workUs: work.getDirtyLog, directUs: NaN, ratio: NaN, realUs: real === undefined ? undefined : real.getDirtyLog / 1000 });
    rows.push({ what: 'KVM_CLEAR_DIRTY_LOG, a one-page slot', bridgeUs: b.clearDirtyLog / 1000, workUs: work.clearDirtyLog, directUs: NaN, ratio: NaN, realUs: real === undefined ? undefined : real.clearDirtyLog / 1000 });
  }
}

/** QEMU: ms from exec to the firmware's line on its stdout, then SIGTERM (through the bridge with `preload`). */
async function qemuToLine(bios: string, preload: string | undefined, socket: string | undefined): Promise<number> {
  const env = preload === undefined ? { ...process.env } : { ...process.env, LD_PRELOAD: preload, VAC_SOCKET: socket };
  return await new Promise<number>((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn('qemu-system-x86_64', ['-accel', 'kvm', '-M', 'pc', '-bios', bios, '-display', 'none', '-nographic', '-serial', 'stdio', '-m', '16', '-no-reboot', '-monitor', 'none'], { env, stdio: ['ignore', 'pipe', 'ignore'] });
    let out = '';
    let t = NaN;
    child.stdout.on('data', (b: Buffer) => {
      out += b.toString();
      if (Number.isNaN(t) && out.includes(`${FIRMWARE_LINE}\n`)) {
        t = performance.now() - t0;
        child.kill('SIGTERM');
      }
    });
    child.on('error', reject);
    child.on('close', () => (Number.isNaN(t) ? reject(new Error('QEMU did not print the line')) : resolve(t)));
  });
}

const qemuRows: Array<{ what: string; ms: number }> = [];
let qemuNote = '';
if (spawnSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }).status !== 0) qemuNote = 'QEMU skipped: qemu-system-x86_64 is not installed.\n';
else {
  const bios = join(dir, 'hello.bin');
  writeFileSync(bios, helloFirmware());
  const runs = migrationOnly ? 0 : quick ? 2 : 5;
  const median = async (f: () => Promise<number>): Promise<number> => {
    const t: number[] = [];
    for (let i = 0; i < runs; i++) t.push(await f());
    return medianNs(t);
  };
  if (!migrationOnly) qemuRows.push({ what: 'QEMU -M pc, exec → the firmware’s line, through the bridge', ms: await median(() => qemuToLine(bios, preload, socketPaths(dir).bridge)) });
  if (realKvm) {
    if (!migrationOnly) qemuRows.push({ what: 'the same on the real /dev/kvm', ms: await median(() => qemuToLine(bios, undefined, undefined)) });
  } else qemuNote = 'QEMU on the real /dev/kvm skipped: /dev/kvm cannot be opened here.\n';
}
/**
 * QEMU's live migration of the counter firmware's guest (the migration test's steps: two live pre-copy passes
 * at 1 MiB/s, then QEMU's default downtime limit), from one QEMU to another started with `-incoming`: QEMU's
 * reported downtime and total time. Through the bridge (kvm0 → kvm1) with `preload`, else on the real /dev/kvm.
 */
async function migration(fw: string, preload: string | undefined, socket: string | undefined, run: number): Promise<{ downtime: number; total: number; stopped: CallRecord[]; qemuTrace?: QemuTrace; split?: SplitCall[] }> {
  const path = (name: string): string => join(dir, `${name}-${preload === undefined ? 'real' : 'vac'}-${run}`);
  const env = (dev: string): NodeJS.ProcessEnv => (preload === undefined ? { ...process.env } : { ...process.env, LD_PRELOAD: preload, VAC_SOCKET: socket, VAC_DEV_KVM: dev, ...(timesCalls ? { VAC_PRELOAD_TIMES: path('times') } : {}) });
  const qemu = (qmp: string, extra: string[], dev: string): ChildProcess =>
    spawn('qemu-system-x86_64', ['-accel', 'kvm', '-M', smmOff ? 'pc,smm=off' : 'pc', '-bios', fw, '-display', 'none', '-nographic', '-serial', 'stdio', '-m', '16', '-no-reboot', '-monitor', 'none', '-qmp', `unix:${path(qmp)},server,nowait`, ...(traceQemu ? [...QEMU_TRACE_EVENTS.flatMap((e) => ['-trace', e]), '-D', path(`${qmp}.trace`), '-msg', 'timestamp=on'] : []), ...extra], { env: env(dev), stdio: ['ignore', 'pipe', 'ignore'] });
  let out = '';
  const a = qemu('a.qmp', [], '/dev/kvm0');
  a.stdout?.on('data', (b: Buffer) => (out += b.toString()));
  const b = qemu('b.qmp', ['-incoming', `unix:${path('mig.sock')}`], '/dev/kvm1');
  const qa = await connectQmp(path('a.qmp'));
  const qb = await connectQmp(path('b.qmp'));
  let sourceQuit = false;
  try {
    await until(() => out.split('\n').length > 4, 'the guest to count', 60_000);
    const info = await migrateWithPrecopy(qa, `unix:${path('mig.sock')}`);
    if (info.status !== 'completed' || info.downtime === undefined || info['total-time'] === undefined) throw new Error(`migration ${JSON.stringify(info)}`);
    let split: SplitCall[] | undefined;
    if (timesCalls && preload !== undefined) {
      // The library writes its times when QEMU exits normally: quit it and wait for that.
      const exited = new Promise((resolve) => a.once('exit', resolve));
      sourceQuit = true;
      await qa.run('quit').catch(() => undefined);
      await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5000))]);
      const records = d.bridge.calls().filter((c) => c.pid === a.pid);
      split = splitCalls(readLibraryCalls(`${path('times')}.${a.pid ?? 0}`), records, monotonicOffsetNs(), info.downtime);
    }
    return { downtime: info.downtime, total: info['total-time'], stopped: preload === undefined ? [] : stoppedCalls(a.pid ?? 0, info.downtime), ...(split === undefined ? {} : { split }), ...(traceQemu ? { qemuTrace: { source: path('a.qmp.trace'), destination: path('b.qmp.trace'), calls: preload === undefined ? [] : d.bridge.calls().filter((c) => c.pid === a.pid || c.pid === b.pid), pids: [a.pid ?? 0, b.pid ?? 0] } } : {}) };
  } finally {
    if (!sourceQuit) await qa.run('quit').catch(() => undefined);
    await qb.run('quit').catch(() => undefined);
    qa.close();
    qb.close();
    a.kill('SIGKILL');
    b.kill('SIGKILL');
  }
}

/** Where a traced run's QEMU logs are, and the bridge's calls of its two QEMUs (`--trace`). */
interface QemuTrace {
  readonly source: string;
  readonly destination: string;
  readonly calls: CallRecord[];
  readonly pids: readonly [number, number];
}

/**
 * One traced run's timeline (`--trace`): QEMU's events of both sides (`[ms, 'src' | 'dst', event and arguments]`)
 * and, through the bridge, its calls (`[ms of arrival, 'src' | 'dst', tid, what, bridge µs]`), in ms from the
 * source's run state change to `finish-migrate` (the stop), from 2 ms before it to `downtimeMs` + 20 ms after.
 */
function traceTimeline(t: QemuTrace, downtimeMs: number): { events: string[]; stopWallMs: number; phases: string } {
  const parse = (file: string, side: string): Array<[number, string, string]> => {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      return [];
    }
    return text.split('\n').flatMap((line) => {
      const m = /^\d+@(\d+)\.(\d{6}):(.*)$/.exec(line);
      return m === null ? [] : [[Number(m[1]) * 1000 + Number(m[2]) / 1000, side, m[3] as string] as [number, string, string]];
    });
  };
  const q = [...parse(t.source, 'src'), ...parse(t.destination, 'dst')];
  const stop = q.find(([, side, e]) => side === 'src' && e.startsWith('runstate_set') && e.includes('(finish-migrate)'))?.[0];
  if (stop === undefined) return { events: [], stopWallMs: NaN, phases: '' };
  const rows: Array<[number, string]> = q.map(([ms, side, e]) => [ms - stop, JSON.stringify([round3(ms - stop), side, e])]);
  for (const c of t.calls) {
    const ms = performance.timeOrigin + c.at - stop;
    rows.push([ms, JSON.stringify([round3(ms), c.pid === t.pids[0] ? 'src' : 'dst', c.tid, c.what, c.us])]);
  }
  return { events: rows.filter(([ms]) => ms >= -2 && ms <= downtimeMs + 20).sort((x, y) => x[0] - y[0]).map(([, r]) => r), stopWallMs: stop, phases: downtimePhases(q.filter(([ms, side]) => side === 'src' && ms >= stop).map(([ms, , e]) => [ms - stop, e])) };
}

/**
 * The stopped source's phases from its trace events (ms from the stop): the vCPUs stopped and the stop's
 * notifiers run (`vm_state_notify`), the rest of `vm_stop` (`savevm_state_complete_precopy`), the vCPU state read
 * (to the RAM section's start), the last dirty-bitmap sync (its KVM_GET_DIRTY_LOG / KVM_CLEAR_DIRTY_LOG count and
 * dirty pages), the last RAM pages sent, the devices' state and the stream's flush (to `completed`): a table row's
 * cells, each phase's length.
 */
function downtimePhases(src: Array<[number, string]>): string {
  const at = (prefix: string): number => src.find(([, e]) => e.startsWith(prefix))?.[0] ?? NaN;
  const marks = [0, at('vm_state_notify'), at('savevm_state_complete_precopy'), at('savevm_section_start ram'), at('migration_bitmap_sync_end'), at('savevm_section_end ram'), at('migrate_set_state new state completed')];
  const syncStart = at('migration_bitmap_sync_start');
  const syncEnd = marks[4] as number;
  const inSync = src.filter(([ms]) => ms >= syncStart && ms <= syncEnd);
  const count = (type: string): number => inSync.filter(([, e]) => e.startsWith('kvm_vm_ioctl') && e.includes(`type ${type},`)).length;
  const dirty = /dirty_pages (\d+)/.exec(src.find(([, e]) => e.startsWith('migration_bitmap_sync_end'))?.[1] ?? '')?.[1] ?? '?';
  const lengths = marks.slice(1).map((m, i) => (m - (marks[i] as number)).toFixed(2));
  // KVM_GET_DIRTY_LOG is 0x4010ae42, KVM_CLEAR_DIRTY_LOG 0xc018aec0.
  return `${lengths.join(' | ')} | ${count('0x4010ae42')} / ${count('0xc018aec0')} | ${dirty}`;
}

function round3(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

/**
 * What the source QEMU `pid` called while stopped: its last KVM_RUN (the one the stop's kick ended: the vCPU
 * thread makes no other after the stop) and its calls from that KVM_RUN's end to `downtimeMs` later.
 */
function stoppedCalls(pid: number, downtimeMs: number): CallRecord[] {
  const mine = d.bridge.calls().filter((c) => c.pid === pid);
  const lastRun = mine.findLast((c) => c.what === 'KVM_RUN');
  if (lastRun === undefined) return [];
  const stop = lastRun.at + lastRun.us / 1000;
  return [lastRun, ...mine.filter((c) => c.seq > lastRun.seq && c.at >= stop && c.at <= stop + downtimeMs)];
}

/** One migration through the bridge and one on the real KVM, alternating, so both see the same load. */
const migrationRuns: Array<{ bridgeMs: number; realMs: number | undefined; bridgeTotalMs: number; realTotalMs: number | undefined; stopped: CallRecord[]; split?: SplitCall[] }> = [];
/** `--trace`: each run's timelines, through the bridge and on the real KVM. */
const qemuTraces: Array<{ run: number; bridge: { downtime: number; events: string[]; phases: string }; real?: { downtime: number; events: string[]; phases: string } }> = [];
if (spawnSync('qemu-system-x86_64', ['--version'], { stdio: 'ignore' }).status === 0) {
  const fw = join(dir, 'counter.bin');
  writeFileSync(fw, counterFirmware());
  const runs = runsArg === undefined ? (quick ? 1 : 5) : Number(runsArg.slice('--runs='.length));
  for (let i = 0; i < runs; i++) {
    const b = await migration(fw, preload, socketPaths(dir).bridge, i);
    const r = realKvm ? await migration(fw, undefined, undefined, i) : undefined;
    migrationRuns.push({ bridgeMs: b.downtime, realMs: r?.downtime, bridgeTotalMs: b.total, realTotalMs: r?.total, stopped: b.stopped, ...(b.split === undefined ? {} : { split: b.split }) });
    if (b.qemuTrace !== undefined) qemuTraces.push({ run: i + 1, bridge: { downtime: b.downtime, ...traceTimeline(b.qemuTrace, b.downtime) }, ...(r?.qemuTrace === undefined ? {} : { real: { downtime: r.downtime, ...traceTimeline(r.qemuTrace, r.downtime) } }) });
  }
}

/** The report of `--migration`: each run's downtime and what its source called while stopped (module notes). */
function downtimeReport(): string {
  let md = `# QEMU live migration kvm0 → kvm1${smmOff ? ', `-M pc,smm=off` on both sides' : ''}: what the stopped source calls (load average ${loadBefore.toFixed(1)} → ${(loadavg()[0] as number).toFixed(1)})\n\n`;
  md += '| run | downtime, bridge / real (ms) | calls after the kick | their bridge time (ms) | from the kick to the last reply (ms) | sum of gaps between calls (ms) | the calls (count × median µs) |\n|---|---:|---:|---:|---:|---:|---|\n';
  migrationRuns.forEach((r, i) => {
    const [run, ...after] = r.stopped;
    if (run === undefined) return;
    const kick = run.at + run.us / 1000;
    const work = after.reduce((t, c) => t + c.us, 0) / 1000;
    const last = after.at(-1);
    const span = last === undefined ? 0 : last.at + last.us / 1000 - kick;
    const kinds = new Map<string, number[]>();
    for (const c of after) kinds.set(c.what, [...(kinds.get(c.what) ?? []), c.us]);
    const list = [...kinds].sort((a, b) => b[1].length - a[1].length).map(([w, us]) => `${w} ${us.length}×${medianNs(us)}`).join(', ');
    md += `| ${i + 1} | ${r.bridgeMs} / ${r.realMs ?? '—'} | ${after.length} | ${work.toFixed(2)} | ${span.toFixed(2)} | ${(span - work).toFixed(2)} | ${list} |\n`;
  });
  if (timesCalls) {
    md += `\nEach call of the stopped source (\`--times\`: the library's send and reply-seen times joined with the bridge's records), totals in ms with the median per call in µs:\n\n${GAPS_HEADER}`;
    migrationRuns.forEach((r, i) => {
      if (r.split !== undefined) md += `| ${i + 1} | ${r.bridgeMs} / ${r.realMs ?? '—'} | ${gapsRow(r.split)} |\n`;
    });
  }
  return md;
}
if (migrationOnly) {
  await d.stop();
  const md = downtimeReport();
  process.stdout.write(md);
  const base = fileURLToPath(new URL(`results/bridge-downtime${smmOff ? '-smm-off' : ''}${quick ? '-quick' : ''}`, import.meta.url));
  writeFileSync(`${base}.md`, md);
  // One line per call, each `[ms from the kick, tid, what, bridge µs, via]` (the first: the kick-ended KVM_RUN, at its start).
  const runsJson = migrationRuns.map((r) => {
    const [run] = r.stopped;
    const kick = run === undefined ? 0 : run.at + run.us / 1000;
    const calls = r.stopped.map((c) => JSON.stringify([Math.round((c.at - kick) * 1000) / 1000, c.tid, c.what, c.us, c.via])).join(',\n      ');
    return `    { "bridgeMs": ${r.bridgeMs}, "realMs": ${r.realMs ?? 'null'}, "bridgeTotalMs": ${r.bridgeTotalMs}, "realTotalMs": ${r.realTotalMs ?? 'null'}, "calls": [\n      ${calls}\n    ] }`;
  });
  writeFileSync(`${base}.json`, `{ "date": "${new Date().toISOString()}", "load": [${loadBefore}, ${loadavg()[0] as number}], "runs": [\n${runsJson.join(',\n')}\n] }\n`);
  if (timesCalls) {
    // One line per call: [what, tid, QEMU µs before it, request → bridge µs, bridge µs, reply → QEMU µs, spin caught it, changed CPU].
    const runs = migrationRuns.map((r) => `    { "bridgeMs": ${r.bridgeMs}, "realMs": ${r.realMs ?? 'null'}, "calls": [\n      ${(r.split ?? []).map((c) => JSON.stringify([c.what, c.tid, Math.round(c.qemuUs), Math.round(c.upUs), c.bridgeUs, Math.round(c.downUs), c.spun, c.moved])).join(',\n      ')}\n    ] }`);
    writeFileSync(`${base}-times.json`, `{ "date": "${new Date().toISOString()}", "load": [${loadBefore}, ${loadavg()[0] as number}], "runs": [\n${runs.join(',\n')}\n] }\n`);
  }
  if (traceQemu) {
    const table = '\n| run | side | downtime (ms) | stop: vCPUs out, notifiers | rest of vm_stop | vCPU state | last dirty sync | last RAM | devices, flush | sync\'s GET / CLEAR_DIRTY_LOG | dirty pages |\n|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n';
    const rowsMd = qemuTraces.flatMap((t) => [`| ${t.run} | bridge | ${t.bridge.downtime} | ${t.bridge.phases} |`, ...(t.real === undefined ? [] : [`| ${t.run} | real | ${t.real.downtime} | ${t.real.phases} |`])]);
    const phasesMd = `\nQEMU's trace (\`--trace\`), the stopped source's phases in ms:\n${table}${rowsMd.join('\n')}\n`;
    process.stdout.write(phasesMd);
    writeFileSync(`${base}.md`, md + phasesMd);
    const side = (t: { downtime: number; events: string[] }): string => `{ "downtime": ${t.downtime}, "events": [\n      ${t.events.join(',\n      ')}\n    ] }`;
    const runs = qemuTraces.map((t) => `  { "run": ${t.run}, "bridge": ${side(t.bridge)}${t.real === undefined ? '' : `, "real": ${side(t.real)}`} }`);
    writeFileSync(`${base}-trace.json`, `{ "date": "${new Date().toISOString()}", "runs": [\n${runs.join(',\n')}\n] }\n`);
  }
  process.exit(0);
}
await d.stop();
const loadAfter = loadavg()[0] as number;
let md = `# /dev/kvm bridge round trip (${quick ? 'quick' : 'full'}, ${N} calls each, medians; load average ${loadBefore.toFixed(1)} → ${loadAfter.toFixed(1)})\n\n| call | through the bridge (µs) | of which the bridge's own work (µs) | direct proc.ioctl (µs) | ratio | real /dev/kvm (µs) | ratio |\n|---|---:|---:|---:|---:|---:|---:|\n`;
for (const r of rows) {
  const real = r.realUs === undefined ? '— | —' : `${r.realUs.toFixed(2)} | ${(r.bridgeUs / r.realUs).toFixed(0)}×`;
  md += `| ${r.what} | ${r.bridgeUs.toFixed(1)} | ${r.workUs} | ${Number.isNaN(r.directUs) ? '— | —' : `${r.directUs.toFixed(2)} | ${r.ratio.toFixed(0)}×`} | ${real} |\n`;
}
if (!realKvm) md += '\nThe real /dev/kvm cannot be opened here: no real-KVM column.\n';
const getRegs = rows[0];
md += `\nThe transport's floor in this run — the same program's round trip of KVM_GET_REGS's message sizes to a Node echo server: **${(echoNs / 1000).toFixed(1)} µs**; KVM_GET_REGS through the bridge is ${getRegs === undefined ? '—' : `${(getRegs.bridgeUs / (echoNs / 1000)).toFixed(2)}× that (${(getRegs.bridgeUs - echoNs / 1000).toFixed(1)} µs above it)`}.\n`;
if (qemuRows.length > 0) {
  md += '\n| QEMU | ms |\n|---|---:|\n';
  for (const r of qemuRows) md += `| ${r.what} | ${r.ms.toFixed(0)} |\n`;
  const [b, r] = qemuRows;
  if (b !== undefined && r !== undefined) md += `\nThrough the bridge / real: ${(b.ms / r.ms).toFixed(2)}×.\n`;
}
if (migrationRuns.length > 0) {
  md += '\n| QEMU live migration kvm0 → kvm1, run | downtime through the bridge (ms) | on the real /dev/kvm (ms) | ratio | total time, bridge / real (ms) |\n|---|---:|---:|---:|---:|\n';
  migrationRuns.forEach((r, i) => {
    const ratio = r.realMs === undefined ? '—' : `${(r.bridgeMs / Math.max(1, r.realMs)).toFixed(2)}×`;
    md += `| ${i + 1} | ${r.bridgeMs} | ${r.realMs ?? '—'} | ${ratio} | ${r.bridgeTotalMs} / ${r.realTotalMs ?? '—'} |\n`;
  });
  const reals = migrationRuns.flatMap((r) => (r.realMs === undefined ? [] : [r.realMs]));
  if (reals.length > 0) {
    const realMedian = medianNs(reals);
    const worst = Math.max(...migrationRuns.map((r) => r.bridgeMs));
    md += `\nMedians: ${medianNs(migrationRuns.map((r) => r.bridgeMs))} ms through the bridge, ${realMedian} ms on the real KVM; the slowest run through the bridge is ${(worst / Math.max(1, realMedian)).toFixed(2)}× the real KVM's median.\n`;
  }
}
md += qemuNote === '' ? '' : `\n${qemuNote}`;
process.stdout.write(md);
const base = fileURLToPath(new URL(`results/bridge${quick ? '-quick' : ''}`, import.meta.url));
writeFileSync(`${base}.md`, md);
writeFileSync(`${base}.json`, `${JSON.stringify({ date: new Date().toISOString(), n: N, load: [loadBefore, loadAfter], echoNs, rows, qemu: qemuRows, migration: migrationRuns }, null, 2)}\n`);
