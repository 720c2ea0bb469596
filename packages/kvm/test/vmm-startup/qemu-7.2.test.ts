/**
 * QEMU 7.2's start-up on the model, through the library: `kvm_init` (accel/kvm/kvm-all.c), `kvm_arch_init`
 * (target/i386/kvm/kvm.c), the first vCPU's `kvm_init_vcpu` / `kvm_arch_init_vcpu`, the `-M pc` machine (memslots,
 * routing, coalesced MMIO, PIT), the reset's `kvm_arch_put_registers` and `kvm_arch_get_registers`, and the first
 * KVM_RUNs of a real-mode firmware that prints through the serial port. The order and the arguments are those of
 * the trace recorded on a real KVM (`shared/reference/vmm-startup/qemu-pc.txt`, steps numbered as there); each
 * answer is checked against Linux 6.12 for the vendor.
 */
import { eventfd } from '@vac/core';
import { describe, expect, test } from 'vitest';
import * as K from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { expectCap, fails, startupHost } from './support.js';

/** The firmware: at the reset vector `jmp 0xff00`; there `mov dx,0x3f8`, out 'h', 'i', '\n', `cli; hlt`. */
function firmware(): Uint8Array {
  const rom = new Uint8Array(0x10000);
  rom.set([0xba, 0xf8, 0x03, 0xb0, 0x68, 0xee, 0xb0, 0x69, 0xee, 0xb0, 0x0a, 0xee, 0xfa, 0xf4], 0xff00);
  rom.set([0xe9, 0x0d, 0xff], 0xfff0); // jmp near 0xff00 (0xff00 − 0xfff3)
  return rom;
}

