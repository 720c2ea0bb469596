/**
 * `KVM_CHECK_EXTENSION` (virt/kvm/kvm_main.c `kvm_vm_ioctl_check_extension_generic` → arch/x86/kvm/x86.c
 * `kvm_vm_ioctl_check_extension`) on the system fd (`vm` undefined) and on a VM fd: every capability answered as
 * Linux 6.12 answers it for the module's vendor and parameters — and non-zero only if everything behind it works in
 * the model. Where the model does not (yet) have what a capability promises, the answer is 0 and
 * {@link CAP_DIVERGENCES} says what Linux answers and why the model does not (docs/abi.md lists them).
 *
 * The capabilities of the in-kernel interrupt controllers (PIC, IOAPIC, LAPIC, PIT, IRQ routing, irqfd, MSI) are
 * answered by `irq-caps.ts`.
 *
 * @module
 */
import {
  KVM_CAP_ADJUST_CLOCK,
  KVM_CAP_DEVICE_CTRL,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_X86_GUEST_MODE,
  KVM_CAP_LAST_CPU,
  KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_NESTED_STATE,
  KVM_CAP_PMU_EVENT_FILTER,
  KVM_CAP_PMU_EVENT_MASKED_EVENTS,
  KVM_CAP_SET_GUEST_DEBUG,
  KVM_CAP_SET_GUEST_DEBUG2,
  KVM_CAP_STEAL_TIME,
  KVM_CAP_SYNC_REGS,
  KVM_CAP_VCPU_ATTRIBUTES,
  KVM_CAP_VM_DISABLE_NX_HUGE_PAGES,
  KVM_CAP_X86_BUS_LOCK_EXIT,
  KVM_CAP_X86_NOTIFY_VMEXIT,
  KVM_CAP_X86_SMM,
  KVM_CAP_ASYNC_PF,
  KVM_CAP_ASYNC_PF_INT,
  KVM_CAP_BINARY_STATS_FD,
  KVM_CAP_CHECK_EXTENSION_VM,
  KVM_CAP_CLOCKSOURCE,
  KVM_CAP_COALESCED_MMIO,
  KVM_CAP_COALESCED_PIO,
  KVM_CAP_DEBUGREGS,
  KVM_CAP_DESTROY_MEMORY_REGION_WORKS,
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_CAP_DISABLE_QUIRKS,
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_ENABLE_CAP,
  KVM_CAP_ENABLE_CAP_VM,
  KVM_CAP_ENFORCE_PV_FEATURE_CPUID,
  KVM_CAP_EXCEPTION_PAYLOAD,
  KVM_CAP_EXIT_HYPERCALL,
  KVM_CAP_EXIT_ON_EMULATION_FAILURE,
  KVM_CAP_EXT_CPUID,
  KVM_CAP_EXT_EMUL_CPUID,
  KVM_CAP_GET_MSR_FEATURES,
  KVM_CAP_GET_TSC_KHZ,
  KVM_CAP_HALT_POLL,
  KVM_CAP_HLT,
  KVM_CAP_IMMEDIATE_EXIT,
  KVM_CAP_INTERNAL_ERROR_DATA,
  KVM_CAP_IOAPIC_POLARITY_IGNORED,
  KVM_CAP_IOEVENTFD,
  KVM_CAP_IOEVENTFD_ANY_LENGTH,
  KVM_CAP_IOEVENTFD_NO_LENGTH,
  KVM_CAP_IRQCHIP,
  KVM_CAP_IRQFD,
  KVM_CAP_IRQFD_RESAMPLE,
  KVM_CAP_IRQ_INJECT_STATUS,
  KVM_CAP_IRQ_ROUTING,
  KVM_CAP_JOIN_MEMORY_REGIONS_WORKS,
  KVM_CAP_KVMCLOCK_CTRL,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_MCE,
  KVM_CAP_MEMORY_FAULT_INFO,
  KVM_CAP_MMU_SHADOW_CACHE_CONTROL,
  KVM_CAP_MP_STATE,
  KVM_CAP_MSR_PLATFORM_INFO,
  KVM_CAP_NOP_IO_DELAY,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_NR_VCPUS,
  KVM_CAP_PCI_SEGMENT,
  KVM_CAP_PIT,
  KVM_CAP_PIT2,
  KVM_CAP_PIT_STATE2,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_READONLY_MEM,
  KVM_CAP_REINJECT_CONTROL,
  KVM_CAP_SET_BOOT_CPU_ID,
  KVM_CAP_SET_IDENTITY_MAP_ADDR,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_SIGNAL_MSI,
  KVM_CAP_SMALLER_MAXPHYADDR,
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CAP_SREGS2,
  KVM_CAP_SYNC_MMU,
  KVM_CAP_SYS_ATTRIBUTES,
  KVM_CAP_SYSTEM_EVENT_DATA,
  KVM_CAP_TSC_CONTROL,
  KVM_CAP_TSC_DEADLINE_TIMER,
  KVM_CAP_USER_MEMORY,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_USER_NMI,
  KVM_CAP_VAPIC,
  KVM_CAP_VCPU_EVENTS,
  KVM_CAP_VM_COPY_ENC_CONTEXT_FROM,
  KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM,
  KVM_CAP_VM_TSC_CONTROL,
  KVM_CAP_VM_TYPES,
  KVM_CAP_X2APIC_API,
  KVM_CAP_X86_APIC_BUS_CYCLES_NS,
  KVM_CAP_X86_DISABLE_EXITS,
  KVM_CAP_X86_MSR_FILTER,
  KVM_CAP_X86_ROBUST_SINGLESTEP,
  KVM_CAP_X86_TRIPLE_FAULT_EVENT,
  KVM_CAP_X86_USER_SPACE_MSR,
  KVM_CAP_XCRS,
  KVM_CAP_XSAVE,
  KVM_CAP_XSAVE2,
  KVM_COALESCED_MMIO_PAGE_OFFSET,
  KVM_MAX_VCPUS,
  KVM_MAX_VCPU_IDS,
  KVM_USER_MEM_SLOTS,
  KVM_X86_DEFAULT_VM,
  KVM_X86_DISABLE_EXITS_CSTATE,
  KVM_X86_DISABLE_EXITS_HLT,
  KVM_X86_DISABLE_EXITS_MWAIT,
  KVM_X86_DISABLE_EXITS_PAUSE,
  KVM_SYNC_X86_VALID_FIELDS,
} from '../abi/constants.js';
import { KVM_CLOCK_VALID_FLAGS, KVM_DIRTY_LOG_MANUAL_CAPS, KVM_MAX_MCE_BANKS } from '../abi/constants-x86.js';
import { hostCpuid } from './cpu-caps.js';
import { KVM_ADDRESS_SPACE_NUM } from './memslots.js';
import type { KvmInstance } from './instance.js';
import { irqCapability } from './irq-caps.js';
import type { Vm } from './vm.js';
import type { Process } from '@vac/core';
import { x86Caps } from './x86-caps.js';
import { KVM_XSAVE_SIZE, filteredXcr0, guestPermOf } from './guest-fpu.js';
import { KVM_GUESTDBG_VALID_MASK } from './vcpu-guest-debug.js';
import { KVM_DIRTY_RING_MAX_BYTES } from './dirty-ring.js';
import { vendorArch } from './vendor-arch.js';
import { buildOf, moduleParam, supportedQuirks } from '../builds/build.js';

