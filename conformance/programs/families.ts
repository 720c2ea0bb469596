/**
 * The instruction families of the guest programs. Each family emits one block of a few instructions at a
 * time; the generator puts an exit after every block. `modelled` says whether the model's real-mode
 * interpreter executes every instruction of the family today (packages/kvm/src/guest/interpreter.ts); the
 * others are the instructions issue 12 asks for, recorded now so they become agreeing facts as the
 * interpreter learns them.
 *
 * Memory operands stay inside the data area (0x600–0x7ff) through the pinned BX/SI/DI/BP; values that would
 * leave a result undefined (a zero BSF source, a SHRD count above the width, a DIV that overflows) are kept
 * out by construction.
 *
 * @module
 */
import {
  ALL_DEFINED, ASCII_MUL, BIT_SCAN, BIT_TEST, CARRY_IN, CF, CMC, DECIMAL, DIV, INC_DEC, LAHF, LOGIC, MUL, NONE, OF,
  POPF, SAHF, SET_CF, STORES_FLAGS, conditionReads, doubleShiftEffect, rotateEffect, shiftEffect, type FlagEffect,
} from './flags.js';
import {
  ALU, aluImm, aluRegRm, aluRmReg, bitScan, bitTest, bswap, cmov, cmpxchgXadd, direct, enter, group3, group7, imul2,
  REG16, incDec, lea, mem, movCr, movRegImm, movRegRm, movRmImm, movRmReg, movRmSreg, movSregRm, movx, popRm, pushRm, raw, reg,
  setcc, shift, shiftDouble, stringIo, testImm, testRmReg, xchg, type AluOp, type Insn, type Mem, type Rm, type ShiftOp, type Size,
} from './encode.js';
import { LAYOUT, type Builder } from './builder.js';

/** A family of instructions. */
export interface Family {
  /** Name, part of the fact ids (`guest.alu8.s1`). */
  readonly name: string;
  /** Whether the model's interpreter executes all of it today. */
  readonly modelled: boolean;
  /** What it exercises. */
  readonly title: string;
  /** Programs (seeds) recorded. */
  readonly programs: number;
  /** Blocks per program (an exit after each). */
  readonly blocks: number;
  /** Emit one block. */
  readonly block: (b: Builder) => void;
  /** Emitted once before the first block (handlers, setup). */
  readonly prologue?: (b: Builder) => void;
}

/** A memory operand in the data area for `size`-bit accesses (BX/SI/DI/BP pinned). */
export function dataMem(b: Builder, size: Size = 16): Mem {
  const r = b.rng;
  const room = 0x3f - (size === 32 ? 3 : size === 16 ? 1 : 0);
  switch (r.int(0, 7)) {
    case 0: return mem(7, r.int(0, 0x7f)); // [bx+d]      0x600..
    case 1: return mem(0, r.int(0, room)); // [bx+si+d]   0x640..
    case 2: return mem(1, r.int(0, room)); // [bx+di+d]   0x680..
    case 3: return mem(2, r.int(0, room)); // [bp+si+d]   0x740.. (SS)
    case 4: return mem(3, r.int(0, room)); // [bp+di+d]   0x780.. (SS)
    case 5: return mem(6, r.int(0, 0x7f)); // [bp+d]      0x700.. (SS)
    case 6: return mem(4, 0x600 + r.int(0, 0x7f)); // [si+d16] 0x640..
    default: return direct(LAYOUT.data + r.int(0, 0x1f0));
  }
}

/** A data register or data memory of `size`. */
function dataRm(b: Builder, size: Size, regs?: readonly number[]): Rm {
  if (b.rng.chance(0.35)) return dataMem(b, size);
  return reg(size === 8 ? b.reg8(regs) : b.rng.pick(regs ?? [0, 1, 2]));
}

function immOf(b: Builder, size: Size): number {
  return size === 8 ? b.rng.byte() : size === 16 ? b.rng.u16() : b.rng.u32();
}

const ALU_EFFECT: Readonly<Record<AluOp, FlagEffect>> = {
  add: ALL_DEFINED, or: LOGIC, adc: CARRY_IN, sbb: CARRY_IN, and: LOGIC, sub: ALL_DEFINED, xor: LOGIC, cmp: ALL_DEFINED,
};

