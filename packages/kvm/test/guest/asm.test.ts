/**
 * The asm16 assembler: byte-exact encodings of every supported form (checked by hand against the opcode
 * tables of the Intel SDM Vol. 2, Appendix A, and each instruction's page), labels in both directions with the
 * short/near rule, the errors, the existing byte-array guests re-written with asm16, and assembled programs run
 * in the interpreter (on both memory flavours) — including a property test that random sequences of supported
 * instructions execute one instruction each, with no #UD and no emulation failure.
 */

import { UsageError } from '@vac/core';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { Asm16, GuestExitReason, GuestIoDirection, asm16, type Asm16Reg16, type Asm16Reg8 } from '../../src/guest/index.js';
import { HELLO, SPIN } from '../module/helpers.js';
import { FLAVORS, makeVm, word as word16, type Vm } from './helpers.js';

const a = (): Asm16 => asm16();

/** Expects `f` to throw a UsageError whose message matches `re`. */
function usage(f: () => unknown, re: RegExp): void {
  let thrown: unknown;
  try {
    f();
  } catch (e) {
    thrown = e;
  }
  expect(thrown).toBeInstanceOf(UsageError);
  expect((thrown as Error).message).toMatch(re);
}

describe('encodings (SDM Vol. 2)', () => {
  // [what, code, expected bytes]: each line's comment names the opcode form.
  const cases: Array<[string, Asm16, number[]]> = [
    // MOV (Vol. 2B): B0+rb ib, B8+rw iw, 88 /r, 89 /r, 8E /r, 8C /r
    ['mov al, 0x76', a().mov('al', 0x76), [0xb0, 0x76]], // B0+rb ib
    ['mov bh, -1', a().mov('bh', -1), [0xb7, 0xff]], // B0+7 ib, two's complement
    ['mov dx, 0x3f8', a().mov('dx', 0x3f8), [0xba, 0xf8, 0x03]], // B8+rw iw
    ['mov di, 0xffff', a().mov('di', 0xffff), [0xbf, 0xff, 0xff]],
    ['mov sp, -2', a().mov('sp', -2), [0xbc, 0xfe, 0xff]],
    ['mov al, bl', a().mov('al', 'bl'), [0x88, 0xd8]], // 88 /r: ModRM 11 011(bl) 000(al)
    ['mov ch, ah', a().mov('ch', 'ah'), [0x88, 0xe5]], // 11 100 101
    ['mov bx, ax', a().mov('bx', 'ax'), [0x89, 0xc3]], // 89 /r: 11 000 011
    ['mov si, sp', a().mov('si', 'sp'), [0x89, 0xe6]], // 11 100 110
    ['mov ds, ax', a().mov('ds', 'ax'), [0x8e, 0xd8]], // 8E /r: 11 011(ds) 000
    ['mov es, bx', a().mov('es', 'bx'), [0x8e, 0xc3]], // 11 000(es) 011
    ['mov ss, cx', a().mov('ss', 'cx'), [0x8e, 0xd1]],
    ['mov fs, dx', a().mov('fs', 'dx'), [0x8e, 0xe2]],
    ['mov gs, si', a().mov('gs', 'si'), [0x8e, 0xee]],
    ['mov ax, cs', a().mov('ax', 'cs'), [0x8c, 0xc8]], // 8C /r: 11 001(cs) 000
    ['mov di, ds', a().mov('di', 'ds'), [0x8c, 0xdf]],
    // ADD/OR/ADC/SBB/AND/SUB/XOR/CMP (Vol. 2A/2B): op*8+0 /r, +1 /r, +4 ib, +5 iw, 80 /d ib, 81 /d iw, 83 /d ib
    ['add al, bl', a().add('al', 'bl'), [0x00, 0xd8]], // 00 /r
    ['add bx, ax', a().add('bx', 'ax'), [0x01, 0xc3]], // 01 /r
    ['add al, 0x30', a().add('al', 0x30), [0x04, 0x30]], // 04 ib
    ['add ax, 0x1234', a().add('ax', 0x1234), [0x05, 0x34, 0x12]], // 05 iw
    ['add ax, 1', a().add('ax', 1), [0x83, 0xc0, 0x01]], // 83 /0 ib (sign-extended imm8, as NASM)
    ['add cl, 5', a().add('cl', 5), [0x80, 0xc1, 0x05]], // 80 /0 ib
    ['add cx, 0x100', a().add('cx', 0x100), [0x81, 0xc1, 0x00, 0x01]], // 81 /0 iw
    ['add cx, -1', a().add('cx', -1), [0x83, 0xc1, 0xff]], // 83 /0 ib
    ['add cx, 0xff80', a().add('cx', 0xff80), [0x83, 0xc1, 0x80]], // 0xff80 = sext(0x80)
    ['add cx, 0x80', a().add('cx', 0x80), [0x81, 0xc1, 0x80, 0x00]], // 0x80 ≠ sext(0x80): iw
    ['or al, ah', a().or('al', 'ah'), [0x08, 0xe0]], // 08 /r
    ['or dx, bx', a().or('dx', 'bx'), [0x09, 0xda]], // 09 /r
    ['or al, 1', a().or('al', 1), [0x0c, 0x01]], // 0C ib
    ['or ax, 0x8000', a().or('ax', 0x8000), [0x0d, 0x00, 0x80]], // 0D iw
    ['or bl, 0x80', a().or('bl', 0x80), [0x80, 0xcb, 0x80]], // 80 /1 ib
    ['adc al, cl', a().adc('al', 'cl'), [0x10, 0xc8]], // 10 /r
    ['adc dx, 0', a().adc('dx', 0), [0x83, 0xd2, 0x00]], // 83 /2 ib
    ['adc ax, 0x300', a().adc('ax', 0x300), [0x15, 0x00, 0x03]], // 15 iw
    ['sbb bx, cx', a().sbb('bx', 'cx'), [0x19, 0xcb]], // 19 /r
    ['sbb al, 2', a().sbb('al', 2), [0x1c, 0x02]], // 1C ib
    ['and ax, 0xff00', a().and('ax', 0xff00), [0x25, 0x00, 0xff]], // 25 iw
    ['and al, 0x0f', a().and('al', 0x0f), [0x24, 0x0f]], // 24 ib
    ['and si, 0x7fff', a().and('si', 0x7fff), [0x81, 0xe6, 0xff, 0x7f]], // 81 /4 iw
    ['and dh, dl', a().and('dh', 'dl'), [0x20, 0xd6]], // 20 /r
    ['sub al, 0x17', a().sub('al', 0x17), [0x2c, 0x17]], // 2C ib
    ['sub sp, 16', a().sub('sp', 16), [0x83, 0xec, 0x10]], // 83 /5 ib
    ['sub cx, bx', a().sub('cx', 'bx'), [0x29, 0xd9]], // 29 /r
    ['sub ax, 0x1000', a().sub('ax', 0x1000), [0x2d, 0x00, 0x10]], // 2D iw
    ['xor ax, ax', a().xor('ax', 'ax'), [0x31, 0xc0]], // 31 /r
    ['xor al, al', a().xor('al', 'al'), [0x30, 0xc0]], // 30 /r
    ['xor bl, 0xff', a().xor('bl', 0xff), [0x80, 0xf3, 0xff]], // 80 /6 ib
    ['xor ax, 0x5555', a().xor('ax', 0x5555), [0x35, 0x55, 0x55]], // 35 iw
    ['cmp al, 0x35', a().cmp('al', 0x35), [0x3c, 0x35]], // 3C ib
    ['cmp ax, 0x1234', a().cmp('ax', 0x1234), [0x3d, 0x34, 0x12]], // 3D iw
    ['cmp cx, 10', a().cmp('cx', 10), [0x83, 0xf9, 0x0a]], // 83 /7 ib
    ['cmp dl, 10', a().cmp('dl', 10), [0x80, 0xfa, 0x0a]], // 80 /7 ib
    ['cmp bx, si', a().cmp('bx', 'si'), [0x39, 0xf3]], // 39 /r
    ['cmp ah, bh', a().cmp('ah', 'bh'), [0x38, 0xfc]], // 38 /r
    // TEST (Vol. 2B): 84 /r, 85 /r, A8 ib, A9 iw, F6 /0 ib, F7 /0 iw
    ['test al, al', a().test('al', 'al'), [0x84, 0xc0]],
    ['test cx, dx', a().test('cx', 'dx'), [0x85, 0xd1]],
    ['test al, 0x80', a().test('al', 0x80), [0xa8, 0x80]],
    ['test ax, 0x8000', a().test('ax', 0x8000), [0xa9, 0x00, 0x80]],
    ['test bl, 1', a().test('bl', 1), [0xf6, 0xc3, 0x01]],
    ['test si, 1', a().test('si', 1), [0xf7, 0xc6, 0x01, 0x00]], // no sign-extended form for TEST
    // INC/DEC (Vol. 2A): 40+rw, 48+rw, FE /0, FE /1; NOT/NEG (Vol. 2B): F6/F7 /2, /3
    ['inc ax', a().inc('ax'), [0x40]],
    ['inc di', a().inc('di'), [0x47]],
    ['inc al', a().inc('al'), [0xfe, 0xc0]],
    ['inc bh', a().inc('bh'), [0xfe, 0xc7]],
    ['dec cx', a().dec('cx'), [0x49]],
    ['dec dl', a().dec('dl'), [0xfe, 0xca]],
    ['not ax', a().not('ax'), [0xf7, 0xd0]],
    ['not bl', a().not('bl'), [0xf6, 0xd3]],
    ['neg dx', a().neg('dx'), [0xf7, 0xda]],
    ['neg al', a().neg('al'), [0xf6, 0xd8]],
    // Shifts and rotates (Vol. 2B): D0/D1 /d (by 1), D2/D3 /d (by CL), C0/C1 /d ib
    ['shl ax, 1', a().shl('ax', 1), [0xd1, 0xe0]],
    ['shl al, 4', a().shl('al', 4), [0xc0, 0xe0, 0x04]],
    ['shl bx, cl', a().shl('bx', 'cl'), [0xd3, 0xe3]],
    ['shr dx, 1', a().shr('dx', 1), [0xd1, 0xea]],
    ['shr bl, cl', a().shr('bl', 'cl'), [0xd2, 0xeb]],
    ['sar ax, 3', a().sar('ax', 3), [0xc1, 0xf8, 0x03]],
    ['rol al, 1', a().rol('al', 1), [0xd0, 0xc0]],
    ['ror cx, 8', a().ror('cx', 8), [0xc1, 0xc9, 0x08]],
    ['rcl dx, 1', a().rcl('dx', 1), [0xd1, 0xd2]],
    ['rcr ah, cl', a().rcr('ah', 'cl'), [0xd2, 0xdc]],
    // PUSH/POP (Vol. 2B): 50+rw, 58+rw, 6A ib, 68 iw, 06/0E/16/1E, 0F A0/A8, 07/17/1F, 0F A1/A9
    ['push ax', a().push('ax'), [0x50]],
    ['push sp', a().push('sp'), [0x54]],
    ['pop di', a().pop('di'), [0x5f]],
    ['push 1', a().push(1), [0x6a, 0x01]],
    ['push -1', a().push(-1), [0x6a, 0xff]],
    ['push 0x80', a().push(0x80), [0x68, 0x80, 0x00]],
    ['push 0x1234', a().push(0x1234), [0x68, 0x34, 0x12]],
    ['push es/cs/ss/ds', a().push('es').push('cs').push('ss').push('ds'), [0x06, 0x0e, 0x16, 0x1e]],
    ['push fs/gs', a().push('fs').push('gs'), [0x0f, 0xa0, 0x0f, 0xa8]],
    ['pop es/ss/ds', a().pop('es').pop('ss').pop('ds'), [0x07, 0x17, 0x1f]],
    ['pop fs/gs', a().pop('fs').pop('gs'), [0x0f, 0xa1, 0x0f, 0xa9]],
    ['pushf/popf/pusha/popa', a().pushf().popf().pusha().popa(), [0x9c, 0x9d, 0x60, 0x61]],
    // IN/OUT (Vol. 2A IN, 2B OUT): E4 ib, E5 ib, EC, ED; E6 ib, E7 ib, EE, EF
    ['in al, 0x60', a().in('al', 0x60), [0xe4, 0x60]],
    ['in ax, 0x71', a().in('ax', 0x71), [0xe5, 0x71]],
    ['in al, dx', a().in('al', 'dx'), [0xec]],
    ['in ax, dx', a().in('ax', 'dx'), [0xed]],
    ['out 0x80, al', a().out(0x80, 'al'), [0xe6, 0x80]],
    ['out 0xff, ax', a().out(0xff, 'ax'), [0xe7, 0xff]],
    ['out dx, al', a().out('dx', 'al'), [0xee]],
    ['out dx, ax', a().out('dx', 'ax'), [0xef]],
    // RET (Vol. 2B): C3, C2 iw; INT (Vol. 2A): CD ib, CC; IRET CF
    ['ret', a().ret(), [0xc3]],
    ['ret 4', a().ret(4), [0xc2, 0x04, 0x00]],
    ['int 0x10', a().int(0x10), [0xcd, 0x10]],
    ['int 3', a().int(3), [0xcd, 0x03]], // CD 03, not CC (the SDM notes they differ)
    ['int3', a().int3(), [0xcc]],
    ['iret', a().iret(), [0xcf]],
    // String instructions: AC, AD, AA, AB, A4, A5
    ['lodsb/lodsw/stosb/stosw/movsb/movsw', a().lodsb().lodsw().stosb().stosw().movsb().movsw(), [0xac, 0xad, 0xaa, 0xab, 0xa4, 0xa5]],
    // No operands: F4, 90, FA, FB, F8, F9, F5, FC, FD
    ['hlt nop cli sti clc stc cmc cld std', a().hlt().nop().cli().sti().clc().stc().cmc().cld().std(), [0xf4, 0x90, 0xfa, 0xfb, 0xf8, 0xf9, 0xf5, 0xfc, 0xfd]],
    // Data
    ['db', a().db(1, -1, 0xff, 'Hi\n'), [0x01, 0xff, 0xff, 0x48, 0x69, 0x0a]],
    ['dw', a().dw(0x1234, -2, 0), [0x34, 0x12, 0xfe, 0xff, 0x00, 0x00]],
  ];
  test.each(cases)('%s', (_what, code, bytes) => {
    expect(code.bytes()).toEqual(bytes);
  });

  test('every Jcc condition and its synonyms: 70+cc cb, 0F 80+cc cw (SDM Vol. 2A, Jcc)', () => {
    const conds: Array<[keyof Asm16, number]> = [
      ['jo', 0], ['jno', 1], ['jb', 2], ['jc', 2], ['jnae', 2], ['jnb', 3], ['jnc', 3], ['jae', 3],
      ['jz', 4], ['je', 4], ['jnz', 5], ['jne', 5], ['jbe', 6], ['jna', 6], ['ja', 7], ['jnbe', 7],
      ['js', 8], ['jns', 9], ['jp', 10], ['jpe', 10], ['jnp', 11], ['jpo', 11], ['jl', 12], ['jnge', 12],
      ['jge', 13], ['jnl', 13], ['jle', 14], ['jng', 14], ['jg', 15], ['jnle', 15],
    ];
    for (const [m, cc] of conds) {
      const jcc = (x: Asm16, size?: 'short' | 'near'): Asm16 => (x[m] as (t: string, s?: 'short' | 'near') => Asm16).call(x, 'next', size);
      expect(jcc(a()).label('next').bytes(), m).toEqual([0x70 + cc, 0x00]);
      expect(jcc(a(), 'near').label('next').bytes(), m).toEqual([0x0f, 0x80 + cc, 0x00, 0x00]);
      expect(a().j(m.slice(1) as 'z', 'next').label('next').bytes(), m).toEqual([0x70 + cc, 0x00]);
    }
  });

  test('jmp EB cb / E9 cw; call E8 cw; loop E2, loopz E1, loopnz E0, jcxz E3 (cb)', () => {
    expect(a().label('top').jmp('top').bytes()).toEqual([0xeb, 0xfe]); // jmp $
    expect(a().label('top').jmp('top', 'near').bytes()).toEqual([0xe9, 0xfd, 0xff]);
    expect(a().call('f').label('f').bytes()).toEqual([0xe8, 0x00, 0x00]);
    expect(a().label('f').call('f').bytes()).toEqual([0xe8, 0xfd, 0xff]);
    expect(a().label('l').loop('l').loopz('l').loopnz('l').jcxz('l').bytes()).toEqual([0xe2, 0xfe, 0xe1, 0xfc, 0xe0, 0xfa, 0xe3, 0xf8]);
  });

  test('label addresses: mov r16, label (B8+rw iw), push label (68 iw), dw label; org', () => {
    const code = asm16({ org: 0x7c00 }).mov('si', { label: 'msg' }).push({ label: 'msg' }).dw({ label: 'msg' }).label('msg').db('ok');
    // msg is at 0x7c00 + 3 + 3 + 2 = 0x7c08
    expect(code.bytes()).toEqual([0xbe, 0x08, 0x7c, 0x68, 0x08, 0x7c, 0x08, 0x7c, 0x6f, 0x6b]);
    expect(code.addressOf('msg')).toBe(0x7c08);
    expect(a().label('start').nop().label('end').addressOf('end')).toBe(0x1001); // default org 0x1000
  });
});