/** `MSR_IA32_SMBASE`. */
const MSR_IA32_SMBASE = 0x9e;
/** `APIC_BUS_CYCLE_NS_DEFAULT`. */
const APIC_BUS_CYCLE_NS_DEFAULT = 1;

/**
 * `kvm_get_allowed_disable_exits`: PAUSE always; without `mitigate_smt_rsb` (its default; a build before
 * 6f0f2d5ef895 has no such parameter) HLT and C-states, and MWAIT when the host's MWAIT works in a guest
 * (`kvm_can_mwait_in_guest`: MONITOR/MWAIT and an always-running APIC timer, CPUID 0x6 EAX.ARAT).
 */
export function allowedDisableExits(inst: KvmInstance): number {
  const boot = inst.host.cpus[0];
  if (moduleParam(inst, 'mitigate_smt_rsb') === true) return KVM_X86_DISABLE_EXITS_PAUSE;
  let r = KVM_X86_DISABLE_EXITS_PAUSE | KVM_X86_DISABLE_EXITS_HLT | KVM_X86_DISABLE_EXITS_CSTATE;
  if (boot !== undefined && (hostCpuid(boot, 1, 0).ecx & (1 << 3)) !== 0 && (hostCpuid(boot, 6, 0).eax & (1 << 2)) !== 0) r |= KVM_X86_DISABLE_EXITS_MWAIT;
  return r;
}

