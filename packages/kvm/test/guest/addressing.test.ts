/**
 * ModRM memory operands (SDM Vol. 2A §2.1.5, Table 2-1 for 16-bit and Table 2-2/2-3 for 32-bit
 * addressing): every 16-bit form, default segments (DS, or SS for BP-based forms), overrides, 16-bit
 * offset wrap-around, the common 32-bit forms behind a 0x67 prefix, and LEA. Also Jcc: every condition
 * against every combination of the five flags it can test.
 */

import { describe, expect, test } from 'vitest';
import { GuestExitReason } from '../../src/guest/index.js';
import { FLAVORS, le, makeVm, word, type Vm } from './helpers.js';

const DS = 0x10000;
const SS = 0x20000;
const BX = 0x0100;
const SI = 0x0020;
const DI = 0x0003;
const BP = 0x0400;

function setRegs(vm: Vm): void {
  const s = vm.state;
  s.ds.loadRealMode(DS >> 4);
  s.ss.loadRealMode(SS >> 4);
  s.rbx = BX;
  s.rsi = SI;
  s.rdi = DI;
  s.rbp = BP;
}

interface Form16 {
  name: string;
  mod: number;
  rm: number;
  disp: number[];
  /** Expected linear address. */
  at: number;
}

function forms16(): Form16[] {
  const base = [
    ['bx+si', DS, BX + SI],
    ['bx+di', DS, BX + DI],
    ['bp+si', SS, BP + SI],
    ['bp+di', SS, BP + DI],
    ['si', DS, SI],
    ['di', DS, DI],
    ['bp', SS, BP],
    ['bx', DS, BX],
  ] as const;
  const out: Form16[] = [];
  base.forEach(([name, seg, off], rm) => {
    if (rm === 6) out.push({ name: '[disp16]', mod: 0, rm: 6, disp: [0x34, 0x12], at: DS + 0x1234 });
    else out.push({ name: `[${name}]`, mod: 0, rm, disp: [], at: seg + off });
    out.push({ name: `[${name}+disp8 0x10]`, mod: 1, rm, disp: [0x10], at: seg + off + 0x10 });
    out.push({ name: `[${name}+disp8 -2]`, mod: 1, rm, disp: [0xfe], at: seg + off - 2 });
    out.push({ name: `[${name}+disp16 0x1234]`, mod: 2, rm, disp: [0x34, 0x12], at: seg + off + 0x1234 });
  });
  return out;
}

describe.each(FLAVORS)('16-bit ModRM addressing (%s memory)', (flavor) => {
  for (const f of forms16()) {
    test(`mov ax, ${f.name} reads linear 0x${f.at.toString(16)}`, () => {
      const vm = makeVm(flavor, [0x8b, (f.mod << 6) | (0 << 3) | f.rm, ...f.disp, 0xf4]);
      setRegs(vm);
      vm.ram.set([0xcd, 0xab], f.at);
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rax).toBe(0xabcd);
    });

    test(`mov ${f.name}, cx writes linear 0x${f.at.toString(16)}; mov dl, byte ${f.name} reads it back`, () => {
      const vm = makeVm(flavor, [0x89, (f.mod << 6) | (1 << 3) | f.rm, ...f.disp, 0x8a, (f.mod << 6) | (2 << 3) | f.rm, ...f.disp, 0xf4]);
      setRegs(vm);
      vm.state.rcx = 0x5a17;
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(word(vm.ram, f.at)).toBe(0x5a17);
      expect(vm.state.rdx & 0xff).toBe(0x17);
      // Nothing else was written.
      const written = [...vm.ram.keys()].filter((i) => vm.ram[i] !== 0 && (i < 0x1000 || i > 0x1010));
      expect(written).toEqual([f.at, f.at + 1]);
    });
  }

  test('offsets wrap at 64 KiB within the segment', () => {
    // mov ax,[bx+si+0x20] with bx+si = 0xfff0 → offset 0x0010
    const vm = makeVm(flavor, [0x8b, 0x40, 0x20, 0xf4]);
    setRegs(vm);
    vm.state.rbx = 0xffe0;
    vm.state.rsi = 0x0010;
    vm.ram.set([0x11, 0x22], DS + 0x10);
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    expect(vm.state.rax).toBe(0x2211);
  });

  test.each([
    ['es:', 0x26, 'es', 0x08000],
    ['cs:', 0x2e, 'cs', 0x00000],
    ['ss:', 0x36, 'ss', SS],
    ['ds:', 0x3e, 'ds', DS],
    ['fs:', 0x64, 'fs', 0x0c000],
    ['gs:', 0x65, 'gs', 0x0e000],
  ] as const)('segment override %s applies to [bp+0] too', (_name, prefix, seg, base) => {
    const vm = makeVm(flavor, [prefix, 0x8b, 0x46, 0x00, prefix, 0x8b, 0x0f, 0xf4]);
    setRegs(vm);
    if (seg === 'es' || seg === 'fs' || seg === 'gs') vm.state[seg].loadRealMode(base >> 4);
    vm.ram.set([0x01, 0x02], base + BP);
    vm.ram.set([0x03, 0x04], base + BX);
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    expect(vm.state.rax & 0xffff).toBe(0x0201);
    expect(vm.state.rcx & 0xffff).toBe(0x0403);
  });

  test('KVM_SET_SREGS-style bases are used as given (base need not be selector × 16)', () => {
    const vm = makeVm(flavor, [0x8b, 0x07, 0xf4]);
    setRegs(vm);
    vm.state.ds.base = 0x12345;
    vm.state.ds.selector = 0;
    vm.ram.set([0x99, 0x88], 0x12345 + BX);
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    expect(vm.state.rax).toBe(0x8899);
  });

  test.each([
    ['[ebx]', [0x03], DS + 0x100],
    ['[esi+ecx*4]', [0x04, 0x8e], DS + 0x20 + 4 * 0x30],
    ['[esp+8]', [0x44, 0x24, 0x08], SS + 0x7000 + 8],
    ['[ebp-4]', [0x45, 0xfc], SS + 0x400 - 4],
    ['[disp32]', [0x05, ...le(0x1234, 4)], DS + 0x1234],
    ['[disp32] via SIB, no base, no index', [0x04, 0x25, ...le(0x2345, 4)], DS + 0x2345],
    ['[ebx+edi*2+0x100]', [0x84, 0x7b, ...le(0x100, 4)], DS + 0x100 + 2 * 3 + 0x100],
  ] as const)('32-bit addressing (0x67) %s', (_name, modrmEtc, at) => {
    const vm = makeVm(flavor, [0x67, 0x8b, ...modrmEtc, 0xf4]);
    setRegs(vm);
    vm.state.rcx = 0x30;
    vm.state.rsp = 0x7000;
    vm.ram.set([0xef, 0xbe], at);
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    expect(vm.state.rax).toBe(0xbeef);
  });

  test.each([
    ['lea ax,[bx+si-2]', [0x8d, 0x40, 0xfe], 0x011e],
    ['lea ax,[0x1234]', [0x8d, 0x06, 0x34, 0x12], 0x1234],
    ['lea ax,[bp+di+0x7000]', [0x8d, 0x83, 0x00, 0x70], 0x7403],
    ['lea ax,[bx-0x200] (wraps)', [0x8d, 0x87, 0x00, 0xfe], 0xff00],
    ['lea eax,[esi+ecx*8+4] (66 67)', [0x66, 0x67, 0x8d, 0x44, 0xce, 0x04], 0x20 + 8 * 0x30 + 4],
  ] as const)('%s', (_name, code, want) => {
    const vm = makeVm(flavor, [...code, 0xf4]);
    setRegs(vm);
    vm.state.rcx = 0x30;
    vm.state.rax = 0xffff0000;
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    expect(vm.state.rax).toBe(code[0] === 0x66 ? want : 0xffff0000 + want);
  });
});

