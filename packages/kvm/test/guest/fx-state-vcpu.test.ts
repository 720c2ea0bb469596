/**
 * FXSAVE/FXRSTOR in a guest of the model's /dev/kvm: the vCPU's FPU image is the one KVM_GET/SET_XSAVE show
 * (`vcpu->arch.guest_fpu`), so MXCSR and the XMM registers user space loaded are what the guest's FXSAVE stores,
 * and what the guest's FXRSTOR loads is what user space reads back.
 */
import { describe, expect, test } from 'vitest';
import { KVM_EXIT_HLT, KVM_GET_XSAVE, KVM_RUN, KVM_SET_XSAVE, makeKvmXsave } from '../../src/index.js';
import { guestVm } from '../abi/guest-vm.js';
import { VENDORS } from '../module/helpers.js';

/** u32 indices in the XSAVE region: MXCSR (byte 24), XMM0 (byte 160), XMM1 (byte 176). */
const MXCSR = 6;
const XMM0 = 40;
const XMM1 = 44;
/** XSTATE_BV's low word (byte 512). */
const XSTATE_BV = 128;

describe.each(VENDORS)('FXSAVE/FXRSTOR through KVM_RUN ($name)', (vendor) => {
  test("FXSAVE stores the MXCSR and XMM0 KVM_SET_XSAVE loaded; FXRSTOR's XMM1 is what KVM_GET_XSAVE reads", () => {
    // fxsave [0x3000]; mov word [0x30b0], 0xbeef (XMM1's low word in the area); fxrstor [0x3000]; hlt
    const g = guestVm(vendor, [0x0f, 0xae, 0x06, 0x00, 0x30, 0xc7, 0x06, 0xb0, 0x30, 0xef, 0xbe, 0x0f, 0xae, 0x0e, 0x00, 0x30, 0xf4]);
    const x = makeKvmXsave();
    expect(g.p.ioctl(g.fd, KVM_GET_XSAVE, x)).toBe(0);
    x.region[MXCSR] = 0x1fa0;
    x.region[XMM0] = 0x12345678;
    x.region[XSTATE_BV] = x.region[XSTATE_BV]! | 2; // SSE: else KVM_SET_XSAVE loads neither (copy_uabi_to_xstate)
    expect(g.p.ioctl(g.fd, KVM_SET_XSAVE, x)).toBe(0);
    expect(g.p.ioctl(g.fd, KVM_RUN, 0)).toBe(0);
    expect(g.run.exit_reason).toBe(KVM_EXIT_HLT);
    const area = new DataView(g.mem.bytes.buffer, g.mem.bytes.byteOffset + 0x3000, 512);
    expect(area.getUint32(24, true)).toBe(0x1fa0);
    expect(area.getUint32(160, true)).toBe(0x12345678);
    const after = makeKvmXsave();
    expect(g.p.ioctl(g.fd, KVM_GET_XSAVE, after)).toBe(0);
    expect([after.region[MXCSR], after.region[XMM0], after.region[XMM1]]).toEqual([0x1fa0, 0x12345678, 0xbeef]);
  });

  test('KVM_SET_XSAVE loads only the components XSTATE_BV names: without SSE the guest sees XMM0 and MXCSR as they were', () => {
    const g = guestVm(vendor, [0x0f, 0xae, 0x06, 0x00, 0x30, 0xf4]); // fxsave [0x3000]; hlt
    const x = makeKvmXsave();
    g.p.ioctl(g.fd, KVM_GET_XSAVE, x);
    x.region[XSTATE_BV] = 0;
    x.region[MXCSR] = 0x1fa0;
    x.region[XMM0] = 0x12345678;
    expect(g.p.ioctl(g.fd, KVM_SET_XSAVE, x)).toBe(0);
    g.p.ioctl(g.fd, KVM_RUN, 0);
    const area = new DataView(g.mem.bytes.buffer, g.mem.bytes.byteOffset + 0x3000, 512);
    expect([area.getUint32(24, true), area.getUint32(160, true)]).toEqual([0x1f80, 0]);
  });
});
