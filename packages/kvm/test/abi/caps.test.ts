/**
 * KVM_CHECK_EXTENSION on the system fd and on a VM fd, for every capability number, on both vendors: each answer is
 * what Linux 6.12 gives for that vendor, its default module parameters and the modelled kernel configuration
 * (CONFIG_KVM_SMM=y, CONFIG_KVM_HYPERV=n, CONFIG_KVM_XEN=n, KVM_AMD_SEV=y, enable_pmu=0, the hosts' CPUs) — unless
 * the capability is listed in CAP_DIVERGENCES, whose entry says what Linux answers and why the model answers less
 * (what the capability promises is not modelled yet). Then the generic answers against a real 6.18 kernel.
 */
import { describe, expect, test } from 'vitest';
import { CAP_DIVERGENCES, KVM_CAPS, KVM_CHECK_EXTENSION, KVM_CREATE_VM, type KvmCapName } from '../../src/index.js';
import { VENDORS } from '../module/helpers.js';
import { REAL, openSys } from './support.js';

type Vendor = 'intel' | 'amd';
type Answer = number | { readonly intel: number; readonly amd: number } | { readonly system: number; readonly vm: number };

/**
 * Linux 6.12's answers on the model's default hosts (2 online CPUs; `intel()`: EPT and VPID, no TSC scaling;
 * `amd()`: NPT, TSC ratio MSR, SEV and SEV-ES enabled), from arch/x86/kvm/x86.c `kvm_vm_ioctl_check_extension`,
 * virt/kvm/kvm_main.c `kvm_vm_ioctl_check_extension_generic`, vmx.c / svm.c hardware setup. Every capability not
 * listed is 0.
 */
