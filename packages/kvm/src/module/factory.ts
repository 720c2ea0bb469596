/**
 * The KVM module factory: `kvm({ postfix })` builds the image of `kvm${postfix}` with the `/dev/kvm${postfix}`
 * ABI. The RFC's `CONFIG_KVM_ID` made that a build-time string; here it is a call.
 *
 * @module
 */
import {
  KVM_MINOR,
  KernelError,
  MISC_DYNAMIC_MINOR,
  UsageError,
  VAC_ABI_VERSION,
  positiveCount,
  VAC_MODULE,
  type KvmVendorOps,
  type ModuleContext,
  type ModuleImage,
  type ParamSpecs,
  type Vac,
  type VacInstanceOps,
  type VacPort,
} from '@vac/core';
import { svmKvmOps } from '@vac/svm';
import { vmxKvmOps } from '@vac/vmx';
import { describeKvmEvents } from './events.js';
import { makeFileOps } from './fops.js';
import { KvmInstance } from './instance.js';
import { ALL_LEGACY_RESOURCES, LegacyPort, legacySet, privateVac, type LegacyResource } from './legacy.js';
import { kvmParams } from './params.js';
import { trackInstance } from './unique-ids.js';
import { x86StateSnapshot } from './state-snapshot.js';
import { BASELINE_BUILD, MODELLED_QUIRKS, attachBuild, resolveBuild, type KvmBuild } from '../builds/build.js';

/** Options of {@link kvm}. */
export interface KvmOptions {
  /** The postfix: `''` → `kvm` and `/dev/kvm` (minor 232), `'0'` → `kvm0` and `/dev/kvm0` (dynamic minor). */
  readonly postfix?: string;
  /** A version label for the image (shown by `lsmod()`), e.g. `'6.12-l1tf-fix'`; default: the build's Linux release. */
  readonly version?: string;
  /**
   * What this module is: a Linux release and the named changes that make it differ from 6.12 (see
   * `SHIPPED_BUILDS`, docs/builds.md). Default: 6.12 as the model implements it.
   */
  readonly build?: KvmBuild;
  /** The folded-in vendors, tried in order (default: VMX, then SVM). */
  readonly vendors?: readonly KvmVendorOps[];
  /** Instructions a direct (non-threaded) KVM_RUN may run before it returns EINTR (default 10,000,000). */
  readonly syncRunLimit?: number;
  /**
   * Legacy (pre-VAC) layout, for demonstrations and tests: `true` for the full pre-VAC module (owns
   * VMXON, the hotplug slot, perf callbacks, its own VPID bitmap, …; does not need `vac`), or the list of
   * resources to keep private (see {@link LegacyResource}).
   */
  readonly legacy?: boolean | readonly LegacyResource[];
}

/** The parameters of a KVM module image: kvm's plus the folded-in vendors'. */
export type KvmImageParams = ParamSpecs;

/** A KVM module image. */
export type KvmImage = ModuleImage<KvmImageParams, KvmInstance>;

const POSTFIX_RE = /^[a-z0-9_]{0,16}$/;

/**
 * Build the image of one KVM module. It depends on `vac`, folds in VMX and SVM (uses VMX if usable, else
 * SVM, else fails with EOPNOTSUPP "no hardware support for SVM or VMX"), and registers its misc device
 * `/dev/kvm${postfix}` (root:kvm 0660) as the last step of init.
 *
 * @example
 * ```ts
 * import { createHost } from '@vac/core';
 * import { kvm } from '@vac/kvm';
 * import { amd } from '@vac/svm';
 *
 * const host = createHost({ cpus: 2, hardware: amd() });
 * host.modprobe(kvm({ postfix: '0' })); // /dev/kvm0
 * host.modprobe(kvm({ postfix: '1' }), { npt: 0 }); // /dev/kvm1, a second KVM with other parameters
 * console.log(host.stat('/dev/kvm1')); // a misc character device, root:kvm 0660
 * ```
 */
