/**
 * System Management Mode through the ABI (arch/x86/kvm/smm.c, x86.c KVM_SMI and the SMM part of KVM_GET/SET_VCPU_EVENTS):
 * a real-mode guest takes an SMI, its handler — in SMRAM, memory slot address space 1 — relocates SMBASE in the save
 * state and RSMs, and a second SMI lands at the new SMBASE; the save-state layouts, the entry state, the address-space
 * choice, the run flag, the errno of each failure and the state left after it.
 */
import { O_RDWR, createHost, type Host, type HostOptions, type Process } from '@vac/core';
import { expectKernelError } from '@vac/test-support';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_X86_SMM,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VM,
  KVM_EXIT_IO,
  KVM_EXIT_MMIO,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_SHUTDOWN,
  KVM_GET_DIRTY_LOG,
  KVM_GET_MSRS,
  KVM_MEM_LOG_DIRTY_PAGES,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_SREGS2,
  KVM_GET_VCPU_EVENTS,
  KVM_MP_STATE_HALTED,
  KVM_MP_STATE_INIT_RECEIVED,
  KVM_MP_STATE_SIPI_RECEIVED,
  KVM_NMI,
  KVM_RUN,
  KVM_SET_CPUID2,
  KVM_SET_GUEST_DEBUG,
  KVM_SET_MP_STATE,
  KVM_SET_MSRS,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_VCPU_EVENTS,
  KVM_SMI,
  KVM_GUESTDBG_BLOCKIRQ,
  KVM_GUESTDBG_ENABLE,
  createRealModeVcpu,
  kvm,
  makeKvmCpuid2,
  makeKvmDirtyLog,
  makeKvmGuestDebug,
  makeKvmMsrs,
  makeKvmRegs,
  makeKvmSregs,
  makeKvmSregs2,
  makeKvmVcpuEvents,
  msrIndexList,
  parseSavedVcpu,
  restoreVcpu,
  saveVcpu,
  vcpuOf,
  type RealModeVcpu,
} from '../../src/index.js';

const VENDORS = [
  { name: 'intel', hardware: (): HostOptions['hardware'] => intel() },
  { name: 'amd', hardware: (): HostOptions['hardware'] => amd() },
] as const;

const MSR_IA32_SMBASE = 0x9e;
const KVM_VCPUEVENT_VALID_SMM = 8;
const KVM_RUN_X86_SMM = 1;

/** `mov dword [addr32], imm32` in 16-bit code (66 67 C7 05 disp32 imm32). */
function movDword(addr: number, value: number): number[] {
  const le = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];
  return [0x66, 0x67, 0xc7, 0x05, ...le(addr), ...le(value)];
}
const out = (port: number) => [0xe6, port]; // OUT imm8, AL
const RSM = [0x0f, 0xaa];
const HLT = [0xf4];

/** The guest: AX = 0x1234, then OUT 0x10, OUT 0x11, OUT 0x12, HLT (the VMM sends SMIs at the exits). */
const MAIN = [0xb8, 0x34, 0x12, ...out(0x10), ...out(0x11), ...out(0x12), ...HLT];

interface SmmVm {
  readonly host: Host;
  readonly p: Process;
  readonly sys: number;
  readonly vm: number;
  /** Address space 0: 1 MiB at GPA 0. */
  readonly ram: Uint8Array;
  /** Address space 1: SMRAM, 128 KiB at GPA 0x30000. */
  readonly smram: Uint8Array;
  /** The VMM's address of {@link SmmVm.smram}. */
  readonly smramAddr: number;
  readonly cpu: RealModeVcpu;
}

/**
 * A VM with RAM at 0 (address space 0) and SMRAM at 0x30000–0x4ffff (address space 1). SMRAM holds two handlers: at
 * 0x38000 (SMBASE 0x30000) one that relocates SMBASE to 0x40000 (the 32-bit save state's `smbase`, or the 64-bit
 * one's with `longMode`), signals with OUT 0x30 and RSMs; at 0x48000 one that signals with OUT 0x31 and RSMs. RAM at
 * 0x38000 holds OUT 0x99: executing it would mean SMM ran on the wrong address space.
 */
function smmVm(hardware: HostOptions['hardware'], opts: { longMode?: boolean; irqchip?: boolean; smramSlot?: boolean } = {}): SmmVm {
  const host = createHost({ cpus: 2, hardware });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const sys = p.open('/dev/kvm0', O_RDWR);
  return smmVmOn(host, p, sys, opts);
}

