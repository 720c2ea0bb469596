/**
 * The in-kernel PIC pair, Linux's `struct kvm_pic` (arch/x86/kvm/i8259.c): two 8259As, the slave cascaded on
 * the master's IRQ 2, their ports 0x20/0x21 and 0xa0/0xa1, and the ELCR ports 0x4d0/0x4d1.
 *
 * Modelled as Linux does: the ICW1–ICW4 initialization sequence, OCW1 (IMR), OCW2 (non-specific, specific and
 * rotating EOI, set priority, rotate on auto-EOI), OCW3 (read IRR/ISR, poll, special mask — stored but, as in
 * KVM, not used when choosing the interrupt), edge and level triggering through the ELCR, auto-EOI and special
 * fully nested mode, the spurious IRQ 7 (master) and 15 (slave) answer, and the output line that makes the
 * first vCPU accepting PIC interrupts leave HLT. Single mode and ICW1 level mode are not supported (Linux logs
 * "not supported" and goes on, as here).
 *
 * @module
 */

import { KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE } from '../abi/constants.js';
import { PIC_MASTER_ELCR_MASK, PIC_NUM_PINS, PIC_SLAVE_ELCR_MASK } from './constants.js';
import { UsageError } from '@vac/core';
import { checkUint } from './errors.js';
import { LineStates } from './line-state.js';
import { assertKvmPicState, copyKvmPicState, makeKvmPicState, type kvm_pic_state } from './state/pic-state.js';

/** What the PIC tells the rest of the VM. */
export interface PicHooks {
  /** An ISR bit was cleared: `kvm_notify_acked_irq(kvm, SELECT_PIC(irq), irq)` (irq 0-15). */
  ackedIrq(irqchip: typeof KVM_IRQCHIP_PIC_MASTER | typeof KVM_IRQCHIP_PIC_SLAVE, irq: number): void;
  /** An IMR bit changed: `kvm_fire_mask_notifiers(kvm, SELECT_PIC(irq), irq, masked)`. */
  maskChanged(irqchip: typeof KVM_IRQCHIP_PIC_MASTER | typeof KVM_IRQCHIP_PIC_SLAVE, irq: number, masked: boolean): void;
  /**
   * The output was low when it was evaluated again (`pic_irq_request` sets `wakeup_needed`); at the end of the
   * operation KVM makes KVM_REQ_EVENT and kicks the first vCPU that accepts PIC interrupts (`pic_unlock`).
   */
  wakeup(): void;
  /** Whether any vCPU accepts PIC interrupts (`kvm_apic_accept_pic_intr` over the VM's vCPUs). */
  anyVcpuAcceptsPicIntr(): boolean;
}

/** The ports the PIC device answers (`picdev_in_range`). */
export const PIC_PORTS: readonly number[] = [0x20, 0x21, 0xa0, 0xa1, 0x4d0, 0x4d1];

/** `get_priority`: the priority (0 highest) of the best pin in `mask` after rotation, 8 if none. */
function getPriority(s: kvm_pic_state, mask: number): number {
  if (mask === 0) return 8;
  let priority = 0;
  while ((mask & (1 << ((priority + s.priority_add) & 7))) === 0) priority++;
  return priority;
}

/** The PIC pair of one VM. */
export class KvmPic {
  readonly #chips: [kvm_pic_state, kvm_pic_state];
  readonly #lines = new LineStates(PIC_NUM_PINS);
  readonly #hooks: PicHooks;
  #output = false;
  #wakeupNeeded = false;

  /** `kvm_create_pic`: both chips zeroed, ELCR masks 0xf8 and 0xde. */
  constructor(hooks: PicHooks) {
    this.#hooks = hooks;
    this.#chips = [makeKvmPicState({ elcr_mask: PIC_MASTER_ELCR_MASK }), makeKvmPicState({ elcr_mask: PIC_SLAVE_ELCR_MASK })];
  }

  /** The INTR line to the CPU (`kvm_pic.output`), what `kvm_cpu_has_extint` reads. */
  get output(): boolean {
    return this.#output;
  }

