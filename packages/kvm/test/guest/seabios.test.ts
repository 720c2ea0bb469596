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
import { existsSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import * as K from '../../src/index.js';
import { BIOS, boot } from './seabios-harness.js';

describe.skipIf(!existsSync(BIOS))('SeaBIOS on the model (no QEMU; skipped without /usr/share/seabios/bios.bin)', () => {
  test('its 32-bit POST prints the banner, probes the machine and asks for a reset, with no emulation failure on the way', () => {
    const b = boot(20_000);
    expect(b.debug.startsWith('SeaBIOS (version ')).toBe(true);
    expect(b.internalErrors).toBe(0);
    for (const port of [0xcf8, 0xcfc, 0x510, 0x511, 0x70, 0x71, 0x60, 0x64, 0x1f7, 0x3f9]) expect(b.ports.has(port), `port 0x${port.toString(16)}`).toBe(true);
    expect(b.resetRequested).toBe(true);
    expect(b.last).toBe(K.KVM_EXIT_SHUTDOWN);
  }, 300_000); // millions of guest instructions (its PIT waits): ~30 s alone on a loaded 2-core machine

  test('through a byte-wise memory (the decoded-instruction cache) it runs exactly as on the slot memory', () => {
    // Its first 200 exits (~240,000 instructions): the reset vector, transition32, the 32-bit C code's banner and first probes.
    const slots = boot(200);
    const cached = boot(200, { bytewise: true });
    expect(slots.instructions).toBeGreaterThan(100_000);
    expect(slots.debug).toContain('SeaBIOS (version ');
    expect(cached).toEqual(slots);
  }, 300_000);
});