export function kvm(options: KvmOptions = {}): KvmImage {
  options = kvmOptions(options);
  const postfix = options.postfix ?? '';
  if (typeof postfix !== 'string' || !POSTFIX_RE.test(postfix)) {
    throw new UsageError('ERR_INVALID_ARG', `kvm: postfix ${JSON.stringify(postfix)} must be up to 16 of [a-z0-9_]`);
  }
  const vendors = vendorList(options.vendors);
  const params: Record<string, import('@vac/core').ParamSpec> = { ...kvmParams };
  for (const v of vendors) {
    for (const [name, spec] of Object.entries(v.params)) {
      const had = params[name];
      if (had !== undefined && had.type !== spec.type) throw new UsageError('ERR_INVALID_ARG', `kvm: vendors disagree on the type of parameter ${name}`);
      params[name] ??= spec;
    }
  }
  const resolved = resolveBuild(options.build === undefined ? BASELINE_BUILD : options.build, params, MODELLED_QUIRKS);
  for (const name of resolved.paramsRemoved) delete params[name];
  for (const [name, value] of resolved.paramDefaults) params[name] = { ...(params[name] as import('@vac/core').ParamSpec), defaultValue: value } as import('@vac/core').ParamSpec;
  const syncRunLimit = options.syncRunLimit === undefined ? 10_000_000 : positiveCount(options.syncRunLimit, 'kvm({ syncRunLimit })');
  if (options.version !== undefined && typeof options.version !== 'string') throw new UsageError('ERR_INVALID_ARG', `kvm: version must be a string, got ${typeof options.version}`);
  const name = `kvm${postfix}`;
  const legacy = legacySet(options.legacy);
  const needsVac = ALL_LEGACY_RESOURCES.some((r) => r !== 'minor' && r !== 'cpuhp' && !legacy.has(r));
  const version = options.version ?? (options.build === undefined ? undefined : resolved.build.linux);
  return {
    name,
    ...(version === undefined ? {} : { version }),
    depends: needsVac ? [VAC_MODULE] : [],
    ...(needsVac ? { abi: { [VAC_MODULE]: VAC_ABI_VERSION } } : {}),
    params,
    init(ctx: ModuleContext<KvmImageParams, KvmInstance>): KvmInstance {
      const host = ctx.host;
      describeKvmEvents(host.events);
      const values = ctx.params as Readonly<Record<string, unknown>>;
      // kvm_x86_init (RFC patch 02): SVM if supported, else VMX — here: the first usable vendor in order.
      const vendor = vendors.find((v) => v.usable(host));
      if (vendor === undefined) throw new KernelError('EOPNOTSUPP', 'kvm_init', 'kvm: no hardware support for SVM or VMX');
      const vac = needsVac ? ctx.require<Vac>(VAC_MODULE) : undefined;
      const priv = legacy.size > 0 ? privateVac(host, name, legacy, (u) => ctx.defer(u), (m, cpu) => ctx.warn(m, cpu)) : undefined;
      const attach = (ops: VacInstanceOps): VacPort => {
        if (priv !== undefined) return new LegacyPort(ops, vac, priv, legacy);
        if (vac === undefined) throw new KernelError('ENOENT', 'kvm_init', 'vac is not loaded');
        return vac.attach(ops);
      };
      const inst = new KvmInstance(host, ctx.module, attach, {
        enableVirtAtLoad: values['enable_virt_at_load'] === true,
        quantum: 1000,
        syncRunLimit,
      });
      ctx.defer(() => inst.vac.detach());
      attachBuild(inst, resolved, values, vendor.name);
      inst.vendor = vendor.setup({
        host,
        module: name,
        params: values as never,
        vac: inst.vac,
        warn: (m, cpu) => ctx.warn(m, cpu),
      });
      ctx.defer(() => inst.vendor.teardown());
      if (inst.config.enableVirtAtLoad) {
        // kvm_init_virtualization: hold a usage reference from load to unload.
        inst.vac.enableVirtualization();
        ctx.defer(() => inst.vac.disableVirtualization());
      }
      // The instance's snapshot and its x86 state (state-snapshot.ts), registered as one init step.
      const unregisterSnapshot = host.registerSnapshotProvider(name, () => inst.snapshot());
      const unregisterX86 = host.registerSnapshotProvider(`${name}:x86`, () => x86StateSnapshot(inst));
      ctx.defer(() => {
        unregisterX86();
        unregisterSnapshot();
      });
      ctx.defer(host.registerInvariantChecker(name, () => inst.check()));
      ctx.defer(trackInstance(inst, legacy.has('vpid') || legacy.has('sev')));
      // misc_register is the last step: it exposes /dev/kvmX to user space.
      const fops = makeFileOps(inst);
      const dev = host.devfs.miscRegister({
        name,
        minor: postfix === '' || legacy.has('minor') ? KVM_MINOR : MISC_DYNAMIC_MINOR,
        fops: fops.system,
        owner: ctx.module,
        mode: 0o660,
        group: 'kvm',
      });
      ctx.defer(dev.deregister);
      return inst;
    },
  };
}

const OPTION_NAMES: ReadonlySet<string> = new Set(['postfix', 'version', 'build', 'vendors', 'syncRunLimit', 'legacy']);

/** `kvm()`'s options, each read once (a getter runs here), with unknown names refused. */
function kvmOptions(options: unknown): KvmOptions {
  if (options === undefined) return {};
  if (typeof options !== 'object' || options === null || Array.isArray(options)) throw new UsageError('ERR_INVALID_ARG', `kvm: options must be an object, got ${options === null ? 'null' : typeof options}`);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(options)) {
    if (!OPTION_NAMES.has(key)) throw new UsageError('ERR_UNKNOWN_NAME', `kvm: unknown option ${JSON.stringify(key)} (known: ${[...OPTION_NAMES].join(', ')})`);
    out[key] = (options as Record<string, unknown>)[key];
  }
  return out as KvmOptions;
}

/** The vendor list, copied, each entry checked to be vendor ops. */
function vendorList(vendors: unknown): readonly KvmVendorOps[] {
  if (vendors === undefined) return [vmxKvmOps, svmKvmOps];
  if (!Array.isArray(vendors)) throw new UsageError('ERR_INVALID_ARG', `kvm: vendors must be an array of vendor ops (vmxKvmOps, svmKvmOps), got ${typeof vendors}`);
  const list = Array.from(vendors as unknown[]);
  list.forEach((v, i) => {
    const o = v as Partial<KvmVendorOps> | null;
    if (typeof o !== 'object' || o === null || typeof o.name !== 'string' || typeof o.usable !== 'function' || typeof o.setup !== 'function' || typeof o.params !== 'object' || o.params === null) {
      throw new UsageError('ERR_INVALID_ARG', `kvm: vendors[${i}] is not vendor ops (an object with name, params, usable() and setup(), such as vmxKvmOps)`);
    }
  });
  return list as KvmVendorOps[];
}

/**
 * KVMGT (the i915 GVT-g host driver): a subsystem with a hard dependency on the un-postfixed `kvm`. It
 * cannot load while only postfixed KVM modules exist (ENOENT "Unknown symbol"), which is the RFC's
 * "mutually exclusive with subsystems that have a hard dependency on KVM".
 */
export const kvmgt: ModuleImage<Record<string, never>, undefined> = {
  name: 'kvmgt',
  depends: ['kvm'],
  params: {},
  init: () => undefined,
};
