/**
 * Guest memory in a memfd, adopted by a second VMM process (QEMU's cpr-transfer): process A runs a guest over a
 * memfd mapping on kvm0; process B receives the memfd, maps it at an address of its own, registers a memslot there
 * in a new VM on kvm1, and its guest reads what A's guest wrote. The memslot's `userspace_addr` is B's address: the
 * bytes are the object's, wherever a process maps them.
 */
import { AF_UNIX, SOCK_STREAM, memfdCreate, O_RDWR, PAGE_SIZE, recvmsg, sendmsg, socketpair, type Mapping, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY, KVM_CREATE_VM, KVM_EXIT_HLT, KVM_GET_API_VERSION, KVM_EXIT_IO, KVM_RUN, KVM_SET_USER_MEMORY_REGION, createRealModeVcpu, kvm, type RealModeVcpu } from '../../src/index.js';
import { makeHost, vmmProcess, VENDORS } from './helpers.js';

const RAM = 0x10000;

/** A VM on `dev` with one slot of guest RAM at `mem` and one real-mode vCPU starting at `rip`. */
function vmOver(p: Process, dev: string, mem: Mapping, rip: number): RealModeVcpu {
  const sys = p.open(dev, O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: RAM, userspace_addr: mem.addr });
  return createRealModeVcpu(p, sys, vm, { guestPhysAddr: rip });
}

describe.each(VENDORS)('guest RAM in a memfd, adopted by another process ($name)', (vendor) => {
  test('B maps A\'s memfd at another address, registers a memslot there on kvm1, and its guest reads what A\'s guest wrote', () => {
    const host = makeHost(vendor.hardware(), 2);
    host.modprobe(kvm({ postfix: '0' }));
    host.modprobe(kvm({ postfix: '1' }));
    const a = vmmProcess(host);
    // A starts B with one end of a socket pair (QEMU's cpr-transfer uses a UNIX socket between the two VMMs).
    const [toB, fromA] = socketpair(a, AF_UNIX, SOCK_STREAM);
    a.mmapAnonymous(8 * PAGE_SIZE); // A's address space differs from B's
    const b = host.spawn({ uid: 1000, groups: ['kvm'], name: 'new-vmm', parent: a });
    a.close(fromA);
    b.close(toB);

    const memfd = memfdCreate(a, 'pc.ram');
    a.ftruncate(memfd, RAM);
    const ramA = a.mmap(memfd, RAM);
    // A's guest: mov byte [0x2000], 0x5a; hlt
    ramA.bytes.set([0xc6, 0x06, 0x00, 0x20, 0x5a, 0xf4], 0x1000);
    const va = vmOver(a, '/dev/kvm0', ramA, 0x1000);
    a.ioctl(va.fd, KVM_RUN, 0);
    expect(va.run.exit_reason).toBe(KVM_EXIT_HLT);

    // The handoff: A sends the memfd over the socket, B maps it at an address of its own, and A goes away.
    sendmsg(a, toB, { data: new TextEncoder().encode('ram'), fds: [memfd] });
    const [bfd] = recvmsg(b, fromA, 16).fds as [number];
    const ramB = b.mmap(bfd, RAM);
    expect(ramB.addr).not.toBe(ramA.addr);
    a.kill();

    // B's guest, written through B's own mapping: mov al, [0x2000]; mov dx, 0x3f8; out dx, al; hlt
    ramB.bytes.set([0xa0, 0x00, 0x20, 0xba, 0xf8, 0x03, 0xee, 0xf4], 0x1100);
    const vb = vmOver(b, '/dev/kvm1', ramB, 0x1100);
    b.ioctl(vb.fd, KVM_RUN, 0);
    expect([vb.run.exit_reason, vb.run.io.port, vb.run.bytes[vb.run.io.data_offset]]).toEqual([KVM_EXIT_IO, 0x3f8, 0x5a]);
  });

  test('a /dev/kvm1 fd and a VM fd pass over the socket: the system fd works in B, the VM fd answers EIO (kvm->mm != current->mm)', () => {
    const host = makeHost(vendor.hardware(), 2);
    host.modprobe(kvm({ postfix: '1' }));
    const a = vmmProcess(host);
    const [toB, fromA] = socketpair(a, AF_UNIX, SOCK_STREAM);
    const b = host.spawn({ uid: 1000, groups: ['kvm'], name: 'new-vmm', parent: a });
    const sys = a.open('/dev/kvm1', O_RDWR);
    const vm = a.ioctl(sys, KVM_CREATE_VM, 0);
    sendmsg(a, toB, { data: new Uint8Array([1]), fds: [sys, vm] });
    a.close(sys);
    const [bsys, bvm] = recvmsg(b, fromA, 1).fds as [number, number];
    expect(b.file(bsys).path).toBe('/dev/kvm1');
    expect(b.ioctl(bsys, KVM_GET_API_VERSION, 0)).toBe(12);
    expect(b.ioctl(bsys, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY)).toBe(1);
    expect(() => b.ioctl(bvm, KVM_CHECK_EXTENSION, KVM_CAP_USER_MEMORY)).toThrow(expect.objectContaining({ code: 'EIO' }));
  });
});
