import { describe, expect, test } from 'vitest';
import * as abi from '../../src/abi/index.js';
import {
  KVM_CAPS,
  KVM_EXIT_REASONS,
  KVM_IOCTLS,
  KVM_SEV_COMMANDS,
  _IOC_SIZE,
  _IOC_TYPE,
  capabilityName,
  exitReasonName,
  ioctlName,
  isKnownKvmIoctl,
  sevCommandName,
} from '../../src/abi/index.js';

/**
 * Every request number as a C program on x86-64 sees it (what `printf("%#x", KVM_...)` prints), written out
 * by hand from the header's `_IO*(KVMIO, nr, struct …)` and the structure sizes, independently of the
 * encoder and layout code under test.
 */
const IOCTL_LITERALS: Record<keyof typeof KVM_IOCTLS, number> = {
  KVM_GET_API_VERSION: 0xae00,
  KVM_CREATE_VM: 0xae01,
  KVM_GET_MSR_INDEX_LIST: 0xc004ae02,
  KVM_CHECK_EXTENSION: 0xae03,
  KVM_GET_VCPU_MMAP_SIZE: 0xae04,
  KVM_GET_SUPPORTED_CPUID: 0xc008ae05,
  KVM_GET_EMULATED_CPUID: 0xc008ae09,
  KVM_GET_MSR_FEATURE_INDEX_LIST: 0xc004ae0a,
  KVM_CREATE_VCPU: 0xae41,
  KVM_GET_DIRTY_LOG: 0x4010ae42,
  KVM_SET_NR_MMU_PAGES: 0xae44,
  KVM_GET_NR_MMU_PAGES: 0xae45,
  KVM_SET_USER_MEMORY_REGION: 0x4020ae46,
  KVM_SET_TSS_ADDR: 0xae47,
  KVM_SET_IDENTITY_MAP_ADDR: 0x4008ae48,
  KVM_SET_USER_MEMORY_REGION2: 0x40a0ae49,
  KVM_CREATE_IRQCHIP: 0xae60,
  KVM_IRQ_LINE: 0x4008ae61,
  KVM_GET_IRQCHIP: 0xc208ae62,
  KVM_SET_IRQCHIP: 0x8208ae63,
  KVM_CREATE_PIT: 0xae64,
  KVM_GET_PIT: 0xc048ae65,
  KVM_SET_PIT: 0x8048ae66,
  KVM_IRQ_LINE_STATUS: 0xc008ae67,
  KVM_REGISTER_COALESCED_MMIO: 0x4010ae67,
  KVM_UNREGISTER_COALESCED_MMIO: 0x4010ae68,
  KVM_SET_GSI_ROUTING: 0x4008ae6a,
  KVM_REINJECT_CONTROL: 0xae71,
  KVM_IRQFD: 0x4020ae76,
  KVM_CREATE_PIT2: 0x4040ae77,
  KVM_SET_BOOT_CPU_ID: 0xae78,
  KVM_IOEVENTFD: 0x4040ae79,
  KVM_SET_CLOCK: 0x4030ae7b,
  KVM_GET_CLOCK: 0x8030ae7c,
  KVM_GET_PIT2: 0x8070ae9f,
  KVM_SET_PIT2: 0x4070aea0,
  KVM_SIGNAL_MSI: 0x4020aea5,
  KVM_CREATE_DEVICE: 0xc00caee0,
  KVM_MEMORY_ENCRYPT_OP: 0xc008aeba,
  KVM_MEMORY_ENCRYPT_REG_REGION: 0x8010aebb,
  KVM_MEMORY_ENCRYPT_UNREG_REGION: 0x8010aebc,
  KVM_CLEAR_DIRTY_LOG: 0xc018aec0,
  KVM_X86_SET_MSR_FILTER: 0x4188aec6,
  KVM_SET_PMU_EVENT_FILTER: 0x4020aeb2,
  KVM_RESET_DIRTY_RINGS: 0xaec7,
  KVM_SET_MEMORY_ATTRIBUTES: 0x4020aed2,
  KVM_CREATE_GUEST_MEMFD: 0xc040aed4,
  KVM_RUN: 0xae80,
  KVM_GET_REGS: 0x8090ae81,
  KVM_SET_REGS: 0x4090ae82,
  KVM_GET_SREGS: 0x8138ae83,
  KVM_SET_SREGS: 0x4138ae84,
  KVM_TRANSLATE: 0xc018ae85,
  KVM_INTERRUPT: 0x4004ae86,
  KVM_GET_MSRS: 0xc008ae88,
  KVM_SET_MSRS: 0x4008ae89,
  KVM_SET_CPUID: 0x4008ae8a,
  KVM_SET_SIGNAL_MASK: 0x4004ae8b,
  KVM_GET_FPU: 0x81a0ae8c,
  KVM_SET_FPU: 0x41a0ae8d,
  KVM_GET_LAPIC: 0x8400ae8e,
  KVM_SET_LAPIC: 0x4400ae8f,
  KVM_SET_CPUID2: 0x4008ae90,
  KVM_GET_CPUID2: 0xc008ae91,
  KVM_TPR_ACCESS_REPORTING: 0xc028ae92,
  KVM_SET_VAPIC_ADDR: 0x4008ae93,
  KVM_GET_MP_STATE: 0x8004ae98,
  KVM_SET_MP_STATE: 0x4004ae99,
  KVM_NMI: 0xae9a,
  KVM_SET_GUEST_DEBUG: 0x4048ae9b,
  KVM_X86_SETUP_MCE: 0x4008ae9c,
  KVM_X86_GET_MCE_CAP_SUPPORTED: 0x8008ae9d,
  KVM_X86_SET_MCE: 0x4040ae9e,
  KVM_GET_VCPU_EVENTS: 0x8040ae9f,
  KVM_SET_VCPU_EVENTS: 0x4040aea0,
  KVM_GET_DEBUGREGS: 0x8080aea1,
  KVM_SET_DEBUGREGS: 0x4080aea2,
  KVM_SET_TSC_KHZ: 0xaea2,
  KVM_GET_TSC_KHZ: 0xaea3,
  KVM_ENABLE_CAP: 0x4068aea3,
  KVM_GET_XSAVE: 0x9000aea4,
  KVM_SET_XSAVE: 0x5000aea5,
  KVM_GET_XCRS: 0x8188aea6,
  KVM_SET_XCRS: 0x4188aea7,
  KVM_GET_ONE_REG: 0x4010aeab,
  KVM_SET_ONE_REG: 0x4010aeac,
  KVM_KVMCLOCK_CTRL: 0xaead,
  KVM_GET_REG_LIST: 0xc008aeb0,
  KVM_SMI: 0xaeb7,
  KVM_GET_NESTED_STATE: 0xc080aebe,
  KVM_SET_NESTED_STATE: 0x4080aebf,
  KVM_GET_SUPPORTED_HV_CPUID: 0xc008aec1,
  KVM_GET_SREGS2: 0x8140aecc,
  KVM_SET_SREGS2: 0x4140aecd,
  KVM_GET_STATS_FD: 0xaece,
  KVM_GET_XSAVE2: 0x9000aecf,
  KVM_PRE_FAULT_MEMORY: 0xc040aed5,
  KVM_SET_DEVICE_ATTR: 0x4018aee1,
  KVM_GET_DEVICE_ATTR: 0x4018aee2,
  KVM_HAS_DEVICE_ATTR: 0x4018aee3,
};

