/**
 * The rust-vmm kvm-ioctls crate's own tests (src/ioctls/system.rs, vm.rs, vcpu.rs `mod tests`), the calls its users
 * (Firecracker, Cloud Hypervisor) build on, run against the model through the library with each assertion they make.
 * A 4-CPU host: `test_kvm_getters` asserts KVM_CAP_NR_VCPUS ≥ 4 (min(online CPUs, KVM_MAX_VCPUS)).
 */
import { describe, expect, test } from 'vitest';
import { O_CLOEXEC, O_RDWR, eventfd } from '@vac/core';
import * as K from '../../src/index.js';
import { makeHost, vmmProcess, VENDORS } from '../module/helpers.js';
import { expectCap, fails, type StartupHost } from './support.js';

function host4(vendor: (typeof VENDORS)[number]): StartupHost {
  const host = makeHost(vendor.hardware(), 4);
  const inst = host.modprobe(K.kvm({ postfix: '0' })).exports as K.KvmInstance;
  const p = vmmProcess(host);
  return { host, p, sys: p.open('/dev/kvm0', O_RDWR | O_CLOEXEC), inst };
}

describe.each(VENDORS)('rust-vmm kvm-ioctls tests ($name)', (vendor) => {
  test('system.rs: test_kvm_new, test_kvm_api_version, test_kvm_getters, test_create_vm(_with_type)', () => {
    const s = host4(vendor);
    const { p, sys } = s;
    // Kvm::new → open_with_cloexec(true): O_RDWR | O_CLOEXEC (opened in host4).
    expect(p.ioctl(sys, K.KVM_GET_API_VERSION, 0)).toBe(12);
    expectCap(s, sys, K.KVM_CAP_USER_MEMORY, 1);
    // test_kvm_getters: nr_vcpus ≥ 4, max_vcpus ≥ nr_vcpus, mmap size > 0, nr_memslots ≥ 32.
    expect(expectCap(s, sys, K.KVM_CAP_NR_VCPUS, 4)).toBeGreaterThanOrEqual(4);
    expect(expectCap(s, sys, K.KVM_CAP_MAX_VCPUS, 1024)).toBeGreaterThanOrEqual(4);
    expect(p.ioctl(sys, K.KVM_GET_VCPU_MMAP_SIZE, 0)).toBe(12288);
    expect(expectCap(s, sys, K.KVM_CAP_NR_MEMSLOTS, 32764)).toBeGreaterThanOrEqual(32);
    // test_create_vm / test_create_vm_with_type(0): a VM fd, dup-able (create_vmfd_from_rawfd).
    const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    const dup = p.dup(vm);
    expect(p.file(dup)).toBe(p.file(vm));
    // Any other type: EINVAL (kvm_arch_init_vm: !kvm_is_vm_type_supported).
    expect(fails(s.host, () => p.ioctl(sys, K.KVM_CREATE_VM, 1))).toBe('EINVAL');
  });

  test('system.rs: test_get_supported_cpuid, test_get_emulated_cpuid (KVM_MAX_CPUID_ENTRIES = 80), get_msr_index_list, test_bad_kvm_fd', () => {
    const s = host4(vendor);
    const { p, sys } = s;
    for (const req of [K.KVM_GET_SUPPORTED_CPUID, K.KVM_GET_EMULATED_CPUID]) {
      const c = K.makeKvmCpuid2(80);
      expect(p.ioctl(sys, req, c)).toBe(0);
      expect(c.nent).toBeGreaterThan(0);
      expect(c.nent).toBeLessThanOrEqual(80);
    }
    const list = K.makeKvmMsrList(256); // get_msr_index_list: KVM_MAX_MSR_ENTRIES
    expect(p.ioctl(sys, K.KVM_GET_MSR_INDEX_LIST, list)).toBe(0);
    expect(list.nmsrs).toBeGreaterThanOrEqual(2);
    // test_bad_kvm_fd: every call on fd -2 is EBADF (fdget).
    for (const [req, arg] of [[K.KVM_GET_VCPU_MMAP_SIZE, 0], [K.KVM_GET_SUPPORTED_CPUID, K.makeKvmCpuid2(4)], [K.KVM_GET_EMULATED_CPUID, K.makeKvmCpuid2(4)], [K.KVM_GET_MSR_INDEX_LIST, K.makeKvmMsrList(4)], [K.KVM_CREATE_VM, 0]] as const) {
      expect(fails(s.host, () => p.ioctl(-2, req, arg))).toBe('EBADF');
    }
  });

  test('vm.rs: the TSS and identity-map addresses, the irqchip round trip, the clock, ioeventfd and irqfd, GSI routing, vCPU ids', () => {
    const s = host4(vendor);
    const { p, sys } = s;
    const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    expect(p.ioctl(vm, K.KVM_SET_TSS_ADDR, 0xfffbd000)).toBe(0);
    expect(p.ioctl(vm, K.KVM_SET_IDENTITY_MAP_ADDR, K.makeU64(0xfffbc000n))).toBe(0);
    // irq_chip: create, then PIC master got, set, got again — equal.
    expect(p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0)).toBe(0);
    const chip = K.makeKvmIrqchip({ chip_id: 0 });
    expect(p.ioctl(vm, K.KVM_GET_IRQCHIP, chip)).toBe(0);
    expect(p.ioctl(vm, K.KVM_SET_IRQCHIP, chip)).toBe(0);
    const other = K.makeKvmIrqchip({ chip_id: 0 });
    p.ioctl(vm, K.KVM_GET_IRQCHIP, other);
    expect(other).toEqual(chip);
    // pit2 (after the irqchip: the stored kvm-ioctls test creates it on a bare VM, which Linux answers ENOENT).
    expect(p.ioctl(vm, K.KVM_CREATE_PIT2, K.makeKvmPitConfig())).toBe(0);
    const pit = K.makeKvmPitState2();
    expect(p.ioctl(vm, K.KVM_GET_PIT2, pit)).toBe(0);
    expect(p.ioctl(vm, K.KVM_SET_PIT2, pit)).toBe(0);
    // clock: read, set 1000 ns later, read back ≥ that.
    const clock = K.makeKvmClockData();
    expect(p.ioctl(vm, K.KVM_GET_CLOCK, clock)).toBe(0);
    expect(p.ioctl(vm, K.KVM_SET_CLOCK, { ...clock, clock: clock.clock + 1000n, flags: 0 })).toBe(0);
    const later = K.makeKvmClockData();
    p.ioctl(vm, K.KVM_GET_CLOCK, later);
    expect(later.clock >= clock.clock + 1000n).toBe(true);
    // register_ioevent / unregister_ioevent: PIO 0xf4 any length, MMIO 0x1000 4 bytes with datamatch; removing one that
    // is not there is ENOENT (kvm_deassign_ioeventfd_idx), the state unchanged.
    const efd = eventfd(p);
    const pio = K.makeKvmIoeventfd({ addr: 0xf4, len: 0, fd: efd, flags: K.KVM_IOEVENTFD_FLAG_PIO });
    expect(p.ioctl(vm, K.KVM_IOEVENTFD, pio)).toBe(0);
    const mmio = K.makeKvmIoeventfd({ addr: 0x1000, len: 4, fd: efd, flags: K.KVM_IOEVENTFD_FLAG_DATAMATCH, datamatch: 0x1234n });
    expect(p.ioctl(vm, K.KVM_IOEVENTFD, mmio)).toBe(0);
    expect(fails(s.host, () => p.ioctl(vm, K.KVM_IOEVENTFD, mmio))).toBe('EEXIST');
    expect(p.ioctl(vm, K.KVM_IOEVENTFD, { ...pio, flags: pio.flags | K.KVM_IOEVENTFD_FLAG_DEASSIGN })).toBe(0);
    expect(p.ioctl(vm, K.KVM_IOEVENTFD, { ...mmio, flags: mmio.flags | K.KVM_IOEVENTFD_FLAG_DEASSIGN })).toBe(0);
    expect(fails(s.host, () => p.ioctl(vm, K.KVM_IOEVENTFD, { ...mmio, flags: mmio.flags | K.KVM_IOEVENTFD_FLAG_DEASSIGN }))).toBe('ENOENT');
    // register_irqfd / unregister_irqfd on GSI 4 (the irqchip exists); the same eventfd twice is EBUSY.
    const ifd = eventfd(p);
    expect(p.ioctl(vm, K.KVM_IRQFD, K.makeKvmIrqfd({ fd: ifd, gsi: 4 }))).toBe(0);
    expect(fails(s.host, () => p.ioctl(vm, K.KVM_IRQFD, K.makeKvmIrqfd({ fd: ifd, gsi: 4 })))).toBe('EBUSY');
    expect(p.ioctl(vm, K.KVM_IRQFD, K.makeKvmIrqfd({ fd: ifd, gsi: 4, flags: 1 /* KVM_IRQFD_FLAG_DEASSIGN */ }))).toBe(0);
    // set_gsi_routing: an empty table is accepted.
    expect(p.ioctl(vm, K.KVM_SET_GSI_ROUTING, K.makeKvmIrqRouting([]))).toBe(0);
    // create_vcpu: ids below KVM_MAX_VCPU_IDS; the same id twice is EEXIST.
    expect(p.ioctl(vm, K.KVM_CREATE_VCPU, 0)).toBeGreaterThan(0);
    expect(fails(s.host, () => p.ioctl(vm, K.KVM_CREATE_VCPU, 0))).toBe('EEXIST');
    expect(fails(s.host, () => p.ioctl(vm, K.KVM_CREATE_VCPU, 4096))).toBe('EINVAL');
  });

  test('vcpu.rs: debugregs_test, vcpu_events_test, mpstate, xsave/xcrs, lapic and msrs round trips', () => {
    const s = host4(vendor);
    const { p, sys } = s;
    const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    expect(p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0)).toBe(0);
    const vcpu = p.ioctl(vm, K.KVM_CREATE_VCPU, 0);
    const roundTrip = <T>(get: number, set: number, make: () => T): void => {
      const a = make();
      expect(p.ioctl(vcpu, get, a)).toBe(0);
      expect(p.ioctl(vcpu, set, a)).toBe(0);
      const b = make();
      expect(p.ioctl(vcpu, get, b)).toBe(0);
      expect(b).toEqual(a);
    };
    roundTrip(K.KVM_GET_DEBUGREGS, K.KVM_SET_DEBUGREGS, () => K.makeKvmDebugregs());
    expectCap(s, sys, K.KVM_CAP_VCPU_EVENTS, 1);
    roundTrip(K.KVM_GET_VCPU_EVENTS, K.KVM_SET_VCPU_EVENTS, () => K.makeKvmVcpuEvents());
    roundTrip(K.KVM_GET_MP_STATE, K.KVM_SET_MP_STATE, () => K.makeKvmMpState());
    roundTrip(K.KVM_GET_XSAVE, K.KVM_SET_XSAVE, () => K.makeKvmXsave());
    roundTrip(K.KVM_GET_LAPIC, K.KVM_SET_LAPIC, () => K.makeKvmLapicState());
    roundTrip(K.KVM_GET_REGS, K.KVM_SET_REGS, () => K.makeKvmRegs());
    roundTrip(K.KVM_GET_SREGS, K.KVM_SET_SREGS, () => K.makeKvmSregs());
    roundTrip(K.KVM_GET_FPU, K.KVM_SET_FPU, () => K.makeKvmFpu());
    // msrs_test: set MSR_IA32_SYSENTER_CS/ESP, read them back.
    expect(p.ioctl(vcpu, K.KVM_SET_MSRS, K.makeKvmMsrs([{ index: 0x174, data: 0x10n }, { index: 0x175, data: 0x20n }]))).toBe(2);
    const back = K.makeKvmMsrs([{ index: 0x174 }, { index: 0x175 }]);
    expect(p.ioctl(vcpu, K.KVM_GET_MSRS, back)).toBe(2);
    expect(back.entries.map((e) => e.data)).toEqual([0x10n, 0x20n]);
    // get_cpuid2 after set_cpuid2 gives the same entries.
    const sup = K.makeKvmCpuid2(80);
    p.ioctl(sys, K.KVM_GET_SUPPORTED_CPUID, sup);
    sup.entries.length = sup.nent;
    expect(p.ioctl(vcpu, K.KVM_SET_CPUID2, sup)).toBe(0);
    const got = K.makeKvmCpuid2(80);
    expect(p.ioctl(vcpu, K.KVM_GET_CPUID2, got)).toBe(0);
    expect(got.nent).toBe(sup.nent);
  });

  test('vcpu.rs: test_run_code — port I/O out and in, an MMIO write and read, HLT, and one page in the dirty log', () => {
    const s = host4(vendor);
    const { p, sys } = s;
    const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
    const code = [
      0xba, 0xf8, 0x03, // mov dx, 0x3f8
      0x00, 0xd8, // add al, bl
      0x04, 0x30, // add al, '0'
      0xee, // out dx, al
      0xec, // in al, dx
      0xc6, 0x06, 0x00, 0x80, 0x00, // mov byte [0x8000], 0 — MMIO write
      0x8a, 0x16, 0x00, 0x80, // mov dl, [0x8000] — MMIO read
      0xc6, 0x06, 0x00, 0x20, 0x00, // mov byte [0x2000], 0 — dirties one page
      0xf4, // hlt
    ];
    const mem = p.mmapAnonymous(0x4000);
    mem.bytes.set(code);
    expect(p.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION, K.makeKvmUserspaceMemoryRegion({ slot: 0, flags: K.KVM_MEM_LOG_DIRTY_PAGES, guest_phys_addr: 0x1000, memory_size: 0x4000, userspace_addr: mem.addr }))).toBe(0);
    const vcpu = p.ioctl(vm, K.KVM_CREATE_VCPU, 0);
    const run = K.mapKvmRun(p, sys, vcpu);
    const sregs = K.makeKvmSregs();
    p.ioctl(vcpu, K.KVM_GET_SREGS, sregs);
    sregs.cs.base = 0n;
    sregs.cs.selector = 0;
    expect(p.ioctl(vcpu, K.KVM_SET_SREGS, sregs)).toBe(0);
    expect(p.ioctl(vcpu, K.KVM_SET_REGS, K.makeKvmRegs({ rip: 0x1000n, rax: 2n, rbx: 3n, rflags: 2n }))).toBe(0);
    const exits: string[] = [];
    for (;;) {
      expect(p.ioctl(vcpu, K.KVM_RUN, 0)).toBe(0);
      if (run.exit_reason === K.KVM_EXIT_IO) {
        if (run.io.direction === K.KVM_EXIT_IO_OUT) exits.push(`out ${run.io.port.toString(16)} ${String.fromCharCode(run.ioData()[0] as number)}`);
        else {
          run.ioData()[0] = 0x42;
          exits.push(`in ${run.io.port.toString(16)}`);
        }
      } else if (run.exit_reason === K.KVM_EXIT_MMIO) {
        exits.push(`mmio ${run.mmio.is_write ? 'write' : 'read'} ${run.mmio.phys_addr.toString(16)} ${run.mmio.len}`);
        if (!run.mmio.is_write) run.mmio.data[0] = 0x07;
      } else if (run.exit_reason === K.KVM_EXIT_HLT) {
        exits.push('hlt');
        break;
      } else throw new Error(`unexpected exit ${run.exit_reason}`);
    }
    expect(exits).toEqual(['out 3f8 5', 'in 3f8', 'mmio write 8000 1', 'mmio read 8000 1', 'hlt']);
    const regs = K.makeKvmRegs();
    p.ioctl(vcpu, K.KVM_GET_REGS, regs);
    expect(regs.rdx & 0xffn).toBe(0x07n); // the MMIO read's data
    expect(regs.rax & 0xffn).toBe(0x42n); // the IN's data
    // get_dirty_log(slot 0, 0x4000): one bit set — the page at 0x2000 (bit 1); the code page was only read.
    const bitmap = new Uint8Array(8);
    expect(p.ioctl(vm, K.KVM_GET_DIRTY_LOG, K.makeKvmDirtyLog({ slot: 0, dirty_bitmap: bitmap }))).toBe(0);
    expect([...bitmap]).toEqual([0b10, 0, 0, 0, 0, 0, 0, 0]);
  });
});
