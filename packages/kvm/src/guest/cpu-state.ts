/**
 * The guest register file the real-mode interpreter executes against: general-purpose registers, RIP,
 * RFLAGS, the six segment registers with their hidden base/limit/attributes, the IVT location, and the
 * bookkeeping KVM keeps in `struct kvm_vcpu_arch` for an exit that user space still has to complete
 * (`complete_userspace_io`, `cui_linear_rip`, the emulator's MMIO read cache).
 *
 * Everything is a plain number field on a class, so every access site in the interpreter sees one hidden
 * class (monomorphic) and no field is ever a Map lookup. That includes the segment registers (`csBase`,
 * `csSelector`, …, the descriptor attributes packed three bytes to a field): `state.cs` … `state.gs` are
 * live {@link SegmentRegister} views of those fields for code that wants an object, so a vCPU's registers
 * are one object rather than seven. General-purpose registers hold unsigned integers in `[0, 2^53)`: the
 * `/dev/kvm` layer converts the `__u64` fields of `struct kvm_regs` to and from these. 16-bit operations
 * change only the low 16 bits of a register, 8-bit operations only the addressed byte (AL…BL or AH…BH); a
 * 32-bit write zero-extends into the whole register, as KVM's `kvm_register_write()` does when the guest
 * is not in 64-bit mode.
 *
 * @module
 */

/** Carry flag, RFLAGS bit 0 (Linux `X86_EFLAGS_CF`). */
export const X86_EFLAGS_CF = 0x0001;
/** Reserved RFLAGS bit 1, which always reads as 1 (Linux `X86_EFLAGS_FIXED`). */
export const X86_EFLAGS_FIXED = 0x0002;
/** Parity flag, RFLAGS bit 2 (Linux `X86_EFLAGS_PF`). */
export const X86_EFLAGS_PF = 0x0004;
/** Auxiliary-carry flag, RFLAGS bit 4 (Linux `X86_EFLAGS_AF`). */
export const X86_EFLAGS_AF = 0x0010;
/** Zero flag, RFLAGS bit 6 (Linux `X86_EFLAGS_ZF`). */
export const X86_EFLAGS_ZF = 0x0040;
/** Sign flag, RFLAGS bit 7 (Linux `X86_EFLAGS_SF`). */
export const X86_EFLAGS_SF = 0x0080;
/** Trap flag, RFLAGS bit 8 (Linux `X86_EFLAGS_TF`). */
export const X86_EFLAGS_TF = 0x0100;
/** Interrupt-enable flag, RFLAGS bit 9 (Linux `X86_EFLAGS_IF`). */
export const X86_EFLAGS_IF = 0x0200;
/** Direction flag, RFLAGS bit 10 (Linux `X86_EFLAGS_DF`). */
export const X86_EFLAGS_DF = 0x0400;
/** Overflow flag, RFLAGS bit 11 (Linux `X86_EFLAGS_OF`). */
export const X86_EFLAGS_OF = 0x0800;
/** Alignment-check flag, RFLAGS bit 18 (Linux `X86_EFLAGS_AC`). */
export const X86_EFLAGS_AC = 0x40000;

/**
 * What the vCPU still owes user space's last exit, i.e. which `complete_userspace_io` callback KVM would
 * run on the next `KVM_RUN` (arch/x86/kvm/x86.c).
 */
export const GuestPending = {
  /** Nothing to complete. */
  None: 0,
  /** A port read (`IN`): load AL/AX/EAX from the exit's data, then skip the instruction (`complete_fast_pio_in`). */
  PioIn: 1,
  /** A port write (`OUT`): skip the instruction (`complete_fast_pio_out`). */
  PioOut: 2,
  /** An MMIO read: cache the data and re-execute the instruction (`complete_emulated_mmio`). */
  MmioRead: 3,
} as const;

/** One of the {@link GuestPending} values. */
export type GuestPendingKind = (typeof GuestPending)[keyof typeof GuestPending];

/** The segment registers, in the order of their `mov sreg` encoding (ES CS SS DS FS GS; SDM Vol. 2A §3.1.1.3). */
export const GUEST_SEGMENTS = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;

/** One of the {@link GUEST_SEGMENTS}. */
export type GuestSegmentName = (typeof GUEST_SEGMENTS)[number];

