/**
 * More `/dev/kvm` constants under their Linux names: flags and limits of the vCPU-state, VM and system ioctls
 * (`include/uapi/linux/kvm.h`, `arch/x86/include/uapi/asm/kvm.h`, `arch/x86/include/asm/kvm_host.h`,
 * `arch/x86/kvm/x86.c`).
 *
 * @module
 */

/* ---- limits (arch/x86/kvm/x86.c, arch/x86/include/asm/kvm_host.h) ------------------------------------- */

/** `MAX_IO_MSRS`: KVM_GET_MSRS / KVM_SET_MSRS take fewer than this many entries (E2BIG otherwise). */
export const MAX_IO_MSRS = 256;
/** `KVM_MAX_CPUID_ENTRIES`: the most CPUID entries a vCPU holds. */
export const KVM_MAX_CPUID_ENTRIES = 256;
/** `KVM_MAX_MCE_BANKS`: what `KVM_CHECK_EXTENSION(KVM_CAP_MCE)` answers. */
export const KVM_MAX_MCE_BANKS = 32;
/** `KVM_MAX_XCRS` (`kvm_xcrs.xcrs[]` length). */
export const KVM_MAX_XCRS = 16;
/** `KVM_MIN_ALLOC_MMU_PAGES`: the smallest `KVM_SET_NR_MMU_PAGES`. */
export const KVM_MIN_ALLOC_MMU_PAGES = 64;
/** `KVM_MSR_FILTER_MAX_RANGES`. */
export const KVM_MSR_FILTER_MAX_RANGES = 16;
/** `KVM_MSR_FILTER_MAX_BITMAP_SIZE`: 0x600 bytes per range bitmap. */
export const KVM_MSR_FILTER_MAX_BITMAP_SIZE = 0x600;

/* ---- kvm_vcpu_events ------------------------------------------------------------------------------------ */

/** `kvm_vcpu_events.flags`: `nmi.pending` is valid. */
export const KVM_VCPUEVENT_VALID_NMI_PENDING = 0x00000001;
/** `kvm_vcpu_events.flags`: `sipi_vector` is valid. */
export const KVM_VCPUEVENT_VALID_SIPI_VECTOR = 0x00000002;
/** `kvm_vcpu_events.flags`: `interrupt.shadow` is valid. */
export const KVM_VCPUEVENT_VALID_SHADOW = 0x00000004;
/** `kvm_vcpu_events.flags`: the `smi` fields are valid. */
export const KVM_VCPUEVENT_VALID_SMM = 0x00000008;
/** `kvm_vcpu_events.flags`: the exception payload is valid (KVM_CAP_EXCEPTION_PAYLOAD). */
export const KVM_VCPUEVENT_VALID_PAYLOAD = 0x00000010;
/** `kvm_vcpu_events.flags`: `triple_fault` is valid (KVM_CAP_X86_TRIPLE_FAULT_EVENT). */
export const KVM_VCPUEVENT_VALID_TRIPLE_FAULT = 0x00000020;
/** `kvm_vcpu_events.interrupt.shadow`: blocking by MOV SS / POP SS. */
export const KVM_X86_SHADOW_INT_MOV_SS = 0x01;
/** `kvm_vcpu_events.interrupt.shadow`: blocking by STI. */
export const KVM_X86_SHADOW_INT_STI = 0x02;

/* ---- kvm_sregs2 ----------------------------------------------------------------------------------------- */

/** `kvm_sregs2.flags`: `pdptrs` holds the PAE page-directory pointers. */
export const KVM_SREGS2_FLAGS_PDPTRS_VALID = 1;

/* ---- MSR exits and filters ------------------------------------------------------------------------------ */

/** `KVM_MSR_EXIT_REASON_VALID_MASK`: INVAL | UNKNOWN | FILTER. */
export const KVM_MSR_EXIT_REASON_VALID_MASK = 0b111;
/** `kvm_msr_filter_range.flags`: the bitmap filters reads. */
export const KVM_MSR_FILTER_READ = 1 << 0;
/** `kvm_msr_filter_range.flags`: the bitmap filters writes. */
export const KVM_MSR_FILTER_WRITE = 1 << 1;
/** `KVM_MSR_FILTER_RANGE_VALID_MASK`. */
export const KVM_MSR_FILTER_RANGE_VALID_MASK = KVM_MSR_FILTER_READ | KVM_MSR_FILTER_WRITE;
/** `kvm_msr_filter.flags`: allow what no range covers. */
export const KVM_MSR_FILTER_DEFAULT_ALLOW = 0;
/** `kvm_msr_filter.flags`: deny what no range covers. */
export const KVM_MSR_FILTER_DEFAULT_DENY = 1 << 0;
/** `KVM_MSR_FILTER_VALID_MASK`. */
export const KVM_MSR_FILTER_VALID_MASK = KVM_MSR_FILTER_DEFAULT_DENY;

