/** The `vac` command: Linux-tool output, errors, help, and a daemon started and stopped by the command. */
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { runProcess } from '@vac/test-support';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { buildNative, nativeSkipReason } from './support/native.js';
import { PreloadBuildError, compileC, findCompiler, isStaticElf, main, preloadLibrary, startDaemon, type Daemon } from '../src/index.js';

async function vac(...argv: string[]): Promise<{ status: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const status = await main(argv, { out: (t) => (out += t), err: (t) => (err += t) });
  return { status, out, err };
}

describe('vac against a running bridge', () => {
  let d: Daemon;
  let dir: string;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'vac-cli-'));
    d = await startDaemon({ runDir: dir, host: { cpus: 2, modules: [{ name: 'kvm0' }, { name: 'kvm1', params: { vmentry_l1d_flush: 'always' } }] }, log: () => {} });
  });
  afterAll(async () => {
    await d?.stop();
  });

  test('lsmod prints as kmod’s lsmod', async () => {
    expect(await vac('--run-dir', dir, 'lsmod')).toEqual({
      status: 0,
      err: '',
      out: 'Module                  Size  Used by\nkvm1                       0  0\nkvm0                       0  0\nvac                        0  2 kvm0,kvm1\n',
    });
    expect(d.host().readParam('kvm1', 'vmentry_l1d_flush')).toBe('always');
  });

  test('modprobe with parameters, rmmod, and the tools’ error messages', async () => {
    expect(await vac('--run-dir', dir, 'modprobe', 'kvm2', 'vmentry_l1d_flush=never')).toMatchObject({ status: 0, err: '' });
    expect(d.host().readParam('kvm2', 'vmentry_l1d_flush')).toBe('never');
    expect((await vac('--run-dir', dir, 'modprobe', 'kvm2')).status).toBe(0); // loaded already: nothing to do
    expect(await vac('--run-dir', dir, 'modprobe', 'bogus')).toEqual({ status: 1, out: '', err: 'modprobe: FATAL: Module bogus not found in directory /lib/modules/vac\n' });
    const busy = await vac('--run-dir', dir, 'rmmod', 'vac');
    expect(busy.status).toBe(1);
    expect(busy.err).toMatch(/^rmmod: ERROR: Module vac is in use/);
    expect(await vac('--run-dir', dir, 'rmmod', 'kvm2')).toEqual({ status: 0, out: '', err: '' });
    expect(await vac('--run-dir', dir, 'rmmod', 'kvm2')).toEqual({ status: 1, out: '', err: 'rmmod: ERROR: Module kvm2 is not currently loaded\n' });
    expect((await vac('--run-dir', dir, 'insmod', 'kvm3', 'vpid=0')).status).toBe(0);
    expect(d.host().readParam('kvm3', 'vpid')).toMatch(/^(N|0)$/);
    expect((await vac('--run-dir', dir, 'rmmod', 'kvm3')).status).toBe(0);
  });

  test('ln -s, ls (as ls -l prints /dev), rm', async () => {
    expect(await vac('--run-dir', dir, 'ln', '-s', '/dev/kvm1', '/dev/kvm')).toEqual({ status: 0, out: '', err: '' });
    const ls = await vac('--run-dir', dir, 'ls', '/dev');
    expect(ls.out).toContain('lrwxrwxrwx 1 root root 9 kvm -> /dev/kvm1\n');
    expect(ls.out).toMatch(/^crw-rw---- 1 root kvm 10, \d+ kvm0$/m);
    expect(ls.out).toMatch(/^crw-rw---- 1 root kvm 10, \d+ kvm1$/m);
    expect(await vac('--run-dir', dir, 'ln', '-s', '/dev/kvm0', '/dev/kvm')).toEqual({ status: 1, out: '', err: "ln: failed to create symbolic link '/dev/kvm': File exists\n" });
    const noS = await vac('--run-dir', dir, 'ln', '/dev/kvm0', '/dev/kvm9');
    expect(noS.status).toBe(1);
    expect(noS.err).toContain("required option '-s, --symbolic' not specified");
    expect((await vac('--run-dir', dir, 'rm', '/dev/kvm')).status).toBe(0);
    expect((await vac('--run-dir', dir, 'ls', '/dev')).out).not.toContain('kvm ->');
  });

  test('cpu offline/online, status, trace (calls, events, a Chrome trace file)', async () => {
    expect((await vac('--run-dir', dir, 'cpu', '1', 'offline')).status).toBe(0);
    expect((await vac('--run-dir', dir, 'status')).out).toMatch(/^cpus: 2 \(1 online\), vendor: intel$/m);
    expect((await vac('--run-dir', dir, 'cpu', '1', 'online')).status).toBe(0);
    expect((await vac('--run-dir', dir, 'cpu', '1', 'sideways')).status).toBe(1);
    const out = join(dir, 'run.json');
    expect(await vac('--run-dir', dir, 'trace', '--out', out)).toEqual({ status: 0, out: `vac: wrote ${out}\n`, err: '' });
    const trace = JSON.parse(readFileSync(out, 'utf8')) as { traceEvents: unknown[] };
    expect(trace.traceEvents.length).toBeGreaterThan(0);
    expect((await vac('--run-dir', dir, 'trace', '--events')).out).toMatch(/^module:load /m);
  });

  test.skipIf(nativeSkipReason() !== undefined)('`vac run --dev /dev/kvm1 -- sh -c "lwn > out"`: the command preloads the library for the VMM and its children', async () => {
    const native = buildNative();
    const before = d.control.recorder.events().filter((e) => e.name === 'vm:create').length;
    const out = join(dir, 'lwn.out');
    const saved = process.env.VAC_CACHE_DIR;
    process.env.VAC_CACHE_DIR = native.dir;
    try {
      const r = await vac('--run-dir', dir, 'run', '--dev', '/dev/kvm1', '--', '/bin/sh', '-c', `exec ${native.lwn} > ${out}`);
      expect(r).toEqual({ status: 0, out: '', err: '' });
    } finally {
      if (saved === undefined) delete process.env.VAC_CACHE_DIR;
      else process.env.VAC_CACHE_DIR = saved;
    }
    expect(readFileSync(out, 'utf8')).toBe('4\nKVM_EXIT_HLT\n');
    const created = d.control.recorder.events().filter((e) => e.name === 'vm:create').slice(before);
    expect(created.map((e) => (e.payload as unknown as { module: string }).module)).toEqual(['kvm1']);
    // The VMM's exit status comes back as vac's.
    expect((await vac('--run-dir', dir, 'run', '--', '/bin/sh', '-c', 'exit 7')).status).toBe(7);
  });

  test('--help on every verb', async () => {
    for (const verb of ['start', 'stop', 'status', 'modprobe', 'insmod', 'rmmod', 'lsmod', 'ln', 'rm', 'ls', 'cpu', 'suspend', 'trace', 'run']) {
      const r = await vac(verb, '--help');
      expect([verb, r.status]).toEqual([verb, 0]);
      expect(r.out).toContain(`Usage: vac ${verb}`);
    }
  });
});

