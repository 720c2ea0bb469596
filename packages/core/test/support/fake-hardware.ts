/**
 * A minimal test double of a vendor hardware model (`HardwareModel` from src/hardware.ts).
 *
 * It models just enough of VMX/SVM for host and VAC tests: per CPU, whether VAC turned virtualization on,
 * whether a foreign hypervisor owns it, and an injectable enable fault. No CPUID or MSR semantics beyond a
 * feature bit, no VMCS/VMCB. Use it wherever a test needs a host but not a particular vendor:
 *
 * ```ts
 * const host = createHost({ cpus: 4, hardware: fakeHardware() });
 * ```
 *
 * @module
 */
import { CR4, UsageError } from '../../src/index.js';
import type { AsidSpace, ErrnoCode, FaultMode, HardwareEnv, HardwareModel, HostHardware, Violation, VirtOps } from '../../src/index.js';

/** Options of {@link fakeHardware}. */
export interface FakeHardwareOptions {
  /** The model name (default `'fake'`). */
  readonly name?: string;
  /** The vendor (default `'intel'`: the virt ops are called `'vmx'`; `'amd'` gives `'svm'`). */
  readonly vendor?: 'intel' | 'amd';
  /** CPUs on which virtualization is unusable, with the kernel's message (as a BIOS lock would give). */
  readonly unsupported?: Readonly<Record<number, string>>;
  /** The ASID space to report (AMD only; default 16 ASIDs, no SEV). */
  readonly asidSpace?: AsidSpace;
}

/** The per-CPU counters of the fake. */
export interface FakeCounters {
  /** Successful enables. */
  readonly enable: number;
  /** Disables of an enabled CPU. */
  readonly disable: number;
  /** Emergency disables (any state). */
  readonly emergency: number;
  /** Enables that failed (foreign owner, injected fault, already on). */
  readonly enableFailed: number;
}

/** The fake's {@link HostHardware}, with a few extra read-outs for tests. */
export interface FakeHostHardware extends HostHardware {
  /** The CPUs VAC currently has virtualization enabled on, ascending. */
  enabledCpus(): number[];
  /** Whether a foreign hypervisor owns `cpu`. */
  foreignOwned(cpu: number): boolean;
  /** Every call VAC made on the virt ops, in order (`'enable:3'`, `'disable:3'`, `'emergency:0'`). */
  readonly calls: string[];
}

interface CpuState {
  enabled: boolean;
  foreign: boolean;
  fault: FaultMode;
  enable: number;
  disable: number;
  emergency: number;
  enableFailed: number;
}

/**
 * Build a fake hardware model. Each host that uses it gets its own state (`create` is called per host).
 */
export function fakeHardware(opts: FakeHardwareOptions = {}): HardwareModel {
  const vendor = opts.vendor ?? 'intel';
  const model: HardwareModel = {
    name: opts.name ?? 'fake',
    vendor,
    create(env: HardwareEnv): FakeHostHardware {
      return createFakeHostHardware(model, env, opts);
    },
  };
  return model;
}

function createFakeHostHardware(model: HardwareModel, env: HardwareEnv, opts: FakeHardwareOptions): FakeHostHardware {
  const n = env.cpus.length;
  const vmx = model.vendor === 'intel';
  const state: CpuState[] = Array.from({ length: n }, () => ({
    enabled: false,
    foreign: false,
    fault: 'off' as FaultMode,
    enable: 0,
    disable: 0,
    emergency: 0,
    enableFailed: 0,
  }));
  const calls: string[] = [];
  for (const cpu of env.cpus) {
    // CPUID.1:ECX.VMX[bit 5] on Intel, CPUID.80000001h:ECX.SVM[bit 2] on AMD.
    if (vmx) cpu.cpuid.set(1, { eax: 0, ebx: 0, ecx: 1 << 5, edx: 0 });
    else cpu.cpuid.set(0x8000_0001, { eax: 0, ebx: 0, ecx: 1 << 2, edx: 0 });
  }

  const at = (op: string, cpu: number): CpuState => {
    const s = Number.isInteger(cpu) ? state[cpu] : undefined;
    if (s === undefined) throw new UsageError('ERR_NO_SUCH_CPU', `fake hardware: ${op}: no CPU ${String(cpu)}`);
    return s;
  };
  /** Keep CR4.VMXE in step with "someone is in VMX operation" (Intel only). */
  const syncCr4 = (cpu: number, s: CpuState): void => {
    if (!vmx) return;
    const c = env.cpus[cpu];
    if (c === undefined) return;
    c.cr4 = s.enabled || s.foreign ? c.cr4 | CR4.VMXE : c.cr4 & ~CR4.VMXE;
  };

  const virt: VirtOps = {
    name: vmx ? 'vmx' : 'svm',
    unsupported(cpu) {
      at('unsupported', cpu);
      return opts.unsupported?.[cpu];
    },
    enableCpu(cpu): ErrnoCode | undefined {
      const s = at('enableCpu', cpu);
      calls.push(`enable:${cpu}`);
      let err: ErrnoCode | undefined;
      // vmx_hardware_enable: CR4.VMXE already set (someone else is in VMX operation) → -EBUSY.
      if (s.foreign || s.enabled) err = 'EBUSY';
      else if (s.fault === 'always') err = 'EFAULT';
      else if (s.fault === 'once') {
        s.fault = 'off';
        err = 'EFAULT';
      }
      if (err !== undefined) {
        s.enableFailed++;
        return err;
      }
      s.enabled = true;
      s.enable++;
      syncCr4(cpu, s);
      return undefined;
    },
    disableCpu(cpu) {
      const s = at('disableCpu', cpu);
      calls.push(`disable:${cpu}`);
      if (!s.enabled) return;
      s.enabled = false;
      s.disable++;
      syncCr4(cpu, s);
    },
    emergencyDisable(cpu) {
      const s = at('emergencyDisable', cpu);
      calls.push(`emergency:${cpu}`);
      s.emergency++;
      s.enabled = false;
      syncCr4(cpu, s);
    },
    isEnabled(cpu) {
      const s = at('isEnabled', cpu);
      return s.enabled || s.foreign;
    },
    ...(vmx ? {} : { asidSpace: (): AsidSpace => opts.asidSpace ?? { nrAsids: 16, minSevAsid: 1, maxSevAsid: 0 } }),
  };

  return {
    model,
    virt,
    calls,
    counters(cpu): Readonly<FakeCounters & Record<string, number>> {
      const s = at('counters', cpu);
      return Object.freeze({ enable: s.enable, disable: s.disable, emergency: s.emergency, enableFailed: s.enableFailed });
    },
    check(): Violation[] {
      const out: Violation[] = [];
      state.forEach((s, cpu) => {
        if (s.enabled && s.foreign) out.push({ invariant: 1, message: `CPU ${cpu} has two owners of ${virt.name.toUpperCase()}`, cpu });
      });
      return out;
    },
    /** Hardware state only: the fault knobs and the statistics counters are not part of it. */
    snapshot(): unknown {
      return state.map((s) => ({ enabled: s.enabled, foreign: s.foreign }));
    },
    setForeignOwner(cpu, owned) {
      const s = at('setForeignOwner', cpu);
      s.foreign = owned;
      syncCr4(cpu, s);
    },
    injectEnableFault(cpu, mode) {
      at('injectEnableFault', cpu).fault = mode;
    },
    enabledCpus() {
      return state.flatMap((s, cpu) => (s.enabled ? [cpu] : []));
    },
    foreignOwned(cpu) {
      return at('foreignOwned', cpu).foreign;
    },
  };
}