  /**
   * Set `source`'s level on pin `irq` (0-15) and return what KVM_IRQ_LINE_STATUS counts for the PIC
   * (`kvm_pic_set_irq`): -1 if the pin is masked, 0 if an edge was coalesced into a pending one, else 1.
   */
  setIrq(irq: number, source: number, level: boolean): number {
    checkUint(irq, PIC_NUM_PINS - 1, 'PIC pin');
    const lineLevel = this.#lines.set(irq, source, level);
    const ret = this.#setIrq1(this.#chip(irq >> 3), irq & 7, lineLevel === 1);
    this.#updateIrq();
    this.#unlock();
    return ret;
  }

  /** Drop an IRQ source from every pin (`kvm_pic_clear_all`). */
  clearSource(source: number): void {
    this.#lines.clearSource(source);
  }

  /**
   * Acknowledge the interrupt the PIC presents and return its vector (`kvm_pic_read_irq`): the master's
   * `irq_base + irq`, through the slave for IRQ 2, or the spurious IRQ 7 (master) / 15 (slave) when nothing is
   * pending any more.
   */
  readIrq(): number {
    const [master, slave] = this.#chips;
    this.#output = false;
    let intno: number;
    const irq = this.#getIrq(master);
    if (irq >= 0) {
      this.#intack(master, irq);
      if (irq === 2) {
        let irq2 = this.#getIrq(slave);
        if (irq2 >= 0) this.#intack(slave, irq2);
        else irq2 = 7;
        intno = (slave.irq_base + irq2) & 0xff;
      } else {
        intno = (master.irq_base + irq) & 0xff;
      }
    } else {
      intno = (master.irq_base + 7) & 0xff;
    }
    this.#updateIrq();
    this.#unlock();
    return intno;
  }

  /**
   * A guest OUT to one of {@link PIC_PORTS} (`picdev_write`). Returns `false` for a port the PIC does not own
   * (Linux's -EOPNOTSUPP: the bus tries the next device). Accesses wider than a byte are ignored.
   */
  ioWrite(port: number, value: number, len = 1): boolean {
    if (!PIC_PORTS.includes(port)) return false;
    if (len !== 1) return true;
    const data = value & 0xff;
    if (port === 0x4d0 || port === 0x4d1) {
      const s = this.#chip(port & 1);
      s.elcr = data & s.elcr_mask;
    } else {
      this.#portWrite(this.#chip(port >> 7), port, data);
    }
    this.#unlock();
    return true;
  }

  /**
   * A guest IN from one of {@link PIC_PORTS} (`picdev_read`): the byte read, or `undefined` for a port the PIC
   * does not own. Wider accesses read 0.
   */
  ioRead(port: number, len = 1): number | undefined {
    if (!PIC_PORTS.includes(port)) return undefined;
    if (len !== 1) return 0;
    let data: number;
    if (port === 0x4d0 || port === 0x4d1) {
      data = this.#chip(port & 1).elcr;
    } else {
      const s = this.#chip(port >> 7);
      if (s.poll) {
        data = this.#pollRead(s, port);
        s.poll = 0;
      } else if ((port & 1) === 0) {
        data = s.read_reg_select ? s.isr : s.irr;
      } else {
        data = s.imr;
      }
    }
    this.#unlock();
    return data;
  }

  /** KVM_GET_IRQCHIP for chip 0 (master) or 1 (slave): a copy of its `kvm_pic_state`. */
  getState(chip: 0 | 1): kvm_pic_state {
    return copyKvmPicState(this.#chip(chip));
  }

  /**
   * KVM_SET_IRQCHIP for chip 0 or 1: the state is copied in byte for byte (no field is checked, as in Linux),
   * then the output is re-evaluated (`kvm_pic_update_irq`). A value outside `__u8` is a `UsageError`.
   */
  setState(chip: 0 | 1, state: kvm_pic_state): void {
    assertKvmPicState(state);
    Object.assign(this.#chip(chip), copyKvmPicState(state));
    this.#updateIrq();
    this.#unlock();
  }

  #chip(i: number): kvm_pic_state {
    const s = this.#chips[i];
    if (s === undefined) throw new UsageError('ERR_OUT_OF_RANGE', `PIC chip must be 0 or 1, got ${String(i)}`);
    return s;
  }

  #isMaster(s: kvm_pic_state): boolean {
    return s === this.#chips[0];
  }

