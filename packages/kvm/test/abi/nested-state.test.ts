/**
 * KVM_GET_NESTED_STATE / KVM_SET_NESTED_STATE and KVM_CAP_NESTED_STATE (arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl`;
 * vmx/nested.c `vmx_get_nested_state` / `vmx_set_nested_state`; svm/nested.c `svm_get_nested_state` /
 * `svm_set_nested_state`), for vCPUs that never entered VMX/SVM operation.
 */
import { O_RDWR, createHost } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_NESTED_STATE,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_NESTED_STATE,
  KVM_NESTED_STATE_CODEC,
  KVM_RUN,
  KVM_SET_NESTED_STATE,
  KVM_STATE_NESTED_EVMCS,
  KVM_STATE_NESTED_FORMAT_SVM,
  KVM_STATE_NESTED_FORMAT_VMX,
  KVM_STATE_NESTED_GIF_SET,
  KVM_STATE_NESTED_GUEST_MODE,
  KVM_STATE_NESTED_MTF_PENDING,
  KVM_STATE_NESTED_RUN_PENDING,
  KVM_STATE_NESTED_SMM_VMXON,
  KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE,
  KVM_SVM_NESTED_STATE_HDR_CODEC,
  KVM_VMX_NESTED_STATE_HDR_CODEC,
  kvm,
  makeKvmNestedState,
  type kvm_nested_state,
} from '../../src/index.js';
import { toy, toyKvmOps } from '../third-vendor/toy.js';
import { VENDORS } from '../module/helpers.js';
import { guestVm } from './guest-vm.js';
import { errnoOf, openVm } from './support.js';

const ALL_ONES = 0xffff_ffff_ffff_ffffn;

/** The state KVM_GET_NESTED_STATE answers on `vendor` with a buffer of `size`. */
function getState(p: ReturnType<typeof openVm>['p'], fd: number, size = 0x3000): kvm_nested_state {
  const s = makeKvmNestedState({ size });
  p.ioctl(fd, KVM_GET_NESTED_STATE, s);
  return s;
}

