/**
 * The argument structures of the `/dev/kvm` ioctls as TypeScript values: interfaces with the Linux field
 * names, constructors with zeroed defaults, deep copies, shape validators and little-endian encoders /
 * decoders that produce exactly the bytes of the C structure (x86-64 layout, see `layout.ts`).
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
 * addresses below 2^53, so these are always safe integers, and the validators reject anything that is not.
 * The same rule is used by `KvmRunView`.
 *
 * Padding and reserved members are not part of the interfaces; the encoders write them as zero. The `make*`
 * constructors and `copy*` helpers build fresh objects holding exactly the structure's fields (nested
 * segments, tables and arrays are copied too), so a handler can snapshot a caller's argument without
 * keeping references into it.
 *
 * ## Validators
 *
 * `isKvmRegs(x)` and friends check the *shape* of an argument: the object exists, every field is present
 * and has the C type's range. They are what an ioctl handler uses in place of `copy_from_user`, which fails
 * with EFAULT on a bad user pointer. They do not check semantics (a segment `type` of 7 is well formed even
 * if the CPU would reject it); that is the handler's job, as in the kernel. `validateKvmRegs(x)` and friends
 * return the first problem as text instead of a boolean, for error messages.
 *
 * @module
 */

import { KVM_LAYOUTS } from './layout.js';

const U64_MAX = (1n << 64n) - 1n;

/* ------------------------------------------------------------------------------------------------------ */
/* Field checks                                                                                             */
/* ------------------------------------------------------------------------------------------------------ */

type Problem = string | undefined;

function isObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

function uint(x: Record<string, unknown>, key: string, bits: 8 | 16 | 32, where: string): Problem {
  const v = x[key];
  if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 2 ** bits - 1) {
    return `${where}.${key} must be an integer in 0..${String(2 ** bits - 1)} (__u${String(bits)})`;
  }
  return undefined;
}

function u64n(x: Record<string, unknown>, key: string, where: string): Problem {
  const v = x[key];
  if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0) {
    return `${where}.${key} must be a non-negative safe integer (__u64 address or size)`;
  }
  return undefined;
}

function u64b(v: unknown, what: string): Problem {
  if (typeof v !== 'bigint' || v < 0n || v > U64_MAX) return `${what} must be a bigint in 0..2^64-1 (__u64)`;
  return undefined;
}

function u64bTuple(x: Record<string, unknown>, key: string, length: number, where: string): Problem {
  const v = x[key];
  if (!Array.isArray(v) || v.length !== length) return `${where}.${key} must be an array of ${String(length)} bigints`;
  for (let i = 0; i < length; i++) {
    const p = u64b(v[i] as unknown, `${where}.${key}[${String(i)}]`);
    if (p !== undefined) return p;
  }
  return undefined;
}

function first(...checks: (() => Problem)[]): Problem {
  for (const c of checks) {
    const p = c();
    if (p !== undefined) return p;
  }
  return undefined;
}

function checkAll(x: unknown, where: string, check: (o: Record<string, unknown>) => Problem): Problem {
  if (!isObject(x)) return `${where} must be an object`;
  return check(x);
}

/* ------------------------------------------------------------------------------------------------------ */
/* Encoding helpers                                                                                         */
/* ------------------------------------------------------------------------------------------------------ */

function setU64n(view: DataView, offset: number, v: number): void {
  view.setUint32(offset, v % 0x1_0000_0000, true);
  view.setUint32(offset + 4, Math.floor(v / 0x1_0000_0000), true);
}

function getU64n(view: DataView, offset: number): number {
  return view.getUint32(offset + 4, true) * 0x1_0000_0000 + view.getUint32(offset, true);
}

function zeroRange(view: DataView, offset: number, size: number): void {
  new Uint8Array(view.buffer, view.byteOffset + offset, size).fill(0);
}

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