/**
 * A capability the model answers differently from Linux 6.12 (0, or fewer bits), and why: what it promises is not
 * (all) modelled.
 */
export interface CapDivergence {
  /** What Linux 6.12 answers for the module's vendor and parameters, on the system fd (`vm` undefined) or a VM's. */
  readonly linux: (inst: KvmInstance, vm: Vm | undefined) => number;
  /** Why the model does not. */
  readonly why: string;
}

/** Every capability the model answers differently from Linux 6.12 (x86, the default kernel configuration). */
export const CAP_DIVERGENCES: ReadonlyMap<number, CapDivergence> = new Map<number, CapDivergence>([
  [KVM_CAP_VAPIC, { linux: () => 1, why: 'the TPR shadow of KVM_SET_VAPIC_ADDR is kept but never synchronized with guest memory' }],
  [KVM_CAP_PCI_SEGMENT, { linux: () => 1, why: 'MSI routing ignores the PCI segment (KVM_MSI_VALID_DEVID not modelled)' }],
  [KVM_CAP_EXIT_HYPERCALL, { linux: () => 1 << 12, why: 'hypercalls (VMCALL/VMMCALL) not modelled' }],
  [KVM_CAP_PRE_FAULT_MEMORY, { linux: (i) => (vendorArch(i).tdp ? 1 : 0), why: 'KVM_PRE_FAULT_MEMORY not modelled' }],
  [KVM_CAP_STEAL_TIME, { linux: () => 1, why: 'steal time (MSR_KVM_STEAL_TIME) not modelled' }],
  [KVM_CAP_DEVICE_CTRL, { linux: () => 1, why: 'KVM_CREATE_DEVICE (in-kernel devices: VFIO, the irqchip as a device) not modelled' }],
  [KVM_CAP_GUEST_MEMFD, { linux: (_i, vm) => (vm === undefined ? 1 : 0), why: 'guest_memfd (CONFIG_KVM_PRIVATE_MEM, selected by KVM_AMD_SEV) not modelled' }],
  [KVM_CAP_MEMORY_ATTRIBUTES, { linux: (_i, vm) => (vm === undefined ? 8 : 0), why: 'private memory attributes (KVM_SET_MEMORY_ATTRIBUTES) not modelled' }],
  [KVM_CAP_VM_TYPES, { linux: (i) => (1 << KVM_X86_DEFAULT_VM) | vendorArch(i).linuxExtraVmTypes, why: 'KVM_CREATE_VM creates default VMs only (an SEV guest starts from one, with KVM_SEV_INIT)' }],
]);

/**
 * The capabilities every module answers 1 for (generic and x86), asked before the switch below: a VMM asks some of
 * them on every save (KVM_CAP_SREGS2), and a switch over imported constants compares its cases one by one.
 */
