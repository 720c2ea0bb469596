/**
 * kvmtool's start-up on the model, through the library, in its order: `kvm__init` (kvm.c: the API version,
 * KVM_CREATE_VM, `kvm__check_extensions` over `kvm_req_ext` of x86/kvm.c), `kvm__arch_init` (x86/kvm.c),
 * `kvm_cmd_run_init`'s CPU limits (builtin-run.c), `kvm__init_ram` (x86/kvm.c), `kvm_cpu__init` and
 * `kvm_cpu__reset_vcpu` (x86/kvm-cpu.c, x86/cpuid.c), then `kvm_cpu__start`'s KVM_RUN of a flat binary loaded at
 * 0x1000:0000 that writes to the serial port. Sources: kvmtool/kvmtool (x86/kvm.c, x86/kvm-cpu.c, kvm.c).
 */
import { describe, expect, test } from 'vitest';
import * as K from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { expectCap, fails, startupHost, type StartupHost } from './support.js';

/** `kvm_req_ext` of x86/kvm.c, each of which `kvm__check_extensions` requires to be non-zero. */
const KVM_REQ_EXT: ReadonlyArray<[number, number]> = [
  [K.KVM_CAP_COALESCED_MMIO, 2], [K.KVM_CAP_SET_TSS_ADDR, 1], [K.KVM_CAP_PIT2, 1], [K.KVM_CAP_USER_MEMORY, 1],
  [K.KVM_CAP_IRQ_ROUTING, 4096], [K.KVM_CAP_IRQCHIP, 1], [K.KVM_CAP_HLT, 1], [K.KVM_CAP_IRQ_INJECT_STATUS, 1],
  [K.KVM_CAP_EXT_CPUID, 1],
];

/** kvm__init: open (done), KVM_GET_API_VERSION, KVM_CREATE_VM, the required extensions. */
function kvmInit(s: StartupHost): number {
  expect(s.p.ioctl(s.sys, K.KVM_GET_API_VERSION, 0)).toBe(12); // KVM_API_VERSION, else "KVM_API_VERSION ioctl"
  const vm = s.p.ioctl(s.sys, K.KVM_CREATE_VM, 0); // kvm__get_vm_type: KVM_VM_TYPE 0 on x86
  for (const [cap, linux] of KVM_REQ_EXT) expectCap(s, s.sys, cap, linux); // kvm__supports_extension: on the system fd
  return vm;
}

/** The flat binary (load_flat_binary, at 0x1000:0000): out 'o', 'k', '\n' to 0x3f8 and halt. */
const FLAT = [0xba, 0xf8, 0x03, 0xb0, 0x6f, 0xee, 0xb0, 0x6b, 0xee, 0xb0, 0x0a, 0xee, 0xf4];

