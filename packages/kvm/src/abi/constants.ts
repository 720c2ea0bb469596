/**
 * The `/dev/kvm` ABI constants, under their Linux names and with their Linux values (x86-64).
 *
 * Sources: `include/uapi/linux/kvm.h` and `arch/x86/include/uapi/asm/kvm.h` (request numbers, capability
 * numbers, exit reasons, flags, VM types, SEV command ids), `include/linux/kvm_host.h` and
 * `arch/x86/include/asm/kvm_host.h` (memory-slot and vCPU limits), `include/linux/miscdevice.h` (the misc
 * minor of `/dev/kvm`).
 *
 * Every ioctl request is computed with the `_IO`/`_IOR`/`_IOW`/`_IOWR` encoders from the structure sizes in
 * `layout.ts`, exactly as the C macros do; the tests compare each one with the hexadecimal value a C
 * program sees. Capability numbers that only other architectures define (PowerPC, s390, Arm, MIPS, RISC-V,
 * LoongArch) are left out: an x86 KVM answers 0 for them, which `KVM_CHECK_EXTENSION` handlers give for
 * any unknown number anyway.
 *
 * @module
 */

import { KVMIO, _IO, _IOR, _IOW, _IOWR, formatIoctl } from './ioctl.js';
import { KVM_LAYOUTS as L } from './layout.js';

/* ------------------------------------------------------------------------------------------------------ */
/* API version, pages and limits                                                                            */
/* ------------------------------------------------------------------------------------------------------ */

/** The value `KVM_GET_API_VERSION` returns. It no longer changes: features are probed with KVM_CHECK_EXTENSION. */
export const KVM_API_VERSION = 12;

/** x86 page size in bytes (the unit of the vCPU mmap area). */
export const PAGE_SIZE = 4096;

/** Page index, within a vCPU's mmap area, of the port-I/O data page (`KVM_EXIT_IO` data lives here). */
export const KVM_PIO_PAGE_OFFSET = 1;

/** Page index, within a vCPU's mmap area, of the coalesced-MMIO ring. */
export const KVM_COALESCED_MMIO_PAGE_OFFSET = 2;

/** Page index, within a vCPU's mmap area, where the dirty ring starts (when `KVM_CAP_DIRTY_LOG_RING` is on). */
export const KVM_DIRTY_LOG_PAGE_OFFSET = 64;

/**
 * What `KVM_GET_VCPU_MMAP_SIZE` returns on x86: the `struct kvm_run` page, the PIO data page and the
 * coalesced-MMIO ring page, 3 × 4096 = 12288 bytes.
 */
export const KVM_VCPU_MMAP_SIZE = 3 * PAGE_SIZE;

/** Default `io.data_offset` of a `KVM_EXIT_IO`: the start of the PIO page, `KVM_PIO_PAGE_OFFSET * 4096`. */
export const KVM_PIO_DATA_OFFSET = KVM_PIO_PAGE_OFFSET * PAGE_SIZE;

/**
 * Entries in the coalesced-MMIO ring page: `(PAGE_SIZE - sizeof(struct kvm_coalesced_mmio_ring)) /
 * sizeof(struct kvm_coalesced_mmio)` = (4096 − 8) / 24 = 170.
 */
export const KVM_COALESCED_MMIO_MAX = Math.floor(
  (PAGE_SIZE - L.kvm_coalesced_mmio_ring.size) / L.kvm_coalesced_mmio.size,
);

/** Number of interrupt vectors on x86 (`KVM_NR_INTERRUPTS`); `kvm_sregs.interrupt_bitmap` has one bit each. */
export const KVM_NR_INTERRUPTS = 256;

/** All memory slots of one address space: `SHRT_MAX` = 32767 (`KVM_MEM_SLOTS_NUM`). */
export const KVM_MEM_SLOTS_NUM = 32767;

/** Slots x86 KVM keeps for itself (TSS, identity map, APIC access page): `KVM_INTERNAL_MEM_SLOTS` = 3. */
export const KVM_INTERNAL_MEM_SLOTS = 3;

/**
 * Slots user space may use per address space on x86: `KVM_MEM_SLOTS_NUM - KVM_INTERNAL_MEM_SLOTS` = 32764.
 * `KVM_CHECK_EXTENSION(KVM_CAP_NR_MEMSLOTS)` returns this.
 */
export const KVM_USER_MEM_SLOTS = KVM_MEM_SLOTS_NUM - KVM_INTERNAL_MEM_SLOTS;

/**
 * Most vCPUs one VM may have on x86: `CONFIG_KVM_MAX_NR_VCPUS`, default 1024 (4096 with `MAXSMP`).
 * `KVM_CHECK_EXTENSION(KVM_CAP_MAX_VCPUS)` returns this.
 */
export const KVM_MAX_VCPUS = 1024;

/** Ratio of vCPU ids to vCPUs on x86 (APIC ids encode topology, so ids are sparser than vCPUs). */
export const KVM_VCPU_ID_RATIO = 4;

/**
 * vCPU ids must be below this: `KVM_MAX_VCPUS * KVM_VCPU_ID_RATIO` = 4096 on x86.
 * `KVM_CHECK_EXTENSION(KVM_CAP_MAX_VCPU_ID)` returns this.
 */
export const KVM_MAX_VCPU_IDS = KVM_MAX_VCPUS * KVM_VCPU_ID_RATIO;

/** x86 default of the `halt_poll_ns` module parameter, in nanoseconds (`KVM_HALT_POLL_NS_DEFAULT`). */
export const KVM_HALT_POLL_NS_DEFAULT = 200000;

/** Major number of misc character devices (`MISC_MAJOR`); `/dev/kvm` is 10:232. */
export const MISC_MAJOR = 10;

/** The fixed misc minor of `/dev/kvm` (`KVM_MINOR`). */
export const KVM_MINOR = 232;

/* ------------------------------------------------------------------------------------------------------ */
/* ioctls on the system fd (/dev/kvm)                                                                       */
/* ------------------------------------------------------------------------------------------------------ */

/** `_IO(KVMIO, 0x00)` = 0xAE00, system fd: returns {@link KVM_API_VERSION}; the argument must be 0. */
export const KVM_GET_API_VERSION = _IO(KVMIO, 0x00);
/** `_IO(KVMIO, 0x01)` = 0xAE01, system fd: create a VM of the type given by the argument, returns its fd. */
export const KVM_CREATE_VM = _IO(KVMIO, 0x01);
/** `_IOWR(KVMIO, 0x02, struct kvm_msr_list)` = 0xC004AE02, system fd: list the MSRs KVM saves and restores. */
export const KVM_GET_MSR_INDEX_LIST = _IOWR(KVMIO, 0x02, L.kvm_msr_list.size);
/** `_IO(KVMIO, 0x03)` = 0xAE03, system and VM fd: query a `KVM_CAP_*` capability; 0 means unsupported. */
export const KVM_CHECK_EXTENSION = _IO(KVMIO, 0x03);
/** `_IO(KVMIO, 0x04)` = 0xAE04, system fd: size of a vCPU's mmap area, {@link KVM_VCPU_MMAP_SIZE}. */
export const KVM_GET_VCPU_MMAP_SIZE = _IO(KVMIO, 0x04);
/** `_IOWR(KVMIO, 0x05, struct kvm_cpuid2)` = 0xC008AE05, system fd: the CPUID leaves KVM can expose. */
export const KVM_GET_SUPPORTED_CPUID = _IOWR(KVMIO, 0x05, L.kvm_cpuid2.size);
/** `_IOWR(KVMIO, 0x09, struct kvm_cpuid2)` = 0xC008AE09, system fd: the CPUID bits KVM emulates. */
export const KVM_GET_EMULATED_CPUID = _IOWR(KVMIO, 0x09, L.kvm_cpuid2.size);
/** `_IOWR(KVMIO, 0x0a, struct kvm_msr_list)` = 0xC004AE0A, system fd: list the feature MSRs. */
export const KVM_GET_MSR_FEATURE_INDEX_LIST = _IOWR(KVMIO, 0x0a, L.kvm_msr_list.size);

/* ------------------------------------------------------------------------------------------------------ */
/* ioctls on a VM fd                                                                                        */
/* ------------------------------------------------------------------------------------------------------ */

/** `_IO(KVMIO, 0x41)` = 0xAE41, VM fd: create the vCPU whose id is the argument, returns its fd. */
export const KVM_CREATE_VCPU = _IO(KVMIO, 0x41);
/** `_IOW(KVMIO, 0x42, struct kvm_dirty_log)` = 0x4010AE42, VM fd: fetch and clear a slot's dirty bitmap. */
export const KVM_GET_DIRTY_LOG = _IOW(KVMIO, 0x42, L.kvm_dirty_log.size);
/** `_IO(KVMIO, 0x44)` = 0xAE44, VM fd: set the number of shadow MMU pages. */
export const KVM_SET_NR_MMU_PAGES = _IO(KVMIO, 0x44);
/** `_IO(KVMIO, 0x45)` = 0xAE45, VM fd: get the number of shadow MMU pages (deprecated). */
export const KVM_GET_NR_MMU_PAGES = _IO(KVMIO, 0x45);
/**
 * `_IOW(KVMIO, 0x46, struct kvm_userspace_memory_region)` = 0x4020AE46, VM fd: create, delete or move a
 * memory slot, or change its flags.
 */
export const KVM_SET_USER_MEMORY_REGION = _IOW(KVMIO, 0x46, L.kvm_userspace_memory_region.size);
/** `_IO(KVMIO, 0x47)` = 0xAE47, VM fd: guest-physical address of the 3-page TSS region (VMX). */
export const KVM_SET_TSS_ADDR = _IO(KVMIO, 0x47);
/** `_IOW(KVMIO, 0x48, __u64)` = 0x4008AE48, VM fd: guest-physical address of the identity-map page (VMX). */
export const KVM_SET_IDENTITY_MAP_ADDR = _IOW(KVMIO, 0x48, 8);
/**
 * `_IOW(KVMIO, 0x49, struct kvm_userspace_memory_region2)` = 0x40A0AE49, VM fd: memory slot with
 * guest_memfd backing.
 */
export const KVM_SET_USER_MEMORY_REGION2 = _IOW(KVMIO, 0x49, L.kvm_userspace_memory_region2.size);
/** `_IO(KVMIO, 0x60)` = 0xAE60, VM fd: create the in-kernel PIC, IOAPIC and local APICs. */
export const KVM_CREATE_IRQCHIP = _IO(KVMIO, 0x60);
/** `_IOW(KVMIO, 0x61, struct kvm_irq_level)` = 0x4008AE61, VM fd: set the level of an in-kernel GSI. */
export const KVM_IRQ_LINE = _IOW(KVMIO, 0x61, L.kvm_irq_level.size);
/** `_IOWR(KVMIO, 0x62, struct kvm_irqchip)` = 0xC208AE62, VM fd: read PIC or IOAPIC state. */
export const KVM_GET_IRQCHIP = _IOWR(KVMIO, 0x62, L.kvm_irqchip.size);
/** `_IOR(KVMIO, 0x63, struct kvm_irqchip)` = 0x8208AE63, VM fd: write PIC or IOAPIC state (sic: `_IOR`). */
export const KVM_SET_IRQCHIP = _IOR(KVMIO, 0x63, L.kvm_irqchip.size);
/** `_IO(KVMIO, 0x64)` = 0xAE64, VM fd: create the in-kernel PIT (superseded by KVM_CREATE_PIT2). */
export const KVM_CREATE_PIT = _IO(KVMIO, 0x64);
/** `_IOWR(KVMIO, 0x65, struct kvm_pit_state)` = 0xC048AE65, VM fd: read the PIT state. */
export const KVM_GET_PIT = _IOWR(KVMIO, 0x65, L.kvm_pit_state.size);
/** `_IOR(KVMIO, 0x66, struct kvm_pit_state)` = 0x8048AE66, VM fd: write the PIT state (sic: `_IOR`). */
export const KVM_SET_PIT = _IOR(KVMIO, 0x66, L.kvm_pit_state.size);
/** `_IOWR(KVMIO, 0x67, struct kvm_irq_level)` = 0xC008AE67, VM fd: KVM_IRQ_LINE that reports delivery. */
export const KVM_IRQ_LINE_STATUS = _IOWR(KVMIO, 0x67, L.kvm_irq_level.size);
/** `_IOW(KVMIO, 0x67, struct kvm_coalesced_mmio_zone)` = 0x4010AE67, VM fd: add a coalesced MMIO zone. */
export const KVM_REGISTER_COALESCED_MMIO = _IOW(KVMIO, 0x67, L.kvm_coalesced_mmio_zone.size);
/** `_IOW(KVMIO, 0x68, struct kvm_coalesced_mmio_zone)` = 0x4010AE68, VM fd: remove a coalesced MMIO zone. */
export const KVM_UNREGISTER_COALESCED_MMIO = _IOW(KVMIO, 0x68, L.kvm_coalesced_mmio_zone.size);
/** `_IOW(KVMIO, 0x6a, struct kvm_irq_routing)` = 0x4008AE6A, VM fd: replace the GSI routing table. */
export const KVM_SET_GSI_ROUTING = _IOW(KVMIO, 0x6a, L.kvm_irq_routing.size);
/** `_IO(KVMIO, 0x71)` = 0xAE71, VM fd: PIT interrupt reinjection policy. */
export const KVM_REINJECT_CONTROL = _IO(KVMIO, 0x71);
/** `_IOW(KVMIO, 0x76, struct kvm_irqfd)` = 0x4020AE76, VM fd: bind an eventfd to a GSI. */
export const KVM_IRQFD = _IOW(KVMIO, 0x76, L.kvm_irqfd.size);
/** `_IOW(KVMIO, 0x77, struct kvm_pit_config)` = 0x4040AE77, VM fd: create the in-kernel PIT. */
export const KVM_CREATE_PIT2 = _IOW(KVMIO, 0x77, L.kvm_pit_config.size);
/** `_IO(KVMIO, 0x78)` = 0xAE78, VM fd: choose the bootstrap vCPU id. */
export const KVM_SET_BOOT_CPU_ID = _IO(KVMIO, 0x78);
/** `_IOW(KVMIO, 0x79, struct kvm_ioeventfd)` = 0x4040AE79, VM fd: bind an eventfd to a PIO/MMIO address. */
export const KVM_IOEVENTFD = _IOW(KVMIO, 0x79, L.kvm_ioeventfd.size);
/** `_IOW(KVMIO, 0x7b, struct kvm_clock_data)` = 0x4030AE7B, VM fd: set the kvmclock base. */
export const KVM_SET_CLOCK = _IOW(KVMIO, 0x7b, L.kvm_clock_data.size);
/** `_IOR(KVMIO, 0x7c, struct kvm_clock_data)` = 0x8030AE7C, VM fd: read the kvmclock base. */
export const KVM_GET_CLOCK = _IOR(KVMIO, 0x7c, L.kvm_clock_data.size);
/** `_IOR(KVMIO, 0x9f, struct kvm_pit_state2)` = 0x8070AE9F, VM fd: read the PIT state with flags. */
export const KVM_GET_PIT2 = _IOR(KVMIO, 0x9f, L.kvm_pit_state2.size);
/** `_IOW(KVMIO, 0xa0, struct kvm_pit_state2)` = 0x4070AEA0, VM fd: write the PIT state with flags. */
export const KVM_SET_PIT2 = _IOW(KVMIO, 0xa0, L.kvm_pit_state2.size);
/** `_IOW(KVMIO, 0xa5, struct kvm_msi)` = 0x4020AEA5, VM fd: inject an MSI. */
export const KVM_SIGNAL_MSI = _IOW(KVMIO, 0xa5, L.kvm_msi.size);
/** `_IOWR(KVMIO, 0xe0, struct kvm_create_device)` = 0xC00CAEE0, VM fd: create an in-kernel device. */
export const KVM_CREATE_DEVICE = _IOWR(KVMIO, 0xe0, L.kvm_create_device.size);
/**
 * `_IOWR(KVMIO, 0xba, unsigned long)` = 0xC008AEBA, VM fd: a memory-encryption (SEV / SEV-ES / SNP)
 * command; the argument points to a `struct kvm_sev_cmd` whose `id` is a `KVM_SEV_*` command.
 */
