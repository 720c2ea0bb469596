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
 * The registers are also copied straight between the register file and the C bytes of `struct kvm_regs`
 * ({@link regsToWords}, {@link regsFromWords}) and `struct kvm_segment` ({@link segmentsToWords},
 * {@link segmentsFromWords}): the register file's 32-bit halves (unsigned, as it keeps them) and packed attribute bytes
 * are the structure's words and bytes, so no bigint and no object is made), through {@link StructWords} — typed-array
 * views of an aligned staging buffer, which read the C structure's little-endian fields only on a little-endian host
 * ({@link LITTLE_ENDIAN}; elsewhere the ioctls keep the codec's path). `sregs2-bytes.test.ts` and `regs-bytes.test.ts`
 * check them against the object form.
 *
 * @module
 */
import { KVM_REGS_CODEC, KVM_SEGMENT_CODEC, KVM_SREGS_CODEC, type kvm_regs, type kvm_segment, type kvm_sregs } from '../abi/structs.js';
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

/** Whether this host stores typed-array elements little-endian, as the C structures are. */
export const LITTLE_ENDIAN = new Uint8Array(new Uint32Array([1]).buffer)[0] === 1;

/** Views of one aligned staging buffer holding a C structure's bytes (each field at its natural alignment). */
export class StructWords {
  /** The bytes. */
  readonly u8: Uint8Array<ArrayBuffer>;
  /** The 16-bit words (field at byte `o` is element `o / 2`). */
  readonly u16: Uint16Array;
  /** The 32-bit words. */
  readonly u32: Uint32Array;
  /** The 64-bit words (as bigints). */
  readonly u64: BigUint64Array;

  /** @param bytes - the staging buffer's size (a multiple of 8) */
  constructor(bytes: number) {
    const b = new ArrayBuffer(bytes);
    this.u8 = new Uint8Array(b);
    this.u16 = new Uint16Array(b);
    this.u32 = new Uint32Array(b);
    this.u64 = new BigUint64Array(b);
  }
}

/** Where `kvm_segment`'s fields lie, and each segment of `kvm_sregs` (the same offsets in `kvm_sregs2`). */
const SEG_BASE = KVM_SEGMENT_CODEC.offsetOf('base');
const SEG_LIMIT = KVM_SEGMENT_CODEC.offsetOf('limit');
const SEG_SELECTOR = KVM_SEGMENT_CODEC.offsetOf('selector');

const segmentsToWordsSrc = SEGMENTS.map((n) => {
  const o = KVM_SREGS_CODEC.offsetOf(n);
  const attrs = [0, 1, 2].map((w) => {
    const bytes = ATTRIBUTES.slice(3 * w, 3 * w + 3).map((a, j) => `x.u8[${o + KVM_SEGMENT_CODEC.offsetOf(a)}] = (a >>> ${8 * j}) & 0xff;`);
    return `{ const a = r.${n}Attrs${w}; ${bytes.join(' ')} }`;
  });
  return `x.u32[${(o + SEG_BASE) / 4}] = r.${n}Base; x.u32[${(o + SEG_BASE) / 4 + 1}] = r.${n}BaseHigh; x.u32[${(o + SEG_LIMIT) / 4}] = r.${n}Limit; x.u16[${(o + SEG_SELECTOR) / 2}] = r.${n}Selector; ${attrs.join(' ')}`;
}).join('\n');

const segmentsFromWordsSrc = SEGMENTS.map((n) => {
  const o = KVM_SREGS_CODEC.offsetOf(n);
  const attrs = [0, 1, 2].map(
    (w) =>
      `r.${n}Attrs${w} = ` +
      ATTRIBUTES.slice(3 * w, 3 * w + 3)
        .map((a, j) => `(x.u8[${o + KVM_SEGMENT_CODEC.offsetOf(a)}] << ${8 * j})`)
        .join(' | ') +
      ';',
  );
  return `r.${n}Base = x.u32[${(o + SEG_BASE) / 4}]; r.${n}BaseHigh = x.u32[${(o + SEG_BASE) / 4 + 1}]; r.${n}Limit = x.u32[${(o + SEG_LIMIT) / 4}]; r.${n}Selector = x.u16[${(o + SEG_SELECTOR) / 2}]; ${attrs.join(' ')}`;
}).join('\n');

/**
 * The eight segment registers of `r` into the `struct kvm_segment`s at the start of `w` (`kvm_sregs` /
 * `kvm_sregs2`): what {@link readSegments} and the codec's encoding write, but for the padding bytes (left as they are).
 */
export const segmentsToWords = compile<(r: GuestCpuState, w: StructWords) => void>('segmentsToWords', segmentsToWordsSrc);

/** The `struct kvm_segment`s at the start of `w` into `r`'s eight segment registers: what {@link writeSegments} writes of their decoded form. */
export const segmentsFromWords = compile<(r: GuestCpuState, w: StructWords) => void>('segmentsFromWords', segmentsFromWordsSrc);

const regsToWordsSrc = REGS.map(([k, lo, hi]) => `x.u32[${KVM_REGS_CODEC.offsetOf(k) / 4}] = r.${lo}; x.u32[${KVM_REGS_CODEC.offsetOf(k) / 4 + 1}] = r.${hi};`).join('\n');
const regsFromWordsSrc = REGS.map(([k, lo, hi]) => `r.${lo} = x.u32[${KVM_REGS_CODEC.offsetOf(k) / 4}]; r.${hi} = x.u32[${KVM_REGS_CODEC.offsetOf(k) / 4 + 1}];`).join('\n');

/** Every register of `r` into `struct kvm_regs` at the start of `x`: the bytes {@link readRegs}' structure encodes to. */
export const regsToWords = compile<(r: GuestCpuState, x: StructWords) => void>('regsToWords', regsToWordsSrc);

/** `struct kvm_regs` at the start of `x` into `r`: what {@link writeRegs} writes of its decoded form (RFLAGS as given). */
export const regsFromWords = compile<(r: GuestCpuState, x: StructWords) => void>('regsFromWords', regsFromWordsSrc);
