/**
 * The bridge daemon: one simulated host ({@link HostControl}), the bridge socket the VMMs' preload library
 * talks to, and the control socket the `vac` command talks to, side by side in one run directory.
 *
 * @module
 */
import { chmodSync, mkdirSync } from 'node:fs';
import { unlink } from 'node:fs/promises';
import { createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { HostControl, runControl, type ControlReply, type ControlRequest, type HostDescription } from './control.js';
import type { Host } from '@vac/core';
import type { SpinSettings } from './request-fifo.js';
import { BridgeServer } from './server.js';

/** The run directory of a bridge: `$VAC_RUN_DIR`, else `/run/vac` for root, else `$XDG_RUNTIME_DIR/vac` (or a temp dir). */
export function defaultRunDir(env: NodeJS.ProcessEnv = process.env): string {
  if (env.VAC_RUN_DIR) return env.VAC_RUN_DIR;
  if (process.getuid?.() === 0) return '/run/vac';
  return join(env.XDG_RUNTIME_DIR ?? tmpdir(), `vac-${process.getuid?.() ?? 'user'}`);
}

/** The sockets of a run directory. */
export function socketPaths(runDir: string): { readonly bridge: string; readonly control: string } {
  return { bridge: join(runDir, 'bridge.sock'), control: join(runDir, 'control.sock') };
}

/** A running bridge daemon. */
export interface Daemon {
  /** The host and its control. */
  readonly control: HostControl;
  /** The bridge server. */
  readonly bridge: BridgeServer;
  /** The simulated host (same as `control.host`). */
  host(): Host;
  /** The run directory. */
  readonly runDir: string;
  /** Resolves when the daemon has stopped (by {@link Daemon.stop} or a `stop` request). */
  readonly stopped: Promise<void>;
  /** Stop serving: VMMs still connected get EIO on their next call. */
  stop(): Promise<void>;
}

/** Options of {@link startDaemon}. */
export interface DaemonOptions {
  /** The host to build. */
  readonly host?: HostDescription;
  /** Where the sockets go (created if missing). */
  readonly runDir: string;
  /** Log lines (default: stderr). */
  readonly log?: (line: string) => void;
  /** The bridge's spin (`BridgeServerOptions.spin`; default from `VAC_NO_SPIN`, `VAC_SPIN_US`, `VAC_SPIN_ALWAYS`). */
  readonly spin?: SpinSettings;
}

/**
 * Start a bridge daemon in this process: VMMs run with the preload library (`vac run -- ./vmm`) reach its host
 * through `runDir`'s bridge socket, and the `vac` command through its control socket.
 *
 * @example
 * ```ts
 * import { mkdtempSync } from 'node:fs';
 * import { tmpdir } from 'node:os';
 * import { join } from 'node:path';
 * import { runControl, startDaemon } from '@vac/bridge';
 *
 * const daemon = await startDaemon({
 *   runDir: mkdtempSync(join(tmpdir(), 'vac-run-')),
 *   host: { cpus: 2, modules: [{ name: 'kvm0' }], symlinks: [['/dev/kvm0', '/dev/kvm']] },
 *   log: () => {},
 * });
 * console.log(runControl(daemon.control, { cmd: 'lsmod', args: [] }).output);
 * await daemon.stop();
 * ```
 */
export async function startDaemon(opts: DaemonOptions): Promise<Daemon> {
  const log = opts.log ?? ((l: string) => process.stderr.write(`${l}\n`));
  mkdirSync(opts.runDir, { recursive: true, mode: 0o755 });
  chmodSync(opts.runDir, 0o755); // VMMs of any user reach the bridge socket; the model's /dev permissions decide

  const paths = socketPaths(opts.runDir);
  const control = new HostControl(opts.host);
  const bridge = new BridgeServer({ host: control.host, socketPath: paths.bridge, log, ...(opts.spin === undefined ? {} : { spin: opts.spin }) });
  control.attach(bridge);
  await bridge.listen();
  const conns = new Set<Socket>();
  let resolveStopped: () => void = () => {};
  const stopped = new Promise<void>((r) => {
    resolveStopped = r;
  });
  let stopping: Promise<void> | undefined;
  const stop = (): Promise<void> => {
    stopping ??= (async () => {
      for (const c of conns) c.destroy();
      await new Promise<void>((r) => server.close(() => r()));
      await bridge.close();
      control.recorder.stop();
      await unlink(paths.control).catch(() => {});
      await unlink(paths.bridge).catch(() => {});
      resolveStopped();
    })();
    return stopping;
  };
  const server: Server = createServer((s) => {
    conns.add(s);
    s.on('close', () => conns.delete(s));
    s.on('error', () => {});
    let buf = '';
    s.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      const nl = buf.indexOf('\n');
      if (nl < 0) return;
      let req: ControlRequest;
      try {
        const x = JSON.parse(buf.slice(0, nl)) as Partial<ControlRequest>;
        if (typeof x.cmd !== 'string' || !Array.isArray(x.args) || !x.args.every((w) => typeof w === 'string')) throw new Error('expected {cmd, args}');
        req = { cmd: x.cmd, args: x.args };
      } catch (e) {
        s.end(JSON.stringify({ ok: false, output: '', error: `vac: bad control request: ${String(e)}`, status: 2 } satisfies ControlReply));
        return;
      }
      if (req.cmd === 'stop') {
        s.end(JSON.stringify({ ok: true, output: '', status: 0 } satisfies ControlReply), () => void stop());
        return;
      }
      s.end(JSON.stringify(runControl(control, req)));
    });
  });
  await unlink(paths.control).catch(() => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(paths.control, () => resolve());
  });
  return { control, bridge, host: () => control.host, runDir: opts.runDir, stopped, stop };
}