const LINUX_6_12: Partial<Record<KvmCapName, Answer>> = {
  KVM_CAP_IRQCHIP: 1, KVM_CAP_HLT: 1, KVM_CAP_MMU_SHADOW_CACHE_CONTROL: 1, KVM_CAP_USER_MEMORY: 1, KVM_CAP_SET_TSS_ADDR: 1,
  KVM_CAP_VAPIC: 1, KVM_CAP_EXT_CPUID: 1, KVM_CAP_CLOCKSOURCE: 1, KVM_CAP_NR_VCPUS: 2, KVM_CAP_NR_MEMSLOTS: 32764, KVM_CAP_PIT: 1,
  KVM_CAP_NOP_IO_DELAY: 1, KVM_CAP_MP_STATE: 1, KVM_CAP_COALESCED_MMIO: 2, KVM_CAP_SYNC_MMU: 1, KVM_CAP_DESTROY_MEMORY_REGION_WORKS: 1,
  KVM_CAP_USER_NMI: 1, KVM_CAP_SET_GUEST_DEBUG: 1, KVM_CAP_REINJECT_CONTROL: 1, KVM_CAP_IRQ_ROUTING: 4096, KVM_CAP_IRQ_INJECT_STATUS: 1,
  KVM_CAP_JOIN_MEMORY_REGIONS_WORKS: 1, KVM_CAP_MCE: 32, KVM_CAP_IRQFD: 1, KVM_CAP_PIT2: 1, KVM_CAP_SET_BOOT_CPU_ID: 1,
  KVM_CAP_PIT_STATE2: 1, KVM_CAP_IOEVENTFD: 1, KVM_CAP_SET_IDENTITY_MAP_ADDR: 1, KVM_CAP_ADJUST_CLOCK: 14, KVM_CAP_INTERNAL_ERROR_DATA: 1,
  KVM_CAP_VCPU_EVENTS: 1, KVM_CAP_PCI_SEGMENT: 1, KVM_CAP_DEBUGREGS: 1, KVM_CAP_X86_ROBUST_SINGLESTEP: 1, KVM_CAP_ENABLE_CAP: 1,
  KVM_CAP_XSAVE: 1, KVM_CAP_XCRS: 1, KVM_CAP_ASYNC_PF: 1, KVM_CAP_TSC_CONTROL: { intel: 0, amd: 1 }, KVM_CAP_GET_TSC_KHZ: 1, KVM_CAP_MAX_VCPUS: 1024,
  KVM_CAP_TSC_DEADLINE_TIMER: 1, KVM_CAP_SYNC_REGS: 7, KVM_CAP_KVMCLOCK_CTRL: 1, KVM_CAP_SIGNAL_MSI: 1, KVM_CAP_READONLY_MEM: 1,
  KVM_CAP_IRQFD_RESAMPLE: 1, KVM_CAP_DEVICE_CTRL: 1, KVM_CAP_EXT_EMUL_CPUID: 1, KVM_CAP_IOAPIC_POLARITY_IGNORED: 1, KVM_CAP_ENABLE_CAP_VM: 1,
  KVM_CAP_IOEVENTFD_NO_LENGTH: 1, KVM_CAP_CHECK_EXTENSION_VM: 1, KVM_CAP_DISABLE_QUIRKS: 1, KVM_CAP_MULTI_ADDRESS_SPACE: 2,
  KVM_CAP_SPLIT_IRQCHIP: 1, KVM_CAP_IOEVENTFD_ANY_LENGTH: 1, KVM_CAP_VCPU_ATTRIBUTES: 1, KVM_CAP_MAX_VCPU_ID: 4096, KVM_CAP_X2APIC_API: 3,
  KVM_CAP_IMMEDIATE_EXIT: 1, KVM_CAP_NESTED_STATE: { intel: 128 + 2 * 4096, amd: 128 + 4096 }, KVM_CAP_X86_DISABLE_EXITS: 14,
  KVM_CAP_GET_MSR_FEATURES: 1, KVM_CAP_MSR_PLATFORM_INFO: 1, KVM_CAP_COALESCED_PIO: 1, KVM_CAP_EXCEPTION_PAYLOAD: 1,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2: 3, KVM_CAP_PMU_EVENT_FILTER: 1, KVM_CAP_HALT_POLL: 1, KVM_CAP_ASYNC_PF_INT: 1, KVM_CAP_LAST_CPU: 1,
  KVM_CAP_STEAL_TIME: 1, KVM_CAP_X86_USER_SPACE_MSR: 1, KVM_CAP_X86_MSR_FILTER: 1, KVM_CAP_ENFORCE_PV_FEATURE_CPUID: 1,
  KVM_CAP_DIRTY_LOG_RING: 65536 * 16, KVM_CAP_SET_GUEST_DEBUG2: 0x1f0003, KVM_CAP_VM_COPY_ENC_CONTEXT_FROM: 1, KVM_CAP_SREGS2: 1,
  KVM_CAP_EXIT_HYPERCALL: 1 << 12, KVM_CAP_BINARY_STATS_FD: 1, KVM_CAP_EXIT_ON_EMULATION_FAILURE: 1, KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM: 1,
  KVM_CAP_XSAVE2: 4096, KVM_CAP_SYS_ATTRIBUTES: 1, KVM_CAP_DISABLE_QUIRKS2: 0x1ff, KVM_CAP_VM_TSC_CONTROL: { intel: 0, amd: 1 },
  KVM_CAP_SYSTEM_EVENT_DATA: 1, KVM_CAP_X86_TRIPLE_FAULT_EVENT: 1, KVM_CAP_VM_DISABLE_NX_HUGE_PAGES: 1,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL: 65536 * 16, KVM_CAP_PMU_EVENT_MASKED_EVENTS: 1, KVM_CAP_USER_MEMORY2: 1, KVM_CAP_MEMORY_FAULT_INFO: 1,
  KVM_CAP_MEMORY_ATTRIBUTES: { system: 8, vm: 0 }, KVM_CAP_GUEST_MEMFD: { system: 1, vm: 0 }, KVM_CAP_VM_TYPES: { intel: 1, amd: 1 | 4 | 8 },
  KVM_CAP_PRE_FAULT_MEMORY: 1, KVM_CAP_X86_APIC_BUS_CYCLES_NS: 1, KVM_CAP_X86_GUEST_MODE: 1, KVM_CAP_X86_SMM: 1,
};

