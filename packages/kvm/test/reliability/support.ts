/**
 * Helpers of the reliability suite: hosts on both vendors, "fails with exactly this errno and changes
 * nothing" assertions, VMs with vCPUs ready to run, a small seeded PRNG, and counters for the report.
 *
 * @module
 */
import { expectKernelError, prng, thrown } from '@vac/test-support';
import { KernelError, O_RDWR, UsageError, checkInvariants, createHost, errnoOf, vacOf, type ErrnoCode, type Host, type HostOptions, type Process, type Vac } from '@vac/core';
import { amd } from '@vac/svm';
import { intel } from '@vac/vmx';
import { KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_GET_SREGS, KVM_SET_REGS, KVM_SET_SREGS, KVM_SET_USER_MEMORY_REGION, makeKvmRegs, makeKvmSregs } from '../../src/index.js';
import { VPIDS } from '@vac/vmx';
import { ASIDS, SEV_ASIDS } from '@vac/svm';

/** Both vendors. */
export const VENDORS = [
  { name: 'intel' as const, hardware: (o: Parameters<typeof intel>[0] = {}): HostOptions['hardware'] => intel(o) },
  { name: 'amd' as const, hardware: (o: Parameters<typeof amd>[0] = {}): HostOptions['hardware'] => amd(o) },
];
export type VendorEntry = (typeof VENDORS)[number];

/** A host of `cpus` CPUs. */
export function makeHost(vendor: VendorEntry, cpus = 4): Host {
  return createHost({ cpus, hardware: vendor.hardware() });
}

/** The loaded VAC (fails when there is none). */
export function vacIn(host: Host): Vac {
  const v = vacOf(host);
  if (v === undefined) throw new Error('vac is not loaded');
  return v;
}

export { prng, thrown };

/** Counters the suites add to, printed at the end of each file (and copied into docs/reliability.md). */
export const tally = { faults: 0, badInputs: 0, fuzzCalls: 0, kills: 0, killsInGuest: 0 };

/**
 * Expect `fn` to fail with `code` (a {@link KernelError} with that name and errno), `host.snapshot()` to be
 * what it was before, and no invariant violation afterwards.
 */
export function expectFails(host: Host, fn: () => unknown, code: ErrnoCode, what = ''): KernelError {
  return expectKernelError(host, fn, code, { what, invariants: true });
}

/** Expect only a KernelError or a UsageError (never anything else) from `fn`; return what happened. */
export function kernelOrUsage(fn: () => unknown): { ok: true; value: unknown } | { ok: false; error: KernelError | UsageError } {
  try {
    return { ok: true, value: fn() };
  } catch (e) {
    if (e instanceof KernelError || e instanceof UsageError) return { ok: false, error: e };
    throw new Error(`threw ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack ?? ''}` : String(e)}`);
  }
}

/** The classic minimal VMM's guest programs (16-bit real mode at 0x1000). */
export const GUESTS = {
  spin: [0x40, 0xeb, 0xfd],
  io: [0xba, 0xf8, 0x03, 0xee, 0x40, 0xeb, 0xfc],
  hlt: [0xf4, 0xeb, 0xfd],
} as const;

/** A VM with its code at 0x1000 and `n` vCPUs ready to run it. */
export interface ReadyVm {
  readonly sys: number;
  readonly vm: number;
  readonly vcpus: number[];
}

/** Open `dev`, create a VM with `code` at 0x1000 and `n` vCPUs (registers set to run it). */
export function readyVm(p: Process, dev: string, code: readonly number[], n: number, before?: (vm: number) => void): ReadyVm {
  const sys = p.open(dev, O_RDWR);
  const vm = p.ioctl(sys, KVM_CREATE_VM, 0);
  before?.(vm);
  const mem = p.mmapAnonymous(0x1000);
  mem.bytes.set(code);
  p.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: 0, flags: 0, guest_phys_addr: 0x1000, memory_size: 0x1000, userspace_addr: mem.addr });
  const vcpus: number[] = [];
  for (let id = 0; id < n; id++) {
    const fd = p.ioctl(vm, KVM_CREATE_VCPU, id);
    setupVcpu(p, fd);
    vcpus.push(fd);
  }
  return { sys, vm, vcpus };
}

/** Real mode at CS base 0, RIP 0x1000. */
export function setupVcpu(p: Process, fd: number): void {
  const s = makeKvmSregs();
  p.ioctl(fd, KVM_GET_SREGS, s);
  s.cs.base = 0n;
  s.cs.selector = 0;
  p.ioctl(fd, KVM_SET_SREGS, s);
  p.ioctl(fd, KVM_SET_REGS, makeKvmRegs({ rip: 0x1000n, rflags: 2n }));
}


/** Everything VAC still holds, for "every allocator is empty" checks. */
export function vacHoldings(host: Host): { usage: number; enabled: number[]; vpids: number; asids: number; sev: number; uretDirty: number[] } {
  const vac = vacIn(host);
  const cpus = host.cpus.map((c) => c.id);
  return {
    usage: vac.usageCount,
    enabled: cpus.filter((c) => vac.cpu(c).enabled || host.hardware.virt.isEnabled(c)),
    vpids: (vac.tryResource(VPIDS)?.holders() ?? []).length,
    asids: cpus.reduce((n, c) => n + (vac.tryResource(ASIDS)?.cpuState(c)?.holders.length ?? 0), 0),
    sev: vac.tryResource(SEV_ASIDS)?.state()?.inUse.length ?? 0,
    uretDirty: cpus.filter((c) => {
      const st = vac.userReturnState(c);
      return st.registered || st.values.some((v) => v.curr !== v.host);
    }),
  };
}