describe('memory operands (SDM Vol. 2A §2.1.5, Table 2-1)', () => {
  const { mem, byte, word } = Asm16;
  // [NASM text, code, expected bytes]: each line's comment names the opcode form and the ModRM byte.
  const cases: Array<[string, Asm16, number[]]> = [
    // Every r/m of Table 2-1 with mod = 00 (no displacement), through MOV r16, r/m16 (8B /r) with reg = AX.
    ['mov ax, [bx+si]', a().mov('ax', mem('bx', 'si')), [0x8b, 0x00]], // 00 000 000
    ['mov ax, [bx+di]', a().mov('ax', mem('bx', 'di')), [0x8b, 0x01]],
    ['mov ax, [bp+si]', a().mov('ax', mem('bp', 'si')), [0x8b, 0x02]],
    ['mov ax, [bp+di]', a().mov('ax', mem('bp', 'di')), [0x8b, 0x03]],
    ['mov ax, [si]', a().mov('ax', mem('si')), [0x8b, 0x04]],
    ['mov ax, [di]', a().mov('ax', mem('di')), [0x8b, 0x05]],
    ['mov ax, [bp]', a().mov('ax', mem('bp')), [0x8b, 0x46, 0x00]], // [bp+0]: mod=00 r/m=110 is [disp16]
    ['mov ax, [bp+0]', a().mov('ax', mem('bp', 0)), [0x8b, 0x46, 0x00]],
    ['mov ax, [bx]', a().mov('ax', mem('bx')), [0x8b, 0x07]],
    ['mov cx, [0x1234]', a().mov('cx', mem(0x1234)), [0x8b, 0x0e, 0x34, 0x12]], // 00 001 110 disp16
    ['mov cx, [0]', a().mov('cx', mem(0)), [0x8b, 0x0e, 0x00, 0x00]],
    // Displacements: disp8 (mod = 01) for −128..127, else disp16 (mod = 10); taken modulo 64 KiB.
    ['mov ax, [bx+127]', a().mov('ax', mem('bx', 127)), [0x8b, 0x47, 0x7f]],
    ['mov ax, [bx-128]', a().mov('ax', mem('bx', -128)), [0x8b, 0x47, 0x80]],
    ['mov ax, [bx+128]', a().mov('ax', mem('bx', 128)), [0x8b, 0x87, 0x80, 0x00]],
    ['mov ax, [bx-129]', a().mov('ax', mem('bx', -129)), [0x8b, 0x87, 0x7f, 0xff]],
    ['mov ax, [bx+0xffff]', a().mov('ax', mem('bx', 0xffff)), [0x8b, 0x47, 0xff]], // = [bx-1]
    ['mov ax, [bx+0xff80]', a().mov('ax', mem('bx', 0xff80)), [0x8b, 0x47, 0x80]], // = [bx-128]
    ['mov ax, [bx+0xff7f]', a().mov('ax', mem('bx', 0xff7f)), [0x8b, 0x87, 0x7f, 0xff]],
    ['mov ax, [bp-2]', a().mov('ax', mem('bp', -2)), [0x8b, 0x46, 0xfe]],
    ['mov ax, [bp+0x100]', a().mov('ax', mem('bp', 0x100)), [0x8b, 0x86, 0x00, 0x01]],
    ['mov cx, [di+0x1234]', a().mov('cx', mem('di', 0x1234)), [0x8b, 0x8d, 0x34, 0x12]], // 10 001 101
    ['mov dx, [bp+si-1]', a().mov('dx', mem('bp', 'si', -1)), [0x8b, 0x52, 0xff]], // 01 010 010
    ['mov di, [bx+di+0x7fff]', a().mov('di', mem('bx', 'di', 0x7fff)), [0x8b, 0xb9, 0xff, 0x7f]], // 10 111 001
    // MOV (Vol. 2B): 8A /r, 8B /r, 88 /r, 89 /r; moffs A0/A1/A2/A3 for AL/AX and a direct address (as NASM).
    ['mov al, [0x1800]', a().mov('al', mem(0x1800)), [0xa0, 0x00, 0x18]],
    ['mov ax, [0x1800]', a().mov('ax', mem(0x1800)), [0xa1, 0x00, 0x18]],
    ['mov [0x1800], al', a().mov(mem(0x1800), 'al'), [0xa2, 0x00, 0x18]],
    ['mov [0x1800], ax', a().mov(mem(0x1800), 'ax'), [0xa3, 0x00, 0x18]],
    ['mov ax, word [0x1800]', a().mov('ax', word(0x1800)), [0xa1, 0x00, 0x18]],
    ['mov ax, [es:0x1800]', a().mov('ax', mem('es', 0x1800)), [0x26, 0xa1, 0x00, 0x18]],
    ['mov bx, [0x1800]', a().mov('bx', mem(0x1800)), [0x8b, 0x1e, 0x00, 0x18]], // not AX: 8B /r
    ['mov ah, [0x1800]', a().mov('ah', mem(0x1800)), [0x8a, 0x26, 0x00, 0x18]], // AH is not AL: 8A /r
    ['mov ax, [bx]', a().mov('ax', mem('bx')), [0x8b, 0x07]], // AX but not a direct address
    ['mov al, [bx]', a().mov('al', mem('bx')), [0x8a, 0x07]],
    ['mov bh, [si+1]', a().mov('bh', byte('si', 1)), [0x8a, 0x7c, 0x01]],
    ['mov [bx], cl', a().mov(mem('bx'), 'cl'), [0x88, 0x0f]],
    ['mov [bp+2], dx', a().mov(mem('bp', 2), 'dx'), [0x89, 0x56, 0x02]],
    ['mov [bx+si], ax', a().mov(mem('bx', 'si'), 'ax'), [0x89, 0x00]],
    // MOV m, imm: C6 /0 ib, C7 /0 iw (no sign-extended form)
    ['mov byte [bx], 5', a().mov(byte('bx'), 5), [0xc6, 0x07, 0x05]],
    ['mov word [0x1800], 0x1234', a().mov(word(0x1800), 0x1234), [0xc7, 0x06, 0x00, 0x18, 0x34, 0x12]],
    ['mov word [bx], -1', a().mov(word('bx'), -1), [0xc7, 0x07, 0xff, 0xff]],
    ['mov byte [bp-1], 0x80', a().mov(byte('bp', -1), 0x80), [0xc6, 0x46, 0xff, 0x80]],
    // MOV Sreg, r/m16 (8E /r) and MOV r/m16, Sreg (8C /r)
    ['mov ds, [bx]', a().mov('ds', mem('bx')), [0x8e, 0x1f]],
    ['mov es, word [0x1800]', a().mov('es', word(0x1800)), [0x8e, 0x06, 0x00, 0x18]],
    ['mov [bx], es', a().mov(mem('bx'), 'es'), [0x8c, 0x07]],
    ['mov word [di], ds', a().mov(word('di'), 'ds'), [0x8c, 0x1d]],
    // ALU (Vol. 2A/2B): op*8+0 /r (r/m8, r8), +1 /r (r/m16, r16), +2 /r (r8, r/m8), +3 /r (r16, r/m16)
    ['add [bx], al', a().add(mem('bx'), 'al'), [0x00, 0x07]],
    ['add [bx], ax', a().add(mem('bx'), 'ax'), [0x01, 0x07]],
    ['add al, [bx]', a().add('al', mem('bx')), [0x02, 0x07]],
    ['add ax, [bx]', a().add('ax', mem('bx')), [0x03, 0x07]],
    ['or [si], dh', a().or(mem('si'), 'dh'), [0x08, 0x34]],
    ['adc dx, [bp+di+4]', a().adc('dx', mem('bp', 'di', 4)), [0x13, 0x53, 0x04]],
    ['sbb byte [di], ah', a().sbb(byte('di'), 'ah'), [0x18, 0x25]],
    ['and ax, [0x1800]', a().and('ax', mem(0x1800)), [0x23, 0x06, 0x00, 0x18]], // no moffs form for ALU
    ['sub cx, [si+2]', a().sub('cx', mem('si', 2)), [0x2b, 0x4c, 0x02]],
    ['xor bx, [0x1800]', a().xor('bx', word(0x1800)), [0x33, 0x1e, 0x00, 0x18]],
    ['cmp [di], dl', a().cmp(mem('di'), 'dl'), [0x38, 0x15]],
    ['cmp ax, [bp-4]', a().cmp('ax', mem('bp', -4)), [0x3b, 0x46, 0xfc]],
    // ALU m, imm: 80 /d ib (m8), 83 /d ib (m16, sign-extended imm8, as NASM), 81 /d iw (m16)
    ['add byte [bx], 5', a().add(byte('bx'), 5), [0x80, 0x07, 0x05]],
    ['add word [bx], 5', a().add(word('bx'), 5), [0x83, 0x07, 0x05]],
    ['add word [bx], 0x100', a().add(word('bx'), 0x100), [0x81, 0x07, 0x00, 0x01]],
    ['add word [bx], 0x80', a().add(word('bx'), 0x80), [0x81, 0x07, 0x80, 0x00]],
    ['or word [si], -128', a().or(word('si'), -128), [0x83, 0x0c, 0x80]],
    ['adc byte [0x1800], 1', a().adc(byte(0x1800), 1), [0x80, 0x16, 0x00, 0x18, 0x01]],
    ['sbb word [di], 0', a().sbb(word('di'), 0), [0x83, 0x1d, 0x00]],
    ['and byte [si], 0x0f', a().and(byte('si'), 0x0f), [0x80, 0x24, 0x0f]],
    ['sub word [bp+2], 0x1234', a().sub(word('bp', 2), 0x1234), [0x81, 0x6e, 0x02, 0x34, 0x12]],
    ['xor byte [bx+si+1], 0xff', a().xor(byte('bx', 'si', 1), 0xff), [0x80, 0x70, 0x01, 0xff]],
    ['cmp word [0x1800], 1000', a().cmp(word(0x1800), 1000), [0x81, 0x3e, 0x00, 0x18, 0xe8, 0x03]],
    ['cmp word [0x1800], -1', a().cmp(word(0x1800), -1), [0x83, 0x3e, 0x00, 0x18, 0xff]],
    // TEST (Vol. 2B): 84 /r, 85 /r (either operand order), F6 /0 ib, F7 /0 iw
    ['test [bx], al', a().test(mem('bx'), 'al'), [0x84, 0x07]],
    ['test ax, [bx]', a().test('ax', mem('bx')), [0x85, 0x07]],
    ['test byte [bx], 1', a().test(byte('bx'), 1), [0xf6, 0x07, 0x01]],
    ['test word [0x1800], 1', a().test(word(0x1800), 1), [0xf7, 0x06, 0x00, 0x18, 0x01, 0x00]],
    // INC/DEC (Vol. 2A): FE /0, FE /1, FF /0, FF /1; NOT/NEG (Vol. 2B): F6/F7 /2, /3
    ['inc byte [bx]', a().inc(byte('bx')), [0xfe, 0x07]],
    ['inc word [0x1800]', a().inc(word(0x1800)), [0xff, 0x06, 0x00, 0x18]],
    ['dec byte [si]', a().dec(byte('si')), [0xfe, 0x0c]],
    ['dec word [bp-2]', a().dec(word('bp', -2)), [0xff, 0x4e, 0xfe]],
    ['not word [di]', a().not(word('di')), [0xf7, 0x15]],
    ['not byte [0x1800]', a().not(byte(0x1800)), [0xf6, 0x16, 0x00, 0x18]],
    ['neg byte [bx+si+1]', a().neg(byte('bx', 'si', 1)), [0xf6, 0x58, 0x01]],
    ['neg word [bp]', a().neg(word('bp')), [0xf7, 0x5e, 0x00]],
    // Shifts and rotates (Vol. 2B): D0/D1 /d, D2/D3 /d, C0/C1 /d ib
    ['shl word [bx], 1', a().shl(word('bx'), 1), [0xd1, 0x27]],
    ['shr byte [si], cl', a().shr(byte('si'), 'cl'), [0xd2, 0x2c]],
    ['sar word [di], 3', a().sar(word('di'), 3), [0xc1, 0x3d, 0x03]],
    ['rol byte [0x1800], 1', a().rol(byte(0x1800), 1), [0xd0, 0x06, 0x00, 0x18]],
    ['ror word [bp+4], cl', a().ror(word('bp', 4), 'cl'), [0xd3, 0x4e, 0x04]],
    ['rcl byte [bx+di], 2', a().rcl(byte('bx', 'di'), 2), [0xc0, 0x11, 0x02]],
    ['rcr word [0x1800], 1', a().rcr(word(0x1800), 1), [0xd1, 0x1e, 0x00, 0x18]],
    // PUSH r/m16 (FF /6), POP r/m16 (8F /0) (Vol. 2B)
    ['push word [bx]', a().push(word('bx')), [0xff, 0x37]],
    ['push [0x1800]', a().push(mem(0x1800)), [0xff, 0x36, 0x00, 0x18]],
    ['pop word [bx+2]', a().pop(word('bx', 2)), [0x8f, 0x47, 0x02]],
    ['pop [0x1800]', a().pop(mem(0x1800)), [0x8f, 0x06, 0x00, 0x18]],
    // Segment-override prefixes (Vol. 2A §2.1.1): 26 ES, 2E CS, 36 SS, 3E DS, 64 FS, 65 GS; before the opcode
    ['mov ax, [es:bx]', a().mov('ax', mem('es', 'bx')), [0x26, 0x8b, 0x07]],
    ['mov al, [cs:si]', a().mov('al', mem('cs', 'si')), [0x2e, 0x8a, 0x04]],
    ['inc word [ss:0x1800]', a().inc(word('ss', 0x1800)), [0x36, 0xff, 0x06, 0x00, 0x18]],
    ['mov [ds:bp+si+4], cx', a().mov(mem('ds', 'bp', 'si', 4), 'cx'), [0x3e, 0x89, 0x4a, 0x04]],
    ['add word [fs:di], 1', a().add(word('fs', 'di'), 1), [0x64, 0x83, 0x05, 0x01]],
    ['mov [gs:0x10], al', a().mov(mem('gs', 0x10), 'al'), [0x65, 0xa2, 0x10, 0x00]],
  ];
  test.each(cases)('%s', (_what, code, bytes) => {
    expect(code.bytes()).toEqual(bytes);
  });

  test('a label as a direct address: [disp16] is always a disp16 (moffs for AL/AX), and a label-address immediate', () => {
    const code = asm16({ org: 0x7c00 })
      .mov('ax', mem({ label: 'n' })) // A1 iw
      .inc(word({ label: 'n' })) // FF /0, ModRM 06
      .mov(word({ label: 'n' }), { label: 'n' }) // C7 /0 iw iw
      .mov('si', mem('es', { label: 'n' })) // 26 8B /r
      .hlt()
      .label('n').dw(0);
    // n = 0x7c00 + 3 + 4 + 6 + 5 + 1 = 0x7c13
    expect(code.bytes()).toEqual([
      0xa1, 0x13, 0x7c,
      0xff, 0x06, 0x13, 0x7c,
      0xc7, 0x06, 0x13, 0x7c, 0x13, 0x7c,
      0x26, 0x8b, 0x36, 0x13, 0x7c,
      0xf4, 0x00, 0x00,
    ]);
    usage(() => a().inc(word({ label: 'nowhere' })).bytes(), /inc: undefined label 'nowhere'/);
  });

  test('operands are plain data: mem/byte/word differ only in size, and a hand-written operand works', () => {
    expect(mem('bx', 'si', 4)).toEqual({ kind: 'mem', base: 'bx', index: 'si', disp: 4, size: undefined, seg: undefined });
    expect(word('es', 0x1800)).toEqual({ kind: 'mem', base: undefined, index: undefined, disp: 0x1800, size: 16, seg: 'es' });
    expect(byte('di', -1)).toEqual({ kind: 'mem', base: undefined, index: 'di', disp: -1, size: 8, seg: undefined });
    const hand: Asm16.Mem<16> = { kind: 'mem', base: 'bp', index: undefined, disp: 0, size: 16, seg: undefined };
    expect(a().inc(hand).bytes()).toEqual([0xff, 0x46, 0x00]);
  });
});

