/**
 * The third vendor (test/third-vendor/toy.ts) on an unchanged @vac/core: VAC loads with its VirtOps and shares its
 * resource between two KVM modules, and the minimal VMM runs on both.
 */
import { describe, expect, test } from 'vitest';
import { idleVacInstance } from '@vac/test-support';
import { KernelError, O_RDWR, checkInvariants, createHost, vacOf } from '@vac/core';
import { KVM_EXIT_HLT, KVM_EXIT_IO, KVM_RUN, asm16, createRealModeVm, kvm, vcpuOf } from '../../src/index.js';
import { TOY_TAGS, TOY_TAGS_PER_CPU, toy, toyKvmOps } from './toy.js';

/** Writes `digit` to port 0x3f8, then halts. */
function guest(digit: string): number[] {
  return asm16().mov('dx', 0x3f8).mov('al', digit.charCodeAt(0)).out('dx', 'al').hlt().bytes();
}

function toyHost() {
  const host = createHost({ cpus: 2, hardware: toy() });
  host.modprobe(kvm({ postfix: '0', vendors: [toyKvmOps] }));
  host.modprobe(kvm({ postfix: '1', vendors: [toyKvmOps] }));
  return host;
}

describe('a third vendor, with no change to @vac/core', () => {
  test('VAC loads on it, names it, and holds its resource', () => {
    const host = toyHost();
    const vac = vacOf(host);
    expect(vac?.vendor).toBe('toy');
    expect(vac?.resourceKeys().map((k) => k.name)).toEqual(['toy-tags']);
    expect(host.lsmod().map((m) => m.name)).toEqual(['kvm1', 'kvm0', 'vac']);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('the minimal VMM runs on both modules; their vCPUs share each CPU\'s tags without a clash', () => {
    const host = toyHost();
    const out: string[] = [];
    for (const [dev, digit] of [['/dev/kvm0', '4'], ['/dev/kvm1', '2']] as const) {
      const p = host.spawn({ uid: 1000, groups: ['kvm'] });
      const vm = createRealModeVm(p, dev, { code: guest(digit) });
      const v = vm.vcpus[0]!;
      p.ioctl(v.fd, KVM_RUN, 0);
      expect(v.run.exit_reason).toBe(KVM_EXIT_IO);
      out.push(String.fromCharCode(v.run.ioData()[0]!));
      p.ioctl(v.fd, KVM_RUN, 0);
      expect(v.run.exit_reason).toBe(KVM_EXIT_HLT);
      expect(vcpuOf(p, v.fd).vendor.tlbTag()).toEqual({ kind: 'toy-tag', value: dev === '/dev/kvm0' ? 1 : 2 });
    }
    expect(out).toEqual(['4', '2']);
    const tags = vacOf(host)!.resource(TOY_TAGS);
    expect(tags.cpuState(0).holders).toEqual([
      [1, 'kvm0/vm1/vcpu0'],
      [2, 'kvm1/vm1/vcpu0'],
    ]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('a CPU out of tags moves to its next generation; no two vCPUs ever hold one tag', () => {
    const host = toyHost();
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const vms = Array.from({ length: TOY_TAGS_PER_CPU + 2 }, () => createRealModeVm(p, '/dev/kvm0', { code: guest('7') }));
    for (const vm of vms) p.ioctl(vm.vcpus[0]!.fd, KVM_RUN, 0);
    const tags = vacOf(host)!.resource(TOY_TAGS);
    expect(tags.cpuState(0).generation).toBeGreaterThan(1);
    expect(tags.conflicts).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('an instance cannot leave VAC, nor its module unload, while its vCPUs hold tags; after the VMM dies both go', () => {
    const host = toyHost();
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const vm = createRealModeVm(p, '/dev/kvm0', { code: guest('1') });
    p.ioctl(vm.vcpus[0]!.fd, KVM_RUN, 0);
    expect(vacOf(host)!.resource(TOY_TAGS).held()).toBe(1);
    expect(() => host.rmmod('kvm0')).toThrow(expect.objectContaining({ code: 'EWOULDBLOCK' }));
    p.kill();
    expect(vacOf(host)!.resource(TOY_TAGS).held()).toBe(0);
    host.rmmod('kvm0');
    host.rmmod('kvm1');
    host.rmmod('vac');
    expect(host.lsmod()).toEqual([]);
    expect(checkInvariants(host)).toEqual([]);
  });

  test('another instance\'s vCPU is out of reach through an instance\'s view (EPERM)', () => {
    const host = toyHost();
    const other = { instance: 'kvm1', vm: 1, vcpu: 0 };
    const p = host.spawn();
    const fd = p.open('/dev/kvm0', O_RDWR);
    expect(fd).toBeGreaterThan(2);
    // kvm0's view, as its vendor code got it at setup:
    const handle = vacOf(host)!.attach(idleVacInstance('probe'));
    const e = (() => {
      try {
        handle.resource(TOY_TAGS).take(0, other);
      } catch (err) {
        return err;
      }
      return undefined;
    })();
    expect(e).toBeInstanceOf(KernelError);
    expect((e as KernelError).code).toBe('EPERM');
    handle.detach();
  });
});
