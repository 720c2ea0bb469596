/**
 * The interrupt side of one vCPU (arch/x86/kvm/irq.c): its local APIC plus the source of external (ExtINT)
 * interrupts — the in-kernel PIC, or in split mode the vector user space queued with KVM_INTERRUPT — and the
 * questions the run loop asks: is there an interrupt for the guest (`kvm_cpu_has_interrupt`), which vector does
 * it take (`kvm_cpu_get_interrupt`).
 *
 * @module
 */

import { KernelError } from '@vac/core';
import { checkUint } from './errors.js';
import type { KvmLapic } from './lapic.js';
import type { KvmPic } from './pic.js';

/** `kvm->arch.irqchip_mode` once an irqchip exists. */
export type IrqchipMode = 'kernel' | 'split';

/** What a vCPU needs from its VM's irqchip. */
export interface ExtintSource {
  /** Full in-kernel irqchip or split. */
  readonly mode: IrqchipMode;
  /** The PIC pair (full mode). */
  readonly pic: KvmPic | undefined;
  /** Run an operation and the deferred work it queues. */
  run<T>(fn: () => T): T;
  /** Open the bracket of {@link ExtintSource.run} (for a hot path that has no closure to pass). */
  beginRun(): void;
  /** Close it: at the outermost bracket, the deferred work runs. Call in a `finally` after {@link ExtintSource.beginRun}. */
  endRun(): void;
}

/** The interrupt side of one vCPU: its LAPIC plus the external-interrupt source (PIC, or user space in split mode). */
export class VcpuInterrupts {
  readonly lapic: KvmLapic;
  readonly #chip: ExtintSource;
  /** `vcpu->arch.pending_external_vector` (split mode, KVM_INTERRUPT), -1 if none. */
  #pendingExternalVector = -1;

  /** @param chip - the VM's irqchip; @param lapic - this vCPU's APIC */
  constructor(chip: ExtintSource, lapic: KvmLapic) {
    this.#chip = chip;
    this.lapic = lapic;
  }

  /** `kvm_cpu_has_extint`: the PIC (or a user-space ExtINT) has an interrupt and LINT0 lets it through. */
  hasExtint(): boolean {
    if (!this.lapic.acceptsPicIntr()) return false;
    if (this.#chip.mode === 'split') return this.#pendingExternalVector !== -1;
    return this.#chip.pic?.output ?? false;
  }

  /** `kvm_cpu_has_interrupt` (= `kvm_cpu_has_injectable_intr` without APICv). */
  hasInterrupt(): boolean {
    return this.hasExtint() || this.lapic.hasInterrupt() !== -1;
  }

  /** `kvm_cpu_get_interrupt`: acknowledge and return the vector the CPU takes now, or -1. */
  getInterrupt(): number {
    // One irqchip operation (ExtintSource.run, without a closure per interrupt).
    const chip = this.#chip;
    chip.beginRun();
    try {
      if (this.hasExtint()) {
        if (chip.mode === 'split') {
          const v = this.#pendingExternalVector;
          this.#pendingExternalVector = -1;
          return v;
        }
        return (chip.pic as KvmPic).readIrq();
      }
      return this.lapic.getInterrupt();
    } finally {
      chip.endRun();
    }
  }

  /**
   * KVM_INTERRUPT with an in-kernel LAPIC (`kvm_vcpu_ioctl_interrupt`): only a split irqchip takes it, as the
   * ExtINT vector of the user-space PIC. EINVAL for irq ≥ 256, ENXIO with an in-kernel PIC, EEXIST while one
   * is pending.
   */
  injectExtint(irq: number): void {
    checkUint(irq, 0xffffffff, 'kvm_interrupt.irq');
    if (irq >= 256) throw new KernelError('EINVAL', 'kvm_vcpu_ioctl_interrupt', 'irq ≥ KVM_NR_INTERRUPTS');
    if (this.#chip.mode === 'kernel') throw new KernelError('ENXIO', 'kvm_vcpu_ioctl_interrupt', 'the PIC is in the kernel');
    if (this.#pendingExternalVector !== -1) throw new KernelError('EEXIST', 'kvm_vcpu_ioctl_interrupt', 'an ExtINT is already pending');
    this.#pendingExternalVector = irq;
    this.lapic.vcpu.kick();
  }

  /** The ExtINT vector user space queued and the CPU has not taken yet (split mode), or -1. */
  get pendingExternalVector(): number {
    return this.#pendingExternalVector;
  }
}

