/**
 * A whole VM saved and restored through the ABI (vmm.ts `saveVm` / `restoreVm` / `moveRealModeVm`): every GET/SET
 * pair round-trips, a VM saved and restored into another module saves the same state again, and a guest moved to
 * another module in the middle of its run prints exactly what an unmoved one prints and ends in the same state.
 */
import { createHost, type Host, type Process } from '@vac/core';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import {
  KVM_EXIT_HLT,
  KVM_EXIT_IO,
  KVM_RUN,
  KVM_SET_CPUID2,
  KVM_SET_DEBUGREGS,
  KVM_SET_FPU,
  KVM_SET_MSRS,
  KVM_SET_REGS,
  KVM_SET_TSC_KHZ,
  KVM_SET_VCPU_EVENTS,
  KVM_GET_VCPU_EVENTS,
  KVM_GET_TSC_KHZ,
  KVM_X86_SETUP_MCE,
  createRealModeVm,
  kvm,
  makeKvmCpuid2,
  makeKvmDebugregs,
  makeKvmFpu,
  makeKvmMsrs,
  makeKvmRegs,
  makeKvmVcpuEvents,
  moveRealModeVm,
  restoreVm,
  saveVm,
  type RealModeVm,
} from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';

/** A host with kvm0 and kvm1 (two modules side by side) and a VMM. */
function twoModules(vendor: (typeof VENDORS)[number]): { host: Host; p: Process } {
  const host = createHost({ cpus: 2, hardware: vendor.hardware() });
  host.modprobe(kvm({ postfix: '0' }));
  host.modprobe(kvm({ postfix: '1' }));
  return { host, p: host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm' }) };
}

/**
 * The guest: per round, mixes AX/BX/DX, stores AX into a ring at 0x3000, reads IA32_SYSENTER_CS and folds it into
 * BX, prints AL on port 0x80; DI rounds, then HLT. Memory 64 KiB at 0, code at 0x1000.
 */
const GUEST = [
  0x01, 0xd8, // add ax,bx
  0xc1, 0xc3, 0x03, // rol bx,3
  0x31, 0xc2, // xor dx,ax
  0x89, 0x84, 0x00, 0x30, // mov [si+0x3000],ax
  0x83, 0xc6, 0x02, // add si,2
  0x81, 0xe6, 0xfe, 0x01, // and si,0x1fe
  0x50, 0x52, 0x51, // push ax; push dx; push cx
  0x66, 0xb9, 0x74, 0x01, 0x00, 0x00, // mov ecx,0x174
  0x0f, 0x32, // rdmsr
  0x01, 0xc3, // add bx,ax
  0x59, 0x5a, 0x58, // pop cx; pop dx; pop ax
  0xe6, 0x80, // out 0x80,al
  0x4f, // dec di
  0x75, 0xd7, // jnz (start)
  0xf4, // hlt
];

/** Random vCPU state a VMM could set (valid for both vendors). */
const stateArb = fc.record({
  ax: fc.integer({ min: 0, max: 0xffff }),
  bx: fc.integer({ min: 0, max: 0xffff }),
  dx: fc.integer({ min: 0, max: 0xffff }),
  rounds: fc.integer({ min: 2, max: 12 }),
  high: fc.bigInt({ min: 0n, max: (1n << 48n) - 1n }),
  sysenterCs: fc.integer({ min: 0, max: 0xffff }),
  star: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }),
  lstar: fc.bigInt({ min: 0n, max: (1n << 47n) - 1n }),
  pat: fc.constantFrom(0x0007040600070406n, 0x0606060606060606n, 0x0000000000000000n, 0x0407050600070106n),
  tsc: fc.bigInt({ min: 0n, max: (1n << 50n) }),
  fpr: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  xmm: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  fcw: fc.integer({ min: 0, max: 0xffff }),
  db: fc.array(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), { minLength: 4, maxLength: 4 }),
  dr7: fc.constantFrom(0x400n, 0x401n, 0x455n, 0xffff0400n),
  shadow: fc.constantFrom(0, 1, 2),
  nmiPending: fc.constantFrom(0, 1),
  banks: fc.integer({ min: 1, max: 32 }),
  faster: fc.boolean(),
  cpuidMax: fc.integer({ min: 1, max: 0xd }),
});

/** One drawn state. */
type State = typeof stateArb extends fc.Arbitrary<infer T> ? T : never;

