import { O_RDWR, checkInvariants, isKernelError, type Host, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_IRQCHIP,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS,
  KVM_CAP_USER_MEMORY,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_EXIT_HLT,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_IO,
  KVM_EXIT_IO_IN,
  KVM_EXIT_IO_OUT,
  KVM_EXIT_MMIO,
  KVM_GET_API_VERSION,
  KVM_GET_REGS,
  KVM_GET_SREGS,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_INTERNAL_ERROR_EMULATION,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_MEM_READONLY,
  KVM_RUN,
  KVM_SET_REGS,
  KVM_SET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  kvm,
  makeKvmRegs,
  makeKvmSregs,
} from '../../src/index.js';
import { HELLO, VENDORS, makeHost, makeVm, vmmProcess } from './helpers.js';

/** Expect `fn` to fail with `code` and leave the host exactly as it was. */
function fails(host: Host, fn: () => unknown, code: string): void {
  const before = host.snapshot();
  let err: unknown;
  try {
    fn();
  } catch (e) {
    err = e;
  }
  expect(isKernelError(err) ? err.code : err).toBe(code);
  expect(host.snapshot()).toEqual(before);
}

function setup(vendor: (typeof VENDORS)[number], cpus = 4): { host: Host; p: Process; sys: number } {
  const host = makeHost(vendor.hardware(), cpus);
  host.modprobe(kvm({ postfix: '0' }));
  const p = vmmProcess(host);
  return { host, p, sys: p.open('/dev/kvm0', O_RDWR) };
}

