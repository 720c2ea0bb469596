/** A VM for the run tests: 64 KiB of guest memory at 0, `code` at 0x1000, one real-mode vCPU with its stack below 0x8000. */
import type { Mapping, Process } from '@vac/core';
import { KVM_CREATE_VCPU, KVM_GET_SREGS, KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_USER_MEMORY_REGION, makeKvmRegs, makeKvmSregs, mapKvmRun, type KvmRunView } from '../../src/index.js';
import type { VENDORS } from '../module/helpers.js';
import { openVm, type VmSetup } from './support.js';

/** The VM, its memory mapping, the vCPU's fd and `kvm_run`. */
export interface GuestVm extends VmSetup {
  readonly mem: Mapping;
  readonly fd: number;
  readonly run: KvmRunView;
}

/** Point the real-mode vCPU `fd` at 0x1000 with CS base 0 (selector 0), its stack at `rsp`, RFLAGS 2. */
export function startAt1000(p: Process, fd: number, rsp: bigint): void {
  const sr = makeKvmSregs();
  p.ioctl(fd, KVM_GET_SREGS, sr);
  sr.cs.base = 0n;
  sr.cs.selector = 0;
  p.ioctl(fd, KVM_SET_SREGS, sr);
  p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rsp, rflags: 2n }));
}

/** Make a {@link GuestVm} on `vendor` running `code`. */
export function guestVm(vendor: (typeof VENDORS)[number], code: readonly number[], slotFlags = 0): GuestVm {
  const s = openVm(vendor, 0);
  const mem = s.p.mmapAnonymous(0x10000);
  mem.bytes.set(code, 0x1000);
  s.p.ioctl(s.vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: slotFlags, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: mem.addr });
  const fd = s.p.ioctl(s.vm, KVM_CREATE_VCPU, 0);
  startAt1000(s.p, fd, 0x8000n);
  const run = mapKvmRun(s.p, s.sys, fd);
  return { ...s, vcpus: [fd], runs: [run], mem, fd, run };
}
