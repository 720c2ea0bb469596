/**
 * `saveVcpu` keeps each structure as the C bytes its GET ioctl wrote (vmm-vcpu.ts): the bytes are exactly what the
 * object form of the same GET encodes to, `parseSavedVcpu` / `savedVcpuOf` convert both ways without loss, a save made
 * while another is under way (from a wrapper of the process's `ioctl`) does not disturb it, and `restoreVcpu` batches
 * more than 255 MSRs and reports the one KVM refuses.
 */
import { fc, test as fcTest } from '@fast-check/vitest';
import { createHost, isUsageError, type Process } from '@vac/core';
import { describe, expect, test } from 'vitest';
import {
  KVM_CPUID2_CODEC,
  KVM_DEBUGREGS_CODEC,
  KVM_GET_CPUID2,
  KVM_GET_DEBUGREGS,
  KVM_GET_LAPIC,
  KVM_GET_REGS,
  KVM_GET_SREGS2,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_XCRS,
  KVM_SET_XCRS,
  KVM_REGS_CODEC,
  KVM_RUN,
  KVM_SREGS2_CODEC,
  KVM_VCPU_EVENTS_CODEC,
  KVM_XCRS_CODEC,
  createRealModeVm,
  kvm,
  makeKvmCpuid2,
  makeKvmDebugregs,
  makeKvmRegs,
  makeKvmSregs2,
  makeKvmVcpuEvents,
  makeKvmXcrs,
  parseSavedVcpu,
  restoreVcpu,
  saveVcpu,
  savedVcpuOf,
  type SavedVcpu,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';

function setup(vendor: (typeof VENDORS)[number]) {
  const host = createHost({ cpus: 1, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'] });
  // add ax, bx; out 0x80, al; hlt
  const vm = createRealModeVm(p, '/dev/kvm0', { code: [0x01, 0xd8, 0xe6, 0x80, 0xf4], regs: { rax: 0x1234n, rbx: 0x1111n, rcx: 0xfedc_ba98_7654_3210n } });
  const fd = vm.vcpus[0]!.fd;
  p.ioctl(fd, KVM_RUN, 0);
  return { host, p, vm, fd };
}

describe.each(VENDORS)('saveVcpu keeps the C structures on $name', (vendor) => {
  test('each structure is byte for byte what the object form of its GET ioctl encodes to', () => {
    const { p, vm, fd } = setup(vendor);
    const s = saveVcpu(p, vm.sys, fd, 0);
    const regs = makeKvmRegs();
    p.ioctl(fd, KVM_GET_REGS, regs);
    expect(s.regs).toEqual(KVM_REGS_CODEC.toBytes(regs));
    expect(regs.rcx).toBe(0xfedc_ba98_7654_3210n); // above 2^53: exact in the bytes too
    const sregs2 = makeKvmSregs2();
    p.ioctl(fd, KVM_GET_SREGS2, sregs2);
    expect(s.sregs2).toEqual(KVM_SREGS2_CODEC.toBytes(sregs2));
    const events = makeKvmVcpuEvents();
    p.ioctl(fd, KVM_GET_VCPU_EVENTS, events);
    expect(s.events).toEqual(KVM_VCPU_EVENTS_CODEC.toBytes(events));
    const xcrs = makeKvmXcrs();
    p.ioctl(fd, KVM_GET_XCRS, xcrs);
    expect(s.xcrs).toEqual(KVM_XCRS_CODEC.toBytes(xcrs));
    const dr = makeKvmDebugregs();
    p.ioctl(fd, KVM_GET_DEBUGREGS, dr);
    expect(s.debugregs).toEqual(KVM_DEBUGREGS_CODEC.toBytes(dr));
    const cpuid = makeKvmCpuid2(256);
    p.ioctl(fd, KVM_GET_CPUID2, cpuid);
    expect(s.cpuid).toEqual(KVM_CPUID2_CODEC.toBytes({ nent: cpuid.nent }, cpuid.entries.slice(0, cpuid.nent)));
    expect(parseSavedVcpu(s).regs).toEqual(regs);
    // struct kvm_msrs: nmsrs, then the entries; the machine-check banks last
    const parsed = parseSavedVcpu(s);
    expect(new DataView(s.msrs.buffer, s.msrs.byteOffset).getUint32(0, true)).toBe(parsed.msrs.length);
    expect(s.msrs.length).toBe(8 + 16 * parsed.msrs.length);
    expect(parsed.msrs.at(-1)?.index).toBe(0x400 + 4 * Number(s.mcgCap & 0xffn) - 1);
  });

  test('KVM_GET_XCRS into C bytes: every byte written (stale ones cleared), EFAULT with nothing written for a short buffer', () => {
    const { p, fd } = setup(vendor);
    const x = makeKvmXcrs();
    p.ioctl(fd, KVM_GET_XCRS, x);
    const full = new Uint8Array(KVM_XCRS_CODEC.size + 8).fill(0xee);
    p.ioctl(fd, KVM_GET_XCRS, full);
    expect(full.subarray(0, KVM_XCRS_CODEC.size)).toEqual(KVM_XCRS_CODEC.toBytes(x));
    expect(full.subarray(KVM_XCRS_CODEC.size).every((b) => b === 0xee)).toBe(true);
    const short = new Uint8Array(KVM_XCRS_CODEC.size - 1).fill(0xee);
    expect(() => p.ioctl(fd, KVM_GET_XCRS, short)).toThrow(expect.objectContaining({ code: 'EFAULT' }));
    expect(short.every((b) => b === 0xee)).toBe(true);
  });

  fcTest.prop(
    [
      fc.record({
        nr_xcrs: fc.constantFrom(0, 1, 2, 16, 17),
        flags: fc.constantFrom(0, 0, 0, 1),
        xcrs: fc.array(fc.record({ xcr: fc.constantFrom(0, 0, 1, 0xffff_ffff), value: fc.constantFrom(1n, 3n, 7n, 2n, 0x80000000_00000003n) }), { minLength: 16, maxLength: 16 }),
      }),
    ],
    { numRuns: 40 },
  )('KVM_SET_XCRS from C bytes answers as from the object: the same errno, the same XCR0 after it', (x) => {
    const a = setup(vendor);
    const b = setup(vendor);
    const answer = (f: () => unknown): string => {
      try {
        f();
        return 'ok';
      } catch (e) {
        return (e as { code: string }).code;
      }
    };
    const bytes = KVM_XCRS_CODEC.toBytes(x);
    expect(answer(() => a.p.ioctl(a.fd, KVM_SET_XCRS, bytes))).toBe(answer(() => b.p.ioctl(b.fd, KVM_SET_XCRS, makeKvmXcrs(x))));
    const [xa, xb] = [makeKvmXcrs(), makeKvmXcrs()];
    a.p.ioctl(a.fd, KVM_GET_XCRS, xa);
    b.p.ioctl(b.fd, KVM_GET_XCRS, xb);
    expect(xa).toEqual(xb);
    expect(answer(() => a.p.ioctl(a.fd, KVM_SET_XCRS, bytes.subarray(0, KVM_XCRS_CODEC.size - 1)))).toBe('EFAULT');
  });

  test('parseSavedVcpu and savedVcpuOf convert both ways without loss; an edited form restores what it says', () => {
    const { p, vm, fd } = setup(vendor);
    const s = saveVcpu(p, vm.sys, fd, 0);
    expect(savedVcpuOf(parseSavedVcpu(s))).toEqual(s);
    const parsed = parseSavedVcpu(s);
    restoreVcpu(p, fd, savedVcpuOf({ ...parsed, regs: { ...parsed.regs, rdx: 0x8000_0000_0000_0001n } }));
    expect(parseSavedVcpu(saveVcpu(p, vm.sys, fd, 0)).regs.rdx).toBe(0x8000_0000_0000_0001n);
  });

  test('a save made while another is under way (inside one of its ioctls) leaves both whole', () => {
    const host = createHost({ cpus: 1, hardware: vendor.hardware() });
    host.modprobe(kvm({ postfix: '0' }));
    const p = host.spawn({ uid: 1000, groups: ['kvm'] });
    const vm = createRealModeVm(p, '/dev/kvm0', { code: [0xf4], vcpus: 2, regs: (id) => ({ rax: BigInt(0x100 + id), rdi: BigInt(id) << 60n }) });
    const [a, b] = [vm.vcpus[0]!.fd, vm.vcpus[1]!.fd];
    const plainA = saveVcpu(p, vm.sys, a, 0);
    const plainB = saveVcpu(p, vm.sys, b, 1);
    expect(plainB.regs).not.toEqual(plainA.regs);
    const inner: SavedVcpu[] = [];
    // A process whose KVM_GET_LAPIC (late in a save: after the registers) makes a whole save of the other vCPU first,
    // as a signal handler or an event listener of the VMM might.
    const wrapped = new Proxy(p, {
      get(target, key) {
        if (key !== 'ioctl') return Reflect.get(target, key) as unknown;
        return (f: number, req: number, arg: unknown) => {
          if (req === KVM_GET_LAPIC && inner.length === 0) inner.push(saveVcpu(p, vm.sys, b, 1));
          return target.ioctl(f, req, arg);
        };
      },
    }) as Process;
    expect(saveVcpu(wrapped, vm.sys, a, 0)).toEqual(plainA);
    expect(inner).toEqual([plainB]);
  });

  test('saves kept side by side (their bytes cut from shared buffers) each keep their own state, across buffers', () => {
    const { p, vm, fd } = setup(vendor);
    const kept: Array<{ rdx: bigint; saved: SavedVcpu; copy: SavedVcpu }> = [];
    // more saves than one 64 KiB buffer holds (~10 KiB each), each with another RDX
    for (let i = 0; i < 20; i++) {
      const rdx = 0x1_0000_0000n * BigInt(i) + 7n;
      const parsed = parseSavedVcpu(saveVcpu(p, vm.sys, fd, 0));
      restoreVcpu(p, fd, savedVcpuOf({ ...parsed, regs: { ...parsed.regs, rdx } }));
      const saved = saveVcpu(p, vm.sys, fd, 0);
      kept.push({ rdx, saved, copy: savedVcpuOf(parseSavedVcpu(saved)) });
    }
    expect(new Set(kept.map((k) => k.saved.regs.buffer)).size).toBeGreaterThan(1);
    for (const k of kept) {
      expect(parseSavedVcpu(k.saved).regs.rdx).toBe(k.rdx);
      expect(k.saved).toEqual(k.copy);
      expect(k.saved.cpuid.byteOffset % 8).toBe(0); // each save starts 8-byte aligned
    }
  });

  fcTest.prop([fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })], { numRuns: 10 })(
    'any register values round-trip through the bytes: save → restore on another vCPU → save is the same',
    (rsi, r15) => {
      const { p, vm, fd } = setup(vendor);
      const s = parseSavedVcpu(saveVcpu(p, vm.sys, fd, 0));
      const edited = savedVcpuOf({ ...s, regs: { ...s.regs, rsi, r15 } });
      restoreVcpu(p, fd, edited);
      const again = saveVcpu(p, vm.sys, fd, 0);
      expect(again.regs).toEqual(edited.regs);
      expect(parseSavedVcpu(again).regs.rsi).toBe(rsi);
    },
  );

  test('more than 255 MSRs go in batches; an MSR KVM refuses with another value than it holds is reported, by index and value', () => {
    const { p, vm, fd } = setup(vendor);
    const s = parseSavedVcpu(saveVcpu(p, vm.sys, fd, 0));
    // the list twice over: 2 × 165 entries, more than one KVM_SET_MSRS takes
    const twice = savedVcpuOf({ ...s, msrs: [...s.msrs, ...s.msrs] });
    expect(s.msrs.length * 2).toBeGreaterThan(255);
    restoreVcpu(p, fd, twice);
    expect(parseSavedVcpu(saveVcpu(p, vm.sys, fd, 0)).msrs).toEqual(s.msrs);
    // IA32_MC0_CTL takes only 0 or all ones
    const bad = savedVcpuOf({ ...s, msrs: s.msrs.map((m) => (m.index === 0x400 ? { index: 0x400, data: 0x5n } : m)) });
    let error: unknown;
    try {
      restoreVcpu(p, fd, bad);
    } catch (e) {
      error = e;
    }
    expect(isUsageError(error, 'ERR_INVALID_STATE')).toBe(true);
    expect((error as Error).message).toBe('restoreVcpu: KVM refused MSR 0x400 = 0x5');
  });
});
