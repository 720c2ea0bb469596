/**
 * The areas of destroyed vCPUs are cleared and given to new ones (module/kept-areas.ts): a new vCPU's `kvm_run` is
 * all zero and its FPU image and machine-check banks are as reset, whatever they held before; a `kvm_run` area is
 * given back only when its vCPU is destroyed — not while a mapping of it lives — and views of it kept past that are
 * detached, never another vCPU's area; so are a destroyed vCPU's own views of its FPU image and machine-check banks.
 */
import { O_RDWR, type Mapping, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_MSRS, KVM_GET_VCPU_MMAP_SIZE, KVM_GET_XSAVE, KVM_SET_MSRS, KVM_SET_XSAVE, kvm, makeKvmXsave, type kvm_xsave } from '../../src/index.js';
import { vcpuOf } from '../../src/introspect.js';
import { AREAS_KEPT as RUN_AREAS_KEPT } from '../../src/module/kept-areas.js';
import { vcpuArch } from '../../src/module/vcpu-arch.js';
import { VENDORS, makeHost, vmmProcess } from './helpers.js';

/** A VM with `n` vCPUs whose `kvm_run` areas are mapped. */
function vmWithRuns(p: Process, sys: number, n: number): { vm: number; vcpus: number[]; maps: Mapping[] } {
  const size = p.ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const vcpus = Array.from({ length: n }, (_, i) => p.ioctl(vm, KVM_CREATE_VCPU, i));
  return { vm, vcpus, maps: vcpus.map((fd) => p.mmap(fd, size)) };
}

/** A VMM process of a host with one KVM module loaded, `/dev/kvm` open. */
function kvmOpened(vendor: (typeof VENDORS)[number]): { p: Process; sys: number } {
  const host = makeHost(vendor.hardware());
  host.modprobe(kvm({ postfix: '' }));
  const p = vmmProcess(host);
  return { p, sys: p.open('/dev/kvm', O_RDWR) };
}

/** Unmap every `kvm_run`, close the vCPUs and the VM: the VM is destroyed, its vCPUs' areas given back. */
function destroy(p: Process, v: { vm: number; vcpus: number[]; maps: Mapping[] }): void {
  for (const m of v.maps) p.munmap(m.addr, m.length);
  for (const fd of v.vcpus) p.close(fd);
  p.close(v.vm);
}

const zero = (m: Mapping): boolean => m.bytes.every((b) => b === 0);

/** `struct kvm_msrs` of one entry. */
function oneMsr(index: number, data: bigint): Uint8Array {
  const b = new Uint8Array(8 + 16);
  const v = new DataView(b.buffer);
  v.setUint32(0, 1, true);
  v.setUint32(8, index, true);
  v.setBigUint64(16, data, true);
  return b;
}

/** What a vCPU shows of its FPU image and of MC0_STATUS / MC1_ADDR. */
function fpuAndBanks(p: Process, fd: number): { xsave: kvm_xsave; mc0Status: bigint; mc1Addr: bigint } {
  const xsave = makeKvmXsave();
  expect(p.ioctl(fd, KVM_GET_XSAVE, xsave)).toBe(0);
  const read = (index: number): bigint => {
    const b = oneMsr(index, 0n);
    expect(p.ioctl(fd, KVM_GET_MSRS, b)).toBe(1);
    return new DataView(b.buffer).getBigUint64(16, true);
  };
  return { xsave, mc0Status: read(0x401), mc1Addr: read(0x406) };
}

