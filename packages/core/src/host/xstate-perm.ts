/**
 * A process's XSAVE feature permissions (arch/x86/kernel/fpu/xstate.c): which dynamically enabled state components
 * (today only AMX tile data, component 18) the process and the guests it runs may use, asked for with
 * `arch_prctl(ARCH_REQ_XCOMP_PERM / ARCH_REQ_XCOMP_GUEST_PERM, 18)` and read with `ARCH_GET_XCOMP_*`
 * (`fpu_xstate_prctl`, `xstate_request_perm`, `__xstate_request_perm`). The permissions belong to the thread group
 * (`current->group_leader->thread.fpu.perm` / `.guest_perm`); the first guest FPU allocated in the process locks the
 * guest permissions (`fpu_alloc_guest_fpstate` → `fpu_init_guest_permissions`: `FPU_GUEST_PERM_LOCKED`), after which
 * a guest request that would add a feature is EBUSY.
 *
 * This is x86 process state, not KVM's: the host kernel's `fpu_user_cfg` comes from the boot CPU's CPUID leaf 0xD
 * (`fpu__init_system_xstate`), the way the kernel reads it at boot.
 *
 * @module
 */
import { KernelError } from '../errors.js';
import type { Cpu } from '../cpu.js';

/** `ARCH_GET_XCOMP_SUPP`: the XSAVE features the kernel supports for user space. */
export const ARCH_GET_XCOMP_SUPP = 0x1021;
/** `ARCH_GET_XCOMP_PERM`: the features the process may use. */
export const ARCH_GET_XCOMP_PERM = 0x1022;
/** `ARCH_REQ_XCOMP_PERM`: ask for a dynamic feature (by its highest component number) for the process. */
export const ARCH_REQ_XCOMP_PERM = 0x1023;
/** `ARCH_GET_XCOMP_GUEST_PERM`: the features the process's guests may use. */
export const ARCH_GET_XCOMP_GUEST_PERM = 0x1024;
/** `ARCH_REQ_XCOMP_GUEST_PERM`: ask for a dynamic feature for the process's guests (before its first vCPU). */
export const ARCH_REQ_XCOMP_GUEST_PERM = 0x1025;

/** `XFEATURE_XTILE_DATA`: the AMX tile data component (8 KiB), the only dynamic one. */
export const XFEATURE_XTILE_DATA = 18;
/** `XFEATURE_MASK_XTILE_CFG | XFEATURE_MASK_XTILE_DATA`. */
export const XFEATURE_MASK_XTILE = 0x60000n;
/** `XFEATURE_MASK_USER_DYNAMIC` (= XTILE_DATA). */
export const XFEATURE_MASK_USER_DYNAMIC = 1n << 18n;
/** `XFEATURE_MAX` (6.12: the last component is XTILE_DATA, 18). */
const XFEATURE_MAX = 19;
/** `XFEATURE_MASK_USER_SUPPORTED`: FP SSE YMM BNDREGS BNDCSR OPMASK ZMM_Hi256 Hi16_ZMM PKRU XTILE_CFG XTILE_DATA. */
const XFEATURE_MASK_USER_SUPPORTED = 0x602ffn;
/** `FPU_GUEST_PERM_LOCKED`: set in the guest permissions once the first guest FPU exists. */
export const FPU_GUEST_PERM_LOCKED = 1n << 63n;
/** `XFEATURE_MASK_FP | XFEATURE_MASK_SSE`. */
const FPSSE = 3n;

/** The host kernel's user XSAVE configuration (`fpu_user_cfg`), as `fpu__init_system_xstate` sets it at boot. */
export interface FpuUserConfig {
  /** `max_features`: what user space may ever have (0 without XSAVE). */
  readonly maxFeatures: bigint;
  /** `default_features`: `max_features` less the dynamic ones, what every process has. */
  readonly defaultFeatures: bigint;
  /** `legacy_features`: x87 and SSE. */
  readonly legacyFeatures: bigint;
  /**
   * `xstate_calculate_size(mask, false)`: the standard-format (user ABI) size of an area holding `mask`, the
   * legacy area and header (576 bytes) at least.
   */
  userSize(mask: bigint): number;
}

