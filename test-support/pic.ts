/**
 * Guest code the interrupt tests of several packages share, written with `@vac/kvm`'s 16-bit assembler.
 *
 * @module
 */
import type { Asm16 } from '@vac/kvm';

/** Options of {@link picInit}. */
export interface PicInitOptions {
  /**
   * First disable the local APIC (IA32_APIC_BASE bit 11 cleared, with RDMSR/WRMSR): a disabled APIC passes the PIC's
   * interrupts through, where an enabled one needs LINT0 in ExtINT mode — which Linux's reset gives the BSP, but
   * QEMU's KVM_SET_LAPIC masks (SeaBIOS programs LINT0 itself). Default false.
   */
  readonly disableLapic?: boolean;
}

/** Program the master PIC (ICW1–ICW4, then OCW1): vectors 0x08–0x0f, every IRQ masked but those in `unmask`. */
export function picInit(a: Asm16, unmask: readonly number[], options: PicInitOptions = {}): Asm16 {
  let mask = 0xff;
  for (const irq of unmask) mask &= ~(1 << irq);
  if (options.disableLapic === true) {
    a.db(0x66, 0xb9, 0x1b, 0x00, 0x00, 0x00) // mov ecx, 0x1b (IA32_APIC_BASE)
      .db(0x0f, 0x32) // rdmsr
      .and('ah', 0xf7) // clear bit 11 (the global enable)
      .db(0x0f, 0x30); // wrmsr
  }
  return a
    .mov('al', 0x11).out(0x20, 'al') // ICW1: edge, cascade, ICW4 follows
    .mov('al', 0x08).out(0x21, 'al') // ICW2: vector base 8
    .mov('al', 0x04).out(0x21, 'al') // ICW3: slave on IRQ 2
    .mov('al', 0x01).out(0x21, 'al') // ICW4: 8086 mode
    .mov('al', mask).out(0x21, 'al'); // OCW1
}
