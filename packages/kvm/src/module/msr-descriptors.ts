/**
 * What a module knows of an MSR index before it looks at the vCPU, in one small number per index: whether the
 * module's build removed its handler (builds/build.ts), whether it is one of the vendor's MSRs
 * ({@link VendorArch.vcpuMsrs}), whether it is paravirtual (needs a KVM_FEATURE_* bit, `guest_pv_has`), whether KVM
 * advertises it (KVM_GET_MSR_INDEX_LIST, `kvm_do_msr_access`), and whether its value is read as KVM keeps it
 * (`msr_info->data = vcpu->arch.<field>`, no check). `kvm_get_msr_common` / `kvm_set_msr_common` ask these
 * one lookup at a time (a `Map` or `Set` each, then a `switch` over ~60 indices); here the answers are made once per
 * module and kept in a table indexed by the MSR, for the ranges where KVM's MSRs live.
 *
 * @module
 */
import type { VendorArch } from '@vac/core';
import type { KvmInstance } from './instance.js';
import { buildOf } from '../builds/build.js';
import { vendorArch } from './vendor-arch.js';
import { x86Caps } from './x86-caps.js';

/** The module's build has no handler for the MSR (`buildHasMsr` false). */
export const MSR_REMOVED = 1;
/** One of the vendor's MSRs ({@link VendorArch.vcpuMsrs}). */
export const MSR_VENDOR = 2;
/** Listed by KVM_GET_MSR_INDEX_LIST (`X86Caps.advertisedMsrs`). */
export const MSR_ADVERTISED = 4;
/** A paravirtual MSR (its KVM_FEATURE_* bit is checked under KVM_CAP_ENFORCE_PV_FEATURE_CPUID). */
export const MSR_PV = 8;
/** Read as the value KVM keeps for it, 0 until written (`plainMsrs` of {@link msrDescriptors}). */
export const MSR_PLAIN_READ = 16;

/**
 * The table's index of `msr`, or -1 outside the ranges it covers: the architectural MSRs below 0x1000 (x2APIC and
 * machine-check banks included), 0xc0000000–0xc00000ff (EFER, STAR, the segment bases, TSC_AUX), 0xc0010000–0xc00101ff
 * (AMD's) and KVM's 0x4b564d00–0x4b564dff.
 */
function slotOf(msr: number): number {
  if (msr < 0x1000) return msr;
  if (msr >= 0xc000_0000 && msr < 0xc000_0100) return 0x1000 + (msr - 0xc000_0000);
  if (msr >= 0xc001_0000 && msr < 0xc001_0200) return 0x1100 + (msr - 0xc001_0000);
  if (msr >= 0x4b56_4d00 && msr < 0x4b56_4e00) return 0x1300 + (msr - 0x4b56_4d00);
  return -1;
}
const SLOTS = 0x1400;

/** One module's descriptors, and what they were made from (a table is remade if any of these changes). */
export class MsrDescriptors {
  private readonly table = new Uint8Array(SLOTS);

  /**
   * @param removed - the build's removed MSRs
   * @param vendor - the vendor's MSRs
   * @param advertised - the MSRs KVM lists
   * @param pv - the paravirtual MSRs
   * @param plain - the MSRs read as the value KVM keeps
   */
  constructor(
    readonly removed: ReadonlySet<number>,
    readonly vendor: ReadonlyMap<number, unknown>,
    readonly advertised: ReadonlySet<number>,
    private readonly pv: ReadonlyMap<number, unknown>,
    private readonly plain: ReadonlySet<number>,
  ) {
    const mark = (msrs: Iterable<number>, bit: number): void => {
      for (const msr of msrs) {
        const s = slotOf(msr);
        if (s >= 0) this.table[s] = (this.table[s] as number) | bit;
      }
    };
    mark(removed, MSR_REMOVED);
    mark(vendor.keys(), MSR_VENDOR);
    mark(advertised, MSR_ADVERTISED);
    mark(pv.keys(), MSR_PV);
    mark(plain, MSR_PLAIN_READ);
  }

  /** The `MSR_*` bits of `msr`. */
  of(msr: number): number {
    const s = slotOf(msr);
    if (s >= 0) return this.table[s] as number;
    // outside the table's ranges: asked one by one
    return (
      (this.removed.has(msr) ? MSR_REMOVED : 0) |
      (this.vendor.has(msr) ? MSR_VENDOR : 0) |
      (this.advertised.has(msr) ? MSR_ADVERTISED : 0) |
      (this.pv.has(msr) ? MSR_PV : 0) |
      (this.plain.has(msr) ? MSR_PLAIN_READ : 0)
    );
  }
}

const TABLES = new WeakMap<KvmInstance, MsrDescriptors>();

/**
 * The descriptors of module `inst`'s MSRs, made once (and again if its build, vendor or advertised MSRs are other
 * objects than the table was made from).
 * @param pv - the paravirtual MSRs (index → KVM_FEATURE_* bit)
 * @param plain - the MSRs read as the value KVM keeps
 */
export function msrDescriptors(inst: KvmInstance, pv: ReadonlyMap<number, unknown>, plain: ReadonlySet<number>): MsrDescriptors {
  const removed = buildOf(inst).msrsRemoved;
  const vendor = vendorArch(inst).vcpuMsrs;
  const advertised = x86Caps(inst).advertisedMsrs;
  let t = TABLES.get(inst);
  if (t === undefined || t.removed !== removed || t.vendor !== vendor || t.advertised !== advertised) {
    t = new MsrDescriptors(removed, vendor, advertised, pv, plain);
    TABLES.set(inst, t);
  }
  return t;
}