describe('ioctl request numbers', () => {
  test('the table covers exactly the exported ioctls', () => {
    expect(Object.keys(KVM_IOCTLS).sort()).toEqual(Object.keys(IOCTL_LITERALS).sort());
  });

  test.each(Object.entries(IOCTL_LITERALS))('%s = literal from the header', (name, literal) => {
    const computed = KVM_IOCTLS[name as keyof typeof KVM_IOCTLS];
    expect(computed.toString(16)).toBe(literal.toString(16));
    // the individually exported constant is the same number
    expect((abi as Record<string, unknown>)[name]).toBe(literal);
    expect(_IOC_TYPE(computed)).toBe(0xae);
  });

  test('the values the spec pins', () => {
    expect(abi.KVM_GET_API_VERSION).toBe(0xae00);
    expect(abi.KVM_CREATE_VM).toBe(0xae01);
    expect(abi.KVM_CHECK_EXTENSION).toBe(0xae03);
    expect(abi.KVM_GET_VCPU_MMAP_SIZE).toBe(0xae04);
    expect(abi.KVM_CREATE_VCPU).toBe(0xae41);
    expect(abi.KVM_SET_USER_MEMORY_REGION).toBe(0x4020ae46);
    expect(abi.KVM_RUN).toBe(0xae80);
    expect(abi.KVM_GET_REGS).toBe(0x8090ae81);
    expect(abi.KVM_SET_REGS).toBe(0x4090ae82);
    expect(abi.KVM_GET_SREGS).toBe(0x8138ae83);
    expect(abi.KVM_SET_SREGS).toBe(0x4138ae84);
    expect(abi.KVM_MEMORY_ENCRYPT_OP).toBe(0xc008aeba);
  });

  test('request numbers are unique, so every request has one name', () => {
    const values = Object.values(KVM_IOCTLS);
    expect(new Set(values).size).toBe(values.length);
  });

  test('ioctlName names known requests and spells out unknown ones', () => {
    for (const [name, value] of Object.entries(KVM_IOCTLS)) {
      expect(ioctlName(value)).toBe(name);
      expect(isKnownKvmIoctl(value)).toBe(true);
    }
    expect(ioctlName(0xae80 | 0)).toBe('KVM_RUN');
    expect(ioctlName(0xc008aeba | 0)).toBe('KVM_MEMORY_ENCRYPT_OP'); // int32 spelling
    expect(ioctlName(0x4010aeff)).toBe('_IOW(0xae, 0xff, 16)');
    expect(ioctlName(0x5401)).toBe('_IO(0x54, 0x01)'); // TCGETS: not KVM's
    expect(isKnownKvmIoctl(0x5401)).toBe(false);
  });

  test('argument sizes embedded in the requests', () => {
    expect(_IOC_SIZE(abi.KVM_GET_REGS)).toBe(144);
    expect(_IOC_SIZE(abi.KVM_GET_SREGS)).toBe(312);
    expect(_IOC_SIZE(abi.KVM_SET_USER_MEMORY_REGION)).toBe(32);
    expect(_IOC_SIZE(abi.KVM_ENABLE_CAP)).toBe(104);
    expect(_IOC_SIZE(abi.KVM_GET_FPU)).toBe(416);
    expect(_IOC_SIZE(abi.KVM_GET_VCPU_EVENTS)).toBe(64);
  });
});

