/** Shared setup for the KVM module tests: hosts on both vendors, a VMM process, guest programs. */
import { O_RDWR, createHost, type Host, type HostOptions, type Process } from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
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
} from '../../src/index.js';

/** The two vendors every vendor-neutral test runs on. */
export const VENDORS = [
  { name: 'intel', hardware: (): HostOptions['hardware'] => intel() },
  { name: 'amd', hardware: (): HostOptions['hardware'] => amd() },
] as const;

/** The classic minimal VMM guest: `mov dx,0x3f8; add al,bl; add al,'0'; out dx,al; mov al,'\n'; out dx,al; hlt`. */
export const HELLO = [0xba, 0xf8, 0x03, 0x00, 0xd8, 0x04, 0x30, 0xee, 0xb0, 0x0a, 0xee, 0xf4];

/** A guest that loops forever: `inc ax; jmp $-3`. */
export const SPIN = [0x40, 0xeb, 0xfd];

/** A host of `cpus` CPUs on `hardware`. */
export function makeHost(hardware: HostOptions['hardware'], cpus = 4): Host {
  return createHost({ cpus, hardware });
}

/** A VMM process in group kvm. */
export function vmmProcess(host: Host): Process {
  return host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
}

/** A VM with one memory slot at 0x1000 holding `code`, and `n` vCPUs set up to run it in real mode. */
export interface TestVm {
  readonly sys: number;
  readonly vm: number;
  readonly mem: { readonly addr: number; readonly bytes: Uint8Array };
  readonly vcpus: Array<{ readonly fd: number; readonly run: KvmRunView }>;
}

/** Create a {@link TestVm} through the ABI. */
export function makeVm(proc: Process, dev: string, code: readonly number[], n = 1, regs: Partial<Record<'rax' | 'rbx', bigint>> = {}): TestVm {
  const sys = proc.open(dev, O_RDWR);
  const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
  const mem = proc.mmapAnonymous(0x1000);
  mem.bytes.set(code);
  proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: mem.addr });
  const vcpus = [];
  for (let id = 0; id < n; id++) {
    const fd = proc.ioctl(vm, KVM_CREATE_VCPU, id);
    const m = proc.mmap(fd, 12288);
    const sregs = makeKvmSregs();
    proc.ioctl(fd, KVM_GET_SREGS, sregs);
    sregs.cs.base = 0n;
    sregs.cs.selector = 0;
    proc.ioctl(fd, KVM_SET_SREGS, sregs);
    proc.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n, ...regs }));
    vcpus.push({ fd, run: new KvmRunView(m.bytes.buffer, m.bytes.byteOffset) });
  }
  return { sys, vm, mem, vcpus };
}
