/**
 * `pnpm bench:bridge` (`--quick` for tiny counts): the cost of the /dev/kvm bridge.
 *
 * A real C program (bench/bridge-roundtrip.c) makes the calls through the preload library and a bridge in
 * this process: the median of KVM_GET_REGS (a plain struct ioctl) and of KVM_RUN with one OUT exit per run,
 * with 4 KiB and with 16 MiB of guest RAM, untouched and with every page written by the VMM first (the RAM
 * sync reads the populated pages of every memslot per KVM_RUN: docs/bridge.md).
 * The same calls made directly on the simulated process (`proc.ioctl`) are the baseline; the report gives the
 * ratio. Nothing is asserted about speed. Needs a C compiler.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createHost, O_RDWR } from '@vac/core';
import { KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_REGS, KVM_RUN, KVM_SET_REGS, KVM_SET_SREGS, KVM_GET_SREGS, KVM_SET_USER_MEMORY_REGION, kvm, makeKvmRegs, makeKvmSregs } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { compileC, findCompiler, preloadLibrary, socketPaths, startDaemon } from '../packages/bridge/src/index.js';

const quick = process.argv.includes('--quick');
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

async function bridged(bin: string, preload: string, socket: string, ram: number, touch: boolean): Promise<{ getRegs: number; run: number }> {
  const out = await new Promise<string>((resolve, reject) => {
    const child = spawn(bin, [String(N), String(ram), ...(touch ? ['touch'] : [])], { env: { ...process.env, LD_PRELOAD: preload, VAC_SOCKET: socket }, stdio: ['ignore', 'pipe', 'inherit'] });
    let text = '';
    child.stdout.on('data', (d: Buffer) => {
      text += d.toString();
    });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(text) : reject(new Error(`${bin} exited with ${String(code)}`))));
  });
  const v = (k: string): number => Number(new RegExp(`^${k}=(\\d+)$`, 'm').exec(out)?.[1] ?? NaN);
  return { getRegs: v('get_regs_ns'), run: v('run_ns') };
}

if (findCompiler() === undefined) {
  process.stdout.write('bench:bridge skipped: no C compiler\n');
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'vac-bench-'));
const preload = preloadLibrary({ ...process.env, VAC_CACHE_DIR: dir });
const bin = join(dir, 'roundtrip');
compileC([fileURLToPath(new URL('bridge-roundtrip.c', import.meta.url))], bin, ['-O2']);
const d = await startDaemon({ runDir: dir, host: { cpus: 2, symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
const rows: Array<{ what: string; bridgeUs: number; directUs: number; ratio: number }> = [];
for (const [label, ram, touch] of [['4 KiB', 4096, false], ['16 MiB untouched', 16 * 1024 * 1024, false], ['16 MiB all written', 16 * 1024 * 1024, true]] as const) {
  const b = await bridged(bin, preload, socketPaths(dir).bridge, ram, touch);
  const dd = direct(ram);
  if (label === '4 KiB') rows.push({ what: 'KVM_GET_REGS', bridgeUs: b.getRegs / 1000, directUs: dd.getRegs / 1000, ratio: b.getRegs / dd.getRegs });
  rows.push({ what: `KVM_RUN, one OUT exit, ${label} RAM`, bridgeUs: b.run / 1000, directUs: dd.run / 1000, ratio: b.run / dd.run });
}
await d.stop();
let md = `# /dev/kvm bridge round trip (${quick ? 'quick' : 'full'}, ${N} calls each, medians)\n\n| call | through the bridge (µs) | direct proc.ioctl (µs) | ratio |\n|---|---:|---:|---:|\n`;
for (const r of rows) md += `| ${r.what} | ${r.bridgeUs.toFixed(1)} | ${r.directUs.toFixed(2)} | ${r.ratio.toFixed(0)}× |\n`;
process.stdout.write(md);
const base = fileURLToPath(new URL(`results/bridge${quick ? '-quick' : ''}`, import.meta.url));
writeFileSync(`${base}.md`, md);
writeFileSync(`${base}.json`, `${JSON.stringify({ date: new Date().toISOString(), n: N, rows }, null, 2)}\n`);
