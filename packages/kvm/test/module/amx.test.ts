/**
 * AMX through the ABI (Linux 5.17+: KVM_CAP_XSAVE2, KVM_GET_XSAVE2, the guest permission, the FPU that grows at
 * KVM_SET_CPUID2): on an Intel host with AMX (`intel({ amx: true })`), what a VMM sees before and after
 * `arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)`, the errors of the XSAVE and XCR ioctls with exact errno and the state
 * left as it was, and the same calls on a build before the AMX series (5.16).
 */
import { ARCH_GET_XCOMP_GUEST_PERM, ARCH_REQ_XCOMP_GUEST_PERM, createHost, KernelError, O_RDWR, type Process } from '@vac/core';
import { intel } from '@vac/vmx';
import { describe, expect, test } from 'vitest';
import {
  KVM_CAP_XSAVE2,
  KVM_CHECK_EXTENSION,
  KVM_CREATE_VCPU,
  KVM_CREATE_VM,
  KVM_GET_CPUID2,
  KVM_GET_FPU,
  KVM_GET_MSRS,
  KVM_GET_SUPPORTED_CPUID,
  KVM_GET_XCRS,
  KVM_GET_XSAVE,
  KVM_GET_XSAVE2,
  KVM_SET_CPUID2,
  KVM_SET_MSRS,
  KVM_SET_XCRS,
  KVM_SET_XSAVE,
  LINUX_5_16,
  LINUX_6_12,
  kvm,
  makeKvmCpuid2,
  makeKvmFpu,
  makeKvmMsrs,
  makeKvmXcrs,
  type KvmBuild,
  type kvm_cpuid_entry2,
} from '../../src/index.js';
import { expectKernelError } from '@vac/test-support';

const XTILE = 0x60000;
const AMX_7_EDX = (1 << 22) | (1 << 24) | (1 << 25);

function setup(build: KvmBuild = LINUX_6_12, amx = true): { p: Process; sys: number; host: ReturnType<typeof createHost> } {
  const host = createHost({ cpus: 1, hardware: intel({ amx }) });
  host.modprobe(kvm({ postfix: '0', build }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' });
  return { host, p, sys: p.open('/dev/kvm0', O_RDWR) };
}

function supported(p: Process, sys: number): kvm_cpuid_entry2[] {
  const c = makeKvmCpuid2(256);
  p.ioctl(sys, KVM_GET_SUPPORTED_CPUID, c);
  return c.entries.slice(0, c.nent);
}

const leaf = (entries: readonly kvm_cpuid_entry2[], fn: number, index = 0): kvm_cpuid_entry2 | undefined => entries.find((e) => e.function === fn && e.index === index);

function guestPerm(p: Process): bigint {
  const out = new BigUint64Array(1);
  p.archPrctl(ARCH_GET_XCOMP_GUEST_PERM, out);
  return out[0]!;
}

/** A vCPU given `entries` (its XSAVE leaf with the tile bits or not). */
function vcpuWith(p: Process, sys: number, entries: readonly kvm_cpuid_entry2[]): number {
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const fd = p.ioctl(vm, KVM_CREATE_VCPU, 0);
  p.ioctl(fd, KVM_SET_CPUID2, makeKvmCpuid2([...entries]));
  return fd;
}

function withTiles(entries: readonly kvm_cpuid_entry2[]): kvm_cpuid_entry2[] {
  return entries.map((e) => (e.function === 0xd && e.index === 0 ? { ...e, eax: e.eax | XTILE } : e));
}

describe('what KVM offers a process: before and after ARCH_REQ_XCOMP_GUEST_PERM', () => {
  test('KVM_CAP_XSAVE2 4096 → 11008; leaf 0xD gains XTILECFG/XTILEDATA with their sizes; the AMX bits and tile leaves are there either way', () => {
    const { p, sys } = setup();
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2)).toBe(4096);
    const before = supported(p, sys);
    expect(leaf(before, 0xd)!.eax).toBe(0x7);
    expect(leaf(before, 0xd)!.ebx).toBe(832);
    expect(leaf(before, 0xd, 18)).toBeUndefined();
    expect(leaf(before, 7)!.edx & AMX_7_EDX).toBe(AMX_7_EDX);
    expect(leaf(before, 0x1d, 1)).toMatchObject({ eax: 0x04002000, ebx: 0x00080040, ecx: 0x10 });
    expect(leaf(before, 0x1e)).toMatchObject({ ebx: 0x4010 });
    expect(p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)).toBe(0);
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2)).toBe(11008);
    const after = supported(p, sys);
    expect(leaf(after, 0xd)).toMatchObject({ eax: 0x60007, ebx: 11008, ecx: 11008 });
    expect(leaf(after, 0xd, 17)).toMatchObject({ eax: 64, ebx: 2752, ecx: 2 });
    expect(leaf(after, 0xd, 18)).toMatchObject({ eax: 8192, ebx: 2816, ecx: 6 });
    expect(leaf(after, 0xd, 1)!.ebx).toBe(9088); // compacted: 832, then 64 and 8192 each 64-byte aligned
    // Another process of the same host: its own permissions.
    expect(setup().p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2)).toBe(4096);
  });

  test('a host without AMX: ARCH_REQ_XCOMP_GUEST_PERM is EOPNOTSUPP and nothing changes', () => {
    const { host, p, sys } = setup(LINUX_6_12, false);
    expectKernelError(host, () => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18), 'EOPNOTSUPP');
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2)).toBe(4096);
    expect(leaf(supported(p, sys), 0x1d)).toBeUndefined(); // the Cascade Lake part's highest leaf is 0x1b
  });

  test('the first vCPU locks the permissions: a later request is EBUSY', () => {
    const { host, p, sys } = setup();
    const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
    p.ioctl(vm, KVM_CREATE_VCPU, 0);
    expectKernelError(host, () => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18), 'EBUSY');
    expect(guestPerm(p)).toBe(0x20007n);
  });
});

