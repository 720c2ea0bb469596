/**
 * The guest programs' side of the comparison: `programs/programs.json` says which FLAGS bits the SDM leaves
 * undefined at each exit site, and each exit of a recorded run names its site (the port of an IN or OUT,
 * or HLT).
 *
 * @module
 */
import { readFileSync } from 'node:fs';
import type { GuestProgram, ProgramsFile } from '../programs/generate.js';
import type { FlagsMask } from './facts.js';
import type { Fact, Json } from './golden.js';
import { jsonInt } from './values.js';

/** `programs/programs.json`. */
export function loadPrograms(): ProgramsFile {
  return JSON.parse(readFileSync(new URL('../programs/programs.json', import.meta.url), 'utf8')) as ProgramsFile;
}

/** The exit site of a recorded `kvm_run`: `out:<port>`, `in:<port>`, `hlt`, or undefined for other exits. */
export function exitSite(run: Json | undefined): string | undefined {
  if (typeof run !== 'object' || run === null || Array.isArray(run)) return undefined;
  const o = run as { readonly exit_reason?: Json; readonly io?: { readonly direction?: Json; readonly port?: Json } };
  if (o.exit_reason === undefined) return undefined;
  const reason = jsonInt(o.exit_reason);
  if (reason === 5n) return 'hlt';
  if (reason === 2n && o.io?.port !== undefined && o.io.direction !== undefined) return `${jsonInt(o.io.direction) === 1n ? 'out' : 'in'}:${jsonInt(o.io.port)}`;
  return undefined;
}

/** FLAGS bits not compared at each KVM_GET_REGS of `fact`: those undefined at the exit before it. */
export function programFlagsMask(fact: Fact, program: GuestProgram): FlagsMask {
  return (step) => {
    for (let i = step - 1; i >= 0; i--) {
      const s = fact.steps[i];
      if (s?.op !== 'ioctl' || s.name !== 'KVM_RUN') continue;
      const site = exitSite(s.run);
      const m = site === undefined ? undefined : program.undefinedFlags[site];
      return m === undefined ? undefined : BigInt(m);
    }
    return undefined;
  };
}
