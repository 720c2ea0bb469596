/**
 * Placement: which loaded KVM module a new VM gets. A policy is a plain function over the VM's needs and the
 * modules as user space sees them ({@link loadedModules}: `lsmod`, the module's parameters in sysfs, and how many
 * VMM fds hold its `/dev` node — what `lsof` would show); it keeps the candidates that fit and puts the better ones
 * first. {@link place} applies policies in turn and takes the first candidate left.
 *
 * Built-ins: {@link requireMitigations} (an untrusted VM only on a module with `vmentry_l1d_flush=always`, where the
 * L1TF mitigation applies at all), {@link newestBuild} (the highest Linux release first), {@link spread} (the module
 * with the fewest VMs first).
 *
 * A module is only half of it on a host with SMT: a per-module L1D flush protects nothing while the sibling thread
 * runs another trust domain's guest. The CPUs are placed by `CoreAllocator` (each core in one trust domain) and
 * checked by `checkSmtIsolation` / `SmtMonitor` (smt.ts). How a VMM is handed the module chosen here is
 * `VmmSandbox` (sandbox.ts).
 *
 * @module
 */
import { O_RDWR, UsageError, type Host, type Process } from '@vac/core';
import { KVM_GET_SUPPORTED_CPUID, makeKvmCpuid2 } from '@vac/kvm';

/** What a VM needs of its module. */
export interface VmNeeds {
  /** Whether its guest is trusted (its own tenant's code); untrusted guests need the host's mitigations. Default true. */
  readonly trusted?: boolean;
  /**
   * Its trust domain for SMT (a tenant): VMs of one domain may share a core's threads, others may not (see
   * `CoreAllocator`). Default `trusted` or `untrusted` from {@link VmNeeds.trusted}.
   */
  readonly trustDomain?: string;
}

/** A loaded KVM module as placement sees it. */
export interface ModuleCandidate {
  /** Its name (`kvm1`). */
  readonly name: string;
  /** Its device (`/dev/kvm1`). */
  readonly devPath: string;
  /** Its version as `lsmod` shows it (the build's Linux release, e.g. `'6.18'`; `undefined` when the image has none). */
  readonly version: string | undefined;
  /** `vmentry_l1d_flush` as sysfs shows it (`always`, `cond`, `never`), or `undefined` where the module has no such parameter. */
  readonly l1dFlush: string | undefined;
  /**
   * Whether the CPUs are affected by L1TF, from the CPU vendor in the module's KVM_GET_SUPPORTED_CPUID leaf 0:
   * Intel yes, AMD no (Linux's `cpu_vuln_whitelist` gives AMD `NO_L1TF`; the model's Intel CPUs do not claim
   * RDCL_NO).
   */
  readonly l1tfAffected: boolean;
  /** VMs it runs: `/dev` fds of it open in processes (a VMM holds one per VM). */
  readonly vms: number;
}

/** A placement policy: the candidates that fit `vm`, better first. */
export type PlacementPolicy = (vm: VmNeeds, candidates: readonly ModuleCandidate[]) => readonly ModuleCandidate[];

/** The CPU vendor string of leaf 0 of `devPath`'s KVM_GET_SUPPORTED_CPUID (`GenuineIntel`, `AuthenticAMD`). */
function cpuVendor(proc: Process, devPath: string): string {
  const sys = proc.open(devPath, O_RDWR);
  try {
    const cpuid = makeKvmCpuid2(256);
    proc.ioctl(sys, KVM_GET_SUPPORTED_CPUID, cpuid);
    const leaf0 = cpuid.entries.slice(0, cpuid.nent).find((e) => e.function === 0);
    const b = new Uint8Array(12);
    const v = new DataView(b.buffer);
    v.setUint32(0, leaf0?.ebx ?? 0, true);
    v.setUint32(4, leaf0?.edx ?? 0, true);
    v.setUint32(8, leaf0?.ecx ?? 0, true);
    return String.fromCharCode(...b);
  } finally {
    proc.close(sys);
  }
}

/**
 * The KVM modules loaded on `host` (those with a `/dev/<name>` node), as user space reads them: `lsmod`, the
 * `vmentry_l1d_flush` parameter, the CPU vendor (asked of each module by a short-lived root process), and the
 * open fds of their node across processes (matched by device number, whatever path a process opened it by).
 */