/** One two-operand ALU instruction of `size` in a random form. */
function alu(b: Builder, size: Size, regs?: readonly number[]): void {
  const r = b.rng;
  const op = r.pick(ALU);
  const e = ALU_EFFECT[op];
  const R = size === 8 ? b.reg8(regs) : r.pick(regs ?? [0, 1, 2]);
  switch (r.int(0, 4)) {
    case 0: b.emit(aluRmReg(op, dataRm(b, size, regs), R, size), e); break;
    case 1: b.emit(aluRegRm(op, R, dataRm(b, size, regs), size), e); break;
    case 2: b.emit(aluImm(op, dataRm(b, size, regs), immOf(b, size), size), e); break;
    case 3: b.emit(aluImm(op, reg(0), immOf(b, size), size, 'acc'), e); break;
    default: b.emit(aluImm(op, dataRm(b, size, regs), r.int(-128, 127), size, size === 8 ? 'full' : 'sext8'), e); break;
  }
}

/** One unary or TEST instruction of `size`. */
function unary(b: Builder, size: Size, regs?: readonly number[]): void {
  const r = b.rng;
  const o = dataRm(b, size, regs);
  switch (r.int(0, 5)) {
    case 0: b.emit(incDec('inc', o, size), INC_DEC); break;
    case 1: b.emit(incDec('dec', o, size), INC_DEC); break;
    case 2: b.emit(group3('not', o, size)); break;
    case 3: b.emit(group3('neg', o, size), ALL_DEFINED); break;
    case 4: b.emit(testImm(o, immOf(b, size), size), LOGIC); break;
    default: b.emit(testRmReg(o, size === 8 ? b.reg8(regs) : r.pick(regs ?? [0, 1, 2]), size), LOGIC); break;
  }
}

function aluBlock(size: Size) {
  return (b: Builder): void => {
    for (let i = b.rng.int(2, 4); i > 0; i--) (b.rng.chance(0.7) ? alu : unary)(b, size);
  };
}

function shiftBlock(b: Builder): void {
  const r = b.rng;
  for (let i = r.int(1, 3); i > 0; i--) {
    const size: Size = r.pick([8, 16, 16]);
    const op = r.pick(['shl', 'shr', 'sar', 'rol', 'ror', 'rcl', 'rcr'] as const satisfies readonly ShiftOp[]);
    const dst = dataRm(b, size, [0, 2, 4, 6].filter((n) => size === 8 || n < 4));
    const form = r.int(0, 2);
    let count: number;
    let insn: Insn;
    if (form === 0) {
      count = 1;
      insn = shift(op, dst, 1, size);
    } else if (form === 1) {
      count = r.pick([0, 2, 3, 7, 8, 9, 15, 16, 17, 31]);
      insn = shift(op, dst, count, size);
    } else {
      count = r.pick([0, 1, 4, 8, 9, 16, 17, 31, 32, 33]);
      b.emit(movRegImm(1, count, 8)); // mov cl, count
      insn = shift(op, dst, 'cl', size);
    }
    const masked = count & 0x1f;
    const effect = op === 'shl' || op === 'shr' || op === 'sar' ? shiftEffect(op, masked, size) : rotateEffect(op, masked);
    b.emit(insn, effect);
  }
}

function mulDivBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 4)) {
    case 0: b.emit(group3(r.pick(['mul', 'imul'] as const), dataRm(b, 8, [1, 2, 4, 5, 6]), 8), MUL); break;
    case 1: b.emit(group3(r.pick(['mul', 'imul'] as const), dataRm(b, 16, [1, 2]), 16), MUL); break;
    case 2: b.emit(imul2(r.pick([0, 1, 2]), dataRm(b, 16), 16, r.chance(0.5) ? r.int(-200, 200) : undefined), MUL); break;
    case 3: {
      // DIV/IDIV r/m16 with DX:AX = q·d + rem chosen so the quotient fits.
      const signed = r.chance(0.5);
      const d = r.int(1, 0x7fff) * (signed && r.chance(0.5) ? -1 : 1);
      const q = signed ? r.int(-0x7fff, 0x7fff) : r.int(0, 0xffff);
      const rem = r.int(0, Math.abs(d) - 1) * (signed && q < 0 ? -1 : 1);
      const n = BigInt(q) * BigInt(d) + BigInt(rem);
      const u = BigInt.asUintN(32, n);
      b.emit(movRegImm(0, Number(u & 0xffffn), 16));
      b.emit(movRegImm(2, Number(u >> 16n), 16));
      b.emit(movRegImm(1, d & 0xffff, 16));
      b.emit(group3(signed ? 'idiv' : 'div', reg(1), 16), DIV);
      break;
    }
    default: {
      // DIV/IDIV r/m8: AX = q·d + rem.
      const signed = r.chance(0.5);
      const d = r.int(1, 0x7f) * (signed && r.chance(0.5) ? -1 : 1);
      const q = signed ? r.int(-0x7f, 0x7f) : r.int(0, 0xff);
      const rem = r.int(0, Math.abs(d) - 1) * (signed && q < 0 ? -1 : 1);
      b.emit(movRegImm(0, (q * d + rem) & 0xffff, 16));
      b.emit(movRegImm(1, d & 0xff, 8));
      b.emit(group3(signed ? 'idiv' : 'div', reg(1), 8), DIV);
    }
  }
}

function alu32Block(b: Builder): void {
  const r = b.rng;
  for (let i = r.int(2, 3); i > 0; i--) {
    switch (r.int(0, 3)) {
      case 0: alu(b, 32); break;
      case 1: unary(b, 32); break;
      case 2: b.emit(movRegImm(r.pick([0, 1, 2]), r.u32(), 32)); break;
      default: b.emit(shift(r.pick(['shl', 'shr', 'sar'] as const), reg(r.pick([0, 2])), 1, 32), shiftEffect('shl', 1, 32)); break;
    }
  }
}

function stackBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 5)) {
    case 0: { // push a register and memory, pop them into other places
      const a = r.pick([0, 1, 2]);
      const z = r.pick([0, 1, 2]);
      b.emit(raw([0x50 + a], `push ${REG16[a]}`));
      b.emit(pushRm(dataMem(b)));
      b.emit(popRm(reg(r.pick([1, 2]))));
      b.emit(raw([0x58 + z], `pop ${REG16[z]}`));
      break;
    }
    case 1: { // push imm; pop [mem]
      const v = r.u16();
      b.emit(raw(v < 0x80 || v >= 0xff80 ? [0x6a, v & 0xff] : [0x68, v & 0xff, v >> 8], `push 0x${v.toString(16)}`));
      b.emit(popRm(dataMem(b)));
      break;
    }
    case 2: { // pushf/popf: arithmetic flags and DF from a pushed word
      const v = (r.u16() & (0x8d5 | 0x400)) | 0x2;
      b.emit(raw([0x68, v & 0xff, v >> 8], `push 0x${v.toString(16)}`));
      b.emit(raw([0x9d], 'popf'), POPF);
      b.emit(raw([0x9c], 'pushf'), STORES_FLAGS);
      b.emit(popRm(reg(2)));
      b.emit(raw([0xfc], 'cld'));
      break;
    }
    case 3: // pusha; change registers; popa
      b.emit(raw([0x60], 'pusha'));
      b.emit(movRegImm(0, r.u16(), 16));
      b.emit(movRegImm(3, r.u16(), 16));
      b.emit(raw([0x61], 'popa'));
      break;
    case 4: // push/pop segment registers
      b.emit(raw([0x1e], 'push ds'));
      b.emit(raw([0x07], 'pop es'));
      b.emit(movRmSreg(reg(r.pick([0, 2])), r.pick([0, 2, 3])));
      break;
    default: // a subroutine that uses the stack, and RET imm16
      b.call(() => {
        alu(b, 16);
        b.emit(raw([0x55], 'push bp'));
        b.emit(raw([0x89, 0xe5], 'mov bp, sp'));
        b.emit(movRegRm(r.pick([0, 2]), mem(6, 2), 16)); // the return address
        b.emit(raw([0x5d], 'pop bp'));
        b.checkpoint();
      });
  }
}

function branchBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 4)) {
    case 0:
      alu(b, r.pick([8, 16] as const));
      b.skipIf(r.int(0, 15), () => alu(b, 16));
      break;
    case 1:
      b.loop(r.int(1, 4), 'loop', () => {
        alu(b, 16, [0, 2]);
        b.checkpoint();
      });
      break;
    case 2:
      b.loop(r.int(1, 5), r.pick(['loopz', 'loopnz'] as const), () => alu(b, 8, [0, 2, 4, 6]));
      break;
    case 3:
      b.jcxz(r.pick([0, 1]), () => unary(b, 16, [0, 2]));
      break;
    default:
      b.call(() => {
        alu(b, 16);
        b.checkpoint();
      });
  }
}

function stringBlock(b: Builder): void {
  const r = b.rng;
  const backwards = r.chance(0.3);
  b.emit(movRegImm(6, 0x640 + r.int(0, 0x20), 16)); // si
  b.emit(movRegImm(7, 0x6c0 + r.int(0, 0x20), 16)); // di
  b.emit(movRegImm(1, r.int(0, 6), 16)); // cx
  b.emit(raw([backwards ? 0xfd : 0xfc], backwards ? 'std' : 'cld'));
  const op = r.pick([0xa4, 0xa5, 0xa6, 0xa7, 0xaa, 0xab, 0xac, 0xad, 0xae, 0xaf]);
  const names: Readonly<Record<number, string>> = { 0xa4: 'movsb', 0xa5: 'movsw', 0xa6: 'cmpsb', 0xa7: 'cmpsw', 0xaa: 'stosb', 0xab: 'stosw', 0xac: 'lodsb', 0xad: 'lodsw', 0xae: 'scasb', 0xaf: 'scasw' };
  const compares = op === 0xa6 || op === 0xa7 || op === 0xae || op === 0xaf;
  const prefix = op === 0xac || op === 0xad ? r.pick([[], [0xf3]]) : compares ? r.pick([[], [0xf3], [0xf2]]) : r.pick([[], [0xf3]]);
  const p = prefix[0] === 0xf3 ? (compares ? 'repe ' : 'rep ') : prefix[0] === 0xf2 ? 'repne ' : '';
  // A REP with CX = 0 leaves the flags alone; otherwise a compare defines them all.
  b.emit(raw([...prefix, op], `${p}${names[op]}`), compares ? ALL_DEFINED : NONE);
  b.emit(raw([0xfc], 'cld'));
  b.pin();
}

function moveBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 9)) {
    case 0: b.emit(r.chance(0.5) ? movRmReg(dataRm(b, 16), r.pick([0, 1, 2]), 16) : movRegRm(r.pick([0, 1, 2]), dataMem(b), 16)); break;
    case 1: b.emit(movRmImm(dataMem(b, 8), r.byte(), 8)); break;
    case 2: {
      const size = r.pick([8, 16] as const);
      b.emit(xchg(dataRm(b, size), size === 8 ? b.reg8() : r.pick([0, 1, 2]), size));
      break;
    }
    case 3: b.emit(lea(r.pick([0, 1, 2]), dataMem(b))); break;
    case 4: b.emit(r.chance(0.5) ? raw([0x98], 'cbw') : raw([0x99], 'cwd')); break;
    case 5: b.emit(movx(r.pick(['movzx', 'movsx'] as const), r.pick([0, 1, 2]), dataRm(b, 8), 16, 8)); break;
    case 6: {
      const cc = r.int(0, 15);
      b.emit(setcc(cc, dataRm(b, 8)), setccEffect(cc));
      break;
    }
    case 7: // LAHF / SAHF
      b.emit(raw([0x9f], 'lahf'), LAHF);
      b.emit(aluImm('xor', reg(4), r.byte(), 8), LOGIC);
      b.emit(raw([0x9e], 'sahf'), SAHF);
      break;
    case 8: // XLAT: AL ← [BX + AL]
      b.emit(raw([0xd7], 'xlat'));
      break;
    default: { // a segment register: DS moved, a load through it, DS back to 0
      const seg = r.int(0x10, 0x40);
      b.emit(movRegImm(2, seg, 16));
      b.emit(movSregRm(3, reg(2)));
      b.emit(movRegRm(0, direct(0x600 + r.int(0, 0x1f0)), 16));
      b.emit(movRegImm(2, 0, 16));
      b.emit(movSregRm(3, reg(2)));
      const f = r.int(0, 2);
      b.emit(raw([[0xf5, 0xf8, 0xf9][f] as number], ['cmc', 'clc', 'stc'][f] as string), f === 0 ? CMC : SET_CF);
    }
  }
}

