/**
 * Exact 64-bit registers: KVM_SET_REGS → KVM_GET_REGS and KVM_SET_SREGS → KVM_GET_SREGS give back every bit
 * (Linux's `__set_regs`/`__get_regs` copy `__u64`s), and real-mode execution changes the upper halves only as
 * the hardware does: 8/16-bit writes keep bits 63:16, a 32-bit write zero-extends (checked on a real /dev/kvm:
 * fixtures/real-kvm.json, cases `upper-*`).
 */
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { KVM_GET_REGS, KVM_GET_SREGS, KVM_RUN, KVM_SET_REGS, KVM_SET_SREGS, KVM_REGS_FIELDS, createRealModeVm, kvm, makeKvmRegs, makeKvmSregs, type kvm_regs } from '../../src/index.js';
import { GUEST_REGS64, GuestCpuState } from '../../src/guest/index.js';
import { makeHost, vmmProcess } from '../module/helpers.js';
import { intel } from '@vac/vmx';

const u64 = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });

function vcpu(): { proc: ReturnType<typeof vmmProcess>; fd: number } {
  const host = makeHost(intel());
  host.modprobe(kvm({ postfix: '0' }));
  const proc = vmmProcess(host);
  const vm = createRealModeVm(proc, '/dev/kvm0', { code: [0xf4] });
  return { proc, fd: vm.vcpus[0]!.fd };
}

describe('exact 64-bit registers', () => {
  test('KVM_SET_REGS → KVM_GET_REGS round-trips every 64-bit value (RFLAGS with bit 1 set)', () => {
    const { proc, fd } = vcpu();
    fc.assert(
      fc.property(fc.array(u64, { minLength: 18, maxLength: 18 }), (values) => {
        const regs = makeKvmRegs();
        KVM_REGS_FIELDS.forEach((k, i) => (regs[k] = values[i]!));
        proc.ioctl(fd, KVM_SET_REGS, regs);
        const back = makeKvmRegs();
        proc.ioctl(fd, KVM_GET_REGS, back);
        const want: kvm_regs = { ...regs, rflags: regs.rflags | 2n };
        expect(back).toEqual(want);
      }),
      { numRuns: 300 },
    );
  });

  test('KVM_SET_SREGS → KVM_GET_SREGS round-trips 64-bit segment, GDT/IDT bases and CR2/CR3', () => {
    const { proc, fd } = vcpu();
    fc.assert(
      fc.property(fc.array(u64, { minLength: 10, maxLength: 10 }), (v) => {
        const s = makeKvmSregs();
        proc.ioctl(fd, KVM_GET_SREGS, s);
        s.cs.base = v[0]!;
        s.ds.base = v[1]!;
        s.es.base = v[2]!;
        s.fs.base = v[3]!;
        s.gs.base = v[4]!;
        s.ss.base = v[5]!;
        s.gdt.base = v[6]!;
        s.idt.base = v[7]!;
        s.cr2 = v[8]!;
        s.cr3 = v[9]!;
        proc.ioctl(fd, KVM_SET_SREGS, s);
        const back = makeKvmSregs();
        proc.ioctl(fd, KVM_GET_SREGS, back);
        expect(back).toEqual(s);
      }),
      { numRuns: 200 },
    );
  });

  test('real-mode writes: 16-bit keeps bits 63:16, 32-bit zero-extends, untouched registers keep every bit', () => {
    // mov ax, 5; mov ecx, 7; inc dx; hlt — started with every register's upper half set.
    const host = makeHost(intel());
    host.modprobe(kvm({ postfix: '0' }));
    const p = vmmProcess(host);
    const vm = createRealModeVm(p, '/dev/kvm0', { code: [0xb8, 0x05, 0x00, 0x66, 0xb9, 0x07, 0, 0, 0, 0x42, 0xf4] });
    const { fd: f, run } = vm.vcpus[0]!;
    const regs = makeKvmRegs();
    p.ioctl(f, KVM_GET_REGS, regs);
    regs.rax = 0xdeadbeef_cafe0000n;
    regs.rcx = 0xffffffff_ffffffffn;
    regs.rdx = 0x80000000_0000ffffn;
    regs.r15 = 0xfedcba98_76543210n;
    p.ioctl(f, KVM_SET_REGS, regs);
    p.ioctl(f, KVM_RUN, 0);
    expect(run.exit_reason).toBe(5);
    const back = makeKvmRegs();
    p.ioctl(f, KVM_GET_REGS, back);
    expect(back.rax).toBe(0xdeadbeef_cafe0005n);
    expect(back.rcx).toBe(7n);
    expect(back.rdx).toBe(0x80000000_00000000n);
    expect(back.r15).toBe(0xfedcba98_76543210n);
  });

  test('GuestCpuState: get64/set64 exact; the number accessors refuse to round above 2^53', () => {
    const s = new GuestCpuState();
    fc.assert(
      fc.property(fc.constantFrom(...GUEST_REGS64), u64, (name, v) => {
        s.set64(name, v);
        expect(s.get64(name)).toBe(v);
        if (v < 2n ** 53n) expect(s[name]).toBe(Number(v));
        else expect(() => s[name]).toThrow(/above 2\^53/);
      }),
      { numRuns: 500 },
    );
    expect(() => (s.rax = 2 ** 53)).toThrow(/not an integer in \[0, 2\^53\)/);
    s.rax = 2 ** 53 - 1;
    expect(s.get64('rax')).toBe(2n ** 53n - 1n);
  });
});