const ALWAYS_ONE: ReadonlySet<number> = new Set([
  // generic, always
  KVM_CAP_USER_MEMORY,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_DESTROY_MEMORY_REGION_WORKS,
  KVM_CAP_JOIN_MEMORY_REGIONS_WORKS,
  KVM_CAP_INTERNAL_ERROR_DATA,
  KVM_CAP_IOEVENTFD_ANY_LENGTH,
  KVM_CAP_CHECK_EXTENSION_VM,
  KVM_CAP_ENABLE_CAP_VM,
  KVM_CAP_HALT_POLL,
  KVM_CAP_COALESCED_PIO,
  KVM_CAP_BINARY_STATS_FD,
  KVM_CAP_SYSTEM_EVENT_DATA,
  // x86, always
  KVM_CAP_IRQCHIP,
  KVM_CAP_HLT,
  KVM_CAP_MMU_SHADOW_CACHE_CONTROL,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_EXT_CPUID,
  KVM_CAP_EXT_EMUL_CPUID,
  KVM_CAP_CLOCKSOURCE,
  KVM_CAP_NOP_IO_DELAY,
  KVM_CAP_MP_STATE,
  KVM_CAP_SYNC_MMU,
  KVM_CAP_USER_NMI,
  KVM_CAP_IOEVENTFD,
  KVM_CAP_IOEVENTFD_NO_LENGTH,
  KVM_CAP_SET_IDENTITY_MAP_ADDR,
  KVM_CAP_VCPU_EVENTS,
  KVM_CAP_DEBUGREGS,
  KVM_CAP_XSAVE,
  KVM_CAP_ASYNC_PF,
  KVM_CAP_ASYNC_PF_INT,
  KVM_CAP_GET_TSC_KHZ,
  KVM_CAP_KVMCLOCK_CTRL,
  KVM_CAP_DISABLE_QUIRKS,
  KVM_CAP_SET_BOOT_CPU_ID,
  KVM_CAP_IMMEDIATE_EXIT,
  KVM_CAP_GET_MSR_FEATURES,
  KVM_CAP_MSR_PLATFORM_INFO,
  KVM_CAP_EXCEPTION_PAYLOAD,
  KVM_CAP_X86_TRIPLE_FAULT_EVENT,
  KVM_CAP_X86_MSR_FILTER, // a denied access is #GP, or KVM_EXIT_X86_RDMSR/WRMSR with reason FILTER
  KVM_CAP_X86_USER_SPACE_MSR, // vcpu-platform.ts
  KVM_CAP_SET_GUEST_DEBUG, // vcpu-guest-debug.ts
  KVM_CAP_X86_ROBUST_SINGLESTEP, // a single step is reported after an instruction completed by the next KVM_RUN
  KVM_CAP_ENFORCE_PV_FEATURE_CPUID,
  KVM_CAP_SREGS2,
  KVM_CAP_EXIT_ON_EMULATION_FAILURE,
  KVM_CAP_SYS_ATTRIBUTES,
  KVM_CAP_ENABLE_CAP,
  KVM_CAP_MEMORY_FAULT_INFO,
  KVM_CAP_READONLY_MEM, // kvm_arch_has_readonly_mem: every default VM
  KVM_CAP_LAST_CPU, // KVM_EXIT_FAIL_ENTRY's fail_entry.cpu: the CPU of the failed entry (vcpu.ts)
  KVM_CAP_X86_GUEST_MODE, // kvm_run.flags' KVM_RUN_X86_GUEST_MODE: never set, no vCPU can be in guest mode (nested not modelled)
  KVM_CAP_PMU_EVENT_FILTER, // KVM_SET_PMU_EVENT_FILTER (pmu-event-filter.ts); no guest PMU consults it
  KVM_CAP_PMU_EVENT_MASKED_EVENTS, // its KVM_PMU_EVENT_FLAG_MASKED_EVENTS
  KVM_CAP_VM_DISABLE_NX_HUGE_PAGES, // KVM_ENABLE_CAP: CAP_SYS_BOOT, args[0] 0, before vCPUs (vm-arch-ioctls.ts)
  KVM_CAP_VCPU_ATTRIBUTES, // KVM_HAS/GET/SET_DEVICE_ATTR on a vCPU fd: the TSC offset (vcpu-attr-ioctls.ts)
  KVM_CAP_TSC_DEADLINE_TIMER, // the guest's IA32_TSC_DEADLINE reaches the LAPIC timer (kvm_set_lapic_tscdeadline_msr)
  // answered 1 on every vendor; KVM_ENABLE_CAP is EINVAL where the vendor has no op (VMX): enc-context.ts
  KVM_CAP_VM_COPY_ENC_CONTEXT_FROM,
  KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM,
]);

