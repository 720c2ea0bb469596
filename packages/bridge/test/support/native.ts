/**
 * Test support: the C compiler, the preload library and the C fixtures built into one temporary directory
 * (world-readable, so a VMM run as another user can load them), and a runner for a VMM under the library.
 */
import { spawn, spawnSync } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { compileC, findCompiler, preloadLibrary } from '../../src/index.js';

/**
 * `reason` unless the environment requires these tests (`VAC_REQUIRE_VMMS=1`, which `.ci/run` sets after
 * installing the compiler, the kernel headers and QEMU): then a missing prerequisite fails the test file
 * instead of skipping it, so CI cannot pass with the VMM tests silently skipped.
 */
function skipOrFail(reason: string | undefined): string | undefined {
  if (reason !== undefined && process.env.VAC_REQUIRE_VMMS === '1') throw new Error(`VAC_REQUIRE_VMMS=1 but these tests cannot run: ${reason}`);
  return reason;
}

/** Why native tests cannot run here, or `undefined` when they can (throws under `VAC_REQUIRE_VMMS=1`). */
export function nativeSkipReason(): string | undefined {
  if (process.platform !== 'linux') return skipOrFail('the preload library is Linux-only');
  if (findCompiler() === undefined) return skipOrFail('no C compiler (cc, gcc, clang or $CC) on this machine; .ci/run installs gcc');
  if (!existsSync('/usr/include/linux/kvm.h')) return skipOrFail('no <linux/kvm.h> (linux-libc-dev) for the C fixtures; .ci/run installs it');
  return undefined;
}

/** The QEMU binary the QEMU tests run (the distribution's qemu-system-x86, 7.2 here). */
export const QEMU = 'qemu-system-x86_64';

/** Why QEMU tests cannot run here (no native build, or no QEMU), or `undefined` when they can (throws under `VAC_REQUIRE_VMMS=1`). */
export function qemuSkipReason(): string | undefined {
  const native = nativeSkipReason();
  if (native !== undefined) return native;
  if (spawnSync(QEMU, ['--version'], { stdio: 'ignore' }).status !== 0) return skipOrFail(`${QEMU} is not installed (apt-get install qemu-system-x86; .ci/run does)`);
  return undefined;
}

/** Paths of the built artefacts. */
export interface Native {
  readonly dir: string;
  readonly preload: string;
  readonly lwn: string;
  readonly probe: string;
  /** `fixtures/irqchip.c`: a VMM with the in-kernel irqchip, PIT, irqfds and an ioeventfd. */
  readonly irqchip: string;
  /** `fixtures/smram.c`: an SMI handler in SMRAM that only address space 1 maps. */
  readonly smram: string;
}

let built: Native | undefined;

/** Build the preload library and the fixtures once per test file. */
export function buildNative(): Native {
  if (built !== undefined) return built;
  const dir = mkdtempSync(join(tmpdir(), 'vac-native-'));
  chmodSync(dir, 0o755);
  const preload = preloadLibrary({ ...process.env, VAC_CACHE_DIR: dir });
  const fixture = (name: string): string => fileURLToPath(new URL(`../fixtures/${name}.c`, import.meta.url));
  const lwn = join(dir, 'lwn');
  const probe = join(dir, 'probe');
  compileC([fixture('lwn')], lwn, ['-O1']);
  compileC([fixture('probe')], probe, ['-O1', '-pthread']);
  const irqchip = join(dir, 'irqchip');
  compileC([fixture('irqchip')], irqchip, ['-O1', '-pthread']);
  const smram = join(dir, 'smram');
  compileC([fixture('smram')], smram, ['-O1']);
  built = { dir, preload, lwn, probe, irqchip, smram };
  return built;
}

/** What a finished VMM printed. */
export interface VmmResult {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Options of {@link runVmm}. */
export interface RunOptions {
  readonly env?: NodeJS.ProcessEnv;
  readonly uid?: number;
  readonly gid?: number;
  readonly input?: string;
  /** Called with the child as soon as it is spawned. */
  readonly onSpawn?: (child: import('node:child_process').ChildProcess) => void;
  readonly timeoutMs?: number;
  /**
   * Stop the VMM with SIGTERM once its output so far satisfies this (a VMM whose guest halts forever, e.g.
   * QEMU after the firmware's line, does not exit by itself).
   */
  readonly stopWhen?: (stdout: string, stderr: string) => boolean;
}

/** Run a VMM binary with the preload library against the bridge socket `socket`. */
export function runVmm(native: Native, socket: string, argv: readonly string[], opts: RunOptions = {}): Promise<VmmResult> {
  return new Promise((resolve, reject) => {
    const [cmd = '', ...args] = argv;
    const child = spawn(cmd, args, {
      env: { ...process.env, LD_PRELOAD: native.preload, VAC_SOCKET: socket, ...opts.env },
      stdio: ['pipe', 'pipe', 'pipe'],
      ...(opts.uid === undefined ? {} : { uid: opts.uid }),
      ...(opts.gid === undefined ? {} : { gid: opts.gid }),
    });
    let stdout = '';
    let stderr = '';
    let stopping = false;
    const check = (): void => {
      if (!stopping && opts.stopWhen?.(stdout, stderr) === true) {
        stopping = true;
        child.kill('SIGTERM');
      }
    };
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString();
      check();
    });
    child.stderr.on('data', (d: Buffer) => {
      stderr += d.toString();
      check();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${cmd} did not finish within ${opts.timeoutMs ?? 10_000} ms; stdout: ${stdout} stderr: ${stderr}`));
    }, opts.timeoutMs ?? 10_000);
    child.on('error', reject);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
    if (opts.input !== undefined) child.stdin.write(opts.input);
    opts.onSpawn?.(child);
  });
}

/** `name=value` lines → a record. */
export function parseLines(text: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of text.split('\n')) {
    for (const part of line.split(' ')) {
      const i = part.indexOf('=');
      if (i > 0) out[part.slice(0, i)] = part.slice(i + 1);
    }
  }
  return out;
}

/**
 * Poll `cond` every 10 ms (after `refresh`, if given) until it holds; fails after `ms` (generous: a loaded machine
 * is slow, never a speed check).
 */
export async function until(cond: () => boolean, what: string, ms = 20_000, refresh?: () => Promise<void>): Promise<void> {
  const end = Date.now() + ms;
  await refresh?.();
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
    await refresh?.();
  }
}

/** A VMM started by {@link startVmm}: its process, its output so far, and its end. */
export interface RunningVmm {
  readonly child: import('node:child_process').ChildProcess;
  /** Everything it printed on stdout so far. */
  stdout(): string;
  readonly done: Promise<VmmResult>;
}

/** {@link runVmm}, returning at once with the running process (for tests that signal it or watch its output). */
export function startVmm(native: Native, socket: string, argv: readonly string[], opts: RunOptions = {}): RunningVmm {
  let out = '';
  let child: import('node:child_process').ChildProcess | undefined;
  const done = runVmm(native, socket, argv, {
    ...opts,
    onSpawn: (c) => {
      child = c;
      c.stdout?.on('data', (b: Buffer) => {
        out += b.toString();
      });
      opts.onSpawn?.(c);
    },
  });
  if (child === undefined) throw new Error(`${argv[0] ?? ''} was not spawned`);
  return { child, stdout: () => out, done };
}
