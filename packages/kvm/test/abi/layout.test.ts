import { describe, expect, test } from 'vitest';
import { KVM_LAYOUTS, cStruct, cUnion, sizeofKvm } from '../../src/abi/index.js';

/** `sizeof(struct …)` on x86-64, worked out by hand from the headers. */
const SIZES: Partial<Record<keyof typeof KVM_LAYOUTS, number>> = {
  kvm_regs: 0x90,
  kvm_segment: 24,
  kvm_dtable: 16,
  kvm_sregs: 0x138,
  kvm_sregs2: 0x140,
  kvm_fpu: 0x1a0,
  kvm_msr_entry: 16,
  kvm_msrs: 8,
  kvm_msr_list: 4,
  kvm_cpuid_entry: 24,
  kvm_cpuid: 8,
  kvm_cpuid_entry2: 40,
  kvm_cpuid2: 8,
  kvm_lapic_state: 0x400,
  kvm_pic_state: 16,
  kvm_ioapic_state: 216,
  kvm_pit_channel_state: 24,
  kvm_pit_state: 0x48,
  kvm_pit_state2: 0x70,
  kvm_debug_exit_arch: 32,
  kvm_guest_debug_arch: 64,
  kvm_vcpu_events: 0x40,
  kvm_debugregs: 0x80,
  kvm_xsave: 0x1000,
  kvm_xcr: 16,
  kvm_xcrs: 0x188,
  kvm_sync_regs: 144 + 312 + 64,
  kvm_x86_mce: 0x40,
  kvm_nested_state: 0x80,
  kvm_msr_filter_range: 24,
  kvm_msr_filter: 0x188,
  kvm_sev_cmd: 24,
  kvm_userspace_memory_region: 0x20,
  kvm_userspace_memory_region2: 0xa0,
  kvm_irq_level: 8,
  kvm_irqchip: 0x208,
  kvm_pit_config: 0x40,
  kvm_dirty_log: 16,
  kvm_clear_dirty_log: 24,
  kvm_coalesced_mmio_zone: 16,
  kvm_coalesced_mmio: 24,
  kvm_coalesced_mmio_ring: 8,
  kvm_translation: 0x18,
  kvm_pmu_event_filter: 0x20,
  kvm_interrupt: 4,
  kvm_signal_mask: 4,
  kvm_tpr_access_ctl: 0x28,
  kvm_vapic_addr: 8,
  kvm_mp_state: 4,
  kvm_guest_debug: 0x48,
  kvm_ioeventfd: 0x40,
  kvm_enable_cap: 0x68,
  kvm_irq_routing_entry: 48,
  kvm_irq_routing: 8,
  kvm_irqfd: 0x20,
  kvm_clock_data: 0x30,
  kvm_one_reg: 16,
  kvm_reg_list: 8,
  kvm_msi: 0x20,
  kvm_create_device: 12,
  kvm_device_attr: 0x18,
  kvm_enc_region: 16,
  kvm_memory_attributes: 32,
  kvm_create_guest_memfd: 64,
  kvm_pre_fault_memory: 64,
  kvm_dirty_gfn: 16,
  kvm_stats_header: 24,
  kvm_stats_desc: 16,
  u64_arg: 8,
  kvm_run: 2352,
};

