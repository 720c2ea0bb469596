/**
 * The `kvm_run` areas of destroyed vCPUs are zeroed and given to new ones (module/run-areas.ts): a new vCPU's area
 * is all zero whatever it held before, and an area is given back only when its vCPU is destroyed — not while a
 * mapping of it lives.
 */
import { O_RDWR, type Mapping, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_VCPU_MMAP_SIZE, kvm } from '../../src/index.js';
import { RUN_AREAS_KEPT } from '../../src/module/run-areas.js';
import { VENDORS, makeHost, vmmProcess } from './helpers.js';

/** A VM with `n` vCPUs whose `kvm_run` areas are mapped. */
function vmWithRuns(p: Process, sys: number, n: number): { vm: number; vcpus: number[]; maps: Mapping[] } {
  const size = p.ioctl(sys, KVM_GET_VCPU_MMAP_SIZE, 0);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  const vcpus = Array.from({ length: n }, (_, i) => p.ioctl(vm, KVM_CREATE_VCPU, i));
  return { vm, vcpus, maps: vcpus.map((fd) => p.mmap(fd, size)) };
}

const zero = (m: Mapping): boolean => m.bytes.every((b) => b === 0);

describe.each(VENDORS)('kvm_run areas on $name', (vendor) => {
  test('a new vCPU sees a zeroed kvm_run, also where the area was a destroyed vCPU\'s that user space wrote all over', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '' }));
    const p = vmmProcess(host);
    const sys = p.open('/dev/kvm', O_RDWR);
    // More destroyed vCPUs than are kept, each area filled with 0xa5, then as many new vCPUs.
    const n = RUN_AREAS_KEPT + 3;
    const old = vmWithRuns(p, sys, n);
    for (const m of old.maps) m.bytes.fill(0xa5);
    for (const m of old.maps) p.munmap(m.addr, m.length);
    for (const fd of old.vcpus) p.close(fd);
    p.close(old.vm);
    const next = vmWithRuns(p, sys, n);
    expect(next.maps.filter(zero)).toHaveLength(n);
    // The areas are the destroyed vCPUs' (as many as are kept): the old views, kept past munmap, see the new ones.
    expect(old.maps.filter(zero)).toHaveLength(RUN_AREAS_KEPT);
  });

  test('an area is not given back while a mapping of its vCPU lives (the mapping holds the VM)', () => {
    const host = makeHost(vendor.hardware());
    host.modprobe(kvm({ postfix: '' }));
    const p = vmmProcess(host);
    const sys = p.open('/dev/kvm', O_RDWR);
    const a = vmWithRuns(p, sys, 1);
    for (const fd of a.vcpus) p.close(fd);
    p.close(a.vm); // the VM lives on: the mapping holds its vCPU file
    const b = vmWithRuns(p, sys, 1);
    const [ma] = a.maps as [Mapping];
    const [mb] = b.maps as [Mapping];
    ma.bytes.fill(0x5a);
    expect(zero(mb)).toBe(true);
    expect(mb.bytes.buffer).not.toBe(ma.bytes.buffer);
    // Unmapped, the VM is destroyed and its area given back: the next vCPU gets it, zeroed.
    p.munmap(ma.addr, ma.length);
    const c = vmWithRuns(p, sys, 1);
    const [mc] = c.maps as [Mapping];
    expect(mc.bytes.buffer).toBe(ma.bytes.buffer);
    expect(zero(mc)).toBe(true);
  });
});
