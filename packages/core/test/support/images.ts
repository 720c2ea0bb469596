/**
 * Small module images for host tests: a module that registers a misc device, one whose init registers a
 * series of things and then fails at a chosen step, one with a parameter of every kind, and plain library
 * modules with an ABI version.
 *
 * @module
 */
import {
  KernelError,
  MISC_DYNAMIC_MINOR,
  boolParam,
  charpParam,
  enumParam,
  intParam,
  uintParam,
} from '../../src/index.js';
import type { ErrnoCode, FileOperations, ModuleImage, ParamSpecs } from '../../src/index.js';

/** Options of {@link miscImage}. */
export interface MiscImageOptions {
  /** The module name. */
  readonly name: string;
  /** The device node name (default: the module name), giving `/dev/<device>`. */
  readonly device?: string;
  /** A fixed misc minor, or {@link MISC_DYNAMIC_MINOR} (default). */
  readonly minor?: number;
  /** Mode of the node (default 0o660). */
  readonly mode?: number;
  /** Group of the node (default `kvm`). */
  readonly group?: string;
  /** Modules it needs. */
  readonly depends?: readonly string[];
  /** The ABI it was built against, per dependency. */
  readonly abi?: Readonly<Record<string, number>>;
  /** The ABI it offers. */
  readonly abiVersion?: number;
  /** A version string. */
  readonly version?: string;
  /** File operations of the device (the owner is set to the module). */
  readonly fops?: Omit<FileOperations, 'owner'>;
  /** Where init/exit/undo write what they do. */
  readonly log?: string[];
}

/** What {@link miscImage} exports. */
export interface MiscExports {
  /** The node path. */
  readonly path: string;
  /** The minor it got. */
  readonly minor: number;
}

/**
 * A module that registers one misc device (`root:kvm 0660` by default) whose `fops->owner` is the module, so
 * an open fd pins it. The device is deregistered by a deferred undo.
 */
export function miscImage(o: MiscImageOptions): ModuleImage<Record<string, never>, MiscExports> {
  const log = o.log;
  return {
    name: o.name,
    ...(o.version === undefined ? {} : { version: o.version }),
    depends: o.depends ?? [],
    ...(o.abi === undefined ? {} : { abi: o.abi }),
    ...(o.abiVersion === undefined ? {} : { abiVersion: o.abiVersion }),
    params: {},
    init(ctx) {
      log?.push(`init:${o.name}`);
      const reg = ctx.host.devfs.miscRegister({
        name: o.device ?? o.name,
        minor: o.minor ?? MISC_DYNAMIC_MINOR,
        mode: o.mode ?? 0o660,
        group: o.group ?? 'kvm',
        owner: ctx.module,
        fops: { ...o.fops, owner: ctx.module },
      });
      ctx.defer(() => {
        log?.push(`undo:${o.name}:device`);
        reg.deregister();
      });
      return { path: reg.path, minor: reg.minor };
    },
    exit() {
      log?.push(`exit:${o.name}`);
    },
  };
}

/** The registrations {@link stepImage} makes, in order. */
export const STEPS = ['device', 'cpuhp', 'syscore', 'reboot', 'nmi', 'symlink'] as const;

/** Options of {@link stepImage}. */
export interface StepImageOptions {
  /** The module name. */
  readonly name: string;
  /** Make init fail after this many of {@link STEPS} (0 … 6); omitted = init succeeds. */
  readonly failAfter?: number;
  /** The errno init fails with (default EIO). */
  readonly failWith?: ErrnoCode;
  /** Modules it needs. */
  readonly depends?: readonly string[];
  /** Where init/undo write what they do. */
  readonly log?: string[];
}

/**
 * A module whose init registers, one after the other, a misc device, a dynamic cpuhp state, syscore ops, a
 * reboot notifier, an NMI handler and a /dev symlink (each undone by `ctx.defer`, logging `undo:<step>`),
 * then fails with `failWith` once `failAfter` steps are done.
 */
