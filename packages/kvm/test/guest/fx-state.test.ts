/**
 * Group 15 (0F AE): FXSAVE/FXRSTOR between guest memory and the vCPU's FPU image (the platform's `fxState`, which
 * holds the x87 words too), LDMXCSR/STMXCSR, the fences, and the faults the SDM lists (#GP for a
 * misaligned area or reserved MXCSR bits, #UD with CR0.EM, #NM with CR0.TS), in both memory flavours.
 */
import { describe, expect, test } from 'vitest';
import { GuestExitReason, defaultGuestPlatform, initialFxState, runGuest, type GuestPlatform } from '../../src/guest/index.js';
import { FLAVORS, makeVm, word, type Vm } from './helpers.js';

/** A platform of its own (its own FXSAVE image) for each test. */
function platform(): GuestPlatform & { readonly fxState: Uint8Array } {
  const p = defaultGuestPlatform();
  return { ...p, fxState: p.fxState ?? initialFxState() };
}

function run(vm: Vm, p: GuestPlatform): number {
  return runGuest(vm.state, vm.memory, 1000, vm.exit, undefined, p);
}

/** IVT entry `vector` → a handler at 0:0x900 that records the vector in BL and halts. */
function trap(vm: Vm, vector: number): void {
  vm.ram.set([0xb3, vector, 0xf4], 0x900); // mov bl, vector; hlt
  vm.ram.set([0x00, 0x09, 0x00, 0x00], vector * 4);
}

const FXSAVE_2000 = [0x0f, 0xae, 0x06, 0x00, 0x20]; // fxsave [0x2000]
const FXRSTOR_2000 = [0x0f, 0xae, 0x0e, 0x00, 0x20]; // fxrstor [0x2000]
const HLT = [0xf4];