describe('capabilities', () => {
  const CAP_LITERALS: Record<string, number> = {
    KVM_CAP_IRQCHIP: 0,
    KVM_CAP_HLT: 1,
    KVM_CAP_MMU_SHADOW_CACHE_CONTROL: 2,
    KVM_CAP_USER_MEMORY: 3,
    KVM_CAP_SET_TSS_ADDR: 4,
    KVM_CAP_VAPIC: 6,
    KVM_CAP_EXT_CPUID: 7,
    KVM_CAP_CLOCKSOURCE: 8,
    KVM_CAP_NR_VCPUS: 9,
    KVM_CAP_NR_MEMSLOTS: 10,
    KVM_CAP_PIT: 11,
    KVM_CAP_NOP_IO_DELAY: 12,
    KVM_CAP_PV_MMU: 13,
    KVM_CAP_MP_STATE: 14,
    KVM_CAP_COALESCED_MMIO: 15,
    KVM_CAP_SYNC_MMU: 16,
    KVM_CAP_USER_NMI: 22,
    KVM_CAP_SET_GUEST_DEBUG: 23,
    KVM_CAP_REINJECT_CONTROL: 24,
    KVM_CAP_IRQ_ROUTING: 25,
    KVM_CAP_MCE: 31,
    KVM_CAP_IRQFD: 32,
    KVM_CAP_PIT2: 33,
    KVM_CAP_PIT_STATE2: 35,
    KVM_CAP_IOEVENTFD: 36,
    KVM_CAP_SET_IDENTITY_MAP_ADDR: 37,
    KVM_CAP_ADJUST_CLOCK: 39,
    KVM_CAP_INTERNAL_ERROR_DATA: 40,
    KVM_CAP_VCPU_EVENTS: 41,
    KVM_CAP_DEBUGREGS: 50,
    KVM_CAP_ENABLE_CAP: 54,
    KVM_CAP_XSAVE: 55,
    KVM_CAP_XCRS: 56,
    KVM_CAP_TSC_CONTROL: 60,
    KVM_CAP_GET_TSC_KHZ: 61,
    KVM_CAP_MAX_VCPUS: 66,
    KVM_CAP_ONE_REG: 70,
    KVM_CAP_TSC_DEADLINE_TIMER: 72,
    KVM_CAP_SYNC_REGS: 74,
    KVM_CAP_KVMCLOCK_CTRL: 76,
    KVM_CAP_SIGNAL_MSI: 77,
    KVM_CAP_READONLY_MEM: 81,
    KVM_CAP_IRQFD_RESAMPLE: 82,
    KVM_CAP_DEVICE_CTRL: 89,
    KVM_CAP_EXT_EMUL_CPUID: 95,
    KVM_CAP_ENABLE_CAP_VM: 98,
    KVM_CAP_CHECK_EXTENSION_VM: 105,
    KVM_CAP_DISABLE_QUIRKS: 116,
    KVM_CAP_X86_SMM: 117,
    KVM_CAP_MULTI_ADDRESS_SPACE: 118,
    KVM_CAP_SPLIT_IRQCHIP: 121,
    KVM_CAP_MAX_VCPU_ID: 128,
    KVM_CAP_X2APIC_API: 129,
    KVM_CAP_IMMEDIATE_EXIT: 136,
    KVM_CAP_X86_DISABLE_EXITS: 143,
    KVM_CAP_GET_MSR_FEATURES: 153,
    KVM_CAP_NESTED_STATE: 157,
    KVM_CAP_EXCEPTION_PAYLOAD: 164,
    KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: 168,
    KVM_CAP_HALT_POLL: 182,
    KVM_CAP_X86_USER_SPACE_MSR: 188,
    KVM_CAP_X86_MSR_FILTER: 189,
    KVM_CAP_DIRTY_LOG_RING: 192,
    KVM_CAP_X86_BUS_LOCK_EXIT: 193,
    KVM_CAP_VM_COPY_ENC_CONTEXT_FROM: 197,
    KVM_CAP_SREGS2: 200,
    KVM_CAP_EXIT_HYPERCALL: 201,
    KVM_CAP_BINARY_STATS_FD: 203,
    KVM_CAP_EXIT_ON_EMULATION_FAILURE: 204,
    KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM: 206,
    KVM_CAP_XSAVE2: 208,
    KVM_CAP_SYS_ATTRIBUTES: 209,
    KVM_CAP_PMU_CAPABILITY: 212,
    KVM_CAP_DISABLE_QUIRKS2: 213,
    KVM_CAP_VM_TSC_CONTROL: 214,
    KVM_CAP_SYSTEM_EVENT_DATA: 215,
    KVM_CAP_X86_TRIPLE_FAULT_EVENT: 218,
    KVM_CAP_X86_NOTIFY_VMEXIT: 219,
    KVM_CAP_VM_DISABLE_NX_HUGE_PAGES: 220,
    KVM_CAP_USER_MEMORY2: 231,
    KVM_CAP_MEMORY_FAULT_INFO: 232,
    KVM_CAP_MEMORY_ATTRIBUTES: 233,
    KVM_CAP_GUEST_MEMFD: 234,
    KVM_CAP_VM_TYPES: 235,
    KVM_CAP_PRE_FAULT_MEMORY: 236,
    KVM_CAP_X86_APIC_BUS_CYCLES_NS: 237,
    KVM_CAP_X86_GUEST_MODE: 238,
  };

  test.each(Object.entries(CAP_LITERALS))('%s = %i', (name, value) => {
    expect((abi as Record<string, unknown>)[name]).toBe(value);
    expect((KVM_CAPS as Record<string, number>)[name]).toBe(value);
    expect(capabilityName(value)).toBe(name);
  });

  test('capability numbers are unique and every exported KVM_CAP_* is in KVM_CAPS', () => {
    const values = Object.values(KVM_CAPS);
    expect(new Set(values).size).toBe(values.length);
    const exported = Object.keys(abi).filter((k) => k.startsWith('KVM_CAP_'));
    expect(exported.sort()).toEqual(Object.keys(KVM_CAPS).sort());
    expect(capabilityName(9999)).toBe('KVM_CAP #9999');
  });

  test('other architectures are left out', () => {
    expect(Object.keys(KVM_CAPS).some((k) => /PPC|S390|ARM|MIPS|RISCV|SPAPR/.test(k))).toBe(false);
    expect(capabilityName(87)).toBe('KVM_CAP #87'); // KVM_CAP_ARM_PSCI
  });
});

