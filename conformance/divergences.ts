/**
 * Every known difference between the model and the real Linux KVM the golden files were recorded on, in one
 * place. The conformance test fails on a difference no entry covers, and on an entry (or a fact id in it)
 * that no longer differs — so when the model learns something, the only change needed here is to delete the
 * fact ids (or the entry) the test names.
 *
 * The classes (see `DivergenceClass`): `not-modelled` (the model lacks it yet), `emulator-vendor` (the
 * recording machine's vendor module, kvm_pvm, runs guests through KVM's instruction emulator and differs from
 * VMX/SVM, which the model follows), `host-config` (the recording kernel's configuration, CPU or module
 * parameters), `linux-version` (Linux 6.18 there, 6.12 in the model), `deliberate` (docs/fidelity.md).
 *
 * Each entry names its facts exactly where it can, so each fact flips on its own; `where` says which of
 * their differences it covers (a fact implemented with a wrong answer then shows up as a new difference).
 *
 * @module
 */
import type { Mismatch } from './replay/compare.js';
import type { Divergence } from './replay/explain.js';

/** Both fds' facts of each capability: `cap.system.KVM_CAP_X` and `cap.vm.KVM_CAP_X`. */
function caps(...names: readonly string[]): string[] {
  return names.flatMap((n) => [`cap.system.KVM_CAP_${n}`, `cap.vm.KVM_CAP_${n}`]);
}

/** `prefix.` + each name. */
function ids(prefix: string, ...names: readonly string[]): string[] {
  return names.map((n) => `${prefix}.${n}`);
}

/** The model answers an ioctl it does not have as an unknown one: −1 with EINVAL (system, vCPU fd) or ENOTTY (VM fd). */
function unknownIoctl(m: Mismatch): boolean {
  if (m.path.endsWith('.ret')) return m.actual === '-1';
  return m.path.endsWith('.errno') && (m.actual === 'EINVAL' || m.actual === 'ENOTTY');
}

/** A capability the model answers 0 for. */
function capZero(m: Mismatch): boolean {
  return m.path.endsWith('.ret') && m.actual === '0';
}

/** The model's interpreter stops at an instruction it does not execute: KVM_EXIT_INTERNAL_ERROR (17). */
function interpreterStops(m: Mismatch): boolean {
  return m.path.endsWith('.run.exit_reason') && m.actual === '17';
}

/** Guest families the interpreter does not execute yet (issue 12), by instruction. */
const MISSING_INSTRUCTIONS: ReadonlyArray<readonly [family: string, programs: number, what: string, emulator: string]> = [
  ['bcd', 2, 'DAS/AAM/AAD', 'em_das, em_aam, em_aad'],
  ['into', 1, 'INTO', 'em_into'],
];