/* ---- ioeventfd -------------------------------------------------------------------------------------------- */

/** `kvm_ioeventfd.flags`: signal only when the written value equals `datamatch`. */
export const KVM_IOEVENTFD_FLAG_DATAMATCH = 1 << 0;
/** `kvm_ioeventfd.flags`: a port-I/O address (else MMIO). */
export const KVM_IOEVENTFD_FLAG_PIO = 1 << 1;
/** `kvm_ioeventfd.flags`: remove the matching ioeventfd. */
export const KVM_IOEVENTFD_FLAG_DEASSIGN = 1 << 2;
/** `kvm_ioeventfd.flags`: virtio-ccw notify (an s390 bus; on x86 the ioeventfd never fires). */
export const KVM_IOEVENTFD_FLAG_VIRTIO_CCW_NOTIFY = 1 << 3;
/** `kvm_ioeventfd.flags`: fast MMIO (`kvm_ioeventfd_flag_nr_fast_mmio`). */
export const KVM_IOEVENTFD_FLAG_FAST_MMIO = 1 << 4;
/** `KVM_IOEVENTFD_VALID_FLAG_MASK`: `(1 << kvm_ioeventfd_flag_nr_max) - 1`. */
export const KVM_IOEVENTFD_VALID_FLAG_MASK = (1 << 5) - 1;

/* ---- kvm_clock_data ------------------------------------------------------------------------------------- */

/** `kvm_clock_data.flags`: the clock is stable across vCPUs (master clock in use). */
export const KVM_CLOCK_TSC_STABLE = 2;
/** `kvm_clock_data.flags`: `realtime` is valid. */
export const KVM_CLOCK_REALTIME = 1 << 2;
/** `kvm_clock_data.flags`: `host_tsc` is valid. */
export const KVM_CLOCK_HOST_TSC = 1 << 3;
/** `KVM_CLOCK_VALID_FLAGS`: what `KVM_CHECK_EXTENSION(KVM_CAP_ADJUST_CLOCK)` answers (14). */
export const KVM_CLOCK_VALID_FLAGS = KVM_CLOCK_TSC_STABLE | KVM_CLOCK_REALTIME | KVM_CLOCK_HOST_TSC;

/* ---- dirty log ------------------------------------------------------------------------------------------ */

/** `KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE`: KVM_GET_DIRTY_LOG no longer write-protects; KVM_CLEAR_DIRTY_LOG does. */
export const KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE = 1 << 0;
/** `KVM_DIRTY_LOG_INITIALLY_SET`: a slot's bitmap starts all set when logging is turned on. */
export const KVM_DIRTY_LOG_INITIALLY_SET = 1 << 1;
/** `KVM_DIRTY_LOG_MANUAL_CAPS`: what `KVM_CHECK_EXTENSION(KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2)` answers (3). */
export const KVM_DIRTY_LOG_MANUAL_CAPS = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | KVM_DIRTY_LOG_INITIALLY_SET;

/* ---- quirks (KVM_CAP_DISABLE_QUIRKS2) -------------------------------------------------------------------- */

/** `KVM_X86_QUIRK_LINT0_REENABLED`. */
export const KVM_X86_QUIRK_LINT0_REENABLED = 1 << 0;
/** `KVM_X86_QUIRK_CD_NW_CLEARED`. */
export const KVM_X86_QUIRK_CD_NW_CLEARED = 1 << 1;
/** `KVM_X86_QUIRK_LAPIC_MMIO_HOLE`. */
export const KVM_X86_QUIRK_LAPIC_MMIO_HOLE = 1 << 2;
/** `KVM_X86_QUIRK_OUT_7E_INC_RIP`. */
export const KVM_X86_QUIRK_OUT_7E_INC_RIP = 1 << 3;
/** `KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT`. */
export const KVM_X86_QUIRK_MISC_ENABLE_NO_MWAIT = 1 << 4;
/** `KVM_X86_QUIRK_FIX_HYPERCALL_INSN`. */
export const KVM_X86_QUIRK_FIX_HYPERCALL_INSN = 1 << 5;
/** `KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS`. */
export const KVM_X86_QUIRK_MWAIT_NEVER_UD_FAULTS = 1 << 6;
/** `KVM_X86_QUIRK_SLOT_ZAP_ALL` (6.12). */
export const KVM_X86_QUIRK_SLOT_ZAP_ALL = 1 << 7;
/** `KVM_X86_QUIRK_STUFF_FEATURE_MSRS` (6.12). */
export const KVM_X86_QUIRK_STUFF_FEATURE_MSRS = 1 << 8;
/** `KVM_X86_VALID_QUIRKS` of Linux 6.12: bits 0 … 8. */
export const KVM_X86_VALID_QUIRKS = (1 << 9) - 1;