describe('exit reasons and run-time values', () => {
  test('exit reasons as in the header', () => {
    const expected: [string, number][] = [
      ['KVM_EXIT_UNKNOWN', 0], ['KVM_EXIT_EXCEPTION', 1], ['KVM_EXIT_IO', 2], ['KVM_EXIT_HYPERCALL', 3],
      ['KVM_EXIT_DEBUG', 4], ['KVM_EXIT_HLT', 5], ['KVM_EXIT_MMIO', 6], ['KVM_EXIT_IRQ_WINDOW_OPEN', 7],
      ['KVM_EXIT_SHUTDOWN', 8], ['KVM_EXIT_FAIL_ENTRY', 9], ['KVM_EXIT_INTR', 10], ['KVM_EXIT_SET_TPR', 11],
      ['KVM_EXIT_TPR_ACCESS', 12], ['KVM_EXIT_S390_SIEIC', 13], ['KVM_EXIT_S390_RESET', 14], ['KVM_EXIT_DCR', 15],
      ['KVM_EXIT_NMI', 16], ['KVM_EXIT_INTERNAL_ERROR', 17], ['KVM_EXIT_OSI', 18], ['KVM_EXIT_PAPR_HCALL', 19],
      ['KVM_EXIT_S390_UCONTROL', 20], ['KVM_EXIT_WATCHDOG', 21], ['KVM_EXIT_S390_TSCH', 22], ['KVM_EXIT_EPR', 23],
      ['KVM_EXIT_SYSTEM_EVENT', 24], ['KVM_EXIT_S390_STSI', 25], ['KVM_EXIT_IOAPIC_EOI', 26], ['KVM_EXIT_HYPERV', 27],
      ['KVM_EXIT_ARM_NISV', 28], ['KVM_EXIT_X86_RDMSR', 29], ['KVM_EXIT_X86_WRMSR', 30],
      ['KVM_EXIT_DIRTY_RING_FULL', 31], ['KVM_EXIT_AP_RESET_HOLD', 32], ['KVM_EXIT_X86_BUS_LOCK', 33],
      ['KVM_EXIT_XEN', 34], ['KVM_EXIT_RISCV_SBI', 35], ['KVM_EXIT_RISCV_CSR', 36], ['KVM_EXIT_NOTIFY', 37],
      ['KVM_EXIT_LOONGARCH_IOCSR', 38], ['KVM_EXIT_MEMORY_FAULT', 39], ['KVM_EXIT_TDX', 40],
      ['KVM_EXIT_ARM_SEA', 41], ['KVM_EXIT_ARM_LDST64B', 42], ['KVM_EXIT_SNP_REQ_CERTS', 43],
    ];
    expect(Object.entries(KVM_EXIT_REASONS)).toEqual(expected);
    for (const [name, n] of expected) {
      expect((abi as Record<string, unknown>)[name]).toBe(n);
      expect(exitReasonName(n)).toBe(name);
    }
    expect(exitReasonName(200)).toBe('KVM_EXIT #200');
  });

  test('I/O direction, internal-error suberrors, system events', () => {
    expect(abi.KVM_EXIT_IO_IN).toBe(0);
    expect(abi.KVM_EXIT_IO_OUT).toBe(1);
    expect(abi.KVM_INTERNAL_ERROR_EMULATION).toBe(1);
    expect(abi.KVM_INTERNAL_ERROR_SIMUL_EX).toBe(2);
    expect(abi.KVM_INTERNAL_ERROR_DELIVERY_EV).toBe(3);
    expect(abi.KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON).toBe(4);
    expect(abi.KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES).toBe(1);
    expect([
      abi.KVM_SYSTEM_EVENT_SHUTDOWN, abi.KVM_SYSTEM_EVENT_RESET, abi.KVM_SYSTEM_EVENT_CRASH,
      abi.KVM_SYSTEM_EVENT_WAKEUP, abi.KVM_SYSTEM_EVENT_SUSPEND, abi.KVM_SYSTEM_EVENT_SEV_TERM,
      abi.KVM_SYSTEM_EVENT_TDX_FATAL,
    ]).toEqual([1, 2, 3, 4, 5, 6, 7]);
    expect([abi.KVM_MSR_EXIT_REASON_INVAL, abi.KVM_MSR_EXIT_REASON_UNKNOWN, abi.KVM_MSR_EXIT_REASON_FILTER]).toEqual([1, 2, 4]);
    expect(abi.KVM_MEMORY_EXIT_FLAG_PRIVATE).toBe(8);
    expect([abi.KVM_RUN_X86_SMM, abi.KVM_RUN_X86_BUS_LOCK, abi.KVM_RUN_X86_GUEST_MODE]).toEqual([1, 2, 4]);
    expect(abi.KVM_SYNC_X86_VALID_FIELDS).toBe(7);
  });

  test('memory-slot flags and VM types', () => {
    expect(abi.KVM_MEM_LOG_DIRTY_PAGES).toBe(1);
    expect(abi.KVM_MEM_READONLY).toBe(2);
    expect(abi.KVM_MEM_GUEST_MEMFD).toBe(4);
    expect(abi.KVM_MEMORY_ATTRIBUTE_PRIVATE).toBe(8);
    expect([
      abi.KVM_X86_DEFAULT_VM, abi.KVM_X86_SW_PROTECTED_VM, abi.KVM_X86_SEV_VM, abi.KVM_X86_SEV_ES_VM,
      abi.KVM_X86_SNP_VM, abi.KVM_X86_TDX_VM,
    ]).toEqual([0, 1, 2, 3, 4, 5]);
  });

  test('SEV command ids follow enum sev_cmd_id', () => {
    expect(Object.entries(KVM_SEV_COMMANDS)).toEqual([
      ['KVM_SEV_INIT', 0], ['KVM_SEV_ES_INIT', 1], ['KVM_SEV_LAUNCH_START', 2],
      ['KVM_SEV_LAUNCH_UPDATE_DATA', 3], ['KVM_SEV_LAUNCH_UPDATE_VMSA', 4], ['KVM_SEV_LAUNCH_SECRET', 5],
      ['KVM_SEV_LAUNCH_MEASURE', 6], ['KVM_SEV_LAUNCH_FINISH', 7], ['KVM_SEV_SEND_START', 8],
      ['KVM_SEV_SEND_UPDATE_DATA', 9], ['KVM_SEV_SEND_UPDATE_VMSA', 10], ['KVM_SEV_SEND_FINISH', 11],
      ['KVM_SEV_RECEIVE_START', 12], ['KVM_SEV_RECEIVE_UPDATE_DATA', 13], ['KVM_SEV_RECEIVE_UPDATE_VMSA', 14],
      ['KVM_SEV_RECEIVE_FINISH', 15], ['KVM_SEV_GUEST_STATUS', 16], ['KVM_SEV_DBG_DECRYPT', 17],
      ['KVM_SEV_DBG_ENCRYPT', 18], ['KVM_SEV_CERT_EXPORT', 19], ['KVM_SEV_GET_ATTESTATION_REPORT', 20],
      ['KVM_SEV_SEND_CANCEL', 21], ['KVM_SEV_INIT2', 22], ['KVM_SEV_SNP_LAUNCH_START', 100],
      ['KVM_SEV_SNP_LAUNCH_UPDATE', 101], ['KVM_SEV_SNP_LAUNCH_FINISH', 102], ['KVM_SEV_SNP_ENABLE_REQ_CERTS', 103],
    ]);
    expect(sevCommandName(1)).toBe('KVM_SEV_ES_INIT');
    expect(sevCommandName(99)).toBe('KVM_SEV #99');
  });

  test('vCPU state values and flags', () => {
    expect([abi.KVM_MP_STATE_RUNNABLE, abi.KVM_MP_STATE_UNINITIALIZED, abi.KVM_MP_STATE_INIT_RECEIVED,
      abi.KVM_MP_STATE_HALTED, abi.KVM_MP_STATE_SIPI_RECEIVED, abi.KVM_MP_STATE_AP_RESET_HOLD,
      abi.KVM_MP_STATE_SUSPENDED]).toEqual([0, 1, 2, 3, 4, 9, 10]);
    expect([abi.KVM_GUESTDBG_ENABLE, abi.KVM_GUESTDBG_SINGLESTEP, abi.KVM_GUESTDBG_USE_SW_BP,
      abi.KVM_GUESTDBG_USE_HW_BP, abi.KVM_GUESTDBG_INJECT_DB, abi.KVM_GUESTDBG_INJECT_BP,
      abi.KVM_GUESTDBG_BLOCKIRQ]).toEqual([0x1, 0x2, 0x10000, 0x20000, 0x40000, 0x80000, 0x100000]);
    expect([abi.KVM_X86_DISABLE_EXITS_MWAIT, abi.KVM_X86_DISABLE_EXITS_HLT, abi.KVM_X86_DISABLE_EXITS_PAUSE,
      abi.KVM_X86_DISABLE_EXITS_CSTATE, abi.KVM_X86_DISABLE_EXITS_APERFMPERF]).toEqual([1, 2, 4, 8, 16]);
    expect([abi.KVM_IRQCHIP_PIC_MASTER, abi.KVM_IRQCHIP_PIC_SLAVE, abi.KVM_IRQCHIP_IOAPIC, abi.KVM_NR_IRQCHIPS])
      .toEqual([0, 1, 2, 3]);
    expect(abi.KVM_IOAPIC_NUM_PINS).toBe(24);
    expect(abi.KVM_CPUID_FLAG_SIGNIFCANT_INDEX).toBe(1);
  });
});

