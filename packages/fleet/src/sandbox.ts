/**
 * Handing a VMM its KVM module as real hosts do: a per-VM sandbox ({@link VmmSandbox}) made by a container runtime
 * (or libvirt's per-VM namespace) — a mount namespace with a private `/dev` where `/dev/kvm` is the chosen module's
 * node, and a device cgroup that denies every device but that node. A VMM started in it opens `/dev/kvm` and gets
 * the module placement chose ({@link place}), and can open no other.
 *
 * Both the node and the cgroup rule name the device **by number** (`mknod` takes a major:minor, and so does
 * `devices.allow`), and KVM modules other than the un-postfixed `/dev/kvm` take dynamic misc minors in load order:
 * a number written for `kvm1` names `kvm0` after the modules are reloaded in the other order. The sandbox therefore
 * resolves the module's node **by name** (`stat /dev/kvm1` on the host) when it is made, and
 * {@link VmmSandbox.check} tells whether what it wrote still names the module it was made for (after a reload it
 * may not: make a new sandbox, or {@link VmmSandbox.refresh} it, before the next VMM starts). The `rules` option
 * writes rules as given instead — the fragile way, which the tests and the guide use to show the breakage.
 *
 * Everything here is user space: `unshare`, `mount`, `mknod`, `host.createDeviceCgroup`, `moveToCgroup`, `stat`.
 *
 * @module
 */
import { CLONE_NEWNS, KernelError, S_IFCHR, UsageError, mknod, mount, unshare, type DeviceCgroup, type Host, type Process } from '@vac/core';

/** Options of {@link VmmSandbox.create}. */
export interface VmmSandboxOptions {
  /** The sandbox's name: its runtime process and its device cgroup (`/sys/fs/cgroup/devices/<name>`). */
  readonly name: string;
  /** The module placement chose (`kvm1`): its node becomes `/dev/kvm` in the sandbox. */
  readonly module: string;
  /**
   * Device cgroup rules to write instead of the one resolved from the module's name (e.g. `['c 10:126 rw']`, kept
   * from before a reload): the fragile way, for showing what goes wrong. The node is still made from the name.
   */
  readonly rules?: readonly string[];
}

/** What {@link VmmSandbox.check} found about one node of the sandbox's `/dev`. */
export interface SandboxNodeCheck {
  /** The node in the sandbox (`/dev/kvm`, `/dev/kvm1`). */
  readonly path: string;
  /** The module it was made for. */
  readonly module: string;
  /** Its number in the sandbox. */
  readonly number: string;
  /** The module's number on the host now (`undefined` when it is not loaded). */
  readonly moduleNumberNow: string | undefined;
  /** Whether the node still names the module (its number is the module's now). */
  readonly ok: boolean;
}

/** The number and mode of the character device node `stat` describes (ENODEV for anything else). */
function numberOf(stat: ReturnType<Host['stat']>, path: string): { major: number; minor: number; mode: number } {
  if (stat.type !== 'char') throw new KernelError('ENODEV', 'stat', `${path} is no character device`);
  return { major: stat.major, minor: stat.minor, mode: stat.mode };
}

/**
 * A VMM's sandbox (see the module comment): a runtime process (root, group `kvm`) in a mount namespace of its own
 * with a private `/dev`, and a device cgroup; VMMs are started under {@link VmmSandbox.launcher}, which is in the
 * cgroup, so they share the namespace and the cgroup (`host.spawn({ parent })`, `GuestVmm.create({ parent })`).
 */
export class VmmSandbox {
  /** The host. */
  readonly host: Host;
  /** The sandbox's name. */
  readonly name: string;
  /** The module it was made for (`/dev/kvm` in the sandbox). */
  readonly module: string;
  /** The runtime: makes the nodes (it has the mount namespace and stays in the host's cgroup, as a runtime does). */
  readonly runtime: Process;
  /** The process VMMs are started under: in the runtime's namespace and in {@link VmmSandbox.cgroup}. */
  readonly launcher: Process;
  /** The device cgroup: deny every device, allow the nodes granted. */
  readonly cgroup: DeviceCgroup;
  /** Node in the sandbox → the module it was made for. */
  readonly #nodes = new Map<string, string>();

  private constructor(host: Host, name: string, module: string, runtime: Process, launcher: Process, cgroup: DeviceCgroup) {
    this.host = host;
    this.name = name;
    this.module = module;
    this.runtime = runtime;
    this.launcher = launcher;
    this.cgroup = cgroup;
  }