describe('KVM_SET_CPUID2 with tile data: the permission, and the FPU that grows', () => {
  test('without the permission: EPERM, the vCPU keeps its CPUID and its 4096-byte FPU', () => {
    const { host, p, sys } = setup();
    const fd = vcpuWith(p, sys, supported(p, sys));
    const before = makeKvmCpuid2(256);
    p.ioctl(fd, KVM_GET_CPUID2, before);
    expectKernelError(host, () => p.ioctl(fd, KVM_SET_CPUID2, makeKvmCpuid2(withTiles(supported(p, sys)))), 'EPERM');
    const after = makeKvmCpuid2(256);
    p.ioctl(fd, KVM_GET_CPUID2, after);
    expect(after).toEqual(before);
    expect(() => p.ioctl(fd, KVM_GET_XSAVE, new Uint8Array(4096))).not.toThrow();
  });

  test('with it: the FPU grows to 11008 bytes — KVM_GET_XSAVE is EINVAL, KVM_GET_XSAVE2 writes the whole area, KVM_SET_XSAVE reads it', () => {
    const { host, p, sys } = setup();
    p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18);
    const fd = vcpuWith(p, sys, supported(p, sys)); // the supported CPUID now has the tile components
    expectKernelError(host, () => p.ioctl(fd, KVM_GET_XSAVE, new Uint8Array(4096)), 'EINVAL');
    expectKernelError(host, () => p.ioctl(fd, KVM_GET_XSAVE2, new Uint8Array(4096)), 'EFAULT');
    const area = new Uint8Array(11008);
    expect(p.ioctl(fd, KVM_GET_XSAVE2, area)).toBe(0);
    const dv = new DataView(area.buffer);
    expect(dv.getUint16(0, true)).toBe(0x37f); // FCW
    // Tile state in, through KVM_SET_XSAVE of the whole area, and out again.
    dv.setBigUint64(512, 0x60007n, true);
    area[2752] = 1;
    area.fill(0x5a, 2816, 11008);
    expectKernelError(host, () => p.ioctl(fd, KVM_SET_XSAVE, area.slice(0, 4096)), 'EFAULT'); // memdup_user of 11008 bytes
    expect(p.ioctl(fd, KVM_SET_XSAVE, area)).toBe(0);
    const back = new Uint8Array(11008);
    p.ioctl(fd, KVM_GET_XSAVE2, back);
    expect(back.subarray(2752, 11008)).toEqual(area.subarray(2752, 11008));
    expect(new DataView(back.buffer).getBigUint64(512, true)).toBe(0x60007n);
  });

  test('XSTATE_BV with tile data is EINVAL while the vCPU has no room for it (user_xfeatures), and leaves the FPU as it was', () => {
    const { host, p, sys } = setup();
    p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18);
    const fd = vcpuWith(p, sys, supported(p, sys).map((e) => (e.function === 0xd && e.index === 0 ? { ...e, eax: 7 } : e)));
    const before = new Uint8Array(4096);
    p.ioctl(fd, KVM_GET_XSAVE, before);
    const area = before.slice();
    new DataView(area.buffer).setBigUint64(512, 0x40007n, true);
    expectKernelError(host, () => p.ioctl(fd, KVM_SET_XSAVE, area), 'EINVAL');
    // XTILECFG alone is a default (not dynamic) feature: taken.
    new DataView(area.buffer).setBigUint64(512, 0x20007n, true);
    expect(p.ioctl(fd, KVM_SET_XSAVE, area)).toBe(0);
  });
});