describe('limits and the mmap area', () => {
  test('API version and mmap geometry', () => {
    expect(abi.KVM_API_VERSION).toBe(12);
    expect(abi.PAGE_SIZE).toBe(4096);
    expect(abi.KVM_PIO_PAGE_OFFSET).toBe(1);
    expect(abi.KVM_COALESCED_MMIO_PAGE_OFFSET).toBe(2);
    expect(abi.KVM_DIRTY_LOG_PAGE_OFFSET).toBe(64);
    expect(abi.KVM_VCPU_MMAP_SIZE).toBe(12288);
    expect(abi.KVM_PIO_DATA_OFFSET).toBe(4096);
    expect(abi.KVM_COALESCED_MMIO_MAX).toBe(170);
    expect(abi.KVM_NR_INTERRUPTS).toBe(256);
  });

  test('memory slots and vCPUs (x86 kvm_host.h)', () => {
    expect(abi.KVM_MEM_SLOTS_NUM).toBe(32767);
    expect(abi.KVM_INTERNAL_MEM_SLOTS).toBe(3);
    expect(abi.KVM_USER_MEM_SLOTS).toBe(32764);
    expect(abi.KVM_MAX_VCPUS).toBe(1024);
    expect(abi.KVM_VCPU_ID_RATIO).toBe(4);
    expect(abi.KVM_MAX_VCPU_IDS).toBe(4096);
    expect(abi.KVM_HALT_POLL_NS_DEFAULT).toBe(200000);
  });

  test('device numbers of /dev/kvm', () => {
    expect(abi.MISC_MAJOR).toBe(10);
    expect(abi.KVM_MINOR).toBe(232);
  });
});
