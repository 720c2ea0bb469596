/**
 * KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM and KVM_CAP_VM_COPY_ENC_CONTEXT_FROM (module/enc-context.ts, SvmVm): within one
 * module with Linux's errno and SEV ASID effects, EBADF across modules as `file_is_kvm` makes it with the RFC, and —
 * beyond the RFC, behind `vac.cross_module_moves` — a move of the encryption context that VAC hands from kvm0's VM to
 * kvm1's.
 */
import { checkInvariants, createHost, isKernelError, O_RDWR, vacOf, type Host, type HostOptions, type Process } from '@vac/core';
import { amd, SEV_ASIDS } from '@vac/svm';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_VM_COPY_ENC_CONTEXT_FROM,
  KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_ENABLE_CAP,
  KVM_GET_REGS,
  KVM_MEMORY_ENCRYPT_OP,
  kvm,
  makeKvmEnableCap,
  makeKvmRegs,
} from '../../src/index.js';

const SEV_INIT = 0;
const SEV_ES_INIT = 1;

function setup(hardware: HostOptions['hardware'] = amd(), vacParams: Record<string, string> = {}): { host: Host; p: Process; s0: number; s1: number } {
  const host = createHost({ cpus: 2, hardware });
  host.modprobe('vac', vacParams);
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  return { host, p, s0: p.open('/dev/kvm0', O_RDWR), s1: p.open('/dev/kvm1', O_RDWR) };
}

function sevVm(p: Process, sys: number, cmd: number | undefined): number {
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  if (cmd !== undefined) p.ioctl(vm, KVM_MEMORY_ENCRYPT_OP, { id: cmd, data: 0, error: 0, sev_fd: 0 });
  return vm;
}

function take(p: Process, dst: number, cap: number, src: number | bigint): number {
  return p.ioctl(dst, KVM_ENABLE_CAP, makeKvmEnableCap({ cap, args: [BigInt(src), 0n, 0n, 0n] }));
}

function errnoOf(fn: () => unknown): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    if (isKernelError(e)) return e.code;
    throw e;
  }
}

function sevState(host: Host): { inUse: Array<{ asid: number; holder: string }>; awaitingReclaim: readonly number[] } {
  const st = vacOf(host)?.tryResource(SEV_ASIDS)?.state();
  if (st === undefined) throw new Error('no SEV ASIDs');
  return { inUse: st.inUse, awaitingReclaim: st.awaitingReclaim };
}

const MOVE = KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM;
const COPY = KVM_CAP_VM_COPY_ENC_CONTEXT_FROM;

