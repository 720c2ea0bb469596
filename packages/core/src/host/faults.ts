/**
 * Fault injection: make kernel operations fail where Linux can fail, to test that every caller unwinds.
 *
 * - `failNth(site, n)`: the n-th call (1-based, counted from now) of an allocation site fails; `failAlways`
 *   / `clear`. Sites are the model's allocation points (`kzalloc` and friends in Linux): see
 *   {@link FaultSites}. What a failure means is the site's: usually ENOMEM; some allocators fail soft.
 * - `failModuleInit(name, step)`: the module's init fails (ENOMEM) at its `step`-th registration (each
 *   `ctx.defer` is a step: misc device, hotplug state, callbacks…), after that step's resource was taken, so
 *   every step before and the step itself must be undone.
 * - Failures to enable virtualization and foreign hypervisors are hardware knobs:
 *   `host.hardware.injectEnableFault(cpu, 'once' | 'always')` and `host.hardware.setForeignOwner(cpu, true)`.
 *
 * @module
 */
import { describeArg } from '../describe-arg.js';
import { UsageError } from '../errors.js';

/**
 * The allocation sites that can be made to fail, by name. The core has `mmap` and `fd`; packages built on it add
 * theirs (KVM's `vm` and `vcpu`, VMX's `vpid`) by declaration merging —
 * `declare module '@vac/core' { interface FaultSites { vpid: true } }` — and at run time with
 * {@link defineFaultSite}.
 */
export interface FaultSites {
  /** `mmap` (`ENOMEM`). */
  mmap: true;
  /** `anon_inode_getfd` / `get_unused_fd_flags` (treated as `ENOMEM`). */
  fd: true;
}

/** An allocation site that can be made to fail. */
export type FaultSite = keyof FaultSites & string;

const sites = new Map<string, string>([
  ['mmap', '`mmap` (ENOMEM)'],
  ['fd', '`anon_inode_getfd` / `get_unused_fd_flags` (ENOMEM)'],
]);

/**
 * Make `site` known to every host's {@link FaultInjector} (a package calls it once, when it is imported, for each
 * site it declared in {@link FaultSites}). Defining a site twice is harmless.
 * @param site - the site's name
 * @param what - what fails there, for messages and docs
 */
export function defineFaultSite(site: FaultSite, what: string): void {
  sites.set(site, what);
}

/** Every fault site known in this process, with what fails there. */
export function faultSites(): ReadonlyMap<string, string> {
  return sites;
}

interface Plan {
  countdown: number;
  always: boolean;
}

/** A record of a fault that fired. */
export interface FiredFault {
  /** The site, or `init:<module>` for a module init fault. */
  readonly site: string;
  /** Which call it was (1-based). */
  readonly call: number;
}

/** The fault plan of one host. */
export class FaultInjector {
  readonly #plans = new Map<string, Plan>();
  readonly #calls = new Map<string, number>();
  readonly #initFaults = new Map<string, number>();
  readonly #fired: FiredFault[] = [];

  /** Faults that fired, in order (a copy). */
  get fired(): readonly FiredFault[] {
    return this.#fired.slice();
  }

  /** The `n`-th call of `site` from now fails (once). */
  failNth(site: FaultSite, n: number): void {
    checkSite(site);
    if (typeof n !== 'number' || !Number.isInteger(n) || n < 1) throw new UsageError('ERR_OUT_OF_RANGE', `failNth(${site}, ${describeArg(n)}): n must be a positive integer`);
    this.#plans.set(site, { countdown: n, always: false });
  }

  /** Every call of `site` fails until {@link FaultInjector.clear}. */
  failAlways(site: FaultSite): void {
    checkSite(site);
    this.#plans.set(site, { countdown: 1, always: true });
  }

  /** The module `name`'s next init fails at its `step`-th registration (1-based). */
  failModuleInit(name: string, step: number): void {
    if (typeof name !== 'string') throw new UsageError('ERR_INVALID_ARG', `failModuleInit: the module name must be a string, got ${describeArg(name)}`);
    if (typeof step !== 'number' || !Number.isInteger(step) || step < 1) throw new UsageError('ERR_OUT_OF_RANGE', `failModuleInit(${name}, ${describeArg(step)}): step must be a positive integer`);
    this.#initFaults.set(name, step);
  }

  /** Remove every plan (fired records stay). */
  clear(): void {
    this.#plans.clear();
    this.#initFaults.clear();
  }

  /**
   * Kernel side: called at an allocation site; true when this call must fail.
   */
  shouldFail(site: FaultSite): boolean {
    const call = (this.#calls.get(site) ?? 0) + 1;
    this.#calls.set(site, call);
    const p = this.#plans.get(site);
    if (p === undefined) return false;
    if (p.always) {
      this.#fired.push(Object.freeze({ site, call }));
      return true;
    }
    if (--p.countdown > 0) return false;
    this.#plans.delete(site);
    this.#fired.push(Object.freeze({ site, call }));
    return true;
  }

  /** Kernel side: the module loader asks whether init registration `step` of `name` must fail. */
  initStepFails(name: string, step: number): boolean {
    if (this.#initFaults.get(name) !== step) return false;
    this.#initFaults.delete(name);
    this.#fired.push(Object.freeze({ site: `init:${name}`, call: step }));
    return true;
  }
}

function checkSite(site: FaultSite): void {
  if (typeof site !== 'string' || !sites.has(site)) throw new UsageError('ERR_UNKNOWN_NAME', `unknown fault site ${describeArg(site)} (known: ${[...sites.keys()].join(', ')})`);
}
