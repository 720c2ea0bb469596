/**
 * The bridge of `bench/bridge-replay.ts`, in a process of its own (so that its main thread's CPU time is the
 * bridge's alone, and every round starts with V8 as cold as a fresh `vac start`): a daemon with kvm0 and kvm1 on 2
 * CPUs in the run directory given as the argument, the spin off (the replay reads the main thread's CPU time once it
 * sleeps again). Prints `ready` when it listens; stops when its stdin closes, and then, with `VAC_REPLAY_RECORDS=1`,
 * prints the median of its own call records' time from arrival to reply per request on stderr.
 */
import { startDaemon } from '../packages/bridge/src/index.js';

const runDir = process.argv[2];
if (runDir === undefined) throw new Error('usage: bridge-replay-server RUN_DIR');
const d = await startDaemon({ runDir, host: { cpus: 2, modules: [{ name: 'kvm0' }, { name: 'kvm1' }] }, log: () => {}, spin: { us: 0, always: false } });
process.stdout.write('ready\n');
process.stdin.resume();
process.stdin.on('end', () => {
  if (process.env.VAC_REPLAY_RECORDS !== undefined) {
    const by = new Map<string, number[]>();
    for (const c of d.bridge.calls()) by.set(`${c.what} ${c.via}`, [...(by.get(`${c.what} ${c.via}`) ?? []), c.us]);
    for (const [w, v] of by) process.stderr.write(`${w} n=${v.length} median=${[...v].sort((a, b) => a - b)[v.length >> 1]}\n`);
  }
  void d.stop().then(() => process.exit(0));
});
