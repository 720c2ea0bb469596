/**
 * The SMM state-save area's two layouts (arch/x86/kvm/smm.h `kvm_smram_state_32` / `_64`, smm.c
 * `check_smram_offsets`): where each field goes, and that reading back what was written gives the registers again
 * (the 32-bit layout keeps 32 bits of each, the segment attributes as a descriptor's bits 8–23).
 */
import { describe, expect, test } from 'vitest';
import { KVM_REGS_CODEC, KVM_SREGS_CODEC, type kvm_regs, type kvm_sregs } from '../../src/abi/structs.js';
import { SMM_REVISION_32, SMM_REVISION_64, SMRAM_SAVE_SIZE, readSmram, writeSmram } from '../../src/module/smram.js';

function state(wide: boolean): { regs: kvm_regs; sregs: kvm_sregs } {
  const regs = KVM_REGS_CODEC.zero();
  const names = ['rax', 'rbx', 'rcx', 'rdx', 'rsi', 'rdi', 'rsp', 'rbp', 'r8', 'r9', 'r10', 'r11', 'r12', 'r13', 'r14', 'r15'] as const;
  names.forEach((n, i) => (regs[n] = BigInt(0x1000 + i) | (wide && i < 16 ? BigInt(i + 1) << 40n : 0n)));
  if (!wide) for (const n of names.slice(8)) regs[n] = 0n;
  regs.rip = 0x1234n;
  regs.rflags = 0x246n;
  const sregs = KVM_SREGS_CODEC.zero();
  const segs = ['es', 'cs', 'ss', 'ds', 'fs', 'gs', 'tr', 'ldt'] as const;
  segs.forEach((n, i) => Object.assign(sregs[n], { selector: 0x10 + 8 * i, base: BigInt(0x10000 * (i + 1)), limit: 0xfffff, type: 3 + (i % 8), present: 1, dpl: i % 4, db: i % 2, s: i < 6 ? 1 : 0, l: 0, g: 1, avl: i % 2, unusable: 0 }));
  Object.assign(sregs, { gdt: { base: 0x5000n, limit: 0x27 }, idt: { base: 0x6000n, limit: 0x3ff }, cr0: 0x60000011n, cr3: 0x7000n, cr4: 0x20n, efer: wide ? 0x500n : 0n });
  return { regs, sregs };
}

describe('SMRAM save-state layouts', () => {
  test('32-bit: fields at smm.h offsets, revision 0x00020000, and a round trip', () => {
    const { regs, sregs } = state(false);
    const image = new Uint8Array(SMRAM_SAVE_SIZE);
    writeSmram(image, { regs, sregs, dr6: 0xffff0ff0n, dr7: 0x400n, smbase: 0x30000, intShadow: 2 }, false);
    const dv = new DataView(image.buffer);
    const at = (off: number) => dv.getUint32(off - 0xfe00, true);
    expect(at(0xfefc)).toBe(SMM_REVISION_32);
    expect(at(0xfef8)).toBe(0x30000);
    expect(at(0xfff0)).toBe(0x1234); // eip
    expect(at(0xfff4)).toBe(0x246); // eflags
    expect(at(0xffd0)).toBe(0x1000); // eax, then ecx (the processor's order)
    expect(at(0xffd4)).toBe(0x1002);
    expect(at(0xffac)).toBe(0x18); // cs_sel
    expect(at(0xff90)).toBe((1 << 23) | (1 << 22) | (1 << 20) | (1 << 15) | (1 << 13) | (1 << 12) | (4 << 8)); // cs flags
    expect(at(0xff14)).toBe(0x20); // cr4
    expect(image[0xff1a - 0xfe00]).toBe(2); // int_shadow
    const back = readSmram(image, false);
    expect(back.regs).toEqual({ ...regs, rflags: regs.rflags | 2n });
    expect(back.sregs.cs).toEqual(sregs.cs);
    expect(back.sregs.tr).toEqual(sregs.tr);
    expect([back.sregs.gdt, back.sregs.idt, back.sregs.cr0, back.sregs.cr3, back.sregs.cr4]).toEqual([sregs.gdt, sregs.idt, sregs.cr0, sregs.cr3, sregs.cr4]);
    expect([back.dr6, back.dr7, back.smbase, back.intShadow]).toEqual([0xffff0ff0n, 0x400n, 0x30000, 2]);
  });

  test('64-bit: fields at smm.h offsets, revision 0x00020064, and a round trip of all 64 bits', () => {
    const { regs, sregs } = state(true);
    const image = new Uint8Array(SMRAM_SAVE_SIZE);
    writeSmram(image, { regs, sregs, dr6: 0xffff0ff0n, dr7: 0x400n, smbase: 0xa0000, intShadow: 1 }, true);
    const dv = new DataView(image.buffer);
    expect(dv.getUint32(0xfefc - 0xfe00, true)).toBe(SMM_REVISION_64);
    expect(dv.getUint32(0xff00 - 0xfe00, true)).toBe(0xa0000);
    expect(dv.getBigUint64(0xfff8 - 0xfe00, true)).toBe(regs.rax); // gprs[15]
    expect(dv.getBigUint64(0xff80 - 0xfe00, true)).toBe(regs.r15); // gprs[0]
    expect(dv.getBigUint64(0xfed0 - 0xfe00, true)).toBe(0x500n); // efer
    expect(dv.getUint16(0xfe10 - 0xfe00, true)).toBe(0x18); // cs selector
    expect(image[0xfecb - 0xfe00]).toBe(1); // int_shadow
    const back = readSmram(image, true);
    expect(back.regs).toEqual({ ...regs, rflags: regs.rflags | 2n });
    for (const n of ['es', 'cs', 'ss', 'ds', 'fs', 'gs', 'tr', 'ldt'] as const) expect(back.sregs[n]).toEqual(sregs[n]);
    expect([back.sregs.efer, back.smbase, back.intShadow]).toEqual([0x500n, 0xa0000, 1]);
  });
});
