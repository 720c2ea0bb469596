/**
 * Turning hardware virtualization on and off: VAC's global usage count and the per-CPU enable state.
 *
 * Linux (RFC `virt/kvm/vac.c`, identical to upstream ≤ 6.10): `hardware_enable_all` /
 * `hardware_disable_all`, `__hardware_enable_nolock` / `hardware_disable_nolock`, `kvm_online_cpu` /
 * `kvm_offline_cpu`, `kvm_suspend` / `kvm_resume`, `kvm_reboot`, and `kvm_arch_hardware_enable` /
 * `kvm_arch_hardware_disable` (RFC `arch/x86/kvm/vac.c`).
 *
 * - 0→1 enables every online CPU, all or nothing: when any CPU fails (logged, EIO), the CPUs that succeeded
 *   are disabled again, the count goes back to 0 and the caller gets **EBUSY** (the RFC's errno; Linux ≥ 6.12
 *   returns EIO — see docs/fidelity.md). 1→0 disables every online CPU. Other transitions only count.
 * - After a reboot or crash (`kvm_rebooting`, sticky) a new 0→1 fails with EBUSY.
 *
 * @module
 */
import { KernelError } from '../errors.js';
import type { VirtOps } from '../hardware.js';
import type { Host } from '../host/host.js';
import type { AnyVacResource } from './resource.js';
import type { UserReturnMsrs } from './uret.js';

/** The usage count, who holds it, and the per-CPU enable state. */
export class VirtualizationControl {
  readonly #host: Host;
  readonly #vendor: VirtOps;
  readonly #uret: UserReturnMsrs;
  /** The vendor's resources with per-CPU state that starts afresh at each enable. */
  readonly #perCpu: readonly AnyVacResource[];
  /** `kvm_usage_count`. */
  #count = 0;
  readonly #holders = new Map<string, number>();
  /** Per-CPU `hardware_enabled`. */
  readonly #enabled: Uint8Array;
  /** How many times each CPU was turned on. */
  readonly #enables: Uint32Array;
  /** `kvm_rebooting`: set by the reboot notifier and the emergency path, never cleared. */
  #rebooting = false;

  /**
   * @param host - the host
   * @param vendor - the vendor's half of VAC
   * @param uret - the user-return MSRs
   * @param resources - the vendor's resources (told when a CPU's enable is kept)
   */
  constructor(host: Host, vendor: VirtOps, uret: UserReturnMsrs, resources: readonly AnyVacResource[]) {
    this.#host = host;
    this.#vendor = vendor;
    this.#uret = uret;
    this.#perCpu = resources.filter((r) => r.cpuEnabled !== undefined);
    this.#enabled = new Uint8Array(host.cpus.length);
    this.#enables = new Uint32Array(host.cpus.length);
  }

  /** The global usage count. */
  get count(): number {
    return this.#count;
  }

  /** Who holds references, with how many each (a module, or a module's VM). */
  holders(): ReadonlyMap<string, number> {
    return this.#holders;
  }

  /** `kvm_rebooting`. */
  get rebooting(): boolean {
    return this.#rebooting;
  }

  /** Whether VAC has virtualization enabled on `cpu` (`hardware_enabled`). */
  isEnabled(cpu: number): boolean {
    return this.#enabled[cpu] === 1;
  }

  /** How many times `cpu` was turned on so far. */
  enableCount(cpu: number): number {
    return this.#enables[cpu] ?? 0;
  }

