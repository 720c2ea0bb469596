/**
 * The argument structures of the vCPU-state, VM and system ioctls real VMMs use — `kvm_msrs`, `kvm_cpuid2`,
 * `kvm_fpu`, `kvm_xsave`, `kvm_xcrs`, `kvm_vcpu_events`, `kvm_debugregs`, `kvm_sregs2`, `kvm_clock_data`,
 * `kvm_msr_filter`, `kvm_ioeventfd`, … — each an interface with the Linux field names and a {@link StructCodec}
 * (or {@link FlexCodec} for those ending in a flexible array) from `codec.ts`: constructors, the kernel's copy of
 * the argument, and the exact C bytes by the layouts of `layout.ts`.
 *
 * @module
 */
import { KVM_LAYOUTS, type CLayout } from './layout.js';
import {
  FlexCodec,
  ScalarArrayCodec,
  bytes,
  defineStruct,
  nested,
  s32,
  tuple,
  u16,
  u32,
  u64,
  u64n,
  u8,
  userPtr,
  words32,
  type FieldKind,
  type StructCodec,
} from './codec.js';
import { KVM_CPUID_ENTRY2_CODEC, KVM_MSR_ENTRY_CODEC, SREGS_COMMON_KINDS, type kvm_cpuid_entry2, type kvm_msr_entry, type kvm_sregs } from './structs.js';

/** The layout of a nested member (`kvm_vcpu_events.exception`). */
function sub(layout: CLayout, member: string): CLayout {
  const t = layout.member(member).type;
  if (typeof t === 'string') throw new Error(`${layout.name}.${member} is not a structure`);
  return t;
}

const u64x4 = tuple(u64, 4) as FieldKind<unknown> as FieldKind<[bigint, bigint, bigint, bigint]>;

/* ---- a __u64 by pointer ---------------------------------------------------------------------------------- */

/**
 * A pointer to one `__u64` (KVM_SET_IDENTITY_MAP_ADDR, KVM_X86_SETUP_MCE, KVM_X86_GET_MCE_CAP_SUPPORTED): in JavaScript a
 * one-element array, `[value]`, or its 8 C bytes.
 */
export const U64_POINTER_CODEC: ScalarArrayCodec<bigint> = new ScalarArrayCodec(KVM_LAYOUTS.u64_arg, u64, 1);

/** A `__u64` argument holding `value` (an output one starts at 0). */
export function makeU64(value = 0n): bigint[] {
  return [value];
}

/* ---- kvm_msrs, kvm_msr_list ------------------------------------------------------------------------------ */

/** The fixed part of `struct kvm_msrs` (KVM_GET_MSRS / KVM_SET_MSRS). */
export interface kvm_msrs_header {
  /** Number of entries. */ nmsrs: number;
}
/** `struct kvm_msrs`: a header and its `entries`. */
export interface kvm_msrs extends kvm_msrs_header {
  /** The MSRs (`nmsrs` of them are read). */ entries: kvm_msr_entry[];
}
/** The description of `struct kvm_msrs` (`pad` written as zero). */
export const KVM_MSRS_CODEC: FlexCodec<kvm_msrs_header, kvm_msr_entry> = new FlexCodec(
  defineStruct<kvm_msrs_header>(KVM_LAYOUTS.kvm_msrs, { nmsrs: u32 }),
  'nmsrs',
  'entries',
  nested(KVM_MSR_ENTRY_CODEC),
);
/** A `kvm_msrs` for `entries` (nmsrs = their number). */
export function makeKvmMsrs(entries: readonly Partial<kvm_msr_entry>[] = []): kvm_msrs {
  return { nmsrs: entries.length, entries: entries.map((e) => KVM_MSR_ENTRY_CODEC.make(e)) };
}

/** The fixed part of `struct kvm_msr_list` (KVM_GET_MSR_INDEX_LIST, KVM_GET_MSR_FEATURE_INDEX_LIST). */
export interface kvm_msr_list_header {
  /** In: room in `indices`; out: the number of MSRs. */ nmsrs: number;
}
/** `struct kvm_msr_list`. */
export interface kvm_msr_list extends kvm_msr_list_header {
  /** MSR numbers. */ indices: number[];
}
/** The description of `struct kvm_msr_list`. */
export const KVM_MSR_LIST_CODEC: FlexCodec<kvm_msr_list_header, number> = new FlexCodec(
  defineStruct<kvm_msr_list_header>(KVM_LAYOUTS.kvm_msr_list, { nmsrs: u32 }),
  'nmsrs',
  'indices',
  u32,
);
/** A `kvm_msr_list` with room for `n` indices. */
export function makeKvmMsrList(n = 0): kvm_msr_list {
  return { nmsrs: n, indices: new Array<number>(n).fill(0) };
}

