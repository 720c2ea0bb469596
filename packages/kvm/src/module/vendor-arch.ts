/**
 * The vendor's answers to KVM's generic x86 code ({@link VendorArch}): the ones its vendor module gives (`@vac/vmx`,
 * `@vac/svm`), or, for a vendor that gives none (a plug-in that only runs vCPUs), the generic ones below.
 *
 * @module
 */
import type { VendorArch } from '@vac/core';
import type { KvmInstance } from './instance.js';

/**
 * What KVM's x86 code assumes of a vendor that says nothing: no TSC scaling, no TDP, no vendor features, no vendor
 * MSRs, every emulated MSR emulated, TR reset as VMX's busy 32-bit TSS, the interrupt shadow kept as given, NMIs
 * unblocked by INIT (as VMX), the MXCSR_MASK of an Intel FXSAVE, the x2APIC ICR as one 64-bit register (as VMX).
 */
export const GENERIC_VENDOR_ARCH: VendorArch = Object.freeze({
  tscControl: false,
  smallerMaxPhyAddr: false,
  tdp: false,
  busLockExit: false,
  notifyVmexit: false,
  pmuEventselEvent: 0xffn,
  mceCapExtra: 0n,
  archCapabilitiesExtra: 0n,
  hasEmulatedMsr: () => true,
  featureMsr: () => undefined,
  setCpuCaps: () => undefined,
  vcpuMsrs: new Map(),
  resetTrType: 11,
  normalizeInterruptShadow: (shadow: number) => shadow,
  initUnblocksNmi: true,
  fxsaveMxcsrMask: 0xffff,
  x2apicIcrIsSplit: false,
  linuxExtraVmTypes: 0,
});

/** The {@link VendorArch} of a module's vendor. */
export function vendorArch(inst: KvmInstance): VendorArch {
  return inst.vendor.arch ?? GENERIC_VENDOR_ARCH;
}