/** The divergence list. */
export const DIVERGENCES: readonly Divergence[] = [
  // ---- not-modelled: capabilities --------------------------------------------------------------------------
  {
    id: 'caps-irqchip',
    class: 'not-modelled',
    summary: 'KVM_CAP_TSC_DEADLINE_TIMER, KVM_CAP_VAPIC and KVM_CAP_SET_BOOT_CPU_ID are 0 in the model: the guest\'s TSC-deadline MSR does not reach the in-kernel LAPIC yet, and KVM_SET_VAPIC_ADDR / KVM_TPR_ACCESS_REPORTING / KVM_SET_BOOT_CPU_ID are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension'],
    facts: caps('TSC_DEADLINE_TIMER', 'VAPIC', 'SET_BOOT_CPU_ID'),
    where: capZero,
  },
  {
    id: 'caps-x2apic-api-6.18',
    class: 'linux-version',
    summary: 'KVM_CAP_X2APIC_API is KVM_X2APIC_API_VALID_FLAGS: 3 in Linux 6.12 (USE_32BIT_IDS | DISABLE_BROADCAST_QUIRK), which the model answers; the recording 6.18 kernel adds two suppress-EOI-broadcast flags (15 on /dev/kvm, 11 on a VM fd).',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (KVM_CAP_X2APIC_API)', 'arch/x86/include/uapi/asm/kvm.h KVM_X2APIC_API_*'],
    facts: caps('X2APIC_API'),
    where: (m) => m.path.endsWith('.ret') && m.actual === '3',
  },
  {
    id: 'caps-vcpu-state',
    class: 'not-modelled',
    summary: 'The capabilities of the vCPU state ioctls (MP state, events, debug registers, XSAVE, XCRs, SREGS2, TSC frequency, MCE, sync regs, guest debug, …) are 0 in the model (issue 11).',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension'],
    facts: caps('MP_STATE', 'VCPU_EVENTS', 'DEBUGREGS', 'XSAVE', 'XSAVE2', 'XCRS', 'SREGS2', 'GET_TSC_KHZ', 'KVMCLOCK_CTRL', 'MCE', 'SYNC_REGS',
      'SET_GUEST_DEBUG', 'SET_GUEST_DEBUG2', 'X86_ROBUST_SINGLESTEP', 'ENABLE_CAP', 'VCPU_ATTRIBUTES', 'LAST_CPU', 'INTERNAL_ERROR_DATA',
      'EXIT_ON_EMULATION_FAILURE', 'GET_MSR_FEATURES', 'MSR_PLATFORM_INFO', 'EXT_EMUL_CPUID', 'ENFORCE_PV_FEATURE_CPUID', 'ASYNC_PF',
      'ASYNC_PF_INT', 'STEAL_TIME', 'X86_GUEST_MODE', 'X86_APIC_BUS_CYCLES_NS'),
    where: capZero,
  },
  {
    id: 'caps-vm',
    class: 'not-modelled',
    summary: 'The capabilities of the VM ioctls (coalesced MMIO/PIO, ioeventfd, read-only memory, clock, KVM_ENABLE_CAP and what it enables, dirty logging, MEMORY_REGION2, stats fd, …) are 0 in the model (issue 11).',
    linux: ['virt/kvm/kvm_main.c kvm_vm_ioctl_check_extension_generic', 'arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension'],
    reason: 'KVM_CAP_DISABLE_QUIRKS2 is 0xff (the 8 quirks up to SLOT_ZAP_ALL) in 6.12; the recording 6.18 kernel answers 0x5ff.',
    facts: caps('COALESCED_MMIO', 'COALESCED_PIO', 'IOEVENTFD', 'IOEVENTFD_NO_LENGTH', 'IOEVENTFD_ANY_LENGTH', 'READONLY_MEM',
      'SET_IDENTITY_MAP_ADDR', 'ADJUST_CLOCK', 'CLOCKSOURCE', 'ENABLE_CAP_VM', 'X86_USER_SPACE_MSR', 'X86_MSR_FILTER', 'EXCEPTION_PAYLOAD',
      'MANUAL_DIRTY_LOG_PROTECT2', 'X86_TRIPLE_FAULT_EVENT', 'X86_DISABLE_EXITS', 'DISABLE_QUIRKS', 'DISABLE_QUIRKS2', 'DIRTY_LOG_RING',
      'DIRTY_LOG_RING_ACQ_REL', 'USER_MEMORY2', 'MEMORY_FAULT_INFO', 'PMU_EVENT_FILTER', 'PMU_EVENT_MASKED_EVENTS', 'VM_DISABLE_NX_HUGE_PAGES',
      'HALT_POLL', 'BINARY_STATS_FD', 'DEVICE_CTRL', 'SYS_ATTRIBUTES', 'SYSTEM_EVENT_DATA', 'EXIT_HYPERCALL', 'DESTROY_MEMORY_REGION_WORKS',
      'JOIN_MEMORY_REGIONS_WORKS', 'MMU_SHADOW_CACHE_CONTROL', 'PCI_SEGMENT', 'VM_COPY_ENC_CONTEXT_FROM', 'VM_MOVE_ENC_CONTEXT_FROM'),
    where: capZero,
  },

  // ---- not-modelled: /dev/kvm ioctls -----------------------------------------------------------------------
  {
    id: 'system-msr-index-lists',
    class: 'not-modelled',
    summary: 'KVM_GET_MSR_INDEX_LIST and KVM_GET_MSR_FEATURE_INDEX_LIST (E2BIG with the needed count) are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_dev_ioctl (KVM_GET_MSR_INDEX_LIST, KVM_GET_MSR_FEATURE_INDEX_LIST)'],
    facts: [...ids('system.msr-index-list', 'too-small', 'exact-count', 'content', 'null'), ...ids('system.msr-feature-index-list', 'too-small', 'exact-count', 'content', 'null')],
    where: unknownIoctl,
  },
  {
    id: 'system-feature-msrs',
    class: 'not-modelled',
    summary: 'KVM_GET_MSRS on /dev/kvm (feature MSRs) is not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_dev_ioctl (KVM_GET_MSRS → msr_io(NULL, …, do_get_feature_msr))', 'arch/x86/kvm/x86.c kvm_get_feature_msr'],
    facts: ids('system.get-msrs', 'none', 'common-features', 'common-feature-values', 'stops-at-non-feature', 'unknown', 'too-many', 'null'),
    where: unknownIoctl,
  },
  {
    id: 'system-cpuid',
    class: 'not-modelled',
    summary: 'KVM_GET_SUPPORTED_CPUID and KVM_GET_EMULATED_CPUID are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_dev_ioctl', 'arch/x86/kvm/cpuid.c kvm_dev_ioctl_get_cpuid'],
    facts: [
      ...ids('system.supported-cpuid', 'too-small', 'zero', 'exact-count', 'above-max', 'content', 'null'),
      ...ids('system.emulated-cpuid', 'too-small', 'zero', 'exact-count', 'above-max', 'content', 'null'),
    ],
    where: unknownIoctl,
  },
  {
    id: 'system-mce-cap',
    class: 'not-modelled',
    summary: 'KVM_X86_GET_MCE_CAP_SUPPORTED is not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_dev_ioctl (KVM_X86_GET_MCE_CAP_SUPPORTED)'],
    facts: ['system.mce-cap-supported'],
    where: unknownIoctl,
  },

  // ---- not-modelled: VM ioctls -----------------------------------------------------------------------------
  {
    id: 'vm-enable-cap',
    class: 'not-modelled',
    summary: 'KVM_ENABLE_CAP on a VM fd takes only the interrupt capabilities (SPLIT_IRQCHIP, X2APIC_API) in the model; MAX_VCPU_ID, X86_USER_SPACE_MSR, EXCEPTION_PAYLOAD, MANUAL_DIRTY_LOG_PROTECT2, X86_TRIPLE_FAULT_EVENT, X86_DISABLE_EXITS and DISABLE_QUIRKS2 are refused with EINVAL.',
    linux: ['virt/kvm/kvm_main.c kvm_vm_ioctl_enable_cap_generic', 'arch/x86/kvm/x86.c kvm_vm_ioctl_enable_cap'],
    facts: [
      ...ids('vm.enable-cap', 'user-space-msr', 'exception-payload', 'manual-dirty-log-protect2', 'triple-fault-event', 'disable-exits.hlt',
        'disable-exits.after-vcpu', 'disable-quirks2'),
      ...ids('vm.max-vcpu-id', 'lower', 'change'),
    ],
    where: (m) => unknownIoctl(m) || (m.step === 'KVM_ENABLE_CAP' && (m.path.endsWith('.ret') || m.path.endsWith('.errno'))),
  },
  {
    id: 'vm-identity-map-addr',
    class: 'not-modelled',
    summary: 'KVM_SET_IDENTITY_MAP_ADDR is not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vm_ioctl (KVM_SET_IDENTITY_MAP_ADDR)'],
    facts: ids('vm.set-identity-map-addr', 'usual', 'after-vcpu', 'null'),
    where: unknownIoctl,
  },
  {
    id: 'vm-boot-cpu-id',
    class: 'not-modelled',
    summary: 'KVM_SET_BOOT_CPU_ID is not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vm_ioctl (KVM_SET_BOOT_CPU_ID)'],
    facts: ['vm.set-boot-cpu-id.before-vcpus', 'vm.set-boot-cpu-id.after-vcpu', 'vcpu.reset.apic-base.boot-cpu-id'],
    where: unknownIoctl,
  },
  {
    id: 'vm-clock',
    class: 'not-modelled',
    summary: 'KVM_GET_CLOCK and KVM_SET_CLOCK are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_get_clock, kvm_vm_ioctl_set_clock'],
    facts: ['vm.get-clock', 'vm.set-clock.zero', 'vm.set-clock.bad-flags'],
    where: unknownIoctl,
  },
  {
    id: 'vm-nr-mmu-pages',
    class: 'not-modelled',
    summary: 'KVM_SET_NR_MMU_PAGES is not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vm_ioctl (KVM_SET_NR_MMU_PAGES), kvm_vm_ioctl_set_nr_mmu_pages'],
    facts: ['vm.nr-mmu-pages.set-get', 'vm.nr-mmu-pages.too-few'],
    where: unknownIoctl,
  },
  {
    id: 'vm-coalesced-mmio',
    class: 'not-modelled',
    summary: 'KVM_REGISTER_COALESCED_MMIO / KVM_UNREGISTER_COALESCED_MMIO are not modelled.',
    linux: ['virt/kvm/coalesced_mmio.c kvm_vm_ioctl_register_coalesced_mmio'],
    facts: ['vm.coalesced-mmio.register-unregister'],
    where: unknownIoctl,
  },
  {
    id: 'vm-ioeventfd',
    class: 'not-modelled',
    summary: 'KVM_IOEVENTFD is not modelled.',
    linux: ['virt/kvm/eventfd.c kvm_ioeventfd, kvm_assign_ioeventfd'],
    facts: ['vm.ioeventfd.bad-flags', 'vm.ioeventfd.bad-fd'],
    where: unknownIoctl,
  },
  {
    id: 'vm-msr-filter',
    class: 'not-modelled',
    summary: 'KVM_X86_SET_MSR_FILTER is not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_set_msr_filter'],
    facts: ['vm.msr-filter.default-allow', 'vm.msr-filter.bad-flags'],
    where: unknownIoctl,
  },
  {
    id: 'stats-fd',
    class: 'not-modelled',
    summary: 'KVM_GET_STATS_FD (VM and vCPU) is not modelled.',
    linux: ['virt/kvm/kvm_main.c kvm_vm_ioctl_get_stats_fd, kvm_vcpu_ioctl_get_stats_fd'],
    facts: ['vm.get-stats-fd', 'vcpu.get-stats-fd'],
    where: unknownIoctl,
  },
  {
    id: 'vm-dirty-log',
    class: 'not-modelled',
    summary: 'KVM_GET_DIRTY_LOG and KVM_CLEAR_DIRTY_LOG are not modelled (nor the tracking of guest writes behind them).',
    linux: ['virt/kvm/kvm_main.c kvm_vm_ioctl_get_dirty_log, kvm_get_dirty_log_protect, kvm_clear_dirty_log_protect, mark_page_dirty_in_slot'],
    facts: ['vm.get-dirty-log.no-slot', 'run.dirty-log', 'run.dirty-log.not-logging', 'run.clear-dirty-log.without-manual-protect'],
    where: unknownIoctl,
  },
  {
    id: 'memslot2',
    class: 'not-modelled',
    summary: 'KVM_SET_USER_MEMORY_REGION2 is not modelled.',
    linux: ['virt/kvm/kvm_main.c kvm_vm_ioctl (KVM_SET_USER_MEMORY_REGION2), kvm_set_memory_region'],
    facts: ids('memslot2', 'create', 'guest-memfd', 'unknown-flag', 'then-v1'),
    where: unknownIoctl,
  },
  {
    id: 'memslot-above-2-53',
    class: 'not-modelled',
    summary: 'KVM_SET_USER_MEMORY_REGION with a guest address, size or user address above 2^53 is EFAULT in the model (its struct takes safe integers); Linux checks the values: EINVAL.',
    linux: ['virt/kvm/kvm_main.c kvm_set_memory_region (alignment, access_ok, overflow and KVM_MEM_MAX_NR_PAGES checks)', 'arch/x86/kvm/x86.c kvm_arch_prepare_memory_region (kvm_mmu_max_gfn)'],
    facts: ids('memslot', 'uaddr-kernel', 'gpa-above-2-53', 'gpa-top', 'gpa-wraps', 'size-above-2-53', 'uaddr-above-2-53'),
    where: (m) => m.path.endsWith('.errno') && m.expected === 'EINVAL' && m.actual === 'EFAULT',
  },

  // ---- not-modelled: vCPU ioctls ---------------------------------------------------------------------------
  {
    id: 'vcpu-sregs2',
    class: 'not-modelled',
    summary: 'KVM_GET_SREGS2 / KVM_SET_SREGS2 are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl (KVM_GET_SREGS2, KVM_SET_SREGS2), __get_sregs2, __set_sregs2'],
    facts: ['vcpu.reset.sregs2', 'vcpu.round-trip.sregs2'],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-fpu',
    class: 'not-modelled',
    summary: 'KVM_GET_FPU / KVM_SET_FPU are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl_get_fpu, kvm_arch_vcpu_ioctl_set_fpu'],
    facts: ['vcpu.reset.fpu', 'vcpu.round-trip.fpu', 'vcpu.fpu.set', 'vcpu.fpu.mxcsr-reserved'],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-xcrs',
    class: 'not-modelled',
    summary: 'KVM_GET_XCRS / KVM_SET_XCRS are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_vcpu_ioctl_x86_get_xcrs, kvm_vcpu_ioctl_x86_set_xcrs, __kvm_set_xcr'],
    facts: ['vcpu.reset.xcrs', 'vcpu.round-trip.xcrs', 'vcpu.xcrs.x87', 'vcpu.xcrs.other-index'],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-events',
    class: 'not-modelled',
    summary: 'KVM_GET_VCPU_EVENTS / KVM_SET_VCPU_EVENTS are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_vcpu_ioctl_x86_get_vcpu_events, kvm_vcpu_ioctl_x86_set_vcpu_events'],
    facts: ['vcpu.reset.vcpu-events', 'vcpu.round-trip.vcpu-events', 'vcpu.sregs.interrupt-bitmap',
      ...ids('vcpu.vcpu-events', 'nmi-masked', 'nmi-pending', 'exception', 'interrupt', 'shadow')],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-mp-state',
    class: 'not-modelled',
    summary: 'KVM_GET_MP_STATE / KVM_SET_MP_STATE are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl_get_mpstate, kvm_arch_vcpu_ioctl_set_mpstate'],
    facts: ['vcpu.reset.mp-state', 'vcpu.reset.mp-state.irqchip-bsp', 'vcpu.reset.mp-state.irqchip-ap', 'vcpu.round-trip.mp-state'],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-debugregs',
    class: 'not-modelled',
    summary: 'KVM_GET_DEBUGREGS / KVM_SET_DEBUGREGS are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_vcpu_ioctl_x86_get_debugregs, kvm_vcpu_ioctl_x86_set_debugregs'],
    facts: ['vcpu.reset.debugregs', 'vcpu.round-trip.debugregs', 'vcpu.debugregs.set'],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-xsave',
    class: 'not-modelled',
    summary: 'KVM_GET_XSAVE / KVM_SET_XSAVE / KVM_GET_XSAVE2 are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_vcpu_ioctl_x86_get_xsave, kvm_vcpu_ioctl_x86_get_xsave2, kvm_vcpu_ioctl_x86_set_xsave'],
    facts: ['vcpu.reset.xsave', 'vcpu.round-trip.xsave', 'vcpu.get-xsave2'],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-msrs',
    class: 'not-modelled',
    summary: 'KVM_GET_MSRS / KVM_SET_MSRS on a vCPU are not modelled.',
    linux: ['arch/x86/kvm/x86.c msr_io, do_get_msr, do_set_msr, kvm_get_msr_common, kvm_set_msr_common'],
    facts: [
      ...ids('vcpu.reset.msr', 'apic-base', 'sysenter-cs', 'sysenter-esp', 'sysenter-eip', 'misc-enable', 'pat', 'mtrr-def-type', 'mtrr-cap',
        'mcg-cap', 'mcg-status', 'tsc-adjust', 'spec-ctrl', 'efer', 'star', 'lstar', 'cstar', 'sfmask', 'fs-base', 'gs-base', 'kernel-gs-base',
        'tsc-aux', 'xss', 'kvm-system-time', 'kvm-wall-clock', 'kvm-async-pf-en', 'platform-info', 'smbase', 'unknown'),
      ...ids('vcpu.msrs', 'set-sysenter', 'set-stops-at-unknown', 'set-pat', 'set-pat-reserved-type', 'set-efer-lme-without-cpuid',
        'set-apic-base-not-bsp', 'set-mtrr-def-type', 'set-misc-enable', 'set-lstar-non-canonical', 'get-too-many', 'get-none'),
    ],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-cpuid2',
    class: 'not-modelled',
    summary: 'KVM_GET_CPUID2 / KVM_SET_CPUID2 are not modelled.',
    linux: ['arch/x86/kvm/cpuid.c kvm_vcpu_ioctl_set_cpuid2, kvm_vcpu_ioctl_get_cpuid2'],
    facts: ['vcpu.reset.cpuid2', 'vcpu.sregs.long-mode-with-cpuid', 'vcpu.xcrs.sse-with-cpuid',
      ...ids('vcpu.cpuid2', 'set-get', 'get-too-small', 'set-too-many', 'set-empty', 'set-supported')],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-tsc-khz',
    class: 'not-modelled',
    summary: 'KVM_GET_TSC_KHZ / KVM_SET_TSC_KHZ are not modelled.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl (KVM_GET_TSC_KHZ, KVM_SET_TSC_KHZ), kvm_set_tsc_khz'],
    facts: ['vcpu.reset.tsc-khz', 'vcpu.tsc-khz.set-zero'],
    where: unknownIoctl,
  },
  {
    id: 'vcpu-misc-ioctls',
    class: 'not-modelled',
    summary: 'KVM_SET_SIGNAL_MASK, KVM_X86_SETUP_MCE, KVM_SET_GUEST_DEBUG and KVM_TRANSLATE are not modelled.',
    linux: ['virt/kvm/kvm_main.c kvm_vcpu_ioctl (KVM_SET_SIGNAL_MASK, KVM_TRANSLATE, KVM_SET_GUEST_DEBUG)', 'arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl (KVM_X86_SETUP_MCE)'],
    facts: ['vcpu.signal-mask.null', 'vcpu.setup-mce.ten-banks', 'vcpu.guest-debug.singlestep', 'vcpu.guest-debug.bad-control', 'vcpu.translate.real-mode'],
    where: unknownIoctl,
  },

  // ---- not-modelled: details of what the model has ------------------------------------------------------
  {
    id: 'reset-tr-ldtr-idtr',
    class: 'not-modelled',
    summary: 'The reset TR and LDTR are all zero in the model (Linux: TR type 11, a busy TSS, and LDTR type 2, an LDT, both present with limit 0xffff) and the reset IDTR limit is 0x3ff (Linux: 0xffff).',
    linux: ['arch/x86/kvm/vmx/vmx.c vmx_vcpu_reset → __vmx_vcpu_reset / seg_setup, init_vmcs', 'arch/x86/kvm/svm/svm.c init_vmcb (init_sys_seg)'],
    facts: ['vcpu.reset.sregs', 'vcpu.round-trip.sregs'],
    where: (m) => /\.out\.(tr|ldt)\.(limit|type|present)$/.test(m.path) || m.path.endsWith('.out.idt.limit'),
  },
  {
    id: 'reset-apic-base-ap',
    class: 'not-modelled',
    summary: 'The APIC base of an application processor is 0xfee00900 in the model; Linux clears the BSP bit for every vCPU but the boot one (0xfee00800).',
    linux: ['arch/x86/kvm/lapic.c kvm_lapic_reset (MSR_IA32_APICBASE_BSP only if kvm_vcpu_is_reset_bsp)', 'arch/x86/kvm/x86.c kvm_vcpu_reset'],
    facts: ['vcpu.reset.apic-base.ap'],
    where: (m) => m.path.endsWith('.out.apic_base'),
  },
  {
    id: 'set-sregs-validation',
    class: 'not-modelled',
    summary: 'KVM_SET_SREGS accepts bad CR0/CR4/EFER/CS.L/APIC-base combinations that Linux refuses with EINVAL, and keeps a CR8 above 15 that Linux drops.',
    linux: ['arch/x86/kvm/x86.c kvm_is_valid_sregs, kvm_is_valid_cr0, kvm_is_valid_cr4 (__cr4_reserved_bits), __set_sregs_common, kvm_set_cr8', 'arch/x86/kvm/lapic.c kvm_apic_set_base'],
    facts: ids('vcpu.sregs', 'cr0-nw-without-cd', 'cr0-bit-32', 'cr4-reserved', 'cr4-vmxe', 'efer-lma-alone', 'cs-l-without-lma', 'long-mode-without-pae',
      'apic-base-reserved', 'apic-base-x2apic-only', 'cr8-above-15'),
    where: (m) => (m.step === 'KVM_SET_SREGS' && (m.path.endsWith('.ret') || m.path.endsWith('.errno'))) || m.path.endsWith('.out.cr8'),
  },
  {
    id: 'immediate-exit-reason',
    class: 'not-modelled',
    summary: 'KVM_RUN with immediate_exit sets exit_reason to KVM_EXIT_INTR in the model; Linux returns EINTR and leaves exit_reason as it was.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl_run (immediate_exit: -EINTR after completing pending I/O, before entering the guest; exit_reason is not written)'],
    facts: ids('run.immediate-exit', 'fresh', 'after-hlt', 'after-out', 'after-in'),
    where: (m) => m.path.endsWith('.run.exit_reason') && m.actual === '10',
  },
  {
    id: 'emulation-failure-ndata',
    class: 'not-modelled',
    summary: 'An emulation failure without instruction bytes has internal.ndata 0 in the model; Linux always reports the flags word and five words of exit information (ndata 6, 8 with instruction bytes).',
    linux: ['arch/x86/kvm/x86.c prepare_emulation_failure_exit, handle_emulation_failure'],
    facts: ['run.fetch-outside-memory'],
    where: (m) => m.path.endsWith('.run.internal.ndata') || m.path.endsWith('.run.internal.data.length'),
  },
  ...MISSING_INSTRUCTIONS.map(([family, programs, what, emulator]): Divergence => ({
    id: `instructions-${family}`,
    class: 'not-modelled',
    summary: `The guest interpreter does not execute ${what} yet (issue 12): it stops with KVM_EXIT_INTERNAL_ERROR where the guest continues.`,
    linux: ['Intel SDM Vol. 2 (the instructions)', `arch/x86/kvm/emulate.c ${emulator} (what ran them on the recording machine)`],
    facts: Array.from({ length: programs }, (_, n) => `guest.${family}.s${n + 1}`),
    where: interpreterStops,
  })),

  // ---- emulator-vendor (RFLAGS) ------------------------------------------------------------------------
  {
    id: 'rflags-vm-bit',
    class: 'emulator-vendor',
    summary: 'KVM_SET_REGS with RFLAGS all ones: the recording machine returns RFLAGS.VM (bit 17) cleared; the model returns every bit as set.',
    linux: [
      'arch/x86/kvm/x86.c __set_regs → kvm_set_rflags, __get_regs → kvm_get_rflags',
      'arch/x86/kvm/vmx/vmx.c vmx_set_rflags / vmx_get_rflags (in real mode the saved RFLAGS come back whole)',
      'arch/x86/kvm/svm/svm.c svm_set_rflags / svm_get_rflags (the VMCB holds what was set)',
    ],
    reason: 'kvm_pvm, the recording machine\'s vendor module, filters RFLAGS.VM in its set_rflags; VMX and SVM, which the model follows, do not.',
    facts: ['vcpu.regs.rflags-all-ones'],
    where: (m) => m.step === 'KVM_GET_REGS',
  },

  // ---- emulator-vendor -----------------------------------------------------------------------------------
  {
    id: 'rip-after-out',
    class: 'emulator-vendor',
    summary: 'After an OUT exit, RIP is already past the OUT on the recording machine (KVM\'s emulator writes RIP back before exiting); on VMX/SVM, as in the model, it stays on the OUT until the next KVM_RUN completes it.',
    linux: ['arch/x86/kvm/x86.c kvm_fast_pio, kvm_fast_pio_out, complete_fast_pio_out (VMX/SVM)', 'arch/x86/kvm/x86.c x86_emulate_instruction (writeback before the PIO exit for an OUT)'],
    facts: ['guest.*', 'run.out-byte', 'run.out-dx-word', 'run.out-dword', 'run.ud2-through-ivt'],
    where: (m) => {
      if (m.step !== 'KVM_GET_REGS' || !m.path.endsWith('.out.rip')) return false;
      const d = BigInt(m.expected) - BigInt(m.actual);
      return d >= 1n && d <= 3n; // the OUT's length: EE, E6 ib, 66 EF, 66 E7 ib
    },
  },
  {
    id: 'cap-nested-state',
    class: 'emulator-vendor',
    summary: 'KVM_CAP_NESTED_STATE is 0 on the recording machine (kvm_pvm has no nested state); VMX with nested=1, as in the Intel model, answers 8320 (the model has no KVM_GET_NESTED_STATE, issue 11).',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (nested_ops->get_state(NULL, NULL, 0))', 'arch/x86/kvm/vmx/nested.c vmx_get_nested_state'],
    facts: caps('NESTED_STATE'),
    vendors: ['intel'],
  },
  {
    id: 'cap-smaller-maxphyaddr',
    class: 'emulator-vendor',
    summary: 'KVM_CAP_SMALLER_MAXPHYADDR is 1 on the recording machine (shadow paging); VMX with EPT (unless kvm_intel.allow_smaller_maxphyaddr) and SVM with NPT, as the models, answer 0.',
    linux: ['arch/x86/kvm/vmx/vmx.c vmx_init (`if (!enable_ept) allow_smaller_maxphyaddr = true`)', 'arch/x86/kvm/svm/svm.c svm_hardware_setup (allow_smaller_maxphyaddr = !npt_enabled)'],
    facts: caps('SMALLER_MAXPHYADDR'),
  },
  {
    id: 'triple-fault-in-emulator',
    class: 'emulator-vendor',
    summary: 'INT3 with an IDT limit of 0 in real mode ends in an emulation failure on the recording machine; VMX/SVM hardware triple-faults (KVM_EXIT_SHUTDOWN), as the model does.',
    linux: ['arch/x86/kvm/emulate.c emulate_int_real (the emulator\'s real-mode interrupt delivery)', 'arch/x86/kvm/vmx/vmx.c handle_triple_fault, arch/x86/kvm/svm/svm.c shutdown_interception (KVM_EXIT_SHUTDOWN)'],
    facts: ['run.triple-fault'],
    where: (m) => m.path.endsWith('.run.exit_reason'),
  },
  {
    id: 'reset-vector-without-memory',
    class: 'emulator-vendor',
    summary: 'KVM_RUN of a vCPU at the reset vector in a VM without memory fails with ENOSPC on the recording machine (kvm_pvm); VMX/SVM report an emulation failure.',
    linux: ['arch/x86/kvm/x86.c handle_emulation_failure, prepare_emulation_failure_exit'],
    facts: ['run.reset-vector-no-memory'],
    where: (m) => m.path.endsWith('.ret') || m.path.endsWith('.errno'),
  },
  {
    id: 'unmapped-user-memory',
    class: 'emulator-vendor',
    summary: 'Executing from a slot whose user memory is not mapped is an emulation failure (ndata 6) on the recording machine; on VMX/SVM the fault on the host address makes KVM_RUN fail with EFAULT. The model reports an emulation failure with ndata 0.',
    linux: ['arch/x86/kvm/mmu/mmu.c kvm_handle_error_pfn (-EFAULT)', 'virt/kvm/kvm_main.c hva_to_pfn'],
    facts: ['run.unmapped-user-memory'],
    where: (m) => m.path.endsWith('.run.internal.ndata') || m.path.endsWith('.run.internal.data.length'),
  },

  // ---- host-config ---------------------------------------------------------------------------------------
  {
    id: 'no-smm',
    class: 'host-config',
    summary: 'The recording kernel has no SMM support (KVM_CAP_X86_SMM 0, KVM_SMI ENOTTY): memory address space 1 is EINVAL there; with CONFIG_KVM_SMM (the default), as in the model, it is SMM memory.',
    linux: ['arch/x86/include/asm/kvm_host.h KVM_ADDRESS_SPACE_NUM / kvm_arch_nr_memslot_as_ids', 'virt/kvm/kvm_main.c kvm_set_memory_region (as_id check)', 'arch/x86/kvm/x86.c kvm_arch_vcpu_ioctl (KVM_SMI under CONFIG_KVM_SMM)'],
    facts: ['memslot.address-space-1', 'memslot.address-spaces-overlap', 'vcpu.smi'],
    where: (m) => m.path.endsWith('.ret') || m.path.endsWith('.errno'),
  },
  {
    id: 'no-sev',
    class: 'host-config',
    summary: 'The recording host has no SEV (KVM_MEMORY_ENCRYPT_OP is ENOTTY); the AMD model has SEV enabled and accepts KVM_SEV_INIT.',
    linux: ['arch/x86/kvm/x86.c kvm_arch_vm_ioctl (KVM_MEMORY_ENCRYPT_OP: -ENOTTY without mem_enc_ioctl)', 'arch/x86/kvm/svm/sev.c sev_mem_enc_ioctl'],
    facts: ['vm.memory-encrypt-op'],
    vendors: ['amd'],
  },

  // ---- linux-version -------------------------------------------------------------------------------------
  {
    id: 'cap-one-reg',
    class: 'linux-version',
    summary: 'KVM_CAP_ONE_REG is 1 on the recording 6.18 kernel (x86 gained KVM_GET/SET_ONE_REG for MSRs after 6.12); 6.12, as the model, answers 0.',
    linux: ['arch/x86/kvm/x86.c kvm_vm_ioctl_check_extension (KVM_CAP_ONE_REG, 6.18)'],
    facts: caps('ONE_REG'),
  },
];
