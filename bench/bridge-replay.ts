/**
 * `npx --yes pnpm@10.34.9 exec tsx --conditions=@vac/source bench/bridge-replay.ts`: the bridge's CPU time per call of a QEMU live migration's downtime, first call and
 * steady state (issue 13). `bench/bridge-replay.c` replays the calls QEMU 7.2 makes while the VM is stopped — the
 * stopped source's (the stop's notifiers, the vCPU's state, the last dirty-bitmap sync, the devices) and the
 * destination's (its loads while it drains the stream, its vCPU state) — in the order and number of a traced
 * migration with `-M pc,smm=off` (`bench:bridge --migration --smm=off --trace`), through the preload library, and
 * reads the bridge main thread's CPU time (`/proc/PID/task/PID/schedstat`) around each call. The bridge runs in a
 * process of its own (`bridge-replay-server.ts`), a fresh one per round, so each round's first sequence is the
 * first time that bridge serves these requests (after the boot and two pre-copy passes, as in a migration); the
 * later sequences of the round are the steady state. CPU time, not wall time: it holds on a loaded machine. The
 * bridge does not spin (its CPU time would include its wait for the next call); the library spins for each reply
 * whatever the load (`VAC_SPIN_ALWAYS=1`), as it does on a quiet machine, so the bridge's reply does not pay for
 * waking a sleeping VMM thread.
 *
 * Options: `--rounds=N` fresh bridges (default 5), `--reps=K` sequences per round (default 20), `--node=FLAGS` node
 * flags for the bridge process (space-separated), `--json=FILE` every call's figures. Nothing is asserted about speed.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileC, findCompiler, preloadLibrary, socketPaths } from '../packages/bridge/src/index.js';

const arg = (name: string, fallback: string): string => process.argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3) ?? fallback;
const rounds = Number(arg('rounds', '5'));
const reps = Number(arg('reps', '20'));
const nodeFlags = arg('node', '').split(' ').filter(Boolean);
const jsonOut = arg('json', '');

if (findCompiler() === undefined) {
  process.stdout.write('bench:bridge-replay skipped: no C compiler\n');
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'vac-replay-'));
const preload = preloadLibrary({ ...process.env, VAC_CACHE_DIR: dir });
const bin = join(dir, 'replay');
compileC([fileURLToPath(new URL('bridge-replay.c', import.meta.url))], bin, ['-O2']);

/** One call of one sequence: the bridge's CPU time and the round trip's wall time (ns), the errno. */
interface Call {
  readonly rep: number;
  readonly index: number;
  readonly name: string;
  readonly cpuNs: number;
  readonly wallNs: number;
  readonly errno: number;
}

function run(cmd: string, args: string[], env: NodeJS.ProcessEnv): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (b: Buffer) => (out += b.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`${cmd} exited with ${String(code)}`))));
  });
}

/** One round: a fresh bridge process, the replay against it. */
async function round(i: number): Promise<{ calls: Call[]; phases: Map<string, number> }> {
  const runDir = join(dir, `run-${i}`);
  const server = fileURLToPath(new URL('bridge-replay-server.ts', import.meta.url));
  const bridge = spawn(process.execPath, [...nodeFlags, '--conditions=@vac/source', '--import', import.meta.resolve('tsx'), server, runDir], { stdio: ['pipe', 'pipe', 'inherit'] });
  try {
    await new Promise<void>((resolve, reject) => {
      let out = '';
      bridge.stdout.on('data', (b: Buffer) => {
        out += b.toString();
        if (out.includes('ready\n')) resolve();
      });
      bridge.on('error', reject);
      bridge.on('close', (code) => reject(new Error(`the bridge exited with ${String(code)}`)));
    });
    const out = await run(bin, [String(bridge.pid), String(reps)], { ...process.env, LD_PRELOAD: preload, VAC_SOCKET: socketPaths(runDir).bridge, VAC_SPIN_ALWAYS: '1' });
    const calls: Call[] = [];
    const phases = new Map<string, number>();
    for (const line of out.split('\n')) {
      const w = line.split(' ');
      if (w[0] === 'call') calls.push({ rep: Number(w[1]), index: Number(w[2]), name: w[3] as string, cpuNs: Number(w[4]), wallNs: Number(w[5]), errno: Number(w[6]) });
      else if (w[0] === 'phase' && w[1] === '0') phases.set(w[3] as string, Number(w[2]));
    }
    return { calls, phases };
  } finally {
    bridge.stdin?.end();
    await new Promise<void>((resolve) => (bridge.exitCode === null ? bridge.once('close', () => resolve()) : resolve()));
  }
}