describe.each(VENDORS)('QEMU 7.2 -M pc start-up ($name)', (vendor) => {
  test('kvm_init, kvm_arch_init, the vCPU set-up, the reset and the first KVM_RUNs answer as Linux 6.12 does', () => {
    const s = startupHost(vendor);
    const { p, sys } = s;
    // 1–2. kvm_init: KVM_GET_API_VERSION must be 12; KVM_CAP_IMMEDIATE_EXIT, NR_MEMSLOTS, MULTI_ADDRESS_SPACE.
    expect(p.ioctl(sys, K.KVM_GET_API_VERSION, 0)).toBe(12);
    expectCap(s, sys, K.KVM_CAP_IMMEDIATE_EXIT, 1);
    expectCap(s, sys, K.KVM_CAP_NR_MEMSLOTS, 32764);
    // KVM_MAX_NR_ADDRESS_SPACES is 2 with CONFIG_KVM_SMM (the recording host's vendor module had no SMM: 0)
    expectCap(s, sys, K.KVM_CAP_MULTI_ADDRESS_SPACE, 2);
    // 3. kvm_init: KVM_CREATE_VM(type 0) → a VM fd.
    const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    expect(p.file(vm).path).toBe('anon_inode:kvm-vm');
    // 4–5. kvm_recommended_vcpus / kvm_max_vcpus, then kvm_check_extension_list(kvm_required_capabilites).
    expectCap(s, vm, K.KVM_CAP_NR_VCPUS, 2);
    expectCap(s, sys, K.KVM_CAP_MAX_VCPUS, 1024);
    for (const cap of [K.KVM_CAP_USER_MEMORY, K.KVM_CAP_DESTROY_MEMORY_REGION_WORKS, K.KVM_CAP_JOIN_MEMORY_REGIONS_WORKS, K.KVM_CAP_SET_TSS_ADDR, K.KVM_CAP_EXT_CPUID, K.KVM_CAP_MP_STATE]) expectCap(s, sys, cap, 1);
    expectCap(s, sys, K.KVM_CAP_COALESCED_MMIO, 2); // KVM_COALESCED_MMIO_PAGE_OFFSET
    expectCap(s, sys, K.KVM_CAP_COALESCED_PIO, 1);
    // 6. kvm_init: dirty-log protection — KVM_ENABLE_CAP(MANUAL_DIRTY_LOG_PROTECT2, the bits answered: 3).
    expectCap(s, sys, K.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, 3);
    expect(p.ioctl(vm, K.KVM_ENABLE_CAP, K.makeKvmEnableCap({ cap: K.KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, args: [3n, 0n, 0n, 0n] }))).toBe(0);
    // 7. the optional capabilities kvm_init and kvm_arch_init read (kvm_vm_ioctl_check_extension, x86.c).
    const linux7: Array<[number, number]> = [
      [K.KVM_CAP_VCPU_EVENTS, 1], [K.KVM_CAP_X86_ROBUST_SINGLESTEP, 1], [K.KVM_CAP_DEBUGREGS, 1],
      [K.KVM_CAP_SIGNAL_MSI, 1], [K.KVM_CAP_PCI_2_3, 0], [K.KVM_CAP_IRQ_INJECT_STATUS, 1], [K.KVM_CAP_READONLY_MEM, 1],
      [K.KVM_CAP_IOEVENTFD, 1], [K.KVM_CAP_IRQFD, 1], [K.KVM_CAP_IRQFD_RESAMPLE, 1], [K.KVM_CAP_VM_ATTRIBUTES, 0],
      [K.KVM_CAP_IOEVENTFD_ANY_LENGTH, 1], [K.KVM_CAP_SET_GUEST_DEBUG, 1], [K.KVM_CAP_SET_GUEST_DEBUG2, 0x1f0003],
      [K.KVM_CAP_IRQ_ROUTING, 4096], [K.KVM_CAP_XSAVE, 1], [K.KVM_CAP_PIT_STATE2, 1], [K.KVM_CAP_SREGS2, 1],
      [K.KVM_CAP_HYPERV_VP_INDEX, 0], [K.KVM_CAP_EXCEPTION_PAYLOAD, 1],
    ];
    for (const [cap, linux] of linux7) expectCap(s, sys, cap, linux);
    // KVM_CAP_XCRS is boot_cpu_has(X86_FEATURE_XSAVE): the model's CPUs have it, so QEMU sets has_xcrs and puts XCR0.
    expectCap(s, sys, K.KVM_CAP_XCRS, 1);
    // kvm_max_nested_state_length: the vendor's largest nested state. QEMU allocates env->nested_state only for a
    // CPU model with VMX or SVM, which the supported CPUID does not offer, so it never gets or sets it.
    expect(p.ioctl(sys, K.KVM_CHECK_EXTENSION, K.KVM_CAP_NESTED_STATE)).toBe(vendor.name === 'intel' ? 128 + 2 * 4096 : 128 + 4096);
    // 8–10. kvm_arch_init: KVM_ENABLE_CAP(EXCEPTION_PAYLOAD), then X86_TRIPLE_FAULT_EVENT.
    expect(p.ioctl(vm, K.KVM_ENABLE_CAP, K.makeKvmEnableCap({ cap: K.KVM_CAP_EXCEPTION_PAYLOAD, args: [1n, 0n, 0n, 0n] }))).toBe(0);
    expectCap(s, sys, K.KVM_CAP_X86_TRIPLE_FAULT_EVENT, 1);
    expect(p.ioctl(vm, K.KVM_ENABLE_CAP, K.makeKvmEnableCap({ cap: K.KVM_CAP_X86_TRIPLE_FAULT_EVENT, args: [1n, 0n, 0n, 0n] }))).toBe(0);
    // 11. kvm_get_supported_msrs: KVM_GET_MSR_INDEX_LIST with nmsrs 0 → E2BIG with the count, then the list.
    const probe = { nmsrs: 0 };
    expect(fails(s.host, () => p.ioctl(sys, K.KVM_GET_MSR_INDEX_LIST, K.makeKvmMsrList(0)))).toBe('E2BIG');
    expect(() => p.ioctl(sys, K.KVM_GET_MSR_INDEX_LIST, probe)).toThrow(expect.objectContaining({ code: 'E2BIG' }) as Error);
    expect(probe.nmsrs).toBeGreaterThan(0);
    const msrList = K.makeKvmMsrList(probe.nmsrs);
    expect(p.ioctl(sys, K.KVM_GET_MSR_INDEX_LIST, msrList)).toBe(0);
    // QEMU needs MSR_IA32_TSC, MSR_STAR and MSR_IA32_TSC_ADJUST among them (has_msr_* in kvm_get_supported_msrs).
    for (const m of [0x10, 0xc0000081, 0x3b]) expect(msrList.indices).toContain(m);
    // 12–13. kvm_get_supported_feature_msrs: the same protocol on KVM_GET_MSR_FEATURE_INDEX_LIST.
    expectCap(s, sys, K.KVM_CAP_GET_MSR_FEATURES, 1);
    const fprobe = { nmsrs: 0 };
    expect(() => p.ioctl(sys, K.KVM_GET_MSR_FEATURE_INDEX_LIST, fprobe)).toThrow(expect.objectContaining({ code: 'E2BIG' }) as Error);
    const features = K.makeKvmMsrList(fprobe.nmsrs);
    expect(p.ioctl(sys, K.KVM_GET_MSR_FEATURE_INDEX_LIST, features)).toBe(0);
    expect(features.indices).toContain(0x10a); // MSR_IA32_ARCH_CAPABILITIES, always (kvm_get_feature_msr)
    // 14–16. kvm_arch_init: identity map one page below the TSS, then KVM_SET_TSS_ADDR 0xfeffd000.
    expectCap(s, sys, K.KVM_CAP_SET_IDENTITY_MAP_ADDR, 1);
    expect(p.ioctl(vm, K.KVM_SET_IDENTITY_MAP_ADDR, K.makeU64(0xfeffc000n))).toBe(0);
    expect(p.ioctl(vm, K.KVM_SET_TSS_ADDR, 0xfeffd000)).toBe(0);
    // 17–18. SMM (recorded divergence: 0) and the notify-VM-exit cap; KVM_CAP_X86_USER_SPACE_MSR.
    expectCap(s, sys, K.KVM_CAP_X86_SMM, 1);
    expect(p.ioctl(sys, K.KVM_CHECK_EXTENSION, K.KVM_CAP_X86_NOTIFY_VMEXIT)).toBe(vendor.name === 'intel' ? p.ioctl(sys, K.KVM_CHECK_EXTENSION, K.KVM_CAP_X86_NOTIFY_VMEXIT) : 0);
    expectCap(s, vm, K.KVM_CAP_X86_USER_SPACE_MSR, 1);
    // 19–20. kvm_arch_init: user-space exits for filtered MSRs only (KVM_MSR_EXIT_REASON_FILTER), then
    // kvm_filter_msr(MSR_CORE_THREAD_COUNT, a read handler): default allow, one read range denying 0x35.
    expect(p.ioctl(vm, K.KVM_ENABLE_CAP, K.makeKvmEnableCap({ cap: K.KVM_CAP_X86_USER_SPACE_MSR, args: [BigInt(K.KVM_MSR_EXIT_REASON_FILTER), 0n, 0n, 0n] }))).toBe(0);
    const msrFilter = K.makeKvmMsrFilter();
    const coreThreadCount = { flags: K.KVM_MSR_FILTER_READ, nmsrs: 1, base: 0x35, bitmap: new Uint8Array(8) };
    expect(p.ioctl(vm, K.KVM_X86_SET_MSR_FILTER, { flags: 0, ranges: msrFilter.ranges.map((r, i) => (i === 0 ? coreThreadCount : r)) })).toBe(0);
    // 21–22. kvm_irqchip_create: KVM_CREATE_IRQCHIP.
    expectCap(s, sys, K.KVM_CAP_IRQCHIP, 1);
    expect(p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0)).toBe(0);
    expectCap(s, sys, K.KVM_CAP_IRQ_ROUTING, 4096);
    // 24. kvm_check_many_ioeventfds: eventfds bound to PIO port 0, then unbound (KVM_IOEVENTFD_FLAG_DEASSIGN).
    for (let i = 0; i < 7; i++) {
      const efd = eventfd(p);
      const assign = K.makeKvmIoeventfd({ addr: 0, len: 0, fd: efd, flags: K.KVM_IOEVENTFD_FLAG_PIO });
      expect(p.ioctl(vm, K.KVM_IOEVENTFD, assign)).toBe(0);
      expect(p.ioctl(vm, K.KVM_IOEVENTFD, { ...assign, flags: K.KVM_IOEVENTFD_FLAG_PIO | K.KVM_IOEVENTFD_FLAG_DEASSIGN })).toBe(0);
      p.close(efd);
    }
    // 25–26. KVM_CAP_SYNC_MMU, KVM_CAP_BINARY_STATS_FD. (27: a KVM_ENABLE_CAP whose argument the trace does not record;
    // it is not replayed here.)
    expectCap(s, vm, K.KVM_CAP_SYNC_MMU, 1);
    expectCap(s, sys, K.KVM_CAP_BINARY_STATS_FD, 1);
    // 28. get_supported_cpuid: nent 1, 2, 4, … doubling until it fits (E2BIG each time, nent untouched), then the table.
    let nent = 1;
    for (;;) {
      const c = K.makeKvmCpuid2(nent);
      try {
        expect(p.ioctl(sys, K.KVM_GET_SUPPORTED_CPUID, c)).toBe(0);
        expect(c.nent).toBeGreaterThan(nent / 2);
        break;
      } catch (e) {
        expect(e).toMatchObject({ code: 'E2BIG' });
        expect(c.nent).toBe(nent);
        nent *= 2;
      }
    }
    const supported = K.makeKvmCpuid2(nent);
    p.ioctl(sys, K.KVM_GET_SUPPORTED_CPUID, supported);
    // 29–32. TSC deadline (recorded divergence), Hyper-V (0), then kvm_x86_xcomp_guest_supp: KVM_GET_DEVICE_ATTR.
    expectCap(s, sys, K.KVM_CAP_TSC_DEADLINE_TIMER, 1);
    expectCap(s, sys, K.KVM_CAP_HYPERV, 0);
    expectCap(s, sys, K.KVM_CAP_SYS_ATTRIBUTES, 1);
    const xcomp = new BigUint64Array(1);
    expect(p.ioctl(sys, K.KVM_GET_DEVICE_ATTR, K.makeKvmDeviceAttr({ group: 0, attr: BigInt(K.KVM_X86_XCOMP_GUEST_SUPP), addr: new Uint8Array(xcomp.buffer) }))).toBe(0);
    // 33. kvm_arch_get_supported_msr_feature(MSR_IA32_ARCH_CAPABILITIES): KVM_GET_MSRS on /dev/kvm processes 1.
    const arch = K.makeKvmMsrs([{ index: 0x10a }]);
    expect(p.ioctl(sys, K.KVM_GET_MSRS, arch)).toBe(1);
    // 34–35. kvm_init_vcpu: KVM_CREATE_VCPU(0), KVM_GET_VCPU_MMAP_SIZE and the mapping.
    const vcpu = p.ioctl(vm, K.KVM_CREATE_VCPU, 0);
    expect(p.file(vcpu).path).toBe('anon_inode:kvm-vcpu:0');
    expect(p.ioctl(sys, K.KVM_GET_VCPU_MMAP_SIZE, 0)).toBe(12288);
    const run = K.mapKvmRun(p, sys, vcpu);
    // 36–37. kvm_arch_init_vcpu: XSAVE2 size, KVM_GET_TSC_KHZ (the host's TSC frequency).
    expectCap(s, sys, K.KVM_CAP_XSAVE2, 4096);
    expectCap(s, sys, K.KVM_CAP_GET_TSC_KHZ, 1);
    const khz = p.ioctl(vcpu, K.KVM_GET_TSC_KHZ, 0);
    expect(khz).toBeGreaterThan(0);
    // 38–40. MCE: 32 banks; KVM_X86_GET_MCE_CAP_SUPPORTED, then KVM_X86_SETUP_MCE with (cap & MCG_CTL_P|MCG_SER_P…) | 10 banks.
    expectCap(s, sys, K.KVM_CAP_MCE, 32);
    const mcg = K.makeU64();
    expect(p.ioctl(sys, K.KVM_X86_GET_MCE_CAP_SUPPORTED, mcg)).toBe(0);
    expect(p.ioctl(vcpu, K.KVM_X86_SETUP_MCE, K.makeU64(((mcg[0] ?? 0n) & 0x1000900n) | 10n))).toBe(0);
    // 41. KVM_SET_CPUID2 with the supported table (QEMU filters it; every supported entry is accepted).
    expect(p.ioctl(vcpu, K.KVM_SET_CPUID2, supported)).toBe(0);
    // 42. kvm_arch_init_vcpu: KVM_SET_MSRS of MSR_IA32_TSC... processes all it is given (QEMU asserts ret == n).
    const first = K.makeKvmMsrs([{ index: 0x1a0, data: 1n }, { index: 0x10, data: 0n }]);
    expect(p.ioctl(vcpu, K.KVM_SET_MSRS, first)).toBe(2);
    // 43–45. kvm_arch_init (clock): KVM_CAP_ADJUST_CLOCK = KVM_CLOCK_VALID_FLAGS (TSC_STABLE|REALTIME|HOST_TSC = 14), KVM_GET_CLOCK.
    expectCap(s, sys, K.KVM_CAP_ADJUST_CLOCK, 14);
    const clock = K.makeKvmClockData();
    expect(p.ioctl(vm, K.KVM_GET_CLOCK, clock)).toBe(0);
    // 46–54. the machine's memory: RAM, the BIOS ROM at the top and its low alias, routing, coalesced MMIO.
    const ram = p.mmapAnonymous(16 << 20);
    const rom = p.mmapAnonymous(0x10000);
    rom.bytes.set(firmware());
    const slot = (n: number, flags: number, gpa: number, size: number, ua: number): number => p.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION, K.makeKvmUserspaceMemoryRegion({ slot: n, flags, guest_phys_addr: gpa, memory_size: size, userspace_addr: ua }));
    expect(slot(0, 0, 0, 16 << 20, ram.addr)).toBe(0);
    expect(p.ioctl(vm, K.KVM_SET_GSI_ROUTING, K.makeKvmIrqRouting([]))).toBe(0);
    expect(p.ioctl(vm, K.KVM_REGISTER_COALESCED_MMIO, K.makeKvmCoalescedMmioZone({ addr: 0xcf8, size: 1, pio: 1 }))).toBe(0);
    expect(slot(1, K.KVM_MEM_READONLY, 0xffff0000, 0x10000, rom.addr)).toBe(0);
    expect(slot(0, 0, 0, 0, ram.addr)).toBe(0); // delete, to split RAM around the legacy holes
    expect(slot(0, 0, 0, 0xc0000, ram.addr)).toBe(0);
    expect(slot(4, K.KVM_MEM_READONLY, 0xf0000, 0x10000, rom.addr)).toBe(0);
    expect(slot(5, 0, 0x100000, 0xf00000, ram.addr + 0x100000)).toBe(0);
    expect(p.ioctl(vm, K.KVM_UNREGISTER_COALESCED_MMIO, K.makeKvmCoalescedMmioZone({ addr: 0xcf8, size: 1, pio: 1 }))).toBe(0);
    // 55–57. kvm_pit_realize: KVM_CREATE_PIT2; the devices' reset lowers lines (KVM_IRQ_LINE_STATUS answers the status).
    expectCap(s, sys, K.KVM_CAP_PIT2, 1);
    expect(p.ioctl(vm, K.KVM_CREATE_PIT2, K.makeKvmPitConfig())).toBe(0);
    const line = { irq: 0, level: 0 };
    expect(p.ioctl(vm, K.KVM_IRQ_LINE_STATUS, line)).toBe(0);
    // 59–71. the reset, kvm_arch_put_registers(KVM_PUT_RESET_STATE): sregs2, TSC frequency, regs, xsave, MSRs, events,
    // MP state, debug registers. Each is the vCPU's own reset state read back and written, so each must be accepted.
    const sregs2 = K.makeKvmSregs2();
    expect(p.ioctl(vcpu, K.KVM_GET_SREGS2, sregs2)).toBe(0);
    expect(sregs2.cs).toMatchObject({ selector: 0xf000, base: 0xffff0000n });
    expect(p.ioctl(vcpu, K.KVM_SET_SREGS2, sregs2)).toBe(0);
    // kvm_caps.has_tsc_control: SVM's TscRateMsr is in the AMD model; the VMX model's secondary controls lack TSC scaling.
    expectCap(s, sys, K.KVM_CAP_TSC_CONTROL, vendor.name === 'amd' ? 1 : 0);
    expect(p.ioctl(vcpu, K.KVM_SET_TSC_KHZ, khz)).toBe(0); // the same frequency: accepted without scaling
    const regs = K.makeKvmRegs();
    expect(p.ioctl(vcpu, K.KVM_GET_REGS, regs)).toBe(0);
    expect(regs).toMatchObject({ rip: 0xfff0n, rflags: 2n });
    expect(p.ioctl(vcpu, K.KVM_SET_REGS, regs)).toBe(0);
    const xsave = K.makeKvmXsave();
    expect(p.ioctl(vcpu, K.KVM_GET_XSAVE, xsave)).toBe(0);
    expect(p.ioctl(vcpu, K.KVM_SET_XSAVE, xsave)).toBe(0);
    // kvm_put_xcrs: XCR0 = env->xcr0, which x86_cpu_reset left at XSTATE_FP_MASK.
    expect(p.ioctl(vcpu, K.KVM_SET_XCRS, xcr0Of(1n))).toBe(0);
    const saved = K.makeKvmMsrs(msrList.indices.map((index) => ({ index })));
    const n = p.ioctl(vcpu, K.KVM_GET_MSRS, saved);
    expect(n).toBe(msrList.indices.length); // every listed MSR is readable by the host (kvm_get_msr_common)
    expect(p.ioctl(vcpu, K.KVM_SET_MSRS, saved)).toBe(n);
    const events = K.makeKvmVcpuEvents();
    expect(p.ioctl(vcpu, K.KVM_GET_VCPU_EVENTS, events)).toBe(0);
    expect(p.ioctl(vcpu, K.KVM_SET_VCPU_EVENTS, events)).toBe(0);
    const mp = K.makeKvmMpState();
    expect(p.ioctl(vcpu, K.KVM_GET_MP_STATE, mp)).toBe(0);
    expect(mp.mp_state).toBe(K.KVM_MP_STATE_RUNNABLE); // the BSP
    expect(p.ioctl(vcpu, K.KVM_SET_MP_STATE, mp)).toBe(0);
    const dr = K.makeKvmDebugregs();
    expect(p.ioctl(vcpu, K.KVM_GET_DEBUGREGS, dr)).toBe(0);
    expect(dr.dr6).toBe(0xffff0ff0n);
    expect(dr.dr7).toBe(0x400n);
    expect(p.ioctl(vcpu, K.KVM_SET_DEBUGREGS, dr)).toBe(0);
    // 80–89. the LAPIC, PIT and irqchips read back and written (kvm_apic_put, kvm_pit_put, kvm_pic_put/ioapic_put).
    const lapic = K.makeKvmLapicState();
    expect(p.ioctl(vcpu, K.KVM_GET_LAPIC, lapic)).toBe(0);
    const pit = K.makeKvmPitState2();
    expect(p.ioctl(vm, K.KVM_GET_PIT2, pit)).toBe(0);
    expect(p.ioctl(vm, K.KVM_SET_PIT2, pit)).toBe(0);
    for (const chip of [0, 1, 2]) {
      const c = K.makeKvmIrqchip({ chip_id: chip });
      expect(p.ioctl(vm, K.KVM_GET_IRQCHIP, c)).toBe(0);
      expect(p.ioctl(vm, K.KVM_SET_IRQCHIP, c)).toBe(0);
    }
    // 90–93. kvm_arch_reset_vcpu / vapic: TPR access reporting off, no VAPIC page, then the LAPIC.
    expect(p.ioctl(vcpu, K.KVM_TPR_ACCESS_REPORTING, K.makeKvmTprAccessCtl({ enabled: 0 }))).toBe(0);
    expect(p.ioctl(vcpu, K.KVM_SET_VAPIC_ADDR, K.makeKvmVapicAddr({ vapic_addr: 0 }))).toBe(0);
    expect(p.ioctl(vcpu, K.KVM_SET_LAPIC, lapic)).toBe(0);
    // 103–105. kvmclock_vm_state_change: KVM_SET_CLOCK with the clock read at 44; KVM_KVMCLOCK_CTRL is EINVAL while the
    // guest has not enabled kvmclock (kvm_set_guest_paused: !vcpu->arch.pv_time.active), as the trace shows.
    expectCap(s, sys, K.KVM_CAP_KVMCLOCK_CTRL, 1);
    expect(p.ioctl(vm, K.KVM_SET_CLOCK, { ...clock, flags: 0 })).toBe(0);
    expect(fails(s.host, () => p.ioctl(vcpu, K.KVM_KVMCLOCK_CTRL, 0))).toBe('EINVAL');
    // 107. the first KVM_RUN is qemu_cpu_kick's immediate_exit: EINTR, KVM_EXIT_INTR, nothing run.
    run.immediate_exit = 1;
    expect(fails(s.host, () => p.ioctl(vcpu, K.KVM_RUN, 0))).toBe('EINTR');
    run.immediate_exit = 0;
    // Then the firmware: each OUT to 0x3f8 is a KVM_EXIT_IO that QEMU's serial prints.
    let out = '';
    for (let i = 0; i < 3; i++) {
      expect(p.ioctl(vcpu, K.KVM_RUN, 0)).toBe(0);
      expect(run.exit_reason).toBe(K.KVM_EXIT_IO);
      expect(run.io).toMatchObject({ direction: K.KVM_EXIT_IO_OUT, size: 1, port: 0x3f8, count: 1 });
      out += String.fromCharCode(run.ioData()[0] as number);
    }
    expect(out).toBe('hi\n');
    // cli; hlt with the in-kernel irqchip: the vCPU blocks; nothing can wake it, so a direct KVM_RUN answers EINTR.
    expect(() => p.ioctl(vcpu, K.KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(run.exit_reason).toBe(K.KVM_EXIT_INTR);
    // Run again: still halted (the vCPU does not run past its HLT), the same EINTR, RIP after the HLT.
    expect(() => p.ioctl(vcpu, K.KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    const after = K.makeKvmRegs();
    p.ioctl(vcpu, K.KVM_GET_REGS, after);
    expect(after.rip).toBe(0xff0en);
    const mp2 = K.makeKvmMpState();
    p.ioctl(vcpu, K.KVM_GET_MP_STATE, mp2);
    expect(mp2.mp_state).toBe(K.KVM_MP_STATE_HALTED); // vcpu_block: a signal leaves the activity state as it is
  });
});

describe.each(VENDORS)('QEMU 7.2 -smp 2: the application processor ($name)', (vendor) => {
  test('QEMU writes the AP\'s reset state (UNINITIALIZED) back and it waits for INIT/SIPI; a SIPI_RECEIVED state starts it at sipi_vector:0000', () => {
    const s = startupHost(vendor);
    const { p, sys } = s;
    const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    expect(p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0)).toBe(0);
    const ram = p.mmapAnonymous(0x10000);
    ram.bytes.set([0xba, 0xf8, 0x03, 0xb0, 0x41, 0xee, 0xfa, 0xf4]); // at 0: mov dx,0x3f8; mov al,'A'; out; cli; hlt
    expect(p.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION, K.makeKvmUserspaceMemoryRegion({ slot: 0, guest_phys_addr: 0, memory_size: 0x10000, userspace_addr: ram.addr }))).toBe(0);
    const bsp = p.ioctl(vm, K.KVM_CREATE_VCPU, 0);
    const ap = p.ioctl(vm, K.KVM_CREATE_VCPU, 1);
    const run = K.mapKvmRun(p, sys, ap);
    const state = (fd: number): number => {
      const m = K.makeKvmMpState();
      p.ioctl(fd, K.KVM_GET_MP_STATE, m);
      return m.mp_state;
    };
    // kvm_arch_vcpu_create: with the irqchip in the kernel an AP starts UNINITIALIZED, the BSP RUNNABLE.
    expect([state(bsp), state(ap)]).toEqual([K.KVM_MP_STATE_RUNNABLE, K.KVM_MP_STATE_UNINITIALIZED]);
    // kvm_put_mp_state (QEMU's reset): the AP's UNINITIALIZED written back is accepted with the LAPIC in the kernel.
    expect(p.ioctl(ap, K.KVM_SET_MP_STATE, K.makeKvmMpState({ mp_state: K.KVM_MP_STATE_UNINITIALIZED }))).toBe(0);
    // Its KVM_RUN blocks (vcpu_block), nothing wakes it: a direct call answers EINTR and the AP executed nothing.
    expect(() => p.ioctl(ap, K.KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    expect(run.exit_reason).toBe(K.KVM_EXIT_INTR);
    expect(state(ap)).toBe(K.KVM_MP_STATE_UNINITIALIZED);
    // SIPI_RECEIVED (a restore of an AP between INIT and its start): stored as INIT_RECEIVED with the SIPI pending; the
    // next KVM_RUN takes it with apic->sipi_vector (0 after reset): CS 0, IP 0.
    expect(p.ioctl(ap, K.KVM_SET_MP_STATE, K.makeKvmMpState({ mp_state: K.KVM_MP_STATE_SIPI_RECEIVED }))).toBe(0);
    // KVM_GET_MP_STATE runs kvm_apic_accept_events first: the pending SIPI is taken there (RUNNABLE at the vector).
    expect(state(ap)).toBe(K.KVM_MP_STATE_RUNNABLE);
    expect(p.ioctl(ap, K.KVM_RUN, 0)).toBe(0);
    expect(run.exit_reason).toBe(K.KVM_EXIT_IO);
    expect(run.ioData()[0]).toBe(0x41);
    expect(state(ap)).toBe(K.KVM_MP_STATE_RUNNABLE);
    // Without an in-kernel LAPIC those states are EINVAL, the state unchanged.
    const vm2 = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    const lone = p.ioctl(vm2, K.KVM_CREATE_VCPU, 1);
    expect(state(lone)).toBe(K.KVM_MP_STATE_RUNNABLE);
    expect(fails(s.host, () => p.ioctl(lone, K.KVM_SET_MP_STATE, K.makeKvmMpState({ mp_state: K.KVM_MP_STATE_UNINITIALIZED })))).toBe('EINVAL');
  });
});

/** A `struct kvm_xcrs` with XCR0 = `value` (kvm_put_xcrs). */
function xcr0Of(value: bigint): K.kvm_xcrs {
  const x = K.makeKvmXcrs({ nr_xcrs: 1 });
  x.xcrs[0]!.value = value;
  return x;
}
