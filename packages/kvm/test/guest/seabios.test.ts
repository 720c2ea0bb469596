/**
 * SeaBIOS on the model, without QEMU: Debian's `bios.bin` (qemu-system-x86's firmware, present where QEMU is
 * installed; the test is skipped elsewhere) loaded as QEMU's `pc` machine maps it — at the top of the first MiB
 * (here as writable RAM, the shadow the i440FX's PAM registers would open) and read-only just below 4 GiB — with
 * the in-kernel irqchip and PIT, and a harness answering its port I/O minimally: the i440FX host bridge at 00.0 in
 * PCI configuration space, fw_cfg's signature and ID, CMOS RAM size, 0xff elsewhere.
 *
 * It records how far the firmware gets on the model's CPU: from the reset vector through `transition32` into its
 * 32-bit C code, which prints its banner on the debug port 0x402 and probes PCI, PAM, CMOS, PS/2, ATA, LPT and
 * serial ports — executing every instruction (no emulation failure) until it asks for a reset through port 0xcf9,
 * which this harness does not model (the run then ends in SeaBIOS's fall-back triple fault).
 */
import { O_RDWR, createHost } from '@vac/core';
import { intel } from '@vac/vmx';
import { existsSync, readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as K from '../../src/index.js';

const BIOS = '/usr/share/seabios/bios.bin';

interface Boot {
  readonly debug: string;
  readonly ports: ReadonlySet<number>;
  readonly internalErrors: number;
  readonly last: number;
  readonly resetRequested: boolean;
}

function boot(maxExits: number): Boot {
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
  return { debug, ports, internalErrors, last, resetRequested };
}

describe.skipIf(!existsSync(BIOS))('SeaBIOS on the model (no QEMU; skipped without /usr/share/seabios/bios.bin)', () => {
  test('its 32-bit POST prints the banner, probes the machine and asks for a reset, with no emulation failure on the way', () => {
    const b = boot(20_000);
    expect(b.debug.startsWith('SeaBIOS (version ')).toBe(true);
    expect(b.internalErrors).toBe(0);
    for (const port of [0xcf8, 0xcfc, 0x510, 0x511, 0x70, 0x71, 0x60, 0x64, 0x1f7, 0x3f9]) expect(b.ports.has(port), `port 0x${port.toString(16)}`).toBe(true);
    expect(b.resetRequested).toBe(true);
    expect(b.last).toBe(K.KVM_EXIT_SHUTDOWN);
  }, 300_000); // millions of guest instructions (its PIT waits): ~30 s alone on a loaded 2-core machine
});
