/**
 * The rest of the instruction set, one behaviour per test, values worked out by hand from the SDM Vol. 2
 * instruction pages: data movement, the stack and control transfer, string instructions, shifts and
 * rotates, multiply/divide (with #DE delivered through the real-mode IVT), software interrupts and IRET,
 * flag instructions, segment loads, and sizes (8-bit high registers, 0x66 for 32-bit operands).
 */

import { describe, expect, test } from 'vitest';
import { GuestExitReason, type GuestCpuState } from '../../src/guest/index.js';
import { FLAVORS, le, makeVm, word, type Flavor, type Vm } from './helpers.js';

const CF = 0x1, PF = 0x4, AF = 0x10, ZF = 0x40, SF = 0x80, IF = 0x200, DF = 0x400, OF = 0x800;

/** Runs `code` (then HLT) with registers preset; returns the VM after the HLT exit. */
function exec(flavor: Flavor, code: readonly number[], preset: (s: GuestCpuState, vm: Vm) => void = () => {}): Vm {
  const vm = makeVm(flavor, [...code, 0xf4]);
  vm.state.rflags = 0x2;
  preset(vm.state, vm);
  expect(vm.run()).toBe(GuestExitReason.Hlt);
  return vm;
}

/** Points IVT entry `vector` at 0000:`offset`. */
function vector(vm: Vm, n: number, offset: number, segment = 0): void {
  vm.ram.set([...le(offset, 2), ...le(segment, 2)], n * 4);
}

