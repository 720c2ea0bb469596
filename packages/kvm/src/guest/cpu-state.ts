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
 * are one object rather than seven. Every 64-bit value (general-purpose registers, RIP, RFLAGS, segment
 * and descriptor-table bases, control registers) is held exactly: as two 32-bit halves, or as a bigint where
 * the interpreter rarely reads it (CR2, CR3). 16-bit operations change only the low 16 bits of a register,
 * 8-bit operations only the addressed byte (AL…BL or AH…BH); a 32-bit write zero-extends into the whole
 * register, as KVM's `kvm_register_write()` does when the guest is not in 64-bit mode.
 *
 * @module
 */
import { UsageError } from '@vac/core';

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
  /**
   * A string port read (`ins`, `rep ins`): store the exit's `count` elements at ES:DI, advance DI (and CX),
   * then skip the instruction or, with CX still non-zero, restart it (`complete_emulated_pio`).
   */
  PioInString: 4,
} as const;

/** One of the {@link GuestPending} values. */
export type GuestPendingKind = (typeof GuestPending)[keyof typeof GuestPending];

/** The segment registers, in the order of their `mov sreg` encoding (ES CS SS DS FS GS; SDM Vol. 2A §3.1.1.3). */
export const GUEST_SEGMENTS = ['es', 'cs', 'ss', 'ds', 'fs', 'gs'] as const;

/** One of the {@link GUEST_SEGMENTS}. */
export type GuestSegmentName = (typeof GUEST_SEGMENTS)[number];

/** The system segment registers: LDTR (`kvm_sregs.ldt`, loaded by `lldt`) and TR (`kvm_sregs.tr`, loaded by `ltr`). */
export const GUEST_SYSTEM_SEGMENTS = ['ldt', 'tr'] as const;

/** A segment register of {@link GUEST_SEGMENTS} or {@link GUEST_SYSTEM_SEGMENTS}. */
export type GuestAnySegmentName = GuestSegmentName | (typeof GUEST_SYSTEM_SEGMENTS)[number];

/**
 * The descriptor attributes of a segment register, one byte each, in `struct kvm_segment` order. The state
 * packs them three to a field: attribute `i` is byte `i % 3` of field `<seg>Attrs<⌊i / 3⌋>`.
 */
const SEGMENT_ATTRIBUTES = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;

type SegmentField = `${GuestAnySegmentName}${'Base' | 'BaseHigh' | 'Selector' | 'Limit' | 'Attrs0' | 'Attrs1' | 'Attrs2'}`;

/** The field names of one segment register in {@link GuestCpuState}. */
interface SegmentFields {
  readonly base: SegmentField;
  readonly baseHigh: SegmentField;
  readonly selector: SegmentField;
  readonly limit: SegmentField;
  readonly attrs: readonly [SegmentField, SegmentField, SegmentField];
}

function segmentFields(n: GuestAnySegmentName): SegmentFields {
  return { base: `${n}Base`, baseHigh: `${n}BaseHigh`, selector: `${n}Selector`, limit: `${n}Limit`, attrs: [`${n}Attrs0`, `${n}Attrs1`, `${n}Attrs2`] };
}

const SEGMENT_FIELDS: Readonly<Record<GuestAnySegmentName, SegmentFields>> = {
  ldt: segmentFields('ldt'),
  tr: segmentFields('tr'),
  es: segmentFields('es'),
  cs: segmentFields('cs'),
  ss: segmentFields('ss'),
  ds: segmentFields('ds'),
  fs: segmentFields('fs'),
  gs: segmentFields('gs'),
};

