/**
 * The module loader: `insmod`, `modprobe`, `rmmod`, `lsmod`, with the semantics of Linux
 * `init_module(2)`/`delete_module(2)` (kernel/module/main.c) and kmod's `modprobe`.
 *
 * A {@link ModuleImage} is what a `.ko` file is: a name, the modules it needs, the ABI it was built
 * against, typed parameters, `init` and `exit`. `init` gets a {@link ModuleContext} whose `defer()` records
 * undo actions; they run last-registered-first when init fails (so a failing init leaves nothing behind)
 * and after `exit` at unload.
 *
 * @module
 */
import { KernelError, UsageError } from '../errors.js';
import type { Host } from './host.js';
import { paramText, type ParamInputs, type ParamSpecs, type ParamValues } from './params.js';
import type { Process } from './process.js';

/**
 * A loadable module image (a `.ko`).
 *
 * @typeParam P - the parameter specs
 * @typeParam E - what the module exports to modules that depend on it (its `EXPORT_SYMBOL`s)
 */
export interface ModuleImage<P extends ParamSpecs = ParamSpecs, E = unknown> {
  /** The module name (`kvm0`). */
  readonly name: string;
  /** A free-form version of the image (e.g. `'6.12-fix1'`), shown by `lsmod()`. */
  readonly version?: string;
  /** Names of the modules it needs loaded first (its `depends:` line). */
  readonly depends: readonly string[];
  /**
   * The ABI version it was built against, per dependency (e.g. `{ vac: 1 }`). A loaded dependency whose
   * `abiVersion` differs makes the load fail with ENOEXEC ("Invalid module format").
   */
  readonly abi?: Readonly<Record<string, number>>;
  /** The ABI version this module offers to its dependents. */
  readonly abiVersion?: number;
  /** Parameter specs by name. */
  readonly params: P;
  /** `module_init`: set up; throw a {@link KernelError} to fail the load. Returns the module's exports. */
  init(ctx: ModuleContext<P, E>): E;
  /** `module_exit`: tear down what `defer()` does not. Runs before the deferred undo actions. */
  exit?(ctx: ModuleContext<P, E>): void;
}

/**
 * Any module image, whatever its parameters and exports. (Method parameters are bivariant, so an image of any
 * parameter specs and exports is one of these.)
 */
export type AnyModuleImage = ModuleImage<ParamSpecs, unknown>;

/** The load state of a module (`enum module_state`). */
export type ModuleState = 'coming' | 'live' | 'going';

/** What a module's `init` and `exit` receive. */
export interface ModuleContext<P extends ParamSpecs = ParamSpecs, E = unknown> {
  /** The host the module is loaded in. */
  readonly host: Host;
  /** The loaded module itself (for refcounts and ownership of devices). */
  readonly module: LoadedModule<E>;
  /** The parsed parameter values. */
  readonly params: ParamValues<P>;
  /** The exports of a dependency (`symbol_get`); it must be listed in `depends`. */
  require<T>(name: string): T;
  /** Record an undo action; undo actions run last-first after `exit`, or when `init` fails. */
  defer(undo: () => void): void;
  /** Log a warning from this module. */
  warn(message: string, cpu?: number): void;
}

/** One row of `lsmod`. */
export interface LsmodEntry {
  /** Module name. */
  readonly name: string;
  /** The reference count (`module_refcount`). */
  readonly refcount: number;
  /** Names of loaded modules that depend on it ("Used by"). */
  readonly usedBy: readonly string[];
  /** Load state. */
  readonly state: ModuleState;
  /** The image version. */
  readonly version: string | undefined;
}

/** A module in the kernel. */
export class LoadedModule<E = unknown> {
  /** The module name. */
  readonly name: string;
  /** The image it was loaded from. */
  readonly image: AnyModuleImage;
  /** Load state. */
  state: ModuleState = 'coming';
  /** Parameter values as sysfs shows them. */
  readonly paramText: Readonly<Record<string, string>>;
  /** Modules that depend on this one. */
  readonly usedBy = new Set<string>();
  /** What `init` returned. */
  exports: E | undefined;
  #refcount = 0;
  /** @internal Undo actions recorded by `ctx.defer()`. */
  readonly undo: Array<() => void> = [];
  /** @internal The context `init` received, handed to `exit`. */
  context: ModuleContext | undefined;