describe('the existing byte-array guests, written with asm16', () => {
  test('HELLO (test/module/helpers.ts, docs/getting-started.md, examples/unchanged-vmm)', () => {
    // mov dx,0x3f8; add al,bl; add al,'0'; out dx,al; mov al,'\n'; out dx,al; hlt
    const code = asm16().mov('dx', 0x3f8).add('al', 'bl').add('al', '0'.charCodeAt(0)).out('dx', 'al').mov('al', 10).out('dx', 'al').hlt();
    expect(code.bytes()).toEqual(HELLO);
  });

  test('SPIN (test/module/helpers.ts, bench/suites/pmi.ts, examples/legacy-collisions, examples/unchanged-vmm)', () => {
    expect(asm16().label('top').inc('ax').jmp('top').bytes()).toEqual(SPIN);
  });

  test('OUT_LOOP and PRINT_HLT (bench/lib/guest.ts)', () => {
    expect(asm16().label('top').out('dx', 'al').jmp('top').bytes()).toEqual([0xee, 0xeb, 0xfd]);
    expect(asm16().mov('dx', 0x3f8).mov('al', 'v'.charCodeAt(0)).out('dx', 'al').hlt().bytes()).toEqual([0xba, 0xf8, 0x03, 0xb0, 0x76, 0xee, 0xf4]);
  });

  test('GUEST of examples/quickstart and examples/amd-sev', () => {
    const code = asm16().mov('cx', 0x1000).label('wait').loop('wait').mov('al', 'bl').add('al', 0x30).mov('dx', 0x3f8).out('dx', 'al').hlt();
    expect(code.bytes()).toEqual([0xb9, 0x00, 0x10, 0xe2, 0xfe, 0x88, 0xd8, 0x04, 0x30, 0xba, 0xf8, 0x03, 0xee, 0xf4]);
  });

  test('GUEST of examples/hotplug-and-power', () => {
    const code = asm16().mov('dx', 0x3f8).label('top').mov('cx', 0x1194).label('wait').loop('wait').inc('al').out('dx', 'al').jmp('top');
    expect(code.bytes()).toEqual([0xba, 0xf8, 0x03, 0xb9, 0x94, 0x11, 0xe2, 0xfe, 0xfe, 0xc0, 0xee, 0xeb, 0xf6]);
  });

  test('GUEST of examples/mitigations', () => {
    const code = asm16().mov('dx', 0x3f8).label('top').mov('al', 'bl').out('dx', 'al').mov('cx', 1500).label('wait').loop('wait').jmp('top');
    expect(code.bytes()).toEqual([0xba, 0xf8, 0x03, 0x88, 0xd8, 0xee, 0xb9, 0xdc, 0x05, 0xe2, 0xfe, 0xeb, 0xf6]);
  });

  test('guestProgram of examples/rolling-upgrade: inc word [0x1800] (FF /0), mov ax, [0x1800] (A1, moffs)', () => {
    for (const busy of [900, 900 + 61 * 23, 0xffff]) {
      const code = asm16().mov('dx', 0x3f8)
        .label('top').inc(Asm16.word(0x1800)).mov('ax', Asm16.mem(0x1800)).out('dx', 'ax')
        .mov('cx', busy).label('wait').loop('wait').jmp('top');
      expect(code.bytes()).toEqual([0xba, 0xf8, 0x03, 0xff, 0x06, 0x00, 0x18, 0xa1, 0x00, 0x18, 0xef, 0xb9, busy & 0xff, busy >> 8, 0xe2, 0xfe, 0xeb, 0xf1]);
    }
  });

  test('GUEST of examples/pmi-routing', () => {
    const code = asm16().mov('dx', 0x3f8).label('top').mov('cx', 2500).label('busy').inc('ax').add('bx', 'ax').loop('busy').out('dx', 'al').jmp('top');
    expect(code.bytes()).toEqual([0xba, 0xf8, 0x03, 0xb9, 0xc4, 0x09, 0x40, 0x01, 0xc3, 0xe2, 0xfb, 0xee, 0xeb, 0xf5]);
  });
});

