/**
 * Straight-line copies between the guest's register file ({@link GuestCpuState}) and the register structures of
 * KVM_GET/SET_REGS and KVM_GET/SET_SREGS (`struct kvm_regs`, the segments and descriptor tables of `struct
 * kvm_sregs`) — what `__get_regs` / `__set_regs` and `__get_sregs_common` / `__set_sregs_common` copy.
 *
 * The register file keeps each 64-bit register as two 32-bit number fields (`eax` / `raxHigh`) and each segment
 * register as plain number fields (`csBase`, `csBaseHigh`, `csSelector`, `csLimit` and three packed attribute
 * fields). Read through `get64(name)` or a `SegmentRegister` view, each field is a property looked up by a
 * computed name (a megamorphic keyed load, tens of ns) and each segment a new view object; a whole-state save reads
 * ~150 of them. The copies here are generated once from the field names, so every access is a named property of
 * one class (monomorphic), and a 64-bit value whose high half is 0 is made without a shift.
 *
 * What they copy is exactly what the accessors copy; `regfile-copy.test.ts` checks them against the accessors.
 *
 * @module
 */
import type { kvm_regs, kvm_segment, kvm_sregs } from '../abi/structs.js';
import type { GuestCpuState } from '../guest/cpu-state.js';

/** The segment registers of `kvm_sregs`, in C order. */
const SEGMENTS = ['cs', 'ds', 'es', 'fs', 'gs', 'ss', 'tr', 'ldt'] as const;

/** `kvm_regs` field → the register file's low and high 32-bit fields (as `GuestCpuState.get64` pairs them). */
const REGS: ReadonlyArray<readonly [keyof kvm_regs, string, string]> = [
  ['rax', 'eax', 'raxHigh'], ['rbx', 'ebx', 'rbxHigh'], ['rcx', 'ecx', 'rcxHigh'], ['rdx', 'edx', 'rdxHigh'],
  ['rsi', 'esi', 'rsiHigh'], ['rdi', 'edi', 'rdiHigh'], ['rsp', 'esp', 'rspHigh'], ['rbp', 'ebp', 'rbpHigh'],
  ['r8', 'r8d', 'r8High'], ['r9', 'r9d', 'r9High'], ['r10', 'r10d', 'r10High'], ['r11', 'r11d', 'r11High'],
  ['r12', 'r12d', 'r12High'], ['r13', 'r13d', 'r13High'], ['r14', 'r14d', 'r14High'], ['r15', 'r15d', 'r15High'],
  ['rip', 'eip', 'ripHigh'], ['rflags', 'eflags', 'rflagsHigh'],
];

/**
 * The attributes of `kvm_segment` in the order the register file packs them: attribute `i` is byte `i % 3` of field
 * `<seg>Attrs<⌊i / 3⌋>` (cpu-state.ts `SEGMENT_ATTRIBUTES`).
 */
const ATTRIBUTES = ['type', 'present', 'dpl', 'db', 's', 'l', 'g', 'avl', 'unusable'] as const;

/** `hi:lo` as a bigint (the helper the generated readers call). */
function u64Of(hi: number, lo: number): bigint {
  return hi === 0 ? BigInt(lo) : (BigInt(hi) << 32n) | BigInt(lo);
}

/** Bits 63:32 of `v` modulo 2^64. */
function highU32(v: bigint): number {
  return Number(BigInt.asUintN(64, v) >> 32n);
}

/** Bits 31:0 of `v`. */
function lowU32(v: bigint): number {
  return Number(BigInt.asUintN(32, v));
}

const readRegsSrc = REGS.map(([k, lo, hi]) => `x.${k} = u64Of(r.${hi}, r.${lo});`).join('\n');
const writeRegsSrc = REGS.map(([k, lo, hi]) => `{ const y = x.${k}; r.${lo} = lowU32(y); r.${hi} = highU32(y); }`).join('\n');

const readSegSrc = SEGMENTS.map((n) => {
  const attrs = ATTRIBUTES.map((a, i) => `o.${a} = (r.${n}Attrs${(i / 3) | 0} >>> ${(i % 3) * 8}) & 0xff;`).join(' ');
  return `{ const o = x.${n}; o.base = u64Of(r.${n}BaseHigh, r.${n}Base); o.limit = r.${n}Limit; o.selector = r.${n}Selector; ${attrs} }`;
}).join('\n');

const writeSegSrc = SEGMENTS.map((n) => {
  const packed = [0, 1, 2].map((w) =>
    ATTRIBUTES.slice(3 * w, 3 * w + 3)
      .map((a, j) => `((s.${a} & 0xff) << ${8 * j})`)
      .join(' | '),
  );
  return `{ const s = x.${n}; r.${n}Base = lowU32(s.base); r.${n}BaseHigh = highU32(s.base); r.${n}Limit = s.limit; r.${n}Selector = s.selector; r.${n}Attrs0 = ${packed[0]}; r.${n}Attrs1 = ${packed[1]}; r.${n}Attrs2 = ${packed[2]}; }`;
}).join('\n');

type Helpers = [typeof u64Of, typeof lowU32, typeof highU32];
const HELPERS: Helpers = [u64Of, lowU32, highU32];

/** A function of `(r, x)` with `body`, the helpers in scope (as `StructCodec` compiles its encoders). */
function compile<F>(name: string, body: string): F {
  const make = new Function('u64Of', 'lowU32', 'highU32', `return function ${name}(r, x) {\n${body}\n};`) as (...h: Helpers) => F;
  return make(...HELPERS);
}

/** Every register of `kvm_regs` from `r`, all 64 bits (`GuestCpuState.get64` of each). */
export const readRegs = compile<(r: GuestCpuState, out: kvm_regs) => void>('readRegs', readRegsSrc);

/** Every register of `kvm_regs` into `r`, modulo 2^64 (`GuestCpuState.set64` of each; RFLAGS as given). */
export const writeRegs = compile<(r: GuestCpuState, v: kvm_regs) => void>('writeRegs', writeRegsSrc);

/** The eight segment registers of `kvm_sregs` from `r`, into the `kvm_segment` objects already in `out`. */
export const readSegments = compile<(r: GuestCpuState, out: Pick<kvm_sregs, (typeof SEGMENTS)[number]>) => void>('readSegments', readSegSrc);

/** The eight segment registers of `v` into `r` (each attribute keeps its low 8 bits, as the views' setters do). */
export const writeSegments = compile<(r: GuestCpuState, v: Readonly<Record<(typeof SEGMENTS)[number], kvm_segment>>) => void>('writeSegments', writeSegSrc);