export const KVM_MEMORY_ENCRYPT_OP = _IOWR(KVMIO, 0xba, 8);
/** `_IOR(KVMIO, 0xbb, struct kvm_enc_region)` = 0x8010AEBB, VM fd: pin a region for an encrypted guest. */
export const KVM_MEMORY_ENCRYPT_REG_REGION = _IOR(KVMIO, 0xbb, L.kvm_enc_region.size);
/** `_IOR(KVMIO, 0xbc, struct kvm_enc_region)` = 0x8010AEBC, VM fd: unpin a region of an encrypted guest. */
export const KVM_MEMORY_ENCRYPT_UNREG_REGION = _IOR(KVMIO, 0xbc, L.kvm_enc_region.size);
/** `_IOWR(KVMIO, 0xc0, struct kvm_clear_dirty_log)` = 0xC018AEC0, VM fd: clear part of a dirty bitmap. */
export const KVM_CLEAR_DIRTY_LOG = _IOWR(KVMIO, 0xc0, L.kvm_clear_dirty_log.size);
/** `_IOW(KVMIO, 0xc6, struct kvm_msr_filter)` = 0x4188AEC6, VM fd: install an MSR filter. */
export const KVM_X86_SET_MSR_FILTER = _IOW(KVMIO, 0xc6, L.kvm_msr_filter.size);
/** `_IOW(KVMIO, 0xb2, struct kvm_pmu_event_filter)` = 0x4020AEB2, VM fd: the guest PMU's event filter. */
export const KVM_SET_PMU_EVENT_FILTER = _IOW(KVMIO, 0xb2, L.kvm_pmu_event_filter.size);
/** `_IO(KVMIO, 0xc7)` = 0xAEC7, VM fd: reset harvested dirty-ring entries. */
export const KVM_RESET_DIRTY_RINGS = _IO(KVMIO, 0xc7);
/** `_IOW(KVMIO, 0xd2, struct kvm_memory_attributes)` = 0x4020AED2, VM fd: set attributes of a GPA range. */
export const KVM_SET_MEMORY_ATTRIBUTES = _IOW(KVMIO, 0xd2, L.kvm_memory_attributes.size);
/** `_IOWR(KVMIO, 0xd4, struct kvm_create_guest_memfd)` = 0xC040AED4, VM fd: create a guest_memfd. */
export const KVM_CREATE_GUEST_MEMFD = _IOWR(KVMIO, 0xd4, L.kvm_create_guest_memfd.size);

/* ------------------------------------------------------------------------------------------------------ */
/* ioctls on a vCPU fd                                                                                      */
/* ------------------------------------------------------------------------------------------------------ */

/** `_IO(KVMIO, 0x80)` = 0xAE80, vCPU fd: run the guest until an exit; the argument must be 0. */
export const KVM_RUN = _IO(KVMIO, 0x80);
/** `_IOR(KVMIO, 0x81, struct kvm_regs)` = 0x8090AE81, vCPU fd: read the general-purpose registers. */
export const KVM_GET_REGS = _IOR(KVMIO, 0x81, L.kvm_regs.size);
/** `_IOW(KVMIO, 0x82, struct kvm_regs)` = 0x4090AE82, vCPU fd: write the general-purpose registers. */
export const KVM_SET_REGS = _IOW(KVMIO, 0x82, L.kvm_regs.size);
/** `_IOR(KVMIO, 0x83, struct kvm_sregs)` = 0x8138AE83, vCPU fd: read segments, descriptor tables, CRs, EFER. */
export const KVM_GET_SREGS = _IOR(KVMIO, 0x83, L.kvm_sregs.size);
/** `_IOW(KVMIO, 0x84, struct kvm_sregs)` = 0x4138AE84, vCPU fd: write segments, descriptor tables, CRs, EFER. */
export const KVM_SET_SREGS = _IOW(KVMIO, 0x84, L.kvm_sregs.size);
/** `_IOWR(KVMIO, 0x85, struct kvm_translation)` = 0xC018AE85, vCPU fd: translate a guest linear address. */
export const KVM_TRANSLATE = _IOWR(KVMIO, 0x85, L.kvm_translation.size);
/** `_IOW(KVMIO, 0x86, struct kvm_interrupt)` = 0x4004AE86, vCPU fd: queue an external interrupt (no irqchip). */
export const KVM_INTERRUPT = _IOW(KVMIO, 0x86, L.kvm_interrupt.size);
/** `_IOWR(KVMIO, 0x88, struct kvm_msrs)` = 0xC008AE88, vCPU fd (and system fd for feature MSRs): read MSRs. */
export const KVM_GET_MSRS = _IOWR(KVMIO, 0x88, L.kvm_msrs.size);
/** `_IOW(KVMIO, 0x89, struct kvm_msrs)` = 0x4008AE89, vCPU fd: write MSRs; returns how many were written. */
export const KVM_SET_MSRS = _IOW(KVMIO, 0x89, L.kvm_msrs.size);
/** `_IOW(KVMIO, 0x8a, struct kvm_cpuid)` = 0x4008AE8A, vCPU fd: set CPUID (old format; use KVM_SET_CPUID2). */
export const KVM_SET_CPUID = _IOW(KVMIO, 0x8a, L.kvm_cpuid.size);
/** `_IOW(KVMIO, 0x8b, struct kvm_signal_mask)` = 0x4004AE8B, vCPU fd: signal mask in effect during KVM_RUN. */
export const KVM_SET_SIGNAL_MASK = _IOW(KVMIO, 0x8b, L.kvm_signal_mask.size);
/** `_IOR(KVMIO, 0x8c, struct kvm_fpu)` = 0x81A0AE8C, vCPU fd: read the x87/SSE state. */
export const KVM_GET_FPU = _IOR(KVMIO, 0x8c, L.kvm_fpu.size);
/** `_IOW(KVMIO, 0x8d, struct kvm_fpu)` = 0x41A0AE8D, vCPU fd: write the x87/SSE state. */
export const KVM_SET_FPU = _IOW(KVMIO, 0x8d, L.kvm_fpu.size);
/** `_IOR(KVMIO, 0x8e, struct kvm_lapic_state)` = 0x8400AE8E, vCPU fd: read the in-kernel local APIC page. */
export const KVM_GET_LAPIC = _IOR(KVMIO, 0x8e, L.kvm_lapic_state.size);
/** `_IOW(KVMIO, 0x8f, struct kvm_lapic_state)` = 0x4400AE8F, vCPU fd: write the in-kernel local APIC page. */
export const KVM_SET_LAPIC = _IOW(KVMIO, 0x8f, L.kvm_lapic_state.size);
/** `_IOW(KVMIO, 0x90, struct kvm_cpuid2)` = 0x4008AE90, vCPU fd: set the guest's CPUID leaves. */
export const KVM_SET_CPUID2 = _IOW(KVMIO, 0x90, L.kvm_cpuid2.size);
/** `_IOWR(KVMIO, 0x91, struct kvm_cpuid2)` = 0xC008AE91, vCPU fd: read back the guest's CPUID leaves. */
export const KVM_GET_CPUID2 = _IOWR(KVMIO, 0x91, L.kvm_cpuid2.size);
/** `_IOWR(KVMIO, 0x92, struct kvm_tpr_access_ctl)` = 0xC028AE92, vCPU fd: report TPR accesses. */
export const KVM_TPR_ACCESS_REPORTING = _IOWR(KVMIO, 0x92, L.kvm_tpr_access_ctl.size);
/** `_IOW(KVMIO, 0x93, struct kvm_vapic_addr)` = 0x4008AE93, vCPU fd: address of the virtual-APIC page. */
export const KVM_SET_VAPIC_ADDR = _IOW(KVMIO, 0x93, L.kvm_vapic_addr.size);
/** `_IOR(KVMIO, 0x98, struct kvm_mp_state)` = 0x8004AE98, vCPU fd: read the multiprocessing state. */
export const KVM_GET_MP_STATE = _IOR(KVMIO, 0x98, L.kvm_mp_state.size);
/** `_IOW(KVMIO, 0x99, struct kvm_mp_state)` = 0x4004AE99, vCPU fd: write the multiprocessing state. */
export const KVM_SET_MP_STATE = _IOW(KVMIO, 0x99, L.kvm_mp_state.size);
/** `_IO(KVMIO, 0x9a)` = 0xAE9A, vCPU fd: queue an NMI. */
export const KVM_NMI = _IO(KVMIO, 0x9a);
/** `_IOW(KVMIO, 0x9b, struct kvm_guest_debug)` = 0x4048AE9B, vCPU fd: single-step and breakpoint control. */
export const KVM_SET_GUEST_DEBUG = _IOW(KVMIO, 0x9b, L.kvm_guest_debug.size);
/** `_IOW(KVMIO, 0x9c, __u64)` = 0x4008AE9C, vCPU fd: set up machine-check emulation. */
export const KVM_X86_SETUP_MCE = _IOW(KVMIO, 0x9c, 8);
/** `_IOR(KVMIO, 0x9d, __u64)` = 0x8008AE9D, system fd: supported MCG_CAP bits. */
export const KVM_X86_GET_MCE_CAP_SUPPORTED = _IOR(KVMIO, 0x9d, 8);
/** `_IOW(KVMIO, 0x9e, struct kvm_x86_mce)` = 0x4040AE9E, vCPU fd: inject a machine check. */
export const KVM_X86_SET_MCE = _IOW(KVMIO, 0x9e, L.kvm_x86_mce.size);
/** `_IOR(KVMIO, 0x9f, struct kvm_vcpu_events)` = 0x8040AE9F, vCPU fd: read pending exceptions/interrupts/NMI/SMI. */
export const KVM_GET_VCPU_EVENTS = _IOR(KVMIO, 0x9f, L.kvm_vcpu_events.size);
/** `_IOW(KVMIO, 0xa0, struct kvm_vcpu_events)` = 0x4040AEA0, vCPU fd: write pending events. */
export const KVM_SET_VCPU_EVENTS = _IOW(KVMIO, 0xa0, L.kvm_vcpu_events.size);
/** `_IOR(KVMIO, 0xa1, struct kvm_debugregs)` = 0x8080AEA1, vCPU fd: read DR0–DR3, DR6, DR7. */
export const KVM_GET_DEBUGREGS = _IOR(KVMIO, 0xa1, L.kvm_debugregs.size);
/** `_IOW(KVMIO, 0xa2, struct kvm_debugregs)` = 0x4080AEA2, vCPU fd: write DR0–DR3, DR6, DR7. */
export const KVM_SET_DEBUGREGS = _IOW(KVMIO, 0xa2, L.kvm_debugregs.size);
/** `_IO(KVMIO, 0xa2)` = 0xAEA2, vCPU or VM fd: set the guest TSC frequency in kHz. */
export const KVM_SET_TSC_KHZ = _IO(KVMIO, 0xa2);
/** `_IO(KVMIO, 0xa3)` = 0xAEA3, vCPU or VM fd: get the guest TSC frequency in kHz. */
export const KVM_GET_TSC_KHZ = _IO(KVMIO, 0xa3);
/**
 * `_IOW(KVMIO, 0xa3, struct kvm_enable_cap)` = 0x4068AEA3: enable an optional capability. The same
 * request is used on vCPU fds (`KVM_CAP_ENABLE_CAP`) and on VM fds (`KVM_CAP_ENABLE_CAP_VM`).
 */
