/**
 * Firecracker's start-up on the model, through the library (its calls go through rust-vmm kvm-ioctls): `Kvm::new`
 * with `Kvm::DEFAULT_CAPABILITIES` and `Kvm::init_arch` (src/vmm/src/arch/x86_64/kvm.rs), `ArchVm::new` and
 * `setup_irqchip` (src/vmm/src/arch/x86_64/vm.rs), the vCPU's creation and `KvmVcpu::configure`
 * (src/vmm/src/arch/x86_64/vcpu.rs: CPUID, the boot MSRs of msr.rs, regs.rs's registers, FPU and long-mode sregs,
 * interrupts.rs's `set_lint`). Firecracker's binaries are static (no bridge), so this is the only way to run its
 * sequence against the model.
 */
import { describe, expect, test } from 'vitest';
import * as K from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { expectCap, startupHost } from './support.js';

/** `Kvm::DEFAULT_CAPABILITIES` with what Linux 6.12 answers on the model's CPUs. */
const DEFAULT_CAPABILITIES: ReadonlyArray<[number, number]> = [
  [K.KVM_CAP_IRQCHIP, 1], [K.KVM_CAP_IOEVENTFD, 1], [K.KVM_CAP_IRQFD, 1], [K.KVM_CAP_USER_MEMORY, 1],
  [K.KVM_CAP_SET_TSS_ADDR, 1], [K.KVM_CAP_PIT2, 1], [K.KVM_CAP_PIT_STATE2, 1], [K.KVM_CAP_ADJUST_CLOCK, 14],
  [K.KVM_CAP_DEBUGREGS, 1], [K.KVM_CAP_MP_STATE, 1], [K.KVM_CAP_VCPU_EVENTS, 1], [K.KVM_CAP_XCRS, 1],
  [K.KVM_CAP_XSAVE, 1], [K.KVM_CAP_EXT_CPUID, 1],
];

