/**
 * `struct kvm_pic_state` (arch/x86/include/uapi/asm/kvm.h, 16 bytes): one 8259's state as KVM_GET_IRQCHIP and
 * KVM_SET_IRQCHIP carry it for chip 0 (master) and chip 1 (slave). KVM copies it to and from its own
 * `struct kvm_kpic_state` byte for byte (`kvm_vm_ioctl_get_irqchip` / `kvm_vm_ioctl_set_irqchip`, x86.c), so
 * every `__u8` value round-trips unchanged, `elcr_mask` included.
 *
 * @module
 */

import { KVM_LAYOUTS } from '../../abi/layout.js';
import { UsageError } from '@vac/core';

/** `struct kvm_pic_state`, field for field. */
export interface kvm_pic_state {
  /** Edge detection: the line level seen last. */ last_irr: number;
  /** Interrupt request register. */ irr: number;
  /** Interrupt mask register. */ imr: number;
  /** In-service register. */ isr: number;
  /** Rotation: the pin with the highest priority is `priority_add`. */ priority_add: number;
  /** Vector base (ICW2, low 3 bits clear). */ irq_base: number;
  /** OCW3 read-register select: 0 reads IRR, 1 reads ISR. */ read_reg_select: number;
  /** OCW3 poll command pending. */ poll: number;
  /** OCW3 special mask mode. */ special_mask: number;
  /** ICW sequence position: 0 done, 1 expects ICW2, 2 ICW3, 3 ICW4. */ init_state: number;
  /** ICW4 automatic EOI. */ auto_eoi: number;
  /** OCW2 rotate on automatic EOI. */ rotate_on_auto_eoi: number;
  /** ICW4 special fully nested mode. */ special_fully_nested_mode: number;
  /** ICW1 says an ICW4 follows. */ init4: number;
  /** Edge/level control register (ports 0x4d0/0x4d1). */ elcr: number;
  /** Which ELCR bits are writable. */ elcr_mask: number;
}

/** The field names of `kvm_pic_state` in C order (each a `__u8` at its index). */
export const KVM_PIC_STATE_FIELDS = [
  'last_irr', 'irr', 'imr', 'isr', 'priority_add', 'irq_base', 'read_reg_select', 'poll',
  'special_mask', 'init_state', 'auto_eoi', 'rotate_on_auto_eoi', 'special_fully_nested_mode', 'init4',
  'elcr', 'elcr_mask',
] as const satisfies readonly (keyof kvm_pic_state)[];

/** `sizeof(struct kvm_pic_state)`. */
export const KVM_PIC_STATE_SIZE = KVM_LAYOUTS.kvm_pic_state.size;

/** A `kvm_pic_state` with every field zero, overridden by `init`. */
export function makeKvmPicState(init: Partial<kvm_pic_state> = {}): kvm_pic_state {
  const s = {} as kvm_pic_state;
  for (const f of KVM_PIC_STATE_FIELDS) s[f] = init[f] ?? 0;
  return s;
}

/** An independent copy holding exactly the struct's fields. */
export function copyKvmPicState(s: kvm_pic_state): kvm_pic_state {
  return makeKvmPicState(s);
}

/** The first shape problem of `x` as a `kvm_pic_state`, or `undefined`. */
export function validateKvmPicState(x: unknown): string | undefined {
  if (typeof x !== 'object' || x === null) return 'kvm_pic_state must be an object';
  const o = x as Record<string, unknown>;
  for (const f of KVM_PIC_STATE_FIELDS) {
    const v = o[f];
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > 0xff) {
      return `kvm_pic_state.${f} must be an integer in 0..255 (__u8)`;
    }
  }
  return undefined;
}

/** Throws a `UsageError` naming the first shape problem of `x` as a `kvm_pic_state`. */
export function assertKvmPicState(x: unknown): asserts x is kvm_pic_state {
  const p = validateKvmPicState(x);
  if (p !== undefined) throw new UsageError('ERR_INVALID_ARG', p);
}

/** Write `s` as a C `struct kvm_pic_state` at `offset` of `view`. */
export function encodeKvmPicState(s: kvm_pic_state, view: DataView, offset = 0): void {
  KVM_PIC_STATE_FIELDS.forEach((f, i) => view.setUint8(offset + i, s[f]));
}

/** Read a C `struct kvm_pic_state` at `offset` of `view`. */
export function decodeKvmPicState(view: DataView, offset = 0): kvm_pic_state {
  const s = makeKvmPicState();
  KVM_PIC_STATE_FIELDS.forEach((f, i) => (s[f] = view.getUint8(offset + i)));
  return s;
}