/* ---- kvm_cpuid2 -------------------------------------------------------------------------------------------- */

/** The fixed part of `struct kvm_cpuid2`. */
export interface kvm_cpuid2_header {
  /** In: room (or entries given); out: entries returned. */ nent: number;
}
/** `struct kvm_cpuid2` (KVM_SET_CPUID2, KVM_GET_CPUID2, KVM_GET_SUPPORTED_CPUID, KVM_GET_EMULATED_CPUID). */
export interface kvm_cpuid2 extends kvm_cpuid2_header {
  /** The leaves. */ entries: kvm_cpuid_entry2[];
}
/** The description of `struct kvm_cpuid2` (`padding` written as zero). */
export const KVM_CPUID2_CODEC: FlexCodec<kvm_cpuid2_header, kvm_cpuid_entry2> = new FlexCodec(
  defineStruct<kvm_cpuid2_header>(KVM_LAYOUTS.kvm_cpuid2, { nent: u32 }),
  'nent',
  'entries',
  nested(KVM_CPUID_ENTRY2_CODEC),
);
/** A `kvm_cpuid2`: `entries` given, or room for `n` zero entries. */
export function makeKvmCpuid2(entries: readonly Partial<kvm_cpuid_entry2>[] | number = []): kvm_cpuid2 {
  const list = typeof entries === 'number' ? Array.from({ length: entries }, () => ({})) : entries;
  return { nent: list.length, entries: list.map((e) => KVM_CPUID_ENTRY2_CODEC.make(e)) };
}

/* ---- kvm_fpu, kvm_xsave, kvm_xcrs ------------------------------------------------------------------------------ */

/** `struct kvm_fpu` (KVM_GET_FPU / KVM_SET_FPU, 416 bytes): the x87 and SSE state of the FXSAVE area. */
export interface kvm_fpu {
  /** ST0–ST7 / MM0–MM7 (`__u8 fpr[8][16]`). */ fpr: Uint8Array<ArrayBuffer>[];
  /** FPU control word. */ fcw: number;
  /** FPU status word. */ fsw: number;
  /** Abridged tag word. */ ftwx: number;
  /** Last x87 opcode. */ last_opcode: number;
  /** Last x87 instruction pointer. */ last_ip: bigint;
  /** Last x87 data pointer. */ last_dp: bigint;
  /** XMM0–XMM15 (`__u8 xmm[16][16]`). */ xmm: Uint8Array<ArrayBuffer>[];
  /** MXCSR (KVM neither reports nor loads it through this ioctl). */ mxcsr: number;
}
/** The description of `struct kvm_fpu`. */
export const KVM_FPU_CODEC: StructCodec<kvm_fpu> = defineStruct<kvm_fpu>(KVM_LAYOUTS.kvm_fpu, {
  fpr: tuple(bytes(16), 8), fcw: u16, fsw: u16, ftwx: u8, last_opcode: u16, last_ip: u64, last_dp: u64, xmm: tuple(bytes(16), 16), mxcsr: u32,
});

/** `struct kvm_xsave` (KVM_GET_XSAVE / KVM_SET_XSAVE / KVM_GET_XSAVE2): the XSAVE area in user (non-compacted) format. */
export interface kvm_xsave {
  /** `__u32 region[1024]`: the XSAVE area's 4096 bytes as little-endian words. */ region: Uint32Array<ArrayBuffer>;
}
/** The description of `struct kvm_xsave` (the region as bytes). */
export const KVM_XSAVE_CODEC: StructCodec<kvm_xsave> = defineStruct<kvm_xsave>(KVM_LAYOUTS.kvm_xsave, { region: words32(1024) });

/** `struct kvm_xcr`. */
export interface kvm_xcr {
  /** Which XCR (0 = XCR0). */ xcr: number;
  /** Its value. */ value: bigint;
}
/** The description of `struct kvm_xcr`. */
export const KVM_XCR_CODEC: StructCodec<kvm_xcr> = defineStruct<kvm_xcr>(KVM_LAYOUTS.kvm_xcr, { xcr: u32, value: u64 });

