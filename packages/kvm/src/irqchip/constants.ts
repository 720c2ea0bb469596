/**
 * Numbers of the in-kernel interrupt controllers and the PIT that `abi/constants.ts` does not carry yet, under
 * their Linux names. Sources: `include/uapi/linux/kvm.h`, `arch/x86/include/uapi/asm/kvm.h`,
 * `arch/x86/include/asm/apicdef.h`, `arch/x86/kvm/{i8254.h,ioapic.h,lapic.h,irq.h}`, `include/linux/kvm_host.h`.
 *
 * @module
 */

/* ---- routing (include/uapi/linux/kvm.h) ------------------------------------------------------------- */

/** `kvm_irq_routing_entry.type`: a pin of an in-kernel irqchip. */
export const KVM_IRQ_ROUTING_IRQCHIP = 1;
/** `kvm_irq_routing_entry.type`: an MSI message. */
export const KVM_IRQ_ROUTING_MSI = 2;
/** `kvm_irq_routing_entry.type`: s390 adapter interrupt (never valid on x86). */
export const KVM_IRQ_ROUTING_S390_ADAPTER = 3;
/** `kvm_irq_routing_entry.type`: Hyper-V SynIC SINT. */
export const KVM_IRQ_ROUTING_HV_SINT = 4;
/** `kvm_irq_routing_entry.type`: Xen event channel. */
export const KVM_IRQ_ROUTING_XEN_EVTCHN = 5;
/** `kvm_irq_routing_entry.flags` / `kvm_msi.flags`: `devid` is valid. */
export const KVM_MSI_VALID_DEVID = 1 << 0;
/** `KVM_MAX_IRQ_ROUTES` (include/linux/kvm_host.h): GSIs are below it and a table has at most this many entries. */
export const KVM_MAX_IRQ_ROUTES = 4096;
/** Pins per irqchip in the chip/pin → GSI map (`KVM_IRQCHIP_NUM_PINS` = `KVM_IOAPIC_NUM_PINS`). */
export const KVM_IRQCHIP_NUM_PINS = 24;

/** IRQ source id of KVM_IRQ_LINE and irqfd (`KVM_USERSPACE_IRQ_SOURCE_ID`). */
export const KVM_USERSPACE_IRQ_SOURCE_ID = 0;
/** IRQ source id of resampling irqfds (`KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID`). */
export const KVM_IRQFD_RESAMPLE_IRQ_SOURCE_ID = 1;
/** IRQ source ids are bits of one `unsigned long` (`BITS_PER_LONG`). */
export const KVM_MAX_IRQ_SOURCE_IDS = 64;

/* ---- PIC (arch/x86/kvm/irq.h) ------------------------------------------------------------------------ */

/** Pins of the PIC pair (`PIC_NUM_PINS`). */
export const PIC_NUM_PINS = 16;
/** Reset value of the master's `elcr_mask` (`kvm_create_pic`): IRQ 0, 1 and 2 cannot be level-triggered. */
export const PIC_MASTER_ELCR_MASK = 0xf8;
/** Reset value of the slave's `elcr_mask` (`kvm_create_pic`): IRQ 8 and 13 cannot be level-triggered. */
export const PIC_SLAVE_ELCR_MASK = 0xde;

/* ---- IOAPIC (arch/x86/kvm/ioapic.h) ------------------------------------------------------------------ */

/** `IOAPIC_DEFAULT_BASE_ADDRESS`. */
export const IOAPIC_DEFAULT_BASE_ADDRESS = 0xfec00000;
/** `IOAPIC_MEM_LENGTH`: the MMIO window. */
export const IOAPIC_MEM_LENGTH = 0x100;
/** `IOAPIC_VERSION_ID`: the 82093AA's version. */
export const IOAPIC_VERSION_ID = 0x11;
/** Direct register: IOREGSEL. */
export const IOAPIC_REG_SELECT = 0x00;
/** Direct register: IOWIN. */
export const IOAPIC_REG_WINDOW = 0x10;
/** Indirect register 0: ID. */
export const IOAPIC_REG_APIC_ID = 0x00;
/** Indirect register 1: version. */
export const IOAPIC_REG_VERSION = 0x01;
/** Indirect register 2: arbitration id. */
export const IOAPIC_REG_ARB_ID = 0x02;
/** `IOAPIC_EDGE_TRIG`. */
export const IOAPIC_EDGE_TRIG = 0;
/** `IOAPIC_LEVEL_TRIG`. */
export const IOAPIC_LEVEL_TRIG = 1;
/** The RTC's GSI, whose EOIs KVM tracks for KVM_IRQ_LINE_STATUS (`RTC_GSI`). */
export const RTC_GSI = 8;
/** EOIs of a still-asserted level pin after which KVM delays the re-injection (`IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT`). */
export const IOAPIC_SUCCESSIVE_IRQ_MAX_COUNT = 10000;
/** The delay of that re-injection: `HZ / 100` jiffies = 10 ms. */
export const IOAPIC_EOI_STORM_DELAY_NS = 10_000_000n;