/** `kvm_vm_ioctl_check_extension_generic` + the x86 part, for this module (and VM, when asked on a VM fd). */
export function checkExtension(inst: KvmInstance, cap: number, vm?: Vm, proc?: Process): number {
  if (buildOf(inst).capsRemoved.has(cap)) return 0; // a release without the capability
  if (ALWAYS_ONE.has(cap)) return 1;
  switch (cap) {
    // the in-kernel interrupt controllers: irq-caps.ts (below), except what the model's LAPIC does not have yet
    case KVM_CAP_VAPIC:
    case KVM_CAP_PCI_SEGMENT:
      return 0;
    case KVM_CAP_X86_APIC_BUS_CYCLES_NS:
      return APIC_BUS_CYCLE_NS_DEFAULT; // the LAPIC timer's bus cycle, settable before vCPUs (irq-vm-ioctls.ts)
    // values
    case KVM_CAP_COALESCED_MMIO:
      return KVM_COALESCED_MMIO_PAGE_OFFSET;
    case KVM_CAP_MULTI_ADDRESS_SPACE:
      return KVM_ADDRESS_SPACE_NUM; // CONFIG_KVM_SMM: normal and SMM memslots
    case KVM_CAP_X86_SMM:
      // "SMBASE is usually relocated above 1M on modern chipsets": SMM where the vendor emulates MSR_IA32_SMBASE
      // (VMX: unrestricted guest or emulate_invalid_guest_state; SVM: not for an SEV-ES guest). smm.ts.
      return vendorArch(inst).hasEmulatedMsr(MSR_IA32_SMBASE, vm?.vendor) ? 1 : 0;
    case KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2:
      return KVM_DIRTY_LOG_MANUAL_CAPS;
    // CONFIG_HAVE_KVM_DIRTY_RING_TSO and _ACQ_REL (x86): the largest ring, in bytes (dirty-ring.ts)
    case KVM_CAP_DIRTY_LOG_RING:
    case KVM_CAP_DIRTY_LOG_RING_ACQ_REL:
      return KVM_DIRTY_RING_MAX_BYTES;
    case KVM_CAP_NR_MEMSLOTS:
      return KVM_USER_MEM_SLOTS;
    case KVM_CAP_ADJUST_CLOCK:
      return KVM_CLOCK_VALID_FLAGS;
    case KVM_CAP_X86_DISABLE_EXITS:
      return allowedDisableExits(inst);
    case KVM_CAP_NR_VCPUS: {
      // x86: min(num_online_cpus(), KVM_MAX_VCPUS)
      let online = 0;
      for (const c of inst.host.cpus) if (c.online) online++;
      return Math.min(online, KVM_MAX_VCPUS);
    }
    case KVM_CAP_MAX_VCPUS:
      return KVM_MAX_VCPUS; // kvm->max_vcpus is KVM_MAX_VCPUS for every VM
    case KVM_CAP_MAX_VCPU_ID:
      return KVM_MAX_VCPU_IDS;
    case KVM_CAP_MCE:
      return KVM_MAX_MCE_BANKS;
    case KVM_CAP_SET_GUEST_DEBUG2:
      return KVM_GUESTDBG_VALID_MASK;
    case KVM_CAP_NESTED_STATE:
      return vendorArch(inst).nestedState?.maxSize ?? 0; // nested_ops->get_state(NULL, NULL, 0): vcpu-nested-state-ioctls.ts
    case KVM_CAP_SYNC_REGS:
      return KVM_SYNC_X86_VALID_FIELDS; // sync-regs.ts
    case KVM_CAP_XCRS:
      return x86Caps(inst).xsave ? 1 : 0; // boot_cpu_has(X86_FEATURE_XSAVE)
    case KVM_CAP_TSC_CONTROL:
    case KVM_CAP_VM_TSC_CONTROL:
      return vendorArch(inst).tscControl ? 1 : 0;
    case KVM_CAP_SMALLER_MAXPHYADDR:
      return vendorArch(inst).smallerMaxPhyAddr ? 1 : 0;
    case KVM_CAP_X86_BUS_LOCK_EXIT:
      return vendorArch(inst).busLockExit ? 3 : 0; // KVM_BUS_LOCK_DETECTION_OFF | _EXIT
    case KVM_CAP_X86_NOTIFY_VMEXIT:
      return vendorArch(inst).notifyVmexit ? 1 : 0;
    case KVM_CAP_XSAVE2: {
      // xstate_required_size(kvm_get_filtered_xcr0()), at least sizeof(struct kvm_xsave): what the calling process
      // may give its guests (AMX tile data only after arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)).
      const caps = x86Caps(inst);
      return Math.max(caps.xstateSizeFor(filteredXcr0(caps, guestPermOf(inst, proc))), KVM_XSAVE_SIZE);
    }
    case KVM_CAP_DISABLE_QUIRKS2:
      return supportedQuirks(inst); // kvm_caps.supported_quirks: the build's KVM_X86_VALID_QUIRKS less the vendor's
    case KVM_CAP_VM_TYPES:
      return 1 << KVM_X86_DEFAULT_VM;
    default:
      return irqCapability(cap) ?? inst.vendor.extensions.get(cap) ?? 0;
  }
}