describe.each(FLAVORS)('group 15 (%s memory)', (flavor) => {
  test('FXSAVE stores the x87 words, MXCSR, ST and XMM from the image; bytes from 288 on stay', () => {
    const vm = makeVm(flavor, [...FXSAVE_2000, ...HLT]);
    const p = platform();
    const img = new DataView(p.fxState.buffer, p.fxState.byteOffset, 512);
    img.setUint16(0, 0x27f, true);
    img.setUint16(2, 0x3800, true);
    p.fxState[4] = 0x81;
    img.setUint16(6, 0x123, true);
    img.setBigUint64(8, 0x12345678n, true);
    img.setBigUint64(16, 0x9abcdef0n, true);
    for (let i = 32; i < 288; i++) p.fxState[i] = i & 0xff; // ST0–7, XMM0–7
    vm.ram.fill(0xee, 0x2000, 0x2200);
    expect(run(vm, p)).toBe(GuestExitReason.Hlt);
    const a = vm.ram.subarray(0x2000, 0x2200);
    const dv = new DataView(a.buffer, a.byteOffset, 512);
    expect([dv.getUint16(0, true), dv.getUint16(2, true), a[4], a[5], dv.getUint16(6, true)]).toEqual([0x27f, 0x3800, 0x81, 0, 0x123]);
    expect([dv.getUint32(8, true), dv.getUint16(12, true), dv.getUint32(16, true), dv.getUint16(20, true)]).toEqual([0x12345678, 0, 0x9abcdef0, 0]);
    expect([dv.getUint32(24, true), dv.getUint32(28, true)]).toEqual([0x1f80, 0xffff]);
    for (let i = 32; i < 288; i++) expect(a[i]).toBe(i & 0xff);
    for (let i = 288; i < 512; i++) expect(a[i]).toBe(0xee);
  });

  test('FXRSTOR loads the x87 words, MXCSR, ST and XMM into the image (FIP and FDP zero-extended)', () => {
    const vm = makeVm(flavor, [...FXRSTOR_2000, ...HLT]);
    const p = platform();
    const a = vm.ram.subarray(0x2000, 0x2200);
    const dv = new DataView(a.buffer, a.byteOffset, 512);
    dv.setUint16(0, 0x37f, true);
    dv.setUint16(2, 0x4100, true);
    a[4] = 0xff;
    dv.setUint16(6, 0xfff, true); // FOP is 11 bits
    dv.setUint32(8, 0x1000, true);
    dv.setUint32(16, 0x2000, true);
    dv.setUint32(24, 0x1fbf, true);
    for (let i = 32; i < 288; i++) a[i] = (i * 7) & 0xff;
    expect(run(vm, p)).toBe(GuestExitReason.Hlt);
    const img = new DataView(p.fxState.buffer, p.fxState.byteOffset, 512);
    expect([img.getUint16(0, true), img.getUint16(2, true), p.fxState[4], img.getUint16(6, true)]).toEqual([0x37f, 0x4100, 0xff, 0x7ff]);
    expect([img.getBigUint64(8, true), img.getBigUint64(16, true)]).toEqual([0x1000n, 0x2000n]);
    expect(img.getUint32(24, true)).toBe(0x1fbf);
    expect(img.getUint32(28, true)).toBe(0xffff); // MXCSR_MASK is the CPU's, not the area's
    for (let i = 32; i < 288; i++) expect(p.fxState[i]).toBe((i * 7) & 0xff);
  });

  test('FXSAVE then FXRSTOR round-trips', () => {
    const vm = makeVm(flavor, [...FXSAVE_2000, 0xdb, 0xe3 /* fninit */, ...FXRSTOR_2000, ...HLT]);
    const p = platform();
    new DataView(p.fxState.buffer).setUint16(0, 0x7f, true);
    p.fxState[4] = 0x3;
    expect(run(vm, p)).toBe(GuestExitReason.Hlt);
    expect([new DataView(p.fxState.buffer).getUint16(0, true), p.fxState[4]]).toEqual([0x7f, 0x3]);
  });

  test('a misaligned area raises #GP; reserved MXCSR bits in FXRSTOR raise #GP and load nothing', () => {
    const mis = makeVm(flavor, [0x0f, 0xae, 0x06, 0x08, 0x20, ...HLT]); // fxsave [0x2008]
    trap(mis, 13);
    const p = platform();
    expect(run(mis, p)).toBe(GuestExitReason.Hlt);
    expect(mis.state.rbx & 0xff).toBe(13);
    expect(word(mis.ram, 0x2008)).toBe(0);

    const bad = makeVm(flavor, [...FXRSTOR_2000, ...HLT]);
    trap(bad, 13);
    new DataView(bad.ram.buffer).setUint32(0x2000 + 24, 0x10000, true); // above MXCSR_MASK 0xffff
    bad.ram[0x2000] = 0x12;
    expect(run(bad, p)).toBe(GuestExitReason.Hlt);
    expect(bad.state.rbx & 0xff).toBe(13);
    expect(new DataView(p.fxState.buffer).getUint16(0, true)).toBe(0x37f);
    expect(new DataView(p.fxState.buffer).getUint32(24, true)).toBe(0x1f80);
  });

  test('CR0.EM raises #UD, CR0.TS #NM', () => {
    for (const [bit, vector] of [[4n, 6], [8n, 7]] as const) {
      const vm = makeVm(flavor, [...FXSAVE_2000, ...HLT]);
      trap(vm, vector);
      vm.state.cr0 |= bit;
      expect(run(vm, platform())).toBe(GuestExitReason.Hlt);
      expect(vm.state.rbx & 0xff).toBe(vector);
    }
  });

  test('STMXCSR/LDMXCSR need CR4.OSFXSR (#UD without); LDMXCSR with a reserved bit raises #GP', () => {
    const code = [0x0f, 0xae, 0x1e, 0x00, 0x20, 0x0f, 0xae, 0x16, 0x04, 0x20, ...HLT]; // stmxcsr [0x2000]; ldmxcsr [0x2004]
    const off = makeVm(flavor, code);
    trap(off, 6);
    expect(run(off, platform())).toBe(GuestExitReason.Hlt);
    expect(off.state.rbx & 0xff).toBe(6);

    const vm = makeVm(flavor, code);
    vm.state.cr4 = 0x200n;
    new DataView(vm.ram.buffer).setUint32(0x2004, 0x1f00, true);
    const p = platform();
    expect(run(vm, p)).toBe(GuestExitReason.Hlt);
    expect(new DataView(vm.ram.buffer).getUint32(0x2000, true)).toBe(0x1f80);
    expect(new DataView(p.fxState.buffer).getUint32(24, true)).toBe(0x1f00);

    const bad = makeVm(flavor, code.slice(5));
    trap(bad, 13);
    bad.state.cr4 = 0x200n;
    new DataView(bad.ram.buffer).setUint32(0x2004, 0x20000, true);
    expect(run(bad, p)).toBe(GuestExitReason.Hlt);
    expect(bad.state.rbx & 0xff).toBe(13);
  });

  test('LFENCE, MFENCE and SFENCE complete; 0F AE with a register operand below /5 is #UD', () => {
    const vm = makeVm(flavor, [0x0f, 0xae, 0xe8, 0x0f, 0xae, 0xf0, 0x0f, 0xae, 0xf8, ...HLT]);
    expect(run(vm, platform())).toBe(GuestExitReason.Hlt);
    expect(vm.state.rip).toBe(0x100a);
    const ud = makeVm(flavor, [0x0f, 0xae, 0xc0, ...HLT]);
    trap(ud, 6);
    expect(run(ud, platform())).toBe(GuestExitReason.Hlt);
    expect(ud.state.rbx & 0xff).toBe(6);
  });

  test('a platform without FPU state makes FXSAVE an emulation failure', () => {
    const vm = makeVm(flavor, [...FXSAVE_2000, ...HLT]);
    const { fxState: _, ...bare } = platform();
    expect(run(vm, bare)).toBe(GuestExitReason.InternalError);
    expect(vm.exit.detail).toMatch(/no FPU state/);
  });

  test('a platform without FPU state makes FNSTCW an emulation failure too', () => {
    const vm = makeVm(flavor, [0xd9, 0x3e, 0x00, 0x20, ...HLT]);
    const { fxState: _, ...bare } = platform();
    expect(run(vm, bare)).toBe(GuestExitReason.InternalError);
  });
});

