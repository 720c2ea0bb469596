/**
 * Guest port and MMIO accesses the in-kernel devices take, so that they never reach user space (virt/kvm/kvm_main.c
 * `kvm_io_bus_write`/`kvm_io_bus_read` on KVM_PIO_BUS and KVM_MMIO_BUS, tried by `kernel_pio` and
 * `vcpu_mmio_write`/`vcpu_mmio_read` before an exit): the PIC pair (0x20/0x21, 0xa0/0xa1, the ELCR at 0x4d0/0x4d1),
 * the PIT (0x40–0x43) and its speaker port (0x61, with `KVM_PIT_SPEAKER_DUMMY`), the vCPU's LAPIC page and the
 * IOAPIC window. An IN's or MMIO read's value goes where user space's answer would (`exit.data`): the instruction
 * completes at the next entry as if user space had answered, with no exit.
 *
 * A string instruction (`ins`/`outs`) to a device port still exits to user space (the model does not run KVM's
 * emulator over the bus for it).
 *
 * @module
 */
import type { GuestCpuState } from '../guest/cpu-state.js';
import type { GuestExit } from '../guest/exit.js';
import type { VcpuIntr } from './vcpu-intr.js';
import type { VmIrqchip } from './vm-irqchip.js';

/** Whether some in-kernel device may own `port` (a cheap filter before asking them). */
function deviceablePort(port: number): boolean {
  return (port & ~1) === 0x20 || (port & ~1) === 0xa0 || (port & ~1) === 0x4d0 || (port >= 0x40 && port <= 0x43) || port === 0x61;
}

function littleEndian(b: Uint8Array, len: number): number {
  let v = 0;
  for (let i = Math.min(len, 4) - 1; i >= 0; i--) v = v * 256 + (b[i] ?? 0);
  return v >>> 0;
}

function store(b: Uint8Array, len: number, v: number): void {
  for (let i = 0; i < 8; i++) b[i] = i < len && i < 4 ? (v >>> (8 * i)) & 0xff : 0;
}

/**
 * The I/O exit in `x` if an in-kernel device takes it (`kernel_pio`): done, and true; false to exit to user space.
 */
export function kernelPio(irq: VmIrqchip, x: GuestExit, _regs: GuestCpuState): boolean {
  if (x.ioCount !== 1 || !deviceablePort(x.ioPort)) return false;
  const port = x.ioPort;
  const size = x.ioSize;
  if (x.ioDirection === 1) return irq.pioWrite(port, size, littleEndian(x.data, size));
  const v = irq.pioRead(port, size);
  if (v === undefined) return false;
  store(x.data, size, v);
  return true;
}

/** The MMIO exit in `x` if the vCPU's LAPIC or the IOAPIC takes it: done, and true; false to exit to user space. */
export function kernelMmio(irq: VmIrqchip, intr: VcpuIntr, x: GuestExit): boolean {
  const ints = intr.chip;
  if (ints === undefined) return false;
  const address = BigInt(x.mmioPhysAddr);
  const len = x.mmioLen;
  if (x.mmioIsWrite !== 0) {
    const value = littleEndian(x.data, len);
    return irq.op((now) => irq.chip.mmioWrite(ints, address, len, value, now));
  }
  const v = irq.op((now) => irq.chip.mmioRead(ints, address, len, now));
  if (v === undefined) return false;
  store(x.data, len, v);
  return true;
}