describe('labels and jump sizes', () => {
  const nops = (x: Asm16, n: number): Asm16 => {
    for (let i = 0; i < n; i++) x.nop();
    return x;
  };

  test('forward: rel8 up to +127, then rel16', () => {
    expect(nops(a().jmp('t'), 127).label('t').bytes().slice(0, 2)).toEqual([0xeb, 0x7f]);
    expect(nops(a().jmp('t'), 128).label('t').bytes().slice(0, 3)).toEqual([0xe9, 0x80, 0x00]); // 3-byte jmp: +128
    expect(nops(a().jz('t'), 128).label('t').bytes().slice(0, 4)).toEqual([0x0f, 0x84, 0x80, 0x00]);
  });

  test('backward: rel8 down to −128, then rel16', () => {
    expect(nops(a().label('t'), 126).jmp('t').bytes().slice(-2)).toEqual([0xeb, 0x80]); // −(126 + 2)
    expect(nops(a().label('t'), 127).jmp('t').bytes().slice(-3)).toEqual([0xe9, 0x7e, 0xff]); // −(127 + 3) = −130
    expect(nops(a().label('t'), 127).jnz('t').bytes().slice(-4)).toEqual([0x0f, 0x85, 0x7d, 0xff]); // −131
  });

  test('a jump that grows can push another out of rel8 range; layout iterates until stable', () => {
    // jmp end; 125×nop; jz far; end: 200×nop; far:
    // First pass: jmp reaches end (+127) but jz far does not; jz grows by 2, and now jmp needs +129.
    const code = nops(nops(a().jmp('end'), 125).jz('far').label('end'), 200).label('far');
    const bytes = code.bytes();
    expect(bytes.slice(0, 3)).toEqual([0xe9, 0x81, 0x00]);
    expect(bytes.slice(128, 132)).toEqual([0x0f, 0x84, 0xc8, 0x00]);
    expect(code.addressOf('end')).toBe(0x1000 + 132);
  });

  test('forced sizes', () => {
    expect(a().jmp('t', 'near').label('t').bytes()).toEqual([0xe9, 0x00, 0x00]);
    expect(a().jc('t', 'short').label('t').bytes()).toEqual([0x72, 0x00]);
  });

  test('a near displacement wraps at 64 KiB like IP', () => {
    const code = asm16({ org: 0 }).jmp('end', 'near');
    nops(code, 0xfff0).label('end');
    expect(code.bytes().slice(0, 3)).toEqual([0xe9, 0xf0, 0xff]);
  });

  test('bytes() can be called again after more code is added', () => {
    const code = a().label('top').nop();
    expect(code.bytes()).toEqual([0x90]);
    code.jmp('top');
    expect(code.bytes()).toEqual([0x90, 0xeb, 0xfd]);
  });
});