/** SETcc reads its condition's flags: the block above passes the right effect through `setccEffect`. */
export function setccEffect(cc: number): FlagEffect {
  return { reads: conditionReads(cc), defines: 0, undefines: 0 };
}

function interruptPrologue(b: Builder): void {
  b.handler(0x21, false, () => {
    alu(b, 16, [0, 2]);
    b.emit(raw([0x9c], 'pushf'), STORES_FLAGS);
    b.emit(popRm(reg(2)));
  });
  b.handler(3, false, () => alu(b, 8, [0, 2]));
  b.handler(0, true, () => alu(b, 16, [0, 2]));
}

function interruptBlock(b: Builder): void {
  const r = b.rng;
  alu(b, 16);
  switch (r.int(0, 2)) {
    case 0: b.emit(raw([0xcd, 0x21], 'int 0x21'), STORES_FLAGS); break;
    case 1: b.emit(raw([0xcc], 'int3'), STORES_FLAGS); break;
    default: // #DE: a division by zero, to the handler that skips it
      b.emit(movRegImm(1, 0, 8));
      b.fault(group3('div', reg(1), 8), STORES_FLAGS);
  }
}

function ioBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 3)) {
    case 0: b.input(r.pick([8, 16, 32] as const)); alu(b, 16); break;
    case 1: b.ioDx('in', r.pick([8, 16, 32] as const)); alu(b, 8); break;
    case 2: b.emit(movRegImm(0, r.u32(), 32)); b.ioDx('out', r.pick([8, 16, 32] as const)); break;
    default: b.emit(movRegImm(0, r.u16(), 16)); b.emit(raw([0xe7, 0xe0], 'out 0xe0, ax')); alu(b, 16);
  }
}

// ---- the instructions the interpreter lacks today ------------------------------------------------------

function btBlock(b: Builder): void {
  const r = b.rng;
  const op = r.pick(['bt', 'bts', 'btr', 'btc'] as const);
  if (r.chance(0.5)) {
    b.emit(movRegImm(1, r.int(0, 31), 16));
    b.emit(bitTest(op, r.chance(0.5) ? reg(r.pick([0, 2])) : dataMem(b, 16), 1, 16), BIT_TEST);
  } else {
    b.emit(bitTest(op, dataRm(b, 16, [0, 2]), { imm: r.int(0, 40) }, 16), BIT_TEST);
  }
  b.emit(setcc(2, reg(6)), { reads: CF, defines: 0, undefines: 0 }); // setc dh
}

function bitScanBlock(b: Builder): void {
  const r = b.rng;
  const v = r.u16() | (1 << r.int(0, 15)); // never zero: the destination would be undefined
  b.emit(movRegImm(1, v, 16));
  b.emit(bitScan(r.pick(['bsf', 'bsr'] as const), r.pick([0, 2]), reg(1), 16), BIT_SCAN);
}

function shiftDoubleBlock(b: Builder): void {
  const r = b.rng;
  const count = r.int(0, 15); // above 16 the 16-bit result is undefined
  const op = r.pick(['shld', 'shrd'] as const);
  if (r.chance(0.5)) b.emit(shiftDouble(op, dataRm(b, 16, [0, 2]), 1, count, 16), doubleShiftEffect(count));
  else {
    b.emit(movRegImm(1, count, 8));
    b.emit(shiftDouble(op, dataRm(b, 16, [0, 2]), 2, 'cl', 16), doubleShiftEffect(count));
  }
}

function bswapBlock(b: Builder): void {
  b.emit(movRegImm(0, b.rng.u32(), 32));
  b.emit(bswap(b.rng.pick([0, 1, 2])));
}

