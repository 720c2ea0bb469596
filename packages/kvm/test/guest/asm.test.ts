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
import { FLAVORS, makeVm, type Vm } from './helpers.js';

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
    usage(() => a().mov('al', 'bx' as Asm16Reg8), /mov: 'al' is 8-bit, the source must be an 8-bit register or an immediate, got 'bx'/);
    usage(() => a().mov('ax', 'bl' as Asm16Reg16), /mov: 'ax' is 16-bit, the source must not be the 8-bit 'bl'/);
    usage(() => a().add('ax', 'bl' as Asm16Reg16), /add: the source must be a register of the destination's size or an immediate, got 'ax', 'bl'/);
    usage(() => a().add('ds' as Asm16Reg16, 1), /add: the destination must be a general register, got 'ds'/);
    usage(() => a().push('al' as Asm16Reg16), /push: only 16-bit values can be pushed, got 'al'/);
    usage(() => a().in('bl' as 'al', 'dx'), /in: the destination must be 'al' or 'ax', got 'bl'/);
    usage(() => a().out('dx', 'eax' as 'ax'), /out: the source must be 'al' or 'ax', got 'eax'/);
    usage(() => a().mov('ds', 5 as never), /mov: a segment register can only be loaded from a 16-bit register, got 5/);
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
// Property: random sequences of supported instructions execute one instruction each — every instruction is
// decoded (no #UD through the IVT, no emulation failure) at exactly the length asm16 gave it.

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

test('random sequences of supported instructions run one instruction per step, no #UD', () => {
  fc.assert(
    fc.property(
      fc.array(fc.oneof({ weight: 4, arbitrary: simpleStep }, { weight: 1, arbitrary: controlStep }), { minLength: 1, maxLength: 40 }),
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
          expect(vm.run(), steps.map((t) => t.text).join('; ')).toBe(GuestExitReason.Hlt);
          expect(vm.state.rip).toBe(0x1000 + code.length);
          expect(vm.exit.executed).toBe(executed);
        }
      },
    ),
    { numRuns: 400 },
  );
});