export function stepImage(o: StepImageOptions): ModuleImage<Record<string, never>, { readonly steps: number }> {
  const log = o.log;
  return {
    name: o.name,
    depends: o.depends ?? [],
    params: {},
    init(ctx) {
      const { host } = ctx;
      const fail = (done: number): void => {
        if (o.failAfter === done) {
          log?.push(`fail:${o.name}`);
          throw new KernelError(o.failWith ?? 'EIO', 'init_module', `${o.name}: init failed after ${done} steps`);
        }
      };
      const undo = (step: string, f: () => void): void => {
        ctx.defer(() => {
          log?.push(`undo:${step}`);
          f();
        });
      };
      log?.push(`init:${o.name}`);
      fail(0);
      const reg = host.devfs.miscRegister({ name: o.name, minor: MISC_DYNAMIC_MINOR, fops: { owner: ctx.module }, owner: ctx.module });
      undo('device', reg.deregister);
      fail(1);
      const hp = host.cpuhp.setup(`${o.name}:online`, {
        startup: (cpu) => log?.push(`startup:${cpu}`),
        teardown: (cpu) => log?.push(`teardown:${cpu}`),
      });
      undo('cpuhp', hp);
      fail(2);
      undo('syscore', host.power.registerSyscore({ name: o.name }));
      fail(3);
      undo('reboot', host.power.registerRebootNotifier({ name: o.name, notify: () => undefined }));
      fail(4);
      undo('nmi', host.hooks.registerNmiHandler(() => undefined));
      fail(5);
      host.symlink(`/dev/${o.name}`, `/dev/${o.name}-link`);
      undo('symlink', () => host.unlink(`/dev/${o.name}-link`));
      fail(6);
      return { steps: STEPS.length };
    },
  };
}

/** The parameters of {@link paramsImage}: one of every kind. */
export const ALL_KINDS_PARAMS = {
  enable: boolParam(true, 'a bool'),
  count: intParam(4, 'an int'),
  mask: uintParam(0, 'a uint'),
  label: charpParam('none', 'a charp'),
  flush: enumParam(['always', 'cond', 'never'], 'cond', 'an enum'),
} as const satisfies ParamSpecs;

/** A module with one parameter of every kind; it exports the parsed values. */
export function paramsImage(name = 'knobs'): ModuleImage<typeof ALL_KINDS_PARAMS, { readonly values: Readonly<Record<string, unknown>> }> {
  return {
    name,
    depends: [],
    params: ALL_KINDS_PARAMS,
    init(ctx) {
      return { values: { ...ctx.params } };
    },
  };
}

/** A plain library module (like VAC): no params, an ABI version, exports a greeting. */
export function libImage(name: string, opts: { readonly abiVersion?: number; readonly depends?: readonly string[]; readonly log?: string[] } = {}): ModuleImage<Record<string, never>, { readonly lib: string }> {
  const log = opts.log;
  return {
    name,
    depends: opts.depends ?? [],
    ...(opts.abiVersion === undefined ? {} : { abiVersion: opts.abiVersion }),
    params: {},
    init() {
      log?.push(`init:${name}`);
      return { lib: name };
    },
    exit() {
      log?.push(`exit:${name}`);
    },
  };
}

/** A module that needs `depends`, built against `abi`, and whose init may fail. */
export function userImage(
  name: string,
  opts: { readonly depends: readonly string[]; readonly abi?: Readonly<Record<string, number>>; readonly fail?: ErrnoCode; readonly log?: string[] },
): ModuleImage<Record<string, never>, { readonly uses: readonly string[] }> {
  const log = opts.log;
  return {
    name,
    depends: opts.depends,
    ...(opts.abi === undefined ? {} : { abi: opts.abi }),
    params: {},
    init(ctx) {
      log?.push(`init:${name}`);
      for (const d of opts.depends) ctx.require(d);
      if (opts.fail !== undefined) throw new KernelError(opts.fail, 'init_module', `${name} refused to load`);
      return { uses: opts.depends };
    },
    exit() {
      log?.push(`exit:${name}`);
    },
  };
}