  /** @internal */
  constructor(name: string, image: AnyModuleImage, paramText: Readonly<Record<string, string>>) {
    this.name = name;
    this.image = image;
    this.paramText = paramText;
  }

  /** `module_refcount`. */
  get refcount(): number {
    return this.#refcount;
  }

  /** `try_module_get`: take a reference; fails (returns false) once the module is going away. */
  tryGet(): boolean {
    if (this.state === 'going') return false;
    this.#refcount++;
    return true;
  }

  /** `__module_get`: take a reference unconditionally (the caller already holds one). */
  get(): void {
    this.#refcount++;
  }

  /** `module_put`: drop a reference. */
  put(): void {
    if (this.#refcount <= 0) throw new UsageError('ERR_INVALID_STATE', `module_put(${this.name}) with refcount 0`);
    this.#refcount--;
  }
}

/** Options of {@link ModuleLoader.insmod} and {@link ModuleLoader.modprobe}. */
export interface LoadOptions {
  /** The process doing the load (needs CAP_SYS_MODULE). Default: the host's init process (root). */
  readonly as?: Process;
}

/** The module subsystem of a host. */
export class ModuleLoader {
  readonly #host: Host;
  readonly #loaded = new Map<string, LoadedModule>();
  readonly #library = new Map<string, AnyModuleImage>();

  /** @internal */
  constructor(host: Host) {
    this.#host = host;
  }

  /** Make images known to `modprobe` (as installing `.ko` files and running `depmod`). */
  depmod(...images: AnyModuleImage[]): void {
    for (const image of images) {
      validateImage(image);
      this.#library.set(image.name, image);
    }
  }

  /** The images `modprobe` can find, by name. */
  get library(): ReadonlyMap<string, AnyModuleImage> {
    return this.#library;
  }

  /** The loaded module called `name`, if any. */
  get(name: string): LoadedModule | undefined {
    return this.#loaded.get(name);
  }

  /** The exports of a live module (`symbol_get` of its exported symbols). */
  exportsOf<T>(name: string): T | undefined {
    const m = this.#loaded.get(name);
    return m !== undefined && m.state === 'live' ? (m.exports as T) : undefined;
  }

  /**
   * `insmod`: load one image; its dependencies must already be loaded.
   *
   * @throws {@link KernelError} EPERM (no CAP_SYS_MODULE), EEXIST (already loaded), ENOENT (a dependency is
   * not loaded: "Unknown symbol"), ENOEXEC (built against another ABI), EINVAL (ill-typed parameter),
   * or whatever the module's init fails with; the host is unchanged after any failure.
   */
  insmod<P extends ParamSpecs, E>(image: ModuleImage<P, E>, params: ParamInputs = {}, opts: LoadOptions = {}): LoadedModule<E> {
    validateImage(image);
    this.#requireCap(opts, 'init_module');
    return this.#host.events.op(() => this.#load(image, params) as LoadedModule<E>);
  }

