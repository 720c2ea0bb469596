/**
 * The guest programs: programs.json is exactly what the generator makes, the golden file ran exactly these
 * programs, and the programs keep to the rules that make their results comparable (memory operands in the
 * data area, undefined flags tracked).
 */
import { describe, expect, test } from 'vitest';
import { loadGroup } from '../replay/golden.js';
import { loadPrograms } from '../replay/guest.js';
import { Builder } from '../programs/builder.js';
import { AF, ARITH, CF, OF, PF, SF, ZF, shiftEffect } from '../programs/flags.js';
import { group3, raw, reg } from '../programs/encode.js';
import { FAMILIES, dataMem } from '../programs/families.js';
import { PINNED } from '../programs/builder.js';
import { programsFile } from '../programs/generate.js';
import { Random } from '../programs/random.js';

const committed = loadPrograms();
const golden = loadGroup('guest');

describe('guest programs', () => {
  test('programs.json is what the generator makes (re-record after changing the generator)', () => {
    expect(JSON.parse(JSON.stringify(programsFile()))).toEqual(committed);
  });

  test('the golden file ran each program of programs.json, with its memory and registers', () => {
    expect(golden.facts.map((f) => f.id)).toEqual(committed.programs.map((p) => p.id));
    for (const p of committed.programs) {
      const fact = golden.facts.find((f) => f.id === p.id)!;
      const image = new Uint8Array(0x10000);
      for (const [addr, hex] of p.memory) for (let i = 0; i < hex.length / 2; i++) image[addr + i] = parseInt(hex.slice(2 * i, 2 * i + 2), 16);
      const poked = new Uint8Array(0x10000);
      for (const s of fact.steps) {
        if (s.op !== 'poke') continue;
        for (let i = 0; i < s.hex.length / 2; i++) poked[s.offset + i] = parseInt(s.hex.slice(2 * i, 2 * i + 2), 16);
      }
      expect(Buffer.from(poked).equals(Buffer.from(image)), p.id).toBe(true);
      const setRegs = fact.steps.find((s) => s.op === 'ioctl' && s.name === 'KVM_SET_REGS');
      expect(setRegs?.op === 'ioctl' ? setRegs.arg : undefined, p.id).toMatchObject({ value: { rip: `0x${p.regs.rip.toString(16)}`, rax: `0x${p.regs.rax.toString(16)}` } });
    }
  });

  test('every family has programs, and the modelled ones come first', () => {
    const names = committed.programs.map((p) => p.family);
    for (const f of FAMILIES) expect(names).toContain(f.name);
    const firstMissing = FAMILIES.findIndex((f) => !f.modelled);
    expect(FAMILIES.slice(firstMissing).every((f) => !f.modelled)).toBe(true);
  });

  test('the generator is deterministic and seeds differ between programs', () => {
    expect(programsFile()).toEqual(programsFile());
    expect(new Set(committed.programs.map((p) => p.seed)).size).toBe(committed.programs.length);
  });
});

describe('undefined flags', () => {
  test('MUL leaves SF ZF AF PF undefined at the next exit; a CMP defines them again', () => {
    const b = new Builder(new Random(1));
    b.emit(group3('mul', reg(1), 8), { reads: 0, defines: CF | OF, undefines: SF | ZF | AF | PF });
    b.checkpoint();
    b.defineFlags();
    b.checkpoint();
    b.halt();
    expect(b.finish().undefinedFlags).toEqual({ 'out:1': SF | ZF | AF | PF, 'out:2': 0, hlt: 0 });
  });

  test('an instruction that reads an undefined flag gets a defining CMP first', () => {
    const b = new Builder(new Random(2));
    b.emit(raw([0xf6, 0xe1], 'mul cl'), { reads: 0, defines: CF | OF, undefines: SF | ZF | AF | PF });
    b.emit(raw([0x9c], 'pushf'), { reads: ARITH, defines: 0, undefines: 0 });
    b.halt();
    const { listing } = b.finish();
    expect(listing[1]).toMatch(/^cmp /);
    expect(listing[2]).toBe('pushf');
  });

  test('a branch joins the undefined flags of both paths', () => {
    const b = new Builder(new Random(3));
    b.defineFlags();
    b.skipIf(4, () => b.emit(raw([0x0c, 0x01], 'or al, 1'), { reads: 0, defines: CF | OF | SF | ZF | PF, undefines: AF }));
    b.halt();
    expect(b.finish().undefinedFlags.hlt).toBe(AF);
  });

  test('shift counts: CF undefined when SHL/SHR shift everything out, OF for counts above 1, nothing for 0', () => {
    expect(shiftEffect('shl', 0, 8)).toEqual({ reads: 0, defines: 0, undefines: 0 });
    expect(shiftEffect('shl', 1, 8).defines & OF).toBe(OF);
    expect(shiftEffect('shr', 8, 8).undefines & CF).toBe(CF);
    expect(shiftEffect('sar', 9, 8).defines & CF).toBe(CF);
    expect(shiftEffect('shl', 3, 16).undefines & OF).toBe(OF);
  });
});

describe('memory operands', () => {
  test('every data operand lies in the data area 0x600–0x7ff, with BX/SI/DI/BP pinned', () => {
    const base = [PINNED.bx + PINNED.si, PINNED.bx + PINNED.di, PINNED.bp + PINNED.si, PINNED.bp + PINNED.di, PINNED.si, PINNED.di, PINNED.bp, PINNED.bx];
    const b = new Builder(new Random(7));
    const outside: string[] = [];
    for (let i = 0; i < 5000; i++) {
      const size = ([8, 16, 32] as const)[i % 3] as 8 | 16 | 32;
      const m = dataMem(b, size);
      const ea = m.direct ? m.disp : ((base[m.rm] as number) + m.disp) & 0xffff;
      if (ea < 0x600 || ea + size / 8 > 0x800) outside.push(`${JSON.stringify(m)} (${size}-bit) at 0x${ea.toString(16)}`);
    }
    expect(outside).toEqual([]);
  });
});
