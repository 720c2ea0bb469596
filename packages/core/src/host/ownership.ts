/**
 * The host's own invariants about who owns what (invariant 6, "nothing is held by an owner that is gone"): outside
 * a load or unload every module is whole — live, with its dependencies loaded and listing it as a user — and every
 * device node and every open file (through an fd or a mapping) belongs to a module that is loaded. A module half
 * unloaded (an `exit` or undo action that threw, a dependency unloaded under it) shows up here.
 *
 * @module
 */
import type { Violation } from '../hardware.js';
import type { Host } from './host.js';
import type { LoadedModule } from './modules.js';

/** Every violation of the host's ownership invariants; linear in the number of modules, devices and open files. */
export function ownershipViolations(host: Host): Violation[] {
  const out: Violation[] = [];
  const loader = host.modules;
  const isLoaded = (m: LoadedModule): boolean => loader.get(m.name) === m;
  const inKernel = host.events.inKernel;
  for (const m of loader.loaded()) {
    if (m.state !== 'live' && !inKernel) {
      out.push({ invariant: 6, message: `module ${m.name} is ${m.state} outside a load or unload: half ${m.state === 'going' ? 'unloaded' : 'loaded'}` });
    }
    for (const dep of m.image.depends) {
      const d = loader.get(dep);
      if (d === undefined) out.push({ invariant: 6, message: `module ${m.name} is loaded but its dependency ${dep} is not` });
      else if (!d.isUsedBy(m.name)) out.push({ invariant: 6, message: `module ${dep} does not list ${m.name}, which depends on it, as a user` });
    }
    for (const user of m.usedBy) {
      const u = loader.get(user);
      if (u === undefined || !u.image.depends.includes(m.name)) out.push({ invariant: 6, message: `module ${m.name} lists ${user} as a user, but ${user} ${u === undefined ? 'is not loaded' : 'does not depend on it'}` });
    }
    if (m.refcount < m.userCount) out.push({ invariant: 6, message: `module ${m.name} has refcount ${m.refcount} with ${m.userCount} user module(s)` });
  }
  for (const path of host.devfs.ownedBy()) {
    if (!isLoaded(path.owner)) out.push({ invariant: 6, message: `${path.path} belongs to module ${path.owner.name}, which is not loaded` });
  }
  for (const p of host.processes()) {
    p.forEachOpenFile((fd, f) => {
      if (f.owner !== undefined && !isLoaded(f.owner)) out.push({ invariant: 6, message: `fd ${fd} of process ${p.pid} (${f.path}) is served by module ${f.owner.name}, which is not loaded` });
    });
    for (const m of p.mappings()) {
      const owner = m.file?.owner;
      if (owner !== undefined && !isLoaded(owner)) out.push({ invariant: 6, message: `a mapping of process ${p.pid} (${m.file?.path ?? ''}) is served by module ${owner.name}, which is not loaded` });
    }
  }
  return out;
}