export const KVM_ENABLE_CAP = _IOW(KVMIO, 0xa3, L.kvm_enable_cap.size);
/** `_IOR(KVMIO, 0xa4, struct kvm_xsave)` = 0x9000AEA4, vCPU fd: read the XSAVE area. */
export const KVM_GET_XSAVE = _IOR(KVMIO, 0xa4, L.kvm_xsave.size);
/** `_IOW(KVMIO, 0xa5, struct kvm_xsave)` = 0x5000AEA5, vCPU fd: write the XSAVE area. */
export const KVM_SET_XSAVE = _IOW(KVMIO, 0xa5, L.kvm_xsave.size);
/** `_IOR(KVMIO, 0xa6, struct kvm_xcrs)` = 0x8188AEA6, vCPU fd: read XCR0 and friends. */
export const KVM_GET_XCRS = _IOR(KVMIO, 0xa6, L.kvm_xcrs.size);
/** `_IOW(KVMIO, 0xa7, struct kvm_xcrs)` = 0x4188AEA7, vCPU fd: write XCR0 and friends. */
export const KVM_SET_XCRS = _IOW(KVMIO, 0xa7, L.kvm_xcrs.size);
/** `_IOW(KVMIO, 0xab, struct kvm_one_reg)` = 0x4010AEAB, vCPU fd: read one register by id. */
export const KVM_GET_ONE_REG = _IOW(KVMIO, 0xab, L.kvm_one_reg.size);
/** `_IOW(KVMIO, 0xac, struct kvm_one_reg)` = 0x4010AEAC, vCPU fd: write one register by id. */
export const KVM_SET_ONE_REG = _IOW(KVMIO, 0xac, L.kvm_one_reg.size);
/** `_IO(KVMIO, 0xad)` = 0xAEAD, vCPU fd: tell the guest it was paused (kvmclock). */
export const KVM_KVMCLOCK_CTRL = _IO(KVMIO, 0xad);
/** `_IOWR(KVMIO, 0xb0, struct kvm_reg_list)` = 0xC008AEB0, vCPU fd: list register ids for ONE_REG. */
export const KVM_GET_REG_LIST = _IOWR(KVMIO, 0xb0, L.kvm_reg_list.size);
/** `_IO(KVMIO, 0xb7)` = 0xAEB7, vCPU fd: queue a system-management interrupt. */
export const KVM_SMI = _IO(KVMIO, 0xb7);
/** `_IOWR(KVMIO, 0xbe, struct kvm_nested_state)` = 0xC080AEBE, vCPU fd: read nested-virtualization state. */
export const KVM_GET_NESTED_STATE = _IOWR(KVMIO, 0xbe, L.kvm_nested_state.size);
/** `_IOW(KVMIO, 0xbf, struct kvm_nested_state)` = 0x4080AEBF, vCPU fd: write nested-virtualization state. */
export const KVM_SET_NESTED_STATE = _IOW(KVMIO, 0xbf, L.kvm_nested_state.size);
/** `_IOWR(KVMIO, 0xc1, struct kvm_cpuid2)` = 0xC008AEC1, vCPU or system fd: Hyper-V CPUID leaves. */
export const KVM_GET_SUPPORTED_HV_CPUID = _IOWR(KVMIO, 0xc1, L.kvm_cpuid2.size);
/** `_IOR(KVMIO, 0xcc, struct kvm_sregs2)` = 0x8140AECC, vCPU fd: KVM_GET_SREGS with PDPTRs. */
export const KVM_GET_SREGS2 = _IOR(KVMIO, 0xcc, L.kvm_sregs2.size);
/** `_IOW(KVMIO, 0xcd, struct kvm_sregs2)` = 0x4140AECD, vCPU fd: KVM_SET_SREGS with PDPTRs. */
export const KVM_SET_SREGS2 = _IOW(KVMIO, 0xcd, L.kvm_sregs2.size);
/** `_IO(KVMIO, 0xce)` = 0xAECE, VM or vCPU fd: open a binary statistics fd. */
export const KVM_GET_STATS_FD = _IO(KVMIO, 0xce);
/** `_IOR(KVMIO, 0xcf, struct kvm_xsave)` = 0x9000AECF, vCPU fd: read an XSAVE area larger than 4 KiB. */
export const KVM_GET_XSAVE2 = _IOR(KVMIO, 0xcf, L.kvm_xsave.size);
/** `_IOWR(KVMIO, 0xd5, struct kvm_pre_fault_memory)` = 0xC040AED5, vCPU fd: populate guest memory ahead of time. */
export const KVM_PRE_FAULT_MEMORY = _IOWR(KVMIO, 0xd5, L.kvm_pre_fault_memory.size);

/* ------------------------------------------------------------------------------------------------------ */
/* ioctls on device fds (and, for some attributes, system / VM / vCPU fds)                                  */
/* ------------------------------------------------------------------------------------------------------ */

/** `_IOW(KVMIO, 0xe1, struct kvm_device_attr)` = 0x4018AEE1: set a device attribute. */
export const KVM_SET_DEVICE_ATTR = _IOW(KVMIO, 0xe1, L.kvm_device_attr.size);
/** `_IOW(KVMIO, 0xe2, struct kvm_device_attr)` = 0x4018AEE2: get a device attribute (sic: `_IOW`). */
export const KVM_GET_DEVICE_ATTR = _IOW(KVMIO, 0xe2, L.kvm_device_attr.size);
/** `_IOW(KVMIO, 0xe3, struct kvm_device_attr)` = 0x4018AEE3: test whether a device attribute exists. */
export const KVM_HAS_DEVICE_ATTR = _IOW(KVMIO, 0xe3, L.kvm_device_attr.size);

/** The Linux name of a KVM ioctl in {@link KVM_IOCTLS}. */
export type KvmIoctlName =
  | 'KVM_GET_API_VERSION'
  | 'KVM_CREATE_VM'
  | 'KVM_GET_MSR_INDEX_LIST'
  | 'KVM_CHECK_EXTENSION'
  | 'KVM_GET_VCPU_MMAP_SIZE'
  | 'KVM_GET_SUPPORTED_CPUID'
  | 'KVM_GET_EMULATED_CPUID'
  | 'KVM_GET_MSR_FEATURE_INDEX_LIST'
  | 'KVM_CREATE_VCPU'
  | 'KVM_GET_DIRTY_LOG'
  | 'KVM_SET_NR_MMU_PAGES'
  | 'KVM_GET_NR_MMU_PAGES'
  | 'KVM_SET_USER_MEMORY_REGION'
  | 'KVM_SET_TSS_ADDR'
  | 'KVM_SET_IDENTITY_MAP_ADDR'
  | 'KVM_SET_USER_MEMORY_REGION2'
  | 'KVM_CREATE_IRQCHIP'
  | 'KVM_IRQ_LINE'
  | 'KVM_GET_IRQCHIP'
  | 'KVM_SET_IRQCHIP'
  | 'KVM_CREATE_PIT'
  | 'KVM_GET_PIT'
  | 'KVM_SET_PIT'
  | 'KVM_IRQ_LINE_STATUS'
  | 'KVM_REGISTER_COALESCED_MMIO'
  | 'KVM_UNREGISTER_COALESCED_MMIO'
  | 'KVM_SET_GSI_ROUTING'
  | 'KVM_REINJECT_CONTROL'
  | 'KVM_IRQFD'
  | 'KVM_CREATE_PIT2'
  | 'KVM_SET_BOOT_CPU_ID'
  | 'KVM_IOEVENTFD'
  | 'KVM_SET_CLOCK'
  | 'KVM_GET_CLOCK'
  | 'KVM_GET_PIT2'
  | 'KVM_SET_PIT2'
  | 'KVM_SIGNAL_MSI'
  | 'KVM_CREATE_DEVICE'
  | 'KVM_MEMORY_ENCRYPT_OP'
  | 'KVM_MEMORY_ENCRYPT_REG_REGION'
  | 'KVM_MEMORY_ENCRYPT_UNREG_REGION'
  | 'KVM_CLEAR_DIRTY_LOG'
  | 'KVM_X86_SET_MSR_FILTER'
  | 'KVM_SET_PMU_EVENT_FILTER'
  | 'KVM_RESET_DIRTY_RINGS'
  | 'KVM_SET_MEMORY_ATTRIBUTES'
  | 'KVM_CREATE_GUEST_MEMFD'
  | 'KVM_RUN'
  | 'KVM_GET_REGS'
  | 'KVM_SET_REGS'
  | 'KVM_GET_SREGS'
  | 'KVM_SET_SREGS'
  | 'KVM_TRANSLATE'
  | 'KVM_INTERRUPT'
  | 'KVM_GET_MSRS'
  | 'KVM_SET_MSRS'
  | 'KVM_SET_CPUID'
  | 'KVM_SET_SIGNAL_MASK'
  | 'KVM_GET_FPU'
  | 'KVM_SET_FPU'
  | 'KVM_GET_LAPIC'
  | 'KVM_SET_LAPIC'
  | 'KVM_SET_CPUID2'
  | 'KVM_GET_CPUID2'
  | 'KVM_TPR_ACCESS_REPORTING'
  | 'KVM_SET_VAPIC_ADDR'
  | 'KVM_GET_MP_STATE'
  | 'KVM_SET_MP_STATE'
  | 'KVM_NMI'
  | 'KVM_SET_GUEST_DEBUG'
  | 'KVM_X86_SETUP_MCE'
  | 'KVM_X86_GET_MCE_CAP_SUPPORTED'
  | 'KVM_X86_SET_MCE'
  | 'KVM_GET_VCPU_EVENTS'
  | 'KVM_SET_VCPU_EVENTS'
  | 'KVM_GET_DEBUGREGS'
  | 'KVM_SET_DEBUGREGS'
  | 'KVM_SET_TSC_KHZ'
  | 'KVM_GET_TSC_KHZ'
  | 'KVM_ENABLE_CAP'
  | 'KVM_GET_XSAVE'
  | 'KVM_SET_XSAVE'
  | 'KVM_GET_XCRS'
  | 'KVM_SET_XCRS'
  | 'KVM_GET_ONE_REG'
  | 'KVM_SET_ONE_REG'
  | 'KVM_KVMCLOCK_CTRL'
  | 'KVM_GET_REG_LIST'
  | 'KVM_SMI'
  | 'KVM_GET_NESTED_STATE'
  | 'KVM_SET_NESTED_STATE'
  | 'KVM_GET_SUPPORTED_HV_CPUID'
  | 'KVM_GET_SREGS2'
  | 'KVM_SET_SREGS2'
  | 'KVM_GET_STATS_FD'
  | 'KVM_GET_XSAVE2'
  | 'KVM_PRE_FAULT_MEMORY'
  | 'KVM_SET_DEVICE_ATTR'
  | 'KVM_GET_DEVICE_ATTR'
  | 'KVM_HAS_DEVICE_ATTR';

/**
 * Every KVM ioctl request defined in this module, by Linux name. Use it for dispatch tables and with
 * {@link ioctlName} for messages.
 */
export const KVM_IOCTLS: Readonly<Record<KvmIoctlName, number>> = {
  KVM_GET_API_VERSION,
  KVM_CREATE_VM,
  KVM_GET_MSR_INDEX_LIST,
  KVM_CHECK_EXTENSION,
  KVM_GET_VCPU_MMAP_SIZE,
  KVM_GET_SUPPORTED_CPUID,
  KVM_GET_EMULATED_CPUID,
  KVM_GET_MSR_FEATURE_INDEX_LIST,
  KVM_CREATE_VCPU,
  KVM_GET_DIRTY_LOG,
  KVM_SET_NR_MMU_PAGES,
  KVM_GET_NR_MMU_PAGES,
  KVM_SET_USER_MEMORY_REGION,
  KVM_SET_TSS_ADDR,
  KVM_SET_IDENTITY_MAP_ADDR,
  KVM_SET_USER_MEMORY_REGION2,
  KVM_CREATE_IRQCHIP,
  KVM_IRQ_LINE,
  KVM_GET_IRQCHIP,
  KVM_SET_IRQCHIP,
  KVM_CREATE_PIT,
  KVM_GET_PIT,
  KVM_SET_PIT,
  KVM_IRQ_LINE_STATUS,
  KVM_REGISTER_COALESCED_MMIO,
  KVM_UNREGISTER_COALESCED_MMIO,
  KVM_SET_GSI_ROUTING,
  KVM_REINJECT_CONTROL,
  KVM_IRQFD,
  KVM_CREATE_PIT2,
  KVM_SET_BOOT_CPU_ID,
  KVM_IOEVENTFD,
  KVM_SET_CLOCK,
  KVM_GET_CLOCK,
  KVM_GET_PIT2,
  KVM_SET_PIT2,
  KVM_SIGNAL_MSI,
  KVM_CREATE_DEVICE,
  KVM_MEMORY_ENCRYPT_OP,
  KVM_MEMORY_ENCRYPT_REG_REGION,
  KVM_MEMORY_ENCRYPT_UNREG_REGION,
  KVM_CLEAR_DIRTY_LOG,
  KVM_X86_SET_MSR_FILTER,
  KVM_SET_PMU_EVENT_FILTER,
  KVM_RESET_DIRTY_RINGS,
  KVM_SET_MEMORY_ATTRIBUTES,
  KVM_CREATE_GUEST_MEMFD,
  KVM_RUN,
  KVM_GET_REGS,
  KVM_SET_REGS,
  KVM_GET_SREGS,
  KVM_SET_SREGS,
  KVM_TRANSLATE,
  KVM_INTERRUPT,
  KVM_GET_MSRS,
  KVM_SET_MSRS,
  KVM_SET_CPUID,
  KVM_SET_SIGNAL_MASK,
  KVM_GET_FPU,
  KVM_SET_FPU,
  KVM_GET_LAPIC,
  KVM_SET_LAPIC,
  KVM_SET_CPUID2,
  KVM_GET_CPUID2,
  KVM_TPR_ACCESS_REPORTING,
  KVM_SET_VAPIC_ADDR,
  KVM_GET_MP_STATE,
  KVM_SET_MP_STATE,
  KVM_NMI,
  KVM_SET_GUEST_DEBUG,
  KVM_X86_SETUP_MCE,
  KVM_X86_GET_MCE_CAP_SUPPORTED,
  KVM_X86_SET_MCE,
  KVM_GET_VCPU_EVENTS,
  KVM_SET_VCPU_EVENTS,
  KVM_GET_DEBUGREGS,
  KVM_SET_DEBUGREGS,
  KVM_SET_TSC_KHZ,
  KVM_GET_TSC_KHZ,
  KVM_ENABLE_CAP,
  KVM_GET_XSAVE,
  KVM_SET_XSAVE,
  KVM_GET_XCRS,
  KVM_SET_XCRS,
  KVM_GET_ONE_REG,
  KVM_SET_ONE_REG,
  KVM_KVMCLOCK_CTRL,
  KVM_GET_REG_LIST,
  KVM_SMI,
  KVM_GET_NESTED_STATE,
  KVM_SET_NESTED_STATE,
  KVM_GET_SUPPORTED_HV_CPUID,
  KVM_GET_SREGS2,
  KVM_SET_SREGS2,
  KVM_GET_STATS_FD,
  KVM_GET_XSAVE2,
  KVM_PRE_FAULT_MEMORY,
  KVM_SET_DEVICE_ATTR,
  KVM_GET_DEVICE_ATTR,
  KVM_HAS_DEVICE_ATTR,
};