/** `struct kvm_xcrs` (KVM_GET_XCRS / KVM_SET_XCRS). */
export interface kvm_xcrs {
  /** Entries used. */ nr_xcrs: number;
  /** Must be 0. */ flags: number;
  /** Up to 16 XCRs. */ xcrs: kvm_xcr[];
}
/** The description of `struct kvm_xcrs`. */
export const KVM_XCRS_CODEC: StructCodec<kvm_xcrs> = defineStruct<kvm_xcrs>(KVM_LAYOUTS.kvm_xcrs, {
  nr_xcrs: u32, flags: u32, xcrs: tuple(nested(KVM_XCR_CODEC), 16),
});

/* ---- kvm_vcpu_events ---------------------------------------------------------------------------------------- */

/** `kvm_vcpu_events.exception`. */
export interface kvm_vcpu_events_exception {
  /** Injected (being delivered). */ injected: number;
  /** Vector. */ nr: number;
  /** Has an error code. */ has_error_code: number;
  /** Pending (not yet delivered; with KVM_CAP_EXCEPTION_PAYLOAD). */ pending: number;
  /** The error code. */ error_code: number;
}
/** `kvm_vcpu_events.interrupt`. */
export interface kvm_vcpu_events_interrupt {
  /** Injected. */ injected: number;
  /** Vector. */ nr: number;
  /** A software interrupt. */ soft: number;
  /** `KVM_X86_SHADOW_INT_*`. */ shadow: number;
}
/** `kvm_vcpu_events.nmi`. */
export interface kvm_vcpu_events_nmi {
  /** Injected. */ injected: number;
  /** Pending NMIs. */ pending: number;
  /** NMIs blocked. */ masked: number;
}
/** `kvm_vcpu_events.smi`. */
export interface kvm_vcpu_events_smi {
  /** In SMM. */ smm: number;
  /** SMI pending. */ pending: number;
  /** SMM entered from inside an NMI. */ smm_inside_nmi: number;
  /** INIT latched. */ latched_init: number;
}
/** `kvm_vcpu_events.triple_fault`. */
export interface kvm_vcpu_events_triple_fault {
  /** A triple fault is pending. */ pending: number;
}
/** `struct kvm_vcpu_events` (KVM_GET_VCPU_EVENTS / KVM_SET_VCPU_EVENTS, 64 bytes). */
export interface kvm_vcpu_events {
  /** Exception state. */ exception: kvm_vcpu_events_exception;
  /** Interrupt state. */ interrupt: kvm_vcpu_events_interrupt;
  /** NMI state. */ nmi: kvm_vcpu_events_nmi;
  /** SIPI vector. */ sipi_vector: number;
  /** `KVM_VCPUEVENT_VALID_*`. */ flags: number;
  /** SMM state. */ smi: kvm_vcpu_events_smi;
  /** Triple-fault state. */ triple_fault: kvm_vcpu_events_triple_fault;
  /** `exception_payload` is valid. */ exception_has_payload: number;
  /** CR2 or DR6 payload of a pending #PF / #DB. */ exception_payload: bigint;
}
const EV = KVM_LAYOUTS.kvm_vcpu_events;
/** The description of `struct kvm_vcpu_events` (`nmi.pad` and `reserved` written as zero). */
export const KVM_VCPU_EVENTS_CODEC: StructCodec<kvm_vcpu_events> = defineStruct<kvm_vcpu_events>(EV, {
  exception: nested(defineStruct<kvm_vcpu_events_exception>(sub(EV, 'exception'), { injected: u8, nr: u8, has_error_code: u8, pending: u8, error_code: u32 })),
  interrupt: nested(defineStruct<kvm_vcpu_events_interrupt>(sub(EV, 'interrupt'), { injected: u8, nr: u8, soft: u8, shadow: u8 })),
  nmi: nested(defineStruct<kvm_vcpu_events_nmi>(sub(EV, 'nmi'), { injected: u8, pending: u8, masked: u8 })),
  sipi_vector: u32,
  flags: u32,
  smi: nested(defineStruct<kvm_vcpu_events_smi>(sub(EV, 'smi'), { smm: u8, pending: u8, smm_inside_nmi: u8, latched_init: u8 })),
  triple_fault: nested(defineStruct<kvm_vcpu_events_triple_fault>(sub(EV, 'triple_fault'), { pending: u8 })),
  exception_has_payload: u8,
  exception_payload: u64,
});