describe('vac without a bridge', () => {
  test('a control verb says the bridge is not running, and how to start it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vac-none-'));
    const r = await vac('--run-dir', dir, 'lsmod');
    expect(r.status).toBe(1);
    expect(r.err).toMatch(/^vac: the bridge is not running in .*; start it with `vac start`\n$/);
  });

  test('`vac start` runs a daemon in the background that `vac stop` stops', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vac-daemon-'));
    const bin = fileURLToPath(new URL('../bin/vac.mjs', import.meta.url));
    // Not spawnSync: the worker's event loop turns while the daemon starts (vitest's worker RPC times out after 60 s).
    const r = await runProcess(process.execPath, [bin, '--run-dir', dir, 'start', '--cpus', '3', '--vendor', 'amd', '--module', 'kvm0', '--module', 'kvm1 nested=0', '--link', '/dev/kvm1:/dev/kvm'], { timeout: 30_000 });
    try {
      expect(r.stderr).toBe('');
      expect(r.stdout).toMatch(/^vac: bridge started \(pid \d+\), sockets in /);
      expect((await vac('--run-dir', dir, 'status')).out).toBe('cpus: 3 (3 online), vendor: amd\nmodules: kvm1 kvm0 vac\nvmms: none\n');
      expect((await vac('--run-dir', dir, 'ls', '/dev/kvm')).out).toBe('lrwxrwxrwx 1 root root 9 kvm -> /dev/kvm1\n');
    } catch (e) {
      // A failed start (a timeout on a loaded machine) may still have left the daemon running: stop it.
      await vac('--run-dir', dir, 'stop');
      throw e;
    }
    expect(await vac('--run-dir', dir, 'stop')).toEqual({ status: 0, out: '', err: '' });
    const end = Date.now() + 5000;
    while (existsSync(join(dir, 'control.sock')) && Date.now() < end) await new Promise((res) => setTimeout(res, 20));
    expect(existsSync(join(dir, 'control.sock'))).toBe(false);
  }, 40_000);
});

describe.skipIf(findCompiler() === undefined)('vac run and static binaries', () => {
  test('a statically linked VMM is refused with the reason (LD_PRELOAD cannot reach it); a dynamic one is not static', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'vac-static-'));
    const src = join(dir, 'hello.c');
    const { writeFileSync } = await import('node:fs');
    writeFileSync(src, 'int main(void) { return 0; }\n');
    const dyn = join(dir, 'dyn');
    compileC([src], dyn, []);
    expect(isStaticElf(dyn)).toBe(false);
    expect(isStaticElf(src)).toBe(false); // not ELF
    const stat = join(dir, 'static');
    try {
      compileC([src], stat, ['-static']);
    } catch {
      return; // no static C library here (libc.a): nothing to refuse
    }
    expect(isStaticElf(stat)).toBe(true);
    const r = await vac('--run-dir', dir, 'run', '--', stat);
    expect(r.status).toBe(126);
    expect(r.err).toContain(`vac: ${stat} is statically linked: LD_PRELOAD cannot reach it`);
  });
});

describe('the preload library build', () => {
  test('no C compiler: an error naming what was tried and how to get one', () => {
    const env = { PATH: '/nonexistent', CC: 'no-such-cc', VAC_CACHE_DIR: mkdtempSync(join(tmpdir(), 'vac-cc-')) };
    expect(() => preloadLibrary(env)).toThrow(PreloadBuildError);
    expect(() => preloadLibrary(env)).toThrow('vac: no C compiler found (tried $CC (no-such-cc), cc, gcc, clang); install one (e.g. `apt-get install gcc`) or set CC');
  });
});
