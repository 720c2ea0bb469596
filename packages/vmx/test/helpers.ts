/**
 * Test helpers: a small fake host environment (the `HardwareEnv` a hardware model receives).
 *
 * @module
 */
import { Cpu, EventBus } from '@vac/core';
import type { HardwareEnv, WarningRecord } from '@vac/core';
import { intel } from '../src/index.js';
import type { IntelHardware, IntelOptions } from '../src/index.js';

/** A fake host: its env, the Intel hardware built on it, and what it recorded. */
export interface TestHost {
  readonly env: HardwareEnv & { rebooting: boolean };
  readonly hw: IntelHardware;
  readonly cpus: Cpu[];
  readonly warnings: WarningRecord[];
  readonly events: Array<{ name: string; cpu: number }>;
}

/** Build `n` CPUs, an event bus and a warning sink, and create the Intel hardware on them. */
export function makeHost(n: number, options: IntelOptions = {}): TestHost {
  const cpus = Array.from({ length: n }, (_, i) => new Cpu(i));
  const warnings: WarningRecord[] = [];
  const bus = new EventBus();
  const events: Array<{ name: string; cpu: number }> = [];
  bus.on('virt:enable', (e) => events.push({ name: 'virt:enable', cpu: e.cpu }));
  bus.on('virt:disable', (e) => events.push({ name: 'virt:disable', cpu: e.cpu }));
  const env = {
    cpus,
    events: bus,
    warn(w: WarningRecord): void {
      warnings.push(w);
    },
    rebooting: false,
  };
  const hw = intel(options).create(env);
  return { env, hw, cpus, warnings, events };
}

/** CR4.VMXE. */
export const VMXE = 1 << 13;
