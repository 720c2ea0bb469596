/**
 * The VMM helper (src/vmm.ts): the classic minimal VMM through it, its options, and errors passed through.
 */
import { O_RDWR, isKernelError, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  kvmInstance,
  KVM_CREATE_VM,
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
  KvmRunView,
  createRealModeVcpu,
  createRealModeVm,
  kvm,
  makeKvmRegs,
  makeKvmSregs,
  mapKvmRun,
  releaseRealModeVm,
  type KvmInstance,
} from '../src/index.js';
import { HELLO, VENDORS, makeHost, vmmProcess } from './module/helpers.js';

/** KVM_RUN until an exit other than KVM_EXIT_IO; what the guest wrote to its port. */
function runToExit(proc: Process, fd: number, run: KvmRunView): string {
  let out = '';
  for (let i = 0; i < 1000; i++) {
    proc.ioctl(fd, KVM_RUN, 0);
    if (run.exit_reason !== KVM_EXIT_IO) return out;
    out += String.fromCharCode(run.bytes[run.io.data_offset] ?? 0);
  }
  throw new Error('the guest did not stop');
}

/** The error a call throws (fails the test when it does not throw). */
function thrown(f: () => unknown): unknown {
  try {
    f();
  } catch (e) {
    return e;
  }
  throw new Error('expected a throw');
}

describe.each(VENDORS)('createRealModeVm on $name', ({ hardware }) => {
  test('the classic minimal VMM through it prints "4\\n" then halts', () => {
    const host = makeHost(hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const proc = vmmProcess(host);
    const vm = createRealModeVm(proc, '/dev/kvm0', { code: HELLO, regs: { rax: 2n, rbx: 2n } });
    expect(vm.vcpus).toHaveLength(1);
    const { fd, run, id } = vm.vcpus[0]!;
    expect(id).toBe(0);
    expect(runToExit(proc, fd, run)).toBe('4\n');
    expect(run.exit_reason).toBe(KVM_EXIT_HLT);
    expect([...vm.memory.bytes.subarray(0, HELLO.length)]).toEqual(HELLO);
  });

  test('options are honoured: vcpus, guestPhysAddr, memorySize, regs (object or per id)', () => {
    const host = makeHost(hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const proc = vmmProcess(host);
    const vm = createRealModeVm(proc, '/dev/kvm0', { code: HELLO, vcpus: 3, guestPhysAddr: 0x4000, memorySize: 0x3000, regs: (id) => ({ rbx: BigInt(id + 1) }) });
    expect(vm.memory.length).toBe(0x3000);
    expect(vm.vcpus.map((v) => v.id)).toEqual([0, 1, 2]);
    const model = [...kvmInstance(host, 'kvm0').vms].find((v) => v.owner === proc);
    expect(model?.vcpus.size).toBe(3);
    for (const v of vm.vcpus) {
      const regs = makeKvmRegs();
      proc.ioctl(v.fd, KVM_GET_REGS, regs);
      expect(regs.rip).toBe(0x4000n);
      expect(regs.rflags).toBe(2n);
      expect(regs.rbx).toBe(BigInt(v.id + 1));
      const sregs = makeKvmSregs();
      proc.ioctl(v.fd, KVM_GET_SREGS, sregs);
      expect(sregs.cs.base).toBe(0n);
      expect(sregs.cs.selector).toBe(0);
      expect(runToExit(proc, v.fd, v.run)).toBe(`${v.id + 1}\n`);
      expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
    }
    // An explicit rip overrides the default.
    const other = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4, ...HELLO], regs: { rip: 0x1001n, rbx: 7n } });
    expect(runToExit(proc, other.vcpus[0]!.fd, other.vcpus[0]!.run)).toBe('7\n');
  });

  test('releaseRealModeVm gives every kernel reference back: the VM is destroyed, the module can go', () => {
    const host = makeHost(hardware());
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    const proc = vmmProcess(host);
    const before = proc.fds().map((f) => f.fd);
    const old = createRealModeVm(proc, '/dev/kvm0', { code: HELLO, vcpus: 2, regs: { rax: 2n, rbx: 2n } });
    expect(old.vcpus.map((v) => v.runMapping.length)).toEqual([12288, 12288]);
    expect(runToExit(proc, old.vcpus[0]!.fd, old.vcpus[0]!.run)).toBe('4\n');
    // Move the guest to kvm1 over the same memory, then release the old VM.
    const sys1 = proc.open('/dev/kvm1', O_RDWR);
    const vm1 = proc.ioctl(sys1, KVM_CREATE_VM, 0);
    proc.ioctl(vm1, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: old.memory.length, userspace_addr: old.memory.addr });
    releaseRealModeVm(proc, old);
    expect(proc.fds().map((f) => f.fd)).toEqual([...before, sys1, vm1]);
    expect(proc.mappings().filter((m) => m.file !== undefined)).toEqual([]);
    expect(kvmInstance(host, 'kvm0').vms.size).toBe(0);
    host.rmmod('kvm0');
    expect(host.lsmod().map((m) => m.name)).not.toContain('kvm0');
    const v = createRealModeVcpu(proc, sys1, vm1, { regs: { rax: 3n, rbx: 3n } });
    expect(runToExit(proc, v.fd, v.run)).toBe('6\n');
    // Releasing twice: the vCPU fds are gone, EBADF, and nothing else changes.
    const snap = host.snapshot();
    expect(() => releaseRealModeVm(proc, old)).toThrow(expect.objectContaining({ code: 'EBADF' }));
    expect(host.snapshot()).toEqual(snap);
  });

  test('createRealModeVcpu and mapKvmRun compose with hand-made VMs', () => {
    const host = makeHost(hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const proc = vmmProcess(host);
    const vm = createRealModeVm(proc, '/dev/kvm0', { code: HELLO, vcpus: 0 });
    expect(vm.vcpus).toEqual([]);
    const v = createRealModeVcpu(proc, vm.sys, vm.vm, { id: 5, regs: { rbx: 3n } });
    expect(v.id).toBe(5);
    expect(runToExit(proc, v.fd, v.run)).toBe('3\n');
    const again = mapKvmRun(proc, vm.sys, v.fd); // a second mapping of the same kvm_run area
    expect(again.exit_reason).toBe(KVM_EXIT_HLT);
  });
});