/** A `kvm_regs` with every register zero, overridden by `init`. */
export function makeKvmRegs(init: Partial<kvm_regs> = {}): kvm_regs {
  return {
    rax: init.rax ?? 0n, rbx: init.rbx ?? 0n, rcx: init.rcx ?? 0n, rdx: init.rdx ?? 0n,
    rsi: init.rsi ?? 0n, rdi: init.rdi ?? 0n, rsp: init.rsp ?? 0n, rbp: init.rbp ?? 0n,
    r8: init.r8 ?? 0n, r9: init.r9 ?? 0n, r10: init.r10 ?? 0n, r11: init.r11 ?? 0n,
    r12: init.r12 ?? 0n, r13: init.r13 ?? 0n, r14: init.r14 ?? 0n, r15: init.r15 ?? 0n,
    rip: init.rip ?? 0n, rflags: init.rflags ?? 0n,
  };
}

/** An independent copy of a `kvm_regs` (only the struct's fields are copied; other properties are dropped). */
export function copyKvmRegs(r: kvm_regs): kvm_regs {
  return makeKvmRegs(r);
}

/** The first shape problem of `x` as a `kvm_regs`, or `undefined` if it has the right shape. */
export function validateKvmRegs(x: unknown): string | undefined {
  return checkAll(x, 'kvm_regs', (o) => {
    for (const k of KVM_REGS_FIELDS) {
      const p = u64b(o[k], `kvm_regs.${k}`);
      if (p !== undefined) return p;
    }
    return undefined;
  });
}

/** Whether `x` has the shape of a `kvm_regs`. */
export function isKvmRegs(x: unknown): x is kvm_regs {
  return validateKvmRegs(x) === undefined;
}

/** Write `r` as a C `struct kvm_regs` at `offset` of `view`. */
export function encodeKvmRegs(r: kvm_regs, view: DataView, offset = 0): void {
  for (let i = 0; i < KVM_REGS_FIELDS.length; i++) {
    view.setBigUint64(offset + 8 * i, r[KVM_REGS_FIELDS[i] as keyof kvm_regs], true);
  }
}