  /**
   * `modprobe`: load an image after loading, from the library, every dependency that is not loaded yet.
   * Loading a module that is already loaded is a no-op, as with modprobe. If anything fails, the
   * dependencies loaded by this call are unloaded again (see docs/fidelity.md).
   */
  modprobe<P extends ParamSpecs, E>(image: ModuleImage<P, E> | string, params: ParamInputs = {}, opts: LoadOptions = {}): LoadedModule<E> {
    this.#requireCap(opts, 'init_module');
    let img: AnyModuleImage;
    if (typeof image === 'string') {
      const found = this.#library.get(image);
      if (found === undefined) throw new KernelError('ENOENT', 'modprobe', `Module ${image} not found`);
      img = found;
    } else {
      validateImage(image);
      img = image;
    }
    const existing = this.#loaded.get(img.name);
    if (existing !== undefined) return existing as LoadedModule<E>;
    return this.#host.events.op(() => {
      const loadedHere: string[] = [];
      try {
        this.#loadDeps(img, loadedHere, [img.name]);
        return this.#load(img, params) as LoadedModule<E>;
      } catch (e) {
        for (const name of loadedHere.reverse()) this.#unload(name);
        throw e;
      }
    });
  }

  #loadDeps(img: AnyModuleImage, loadedHere: string[], chain: string[]): void {
    for (const dep of img.depends) {
      if (this.#loaded.has(dep)) continue;
      if (chain.includes(dep)) throw new KernelError('ELOOP', 'modprobe', `dependency cycle: ${[...chain, dep].join(' -> ')}`);
      const depImage = this.#library.get(dep);
      if (depImage === undefined) throw new KernelError('ENOENT', 'modprobe', `Module ${dep} not found (needed by ${img.name})`);
      this.#loadDeps(depImage, loadedHere, [...chain, dep]);
      this.#load(depImage, {});
      loadedHere.push(dep);
    }
  }

  /**
   * `rmmod`: unload a module.
   *
   * @throws {@link KernelError} EPERM (no CAP_SYS_MODULE), ENOENT (not loaded), EBUSY (not live: still
   * loading or going away), EWOULDBLOCK "Module X is in use" (other modules depend on it, or its refcount
   * is not 0).
   */
  rmmod(name: string, opts: LoadOptions = {}): void {
    this.#requireCap(opts, 'delete_module');
    const m = this.#loaded.get(name);
    if (m === undefined) throw new KernelError('ENOENT', 'rmmod', `Module ${name} is not currently loaded`);
    if (m.state !== 'live') throw new KernelError('EBUSY', 'rmmod', `Module ${name} is not live (${m.state})`);
    // delete_module: a non-empty source_list (dependents) comes first, then try_stop_module's refcount check.
    if (m.usedBy.size > 0) {
      throw new KernelError('EWOULDBLOCK', 'rmmod', `Module ${name} is in use by: ${[...m.usedBy].sort().join(' ')}`);
    }
    if (m.refcount > 0) throw new KernelError('EWOULDBLOCK', 'rmmod', `Module ${name} is in use`);
    this.#host.events.op(() => this.#unload(name));
  }

  /** `lsmod`: every loaded module, most recently loaded first (as /proc/modules lists them). */
  lsmod(): LsmodEntry[] {
    return [...this.#loaded.values()].reverse().map((m) => ({
      name: m.name,
      refcount: m.refcount,
      usedBy: [...m.usedBy].sort(),
      state: m.state,
      version: m.image.version,
    }));
  }

  /** Read `/sys/module/<name>/parameters/<param>`; ENOENT when there is no such file. */
  readParam(name: string, param: string): string {
    const m = this.#loaded.get(name);
    // Own properties only: `constructor`, `__proto__`, … are not parameter files.
    const text = m !== undefined && Object.hasOwn(m.paramText, param) ? m.paramText[param] : undefined;
    if (text === undefined) throw new KernelError('ENOENT', 'open', `/sys/module/${name}/parameters/${param}: No such file or directory`);
    return text;
  }

  /** Writing a module parameter: they are all 0444 here, so EACCES — as with a read-only sysfs file. */
  writeParam(name: string, param: string, _value: string): never {
    this.readParam(name, param);
    throw new KernelError('EACCES', 'open', `/sys/module/${name}/parameters/${param} is read-only`);
  }

  #requireCap(opts: LoadOptions, op: string): void {
    const proc = opts.as ?? this.#host.init;
    if (!proc.capable('CAP_SYS_MODULE')) throw new KernelError('EPERM', op, 'Operation not permitted (CAP_SYS_MODULE)');
  }

  #load(image: AnyModuleImage, params: ParamInputs): LoadedModule {
    const name = image.name;
    if (this.#loaded.has(name)) throw new KernelError('EEXIST', 'init_module', `Module ${name} already loaded`);
    const deps: LoadedModule[] = [];
    for (const dep of image.depends) {
      const d = this.#loaded.get(dep);
      if (d === undefined || d.state !== 'live') {
        throw new KernelError('ENOENT', 'init_module', `${name}: Unknown symbol in module (needs ${dep})`);
      }
      const want = image.abi?.[dep];
      if (want !== undefined && want !== d.image.abiVersion) {
        throw new KernelError(
          'ENOEXEC',
          'init_module',
          `${name}: Invalid module format (built against ${dep} ABI ${want}, loaded ${dep} has ${String(d.image.abiVersion)})`,
        );
      }
      deps.push(d);
    }
    const values: Record<string, unknown> = {};
    const text: Record<string, string> = {};
    const warnings: string[] = [];
    for (const [p, spec] of Object.entries(image.params as ParamSpecs)) {
      values[p] = spec.defaultValue;
    }
    for (const [p, raw] of Object.entries(params)) {
      // Own properties only: a parameter called `constructor` or `toString` is unknown, not Object.prototype's.
      const spec = Object.hasOwn(image.params, p) ? (image.params as ParamSpecs)[p] : undefined;
      if (spec === undefined) {
        // unknown_module_param_cb: warn and ignore.
        warnings.push(`${name}: unknown parameter '${p}' ignored`);
        continue;
      }
      const s = paramText(raw);
      const v = spec.parse(s);
      if (v === undefined) throw new KernelError('EINVAL', 'init_module', `${name}: \`${s}' invalid for parameter \`${p}'`);
      values[p] = v;
    }
    for (const [p, spec] of Object.entries(image.params as ParamSpecs)) text[p] = spec.show(values[p]);
    for (const w of warnings) this.#host.warn({ source: name, message: w });

    const mod = new LoadedModule(name, image, Object.freeze(text));
    for (const d of deps) {
      d.get();
      d.usedBy.add(name);
    }
    this.#loaded.set(name, mod);
    const ctx = this.#context(mod, Object.freeze(values));
    try {
      mod.exports = image.init(ctx);
    } catch (e) {
      runUndo(mod);
      this.#loaded.delete(name);
      for (const d of deps) {
        d.usedBy.delete(name);
        d.put();
      }
      throw e;
    }
    mod.state = 'live';
    mod.context = ctx;
    this.#host.events.emit('module:load', { name, params: mod.paramText });
    return mod;
  }

  #unload(name: string): void {
    const m = this.#loaded.get(name);
    if (m === undefined) return;
    m.state = 'going';
    const ctx = m.context;
    try {
      if (ctx !== undefined) m.image.exit?.(ctx);
    } finally {
      runUndo(m);
      this.#loaded.delete(name);
      for (const dep of m.image.depends) {
        const d = this.#loaded.get(dep);
        if (d !== undefined) {
          d.usedBy.delete(name);
          d.put();
        }
      }
      this.#host.events.emit('module:unload', { name });
    }
  }

  #context(mod: LoadedModule, params: Readonly<Record<string, unknown>>): ModuleContext {
    const host = this.#host;
    const image = mod.image;
    return {
      host,
      module: mod,
      params,
      require<T>(dep: string): T {
        if (!image.depends.includes(dep)) throw new UsageError('ERR_UNKNOWN_NAME', `${image.name}: require('${dep}') but '${dep}' is not in depends`);
        const d = host.modules.get(dep);
        if (d === undefined) throw new UsageError('ERR_INVALID_STATE', `${image.name}: dependency '${dep}' is not loaded`);
        return d.exports as T;
      },
      defer(undo) {
        mod.undo.push(undo);
        if (mod.state === 'coming' && host.faults.initStepFails(mod.name, mod.undo.length)) {
          throw new KernelError('ENOMEM', 'init_module', `${mod.name}: injected failure at init step ${mod.undo.length}`);
        }
      },
      warn(message, cpu) {
        host.warn(cpu === undefined ? { source: mod.name, message } : { source: mod.name, message, cpu });
      },
    };
  }

  /** Every loaded module (for snapshots and invariant checks). */
  loaded(): IterableIterator<LoadedModule> {
    return this.#loaded.values();
  }
}

function runUndo(mod: LoadedModule): void {
  while (mod.undo.length > 0) {
    const undo = mod.undo.pop();
    undo?.();
  }
}

const NAME_RE = /^[A-Za-z0-9_-]{1,55}$/;

/** Check an image's shape before use, naming the image in the error. */
function validateImage(image: AnyModuleImage): void {
  if (typeof image !== 'object' || image === null) throw new UsageError('ERR_INVALID_ARG', 'module image must be an object');
  if (typeof image.name !== 'string' || !NAME_RE.test(image.name)) {
    throw new UsageError('ERR_INVALID_ARG', `module image name ${JSON.stringify(image.name)} is not a valid module name (MODULE_NAME_LEN 56)`);
  }
  if (!Array.isArray(image.depends)) throw new UsageError('ERR_INVALID_ARG', `module image ${image.name}: depends must be an array of names`);
  if (typeof image.init !== 'function') throw new UsageError('ERR_INVALID_ARG', `module image ${image.name}: init must be a function`);
  if (typeof image.params !== 'object' || image.params === null) throw new UsageError('ERR_INVALID_ARG', `module image ${image.name}: params must be an object`);
}

