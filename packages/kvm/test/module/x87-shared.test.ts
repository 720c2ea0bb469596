/**
 * The guest's x87/SSE state is the vCPU's FPU image, both ways: what KVM_SET_FPU / KVM_SET_XSAVE load is what the
 * guest's FNSTCW / FNSTSW / FXSAVE see, and what the guest's FNINIT / FXRSTOR / LDMXCSR do is what KVM_GET_FPU /
 * KVM_GET_XSAVE show — with the XSTATE_BV rules the real kernel shows (conformance facts `xsave.x87.*`: a component
 * not in XSTATE_BV reads as its init values; KVM_SET_FPU does not touch the header).
 */
import { createHost, O_RDWR, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CREATE_VM,
  KVM_GET_FPU,
  KVM_GET_XSAVE,
  KVM_RUN,
  KVM_SET_FPU,
  KVM_SET_SREGS,
  KVM_GET_SREGS,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_XSAVE,
  createRealModeVcpu,
  kvm,
  makeKvmFpu,
  makeKvmSregs,
} from '../../src/index.js';
import { VENDORS } from './helpers.js';

interface Guest {
  readonly p: Process;
  readonly fd: number;
  readonly mem: Uint8Array;
}

/** A real-mode guest running `code` at 0x1000, its memory at guest-physical 0. */
function guest(vendor: (typeof VENDORS)[number], code: readonly number[]): Guest {
  const host = createHost({ cpus: 1, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const sys = p.open('/dev/kvm0', O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const m = p.mmapAnonymous(0x10000);
  m.bytes.set(code, 0x1000);
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: m.addr });
  const v = createRealModeVcpu(p, sys, vm, { guestPhysAddr: 0x1000 });
  return { p, fd: v.fd, mem: m.bytes };
}

const word = (b: Uint8Array, at: number): number => b[at]! | (b[at + 1]! << 8);
const FNSTCW_500 = [0xd9, 0x3e, 0x00, 0x05];
const FNINIT = [0xdb, 0xe3];
const HLT = [0xf4];

function xsaveOf(g: Guest): Uint8Array {
  const b = new Uint8Array(4096);
  g.p.ioctl(g.fd, KVM_GET_XSAVE, b);
  return b;
}

describe.each(VENDORS)('the x87 state shared by the guest and the FPU ioctls on $name', (vendor) => {
  test('KVM_SET_XSAVE with x87 in XSTATE_BV reaches the guest; its FNINIT reaches KVM_GET_XSAVE (init values, bit clear) while KVM_GET_FPU keeps the bytes', () => {
    const g = guest(vendor, [...FNSTCW_500, ...FNINIT, 0xd9, 0x3e, 0x02, 0x05, 0xdd, 0x3e, 0x04, 0x05, ...HLT]);
    g.mem[0x504] = 0xff;
    const area = xsaveOf(g);
    const dv = new DataView(area.buffer);
    dv.setUint16(0, 0x27f, true);
    dv.setUint16(2, 0x800, true);
    area[4] = 0x80;
    area[512] = area[512]! | 1;
    g.p.ioctl(g.fd, KVM_SET_XSAVE, area);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect([word(g.mem, 0x500), word(g.mem, 0x502), word(g.mem, 0x504)]).toEqual([0x27f, 0x37f, 0]);
    const after = xsaveOf(g);
    expect(after[512]! & 1).toBe(0);
    expect(new DataView(after.buffer).getUint16(0, true)).toBe(0x37f);
    const fpu = makeKvmFpu();
    g.p.ioctl(g.fd, KVM_GET_FPU, fpu);
    expect([fpu.fcw, fpu.fsw, fpu.ftwx]).toEqual([0x27f, 0x800, 0x80]);
  });

  test('KVM_SET_FPU on a new vCPU (x87 not in XSTATE_BV) does not reach the guest, as on the real kernel', () => {
    const g = guest(vendor, [...FNSTCW_500, ...HLT]);
    const fpu = makeKvmFpu();
    g.p.ioctl(g.fd, KVM_GET_FPU, fpu);
    g.p.ioctl(g.fd, KVM_SET_FPU, { ...fpu, fcw: 0x27f });
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(word(g.mem, 0x500)).toBe(0x37f);
  });

  test('the guest\'s FXRSTOR reaches KVM_GET_FPU and KVM_GET_XSAVE (x87 and SSE live); KVM_SET_FPU then reaches its FXSAVE', () => {
    // fxrstor [0x2000]; hlt; fxsave [0x2200]; hlt
    const g = guest(vendor, [0x0f, 0xae, 0x0e, 0x00, 0x20, ...HLT, 0x0f, 0xae, 0x06, 0x00, 0x22, ...HLT]);
    const sregs = makeKvmSregs();
    g.p.ioctl(g.fd, KVM_GET_SREGS, sregs);
    g.p.ioctl(g.fd, KVM_SET_SREGS, { ...sregs, cr4: sregs.cr4 | 0x200n });
    const area = new DataView(g.mem.buffer, g.mem.byteOffset + 0x2000, 512);
    area.setUint16(0, 0x7f, true); // FCW
    area.setUint16(2, 0x3800, true); // FSW: TOP 7
    area.setUint8(4, 0x80); // ST0 (physical register 7) valid
    area.setUint32(24, 0x1fbf, true); // MXCSR
    for (let i = 32; i < 288; i++) g.mem[0x2000 + i] = i & 0xff;
    g.p.ioctl(g.fd, KVM_RUN, 0);
    const fpu = makeKvmFpu();
    g.p.ioctl(g.fd, KVM_GET_FPU, fpu);
    expect([fpu.fcw, fpu.fsw, fpu.ftwx]).toEqual([0x7f, 0x3800, 0x80]);
    expect(fpu.fpr[0]![0]).toBe(32);
    const x = xsaveOf(g);
    expect(x[512]! & 3).toBe(3);
    expect(new DataView(x.buffer).getUint32(24, true)).toBe(0x1fbf);
    expect(x[160]).toBe(160);
    g.p.ioctl(g.fd, KVM_SET_FPU, { ...fpu, fcw: 0x37b });
    g.p.ioctl(g.fd, KVM_RUN, 0);
    expect(word(g.mem, 0x2200)).toBe(0x37b);
    expect(g.mem[0x2200 + 160]).toBe(160);
  });
});