  /**
   * Make a sandbox for `options.module`: the runtime unshares its mount namespace, mounts a tmpfs on `/dev` and makes
   * `/dev/kvm` there with the number `stat /dev/<module>` gives on the host now (owner, group and mode as the host's
   * node); the cgroup denies everything (`a`) and allows that number (`c MAJ:MIN rw`), or `options.rules`.
   *
   * @throws `KernelError` ENOENT when the module has no node (it is not loaded), or the errno of the call that failed
   *   (nothing is left behind: the processes are killed; the cgroup stays, as `mkdir` made it); `UsageError` for a
   *   malformed option
   */
  static create(host: Host, options: VmmSandboxOptions): VmmSandbox {
    const { name, module } = options;
    if (typeof module !== 'string' || !/^[a-z][a-z0-9_-]*$/.test(module)) throw new UsageError('ERR_INVALID_ARG', `VmmSandbox: ${JSON.stringify(module)} is not a module name`);
    const dev = numberOf(host.stat(`/dev/${module}`), `/dev/${module}`);
    const cgroup = host.createDeviceCgroup(name);
    const runtime = host.spawn({ uid: 0, group: 'kvm', name: `${name}-runtime` });
    try {
      unshare(runtime, CLONE_NEWNS);
      mount(runtime, 'tmpfs', '/dev', 'tmpfs', 0);
      mknod(runtime, '/dev/kvm', S_IFCHR | dev.mode, dev.major, dev.minor);
      cgroup.deny('a');
      for (const rule of options.rules ?? [`c ${dev.major}:${dev.minor} rw`]) cgroup.allow(rule);
      const launcher = host.spawn({ uid: 0, group: 'kvm', name: `${name}-launcher`, parent: runtime });
      host.moveToCgroup(launcher, cgroup);
      const box = new VmmSandbox(host, name, module, runtime, launcher, cgroup);
      box.#nodes.set('/dev/kvm', module);
      return box;
    } catch (e) {
      runtime.kill();
      throw e;
    }
  }

  /**
   * Let the sandbox's VMMs open another module too (before moving a VM there): `/dev/<module>` made in the private
   * `/dev` with the number the host's node has now, and that number allowed in the cgroup.
   *
   * @throws `KernelError` ENOENT (the module is not loaded), EEXIST (already granted)
   */
  grant(module: string): void {
    const path = `/dev/${module}`;
    const dev = numberOf(this.host.stat(path), path);
    mknod(this.runtime, path, S_IFCHR | dev.mode, dev.major, dev.minor);
    this.cgroup.allow(`c ${dev.major}:${dev.minor} rw`);
    this.#nodes.set(path, module);
  }

  /**
   * Take a module away again (after the VMs moved off it): its number is denied in the cgroup, so opening any node
   * with that number is EPERM (fds already open stay, as on Linux).
   */
  revoke(module: string): void {
    for (const [path, m] of this.#nodes) {
      if (m !== module) continue;
      const st = numberOf(this.runtime.stat(path), path);
      this.cgroup.deny(`c ${st.major}:${st.minor} rwm`);
      this.#nodes.delete(path);
    }
  }

  /** The device cgroup's exceptions, as `devices.list` prints them. */
  rules(): string[] {
    return this.cgroup.list();
  }

  /**
   * Whether each node of the sandbox still names the module it was made for: its number against the number of the
   * host's `/dev/<module>` now. After the modules were reloaded in another order a node (and the rule written with
   * it) names another module, or none.
   */
  check(): SandboxNodeCheck[] {
    return [...this.#nodes].map(([path, module]) => {
      const st = numberOf(this.runtime.stat(path), path);
      let now: string | undefined;
      try {
        const h = numberOf(this.host.stat(`/dev/${module}`), `/dev/${module}`);
        now = `${h.major}:${h.minor}`;
      } catch {
        now = undefined;
      }
      const number = `${st.major}:${st.minor}`;
      return { path, module, number, moduleNumberNow: now, ok: number === now };
    });
  }

  /**
   * Make the sandbox right again after a reload, by name: a new private `/dev` with every node made from the host's
   * `/dev/<module>` now, and the cgroup's rules rewritten to those numbers. For VMMs started afterwards.
   *
   * @throws `KernelError` ENOENT when a module the sandbox had is no longer loaded
   */
  refresh(): void {
    const nodes = [...this.#nodes];
    const devs = nodes.map(([path, module]) => ({ path, ...numberOf(this.host.stat(`/dev/${module}`), `/dev/${module}`) }));
    mount(this.runtime, 'tmpfs', '/dev', 'tmpfs', 0);
    for (const d of devs) mknod(this.runtime, d.path, S_IFCHR | d.mode, d.major, d.minor);
    this.cgroup.deny('a');
    for (const d of devs) this.cgroup.allow(`c ${d.major}:${d.minor} rw`);
  }
}
