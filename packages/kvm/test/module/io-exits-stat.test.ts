/**
 * The `io_exits` vCPU statistic (arch/x86/kvm/vmx/vmx.c handle_io, svm/svm.c io_interception: `++io_exits` before
 * the access is handled): every port I/O exit counts — a PIT port the in-kernel PIT takes, a write an ioeventfd
 * takes, and a port that exits to user space alike; `mmio_exits` counts only the MMIO exits to user space.
 */
import { O_RDWR, eventfd, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CREATE_IRQCHIP,
  KVM_CREATE_PIT2,
  KVM_CREATE_VM,
  KVM_EXIT_IO,
  KVM_GET_STATS_FD,
  KVM_IOEVENTFD,
  KVM_IOEVENTFD_FLAG_PIO,
  KVM_RUN,
  KVM_SET_USER_MEMORY_REGION,
  createRealModeVcpu,
  kvm,
  makeKvmIoeventfd,
  makeKvmPitConfig,
} from '../../src/index.js';
import { makeHost, vmmProcess, VENDORS } from './helpers.js';

/** The value of statistic `name` read from stats fd `fd` (struct kvm_stats_header, the descriptors, the data). */
function stat(p: Process, fd: number, name: string): bigint {
  const h = new DataView(p.read(fd, 24, 0).buffer);
  const [nameSize, numDesc, descOffset, dataOffset] = [h.getUint32(4, true), h.getUint32(8, true), h.getUint32(16, true), h.getUint32(20, true)];
  const descs = p.read(fd, numDesc * (16 + nameSize), descOffset);
  for (let i = 0; i < numDesc; i++) {
    const at = i * (16 + nameSize);
    const n = new TextDecoder().decode(descs.subarray(at + 16, at + 16 + nameSize)).replace(/\0.*$/s, '');
    if (n !== name) continue;
    const offset = new DataView(descs.buffer, descs.byteOffset + at, 16).getUint32(8, true);
    return new DataView(p.read(fd, 8, dataOffset + offset).buffer).getBigUint64(0, true);
  }
  throw new Error(`no statistic ${name}`);
}

describe.each(VENDORS)('io_exits ($name)', (vendor) => {
  test('a PIT port, an ioeventfd write and a user-space port: three io_exits, one return to user space', () => {
    const host = makeHost(vendor.hardware(), 2);
    host.modprobe(kvm({ postfix: '0' }));
    const p = vmmProcess(host);
    const sys = p.open('/dev/kvm0', O_RDWR);
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    p.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
    p.ioctl(vm, KVM_CREATE_PIT2, makeKvmPitConfig());
    p.ioctl(vm, KVM_IOEVENTFD, makeKvmIoeventfd({ addr: 0x500, len: 0, fd: eventfd(p), flags: KVM_IOEVENTFD_FLAG_PIO }));
    const mem = p.mmapAnonymous(0x10000);
    // mov al, 0x34; out 0x43, al (PIT mode); mov dx, 0x500; out dx, al (ioeventfd); mov dx, 0x3f8; out dx, al; hlt
    mem.bytes.set([0xb0, 0x34, 0xe6, 0x43, 0xba, 0x00, 0x05, 0xee, 0xba, 0xf8, 0x03, 0xee, 0xf4], 0x1000);
    p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: mem.addr });
    const { fd, run } = createRealModeVcpu(p, sys, vm, { guestPhysAddr: 0x1000 });
    const stats = p.ioctl(fd, KVM_GET_STATS_FD, 0);
    p.ioctl(fd, KVM_RUN, 0);
    expect([run.exit_reason, run.io.port]).toEqual([KVM_EXIT_IO, 0x3f8]);
    expect([stat(p, stats, 'io_exits'), stat(p, stats, 'mmio_exits')]).toEqual([3n, 0n]);
  });
});
