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
  // An object literal in C order (one hidden class for every state; stores by computed names made a dictionary of
  // each, and every KVM_GET/SET_IRQCHIP of a PIC copies one).
  return {
    last_irr: init.last_irr ?? 0,
    irr: init.irr ?? 0,
    imr: init.imr ?? 0,
    isr: init.isr ?? 0,
    priority_add: init.priority_add ?? 0,
    irq_base: init.irq_base ?? 0,
    read_reg_select: init.read_reg_select ?? 0,
    poll: init.poll ?? 0,
    special_mask: init.special_mask ?? 0,
    init_state: init.init_state ?? 0,
    auto_eoi: init.auto_eoi ?? 0,
    rotate_on_auto_eoi: init.rotate_on_auto_eoi ?? 0,
    special_fully_nested_mode: init.special_fully_nested_mode ?? 0,
    init4: init.init4 ?? 0,
    elcr: init.elcr ?? 0,
    elcr_mask: init.elcr_mask ?? 0,
  };
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
  return {
    last_irr: view.getUint8(offset),
    irr: view.getUint8(offset + 1),
    imr: view.getUint8(offset + 2),
    isr: view.getUint8(offset + 3),
    priority_add: view.getUint8(offset + 4),
    irq_base: view.getUint8(offset + 5),
    read_reg_select: view.getUint8(offset + 6),
    poll: view.getUint8(offset + 7),
    special_mask: view.getUint8(offset + 8),
    init_state: view.getUint8(offset + 9),
    auto_eoi: view.getUint8(offset + 10),
    rotate_on_auto_eoi: view.getUint8(offset + 11),
    special_fully_nested_mode: view.getUint8(offset + 12),
    init4: view.getUint8(offset + 13),
    elcr: view.getUint8(offset + 14),
    elcr_mask: view.getUint8(offset + 15),
  };
}
