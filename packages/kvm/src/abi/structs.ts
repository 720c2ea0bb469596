/**
 * The argument structures of the classic `/dev/kvm` ioctls as TypeScript values: interfaces with the Linux field
 * names, and for each one a {@link StructCodec} (`codec.ts`) from which come the constructors with zeroed
 * defaults, the deep copies, the shape validators, the kernel's copy of an ioctl argument, and little-endian
 * encoders / decoders that produce exactly the bytes of the C structure (x86-64 layout, see `layout.ts`).
 *
 * ## Numbers and bigints
 *
 * C `__u8`/`__u16`/`__u32` fields are `number`s. A `__u64` field is a `bigint` when it holds a machine
 * register or an arbitrary 64-bit pattern, whose values genuinely exceed 2^53: general-purpose registers,
 * RIP, RFLAGS, control registers, EFER, the APIC base MSR, segment and descriptor-table bases (a 64-bit
 * kernel's GS base or IDT base is above 2^63), `interrupt_bitmap` words, MSR data and `KVM_ENABLE_CAP`
 * arguments (some capabilities pack two 32-bit values into one argument). A `__u64` field is a `number`
 * when it holds a guest-physical address, a size, a simulated user-space address or a pointer: guest
 * physical addresses are bounded by MAXPHYADDR (at most 52 bits) and the simulated host hands out user
 * addresses below 2^53, so the valid ones are always safe integers. The same rule is used by `KvmRunView`.
 *
 * Padding and reserved members are not part of the interfaces; the encoders write them as zero. The `make*`
 * constructors and `copy*` helpers build fresh objects holding exactly the structure's fields (nested
 * segments, tables and arrays are copied too).
 *
 * ## Validators and the kernel's copy
 *
 * `isKvmRegs(x)` and friends check the *shape* of a value: the object exists, every field is present with an
 * exact value of its C type. `validateKvmRegs(x)` and friends return the first problem as text instead of a
 * boolean. They do not check semantics (a segment `type` of 7 is well formed even if the CPU would reject it);
 * that is the ioctl's job, as in the kernel.
 *
 * An ioctl does not use them: it takes `KVM_REGS_CODEC.copyIn(arg)` — one read of the caller's own data
 * properties into a fresh object (see `codec.ts`), EFAULT for anything C could not have been handed — and
 * validates and applies that copy.
 *
 * @module
 */

import { KVM_LAYOUTS } from './layout.js';
import { defineStruct, nested, tuple, u16, u32, u64, u64n, u8, type FieldKind, type StructCodec } from './codec.js';

/** Four `__u64` as a fixed-length tuple. */
const u64x4 = tuple(u64, 4) as FieldKind<unknown> as FieldKind<[bigint, bigint, bigint, bigint]>;

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_regs                                                                                          */
/* ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_regs` (KVM_GET_REGS / KVM_SET_REGS, 144 bytes): the general-purpose registers, RIP and RFLAGS. */
export interface kvm_regs {
  /** RAX. */ rax: bigint;
  /** RBX. */ rbx: bigint;
  /** RCX. */ rcx: bigint;
  /** RDX. */ rdx: bigint;
  /** RSI. */ rsi: bigint;
  /** RDI. */ rdi: bigint;
  /** RSP. */ rsp: bigint;
  /** RBP. */ rbp: bigint;
  /** R8. */ r8: bigint;
  /** R9. */ r9: bigint;
  /** R10. */ r10: bigint;
  /** R11. */ r11: bigint;
  /** R12. */ r12: bigint;
  /** R13. */ r13: bigint;
  /** R14. */ r14: bigint;
  /** R15. */ r15: bigint;
  /** Instruction pointer. */ rip: bigint;
  /** Flags register (bit 1 is architecturally always 1 on real hardware). */ rflags: bigint;
}

/** The `kvm_regs` field names in C order (each is a `__u64` at `8 * index`). */
export const KVM_REGS_FIELDS = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15',
  'rip', 'rflags',
] as const satisfies readonly (keyof kvm_regs)[];

/** The description of `struct kvm_regs`: every register a `__u64` bigint. */
export const KVM_REGS_CODEC: StructCodec<kvm_regs> = defineStruct<kvm_regs>(
  KVM_LAYOUTS.kvm_regs,
  Object.fromEntries(KVM_REGS_FIELDS.map((k) => [k, u64])) as { [K in keyof kvm_regs]: FieldKind<bigint> },
);