describe('errors are UsageErrors with a clear message', () => {
  test('the types refuse the same operands at compile time', () => {
    const typeOnly = (): void => {
      // @ts-expect-error a 16-bit source into an 8-bit register
      a().mov('al', 'bx');
      // @ts-expect-error an 8-bit source into a 16-bit register
      a().add('ax', 'bl');
      // @ts-expect-error no such register
      a().inc('eax');
      // @ts-expect-error mov cs, … is #UD
      a().mov('cs', 'ax');
      // @ts-expect-error a segment register from an immediate
      a().mov('ds', 0x1000);
      // @ts-expect-error pop cs does not exist
      a().pop('cs');
      // @ts-expect-error in/out use AL or AX
      a().in('bl', 'dx');
      // @ts-expect-error unknown condition
      a().j('zz', 'x');
      // @ts-expect-error loop has no near form
      a().loop('x', 'near');
    };
    expect(typeof typeOnly).toBe('function'); // never called: the checks above are the compiler's
  });

  test('immediates out of range', () => {
    usage(() => a().mov('al', 256), /mov: immediate 256 does not fit 8 bits/);
    usage(() => a().mov('al', -129), /does not fit 8 bits/);
    usage(() => a().mov('ax', 0x10000), /mov: immediate 65536 does not fit 16 bits/);
    usage(() => a().add('cx', -32769), /add: immediate -32769 does not fit 16 bits/);
    usage(() => a().mov('ax', 1.5), /mov: immediate 1.5 is not an integer/);
    usage(() => a().out(0x3f8, 'al'), /out: port \(a number or 'dx'\) 1016 is not in 0..255/);
    usage(() => a().in('al', -1), /in: port .* -1 is not in 0..255/);
    usage(() => a().int(256), /int: vector 256 is not in 0..255/);
    usage(() => a().shl('ax', 256), /shl: count .* 256 is not in 0..255/);
    usage(() => a().ret(-1), /ret: -1 is not in 0..65535/);
    usage(() => a().db(300), /db: immediate 300 does not fit 8 bits/);
    usage(() => a().db('€'), /db: character "€" of "€" is not a byte/);
    usage(() => a().dw(0x10000), /dw: immediate 65536 does not fit 16 bits/);
    usage(() => asm16({ org: 0x10000 }), /org 65536 is not in 0..0xffff/);
  });

  test('unknown registers and mixed sizes (what the types already refuse, checked at run time too)', () => {
    usage(() => a().mov('ax' as Asm16Reg16, 'xx' as Asm16Reg16), /mov: unknown register 'xx'/);
    usage(() => a().inc('eax' as Asm16Reg16), /inc: unknown register 'eax'/);
    usage(() => a().mov('al', 'bx' as Asm16Reg8), /mov: 'al' is 8-bit, the source must be an 8-bit register, memory or an immediate, got 'bx'/);
    usage(() => a().mov('ax', 'bl' as Asm16Reg16), /mov: 'ax' is 16-bit, the source must not be the 8-bit 'bl'/);
    usage(() => a().add('ax', 'bl' as Asm16Reg16), /add: the source must be a register of the destination's size or an immediate, got 'ax', 'bl'/);
    usage(() => a().add('ds' as Asm16Reg16, 1), /add: the destination must be a general register, got 'ds'/);
    usage(() => a().push('al' as Asm16Reg16), /push: only 16-bit values can be pushed, got 'al'/);
    usage(() => a().in('bl' as 'al', 'dx'), /in: the destination must be 'al' or 'ax', got 'bl'/);
    usage(() => a().out('dx', 'eax' as 'ax'), /out: the source must be 'al' or 'ax', got 'eax'/);
    usage(() => a().mov('ds', 5 as never), /mov: a segment register can only be loaded from a 16-bit register or memory, got 5/);
    usage(() => a().j('zz' as 'z', 'x'), /unknown condition 'zz'/);
  });

  test('forms that do not exist or that the CPU (and the interpreter) refuse', () => {
    usage(() => a().mov('cs' as 'ds', 'ax'), /mov cs, … is not executable/);
    usage(() => a().pop('cs' as 'ds'), /pop cs does not exist/);
  });

  test('labels: undefined, duplicate, empty', () => {
    usage(() => a().jmp('nowhere').bytes(), /jmp: undefined label 'nowhere'/);
    usage(() => a().mov('si', { label: 'msg' }).bytes(), /mov: undefined label 'msg'/);
    usage(() => a().nop().addressOf('x'), /undefined label 'x'/);
    usage(() => a().label('x').label('x'), /label 'x' is defined twice/);
    usage(() => a().label(''), /label: the name must be a non-empty string/);
    usage(() => a().jmp(''), /jmp: the target must be a label name/);
  });

  test('jumps out of range', () => {
    const far = (x: Asm16): Asm16 => {
      for (let i = 0; i < 200; i++) x.nop();
      return x.label('t');
    };
    usage(() => far(a().loop('t')).bytes(), /loop 't': displacement 200 is out of range for rel8 \(-128\.\.127\)$/);
    usage(() => far(a().jcxz('t')).bytes(), /jcxz 't': displacement 200 is out of range/);
    usage(() => far(a().jz('t', 'short')).bytes(), /jz 't': displacement 200 is out of range for rel8 \(-128\.\.127\); use a near jump/);
  });

  test('code past the 64 KiB segment', () => {
    const code = asm16({ org: 0xfff0 });
    for (let i = 0; i < 17; i++) code.nop();
    usage(() => code.bytes(), /the code ends at 0x10001, past the 64 KiB segment/);
  });
});

describe('memory-operand errors are UsageErrors', () => {
  const { mem, byte, word } = Asm16;

  test('the types refuse the same operands at compile time', () => {
    const typeOnly = (): void => {
      // @ts-expect-error inc [0x1800]: the size is ambiguous
      a().inc(mem(0x1800));
      // @ts-expect-error mov [bx], 5: the size is ambiguous
      a().mov(mem('bx'), 5);
      // @ts-expect-error a byte operand for a 16-bit register
      a().mov('ax', byte('bx'));
      // @ts-expect-error a word operand with an 8-bit register
      a().add(word('bx'), 'al');
      // @ts-expect-error memory to memory
      a().mov(mem('bx'), mem('si'));
      // @ts-expect-error push takes a word
      a().push(byte('bx'));
      // @ts-expect-error two base registers
      mem('bx', 'bp');
      // @ts-expect-error the index before the base
      mem('si', 'bx');
      // @ts-expect-error not an address register
      mem('ax');
    };
    expect(typeof typeOnly).toBe('function'); // never called: the checks above are the compiler's
  });

  test('ambiguous and mismatched sizes', () => {
    usage(() => a().inc(mem(0x1800) as never), /inc: the operand size of \[0x1800\] is ambiguous: use Asm16\.byte\(…\) or Asm16\.word\(…\)/);
    usage(() => a().mov(mem('bx'), 5 as never), /mov: the operand size of \[bx\] is ambiguous/);
    usage(() => a().add(mem('bx', 'si', 4), 1 as never), /add: the operand size of \[bx\+si\+4\] is ambiguous/);
    usage(() => a().test(mem('bp', -2), 1 as never), /test: the operand size of \[bp-2\] is ambiguous/);
    usage(() => a().not(mem('di') as never), /not: the operand size of \[di\] is ambiguous/);
    usage(() => a().shl(mem('es', 'si') as never, 1), /shl: the operand size of \[es:si\] is ambiguous/);
    usage(() => a().mov(mem(0x10), { label: 'x' } as never), /mov: the operand size of \[0x10\] is ambiguous/);
    usage(() => a().mov('ax', byte('bx') as never), /mov: operand sizes differ: the register is 16-bit, the memory operand byte \[bx\] is 8-bit/);
    usage(() => a().mov(word(0x1800), 'al' as never), /mov: operand sizes differ: the register is 8-bit, the memory operand word \[0x1800\] is 16-bit/);
    usage(() => a().cmp('cl', word('si') as never), /cmp: operand sizes differ/);
    usage(() => a().mov('ds', byte('bx') as never), /mov: operand sizes differ: the register is 16-bit/);
    usage(() => a().mov(byte(0x10), { label: 'x' } as never), /mov: a label's address is 16-bit, byte \[0x10\] is a byte/);
    usage(() => a().push(byte('bx') as never), /push: only 16-bit values can be pushed, got byte \[bx\]/);
    usage(() => a().pop(byte('bx') as never), /pop: only 16-bit values can be popped, got byte \[bx\]/);
    usage(() => a().mov(word('bx'), 0x10000), /mov: immediate 65536 does not fit 16 bits/);
    usage(() => a().add(byte('bx'), 256), /add: immediate 256 does not fit 8 bits/);
  });

  test('memory to memory, and memory where the instruction has no such form', () => {
    usage(() => a().mov(mem('bx') as never, mem('si') as never), /mov: memory to memory has no encoding, got \[bx\], \[si\]/);
    usage(() => a().add(word('bx'), word('si') as never), /add: memory to memory has no encoding/);
    usage(() => a().test(word('bx'), word('si') as never), /test: the second operand must be a register or an immediate/);
    usage(() => a().in('al', mem(0x60) as never), /in: port .* \[0x60\] is not in 0\.\.255/);
  });

  test('register combinations that 16-bit addressing cannot encode', () => {
    usage(() => mem('bx', 'bp' as never), /mem: \[bx\+bp\] cannot be encoded: 16-bit addressing takes at most one of bx\/bp and one of si\/di/);
    usage(() => mem('si' as never, 'di' as never), /mem: \[si\+di\] cannot be encoded/);
    usage(() => mem('bx', 'bx' as never), /mem: \[bx\+bx\] cannot be encoded/);
    usage(() => word('si' as never, 'bx' as never), /word: write the base register first: \['bx'\+'si'\] is \('bx', 'si'\)/);
    usage(() => mem('ax' as never), /mem: 'ax' cannot address memory: 16-bit addressing uses bx or bp, si or di/);
    usage(() => mem('sp' as never, 4), /mem: 'sp' cannot address memory/);
    usage(() => byte('bx', 'cx' as never), /byte: 'cx' cannot address memory/);
    usage(() => mem('xs' as never), /mem: 'xs' cannot address memory/);
    usage(() => (mem as (...args: unknown[]) => unknown)('bx', 'si', 1, 2), /mem: too many operands for a memory address: 2/);
    usage(() => (mem as (...args: unknown[]) => unknown)(0x1800, 4), /mem: a direct address takes no further operands, got 4/);
    usage(() => (mem as (...args: unknown[]) => unknown)(), /mem: a memory operand needs an address/);
    usage(() => mem('es' as never), /mem: a memory operand needs an address/);
    usage(() => mem({ label: '' }), /mem: invalid address .*: expected a number or \{ label \}/);
  });

  test('displacements and addresses out of range', () => {
    usage(() => mem('bx', 0x10000), /mem: displacement 65536 does not fit 16 bits \(-32768\.\.65535\)/);
    usage(() => mem('bp', 'di', -32769), /mem: displacement -32769 does not fit 16 bits/);
    usage(() => word('si', 1.5), /word: displacement 1.5 does not fit 16 bits/);
    usage(() => mem(0x10000), /mem: address 65536 is not in 0\.\.0xffff/);
    usage(() => mem(-1), /mem: address -1 is not in 0\.\.0xffff/);
    expect(mem('bx', -32768).disp).toBe(-32768);
    expect(mem('bx', 0xffff).disp).toBe(0xffff);
  });

  test('a hand-written operand is checked where it is used', () => {
    const bad = { kind: 'mem', base: 'ax', index: undefined, disp: 0, size: 16, seg: undefined } as unknown as Asm16.Mem<16>;
    usage(() => a().inc(bad), /inc: 'ax' cannot address memory/);
    const big = { kind: 'mem', base: 'bx', index: 'si', disp: 70000, size: 8, seg: undefined } as unknown as Asm16.Mem<8>;
    usage(() => a().mov(big, 'al'), /mov: displacement 70000 does not fit 16 bits/);
    const sized = { kind: 'mem', base: undefined, index: 'si', disp: 0, size: 32, seg: undefined } as unknown as Asm16.Mem<16>;
    usage(() => a().inc(sized), /inc: operand size 32 is not 8, 16 or undefined/);
  });
});

/** Runs `code` until HLT (failing on any other exit) and returns the VM. */
function runToHlt(flavor: (typeof FLAVORS)[number], code: Asm16, preset: (vm: Vm) => void = () => {}): Vm {
  const vm = makeVm(flavor, code.bytes());
  preset(vm);
  expect(vm.run()).toBe(GuestExitReason.Hlt);
  return vm;
}

describe.each(FLAVORS)('assembled programs run in the interpreter (%s memory)', (flavor) => {
  test('sum 10..1 with loop', () => {
    const vm = runToHlt(flavor, a().mov('cx', 10).xor('ax', 'ax').label('l').add('ax', 'cx').loop('l').hlt());
    expect(vm.state.rax & 0xffff).toBe(55);
    expect(vm.state.rcx & 0xffff).toBe(0);
    expect(vm.exit.executed).toBe(2 + 20 + 1);
  });

  test('call/ret with push/pop: a subroutine that doubles BX and preserves CX', () => {
    const code = a().mov('bx', 7).mov('cx', 0xbeef).call('double').call('double').hlt()
      .label('double').push('cx').mov('cx', 'bx').add('bx', 'cx').pop('cx').ret();
    const vm = runToHlt(flavor, code);
    expect(vm.state.rbx & 0xffff).toBe(28);
    expect(vm.state.rcx & 0xffff).toBe(0xbeef);
    expect(vm.state.rsp & 0xffff).toBe(0x8000);
  });

  test('print a string: mov si, msg; lodsb; test al,al; jz; out dx,al', () => {
    const code = a().mov('si', { label: 'msg' }).mov('dx', 0x3f8).cld()
      .label('next').lodsb().test('al', 'al').jz('done').out('dx', 'al').jmp('next')
      .label('done').hlt()
      .label('msg').db('hi!\n', 0);
    const vm = makeVm(flavor, code.bytes());
    let out = '';
    for (;;) {
      const r = vm.run();
      if (r !== GuestExitReason.Io) break;
      expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.Out, ioPort: 0x3f8, ioSize: 1 });
      out += String.fromCharCode(vm.exit.data[0]!);
    }
    expect(vm.exit.reason).toBe(GuestExitReason.Hlt);
    expect(out).toBe('hi!\n');
  });

  test('in al, imm8 and in ax, dx take the VMM\'s answer', () => {
    const vm = makeVm(flavor, a().in('al', 0x60).mov('bl', 'al').mov('dx', 0x71).in('ax', 'dx').hlt().bytes());
    expect(vm.run()).toBe(GuestExitReason.Io);
    expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.In, ioPort: 0x60, ioSize: 1 });
    vm.exit.data[0] = 0x42;
    expect(vm.run()).toBe(GuestExitReason.Io);
    expect(vm.exit).toMatchObject({ ioDirection: GuestIoDirection.In, ioPort: 0x71, ioSize: 2 });
    vm.exit.data.set([0x34, 0x12]);
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    expect(vm.state.rbx & 0xff).toBe(0x42);
    expect(vm.state.rax & 0xffff).toBe(0x1234);
  });

  test('near jumps, forward and backward, over 300 bytes', () => {
    const code = a().mov('cx', 3).label('top').jmp('skip')
      .db(...new Array<number>(300).fill(0xf4)) // hlt everywhere: landing here fails the test
      .label('skip').inc('bx').dec('cx').jnz('top').mov('ax', 0x1234).hlt();
    const bytes = code.bytes();
    expect(bytes.slice(3, 6)).toEqual([0xe9, 0x2c, 0x01]); // near jmp +300
    const vm = runToHlt(flavor, code);
    expect(vm.state.rbx & 0xffff).toBe(3);
    expect(vm.state.rax & 0xffff).toBe(0x1234);
    expect(vm.state.rip).toBe(0x1000 + bytes.length);
  });

  test('signed and unsigned conditions: -5 < 3 (jl) but 0xfffb > 3 (ja)', () => {
    const code = a().mov('ax', -5).xor('bx', 'bx').cmp('ax', 3).jl('less').hlt()
      .label('less').or('bx', 1).cmp('ax', 3).ja('above').hlt()
      .label('above').or('bx', 2).cmp('ax', -5).je('eq').hlt()
      .label('eq').or('bx', 4).hlt();
    expect(runToHlt(flavor, code).state.rbx & 0xffff).toBe(7);
  });

  test('shifts, rotates, not/neg and the 8-bit high registers', () => {
    const code = a().mov('ax', 1).shl('ax', 1).shl('ax', 3).mov('cl', 2).shl('ax', 'cl') // 1 << 6
      .mov('dx', -64).sar('dx', 2) // −16
      .mov('bh', 0x81).rol('bh', 1) // 0x03
      .mov('si', 0x00ff).not('si').neg('ah') // si = 0xff00; ah: 0 → 0
      .hlt();
    const s = runToHlt(flavor, code).state;
    expect(s.rax & 0xffff).toBe(0x40);
    expect(s.rdx & 0xffff).toBe(0xfff0);
    expect((s.rbx >> 8) & 0xff).toBe(0x03);
    expect(s.rsi & 0xffff).toBe(0xff00);
  });

  test('adc/sbb carry a 32-bit add through DX:AX; segment registers through push/pop and mov', () => {
    const code = a().mov('ax', 0xffff).mov('dx', 1).add('ax', 2).adc('dx', 0) // 0x1ffff + 2 = 0x20001
      .mov('cx', 0x2345).push('cx').pop('es').mov('di', 'es').mov('bx', 0x100).mov('ds', 'bx').mov('bp', 'ds')
      .stc().mov('si', 10).sbb('si', 0) // 9
      .hlt();
    const vm = runToHlt(flavor, code);
    const s = vm.state;
    expect([s.rdx & 0xffff, s.rax & 0xffff]).toEqual([2, 1]);
    expect(s.esSelector).toBe(0x2345);
    expect(s.rdi & 0xffff).toBe(0x2345);
    expect(s.dsSelector).toBe(0x100);
    expect(s.rbp & 0xffff).toBe(0x100);
    expect(s.rsi & 0xffff).toBe(9);
  });

  test('memory operands: a counter at [0x1800], moffs and ModRM forms, sizes, push/pop memory', () => {
    const { mem, byte, word } = Asm16;
    const code = a()
      .inc(word(0x1800)).inc(word(0x1800)).inc(word(0x1800)) // [0x1800] = 3
      .mov('ax', mem(0x1800)) // A1: ax = 3
      .add(word(0x1800), 0x100) // 81 /0 iw: 0x103
      .mov('bx', 0x1800).mov('cx', mem('bx')) // cx = 0x103
      .mov(mem(0x1802), 'al') // A2: [0x1802] = 3
      .mov(byte('bx', 3), 0x7f).inc(byte('bx', 3)) // [0x1803] = 0x80
      .mov('si', 4).mov(word('bx', 'si'), -2).neg(word('bx', 'si')) // [0x1804] = 2
      .mov('bp', 0x1800).mov('di', 6).mov(word('bp', 'di'), 0x00f0).shl(word('bp', 'di'), 4).not(byte('bp', 'di', 1)) // [0x1806]
      .push(word(0x1800)).pop(mem('bx', 8)) // [0x1808] = 0x103
      .mov('dx', 0x1234).mov(mem('bp', 10), 'dx').sub('dx', mem('bx', 10)) // [0x180a] = 0x1234, dx = 0
      .cmp(word('bx', 'si'), 2).jne('bad')
      .test(byte('bx', 3), 0x80).jz('bad')
      .hlt()
      .label('bad').mov('dx', 0xbad).hlt();
    const vm = runToHlt(flavor, code);
    const s = vm.state;
    expect(s.rax & 0xffff).toBe(3);
    expect(s.rcx & 0xffff).toBe(0x103);
    expect(s.rdx & 0xffff).toBe(0);
    expect(word16(vm.ram, 0x1800)).toBe(0x103);
    expect(vm.ram[0x1802]).toBe(3);
    expect(vm.ram[0x1803]).toBe(0x80);
    expect(word16(vm.ram, 0x1804)).toBe(2);
    expect(word16(vm.ram, 0x1806)).toBe(0xf000); // 0xf0 << 4 = 0x0f00, then NOT of its high byte
    expect(word16(vm.ram, 0x1808)).toBe(0x103);
    expect(word16(vm.ram, 0x180a)).toBe(0x1234);
    expect(s.rsp & 0xffff).toBe(0x8000);
  });

  test('segments: DS by default, SS through BP, and overrides', () => {
    const { mem, word } = Asm16;
    const code = a()
      .mov('ax', 0x0a00).mov('ds', 'ax') // DS base 0xa000; ES, SS, CS stay 0
      .mov('bx', 0x10).mov('si', 0).mov('bp', 0x10)
      .mov(word('bx', 'si'), 0x1111) // DS:0x10 → 0xa010
      .mov(word('bp', 'si'), 0x2222) // SS:0x10 → 0x0010
      .mov(word('es', 'bx', 'si', 2), 0x3333) // ES:0x12 → 0x0012
      .mov(word('ds', 'bp', 'si', 2), 0x4444) // DS:0x12 → 0xa012
      .mov('cx', mem('cs', 0x1000)) // CS:0x1000: the first code bytes
      .hlt();
    const vm = runToHlt(flavor, code);
    expect(word16(vm.ram, 0xa010)).toBe(0x1111);
    expect(word16(vm.ram, 0x0010)).toBe(0x2222);
    expect(word16(vm.ram, 0x0012)).toBe(0x3333);
    expect(word16(vm.ram, 0xa012)).toBe(0x4444);
    expect(vm.state.rcx & 0xffff).toBe(0x00b8); // mov ax, 0x0a00 = B8 00 0A
  });

  test('data at a label: a word counter in the code segment', () => {
    const { mem, word } = Asm16;
    const code = a().mov('cx', 5).label('l').inc(word({ label: 'n' })).loop('l').mov('ax', mem({ label: 'n' })).hlt().label('n').dw(0x10);
    const vm = runToHlt(flavor, code);
    expect(vm.state.rax & 0xffff).toBe(0x15);
    expect(word16(vm.ram, code.addressOf('n'))).toBe(0x15);
  });

  test('int n through the real-mode IVT and iret back', () => {
    const code = a().mov('ax', 1).int(0x21).add('ax', 10).hlt()
      .label('isr').shl('ax', 4).iret();
    const vm = makeVm(flavor, code.bytes());
    const isr = code.addressOf('isr');
    vm.ram.set([isr & 0xff, isr >> 8, 0, 0], 0x21 * 4); // IVT[0x21] = 0000:isr
    expect(vm.run()).toBe(GuestExitReason.Hlt);
    expect(vm.state.rax & 0xffff).toBe(0x1a);
    expect(vm.state.rsp & 0xffff).toBe(0x8000);
  });
});