function cmpxchgBlock(b: Builder): void {
  const r = b.rng;
  const size = r.pick([8, 16] as const);
  const op = r.pick(['cmpxchg', 'xadd'] as const);
  b.emit(cmpxchgXadd(op, dataRm(b, size, size === 8 ? [1, 2, 5, 6] : [1, 2]), size === 8 ? r.pick([1, 2, 6]) : r.pick([1, 2]), size), ALL_DEFINED);
}

function cmovBlock(b: Builder): void {
  const r = b.rng;
  alu(b, 16);
  const cc = r.int(0, 15);
  b.emit(cmov(cc, r.pick([0, 1, 2]), dataRm(b, 16), 16), setccEffect(cc));
}

function enterBlock(b: Builder): void {
  const r = b.rng;
  // Nesting level 0: KVM's instruction emulator (which ran these on the recording machine) refuses others.
  b.emit(enter(r.pick([0, 2, 8]), 0));
  b.emit(movRmReg(mem(6, 0xfffe), 0, 16)); // mov [bp-2], ax
  b.emit(raw([0xc9], 'leave'));
}

/** DAS, AAM, AAD: the decimal-adjust instructions KVM's emulator executes (it lacks DAA, AAA, AAS). */
function bcdBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 1)) {
    case 0:
      b.emit(aluImm('sub', reg(0), r.byte(), 8, 'acc'), ALL_DEFINED);
      b.emit(raw([0x2f], 'das'), DECIMAL);
      break;
    default:
      {
        const op = r.pick(['aam', 'aad'] as const);
        const base = r.pick([10, 7, 16]);
        b.emit(raw([op === 'aam' ? 0xd4 : 0xd5, base], `${op} ${base}`), ASCII_MUL);
      }
  }
}

function stringIoBlock(b: Builder): void {
  const r = b.rng;
  const op = r.pick(['insb', 'insw', 'outsb', 'outsw'] as const);
  b.emit(movRegImm(2, 0x300 + r.int(0, 0xff), 16)); // dx: the port
  b.emit(movRegImm(6, 0x640, 16));
  b.emit(movRegImm(7, 0x6c0, 16));
  const rep = r.chance(0.6);
  if (rep) b.emit(movRegImm(1, r.int(1, 4), 16));
  b.emit(stringIo(op, rep));
  b.pin();
}

function descriptorBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 2)) {
    case 0: b.emit(group7(r.pick(['sgdt', 'sidt'] as const), dataMem(b, 16))); break;
    case 1: // LIDT of the real-mode IVT (base 0, limit 0x3ff), then SIDT
      b.emit(movRmImm(direct(0x7f0), 0x3ff, 16));
      b.emit(movRmImm(direct(0x7f2), 0, 16));
      b.emit(movRmImm(direct(0x7f4), 0, 16));
      b.emit(group7('lidt', direct(0x7f0)));
      b.emit(group7('sidt', direct(0x7e0)));
      break;
    default: // LGDT of a table, then SGDT
      b.emit(movRmImm(direct(0x7f0), r.int(7, 0x7f), 16));
      b.emit(movRmImm(direct(0x7f2), r.u16(), 16));
      b.emit(movRmImm(direct(0x7f4), 0, 16));
      b.emit(group7('lgdt', direct(0x7f0)));
      b.emit(group7('sgdt', direct(0x7e8)));
  }
}

function crBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 3)) {
    case 0: b.emit(group7('smsw', reg(r.pick([0, 2])))); break;
    case 1: // LMSW with MP (PE stays clear)
      b.emit(group7('smsw', reg(0)));
      b.emit(aluImm('or', reg(0), 2, 16, 'acc'), LOGIC);
      b.emit(group7('lmsw', reg(0)));
      b.emit(group7('smsw', reg(2)));
      break;
    case 2: // MOV EAX, CR0 / CLTS / MOV CR0 with TS
      b.emit(movCr('from', 0, 0));
      b.emit(raw([0x66, 0x0d, 0x08, 0, 0, 0], 'or eax, 8'), LOGIC);
      b.emit(movCr('to', 0, 0));
      b.emit(movCr('from', 0, 2));
      b.emit(raw([0x0f, 0x06], 'clts'));
      b.emit(movCr('from', 0, 1));
      break;
    default: // CR3 and CR4 outside paging
      b.emit(movRegImm(0, 0x5000, 32));
      b.emit(movCr('to', 3, 0));
      b.emit(movCr('from', 3, 2));
      b.emit(movCr('from', 4, 1));
  }
}