/* ---- the PMU event filter (KVM_SET_PMU_EVENT_FILTER) ----------------------------------------------------- */

/** `KVM_PMU_EVENT_ALLOW`: the listed events may be counted, no others. */
export const KVM_PMU_EVENT_ALLOW = 0;
/** `KVM_PMU_EVENT_DENY`: the listed events may not be counted. */
export const KVM_PMU_EVENT_DENY = 1;
/** `KVM_PMU_EVENT_FLAG_MASKED_EVENTS`: the events are masked entries (`KVM_PMU_ENCODE_MASKED_ENTRY`). */
export const KVM_PMU_EVENT_FLAG_MASKED_EVENTS = 1;
/** `KVM_PMU_EVENT_FLAGS_VALID_MASK`. */
export const KVM_PMU_EVENT_FLAGS_VALID_MASK = KVM_PMU_EVENT_FLAG_MASKED_EVENTS;
/** `KVM_PMU_EVENT_FILTER_MAX_EVENTS` (arch/x86/kvm/pmu.c). */
export const KVM_PMU_EVENT_FILTER_MAX_EVENTS = 300;
/** `KVM_PMU_MASKED_ENTRY_UMASK_MASK`: bits 56–63 of a masked entry. */
export const KVM_PMU_MASKED_ENTRY_UMASK_MASK = 0xffn << 56n;
/** `KVM_PMU_MASKED_ENTRY_UMASK_MATCH`: bits 8–15 of a masked entry. */
export const KVM_PMU_MASKED_ENTRY_UMASK_MATCH = 0xffn << 8n;
/** `KVM_PMU_MASKED_ENTRY_EXCLUDE`: bit 55 of a masked entry. */
export const KVM_PMU_MASKED_ENTRY_EXCLUDE = 1n << 55n;

/* ---- system attributes ---------------------------------------------------------------------------------- */

/** `KVM_X86_XCOMP_GUEST_SUPP` (group 0 of KVM_GET_DEVICE_ATTR on /dev/kvm): the XCR0 features a guest may use. */
export const KVM_X86_XCOMP_GUEST_SUPP = 0;
/** `KVM_VCPU_TSC_CTRL`: the vCPU attribute group of the TSC (KVM_HAS/GET/SET_DEVICE_ATTR on a vCPU fd). */
export const KVM_VCPU_TSC_CTRL = 0;
/** `KVM_VCPU_TSC_OFFSET`: the vCPU's L1 TSC offset (a `__u64` at `addr`), in group {@link KVM_VCPU_TSC_CTRL}. */
export const KVM_VCPU_TSC_OFFSET = 0;

/* ---- binary stats (include/uapi/linux/kvm.h) -------------------------------------------------------------- */

/** `KVM_STATS_TYPE_CUMULATIVE`. */
export const KVM_STATS_TYPE_CUMULATIVE = 0x0 << 0;
/** `KVM_STATS_TYPE_INSTANT`. */
export const KVM_STATS_TYPE_INSTANT = 0x1 << 0;
/** `KVM_STATS_TYPE_PEAK`. */
export const KVM_STATS_TYPE_PEAK = 0x2 << 0;
/** `KVM_STATS_TYPE_LINEAR_HIST`. */
export const KVM_STATS_TYPE_LINEAR_HIST = 0x3 << 0;
/** `KVM_STATS_TYPE_LOG_HIST`. */
export const KVM_STATS_TYPE_LOG_HIST = 0x4 << 0;
/** `KVM_STATS_UNIT_NONE`. */
export const KVM_STATS_UNIT_NONE = 0x0 << 4;
/** `KVM_STATS_UNIT_BYTES`. */
export const KVM_STATS_UNIT_BYTES = 0x1 << 4;
/** `KVM_STATS_UNIT_SECONDS`. */
export const KVM_STATS_UNIT_SECONDS = 0x2 << 4;
/** `KVM_STATS_UNIT_CYCLES`. */
export const KVM_STATS_UNIT_CYCLES = 0x3 << 4;
/** `KVM_STATS_UNIT_BOOLEAN`. */
export const KVM_STATS_UNIT_BOOLEAN = 0x4 << 4;
/** `KVM_STATS_BASE_POW10`. */
export const KVM_STATS_BASE_POW10 = 0x0 << 8;
/** `KVM_STATS_BASE_POW2`. */
export const KVM_STATS_BASE_POW2 = 0x1 << 8;
/** `KVM_STATS_NAME_SIZE`: the name field of each descriptor. */
export const KVM_STATS_NAME_SIZE = 48;