/**
 * The descriptor attributes of a segment register, one byte each, in `struct kvm_segment` order. The state
 * packs them three to a field: attribute `i` is byte `i % 3` of field `<seg>Attrs<⌊i / 3⌋>`.
 */
const SEGMENT_ATTRIBUTES = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;

type SegmentField = `${GuestSegmentName}${'Base' | 'Selector' | 'Limit' | 'Attrs0' | 'Attrs1' | 'Attrs2'}`;

/** The field names of one segment register in {@link GuestCpuState}. */
interface SegmentFields {
  readonly base: SegmentField;
  readonly selector: SegmentField;
  readonly limit: SegmentField;
  readonly attrs: readonly [SegmentField, SegmentField, SegmentField];
}

function segmentFields(n: GuestSegmentName): SegmentFields {
  return { base: `${n}Base`, selector: `${n}Selector`, limit: `${n}Limit`, attrs: [`${n}Attrs0`, `${n}Attrs1`, `${n}Attrs2`] };
}

const SEGMENT_FIELDS: Readonly<Record<GuestSegmentName, SegmentFields>> = {
  es: segmentFields('es'),
  cs: segmentFields('cs'),
  ss: segmentFields('ss'),
  ds: segmentFields('ds'),
  fs: segmentFields('fs'),
  gs: segmentFields('gs'),
};

/** Every segment field of {@link GuestCpuState} (for copying). */
const ALL_SEGMENT_FIELDS: readonly SegmentField[] = GUEST_SEGMENTS.flatMap((n) => {
  const f = SEGMENT_FIELDS[n];
  return [f.base, f.selector, f.limit, ...f.attrs];
});

/**
 * One segment register: the visible selector plus the hidden descriptor cache, with the same fields as
 * `struct kvm_segment`. In real mode the interpreter only uses `base` (linear = base + offset); a real-mode
 * `mov sreg` sets `selector` and `base = selector << 4` and leaves limit and attributes alone, exactly as the
 * processor does (SDM Vol. 3A §20.1.1, "Address Translation in Real-Address Mode").
 *
 * A live view of fields of its {@link GuestCpuState} (`state.cs`, `state.ds`, …): the state keeps a segment
 * register as plain number fields (`csBase`, `csSelector`, …), so a vCPU does not carry six more objects.
 * Reads and writes go straight to the state. The attributes (`type` … `unusable`) are bytes, as in
 * `struct kvm_segment`: a write keeps the low 8 bits.
 */
export class SegmentRegister {
  readonly #state: GuestCpuState;
  readonly #f: SegmentFields;

  /**
   * A view of segment register `name` of `state` (what `state.cs` … `state.gs` return).
   * @param state - the register file
   * @param name - which segment register
   */
  constructor(state: GuestCpuState, name: GuestSegmentName) {
    this.#state = state;
    this.#f = SEGMENT_FIELDS[name];
  }

  /** Segment base address (`kvm_segment.base`). */
  get base(): number {
    return this.#state[this.#f.base];
  }
  set base(v: number) {
    this.#state[this.#f.base] = v;
  }
  /** Segment limit (`kvm_segment.limit`); kept for `KVM_GET_SREGS`, not enforced by the interpreter. */
  get limit(): number {
    return this.#state[this.#f.limit];
  }
  set limit(v: number) {
    this.#state[this.#f.limit] = v;
  }
  /** Visible selector (`kvm_segment.selector`). */
  get selector(): number {
    return this.#state[this.#f.selector];
  }
  set selector(v: number) {
    this.#state[this.#f.selector] = v;
  }
  /** Descriptor type (`kvm_segment.type`); 3 = read/write accessed data, 0xb = execute/read accessed code. */
  get type(): number {
    return this.#attr(0);
  }
  set type(v: number) {
    this.#setAttr(0, v);
  }
  /** Present bit (`kvm_segment.present`). */
  get present(): number {
    return this.#attr(1);
  }
  set present(v: number) {
    this.#setAttr(1, v);
  }
  /** Descriptor privilege level (`kvm_segment.dpl`). */
  get dpl(): number {
    return this.#attr(2);
  }
  set dpl(v: number) {
    this.#setAttr(2, v);
  }
  /** Default operand size bit D/B (`kvm_segment.db`); the interpreter always executes 16-bit code. */
  get db(): number {
    return this.#attr(3);
  }
  set db(v: number) {
    this.#setAttr(3, v);
  }
  /** Code/data (1) or system (0) descriptor (`kvm_segment.s`). */
  get s(): number {
    return this.#attr(4);
  }
  set s(v: number) {
    this.#setAttr(4, v);
  }
  /** 64-bit code segment bit (`kvm_segment.l`). */
  get l(): number {
    return this.#attr(5);
  }
  set l(v: number) {
    this.#setAttr(5, v);
  }
  /** Granularity bit (`kvm_segment.g`). */
  get g(): number {
    return this.#attr(6);
  }
  set g(v: number) {
    this.#setAttr(6, v);
  }
  /** Available-for-software bit (`kvm_segment.avl`). */
  get avl(): number {
    return this.#attr(7);
  }
  set avl(v: number) {
    this.#setAttr(7, v);
  }
  /** VMX "unusable" marker (`kvm_segment.unusable`). */
  get unusable(): number {
    return this.#attr(8);
  }
  set unusable(v: number) {
    this.#setAttr(8, v);
  }