function reverse<K extends string>(table: Readonly<Record<K, number>>): ReadonlyMap<number, K> {
  const m = new Map<number, K>();
  for (const [name, value] of Object.entries(table) as [K, number][]) {
    if (!m.has(value)) m.set(value, name);
  }
  return m;
}

const IOCTL_BY_REQUEST = reverse(KVM_IOCTLS);

/**
 * The Linux name of an ioctl request, for messages and traces: `ioctlName(0xAE80)` is `'KVM_RUN'`. A
 * request with no known name is shown as the macro that would encode it, e.g. `'_IOW(0xae, 0xff, 16)'`.
 */
export function ioctlName(request: number): string {
  const req = request >>> 0;
  return IOCTL_BY_REQUEST.get(req) ?? formatIoctl(req);
}

/** True when `request` is one of the KVM ioctls in {@link KVM_IOCTLS}. */
export function isKnownKvmIoctl(request: number): boolean {
  return IOCTL_BY_REQUEST.has(request >>> 0);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Capabilities (KVM_CHECK_EXTENSION / KVM_ENABLE_CAP)                                                      */
/* ------------------------------------------------------------------------------------------------------ */

/** Capability 0: in-kernel interrupt controller models (KVM_CREATE_IRQCHIP). */
export const KVM_CAP_IRQCHIP = 0;
/** Capability 1: HLT is reported to user space as KVM_EXIT_HLT when no in-kernel local APIC handles it. */
export const KVM_CAP_HLT = 1;
/** Capability 2: KVM_SET_NR_MMU_PAGES / KVM_GET_NR_MMU_PAGES. */
export const KVM_CAP_MMU_SHADOW_CACHE_CONTROL = 2;
/** Capability 3: KVM_SET_USER_MEMORY_REGION. */
export const KVM_CAP_USER_MEMORY = 3;
/** Capability 4: KVM_SET_TSS_ADDR. */
export const KVM_CAP_SET_TSS_ADDR = 4;
/** Capability 6: KVM_TPR_ACCESS_REPORTING and KVM_SET_VAPIC_ADDR. */
export const KVM_CAP_VAPIC = 6;
/** Capability 7: KVM_GET_SUPPORTED_CPUID and KVM_SET_CPUID2. */
export const KVM_CAP_EXT_CPUID = 7;
/** Capability 8: the kvmclock paravirtual clock. */
export const KVM_CAP_CLOCKSOURCE = 8;
/** Capability 9: recommended maximum number of vCPUs per VM (the value is returned). */
export const KVM_CAP_NR_VCPUS = 9;
/** Capability 10: maximum number of user memory slots per VM (the value is returned). */
export const KVM_CAP_NR_MEMSLOTS = 10;
/** Capability 11: in-kernel i8254 PIT. */
export const KVM_CAP_PIT = 11;
/** Capability 12 (`KVM_CAP_NOP_IO_DELAY`). */
export const KVM_CAP_NOP_IO_DELAY = 12;
/** Capability 13 (`KVM_CAP_PV_MMU`). */
export const KVM_CAP_PV_MMU = 13;
/** Capability 14: KVM_GET_MP_STATE / KVM_SET_MP_STATE. */
export const KVM_CAP_MP_STATE = 14;
/** Capability 15: coalesced MMIO ring (the value is its page offset in the vCPU mmap). */
export const KVM_CAP_COALESCED_MMIO = 15;
/** Capability 16: changes to the host mapping are reflected in the guest. */
export const KVM_CAP_SYNC_MMU = 16;
/** Capability 18 (`KVM_CAP_IOMMU`). */
export const KVM_CAP_IOMMU = 18;
/** Capability 21 (`KVM_CAP_DESTROY_MEMORY_REGION_WORKS`). */
export const KVM_CAP_DESTROY_MEMORY_REGION_WORKS = 21;
/** Capability 22: KVM_NMI. */
export const KVM_CAP_USER_NMI = 22;
/** Capability 23: KVM_SET_GUEST_DEBUG. */
export const KVM_CAP_SET_GUEST_DEBUG = 23;
/** Capability 24 (`KVM_CAP_REINJECT_CONTROL`). */
export const KVM_CAP_REINJECT_CONTROL = 24;
/** Capability 25: KVM_SET_GSI_ROUTING. */
export const KVM_CAP_IRQ_ROUTING = 25;
/** Capability 26 (`KVM_CAP_IRQ_INJECT_STATUS`). */
export const KVM_CAP_IRQ_INJECT_STATUS = 26;
/** Capability 29 (`KVM_CAP_ASSIGN_DEV_IRQ`). */
export const KVM_CAP_ASSIGN_DEV_IRQ = 29;
/** Capability 30 (`KVM_CAP_JOIN_MEMORY_REGIONS_WORKS`). */
export const KVM_CAP_JOIN_MEMORY_REGIONS_WORKS = 30;
/** Capability 31 (`KVM_CAP_MCE`). */
export const KVM_CAP_MCE = 31;
/** Capability 32: KVM_IRQFD. */
export const KVM_CAP_IRQFD = 32;
/** Capability 33: KVM_CREATE_PIT2. */
export const KVM_CAP_PIT2 = 33;
/** Capability 34 (`KVM_CAP_SET_BOOT_CPU_ID`). */
export const KVM_CAP_SET_BOOT_CPU_ID = 34;
/** Capability 35 (`KVM_CAP_PIT_STATE2`). */
export const KVM_CAP_PIT_STATE2 = 35;
/** Capability 36: KVM_IOEVENTFD. */
export const KVM_CAP_IOEVENTFD = 36;
/** Capability 37: KVM_SET_IDENTITY_MAP_ADDR. */
export const KVM_CAP_SET_IDENTITY_MAP_ADDR = 37;
/** Capability 38 (`KVM_CAP_XEN_HVM`). */
export const KVM_CAP_XEN_HVM = 38;
/** Capability 39: KVM_GET_CLOCK / KVM_SET_CLOCK. */
export const KVM_CAP_ADJUST_CLOCK = 39;
/** Capability 40: `internal.ndata` / `internal.data` in KVM_EXIT_INTERNAL_ERROR. */
export const KVM_CAP_INTERNAL_ERROR_DATA = 40;
/** Capability 41: KVM_GET_VCPU_EVENTS / KVM_SET_VCPU_EVENTS. */
export const KVM_CAP_VCPU_EVENTS = 41;
/** Capability 44: Hyper-V enlightenments. */
export const KVM_CAP_HYPERV = 44;
/** Capability 45 (`KVM_CAP_HYPERV_VAPIC`). */
export const KVM_CAP_HYPERV_VAPIC = 45;
/** Capability 46 (`KVM_CAP_HYPERV_SPIN`). */
export const KVM_CAP_HYPERV_SPIN = 46;
/** Capability 47 (`KVM_CAP_PCI_SEGMENT`). */
export const KVM_CAP_PCI_SEGMENT = 47;
/** Capability 49 (`KVM_CAP_INTR_SHADOW`). */
export const KVM_CAP_INTR_SHADOW = 49;
/** Capability 50: KVM_GET_DEBUGREGS / KVM_SET_DEBUGREGS. */
export const KVM_CAP_DEBUGREGS = 50;
/** Capability 51 (`KVM_CAP_X86_ROBUST_SINGLESTEP`). */
export const KVM_CAP_X86_ROBUST_SINGLESTEP = 51;
/** Capability 54: KVM_ENABLE_CAP on vCPU fds. */
export const KVM_CAP_ENABLE_CAP = 54;
/** Capability 55: KVM_GET_XSAVE / KVM_SET_XSAVE. */
export const KVM_CAP_XSAVE = 55;
/** Capability 56: KVM_GET_XCRS / KVM_SET_XCRS. */
export const KVM_CAP_XCRS = 56;
/** Capability 59: asynchronous page faults. */
export const KVM_CAP_ASYNC_PF = 59;
/** Capability 60: KVM_SET_TSC_KHZ on vCPU fds. */
export const KVM_CAP_TSC_CONTROL = 60;
/** Capability 61: KVM_GET_TSC_KHZ. */
export const KVM_CAP_GET_TSC_KHZ = 61;
/** Capability 66: maximum number of vCPUs per VM (the value is returned). */
export const KVM_CAP_MAX_VCPUS = 66;
/** Capability 70: KVM_GET_ONE_REG / KVM_SET_ONE_REG. */
export const KVM_CAP_ONE_REG = 70;
/** Capability 72: TSC-deadline mode of the in-kernel local APIC timer. */
export const KVM_CAP_TSC_DEADLINE_TIMER = 72;
/** Capability 74: register synchronisation through kvm_run `s.regs` (the value is the valid mask). */
export const KVM_CAP_SYNC_REGS = 74;
/** Capability 75 (`KVM_CAP_PCI_2_3`). */
export const KVM_CAP_PCI_2_3 = 75;
/** Capability 76: KVM_KVMCLOCK_CTRL. */
export const KVM_CAP_KVMCLOCK_CTRL = 76;
/** Capability 77: KVM_SIGNAL_MSI. */
export const KVM_CAP_SIGNAL_MSI = 77;
/** Capability 81: the KVM_MEM_READONLY memory-slot flag. */
export const KVM_CAP_READONLY_MEM = 81;
/** Capability 82: resampling irqfds (KVM_IRQFD_FLAG_RESAMPLE). */
export const KVM_CAP_IRQFD_RESAMPLE = 82;
/** Capability 89: KVM_CREATE_DEVICE and the device-attribute ioctls. */
export const KVM_CAP_DEVICE_CTRL = 89;
/** Capability 95: KVM_GET_EMULATED_CPUID. */
export const KVM_CAP_EXT_EMUL_CPUID = 95;
/** Capability 96 (`KVM_CAP_HYPERV_TIME`). */
export const KVM_CAP_HYPERV_TIME = 96;
/** Capability 97 (`KVM_CAP_IOAPIC_POLARITY_IGNORED`). */
export const KVM_CAP_IOAPIC_POLARITY_IGNORED = 97;
/** Capability 98: KVM_ENABLE_CAP on VM fds. */
export const KVM_CAP_ENABLE_CAP_VM = 98;
/** Capability 100 (`KVM_CAP_IOEVENTFD_NO_LENGTH`). */
export const KVM_CAP_IOEVENTFD_NO_LENGTH = 100;
/** Capability 101 (`KVM_CAP_VM_ATTRIBUTES`). */
export const KVM_CAP_VM_ATTRIBUTES = 101;
/** Capability 105: KVM_CHECK_EXTENSION on VM fds. */
export const KVM_CAP_CHECK_EXTENSION_VM = 105;
/** Capability 116: disabling KVM_X86_QUIRK_* behaviour through KVM_ENABLE_CAP. */
export const KVM_CAP_DISABLE_QUIRKS = 116;
/** Capability 117: system management mode. */
export const KVM_CAP_X86_SMM = 117;
/** Capability 118: number of memory-slot address spaces (the value is returned). */
export const KVM_CAP_MULTI_ADDRESS_SPACE = 118;
/** Capability 121: local APICs in the kernel, IOAPIC and PIC in user space. */
export const KVM_CAP_SPLIT_IRQCHIP = 121;
/** Capability 122 (`KVM_CAP_IOEVENTFD_ANY_LENGTH`). */
export const KVM_CAP_IOEVENTFD_ANY_LENGTH = 122;
/** Capability 123 (`KVM_CAP_HYPERV_SYNIC`). */
export const KVM_CAP_HYPERV_SYNIC = 123;
/** Capability 127 (`KVM_CAP_VCPU_ATTRIBUTES`). */
export const KVM_CAP_VCPU_ATTRIBUTES = 127;
/** Capability 128: upper bound (exclusive) of vCPU ids (the value is returned). */
export const KVM_CAP_MAX_VCPU_ID = 128;
/** Capability 129: x2APIC API flags through KVM_ENABLE_CAP. */
export const KVM_CAP_X2APIC_API = 129;
/** Capability 136: kvm_run `immediate_exit`. */
export const KVM_CAP_IMMEDIATE_EXIT = 136;
/** Capability 143: disabling MWAIT/HLT/PAUSE/C-state exits (the value is the supported mask). */
export const KVM_CAP_X86_DISABLE_EXITS = 143;
/** Capability 148 (`KVM_CAP_HYPERV_SYNIC2`). */
export const KVM_CAP_HYPERV_SYNIC2 = 148;
/** Capability 149 (`KVM_CAP_HYPERV_VP_INDEX`). */
export const KVM_CAP_HYPERV_VP_INDEX = 149;
/** Capability 153: KVM_GET_MSR_FEATURE_INDEX_LIST and feature MSRs on the system fd. */
export const KVM_CAP_GET_MSR_FEATURES = 153;
/** Capability 154 (`KVM_CAP_HYPERV_EVENTFD`). */
export const KVM_CAP_HYPERV_EVENTFD = 154;
/** Capability 155 (`KVM_CAP_HYPERV_TLBFLUSH`). */
export const KVM_CAP_HYPERV_TLBFLUSH = 155;
/** Capability 157: KVM_GET_NESTED_STATE / KVM_SET_NESTED_STATE (the value is the maximum size). */
export const KVM_CAP_NESTED_STATE = 157;
/** Capability 159: MSR_PLATFORM_INFO emulation control. */
export const KVM_CAP_MSR_PLATFORM_INFO = 159;
/** Capability 161 (`KVM_CAP_HYPERV_SEND_IPI`). */
export const KVM_CAP_HYPERV_SEND_IPI = 161;
/** Capability 162: coalesced port I/O zones. */
export const KVM_CAP_COALESCED_PIO = 162;
/** Capability 163 (`KVM_CAP_HYPERV_ENLIGHTENED_VMCS`). */
export const KVM_CAP_HYPERV_ENLIGHTENED_VMCS = 163;
/** Capability 164: exception payloads in kvm_vcpu_events. */
export const KVM_CAP_EXCEPTION_PAYLOAD = 164;
/** Capability 166 (`KVM_CAP_MANUAL_DIRTY_LOG_PROTECT`). */
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT = 166;
/** Capability 167 (`KVM_CAP_HYPERV_CPUID`). */
export const KVM_CAP_HYPERV_CPUID = 167;
/** Capability 168: KVM_CLEAR_DIRTY_LOG. */
export const KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 = 168;
/** Capability 173: KVM_SET_PMU_EVENT_FILTER. */
export const KVM_CAP_PMU_EVENT_FILTER = 173;
/** Capability 175 (`KVM_CAP_HYPERV_DIRECT_TLBFLUSH`). */
export const KVM_CAP_HYPERV_DIRECT_TLBFLUSH = 175;
/** Capability 182: per-VM halt-polling interval through KVM_ENABLE_CAP. */
export const KVM_CAP_HALT_POLL = 182;
/** Capability 183 (`KVM_CAP_ASYNC_PF_INT`). */
export const KVM_CAP_ASYNC_PF_INT = 183;
/** Capability 184 (`KVM_CAP_LAST_CPU`). */
export const KVM_CAP_LAST_CPU = 184;
/** Capability 185 (`KVM_CAP_SMALLER_MAXPHYADDR`). */
export const KVM_CAP_SMALLER_MAXPHYADDR = 185;
/** Capability 187: steal-time accounting. */
export const KVM_CAP_STEAL_TIME = 187;
/** Capability 188: MSR accesses forwarded to user space (KVM_EXIT_X86_RDMSR/WRMSR). */
export const KVM_CAP_X86_USER_SPACE_MSR = 188;
/** Capability 189: KVM_X86_SET_MSR_FILTER. */
export const KVM_CAP_X86_MSR_FILTER = 189;
/** Capability 190 (`KVM_CAP_ENFORCE_PV_FEATURE_CPUID`). */
export const KVM_CAP_ENFORCE_PV_FEATURE_CPUID = 190;
/** Capability 191 (`KVM_CAP_SYS_HYPERV_CPUID`). */
export const KVM_CAP_SYS_HYPERV_CPUID = 191;
/** Capability 192: the per-vCPU dirty ring (the value is the maximum ring size in bytes). */
export const KVM_CAP_DIRTY_LOG_RING = 192;
/** Capability 193: bus-lock detection exits. */
export const KVM_CAP_X86_BUS_LOCK_EXIT = 193;
/** Capability 195 (`KVM_CAP_SET_GUEST_DEBUG2`). */
export const KVM_CAP_SET_GUEST_DEBUG2 = 195;
/** Capability 196 (`KVM_CAP_SGX_ATTRIBUTE`). */
export const KVM_CAP_SGX_ATTRIBUTE = 196;
/** Capability 197: sharing an SEV encryption context with another VM. */
export const KVM_CAP_VM_COPY_ENC_CONTEXT_FROM = 197;
/** Capability 199 (`KVM_CAP_HYPERV_ENFORCE_CPUID`). */
export const KVM_CAP_HYPERV_ENFORCE_CPUID = 199;
/** Capability 200: KVM_GET_SREGS2 / KVM_SET_SREGS2. */
export const KVM_CAP_SREGS2 = 200;
/** Capability 201: hypercalls forwarded as KVM_EXIT_HYPERCALL (the value is the mask). */
export const KVM_CAP_EXIT_HYPERCALL = 201;
/** Capability 203: KVM_GET_STATS_FD. */
export const KVM_CAP_BINARY_STATS_FD = 203;
/** Capability 204: emulation failures reported with instruction bytes. */
export const KVM_CAP_EXIT_ON_EMULATION_FAILURE = 204;
/** Capability 206: moving an SEV encryption context between VMs. */
export const KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM = 206;
/** Capability 207 (`KVM_CAP_VM_GPA_BITS`). */
export const KVM_CAP_VM_GPA_BITS = 207;
/** Capability 208: KVM_GET_XSAVE2 (the value is the buffer size). */
export const KVM_CAP_XSAVE2 = 208;
/** Capability 209: device-attribute ioctls on the system fd. */
export const KVM_CAP_SYS_ATTRIBUTES = 209;
/** Capability 212: disabling the virtual PMU per VM. */
export const KVM_CAP_PMU_CAPABILITY = 212;
/** Capability 213: querying and disabling quirks (the value is the supported mask). */
export const KVM_CAP_DISABLE_QUIRKS2 = 213;
/** Capability 214: KVM_SET_TSC_KHZ on VM fds. */
export const KVM_CAP_VM_TSC_CONTROL = 214;
/** Capability 215: `system_event.ndata` / `data` in KVM_EXIT_SYSTEM_EVENT. */
export const KVM_CAP_SYSTEM_EVENT_DATA = 215;
/** Capability 218: triple-fault state in kvm_vcpu_events. */
export const KVM_CAP_X86_TRIPLE_FAULT_EVENT = 218;
/** Capability 219: notify VM exits (Intel). */
export const KVM_CAP_X86_NOTIFY_VMEXIT = 219;
/** Capability 220: turning off the NX-huge-pages mitigation for one VM. */
export const KVM_CAP_VM_DISABLE_NX_HUGE_PAGES = 220;
/** Capability 223: the dirty ring with acquire/release ordering. */
export const KVM_CAP_DIRTY_LOG_RING_ACQ_REL = 223;
/** Capability 225: the dirty ring together with a dirty bitmap. */
export const KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP = 225;
/** Capability 226: masked events in the PMU event filter. */
export const KVM_CAP_PMU_EVENT_MASKED_EVENTS = 226;
/** Capability 231: KVM_SET_USER_MEMORY_REGION2. */
export const KVM_CAP_USER_MEMORY2 = 231;
/** Capability 232: KVM_EXIT_MEMORY_FAULT details in kvm_run. */
export const KVM_CAP_MEMORY_FAULT_INFO = 232;
/** Capability 233: KVM_SET_MEMORY_ATTRIBUTES (the value is the supported attribute mask). */
export const KVM_CAP_MEMORY_ATTRIBUTES = 233;
/** Capability 234: KVM_CREATE_GUEST_MEMFD. */
export const KVM_CAP_GUEST_MEMFD = 234;
/** Capability 235: supported KVM_CREATE_VM types (the value is a bitmask, bit n for type n). */
export const KVM_CAP_VM_TYPES = 235;
/** Capability 236: KVM_PRE_FAULT_MEMORY. */
export const KVM_CAP_PRE_FAULT_MEMORY = 236;
/** Capability 237: configurable APIC bus cycle length. */
export const KVM_CAP_X86_APIC_BUS_CYCLES_NS = 237;
/** Capability 238: KVM_RUN_X86_GUEST_MODE in kvm_run `flags`. */
export const KVM_CAP_X86_GUEST_MODE = 238;
/** Capability 244: supported guest_memfd creation flags. */
export const KVM_CAP_GUEST_MEMFD_FLAGS = 244;

/** The Linux name of a capability in {@link KVM_CAPS}. */
export type KvmCapName =
  | 'KVM_CAP_IRQCHIP'
  | 'KVM_CAP_HLT'
  | 'KVM_CAP_MMU_SHADOW_CACHE_CONTROL'
  | 'KVM_CAP_USER_MEMORY'
  | 'KVM_CAP_SET_TSS_ADDR'
  | 'KVM_CAP_VAPIC'
  | 'KVM_CAP_EXT_CPUID'
  | 'KVM_CAP_CLOCKSOURCE'
  | 'KVM_CAP_NR_VCPUS'
  | 'KVM_CAP_NR_MEMSLOTS'
  | 'KVM_CAP_PIT'
  | 'KVM_CAP_NOP_IO_DELAY'
  | 'KVM_CAP_PV_MMU'
  | 'KVM_CAP_MP_STATE'
  | 'KVM_CAP_COALESCED_MMIO'
  | 'KVM_CAP_SYNC_MMU'
  | 'KVM_CAP_IOMMU'
  | 'KVM_CAP_DESTROY_MEMORY_REGION_WORKS'
  | 'KVM_CAP_USER_NMI'
  | 'KVM_CAP_SET_GUEST_DEBUG'
  | 'KVM_CAP_REINJECT_CONTROL'
  | 'KVM_CAP_IRQ_ROUTING'
  | 'KVM_CAP_IRQ_INJECT_STATUS'
  | 'KVM_CAP_ASSIGN_DEV_IRQ'
  | 'KVM_CAP_JOIN_MEMORY_REGIONS_WORKS'
  | 'KVM_CAP_MCE'
  | 'KVM_CAP_IRQFD'
  | 'KVM_CAP_PIT2'
  | 'KVM_CAP_SET_BOOT_CPU_ID'
  | 'KVM_CAP_PIT_STATE2'
  | 'KVM_CAP_IOEVENTFD'
  | 'KVM_CAP_SET_IDENTITY_MAP_ADDR'
  | 'KVM_CAP_XEN_HVM'
  | 'KVM_CAP_ADJUST_CLOCK'
  | 'KVM_CAP_INTERNAL_ERROR_DATA'
  | 'KVM_CAP_VCPU_EVENTS'
  | 'KVM_CAP_HYPERV'
  | 'KVM_CAP_HYPERV_VAPIC'
  | 'KVM_CAP_HYPERV_SPIN'
  | 'KVM_CAP_PCI_SEGMENT'
  | 'KVM_CAP_INTR_SHADOW'
  | 'KVM_CAP_DEBUGREGS'
  | 'KVM_CAP_X86_ROBUST_SINGLESTEP'
  | 'KVM_CAP_ENABLE_CAP'
  | 'KVM_CAP_XSAVE'
  | 'KVM_CAP_XCRS'
  | 'KVM_CAP_ASYNC_PF'
  | 'KVM_CAP_TSC_CONTROL'
  | 'KVM_CAP_GET_TSC_KHZ'
  | 'KVM_CAP_MAX_VCPUS'
  | 'KVM_CAP_ONE_REG'
  | 'KVM_CAP_TSC_DEADLINE_TIMER'
  | 'KVM_CAP_SYNC_REGS'
  | 'KVM_CAP_PCI_2_3'
  | 'KVM_CAP_KVMCLOCK_CTRL'
  | 'KVM_CAP_SIGNAL_MSI'
  | 'KVM_CAP_READONLY_MEM'
  | 'KVM_CAP_IRQFD_RESAMPLE'
  | 'KVM_CAP_DEVICE_CTRL'
  | 'KVM_CAP_EXT_EMUL_CPUID'
  | 'KVM_CAP_HYPERV_TIME'
  | 'KVM_CAP_IOAPIC_POLARITY_IGNORED'
  | 'KVM_CAP_ENABLE_CAP_VM'
  | 'KVM_CAP_IOEVENTFD_NO_LENGTH'
  | 'KVM_CAP_VM_ATTRIBUTES'
  | 'KVM_CAP_CHECK_EXTENSION_VM'
  | 'KVM_CAP_DISABLE_QUIRKS'
  | 'KVM_CAP_X86_SMM'
  | 'KVM_CAP_MULTI_ADDRESS_SPACE'
  | 'KVM_CAP_SPLIT_IRQCHIP'
  | 'KVM_CAP_IOEVENTFD_ANY_LENGTH'
  | 'KVM_CAP_HYPERV_SYNIC'
  | 'KVM_CAP_VCPU_ATTRIBUTES'
  | 'KVM_CAP_MAX_VCPU_ID'
  | 'KVM_CAP_X2APIC_API'
  | 'KVM_CAP_IMMEDIATE_EXIT'
  | 'KVM_CAP_X86_DISABLE_EXITS'
  | 'KVM_CAP_HYPERV_SYNIC2'
  | 'KVM_CAP_HYPERV_VP_INDEX'
  | 'KVM_CAP_GET_MSR_FEATURES'
  | 'KVM_CAP_HYPERV_EVENTFD'
  | 'KVM_CAP_HYPERV_TLBFLUSH'
  | 'KVM_CAP_NESTED_STATE'
  | 'KVM_CAP_MSR_PLATFORM_INFO'
  | 'KVM_CAP_HYPERV_SEND_IPI'
  | 'KVM_CAP_COALESCED_PIO'
  | 'KVM_CAP_HYPERV_ENLIGHTENED_VMCS'
  | 'KVM_CAP_EXCEPTION_PAYLOAD'
  | 'KVM_CAP_MANUAL_DIRTY_LOG_PROTECT'
  | 'KVM_CAP_HYPERV_CPUID'
  | 'KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2'
  | 'KVM_CAP_PMU_EVENT_FILTER'
  | 'KVM_CAP_HYPERV_DIRECT_TLBFLUSH'
  | 'KVM_CAP_HALT_POLL'
  | 'KVM_CAP_ASYNC_PF_INT'
  | 'KVM_CAP_LAST_CPU'
  | 'KVM_CAP_SMALLER_MAXPHYADDR'
  | 'KVM_CAP_STEAL_TIME'
  | 'KVM_CAP_X86_USER_SPACE_MSR'
  | 'KVM_CAP_X86_MSR_FILTER'
  | 'KVM_CAP_ENFORCE_PV_FEATURE_CPUID'
  | 'KVM_CAP_SYS_HYPERV_CPUID'
  | 'KVM_CAP_DIRTY_LOG_RING'
  | 'KVM_CAP_X86_BUS_LOCK_EXIT'
  | 'KVM_CAP_SET_GUEST_DEBUG2'
  | 'KVM_CAP_SGX_ATTRIBUTE'
  | 'KVM_CAP_VM_COPY_ENC_CONTEXT_FROM'
  | 'KVM_CAP_HYPERV_ENFORCE_CPUID'
  | 'KVM_CAP_SREGS2'
  | 'KVM_CAP_EXIT_HYPERCALL'
  | 'KVM_CAP_BINARY_STATS_FD'
  | 'KVM_CAP_EXIT_ON_EMULATION_FAILURE'
  | 'KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM'
  | 'KVM_CAP_VM_GPA_BITS'
  | 'KVM_CAP_XSAVE2'
  | 'KVM_CAP_SYS_ATTRIBUTES'
  | 'KVM_CAP_PMU_CAPABILITY'
  | 'KVM_CAP_DISABLE_QUIRKS2'
  | 'KVM_CAP_VM_TSC_CONTROL'
  | 'KVM_CAP_SYSTEM_EVENT_DATA'
  | 'KVM_CAP_X86_TRIPLE_FAULT_EVENT'
  | 'KVM_CAP_X86_NOTIFY_VMEXIT'
  | 'KVM_CAP_VM_DISABLE_NX_HUGE_PAGES'
  | 'KVM_CAP_DIRTY_LOG_RING_ACQ_REL'
  | 'KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP'
  | 'KVM_CAP_PMU_EVENT_MASKED_EVENTS'
  | 'KVM_CAP_USER_MEMORY2'
  | 'KVM_CAP_MEMORY_FAULT_INFO'
  | 'KVM_CAP_MEMORY_ATTRIBUTES'
  | 'KVM_CAP_GUEST_MEMFD'
  | 'KVM_CAP_VM_TYPES'
  | 'KVM_CAP_PRE_FAULT_MEMORY'
  | 'KVM_CAP_X86_APIC_BUS_CYCLES_NS'
  | 'KVM_CAP_X86_GUEST_MODE'
  | 'KVM_CAP_GUEST_MEMFD_FLAGS';

/** Every capability number in this module, by Linux name. */
export const KVM_CAPS: Readonly<Record<KvmCapName, number>> = {
  KVM_CAP_IRQCHIP,
  KVM_CAP_HLT,
  KVM_CAP_MMU_SHADOW_CACHE_CONTROL,
  KVM_CAP_USER_MEMORY,
  KVM_CAP_SET_TSS_ADDR,
  KVM_CAP_VAPIC,
  KVM_CAP_EXT_CPUID,
  KVM_CAP_CLOCKSOURCE,
  KVM_CAP_NR_VCPUS,
  KVM_CAP_NR_MEMSLOTS,
  KVM_CAP_PIT,
  KVM_CAP_NOP_IO_DELAY,
  KVM_CAP_PV_MMU,
  KVM_CAP_MP_STATE,
  KVM_CAP_COALESCED_MMIO,
  KVM_CAP_SYNC_MMU,
  KVM_CAP_IOMMU,
  KVM_CAP_DESTROY_MEMORY_REGION_WORKS,
  KVM_CAP_USER_NMI,
  KVM_CAP_SET_GUEST_DEBUG,
  KVM_CAP_REINJECT_CONTROL,
  KVM_CAP_IRQ_ROUTING,
  KVM_CAP_IRQ_INJECT_STATUS,
  KVM_CAP_ASSIGN_DEV_IRQ,
  KVM_CAP_JOIN_MEMORY_REGIONS_WORKS,
  KVM_CAP_MCE,
  KVM_CAP_IRQFD,
  KVM_CAP_PIT2,
  KVM_CAP_SET_BOOT_CPU_ID,
  KVM_CAP_PIT_STATE2,
  KVM_CAP_IOEVENTFD,
  KVM_CAP_SET_IDENTITY_MAP_ADDR,
  KVM_CAP_XEN_HVM,
  KVM_CAP_ADJUST_CLOCK,
  KVM_CAP_INTERNAL_ERROR_DATA,
  KVM_CAP_VCPU_EVENTS,
  KVM_CAP_HYPERV,
  KVM_CAP_HYPERV_VAPIC,
  KVM_CAP_HYPERV_SPIN,
  KVM_CAP_PCI_SEGMENT,
  KVM_CAP_INTR_SHADOW,
  KVM_CAP_DEBUGREGS,
  KVM_CAP_X86_ROBUST_SINGLESTEP,
  KVM_CAP_ENABLE_CAP,
  KVM_CAP_XSAVE,
  KVM_CAP_XCRS,
  KVM_CAP_ASYNC_PF,
  KVM_CAP_TSC_CONTROL,
  KVM_CAP_GET_TSC_KHZ,
  KVM_CAP_MAX_VCPUS,
  KVM_CAP_ONE_REG,
  KVM_CAP_TSC_DEADLINE_TIMER,
  KVM_CAP_SYNC_REGS,
  KVM_CAP_PCI_2_3,
  KVM_CAP_KVMCLOCK_CTRL,
  KVM_CAP_SIGNAL_MSI,
  KVM_CAP_READONLY_MEM,
  KVM_CAP_IRQFD_RESAMPLE,
  KVM_CAP_DEVICE_CTRL,
  KVM_CAP_EXT_EMUL_CPUID,
  KVM_CAP_HYPERV_TIME,
  KVM_CAP_IOAPIC_POLARITY_IGNORED,
  KVM_CAP_ENABLE_CAP_VM,
  KVM_CAP_IOEVENTFD_NO_LENGTH,
  KVM_CAP_VM_ATTRIBUTES,
  KVM_CAP_CHECK_EXTENSION_VM,
  KVM_CAP_DISABLE_QUIRKS,
  KVM_CAP_X86_SMM,
  KVM_CAP_MULTI_ADDRESS_SPACE,
  KVM_CAP_SPLIT_IRQCHIP,
  KVM_CAP_IOEVENTFD_ANY_LENGTH,
  KVM_CAP_HYPERV_SYNIC,
  KVM_CAP_VCPU_ATTRIBUTES,
  KVM_CAP_MAX_VCPU_ID,
  KVM_CAP_X2APIC_API,
  KVM_CAP_IMMEDIATE_EXIT,
  KVM_CAP_X86_DISABLE_EXITS,
  KVM_CAP_HYPERV_SYNIC2,
  KVM_CAP_HYPERV_VP_INDEX,
  KVM_CAP_GET_MSR_FEATURES,
  KVM_CAP_HYPERV_EVENTFD,
  KVM_CAP_HYPERV_TLBFLUSH,
  KVM_CAP_NESTED_STATE,
  KVM_CAP_MSR_PLATFORM_INFO,
  KVM_CAP_HYPERV_SEND_IPI,
  KVM_CAP_COALESCED_PIO,
  KVM_CAP_HYPERV_ENLIGHTENED_VMCS,
  KVM_CAP_EXCEPTION_PAYLOAD,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT,
  KVM_CAP_HYPERV_CPUID,
  KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2,
  KVM_CAP_PMU_EVENT_FILTER,
  KVM_CAP_HYPERV_DIRECT_TLBFLUSH,
  KVM_CAP_HALT_POLL,
  KVM_CAP_ASYNC_PF_INT,
  KVM_CAP_LAST_CPU,
  KVM_CAP_SMALLER_MAXPHYADDR,
  KVM_CAP_STEAL_TIME,
  KVM_CAP_X86_USER_SPACE_MSR,
  KVM_CAP_X86_MSR_FILTER,
  KVM_CAP_ENFORCE_PV_FEATURE_CPUID,
  KVM_CAP_SYS_HYPERV_CPUID,
  KVM_CAP_DIRTY_LOG_RING,
  KVM_CAP_X86_BUS_LOCK_EXIT,
  KVM_CAP_SET_GUEST_DEBUG2,
  KVM_CAP_SGX_ATTRIBUTE,
  KVM_CAP_VM_COPY_ENC_CONTEXT_FROM,
  KVM_CAP_HYPERV_ENFORCE_CPUID,
  KVM_CAP_SREGS2,
  KVM_CAP_EXIT_HYPERCALL,
  KVM_CAP_BINARY_STATS_FD,
  KVM_CAP_EXIT_ON_EMULATION_FAILURE,
  KVM_CAP_VM_MOVE_ENC_CONTEXT_FROM,
  KVM_CAP_VM_GPA_BITS,
  KVM_CAP_XSAVE2,
  KVM_CAP_SYS_ATTRIBUTES,
  KVM_CAP_PMU_CAPABILITY,
  KVM_CAP_DISABLE_QUIRKS2,
  KVM_CAP_VM_TSC_CONTROL,
  KVM_CAP_SYSTEM_EVENT_DATA,
  KVM_CAP_X86_TRIPLE_FAULT_EVENT,
  KVM_CAP_X86_NOTIFY_VMEXIT,
  KVM_CAP_VM_DISABLE_NX_HUGE_PAGES,
  KVM_CAP_DIRTY_LOG_RING_ACQ_REL,
  KVM_CAP_DIRTY_LOG_RING_WITH_BITMAP,
  KVM_CAP_PMU_EVENT_MASKED_EVENTS,
  KVM_CAP_USER_MEMORY2,
  KVM_CAP_MEMORY_FAULT_INFO,
  KVM_CAP_MEMORY_ATTRIBUTES,
  KVM_CAP_GUEST_MEMFD,
  KVM_CAP_VM_TYPES,
  KVM_CAP_PRE_FAULT_MEMORY,
  KVM_CAP_X86_APIC_BUS_CYCLES_NS,
  KVM_CAP_X86_GUEST_MODE,
  KVM_CAP_GUEST_MEMFD_FLAGS,
};


const CAP_BY_NUMBER = reverse(KVM_CAPS);

/** The Linux name of a capability number, e.g. `capabilityName(66)` is `'KVM_CAP_MAX_VCPUS'`; `'KVM_CAP #n'` if unknown. */
export function capabilityName(cap: number): string {
  return CAP_BY_NUMBER.get(cap) ?? `KVM_CAP #${String(cap)}`;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Exit reasons (kvm_run.exit_reason)                                                                       */
/* ------------------------------------------------------------------------------------------------------ */

/** Exit reason 0: an exit KVM could not handle; `hw.hardware_exit_reason` holds the hardware code. */
export const KVM_EXIT_UNKNOWN = 0;
/** Exit reason 1: a guest exception user space must handle (`ex`). */
export const KVM_EXIT_EXCEPTION = 1;
/** Exit reason 2: a port I/O instruction (`io`; data in the PIO page at `io.data_offset`). */
export const KVM_EXIT_IO = 2;
/** Exit reason 3: a hypercall forwarded to user space (`hypercall`). */
export const KVM_EXIT_HYPERCALL = 3;
/** Exit reason 4: a debug event requested through KVM_SET_GUEST_DEBUG (`debug`). */
export const KVM_EXIT_DEBUG = 4;
/** Exit reason 5: the guest executed HLT and there is no in-kernel local APIC to wait on. */
export const KVM_EXIT_HLT = 5;
/** Exit reason 6: an access to guest-physical memory that no memory slot backs (`mmio`). */
export const KVM_EXIT_MMIO = 6;
/** Exit reason 7: the guest can take an interrupt (requested with `request_interrupt_window`). */
export const KVM_EXIT_IRQ_WINDOW_OPEN = 7;
/** Exit reason 8: the guest triple-faulted (or otherwise requested shutdown). */
export const KVM_EXIT_SHUTDOWN = 8;
/** Exit reason 9: VM entry failed (`fail_entry`). */
export const KVM_EXIT_FAIL_ENTRY = 9;
/** Exit reason 10: KVM_RUN was interrupted by a signal (the ioctl returns EINTR). */
export const KVM_EXIT_INTR = 10;
/** Exit reason 11: the guest lowered CR8/TPR while no in-kernel local APIC exists (SVM reports this). */
export const KVM_EXIT_SET_TPR = 11;
/** Exit reason 12: a reported TPR access (`tpr_access`). */
export const KVM_EXIT_TPR_ACCESS = 12;
/** Exit reason 13 (`KVM_EXIT_S390_SIEIC`; not produced on x86). */
export const KVM_EXIT_S390_SIEIC = 13;
/** Exit reason 14 (`KVM_EXIT_S390_RESET`; not produced on x86). */
export const KVM_EXIT_S390_RESET = 14;
/** Exit reason 15: deprecated (PowerPC DCR access). */
export const KVM_EXIT_DCR = 15;
/** Exit reason 16 (`KVM_EXIT_NMI`; not produced on x86). */
export const KVM_EXIT_NMI = 16;
/** Exit reason 17: KVM hit an internal error (`internal.suberror` is a KVM_INTERNAL_ERROR_* code). */
export const KVM_EXIT_INTERNAL_ERROR = 17;
/** Exit reason 18 (`KVM_EXIT_OSI`; not produced on x86). */
export const KVM_EXIT_OSI = 18;
/** Exit reason 19 (`KVM_EXIT_PAPR_HCALL`; not produced on x86). */
export const KVM_EXIT_PAPR_HCALL = 19;
/** Exit reason 20 (`KVM_EXIT_S390_UCONTROL`; not produced on x86). */
export const KVM_EXIT_S390_UCONTROL = 20;
/** Exit reason 21 (`KVM_EXIT_WATCHDOG`; not produced on x86). */
export const KVM_EXIT_WATCHDOG = 21;
/** Exit reason 22 (`KVM_EXIT_S390_TSCH`; not produced on x86). */
export const KVM_EXIT_S390_TSCH = 22;
/** Exit reason 23 (`KVM_EXIT_EPR`; not produced on x86). */
export const KVM_EXIT_EPR = 23;
/** Exit reason 24: a system-level event such as shutdown, reset or crash (`system_event`). */
export const KVM_EXIT_SYSTEM_EVENT = 24;
/** Exit reason 25 (`KVM_EXIT_S390_STSI`; not produced on x86). */
export const KVM_EXIT_S390_STSI = 25;
/** Exit reason 26: an EOI for a level-triggered interrupt of a split IOAPIC (`eoi`). */
export const KVM_EXIT_IOAPIC_EOI = 26;
/** Exit reason 27: a Hyper-V SynIC/hypercall event. */
export const KVM_EXIT_HYPERV = 27;
/** Exit reason 28 (`KVM_EXIT_ARM_NISV`; not produced on x86). */
export const KVM_EXIT_ARM_NISV = 28;
/** Exit reason 29: an RDMSR forwarded to user space (`msr`). */
export const KVM_EXIT_X86_RDMSR = 29;
/** Exit reason 30: a WRMSR forwarded to user space (`msr`). */
export const KVM_EXIT_X86_WRMSR = 30;
/** Exit reason 31: the vCPU dirty ring is full. */
export const KVM_EXIT_DIRTY_RING_FULL = 31;
/** Exit reason 32: an SEV-ES AP entered the reset-hold state. */
export const KVM_EXIT_AP_RESET_HOLD = 32;
/** Exit reason 33: the guest took a bus lock (bus-lock detection). */
export const KVM_EXIT_X86_BUS_LOCK = 33;
/** Exit reason 34: a Xen hypercall forwarded to user space. */
export const KVM_EXIT_XEN = 34;
/** Exit reason 35 (`KVM_EXIT_RISCV_SBI`; not produced on x86). */
export const KVM_EXIT_RISCV_SBI = 35;
/** Exit reason 36 (`KVM_EXIT_RISCV_CSR`; not produced on x86). */
export const KVM_EXIT_RISCV_CSR = 36;
/** Exit reason 37: a notify VM exit (`notify`). */
export const KVM_EXIT_NOTIFY = 37;
/** Exit reason 38 (`KVM_EXIT_LOONGARCH_IOCSR`; not produced on x86). */
export const KVM_EXIT_LOONGARCH_IOCSR = 38;
/** Exit reason 39: a guest memory access KVM cannot resolve (`memory_fault`). */
export const KVM_EXIT_MEMORY_FAULT = 39;
/** Exit reason 40: a TDX TDVMCALL forwarded to user space. */
export const KVM_EXIT_TDX = 40;
/** Exit reason 41 (`KVM_EXIT_ARM_SEA`; not produced on x86). */
export const KVM_EXIT_ARM_SEA = 41;
/** Exit reason 42 (`KVM_EXIT_ARM_LDST64B`; not produced on x86). */
export const KVM_EXIT_ARM_LDST64B = 42;
/** Exit reason 43: an SEV-SNP guest requested certificates. */
export const KVM_EXIT_SNP_REQ_CERTS = 43;

/** The Linux name of an exit reason in {@link KVM_EXIT_REASONS}. */
export type KvmExitReasonName =
  | 'KVM_EXIT_UNKNOWN'
  | 'KVM_EXIT_EXCEPTION'
  | 'KVM_EXIT_IO'
  | 'KVM_EXIT_HYPERCALL'
  | 'KVM_EXIT_DEBUG'
  | 'KVM_EXIT_HLT'
  | 'KVM_EXIT_MMIO'
  | 'KVM_EXIT_IRQ_WINDOW_OPEN'
  | 'KVM_EXIT_SHUTDOWN'
  | 'KVM_EXIT_FAIL_ENTRY'
  | 'KVM_EXIT_INTR'
  | 'KVM_EXIT_SET_TPR'
  | 'KVM_EXIT_TPR_ACCESS'
  | 'KVM_EXIT_S390_SIEIC'
  | 'KVM_EXIT_S390_RESET'
  | 'KVM_EXIT_DCR'
  | 'KVM_EXIT_NMI'
  | 'KVM_EXIT_INTERNAL_ERROR'
  | 'KVM_EXIT_OSI'
  | 'KVM_EXIT_PAPR_HCALL'
  | 'KVM_EXIT_S390_UCONTROL'
  | 'KVM_EXIT_WATCHDOG'
  | 'KVM_EXIT_S390_TSCH'
  | 'KVM_EXIT_EPR'
  | 'KVM_EXIT_SYSTEM_EVENT'
  | 'KVM_EXIT_S390_STSI'
  | 'KVM_EXIT_IOAPIC_EOI'
  | 'KVM_EXIT_HYPERV'
  | 'KVM_EXIT_ARM_NISV'
  | 'KVM_EXIT_X86_RDMSR'
  | 'KVM_EXIT_X86_WRMSR'
  | 'KVM_EXIT_DIRTY_RING_FULL'
  | 'KVM_EXIT_AP_RESET_HOLD'
  | 'KVM_EXIT_X86_BUS_LOCK'
  | 'KVM_EXIT_XEN'
  | 'KVM_EXIT_RISCV_SBI'
  | 'KVM_EXIT_RISCV_CSR'
  | 'KVM_EXIT_NOTIFY'
  | 'KVM_EXIT_LOONGARCH_IOCSR'
  | 'KVM_EXIT_MEMORY_FAULT'
  | 'KVM_EXIT_TDX'
  | 'KVM_EXIT_ARM_SEA'
  | 'KVM_EXIT_ARM_LDST64B'
  | 'KVM_EXIT_SNP_REQ_CERTS';

/** Every exit reason, by Linux name (all architectures: the numbers form one namespace). */
export const KVM_EXIT_REASONS: Readonly<Record<KvmExitReasonName, number>> = {
  KVM_EXIT_UNKNOWN,
  KVM_EXIT_EXCEPTION,
  KVM_EXIT_IO,
  KVM_EXIT_HYPERCALL,
  KVM_EXIT_DEBUG,
  KVM_EXIT_HLT,
  KVM_EXIT_MMIO,
  KVM_EXIT_IRQ_WINDOW_OPEN,
  KVM_EXIT_SHUTDOWN,
  KVM_EXIT_FAIL_ENTRY,
  KVM_EXIT_INTR,
  KVM_EXIT_SET_TPR,
  KVM_EXIT_TPR_ACCESS,
  KVM_EXIT_S390_SIEIC,
  KVM_EXIT_S390_RESET,
  KVM_EXIT_DCR,
  KVM_EXIT_NMI,
  KVM_EXIT_INTERNAL_ERROR,
  KVM_EXIT_OSI,
  KVM_EXIT_PAPR_HCALL,
  KVM_EXIT_S390_UCONTROL,
  KVM_EXIT_WATCHDOG,
  KVM_EXIT_S390_TSCH,
  KVM_EXIT_EPR,
  KVM_EXIT_SYSTEM_EVENT,
  KVM_EXIT_S390_STSI,
  KVM_EXIT_IOAPIC_EOI,
  KVM_EXIT_HYPERV,
  KVM_EXIT_ARM_NISV,
  KVM_EXIT_X86_RDMSR,
  KVM_EXIT_X86_WRMSR,
  KVM_EXIT_DIRTY_RING_FULL,
  KVM_EXIT_AP_RESET_HOLD,
  KVM_EXIT_X86_BUS_LOCK,
  KVM_EXIT_XEN,
  KVM_EXIT_RISCV_SBI,
  KVM_EXIT_RISCV_CSR,
  KVM_EXIT_NOTIFY,
  KVM_EXIT_LOONGARCH_IOCSR,
  KVM_EXIT_MEMORY_FAULT,
  KVM_EXIT_TDX,
  KVM_EXIT_ARM_SEA,
  KVM_EXIT_ARM_LDST64B,
  KVM_EXIT_SNP_REQ_CERTS,
};


const EXIT_BY_NUMBER = reverse(KVM_EXIT_REASONS);

/** The Linux name of an exit reason, e.g. `exitReasonName(2)` is `'KVM_EXIT_IO'`; `'KVM_EXIT #n'` if unknown. */
export function exitReasonName(reason: number): string {
  return EXIT_BY_NUMBER.get(reason) ?? `KVM_EXIT #${String(reason)}`;
}

/** `io.direction` of a `KVM_EXIT_IO` for an IN instruction (the guest reads; user space fills the data). */
export const KVM_EXIT_IO_IN = 0;
/** `io.direction` of a `KVM_EXIT_IO` for an OUT instruction (the guest wrote; user space consumes the data). */
export const KVM_EXIT_IO_OUT = 1;

/** `internal.suberror`: the instruction emulator failed. */
export const KVM_INTERNAL_ERROR_EMULATION = 1;
/** `internal.suberror`: an exception occurred while another was being delivered. */
export const KVM_INTERNAL_ERROR_SIMUL_EX = 2;
/** `internal.suberror`: a VM exit happened while an event was being delivered. */
export const KVM_INTERNAL_ERROR_DELIVERY_EV = 3;
/** `internal.suberror`: the hardware reported an exit reason KVM does not handle. */
export const KVM_INTERNAL_ERROR_UNEXPECTED_EXIT_REASON = 4;
/** `emulation_failure.flags`: `insn_size` and `insn_bytes` are valid. */
export const KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES = 1;

/** `system_event.type`: the guest asked to power off. */
export const KVM_SYSTEM_EVENT_SHUTDOWN = 1;
/** `system_event.type`: the guest asked to reset. */
export const KVM_SYSTEM_EVENT_RESET = 2;
/** `system_event.type`: the guest reported a crash. */
export const KVM_SYSTEM_EVENT_CRASH = 3;
/** `system_event.type`: a vCPU woke up from suspend. */
export const KVM_SYSTEM_EVENT_WAKEUP = 4;
/** `system_event.type`: the guest asked to suspend. */
export const KVM_SYSTEM_EVENT_SUSPEND = 5;
/** `system_event.type`: an SEV-ES/SNP guest requested termination. */
export const KVM_SYSTEM_EVENT_SEV_TERM = 6;
/** `system_event.type`: a TDX guest hit a fatal error. */
export const KVM_SYSTEM_EVENT_TDX_FATAL = 7;

/** `msr.reason` of a forwarded MSR exit: the access would have raised #GP. */
export const KVM_MSR_EXIT_REASON_INVAL = 1 << 0;
/** `msr.reason` of a forwarded MSR exit: KVM does not know the MSR. */
export const KVM_MSR_EXIT_REASON_UNKNOWN = 1 << 1;
/** `msr.reason` of a forwarded MSR exit: the MSR filter denied the access. */
export const KVM_MSR_EXIT_REASON_FILTER = 1 << 2;

/** `memory_fault.flags`: the faulting access was to private (guest_memfd) memory. */
export const KVM_MEMORY_EXIT_FLAG_PRIVATE = 1 << 3;

/** `notify.flags`: the VM context is no longer valid after the notify exit. */
export const KVM_NOTIFY_CONTEXT_INVALID = 1 << 0;

/** kvm_run `flags` (x86): the vCPU was in system-management mode at the exit. */
export const KVM_RUN_X86_SMM = 1 << 0;
/** kvm_run `flags` (x86): the exit follows a bus lock. */
export const KVM_RUN_X86_BUS_LOCK = 1 << 1;
/** kvm_run `flags` (x86): the vCPU was running a nested (L2) guest at the exit. */
export const KVM_RUN_X86_GUEST_MODE = 1 << 2;

/** `kvm_valid_regs` / `kvm_dirty_regs` bit: `s.regs.regs` (struct kvm_regs). */
export const KVM_SYNC_X86_REGS = 1 << 0;
/** `kvm_valid_regs` / `kvm_dirty_regs` bit: `s.regs.sregs` (struct kvm_sregs). */
export const KVM_SYNC_X86_SREGS = 1 << 1;
/** `kvm_valid_regs` / `kvm_dirty_regs` bit: `s.regs.events` (struct kvm_vcpu_events). */
export const KVM_SYNC_X86_EVENTS = 1 << 2;
/** All valid x86 sync-register bits (what `KVM_CHECK_EXTENSION(KVM_CAP_SYNC_REGS)` returns). */
export const KVM_SYNC_X86_VALID_FIELDS = KVM_SYNC_X86_REGS | KVM_SYNC_X86_SREGS | KVM_SYNC_X86_EVENTS;

/* ------------------------------------------------------------------------------------------------------ */
/* Memory slots, VM types, SEV                                                                              */
/* ------------------------------------------------------------------------------------------------------ */

/** Memory-slot flag: track writes in a dirty bitmap. */
export const KVM_MEM_LOG_DIRTY_PAGES = 1 << 0;
/** Memory-slot flag: guest writes exit to user space as MMIO. */
export const KVM_MEM_READONLY = 1 << 1;
/** Memory-slot flag: private memory comes from a guest_memfd (KVM_SET_USER_MEMORY_REGION2 only). */
export const KVM_MEM_GUEST_MEMFD = 1 << 2;

/** KVM_SET_MEMORY_ATTRIBUTES attribute: the range is private to the guest. */
export const KVM_MEMORY_ATTRIBUTE_PRIVATE = 1 << 3;

/** KVM_CREATE_VM type on x86: an ordinary VM. */
export const KVM_X86_DEFAULT_VM = 0;
/** KVM_CREATE_VM type on x86: software-protected VM (development and testing only). */
export const KVM_X86_SW_PROTECTED_VM = 1;
/** KVM_CREATE_VM type on x86: AMD SEV guest. */
export const KVM_X86_SEV_VM = 2;
/** KVM_CREATE_VM type on x86: AMD SEV-ES guest. */
export const KVM_X86_SEV_ES_VM = 3;
/** KVM_CREATE_VM type on x86: AMD SEV-SNP guest. */
export const KVM_X86_SNP_VM = 4;
/** KVM_CREATE_VM type on x86: Intel TDX guest. */
export const KVM_X86_TDX_VM = 5;

/**
 * SEV command: initialise an SEV guest (takes an SEV ASID). SEV command ids (`enum sev_cmd_id`) go in the
 * `id` of the `struct kvm_sev_cmd` passed to KVM_MEMORY_ENCRYPT_OP.
 */
export const KVM_SEV_INIT = 0;
/** SEV command: initialise an SEV-ES guest (takes an SEV-ES ASID). */
export const KVM_SEV_ES_INIT = 1;
/** SEV command: start the launch flow. */
export const KVM_SEV_LAUNCH_START = 2;
/** SEV command: encrypt guest memory in place. */
export const KVM_SEV_LAUNCH_UPDATE_DATA = 3;
/** SEV command: encrypt the vCPU save areas (SEV-ES). */
export const KVM_SEV_LAUNCH_UPDATE_VMSA = 4;
/** SEV command: inject a secret. */
export const KVM_SEV_LAUNCH_SECRET = 5;
/** SEV command: get the launch measurement. */
export const KVM_SEV_LAUNCH_MEASURE = 6;
/** SEV command: finish the launch flow. */
export const KVM_SEV_LAUNCH_FINISH = 7;
/** SEV command: start an outgoing migration. */
export const KVM_SEV_SEND_START = 8;
/** SEV command: send encrypted guest memory. */
export const KVM_SEV_SEND_UPDATE_DATA = 9;
/** SEV command: send an encrypted save area. */
export const KVM_SEV_SEND_UPDATE_VMSA = 10;
/** SEV command: finish an outgoing migration. */
export const KVM_SEV_SEND_FINISH = 11;
/** SEV command: start an incoming migration. */
export const KVM_SEV_RECEIVE_START = 12;
/** SEV command: receive encrypted guest memory. */
export const KVM_SEV_RECEIVE_UPDATE_DATA = 13;
/** SEV command: receive an encrypted save area. */
export const KVM_SEV_RECEIVE_UPDATE_VMSA = 14;
/** SEV command: finish an incoming migration. */
export const KVM_SEV_RECEIVE_FINISH = 15;
/** SEV command: query the guest's state. */
export const KVM_SEV_GUEST_STATUS = 16;
/** SEV command: decrypt guest memory for debugging. */
export const KVM_SEV_DBG_DECRYPT = 17;
/** SEV command: encrypt guest memory for debugging. */
export const KVM_SEV_DBG_ENCRYPT = 18;
/** SEV command: export the platform certificates. */
export const KVM_SEV_CERT_EXPORT = 19;
/** SEV command: get an attestation report. */
export const KVM_SEV_GET_ATTESTATION_REPORT = 20;
/** SEV command: cancel an outgoing migration. */
export const KVM_SEV_SEND_CANCEL = 21;
/** SEV command: initialise an SEV, SEV-ES or SNP guest with a `struct kvm_sev_init` (VM type from KVM_CREATE_VM). */
export const KVM_SEV_INIT2 = 22;
/** SEV-SNP command: start the SNP launch flow. */
export const KVM_SEV_SNP_LAUNCH_START = 100;
/** SEV-SNP command: add pages to the launch image. */
export const KVM_SEV_SNP_LAUNCH_UPDATE = 101;
/** SEV-SNP command: finish the SNP launch flow. */
export const KVM_SEV_SNP_LAUNCH_FINISH = 102;
/** SEV-SNP command: let user space serve certificate requests. */
export const KVM_SEV_SNP_ENABLE_REQ_CERTS = 103;

/** The Linux name of an SEV command in {@link KVM_SEV_COMMANDS}. */
export type KvmSevCommandName =
  | 'KVM_SEV_INIT'
  | 'KVM_SEV_ES_INIT'
  | 'KVM_SEV_LAUNCH_START'
  | 'KVM_SEV_LAUNCH_UPDATE_DATA'
  | 'KVM_SEV_LAUNCH_UPDATE_VMSA'
  | 'KVM_SEV_LAUNCH_SECRET'
  | 'KVM_SEV_LAUNCH_MEASURE'
  | 'KVM_SEV_LAUNCH_FINISH'
  | 'KVM_SEV_SEND_START'
  | 'KVM_SEV_SEND_UPDATE_DATA'
  | 'KVM_SEV_SEND_UPDATE_VMSA'
  | 'KVM_SEV_SEND_FINISH'
  | 'KVM_SEV_RECEIVE_START'
  | 'KVM_SEV_RECEIVE_UPDATE_DATA'
  | 'KVM_SEV_RECEIVE_UPDATE_VMSA'
  | 'KVM_SEV_RECEIVE_FINISH'
  | 'KVM_SEV_GUEST_STATUS'
  | 'KVM_SEV_DBG_DECRYPT'
  | 'KVM_SEV_DBG_ENCRYPT'
  | 'KVM_SEV_CERT_EXPORT'
  | 'KVM_SEV_GET_ATTESTATION_REPORT'
  | 'KVM_SEV_SEND_CANCEL'
  | 'KVM_SEV_INIT2'
  | 'KVM_SEV_SNP_LAUNCH_START'
  | 'KVM_SEV_SNP_LAUNCH_UPDATE'
  | 'KVM_SEV_SNP_LAUNCH_FINISH'
  | 'KVM_SEV_SNP_ENABLE_REQ_CERTS';

/** Every SEV command id, by Linux name. */
export const KVM_SEV_COMMANDS: Readonly<Record<KvmSevCommandName, number>> = {
  KVM_SEV_INIT,
  KVM_SEV_ES_INIT,
  KVM_SEV_LAUNCH_START,
  KVM_SEV_LAUNCH_UPDATE_DATA,
  KVM_SEV_LAUNCH_UPDATE_VMSA,
  KVM_SEV_LAUNCH_SECRET,
  KVM_SEV_LAUNCH_MEASURE,
  KVM_SEV_LAUNCH_FINISH,
  KVM_SEV_SEND_START,
  KVM_SEV_SEND_UPDATE_DATA,
  KVM_SEV_SEND_UPDATE_VMSA,
  KVM_SEV_SEND_FINISH,
  KVM_SEV_RECEIVE_START,
  KVM_SEV_RECEIVE_UPDATE_DATA,
  KVM_SEV_RECEIVE_UPDATE_VMSA,
  KVM_SEV_RECEIVE_FINISH,
  KVM_SEV_GUEST_STATUS,
  KVM_SEV_DBG_DECRYPT,
  KVM_SEV_DBG_ENCRYPT,
  KVM_SEV_CERT_EXPORT,
  KVM_SEV_GET_ATTESTATION_REPORT,
  KVM_SEV_SEND_CANCEL,
  KVM_SEV_INIT2,
  KVM_SEV_SNP_LAUNCH_START,
  KVM_SEV_SNP_LAUNCH_UPDATE,
  KVM_SEV_SNP_LAUNCH_FINISH,
  KVM_SEV_SNP_ENABLE_REQ_CERTS,
};

const SEV_BY_ID = reverse(KVM_SEV_COMMANDS);

/** The Linux name of an SEV command id, e.g. `sevCommandName(1)` is `'KVM_SEV_ES_INIT'`; `'KVM_SEV #n'` if unknown. */
export function sevCommandName(id: number): string {
  return SEV_BY_ID.get(id) ?? `KVM_SEV #${String(id)}`;
}

/* ------------------------------------------------------------------------------------------------------ */
/* vCPU state values and flags                                                                              */
/* ------------------------------------------------------------------------------------------------------ */

/** `kvm_mp_state.mp_state`: the vCPU runs. */
export const KVM_MP_STATE_RUNNABLE = 0;
/** `kvm_mp_state.mp_state`: an AP waiting for INIT. */
export const KVM_MP_STATE_UNINITIALIZED = 1;
/** `kvm_mp_state.mp_state`: INIT received, waiting for SIPI. */
export const KVM_MP_STATE_INIT_RECEIVED = 2;
/** `kvm_mp_state.mp_state`: halted (HLT) until an interrupt. */
export const KVM_MP_STATE_HALTED = 3;
/** `kvm_mp_state.mp_state`: SIPI received. */
export const KVM_MP_STATE_SIPI_RECEIVED = 4;
/** `kvm_mp_state.mp_state`: an SEV-ES AP in reset hold. */
export const KVM_MP_STATE_AP_RESET_HOLD = 9;
/** `kvm_mp_state.mp_state`: suspended until a wake-up event. */
export const KVM_MP_STATE_SUSPENDED = 10;

/** `kvm_guest_debug.control`: debugging on. */
export const KVM_GUESTDBG_ENABLE = 0x00000001;
/** `kvm_guest_debug.control`: single-step the guest. */
export const KVM_GUESTDBG_SINGLESTEP = 0x00000002;
/** `kvm_guest_debug.control` (x86): exit on INT3. */
export const KVM_GUESTDBG_USE_SW_BP = 0x00010000;
/** `kvm_guest_debug.control` (x86): use `arch.debugreg` as hardware breakpoints. */
export const KVM_GUESTDBG_USE_HW_BP = 0x00020000;
/** `kvm_guest_debug.control` (x86): inject #DB. */
export const KVM_GUESTDBG_INJECT_DB = 0x00040000;
/** `kvm_guest_debug.control` (x86): inject #BP. */
export const KVM_GUESTDBG_INJECT_BP = 0x00080000;
/** `kvm_guest_debug.control` (x86): block interrupts while single-stepping. */
export const KVM_GUESTDBG_BLOCKIRQ = 0x00100000;

/** KVM_CAP_X86_DISABLE_EXITS argument bit: MWAIT does not exit. */
export const KVM_X86_DISABLE_EXITS_MWAIT = 1 << 0;
/** KVM_CAP_X86_DISABLE_EXITS argument bit: HLT does not exit. */
export const KVM_X86_DISABLE_EXITS_HLT = 1 << 1;
/** KVM_CAP_X86_DISABLE_EXITS argument bit: PAUSE does not exit. */
export const KVM_X86_DISABLE_EXITS_PAUSE = 1 << 2;
/** KVM_CAP_X86_DISABLE_EXITS argument bit: C-state entry does not exit. */
export const KVM_X86_DISABLE_EXITS_CSTATE = 1 << 3;
/** KVM_CAP_X86_DISABLE_EXITS argument bit: APERF/MPERF reads do not exit. */
export const KVM_X86_DISABLE_EXITS_APERFMPERF = 1 << 4;

/** `kvm_cpuid_entry2.flags`: the leaf depends on the sub-leaf in `index` (sic: Linux's spelling). */
export const KVM_CPUID_FLAG_SIGNIFCANT_INDEX = 1 << 0;
/** `kvm_cpuid_entry2.flags`: stateful leaf (obsolete). */
export const KVM_CPUID_FLAG_STATEFUL_FUNC = 1 << 1;
/** `kvm_cpuid_entry2.flags`: next read of a stateful leaf (obsolete). */
export const KVM_CPUID_FLAG_STATE_READ_NEXT = 1 << 2;

/** `kvm_irqchip.chip_id`: the master 8259 PIC. */
export const KVM_IRQCHIP_PIC_MASTER = 0;
/** `kvm_irqchip.chip_id`: the slave 8259 PIC. */
export const KVM_IRQCHIP_PIC_SLAVE = 1;
/** `kvm_irqchip.chip_id`: the IOAPIC. */
export const KVM_IRQCHIP_IOAPIC = 2;
/** Number of in-kernel x86 irqchips. */
export const KVM_NR_IRQCHIPS = 3;
/** Pins on the in-kernel IOAPIC. */
export const KVM_IOAPIC_NUM_PINS = 24;
