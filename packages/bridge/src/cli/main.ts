/**
 * The `vac` command: start and stop a bridge host, drive it as Linux's tools would (`vac modprobe kvm1`,
 * `vac lsmod`, `vac ln -s /dev/kvm1 /dev/kvm`, …), and run real VMM binaries against it (`vac run -- qemu…`).
 *
 * @module
 */
import { spawn } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Command, Option } from 'commander';
import { controlCall, parseHostDescription, parseModuleSpec, type BootModule, type ControlReply, type HostDescription } from '../control.js';
import { defaultRunDir, socketPaths, startDaemon } from '../daemon.js';
import { isStaticElf, whichProgram } from '../elf.js';
import { PreloadBuildError, preloadLibrary } from '../preload.js';

/** Where the command writes. */
export interface CliIo {
  /** Standard output. */
  readonly out: (text: string) => void;
  /** Standard error. */
  readonly err: (text: string) => void;
}

const stdio: CliIo = { out: (t) => process.stdout.write(t), err: (t) => process.stderr.write(t) };

function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

async function control(runDir: string, cmd: string, args: readonly string[], io: CliIo): Promise<number> {
  let reply: ControlReply;
  try {
    reply = await controlCall(socketPaths(runDir).control, { cmd, args });
  } catch (e) {
    io.err(`vac: the bridge is not running in ${runDir} (${e instanceof Error ? e.message : String(e)}); start it with \`vac start\`\n`);
    return 1;
  }
  if (reply.output) io.out(reply.output);
  if (reply.error) io.err(`${reply.error}\n`);
  return reply.status;
}

/** Build the host description of `vac start`'s flags (a `--config` file first, flags on top). */
function describeHost(opts: { config?: string; cpus?: string; vendor?: string; module: string[]; link: string[]; runLimit?: string }): HostDescription {
  const base = opts.config === undefined ? {} : parseHostDescription(JSON.parse(readFileSync(opts.config, 'utf8')) as unknown);
  const modules: BootModule[] | undefined = opts.module.length > 0 ? opts.module.map(parseModuleSpec) : base.modules?.slice();
  const symlinks = [...(base.symlinks ?? [])];
  for (const l of opts.link) {
    const i = l.indexOf(':');
    if (i < 0) throw new Error(`--link must be TARGET:PATH, e.g. /dev/kvm1:/dev/kvm (got ${l})`);
    symlinks.push([l.slice(0, i), l.slice(i + 1)]);
  }
  const cpus = opts.cpus === undefined ? base.cpus : Number(opts.cpus);
  const vendor = (opts.vendor ?? base.vendor) as 'intel' | 'amd' | undefined;
  const runLimit = opts.runLimit === undefined ? base.runLimit : Number(opts.runLimit);
  return parseHostDescription({
    ...(runLimit === undefined ? {} : { runLimit }),
    ...(cpus === undefined ? {} : { cpus }),
    ...(vendor === undefined ? {} : { vendor }),
    ...(modules === undefined ? {} : { modules }),
    symlinks,
  });
}

