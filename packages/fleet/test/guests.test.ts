import { describe, expect, test } from 'vitest';
import { countingGuest } from '../src/index.js';

describe('countingGuest', () => {
  // mov dx, 0x3f8 ; top: inc word [0x1800] ; mov ax, [0x1800] ; out dx, ax ; mov cx, 100 ; wait: loop wait ; jmp top
  const DEFAULT = [0xba, 0xf8, 0x03, 0xff, 0x06, 0x00, 0x18, 0xa1, 0x00, 0x18, 0xef, 0xb9, 0x64, 0x00, 0xe2, 0xfe, 0xeb, 0xf1];

  test('the same options give the same program every time, each caller its own copy', () => {
    const a = countingGuest();
    expect(a).toEqual(DEFAULT);
    a[0] = 0x90;
    a.push(0xf4);
    expect(countingGuest()).toEqual(DEFAULT);
    expect(countingGuest()).not.toBe(countingGuest());
  });

  test('each option makes its own program: the pace, the port, the halt', () => {
    expect(countingGuest({ busy: 7 }).slice(11, 14)).toEqual([0xb9, 0x07, 0x00]);
    expect(countingGuest({ port: 0x2f8 }).slice(0, 3)).toEqual([0xba, 0xf8, 0x02]);
    // cmp ax, 5 (imm8) ; jne top ; hlt instead of jmp top
    expect(countingGuest({ upTo: 5 }).slice(16)).toEqual([0x83, 0xf8, 0x05, 0x75, 0xee, 0xf4]);
    expect(countingGuest()).toEqual(DEFAULT);
  });

  test('bad options are refused every time (nothing is remembered for them)', () => {
    for (let i = 0; i < 2; i++) {
      expect(() => countingGuest({ busy: 0 })).toThrow(/busy must be an integer in \[1, 65535\], got 0/);
      expect(() => countingGuest({ upTo: 0x10000 })).toThrow(/upTo must be an integer/);
    }
  });
});