function smmVmOn(host: Host, p: Process, sys: number, opts: { longMode?: boolean; irqchip?: boolean; smramSlot?: boolean; ram?: Uint8Array; smram?: Uint8Array } = {}): SmmVm {
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const ramMap = p.mmapAnonymous(0x100000);
  const smramMap = p.mmapAnonymous(0x20000);
  if (opts.ram !== undefined) ramMap.bytes.set(opts.ram);
  else {
    ramMap.bytes.set(MAIN, 0x1000);
    ramMap.bytes.set([...out(0x99), ...HLT], 0x38000);
  }
  if (opts.smram !== undefined) smramMap.bytes.set(opts.smram);
  else {
    const smbaseField = opts.longMode === true ? 0x3ff00 : 0x3fef8;
    smramMap.bytes.set([...movDword(smbaseField, 0x40000), ...out(0x30), ...RSM], 0x8000);
    smramMap.bytes.set([...out(0x31), ...RSM], 0x18000);
  }
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x100000, userspace_addr: ramMap.addr });
  if (opts.smramSlot !== false) {
    p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 1 << 16, flags: 0, guest_phys_addr: 0x30000, memory_size: 0x20000, userspace_addr: smramMap.addr });
  }
  if (opts.irqchip === true) p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
  const cpu = createRealModeVcpu(p, sys, vm, { guestPhysAddr: 0x1000, regs: { rsp: 0x8000n } });
  if (opts.longMode === true) {
    // CPUID 0x80000001: EDX.LM (29), so the save state has the 64-bit layout.
    p.ioctl(cpu.fd, KVM_SET_CPUID2, makeKvmCpuid2([{ function: 0x80000000, index: 0, flags: 0, eax: 0x80000001, ebx: 0, ecx: 0, edx: 0 }, { function: 0x80000001, index: 0, flags: 0, eax: 0, ebx: 0, ecx: 0, edx: 1 << 29 }]));
  }
  return { host, p, sys, vm, ram: ramMap.bytes, smram: smramMap.bytes, smramAddr: smramMap.addr, cpu };
}

/** A VM whose SMI handler (at SMBASE + 0x8000) is `handler`; the guest has run to OUT 0x10 and been sent an SMI. */
function smiWithHandler(hardware: HostOptions['hardware'], handler: readonly number[], opts: { longMode?: boolean } = {}): SmmVm {
  const smram = new Uint8Array(0x20000);
  smram.set(handler, 0x8000);
  const base = smmVm(hardware);
  const g = smmVmOn(base.host, base.p, base.sys, { smram, ...opts });
  runToOut(g, 0x10);
  g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
  return g;
}

/** The NMI handler (IVT vector 2 in address space 0) at 0x3000: OUT 0x22, IRET. */
function nmiHandler(g: SmmVm): void {
  g.ram.set([0x00, 0x30, 0x00, 0x00], 2 * 4);
  g.ram.set([...out(0x22), 0xcf], 0x3000);
}

/** KVM_RUN, expecting an OUT to `port`. */
function runToOut(g: SmmVm, port: number): void {
  expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
  expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_IO);
  expect(g.cpu.run.io.port).toBe(port);
}

/** The ports of the next `n` OUT exits, calling KVM_RUN again after each EINTR (as a VMM does after a signal). */
function outsThroughEintr(g: SmmVm, n: number): number[] {
  const ports: number[] = [];
  while (ports.length < n) {
    try {
      g.p.ioctl(g.cpu.fd, KVM_RUN, 0);
    } catch (e) {
      expect(e).toMatchObject({ code: 'EINTR' });
      continue;
    }
    expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_IO);
    ports.push(g.cpu.run.io.port);
  }
  return ports;
}

function events(g: SmmVm) {
  const ev = makeKvmVcpuEvents();
  g.p.ioctl(g.cpu.fd, KVM_GET_VCPU_EVENTS, ev);
  return ev;
}

function smbaseMsr(g: SmmVm): bigint {
  const m = makeKvmMsrs([{ index: MSR_IA32_SMBASE, data: 0n }]);
  expect(g.p.ioctl(g.cpu.fd, KVM_GET_MSRS, m)).toBe(1);
  return m.entries[0]!.data;
}

function regs(g: SmmVm) {
  const r = makeKvmRegs();
  g.p.ioctl(g.cpu.fd, KVM_GET_REGS, r);
  return r;
}

function sregs(g: SmmVm) {
  const s = makeKvmSregs();
  g.p.ioctl(g.cpu.fd, KVM_GET_SREGS, s);
  return s;
}

const u32 = (b: Uint8Array, at: number) => new DataView(b.buffer, b.byteOffset).getUint32(at, true);