function linuxAnswer(name: KvmCapName, vendor: Vendor, fd: 'system' | 'vm'): number {
  const a = LINUX_6_12[name];
  if (a === undefined) return 0;
  if (typeof a === 'number') return a;
  return 'intel' in a ? a[vendor] : a[fd];
}

/** What the model answers for a capability in CAP_DIVERGENCES (its promise is not modelled): 0, or for VM_TYPES the default VM only. */
function modelDivergentAnswer(name: KvmCapName): number {
  return name === 'KVM_CAP_VM_TYPES' ? 1 : 0;
}

const CAP_ENTRIES = Object.entries(KVM_CAPS) as [KvmCapName, number][];
/** `name:vendor:differs` of every CAP_DIVERGENCES entry seen (checked after both vendors). */
const DIFFERING = new Set<string>();

describe.each(VENDORS)('KVM_CHECK_EXTENSION on $name', (vendor) => {
  const s = openSys(vendor);
  const vm = s.p.ioctl(s.sys, KVM_CREATE_VM, 0);
  const inst = s.inst;

  test.each(CAP_ENTRIES)('%s (%i) as Linux 6.12 answers, or as CAP_DIVERGENCES says', (name, cap) => {
    let differs = false;
    for (const fd of ['system', 'vm'] as const) {
      const got = s.p.ioctl(fd === 'system' ? s.sys : vm, KVM_CHECK_EXTENSION, cap);
      const linux = linuxAnswer(name, vendor.name, fd);
      const div = CAP_DIVERGENCES.get(cap);
      if (div === undefined) {
        expect(got, `${name} on the ${fd} fd`).toBe(linux);
      } else {
        expect(div.linux(inst, fd === 'vm' ? [...inst.vms][0] : undefined), `${name}: CAP_DIVERGENCES's Linux answer`).toBe(linux);
        expect(got, `${name} on the ${fd} fd (diverges: ${div.why})`).toBe(modelDivergentAnswer(name));
        differs ||= linux !== got;
      }
    }
    // A divergence entry is for a capability that differs somewhere (on some fd, on some vendor).
    if (CAP_DIVERGENCES.has(cap)) DIFFERING.add(`${name}:${vendor.name}:${differs}`);
  });

  test('the irqchip capabilities are answered as Linux 6.12 answers them (the in-kernel controllers exist), and are not divergences', () => {
    const linux = { KVM_CAP_IRQ_ROUTING: 4096, KVM_CAP_IRQFD: 1, KVM_CAP_PIT2: 1, KVM_CAP_SIGNAL_MSI: 1, KVM_CAP_SPLIT_IRQCHIP: 1, KVM_CAP_IRQ_INJECT_STATUS: 1, KVM_CAP_PIT_STATE2: 1, KVM_CAP_X2APIC_API: 3 } as const;
    for (const [name, value] of Object.entries(linux) as [keyof typeof linux, number][]) {
      expect(s.p.ioctl(s.sys, KVM_CHECK_EXTENSION, KVM_CAPS[name]), name).toBe(value);
      expect(CAP_DIVERGENCES.has(KVM_CAPS[name]), name).toBe(false);
    }
  });

  test('NESTED_STATE is the vendor\'s largest nested state (KVM_GET/SET_NESTED_STATE work: nested-state.test.ts); EXT_CPUID is 1', () => {
    expect(s.p.ioctl(s.sys, KVM_CHECK_EXTENSION, KVM_CAPS.KVM_CAP_NESTED_STATE)).toBe(vendor.name === 'intel' ? 8320 : 4224);
    expect(CAP_DIVERGENCES.has(KVM_CAPS.KVM_CAP_NESTED_STATE)).toBe(false);
    // EXT_CPUID is advertised because KVM_GET_SUPPORTED_CPUID works (system-ioctls.test.ts).
    expect(s.p.ioctl(s.sys, KVM_CHECK_EXTENSION, KVM_CAPS.KVM_CAP_EXT_CPUID)).toBe(1);
  });

  test('numbers that are no capability answer 0 (not an error), on both fds', () => {
    for (const cap of [300, 0xffff, 2 ** 31]) {
      expect(s.p.ioctl(s.sys, KVM_CHECK_EXTENSION, cap)).toBe(0);
      expect(s.p.ioctl(vm, KVM_CHECK_EXTENSION, cap)).toBe(0);
    }
  });
});