/** Every segment field of {@link GuestCpuState} (for copying). */
const ALL_SEGMENT_FIELDS: readonly SegmentField[] = [...GUEST_SEGMENTS, ...GUEST_SYSTEM_SEGMENTS].flatMap((n) => {
  const f = SEGMENT_FIELDS[n];
  return [f.base, f.baseHigh, f.selector, f.limit, ...f.attrs];
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
  constructor(state: GuestCpuState, name: GuestAnySegmentName) {
    this.#state = state;
    this.#f = SEGMENT_FIELDS[name];
  }

  /**
   * Segment base address (`kvm_segment.base`) as a number: exact below 2^53, else a `UsageError` (use
   * {@link SegmentRegister.base64}). Real-mode addressing uses its low 32 bits.
   */
  get base(): number {
    return exactNumber(this.#state[this.#f.base], this.#state[this.#f.baseHigh], 'segment base');
  }
  set base(v: number) {
    const n = checkedNumber(v, 'segment base');
    this.#state[this.#f.base] = n % TWO_32;
    this.#state[this.#f.baseHigh] = Math.floor(n / TWO_32);
  }
  /** The whole 64-bit segment base, exactly. */
  get base64(): bigint {
    return (BigInt(this.#state[this.#f.baseHigh]) << 32n) | BigInt(this.#state[this.#f.base]);
  }
  set base64(v: bigint) {
    const u = BigInt.asUintN(64, v);
    this.#state[this.#f.base] = Number(u & 0xffff_ffffn);
    this.#state[this.#f.baseHigh] = Number(u >> 32n);
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
    this.base64 = other.base64;
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

const TWO_32 = 0x1_0000_0000;

/**
 * The 64-bit value `hi:lo` as a number, when it is exact (below 2^53); otherwise a `UsageError` naming
 * `what` (read it with {@link GuestCpuState.get64} instead).
 */
function exactNumber(lo: number, hi: number, what: string): number {
  if (hi >= 0x20_0000) {
    throw new UsageError('ERR_OUT_OF_RANGE', `${what} is 0x${((BigInt(hi) << 32n) | BigInt(lo)).toString(16)}, above 2^53: read it as a bigint (GuestCpuState.get64)`);
  }
  return hi * TWO_32 + lo;
}

/** Splits a number written through a 64-bit accessor; it must be a safe non-negative integer. */
function checkedNumber(v: number, what: string): number {
  if (!Number.isSafeInteger(v) || v < 0) {
    throw new UsageError('ERR_OUT_OF_RANGE', `${what}: ${String(v)} is not an integer in [0, 2^53): write it as a bigint (GuestCpuState.set64)`);
  }
  return v;
}

/** The names of the 64-bit registers of `struct kvm_regs`, in its C order. */
export const GUEST_REGS64 = [
  'rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp',
  'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15', 'rip', 'rflags',
] as const;

/** One of the {@link GUEST_REGS64}. */
export type GuestReg64 = (typeof GUEST_REGS64)[number];

/** The field holding the low 32 bits, and the one holding the high 32 bits, of each 64-bit register. */
const REG64_FIELDS: Readonly<Record<GuestReg64, readonly [LowField, HighField]>> = {
  rax: ['eax', 'raxHigh'], rbx: ['ebx', 'rbxHigh'], rcx: ['ecx', 'rcxHigh'], rdx: ['edx', 'rdxHigh'],
  rsi: ['esi', 'rsiHigh'], rdi: ['edi', 'rdiHigh'], rsp: ['esp', 'rspHigh'], rbp: ['ebp', 'rbpHigh'],
  r8: ['r8d', 'r8High'], r9: ['r9d', 'r9High'], r10: ['r10d', 'r10High'], r11: ['r11d', 'r11High'],
  r12: ['r12d', 'r12High'], r13: ['r13d', 'r13High'], r14: ['r14d', 'r14High'], r15: ['r15d', 'r15High'],
  rip: ['eip', 'ripHigh'], rflags: ['eflags', 'rflagsHigh'],
};

type LowField =
  | 'eax' | 'ebx' | 'ecx' | 'edx' | 'esi' | 'edi' | 'esp' | 'ebp'
  | 'r8d' | 'r9d' | 'r10d' | 'r11d' | 'r12d' | 'r13d' | 'r14d' | 'r15d' | 'eip' | 'eflags';
type HighField = `${GuestReg64}High`;

/**
 * `KVM_X86_SHADOW_INT_MOV_SS` (`<asm/kvm.h>`): the instruction just executed loaded SS (`mov ss`, `pop ss`), so
 * interrupts (and debug traps) are held until the next instruction completes (SDM Vol. 3A §6.8.3).
 */
export const GUEST_SHADOW_MOV_SS = 1;
/**
 * `KVM_X86_SHADOW_INT_STI`: the instruction just executed was an `sti` that set IF, so maskable interrupts are
 * held until the next instruction completes (SDM Vol. 2B, STI).
 */
export const GUEST_SHADOW_STI = 2;

/**
 * The guest CPU state. A fresh instance is in the state KVM gives a new vCPU (`kvm_vcpu_reset()` plus the
 * vendor reset, SDM Vol. 3A §10.1.1 Table 10-1): real mode, CS selector 0xf000 with base 0xffff0000, RIP
 * 0xfff0, RFLAGS 0x2, RDX 0x600 (KVM's value when no CPUID leaf 1 is set), all other GPRs 0, the IVT at
 * linear 0 with limit 0xffff (as `vmx_vcpu_reset` and `init_vmcb` set it), GDTR limit 0xffff, CR0 0x60000010,
 * the x87 control word 0x37f.
 *
 * **64-bit registers are exact.** Each register of `struct kvm_regs` is two 32-bit fields, the low half
 * (`eax`, `ecx`, …, `r8d` … `r15d`, `eip`, `eflags`: unsigned, `[0, 2^32)`) and the high half (`raxHigh`,
 * …, `ripHigh`, `rflagsHigh`), so `KVM_SET_REGS` → `KVM_GET_REGS` gives back every bit. {@link get64} and
 * {@link set64} read and write a whole register as a bigint; the number accessors `rax` … `r15`, `rip`,
 * `rflags` are for values below 2^53 and throw `UsageError` (`ERR_OUT_OF_RANGE`) rather than round.
 * Real-mode execution keeps the hardware's rules: 8- and 16-bit writes change only their bits, a 32-bit
 * write zero-extends into the whole register (KVM's `kvm_register_write()` outside 64-bit mode, and what
 * Linux's emulator does: checked on a real /dev/kvm, `test/guest/fixtures/`).
 */
export class GuestCpuState {
  /** EAX: the low 32 bits of RAX (AL/AH/AX are parts of it). */
  eax = 0;
  /** ECX: the low 32 bits of RCX (the count register of LOOP, REP and shifts by CL). */
  ecx = 0;
  /** EDX: the low 32 bits of RDX (the port of `in`/`out` through DX). */
  edx = 0x600;
  /** EBX. */
  ebx = 0;
  /** ESP: the low 32 bits of RSP (SP is its low 16 bits). */
  esp = 0;
  /** EBP (`[bp…]` operands default to SS). */
  ebp = 0;
  /** ESI (string source index). */
  esi = 0;
  /** EDI (string destination index). */
  edi = 0;
  /** R8D: the low 32 bits of R8 (not reachable from real-mode code; kept for `struct kvm_regs`). */
  r8d = 0;
  /** R9D. */
  r9d = 0;
  /** R10D. */
  r10d = 0;
  /** R11D. */
  r11d = 0;
  /** R12D. */
  r12d = 0;
  /** R13D. */
  r13d = 0;
  /** R14D. */
  r14d = 0;
  /** R15D. */
  r15d = 0;
  /** EIP: the low 32 bits of RIP, the offset of the next instruction within CS. */
  eip = 0xfff0;
  /** EFLAGS: the low 32 bits of RFLAGS; bit 1 is always set. */
  eflags = X86_EFLAGS_FIXED;

  /** Bits 63:32 of RAX. */
  raxHigh = 0;
  /** Bits 63:32 of RCX. */
  rcxHigh = 0;
  /** Bits 63:32 of RDX. */
  rdxHigh = 0;
  /** Bits 63:32 of RBX. */
  rbxHigh = 0;
  /** Bits 63:32 of RSP. */
  rspHigh = 0;
  /** Bits 63:32 of RBP. */
  rbpHigh = 0;
  /** Bits 63:32 of RSI. */
  rsiHigh = 0;
  /** Bits 63:32 of RDI. */
  rdiHigh = 0;
  /** Bits 63:32 of R8. */
  r8High = 0;
  /** Bits 63:32 of R9. */
  r9High = 0;
  /** Bits 63:32 of R10. */
  r10High = 0;
  /** Bits 63:32 of R11. */
  r11High = 0;
  /** Bits 63:32 of R12. */
  r12High = 0;
  /** Bits 63:32 of R13. */
  r13High = 0;
  /** Bits 63:32 of R14. */
  r14High = 0;
  /** Bits 63:32 of R15. */
  r15High = 0;
  /** Bits 63:32 of RIP (non-zero puts RIP past any real-mode CS limit: the next fetch raises #GP). */
  ripHigh = 0;
  /** Bits 63:32 of RFLAGS (reserved; kept as `KVM_SET_REGS` wrote them, as Linux keeps them). */
  rflagsHigh = 0;

  /** ES (string destinations) base (the hidden part; linear = base + offset). */
  esBase = 0;
  /** Bits 63:32 of the ES base (`kvm_segment.base`); not used for addressing outside 64-bit mode. */
  esBaseHigh = 0;
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
  /** Bits 63:32 of the CS base (`kvm_segment.base`); not used for addressing outside 64-bit mode. */
  csBaseHigh = 0;
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
  /** Bits 63:32 of the SS base (`kvm_segment.base`); not used for addressing outside 64-bit mode. */
  ssBaseHigh = 0;
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
  /** Bits 63:32 of the DS base (`kvm_segment.base`); not used for addressing outside 64-bit mode. */
  dsBaseHigh = 0;
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
  /** Bits 63:32 of the FS base (`kvm_segment.base`); not used for addressing outside 64-bit mode. */
  fsBaseHigh = 0;
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
  /** Bits 63:32 of the GS base (`kvm_segment.base`); not used for addressing outside 64-bit mode. */
  gsBaseHigh = 0;
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

  /** LDTR base, low 32 bits (`kvm_sregs.ldt.base`). */
  ldtBase = 0;
  /** Bits 63:32 of the LDTR base. */
  ldtBaseHigh = 0;
  /** LDTR selector. */
  ldtSelector = 0;
  /** LDTR limit. */
  ldtLimit = 0xffff;
  /** LDTR attributes type, present, dpl (one byte each; see {@link SegmentRegister}): type 2, present. */
  ldtAttrs0 = 2 | (1 << 8);
  /** LDTR attributes db, s, l: a system segment (s = 0). */
  ldtAttrs1 = 0;
  /** LDTR attributes g, avl, unusable. */
  ldtAttrs2 = 0;
  /** TR base, low 32 bits (`kvm_sregs.tr.base`). */
  trBase = 0;
  /** Bits 63:32 of the TR base. */
  trBaseHigh = 0;
  /** TR selector. */
  trSelector = 0;
  /** TR limit. */
  trLimit = 0xffff;
  /** TR attributes type, present, dpl (one byte each; see {@link SegmentRegister}): type 11, present. */
  trAttrs0 = 11 | (1 << 8);
  /** TR attributes db, s, l: a system segment (s = 0). */
  trAttrs1 = 0;
  /** TR attributes g, avl, unusable. */
  trAttrs2 = 0;

  /** IDTR base, low 32 bits; in real mode the interrupt vector table (`kvm_sregs.idt.base`). */
  idtBase = 0;
  /** Bits 63:32 of the IDTR base. */
  idtBaseHigh = 0;
  /** IDTR limit (`kvm_sregs.idt.limit`); a vector whose IVT entry lies beyond it raises #GP. */
  idtLimit = 0xffff;
  /** GDTR base, low 32 bits (`kvm_sregs.gdt.base`; loaded by `lgdt`, stored by `sgdt`). */
  gdtBase = 0;
  /** Bits 63:32 of the GDTR base. */
  gdtBaseHigh = 0;
  /** GDTR limit. */
  gdtLimit = 0xffff;

  /** CR0 (`kvm_sregs.cr0`): PE, MP, EM, TS, ET, NE, WP, AM, NW, CD, PG. Reset 0x60000010 (CD, NW, ET). */
  get cr0(): bigint {
    return this.#cr0;
  }
  set cr0(v: bigint) {
    this.#cr0 = v;
    // A value that is not a BigInt (a bug the invariant checker, vm-check.ts, is there to find) is kept as it is.
    this.cr0Low = typeof v === 'bigint' ? Number(v & 0xffff_ffffn) : 0;
  }
  #cr0 = 0x6000_0010n;
  /**
   * Bits 31:0 of {@link GuestCpuState.cr0} (PE, …, PG) as a number, kept by its setter (read it, do not write it):
   * every run reads the mode from CR0, and a BigInt `&` (an allocation) or even a BigInt comparison (a builtin call)
   * there cost ~7 ns a run. A plain field, so that comparing two states (`toEqual`) still sees CR0's defined bits.
   */
  cr0Low = 0x6000_0010;
  /** CR2 (`kvm_sregs.cr2`), the page-fault linear address: 64 bits, written by `mov cr2`. */
  cr2 = 0n;
  /** CR3 (`kvm_sregs.cr3`): 64 bits. */
  cr3 = 0n;
  /** CR4 (`kvm_sregs.cr4`). */
  cr4 = 0n;

  /**
   * The interrupt shadow (`kvm_vcpu_events.interrupt.shadow`): {@link GUEST_SHADOW_STI} or
   * {@link GUEST_SHADOW_MOV_SS} right after such an instruction, until the next one completes; else 0.
   */
  interruptShadow = 0;
  /** The vCPU executed `hlt` and waits for an interrupt (cleared when one is delivered). */
  halted = false;

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
  /** Port of the pending string input (`ins`), whose data the next run stores to ES:DI. */
  pendingPort = 0;
  /** Number of elements of the pending string input (`kvm_run.io.count`). */
  pendingCount = 0;
  /** The pending string input's prefixes: 1 = 32-bit addressing (0x67), 2 = REP. */
  pendingStringFlags = 0;

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
  /** LDTR (loaded by `lldt`; `kvm_sregs.ldt`). */
  get ldt(): SegmentRegister {
    return new SegmentRegister(this, 'ldt');
  }
  /** TR (loaded by `ltr`; `kvm_sregs.tr`). */
  get tr(): SegmentRegister {
    return new SegmentRegister(this, 'tr');
  }

  /** Segment register `name` (a live view, as {@link GuestCpuState.cs}). */
  segment(name: GuestAnySegmentName): SegmentRegister {
    return new SegmentRegister(this, name);
  }

  /** RAX as a number (exact below 2^53, else `UsageError`; see {@link GuestCpuState.get64}). */
  get rax(): number { return exactNumber(this.eax, this.raxHigh, 'rax'); }
  set rax(v: number) { this.#setNumber('rax', v); }
  /** RBX as a number. */
  get rbx(): number { return exactNumber(this.ebx, this.rbxHigh, 'rbx'); }
  set rbx(v: number) { this.#setNumber('rbx', v); }
  /** RCX as a number. */
  get rcx(): number { return exactNumber(this.ecx, this.rcxHigh, 'rcx'); }
  set rcx(v: number) { this.#setNumber('rcx', v); }
  /** RDX as a number. */
  get rdx(): number { return exactNumber(this.edx, this.rdxHigh, 'rdx'); }
  set rdx(v: number) { this.#setNumber('rdx', v); }
  /** RSI as a number. */
  get rsi(): number { return exactNumber(this.esi, this.rsiHigh, 'rsi'); }
  set rsi(v: number) { this.#setNumber('rsi', v); }
  /** RDI as a number. */
  get rdi(): number { return exactNumber(this.edi, this.rdiHigh, 'rdi'); }
  set rdi(v: number) { this.#setNumber('rdi', v); }
  /** RSP as a number. */
  get rsp(): number { return exactNumber(this.esp, this.rspHigh, 'rsp'); }
  set rsp(v: number) { this.#setNumber('rsp', v); }
  /** RBP as a number. */
  get rbp(): number { return exactNumber(this.ebp, this.rbpHigh, 'rbp'); }
  set rbp(v: number) { this.#setNumber('rbp', v); }
  /** R8 as a number. */
  get r8(): number { return exactNumber(this.r8d, this.r8High, 'r8'); }
  set r8(v: number) { this.#setNumber('r8', v); }
  /** R9 as a number. */
  get r9(): number { return exactNumber(this.r9d, this.r9High, 'r9'); }
  set r9(v: number) { this.#setNumber('r9', v); }
  /** R10 as a number. */
  get r10(): number { return exactNumber(this.r10d, this.r10High, 'r10'); }
  set r10(v: number) { this.#setNumber('r10', v); }
  /** R11 as a number. */
  get r11(): number { return exactNumber(this.r11d, this.r11High, 'r11'); }
  set r11(v: number) { this.#setNumber('r11', v); }
  /** R12 as a number. */
  get r12(): number { return exactNumber(this.r12d, this.r12High, 'r12'); }
  set r12(v: number) { this.#setNumber('r12', v); }
  /** R13 as a number. */
  get r13(): number { return exactNumber(this.r13d, this.r13High, 'r13'); }
  set r13(v: number) { this.#setNumber('r13', v); }
  /** R14 as a number. */
  get r14(): number { return exactNumber(this.r14d, this.r14High, 'r14'); }
  set r14(v: number) { this.#setNumber('r14', v); }
  /** R15 as a number. */
  get r15(): number { return exactNumber(this.r15d, this.r15High, 'r15'); }
  set r15(v: number) { this.#setNumber('r15', v); }
  /** RIP as a number. */
  get rip(): number { return exactNumber(this.eip, this.ripHigh, 'rip'); }
  set rip(v: number) { this.#setNumber('rip', v); }
  /** RFLAGS as a number (bit 1 is not forced here; `KVM_SET_REGS` sets it). */
  get rflags(): number { return exactNumber(this.eflags, this.rflagsHigh, 'rflags'); }
  set rflags(v: number) { this.#setNumber('rflags', v); }

  #setNumber(name: GuestReg64, v: number): void {
    const n = checkedNumber(v, name);
    const [lo, hi] = REG64_FIELDS[name];
    this[lo] = n % TWO_32;
    this[hi] = Math.floor(n / TWO_32);
  }

  /** Register `name` of `struct kvm_regs`, all 64 bits. */
  get64(name: GuestReg64): bigint {
    const [lo, hi] = REG64_FIELDS[name];
    return (BigInt(this[hi]) << 32n) | BigInt(this[lo]);
  }

  /** Sets register `name` to `v` modulo 2^64 (every bit kept: `KVM_SET_REGS`). */
  set64(name: GuestReg64, v: bigint): void {
    const [lo, hi] = REG64_FIELDS[name];
    const u = BigInt.asUintN(64, v);
    this[lo] = Number(u & 0xffff_ffffn);
    this[hi] = Number(u >> 32n);
  }

  /** The IDTR base, all 64 bits. */
  get idtBase64(): bigint {
    return (BigInt(this.idtBaseHigh) << 32n) | BigInt(this.idtBase);
  }
  set idtBase64(v: bigint) {
    const u = BigInt.asUintN(64, v);
    this.idtBase = Number(u & 0xffff_ffffn);
    this.idtBaseHigh = Number(u >> 32n);
  }

  /** The GDTR base, all 64 bits. */
  get gdtBase64(): bigint {
    return (BigInt(this.gdtBaseHigh) << 32n) | BigInt(this.gdtBase);
  }
  set gdtBase64(v: bigint) {
    const u = BigInt.asUintN(64, v);
    this.gdtBase = Number(u & 0xffff_ffffn);
    this.gdtBaseHigh = Number(u >> 32n);
  }

  /** Copies the general-purpose registers, RIP and RFLAGS (the contents of `struct kvm_regs`) from `other`. */
  copyRegsFrom(other: GuestCpuState): void {
    for (const name of GUEST_REGS64) {
      const [lo, hi] = REG64_FIELDS[name];
      this[lo] = other[lo];
      this[hi] = other[hi];
    }
    this.eflags = (other.eflags | X86_EFLAGS_FIXED) >>> 0;
  }

  /**
   * Copies the segment registers, descriptor tables, control registers, x87 control state, interrupt shadow
   * and halt state from `other`.
   */
  copySregsFrom(other: GuestCpuState): void {
    for (const f of ALL_SEGMENT_FIELDS) this[f] = other[f];
    this.idtBase = other.idtBase;
    this.idtBaseHigh = other.idtBaseHigh;
    this.idtLimit = other.idtLimit;
    this.gdtBase = other.gdtBase;
    this.gdtBaseHigh = other.gdtBaseHigh;
    this.gdtLimit = other.gdtLimit;
    this.cr0 = other.cr0;
    this.cr2 = other.cr2;
    this.cr3 = other.cr3;
    this.cr4 = other.cr4;
    this.interruptShadow = other.interruptShadow;
    this.halted = other.halted;
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
    this.pendingPort = other.pendingPort;
    this.pendingCount = other.pendingCount;
    this.pendingStringFlags = other.pendingStringFlags;
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