/* ---- kvm_mp_state, kvm_debugregs, kvm_sregs2 ---------------------------------------------------------------------- */

/** `struct kvm_mp_state`. */
export interface kvm_mp_state {
  /** `KVM_MP_STATE_*`. */ mp_state: number;
}
/** The description of `struct kvm_mp_state`. */
export const KVM_MP_STATE_CODEC: StructCodec<kvm_mp_state> = defineStruct<kvm_mp_state>(KVM_LAYOUTS.kvm_mp_state, { mp_state: u32 });

/** `struct kvm_debugregs` (KVM_GET_DEBUGREGS / KVM_SET_DEBUGREGS, 128 bytes). */
export interface kvm_debugregs {
  /** DR0–DR3. */ db: [bigint, bigint, bigint, bigint];
  /** DR6. */ dr6: bigint;
  /** DR7. */ dr7: bigint;
  /** Must be 0. */ flags: bigint;
}
/** The description of `struct kvm_debugregs` (`reserved` written as zero). */
export const KVM_DEBUGREGS_CODEC: StructCodec<kvm_debugregs> = defineStruct<kvm_debugregs>(KVM_LAYOUTS.kvm_debugregs, {
  db: u64x4, dr6: u64, dr7: u64, flags: u64,
});

/** `struct kvm_guest_debug_arch`: DR0–DR7 for KVM_GUESTDBG_USE_HW_BP (DR4 and DR5 unused). */
export interface kvm_guest_debug_arch {
  /** DR0–DR7. */ debugreg: [bigint, bigint, bigint, bigint, bigint, bigint, bigint, bigint];
}
/** `struct kvm_guest_debug` (KVM_SET_GUEST_DEBUG, 72 bytes). */
export interface kvm_guest_debug {
  /** `KVM_GUESTDBG_*`. */ control: number;
  /** The debug registers. */ arch: kvm_guest_debug_arch;
}
const GD = KVM_LAYOUTS.kvm_guest_debug;
/** The description of `struct kvm_guest_debug` (`pad` written as zero). */
export const KVM_GUEST_DEBUG_CODEC: StructCodec<kvm_guest_debug> = defineStruct<kvm_guest_debug>(GD, {
  control: u32,
  arch: nested(
    defineStruct<kvm_guest_debug_arch>(sub(GD, 'arch'), {
      debugreg: tuple(u64, 8) as FieldKind<unknown> as FieldKind<kvm_guest_debug_arch['debugreg']>,
    }),
  ),
});

/** `struct kvm_sregs2` (KVM_GET_SREGS2 / KVM_SET_SREGS2, 320 bytes): `kvm_sregs` without the interrupt bitmap, with the PDPTRs. */
export interface kvm_sregs2 extends Omit<kvm_sregs, 'interrupt_bitmap'> {
  /** `KVM_SREGS2_FLAGS_PDPTRS_VALID`. */ flags: bigint;
  /** The four PAE PDPTEs. */ pdptrs: [bigint, bigint, bigint, bigint];
}
/** The description of `struct kvm_sregs2`. */
export const KVM_SREGS2_CODEC: StructCodec<kvm_sregs2> = defineStruct<kvm_sregs2>(KVM_LAYOUTS.kvm_sregs2, {
  ...SREGS_COMMON_KINDS,
  flags: u64,
  pdptrs: u64x4,
});

/* ---- VM structures ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_clock_data` (KVM_GET_CLOCK / KVM_SET_CLOCK, 48 bytes). */
export interface kvm_clock_data {
  /** kvmclock, in ns. */ clock: bigint;
  /** `KVM_CLOCK_*`. */ flags: number;
  /** Host CLOCK_REALTIME in ns (with KVM_CLOCK_REALTIME). */ realtime: bigint;
  /** Host TSC (with KVM_CLOCK_HOST_TSC). */ host_tsc: bigint;
}
/** The description of `struct kvm_clock_data` (`pad0`, `pad` written as zero; Linux does not check them). */
export const KVM_CLOCK_DATA_CODEC: StructCodec<kvm_clock_data> = defineStruct<kvm_clock_data>(KVM_LAYOUTS.kvm_clock_data, {
  clock: u64, flags: u32, realtime: u64, host_tsc: u64,
});

