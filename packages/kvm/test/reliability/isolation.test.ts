/**
 * Security and isolation (issue 6):
 *
 * - fds are per process: another process's fd numbers are EBADF;
 * - a process outside group kvm cannot open /dev/kvmX (EACCES), directly or through /dev/kvm;
 * - only CAP_SYS_MODULE may insmod / modprobe / rmmod (EPERM);
 * - a VM (or vCPU) of kvm0 handed to a kvm1 operation is refused (EBADF), and leaves kvm0's VM intact;
 * - nothing one module does can read or change another module's VMs, vCPUs or registrations — through the
 *   public API (its loads, unloads, failures, VMs, runs, faults) and through the VAC handle (another
 *   instance's VPID / SEV ASID → EPERM, acting with another instance's tag → EPERM, another instance's
 *   usage references → EINVAL, a second attach under a taken name → EEXIST).
 */
import { afterAll, describe, expect, test } from 'vitest';
import { idleVacInstance } from '@vac/test-support';
import { ALL_CAPABILITIES, O_RDONLY, O_RDWR, PERF_GUEST_ACTIVE, checkInvariants, type Host } from '@vac/core';
import { kvmInstance, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_REGS, KVM_MEMORY_ENCRYPT_OP, KVM_RUN, KVM_SET_USER_MEMORY_REGION, kvm, makeKvmRegs, type KvmInstance } from '../../src/index.js';
import { makeFileOps } from '../../src/module/fops.js';
import { GUESTS, VENDORS, expectFails, makeHost, readyVm, tally, vacIn } from './support.js';
import { VPIDS } from '@vac/vmx';
import { ASIDS, SEV_ASIDS } from '@vac/svm';

const kvm0 = kvm({ postfix: '0' });
const kvm1 = kvm({ postfix: '1' });

afterAll(() => {
  console.log(`[isolation] ${tally.badInputs} refused operations checked`);
});

const inst = (host: Host, name: string): KvmInstance => kvmInstance(host, name);

/** kvm0's state as the host shows it: its VMs (with vCPUs, memslots) and its VAC holdings. */
function kvm0State(host: Host): unknown {
  const s = host.snapshot();
  const vac = s.providers['vac'] as { handles: Array<[string, unknown]> };
  return { vms: s.providers['kvm0'], handle: vac.handles.find(([n]) => n === 'kvm0'), lsmod: host.lsmod().find((m) => m.name === 'kvm0') };
}