describe('errors propagate as the syscalls\' KernelErrors', () => {
  test('no such device: ENOENT from open', () => {
    const host = makeHost(VENDORS[0].hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const e = thrown(() => createRealModeVm(vmmProcess(host), '/dev/kvm9', { code: HELLO }));
    expect(isKernelError(e, 'ENOENT')).toBe(true);
  });

  test('a failing KVM_CREATE_VCPU: its ENOMEM, as thrown', () => {
    const host = makeHost(VENDORS[1].hardware());
    host.modprobe(kvm({ postfix: '0' }));
    host.faults.failNth('vcpu', 2);
    const e = thrown(() => createRealModeVm(vmmProcess(host), '/dev/kvm0', { code: HELLO, vcpus: 2 }));
    expect(isKernelError(e, 'ENOMEM')).toBe(true);
  });

  test('a duplicate vCPU id: EEXIST from KVM_CREATE_VCPU', () => {
    const host = makeHost(VENDORS[0].hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const proc = vmmProcess(host);
    const vm = createRealModeVm(proc, '/dev/kvm0', { code: HELLO });
    const e = thrown(() => createRealModeVcpu(proc, vm.sys, vm.vm, { id: 0 }));
    expect(isKernelError(e, 'EEXIST')).toBe(true);
  });

  test('mapKvmRun on a non-vCPU fd: the mmap error', () => {
    const host = makeHost(VENDORS[0].hardware());
    host.modprobe(kvm({ postfix: '0' }));
    const proc = vmmProcess(host);
    const vm = createRealModeVm(proc, '/dev/kvm0', { code: HELLO });
    expect(isKernelError(thrown(() => mapKvmRun(proc, vm.sys, 99)), 'EBADF')).toBe(true);
    expect(isKernelError(thrown(() => mapKvmRun(proc, vm.vcpus[0]!.fd, vm.vcpus[0]!.fd)))).toBe(true);
  });
});