/** `struct kvm_msr_filter_range`. */
export interface kvm_msr_filter_range {
  /** `KVM_MSR_FILTER_READ` / `KVM_MSR_FILTER_WRITE`. */ flags: number;
  /** MSRs covered. */ nmsrs: number;
  /** First MSR. */ base: number;
  /** One bit per MSR (1 = allowed): the caller's buffer, or its address. */ bitmap: Uint8Array | number;
}
/** The description of `struct kvm_msr_filter_range`. */
export const KVM_MSR_FILTER_RANGE_CODEC: StructCodec<kvm_msr_filter_range> = defineStruct<kvm_msr_filter_range>(KVM_LAYOUTS.kvm_msr_filter_range, {
  flags: u32, nmsrs: u32, base: u32, bitmap: userPtr,
});
/** `struct kvm_msr_filter` (KVM_X86_SET_MSR_FILTER). */
export interface kvm_msr_filter {
  /** `KVM_MSR_FILTER_DEFAULT_ALLOW` / `_DENY`. */ flags: number;
  /** 16 ranges (`nmsrs` 0 = unused). */ ranges: kvm_msr_filter_range[];
}
/** The description of `struct kvm_msr_filter`. */
export const KVM_MSR_FILTER_CODEC: StructCodec<kvm_msr_filter> = defineStruct<kvm_msr_filter>(KVM_LAYOUTS.kvm_msr_filter, {
  flags: u32, ranges: tuple(nested(KVM_MSR_FILTER_RANGE_CODEC), 16),
});

/** `struct kvm_ioeventfd` (KVM_IOEVENTFD). */
export interface kvm_ioeventfd {
  /** Value to match (with KVM_IOEVENTFD_FLAG_DATAMATCH). */ datamatch: bigint;
  /** Guest address: a port or a guest-physical address. */ addr: number;
  /** Access width: 0 (any), 1, 2, 4 or 8. */ len: number;
  /** The eventfd. */ fd: number;
  /** `KVM_IOEVENTFD_FLAG_*`. */ flags: number;
}
/** The description of `struct kvm_ioeventfd` (`pad` written as zero). */
export const KVM_IOEVENTFD_CODEC: StructCodec<kvm_ioeventfd> = defineStruct<kvm_ioeventfd>(KVM_LAYOUTS.kvm_ioeventfd, {
  datamatch: u64, addr: u64n, len: u32, fd: s32, flags: u32,
});

/** `struct kvm_coalesced_mmio_zone` (KVM_REGISTER/UNREGISTER_COALESCED_MMIO). */
export interface kvm_coalesced_mmio_zone {
  /** Start (guest-physical, or a port with `pio`). */ addr: number;
  /** Length in bytes. */ size: number;
  /** 1 for port I/O (KVM_CAP_COALESCED_PIO), 0 for MMIO. */ pio: number;
}
/** The description of `struct kvm_coalesced_mmio_zone`. */
export const KVM_COALESCED_MMIO_ZONE_CODEC: StructCodec<kvm_coalesced_mmio_zone> = defineStruct<kvm_coalesced_mmio_zone>(KVM_LAYOUTS.kvm_coalesced_mmio_zone, {
  addr: u64n, size: u32, pio: u32,
});

/** `struct kvm_dirty_log` (KVM_GET_DIRTY_LOG). */
export interface kvm_dirty_log {
  /** Slot id (address space in bits 16–31). */ slot: number;
  /** Where the bitmap goes: the caller's buffer or its address. */ dirty_bitmap: Uint8Array | number;
}
/** The description of `struct kvm_dirty_log`. */
export const KVM_DIRTY_LOG_CODEC: StructCodec<kvm_dirty_log> = defineStruct<kvm_dirty_log>(KVM_LAYOUTS.kvm_dirty_log, { slot: u32, dirty_bitmap: userPtr });

/** `struct kvm_clear_dirty_log` (KVM_CLEAR_DIRTY_LOG). */
export interface kvm_clear_dirty_log {
  /** Slot id. */ slot: number;
  /** Pages covered by the bitmap. */ num_pages: number;
  /** First page (a multiple of 64). */ first_page: number;
  /** Bits of the pages to clear: the caller's buffer or its address. */ dirty_bitmap: Uint8Array | number;
}
/** The description of `struct kvm_clear_dirty_log`. */
export const KVM_CLEAR_DIRTY_LOG_CODEC: StructCodec<kvm_clear_dirty_log> = defineStruct<kvm_clear_dirty_log>(KVM_LAYOUTS.kvm_clear_dirty_log, {
  slot: u32, num_pages: u32, first_page: u64n, dirty_bitmap: userPtr,
});