describe.each(VENDORS)('KVM_GET/SET_NESTED_STATE ($name)', (vendor) => {
  const intel = vendor.name === 'intel';

  test('GET: the header alone (size 128) in the vendor\'s format — VMX: vmxon_pa and vmcs12_pa -1, flags 0; SVM: flags GIF_SET, vmcb_pa 0', () => {
    const s = openVm(vendor);
    const st = getState(s.p, s.vcpus[0] as number);
    expect(st.size).toBe(128);
    if (intel) {
      expect(st.format).toBe(KVM_STATE_NESTED_FORMAT_VMX);
      expect(st.flags).toBe(0);
      const h = KVM_VMX_NESTED_STATE_HDR_CODEC.decode(new DataView(st.hdr.buffer), 0);
      expect(h).toEqual({ vmxon_pa: ALL_ONES, vmcs12_pa: ALL_ONES, smm: { flags: 0 }, flags: 0, preemption_timer_deadline: 0n });
      expect(st.hdr.subarray(32).every((b) => b === 0)).toBe(true);
    } else {
      expect(st.format).toBe(KVM_STATE_NESTED_FORMAT_SVM);
      expect(st.flags).toBe(KVM_STATE_NESTED_GIF_SET);
      expect(KVM_SVM_NESTED_STATE_HDR_CODEC.decode(new DataView(st.hdr.buffer), 0)).toEqual({ vmcb_pa: 0n });
      expect(st.hdr.every((b) => b === 0)).toBe(true);
    }
  });

  test('GET with a buffer smaller than the state: E2BIG, and only the size is written (128)', () => {
    const s = openVm(vendor);
    const fd = s.vcpus[0] as number;
    for (const size of [0, 127]) {
      const st = makeKvmNestedState({ size, flags: 0xabc, format: 7 });
      expect(errnoOf(s.host, () => s.p.ioctl(fd, KVM_GET_NESTED_STATE, st))).toBe('E2BIG');
      expect(st).toEqual(makeKvmNestedState({ size: 128, flags: 0xabc, format: 7 }));
    }
    // Exactly the state's size is enough.
    expect(getState(s.p, fd, 128).size).toBe(128);
  });

  test('GET into C bytes shorter than the header: only `size` is read and written (E2BIG); too short for `size`: EFAULT', () => {
    const s = openVm(vendor);
    const fd = s.vcpus[0] as number;
    const b = new Uint8Array(16).fill(0xee);
    new DataView(b.buffer).setUint32(4, 8, true);
    expect(errnoOf(s.host, () => s.p.ioctl(fd, KVM_GET_NESTED_STATE, b))).toBe('E2BIG');
    expect(new DataView(b.buffer).getUint32(4, true)).toBe(128);
    expect([...b.subarray(0, 4), ...b.subarray(8)].every((x) => x === 0xee)).toBe(true);
    // A size that claims room the bytes do not have: copy_to_user of the header faults.
    new DataView(b.buffer).setUint32(4, 128, true);
    expect(errnoOf(s.host, () => s.p.ioctl(fd, KVM_GET_NESTED_STATE, b))).toBe('EFAULT');
    expect(errnoOf(s.host, () => s.p.ioctl(fd, KVM_GET_NESTED_STATE, new Uint8Array(7)))).toBe('EFAULT');
  });

  test('GET into C bytes (a Uint8Array of the header)', () => {
    const s = openVm(vendor);
    const b = new Uint8Array(128);
    new DataView(b.buffer).setUint32(4, 128, true);
    s.p.ioctl(s.vcpus[0] as number, KVM_GET_NESTED_STATE, b);
    expect(KVM_NESTED_STATE_CODEC.decode(new DataView(b.buffer), 0)).toEqual(getState(s.p, s.vcpus[0] as number));
  });

  test('SET of what GET answered: 0, the vCPU unchanged, and it still runs', () => {
    const g = guestVm(vendor, [0xf4]);
    const st = getState(g.p, g.fd);
    const before = g.host.snapshot();
    expect(g.p.ioctl(g.fd, KVM_SET_NESTED_STATE, st)).toBe(0);
    expect(g.host.snapshot()).toEqual(before);
    expect(getState(g.p, g.fd)).toEqual(st);
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
  });

  test('SET with a size beyond the header (the data is not read without a nested guest) is taken', () => {
    const s = openVm(vendor);
    const st = { ...getState(s.p, s.vcpus[0] as number), size: intel ? 8320 : 4224 };
    expect(s.p.ioctl(s.vcpus[0] as number, KVM_SET_NESTED_STATE, st)).toBe(0);
  });

  /** The state GET answers, changed by `edit`. */
  const bad: Array<[string, (st: kvm_nested_state) => void]> = [
    ['size below the header (127)', (st) => { st.size = 127; }],
    ['size 0', (st) => { st.size = 0; }],
    ['an unknown flag (0x10)', (st) => { st.flags |= 0x10; }],
    ['RUN_PENDING without GUEST_MODE', (st) => { st.flags |= KVM_STATE_NESTED_RUN_PENDING; }],
    ['the other vendor\'s format', (st) => { st.format = intel ? KVM_STATE_NESTED_FORMAT_SVM : KVM_STATE_NESTED_FORMAT_VMX; }],
    ['format 2', (st) => { st.format = 2; }],
    ['GUEST_MODE (no nested guest can run)', (st) => { st.flags |= KVM_STATE_NESTED_GUEST_MODE; }],
    ['GUEST_MODE | RUN_PENDING', (st) => { st.flags |= KVM_STATE_NESTED_GUEST_MODE | KVM_STATE_NESTED_RUN_PENDING; }],
    ['MTF_PENDING', (st) => { st.flags |= KVM_STATE_NESTED_MTF_PENDING; }],
  ];
  const vmxBad: Array<[string, (st: kvm_nested_state) => void]> = [
    ['vmxon_pa set (the guest cannot use VMX)', (st) => { new DataView(st.hdr.buffer).setBigUint64(0, 0x10000n, true); }],
    ['vmcs12_pa set without vmxon_pa', (st) => { new DataView(st.hdr.buffer).setBigUint64(8, 0x20000n, true); }],
    ['smm.flags without VMX operation', (st) => { new DataView(st.hdr.buffer).setUint16(16, KVM_STATE_NESTED_SMM_VMXON, true); }],
    ['hdr.vmx.flags with an unknown bit', (st) => { new DataView(st.hdr.buffer).setUint32(20, 2, true); }],
    ['EVMCS (no enlightened VMCS)', (st) => { st.flags |= KVM_STATE_NESTED_EVMCS; }],
    ['GIF_SET (SVM\'s flag)', (st) => { st.flags |= KVM_STATE_NESTED_GIF_SET; }],
  ];
  const svmBad: Array<[string, (st: kvm_nested_state) => void]> = [
    ['GIF clear (flags 0) while EFER.SVME is clear', (st) => { st.flags = 0; }],
    ['EVMCS (not SVM\'s)', (st) => { st.flags |= KVM_STATE_NESTED_EVMCS; }],
  ];

  test.each([...bad, ...(intel ? vmxBad : svmBad)])('SET with %s: EINVAL, the vCPU unchanged', (_what, edit) => {
    const s = openVm(vendor);
    const fd = s.vcpus[0] as number;
    const st = getState(s.p, fd);
    edit(st);
    expect(errnoOf(s.host, () => s.p.ioctl(fd, KVM_SET_NESTED_STATE, st))).toBe('EINVAL');
  });

  test.each([...bad, ...(intel ? vmxBad : svmBad)])('SET of C bytes with %s: EINVAL, the vCPU unchanged', (_what, edit) => {
    const g = guestVm(vendor, [0xf4]);
    const st = getState(g.p, g.fd);
    edit(st);
    const b = new Uint8Array(KVM_NESTED_STATE_CODEC.size);
    KVM_NESTED_STATE_CODEC.encode(st, new DataView(b.buffer), 0);
    const before = g.host.snapshot();
    expect(errnoOf(g.host, () => g.p.ioctl(g.fd, KVM_SET_NESTED_STATE, b))).toBe('EINVAL');
    expect(g.host.snapshot()).toEqual(before);
  });

  test('SET of C bytes: what GET wrote is taken (inside a larger buffer too); fewer bytes than the header: EFAULT', () => {
    const g = guestVm(vendor, [0xf4]);
    const b = new Uint8Array(200).fill(0xee);
    new DataView(b.buffer).setUint32(4, 200, true);
    g.p.ioctl(g.fd, KVM_GET_NESTED_STATE, b);
    expect([...b.subarray(128)].every((x) => x === 0xee)).toBe(true);
    const before = g.host.snapshot();
    expect(g.p.ioctl(g.fd, KVM_SET_NESTED_STATE, b.subarray(0, 128))).toBe(0);
    expect(g.p.ioctl(g.fd, KVM_SET_NESTED_STATE, b)).toBe(0);
    expect(g.host.snapshot()).toEqual(before);
    expect(errnoOf(g.host, () => g.p.ioctl(g.fd, KVM_SET_NESTED_STATE, b.slice(0, 127)))).toBe('EFAULT');
  });

  test.runIf(intel)('VMX: PREEMPTION_TIMER_DEADLINE in hdr.vmx.flags is taken outside VMX operation (and the deadline ignored)', () => {
    const s = openVm(vendor);
    const fd = s.vcpus[0] as number;
    const st = getState(s.p, fd);
    const dv = new DataView(st.hdr.buffer);
    dv.setUint32(20, KVM_STATE_VMX_PREEMPTION_TIMER_DEADLINE, true);
    dv.setBigUint64(24, 12345n, true);
    expect(s.p.ioctl(fd, KVM_SET_NESTED_STATE, st)).toBe(0);
    expect(getState(s.p, fd)).toEqual({ ...st, hdr: getState(s.p, fd).hdr });
    expect(new DataView(getState(s.p, fd).hdr.buffer).getUint32(20, true)).toBe(0);
  });

  test('bad pointers: EFAULT', () => {
    const s = openVm(vendor);
    const fd = s.vcpus[0] as number;
    expect(errnoOf(s.host, () => s.p.ioctl(fd, KVM_GET_NESTED_STATE, null))).toBe('EFAULT');
    expect(errnoOf(s.host, () => s.p.ioctl(fd, KVM_SET_NESTED_STATE, null))).toBe('EFAULT');
  });
});

describe('a vendor without nested-state ops (the third vendor of test/third-vendor)', () => {
  test('KVM_CAP_NESTED_STATE is 0 and both ioctls are EINVAL, whatever the argument (nested_ops->get_state is NULL)', () => {
    const host = createHost({ cpus: 1, hardware: toy() });
    host.modprobe(kvm({ postfix: '0', vendors: [toyKvmOps] }));
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const sys = p.open('/dev/kvm0', O_RDWR);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_NESTED_STATE)).toBe(0);
    const vcpu = p.ioctl(p.ioctl(sys, KVM_CREATE_VM, 0), KVM_CREATE_VCPU, 0);
    expect(errnoOf(host, () => p.ioctl(vcpu, KVM_GET_NESTED_STATE, makeKvmNestedState({ size: 0x3000 })))).toBe('EINVAL');
    expect(errnoOf(host, () => p.ioctl(vcpu, KVM_GET_NESTED_STATE, null))).toBe('EINVAL');
    expect(errnoOf(host, () => p.ioctl(vcpu, KVM_SET_NESTED_STATE, makeKvmNestedState({ size: 128 })))).toBe('EINVAL');
  });
});
