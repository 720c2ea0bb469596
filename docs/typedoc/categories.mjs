// @ts-check
/**
 * A TypeDoc plugin: every export of a package gets a category from the source file that declares it, so each
 * package's page is grouped (the host, VAC, the ABI, …) instead of one alphabetical list. A `@category` tag in
 * the source wins. The table below is the only place to edit when a file is added; an export that matches no
 * row is a warning (and `--treatWarningsAsErrors` fails the docs build), so nothing lands in "Other".
 */
import { Comment, CommentTag, Converter } from 'typedoc';

/** Per package: [category, regular expression on the package-relative source path], first match wins. */
export const CATEGORIES = {
  '@vac/core': [
    ['Host', /^src\/(host\/host|host\/topology|cpu|hardware|per-cpu|settings)\.ts$/],
    ['Processes and /dev', /^src\/host\/(process|file|devfs|eventfd|memfd|socket|mount-ns|device-cgroup|credentials|path-walk|ownership|xstate-perm)\.ts$/],
    ['Modules and parameters', /^src\/host\/(modules|params)\.ts$/],
    ['Scheduler and clock', /^src\/host\/(sched|clock|affinity)\.ts$/],
    ['Hotplug and power', /^src\/host\/(cpuhp|power)\.ts$/],
    ['Kernel hooks and faults', /^src\/host\/(hooks|faults)\.ts$/],
    ['Errors', /^src\/(errors|describe-arg)\.ts$/],
    ['Events', /^src\/(events|virt-events)\.ts$/],
    ['Traces and pictures', /^src\/trace\//],
    ['VAC', /^src\/(vac\/|id-bitmap\.ts$|kvm-vendor\.ts$)/],
  ],
  '@vac/vmx': [
    ['Hardware model', /^src\/(model|hardware)\.ts$/],
    ['Architectural constants', /^src\/arch\.ts$/],
    ['VMX CPU state', /^src\/(vmx-cpu|loaded-vmcs)\.ts$/],
    ['VAC (VMX)', /^src\/(vac-|vpid-allocator)/],
    ['KVM plug-in (kvm_intel)', /^src\/kvm-vmx/],
  ],
  '@vac/svm': [
    ['Hardware model', /^src\/(model|hardware)\.ts$/],
    ['Architectural constants', /^src\/arch\.ts$/],
    ['SVM CPU state', /^src\/svm-cpu\.ts$/],
    ['VAC (SVM)', /^src\/(vac-|asid-allocator|sev-asid-allocator)/],
    ['KVM plug-in (kvm_amd)', /^src\/kvm-svm/],
  ],
  '@vac/kvm': [
    ['VMM helpers', /^src\/vmm(-vcpu|-dirty-ring|-irqchip)?\.ts$/],
    ['KVM module', /^src\/module\/(factory|params|instance|faults|stats|legacy|events)\.ts$/],
    ['Module builds and moves', /^src\/builds\//],
    ['ABI', /^src\/(abi\/|module\/(caps|ioctls|ioctl-table|x86-caps|irq-caps|cpu-caps)\.ts$)/],
    ['VMs and vCPUs', /^src\/module\//],
    ['Guest CPU', /^src\/guest\//],
    ['Interrupt controllers', /^src\/irqchip\//],
    ['Introspection', /^src\/introspect\.ts$/],
  ],
  '@vac/fleet': [
    ['Moving a VM', /^src\/(move|move-run|handoff|meter|guest-vmm|guests|events)\.ts$/],
    ['Upgrade plans', /^src\/(plan|report|strategies)[^/]*\.ts$/],
    ['Placement', /^src\/(placement|sandbox|smt)\.ts$/],
    ['Fleets', /^src\/fleet\//],
  ],
  '@vac/bridge': [
    ['The vac command', /^src\/cli\//],
    ['Daemon and host control', /^src\/(daemon|control)\.ts$/],
    ['Bridge server and protocol', /^src\/(server|protocol|request-fifo|nonblocking-read|spare-cpu|codec|guest-memory|vcpu-runner)\.ts$/],
    ['Preload library', /^src\/(preload|elf)\.ts$/],
  ],
};

/** @param {import('typedoc').Application} app */
export function load(app) {
  app.converter.on(
    Converter.EVENT_RESOLVE_END,
    (context) => {
      const project = context.project;
      const rows = CATEGORIES[/** @type {keyof typeof CATEGORIES} */ (project.packageName ?? project.name)];
      if (!rows) return;
      for (const child of project.children ?? []) {
        if (child.comment?.getTag('@category')) continue;
        const id = project.getSymbolIdFromReflection(child);
        const path = id?.packagePath ?? '';
        const row = rows.find(([, re]) => re.test(path));
        if (!row) {
          app.logger.warn(`docs/typedoc/categories.mjs: no category for ${project.name}.${child.name} (${path || 'no source'})`);
          continue;
        }
        child.comment ??= new Comment();
        child.comment.blockTags.push(new CommentTag('@category', [{ kind: 'text', text: row[0] }]));
      }
    },
    100, // before TypeDoc's CategoryPlugin (-200)
  );
}