describe('within one module', () => {
  test('a move takes the SEV ASID over; the source is dead (EIO) but its ASID is not freed when it goes', () => {
    const { host, p, s0 } = setup();
    const src = sevVm(p, s0, SEV_INIT);
    const srcVcpu = p.ioctl(src, KVM_CREATE_VCPU, 0);
    const dst = sevVm(p, s0, undefined);
    expect(sevState(host).inUse).toEqual([{ asid: 100, holder: 'kvm0/vm1' }]);
    expect(take(p, dst, MOVE, src)).toBe(0);
    expect(sevState(host).inUse).toEqual([{ asid: 100, holder: 'kvm0/vm2' }]);
    expect(errnoOf(() => p.ioctl(src, KVM_CHECK_EXTENSION, MOVE))).toBe('EIO');
    expect(errnoOf(() => p.ioctl(srcVcpu, KVM_GET_REGS, makeKvmRegs()))).toBe('EIO');
    expect(checkInvariants(host)).toEqual([]);
    p.close(srcVcpu);
    p.close(src);
    expect(sevState(host)).toEqual({ inUse: [{ asid: 100, holder: 'kvm0/vm2' }], awaitingReclaim: [] });
    p.close(dst);
    expect(sevState(host)).toEqual({ inUse: [], awaitingReclaim: [100] });
  });

  test('Linux\'s EINVAL and EBADF, with nothing changed', () => {
    const { host, p, s0, s1 } = setup();
    const sev = sevVm(p, s0, SEV_INIT);
    const plain = sevVm(p, s0, undefined);
    const other = sevVm(p, s0, SEV_INIT);
    const before = sevState(host);
    expect(errnoOf(() => take(p, sev, MOVE, sev))).toBe('EINVAL'); // sev_lock_two_vms: the same VM
    expect(errnoOf(() => take(p, other, MOVE, sev))).toBe('EINVAL'); // sev_guest(dst)
    expect(errnoOf(() => take(p, plain, MOVE, plain + 0))).toBe('EINVAL');
    const plain2 = sevVm(p, s0, undefined);
    expect(errnoOf(() => take(p, plain2, MOVE, plain))).toBe('EINVAL'); // !sev_guest(src)
    expect(errnoOf(() => take(p, plain, MOVE, 999))).toBe('EBADF'); // fdget
    expect(errnoOf(() => take(p, plain, MOVE, s0))).toBe('EBADF'); // /dev/kvm0 is no VM file
    const foreign = sevVm(p, s1, SEV_INIT);
    expect(errnoOf(() => take(p, plain, MOVE, foreign))).toBe('EBADF'); // file_is_kvm: kvm1's VM, not kvm0's fops
    expect(errnoOf(() => take(p, plain, COPY, foreign))).toBe('EBADF');
    expect(sevState(host).inUse).toEqual([...before.inUse, { asid: 102, holder: 'kvm1/vm1' }]);
    // (unsigned int)args[0]: the upper bits are dropped
    expect(take(p, plain, MOVE, (1n << 32n) | BigInt(sev))).toBe(0);
  });

  test('on VMX: EINVAL whatever the fd (no vm_move/copy_enc_context_from), though the capability answers 1', () => {
    const { p, s0 } = setup(intel());
    const a = sevVm(p, s0, undefined);
    const b = sevVm(p, s0, undefined);
    expect(p.ioctl(s0, KVM_CHECK_EXTENSION, MOVE)).toBe(1);
    expect(p.ioctl(a, KVM_CHECK_EXTENSION, COPY)).toBe(1);
    expect(errnoOf(() => take(p, a, MOVE, b))).toBe('EINVAL');
    expect(errnoOf(() => take(p, a, COPY, 999))).toBe('EINVAL');
  });

  test('SEV-ES: the vCPU counts must match and the source\'s vCPUs need protected state (not modelled): EINVAL; with none, it moves', () => {
    const { host, p, s0 } = setup();
    const src = sevVm(p, s0, SEV_ES_INIT);
    const dst = sevVm(p, s0, undefined);
    p.ioctl(dst, KVM_CREATE_VCPU, 0);
    expect(errnoOf(() => take(p, dst, MOVE, src))).toBe('EINVAL'); // 1 vCPU here, 0 there
    p.ioctl(src, KVM_CREATE_VCPU, 0);
    expect(errnoOf(() => take(p, dst, MOVE, src))).toBe('EINVAL'); // guest state not protected
    const src2 = sevVm(p, s0, SEV_ES_INIT);
    const dst2 = sevVm(p, s0, undefined);
    expect(take(p, dst2, MOVE, src2)).toBe(0);
    expect(sevState(host).inUse).toEqual([{ asid: 1, holder: 'kvm0/vm1' }, { asid: 2, holder: 'kvm0/vm4' }]);
  });

  test('a copy mirrors the ASID, which the source keeps and lives on for: the mirror holds the source VM', () => {
    const { host, p, s0 } = setup();
    const src = sevVm(p, s0, SEV_INIT);
    const mirror = sevVm(p, s0, undefined);
    expect(take(p, mirror, COPY, src)).toBe(0);
    expect(sevState(host).inUse).toEqual([{ asid: 100, holder: 'kvm0/vm1' }]);
    expect(checkInvariants(host)).toEqual([]); // the shared ASID is the owner's only
    // a mirror of a mirror, a second copy into an SEV guest, a copy into a VM with vCPUs: EINVAL
    const m2 = sevVm(p, s0, undefined);
    expect(errnoOf(() => take(p, m2, COPY, mirror))).toBe('EINVAL');
    expect(errnoOf(() => take(p, mirror, COPY, src))).toBe('EINVAL');
    p.ioctl(m2, KVM_CREATE_VCPU, 0);
    expect(errnoOf(() => take(p, m2, COPY, src))).toBe('EINVAL');
    // the source's fd goes, the VM stays (kvm_get_kvm) with its ASID; the mirror's going releases both
    p.close(src);
    expect(sevState(host)).toEqual({ inUse: [{ asid: 100, holder: 'kvm0/vm1' }], awaitingReclaim: [] });
    p.close(mirror);
    expect(sevState(host)).toEqual({ inUse: [], awaitingReclaim: [100] });
  });

  test('a move takes the mirrors along: they keep the new owner alive', () => {
    const { host, p, s0 } = setup();
    const src = sevVm(p, s0, SEV_INIT);
    const mirror = sevVm(p, s0, undefined);
    take(p, mirror, COPY, src);
    const dst = sevVm(p, s0, undefined);
    expect(take(p, dst, MOVE, src)).toBe(0);
    p.close(src);
    p.close(dst);
    expect(sevState(host)).toEqual({ inUse: [{ asid: 100, holder: 'kvm0/vm3' }], awaitingReclaim: [] });
    p.close(mirror);
    expect(sevState(host)).toEqual({ inUse: [], awaitingReclaim: [100] });
  });
});