describe.each(VENDORS)('Firecracker start-up ($name)', (vendor) => {
  test('Kvm::new: API version 12; all 14 required capabilities, KVM_CAP_XCRS with them (the model\'s CPUs have XSAVE)', () => {
    const s = startupHost(vendor);
    expect(s.p.ioctl(s.sys, K.KVM_GET_API_VERSION, 0)).toBe(12);
    const missing: string[] = [];
    for (const [cap, linux] of DEFAULT_CAPABILITIES) if (expectCap(s, s.sys, cap, linux) === 0) missing.push(K.capabilityName(cap));
    // KVM_CAP_XCRS is boot_cpu_has(X86_FEATURE_XSAVE) (x86.c, kvm_vm_ioctl_check_extension): CPUID leaf 0xD of the
    // model's CPUs offers x87, SSE and AVX, so the kernel keeps XSAVE (fpu__init_system_xstate).
    expect(missing).toEqual([]);
  });

  test('the rest of its sequence (past the capability check): VM, memory, irqchip and PIT, vCPU configure, set_lint', () => {
    const s = startupHost(vendor);
    const { p, sys } = s;
    // Kvm::init_arch: get_supported_cpuid(KVM_MAX_CPUID_ENTRIES = 80).
    const cpuid = K.makeKvmCpuid2(80);
    expect(p.ioctl(sys, K.KVM_GET_SUPPORTED_CPUID, cpuid)).toBe(0);
    cpuid.entries.length = cpuid.nent;
    // VmCommon::create_common: KVM_CREATE_VM (retried on EINTR), the memslot limit.
    const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    expectCap(s, sys, K.KVM_CAP_NR_MEMSLOTS, 32764);
    // ArchVm::new: msrs_to_save (KVM_GET_MSR_INDEX_LIST with room for KVM_MAX_MSR_ENTRIES = 256), XSAVE2 on the VM fd,
    // KVM_SET_TSS_ADDR(KVM_TSS_ADDRESS = 0xfffbd000).
    const list = K.makeKvmMsrList(256);
    expect(p.ioctl(sys, K.KVM_GET_MSR_INDEX_LIST, list)).toBe(0);
    expect(list.nmsrs).toBeGreaterThan(0);
    expect(list.nmsrs).toBeLessThan(256);
    expectCap(s, vm, K.KVM_CAP_XSAVE2, 4096);
    expect(p.ioctl(vm, K.KVM_SET_TSS_ADDR, 0xfffbd000)).toBe(0);
    // Guest memory: one slot of 128 MiB at 0.
    const ram = p.mmapAnonymous(128 << 20);
    expect(p.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION, K.makeKvmUserspaceMemoryRegion({ slot: 0, guest_phys_addr: 0, memory_size: 128 << 20, userspace_addr: ram.addr }))).toBe(0);
    // arch_pre_create_vcpus → setup_irqchip: KVM_CREATE_IRQCHIP, then KVM_CREATE_PIT2 with KVM_PIT_SPEAKER_DUMMY.
    expect(p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0)).toBe(0);
    expect(p.ioctl(vm, K.KVM_CREATE_PIT2, K.makeKvmPitConfig({ flags: K.irqchip.KVM_PIT_SPEAKER_DUMMY }))).toBe(0);
    // KvmVcpu::new: KVM_CREATE_VCPU(0), the kvm_run mapping.
    const vcpu = p.ioctl(vm, K.KVM_CREATE_VCPU, 0);
    expect(p.ioctl(sys, K.KVM_GET_VCPU_MMAP_SIZE, 0)).toBe(12288);
    K.mapKvmRun(p, sys, vcpu);
    // KvmVcpu::configure: KVM_SET_CPUID2 (the supported table, normalized by Firecracker; every entry accepted).
    expect(p.ioctl(vcpu, K.KVM_SET_CPUID2, cpuid)).toBe(0);
    // create_boot_msr_entries (msr.rs) — Firecracker fails with VcpuSetMsrsIncomplete unless all are set.
    const boot = [
      { index: 0x174 }, { index: 0x175 }, { index: 0x176 }, { index: 0xc0000081 }, { index: 0xc0000083 },
      { index: 0xc0000102 }, { index: 0xc0000084 }, { index: 0xc0000082 }, { index: 0x10 },
      { index: 0x1a0, data: 1n }, // MISC_ENABLE.FAST_STRING
      { index: 0x2ff, data: (1n << 11n) | 6n }, // MTRRdefType: MTRR_ENABLE | write-back
    ];
    expect(p.ioctl(vcpu, K.KVM_SET_MSRS, K.makeKvmMsrs(boot))).toBe(boot.length);
    // setup_regs (regs.rs): RFLAGS 2, RIP at the kernel's entry, RSP/RBP at the boot stack, RSI at the zero page.
    expect(p.ioctl(vcpu, K.KVM_SET_REGS, K.makeKvmRegs({ rflags: 2n, rip: 0x1000000n, rsp: 0x8ff0n, rbp: 0x8ff0n, rsi: 0x7000n }))).toBe(0);
    // setup_fpu: FCW 0x37f, MXCSR 0x1f80.
    expect(p.ioctl(vcpu, K.KVM_SET_FPU, K.makeKvmFpu({ fcw: 0x37f, mxcsr: 0x1f80 }))).toBe(0);
    // setup_sregs: GDT at 0x500 with code (selector 8, L), data (0x10) and TSS (0x18); identity page tables at 0x9000;
    // CR0.PE|PG, CR4.PAE, EFER.LME|LMA — a valid 64-bit state for kvm_is_valid_sregs.
    const sregs = K.makeKvmSregs();
    expect(p.ioctl(vcpu, K.KVM_GET_SREGS, sregs)).toBe(0);
    const seg = (selector: number, type: number, l: number, db: number, s: number): K.kvm_segment => ({ base: 0n, limit: 0xffffffff, selector, type, present: 1, dpl: 0, db, s, l, g: 1, avl: 0, unusable: 0 });
    sregs.cs = seg(8, 0xb, 1, 0, 1);
    sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg(0x10, 3, 0, 1, 1);
    sregs.tr = seg(0x18, 0xb, 0, 0, 0);
    sregs.gdt = { base: 0x500n, limit: 31 };
    sregs.idt = { base: 0x520n, limit: 7 };
    sregs.cr3 = 0x9000n;
    sregs.cr4 |= 0x20n; // PAE
    sregs.cr0 |= 0x1n | 0x80000000n; // PE | PG
    sregs.efer |= 0x100n | 0x400n; // LME | LMA
    expect(p.ioctl(vcpu, K.KVM_SET_SREGS, sregs)).toBe(0);
    const got = K.makeKvmSregs();
    p.ioctl(vcpu, K.KVM_GET_SREGS, got);
    expect({ cr0: got.cr0 & 0x80000001n, cr4: got.cr4 & 0x20n, efer: got.efer & 0x500n, csl: got.cs.l }).toEqual({ cr0: 0x80000001n, cr4: 0x20n, efer: 0x500n, csl: 1 });
    // set_lint (interrupts.rs): LVT0 = ExtINT, LVT1 = NMI, through KVM_GET_LAPIC / KVM_SET_LAPIC.
    const lapic = K.makeKvmLapicState();
    expect(p.ioctl(vcpu, K.KVM_GET_LAPIC, lapic)).toBe(0);
    const dv = new DataView(lapic.regs.buffer, lapic.regs.byteOffset, lapic.regs.byteLength);
    dv.setUint32(0x350, (dv.getUint32(0x350, true) & ~0x700) | (7 << 8), true);
    dv.setUint32(0x360, (dv.getUint32(0x360, true) & ~0x700) | (4 << 8), true);
    expect(p.ioctl(vcpu, K.KVM_SET_LAPIC, lapic)).toBe(0);
    const again = K.makeKvmLapicState();
    p.ioctl(vcpu, K.KVM_GET_LAPIC, again);
    const dv2 = new DataView(again.regs.buffer, again.regs.byteOffset, again.regs.byteLength);
    expect([(dv2.getUint32(0x350, true) >> 8) & 7, (dv2.getUint32(0x360, true) >> 8) & 7]).toEqual([7, 4]);
    // Snapshot support reads the VM state back (ArchVm::save_state): PIT2, clock, the three irqchips.
    expect(p.ioctl(vm, K.KVM_GET_PIT2, K.makeKvmPitState2())).toBe(0);
    const clock = K.makeKvmClockData();
    expect(p.ioctl(vm, K.KVM_GET_CLOCK, clock)).toBe(0);
    for (const chip of [0, 1, 2]) expect(p.ioctl(vm, K.KVM_GET_IRQCHIP, K.makeKvmIrqchip({ chip_id: chip }))).toBe(0);
    // KvmVcpu::save_state: KVM_GET_XSAVE (XSAVE2 is 4096: the plain one), KVM_GET_XCRS; restore_state sets them back
    // after the guest kernel's XSETBV made XCR0 x87 | SSE | AVX.
    const xcrs = xcr0Of(7n);
    expect(p.ioctl(vcpu, K.KVM_SET_XCRS, xcrs)).toBe(0);
    const xsave = K.makeKvmXsave();
    expect(p.ioctl(vcpu, K.KVM_GET_XSAVE, xsave)).toBe(0);
    const saved = K.makeKvmXcrs();
    expect(p.ioctl(vcpu, K.KVM_GET_XCRS, saved)).toBe(0);
    expect([saved.nr_xcrs, saved.xcrs[0]!.value]).toEqual([1, 7n]);
    expect(p.ioctl(vcpu, K.KVM_SET_XSAVE, xsave)).toBe(0);
    expect(p.ioctl(vcpu, K.KVM_SET_XCRS, saved)).toBe(0);
  });
});

/** A `struct kvm_xcrs` with XCR0 = `value` (kvm_put_xcrs). */
function xcr0Of(value: bigint): K.kvm_xcrs {
  const x = K.makeKvmXcrs({ nr_xcrs: 1 });
  x.xcrs[0]!.value = value;
  return x;
}