/** A vCPU's image as KVM keeps it: 4096 bytes with the XSAVE header, XSTATE_BV (byte 512) saying what is live. */
function xsavePlatform(bv: number): GuestPlatform & { readonly fxState: Uint8Array } {
  const image = new Uint8Array(4096);
  image.set(initialFxState());
  image[512] = bv;
  return { ...defaultGuestPlatform(), fxState: image };
}

describe.each(FLAVORS)('the x87/SSE state and XSTATE_BV (%s memory)', (flavor) => {
  const FNSTCW_500 = [0xd9, 0x3e, 0x00, 0x05];
  const FNSTSW_502 = [0xdd, 0x3e, 0x02, 0x05];
  const FNINIT = [0xdb, 0xe3];

  test('x87 not in XSTATE_BV: the guest sees the init values whatever the bytes say (KVM_SET_FPU on a new vCPU)', () => {
    const vm = makeVm(flavor, [...FNSTCW_500, ...FNSTSW_502, ...HLT]);
    const p = xsavePlatform(0);
    new DataView(p.fxState.buffer).setUint32(0, 0x0800027f, true); // FCW 0x27f, FSW 0x800: not live
    expect(run(vm, p)).toBe(GuestExitReason.Hlt);
    expect([word(vm.ram, 0x500), word(vm.ram, 0x502)]).toEqual([0x37f, 0]);
  });

  test('x87 in XSTATE_BV: the guest sees the bytes; FNINIT clears the bit and leaves the bytes (KVM_GET_FPU shows them)', () => {
    const vm = makeVm(flavor, [...FNSTCW_500, ...FNINIT, 0xd9, 0x3e, 0x04, 0x05, ...HLT]);
    const p = xsavePlatform(1);
    new DataView(p.fxState.buffer).setUint32(0, 0x0800027f, true);
    expect(run(vm, p)).toBe(GuestExitReason.Hlt);
    expect([word(vm.ram, 0x500), word(vm.ram, 0x504)]).toEqual([0x27f, 0x37f]);
    expect(p.fxState[512]).toBe(0);
    expect(new DataView(p.fxState.buffer).getUint32(0, true)).toBe(0x0800027f);
  });

  test('FXSAVE of components in their init configuration stores their init values; FXRSTOR makes x87 and SSE live', () => {
    const vm = makeVm(flavor, [...FXSAVE_2000, ...FXRSTOR_2000, ...HLT]);
    const p = xsavePlatform(0);
    p.fxState.fill(0x5a, 32, 288); // stale ST and XMM bytes
    new DataView(p.fxState.buffer).setUint16(0, 0x27f, true);
    expect(run(vm, p)).toBe(GuestExitReason.Hlt);
    const a = vm.ram.subarray(0x2000, 0x2120);
    expect(new DataView(a.buffer, a.byteOffset).getUint16(0, true)).toBe(0x37f);
    expect(a.subarray(32, 288).every((b) => b === 0)).toBe(true);
    expect(p.fxState[512]).toBe(3);
    expect(new DataView(p.fxState.buffer).getUint16(0, true)).toBe(0x37f);
    expect(p.fxState.subarray(32, 288).every((b) => b === 0)).toBe(true);
  });

  test('LDMXCSR makes SSE live with its XMM registers at their init values', () => {
    const vm = makeVm(flavor, [0x0f, 0xae, 0x16, 0x00, 0x20, ...HLT]); // ldmxcsr [0x2000]
    vm.state.cr4 = 0x200n;
    new DataView(vm.ram.buffer).setUint32(0x2000, 0x1f00, true);
    const p = xsavePlatform(1);
    p.fxState.fill(0x5a, 160, 416);
    expect(run(vm, p)).toBe(GuestExitReason.Hlt);
    expect(p.fxState[512]).toBe(3);
    expect(p.fxState.subarray(160, 416).every((b) => b === 0)).toBe(true);
    expect(new DataView(p.fxState.buffer).getUint32(24, true)).toBe(0x1f00);
  });
});
