/** The byte ↔ argument rules of codec.ts, and the preload library's variable-length table. */
import { readFileSync } from 'node:fs';
import { KVM_GET_REGS, KVM_IOCTLS, KVM_MEMORY_ENCRYPT_OP, KVM_SET_REGS, _IOC_SIZE, makeKvmRegs, type kvm_regs, type kvm_sev_cmd } from '@vac/kvm';
import { describe, expect, test } from 'vitest';
import { CODECS, PRELOAD_SOURCE, decodeArg } from '../src/index.js';
import { encodeRegs } from '../src/codec.js';

describe('decodeArg', () => {
  test('_IO requests pass the value: a number, or a bigint above 2^53', () => {
    expect(decodeArg(0xae03, 3n, undefined, false).arg).toBe(3);
    expect(decodeArg(0xae47, 0xfffbd000n, undefined, false).arg).toBe(0xfffbd000);
    expect(decodeArg(0xae47, 2n ** 60n, undefined, false).arg).toBe(2n ** 60n);
  });

  test('readable bytes go to the model as the C structure itself; a pure get whose pointer was unreadable runs on the codec’s fresh object, copied back on success only', () => {
    const bytes = encodeRegs(makeKvmRegs({ rip: 5n }));
    const set = decodeArg(KVM_SET_REGS, 0x1000n, bytes, true);
    expect(set.arg).toEqual(bytes);
    expect(Object.getPrototypeOf(set.arg)).toBe(Uint8Array.prototype);
    expect(set.out(true)).toBeUndefined(); // _IOW: nothing back
    const filled = decodeArg(KVM_GET_REGS, 0x1000n, new Uint8Array(144), true);
    (filled.arg as Uint8Array)[8] = 7; // what the model's KVM_GET_REGS writes into the struct
    expect((filled.out(true) as Uint8Array)[8]).toBe(7);
    const get = decodeArg(KVM_GET_REGS, 0x1000n, undefined, true); // unreadable: a pure get still runs
    (get.arg as kvm_regs).rbx = 7n;
    expect(get.out(false)).toBeUndefined();
    expect(new DataView((get.out(true) as Uint8Array).buffer).getBigUint64(8, true)).toBe(7n);
  });

  test('an unreadable argument the kernel must read is undefined to the model (its EFAULT)', () => {
    expect(decodeArg(KVM_SET_REGS, 0n, undefined, true).arg).toBeUndefined();
    expect(decodeArg(0x4040ae79, 0n, undefined, true).arg).toBeUndefined(); // KVM_IOEVENTFD, no codec
  });

  test('kvm_sev_cmd is copied back even when the call fails (sev_mem_enc_ioctl copies error out)', () => {
    const bytes = new Uint8Array(24);
    const d = decodeArg(KVM_MEMORY_ENCRYPT_OP, 0x1000n, bytes, true);
    (d.arg as kvm_sev_cmd).error = 9;
    expect(new DataView((d.out(false) as Uint8Array).buffer).getUint32(16, true)).toBe(9);
  });

  test('a request without a codec gets raw bytes (a plain Uint8Array); an _IOR/_IOWR one copies them back, also after a failure', () => {
    const input = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const d = decodeArg(0xc008ae67, 0n, Buffer.from(input), true); // KVM_IRQ_LINE_STATUS (_IOWR)
    expect(d.arg).toEqual(input);
    expect(Object.getPrototypeOf(d.arg)).toBe(Uint8Array.prototype); // not a Buffer over the message
    (d.arg as Uint8Array)[0] = 9; // what the handler wrote before failing (e.g. E2BIG's count) reaches the VMM
    expect(d.out(true)).toEqual(Uint8Array.of(9, 2, 3, 4, 5, 6, 7, 8));
    expect(d.out(false)).toEqual(Uint8Array.of(9, 2, 3, 4, 5, 6, 7, 8));
    expect(decodeArg(0x4040ae79, 0n, input, true).out(true)).toBeUndefined(); // _IOW: nothing back
  });

  test('every codec’s struct size is the size its request encodes, or the true size in the library’s table', () => {
    const src = readFileSync(PRELOAD_SOURCE, 'utf8');
    for (const [req, c] of CODECS) {
      const row = new RegExp(`\\{0x${req.toString(16)}u, (\\d+), 0, 0\\}`).exec(src);
      const size = row === null ? _IOC_SIZE(req) : Number(row[1]);
      expect([req.toString(16), c.size]).toEqual([req.toString(16), size]);
    }
  });
});

describe('the preload library’s variable-length table', () => {
  test('each entry names a KVM ioctl whose _IOC_SIZE is the header size', () => {
    const src = readFileSync(PRELOAD_SOURCE, 'utf8');
    const rows = [...src.matchAll(/\{0x([0-9a-f]+)u, (\d+), (\d+), (\d+)\},\s*\/\* (KVM_\w+)/g)];
    expect(rows.length).toBeGreaterThanOrEqual(12);
    const names: Record<string, number> = KVM_IOCTLS;
    for (const [, hex, hdr, countOff, elem, name] of rows) {
      const req = parseInt(hex as string, 16);
      if (names[name as string] !== undefined) expect([name, req]).toEqual([name, names[name as string]]);
      if (Number(elem) === 0) {
        // a true size: larger than what the request encodes (KVM_MEMORY_ENCRYPT_OP's unsigned long)
        expect(Number(hdr)).toBeGreaterThan(_IOC_SIZE(req));
        continue;
      }
      expect([name, Number(hdr)]).toEqual([name, _IOC_SIZE(req)]);
      expect(Number(countOff)).toBeLessThan(Number(hdr));
    }
  });
});
