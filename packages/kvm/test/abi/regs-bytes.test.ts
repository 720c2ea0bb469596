/**
 * KVM_GET_REGS / KVM_SET_REGS on the C bytes of `struct kvm_regs` (the register file's 32-bit halves copied as the
 * structure's words, module/regfile-copy.ts `regsToWords` / `regsFromWords`) answer exactly as on the object form: the
 * same state after a SET (the host's snapshot; RFLAGS with bit 1 set; a pending exception dropped), the same bytes
 * read back, EFAULT for a short structure with nothing written.
 */
import { fc, test as fcTest } from '@fast-check/vitest';
import { createHost, isKernelError } from '@vac/core';
import { describe, expect, test } from 'vitest';
import { KVM_GET_REGS, KVM_REGS_CODEC, KVM_RUN, KVM_SET_REGS, createRealModeVm, kvm, makeKvmRegs, type kvm_regs } from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { expectSameGetBothWays } from './support.js';

const U64 = 0xffff_ffff_ffff_ffffn;

/** A host with one vCPU that has run (`add ax, bx; hlt`). */
function vcpu(vendor: (typeof VENDORS)[number]) {
  const host = createHost({ cpus: 1, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  const vm = createRealModeVm(p, '/dev/kvm0', { code: [0x01, 0xd8, 0xf4], regs: { rax: 0x1234n, rbx: 0x1111n } });
  const fd = vm.vcpus[0]!.fd;
  p.ioctl(fd, KVM_RUN, 0);
  return { host, p, fd };
}

/** `kvm_regs` of values up to `max`. */
function regsUpTo(max: bigint): fc.Arbitrary<kvm_regs> {
  const u64 = fc.oneof(fc.constantFrom(0n, 1n, 2n, 0xffff_ffffn, 1n << 32n, (1n << 32n) - 2n, max, max - 2n), fc.bigInt({ min: 0n, max }));
  return fc.record({
    rax: u64, rbx: u64, rcx: u64, rdx: u64, rsi: u64, rdi: u64, rsp: u64, rbp: u64,
    r8: u64, r9: u64, r10: u64, r11: u64, r12: u64, r13: u64, r14: u64, r15: u64, rip: u64, rflags: u64,
  });
}

describe.each(VENDORS)('KVM_GET/SET_REGS on the C bytes match the object form on $name', (vendor) => {
  /** SET through the bytes on one vCPU and the object on another; the same bytes and object read back both ways. */
  function compare(r: kvm_regs) {
    const a = vcpu(vendor);
    const b = vcpu(vendor);
    const bytes = KVM_REGS_CODEC.toBytes(r);
    const copy = bytes.slice();
    a.p.ioctl(a.fd, KVM_SET_REGS, bytes);
    b.p.ioctl(b.fd, KVM_SET_REGS, makeKvmRegs(r));
    expect(bytes).toEqual(copy); // KVM_SET_REGS writes nothing back
    for (const obj of expectSameGetBothWays(KVM_REGS_CODEC, KVM_GET_REGS, makeKvmRegs, a, b)) expect(obj).toEqual({ ...r, rflags: r.rflags | 2n });
    return { a, b };
  }

  fcTest.prop([regsUpTo(U64)], { numRuns: 60 })('any 64-bit values: the same bytes read back', (r) => {
    compare(r);
  });

  // The host's snapshot reads the registers as numbers: values below 2^53 there.
  fcTest.prop([regsUpTo((1n << 53n) - 1n)], { numRuns: 30 })('values below 2^53: the same state after a SET, the whole host', (r) => {
    const { a, b } = compare(r);
    expect(a.host.snapshot()).toEqual(b.host.snapshot());
  });

  test('a structure shorter than sizeof(struct kvm_regs) is EFAULT both ways, with nothing written or changed', () => {
    const a = vcpu(vendor);
    const before = a.host.snapshot();
    const short = new Uint8Array(KVM_REGS_CODEC.size - 1).fill(0x5a);
    for (const req of [KVM_GET_REGS, KVM_SET_REGS]) {
      let code = 'ok';
      try {
        a.p.ioctl(a.fd, req, short);
      } catch (e) {
        if (!isKernelError(e)) throw e;
        code = e.code;
      }
      expect(code).toBe('EFAULT');
    }
    expect(short).toEqual(new Uint8Array(KVM_REGS_CODEC.size - 1).fill(0x5a));
    expect(a.host.snapshot()).toEqual(before);
  });
});