function miscBlock(b: Builder): void {
  const r = b.rng;
  switch (r.int(0, 4)) {
    case 0: b.emit(raw([0x0f, 0x09], 'wbinvd')); break;
    case 1: b.emit(group7('invlpg', dataMem(b, 8))); break;
    case 2: b.emit(raw([0x0f, 0x1f, 0x44, 0x00, 0x00], 'nop word [si+0]')); break;
    case 3: // CPUID leaf 0 with no guest CPUID set
      b.emit(movRegImm(0, 0, 32));
      b.emit(raw([0x0f, 0xa2], 'cpuid'));
      break;
    default: // WRMSR then RDMSR of SYSENTER_CS
      b.emit(movRegImm(1, 0x174, 32));
      b.emit(movRegImm(0, r.u16(), 32));
      b.emit(movRegImm(2, 0, 32));
      b.emit(raw([0x0f, 0x30], 'wrmsr'));
      b.emit(movRegImm(0, 0, 32));
      b.emit(raw([0x0f, 0x32], 'rdmsr'));
  }
}

/** FNINIT, FNSTCW m16, FNSTSW m16 (KVM's emulator has no FNSTSW AX). */
function x87Block(b: Builder): void {
  b.emit(raw([0xdb, 0xe3], 'fninit'));
  b.emit(b.rng.chance(0.5) ? raw([0xd9, 0x3e, 0xe0, 0x07], 'fnstcw [0x7e0]') : raw([0xdd, 0x3e, 0xe2, 0x07], 'fnstsw [0x7e2]'));
}

function lockUdPrologue(b: Builder): void {
  b.handler(6, true, () => alu(b, 16, [0, 2]));
}

function lockUdBlock(b: Builder): void {
  b.fault(raw([0xf0, 0x88, 0x06, 0x10, 0x06], 'lock mov [0x610], al'), STORES_FLAGS); // MOV does not take LOCK: #UD
  b.emit(raw([0xf0, 0x00, 0x06, 0x11, 0x06], 'lock add [0x611], al'), ALL_DEFINED); // ADD to memory does
}

function intoPrologue(b: Builder): void {
  b.handler(4, false, () => alu(b, 8, [0, 2]));
}

function intoBlock(b: Builder): void {
  const r = b.rng;
  b.emit(movRegImm(0, r.pick([0x7f, 0x80, 0x10]), 8));
  b.emit(aluImm('add', reg(0), r.pick([1, 0x7f, 0x80]), 8, 'acc'), ALL_DEFINED);
  b.emit(raw([0xce], 'into'), { reads: OF | STORES_FLAGS.reads, defines: 0, undefines: 0 });
}

function segLimitPrologue(b: Builder): void {
  b.handler(13, true, () => alu(b, 16, [0, 2]));
}

function segLimitBlock(b: Builder): void {
  // A word at offset 0xffff crosses the real-mode segment limit: #GP.
  b.fault(b.rng.chance(0.5) ? raw([0xa1, 0xff, 0xff], 'mov ax, [0xffff]') : raw([0xc7, 0x06, 0xff, 0xff, 0x34, 0x12], 'mov word [0xffff], 0x1234'), STORES_FLAGS);
}