/* ---- PIT (arch/x86/kvm/i8254.h, include/uapi/linux/kvm.h) ------------------------------------------- */

/** `KVM_PIT_FREQ`: the input clock in Hz (KVM uses 1193181, the 8254's 1.193182 MHz rounded down). */
export const KVM_PIT_FREQ = 1193181;
/** `KVM_PIT_BASE_ADDRESS`: ports 0x40-0x43. */
export const KVM_PIT_BASE_ADDRESS = 0x40;
/** `KVM_PIT_MEM_LENGTH`. */
export const KVM_PIT_MEM_LENGTH = 4;
/** `KVM_SPEAKER_BASE_ADDRESS`: port 0x61. */
export const KVM_SPEAKER_BASE_ADDRESS = 0x61;
/** `kvm_pit_config.flags`: also model the speaker port 0x61. */
export const KVM_PIT_SPEAKER_DUMMY = 1;
/** `kvm_pit_state2.flags`: the HPET runs in legacy mode, the PIT does not raise IRQ 0. */
export const KVM_PIT_FLAGS_HPET_LEGACY = 0x00000001;
/** `kvm_pit_state2.flags`: speaker data bit (port 0x61 bit 1). */
export const KVM_PIT_FLAGS_SPEAKER_DATA_ON = 0x00000002;
/** Default of KVM's `min_timer_period_us` parameter (arch/x86/kvm/x86.c): periodic timers are at least 200 µs. */
export const MIN_TIMER_PERIOD_US = 200;

/* ---- local APIC (arch/x86/include/asm/apicdef.h, arch/x86/kvm/lapic.{c,h}) -------------------------- */

/** `APIC_VERSION` that KVM reports (a Xeon/Pentium 4 local APIC). */
export const APIC_VERSION = 0x14;
/** Register offsets in the 4 KiB APIC page (`struct kvm_lapic_state` holds the first 1 KiB). */
export const APIC_ID = 0x20;
/** Version register. */
export const APIC_LVR = 0x30;
/** Task priority. */
export const APIC_TASKPRI = 0x80;
/** Arbitration priority. */
export const APIC_ARBPRI = 0x90;
/** Processor priority. */
export const APIC_PROCPRI = 0xa0;
/** End of interrupt. */
export const APIC_EOI = 0xb0;
/** Remote read. */
export const APIC_RRR = 0xc0;
/** Logical destination. */
export const APIC_LDR = 0xd0;
/** Destination format. */
export const APIC_DFR = 0xe0;
/** Spurious-interrupt vector. */
export const APIC_SPIV = 0xf0;
/** In-service register (8 × 32 bits, 16 bytes apart). */
export const APIC_ISR = 0x100;
/** Trigger-mode register. */
export const APIC_TMR = 0x180;
/** Interrupt request register. */
export const APIC_IRR = 0x200;
/** Error status. */
export const APIC_ESR = 0x280;
/** LVT CMCI. */
export const APIC_LVTCMCI = 0x2f0;
/** Interrupt command, low half. */
export const APIC_ICR = 0x300;
/** Interrupt command, high half (destination). */
export const APIC_ICR2 = 0x310;
/** LVT timer. */
export const APIC_LVTT = 0x320;
/** LVT thermal monitor. */
export const APIC_LVTTHMR = 0x330;
/** LVT performance counter. */
export const APIC_LVTPC = 0x340;
/** LVT LINT0. */
export const APIC_LVT0 = 0x350;
/** LVT LINT1. */
export const APIC_LVT1 = 0x360;
/** LVT error. */
export const APIC_LVTERR = 0x370;
/** Timer initial count. */
export const APIC_TMICT = 0x380;
/** Timer current count. */
export const APIC_TMCCT = 0x390;
/** Timer divide configuration. */
export const APIC_TDCR = 0x3e0;
/** Self IPI (x2APIC only). */
export const APIC_SELF_IPI = 0x3f0;