describe('beyond the RFC: vac.cross_module_moves', () => {
  test('off (the RFC): EBADF; on: kvm1 takes kvm0\'s encryption context, VAC hands the ASID over, and kvm0 can go', () => {
    const off = setup();
    const a = sevVm(off.p, off.s0, SEV_INIT);
    const b = sevVm(off.p, off.s1, undefined);
    expect(errnoOf(() => take(off.p, b, MOVE, a))).toBe('EBADF');
    expect(off.host.readParam('vac', 'cross_module_moves')).toBe('N');

    const { host, p, s0, s1 } = setup(amd(), { cross_module_moves: 'Y' });
    expect(host.readParam('vac', 'cross_module_moves')).toBe('Y');
    const src = sevVm(p, s0, SEV_INIT);
    const dst = sevVm(p, s1, undefined);
    expect(take(p, dst, MOVE, src)).toBe(0);
    expect(sevState(host).inUse).toEqual([{ asid: 100, holder: 'kvm1/vm1' }]);
    expect(errnoOf(() => p.ioctl(src, KVM_CHECK_EXTENSION, MOVE))).toBe('EIO');
    expect(checkInvariants(host)).toEqual([]);
    p.close(src);
    p.close(s0);
    host.rmmod('kvm0'); // kvm0 holds nothing of the moved VM any more
    expect(sevState(host).inUse).toEqual([{ asid: 100, holder: 'kvm1/vm1' }]);
    p.close(dst);
    expect(sevState(host)).toEqual({ inUse: [], awaitingReclaim: [100] });
    // a copy stays within one module even so
    const s2 = p.open('/dev/kvm1', O_RDWR);
    const x = sevVm(p, s2, SEV_INIT);
    host.modprobe(kvm({ postfix: '0' }));
    const y = sevVm(p, p.open('/dev/kvm0', O_RDWR), undefined);
    expect(errnoOf(() => take(p, y, COPY, x))).toBe('EBADF');
  });

  test('on, but the source has a mirror: EINVAL, nothing handed over', () => {
    const { host, p, s0, s1 } = setup(amd(), { cross_module_moves: 'Y' });
    const src = sevVm(p, s0, SEV_INIT);
    const mirror = sevVm(p, s0, undefined);
    take(p, mirror, COPY, src);
    const dst = sevVm(p, s1, undefined);
    expect(errnoOf(() => take(p, dst, MOVE, src))).toBe('EINVAL');
    expect(sevState(host).inUse).toEqual([{ asid: 100, holder: 'kvm0/vm1' }]);
    expect(p.ioctl(src, KVM_CHECK_EXTENSION, MOVE)).toBe(1);
  });
});