/** `struct kvm_userspace_memory_region2` (KVM_SET_USER_MEMORY_REGION2, 160 bytes). */
export interface kvm_userspace_memory_region2 {
  /** Slot id. */ slot: number;
  /** `KVM_MEM_*`. */ flags: number;
  /** Guest-physical start. */ guest_phys_addr: number;
  /** Size in bytes. */ memory_size: number;
  /** User address of the backing memory. */ userspace_addr: number;
  /** Offset into the guest_memfd (with KVM_MEM_GUEST_MEMFD). */ guest_memfd_offset: number;
  /** The guest_memfd (with KVM_MEM_GUEST_MEMFD). */ guest_memfd: number;
}
/** The description of `struct kvm_userspace_memory_region2` (`pad1`, `pad2` ignored, as Linux ignores them). */
export const KVM_USERSPACE_MEMORY_REGION2_CODEC: StructCodec<kvm_userspace_memory_region2> = defineStruct<kvm_userspace_memory_region2>(
  KVM_LAYOUTS.kvm_userspace_memory_region2,
  { slot: u32, flags: u32, guest_phys_addr: u64n, memory_size: u64n, userspace_addr: u64n, guest_memfd_offset: u64n, guest_memfd: u32 },
);

/** `struct kvm_vapic_addr` (KVM_SET_VAPIC_ADDR). */
export interface kvm_vapic_addr {
  /** Guest-physical address of the vAPIC page (0 turns it off). */ vapic_addr: number;
}
/** The description of `struct kvm_vapic_addr`. */
export const KVM_VAPIC_ADDR_CODEC: StructCodec<kvm_vapic_addr> = defineStruct<kvm_vapic_addr>(KVM_LAYOUTS.kvm_vapic_addr, { vapic_addr: u64n });

/** The fixed part of `struct kvm_signal_mask` (KVM_SET_SIGNAL_MASK). */
export interface kvm_signal_mask_header {
  /** Size of `sigset` (8 on x86-64). */ len: number;
}
/** `struct kvm_signal_mask`. */
export interface kvm_signal_mask extends kvm_signal_mask_header {
  /** The signal set, one bit per signal (bytes). */ sigset: number[];
}
/** The description of `struct kvm_signal_mask`. */
export const KVM_SIGNAL_MASK_CODEC: FlexCodec<kvm_signal_mask_header, number> = new FlexCodec(
  defineStruct<kvm_signal_mask_header>(KVM_LAYOUTS.kvm_signal_mask, { len: u32 }),
  'len',
  'sigset',
  u8,
);

/** `struct kvm_device_attr` (KVM_GET_DEVICE_ATTR / KVM_HAS_DEVICE_ATTR on /dev/kvm). */
export interface kvm_device_attr {
  /** Must be 0. */ flags: number;
  /** Attribute group (0 on /dev/kvm). */ group: number;
  /** The attribute (`KVM_X86_XCOMP_GUEST_SUPP`). */ attr: bigint;
  /** Where the value goes: the caller's 8-byte buffer or its address. */ addr: Uint8Array | number;
}
/** The description of `struct kvm_device_attr`. */
export const KVM_DEVICE_ATTR_CODEC: StructCodec<kvm_device_attr> = defineStruct<kvm_device_attr>(KVM_LAYOUTS.kvm_device_attr, {
  flags: u32, group: u32, attr: u64, addr: userPtr,
});

/** `struct kvm_tpr_access_ctl` (KVM_TPR_ACCESS_REPORTING). */
export interface kvm_tpr_access_ctl {
  /** Report TPR accesses. */ enabled: number;
  /** Must be 0. */ flags: number;
}
/** The description of `struct kvm_tpr_access_ctl`. */
export const KVM_TPR_ACCESS_CTL_CODEC: StructCodec<kvm_tpr_access_ctl> = defineStruct<kvm_tpr_access_ctl>(KVM_LAYOUTS.kvm_tpr_access_ctl, { enabled: u32, flags: u32 });

/* ---- constructors ------------------------------------------------------------------------------------------ */

/** A `struct kvm_fpu` with every field zero, overridden by `init`. */
export function makeKvmFpu(init: Partial<kvm_fpu> = {}): kvm_fpu {
  return KVM_FPU_CODEC.make(init);
}