describe.each(VENDORS)('isolation on $name', (vendor) => {
  test('fds are per process: another process’s fd numbers are EBADF for every operation', () => {
    const host = makeHost(vendor);
    host.modprobe(kvm0);
    const a = host.spawn({ uid: 1000, groups: ['kvm'] });
    const b = host.spawn({ uid: 1000, groups: ['kvm'] });
    const t = readyVm(a, '/dev/kvm0', GUESTS.io, 1);
    for (const fd of [t.sys, t.vm, t.vcpus[0] as number]) {
      expectFails(host, () => b.ioctl(fd, KVM_GET_REGS, makeKvmRegs()), 'EBADF', 'ioctl');
      expectFails(host, () => b.ioctl(fd, KVM_RUN, 0), 'EBADF', 'KVM_RUN');
      expectFails(host, () => b.mmap(fd, 4096), 'EBADF', 'mmap');
      expectFails(host, () => b.close(fd), 'EBADF', 'close');
      expectFails(host, () => b.dup(fd), 'EBADF', 'dup');
      tally.badInputs += 5;
    }
    // b's own fd 3 is its own file: it never reaches a's VM.
    const own = b.open('/dev/kvm1'.replace('1', '0'), O_RDWR);
    expect(own).toBe(3);
    expect(b.ioctl(own, KVM_CREATE_VM, 0)).toBe(4);
    expect(b.fds().map((f) => f.path)).toEqual(['/dev/kvm0', 'anon_inode:kvm-vm']);
    expect(a.ioctl(t.vcpus[0] as number, KVM_RUN, 0)).toBe(0);
    // A thread of b cannot use a's fds either.
    const errors: unknown[] = [];
    host.scheduler.spawn(b, {}, function* (th) {
      try {
        yield* th.ioctl(t.vcpus[0] as number, KVM_RUN, 0);
      } catch (e) {
        errors.push(e);
      }
    });
    host.scheduler.run(2);
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['EBADF']);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('outside group kvm: EACCES on /dev/kvmX and through the /dev/kvm symlink; inside: allowed', () => {
    const host = makeHost(vendor);
    host.modprobe(kvm0);
    host.modprobe(kvm1);
    host.symlink('/dev/kvm1', '/dev/kvm');
    const stranger = host.spawn({ uid: 1001 });
    const otherGroup = host.spawn({ uid: 1002, groups: ['root'] });
    const rootNoCaps = host.spawn({ uid: 0, caps: [] });
    for (const p of [stranger, otherGroup]) {
      for (const dev of ['/dev/kvm0', '/dev/kvm1', '/dev/kvm']) {
        for (const flags of [O_RDWR, O_RDONLY]) {
          expectFails(host, () => p.open(dev, flags), 'EACCES', `${p.name} ${dev}`);
          tally.badInputs++;
        }
      }
    }
    // uid 0 without CAP_DAC_OVERRIDE: the node is root-owned and 0660, so the owner bits allow it.
    expect(rootNoCaps.open('/dev/kvm0', O_RDWR)).toBe(3);
    const member = host.spawn({ uid: 1000, groups: ['kvm'] });
    expect(member.open('/dev/kvm', O_RDWR)).toBe(3);
    expect(member.fds()).toEqual([{ fd: 3, path: '/dev/kvm1' }]);
    expect(host.stat('/dev/kvm0')).toMatchObject({ uid: 0, gid: host.gid('kvm'), mode: 0o660 });
  });

  test('only CAP_SYS_MODULE may insmod, modprobe and rmmod (EPERM), whoever the uid', () => {
    const host = makeHost(vendor);
    const user = host.spawn({ uid: 1000, groups: ['kvm'] });
    const rootNoCaps = host.spawn({ uid: 0, caps: ALL_CAPABILITIES.filter((c) => c !== 'CAP_SYS_MODULE') });
    const capOnly = host.spawn({ uid: 1000, caps: ['CAP_SYS_MODULE'] });
    for (const p of [user, rootNoCaps]) {
      expectFails(host, () => host.insmod(kvm0, {}, { as: p }), 'EPERM', 'insmod');
      expectFails(host, () => host.modprobe(kvm0, {}, { as: p }), 'EPERM', 'modprobe');
      expectFails(host, () => host.modprobe('vac', {}, { as: p }), 'EPERM', 'modprobe vac');
      tally.badInputs += 3;
    }
    host.modprobe(kvm0, {}, { as: capOnly });
    for (const p of [user, rootNoCaps]) {
      for (const m of ['kvm0', 'vac', 'nope']) {
        expectFails(host, () => host.rmmod(m, { as: p }), 'EPERM', `rmmod ${m}`);
        tally.badInputs++;
      }
    }
    host.rmmod('kvm0', { as: capOnly });
    host.rmmod('vac', { as: capOnly });
    expect(host.lsmod()).toEqual([]);
  });

  test('a VM or vCPU of kvm0 handed to kvm1’s operations is refused (EBADF); kvm0’s VM is untouched', () => {
    const host = makeHost(vendor);
    host.modprobe(kvm0);
    host.modprobe(kvm1);
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const t = readyVm(p, '/dev/kvm0', GUESTS.io, 2);
    const k1 = inst(host, 'kvm1');
    const ops1 = makeFileOps(k1);
    const vmFile = p.file(t.vm) as never;
    const vcpuFile = p.file(t.vcpus[0] as number) as never;
    const before = kvm0State(host);
    const region = { slot: 1, flags: 0, guest_phys_addr: 0x10000, memory_size: 0x1000, userspace_addr: 0 };
    const refused: Array<[string, () => unknown]> = [
      ['KVM_CREATE_VCPU', () => ops1.vm.ioctl?.(vmFile, KVM_CREATE_VCPU, 5, p)],
      ['KVM_SET_USER_MEMORY_REGION', () => ops1.vm.ioctl?.(vmFile, KVM_SET_USER_MEMORY_REGION, region, p)],
      ['KVM_MEMORY_ENCRYPT_OP', () => ops1.vm.ioctl?.(vmFile, KVM_MEMORY_ENCRYPT_OP, { id: 0, data: 0, error: 0, sev_fd: 0 }, p)],
      ['KVM_RUN', () => ops1.vcpu.ioctl?.(vcpuFile, KVM_RUN, 0, p)],
      ['KVM_GET_REGS', () => ops1.vcpu.ioctl?.(vcpuFile, KVM_GET_REGS, makeKvmRegs(), p)],
      ['kvm_destroy_vm', () => k1.destroyVm([...inst(host, 'kvm0').vms][0] as never)],
    ];
    for (const [what, fn] of refused) {
      expectFails(host, fn, 'EBADF', what);
      tally.badInputs++;
    }
    // Threaded KVM_RUN through kvm1's blocking ioctl.
    const gen = ops1.vcpu.ioctlBlocking?.(vcpuFile, KVM_RUN, 0, p, host.scheduler.spawn(p, {}, function* () {}));
    expectFails(host, () => gen?.next(), 'EBADF', 'threaded KVM_RUN');
    expect(kvm0State(host)).toEqual(before);
    expect(p.ioctl(t.vcpus[0] as number, KVM_RUN, 0)).toBe(0);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('nothing kvm1 does changes kvm0’s VMs, vCPUs or VAC registrations', () => {
    const host = makeHost(vendor);
    host.modprobe(kvm0);
    const a = host.spawn({ uid: 1000, groups: ['kvm'] });
    const t0 = readyVm(a, '/dev/kvm0', GUESTS.spin, 2, (vm) => {
      if (vendor.name === 'amd') a.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, { id: 0, data: 0, error: 0, sev_fd: 0 });
    });
    void t0;
    const before = kvm0State(host);
    const b = host.spawn({ uid: 1000, groups: ['kvm'], cpu: 1 });
    // kvm1: a failing init at every step, then a load with other parameters, VMs, runs, threads, a kill,
    // faults, an unload.
    for (let k = 1; k <= 7; k++) {
      host.faults.failModuleInit('kvm1', k);
      expectFails(host, () => host.insmod(kvm1, vendor.name === 'intel' ? { vpid: 0 } : { sev: 0 }), 'ENOMEM', `kvm1 step ${k}`);
    }
    host.insmod(kvm1, vendor.name === 'intel' ? { vpid: 0, enable_virt_at_load: 0 } : { sev: 0, enable_virt_at_load: 0 });
    expect(kvm0State(host)).toEqual(before);
    const t1 = readyVm(b, '/dev/kvm1', GUESTS.io, 3);
    for (const fd of t1.vcpus) expect(b.ioctl(fd, KVM_RUN, 0)).toBe(0);
    host.scheduler.spawn(b, { cpu: 2 }, function* (th) {
      for (;;) {
        yield* th.ioctl(t1.vcpus[0] as number, KVM_RUN, 0);
        yield;
      }
    });
    host.scheduler.run(3);
    host.faults.failNth('vcpu', 1);
    expectFails(host, () => b.ioctl(t1.vm, KVM_CREATE_VCPU, 9), 'ENOMEM', 'kvm1 vcpu fault');
    b.kill();
    host.rmmod('kvm1');
    expect(kvm0State(host)).toEqual(before);
    // The other module's VPIDs (Intel) / SEV ASID (AMD) are still kvm0's.
    const vac = vacIn(host);
    if (vendor.name === 'intel') expect((vac.tryResource(VPIDS)?.holders() ?? []).map((h) => h.holder)).toEqual(['kvm0/vm1/vcpu0', 'kvm0/vm1/vcpu1']);
    else expect(vac.tryResource(SEV_ASIDS)?.state()?.inUse.map((h) => h.holder)).toEqual(['kvm0/vm1']);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('through the VAC handle: another instance’s VPID / SEV ASID / tag / usage references are refused', () => {
    const host = makeHost(vendor);
    host.modprobe(kvm0, { enable_virt_at_load: 0 });
    const a = host.spawn({ uid: 1000, groups: ['kvm'] });
    const t = readyVm(a, '/dev/kvm0', GUESTS.spin, 2, (vm) => {
      if (vendor.name === 'amd') a.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, { id: 0, data: 0, error: 0, sev_fd: 0 });
    });
    const vac = vacIn(host);
    const evil = vac.attach(idleVacInstance('evil'));
    const tag = { instance: 'kvm0', vm: 1, vcpu: 0 };
    const before = kvm0State(host);
    expectFails(host, () => vac.attach(idleVacInstance('kvm0')), 'EEXIST', 'attach under a taken name');
    if (vendor.name === 'intel') {
      for (const { vpid } of (vac.tryResource(VPIDS)?.holders() ?? [])) expectFails(host, () => evil.resource(VPIDS).free(vpid), 'EPERM', `free kvm0's VPID ${vpid}`);
      expectFails(host, () => evil.resource(VPIDS).allocate(tag), 'EPERM', 'allocate a VPID tagged kvm0');
    } else {
      for (const { asid } of vac.tryResource(SEV_ASIDS)?.state()?.inUse ?? []) expectFails(host, () => evil.resource(SEV_ASIDS).free(asid), 'EPERM', `free kvm0's SEV ASID ${asid}`);
      expectFails(host, () => evil.resource(SEV_ASIDS).alloc(false, { ...tag, vcpu: -1 }), 'EPERM', 'SEV ASID tagged kvm0');
      expectFails(host, () => evil.resource(ASIDS).newAsid(0, tag), 'EPERM', 'an ASID tagged kvm0');
      // Releasing kvm0's ASIDs through another handle does nothing.
      evil.resource(ASIDS).release(tag);
    }
    for (const holder of ['', 'vm1', 'vm2']) expectFails(host, () => evil.disableVirtualization(holder), 'EINVAL', `drop kvm0's reference ${holder}`);
    tally.badInputs += 8;
    expect(kvm0State(host)).toEqual(before);
    expect(vac.usageCount).toBe(1);
    // vcpu_put of a CPU where kvm0 runs a vCPU does not take kvm0's running mark away.
    host.scheduler.spawn(a, { cpu: 1 }, function* (th) {
      for (;;) {
        yield* th.ioctl(t.vcpus[0] as number, KVM_RUN, 0);
        yield;
      }
    });
    host.scheduler.run(2);
    expect(vac.cpu(1).running).toBe('kvm0/vm1/vcpu0');
    evil.vcpuPut(1);
    expect(vac.cpu(1).running).toBe('kvm0/vm1/vcpu0');
    expect(host.raisePmi(1)).toMatchObject({ state: PERF_GUEST_ACTIVE, attributedTo: 'kvm0/vm1/vcpu0' });
    evil.detach();
    expect(vac.instances()).toEqual(['kvm0']);
    expect(checkInvariants(host)).toEqual([]);
  });

  // VacHandle.vcpuLoad refuses (EBUSY) a CPU where another instance runs a vCPU, so another handle can
  // neither take the PMIs of kvm0's running guest nor clear its running mark (invariant 5).
  test('another handle’s vcpuLoad cannot take over a CPU where kvm0 runs a guest', () => {
    const host = makeHost(vendor);
    host.modprobe(kvm0);
    const a = host.spawn({ uid: 1000, groups: ['kvm'] });
    const t = readyVm(a, '/dev/kvm0', GUESTS.spin, 1);
    host.scheduler.spawn(a, { cpu: 1 }, function* (th) {
      for (;;) {
        yield* th.ioctl(t.vcpus[0] as number, KVM_RUN, 0);
        yield;
      }
    });
    host.scheduler.run(2);
    const evil = vacIn(host).attach(idleVacInstance('evil'));
    expect(() => evil.vcpuLoad(1)).toThrow(expect.objectContaining({ code: 'EBUSY' }));
    expect(host.raisePmi(1)).toMatchObject({ state: PERF_GUEST_ACTIVE, attributedTo: 'kvm0/vm1/vcpu0' });
    evil.vcpuPut(1);
    host.scheduler.run(1);
    expect(host.raisePmi(1)).toMatchObject({ state: PERF_GUEST_ACTIVE, attributedTo: 'kvm0/vm1/vcpu0' });
  });
});
