/**
 * Is a program statically linked? LD_PRELOAD works through the dynamic loader, so a static binary (such as
 * Firecracker's release builds) never loads the preload library and would open the machine's real /dev/kvm:
 * `vac run` refuses it with a clear error instead.
 *
 * @module
 */
import { accessSync, closeSync, constants, openSync, readSync } from 'node:fs';
import { delimiter, join } from 'node:path';

const PT_INTERP = 3;

/** Find `cmd` as the shell would (a path with a slash as is, else the first executable on `$PATH`). */
export function whichProgram(cmd: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (cmd.includes('/')) return cmd;
  for (const dir of (env.PATH ?? '').split(delimiter)) {
    if (dir === '') continue;
    const p = join(dir, cmd);
    try {
      accessSync(p, constants.X_OK);
      return p;
    } catch {
      // next
    }
  }
  return undefined;
}

/**
 * Whether `path` is a 64-bit ELF executable with no program interpreter (`PT_INTERP`): statically linked, or
 * static-pie. A file that is not ELF (a script) or cannot be read is not reported as static.
 */
export function isStaticElf(path: string): boolean {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch {
    return false;
  }
  try {
    const h = Buffer.alloc(64);
    if (readSync(fd, h, 0, 64, 0) < 64 || h.readUInt32BE(0) !== 0x7f454c46 || h[4] !== 2 || h[5] !== 1) return false;
    const phoff = Number(h.readBigUInt64LE(0x20));
    const phentsize = h.readUInt16LE(0x36);
    const phnum = h.readUInt16LE(0x38);
    if (phnum === 0 || phentsize < 4) return false;
    const ph = Buffer.alloc(phentsize * phnum);
    if (readSync(fd, ph, 0, ph.length, phoff) < ph.length) return false;
    for (let i = 0; i < phnum; i++) if (ph.readUInt32LE(i * phentsize) === PT_INTERP) return false;
    return true;
  } finally {
    closeSync(fd);
  }
}
