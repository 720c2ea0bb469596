/**
 * Cloud Hypervisor's start-up on the model, through the library (its calls go through rust-vmm kvm-ioctls):
 * `check_required_kvm_extensions` (hypervisor/src/kvm/x86_64/mod.rs), `KvmHypervisor::create_vm` and the x86 VM set-up
 * (hypervisor/src/kvm/mod.rs: the identity map and TSS addresses, `enable_split_irq` with 24 IOAPIC pins), then a
 * vCPU's creation and set-up (`KvmVcpu`: CPUID, the boot MSRs of arch/src/x86_64/regs.rs, registers, FPU, `set_lint`).
 */
import { describe, expect, test } from 'vitest';
import * as K from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { expectCap, fails, startupHost } from './support.js';

describe.each(VENDORS)('Cloud Hypervisor start-up ($name)', (vendor) => {
  test('check_required_kvm_extensions: every required capability is answered as Linux answers it', () => {
    const s = startupHost(vendor);
    expect(s.p.ioctl(s.sys, K.KVM_GET_API_VERSION, 0)).toBe(12); // Kvm::new
    expectCap(s, s.sys, K.KVM_CAP_SIGNAL_MSI, 1);
    // The guest's IA32_TSC_DEADLINE reaches the in-kernel LAPIC timer (kvm_set_lapic_tscdeadline_msr): 1, as on Linux.
    expect(expectCap(s, s.sys, K.KVM_CAP_TSC_DEADLINE_TIMER, 1)).toBe(1);
    expectCap(s, s.sys, K.KVM_CAP_SPLIT_IRQCHIP, 1);
    expectCap(s, s.sys, K.KVM_CAP_SET_IDENTITY_MAP_ADDR, 1);
    expectCap(s, s.sys, K.KVM_CAP_SET_TSS_ADDR, 1);
    expectCap(s, s.sys, K.KVM_CAP_IMMEDIATE_EXIT, 1);
  });

  test('the rest of its sequence: split irqchip VM, vCPU set-up, an MSI to the in-kernel LAPIC', () => {
    const s = startupHost(vendor);
    const { p, sys } = s;
    // KvmHypervisor::create_vm: KVM_CREATE_VM(0); KvmVm::set_identity_map_address(0xfffbc000), set_tss_address(0xfffbd000).
    const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    expect(p.ioctl(vm, K.KVM_SET_IDENTITY_MAP_ADDR, K.makeU64(0xfffbc000n))).toBe(0);
    expect(p.ioctl(vm, K.KVM_SET_TSS_ADDR, 0xfffbd000)).toBe(0);
    // KvmVm::enable_split_irq: KVM_ENABLE_CAP(KVM_CAP_SPLIT_IRQCHIP, NUM_IOAPIC_PINS = 24).
    expect(p.ioctl(vm, K.KVM_ENABLE_CAP, K.makeKvmEnableCap({ cap: K.KVM_CAP_SPLIT_IRQCHIP, args: [24n, 0n, 0n, 0n] }))).toBe(0);
    // A second one: the irqchip exists (kvm_vm_ioctl_enable_cap: EEXIST), state unchanged.
    expect(fails(s.host, () => p.ioctl(vm, K.KVM_ENABLE_CAP, K.makeKvmEnableCap({ cap: K.KVM_CAP_SPLIT_IRQCHIP, args: [24n, 0n, 0n, 0n] })))).toBe('EEXIST');
    // No PIT and no full irqchip with a split one: KVM_CREATE_IRQCHIP is EEXIST.
    expect(fails(s.host, () => p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0))).toBe('EEXIST');
    // MemoryManager: the RAM slot.
    const ram = p.mmapAnonymous(32 << 20);
    expect(p.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION, K.makeKvmUserspaceMemoryRegion({ slot: 0, guest_phys_addr: 0, memory_size: 32 << 20, userspace_addr: ram.addr }))).toBe(0);
    // Vcpu: KVM_CREATE_VCPU, the run mapping; get_supported_cpuid(KVM_MAX_CPUID_ENTRIES = 80) then KVM_SET_CPUID2.
    const vcpu = p.ioctl(vm, K.KVM_CREATE_VCPU, 0);
    K.mapKvmRun(p, sys, vcpu);
    const cpuid = K.makeKvmCpuid2(80);
    expect(p.ioctl(sys, K.KVM_GET_SUPPORTED_CPUID, cpuid)).toBe(0);
    cpuid.entries.length = cpuid.nent;
    expect(p.ioctl(vcpu, K.KVM_SET_CPUID2, cpuid)).toBe(0);
    // boot_msr_entries (arch/src/x86_64/regs.rs): the same eleven as Firecracker's, all set.
    const boot = [0x174, 0x175, 0x176, 0xc0000081, 0xc0000083, 0xc0000102, 0xc0000084, 0xc0000082, 0x10].map((index) => ({ index }));
    const msrs = K.makeKvmMsrs([...boot, { index: 0x1a0, data: 1n }, { index: 0x2ff, data: (1n << 11n) | 6n }]);
    expect(p.ioctl(vcpu, K.KVM_SET_MSRS, msrs)).toBe(11);
    expect(p.ioctl(vcpu, K.KVM_SET_REGS, K.makeKvmRegs({ rflags: 2n, rip: 0x100000n, rsp: 0x8ff0n, rsi: 0x7000n }))).toBe(0);
    expect(p.ioctl(vcpu, K.KVM_SET_FPU, K.makeKvmFpu({ fcw: 0x37f, mxcsr: 0x1f80 }))).toBe(0);
    // set_lint: LVT0 ExtINT, LVT1 NMI.
    const lapic = K.makeKvmLapicState();
    expect(p.ioctl(vcpu, K.KVM_GET_LAPIC, lapic)).toBe(0);
    const dv = new DataView(lapic.regs.buffer, lapic.regs.byteOffset, lapic.regs.byteLength);
    dv.setUint32(0x350, (dv.getUint32(0x350, true) & ~0x700) | (7 << 8), true);
    dv.setUint32(0x360, (dv.getUint32(0x360, true) & ~0x700) | (4 << 8), true);
    expect(p.ioctl(vcpu, K.KVM_SET_LAPIC, lapic)).toBe(0);
    // Its devices interrupt with MSIs (KvmVm::signal_msi) to APIC id 0 (address 0xfee00000), vector 0x30. The LAPIC is
    // software-disabled after reset (SPIV bit 8 clear): __apic_accept_irq accepts nothing, KVM_SIGNAL_MSI answers 0.
    const msi = K.makeKvmMsi({ address_lo: 0xfee00000, address_hi: 0, data: 0x30 });
    expect(p.ioctl(vm, K.KVM_SIGNAL_MSI, msi)).toBe(0);
    // Once the guest enables it (SPIV bit 8; written here through KVM_SET_LAPIC, as a restore does), it is delivered: 1.
    dv.setUint32(0xf0, dv.getUint32(0xf0, true) | 0x100, true);
    expect(p.ioctl(vcpu, K.KVM_SET_LAPIC, lapic)).toBe(0);
    expect(p.ioctl(vm, K.KVM_SIGNAL_MSI, msi)).toBe(1);
    // Its user-space IOAPIC's routes are MSI routes (KVM_SET_GSI_ROUTING): an empty table is accepted.
    expect(p.ioctl(vm, K.KVM_SET_GSI_ROUTING, K.makeKvmIrqRouting([]))).toBe(0);
  });
});
