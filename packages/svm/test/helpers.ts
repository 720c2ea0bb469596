/**
 * Test helpers: a {@link HardwareEnv} built from core exports, and a host with the AMD model.
 *
 * @module
 */
import { Cpu, EventBus } from '@vac/core';
import type { EventName, EventStamp, HardwareEnv, WarningRecord } from '@vac/core';
import { amd } from '../src/index.js';
import type { AmdHardware, AmdOptions } from '../src/index.js';

/** A hardware environment with `n` CPUs that records warnings. */
export interface TestEnv extends HardwareEnv {
  /** Every warning passed to `warn`. */
  readonly warnings: WarningRecord[];
}

/** Build a {@link TestEnv} with CPUs 0 … n-1. */
export function makeEnv(n: number): TestEnv {
  const warnings: WarningRecord[] = [];
  return {
    cpus: Array.from({ length: n }, (_, i) => new Cpu(i)),
    events: new EventBus(),
    warn: (w) => {
      warnings.push(w);
    },
    rebooting: false,
    warnings,
  };
}

/** An AMD host: the env and its hardware. */
export function makeHost(n: number, options?: AmdOptions): { env: TestEnv; hw: AmdHardware } {
  const env = makeEnv(n);
  const hw = amd(options).create(env);
  return { env, hw };
}

/** Record every event of a bus as `[name, payload]`. */
export function record(env: HardwareEnv): Array<[EventName, EventStamp]> {
  const out: Array<[EventName, EventStamp]> = [];
  env.events.onAny((name, payload) => out.push([name, payload]));
  return out;
}