/** A `struct kvm_xsave` with every field zero, overridden by `init`. */
export function makeKvmXsave(init: Partial<kvm_xsave> = {}): kvm_xsave {
  return KVM_XSAVE_CODEC.make(init);
}

/** A `struct kvm_xcr` with every field zero, overridden by `init`. */
export function makeKvmXcr(init: Partial<kvm_xcr> = {}): kvm_xcr {
  return KVM_XCR_CODEC.make(init);
}

/** A `struct kvm_xcrs` with every field zero, overridden by `init`. */
export function makeKvmXcrs(init: Partial<kvm_xcrs> = {}): kvm_xcrs {
  return KVM_XCRS_CODEC.make(init);
}

/** A `struct kvm_vcpu_events` with every field zero, overridden by `init`. */
export function makeKvmVcpuEvents(init: Partial<kvm_vcpu_events> = {}): kvm_vcpu_events {
  return KVM_VCPU_EVENTS_CODEC.make(init);
}

/** A `struct kvm_mp_state` with every field zero, overridden by `init`. */
export function makeKvmMpState(init: Partial<kvm_mp_state> = {}): kvm_mp_state {
  return KVM_MP_STATE_CODEC.make(init);
}

/** A `struct kvm_debugregs` with every field zero, overridden by `init`. */
export function makeKvmDebugregs(init: Partial<kvm_debugregs> = {}): kvm_debugregs {
  return KVM_DEBUGREGS_CODEC.make(init);
}

/** A `struct kvm_guest_debug` with every field zero, overridden by `init`. */
export function makeKvmGuestDebug(init: Partial<kvm_guest_debug> = {}): kvm_guest_debug {
  return KVM_GUEST_DEBUG_CODEC.make(init);
}

/** A `struct kvm_sregs2` with every field zero, overridden by `init`. */
export function makeKvmSregs2(init: Partial<kvm_sregs2> = {}): kvm_sregs2 {
  return KVM_SREGS2_CODEC.make(init);
}

/** A `struct kvm_clock_data` with every field zero, overridden by `init`. */
export function makeKvmClockData(init: Partial<kvm_clock_data> = {}): kvm_clock_data {
  return KVM_CLOCK_DATA_CODEC.make(init);
}

/** A `struct kvm_msr_filter_range` with every field zero, overridden by `init`. */
export function makeKvmMsrFilterRange(init: Partial<kvm_msr_filter_range> = {}): kvm_msr_filter_range {
  return KVM_MSR_FILTER_RANGE_CODEC.make(init);
}

/** A `struct kvm_msr_filter` with every field zero, overridden by `init`. */
export function makeKvmMsrFilter(init: Partial<kvm_msr_filter> = {}): kvm_msr_filter {
  return KVM_MSR_FILTER_CODEC.make(init);
}

/** A `struct kvm_ioeventfd` with every field zero, overridden by `init`. */
export function makeKvmIoeventfd(init: Partial<kvm_ioeventfd> = {}): kvm_ioeventfd {
  return KVM_IOEVENTFD_CODEC.make(init);
}

/** A `struct kvm_coalesced_mmio_zone` with every field zero, overridden by `init`. */
export function makeKvmCoalescedMmioZone(init: Partial<kvm_coalesced_mmio_zone> = {}): kvm_coalesced_mmio_zone {
  return KVM_COALESCED_MMIO_ZONE_CODEC.make(init);
}

/** A `struct kvm_dirty_log` with every field zero, overridden by `init`. */
export function makeKvmDirtyLog(init: Partial<kvm_dirty_log> = {}): kvm_dirty_log {
  return KVM_DIRTY_LOG_CODEC.make(init);
}

/** A `struct kvm_clear_dirty_log` with every field zero, overridden by `init`. */
export function makeKvmClearDirtyLog(init: Partial<kvm_clear_dirty_log> = {}): kvm_clear_dirty_log {
  return KVM_CLEAR_DIRTY_LOG_CODEC.make(init);
}

/** A `struct kvm_userspace_memory_region2` with every field zero, overridden by `init`. */
export function makeKvmUserspaceMemoryRegion2(init: Partial<kvm_userspace_memory_region2> = {}): kvm_userspace_memory_region2 {
  return KVM_USERSPACE_MEMORY_REGION2_CODEC.make(init);
}

/** A `struct kvm_vapic_addr` with every field zero, overridden by `init`. */
export function makeKvmVapicAddr(init: Partial<kvm_vapic_addr> = {}): kvm_vapic_addr {
  return KVM_VAPIC_ADDR_CODEC.make(init);
}

