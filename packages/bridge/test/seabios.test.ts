/**
 * SeaBIOS — QEMU's own firmware (`/usr/share/seabios/bios.bin`) — booting through the bridge: the command of
 * fixtures/seabios/README.md runs unchanged under the preload library against a bridge host, and its debug log
 * (isa-debugcon, port 0x402) is compared line by line with the one recorded on the real /dev/kvm, for `-M pc`,
 * `-M pc,kernel-irqchip=off` and `-M pc -smp 2`.
 *
 * QEMU takes the guest CPU's vendor from the real host's `cpuid` under KVM (`x86_cpu_load_model`), and on an AMD
 * vendor it reserves the HyperTransport hole below 1 TiB in the e820 map (`pc_memory_init`), through the bridge as on
 * the real KVM: so the recording compared is the one made on a host of this machine's CPU vendor (fixtures/seabios/
 * README.md).
 *
 * The lines that state the host's clock speed (`kvmclock: stable tsc, N MHz`, `CPU Mhz=N (kvmclock)`) must be there
 * with a plausible frequency (the model's TSC is not the recording machine's); the floppy attempt's line, which
 * races on the real KVM too, may be either variant recorded there (the README). Everything else must be identical. QEMU is
 * stopped once SeaBIOS hands over to the NIC's option ROM (its last line on port 0x402).
 *
 * Slow (minutes per configuration on a loaded 2-core machine), so gated: it runs with `VAC_SEABIOS=1` where QEMU,
 * bios.bin and a C compiler are present; skipped otherwise.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { socketPaths, startDaemon, type Daemon } from '../src/index.js';
import { buildNative, nativeSkipReason, runVmm, type Native } from './support/native.js';

const QEMU = 'qemu-system-x86_64';
const BIOS = '/usr/share/seabios/bios.bin';
const hasQemu = spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status === 0;
const skip =
  process.env['VAC_SEABIOS'] !== '1'
    ? 'set VAC_SEABIOS=1 to run it (minutes per configuration)'
    : (nativeSkipReason() ??
      (hasQemu ? undefined : `${QEMU} is not installed (apt-get install qemu-system-x86)`) ??
      (existsSync(BIOS) ? undefined : `${BIOS} is missing (apt-get install seabios)`));
if (skip !== undefined) console.warn(`@vac/bridge SeaBIOS test skipped: ${skip}`);

/** The last line SeaBIOS writes to port 0x402: the boot of the e1000's iPXE ROM (which writes to the VGA console). */
const LAST = /^Booting from ca00:[0-9a-f]{4}$/m;

/** The lines stating the host's clock speed, with how to read the frequency (MHz) from each. */
const CLOCK_LINES: readonly RegExp[] = [/^kvmclock: stable tsc, (\d+) MHz$/, /^CPU Mhz=(\d+) \(kvmclock\)$/];

/** The real host's CPU vendor, as QEMU reads it with `cpuid` (`/proc/cpuinfo`'s `vendor_id`). */
const HOST_VENDOR = /^vendor_id\s*:\s*(\S+)/m.exec(existsSync('/proc/cpuinfo') ? readFileSync('/proc/cpuinfo', 'utf8') : '')?.[1];

/** The recording of a configuration made on a host of this machine's CPU vendor (AMD's are the unsuffixed files). */
function recording(name: string): string {
  return HOST_VENDOR === 'GenuineIntel' ? `${name}.intel-host.log` : `${name}.log`;
}

function fixture(name: string): string[] {
  return readFileSync(new URL(`./fixtures/seabios/${name}`, import.meta.url), 'utf8').split('\n');
}

/**
 * The lines that race on the real KVM: those where a recording and its variant run differ (the floppy attempt's
 * timeout or error, README). A model line matches a recorded one when both are among them.
 */
const RACY: ReadonlySet<string> = new Set(
  [['pc.log', 'pc.alt.log'], ['pc-kernel-irqchip-off.log', 'pc-kernel-irqchip-off.alt.log']].flatMap(([a, b]) => {
    const x = fixture(a!);
    const y = fixture(b!);
    return x.flatMap((line, i) => (line === y[i] ? [] : [line, y[i]!]));
  }),
);