describe.each(VENDORS)('SMM on $name', ({ name, hardware }) => {
  test('KVM_CAP_X86_SMM is 1 and KVM_CAP_MULTI_ADDRESS_SPACE 2, on the system and the VM fd; MSR_IA32_SMBASE is in the MSR list', () => {
    const g = smmVm(hardware());
    for (const fd of [g.sys, g.vm]) {
      expect(g.p.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_X86_SMM)).toBe(1);
      expect(g.p.ioctl(fd, KVM_CHECK_EXTENSION, KVM_CAP_MULTI_ADDRESS_SPACE)).toBe(2);
    }
    expect(msrIndexList(g.p, g.sys)).toContain(MSR_IA32_SMBASE);
  });

  test('an SMI at an OUT: the 32-bit save state, the entry state in SMRAM (address space 1), SMBASE relocation by the handler, RSM, and a second SMI at the new SMBASE', () => {
    const g = smmVm(hardware());
    runToOut(g, 0x10);
    expect(g.p.ioctl(g.cpu.fd, KVM_SMI, 0)).toBe(0);
    // KVM_GET_VCPU_EVENTS processes KVM_REQ_SMI: pending, not yet in SMM.
    let ev = events(g);
    expect(ev.flags & KVM_VCPUEVENT_VALID_SMM).toBe(KVM_VCPUEVENT_VALID_SMM);
    expect([ev.smi.smm, ev.smi.pending, ev.smi.smm_inside_nmi, ev.smi.latched_init]).toEqual([0, 1, 0, 0]);
    runToOut(g, 0x30);
    // In SMM: the handler at SMBASE + 0x8000 of SMRAM ran (not the OUT 0x99 of RAM at 0x38000).
    expect(g.cpu.run.flags & KVM_RUN_X86_SMM).toBe(KVM_RUN_X86_SMM);
    ev = events(g);
    expect([ev.smi.smm, ev.smi.pending]).toEqual([1, 0]);
    const s = sregs(g);
    expect([s.cs.selector, s.cs.base, s.cs.limit, s.cs.type, s.cs.g, s.cs.db]).toEqual([0x3000, 0x30000n, 0xffffffff, 3, 1, 0]);
    expect([s.ds.selector, s.ds.base, s.ds.limit, s.ss.base]).toEqual([0, 0n, 0xffffffff, 0n]);
    expect(s.cr0 & 0x8000000dn).toBe(0n);
    expect([s.cr4, s.idt.base, s.idt.limit]).toEqual([0n, 0n, 0]);
    const r = regs(g);
    expect(r.rip).toBe(0x8000n + 12n); // at the OUT (the model completes it at the next KVM_RUN)
    expect(r.rflags).toBe(2n);
    expect(r.rax & 0xffffn).toBe(0x1234n); // the general registers are not touched
    // The save state (32-bit layout) at SMBASE + 0xFE00 of SMRAM: the handler already rewrote smbase.
    const area = g.smram.subarray(0xfe00, 0x10000);
    expect(u32(area, 0xfc)).toBe(0x00020000); // smm_revision
    expect(u32(area, 0xf8)).toBe(0x40000); // smbase (relocated by the handler)
    expect(u32(area, 0x1f0)).toBe(0x1005); // eip: past the OUT 0x10
    expect(u32(area, 0x1d0)).toBe(0x1234); // eax
    expect(u32(area, 0x1fc)).toBe(0x60000010); // cr0
    expect(u32(area, 0x1f4)).toBe(2); // eflags
    expect(u32(area, 0x1d0 + 4 * 4)).toBe(0x8000); // esp
    expect(g.ram[0x3fefc]).toBe(0); // nothing written to RAM
    // MSR_IA32_SMBASE changes at RSM, not before.
    expect(smbaseMsr(g)).toBe(0x30000n);
    runToOut(g, 0x11);
    expect(g.cpu.run.flags & KVM_RUN_X86_SMM).toBe(0);
    expect(events(g).smi.smm).toBe(0);
    expect(smbaseMsr(g)).toBe(0x40000n);
    const back = sregs(g);
    expect([back.cs.selector, back.cs.base, back.cs.limit, back.cr0]).toEqual([0, 0n, 0xffff, 0x60000010n]);
    expect(regs(g).rip).toBe(0x1005n); // at OUT 0x11
    // The second SMI enters at the new SMBASE: the handler at 0x48000.
    expect(g.p.ioctl(g.cpu.fd, KVM_SMI, 0)).toBe(0);
    runToOut(g, 0x31);
    expect(sregs(g).cs.base).toBe(0x40000n);
    expect(u32(g.smram, 0x1fe00 + 0x1f0)).toBe(0x1007); // its save area is at 0x4fe00: past OUT 0x11
    runToOut(g, 0x12);
    expect(vcpuOf(g.p, g.cpu.fd).smm).toBe(false);
  });

  test('dirty logging on an SMRAM slot (address space 1): the save state and the handler\'s writes are logged; KVM_GET_DIRTY_LOG takes as_id 1, EINVAL from 2', () => {
    const g = smmVm(hardware());
    g.p.ioctl(g.vm, KVM_SET_USER_MEMORY_REGION, { slot: 1 << 16, flags: KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0x30000, memory_size: 0x20000, userspace_addr: g.smramAddr });
    const bitmap = new Uint8Array(8);
    expect(g.p.ioctl(g.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 1 << 16, dirty_bitmap: bitmap }))).toBe(0);
    expect([...bitmap]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]);
    runToOut(g, 0x10);
    g.p.ioctl(g.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 1 << 16, dirty_bitmap: bitmap }));
    expect([...bitmap]).toEqual([0, 0, 0, 0, 0, 0, 0, 0]); // nothing in SMM yet
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30);
    g.p.ioctl(g.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 1 << 16, dirty_bitmap: bitmap }));
    expect(bitmap[1]).toBe(0x80); // page 15 (0x3f000): the save state KVM wrote, then the handler's smbase write
    expectKernelError(g.host, () => g.p.ioctl(g.vm, KVM_GET_DIRTY_LOG, makeKvmDirtyLog({ slot: 2 << 16, dirty_bitmap: bitmap })), 'EINVAL');
  });

  test('a guest with long mode in CPUID gets the 64-bit save state (revision 0x00020064, smbase at 0xFF00)', () => {
    const g = smmVm(hardware(), { longMode: true });
    runToOut(g, 0x10);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30);
    const area = g.smram.subarray(0xfe00, 0x10000);
    expect(u32(area, 0xfc)).toBe(0x00020064);
    expect(u32(area, 0x100)).toBe(0x40000); // smbase, rewritten by the handler
    expect(u32(area, 0x178)).toBe(0x1005); // rip
    expect(u32(area, 0x1f8)).toBe(0x1234); // rax (gprs[15])
    expect(u32(area, 0x158)).toBe(0x60000010); // cr0
    expect(area[0x12]! | (area[0x13]! << 8)).toBe(0x009b); // CS attributes at reset: present, S, type 0xb
    runToOut(g, 0x11);
    expect(smbaseMsr(g)).toBe(0x40000n);
    expect(regs(g).rax & 0xffffn).toBe(0x1234n);
  });

  test(`a 64-bit save state whose svm_guest_flag asks for an L2 guest: ${name === 'amd' ? 'RSM fails (no SVM in the guest\'s CPUID): shutdown' : 'VMX has no such field, RSM returns'}`, () => {
    const smram = new Uint8Array(0x20000);
    smram.set([...movDword(0x3fed8, 1), ...RSM], 0x8000); // svm_guest_flag (0xFED8)
    const base = smmVm(hardware());
    const g = smmVmOn(base.host, base.p, base.sys, { smram, longMode: true });
    runToOut(g, 0x10);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    if (name === 'amd') {
      expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
      expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_SHUTDOWN);
    } else runToOut(g, 0x11);
  });

  test('an SMI while in SMM stays pending until RSM, then is taken', () => {
    const g = smmVm(hardware());
    runToOut(g, 0x10);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    expect([events(g).smi.smm, events(g).smi.pending]).toEqual([1, 1]);
    // RSM relocates to 0x40000; the latched SMI is taken right after it, at the new SMBASE, before OUT 0x11.
    runToOut(g, 0x31);
    expect(u32(g.smram, 0x1fe00 + 0x1f0)).toBe(0x1005);
    runToOut(g, 0x11);
  });

  test('KVM_GUESTDBG_BLOCKIRQ holds an SMI (kvm_check_and_inject_events returns before it): the guest runs on with it pending; clearing BLOCKIRQ lets the next entry take it', () => {
    const g = smmVm(hardware());
    runToOut(g, 0x10);
    g.p.ioctl(g.cpu.fd, KVM_SET_GUEST_DEBUG, makeKvmGuestDebug({ control: KVM_GUESTDBG_ENABLE | KVM_GUESTDBG_BLOCKIRQ }));
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x11);
    expect([events(g).smi.smm, events(g).smi.pending]).toEqual([0, 1]);
    g.p.ioctl(g.cpu.fd, KVM_SET_GUEST_DEBUG, makeKvmGuestDebug({ control: 0 }));
    runToOut(g, 0x30);
    runToOut(g, 0x12);
  });

  test('an SMI beside an NMI being injected: the NMI is injected again first (an immediate exit), the SMI comes before the NMI handler\'s first instruction', () => {
    const g = smmVm(hardware());
    nmiHandler(g);
    runToOut(g, 0x10);
    const ev = events(g);
    ev.flags = 0;
    ev.nmi.injected = 1;
    g.p.ioctl(g.cpu.fd, KVM_SET_VCPU_EVENTS, ev);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30);
    expect(u32(g.smram, 0xfe00 + 0x1f0)).toBe(0x3000); // the save state's EIP: the NMI handler's first instruction
    runToOut(g, 0x22);
    runToOut(g, 0x11);
  });

  test('NMIs are blocked in SMM: an NMI sent there stays pending until RSM, then is injected before the next instruction', () => {
    const g = smmVm(hardware());
    nmiHandler(g);
    runToOut(g, 0x10);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30);
    g.p.ioctl(g.cpu.fd, KVM_NMI, 0);
    const ev = events(g);
    expect([ev.smi.smm, ev.smi.smm_inside_nmi, ev.nmi.pending, ev.nmi.masked]).toEqual([1, 0, 1, 1]);
    runToOut(g, 0x22); // RSM unblocked NMIs; the pending one came at once
    expect([events(g).smi.smm, events(g).nmi.masked]).toEqual([0, 1]);
    runToOut(g, 0x11);
    expect(events(g).nmi.masked).toBe(0);
  });

  test('an SMI inside an NMI handler: smm_inside_nmi, RSM leaves NMIs blocked, the handler\'s IRET unblocks them', () => {
    const g = smmVm(hardware());
    g.ram.set([0x00, 0x30, 0x00, 0x00], 2 * 4);
    g.ram.set([...out(0x22), ...out(0x23), 0xcf], 0x3000);
    g.p.ioctl(g.cpu.fd, KVM_NMI, 0);
    runToOut(g, 0x22);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30);
    expect([events(g).smi.smm_inside_nmi, events(g).nmi.masked]).toEqual([1, 1]);
    g.p.ioctl(g.cpu.fd, KVM_NMI, 0);
    runToOut(g, 0x23); // back in the NMI handler after RSM: still blocked
    expect([events(g).smi.smm, events(g).smi.smm_inside_nmi, events(g).nmi.pending, events(g).nmi.masked]).toEqual([0, 0, 1, 1]);
    runToOut(g, 0x22); // its IRET unblocked them: the pending NMI
    runToOut(g, 0x23);
    runToOut(g, 0x10);
  });

  test('an SMI sent while an MMIO read waits for user space comes right after that instruction completes, at the same entry', () => {
    const ram = new Uint8Array(0x100000);
    // mov ax, 0xffff; mov ds, ax; mov al, [0x10] (GPA 0x100000, past the RAM: KVM_EXIT_MMIO); out 0x10; hlt
    ram.set([0xb8, 0xff, 0xff, 0x8e, 0xd8, 0xa0, 0x10, 0x00, ...out(0x10), ...HLT], 0x1000);
    const base = smmVm(hardware());
    const g = smmVmOn(base.host, base.p, base.sys, { ram });
    expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
    expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_MMIO);
    g.cpu.run.mmio.data[0] = 0x5a;
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30); // complete_userspace_io first, then the SMI at this entry
    expect(u32(g.smram, 0xfe00 + 0x1f0)).toBe(0x1008); // the saved EIP: past the MOV
    expect(u32(g.smram, 0xfe00 + 0x1d0) & 0xff).toBe(0x5a); // the saved EAX: the MMIO data loaded
    runToOut(g, 0x10);
  });

  test('an SMI sent while a string IN waits for its data comes after the data is stored, at the same entry', () => {
    const ram = new Uint8Array(0x100000);
    // mov dx, 0x60; mov di, 0x500; insb; out 0x10; hlt
    ram.set([0xba, 0x60, 0x00, 0xbf, 0x00, 0x05, 0x6c, ...out(0x10), ...HLT], 0x1000);
    const base = smmVm(hardware());
    const g = smmVmOn(base.host, base.p, base.sys, { ram });
    expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
    expect([g.cpu.run.exit_reason, g.cpu.run.io.port]).toEqual([KVM_EXIT_IO, 0x60]);
    g.cpu.run.bytes[g.cpu.run.io.data_offset] = 0xa5;
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30);
    expect(g.ram[0x500]).toBe(0xa5);
    expect(u32(g.smram, 0xfe00 + 0x1f0)).toBe(0x1007); // past the INSB
    runToOut(g, 0x10);
  });

  test('an SMI and an exception injected at the same entry: the exception alone, an immediate exit (KVM_RUN can end there), then the SMI before the handler\'s first instruction', () => {
    // kvm_check_and_inject_events: with the exception injected can_inject is false, smi_pending → -EBUSY →
    // req_immediate_exit. A kvm0 with syncRunLimit 1 ends the KVM_RUN at that exit (EINTR), as a signal would.
    const host = createHost({ cpus: 2, hardware: hardware() });
    host.modprobe(kvm({ postfix: '0', syncRunLimit: 1 }));
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const g = smmVmOn(host, p, p.open('/dev/kvm0', O_RDWR));
    g.ram.set([0x00, 0x20, 0x00, 0x00], 6 * 4); // #UD → 0x2000: out 0x66; hlt
    g.ram.set([...out(0x66), ...HLT], 0x2000);
    const ev = events(g);
    ev.exception.injected = 1;
    ev.exception.nr = 6;
    g.p.ioctl(g.cpu.fd, KVM_SET_VCPU_EVENTS, ev);
    expect(g.p.ioctl(g.cpu.fd, KVM_SMI, 0)).toBe(0);
    expect(() => g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }));
    const between = events(g);
    expect([between.exception.injected, between.smi.smm, between.smi.pending]).toEqual([0, 0, 1]);
    expect(regs(g).rip).toBe(0x2000n);
    // The next runs (each KVM_RUN of this kvm0 ends after one pass, EINTR, and the VMM calls it again): the SMI
    // handler, before the #UD handler's first instruction; RSM returns to it.
    expect(outsThroughEintr(g, 2)).toEqual([0x30, 0x66]);
  });

  test('RSM outside SMM is #UD', () => {
    const ram = new Uint8Array(0x100000);
    ram.set([...RSM, ...HLT], 0x1000);
    ram.set([...out(0x66), ...HLT], 0x2000); // #UD handler
    ram.set([0x00, 0x20, 0x00, 0x00], 6 * 4);
    const base = smmVm(hardware());
    const g = smmVmOn(base.host, base.p, base.sys, { ram });
    runToOut(g, 0x66);
  });

  test('an SMI with no SMRAM at SMBASE + 0xFE00 kills the VM (KVM_RUN EIO, then every ioctl EIO)', () => {
    const g = smmVm(hardware(), { smramSlot: false });
    runToOut(g, 0x10);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    expect(() => g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EIO' }));
    expect(() => g.p.ioctl(g.cpu.fd, KVM_GET_REGS, makeKvmRegs())).toThrow(expect.objectContaining({ code: 'EIO' }));
  });

  test('a save state RSM cannot load (CR0.PG without PE) is a triple fault: KVM_EXIT_SHUTDOWN', () => {
    const g = smiWithHandler(hardware(), [...movDword(0x3fffc, 0x80000010), ...RSM]);
    expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
    expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_SHUTDOWN);
    // The vCPU left SMM before the load failed; the registers loaded before the failure stay.
    expect(vcpuOf(g.p, g.cpu.fd).smm).toBe(false);
    expect(regs(g).rip).toBe(0x1005n);
  });

  test('RSM loads CR3, then CR4, then CR0 through KVM\'s setters: a refused CR4 shuts down with CR3 already loaded and CR0 not', () => {
    // The handler edits the 32-bit save state: CR3 = 0x5000, CR4 = bit 30 (reserved), CR0 = 0x11 (PE, ET).
    const g = smiWithHandler(hardware(), [...movDword(0x3fff8, 0x5000), ...movDword(0x3ff14, 0x4000_0000), ...movDword(0x3fffc, 0x11), ...RSM]);
    expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
    expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_SHUTDOWN);
    const s = sregs(g);
    expect([s.cr3, s.cr4, s.cr0 & 1n]).toEqual([0x5000n, 0n, 0n]);
  });

  test('RSM loads CR0 as kvm_set_cr0 does: ET set, reserved bits dropped (KVM_SET_SREGS would keep them)', () => {
    const g = smiWithHandler(hardware(), [...movDword(0x3fffc, 0x60), ...out(0x30), ...RSM]); // NE and reserved bit 6
    runToOut(g, 0x30);
    runToOut(g, 0x11);
    expect(sregs(g).cr0).toBe(0x30n);
  });

  test.each([
    ['a reserved bit (5) in a present PDPTE: kvm_set_cr0 refuses, shutdown with CR3 and CR4 loaded and paging off', 0x6021n],
    ['valid PDPTEs: paging starts (the interpreter stops there: an emulation failure), the PDPTRs loaded', 0x6001n],
  ])('RSM into PAE paging (load_pdptrs from rsm_enter_protected_mode\'s kvm_set_cr0), %s', (_what, pdpte) => {
    // The handler edits the 32-bit save state: CR3 = 0x5000, CR4 = PAE, CR0 = PG | ET | PE. The PDPT is in RAM.
    const g = smiWithHandler(hardware(), [...movDword(0x3fff8, 0x5000), ...movDword(0x3ff14, 0x20), ...movDword(0x3fffc, 0x80000011), ...RSM]);
    new DataView(g.ram.buffer, g.ram.byteOffset).setBigUint64(0x5000, pdpte, true);
    expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
    const s = makeKvmSregs2();
    g.p.ioctl(g.cpu.fd, KVM_GET_SREGS2, s);
    if (pdpte === 0x6021n) {
      expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_SHUTDOWN);
      expect([s.cr3, s.cr4, s.cr0 & (1n << 31n)]).toEqual([0x5000n, 0x20n, 0n]);
    } else {
      expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_INTERNAL_ERROR);
      expect([s.cr3, s.cr4, s.cr0 & (1n << 31n)]).toEqual([0x5000n, 0x20n, 1n << 31n]);
      expect(s.pdptrs).toEqual([0x6001n, 0n, 0n, 0n]);
    }
  });

  test('a 64-bit save state with CR3 above MAXPHYADDR is refused even without paging (kvm_set_cr3): shutdown', () => {
    const g = smiWithHandler(hardware(), [...movDword(0x3ff54, 0x0010_0000), ...RSM], { longMode: true }); // CR3 bit 52
    expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
    expect(g.cpu.run.exit_reason).toBe(KVM_EXIT_SHUTDOWN);
  });

  test('KVM_SET_VCPU_EVENTS with VALID_SMM: into SMM and out (the memory follows), an SMI pending; EINVAL in INIT_RECEIVED, nothing changed', () => {
    const g = smmVm(hardware(), { irqchip: true });
    const ev = events(g);
    ev.flags = KVM_VCPUEVENT_VALID_SMM;
    ev.smi.smm = 1;
    ev.smi.smm_inside_nmi = 1;
    expect(g.p.ioctl(g.cpu.fd, KVM_SET_VCPU_EVENTS, ev)).toBe(0);
    expect(vcpuOf(g.p, g.cpu.fd).smm).toBe(true);
    expect([events(g).smi.smm, events(g).smi.smm_inside_nmi]).toEqual([1, 1]);
    // In SMM the vCPU's memory is address space 1: SMRAM at 0x38000, not the RAM of address space 0.
    expect(vcpuOf(g.p, g.cpu.fd).memory.read8(0x38000)).toBe(g.smram[0x8000]);
    ev.smi.smm = 0;
    ev.smi.pending = 1;
    expect(g.p.ioctl(g.cpu.fd, KVM_SET_VCPU_EVENTS, ev)).toBe(0);
    expect([events(g).smi.smm, events(g).smi.pending, events(g).smi.smm_inside_nmi]).toEqual([0, 1, 0]);
    // The pending SMI is taken at the next entry.
    runToOut(g, 0x30);
    // latched_init sets and clears the LAPIC's pending INIT (in SMM it stays latched).
    const e2 = events(g);
    e2.flags = KVM_VCPUEVENT_VALID_SMM;
    e2.smi.latched_init = 1;
    g.p.ioctl(g.cpu.fd, KVM_SET_VCPU_EVENTS, e2);
    expect(events(g).smi.latched_init).toBe(1);
    e2.smi.latched_init = 0;
    g.p.ioctl(g.cpu.fd, KVM_SET_VCPU_EVENTS, e2);
    expect(events(g).smi.latched_init).toBe(0);
    // "INITs are latched while in SMM": no SMM state for a vCPU waiting for SIPI.
    const g2 = smmVmOn(g.host, g.p, g.sys, { irqchip: true });
    const ap = createRealModeVcpu(g.p, g.sys, g2.vm, { id: 1 });
    g.p.ioctl(ap.fd, KVM_SET_MP_STATE, { mp_state: KVM_MP_STATE_INIT_RECEIVED });
    const e3 = makeKvmVcpuEvents();
    g.p.ioctl(ap.fd, KVM_GET_VCPU_EVENTS, e3);
    e3.flags = KVM_VCPUEVENT_VALID_SMM;
    e3.smi.pending = 1;
    expectKernelError(g.host, () => g.p.ioctl(ap.fd, KVM_SET_VCPU_EVENTS, e3), 'EINVAL');
    e3.smi.pending = 0;
    e3.smi.smm = 1;
    expectKernelError(g.host, () => g.p.ioctl(ap.fd, KVM_SET_VCPU_EVENTS, e3), 'EINVAL');
    // And the other way round: KVM_SET_MP_STATE refuses INIT_RECEIVED / SIPI_RECEIVED in SMM or with an SMI pending.
    const ap2 = createRealModeVcpu(g.p, g.sys, g2.vm, { id: 2 });
    const e4 = makeKvmVcpuEvents();
    g.p.ioctl(ap2.fd, KVM_GET_VCPU_EVENTS, e4);
    e4.flags = KVM_VCPUEVENT_VALID_SMM;
    e4.smi.pending = 1;
    g.p.ioctl(ap2.fd, KVM_SET_VCPU_EVENTS, e4);
    expectKernelError(g.host, () => g.p.ioctl(ap2.fd, KVM_SET_MP_STATE, { mp_state: KVM_MP_STATE_INIT_RECEIVED }), 'EINVAL');
    expectKernelError(g.host, () => g.p.ioctl(ap2.fd, KVM_SET_MP_STATE, { mp_state: KVM_MP_STATE_SIPI_RECEIVED }), 'EINVAL');
    e4.smi.pending = 0;
    e4.smi.smm = 1;
    g.p.ioctl(ap2.fd, KVM_SET_VCPU_EVENTS, e4);
    expectKernelError(g.host, () => g.p.ioctl(ap2.fd, KVM_SET_MP_STATE, { mp_state: KVM_MP_STATE_INIT_RECEIVED }), 'EINVAL');
    expect(g.p.ioctl(ap2.fd, KVM_SET_MP_STATE, { mp_state: KVM_MP_STATE_HALTED })).toBe(0);
  });

  test('an INIT sent while in SMM is latched until RSM', () => {
    const g = smmVm(hardware(), { irqchip: true });
    runToOut(g, 0x10);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x30);
    const lapic = vcpuOf(g.p, g.cpu.fd).intr?.chip?.lapic;
    expect(lapic).toBeDefined();
    lapic!.pendingEvents |= 1; // KVM_APIC_INIT, as an INIT IPI leaves it
    expect(events(g).smi.latched_init).toBe(1);
    // RSM, then the INIT is accepted: the BSP is reset to CS 0xf000 (base 0xffff0000), IP 0xfff0 — where there is no
    // memory, so it stops there — instead of going on to OUT 0x11.
    expect(g.p.ioctl(g.cpu.fd, KVM_RUN, 0)).toBe(0);
    expect(events(g).smi.latched_init).toBe(0);
    expect(g.cpu.run.exit_reason).not.toBe(KVM_EXIT_IO);
    expect([sregs(g).cs.selector, sregs(g).cs.base, regs(g).rip]).toEqual([0xf000, 0xffff0000n, 0xfff0n]);
  });

  test('MSR_IA32_SMBASE: host-initiated only (the guest gets #GP), and an SMI enters at the SMBASE user space set', () => {
    const ram = new Uint8Array(0x100000);
    ram.set([0xb9, MSR_IA32_SMBASE, 0x00, 0x0f, 0x32, ...HLT], 0x1000); // mov cx, 0x9e; rdmsr
    ram.set([...out(0x0d), ...HLT], 0x2000); // #GP handler
    ram.set([0x00, 0x20, 0x00, 0x00], 13 * 4);
    const base = smmVm(hardware());
    const g = smmVmOn(base.host, base.p, base.sys, { ram, smram: base.smram });
    runToOut(g, 0x0d);
    expect(g.p.ioctl(g.cpu.fd, KVM_SET_MSRS, makeKvmMsrs([{ index: MSR_IA32_SMBASE, data: 0x40000n }]))).toBe(1);
    expect(smbaseMsr(g)).toBe(0x40000n);
    g.p.ioctl(g.cpu.fd, KVM_SMI, 0);
    runToOut(g, 0x31);
    expect(sregs(g).cs.selector).toBe(0x4000);
  });

  test('a VM saved mid-SMM and restored into a VM of another module goes on: RSM there relocates and returns', () => {
    const a = smmVm(hardware());
    runToOut(a, 0x10);
    a.p.ioctl(a.cpu.fd, KVM_SMI, 0);
    runToOut(a, 0x30);
    const saved = saveVcpu(a.p, a.sys, a.cpu.fd, 0);
    expect(parseSavedVcpu(saved).events.smi.smm).toBe(1);
    const sys1 = a.p.open('/dev/kvm1', O_RDWR);
    const b = smmVmOn(a.host, a.p, sys1, { ram: a.ram, smram: a.smram });
    restoreVcpu(b.p, b.cpu.fd, saved);
    expect(vcpuOf(b.p, b.cpu.fd).smm).toBe(true);
    // The model's vCPU was saved at its OUT 0x30 (RIP at it: docs/fidelity.md), which runs again on the new module;
    // then RSM, then the guest's OUT 0x11.
    runToOut(b, 0x30);
    expect(b.cpu.run.flags & KVM_RUN_X86_SMM).toBe(KVM_RUN_X86_SMM);
    runToOut(b, 0x11);
    expect(smbaseMsr(b)).toBe(0x40000n);
    expect(regs(b).rax & 0xffffn).toBe(0x1234n);
  });
});