describe('XCR0 and the XFD MSRs', () => {
  function xcrs(value: bigint): ReturnType<typeof makeKvmXcrs> {
    const x = makeKvmXcrs({ nr_xcrs: 1 });
    x.xcrs[0] = { xcr: 0, value };
    return x;
  }

  test('KVM_SET_XCRS takes the tile bits only together and only when the guest CPUID has them', () => {
    const { host, p, sys } = setup();
    p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18);
    const plain = vcpuWith(p, sys, supported(p, sys).map((e) => (e.function === 0xd && e.index === 0 ? { ...e, eax: 7 } : e)));
    expectKernelError(host, () => p.ioctl(plain, KVM_SET_XCRS, xcrs(0x60007n)), 'EINVAL');
    const tiled = vcpuWith(p, sys, supported(p, sys));
    expectKernelError(host, () => p.ioctl(tiled, KVM_SET_XCRS, xcrs(0x20007n)), 'EINVAL');
    expectKernelError(host, () => p.ioctl(tiled, KVM_SET_XCRS, xcrs(0x40007n)), 'EINVAL');
    expect(p.ioctl(tiled, KVM_SET_XCRS, xcrs(0x60007n))).toBe(0);
    const got = makeKvmXcrs();
    p.ioctl(tiled, KVM_GET_XCRS, got);
    expect(got.xcrs[0]!.value).toBe(0x60007n);
  });

  test('IA32_XFD / IA32_XFD_ERR: only bits of the dynamic features the guest has (kvm_guest_supported_xfd)', () => {
    const { p, sys } = setup();
    p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18);
    const plain = vcpuWith(p, sys, supported(p, sys).map((e) => (e.function === 0xd && e.index === 0 ? { ...e, eax: 7 } : e)));
    expect(p.ioctl(plain, KVM_SET_MSRS, makeKvmMsrs([{ index: 0x1c4, data: 1n << 18n }]))).toBe(0);
    const tiled = vcpuWith(p, sys, supported(p, sys));
    expect(p.ioctl(tiled, KVM_SET_MSRS, makeKvmMsrs([{ index: 0x1c4, data: 1n << 18n }, { index: 0x1c5, data: 1n << 18n }, { index: 0x1c4, data: 1n << 17n }]))).toBe(2);
    const read = makeKvmMsrs([{ index: 0x1c4, data: 0n }, { index: 0x1c5, data: 0n }]);
    p.ioctl(tiled, KVM_GET_MSRS, read);
    expect(read.entries.map((e) => e.data)).toEqual([1n << 18n, 1n << 18n]);
  });
});

describe('a build before the AMX series (5.16) on the same host', () => {
  test('no tile components, no AMX bits, KVM_CAP_XSAVE2 0, KVM_GET_XSAVE2 EINVAL, and KVM_SET_CPUID2 with tile data taken without asking', () => {
    const { host, p, sys } = setup(LINUX_5_16);
    p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18); // the host kernel has the permission; this KVM does not use it
    expect(p.ioctl(sys, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2)).toBe(0);
    const s = supported(p, sys);
    expect(leaf(s, 0xd)!.eax).toBe(7);
    expect(leaf(s, 7)!.edx & AMX_7_EDX).toBe(0);
    expect(leaf(s, 0x1d)).toMatchObject({ eax: 0, ebx: 0, ecx: 0, edx: 0 });
    const fd = vcpuWith(p, sys, withTiles(s));
    expect(() => p.ioctl(fd, KVM_GET_XSAVE, new Uint8Array(4096))).not.toThrow();
    expectKernelError(host, () => p.ioctl(fd, KVM_GET_XSAVE2, new Uint8Array(11008)), 'EINVAL');
    const x = makeKvmXcrs({ nr_xcrs: 1 });
    x.xcrs[0] = { xcr: 0, value: 0x60007n };
    expectKernelError(host, () => p.ioctl(fd, KVM_SET_XCRS, x), 'EINVAL');
  });

  test('the same process may not ask after its first vCPU on any module: the permission is the process\'s', () => {
    const { host, p, sys } = setup(LINUX_5_16);
    vcpuWith(p, sys, supported(p, sys));
    expect(() => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18)).toThrow(KernelError);
    expectKernelError(host, () => p.archPrctl(ARCH_REQ_XCOMP_GUEST_PERM, 18), 'EBUSY');
  });
});