/**
 * Compares the model's log with the recording: the index of the first line that differs, or -1 when all match.
 * Clock lines match by form, with a frequency in 100–10,000 MHz; racy lines ({@link RACY}) match each other.
 */
function firstDifference(got: readonly string[], recorded: readonly string[]): number {
  const n = Math.max(got.length, recorded.length);
  for (let i = 0; i < n; i++) {
    const g = got[i];
    const r = recorded[i];
    if (g === undefined || r === undefined) return i;
    if (g === r || (RACY.has(g) && RACY.has(r))) continue;
    const clock = CLOCK_LINES.find((re) => re.test(r));
    const mhz = clock === undefined ? undefined : clock.exec(g)?.[1];
    if (mhz !== undefined && Number(mhz) >= 100 && Number(mhz) <= 10_000) continue;
    return i;
  }
  return -1;
}

describe.skipIf(skip !== undefined)('SeaBIOS through QEMU 7.2 and the bridge, against the real KVM', () => {
  let native: Native;
  let d: Daemon;
  let dir: string;
  beforeAll(async () => {
    native = buildNative();
    dir = mkdtempSync(join(tmpdir(), 'vac-seabios-'));
    d = await startDaemon({ runDir: dir, host: { cpus: 2, modules: [{ name: 'kvm0' }], symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
  });
  afterAll(async () => {
    await d?.stop();
  });

  /** `partial`: expected-partial — stop QEMU once that many lines are written and compare only them (none today). */
  const configs: readonly { readonly name: string; readonly args: readonly string[]; readonly partial?: number }[] = [
    { name: 'pc', args: ['-M', 'pc'] },
    { name: 'pc-kernel-irqchip-off', args: ['-M', 'pc,kernel-irqchip=off'] },
    { name: 'pc-smp2', args: ['-M', 'pc', '-smp', '2'] },
  ];
  for (const c of configs) {
    const what = c.partial === undefined ? 'the debug log is the real KVM\'s, line for line' : `expected-partial: the first ${c.partial} lines are the real KVM's`;
    test(
      `${c.args.join(' ')}: ${what}`,
      async () => {
        const log = join(dir, `${c.name}.log`);
        const argv = [QEMU, '-accel', 'kvm', ...c.args, '-m', '64', '-display', 'none', '-nographic', '-serial', 'none', '-monitor', 'none', '-no-reboot'];
        argv.push('-chardev', `file,id=d,path=${log}`, '-device', 'isa-debugcon,iobase=0x402,chardev=d');
        const read = (): string => (existsSync(log) ? readFileSync(log, 'utf8') : '');
        let stopped = false;
        await runVmm(native, socketPaths(d.runDir).bridge, argv, {
          timeoutMs: 1_500_000,
          // QEMU writes the log, not its stdout: look at the file whenever QEMU prints something, and on a timer.
          onSpawn: (child) => {
            const done = (text: string): boolean => (c.partial === undefined ? LAST.test(text) : text.split('\n').length > c.partial);
            const timer = setInterval(() => {
              if (!stopped && done(read())) {
                stopped = true;
                setTimeout(() => child.kill('SIGTERM'), 500);
              }
            }, 250);
            child.on('close', () => clearInterval(timer));
          },
        });
        const all = read().split('\n');
        const got = c.partial === undefined ? all : all.slice(0, c.partial);
        const full = fixture(recording(c.name));
        const recorded = c.partial === undefined ? full : full.slice(0, c.partial);
        const at = firstDifference(got, recorded);
        const context = `first difference at line ${at + 1}:\n  recorded: ${recorded[at]}\n  model:    ${got[at]}\n\n${got.join('\n')}`;
        expect(at, context).toBe(-1);
        for (const re of CLOCK_LINES) expect(got.some((l) => re.test(l)), String(re)).toBe(true);
      },
      1_600_000,
    );
  }
});