/** Read a C `struct kvm_regs` at `offset` of `view`. */
export function decodeKvmRegs(view: DataView, offset = 0): kvm_regs {
  const r = makeKvmRegs();
  for (let i = 0; i < KVM_REGS_FIELDS.length; i++) {
    r[KVM_REGS_FIELDS[i] as keyof kvm_regs] = view.getBigUint64(offset + 8 * i, true);
  }
  return r;
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

/** The byte-sized `kvm_segment` fields after `type`, in C order. */
const SEGMENT_FLAG_FIELDS = ['present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;

/** A `kvm_segment` with every field zero, overridden by `init`. */
export function makeKvmSegment(init: Partial<kvm_segment> = {}): kvm_segment {
  return {
    base: init.base ?? 0n, limit: init.limit ?? 0, selector: init.selector ?? 0, type: init.type ?? 0,
    present: init.present ?? 0, dpl: init.dpl ?? 0, db: init.db ?? 0, s: init.s ?? 0,
    l: init.l ?? 0, g: init.g ?? 0, avl: init.avl ?? 0, unusable: init.unusable ?? 0,
  };
}

/** An independent copy of a `kvm_segment`. */
export function copyKvmSegment(s: kvm_segment): kvm_segment {
  return makeKvmSegment(s);
}

function segmentProblem(x: unknown, where: string): Problem {
  return checkAll(x, where, (o) =>
    first(
      () => u64b(o.base, `${where}.base`),
      () => uint(o, 'limit', 32, where),
      () => uint(o, 'selector', 16, where),
      () => uint(o, 'type', 8, where),
      ...SEGMENT_FLAG_FIELDS.map((k) => () => uint(o, k, 8, where)),
    ),
  );
}

/** The first shape problem of `x` as a `kvm_segment`, or `undefined`. */
export function validateKvmSegment(x: unknown): string | undefined {
  return segmentProblem(x, 'kvm_segment');
}

/** Whether `x` has the shape of a `kvm_segment`. */
export function isKvmSegment(x: unknown): x is kvm_segment {
  return validateKvmSegment(x) === undefined;
}

const SEG = KVM_LAYOUTS.kvm_segment;

/** Write `s` as a C `struct kvm_segment` at `offset` of `view` (padding written as zero). */
export function encodeKvmSegment(s: kvm_segment, view: DataView, offset = 0): void {
  view.setBigUint64(offset + SEG.offsetOf('base'), s.base, true);
  view.setUint32(offset + SEG.offsetOf('limit'), s.limit, true);
  view.setUint16(offset + SEG.offsetOf('selector'), s.selector, true);
  view.setUint8(offset + SEG.offsetOf('type'), s.type);
  for (const k of SEGMENT_FLAG_FIELDS) view.setUint8(offset + SEG.offsetOf(k), s[k]);
  view.setUint8(offset + SEG.offsetOf('padding'), 0);
}

/** Read a C `struct kvm_segment` at `offset` of `view`. */
export function decodeKvmSegment(view: DataView, offset = 0): kvm_segment {
  const s = makeKvmSegment({
    base: view.getBigUint64(offset + SEG.offsetOf('base'), true),
    limit: view.getUint32(offset + SEG.offsetOf('limit'), true),
    selector: view.getUint16(offset + SEG.offsetOf('selector'), true),
    type: view.getUint8(offset + SEG.offsetOf('type')),
  });
  for (const k of SEGMENT_FLAG_FIELDS) s[k] = view.getUint8(offset + SEG.offsetOf(k));
  return s;
}

/** `struct kvm_dtable` (16 bytes): GDTR or IDTR. */
export interface kvm_dtable {
  /** Table base (linear address). */ base: bigint;
  /** Table limit (16 bits). */ limit: number;
}

/** A `kvm_dtable` with base and limit zero, overridden by `init`. */
export function makeKvmDtable(init: Partial<kvm_dtable> = {}): kvm_dtable {
  return { base: init.base ?? 0n, limit: init.limit ?? 0 };
}

/** An independent copy of a `kvm_dtable`. */
export function copyKvmDtable(d: kvm_dtable): kvm_dtable {
  return makeKvmDtable(d);
}

function dtableProblem(x: unknown, where: string): Problem {
  return checkAll(x, where, (o) =>
    first(
      () => u64b(o.base, `${where}.base`),
      () => uint(o, 'limit', 16, where),
    ),
  );
}

/** The first shape problem of `x` as a `kvm_dtable`, or `undefined`. */
export function validateKvmDtable(x: unknown): string | undefined {
  return dtableProblem(x, 'kvm_dtable');
}

/** Whether `x` has the shape of a `kvm_dtable`. */
export function isKvmDtable(x: unknown): x is kvm_dtable {
  return validateKvmDtable(x) === undefined;
}

const DT = KVM_LAYOUTS.kvm_dtable;

/** Write `d` as a C `struct kvm_dtable` at `offset` of `view` (padding written as zero). */
export function encodeKvmDtable(d: kvm_dtable, view: DataView, offset = 0): void {
  view.setBigUint64(offset + DT.offsetOf('base'), d.base, true);
  view.setUint16(offset + DT.offsetOf('limit'), d.limit, true);
  zeroRange(view, offset + DT.offsetOf('padding'), DT.sizeOf('padding'));
}

/** Read a C `struct kvm_dtable` at `offset` of `view`. */
export function decodeKvmDtable(view: DataView, offset = 0): kvm_dtable {
  return {
    base: view.getBigUint64(offset + DT.offsetOf('base'), true),
    limit: view.getUint16(offset + DT.offsetOf('limit'), true),
  };
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

/** A `kvm_sregs` with everything zero, overridden by `init` (nested values are copied, not shared). */
export function makeKvmSregs(init: Partial<kvm_sregs> = {}): kvm_sregs {
  const seg = (s: kvm_segment | undefined): kvm_segment => makeKvmSegment(s);
  const dt = (d: kvm_dtable | undefined): kvm_dtable => makeKvmDtable(d);
  const bm = init.interrupt_bitmap;
  return {
    cs: seg(init.cs), ds: seg(init.ds), es: seg(init.es), fs: seg(init.fs),
    gs: seg(init.gs), ss: seg(init.ss), tr: seg(init.tr), ldt: seg(init.ldt),
    gdt: dt(init.gdt), idt: dt(init.idt),
    cr0: init.cr0 ?? 0n, cr2: init.cr2 ?? 0n, cr3: init.cr3 ?? 0n, cr4: init.cr4 ?? 0n,
    cr8: init.cr8 ?? 0n, efer: init.efer ?? 0n, apic_base: init.apic_base ?? 0n,
    interrupt_bitmap: bm === undefined ? [0n, 0n, 0n, 0n] : [bm[0], bm[1], bm[2], bm[3]],
  };
}

/** A deep, independent copy of a `kvm_sregs`. */
export function copyKvmSregs(s: kvm_sregs): kvm_sregs {
  return makeKvmSregs(s);
}

/** The first shape problem of `x` as a `kvm_sregs`, or `undefined`. */
export function validateKvmSregs(x: unknown): string | undefined {
  return checkAll(x, 'kvm_sregs', (o) =>
    first(
      ...KVM_SREGS_SEGMENTS.map((k) => () => segmentProblem(o[k], `kvm_sregs.${k}`)),
      ...KVM_SREGS_DTABLES.map((k) => () => dtableProblem(o[k], `kvm_sregs.${k}`)),
      ...KVM_SREGS_U64_FIELDS.map((k) => () => u64b(o[k], `kvm_sregs.${k}`)),
      () => u64bTuple(o, 'interrupt_bitmap', 4, 'kvm_sregs'),
    ),
  );
}

/** Whether `x` has the shape of a `kvm_sregs`. */
export function isKvmSregs(x: unknown): x is kvm_sregs {
  return validateKvmSregs(x) === undefined;
}

const SREGS = KVM_LAYOUTS.kvm_sregs;

/** Write `s` as a C `struct kvm_sregs` at `offset` of `view`. */
export function encodeKvmSregs(s: kvm_sregs, view: DataView, offset = 0): void {
  for (const k of KVM_SREGS_SEGMENTS) encodeKvmSegment(s[k], view, offset + SREGS.offsetOf(k));
  for (const k of KVM_SREGS_DTABLES) encodeKvmDtable(s[k], view, offset + SREGS.offsetOf(k));
  for (const k of KVM_SREGS_U64_FIELDS) view.setBigUint64(offset + SREGS.offsetOf(k), s[k], true);
  const bm = offset + SREGS.offsetOf('interrupt_bitmap');
  for (let i = 0; i < 4; i++) view.setBigUint64(bm + 8 * i, s.interrupt_bitmap[i] ?? 0n, true);
}

/** Read a C `struct kvm_sregs` at `offset` of `view`. */
export function decodeKvmSregs(view: DataView, offset = 0): kvm_sregs {
  const s = makeKvmSregs();
  for (const k of KVM_SREGS_SEGMENTS) s[k] = decodeKvmSegment(view, offset + SREGS.offsetOf(k));
  for (const k of KVM_SREGS_DTABLES) s[k] = decodeKvmDtable(view, offset + SREGS.offsetOf(k));
  for (const k of KVM_SREGS_U64_FIELDS) s[k] = view.getBigUint64(offset + SREGS.offsetOf(k), true);
  const bm = offset + SREGS.offsetOf('interrupt_bitmap');
  s.interrupt_bitmap = [
    view.getBigUint64(bm, true),
    view.getBigUint64(bm + 8, true),
    view.getBigUint64(bm + 16, true),
    view.getBigUint64(bm + 24, true),
  ];
  return s;
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

/** A `kvm_userspace_memory_region` with everything zero, overridden by `init`. */
export function makeKvmUserspaceMemoryRegion(
  init: Partial<kvm_userspace_memory_region> = {},
): kvm_userspace_memory_region {
  return {
    slot: init.slot ?? 0,
    flags: init.flags ?? 0,
    guest_phys_addr: init.guest_phys_addr ?? 0,
    memory_size: init.memory_size ?? 0,
    userspace_addr: init.userspace_addr ?? 0,
  };
}

/** An independent copy of a `kvm_userspace_memory_region`. */
export function copyKvmUserspaceMemoryRegion(r: kvm_userspace_memory_region): kvm_userspace_memory_region {
  return makeKvmUserspaceMemoryRegion(r);
}

/** The first shape problem of `x` as a `kvm_userspace_memory_region`, or `undefined`. */
export function validateKvmUserspaceMemoryRegion(x: unknown): string | undefined {
  const w = 'kvm_userspace_memory_region';
  return checkAll(x, w, (o) =>
    first(
      () => uint(o, 'slot', 32, w),
      () => uint(o, 'flags', 32, w),
      () => u64n(o, 'guest_phys_addr', w),
      () => u64n(o, 'memory_size', w),
      () => u64n(o, 'userspace_addr', w),
    ),
  );
}

/** Whether `x` has the shape of a `kvm_userspace_memory_region`. */
export function isKvmUserspaceMemoryRegion(x: unknown): x is kvm_userspace_memory_region {
  return validateKvmUserspaceMemoryRegion(x) === undefined;
}

const UMR = KVM_LAYOUTS.kvm_userspace_memory_region;

/** Write `r` as a C `struct kvm_userspace_memory_region` at `offset` of `view`. */
export function encodeKvmUserspaceMemoryRegion(r: kvm_userspace_memory_region, view: DataView, offset = 0): void {
  view.setUint32(offset + UMR.offsetOf('slot'), r.slot, true);
  view.setUint32(offset + UMR.offsetOf('flags'), r.flags, true);
  setU64n(view, offset + UMR.offsetOf('guest_phys_addr'), r.guest_phys_addr);
  setU64n(view, offset + UMR.offsetOf('memory_size'), r.memory_size);
  setU64n(view, offset + UMR.offsetOf('userspace_addr'), r.userspace_addr);
}

/** Read a C `struct kvm_userspace_memory_region` at `offset` of `view` (64-bit fields above 2^53 lose precision). */
export function decodeKvmUserspaceMemoryRegion(view: DataView, offset = 0): kvm_userspace_memory_region {
  return {
    slot: view.getUint32(offset + UMR.offsetOf('slot'), true),
    flags: view.getUint32(offset + UMR.offsetOf('flags'), true),
    guest_phys_addr: getU64n(view, offset + UMR.offsetOf('guest_phys_addr')),
    memory_size: getU64n(view, offset + UMR.offsetOf('memory_size')),
    userspace_addr: getU64n(view, offset + UMR.offsetOf('userspace_addr')),
  };
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

/** A `kvm_sev_cmd` with everything zero, overridden by `init`. */
export function makeKvmSevCmd(init: Partial<kvm_sev_cmd> = {}): kvm_sev_cmd {
  return { id: init.id ?? 0, data: init.data ?? 0, error: init.error ?? 0, sev_fd: init.sev_fd ?? 0 };
}

/** An independent copy of a `kvm_sev_cmd`. */
export function copyKvmSevCmd(c: kvm_sev_cmd): kvm_sev_cmd {
  return makeKvmSevCmd(c);
}

/** The first shape problem of `x` as a `kvm_sev_cmd`, or `undefined`. */
export function validateKvmSevCmd(x: unknown): string | undefined {
  const w = 'kvm_sev_cmd';
  return checkAll(x, w, (o) =>
    first(
      () => uint(o, 'id', 32, w),
      () => u64n(o, 'data', w),
      () => uint(o, 'error', 32, w),
      () => uint(o, 'sev_fd', 32, w),
    ),
  );
}

/** Whether `x` has the shape of a `kvm_sev_cmd`. */
export function isKvmSevCmd(x: unknown): x is kvm_sev_cmd {
  return validateKvmSevCmd(x) === undefined;
}

const SEV = KVM_LAYOUTS.kvm_sev_cmd;

/** Write `c` as a C `struct kvm_sev_cmd` at `offset` of `view` (`pad0` written as zero). */
export function encodeKvmSevCmd(c: kvm_sev_cmd, view: DataView, offset = 0): void {
  view.setUint32(offset + SEV.offsetOf('id'), c.id, true);
  view.setUint32(offset + SEV.offsetOf('pad0'), 0, true);
  setU64n(view, offset + SEV.offsetOf('data'), c.data);
  view.setUint32(offset + SEV.offsetOf('error'), c.error, true);
  view.setUint32(offset + SEV.offsetOf('sev_fd'), c.sev_fd, true);
}

/** Read a C `struct kvm_sev_cmd` at `offset` of `view`. */
export function decodeKvmSevCmd(view: DataView, offset = 0): kvm_sev_cmd {
  return {
    id: view.getUint32(offset + SEV.offsetOf('id'), true),
    data: getU64n(view, offset + SEV.offsetOf('data')),
    error: view.getUint32(offset + SEV.offsetOf('error'), true),
    sev_fd: view.getUint32(offset + SEV.offsetOf('sev_fd'), true),
  };
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

/** A `kvm_enable_cap` with everything zero, overridden by `init` (`args` is copied). */
export function makeKvmEnableCap(init: Partial<kvm_enable_cap> = {}): kvm_enable_cap {
  const a = init.args;
  return {
    cap: init.cap ?? 0,
    flags: init.flags ?? 0,
    args: a === undefined ? [0n, 0n, 0n, 0n] : [a[0], a[1], a[2], a[3]],
  };
}

/** An independent copy of a `kvm_enable_cap`. */
export function copyKvmEnableCap(c: kvm_enable_cap): kvm_enable_cap {
  return makeKvmEnableCap(c);
}

/** The first shape problem of `x` as a `kvm_enable_cap`, or `undefined`. */
export function validateKvmEnableCap(x: unknown): string | undefined {
  const w = 'kvm_enable_cap';
  return checkAll(x, w, (o) =>
    first(
      () => uint(o, 'cap', 32, w),
      () => uint(o, 'flags', 32, w),
      () => u64bTuple(o, 'args', 4, w),
    ),
  );
}

/** Whether `x` has the shape of a `kvm_enable_cap`. */
export function isKvmEnableCap(x: unknown): x is kvm_enable_cap {
  return validateKvmEnableCap(x) === undefined;
}

const CAP = KVM_LAYOUTS.kvm_enable_cap;

/** Write `c` as a C `struct kvm_enable_cap` at `offset` of `view` (`pad` written as zero). */
export function encodeKvmEnableCap(c: kvm_enable_cap, view: DataView, offset = 0): void {
  view.setUint32(offset + CAP.offsetOf('cap'), c.cap, true);
  view.setUint32(offset + CAP.offsetOf('flags'), c.flags, true);
  const args = offset + CAP.offsetOf('args');
  for (let i = 0; i < 4; i++) view.setBigUint64(args + 8 * i, c.args[i] ?? 0n, true);
  zeroRange(view, offset + CAP.offsetOf('pad'), CAP.sizeOf('pad'));
}

/** Read a C `struct kvm_enable_cap` at `offset` of `view`. */
export function decodeKvmEnableCap(view: DataView, offset = 0): kvm_enable_cap {
  const args = offset + CAP.offsetOf('args');
  return {
    cap: view.getUint32(offset + CAP.offsetOf('cap'), true),
    flags: view.getUint32(offset + CAP.offsetOf('flags'), true),
    args: [
      view.getBigUint64(args, true),
      view.getBigUint64(args + 8, true),
      view.getBigUint64(args + 16, true),
      view.getBigUint64(args + 24, true),
    ],
  };
}

/* ------------------------------------------------------------------------------------------------------ */
/* struct kvm_msr_entry, struct kvm_cpuid_entry2                                                            */
/* ------------------------------------------------------------------------------------------------------ */

/** `struct kvm_msr_entry` (16 bytes): one entry of KVM_GET_MSRS / KVM_SET_MSRS. */
export interface kvm_msr_entry {
  /** MSR number. */ index: number;
  /** MSR value. */ data: bigint;
}

/** A `kvm_msr_entry` with everything zero, overridden by `init`. */
export function makeKvmMsrEntry(init: Partial<kvm_msr_entry> = {}): kvm_msr_entry {
  return { index: init.index ?? 0, data: init.data ?? 0n };
}

/** An independent copy of a `kvm_msr_entry`. */
export function copyKvmMsrEntry(e: kvm_msr_entry): kvm_msr_entry {
  return makeKvmMsrEntry(e);
}

/** The first shape problem of `x` as a `kvm_msr_entry`, or `undefined`. */
export function validateKvmMsrEntry(x: unknown): string | undefined {
  const w = 'kvm_msr_entry';
  return checkAll(x, w, (o) =>
    first(
      () => uint(o, 'index', 32, w),
      () => u64b(o.data, `${w}.data`),
    ),
  );
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

const CPUID_FIELDS = ['function', 'index', 'flags', 'eax', 'ebx', 'ecx', 'edx'] as const;

/** A `kvm_cpuid_entry2` with everything zero, overridden by `init`. */
export function makeKvmCpuidEntry2(init: Partial<kvm_cpuid_entry2> = {}): kvm_cpuid_entry2 {
  return {
    function: init.function ?? 0, index: init.index ?? 0, flags: init.flags ?? 0,
    eax: init.eax ?? 0, ebx: init.ebx ?? 0, ecx: init.ecx ?? 0, edx: init.edx ?? 0,
  };
}

/** An independent copy of a `kvm_cpuid_entry2`. */
export function copyKvmCpuidEntry2(e: kvm_cpuid_entry2): kvm_cpuid_entry2 {
  return makeKvmCpuidEntry2(e);
}

/** The first shape problem of `x` as a `kvm_cpuid_entry2`, or `undefined`. */
export function validateKvmCpuidEntry2(x: unknown): string | undefined {
  return checkAll(x, 'kvm_cpuid_entry2', (o) => first(...CPUID_FIELDS.map((k) => () => uint(o, k, 32, 'kvm_cpuid_entry2'))));
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
  const bytes = new Uint8Array(KVM_LAYOUTS.kvm_regs.size);
  encodeKvmRegs(r, new DataView(bytes.buffer));
  return bytes;
}

/** The C bytes of a `kvm_sregs` (312 bytes, little-endian). */
export function kvmSregsToBytes(s: kvm_sregs): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(KVM_LAYOUTS.kvm_sregs.size);
  encodeKvmSregs(s, new DataView(bytes.buffer));
  return bytes;
}

/** The C bytes of a `kvm_userspace_memory_region` (32 bytes, little-endian). */
export function kvmUserspaceMemoryRegionToBytes(r: kvm_userspace_memory_region): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(KVM_LAYOUTS.kvm_userspace_memory_region.size);
  encodeKvmUserspaceMemoryRegion(r, new DataView(bytes.buffer));
  return bytes;
}