describe.each(VENDORS)('kvm_run areas on $name', (vendor) => {
  test('a new vCPU sees a zeroed kvm_run, also where the area was a destroyed vCPU\'s that user space wrote all over', () => {
    const { p, sys } = kvmOpened(vendor);
    // More destroyed vCPUs than are kept, each area filled with 0xa5, then as many new vCPUs.
    const n = RUN_AREAS_KEPT + 3;
    const old = vmWithRuns(p, sys, n);
    for (const m of old.maps) m.bytes.fill(0xa5);
    destroy(p, old);
    const next = vmWithRuns(p, sys, n);
    expect(next.maps.filter(zero)).toHaveLength(n);
    // The old views, kept past munmap and the VM's destruction, are detached: they show no vCPU's area.
    for (const m of old.maps) expect(m.bytes.length).toBe(0);
    next.maps[0]?.bytes.fill(0x3c);
    expect(old.maps.every((m) => m.bytes[0] === undefined)).toBe(true);
  });

  test('an area is not given back while a mapping of its vCPU lives (the mapping holds the VM)', () => {
    const { p, sys } = kvmOpened(vendor);
    const a = vmWithRuns(p, sys, 1);
    for (const fd of a.vcpus) p.close(fd);
    p.close(a.vm); // the VM lives on: the mapping holds its vCPU file
    const b = vmWithRuns(p, sys, 1);
    const [ma] = a.maps as [Mapping];
    const [mb] = b.maps as [Mapping];
    ma.bytes.fill(0x5a);
    expect(zero(mb)).toBe(true);
    expect(mb.bytes.buffer).not.toBe(ma.bytes.buffer);
    // Unmapped, the VM is destroyed and its area given back: the view kept past munmap is detached, the next vCPU's
    // area is zero.
    const kept = ma.bytes;
    p.munmap(ma.addr, ma.length);
    expect(kept.length).toBe(0);
    const c = vmWithRuns(p, sys, 1);
    const [mc] = c.maps as [Mapping];
    expect(zero(mc)).toBe(true);
    mc.bytes.fill(0x77);
    expect(kept[0]).toBeUndefined();
  });

  test('a new vCPU\'s FPU image and machine-check banks are as reset, also in the area of a destroyed vCPU that had them changed', () => {
    const { p, sys } = kvmOpened(vendor);
    const first = vmWithRuns(p, sys, 2);
    const fresh = fpuAndBanks(p, first.vcpus[0] as number);
    expect(fresh.mc0Status).toBe(0n);
    for (const fd of first.vcpus) {
      const x = fpuAndBanks(p, fd).xsave;
      x.region[0] = 0x027f; // FCW
      x.region[40] = 0xdeadbeef; // XMM0
      x.region[128] = 3; // XSTATE_BV: x87, SSE
      expect(p.ioctl(fd, KVM_SET_XSAVE, x)).toBe(0);
      expect(p.ioctl(fd, KVM_SET_MSRS, oneMsr(0x401, 0x1234n))).toBe(1);
      expect(p.ioctl(fd, KVM_SET_MSRS, oneMsr(0x406, 0x5678n))).toBe(1);
      expect(fpuAndBanks(p, fd)).toMatchObject({ mc0Status: 0x1234n, mc1Addr: 0x5678n });
    }
    destroy(p, first);
    const next = vmWithRuns(p, sys, 3);
    for (const fd of next.vcpus) expect(fpuAndBanks(p, fd)).toEqual(fresh);
  });

  test('a destroyed vCPU\'s views of its FPU image and machine-check banks are detached, never the next vCPU\'s area', () => {
    const { p, sys } = kvmOpened(vendor);
    const old = vmWithRuns(p, sys, 1);
    const arch = vcpuArch(vcpuOf(p, old.vcpus[0] as number));
    const { fpu, mceBanks, mciCtl2 } = arch;
    expect(fpu.length).toBe(4096);
    destroy(p, old);
    // The VM is destroyed: its vCPU's views show nothing, also once a new vCPU (which takes the area) writes its own.
    expect(fpu.length).toBe(0);
    expect(mceBanks.words.length).toBe(0);
    expect(mciCtl2.words.length).toBe(0);
    const next = vmWithRuns(p, sys, 1);
    const fd = next.vcpus[0] as number;
    const x = fpuAndBanks(p, fd).xsave;
    x.region[40] = 0xdeadbeef; // XMM0
    x.region[128] = 3; // XSTATE_BV: x87, SSE
    expect(p.ioctl(fd, KVM_SET_XSAVE, x)).toBe(0);
    expect(p.ioctl(fd, KVM_SET_MSRS, oneMsr(0x401, 0x1234n))).toBe(1);
    expect(vcpuArch(vcpuOf(p, fd)).fpu.length).toBe(4096);
    expect(fpu[160]).toBeUndefined();
    expect(mceBanks.words[2]).toBeUndefined();
    expect(fpuAndBanks(p, fd)).toMatchObject({ mc0Status: 0x1234n });
  });
});