describe('C layout calculator', () => {
  test.each(Object.entries(SIZES))('sizeof(struct %s) = %i', (name, size) => {
    expect(sizeofKvm(name as keyof typeof KVM_LAYOUTS)).toBe(size);
  });

  test('every layout has a pinned size', () => {
    expect(Object.keys(KVM_LAYOUTS).sort()).toEqual(Object.keys(SIZES).sort());
  });

  test('kvm_segment and kvm_dtable offsets', () => {
    const s = KVM_LAYOUTS.kvm_segment;
    expect(['base', 'limit', 'selector', 'type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable', 'padding']
      .map((f) => s.offsetOf(f))).toEqual([0, 8, 12, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23]);
    expect(KVM_LAYOUTS.kvm_dtable.offsetOf('limit')).toBe(8);
    expect(KVM_LAYOUTS.kvm_dtable.offsetOf('padding')).toBe(10);
  });

  test('kvm_sregs offsets', () => {
    const s = KVM_LAYOUTS.kvm_sregs;
    expect(['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'].map((f) => s.offsetOf(f)))
      .toEqual([0, 24, 48, 72, 96, 120, 144, 168]);
    expect(s.offsetOf('gdt')).toBe(192);
    expect(s.offsetOf('idt')).toBe(208);
    expect(['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'].map((f) => s.offsetOf(f)))
      .toEqual([224, 232, 240, 248, 256, 264, 272]);
    expect(s.offsetOf('interrupt_bitmap')).toBe(280);
    expect(s.offsetOf('tr.selector')).toBe(144 + 12);
  });

  test('other offsets that matter', () => {
    expect(KVM_LAYOUTS.kvm_regs.offsetOf('rip')).toBe(128);
    expect(KVM_LAYOUTS.kvm_regs.offsetOf('rflags')).toBe(136);
    expect(KVM_LAYOUTS.kvm_userspace_memory_region.offsetOf('guest_phys_addr')).toBe(8);
    expect(KVM_LAYOUTS.kvm_userspace_memory_region.offsetOf('userspace_addr')).toBe(24);
    expect(KVM_LAYOUTS.kvm_sev_cmd.offsetOf('data')).toBe(8);
    expect(KVM_LAYOUTS.kvm_sev_cmd.offsetOf('error')).toBe(16);
    expect(KVM_LAYOUTS.kvm_sev_cmd.offsetOf('sev_fd')).toBe(20);
    expect(KVM_LAYOUTS.kvm_enable_cap.offsetOf('args')).toBe(8);
    expect(KVM_LAYOUTS.kvm_enable_cap.offsetOf('pad')).toBe(40);
    expect(KVM_LAYOUTS.kvm_vcpu_events.offsetOf('triple_fault')).toBe(28);
    expect(KVM_LAYOUTS.kvm_vcpu_events.offsetOf('exception_has_payload')).toBe(55);
    expect(KVM_LAYOUTS.kvm_vcpu_events.offsetOf('exception_payload')).toBe(56);
    expect(KVM_LAYOUTS.kvm_fpu.offsetOf('last_ip')).toBe(136);
    expect(KVM_LAYOUTS.kvm_fpu.offsetOf('xmm')).toBe(152);
    expect(KVM_LAYOUTS.kvm_fpu.offsetOf('mxcsr')).toBe(416 - 8);
    expect(KVM_LAYOUTS.kvm_irqchip.offsetOf('chip')).toBe(8);
    expect(KVM_LAYOUTS.kvm_irq_level.offsetOf('status')).toBe(0);
    expect(KVM_LAYOUTS.kvm_irq_level.offsetOf('level')).toBe(4);
    expect(KVM_LAYOUTS.kvm_xcrs.offsetOf('padding')).toBe(8 + 16 * 16);
    expect(KVM_LAYOUTS.kvm_msr_filter.offsetOf('ranges')).toBe(8);
    expect(KVM_LAYOUTS.kvm_nested_state.offsetOf('hdr.vmx.preemption_timer_deadline')).toBe(8 + 24);
  });

  test('C rules: member alignment, tail padding, unions, flexible arrays, anonymous members', () => {
    const a = cStruct('a', [
      { name: 'c', type: 'u8' },
      { name: 'q', type: 'u64' },
      { name: 'h', type: 'u16' },
    ]);
    expect([a.offsetOf('c'), a.offsetOf('q'), a.offsetOf('h'), a.size, a.align]).toEqual([0, 8, 16, 24, 8]);
    const u = cUnion('u', [
      { name: 'b', type: 'u8', count: 13 },
      { name: 'w', type: 'u32' },
    ]);
    expect([u.size, u.align, u.offsetOf('w')]).toEqual([16, 4, 0]);
    const f = cStruct('f', [
      { name: 'n', type: 'u32' },
      { name: 'e', type: 'u64', count: 0 },
    ]);
    expect([f.size, f.offsetOf('e')]).toEqual([8, 8]);
    const anon = cStruct('anon', [
      { name: 'x', type: 'u32' },
      { name: '', type: u },
    ]);
    expect(anon.offsetOf('w')).toBe(4);
    expect(anon.sizeOf('b')).toBe(13);
    expect(anon.member('b').count).toBe(13);
    expect(() => anon.offsetOf('nope')).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_UNKNOWN_NAME' }));
    expect(() => cStruct('dup', [{ name: 'x', type: 'u8' }, { name: 'x', type: 'u8' }])).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_DUPLICATE' }));
    expect(() => cStruct('bad', [{ name: 'x', type: 'u8', count: -1 }])).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => cStruct('bad', [{ name: '', type: 'u8' }])).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_INVALID_ARG' }));
  });
});