  /** Loads a selector the way a real-mode `mov sreg`/far transfer does: base = selector × 16. */
  loadRealMode(selector: number): void {
    this.selector = selector & 0xffff;
    this.base = (selector & 0xffff) << 4;
  }

  /** Copies every field from `other` into this register. */
  copyFrom(other: SegmentRegister): void {
    this.base = other.base;
    this.limit = other.limit;
    this.selector = other.selector;
    for (const a of SEGMENT_ATTRIBUTES) this[a] = other[a];
  }

  #attr(i: number): number {
    return (this.#state[this.#f.attrs[(i / 3) | 0] as SegmentField] >>> ((i % 3) * 8)) & 0xff;
  }

  #setAttr(i: number, v: number): void {
    const field = this.#f.attrs[(i / 3) | 0] as SegmentField;
    const shift = (i % 3) * 8;
    const st = this.#state;
    st[field] = (st[field] & ~(0xff << shift)) | ((v & 0xff) << shift);
  }
}

/** Packed attributes of a reset data segment: type 3 (read/write, accessed), present. */
const RESET_ATTRS0 = 3 | (1 << 8);
/** Packed attributes of the reset CS: type 0xb (execute/read, accessed), present. */
const RESET_CS_ATTRS0 = 0xb | (1 << 8);
/** Packed attributes db = 0, s = 1 (code/data), l = 0. */
const RESET_ATTRS1 = 1 << 8;

/**
 * The guest CPU state. A fresh instance is in the state KVM gives a new vCPU (`kvm_vcpu_reset()` plus the
 * vendor reset, SDM Vol. 3A §10.1.1 Table 10-1): real mode, CS selector 0xf000 with base 0xffff0000, RIP
 * 0xfff0, RFLAGS 0x2, RDX 0x600 (KVM's value when no CPUID leaf 1 is set), all other GPRs 0, the IVT at
 * linear 0 with limit 0x3ff.
 */
export class GuestCpuState {
  /** RAX (accumulator; AL/AH/AX/EAX are views of it). */
  rax = 0;
  /** RBX. */
  rbx = 0;
  /** RCX (count register for LOOP and REP). */
  rcx = 0;
  /** RDX (port number for `in`/`out` through DX). */
  rdx = 0x600;
  /** RSI (string source index). */
  rsi = 0;
  /** RDI (string destination index). */
  rdi = 0;
  /** RSP (stack pointer; SP is its low 16 bits). */
  rsp = 0;
  /** RBP (frame pointer; `[bp…]` operands default to SS). */
  rbp = 0;
  /** R8 (not reachable from 16-bit code; kept for `struct kvm_regs`). */
  r8 = 0;
  /** R9. */
  r9 = 0;
  /** R10. */
  r10 = 0;
  /** R11. */
  r11 = 0;
  /** R12. */
  r12 = 0;
  /** R13. */
  r13 = 0;
  /** R14. */
  r14 = 0;
  /** R15. */
  r15 = 0;
  /** Instruction pointer: offset of the next instruction within CS. */
  rip = 0xfff0;
  /** RFLAGS; bit 1 is always set. */
  rflags = X86_EFLAGS_FIXED;