/** Every family, modelled first. */
export const FAMILIES: readonly Family[] = [
  { name: 'alu8', modelled: true, title: 'ADD/OR/ADC/SBB/AND/SUB/XOR/CMP/TEST/INC/DEC/NOT/NEG on bytes', programs: 4, blocks: 6, block: aluBlock(8) },
  { name: 'alu16', modelled: true, title: 'the same on words, with the sign-extended imm8 forms', programs: 4, blocks: 6, block: aluBlock(16) },
  { name: 'alu32', modelled: true, title: '32-bit operands (0x66 prefix)', programs: 2, blocks: 5, block: alu32Block },
  { name: 'shift', modelled: true, title: 'SHL/SHR/SAR/ROL/ROR/RCL/RCR by 1, imm8 and CL, counts 0–33', programs: 4, blocks: 6, block: shiftBlock },
  { name: 'muldiv', modelled: true, title: 'MUL/IMUL (1, 2 and 3 operands), DIV/IDIV', programs: 3, blocks: 6, block: mulDivBlock },
  { name: 'stack', modelled: true, title: 'PUSH/POP (registers, memory, immediates, segment registers), PUSHF/POPF, PUSHA/POPA, CALL/RET', programs: 3, blocks: 5, block: stackBlock },
  { name: 'branch', modelled: true, title: 'Jcc, LOOP/LOOPZ/LOOPNZ, JCXZ, CALL', programs: 3, blocks: 5, block: branchBlock },
  { name: 'string', modelled: true, title: 'MOVS/CMPS/STOS/LODS/SCAS with REP/REPE/REPNE, forwards and backwards', programs: 3, blocks: 5, block: stringBlock },
  { name: 'move', modelled: true, title: 'MOV, XCHG, LEA, CBW/CWD, MOVZX/MOVSX, SETcc, LAHF/SAHF, XLAT, MOV Sreg, CMC/CLC/STC', programs: 3, blocks: 6, block: moveBlock },
  { name: 'interrupt', modelled: true, title: 'INT n and INT3 through the IVT, #DE from DIV, IRET', programs: 3, blocks: 4, block: interruptBlock, prologue: interruptPrologue },
  { name: 'io', modelled: true, title: 'IN/OUT of bytes, words and dwords, imm8 and DX ports', programs: 2, blocks: 5, block: ioBlock },
  { name: 'bt', modelled: false, title: 'BT/BTS/BTR/BTC', programs: 2, blocks: 4, block: btBlock },
  { name: 'bitscan', modelled: false, title: 'BSF/BSR', programs: 2, blocks: 4, block: bitScanBlock },
  { name: 'shxd', modelled: false, title: 'SHLD/SHRD', programs: 2, blocks: 4, block: shiftDoubleBlock },
  { name: 'bswap', modelled: false, title: 'BSWAP', programs: 1, blocks: 3, block: bswapBlock },
  { name: 'cmpxchg', modelled: false, title: 'CMPXCHG/XADD', programs: 2, blocks: 4, block: cmpxchgBlock },
  { name: 'cmov', modelled: false, title: 'CMOVcc', programs: 2, blocks: 4, block: cmovBlock },
  { name: 'enter', modelled: false, title: 'ENTER with nesting level 0 (LEAVE is modelled)', programs: 1, blocks: 3, block: enterBlock },
  { name: 'bcd', modelled: false, title: 'DAS/AAM/AAD', programs: 2, blocks: 4, block: bcdBlock },
  { name: 'stringio', modelled: false, title: 'INS/OUTS with and without REP', programs: 2, blocks: 3, block: stringIoBlock },
  { name: 'descriptor', modelled: false, title: 'LGDT/LIDT/SGDT/SIDT', programs: 1, blocks: 3, block: descriptorBlock },
  { name: 'cr', modelled: false, title: 'SMSW/LMSW, MOV to and from CR0/CR3/CR4, CLTS', programs: 2, blocks: 3, block: crBlock },
  { name: 'misc', modelled: false, title: 'WBINVD, INVLPG, multi-byte NOP, CPUID, WRMSR/RDMSR', programs: 2, blocks: 4, block: miscBlock },
  { name: 'x87', modelled: false, title: 'FNINIT, FNSTCW, FNSTSW', programs: 1, blocks: 3, block: x87Block },
  { name: 'lock', modelled: false, title: 'LOCK on an instruction that does not take it: #UD through the IVT', programs: 1, blocks: 3, block: lockUdBlock, prologue: lockUdPrologue },
  { name: 'into', modelled: false, title: 'INTO with OF clear and set', programs: 1, blocks: 3, block: intoBlock, prologue: intoPrologue },
  { name: 'seglimit', modelled: false, title: 'A word access at offset 0xffff: #GP through the IVT', programs: 1, blocks: 2, block: segLimitBlock, prologue: segLimitPrologue },
];