test('every CAP_DIVERGENCES entry differs from Linux on some vendor or fd', () => {
  for (const [cap] of CAP_DIVERGENCES) {
    const name = CAP_ENTRIES.find(([, c]) => c === cap)?.[0];
    expect(name, `capability ${cap}`).toBeDefined();
    expect(DIFFERING.has(`${name}:intel:true`) || DIFFERING.has(`${name}:amd:true`), `${name}`).toBe(true);
  }
});

/**
 * The real 6.18 kernel (test/fixtures/real-kvm) against the model, capability by capability: equal, except where the
 * recording machine or its kernel version differs from the model's hosts — each listed with the reason.
 */
const REAL_DIFFERS: Partial<Record<KvmCapName, string>> = {
  KVM_CAP_MULTI_ADDRESS_SPACE: 'the recording kernel has no CONFIG_KVM_SMM (the model has)',
  KVM_CAP_X86_SMM: 'the recording kernel has no CONFIG_KVM_SMM (the model has)',
  KVM_CAP_DISABLE_QUIRKS2: 'Linux 6.18 has two more quirks (IGNORE_GUEST_PAT is conditional, VMCS12_ALLOW_FREEZE_IN_SMM)',
  KVM_CAP_ONE_REG: 'KVM_GET/SET_ONE_REG came to x86 after 6.12',
  KVM_CAP_TSC_CONTROL: 'vendor: the recording machine\'s vendor module has no TSC scaling; amd() has the TSC ratio MSR',
  KVM_CAP_VM_TSC_CONTROL: 'vendor (as KVM_CAP_TSC_CONTROL)',
  KVM_CAP_SMALLER_MAXPHYADDR: 'vendor: the recording machine uses shadow paging; VMX with EPT and SVM with NPT answer 0',
  KVM_CAP_X2APIC_API: 'in CAP_DIVERGENCES; also 6.18 has more flags (15 on the system fd, 11 on a VM)',
  KVM_CAP_NESTED_STATE: 'vendor: the recording machine\'s kvm_pvm has no nested-state ops (0); VMX answers 8320 and SVM 4224 whatever `nested` says',
  KVM_CAP_VM_TYPES: 'amd(): Linux would add the SEV VM types (CAP_DIVERGENCES); the recording kernel has no SEV',
};

describe.each(VENDORS)('capabilities against a real Linux 6.18 on $name', (vendor) => {
  test('every capability the real kernel answers is answered the same, but for listed differences and CAP_DIVERGENCES', () => {
    const s = openSys(vendor);
    const vm = s.p.ioctl(s.sys, KVM_CREATE_VM, 0);
    const unexpected: string[] = [];
    for (const [name, cap] of CAP_ENTRIES) {
      for (const fd of ['system', 'vm'] as const) {
        const real = REAL.caps[fd][String(cap)] ?? 0;
        const got = s.p.ioctl(fd === 'system' ? s.sys : vm, KVM_CHECK_EXTENSION, cap);
        if (got === real) continue;
        if (REAL_DIFFERS[name] !== undefined || (CAP_DIVERGENCES.has(cap) && got === modelDivergentAnswer(name))) continue;
        unexpected.push(`${name} (${fd}): real ${real}, model ${got}`);
      }
    }
    expect(unexpected).toEqual([]);
  });
});