/** A `struct kvm_device_attr` with every field zero, overridden by `init`. */
export function makeKvmDeviceAttr(init: Partial<kvm_device_attr> = {}): kvm_device_attr {
  return KVM_DEVICE_ATTR_CODEC.make(init);
}

/** A `struct kvm_tpr_access_ctl` with every field zero, overridden by `init`. */
export function makeKvmTprAccessCtl(init: Partial<kvm_tpr_access_ctl> = {}): kvm_tpr_access_ctl {
  return KVM_TPR_ACCESS_CTL_CODEC.make(init);
}
/** A `struct kvm_signal_mask` holding `sigset` (the kernel's sigset_t is 8 bytes on x86-64). */
export function makeKvmSignalMask(sigset: readonly number[] = []): kvm_signal_mask {
  return { len: sigset.length, sigset: [...sigset] };
}

/** `struct kvm_interrupt` (KVM_INTERRUPT). */
export interface kvm_interrupt {
  /** The vector of the external interrupt (user-space interrupt controller). */ irq: number;
}
/** The description of `struct kvm_interrupt`. */
export const KVM_INTERRUPT_CODEC: StructCodec<kvm_interrupt> = defineStruct<kvm_interrupt>(KVM_LAYOUTS.kvm_interrupt, { irq: u32 });

/** A `struct kvm_interrupt` with every field zero, overridden by `init`. */
export function makeKvmInterrupt(init: Partial<kvm_interrupt> = {}): kvm_interrupt {
  return KVM_INTERRUPT_CODEC.make(init);
}

/** `struct kvm_translation` (KVM_TRANSLATE, 24 bytes). */
export interface kvm_translation {
  /** In: the guest linear address. */ linear_address: bigint;
  /** Out: the guest-physical address it maps to (`INVALID_GPA`, all ones, when it maps to none). */ physical_address: bigint;
  /** Out: 1 when the address maps to a physical one. */ valid: number;
  /** Out: always 1 on x86 (`kvm_arch_vcpu_ioctl_translate` does not look at the access rights). */ writeable: number;
  /** Out: always 0 on x86. */ usermode: number;
}
/** The description of `struct kvm_translation` (`pad` written as zero). */
export const KVM_TRANSLATION_CODEC: StructCodec<kvm_translation> = defineStruct<kvm_translation>(KVM_LAYOUTS.kvm_translation, {
  linear_address: u64,
  physical_address: u64,
  valid: u8,
  writeable: u8,
  usermode: u8,
});

/** A `struct kvm_translation` with every field zero, overridden by `init`. */
export function makeKvmTranslation(init: Partial<kvm_translation> = {}): kvm_translation {
  return KVM_TRANSLATION_CODEC.make(init);
}

/** The fixed part of `struct kvm_pmu_event_filter` (KVM_SET_PMU_EVENT_FILTER). */
export interface kvm_pmu_event_filter_header {
  /** `KVM_PMU_EVENT_ALLOW` or `KVM_PMU_EVENT_DENY`. */ action: number;
  /** How many `events` follow. */ nevents: number;
  /** The fixed counters the action applies to. */ fixed_counter_bitmap: number;
  /** `KVM_PMU_EVENT_FLAG_MASKED_EVENTS` or 0. */ flags: number;
}
/** `struct kvm_pmu_event_filter`: the header and its `events`. */
export interface kvm_pmu_event_filter extends kvm_pmu_event_filter_header {
  /** The events (event select and unit mask, or masked entries). */ events: bigint[];
}
/** The description of `struct kvm_pmu_event_filter` (`pad` written as zero, not looked at). */
export const KVM_PMU_EVENT_FILTER_CODEC: FlexCodec<kvm_pmu_event_filter_header, bigint> = new FlexCodec(
  defineStruct<kvm_pmu_event_filter_header>(KVM_LAYOUTS.kvm_pmu_event_filter, { action: u32, nevents: u32, fixed_counter_bitmap: u32, flags: u32 }),
  'nevents',
  'events',
  u64,
);

/** A `struct kvm_pmu_event_filter` with every field zero and no events, overridden by `init`. */
export function makeKvmPmuEventFilter(init: Partial<kvm_pmu_event_filter> = {}): kvm_pmu_event_filter {
  return { ...KVM_PMU_EVENT_FILTER_CODEC.header.make(init), events: [...(init.events ?? [])] };
}