  /** `pic_unlock`: the deferred wake-up. */
  #unlock(): void {
    if (!this.#wakeupNeeded) return;
    this.#wakeupNeeded = false;
    this.#hooks.wakeup();
  }

  /** `pic_set_irq1`: edge detection through `last_irr`, level pins follow the line. */
  #setIrq1(s: kvm_pic_state, irq: number, level: boolean): number {
    const mask = 1 << irq;
    let ret = 1;
    if (s.elcr & mask) {
      if (level) {
        ret = s.irr & mask ? 0 : 1;
        s.irr |= mask;
        s.last_irr |= mask;
      } else {
        s.irr &= ~mask & 0xff;
        s.last_irr &= ~mask & 0xff;
      }
    } else if (level) {
      if ((s.last_irr & mask) === 0) {
        ret = s.irr & mask ? 0 : 1;
        s.irr |= mask;
      }
      s.last_irr |= mask;
    } else {
      s.last_irr &= ~mask & 0xff;
    }
    return s.imr & mask ? -1 : ret;
  }

  /** `pic_get_irq`: the pin to present, or -1 (special fully nested mode ignores the master's ISR bit 2). */
  #getIrq(s: kvm_pic_state): number {
    const priority = getPriority(s, s.irr & ~s.imr & 0xff);
    if (priority === 8) return -1;
    let isr = s.isr;
    if (s.special_fully_nested_mode && this.#isMaster(s)) isr &= ~(1 << 2);
    return priority < getPriority(s, isr) ? (priority + s.priority_add) & 7 : -1;
  }

  /** `pic_update_irq`: cascade the slave onto master IRQ 2, then drive the output. */
  #updateIrq(): void {
    const [master, slave] = this.#chips;
    if (this.#getIrq(slave) >= 0) {
      this.#setIrq1(master, 2, true);
      this.#setIrq1(master, 2, false);
    }
    const level = this.#getIrq(master) >= 0;
    if (!this.#output) this.#wakeupNeeded = true; // pic_irq_request
    this.#output = level;
  }

  /** `pic_clear_isr`: clear the bit and tell the ack notifiers (Linux drops the lock around them). */
  #clearIsr(s: kvm_pic_state, irq: number): void {
    s.isr &= ~(1 << irq) & 0xff;
    const master = this.#isMaster(s);
    this.#unlock();
    this.#hooks.ackedIrq(master ? KVM_IRQCHIP_PIC_MASTER : KVM_IRQCHIP_PIC_SLAVE, master ? irq : irq + 8);
  }

  /** `pic_intack`: IRR → ISR (level pins keep IRR), auto-EOI with optional rotation. */
  #intack(s: kvm_pic_state, irq: number): void {
    s.isr |= 1 << irq;
    if (!(s.elcr & (1 << irq))) s.irr &= ~(1 << irq) & 0xff;
    if (s.auto_eoi) {
      if (s.rotate_on_auto_eoi) s.priority_add = (irq + 1) & 7;
      this.#clearIsr(s, irq);
    }
  }

  /** `kvm_pic_reset`, run by ICW1. */
  #reset(s: kvm_pic_state): void {
    const edgeIrr = s.irr & ~s.elcr & 0xff;
    s.last_irr = 0;
    s.irr &= s.elcr;
    s.imr = 0;
    s.priority_add = 0;
    s.special_mask = 0;
    s.read_reg_select = 0;
    if (!s.init4) {
      s.special_fully_nested_mode = 0;
      s.auto_eoi = 0;
    }
    s.init_state = 1;
    if (!this.#hooks.anyVcpuAcceptsPicIntr()) return;
    for (let irq = 0; irq < 8; irq++) if (edgeIrr & (1 << irq)) this.#clearIsr(s, irq);
  }

  /** `pic_ioport_write`. */
  #portWrite(s: kvm_pic_state, port: number, val: number): void {
    if ((port & 1) === 0) {
      if (val & 0x10) {
        // ICW1 (bit 1: single mode and bit 3: level mode are not supported; Linux only logs them).
        s.init4 = val & 1;
        this.#reset(s);
      } else if (val & 0x08) {
        // OCW3.
        if (val & 0x04) s.poll = 1;
        if (val & 0x02) s.read_reg_select = val & 1;
        if (val & 0x40) s.special_mask = (val >> 5) & 1;
      } else {
        this.#ocw2(s, val);
      }
      return;
    }
    switch (s.init_state) {
      case 0: {
        // OCW1: the IMR.
        const diff = s.imr ^ val;
        const off = this.#isMaster(s) ? 0 : 8;
        s.imr = val;
        for (let irq = 0; irq < 8; irq++) {
          if (diff & (1 << irq)) {
            this.#hooks.maskChanged(off ? KVM_IRQCHIP_PIC_SLAVE : KVM_IRQCHIP_PIC_MASTER, irq + off, (s.imr & (1 << irq)) !== 0);
          }
        }
        this.#updateIrq();
        break;
      }
      case 1:
        s.irq_base = val & 0xf8; // ICW2
        s.init_state = 2;
        break;
      case 2:
        s.init_state = s.init4 ? 3 : 0; // ICW3 (cascade wiring is fixed)
        break;
      case 3:
        s.special_fully_nested_mode = (val >> 4) & 1; // ICW4
        s.auto_eoi = (val >> 1) & 1;
        s.init_state = 0;
        break;
      default:
        break; // a state SET_IRQCHIP stored outside 0-3: Linux's switch has no case for it either
    }
  }

  /** OCW2: the EOI and rotation commands. */
  #ocw2(s: kvm_pic_state, val: number): void {
    const cmd = val >> 5;
    switch (cmd) {
      case 0:
      case 4:
        s.rotate_on_auto_eoi = cmd >> 2;
        break;
      case 1: // non-specific EOI
      case 5: {
        // rotate on non-specific EOI
        const priority = getPriority(s, s.isr);
        if (priority !== 8) {
          const irq = (priority + s.priority_add) & 7;
          if (cmd === 5) s.priority_add = (irq + 1) & 7;
          this.#clearIsr(s, irq);
          this.#updateIrq();
        }
        break;
      }
      case 3: // specific EOI
        this.#clearIsr(s, val & 7);
        this.#updateIrq();
        break;
      case 6: // set priority
        s.priority_add = (val + 1) & 7;
        this.#updateIrq();
        break;
      case 7: {
        // rotate on specific EOI
        const irq = val & 7;
        s.priority_add = (irq + 1) & 7;
        this.#clearIsr(s, irq);
        this.#updateIrq();
        break;
      }
      default:
        break; // 2: no operation
    }
  }

  /**
   * `pic_poll_read`: the poll command acknowledges the pending pin and answers it with bit 7 set ("an interrupt
   * is pending", since Linux 5.14), or 0x07 when none is (checked on a real /dev/kvm).
   */
  #pollRead(s: kvm_pic_state, port: number): number {
    const ret = this.#getIrq(s);
    if (ret < 0) {
      this.#updateIrq();
      return 0x07;
    }
    const slave = port >> 7 !== 0;
    if (slave) {
      const master = this.#chips[0];
      master.isr &= ~(1 << 2) & 0xff;
      master.irr &= ~(1 << 2) & 0xff;
    }
    s.irr &= ~(1 << ret) & 0xff;
    this.#clearIsr(s, ret);
    if (slave || ret !== 2) this.#updateIrq();
    return ret | 0x80;
  }
}
