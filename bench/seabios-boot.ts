/**
 * Where a SeaBIOS boot's time goes: QEMU 7.2 boots `/usr/share/seabios/bios.bin` through the bridge (the command of
 * packages/bridge/test/fixtures/seabios/README.md) against a host in this process, and this prints the split: wall
 * time, time inside KVM_RUN (the model) and outside it (the bridge round trips and QEMU), guest instructions, exits to
 * user space by kind, the simulated clock, and when each debug-log line appeared (wall and simulated time).
 *
 * Usage: `npx --yes pnpm@10.34.9 exec tsx --conditions=@vac/source bench/seabios-boot.ts [machine args…]`
 * (default `-M pc`). Needs QEMU, bios.bin and a C compiler. `VAC_INSN_CACHE=never|always|auto` sets the
 * interpreter's decoded-instruction cache policy, `VAC_DECODED_FORMS=0` turns its decoded forms off; `REAL_KVM=1` runs
 * the same command on the machine's /dev/kvm instead (only the line times are then meaningful); `VAC_LAZY_LOOKUP=off`
 * boots without the bridge's guest-memory fast path (`lazy-memory.ts`: every guest byte through `read8`/`write8`, as
 * before it had one).
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { preloadLibrary, socketPaths, startDaemon } from '@vac/bridge';
import { Vcpu } from '@vac/kvm';
// @internal, so not in the package's exports: the source file itself (the bench runs from source).
import { insnCacheStats, setDecodedForms, setInsnCachePolicy, type InsnCachePolicy } from '../packages/kvm/src/guest/insn-cache.js';
import { setLazyLookup } from '../packages/bridge/src/lazy-memory.js';

const EXIT_NAMES: Record<number, string> = { 2: 'IO', 5: 'HLT', 6: 'MMIO', 7: 'IRQ_WINDOW_OPEN', 8: 'SHUTDOWN', 10: 'INTR', 17: 'INTERNAL_ERROR', 29: 'X86_RDMSR', 30: 'X86_WRMSR' };

interface Counters {
  calls: number;
  ns: bigint;
  eintr: number;
  byReason: Map<string, number>;
  byPort: Map<string, number>;
}

const counters: Counters = { calls: 0, ns: 0n, eintr: 0, byReason: new Map(), byPort: new Map() };
const vcpus = new Set<Vcpu>();
type Gen = Generator<unknown, number, unknown>;
const proto = Vcpu.prototype as unknown as { runThreaded: (this: Vcpu, thread: unknown, quantum: () => number) => Gen };
const original = proto.runThreaded;
function count(v: Vcpu): void {
  const run = v.run;
  const name = EXIT_NAMES[run.exit_reason] ?? String(run.exit_reason);
  counters.byReason.set(name, (counters.byReason.get(name) ?? 0) + 1);
  if (run.exit_reason === 2) {
    const key = `${run.io.direction === 1 ? 'out' : 'in'} 0x${run.io.port.toString(16)}/${run.io.size}x${run.io.count}`;
    counters.byPort.set(key, (counters.byPort.get(key) ?? 0) + 1);
  } else if (run.exit_reason === 6) {
    const key = `mmio ${run.mmio.is_write !== 0 ? 'w' : 'r'} 0x${((run.mmio.phys_addr & ~0xfff) >>> 0).toString(16)}`;
    counters.byPort.set(key, (counters.byPort.get(key) ?? 0) + 1);
  }
}
proto.runThreaded = function* timed(this: Vcpu, thread: unknown, quantum: () => number): Gen {
  vcpus.add(this);
  counters.calls++;
  const g = original.call(this, thread, quantum);
  let input: unknown;
  for (;;) {
    const t0 = process.hrtime.bigint();
    let r: IteratorResult<unknown, number>;
    try {
      r = g.next(input);
    } catch (e) {
      counters.ns += process.hrtime.bigint() - t0;
      counters.eintr++;
      throw e;
    }
    counters.ns += process.hrtime.bigint() - t0;
    if (r.done === true) {
      count(this);
      return r.value;
    }
    input = yield r.value;
  }
};

setInsnCachePolicy((process.env['VAC_INSN_CACHE'] ?? 'auto') as InsnCachePolicy);
setLazyLookup(process.env['VAC_LAZY_LOOKUP'] !== 'off');
setDecodedForms(process.env['VAC_DECODED_FORMS'] !== '0');
const machine = process.argv.length > 2 ? process.argv.slice(2) : ['-M', 'pc'];
const dir = mkdtempSync(join(tmpdir(), 'vac-seabios-boot-'));
const d = await startDaemon({ runDir: dir, host: { cpus: 2, modules: [{ name: 'kvm0' }], symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
const preload = preloadLibrary({ ...process.env, VAC_CACHE_DIR: dir });
const log = join(dir, 'seabios.log');
const argv = ['-accel', 'kvm', ...machine, '-m', '64', '-display', 'none', '-nographic', '-serial', 'none', '-monitor', 'none', '-no-reboot'];
argv.push('-chardev', `file,id=d,path=${log}`, '-device', 'isa-debugcon,iobase=0x402,chardev=d');
const host = d.host();
const clockNs = (): number => Number(host.clock.now);
const lines: { wallMs: number; simMs: number; insns: number; text: string }[] = [];
const insnsNow = (): number => [...vcpus].reduce((a, v) => a + v.stats.instructions, 0);
const t0 = process.hrtime.bigint();
const real = process.env['REAL_KVM'] === '1';
const env = real ? process.env : { ...process.env, LD_PRELOAD: preload, VAC_SOCKET: socketPaths(d.runDir).bridge };
const child = spawn('qemu-system-x86_64', argv, { env, stdio: 'ignore' });
await new Promise<void>((resolve) => {
  let seen = 0;
  const timer = setInterval(() => {
    const text = existsSync(log) ? readFileSync(log, 'utf8') : '';
    const all = text.split('\n');
    for (; seen < all.length - 1; seen++) lines.push({ wallMs: Number(process.hrtime.bigint() - t0) / 1e6, simMs: clockNs() / 1e6, insns: insnsNow(), text: all[seen]! });
    if (/^Booting from ca00:/m.test(text)) {
      clearInterval(timer);
      child.kill('SIGTERM');
    }
  }, 20);
  child.on('close', () => {
    clearInterval(timer);
    resolve();
  });
});
const wallNs = process.hrtime.bigint() - t0;
let instructions = 0;
const perVcpu: string[] = [];
for (const v of vcpus) {
  instructions += v.stats.instructions;
  perVcpu.push(`vcpu ${v.id}: ${JSON.stringify(v.stats)}`);
}
await d.stop();
const ms = (ns: bigint | number): string => (Number(ns) / 1e6).toFixed(0);
const cpu = process.cpuUsage();
console.log(`machine: ${machine.join(' ')}; insn cache policy ${process.env['VAC_INSN_CACHE'] ?? 'auto'}, decoded forms ${process.env['VAC_DECODED_FORMS'] === '0' ? 'off' : 'on'}; guest-memory fast path ${process.env['VAC_LAZY_LOOKUP'] ?? 'on'}; this process's CPU time ${((cpu.user + cpu.system) / 1e3).toFixed(0)} ms`);
console.log(`wall ${ms(wallNs)} ms; inside KVM_RUN ${ms(counters.ns)} ms (${counters.calls} calls, ${counters.eintr} EINTR); outside ${ms(wallNs - counters.ns)} ms`);
console.log(`guest instructions ${instructions}; ${(instructions / (Number(counters.ns) / 1e9) / 1e6).toFixed(2)} M/s inside KVM_RUN; simulated clock ${(clockNs() / 1e6).toFixed(0)} ms`);
console.log(`exits: ${[...counters.byReason].map(([k, n]) => `${k} ${n}`).join(', ')}`);
console.log(`top ports: ${[...counters.byPort].sort((a, b) => b[1] - a[1]).slice(0, 15).map(([k, n]) => `${k}: ${n}`).join('; ')}`);
for (const p of perVcpu) console.log(p);
console.log(`insn cache: ${JSON.stringify(insnCacheStats)}`);
for (const l of lines) console.log(`${l.wallMs.toFixed(0).padStart(6)} ms wall ${l.simMs.toFixed(0).padStart(6)} ms sim ${(l.insns / 1e6).toFixed(2).padStart(6)} M insns  ${l.text}`);