/** `APIC_LVT_MASKED`. */
export const APIC_LVT_MASKED = 1 << 16;
/** `APIC_SEND_PENDING` (delivery status). */
export const APIC_SEND_PENDING = 1 << 12;
/** `APIC_ICR_BUSY` (same bit as the delivery status). */
export const APIC_ICR_BUSY = 1 << 12;
/** `APIC_VECTOR_MASK`. */
export const APIC_VECTOR_MASK = 0xff;
/** `APIC_MODE_MASK`: the delivery mode field. */
export const APIC_MODE_MASK = 0x700;
/** `APIC_INPUT_POLARITY`. */
export const APIC_INPUT_POLARITY = 1 << 13;
/** `APIC_LVT_REMOTE_IRR`. */
export const APIC_LVT_REMOTE_IRR = 1 << 14;
/** `APIC_LVT_LEVEL_TRIGGER` / `APIC_INT_LEVELTRIG`. */
export const APIC_LVT_LEVEL_TRIGGER = 1 << 15;
/** `APIC_INT_ASSERT` (ICR level bit). */
export const APIC_INT_ASSERT = 1 << 14;
/** `APIC_LVT_TIMER_ONESHOT`. */
export const APIC_LVT_TIMER_ONESHOT = 0;
/** `APIC_LVT_TIMER_PERIODIC`. */
export const APIC_LVT_TIMER_PERIODIC = 1 << 17;
/** `APIC_LVT_TIMER_TSCDEADLINE`. */
export const APIC_LVT_TIMER_TSCDEADLINE = 2 << 17;
/** Delivery modes (`APIC_DM_*`, already shifted into bits 8-10). */
export const APIC_DM_FIXED = 0x000;
/** Lowest priority. */
export const APIC_DM_LOWEST = 0x100;
/** SMI. */
export const APIC_DM_SMI = 0x200;
/** Remote read. */
export const APIC_DM_REMRD = 0x300;
/** NMI. */
export const APIC_DM_NMI = 0x400;
/** INIT. */
export const APIC_DM_INIT = 0x500;
/** Start-up IPI. */
export const APIC_DM_STARTUP = 0x600;
/** External interrupt (the 8259's vector). */
export const APIC_DM_EXTINT = 0x700;
/** `APIC_DEST_PHYSICAL` (kvm_lapic_irq.dest_mode). */
export const APIC_DEST_PHYSICAL = 0x000;
/** `APIC_DEST_LOGICAL`. */
export const APIC_DEST_LOGICAL = 0x800;
/** Shorthands (`APIC_DEST_*`, ICR bits 18-19). */
export const APIC_DEST_NOSHORT = 0x00000;
/** To self. */
export const APIC_DEST_SELF = 0x40000;
/** To all including self. */
export const APIC_DEST_ALLINC = 0x80000;
/** To all but self. */
export const APIC_DEST_ALLBUT = 0xc0000;
/** `APIC_SHORT_MASK`. */
export const APIC_SHORT_MASK = 0xc0000;
/** `APIC_DFR_FLAT`. */
export const APIC_DFR_FLAT = 0xffffffff;
/** `APIC_DFR_CLUSTER`. */
export const APIC_DFR_CLUSTER = 0x0fffffff;
/** `APIC_LDR_MASK`. */
export const APIC_LDR_MASK = 0xff000000;
/** `APIC_SPIV_APIC_ENABLED`: software enable. */
export const APIC_SPIV_APIC_ENABLED = 1 << 8;
/** `APIC_SPIV_DIRECTED_EOI`: suppress EOI broadcast. */
export const APIC_SPIV_DIRECTED_EOI = 1 << 12;
/** `APIC_LVR_DIRECTED_EOI`: the version register advertises directed EOI. */
export const APIC_LVR_DIRECTED_EOI = 1 << 24;
/** `APIC_BROADCAST` (xAPIC). */
export const APIC_BROADCAST = 0xff;
/** `X2APIC_BROADCAST`. */
export const X2APIC_BROADCAST = 0xffffffff;
/** `KVM_APIC_MAX_NR_LVT_ENTRIES`: timer, thermal, perf, LINT0, LINT1, error, CMCI. */
export const KVM_APIC_MAX_NR_LVT_ENTRIES = 7;
/** `APIC_DEFAULT_PHYS_BASE`. */
export const APIC_DEFAULT_PHYS_BASE = 0xfee00000;
/** `LAPIC_MMIO_LENGTH`. */
export const LAPIC_MMIO_LENGTH = 0x1000;
/** `APIC_BASE_MSR`: x2APIC register r is MSR `0x800 + (r >> 4)`. */
export const APIC_BASE_MSR = 0x800;
/** `MSR_IA32_APICBASE`. */
export const MSR_IA32_APICBASE = 0x1b;
/** `MSR_IA32_APICBASE_BSP`. */
export const MSR_IA32_APICBASE_BSP = 1n << 8n;
/** `X2APIC_ENABLE`. */
export const X2APIC_ENABLE = 1n << 10n;
/** `MSR_IA32_APICBASE_ENABLE`. */
export const MSR_IA32_APICBASE_ENABLE = 1n << 11n;
/**
 * `MSR_IA32_APICBASE_BASE`: Linux defines it as the `int` expression `0xfffff << 12`, which is negative and
 * sign-extends when masked with the 64-bit MSR value, so every bit from 12 up is kept.
 */
export const MSR_IA32_APICBASE_BASE = 0xffff_ffff_ffff_f000n;
/** `MCG_CMCI_P`: the vCPU's MCG_CAP bit that adds the CMCI LVT. */
export const MCG_CMCI_P = 1n << 10n;
/** `APIC_DEST_MASK`: the ICR's destination-mode bit (the value of `APIC_DEST_LOGICAL`). */
export const APIC_DEST_MASK = 0x800;
/** `APIC_BUS_CYCLE_NS_DEFAULT`: the APIC timer counts one tick per ns before the divider. */
export const APIC_BUS_CYCLE_NS_DEFAULT = 1;