// ---------------------------------------------------------------------------------------------------------
// Property: random sequences of supported instructions, memory operands included, execute one instruction
// each — every instruction is decoded (no #UD through the IVT, no emulation failure) at exactly the length
// asm16 gave it, and memory writes land only in the scratch area (the stack aside).

/** One generated step: how to emit it, and how many instructions it executes. */
interface Step {
  readonly emit: (x: Asm16, fresh: () => string) => void;
  readonly executed: number;
  readonly text: string;
}

const R8: readonly Asm16Reg8[] = ['al', 'cl', 'dl', 'bl', 'ah', 'ch', 'dh', 'bh'];
/** SP is never a destination (a random SP would push onto the code). */
const R16: readonly Asm16Reg16[] = ['ax', 'cx', 'dx', 'bx', 'bp', 'si', 'di'];
const R16_SRC: readonly Asm16Reg16[] = [...R16, 'sp'];
const ALU_OPS = ['add', 'or', 'adc', 'sbb', 'and', 'sub', 'xor', 'cmp', 'test'] as const;
const SHIFT_OPS = ['shl', 'shr', 'sar', 'rol', 'ror', 'rcl', 'rcr'] as const;
const UNARY = ['inc', 'dec', 'not', 'neg'] as const;
const NULLARY = ['nop', 'cli', 'sti', 'clc', 'stc', 'cmc', 'cld', 'std', 'lodsb', 'lodsw', 'pushf', 'popf', 'pusha', 'popa'] as const;
const JCC = ['jo', 'jno', 'jc', 'jnc', 'jz', 'jnz', 'jbe', 'ja', 'js', 'jns', 'jp', 'jnp', 'jl', 'jge', 'jle', 'jg'] as const;

