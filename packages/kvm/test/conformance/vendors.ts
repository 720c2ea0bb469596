/**
 * The two setups of the VAC conformance suite (ZenFS-style): the same vendor-neutral tests run against an
 * Intel host (`intel()` from `@vac/vmx`) and an AMD host (`amd()` from `@vac/svm`).
 *
 * A {@link VendorSetup} turns vendor-neutral wishes ("CPU 2 has no virtualization in CPUID", "the BIOS
 * disabled it on CPU 3", "small ASID space") into that vendor's model options, and knows how to poke the
 * hardware behind VAC's back for the invariant-checker tests.
 *
 * @module
 */
import { createHost } from '@vac/core';
import type { FaultMode, HardwareModel, Host } from '@vac/core';
import { amd } from '@vac/svm';
import type { AmdCpuOptions, AmdOptions } from '@vac/svm';
import { intel, isIntelHardware } from '@vac/vmx';
import type { IntelCpuOptions, IntelHardware, IntelOptions } from '@vac/vmx';

/** What a test may ask of one CPU, whatever the vendor. */
export interface CpuQuirks {
  /** CPUID says no VMX / no SVM (CPUID.1:ECX.VMX, CPUID 0x80000001 ECX.SVM clear). */
  readonly noVirt?: boolean;
  /** The BIOS disabled VMX (IA32_FEATURE_CONTROL locked without VMX) / SVM (VM_CR.SVMDIS). */
  readonly biosDisabled?: boolean;
  /** A foreign hypervisor owns VMX / SVM on the CPU from boot. */
  readonly foreignOwner?: boolean;
  /** An injected VMXON / EFER.SVME fault from boot. */
  readonly enableFault?: FaultMode;
}

/** Options of {@link VendorSetup.host}. */
export interface SetupOptions {
  /** Number of CPUs (default 4). */
  readonly cpus?: number;
  /** Per-CPU quirks. */
  readonly perCpu?: Readonly<Record<number, CpuQuirks>>;
  /** AMD only (ignored on Intel): CPUID 0x8000000A.EBX, the number of ASIDs. */
  readonly nrAsids?: number;
  /** AMD only: CPUID 0x8000001F ECX, the highest SEV ASID (0 = no SEV). */
  readonly maxSevAsid?: number;
  /** AMD only: CPUID 0x8000001F EDX, the lowest plain-SEV ASID. */
  readonly minSevAsid?: number;
  /** MSRs every CPU implements on top of the vendor's (number, boot value): test MSRs for user-return slots. */
  readonly extraMsrs?: ReadonlyArray<readonly [number, bigint]>;
  /** CPUs to take offline before VAC loads. */
  readonly offline?: readonly number[];
  /** Load `vac` (default true). */
  readonly loadVac?: boolean;
}

/** One vendor's setup. */
export interface VendorSetup {
  /** For test titles. */
  readonly name: 'Intel' | 'AMD';
  /** What `vacOf(host).vendor` must say. */
  readonly virt: 'vmx' | 'svm';
  /** What an instance's views of the vendor's VAC resources hold when it holds nothing (default host). */
  readonly emptyResources: Readonly<Record<string, unknown>>;
  /** The hardware model for the options. */
  model(opts?: SetupOptions): HardwareModel;
  /** A host with that hardware, the extra MSRs, the offline CPUs and (by default) `vac` loaded. */
  host(opts?: SetupOptions): Host;
  /** The message Linux logs for a BIOS-disabled CPU. */
  biosMessage(cpu: number): string;
  /** The message Linux logs for a CPU without VMX/SVM in CPUID. */
  noVirtMessage(cpu: number): string;
  /** Turn VMX/SVM off on `cpu` behind VAC's back (a raw VMXOFF / a WRMSR clearing EFER.SVME). */
  turnOffBehindVacsBack(host: Host, cpu: number): void;
  /** Turn VMX/SVM on on `cpu` with the hardware directly (VAC's vendor ops, not through VAC). */
  enableBehindVacsBack(host: Host, cpu: number): void;
}

/** MSRs both vendors implement that KVM lists as user-return MSRs (`MSR_STAR`, `MSR_LSTAR`, …). */
export const MSR = {
  STAR: 0xc0000081,
  LSTAR: 0xc0000082,
  CSTAR: 0xc0000083,
  SYSCALL_MASK: 0xc0000084,
  TSC_AUX: 0xc0000103,
} as const;

/** The real user-return MSRs above, as a list. */
export const SYSCALL_MSRS: readonly number[] = Object.values(MSR);