  /**
   * Take a reference (`hardware_enable_all`). The first one enables every online CPU.
   * @throws {@link KernelError} EBUSY when a CPU cannot enable (everything rolled back) or after a reboot
   */
  get(holder: string): void {
    if (this.#rebooting) throw new KernelError('EBUSY', 'hardware_enable_all', 'the system is rebooting');
    if (this.#count === 0) {
      // on_each_cpu(hardware_enable_nolock): every online CPU is tried; failures are counted.
      let failed = 0;
      const turnedOn: number[] = [];
      for (const cpu of this.#host.cpus) {
        if (!cpu.online) continue;
        const was = this.isEnabled(cpu.id);
        if (this.enableCpu(cpu.id) !== undefined) failed++;
        else if (!was) turnedOn.push(cpu.id);
      }
      if (failed > 0) {
        // hardware_disable_all_nolock: no-op on the CPUs whose flag is clear.
        this.#disableAll();
        throw new KernelError('EBUSY', 'hardware_enable_all', `enabling virtualization failed on ${failed} CPU(s)`);
      }
      // Only now that every CPU succeeded: a rolled-back attempt must leave the per-CPU resource state as it was.
      for (const cpu of turnedOn) this.#enabledAndKept(cpu);
    }
    this.#count++;
    this.#holders.set(holder, (this.#holders.get(holder) ?? 0) + 1);
    this.#host.events.emit('virt:usage', { count: this.#count, holder, delta: 1 });
  }

  /** Drop a reference (`hardware_disable_all`). The last one disables every online CPU. */
  put(holder: string): void {
    const held = this.#holders.get(holder) ?? 0;
    if (held === 0 || this.#count === 0) throw new KernelError('EINVAL', 'hardware_disable_all', `${holder} holds no reference`);
    if (held === 1) this.#holders.delete(holder);
    else this.#holders.set(holder, held - 1);
    this.#count--;
    this.#host.events.emit('virt:usage', { count: this.#count, holder, delta: -1 });
    if (this.#count === 0) this.#disableAll();
  }

  #disableAll(): void {
    for (const cpu of this.#host.cpus) if (cpu.online) this.disableCpu(cpu.id);
  }

  /**
   * `__hardware_enable_nolock` on one CPU: a no-op when already enabled; otherwise the compatibility check
   * (`kvm_x86_check_processor_compatibility`), `kvm_user_return_msr_cpu_online`, then the vendor enable.
   * @returns `undefined` on success, `'EIO'` on failure (logged: "kvm: enabling virtualization on CPU%d failed")
   */
  enableCpu(cpu: number): 'EIO' | undefined {
    if (this.#enabled[cpu] === 1) return undefined;
    const why = this.#vendor.unsupported(cpu);
    let err: string | undefined;
    if (why !== undefined) {
      this.#host.warn({ source: 'vac', message: why, cpu });
      err = 'EIO';
    } else {
      this.#uret.cpuOnline(cpu);
      err = this.#vendor.enableCpu(cpu);
    }
    if (err !== undefined) {
      this.#host.warn({ source: 'vac', message: `kvm: enabling virtualization on CPU${cpu} failed`, cpu });
      return 'EIO';
    }
    this.#enabled[cpu] = 1;
    this.#enables[cpu] = (this.#enables[cpu] ?? 0) + 1;
    return undefined;
  }

  /**
   * An enable on `cpu` is kept — right after it on hotplug and resume, after every CPU succeeded on a 0→1: the
   * resources reset their per-CPU state (SVM: `svm_hardware_enable`'s ASID generation and next ASID).
   */
  #enabledAndKept(cpu: number): void {
    for (const r of this.#perCpu) r.cpuEnabled?.(cpu);
  }

  /** `hardware_disable_nolock` on one CPU: vendor disable, then `drop_user_return_notifiers`. No-op when off. */
  disableCpu(cpu: number): void {
    if (this.#enabled[cpu] !== 1) return;
    this.#vendor.disableCpu(cpu);
    this.#uret.dropCpu(cpu);
    this.#enabled[cpu] = 0;
  }

  /** `kvm_online_cpu`: enable on a CPU coming online while the count is > 0; a failure refuses the CPU (EIO). */
  onlineCpu(cpu: number): void {
    if (this.#count === 0) return;
    const was = this.isEnabled(cpu);
    if (this.enableCpu(cpu) !== undefined) {
      throw new KernelError('EIO', 'kvm_online_cpu', `CPU ${cpu} cannot enable virtualization; online refused`);
    }
    if (!was) this.#enabledAndKept(cpu);
  }

  /** `kvm_offline_cpu`: disable on a CPU going offline while the count is > 0. */
  offlineCpu(cpu: number): void {
    if (this.#count > 0) this.disableCpu(cpu);
  }

  /** `kvm_suspend`: disable on the boot CPU (the others are already offline). */
  suspend(): void {
    if (this.#count > 0) this.disableCpu(0);
  }

  /** `kvm_resume`: re-enable on the boot CPU; a failure is only a warning (`WARN_ON_ONCE`). */
  resume(): void {
    if (this.#count === 0) return;
    const was = this.isEnabled(0);
    if (this.enableCpu(0) !== undefined) {
      this.#host.warn({ source: 'vac', message: 'kvm_resume: re-enabling virtualization on CPU0 failed', cpu: 0 });
    } else if (!was) {
      this.#enabledAndKept(0);
    }
  }

  /** `kvm_reboot`: "kvm: exiting hardware virtualization"; `kvm_rebooting = true`; disable every CPU. */
  reboot(): void {
    this.#rebooting = true;
    this.#disableAll();
  }

  /**
   * The emergency path on one CPU (`vmx_emergency_disable` / `svm_emergency_disable`): `kvm_rebooting`,
   * then the vendor VMCLEARs and turns VMX/SVM off. The per-CPU flag is cleared too, so introspection shows
   * the hardware as it is (Linux leaves `hardware_enabled` stale; nothing reads it afterwards).
   */
  emergency(cpu: number): void {
    this.#rebooting = true;
    this.#vendor.emergencyDisable(cpu);
    this.#enabled[cpu] = 0;
  }

  /**
   * A plain copy of the state, for snapshots. The enable counts are history, not state (a rolled-back
   * enable leaves the host as it was but has counted), so they are not in it.
   */
  snapshot(): { count: number; holders: Array<[string, number]>; enabled: number[]; rebooting: boolean } {
    return {
      count: this.#count,
      holders: [...this.#holders].sort(([a], [b]) => a.localeCompare(b)),
      enabled: Array.from(this.#enabled),
      rebooting: this.#rebooting,
    };
  }
}