describe.each(VENDORS)('kvmtool start-up ($name)', (vendor) => {
  test('kvm__init and kvm__arch_init: KVM_CREATE_PIT2 before KVM_CREATE_IRQCHIP is ENOENT, as Linux answers (kvmtool dies there)', () => {
    const s = startupHost(vendor);
    const vm = kvmInit(s);
    // kvm__arch_init: KVM_SET_TSS_ADDR 0xfffbd000 (the three pages end below 4 GiB).
    expect(s.p.ioctl(vm, K.KVM_SET_TSS_ADDR, 0xfffbd000)).toBe(0);
    // KVM_CREATE_PIT2 { flags: 0 }: kvm_arch_vm_ioctl answers ENOENT while !pic_in_kernel(kvm) (x86.c, create_pit);
    // a real 6.18 /dev/kvm answers the same, so this kvmtool's die_perror("KVM_CREATE_PIT2 ioctl") ends the run.
    expect(fails(s.host, () => s.p.ioctl(vm, K.KVM_CREATE_PIT2, K.makeKvmPitConfig({ flags: 0 })))).toBe('ENOENT');
  });

  test('the rest of the start-up (with the irqchip created first): RAM, the vCPU, its reset, and a flat binary’s serial output', () => {
    const s = startupHost(vendor);
    const { p, sys } = s;
    const vm = kvmInit(s);
    expect(p.ioctl(vm, K.KVM_SET_TSS_ADDR, 0xfffbd000)).toBe(0);
    expect(p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0)).toBe(0);
    expect(p.ioctl(vm, K.KVM_CREATE_PIT2, K.makeKvmPitConfig({ flags: 0 }))).toBe(0);
    expect(fails(s.host, () => p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0))).toBe('EEXIST');
    // kvm_cmd_run_init (builtin-run.c): kvm__max_cpus (KVM_CAP_MAX_VCPUS) and kvm__recommended_cpus (KVM_CAP_NR_VCPUS).
    expectCap(s, sys, K.KVM_CAP_MAX_VCPUS, 1024);
    expectCap(s, sys, K.KVM_CAP_NR_VCPUS, 2);
    // kvm__init_ram → kvm__register_mem: one slot of RAM from 0 (below the 32-bit gap).
    const ram = p.mmapAnonymous(64 << 20);
    ram.bytes.set(FLAT, 0x10000);
    expect(p.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION, K.makeKvmUserspaceMemoryRegion({ slot: 0, flags: 0, guest_phys_addr: 0, memory_size: 64 << 20, userspace_addr: ram.addr }))).toBe(0);
    // kvm_cpu__init: KVM_CREATE_VCPU, KVM_GET_VCPU_MMAP_SIZE on the system fd, mmap, the coalesced ring's page offset.
    const vcpu = p.ioctl(vm, K.KVM_CREATE_VCPU, 0);
    expect(p.ioctl(sys, K.KVM_GET_VCPU_MMAP_SIZE, 0)).toBe(12288);
    const run = K.mapKvmRun(p, sys, vcpu);
    expectCap(s, sys, K.KVM_CAP_COALESCED_MMIO, 2);
    // kvm_cpu__setup_cpuid (x86/cpuid.c): KVM_GET_SUPPORTED_CPUID with MAX_KVM_CPUID_ENTRIES (100), filtered, KVM_SET_CPUID2.
    const cpuid = K.makeKvmCpuid2(100);
    expect(p.ioctl(sys, K.KVM_GET_SUPPORTED_CPUID, cpuid)).toBe(0);
    expect(cpuid.nent).toBeLessThanOrEqual(100);
    cpuid.entries.length = cpuid.nent;
    expect(p.ioctl(vcpu, K.KVM_SET_CPUID2, cpuid)).toBe(0);
    // kvm_cpu__setup_sregs: KVM_GET_SREGS, every data segment and CS at selector 0x1000, base 0x10000, KVM_SET_SREGS.
    const sregs = K.makeKvmSregs();
    expect(p.ioctl(vcpu, K.KVM_GET_SREGS, sregs)).toBe(0);
    for (const seg of [sregs.cs, sregs.ss, sregs.ds, sregs.es, sregs.fs, sregs.gs]) {
      seg.selector = 0x1000;
      seg.base = 0x10000n;
    }
    expect(p.ioctl(vcpu, K.KVM_SET_SREGS, sregs)).toBe(0);
    // kvm_cpu__setup_regs: RFLAGS 2, RIP = boot_ip 0, RSP = RBP = boot_sp 0x8000.
    expect(p.ioctl(vcpu, K.KVM_SET_REGS, K.makeKvmRegs({ rflags: 2n, rip: 0n, rsp: 0x8000n, rbp: 0x8000n }))).toBe(0);
    // kvm_cpu__setup_fpu: FCW 0x37f, MXCSR 0x1f80.
    expect(p.ioctl(vcpu, K.KVM_SET_FPU, K.makeKvmFpu({ fcw: 0x37f, mxcsr: 0x1f80 }))).toBe(0);
    const fpu = K.makeKvmFpu();
    expect(p.ioctl(vcpu, K.KVM_GET_FPU, fpu)).toBe(0);
    expect(fpu.fcw).toBe(0x37f);
    // kvm_cpu__setup_msrs: ten MSRs; KVM_SET_MSRS returns how many it set, and kvmtool only checks < 0.
    const msrs = K.makeKvmMsrs([
      { index: 0x174 }, { index: 0x175 }, { index: 0x176 }, // SYSENTER_CS/ESP/EIP
      { index: 0xc0000081 }, { index: 0xc0000083 }, { index: 0xc0000102 }, { index: 0xc0000084 }, { index: 0xc0000082 }, // STAR CSTAR KERNEL_GS_BASE SYSCALL_MASK LSTAR
      { index: 0x10 }, // TSC
      { index: 0x1a0, data: 1n }, // MISC_ENABLE = FAST_STRING
    ]);
    expect(p.ioctl(vcpu, K.KVM_SET_MSRS, msrs)).toBe(10);
    const back = K.makeKvmMsrs([{ index: 0x1a0 }]);
    expect(p.ioctl(vcpu, K.KVM_GET_MSRS, back)).toBe(1);
    expect(back.entries[0]?.data).toBe(1n);
    // kvm_cpu__start → kvm_cpu__run: KVM_RUN; KVM_EXIT_IO to the 8250 on 0x3f8 for each byte.
    let out = '';
    for (let i = 0; i < 3; i++) {
      expect(p.ioctl(vcpu, K.KVM_RUN, 0)).toBe(0);
      expect(run.exit_reason).toBe(K.KVM_EXIT_IO);
      expect(run.io).toMatchObject({ direction: K.KVM_EXIT_IO_OUT, port: 0x3f8, size: 1, count: 1 });
      out += String.fromCharCode(run.ioData()[0] as number);
    }
    expect(out).toBe('ok\n');
    // The guest's HLT with the in-kernel irqchip blocks; nothing can wake it, so a direct KVM_RUN answers EINTR.
    expect(() => p.ioctl(vcpu, K.KVM_RUN, 0)).toThrow(expect.objectContaining({ code: 'EINTR' }) as Error);
    // kvm__irq_trigger (x86/kvm.c): KVM_IRQ_LINE 1 then 0 — accepted with the irqchip in the kernel.
    expect(p.ioctl(vm, K.KVM_IRQ_LINE, { irq: 4, level: 1 })).toBe(0);
    expect(p.ioctl(vm, K.KVM_IRQ_LINE, { irq: 4, level: 0 })).toBe(0);
  });
});