/** A `kvm_regs` with every register zero, overridden by `init`. */
export function makeKvmRegs(init: Partial<kvm_regs> = {}): kvm_regs {
  return KVM_REGS_CODEC.make(init);
}

/** An independent copy of a `kvm_regs` (only the struct's fields are copied; other properties are dropped). */
export function copyKvmRegs(r: kvm_regs): kvm_regs {
  return KVM_REGS_CODEC.clone(r);
}

/** The first shape problem of `x` as a `kvm_regs`, or `undefined` if it has the right shape. */
export function validateKvmRegs(x: unknown): string | undefined {
  return KVM_REGS_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_regs`. */
export function isKvmRegs(x: unknown): x is kvm_regs {
  return validateKvmRegs(x) === undefined;
}

/** Write `r` as a C `struct kvm_regs` at `offset` of `view`. */
export function encodeKvmRegs(r: kvm_regs, view: DataView, offset = 0): void {
  KVM_REGS_CODEC.encode(r, view, offset);
}

/** Read a C `struct kvm_regs` at `offset` of `view`. */
export function decodeKvmRegs(view: DataView, offset = 0): kvm_regs {
  return KVM_REGS_CODEC.decode(view, offset);
}

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_segment, struct kvm_dtable                                                                    */
/* ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_segment` (24 bytes): a segment register with its hidden descriptor cache. */
export interface kvm_segment {
  /** Segment base (64-bit for FS/GS in long mode). */ base: bigint;
  /** Segment limit in bytes (already scaled by granularity). */ limit: number;
  /** Selector. */ selector: number;
  /** Descriptor type (4 bits). */ type: number;
  /** Present bit. */ present: number;
  /** Descriptor privilege level. */ dpl: number;
  /** Default operation size (D/B bit). */ db: number;
  /** Descriptor type bit: 1 for code/data, 0 for system. */ s: number;
  /** Long-mode code segment. */ l: number;
  /** Granularity. */ g: number;
  /** Available for software. */ avl: number;
  /** Segment is unusable (VMX "unusable" attribute). */ unusable: number;
}

/** The description of `struct kvm_segment` (`padding` is written as zero). */
export const KVM_SEGMENT_CODEC: StructCodec<kvm_segment> = defineStruct<kvm_segment>(KVM_LAYOUTS.kvm_segment, {
  base: u64, limit: u32, selector: u16, type: u8,
  present: u8, dpl: u8, db: u8, s: u8, l: u8, g: u8, avl: u8, unusable: u8,
});

/** A `kvm_segment` with every field zero, overridden by `init`. */
export function makeKvmSegment(init: Partial<kvm_segment> = {}): kvm_segment {
  return KVM_SEGMENT_CODEC.make(init);
}

/** An independent copy of a `kvm_segment`. */
export function copyKvmSegment(s: kvm_segment): kvm_segment {
  return KVM_SEGMENT_CODEC.clone(s);
}

/** The first shape problem of `x` as a `kvm_segment`, or `undefined`. */
export function validateKvmSegment(x: unknown): string | undefined {
  return KVM_SEGMENT_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_segment`. */
export function isKvmSegment(x: unknown): x is kvm_segment {
  return validateKvmSegment(x) === undefined;
}

/** Write `s` as a C `struct kvm_segment` at `offset` of `view` (padding written as zero). */
export function encodeKvmSegment(s: kvm_segment, view: DataView, offset = 0): void {
  KVM_SEGMENT_CODEC.encode(s, view, offset);
}

/** Read a C `struct kvm_segment` at `offset` of `view`. */
export function decodeKvmSegment(view: DataView, offset = 0): kvm_segment {
  return KVM_SEGMENT_CODEC.decode(view, offset);
}

/** `struct kvm_dtable` (16 bytes): GDTR or IDTR. */
export interface kvm_dtable {
  /** Table base (linear address). */ base: bigint;
  /** Table limit (16 bits). */ limit: number;
}

/** The description of `struct kvm_dtable` (`padding` is written as zero). */
export const KVM_DTABLE_CODEC: StructCodec<kvm_dtable> = defineStruct<kvm_dtable>(KVM_LAYOUTS.kvm_dtable, { base: u64, limit: u16 });

/** A `kvm_dtable` with base and limit zero, overridden by `init`. */
export function makeKvmDtable(init: Partial<kvm_dtable> = {}): kvm_dtable {
  return KVM_DTABLE_CODEC.make(init);
}

/** An independent copy of a `kvm_dtable`. */
export function copyKvmDtable(d: kvm_dtable): kvm_dtable {
  return KVM_DTABLE_CODEC.clone(d);
}

/** The first shape problem of `x` as a `kvm_dtable`, or `undefined`. */
export function validateKvmDtable(x: unknown): string | undefined {
  return KVM_DTABLE_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_dtable`. */
export function isKvmDtable(x: unknown): x is kvm_dtable {
  return validateKvmDtable(x) === undefined;
}

/** Write `d` as a C `struct kvm_dtable` at `offset` of `view` (padding written as zero). */
export function encodeKvmDtable(d: kvm_dtable, view: DataView, offset = 0): void {
  KVM_DTABLE_CODEC.encode(d, view, offset);
}

/** Read a C `struct kvm_dtable` at `offset` of `view`. */
export function decodeKvmDtable(view: DataView, offset = 0): kvm_dtable {
  return KVM_DTABLE_CODEC.decode(view, offset);
}

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_sregs                                                                                         */
/* ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_sregs` (KVM_GET_SREGS / KVM_SET_SREGS, 312 bytes): segments, descriptor tables, CRs, EFER. */
export interface kvm_sregs {
  /** CS. */ cs: kvm_segment;
  /** DS. */ ds: kvm_segment;
  /** ES. */ es: kvm_segment;
  /** FS. */ fs: kvm_segment;
  /** GS. */ gs: kvm_segment;
  /** SS. */ ss: kvm_segment;
  /** Task register. */ tr: kvm_segment;
  /** LDT register. */ ldt: kvm_segment;
  /** GDTR. */ gdt: kvm_dtable;
  /** IDTR. */ idt: kvm_dtable;
  /** CR0. */ cr0: bigint;
  /** CR2. */ cr2: bigint;
  /** CR3. */ cr3: bigint;
  /** CR4. */ cr4: bigint;
  /** CR8 (task priority). */ cr8: bigint;
  /** EFER MSR. */ efer: bigint;
  /** IA32_APIC_BASE MSR. */ apic_base: bigint;
  /**
   * Pending external interrupt when there is no in-kernel irqchip: one bit per vector
   * (`KVM_NR_INTERRUPTS` = 256 bits in four `__u64` words; at most one bit set).
   */
  interrupt_bitmap: [bigint, bigint, bigint, bigint];
}

/** The segment-register fields of `kvm_sregs`, in C order. */
export const KVM_SREGS_SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;
/** The descriptor-table fields of `kvm_sregs`, in C order. */
export const KVM_SREGS_DTABLES = ['gdt', 'idt'] as const;
/** The `__u64` register fields of `kvm_sregs`, in C order. */
export const KVM_SREGS_U64_FIELDS = ['cr0', 'cr2', 'cr3', 'cr4', 'cr8', 'efer', 'apic_base'] as const;

/** The segments, tables and registers `kvm_sregs` and `kvm_sregs2` share, in C order. */
export const SREGS_COMMON_KINDS = {
  cs: nested(KVM_SEGMENT_CODEC), ds: nested(KVM_SEGMENT_CODEC), es: nested(KVM_SEGMENT_CODEC), fs: nested(KVM_SEGMENT_CODEC),
  gs: nested(KVM_SEGMENT_CODEC), ss: nested(KVM_SEGMENT_CODEC), tr: nested(KVM_SEGMENT_CODEC), ldt: nested(KVM_SEGMENT_CODEC),
  gdt: nested(KVM_DTABLE_CODEC), idt: nested(KVM_DTABLE_CODEC),
  cr0: u64, cr2: u64, cr3: u64, cr4: u64, cr8: u64, efer: u64, apic_base: u64,
} as const;

/** The description of `struct kvm_sregs`. */
export const KVM_SREGS_CODEC: StructCodec<kvm_sregs> = defineStruct<kvm_sregs>(KVM_LAYOUTS.kvm_sregs, {
  ...SREGS_COMMON_KINDS,
  interrupt_bitmap: u64x4,
});

/** A `kvm_sregs` with everything zero, overridden by `init` (nested values are copied, not shared). */
export function makeKvmSregs(init: Partial<kvm_sregs> = {}): kvm_sregs {
  return KVM_SREGS_CODEC.make(init);
}

/** A deep, independent copy of a `kvm_sregs`. */
export function copyKvmSregs(s: kvm_sregs): kvm_sregs {
  return KVM_SREGS_CODEC.clone(s);
}

/** The first shape problem of `x` as a `kvm_sregs`, or `undefined`. */
export function validateKvmSregs(x: unknown): string | undefined {
  return KVM_SREGS_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_sregs`. */
export function isKvmSregs(x: unknown): x is kvm_sregs {
  return validateKvmSregs(x) === undefined;
}

/** Write `s` as a C `struct kvm_sregs` at `offset` of `view`. */
export function encodeKvmSregs(s: kvm_sregs, view: DataView, offset = 0): void {
  KVM_SREGS_CODEC.encode(s, view, offset);
}

/** Read a C `struct kvm_sregs` at `offset` of `view`. */
export function decodeKvmSregs(view: DataView, offset = 0): kvm_sregs {
  return KVM_SREGS_CODEC.decode(view, offset);
}

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_userspace_memory_region                                                                       */
/* ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_userspace_memory_region` (KVM_SET_USER_MEMORY_REGION, 32 bytes). */
export interface kvm_userspace_memory_region {
  /** Slot id: bits 0–15 the slot, bits 16–31 the address space (x86: 1 is SMM). */ slot: number;
  /** `KVM_MEM_*` flags. */ flags: number;
  /** Guest-physical start address (page aligned). */ guest_phys_addr: number;
  /** Size in bytes (page aligned); 0 deletes the slot. */ memory_size: number;
  /** Start of the backing memory in the (simulated) process address space. */ userspace_addr: number;
}

/** The description of `struct kvm_userspace_memory_region` (addresses and the size as numbers). */
export const KVM_USERSPACE_MEMORY_REGION_CODEC: StructCodec<kvm_userspace_memory_region> = defineStruct<kvm_userspace_memory_region>(
  KVM_LAYOUTS.kvm_userspace_memory_region,
  { slot: u32, flags: u32, guest_phys_addr: u64n, memory_size: u64n, userspace_addr: u64n },
);

/** A `kvm_userspace_memory_region` with everything zero, overridden by `init`. */
export function makeKvmUserspaceMemoryRegion(
  init: Partial<kvm_userspace_memory_region> = {},
): kvm_userspace_memory_region {
  return KVM_USERSPACE_MEMORY_REGION_CODEC.make(init);
}

/** An independent copy of a `kvm_userspace_memory_region`. */
export function copyKvmUserspaceMemoryRegion(r: kvm_userspace_memory_region): kvm_userspace_memory_region {
  return KVM_USERSPACE_MEMORY_REGION_CODEC.clone(r);
}

/** The first shape problem of `x` as a `kvm_userspace_memory_region`, or `undefined`. */
export function validateKvmUserspaceMemoryRegion(x: unknown): string | undefined {
  return KVM_USERSPACE_MEMORY_REGION_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_userspace_memory_region`. */
export function isKvmUserspaceMemoryRegion(x: unknown): x is kvm_userspace_memory_region {
  return validateKvmUserspaceMemoryRegion(x) === undefined;
}

/** Write `r` as a C `struct kvm_userspace_memory_region` at `offset` of `view`. */
export function encodeKvmUserspaceMemoryRegion(r: kvm_userspace_memory_region, view: DataView, offset = 0): void {
  KVM_USERSPACE_MEMORY_REGION_CODEC.encode(r, view, offset);
}

/** Read a C `struct kvm_userspace_memory_region` at `offset` of `view` (64-bit fields above 2^53 lose precision). */
export function decodeKvmUserspaceMemoryRegion(view: DataView, offset = 0): kvm_userspace_memory_region {
  return KVM_USERSPACE_MEMORY_REGION_CODEC.decode(view, offset);
}

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_sev_cmd                                                                                       */
/* ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_sev_cmd` (24 bytes): the argument of KVM_MEMORY_ENCRYPT_OP on AMD. */
export interface kvm_sev_cmd {
  /** `KVM_SEV_*` command id. */ id: number;
  /** Command-specific: a user pointer to the command's structure, or 0. */ data: number;
  /** Out: the SEV firmware error code (0 on success). */ error: number;
  /** An fd of `/dev/sev`, proving the caller may use the SEV firmware. */ sev_fd: number;
}

/** The description of `struct kvm_sev_cmd` (`pad0` written as zero). */
export const KVM_SEV_CMD_CODEC: StructCodec<kvm_sev_cmd> = defineStruct<kvm_sev_cmd>(KVM_LAYOUTS.kvm_sev_cmd, {
  id: u32, data: u64n, error: u32, sev_fd: u32,
});

/** A `kvm_sev_cmd` with everything zero, overridden by `init`. */
export function makeKvmSevCmd(init: Partial<kvm_sev_cmd> = {}): kvm_sev_cmd {
  return KVM_SEV_CMD_CODEC.make(init);
}

/** An independent copy of a `kvm_sev_cmd`. */
export function copyKvmSevCmd(c: kvm_sev_cmd): kvm_sev_cmd {
  return KVM_SEV_CMD_CODEC.clone(c);
}

/** The first shape problem of `x` as a `kvm_sev_cmd`, or `undefined`. */
export function validateKvmSevCmd(x: unknown): string | undefined {
  return KVM_SEV_CMD_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_sev_cmd`. */
export function isKvmSevCmd(x: unknown): x is kvm_sev_cmd {
  return validateKvmSevCmd(x) === undefined;
}

/** Write `c` as a C `struct kvm_sev_cmd` at `offset` of `view` (`pad0` written as zero). */
export function encodeKvmSevCmd(c: kvm_sev_cmd, view: DataView, offset = 0): void {
  KVM_SEV_CMD_CODEC.encode(c, view, offset);
}

/** Read a C `struct kvm_sev_cmd` at `offset` of `view`. */
export function decodeKvmSevCmd(view: DataView, offset = 0): kvm_sev_cmd {
  return KVM_SEV_CMD_CODEC.decode(view, offset);
}

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_enable_cap                                                                                    */
/* ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_enable_cap` (KVM_ENABLE_CAP, 104 bytes). */
export interface kvm_enable_cap {
  /** `KVM_CAP_*` number to enable. */ cap: number;
  /** Must be 0 for most capabilities. */ flags: number;
  /** Capability-specific arguments. */ args: [bigint, bigint, bigint, bigint];
}

/** The description of `struct kvm_enable_cap` (`pad` written as zero). */
export const KVM_ENABLE_CAP_CODEC: StructCodec<kvm_enable_cap> = defineStruct<kvm_enable_cap>(KVM_LAYOUTS.kvm_enable_cap, {
  cap: u32, flags: u32, args: u64x4,
});

/** A `kvm_enable_cap` with everything zero, overridden by `init` (`args` is copied). */
export function makeKvmEnableCap(init: Partial<kvm_enable_cap> = {}): kvm_enable_cap {
  return KVM_ENABLE_CAP_CODEC.make(init);
}

/** An independent copy of a `kvm_enable_cap`. */
export function copyKvmEnableCap(c: kvm_enable_cap): kvm_enable_cap {
  return KVM_ENABLE_CAP_CODEC.clone(c);
}

/** The first shape problem of `x` as a `kvm_enable_cap`, or `undefined`. */
export function validateKvmEnableCap(x: unknown): string | undefined {
  return KVM_ENABLE_CAP_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_enable_cap`. */
export function isKvmEnableCap(x: unknown): x is kvm_enable_cap {
  return validateKvmEnableCap(x) === undefined;
}

/** Write `c` as a C `struct kvm_enable_cap` at `offset` of `view` (`pad` written as zero). */
export function encodeKvmEnableCap(c: kvm_enable_cap, view: DataView, offset = 0): void {
  KVM_ENABLE_CAP_CODEC.encode(c, view, offset);
}

/** Read a C `struct kvm_enable_cap` at `offset` of `view`. */
export function decodeKvmEnableCap(view: DataView, offset = 0): kvm_enable_cap {
  return KVM_ENABLE_CAP_CODEC.decode(view, offset);
}

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_msr_entry, struct kvm_cpuid_entry2                                                            */
/* ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_msr_entry` (16 bytes): one entry of KVM_GET_MSRS / KVM_SET_MSRS. */
export interface kvm_msr_entry {
  /** MSR number. */ index: number;
  /** MSR value. */ data: bigint;
}

/** The description of `struct kvm_msr_entry` (`reserved` written as zero). */
export const KVM_MSR_ENTRY_CODEC: StructCodec<kvm_msr_entry> = defineStruct<kvm_msr_entry>(KVM_LAYOUTS.kvm_msr_entry, { index: u32, data: u64 });

/** A `kvm_msr_entry` with everything zero, overridden by `init`. */
export function makeKvmMsrEntry(init: Partial<kvm_msr_entry> = {}): kvm_msr_entry {
  return KVM_MSR_ENTRY_CODEC.make(init);
}

/** An independent copy of a `kvm_msr_entry`. */
export function copyKvmMsrEntry(e: kvm_msr_entry): kvm_msr_entry {
  return KVM_MSR_ENTRY_CODEC.clone(e);
}

/** The first shape problem of `x` as a `kvm_msr_entry`, or `undefined`. */
export function validateKvmMsrEntry(x: unknown): string | undefined {
  return KVM_MSR_ENTRY_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_msr_entry`. */
export function isKvmMsrEntry(x: unknown): x is kvm_msr_entry {
  return validateKvmMsrEntry(x) === undefined;
}

/** `struct kvm_cpuid_entry2` (40 bytes): one CPUID leaf of KVM_SET_CPUID2 / KVM_GET_SUPPORTED_CPUID. */
export interface kvm_cpuid_entry2 {
  /** Leaf (EAX input). */ function: number;
  /** Sub-leaf (ECX input). */ index: number;
  /** `KVM_CPUID_FLAG_*`. */ flags: number;
  /** EAX output. */ eax: number;
  /** EBX output. */ ebx: number;
  /** ECX output. */ ecx: number;
  /** EDX output. */ edx: number;
}

/** The description of `struct kvm_cpuid_entry2` (`padding` written as zero). */
export const KVM_CPUID_ENTRY2_CODEC: StructCodec<kvm_cpuid_entry2> = defineStruct<kvm_cpuid_entry2>(KVM_LAYOUTS.kvm_cpuid_entry2, {
  function: u32, index: u32, flags: u32, eax: u32, ebx: u32, ecx: u32, edx: u32,
});

/** A `kvm_cpuid_entry2` with everything zero, overridden by `init`. */
export function makeKvmCpuidEntry2(init: Partial<kvm_cpuid_entry2> = {}): kvm_cpuid_entry2 {
  return KVM_CPUID_ENTRY2_CODEC.make(init);
}

/** An independent copy of a `kvm_cpuid_entry2`. */
export function copyKvmCpuidEntry2(e: kvm_cpuid_entry2): kvm_cpuid_entry2 {
  return KVM_CPUID_ENTRY2_CODEC.clone(e);
}

/** The first shape problem of `x` as a `kvm_cpuid_entry2`, or `undefined`. */
export function validateKvmCpuidEntry2(x: unknown): string | undefined {
  return KVM_CPUID_ENTRY2_CODEC.problem(x);
}

/** Whether `x` has the shape of a `kvm_cpuid_entry2`. */
export function isKvmCpuidEntry2(x: unknown): x is kvm_cpuid_entry2 {
  return validateKvmCpuidEntry2(x) === undefined;
}

/* ------------------------------------------------------------------------------------------------------ */
/* Byte-buffer convenience                                                                                  */
/* ------------------------------------------------------------------------------------------------------ */

/** The C bytes of a `kvm_regs` (144 bytes, little-endian). */
export function kvmRegsToBytes(r: kvm_regs): Uint8Array<ArrayBuffer> {
  return KVM_REGS_CODEC.toBytes(r);
}

/** The C bytes of a `kvm_sregs` (312 bytes, little-endian). */
export function kvmSregsToBytes(s: kvm_sregs): Uint8Array<ArrayBuffer> {
  return KVM_SREGS_CODEC.toBytes(s);
}

/** The C bytes of a `kvm_userspace_memory_region` (32 bytes, little-endian). */
export function kvmUserspaceMemoryRegionToBytes(r: kvm_userspace_memory_region): Uint8Array<ArrayBuffer> {
  return KVM_USERSPACE_MEMORY_REGION_CODEC.toBytes(r);
}
