import { readFileSync } from 'node:fs';
import { KvmIrqchip, type IrqchipOptions, type LapicVcpu, type VcpuInterrupts } from '../../src/irqchip/index.js';

/** A vCPU double that records what the irqchip asked of it. */
export interface FakeVcpu extends LapicVcpu {
  kicks: number;
  nmis: number;
}

export function fakeVcpu(vcpuId: number, bsp = vcpuId === 0): FakeVcpu {
  return {
    vcpuId,
    kicks: 0,
    nmis: 0,
    isResetBsp: () => bsp,
    guestTsc: (now) => now, // 1 GHz guest TSC: one cycle per ns
    tscKhz: () => 1_000_000,
    injectNmi() {
      this.nmis++;
    },
    injectSmi: () => true,
    kick() {
      this.kicks++;
    },
  };
}

export function vmWith(nVcpus: number, options: IrqchipOptions = {}): { chip: KvmIrqchip; vcpus: VcpuInterrupts[]; fakes: FakeVcpu[] } {
  const chip = KvmIrqchip.createKernel(options);
  const fakes = Array.from({ length: nVcpus }, (_, i) => fakeVcpu(i));
  const vcpus = fakes.map((f) => chip.addVcpu(f));
  return { chip, vcpus, fakes };
}

export interface RealKvm {
  [key: string]: unknown;
}

/** What the machine's real /dev/kvm answered (fixtures/real-kvm-irqchip.c). */
export const REAL: RealKvm = JSON.parse(
  readFileSync(new URL('./fixtures/real-kvm-irqchip.json', import.meta.url), 'utf8'),
) as RealKvm;

export function hex(key: string): Uint8Array {
  const s = REAL[key];
  if (typeof s !== 'string') throw new Error(`fixture ${key} is not a hex string`);
  return Uint8Array.from(s.match(/../g) ?? [], (b) => parseInt(b, 16));
}

export function u32(bytes: Uint8Array, off: number): number {
  return new DataView(bytes.buffer, bytes.byteOffset).getUint32(off, true);
}

/** The full ICW sequence a BIOS runs: master at `base`, slave at `base2`, 8086 mode. */
export function initPics(chip: KvmIrqchip, base = 0x08, base2 = 0x70, now = 0n): void {
  for (const [cmd, data, b, casc] of [[0x20, 0x21, base, 4], [0xa0, 0xa1, base2, 2]] as const) {
    chip.pioWrite(cmd, 1, 0x11, now);
    chip.pioWrite(data, 1, b, now);
    chip.pioWrite(data, 1, casc, now);
    chip.pioWrite(data, 1, 0x01, now);
  }
}