export function loadedModules(host: Host): ModuleCandidate[] {
  // By device number, as `lsof` matches an fd to a device: a VMM in a sandbox holds `/dev/kvm`, which is kvm1's node there.
  const open = new Map<string, number>();
  for (const p of host.processes()) {
    for (const f of p.fds()) {
      if (!f.path.startsWith('/dev/')) continue;
      let key: string;
      try {
        const st = p.stat(f.path);
        key = st.type === 'char' ? `${st.major}:${st.minor}` : f.path;
      } catch {
        key = f.path;
      }
      open.set(key, (open.get(key) ?? 0) + 1);
    }
  }
  const numberOf = (path: string): string => {
    const st = host.stat(path);
    return st.type === 'char' ? `${st.major}:${st.minor}` : path;
  };
  const nodes = new Set(host.devfs.list().map((d) => d.path));
  return host
    .lsmod()
    .filter((m) => nodes.has(`/dev/${m.name}`) && m.state === 'live')
    .map((m) => {
      let l1dFlush: string | undefined;
      try {
        l1dFlush = host.readParam(m.name, 'vmentry_l1d_flush');
      } catch {
        l1dFlush = undefined;
      }
      const asker = host.spawn({ uid: 0, name: 'placement' });
      try {
        const l1tfAffected = cpuVendor(asker, `/dev/${m.name}`) === 'GenuineIntel';
        return { name: m.name, devPath: `/dev/${m.name}`, version: m.version, l1dFlush, l1tfAffected, vms: open.get(numberOf(`/dev/${m.name}`)) ?? 0 };
      } finally {
        asker.kill();
      }
    })
    .sort((a, b) => a.name.localeCompare(b.name));
}

/** `[6, 18]` for `'6.18'`, `[6, 1, 12]` for `'6.1.12'`; a label that is not a release compares as `[]` (oldest). */
function release(v: string | undefined): number[] {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(v ?? '');
  return m === null ? [] : [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

/** Compare two releases: negative when `a` is older. */
export function compareReleases(a: string | undefined, b: string | undefined): number {
  const x = release(a);
  const y = release(b);
  for (let i = 0; i < Math.max(x.length, y.length); i++) {
    const d = (x[i] ?? -1) - (y[i] ?? -1);
    if (d !== 0) return d;
  }
  return 0;
}

/**
 * Untrusted VMs only where the L1TF mitigation flushes the L1D before every VM entry (`vmentry_l1d_flush=always`),
 * or on CPUs L1TF does not affect. Trusted VMs: every candidate.
 */
export const requireMitigations: PlacementPolicy = (vm, candidates) => (vm.trusted === false ? candidates.filter((c) => !c.l1tfAffected || c.l1dFlush === 'always') : candidates);

/** The newest build first (by the Linux release `lsmod` shows; ties keep their order). */
export const newestBuild: PlacementPolicy = (_vm, candidates) => [...candidates].sort((a, b) => compareReleases(b.version, a.version));

/** The module with the fewest VMs first (ties keep their order). */
export const spread: PlacementPolicy = (_vm, candidates) => [...candidates].sort((a, b) => a.vms - b.vms);

/**
 * Apply `policies` in turn to `candidates` (each keeps what fits and orders it; a later policy orders within what
 * the earlier left, so put the deciding one last) and return the first candidate left, or `undefined` when none fits.
 *
 * @throws UsageError `ERR_INVALID_ARG` when a policy does not return a subset of what it was given
 */
export function place(vm: VmNeeds, candidates: readonly ModuleCandidate[], ...policies: readonly PlacementPolicy[]): ModuleCandidate | undefined {
  let left = [...candidates];
  for (const p of policies) {
    const next: readonly ModuleCandidate[] = p(vm, left);
    if (!Array.isArray(next as unknown) || next.some((c) => !left.includes(c))) throw new UsageError('ERR_INVALID_ARG', `place: policy ${p.name || '(anonymous)'} returned candidates it was not given`);
    left = [...next];
  }
  return left[0];
}