  /** ES (string destinations) base (the hidden part; linear = base + offset). */
  esBase = 0;
  /** ES selector. */
  esSelector = 0;
  /** @internal ES limit (see {@link SegmentRegister}). */
  esLimit = 0xffff;
  /** @internal ES type, present, dpl (bytes 0–2). */
  esAttrs0 = RESET_ATTRS0;
  /** @internal ES db, s, l. */
  esAttrs1 = RESET_ATTRS1;
  /** @internal ES g, avl, unusable. */
  esAttrs2 = 0;
  /** CS base (the hidden part; linear = base + offset). */
  csBase = 0xffff0000;
  /** CS selector. */
  csSelector = 0xf000;
  /** @internal CS limit (see {@link SegmentRegister}). */
  csLimit = 0xffff;
  /** @internal CS type, present, dpl (bytes 0–2). */
  csAttrs0 = RESET_CS_ATTRS0;
  /** @internal CS db, s, l. */
  csAttrs1 = RESET_ATTRS1;
  /** @internal CS g, avl, unusable. */
  csAttrs2 = 0;
  /** SS (pushes, pops and `[bp…]` operands) base (the hidden part; linear = base + offset). */
  ssBase = 0;
  /** SS selector. */
  ssSelector = 0;
  /** @internal SS limit (see {@link SegmentRegister}). */
  ssLimit = 0xffff;
  /** @internal SS type, present, dpl (bytes 0–2). */
  ssAttrs0 = RESET_ATTRS0;
  /** @internal SS db, s, l. */
  ssAttrs1 = RESET_ATTRS1;
  /** @internal SS g, avl, unusable. */
  ssAttrs2 = 0;
  /** DS (default for memory operands) base (the hidden part; linear = base + offset). */
  dsBase = 0;
  /** DS selector. */
  dsSelector = 0;
  /** @internal DS limit (see {@link SegmentRegister}). */
  dsLimit = 0xffff;
  /** @internal DS type, present, dpl (bytes 0–2). */
  dsAttrs0 = RESET_ATTRS0;
  /** @internal DS db, s, l. */
  dsAttrs1 = RESET_ATTRS1;
  /** @internal DS g, avl, unusable. */
  dsAttrs2 = 0;
  /** FS base (the hidden part; linear = base + offset). */
  fsBase = 0;
  /** FS selector. */
  fsSelector = 0;
  /** @internal FS limit (see {@link SegmentRegister}). */
  fsLimit = 0xffff;
  /** @internal FS type, present, dpl (bytes 0–2). */
  fsAttrs0 = RESET_ATTRS0;
  /** @internal FS db, s, l. */
  fsAttrs1 = RESET_ATTRS1;
  /** @internal FS g, avl, unusable. */
  fsAttrs2 = 0;
  /** GS base (the hidden part; linear = base + offset). */
  gsBase = 0;
  /** GS selector. */
  gsSelector = 0;
  /** @internal GS limit (see {@link SegmentRegister}). */
  gsLimit = 0xffff;
  /** @internal GS type, present, dpl (bytes 0–2). */
  gsAttrs0 = RESET_ATTRS0;
  /** @internal GS db, s, l. */
  gsAttrs1 = RESET_ATTRS1;
  /** @internal GS g, avl, unusable. */
  gsAttrs2 = 0;

  /** IDTR base; in real mode the interrupt vector table (`kvm_sregs.idt.base`). */
  idtBase = 0;
  /** IDTR limit (`kvm_sregs.idt.limit`); a vector whose entry lies beyond it shuts the vCPU down. */
  idtLimit = 0x3ff;

  /** Which completion the next run owes the last exit (a {@link GuestPending} value). */
  pending: GuestPendingKind = GuestPending.None;
  /** Access size in bytes of the pending PIO or MMIO read. */
  pendingSize = 0;
  /** RIP just past the instruction that exited; the completion skips to it. */
  pendingNextRip = 0;
  /** Linear RIP (CS base + RIP) at the exit, KVM's `cui_linear_rip`; completion is dropped if RIP moved. */
  pendingLinearRip = 0;
  /** Guest-physical address of the pending MMIO read. */
  pendingGpa = 0;