const step = (text: string, emit: (x: Asm16, fresh: () => string) => void, executed = 1): Step => ({ emit, executed, text });

const imm8Arb = fc.integer({ min: -128, max: 255 });
const imm16Arb = fc.oneof(fc.integer({ min: -32768, max: 65535 }), fc.integer({ min: -128, max: 127 }));

const simpleStep: fc.Arbitrary<Step> = fc.oneof(
  fc.tuple(fc.constantFrom(...R8), fc.constantFrom(...R8)).map(([d, s]) => step(`mov ${d},${s}`, (x) => x.mov(d, s))),
  fc.tuple(fc.constantFrom(...R8), imm8Arb).map(([d, v]) => step(`mov ${d},${v}`, (x) => x.mov(d, v))),
  fc.tuple(fc.constantFrom(...R16), fc.constantFrom(...R16_SRC)).map(([d, s]) => step(`mov ${d},${s}`, (x) => x.mov(d, s))),
  fc.tuple(fc.constantFrom(...R16), imm16Arb).map(([d, v]) => step(`mov ${d},${v}`, (x) => x.mov(d, v))),
  fc.tuple(fc.constantFrom(...R16), fc.constantFrom('es', 'cs', 'ss', 'ds', 'fs', 'gs' as const)).map(([d, s]) => step(`mov ${d},${s}`, (x) => x.mov(d, s))),
  fc.tuple(fc.constantFrom('fs', 'gs' as const), fc.constantFrom(...R16_SRC)).map(([d, s]) => step(`mov ${d},${s}`, (x) => x.mov(d, s))),
  fc.tuple(fc.constantFrom(...ALU_OPS), fc.constantFrom(...R8), fc.oneof(fc.constantFrom(...R8), imm8Arb)).map(([op, d, s]) =>
    step(`${op} ${d},${s}`, (x) => x[op](d, s))),
  fc.tuple(fc.constantFrom(...ALU_OPS), fc.constantFrom(...R16), fc.oneof(fc.constantFrom(...R16_SRC), imm16Arb)).map(([op, d, s]) =>
    step(`${op} ${d},${s}`, (x) => x[op](d, s))),
  fc.tuple(fc.constantFrom(...UNARY), fc.constantFrom(...R8, ...R16)).map(([op, r]) => step(`${op} ${r}`, (x) => x[op](r))),
  fc.tuple(fc.constantFrom(...SHIFT_OPS), fc.constantFrom(...R8, ...R16), fc.oneof(fc.constant('cl' as const), fc.constant(1), fc.integer({ min: 0, max: 255 }))).map(
    ([op, r, c]) => step(`${op} ${r},${c}`, (x) => x[op](r, c)),
  ),
  fc.constantFrom(...R16_SRC, 'es', 'cs', 'ss', 'ds', 'fs', 'gs' as const).map((r) => step(`push ${r}`, (x) => x.push(r))),
  imm16Arb.map((v) => step(`push ${v}`, (x) => x.push(v))),
  fc.constantFrom(...R16, 'fs', 'gs' as const).map((r) => step(`pop ${r}`, (x) => x.pop(r))),
  fc.constantFrom(...NULLARY).map((op) => step(op, (x) => x[op]())),
);

