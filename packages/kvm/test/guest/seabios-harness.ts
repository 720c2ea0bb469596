/**
 * SeaBIOS on the model, without QEMU (the harness of `seabios.test.ts` and of the guest-instruction benchmark):
 * Debian's `bios.bin` loaded as QEMU's `pc` machine maps it — at the top of the first MiB (here as writable RAM, the
 * shadow the i440FX's PAM registers would open) and read-only just below 4 GiB — with the in-kernel irqchip and PIT,
 * and a harness answering its port I/O minimally: the i440FX host bridge at 00.0 in PCI configuration space,
 * fw_cfg's signature and ID, CMOS RAM size, 0xff elsewhere. The firmware runs from the reset vector through
 * `transition32` into its 32-bit C code until it asks for a reset through port 0xcf9, which this harness does not
 * model (the run then ends in SeaBIOS's fall-back triple fault).
 */
import { O_RDWR, createHost } from '@vac/core';
import { intel } from '@vac/vmx';
import { readFileSync } from 'node:fs';
import * as K from '../../src/index.js';

/** Debian's SeaBIOS (qemu-system-x86's firmware). */
export const BIOS = '/usr/share/seabios/bios.bin';

/** What a boot did. */
export interface Boot {
  readonly debug: string;
  readonly ports: ReadonlySet<number>;
  readonly internalErrors: number;
  readonly last: number;
  readonly resetRequested: boolean;
  /** Guest instructions executed. */
  readonly instructions: number;
}

/** How {@link boot} builds the machine. */
export interface BootOptions {
  /**
   * Put a byte-by-byte view over the VM's memory (`read8`/`write8` only, no slot fast path), as the bridge's view of a
   * real VMM's RAM is: the interpreter then fetches through its decoded-instruction cache.
   */
  readonly bytewise?: boolean;
}

/**
 * Boots bios.bin for up to `maxExits` exits (see the module notes) and reports what it did.
 */
export function boot(maxExits: number, opts: BootOptions = {}): Boot {
  const bios = readFileSync(BIOS);
  const host = createHost({ cpus: 2, hardware: intel() });
  host.modprobe(K.kvm({ postfix: '0' }));
  const p = host.spawn({ uid: 1000, groups: ['kvm'], name: 'vmm', nofile: 1024 });
  const sys = p.open('/dev/kvm0', O_RDWR);
  const cpuid = K.makeKvmCpuid2(80);
  p.ioctl(sys, K.KVM_GET_SUPPORTED_CPUID, cpuid);
  cpuid.entries.length = cpuid.nent;
  const vm = p.ioctl(sys, K.KVM_CREATE_VM, 0);
  const ramSize = 64 << 20;
  const ram = p.mmapAnonymous(ramSize);
  ram.bytes.set(bios, 0x100000 - bios.length);
  p.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION, K.makeKvmUserspaceMemoryRegion({ slot: 0, guest_phys_addr: 0, memory_size: ramSize, userspace_addr: ram.addr }));
  const rom = p.mmapAnonymous(bios.length);
  rom.bytes.set(bios);
  p.ioctl(vm, K.KVM_SET_USER_MEMORY_REGION, K.makeKvmUserspaceMemoryRegion({ slot: 1, flags: K.KVM_MEM_READONLY, guest_phys_addr: 0x1_0000_0000 - bios.length, memory_size: bios.length, userspace_addr: rom.addr }));
  p.ioctl(vm, K.KVM_CREATE_IRQCHIP, 0);
  p.ioctl(vm, K.KVM_CREATE_PIT2, K.makeKvmPitConfig({ flags: 0 }));
  if (opts.bytewise === true) {
    const v = K.vmOf(p, vm);
    v.guestMemoryView = (inner) => ({ read8: (gpa) => inner.read8(gpa), write8: (gpa, value) => inner.write8(gpa, value) });
    v.guestMemory = v.guestMemoryView(v.guestMemory);
  }
  const fd = p.ioctl(vm, K.KVM_CREATE_VCPU, 0);
  p.ioctl(fd, K.KVM_SET_CPUID2, cpuid);
  const run = K.mapKvmRun(p, sys, fd);
  let debug = '';
  const ports = new Set<number>();
  let pciAddr = 0;
  let cmosIndex = 0;
  let fwSelect = 0;
  let fwOffset = 0;
  let internalErrors = 0;
  let resetRequested = false;
  let last = 0;
  for (let n = 0; n < maxExits; n++) {
    try {
      p.ioctl(fd, K.KVM_RUN, 0);
    } catch {
      break; // EINTR: halted with nothing to wake it
    }
    last = run.exit_reason;
    if (last === K.KVM_EXIT_IO) {
      const port = run.io.port;
      ports.add(port);
      const d = run.bytes.subarray(run.io.data_offset, run.io.data_offset + run.io.size * run.io.count);
      let v = 0;
      for (let i = d.length - 1; i >= 0; i--) v = v * 256 + d[i]!;
      if (run.io.direction === K.KVM_EXIT_IO_OUT) {
        if (port === 0x402) debug += Buffer.from(d).toString('latin1');
        else if (port === 0xcf8 && d.length === 4) pciAddr = v;
        else if (port === 0x70) cmosIndex = v & 0x7f;
        else if (port === 0x510) [fwSelect, fwOffset] = [v & 0xffff, 0];
        else if (port === 0xcf9 && (v & 4) !== 0) resetRequested = true;
        continue;
      }
      if (port === 0x511) {
        const item = fwSelect === 0 ? [0x51, 0x45, 0x4d, 0x55] : fwSelect === 1 ? [1, 0, 0, 0] : []; // "QEMU", ID 1
        for (let i = 0; i < d.length; i++) d[i] = item[fwOffset++] ?? 0;
        continue;
      }
      let answer = 0xffffffff;
      if (port >= 0xcfc && port <= 0xcff) {
        const reg = pciAddr & 0xfc;
        const hostBridge = ((pciAddr >>> 8) & 0xffff) === 0;
        answer = hostBridge ? (reg === 0 ? 0x12378086 : reg === 8 ? 0x06000002 : 0) >>> ((port - 0xcfc) * 8) : 0xffffffff;
      } else if (port === 0x71) {
        answer = cmosIndex === 0x35 ? (ramSize - (16 << 20)) >> 24 : 0; // RAM above 16 MiB in 64 KiB units, high byte
      }
      for (let i = 0; i < d.length; i++) d[i] = (answer >>> (8 * (i % 4))) & 0xff;
      continue;
    }
    if (last === K.KVM_EXIT_MMIO) {
      if (run.mmio.is_write === 0) run.mmio.data.fill(0xff);
      continue;
    }
    if (last === K.KVM_EXIT_INTERNAL_ERROR) internalErrors++;
    if (last !== K.KVM_EXIT_HLT) break;
  }
  return { debug, ports, internalErrors, last, resetRequested, instructions: K.vcpuOf(p, fd).stats.instructions };
}