  /** Number of valid MMIO read-cache entries (0–2), KVM's `ctxt->mem_read` during re-execution. */
  mmioCacheCount = 0;
  /** Address of MMIO read-cache entry 0. */
  mmioCacheGpa0 = 0;
  /** Size of MMIO read-cache entry 0. */
  mmioCacheLen0 = 0;
  /** Value (little-endian, zero-extended) of MMIO read-cache entry 0. */
  mmioCacheValue0 = 0;
  /** Address of MMIO read-cache entry 1. */
  mmioCacheGpa1 = 0;
  /** Size of MMIO read-cache entry 1. */
  mmioCacheLen1 = 0;
  /** Value of MMIO read-cache entry 1. */
  mmioCacheValue1 = 0;

  /** Code segment (a live view of the `cs…` fields). */
  get cs(): SegmentRegister {
    return new SegmentRegister(this, 'cs');
  }
  /** Data segment (default for memory operands). */
  get ds(): SegmentRegister {
    return new SegmentRegister(this, 'ds');
  }
  /** Extra segment (string destinations). */
  get es(): SegmentRegister {
    return new SegmentRegister(this, 'es');
  }
  /** Stack segment (pushes, pops and `[bp…]` operands). */
  get ss(): SegmentRegister {
    return new SegmentRegister(this, 'ss');
  }
  /** FS. */
  get fs(): SegmentRegister {
    return new SegmentRegister(this, 'fs');
  }
  /** GS. */
  get gs(): SegmentRegister {
    return new SegmentRegister(this, 'gs');
  }

  /** Segment register `name` (a live view, as {@link GuestCpuState.cs}). */
  segment(name: GuestSegmentName): SegmentRegister {
    return new SegmentRegister(this, name);
  }

  /** Copies the general-purpose registers, RIP and RFLAGS (the contents of `struct kvm_regs`) from `other`. */
  copyRegsFrom(other: GuestCpuState): void {
    this.rax = other.rax;
    this.rbx = other.rbx;
    this.rcx = other.rcx;
    this.rdx = other.rdx;
    this.rsi = other.rsi;
    this.rdi = other.rdi;
    this.rsp = other.rsp;
    this.rbp = other.rbp;
    this.r8 = other.r8;
    this.r9 = other.r9;
    this.r10 = other.r10;
    this.r11 = other.r11;
    this.r12 = other.r12;
    this.r13 = other.r13;
    this.r14 = other.r14;
    this.r15 = other.r15;
    this.rip = other.rip;
    this.rflags = other.rflags | X86_EFLAGS_FIXED;
  }

  /** Copies the segment registers and IDTR (the parts of `struct kvm_sregs` the interpreter uses) from `other`. */
  copySregsFrom(other: GuestCpuState): void {
    for (const f of ALL_SEGMENT_FIELDS) this[f] = other[f];
    this.idtBase = other.idtBase;
    this.idtLimit = other.idtLimit;
  }

  /** Copies everything, including a pending completion and the MMIO read cache, from `other`. */
  copyFrom(other: GuestCpuState): void {
    this.copyRegsFrom(other);
    this.copySregsFrom(other);
    this.pending = other.pending;
    this.pendingSize = other.pendingSize;
    this.pendingNextRip = other.pendingNextRip;
    this.pendingLinearRip = other.pendingLinearRip;
    this.pendingGpa = other.pendingGpa;
    this.mmioCacheCount = other.mmioCacheCount;
    this.mmioCacheGpa0 = other.mmioCacheGpa0;
    this.mmioCacheLen0 = other.mmioCacheLen0;
    this.mmioCacheValue0 = other.mmioCacheValue0;
    this.mmioCacheGpa1 = other.mmioCacheGpa1;
    this.mmioCacheLen1 = other.mmioCacheLen1;
    this.mmioCacheValue1 = other.mmioCacheValue1;
  }

  /** Returns an independent copy of this state. */
  clone(): GuestCpuState {
    const copy = new GuestCpuState();
    copy.copyFrom(this);
    return copy;
  }
}