describe.each(VENDORS)('the /dev/kvm ABI on $name', (vendor) => {
  test('system fd: KVM_GET_API_VERSION, KVM_GET_VCPU_MMAP_SIZE, KVM_CHECK_EXTENSION', () => {
    const { host, p, sys } = setup(vendor);
    expect(p.ioctl(sys, KVM_GET_API_VERSION, 0)).toBe(12);
    expect(p.ioctl(sys, KVM_GET_API_VERSION)).toBe(12);
    fails(host, () => p.ioctl(sys, KVM_GET_API_VERSION, 1), 'EINVAL');
    expect(p.ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0)).toBe(12288);
    fails(host, () => p.ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 5), 'EINVAL');
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY)).toBe(1);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_IRQCHIP)).toBe(1);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS)).toBe(4);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS)).toBe(32764);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS)).toBe(1024);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPU_ID)).toBe(4096);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, 99999)).toBe(0);
    host.cpuDown(3);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS)).toBe(3);
  });

  test('unknown ioctls: EINVAL on the system and vCPU fds, ENOTTY on a VM fd', () => {
    const { host, p } = setup(vendor);
    const t = makeVm(p, '/dev/kvm0', HELLO);
    fails(host, () => p.ioctl(t.sys, 0xae99), 'EINVAL');
    fails(host, () => p.ioctl(t.vm, 0xae99), 'ENOTTY');
    fails(host, () => p.ioctl(t.vcpus[0]!.fd, 0xae99), 'EINVAL');
    fails(host, () => p.ioctl(t.sys, KVM_CREATE_VM, 7), 'EINVAL');
  });

  test('KVM_CREATE_VCPU: ids below 4096, 1024 vCPUs at most, EEXIST on a duplicate', () => {
    const { host, p, sys } = setup(vendor);
    p.setAffinity(0);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    expect(p.ioctl(vm, KVM_CREATE_VCPU, 4095)).toBeGreaterThan(0);
    fails(host, () => p.ioctl(vm, KVM_CREATE_VCPU, 4096), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_CREATE_VCPU, 4095), 'EEXIST');
    fails(host, () => p.ioctl(vm, KVM_CREATE_VCPU, -1), 'EINVAL');
  });

  test('KVM_CREATE_VCPU: the 1025th vCPU is EINVAL', () => {
    const host = makeHost(vendor.hardware(), 2);
    host.modprobe(kvm({ postfix: '0' }));
    const p = host.spawn({ groups: ['kvm'], nofile: 4096 });
    const sys = p.open('/dev/kvm0', O_RDWR);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    for (let i = 0; i < 1024; i++) p.ioctl(vm, KVM_CREATE_VCPU, i);
    fails(host, () => p.ioctl(vm, KVM_CREATE_VCPU, 2000), 'EINVAL');
  });

  test('KVM_SET_USER_MEMORY_REGION: create, move, flags, delete and every refusal', () => {
    const { host, p, sys } = setup(vendor);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    const m = p.mmapAnonymous(0x4000);
    const region = (o: Partial<{ slot: number; flags: number; guest_phys_addr: number; memory_size: number; userspace_addr: number }>) => ({
      slot: 0,
      flags: 0,
      guest_phys_addr: 0x10000,
      memory_size: 0x2000,
      userspace_addr: m.addr,
      ...o,
    });
    expect(p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({}))).toBe(0);
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ slot: 1, guest_phys_addr: 0x11000 })), 'EEXIST');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ slot: 1, flags: 0x80, guest_phys_addr: 0x20000 })), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ slot: 1, guest_phys_addr: 0x20001 })), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ slot: 1, memory_size: 0x1001, guest_phys_addr: 0x20000 })), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ slot: 1, userspace_addr: m.addr + 1, guest_phys_addr: 0x20000 })), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ slot: 32764, guest_phys_addr: 0x20000 })), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ slot: 5, memory_size: 0 })), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ memory_size: 0x1000 })), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ flags: KVM_MEM_READONLY })), 'EINVAL');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 'x' }), 'EFAULT');
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, 5), 'EFAULT');
    // A slot at 32763 is the last user slot.
    expect(p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ slot: 32763, guest_phys_addr: 0x40000, memory_size: 0x1000, userspace_addr: m.addr + 0x3000 }))).toBe(0);
    // Move, then flags only, then delete.
    expect(p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ guest_phys_addr: 0x80000 }))).toBe(0);
    expect(p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ guest_phys_addr: 0x80000, flags: 1 }))).toBe(0);
    expect(p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ guest_phys_addr: 0x80000, memory_size: 0 }))).toBe(0);
    fails(host, () => p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, region({ memory_size: 0 })), 'EINVAL');
  });

  test('the classic minimal VMM: prints "4\\n" and halts', () => {
    const { host, p } = setup(vendor);
    const t = makeVm(p, '/dev/kvm0', HELLO, 1, { rax: 2n, rbx: 2n });
    const v = t.vcpus[0]!;
    let out = '';
    for (;;) {
      expect(p.ioctl(v.fd, KVM_RUN, 0)).toBe(0);
      if (v.run.exit_reason !== KVM_EXIT_IO) break;
      expect(v.run.io.direction).toBe(KVM_EXIT_IO_OUT);
      expect(v.run.io.port).toBe(0x3f8);
      expect(v.run.io.size).toBe(1);
      expect(v.run.io.count).toBe(1);
      out += String.fromCharCode(v.run.bytes[v.run.io.data_offset]!);
    }
    expect(out).toBe('4\n');
    expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
    fails(host, () => p.ioctl(v.fd, KVM_RUN, 1), 'EINVAL');
    expect(checkInvariants(host)).toEqual([]);
  });

  test('IN completes with the data user space put in the PIO page; MMIO writes exit with the data', () => {
    const { p } = setup(vendor);
    // in al,0x60; mov [0x3000],al; hlt   (0x3000 is not RAM → MMIO write)
    const t = makeVm(p, '/dev/kvm0', [0xe4, 0x60, 0xa2, 0x00, 0x30, 0xf4]);
    const v = t.vcpus[0]!;
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_IO);
    expect(v.run.io.direction).toBe(KVM_EXIT_IO_IN);
    expect(v.run.io.port).toBe(0x60);
    v.run.bytes[v.run.io.data_offset] = 0x5a;
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_MMIO);
    expect(v.run.mmio.phys_addr).toBe(0x3000);
    expect(v.run.mmio.is_write).toBe(1);
    expect(v.run.mmio.len).toBe(1);
    expect(v.run.mmio.data[0]).toBe(0x5a);
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
  });

  test('no memory at RIP, or an instruction the interpreter lacks → KVM_EXIT_INTERNAL_ERROR (emulation)', () => {
    const { p } = setup(vendor);
    const t = makeVm(p, '/dev/kvm0', [0xd8, 0xc1]); // fadd st0, st1 (x87 arithmetic) is not emulated
    const v = t.vcpus[0]!;
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_INTERNAL_ERROR);
    expect(v.run.internal.suberror).toBe(KVM_INTERNAL_ERROR_EMULATION);
    p.ioctl(v.fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x9000n, rflags: 2n }));
    p.ioctl(v.fd, KVM_RUN, 0);
    expect(v.run.exit_reason).toBe(KVM_EXIT_INTERNAL_ERROR);
  });

  test('GET/SET REGS and SREGS round-trip; bad shapes are EFAULT; CR0.PG without PE is EINVAL', () => {
    const { host, p } = setup(vendor);
    const t = makeVm(p, '/dev/kvm0', HELLO);
    const fd = t.vcpus[0]!.fd;
    const regs = makeKvmRegs({ rax: 7n, rbx: 9n, rip: 0x1234n, rflags: 0x202n, rsp: 0xfffen });
    p.ioctl(fd, KVM_SET_REGS, regs);
    const back = makeKvmRegs();
    p.ioctl(fd, KVM_GET_REGS, back);
    expect(back).toEqual(regs);
    const s = makeKvmSregs();
    p.ioctl(fd, KVM_GET_SREGS, s);
    s.ds.base = 0x20000n;
    s.ds.selector = 0x2000;
    p.ioctl(fd, KVM_SET_SREGS, s);
    const s2 = makeKvmSregs();
    p.ioctl(fd, KVM_GET_SREGS, s2);
    expect(s2).toEqual(s);
    fails(host, () => p.ioctl(fd, KVM_SET_REGS, { rax: 1 }), 'EFAULT');
    fails(host, () => p.ioctl(fd, KVM_GET_REGS, undefined), 'EFAULT');
    fails(host, () => p.ioctl(fd, KVM_SET_SREGS, { ...s, cr0: 0x80000000n }), 'EINVAL');
  });

  test('KVM_CREATE_IRQCHIP: once, and before vCPUs', () => {
    const { host, p, sys } = setup(vendor);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    expect(p.ioctl(vm, KVM_CREATE_IRQCHIP)).toBe(0);
    fails(host, () => p.ioctl(vm, KVM_CREATE_IRQCHIP), 'EEXIST');
    const vm2 = p.ioctl(sys, KVM_CREATE_VM, 0);
    p.ioctl(vm2, KVM_CREATE_VCPU, 0);
    fails(host, () => p.ioctl(vm2, KVM_CREATE_IRQCHIP), 'EINVAL');
  });

  test('VM and vCPU fds pin the module; the VM lives until its last fd closes', () => {
    const { host, p } = setup(vendor);
    const t = makeVm(p, '/dev/kvm0', HELLO, 2);
    const refcount = (): number => host.lsmod().find((m) => m.name === 'kvm0')!.refcount;
    expect(refcount()).toBe(5); // /dev/kvm0 twice (setup and makeVm), the VM fd, two vCPU fds
    fails(host, () => host.rmmod('kvm0'), 'EWOULDBLOCK');
    p.close(t.vm);
    expect(host.snapshot().providers['kvm0']).toHaveLength(1); // the vCPU fds keep the VM alive
    p.kill();
    expect(refcount()).toBe(0);
    expect(host.snapshot().providers['kvm0']).toEqual([]);
    host.rmmod('kvm0');
    expect(checkInvariants(host)).toEqual([]);
  });

  test('KVM_MEMORY_ENCRYPT_OP without SEV → ENOTTY', () => {
    const { host, p, sys } = setup(vendor);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    if (vendor.name === 'intel') fails(host, () => p.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, { id: 0, data: 0, error: 0, sev_fd: 0 }), 'ENOTTY');
  });

  test('an ioctl on a VM of another process is EIO; a non-KVM fd answers ENOTTY', () => {
    const { host, p } = setup(vendor);
    const t = makeVm(p, '/dev/kvm0', HELLO);
    void t;
    const other = vmmProcess(host);
    const fd = other.open('/dev/kvm0', O_RDWR);
    expect(other.ioctl(fd, KVM_GET_API_VERSION)).toBe(12);
  });
});
