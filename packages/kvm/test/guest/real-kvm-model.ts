/**
 * Runs a recorded snippet (fixtures/cases.ts, fixtures/pm-cases.ts) on the model through its /dev/kvm0 with the
 * ioctls the recorder (fixtures/recorder/snippet.c) made, and returns what the recorder would have printed.
 */
import { O_RDWR } from '@vac/core';
import { intel } from '@vac/vmx';
import {
  KVM_CREATE_VM,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_MMIO,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_RUN,
  KVM_SET_CPUID2,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SREGS_SEGMENTS,
  createRealModeVcpu,
  kvm,
  makeKvmCpuid2,
  makeKvmRegs,
  makeKvmSregs,
  type kvm_segment,
} from '../../src/index.js';
import { makeHost, vmmProcess } from '../module/helpers.js';
import type { RealKvmCase } from './fixtures/cases.js';

/** What the recorder printed for one case (the fields the tests compare). */
export interface Recorded {
  readonly exits: readonly Record<string, unknown>[];
  readonly regs: Readonly<Record<string, string>>;
  readonly sregs: Readonly<Record<string, unknown>>;
  readonly memory: Readonly<Record<string, string>>;
}

/** A segment register as the recorder prints it. */
function segmentOf(g: kvm_segment): Record<string, unknown> {
  return { base: hex(g.base), limit: hex(g.limit), selector: hex(g.selector), type: g.type, present: g.present, dpl: g.dpl, db: g.db, s: g.s, l: g.l, g: g.g, avl: g.avl, unusable: g.unusable };
}

const IVT_LAYOUT = (() => {
  const ivt = new Uint8Array(0x400);
  for (let v = 0; v < 256; v++) {
    ivt[v * 4] = (0x3000 + v) & 0xff;
    ivt[v * 4 + 1] = (0x3000 + v) >> 8;
  }
  return ivt;
})();

export const fromHex = (h: string): number[] => (h.match(/../g) ?? []).map((b) => parseInt(b, 16));
export const hex = (v: bigint | number): string => `0x${v.toString(16)}`;
export const REGS = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'rip', 'rflags'] as const;

/** Runs case `c` on the model and returns what the recorder would have printed (the compared fields). */
export function runOnModel(c: RealKvmCase): Recorded {
  const host = makeHost(intel());
  host.modprobe(kvm({ postfix: '0' }));
  const proc = vmmProcess(host);
  const sys = proc.open('/dev/kvm0', O_RDWR);
  const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
  const slots = c.slots ?? [[0, 0x100000]];
  const maps = slots.map(([gpa, size], i) => {
    const m = proc.mmapAnonymous(size);
    proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: i, flags: 0, guest_phys_addr: gpa, memory_size: size, userspace_addr: m.addr });
    return { gpa, size, bytes: m.bytes };
  });
  const poke = (gpa: number, bytes: readonly number[] | Uint8Array): void => {
    bytes.forEach((b, i) => {
      const s = maps.find((m) => gpa + i >= m.gpa && gpa + i < m.gpa + m.size);
      if (s !== undefined) s.bytes[gpa + i - s.gpa] = b;
    });
  };
  const peek = (gpa: number): number => {
    const s = maps.find((m) => gpa >= m.gpa && gpa < m.gpa + m.size);
    return s === undefined ? 0 : s.bytes[gpa - s.gpa]!;
  };
  if (c.ivt === true) {
    poke(0, IVT_LAYOUT);
    poke(0x3000, new Array<number>(256).fill(0xf4));
  }
  for (const [gpa, bytes] of Object.entries(c.mem ?? {})) poke(Number(gpa), fromHex(bytes));
  poke(0x1000, fromHex(c.code));
  const regs: Record<string, bigint> = c.ivt === true ? { rsp: 0x8000n } : {};
  for (const [k, v] of Object.entries(c.regs ?? {})) regs[k] = BigInt(v);
  const { fd, run } = createRealModeVcpu(proc, sys, vm, { regs });
  if (c.segs !== undefined || c.sregs !== undefined) {
    const s = makeKvmSregs();
    proc.ioctl(fd, KVM_GET_SREGS, s);
    for (const [k, v] of Object.entries(c.sregs ?? {})) {
      if (k === 'idt.limit') s.idt.limit = Number(v);
      else if (k === 'cr0') s.cr0 = BigInt(v);
    }
    proc.ioctl(fd, KVM_SET_SREGS, s);
  }
  if (c.cpuid !== undefined) {
    proc.ioctl(fd, KVM_SET_CPUID2, makeKvmCpuid2(c.cpuid.map(([fn, index, flags, eax, ebx, ecx, edx]) => ({ function: fn!, index: index!, flags: flags!, eax: eax!, ebx: ebx!, ecx: ecx!, edx: edx! }))));
  }
  const getRegs = (): Record<string, string> => {
    const r = makeKvmRegs();
    proc.ioctl(fd, KVM_GET_REGS, r);
    return Object.fromEntries(REGS.map((k) => [k, hex(r[k])]));
  };
  const exits: Record<string, unknown>[] = [];
  const ins = [...(c.in ?? [])];
  const mmios = [...(c.mmio ?? [])];
  for (let n = 0; n < (c.exits ?? 16); n++) {
    proc.ioctl(fd, KVM_RUN, 0);
    const e: Record<string, unknown> = { reason: run.exit_reason };
    let stop = false;
    if (run.exit_reason === KVM_EXIT_IO) {
      const len = run.io.size * run.io.count;
      const d = run.bytes.subarray(run.io.data_offset, run.io.data_offset + len);
      e['io'] = { direction: run.io.direction, size: run.io.size, port: run.io.port, count: run.io.count, data: run.io.direction === 1 ? Buffer.from(d).toString('hex') : '' };
      if (run.io.direction === 0) {
        d.fill(0);
        const answer = ins.shift();
        if (answer !== undefined) d.set(fromHex(answer).slice(0, len));
      }
    } else if (run.exit_reason === KVM_EXIT_MMIO) {
      e['mmio'] = { phys_addr: hex(run.mmio.phys_addr), len: run.mmio.len, is_write: run.mmio.is_write, data: run.mmio.is_write ? Buffer.from(run.mmio.data.subarray(0, run.mmio.len)).toString('hex') : '' };
      if (!run.mmio.is_write) {
        run.mmio.data.fill(0);
        const answer = mmios.shift();
        if (answer !== undefined) run.mmio.data.set(fromHex(answer));
      }
    } else stop = true;
    e['regs'] = getRegs();
    exits.push(e);
    if (stop || run.exit_reason === KVM_EXIT_INTERNAL_ERROR) break;
  }
  const s = makeKvmSregs();
  proc.ioctl(fd, KVM_GET_SREGS, s);
  const memory: Record<string, string> = {};
  for (const [gpa, len] of c.dump ?? []) memory[hex(gpa)] = Array.from({ length: len }, (_, i) => peek(gpa + i).toString(16).padStart(2, '0')).join('');
  return {
    exits,
    regs: getRegs(),
    sregs: {
      ...Object.fromEntries(KVM_SREGS_SEGMENTS.map((n) => [n, segmentOf(s[n])])),
      cr0: hex(s.cr0), cr2: hex(s.cr2), cr3: hex(s.cr3), cr4: hex(s.cr4), gdt: { base: hex(s.gdt.base), limit: hex(s.gdt.limit) }, idt: { base: hex(s.idt.base), limit: hex(s.idt.limit) },
    },
    memory,
  };
}

