/**
 * Guests and VMs for the interrupt-path tests: a real-mode guest with an IVT (memory from GPA 0), set up through the
 * ABI in the order a VMM uses (KVM_CREATE_VM, memory, KVM_CREATE_IRQCHIP and friends, then the vCPUs).
 */
import { O_RDWR, createHost, type Host, type HostOptions, type Process } from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import {
  KVM_CREATE_VM,
  KVM_SET_USER_MEMORY_REGION,
  Asm16,
  createRealModeVcpu,
  kvm,
  type RealModeVcpu,
} from '../../src/index.js';

/** Both vendors. */
export const VENDORS = [
  { name: 'intel', hardware: (): HostOptions['hardware'] => intel() },
  { name: 'amd', hardware: (): HostOptions['hardware'] => amd() },
] as const;

/** A host with kvm0 (and kvm1 with `two`). */
export function irqHost(hardware: HostOptions['hardware'], opts: { cpus?: number; two?: boolean } = {}): Host {
  const host = createHost({ cpus: opts.cpus ?? 4, hardware });
  host.modprobe(kvm({ postfix: '0' }));
  if (opts.two === true) host.modprobe(kvm({ postfix: '1' }));
  return host;
}

/** A VM whose memory starts at GPA 0 (IVT at 0, code at 0x1000, counters at 0x500). */
export interface IrqVm {
  readonly proc: Process;
  readonly sys: number;
  readonly vm: number;
  readonly mem: Uint8Array;
  /** Make vCPU `id` (after the irqchip set-up), running the code at 0x1000. */
  vcpu(id?: number): RealModeVcpu;
  /** The 16-bit word at `addr`. */
  word(addr: number): number;
}

/** A VM on `dev` with 64 KiB at GPA 0 holding `code` at 0x1000 and `handlers` (vector → offset of a label) in the IVT. */
export function irqVm(proc: Process, dev: string, program: Asm16, handlers: Record<number, string> = {}): IrqVm {
  const sys = proc.open(dev, O_RDWR);
  const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
  const m = proc.mmapAnonymous(0x10000);
  const code = program.bytes();
  m.bytes.set(code, 0x1000);
  for (const [vector, label] of Object.entries(handlers)) {
    const at = program.addressOf(label);
    const v = Number(vector);
    m.bytes[v * 4] = at & 0xff;
    m.bytes[v * 4 + 1] = at >> 8;
    m.bytes[v * 4 + 2] = 0;
    m.bytes[v * 4 + 3] = 0;
  }
  proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: m.addr });
  return {
    proc,
    sys,
    vm,
    mem: m.bytes,
    vcpu: (id = 0) => createRealModeVcpu(proc, sys, vm, { id, guestPhysAddr: 0x1000, regs: { rsp: 0x8000n } }),
    word: (addr) => (m.bytes[addr] ?? 0) | ((m.bytes[addr + 1] ?? 0) << 8),
  };
}

/** Program the master PIC: vectors 0x08–0x0f, every IRQ masked but those in `unmask` (@vac/test-support/pic). */
export { picInit } from '@vac/test-support/pic';

/** Program PIT channel 0 in mode 2 (rate generator) with `count` (1193 ≈ 1 ms). */
export function pitInit(a: Asm16, count: number): Asm16 {
  return a
    .mov('al', 0x34).out(0x43, 'al')
    .mov('al', count & 0xff).out(0x40, 'al')
    .mov('al', count >> 8).out(0x40, 'al');
}

/** A handler that counts in the word at 0x500, EOIs the master PIC and returns. */
export function countingHandler(a: Asm16, label: string, counter = 0x500): Asm16 {
  return a.label(label).inc(Asm16.word(counter)).mov('al', 0x20).out(0x20, 'al').iret();
}