// Memory steps: set the address registers, then one instruction with a memory operand that points into a
// scratch area (away from the code, the stack and the IVT), through any Table 2-1 form, displacement size and
// default-base segment override (ES, CS, SS and DS stay 0 in these programs; FS and GS are random).
const SCRATCH = 0x9000;
type AddrRegs = readonly [] | readonly [Asm16.Base | Asm16.Index] | readonly [Asm16.Base, Asm16.Index];
const FORMS: readonly AddrRegs[] = [[], ['bx'], ['bp'], ['si'], ['di'], ['bx', 'si'], ['bx', 'di'], ['bp', 'si'], ['bp', 'di']];

/** Operand makers for one address: unsized, byte and word. */
interface MemMaker {
  readonly u: () => Asm16.Mem<undefined>;
  readonly b: () => Asm16.Mem<8>;
  readonly w: () => Asm16.Mem<16>;
}
type MemEmit = (x: Asm16, m: MemMaker) => void;
const memOp = (text: string, emit: MemEmit): readonly [string, MemEmit] => [text, emit];
const MOV_ALU = ['mov', ...ALU_OPS] as const;

const memOpArb: fc.Arbitrary<readonly [string, MemEmit]> = fc.oneof(
  fc.tuple(fc.constantFrom(...R8), fc.boolean(), fc.boolean()).map(([r, toMem, sized]) =>
    memOp(`mov ${toMem ? `m8,${r}` : `${r},m8`}`, (x, m) => (toMem ? x.mov(sized ? m.b() : m.u(), r) : x.mov(r, sized ? m.b() : m.u())))),
  fc.tuple(fc.constantFrom(...R16), fc.constantFrom(...R16_SRC), fc.boolean(), fc.boolean()).map(([d, sr, toMem, sized]) =>
    memOp(`mov ${toMem ? `m16,${sr}` : `${d},m16`}`, (x, m) => (toMem ? x.mov(sized ? m.w() : m.u(), sr) : x.mov(d, sized ? m.w() : m.u())))),
  fc.tuple(fc.constantFrom(...ALU_OPS), fc.constantFrom(...R8), fc.boolean(), fc.boolean()).map(([op, r, toMem, sized]) =>
    memOp(`${op} ${toMem ? `m8,${r}` : `${r},m8`}`, (x, m) => (toMem ? x[op](sized ? m.b() : m.u(), r) : x[op](r, sized ? m.b() : m.u())))),
  fc.tuple(fc.constantFrom(...ALU_OPS), fc.constantFrom(...R16), fc.constantFrom(...R16_SRC), fc.boolean(), fc.boolean()).map(([op, d, sr, toMem, sized]) =>
    memOp(`${op} ${toMem ? `m16,${sr}` : `${d},m16`}`, (x, m) => (toMem ? x[op](sized ? m.w() : m.u(), sr) : x[op](d, sized ? m.w() : m.u())))),
  fc.tuple(fc.constantFrom(...MOV_ALU), imm8Arb).map(([op, v]) => memOp(`${op} byte m,${v}`, (x, m) => (op === 'mov' ? x.mov(m.b(), v) : x[op](m.b(), v)))),
  fc.tuple(fc.constantFrom(...MOV_ALU), imm16Arb).map(([op, v]) => memOp(`${op} word m,${v}`, (x, m) => (op === 'mov' ? x.mov(m.w(), v) : x[op](m.w(), v)))),
  fc.tuple(fc.constantFrom(...UNARY), fc.boolean()).map(([op, w]) => memOp(`${op} ${w ? 'word' : 'byte'} m`, (x, m) => x[op](w ? m.w() : m.b()))),
  fc.tuple(fc.constantFrom(...SHIFT_OPS), fc.boolean(), fc.oneof(fc.constant('cl' as const), fc.constant(1), fc.integer({ min: 0, max: 255 }))).map(([op, w, c]) =>
    memOp(`${op} ${w ? 'word' : 'byte'} m,${c}`, (x, m) => x[op](w ? m.w() : m.b(), c))),
  fc.boolean().map((sized) => memOp('push m16', (x, m) => x.push(sized ? m.w() : m.u()))),
  fc.boolean().map((sized) => memOp('pop m16', (x, m) => x.pop(sized ? m.w() : m.u()))),
  fc.constantFrom('es', 'cs', 'ss', 'ds', 'fs', 'gs' as const).map((sr) => memOp(`mov m16,${sr}`, (x, m) => x.mov(m.u(), sr))),
  fc.constantFrom('fs', 'gs' as const).map((sr) => memOp(`mov ${sr},m16`, (x, m) => x.mov(sr, m.w()))),
);

const memStep: fc.Arbitrary<Step> = fc.tuple(
  fc.constantFrom(...FORMS),
  fc.oneof(fc.constant(0), fc.integer({ min: -128, max: 127 }), fc.integer({ min: -32768, max: 65535 })),
  fc.integer({ min: SCRATCH, max: SCRATCH + 0xffe }),
  fc.integer({ min: 0, max: 0xffff }),
  fc.constantFrom(undefined, 'es', 'cs', 'ss', 'ds' as const),
  memOpArb,
).map(([regs, disp, target, indexValue, seg, [text, emit]]) => {
  // Register values that make the effective address (modulo 64 KiB) the target.
  const setup: Array<readonly [Asm16Reg16, number]> = [];
  let args: unknown[];
  if (regs.length === 0) args = [target];
  else {
    if (regs.length === 2) setup.push([regs[1], indexValue]);
    const rest = regs.length === 2 ? indexValue : 0;
    setup.unshift([regs[0], (target - disp - rest) & 0xffff]);
    args = [...regs, disp];
  }
  if (seg !== undefined) args.unshift(seg);
  const a = args as Asm16.MemArgs;
  const m: MemMaker = { u: () => Asm16.mem(...a), b: () => Asm16.byte(...a), w: () => Asm16.word(...a) };
  const where = `${Asm16.mem(...a).base ?? ''}…${disp}@0x${target.toString(16)}${seg === undefined ? '' : ` ${seg}:`}`;
  return step(`${setup.map(([r, v]) => `mov ${r},${v}; `).join('')}${text} [${where}]`, (x) => {
    for (const [r, v] of setup) x.mov(r, v);
    emit(x, m);
  }, 1 + setup.length);
});

const controlStep: fc.Arbitrary<Step> = fc.oneof(
  // A conditional jump to the next instruction executes once whichever way it goes.
  fc.tuple(fc.constantFrom(...JCC), fc.constantFrom(undefined, 'near' as const)).map(([op, size]) =>
    step(`${op} next${size === 'near' ? ' (near)' : ''}`, (x, fresh) => {
      const l = fresh();
      x[op](l, size).label(l);
    })),
  fc.constantFrom('loop', 'loopz', 'loopnz', 'jcxz' as const).map((op) => step(`${op} next`, (x, fresh) => {
    const l = fresh();
    x[op](l).label(l);
  })),
  fc.constant(step('call next', (x, fresh) => {
    const l = fresh();
    x.call(l).label(l);
  })),
  // jmp over a block that never runs; its size crosses the short/near boundary.
  fc.tuple(fc.array(simpleStep, { maxLength: 6 }), fc.integer({ min: 0, max: 300 })).map(([skipped, pad]) =>
    step(`jmp over ${skipped.length} insns + ${pad} bytes`, (x, fresh) => {
      const l = fresh();
      x.jmp(l);
      for (const s of skipped) s.emit(x, fresh);
      x.db(...new Array<number>(pad).fill(0xf4)).label(l);
    })),
);

test('random sequences of supported instructions (memory operands included) run one instruction per step, no #UD', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof({ weight: 4, arbitrary: simpleStep }, { weight: 2, arbitrary: memStep }, { weight: 1, arbitrary: controlStep }), { minLength: 1, maxLength: 40 }),
      fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: 7, maxLength: 7 }),
      (steps, regs) => {
        const x = asm16();
        let n = 0;
        const fresh = (): string => `L${n++}`;
        for (const s of steps) s.emit(x, fresh);
        const code = x.hlt().bytes();
        const executed = steps.reduce((sum, s) => sum + s.executed, 0) + 1;
        for (const flavor of FLAVORS) {
          const vm = makeVm(flavor, code);
          vm.ram[0] = 0xf4; // every IVT entry is 0000:0000, so an exception would halt at 0x0001
          const s = vm.state;
          const r = (i: number): number => regs[i] ?? 0;
          s.rax = r(0); s.rcx = r(1); s.rdx = r(2); s.rbx = r(3); s.rbp = r(4); s.rsi = r(5); s.rdi = r(6);
          const before = vm.ram.slice();
          expect(vm.run(), steps.map((t) => t.text).join('; ')).toBe(GuestExitReason.Hlt);
          expect(vm.state.rip).toBe(0x1000 + code.length);
          expect(vm.exit.executed).toBe(executed);
          // Nothing written outside the stack (0x7000..0x8fff, SP starts at 0x8000) and the scratch area.
          const same = (from: number, to: number): boolean => Buffer.from(vm.ram.subarray(from, to)).equals(before.subarray(from, to));
          expect(same(0, 0x7000) && same(SCRATCH + 0x1000, vm.ram.length), 'memory outside the stack and scratch area changed').toBe(true);
        }
      },
    ),
    { numRuns: 400 },
  );
});