const CONFIGS = new WeakMap<Cpu, FpuUserConfig>();

/**
 * `fpu_user_cfg` of a host whose boot CPU is `boot`: with XSAVE (CPUID.1:ECX[26] and leaf 0xD offering x87 and SSE)
 * the user features of leaf 0xD EDX:EAX; the dynamic ones only with XFD (CPUID.(0xD,1):EAX[4]), as
 * `fpu__init_system_xstate` clears `XFEATURE_MASK_USER_DYNAMIC` without it.
 */
export function fpuUserConfig(boot: Cpu): FpuUserConfig {
  let cfg = CONFIGS.get(boot);
  if (cfg !== undefined) return cfg;
  const d0 = boot.readCpuid(0xd, 0);
  const hostXcr0 = BigInt(d0.eax >>> 0) | (BigInt(d0.edx >>> 0) << 32n);
  const xsave = (boot.readCpuid(1, 0).ecx & (1 << 26)) !== 0 && (hostXcr0 & FPSSE) === FPSSE;
  let max = xsave ? hostXcr0 & XFEATURE_MASK_USER_SUPPORTED : 0n;
  if ((boot.readCpuid(0xd, 1).eax & (1 << 4)) === 0) max &= ~XFEATURE_MASK_USER_DYNAMIC;
  // The size of each mask asked for, found once: every process spawned asks for the default mask's (a fleet host
  // spawns one per VM), and leaf 0xD's sizes are the boot CPU's, fixed.
  const sizes = new Map<bigint, number>();
  cfg = Object.freeze({
    maxFeatures: max,
    defaultFeatures: max & ~XFEATURE_MASK_USER_DYNAMIC,
    legacyFeatures: FPSSE,
    userSize(mask: bigint): number {
      let size = sizes.get(mask);
      if (size !== undefined) return size;
      size = 512 + 64;
      for (let i = 2; i < 64; i++) {
        if ((mask & (1n << BigInt(i))) === 0n) continue;
        const l = boot.readCpuid(0xd, i);
        size = Math.max(size, (l.ebx >>> 0) + (l.eax >>> 0));
      }
      sizes.set(mask, size);
      return size;
    },
  });
  CONFIGS.set(boot, cfg);
  return cfg;
}

/** One permission set (`struct fpu_state_perm`): the permitted features and the user-ABI size they need. */
interface StatePerm {
  /** `__state_perm` (for the guest set, with {@link FPU_GUEST_PERM_LOCKED} once locked). */
  perm: bigint;
  /** `__user_state_size`. */
  userSize: number;
}

/** The XSAVE permissions of one process (its thread group), host and guest. */
export class XstatePermissions {
  readonly #cfg: FpuUserConfig;
  readonly #host: StatePerm;
  readonly #guest: StatePerm;

  /** `fpstate_reset`: both sets start at the default features. @param cfg - the host kernel's `fpu_user_cfg` */
  constructor(cfg: FpuUserConfig) {
    this.#cfg = cfg;
    const size = cfg.userSize(cfg.defaultFeatures);
    this.#host = { perm: cfg.defaultFeatures, userSize: size };
    this.#guest = { perm: cfg.defaultFeatures, userSize: size };
  }

  /** `xstate_get_guest_group_perm()`: the guest permissions, {@link FPU_GUEST_PERM_LOCKED} included. */
  get guestPerm(): bigint {
    return this.#guest.perm;
  }

  /** `fpu->guest_perm.__user_state_size`: the user-ABI size of what guests may have. */
  get guestUserSize(): number {
    return this.#guest.userSize;
  }

  /**
   * `fpu_init_guest_permissions` (the first guest FPU of the process): lock the guest permissions.
   * @returns the permissions as they were (without the lock bit): what the new guest FPU may enable
   */
  lockGuest(): bigint {
    const perm = this.#guest.perm;
    this.#guest.perm = perm | FPU_GUEST_PERM_LOCKED;
    return perm & ~FPU_GUEST_PERM_LOCKED;
  }

