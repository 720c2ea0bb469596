/**
 * Building hosts, VMM processes and VMs through the public ABI, for the benchmarks.
 *
 * Everything here goes through `proc.open` / `proc.ioctl` / `proc.mmap` exactly as a VMM would; nothing
 * reaches into module internals except where a benchmark says so (the interpreter-only baseline).
 */
import { O_RDWR, createHost, type Host, type HostOptions, type Process } from '@vac/core';
import {
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_SREGS,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  KvmRunView,
  makeKvmRegs,
  makeKvmSregs,
} from '@vac/kvm';

/** Guest-physical (and user-space-relative) address the guest code lives at. */
export const GUEST_BASE = 0x1000;

/** `out dx,al; jmp $-3`: every KVM_RUN is exactly one I/O exit (the `jmp` plus the `out`). */
export const OUT_LOOP: readonly number[] = [0xee, 0xeb, 0xfd];

/** `mov dx,0x3f8; mov al,'v'; out dx,al; hlt`: prints one byte, then halts. */
export const PRINT_HLT: readonly number[] = [0xba, 0xf8, 0x03, 0xb0, 0x76, 0xee, 0xf4];

/** A host. */
export function makeHost(hardware: HostOptions['hardware'], cpus: number): Host {
  return createHost({ cpus, hardware });
}

/** A VMM process in group kvm, allowed `nofile` open files (Linux's default soft limit is 1024). */
export function vmmProcess(host: Host, nofile = 1024): Process {
  return host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm', nofile });
}

/** One vCPU as the VMM holds it. */
export interface VcpuHandle {
  /** The vCPU fd. */
  readonly fd: number;
  /** Its mapped `kvm_run` area. */
  readonly run: KvmRunView;
  /** Where the area is mapped in the VMM (for munmap). */
  readonly mapAddr: number;
}

/** One VM as the VMM holds it. */
export interface VmHandle {
  /** The VM fd. */
  readonly vm: number;
  /** The guest memory (an anonymous mapping of the VMM). */
  readonly mem: { readonly addr: number; readonly bytes: Uint8Array };
  /** The vCPUs. */
  readonly vcpus: VcpuHandle[];
}

/** Map a vCPU's `kvm_run` area (3 pages) and view it. */
export function mapRun(proc: Process, fd: number): { readonly run: KvmRunView; readonly addr: number } {
  const m = proc.mmap(fd, KVM_RUN_MMAP_BYTES);
  return { run: new KvmRunView(m.bytes.buffer, m.bytes.byteOffset), addr: m.addr };
}

/** The size of the vCPU mapping (`KVM_GET_VCPU_MMAP_SIZE`: kvm_run, the PIO page, the coalesced-MMIO ring). */
export const KVM_RUN_MMAP_BYTES = 3 * 4096;

/** Put a vCPU in real mode at `GUEST_BASE` with CS base 0 (KVM_GET_SREGS, KVM_SET_SREGS, KVM_SET_REGS). */
export function resetVcpu(proc: Process, fd: number, regs: { readonly rax?: bigint; readonly rdx?: bigint } = {}): void {
  const sregs = makeKvmSregs();
  proc.ioctl(fd, KVM_GET_SREGS, sregs);
  sregs.cs.base = 0n;
  sregs.cs.selector = 0;
  proc.ioctl(fd, KVM_SET_SREGS, sregs);
  proc.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: BigInt(GUEST_BASE), rflags: 2n, rax: regs.rax ?? 0x41n, rdx: regs.rdx ?? 0x3f8n }));
}

/** Allocate guest memory holding `code` and register it as slot 0 of `vm` at `GUEST_BASE`. */
export function addMemory(proc: Process, vm: number, code: readonly number[], bytes?: { readonly addr: number; readonly bytes: Uint8Array }): { readonly addr: number; readonly bytes: Uint8Array } {
  const mem = bytes ?? proc.mmapAnonymous(0x1000);
  if (bytes === undefined) mem.bytes.set(code);
  proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: GUEST_BASE, memory_size: 0x1000, userspace_addr: mem.addr });
  return mem;
}

/** Create a VM with one memory slot holding `code` and `n` vCPUs ready to run it, through the ABI. */
export function makeVm(proc: Process, sys: number, code: readonly number[], n: number): VmHandle {
  const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
  const mem = addMemory(proc, vm, code);
  const vcpus: VcpuHandle[] = [];
  for (let id = 0; id < n; id++) {
    const fd = proc.ioctl(vm, KVM_CREATE_VCPU, id);
    const { run, addr } = mapRun(proc, fd);
    resetVcpu(proc, fd);
    vcpus.push({ fd, run, mapAddr: addr });
  }
  return { vm, mem, vcpus };
}

/** Open `/dev/<dev>`. */
export function openDev(proc: Process, dev: string): number {
  return proc.open(`/dev/${dev}`, O_RDWR);
}