function median(v: number[]): number {
  const s = [...v].sort((a, b) => a - b);
  return s.length === 0 ? NaN : (s[Math.floor(s.length / 2)] as number);
}

const loadBefore = loadavg()[0] as number;
const all: Array<{ calls: Call[]; phases: Map<string, number> }> = [];
for (let i = 0; i < rounds; i++) all.push(await round(i));
const phases = all[0]?.phases ?? new Map<string, number>();
const order = [...phases].sort((a, b) => a[1] - b[1]);
const phaseOf = (index: number): string => order.findLast(([, at]) => index >= at)?.[0] ?? '?';
const us = (ns: number): string => (ns / 1000).toFixed(1);

// Per phase: the sum of its calls' CPU time, in the first sequence and (median over the later ones) the steady state.
let md = `# The bridge's CPU time per call of a migration's downtime (replayed; ${rounds} fresh bridges × ${reps} sequences; load average ${loadBefore.toFixed(1)} → ${(loadavg()[0] as number).toFixed(1)}${nodeFlags.length > 0 ? `; node ${nodeFlags.join(' ')}` : ''})\n\n`;
md += '| phase | calls | first sequence: bridge CPU, median of the rounds (min–max) µs | steady: median µs | round trip wall, steady median µs |\n|---|---:|---:|---:|---:|\n';
const phaseNames = order.map(([p]) => p).filter((p) => p !== 'end');
for (const p of [...phaseNames, 'all']) {
  const inPhase = (c: Call): boolean => p === 'all' || phaseOf(c.index) === p;
  const firsts = all.map((r) => r.calls.filter((c) => c.rep === 0 && inPhase(c)).reduce((t, c) => t + c.cpuNs, 0));
  const steadies = all.flatMap((r) => [...Array(reps - 1).keys()].map((k) => r.calls.filter((c) => c.rep === k + 1 && inPhase(c)).reduce((t, c) => t + c.cpuNs, 0)));
  const walls = all.flatMap((r) => [...Array(reps - 1).keys()].map((k) => r.calls.filter((c) => c.rep === k + 1 && inPhase(c)).reduce((t, c) => t + c.wallNs, 0)));
  const n = all[0]?.calls.filter((c) => c.rep === 0 && inPhase(c)).length ?? 0;
  md += `| ${p} | ${n} | ${us(median(firsts))} (${us(Math.min(...firsts))}–${us(Math.max(...firsts))}) | ${us(median(steadies))} | ${us(median(walls))} |\n`;
}
// Per request: the median over the rounds of its first call's CPU time, and the steady state's median per call.
md += '\n| call | per sequence | first call: bridge CPU µs, median of the rounds | steady: median µs per call | errno |\n|---|---:|---:|---:|---|\n';
const names = [...new Set(all[0]?.calls.filter((c) => c.rep === 0).map((c) => c.name) ?? [])];
for (const name of names) {
  const first = all.map((r) => r.calls.find((c) => c.rep === 0 && c.name === name)?.cpuNs ?? NaN);
  const steady = all.flatMap((r) => r.calls.filter((c) => c.rep > 0 && c.name === name).map((c) => c.cpuNs));
  const errnos = [...new Set(all.flatMap((r) => r.calls.filter((c) => c.name === name).map((c) => c.errno)))];
  md += `| ${name} | ${all[0]?.calls.filter((c) => c.rep === 0 && c.name === name).length ?? 0} | ${us(median(first))} | ${us(median(steady))} | ${errnos.join(', ')} |\n`;
}
process.stdout.write(md);
if (jsonOut !== '') writeFileSync(jsonOut, `${JSON.stringify({ date: new Date().toISOString(), rounds, reps, nodeFlags, load: [loadBefore, loadavg()[0]], calls: all.map((r) => r.calls.map((c) => [c.rep, c.index, c.name, c.cpuNs, c.wallNs, c.errno])) })}\n`);