describe.each(FLAVORS)('Jcc (%s memory)', (flavor) => {
  const CF = 0x1, PF = 0x4, ZF = 0x40, SF = 0x80, OF = 0x800;
  const conditions: [string, (f: number) => boolean][] = [
    ['O', (f) => (f & OF) !== 0],
    ['NO', (f) => (f & OF) === 0],
    ['B', (f) => (f & CF) !== 0],
    ['AE', (f) => (f & CF) === 0],
    ['E', (f) => (f & ZF) !== 0],
    ['NE', (f) => (f & ZF) === 0],
    ['BE', (f) => (f & (CF | ZF)) !== 0],
    ['A', (f) => (f & (CF | ZF)) === 0],
    ['S', (f) => (f & SF) !== 0],
    ['NS', (f) => (f & SF) === 0],
    ['P', (f) => (f & PF) !== 0],
    ['NP', (f) => (f & PF) === 0],
    ['L', (f) => ((f & SF) !== 0) !== ((f & OF) !== 0)],
    ['GE', (f) => ((f & SF) !== 0) === ((f & OF) !== 0)],
    ['LE', (f) => (f & ZF) !== 0 || ((f & SF) !== 0) !== ((f & OF) !== 0)],
    ['G', (f) => (f & ZF) === 0 && ((f & SF) !== 0) === ((f & OF) !== 0)],
  ];
  const combos: number[] = [];
  for (let m = 0; m < 32; m++) {
    combos.push((m & 1 ? CF : 0) | (m & 2 ? PF : 0) | (m & 4 ? ZF : 0) | (m & 8 ? SF : 0) | (m & 16 ? OF : 0));
  }

  conditions.forEach(([name, taken], cc) => {
    test(`J${name} rel8 and rel16, taken and not taken, for all 32 flag combinations`, () => {
      for (const f of combos) {
        const short = makeVm(flavor, [0x70 + cc, 0x10]);
        short.state.rflags = 0x2 | f;
        short.run(1);
        expect(short.state.rip, `J${name} rel8 flags ${f.toString(16)}`).toBe(taken(f) ? 0x1012 : 0x1002);

        const near = makeVm(flavor, [0x0f, 0x80 + cc, 0x00, 0xf0]); // rel16 −0x1000
        near.state.rflags = 0x2 | f;
        near.run(1);
        expect(near.state.rip, `J${name} rel16 flags ${f.toString(16)}`).toBe(taken(f) ? 0x0004 : 0x1004);
      }
    });
  });

  test('backward jumps and IP wrap-around', () => {
    const back = makeVm(flavor, [0x90, 0x90, 0x74, 0xfc]); // jz -4 → 0x1000
    back.state.rip = 0x1002;
    back.state.rflags = 0x2 | ZF;
    back.run(1);
    expect(back.state.rip).toBe(0x1000);

    const wrap = makeVm(flavor, [0xeb, 0x7f], { at: 0xffa0, ramSize: 0x20000 }); // jmp +0x7f from 0xffa2 → 0x0021
    wrap.run(1);
    expect(wrap.state.rip).toBe(0x0021);

    const near = makeVm(flavor, [0xe9, 0xfd, 0xef]); // jmp rel16 −0x1003 → 0x0000
    near.run(1);
    expect(near.state.rip).toBe(0x0000);
  });
});