describe.each(FLAVORS)('instructions (%s memory)', (flavor) => {
  describe('registers and data movement', () => {
    test('8-bit high registers: mov ah,imm; add ah,bl; mov ch,ah', () => {
      const vm = exec(flavor, [0xb4, 0x12, 0x00, 0xdc, 0x88, 0xe5], (s) => { s.rax = 0xabcd00ff; s.rbx = 0x0021; s.rcx = 0x7777; });
      expect(vm.state.rax).toBe(0xabcd33ff);
      expect(vm.state.rcx).toBe(0x3377);
    });

    test('16-bit writes keep the upper bits; 32-bit writes (0x66) zero-extend', () => {
      const vm = exec(flavor, [0xb8, 0x34, 0x12, 0x66, 0xbb, 0x78, 0x56, 0x34, 0x12], (s) => { s.rax = 2 ** 40 + 0xffff; s.rbx = 2 ** 40; });
      expect(vm.state.rax).toBe(2 ** 40 + 0x1234);
      expect(vm.state.rbx).toBe(0x12345678);
    });

    test('mov r/m, imm (C6/C7) with displacement before the immediate', () => {
      const vm = exec(flavor, [0x66, 0xc7, 0x07, ...le(0xdeadbeef, 4), 0xc6, 0x47, 0x02, 0xaa, 0xc7, 0x47, 0x04, 0x34, 0x12], (s) => { s.rbx = 0x2000; });
      expect([...vm.ram.slice(0x2000, 0x2006)]).toEqual([0xef, 0xbe, 0xaa, 0xde, 0x34, 0x12]);
    });

    test('mov moffs: A0–A3 through DS and with an override', () => {
      const vm = exec(flavor, [0xa0, 0x00, 0x01, 0xa1, 0x01, 0x01, 0xa2, 0x10, 0x01, 0x26, 0xa3, 0x20, 0x01], (s, v) => {
        s.ds.loadRealMode(0x1000);
        s.es.loadRealMode(0x2000);
        v.ram.set([0x11, 0x22, 0x33], 0x10100);
      });
      expect(vm.state.rax & 0xffff).toBe(0x3322);
      expect(vm.ram[0x10110]).toBe(0x22);
      expect(word(vm.ram, 0x20120)).toBe(0x3322);
    });

    test('xchg forms: 87, 86 (al/ah), 9x', () => {
      const vm = exec(flavor, [0x87, 0xd8, 0x86, 0xc4, 0x91], (s) => { s.rax = 0x1122; s.rbx = 0x3344; s.rcx = 0x5566; });
      // xchg ax,bx → ax=3344 bx=1122; xchg al,ah → ax=4433; xchg cx,ax → cx=4433 ax=5566
      expect([vm.state.rax, vm.state.rbx, vm.state.rcx]).toEqual([0x5566, 0x1122, 0x4433]);
    });

    test('xchg with memory', () => {
      const vm = exec(flavor, [0x87, 0x07], (s, v) => { s.rbx = 0x2000; s.rax = 0xaaaa; v.ram.set([0x55, 0x55], 0x2000); });
      expect(vm.state.rax).toBe(0x5555);
      expect(word(vm.ram, 0x2000)).toBe(0xaaaa);
    });

    test('movzx/movsx (0F B6/B7/BE/BF)', () => {
      const vm = exec(flavor, [0x0f, 0xb6, 0xc3, 0x0f, 0xbe, 0xcb, 0x66, 0x0f, 0xbf, 0xd6, 0x66, 0x0f, 0xb7, 0xfe], (s) => {
        s.rbx = 0x80; s.rsi = 0x8001;
      });
      expect(vm.state.rax).toBe(0x0080);
      expect(vm.state.rcx).toBe(0xff80);
      expect(vm.state.rdx).toBe(0xffff8001);
      expect(vm.state.rdi).toBe(0x8001);
    });

    test('cbw, cwd, cwde, cdq', () => {
      const a = exec(flavor, [0x98, 0x99], (s) => { s.rax = 0x1280; s.rdx = 0x1234; });
      expect([a.state.rax, a.state.rdx]).toEqual([0xff80, 0xffff]);
      const b = exec(flavor, [0x66, 0x98, 0x66, 0x99], (s) => { s.rax = 0x8000; s.rdx = 0x1234; });
      expect([b.state.rax, b.state.rdx]).toEqual([0xffff8000, 0xffffffff]);
      const c = exec(flavor, [0x98, 0x99], (s) => { s.rax = 0xff7f; s.rdx = 0xffff; });
      expect([c.state.rax, c.state.rdx]).toEqual([0x007f, 0]);
    });

    test('xlat', () => {
      const vm = exec(flavor, [0xd7], (s, v) => { s.rbx = 0x2000; s.rax = 5; v.ram[0x2005] = 0x99; });
      expect(vm.state.rax).toBe(0x99);
    });

    test('setcc (0F 9x) to a register and to memory', () => {
      const vm = exec(flavor, [0x0f, 0x94, 0xc0, 0x0f, 0x95, 0x07, 0x0f, 0x9c, 0xc1], (s) => {
        s.rflags = 0x2 | ZF | SF; s.rax = 0xff00; s.rbx = 0x2000; s.rcx = 0xffff;
      });
      expect(vm.state.rax).toBe(0xff01);
      expect(vm.ram[0x2000]).toBe(0);
      expect(vm.state.rcx).toBe(0xff01); // SF≠OF → less
    });

    test('test, not, neg', () => {
      const t = exec(flavor, [0xa8, 0x80, 0x85, 0xc3], (s) => { s.rax = 0x0080; s.rbx = 0x0100; s.rflags = 0x2 | CF | OF; });
      expect(t.state.rflags).toBe(0x2 | ZF | PF);
      const n = exec(flavor, [0xf7, 0xd0, 0xf6, 0xdb], (s) => { s.rax = 0x00f0; s.rbx = 0x0001; });
      expect(n.state.rax).toBe(0xff0f);
      expect(n.state.rbx).toBe(0x00ff);
      expect(n.state.rflags).toBe(0x2 | CF | PF | AF | SF); // neg 1 = 0 − 1
      const z = exec(flavor, [0xf7, 0xdb], (s) => { s.rbx = 0; s.rflags = 0x2 | CF; });
      expect(z.state.rflags).toBe(0x2 | ZF | PF); // neg 0 clears CF
    });
  });

  describe('stack and control transfer', () => {
    test('push/pop registers, immediates, PUSH SP', () => {
      const vm = exec(flavor, [0x50, 0x6a, 0xfe, 0x68, 0x34, 0x12, 0x54, 0x5b, 0x59, 0x5a, 0x5e], (s) => { s.rax = 0xaaaa; });
      expect(vm.state.rbx).toBe(0x7ffa); // SP as it was before PUSH SP
      expect(vm.state.rcx).toBe(0x1234);
      expect(vm.state.rdx).toBe(0xfffe);
      expect(vm.state.rsi).toBe(0xaaaa);
      expect(vm.state.rsp).toBe(0x8000);
      expect(word(vm.ram, 0x7ffe)).toBe(0xaaaa);
    });

    test('the stack lives in SS and SP wraps at 64 KiB', () => {
      const vm = exec(flavor, [0x50, 0x5b], (s) => { s.ss.loadRealMode(0x2000); s.rsp = 0; s.rax = 0x4321; });
      expect(word(vm.ram, 0x2fffe)).toBe(0x4321);
      expect(vm.state.rbx).toBe(0x4321);
      expect(vm.state.rsp).toBe(0);
    });

    test('32-bit push/pop with 0x66', () => {
      const vm = exec(flavor, [0x66, 0x50, 0x66, 0x5b], (s) => { s.rax = 0x89abcdef; });
      expect(vm.state.rbx).toBe(0x89abcdef);
      expect(vm.state.rsp).toBe(0x8000);
      expect([...vm.ram.slice(0x7ffc, 0x8000)]).toEqual([0xef, 0xcd, 0xab, 0x89]);
    });

    test('segment push/pop and mov sreg set base = selector × 16', () => {
      const vm = exec(flavor, [0x8e, 0xd8, 0x1e, 0x07, 0x8c, 0xc3, 0x0f, 0xa0, 0x0f, 0xa9], (s) => {
        s.rax = 0x1234; s.fs.loadRealMode(0x0777);
      });
      expect(vm.state.ds.selector).toBe(0x1234);
      expect(vm.state.ds.base).toBe(0x12340);
      expect(vm.state.es.base).toBe(0x12340);
      expect(vm.state.rbx).toBe(0x1234);
      expect(vm.state.gs.base).toBe(0x7770);
    });

    test('les/lds load a far pointer', () => {
      const vm = exec(flavor, [0xc4, 0x1e, 0x00, 0x20, 0xc5, 0x36, 0x04, 0x20], (_s, v) => {
        v.ram.set([0x78, 0x56, 0x00, 0x01, 0x11, 0x00, 0x00, 0x02], 0x2000);
      });
      expect(vm.state.rbx).toBe(0x5678);
      expect(vm.state.es.base).toBe(0x1000);
      expect(vm.state.rsi).toBe(0x0011);
      expect(vm.state.ds.base).toBe(0x2000);
    });

    test('call rel16 / ret', () => {
      // 1000: call 1005 ; 1003: hlt ; 1004: nop ; 1005: inc bx ; 1006: ret
      const vm = makeVm(flavor, [0xe8, 0x02, 0x00, 0xf4, 0x90, 0x43, 0xc3]);
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rbx).toBe(1);
      expect(vm.state.rip).toBe(0x1004);
      expect(vm.state.rsp).toBe(0x8000);
      expect(word(vm.ram, 0x7ffe)).toBe(0x1003);
    });

    test('ret imm16 releases arguments', () => {
      // push 1; push 2; call 100a; hlt; ... 100a: ret 4
      const vm = makeVm(flavor, [0x6a, 0x01, 0x6a, 0x02, 0xe8, 0x01, 0x00, 0xf4, 0x90, 0xc2, 0x04, 0x00]);
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rsp).toBe(0x8000);
      expect(vm.state.rip).toBe(0x1008);
    });

    test('indirect near call and jmp (FF /2, FF /4)', () => {
      // mov ax,0x1010 ; call ax ; hlt ... 1010: mov word [0x2000],0x1020 ; jmp [0x2000] ... 1020: ret
      const code = new Array<number>(0x21).fill(0x90);
      code.splice(0, 6, 0xb8, 0x10, 0x10, 0xff, 0xd0, 0xf4);
      code.splice(0x10, 10, 0xc7, 0x06, 0x00, 0x20, 0x20, 0x10, 0xff, 0x26, 0x00, 0x20);
      code[0x20] = 0xc3;
      const vm = makeVm(flavor, code);
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rip).toBe(0x1006);
      expect(vm.state.rsp).toBe(0x8000);
    });

    test('far jmp, far call and retf load CS in real mode', () => {
      // 1000: jmp 0100:0008 (→ linear 1008) ; 1005: nop*3 ; 1008: call 0300:0000 ; 100d: hlt
      const vm = makeVm(flavor, [0xea, 0x08, 0x00, 0x00, 0x01, 0x90, 0x90, 0x90, 0x9a, 0x00, 0x00, 0x00, 0x03, 0xf4]);
      vm.ram.set([0x43, 0xcb], 0x3000); // inc bx ; retf
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.cs.selector).toBe(0x0100);
      expect(vm.state.cs.base).toBe(0x1000);
      expect(vm.state.rip).toBe(0x000e);
      expect(vm.state.rbx).toBe(1);
      expect(vm.state.rsp).toBe(0x8000);
    });

    test('far indirect jmp and call through memory (FF /5, FF /3)', () => {
      // call far [0x2000] ; hlt    — 0x2000 holds 0300:0000 ; 0x3000: jmp far [0x2004] → 0000:1005 (hlt)
      const vm = makeVm(flavor, [0xff, 0x1e, 0x00, 0x20, 0xf4, 0xf4]);
      vm.ram.set([0x00, 0x00, 0x00, 0x03, 0x05, 0x10, 0x00, 0x00], 0x2000);
      vm.ram.set([0xff, 0x2e, 0x04, 0x20], 0x3000);
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rip).toBe(0x1006);
      expect(vm.state.cs.base).toBe(0);
      expect(vm.state.rsp).toBe(0x7ffc);
      expect([word(vm.ram, 0x7ffc), word(vm.ram, 0x7ffe)]).toEqual([0x1004, 0x0000]);
    });

    test('loop, loope, loopne, jcxz', () => {
      // mov cx,3 ; l: inc ax ; loop l ; jcxz +1 ; hlt(skipped) ; ...
      const a = exec(flavor, [0xb9, 0x03, 0x00, 0x40, 0xe2, 0xfd, 0xe3, 0x01, 0xf4, 0x43]);
      expect(a.state.rax).toBe(3);
      expect(a.state.rbx).toBe(1);
      // loope continues while equal: l: inc bx ; cmp bx,1 ; loope l → equal once, then not → 2 iterations
      const b = exec(flavor, [0x43, 0x83, 0xfb, 0x01, 0xe1, 0xfa], (s) => { s.rcx = 5; });
      expect(b.state.rbx).toBe(2);
      expect(b.state.rcx).toBe(3);
      // loopne: l: inc ax ; cmp ax,3 ; loopne l → stops when ax==3
      const c = exec(flavor, [0x40, 0x3d, 0x03, 0x00, 0xe0, 0xfa], (s) => { s.rcx = 10; });
      expect(c.state.rax).toBe(3);
      expect(c.state.rcx).toBe(7);
    });

    test('enter-free frames: push bp; mov bp,sp; ...; leave', () => {
      const vm = exec(flavor, [0x55, 0x89, 0xe5, 0x83, 0xec, 0x10, 0xc9], (s) => { s.rbp = 0x1234; });
      expect(vm.state.rbp).toBe(0x1234);
      expect(vm.state.rsp).toBe(0x8000);
    });

    test('pusha/popa', () => {
      const vm = exec(flavor, [0x60, 0x31, 0xc0, 0x89, 0xc3, 0x89, 0xc1, 0x61], (s) => {
        s.rax = 1; s.rcx = 2; s.rdx = 3; s.rbx = 4; s.rbp = 6; s.rsi = 7; s.rdi = 8;
      });
      expect([vm.state.rax, vm.state.rcx, vm.state.rdx, vm.state.rbx, vm.state.rsp, vm.state.rbp, vm.state.rsi, vm.state.rdi])
        .toEqual([1, 2, 3, 4, 0x8000, 6, 7, 8]);
      expect(word(vm.ram, 0x8000 - 10)).toBe(0x8000); // the SP slot holds SP before PUSHA
    });

    test('int n / iret through the IVT; IF cleared in the handler and restored', () => {
      // sti ; int 0x21 ; hlt      handler at 0000:3000: pushf ; pop dx ; mov bl,0x55 ; iret
      const vm = makeVm(flavor, [0xfb, 0xcd, 0x21, 0xf4]);
      vector(vm, 0x21, 0x3000);
      vm.ram.set([0x9c, 0x5a, 0xb3, 0x55, 0xcf], 0x3000);
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rbx & 0xff).toBe(0x55);
      expect(vm.state.rdx & IF).toBe(0);
      expect(vm.state.rflags & IF).toBe(IF);
      expect(vm.state.rip).toBe(0x1004);
      expect(vm.state.rsp).toBe(0x8000);
      // The frame: IP, CS, FLAGS
      expect([word(vm.ram, 0x7ffa), word(vm.ram, 0x7ffc), word(vm.ram, 0x7ffe)]).toEqual([0x1003, 0, 0x202]);
    });

    test('the IVT is read at IDTR.base', () => {
      const vm = makeVm(flavor, [0xcc]); // int3
      vm.state.idtBase = 0x500;
      vm.ram.set([0x00, 0x30, 0x00, 0x00], 0x500 + 3 * 4);
      vm.ram[0x3000] = 0xf4;
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rip).toBe(0x3001);
    });
  });

  describe('string instructions', () => {
    test('movsb/movsw forward and backward (DF)', () => {
      const vm = exec(flavor, [0xa4, 0xfd, 0xa5], (s, v) => {
        s.rsi = 0x2000; s.rdi = 0x3000;
        v.ram.set([1, 2, 3, 4], 0x2000);
      });
      // movsb copies 1 → 0x3000, si=2001 di=3001; std; movsw copies [2001..2002] → [3001..3002], then −2
      expect([...vm.ram.slice(0x3000, 0x3003)]).toEqual([1, 2, 3]);
      expect([vm.state.rsi, vm.state.rdi]).toEqual([0x1fff, 0x2fff]);
      expect(vm.state.rflags & DF).toBe(DF);
    });

    test('rep movsw across segments; source override', () => {
      const vm = exec(flavor, [0xf3, 0x26, 0xa5], (s, v) => {
        s.es.loadRealMode(0x1000); s.rsi = 0x10; s.rdi = 0x20; s.rcx = 3;
        v.ram.set([1, 2, 3, 4, 5, 6], 0x10010);
      });
      expect([...vm.ram.slice(0x10020, 0x10026)]).toEqual([1, 2, 3, 4, 5, 6]);
      expect(vm.state.rcx).toBe(0);
    });

    test('rep with CX=0 does nothing', () => {
      const vm = exec(flavor, [0xf3, 0xaa], (s) => { s.rcx = 0; s.rdi = 0x2000; s.rax = 0xff; });
      expect(vm.ram[0x2000]).toBe(0);
      expect(vm.state.rdi).toBe(0x2000);
    });

    test('repe cmpsb stops at the first difference', () => {
      const vm = exec(flavor, [0xf3, 0xa6], (s, v) => {
        s.rsi = 0x2000; s.rdi = 0x3000; s.rcx = 10;
        v.ram.set([...'abcx'].map((c) => c.charCodeAt(0)), 0x2000);
        v.ram.set([...'abcy'].map((c) => c.charCodeAt(0)), 0x3000);
      });
      expect(vm.state.rcx).toBe(6);
      expect(vm.state.rsi).toBe(0x2004);
      expect(vm.state.rflags & (ZF | CF)).toBe(CF); // 'x' < 'y'
    });

    test('repne scasb finds a byte', () => {
      const vm = exec(flavor, [0xf2, 0xae], (s, v) => {
        s.rdi = 0x2000; s.rcx = 100; s.rax = 'x'.charCodeAt(0);
        v.ram.set([...'hello x'].map((c) => c.charCodeAt(0)), 0x2000);
      });
      expect(vm.state.rdi).toBe(0x2007);
      expect(vm.state.rcx).toBe(93);
      expect(vm.state.rflags & ZF).toBe(ZF);
    });

    test('lodsb/stosw', () => {
      const vm = exec(flavor, [0xac, 0xab], (s, v) => { s.rsi = 0x2000; s.rdi = 0x3000; s.rax = 0x1200; v.ram[0x2000] = 0x34; });
      expect(vm.state.rax).toBe(0x1234);
      expect(word(vm.ram, 0x3000)).toBe(0x1234);
      expect([vm.state.rsi, vm.state.rdi]).toEqual([0x2001, 0x3002]);
    });
  });

  describe('shifts and rotates', () => {
    test.each([
      // name, code, value (in AX/AL), CF in, expected value, flags mask to check, expected flags, CL
      ['shl al,1', [0xd0, 0xe0], 0x81, 0, 0x02, CF | OF | ZF | SF | PF, CF | OF, 1],
      ['shr ax,4', [0xc1, 0xe8, 0x04], 0x1234, 0, 0x0123, CF | OF | ZF | SF | PF, 0, 1],
      ['sar al,1', [0xd0, 0xf8], 0x81, 0, 0xc0, CF | OF | ZF | SF | PF, CF | SF | PF, 1],
      ['rol ax,1', [0xd1, 0xc0], 0x8001, 0, 0x0003, CF | OF, CF | OF, 1],
      ['ror al,cl', [0xd2, 0xc8], 0x01, 0, 0x80, CF | OF, CF | OF, 1],
      ['rcl al,1', [0xd0, 0xd0], 0x80, 0, 0x00, CF | OF, CF | OF, 1],
      ['rcr al,1', [0xd0, 0xd8], 0x01, 1, 0x80, CF | OF, CF | OF, 1],
      ['shl ax,cl (cl=16)', [0xd3, 0xe0], 0x0001, 0, 0x0000, CF | ZF | PF, CF | ZF | PF, 16],
      ['shr ax,cl (cl=0x21 masks to 1)', [0xd3, 0xe8], 0x0003, 0, 0x0001, CF | ZF, CF, 0x21],
      ['shl al,0 leaves flags', [0xc0, 0xe0, 0x00], 0x81, 1, 0x81, CF | OF | ZF | SF | PF, CF, 1],
      ['rol al,8 sets CF from bit 0', [0xc0, 0xc0, 0x08], 0x81, 0, 0x81, CF, CF, 1],
      ['rcl ax,17 is a no-op rotate', [0xc1, 0xd0, 0x11], 0x1234, 1, 0x1234, CF, CF, 1],
      ['shr eax,31 (0x66)', [0x66, 0xc1, 0xe8, 0x1f], 0x80000000, 0, 0x1, CF | ZF, 0, 1],
    ] as const)('%s', (_name, code, v, cin, want, mask, flags, cl) => {
      const vm = exec(flavor, code, (s) => { s.rax = v; s.rcx = cl; s.rflags = 0x2 | cin; });
      expect(vm.state.rax).toBe(want);
      expect(vm.state.rflags & mask).toBe(flags);
    });
  });

  describe('multiply and divide', () => {
    test.each([
      ['mul bl', [0xf6, 0xe3], 0x80, 2, 0, 0x0100, 0, CF | OF],
      ['mul bx', [0xf7, 0xe3], 0x1234, 0x100, 0, 0x3400, 0x12, CF | OF],
      ['mul bx (fits)', [0xf7, 0xe3], 0x1234, 2, 0, 0x2468, 0, 0],
      ['mul ebx', [0x66, 0xf7, 0xe3], 0xffffffff, 2, 0, 0xfffffffe, 1, CF | OF],
      ['imul bl', [0xf6, 0xeb], 0xff, 2, 0, 0xfffe, 0, 0],
      ['imul bx', [0xf7, 0xeb], 0x8000, 2, 0, 0x0000, 0xffff, CF | OF],
      ['imul ebx', [0x66, 0xf7, 0xeb], 0xffffffff, 0xffffffff, 0, 1, 0, 0],
      ['div bl', [0xf6, 0xf3], 0x0107, 0x10, 0, 0x0710, 0, 0],
      ['div bx', [0xf7, 0xf3], 0x0000, 3, 1, 0x5555, 1, 0],
      ['div ebx', [0x66, 0xf7, 0xf3], 0, 3, 1, 0x55555555, 1, 0],
      ['idiv bl', [0xf6, 0xfb], 0xfff9, 2, 0, 0xfffd, 0, 0],
      ['idiv bx', [0xf7, 0xfb], 0x7960, 7, 0xfffe, 0xc833, 0xfffb, 0],
      ['idiv ebx', [0x66, 0xf7, 0xfb], 0xfffffff9, 2, 0xffffffff, 0xfffffffd, 0xffffffff, 0],
    ] as const)('%s', (_name, code, ax, bx, dx, wantAx, wantDx, flags) => {
      const vm = exec(flavor, code, (s) => { s.rax = ax; s.rbx = bx; s.rdx = dx; });
      expect(vm.state.rax).toBe(wantAx);
      expect(vm.state.rdx).toBe(wantDx);
      expect(vm.state.rflags & (CF | OF)).toBe(flags);
    });

    test.each([
      ['imul ax,bx,-3 (6B)', [0x6b, 0xc3, 0xfd], 100, 0xfed4, 0],
      ['imul ax,bx,0x100 (69)', [0x69, 0xc3, 0x00, 0x01], 0x200, 0x0000, CF | OF],
      ['imul ax,bx (0F AF)', [0x0f, 0xaf, 0xc3], 3, 0xfffa, 0],
    ] as const)('%s', (_name, code, bx, want, flags) => {
      const vm = exec(flavor, code, (s) => { s.rax = 0xfffe; s.rbx = bx; });
      expect(vm.state.rax).toBe(want);
      expect(vm.state.rflags & (CF | OF)).toBe(flags);
    });

    test.each([
      ['divide by zero', [0xf6, 0xf3], 0x0010, 0],
      ['quotient too large', [0xf6, 0xf3], 0x1000, 1],
      ['idiv quotient too large', [0xf7, 0xfb], 0x0000, 1],
    ] as const)('#DE (%s) is delivered through IVT vector 0 with the faulting IP', (_name, code, ax, bx) => {
      const vm = makeVm(flavor, [...code, 0xf4]);
      vm.state.rax = ax;
      vm.state.rbx = bx;
      vm.state.rdx = 0x8000;
      vm.state.rflags = 0x2 | IF;
      vector(vm, 0, 0x3000);
      vm.ram[0x3000] = 0xf4;
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rip).toBe(0x3001);
      expect(vm.state.rax).toBe(ax);
      expect(word(vm.ram, 0x7ffa)).toBe(0x1000);
      expect(word(vm.ram, 0x7ffe)).toBe(0x202);
      expect(vm.state.rflags & IF).toBe(0);
    });
  });

  describe('flag instructions', () => {
    test('clc/stc/cmc/cld/std/cli/sti', () => {
      const vm = exec(flavor, [0xf9, 0xf5, 0xf5, 0xfd, 0xfb]);
      expect(vm.state.rflags).toBe(0x2 | CF | DF | IF);
      const v2 = exec(flavor, [0xf8, 0xfc, 0xfa], (s) => { s.rflags = 0x2 | CF | DF | IF; });
      expect(v2.state.rflags).toBe(0x2);
    });

    test('pushf/popf keep bit 1 set and bits 3, 5, 15 clear', () => {
      const vm = exec(flavor, [0x50, 0x9d, 0x9c, 0x5b], (s) => { s.rax = 0xffff; });
      expect(vm.state.rflags).toBe(0x7fd7);
      expect(vm.state.rbx).toBe(0x7fd7);
    });

    test('lahf/sahf', () => {
      const vm = exec(flavor, [0x9f, 0x88, 0xe3, 0xb4, 0xff, 0x9e], (s) => { s.rflags = 0x2 | CF | ZF | OF; });
      expect(vm.state.rbx & 0xff).toBe(0x43);
      expect(vm.state.rflags).toBe(0x2 | CF | PF | AF | ZF | SF | OF);
    });
  });

  describe('#UD for encodings the processor rejects', () => {
    test.each([
      ['ud2', [0x0f, 0x0b]],
      ['mov cs,ax', [0x8e, 0xc8]],
      ['lea ax,bx', [0x8d, 0xc3]],
      ['les ax,bx', [0xc4, 0xc3]],
      ['FF /7', [0xff, 0xf8]],
    ] as const)('%s raises #UD through IVT vector 6', (_name, code) => {
      const vm = makeVm(flavor, [...code, 0xf4]);
      vector(vm, 6, 0x3000);
      vm.ram[0x3000] = 0xf4;
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rip).toBe(0x3001);
      expect(word(vm.ram, 0x7ffa)).toBe(0x1000);
    });
  });

  describe('decimal adjust and INTO (SDM Vol. 2A DAA, DAS, AAA, AAS, AAM, AAD, INTO)', () => {
    const STATUS = CF | PF | AF | ZF | SF;
    test.each([
      // [name, code, AL/AX in, flags in, AX out, status flags out]
      ['daa: 0x09 + 0x08 = 0x11 → 0x17', [0x27], 0x0011, AF, 0x0017, AF | PF],
      ['daa: 0x99 + 0x01 = 0x9a → 0x00, CF', [0x27], 0x009a, 0, 0x0000, CF | AF | ZF | PF],
      ['daa: CF in → +0x60', [0x27], 0x0012, CF, 0x0072, CF | PF],
      ['das: 0x10 − 0x01 = 0x0f → 0x09', [0x2f], 0x000f, AF, 0x0009, AF | PF],
      ['das: 0x00 − 0x01 = 0xff, CF → 0x99', [0x2f], 0x00ff, CF | AF, 0x0099, CF | AF | SF | PF],
      ['aaa: AL 0x0b → AX + 0x106, AL & 0x0f', [0x37], 0x020b, 0, 0x0301, CF | AF],
      ['aaa: AL 0xfa → carries into AH (AX + 0x106)', [0x37], 0x00fa, 0, 0x0200, CF | AF | ZF | PF],
      ['aaa: no adjust clears CF, masks AL', [0x37], 0x0135, CF, 0x0105, PF],
      ['aas: AL 0x0b → AL − 6, AH − 1', [0x3f], 0x020b, 0, 0x0105, CF | AF | PF],
      ['aas: AF in, AH 0 → AH 0xff', [0x3f], 0x0003, AF, 0xff0d, CF | AF],
      ['aam 10: 0x4f = 79 → AH 7, AL 9', [0xd4, 0x0a], 0x124f, 0, 0x0709, PF],
      ['aam 16: unpacks nibbles', [0xd4, 0x10], 0x00a3, 0, 0x0a03, PF],
      ['aad 10: AH 7, AL 9 → 79', [0xd5, 0x0a], 0x0709, 0, 0x004f, 0],
      ['aad 7: wraps AL, AH 0', [0xd5, 0x07], 0xff80, 0, 0x0079, 0],
    ] as const)('%s', (_name, code, ax, flagsIn, axOut, flagsOut) => {
      const vm = exec(flavor, code, (st) => { st.rax = 0x12340000 + ax; st.rflags = 0x2 | flagsIn; });
      expect((vm.state.rax & 0xffff).toString(16)).toBe(axOut.toString(16));
      expect(vm.state.rax >>> 16).toBe(0x1234);
      expect(vm.state.rflags & STATUS).toBe(flagsOut);
    });

    test('aam 0 raises #DE through IVT vector 0 with the faulting IP', () => {
      const vm = makeVm(flavor, [0xd4, 0x00, 0xf4]);
      vm.state.rax = 0x55;
      vm.state.rflags = 0x2;
      vector(vm, 0, 0x3000);
      vm.ram[0x3000] = 0xf4;
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rip).toBe(0x3001);
      expect(word(vm.ram, 0x7ffa)).toBe(0x1000);
      expect(vm.state.rax).toBe(0x55);
    });

    test('into: nothing with OF = 0; with OF = 1 a trap through vector 4 (the next instruction\'s IP pushed)', () => {
      const clear = exec(flavor, [0xce]);
      expect(clear.state.rip).toBe(0x1002);
      const vm = makeVm(flavor, [0xce, 0xf4]);
      vm.state.rflags = 0x2 | OF;
      vector(vm, 4, 0x3000);
      vm.ram[0x3000] = 0xf4;
      expect(vm.run()).toBe(GuestExitReason.Hlt);
      expect(vm.state.rip).toBe(0x3001);
      expect(word(vm.ram, 0x7ffa)).toBe(0x1001);
      expect(word(vm.ram, 0x7ffe)).toBe(0x802);
    });
  });
});