  /**
   * `fpu_xstate_prctl(current, option, arg2)`.
   * @param option - an `ARCH_*_XCOMP_*` code
   * @param arg2 - for the GET options, where the `u64` goes (a `BigUint64Array` of at least one element); for the
   * REQ options, the feature number
   * @returns 0
   * @throws KernelError EINVAL (an unknown option, a feature number ≥ XFEATURE_MAX), EOPNOTSUPP (a feature that is not
   * dynamic, or that the kernel does not support), EBUSY (a guest request after the first vCPU), EFAULT (no place
   * for the answer)
   */
  prctl(option: number, arg2: unknown): number {
    const put = (v: bigint, op: string): number => {
      if (!(arg2 instanceof BigUint64Array) || arg2.length < 1) throw new KernelError('EFAULT', op, 'the answer needs a u64 (a BigUint64Array)');
      arg2[0] = v;
      return 0;
    };
    switch (option) {
      case ARCH_GET_XCOMP_SUPP:
        return put(this.#cfg.maxFeatures | this.#cfg.legacyFeatures, 'arch_prctl(ARCH_GET_XCOMP_SUPP)');
      case ARCH_GET_XCOMP_PERM:
        return put(this.#host.perm & XFEATURE_MASK_USER_SUPPORTED, 'arch_prctl(ARCH_GET_XCOMP_PERM)');
      case ARCH_GET_XCOMP_GUEST_PERM:
        return put(this.#guest.perm & XFEATURE_MASK_USER_SUPPORTED, 'arch_prctl(ARCH_GET_XCOMP_GUEST_PERM)');
      case ARCH_REQ_XCOMP_PERM:
      case ARCH_REQ_XCOMP_GUEST_PERM:
        return this.#request(arg2, option === ARCH_REQ_XCOMP_GUEST_PERM);
      default:
        throw new KernelError('EINVAL', 'arch_prctl', `unknown option 0x${typeof option === 'number' ? option.toString(16) : String(option)}`);
    }
  }

  /** `xstate_request_perm(idx, guest)` and `__xstate_request_perm`. */
  #request(arg2: unknown, guest: boolean): number {
    const op = guest ? 'arch_prctl(ARCH_REQ_XCOMP_GUEST_PERM)' : 'arch_prctl(ARCH_REQ_XCOMP_PERM)';
    const idx = typeof arg2 === 'number' && Number.isInteger(arg2) && arg2 >= 0 ? arg2 : typeof arg2 === 'bigint' && arg2 >= 0n ? Number(arg2) : Number.NaN;
    if (!(idx < XFEATURE_MAX)) throw new KernelError('EINVAL', op, `feature ${String(arg2)} is not below XFEATURE_MAX (${XFEATURE_MAX})`);
    // xstate_prctl_req[]: only XTILE_DATA names a facility.
    if (idx !== XFEATURE_XTILE_DATA) throw new KernelError('EOPNOTSUPP', op, `feature ${idx} is not a dynamically enabled one`);
    const requested = XFEATURE_MASK_USER_DYNAMIC;
    if ((this.#cfg.maxFeatures & requested) !== requested) throw new KernelError('EOPNOTSUPP', op, `the kernel does not support feature ${idx} (fpu_user_cfg.max_features 0x${this.#cfg.maxFeatures.toString(16)})`);
    const set = guest ? this.#guest : this.#host;
    if ((set.perm & requested) === requested) return 0;
    if (guest && (set.perm & FPU_GUEST_PERM_LOCKED) !== 0n) throw new KernelError('EBUSY', op, 'the process has created a vCPU: its guest permissions are locked');
    // The permitted set grows by the request (063452fd94d1 fixed the first version, which replaced it).
    const mask = (set.perm | requested) & XFEATURE_MASK_USER_SUPPORTED;
    set.perm = mask | (set.perm & FPU_GUEST_PERM_LOCKED);
    set.userSize = this.#cfg.userSize(mask);
    return 0;
  }
}
