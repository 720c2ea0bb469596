/**
 * A present ring-0 segment as KVM loads one itself — at reset (`kvm_vcpu_reset`'s TR and LDTR) and on entering SMM
 * (`enter_smm`'s CS and data segments): the given selector, base, limit, type, S and G; DPL, D/B, L and AVL clear.
 */
import type { kvm_segment } from '../abi/structs.js';

/** The parts that differ between KVM's own segment loads. */
export interface PresentSegment {
  readonly selector: number;
  readonly base: bigint;
  readonly limit: number;
  readonly type: number;
  /** 1 for a code/data segment, 0 for a system segment (TSS, LDT). */
  readonly s: number;
  /** 1 when the limit counts 4 KiB pages. */
  readonly g: number;
}

/** Writes `p` into `seg`, present and usable, every other attribute 0. */
export function setPresentSegment(seg: kvm_segment, p: PresentSegment): void {
  seg.selector = p.selector;
  seg.base = p.base;
  seg.limit = p.limit;
  seg.type = p.type;
  seg.s = p.s;
  seg.g = p.g;
  seg.present = 1;
  seg.dpl = 0;
  seg.db = 0;
  seg.l = 0;
  seg.avl = 0;
  seg.unusable = 0;
}
