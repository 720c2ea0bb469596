/**
 * `pnpm conformance:record [group…]`: record the golden files from this machine's real /dev/kvm.
 *
 * 1. Writes the seeded guest programs from the generator to `programs/programs.json` (and, for the
 *    recorder, a text form in a temporary directory).
 * 2. Builds the recorder (`recorder/*.c`) with the system `cc`.
 * 3. Runs it on /dev/kvm (or `KVM_DEVICE`), which writes `golden/<group>.json` for every group (or those
 *    named on the command line), through a temporary directory so a failed run leaves the old files.
 *
 * Without /dev/kvm it records nothing, says so, and exits 0: the golden files stay as they are.
 *
 * @module
 */
import { execFileSync } from 'node:child_process';
import { accessSync, constants, copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { programsFile, programsText } from '../programs/generate.js';

const here = fileURLToPath(new URL('..', import.meta.url));
const device = process.env.KVM_DEVICE ?? '/dev/kvm';
const groups = process.argv.slice(2);

try {
  accessSync(device, constants.R_OK | constants.W_OK);
} catch {
  console.log(`conformance:record: ${device} is missing or not accessible on this machine — nothing recorded; the golden files in conformance/golden/ are unchanged.`);
  process.exit(0);
}

const programs = programsFile();
writeFileSync(join(here, 'programs/programs.json'), `${JSON.stringify(programs, null, 1)}\n`);

const work = mkdtempSync(join(tmpdir(), 'vac-conformance-'));
try {
  const programsTxt = join(work, 'programs.txt');
  writeFileSync(programsTxt, programsText(programs));
  const recorder = join(work, 'recorder');
  const sources = readdirSync(join(here, 'recorder')).filter((f) => f.endsWith('.c')).map((f) => join(here, 'recorder', f));
  execFileSync('cc', ['-std=gnu11', '-O1', '-Wall', '-Wextra', '-Werror', '-o', recorder, ...sources], { stdio: 'inherit' });
  const out = join(work, 'golden');
  mkdirSync(out);
  execFileSync(recorder, ['--out', out, '--programs', programsTxt, '--dev', device, ...groups], { stdio: 'inherit' });
  for (const f of readdirSync(out)) {
    JSON.parse(readFileSync(join(out, f), 'utf8')); // a broken file never replaces a good one
    copyFileSync(join(out, f), join(here, 'golden', f));
  }
  console.log(`conformance:record: golden files written to conformance/golden/ from ${device}.`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