/** Give a fresh VM's vCPU 0 the state `s` (through the ABI). */
function setUp(p: Process, vm: RealModeVm, s: State): void {
  const fd = vm.vcpus[0]!.fd;
  p.ioctl(fd, KVM_SET_CPUID2, makeKvmCpuid2([
    { function: 0, eax: s.cpuidMax, ebx: 0x756e6547, ecx: 0x6c65746e, edx: 0x49656e69 },
    { function: 1, eax: 0x50657, edx: 0x781abfd },
  ]));
  const khz = p.ioctl(fd, KVM_GET_TSC_KHZ, 0);
  if (s.faster) p.ioctl(fd, KVM_SET_TSC_KHZ, khz * 2);
  p.ioctl(fd, KVM_X86_SETUP_MCE, [BigInt(s.banks) | (1n << 8n)]);
  p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rax: (s.high << 16n) | BigInt(s.ax), rbx: BigInt(s.bx), rdx: BigInt(s.dx), rdi: BigInt(s.rounds), rip: 0x1000n, rsp: 0x8000n, rflags: 2n, r9: s.high }));
  const f = makeKvmFpu({ fcw: s.fcw });
  f.fpr[2] = Uint8Array.from(s.fpr);
  f.xmm[7] = Uint8Array.from(s.xmm);
  p.ioctl(fd, KVM_SET_FPU, f);
  const msrs = [
    { index: 0x174, data: BigInt(s.sysenterCs) },
    { index: 0xc0000081, data: s.star },
    { index: 0xc0000082, data: s.lstar },
    { index: 0x277, data: s.pat },
    { index: 0x10, data: s.tsc },
    { index: 0x402, data: 0x1234n }, // MC0_ADDR
  ];
  expect(p.ioctl(fd, KVM_SET_MSRS, makeKvmMsrs(msrs))).toBe(msrs.length);
  p.ioctl(fd, KVM_SET_DEBUGREGS, makeKvmDebugregs({ db: [s.db[0]!, s.db[1]!, s.db[2]!, s.db[3]!], dr6: 0xffff0ff0n, dr7: s.dr7 }));
  const ev = makeKvmVcpuEvents();
  p.ioctl(fd, KVM_GET_VCPU_EVENTS, ev);
  ev.interrupt.shadow = s.shadow;
  ev.nmi.pending = s.nmiPending;
  ev.flags = 1 | 4; // NMI_PENDING | SHADOW
  p.ioctl(fd, KVM_SET_VCPU_EVENTS, ev);
}

/** A VM running GUEST on `dev` with state `s`. */
function makeGuest(p: Process, dev: string, s: State): RealModeVm {
  const vm = createRealModeVm(p, dev, { code: [], guestPhysAddr: 0, memorySize: 0x10000 });
  vm.memory.bytes.set(GUEST, 0x1000);
  // an NMI handler (IVT[2] → 0x2000: iret) in case an NMI is pending
  vm.memory.bytes.set([0x00, 0x20, 0x00, 0x00], 2 * 4);
  vm.memory.bytes.set([0xcf], 0x2000);
  setUp(p, vm, s);
  return vm;
}

/** Run until HLT (or `stopAfter` outputs), collecting what the guest prints. */
function runGuestOut(p: Process, vm: RealModeVm, out: number[], stopAfter = Infinity): number {
  const v = vm.vcpus[0]!;
  let n = 0;
  while (n < stopAfter) {
    p.ioctl(v.fd, KVM_RUN, 0);
    if (v.run.exit_reason !== KVM_EXIT_IO) return v.run.exit_reason;
    out.push(v.run.bytes[v.run.io.data_offset]!);
    n++;
  }
  return KVM_EXIT_IO;
}

describe.each(VENDORS)('save and restore of a whole VM on $name', (vendor) => {
  test('saved on kvm0, restored on kvm1 and saved again: the same state (every GET/SET pair round-trips)', () => {
    fc.assert(
      fc.property(stateArb, fc.integer({ min: 0, max: 5 }), (s, ran) => {
        const { p } = twoModules(vendor);
        const vm = makeGuest(p, '/dev/kvm0', s);
        runGuestOut(p, vm, [], ran); // mid-run: an OUT pending completion, or none
        const saved = saveVm(p, vm);
        const next = restoreVm(p, '/dev/kvm1', saved, { slots: [{ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: vm.memory.addr }] });
        expect(saveVm(p, next)).toEqual(saved);
      }),
      { numRuns: 25 },
    );
  });

  test('a guest moved to kvm1 mid-run prints exactly what an unmoved one prints, and ends in the same state', () => {
    fc.assert(
      fc.property(stateArb, fc.integer({ min: 0, max: 11 }), (s, moveAt) => {
        // the reference: never moved
        const ref = twoModules(vendor);
        const a = makeGuest(ref.p, '/dev/kvm0', s);
        const outA: number[] = [];
        expect(runGuestOut(ref.p, a, outA)).toBe(KVM_EXIT_HLT);
        // the same guest, moved after `moveAt` outputs
        const mov = twoModules(vendor);
        let b = makeGuest(mov.p, '/dev/kvm0', s);
        const outB: number[] = [];
        const r = runGuestOut(mov.p, b, outB, moveAt);
        if (r === KVM_EXIT_IO) {
          b = moveRealModeVm(mov.p, b, '/dev/kvm1');
          mov.host.rmmod('kvm0'); // nothing holds kvm0 any more
          expect(runGuestOut(mov.p, b, outB)).toBe(KVM_EXIT_HLT);
        }
        expect(outB).toEqual(outA);
        expect([...b.memory.bytes]).toEqual([...a.memory.bytes]);
        expect(saveVm(mov.p, b)).toEqual(saveVm(ref.p, a));
      }),
      { numRuns: 25 },
    );
  });
});