/** Test MSR number `i` (not an architectural MSR: only CPUs given it with `extraMsrs` implement it). */
export function testMsr(i: number): number {
  return 0xc0011100 + i;
}

function intelCpu(q: CpuQuirks): IntelCpuOptions {
  return {
    ...(q.noVirt === true ? { vmx: false } : {}),
    ...(q.biosDisabled === true ? { vmxDisabledByBios: true } : {}),
    ...(q.foreignOwner === true ? { foreignOwner: true } : {}),
    ...(q.enableFault !== undefined ? { enableFault: q.enableFault } : {}),
  };
}

function amdCpu(q: CpuQuirks): AmdCpuOptions {
  return {
    ...(q.noVirt === true ? { svm: false } : {}),
    ...(q.biosDisabled === true ? { svmDisabledByBios: true } : {}),
    ...(q.foreignOwner === true ? { foreignOwner: true } : {}),
    ...(q.enableFault !== undefined ? { enableFault: q.enableFault } : {}),
  };
}

function perCpu<T>(opts: SetupOptions, map: (q: CpuQuirks) => T): Record<number, T> {
  const out: Record<number, T> = {};
  for (const [cpu, q] of Object.entries(opts.perCpu ?? {})) out[Number(cpu)] = map(q);
  return out;
}

function build(setup: Pick<VendorSetup, 'model'>, opts: SetupOptions): Host {
  const host = createHost({ cpus: opts.cpus ?? 4, hardware: setup.model(opts) });
  for (const c of host.cpus) for (const [msr, value] of opts.extraMsrs ?? []) c.msrs.set(msr, value);
  for (const cpu of opts.offline ?? []) host.cpuDown(cpu);
  if (opts.loadVac ?? true) host.modprobe('vac');
  return host;
}

function intelHw(host: Host): IntelHardware {
  const hw = host.hardware;
  if (!isIntelHardware(hw)) throw new Error('not an Intel host');
  return hw;
}

/** The Intel setup. */
export const INTEL: VendorSetup = {
  name: 'Intel',
  virt: 'vmx',
  emptyResources: { vpids: [] },
  model(opts = {}) {
    const o: IntelOptions = { cpus: perCpu(opts, intelCpu) };
    return intel(o);
  },
  host(opts = {}) {
    return build(this, opts);
  },
  biosMessage: (cpu) => `VMX not enabled (by BIOS) in MSR_IA32_FEAT_CTL on CPU ${cpu}`,
  noVirtMessage: (cpu) => `VMX not supported by CPU ${cpu}`,
  turnOffBehindVacsBack(host, cpu) {
    expectOk(intelHw(host).vmx.vmxoff(cpu) === 'VMsucceed', `VMXOFF on CPU ${cpu}`);
  },
  enableBehindVacsBack(host, cpu) {
    expectOk(host.hardware.virt.enableCpu(cpu) === undefined, `VMXON on CPU ${cpu}`);
  },
};

/** The AMD setup. */
export const AMD: VendorSetup = {
  name: 'AMD',
  virt: 'svm',
  emptyResources: { asids: 0, 'sev-asids': [] },
  model(opts = {}) {
    const o: AmdOptions = {
      cpus: perCpu(opts, amdCpu),
      ...(opts.nrAsids !== undefined ? { nrAsids: opts.nrAsids } : {}),
      ...(opts.maxSevAsid !== undefined ? { maxSevAsid: opts.maxSevAsid } : {}),
      ...(opts.minSevAsid !== undefined ? { minSevAsid: opts.minSevAsid } : {}),
    };
    return amd(o);
  },
  host(opts = {}) {
    return build(this, opts);
  },
  biosMessage: (cpu) => `SVM disabled (by BIOS) in MSR_VM_CR on CPU ${cpu}`,
  noVirtMessage: (cpu) => `SVM not supported by CPU ${cpu}`,
  turnOffBehindVacsBack(host, cpu) {
    const c = host.cpus[cpu];
    if (c === undefined) throw new Error(`no CPU ${cpu}`);
    const efer = c.rdmsrSafe(0xc0000080) ?? 0n;
    expectOk(c.wrmsrSafe(0xc0000080, efer & ~(1n << 12n)), `WRMSR EFER on CPU ${cpu}`);
  },
  enableBehindVacsBack(host, cpu) {
    expectOk(host.hardware.virt.enableCpu(cpu) === undefined, `EFER.SVME on CPU ${cpu}`);
  },
};

/** Both setups, for `describe.each`. */
export const VENDORS: readonly VendorSetup[] = [INTEL, AMD];

function expectOk(ok: boolean, what: string): void {
  if (!ok) throw new Error(`${what} failed`);
}