/** Wait until the control socket answers (a daemon just started). */
async function waitReady(runDir: string, ms: number): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    try {
      const r = await controlCall(socketPaths(runDir).control, { cmd: 'status', args: [] }, 1000);
      if (r.ok) return true;
    } catch {
      // not yet
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

/**
 * Run the `vac` command with `argv` (without `node` and the script).
 * @returns the exit status
 */
export async function main(argv: readonly string[], io: CliIo = stdio): Promise<number> {
  let status = 0;
  const program = new Command('vac')
    .description('Run unmodified VMMs against a simulated multi-KVM host, and drive that host like Linux.')
    .option('--run-dir <dir>', 'where the bridge keeps its sockets (default: $VAC_RUN_DIR, /run/vac for root, else $XDG_RUNTIME_DIR/vac-UID)')
    .exitOverride()
    .configureOutput({ writeOut: (t) => io.out(t), writeErr: (t) => io.err(t) })
    .showHelpAfterError()
    .enablePositionalOptions();
  const runDir = (): string => (program.opts() as { runDir?: string }).runDir ?? defaultRunDir();
  const simple = (name: string, description: string, args: string, cmd = name): void => {
    program
      .command(`${name}${args ? ` ${args}` : ''}`)
      .description(description)
      .action(async (...words: unknown[]) => {
        const list = words.slice(0, -2).flatMap((w) => (Array.isArray(w) ? (w as string[]) : w === undefined ? [] : [String(w)]));
        status = await control(runDir(), cmd, list, io);
      });
  };

  program
    .command('start')
    .alias('host')
    .description('start a bridge host (in the background unless --foreground)')
    .option('--cpus <n>', 'logical CPUs (default 4)')
    .addOption(new Option('--vendor <vendor>', 'CPU vendor (default intel)').choices(['intel', 'amd']))
    .option('--module <spec>', 'a module to load at boot, e.g. "kvm1 vmentry_l1d_flush=always" (repeat; default kvm0)', collect, [])
    .option('--link <target:path>', 'a /dev symlink to make at boot, e.g. /dev/kvm0:/dev/kvm (repeat)', collect, [])
    .option('--run-limit <n>', 'guest instructions one KVM_RUN may run before EINTR (default 10000000; the bridge serves one call at a time)')
    .option('--config <file>', 'a JSON host description {cpus, vendor, modules, symlinks, runLimit}')
    .option('--foreground', 'serve in this process until stopped')
    .action(async (opts: { config?: string; cpus?: string; vendor?: string; module: string[]; link: string[]; runLimit?: string; foreground?: boolean }) => {
      const dir = runDir();
      const desc = describeHost(opts);
      if (opts.foreground) {
        const d = await startDaemon({ host: desc, runDir: dir });
        writeFileSync(join(dir, 'pid'), `${process.pid}\n`);
        io.out(`vac: bridge serving ${socketPaths(dir).bridge} (pid ${process.pid})\n`);
        const stop = (): void => void d.stop();
        process.once('SIGTERM', stop);
        process.once('SIGINT', stop);
        await d.stopped;
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        return;
      }
      if (await waitReady(dir, 1)) {
        io.err(`vac: a bridge is already running in ${dir}\n`);
        status = 1;
        return;
      }
      const logPath = join(dir, 'bridge.log');
      const { mkdirSync } = await import('node:fs');
      mkdirSync(dir, { recursive: true });
      const log = openSync(logPath, 'a');
      const args = [...process.execArgv, process.argv[1] ?? '', '--run-dir', dir, 'start', '--foreground', '--config', '-'];
      // The description travels as a file next to the sockets, so the child builds exactly this host.
      const configPath = join(dir, 'host.json');
      writeFileSync(configPath, JSON.stringify(desc));
      args[args.length - 1] = configPath;
      const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', log, log] });
      child.unref();
      closeSync(log);
      if (!(await waitReady(dir, 15_000))) {
        io.err(`vac: the bridge did not start; see ${logPath}\n`);
        status = 1;
        return;
      }
      io.out(`vac: bridge started (pid ${child.pid ?? '?'}), sockets in ${dir}\n`);
    });

  program
    .command('stop')
    .description('stop the bridge host (VMMs still running get EIO on their next KVM call)')
    .action(async () => {
      status = await control(runDir(), 'stop', [], io);
    });

  simple('status', 'CPUs, modules and VMM processes of the bridge host', '');
  simple('modprobe', 'load a module and what it needs (kvm, kvm0, kvm1, …, kvmgt) with parameters key=value', '<module> [params...]');
  simple('insmod', 'load one module (no dependencies) with parameters key=value', '<module> [params...]');
  simple('rmmod', 'unload modules', '<modules...>');
  simple('lsmod', 'list loaded modules as lsmod prints them', '');
  simple('rm', 'remove a /dev symlink', '<path>');
  simple('ls', 'list /dev (or one path) as ls -l prints it', '[path]');
  simple('cpu', 'take a CPU online or offline', '<n> <state>');
  simple('suspend', 'suspend and resume the host', '');

  program
    .command('ln')
    .description('make a /dev symlink: vac ln -s /dev/kvm1 /dev/kvm')
    .requiredOption('-s, --symbolic', 'make a symbolic link (the only kind /dev has)')
    .argument('<target>')
    .argument('<path>')
    .action(async (target: string, path: string) => {
      status = await control(runDir(), 'ln', [target, path], io);
    });

  program
    .command('trace')
    .description('the forwarded calls (default), the host events, or a Chrome trace / SVG timeline of the host')
    .option('--events', 'print the host events instead of the forwarded calls')
    .option('--out <file>', 'write the Chrome trace (Perfetto JSON) of the host to a file')
    .option('--svg <file>', 'write the SVG timeline of the host to a file')
    .action(async (opts: { events?: boolean; out?: string; svg?: string }) => {
      const dir = runDir();
      const write = async (what: string, file: string): Promise<boolean> => {
        const r = await controlCall(socketPaths(dir).control, { cmd: 'trace', args: [what] }).catch((e: unknown) => {
          io.err(`vac: the bridge is not running in ${dir} (${e instanceof Error ? e.message : String(e)})\n`);
          return undefined;
        });
        if (r === undefined || !r.ok) return false;
        writeFileSync(file, r.output);
        io.out(`vac: wrote ${file}\n`);
        return true;
      };
      if (opts.out !== undefined && !(await write('chrome', opts.out))) status = 1;
      if (opts.svg !== undefined && !(await write('svg', opts.svg))) status = 1;
      if (opts.out === undefined && opts.svg === undefined) status = await control(dir, 'trace', [opts.events ? 'events' : 'calls'], io);
    });

  program
    .command('run')
    .description('run a VMM binary with the preload library, against the bridge: vac run [--dev /dev/kvm1] -- qemu-system-x86_64 …')
    .option('--dev <path>', "the device this VMM's /dev/kvm opens (default: what /dev/kvm is in the bridge host)")
    .argument('<vmm>')
    .argument('[args...]')
    .passThroughOptions()
    .action(async (vmm: string, args: string[], opts: { dev?: string }) => {
      const program = whichProgram(vmm);
      if (program !== undefined && isStaticElf(program)) {
        io.err(
          `vac: ${program} is statically linked: LD_PRELOAD cannot reach it, so it would use the machine's real /dev/kvm ` +
            "instead of the bridge (Firecracker's release binaries are static; build the VMM dynamically linked to run it under vac)\n",
        );
        status = 126;
        return;
      }
      let lib: string;
      try {
        lib = preloadLibrary();
      } catch (e) {
        io.err(`${e instanceof PreloadBuildError ? e.message : String(e)}\n`);
        status = 127;
        return;
      }
      const dir = runDir();
      if (!existsSync(socketPaths(dir).bridge)) io.err(`vac: warning: no bridge socket in ${dir}; the VMM's open of /dev/kvm will fail (start one with \`vac start\`)\n`);
      const env: NodeJS.ProcessEnv = {
        ...process.env,
        LD_PRELOAD: [lib, process.env.LD_PRELOAD].filter(Boolean).join(':'),
        VAC_SOCKET: socketPaths(dir).bridge,
        ...(opts.dev === undefined ? {} : { VAC_DEV_KVM: opts.dev }),
      };
      status = await new Promise<number>((resolve) => {
        const child = spawn(vmm, args, { env, stdio: 'inherit' });
        child.on('error', (e) => {
          io.err(`vac: cannot run ${vmm}: ${e.message}\n`);
          resolve(127);
        });
        child.on('exit', (code, signal) => resolve(code ?? 128 + (signal === null ? 0 : signalNumber(signal))));
      });
    });

  try {
    await program.parseAsync([...argv], { from: 'user' });
  } catch (e) {
    const code = (e as { exitCode?: number }).exitCode;
    if (typeof code === 'number') return code;
    io.err(`vac: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
  return status;
}

function signalNumber(signal: NodeJS.Signals): number {
  const table: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGABRT: 6, SIGKILL: 9, SIGSEGV: 11, SIGPIPE: 13, SIGTERM: 15 };
  return table[signal] ?? 0;
}

// Run as a program (bin/vac.mjs, or tsx src/cli/main.ts).
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`vac: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
