/** A minimal QMP client (QEMU's JSON monitor on a Unix socket) for the migration test. */
import { createConnection, type Socket } from 'node:net';

/** One QMP connection, capabilities negotiated. */
export interface Qmp {
  /** Run `execute` with `args`; resolves with its `return`, rejects with its `error`. */
  run(execute: string, args?: Record<string, unknown>): Promise<unknown>;
  close(): void;
}

/** Connect to QEMU's `-qmp unix:PATH,server,nowait`, retrying until it listens (up to `ms`). */
export async function connectQmp(path: string, ms = 60_000): Promise<Qmp> {
  const end = Date.now() + ms;
  let socket: Socket | undefined;
  while (socket === undefined) {
    socket = await new Promise<Socket | undefined>((resolve) => {
      const s = createConnection(path);
      s.once('connect', () => resolve(s));
      s.once('error', () => resolve(undefined));
    });
    if (socket === undefined) {
      if (Date.now() > end) throw new Error(`QMP socket ${path} never answered`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }
  const s = socket;
  let buf = '';
  const waiting: Array<(msg: Record<string, unknown>) => void> = [];
  const queued: Array<Record<string, unknown>> = [];
  s.on('data', (d: Buffer) => {
    buf += d.toString();
    for (let i = buf.indexOf('\n'); i >= 0; i = buf.indexOf('\n')) {
      const line = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (line === '') continue;
      const msg = JSON.parse(line) as Record<string, unknown>;
      if ('event' in msg) continue;
      const w = waiting.shift();
      if (w === undefined) queued.push(msg);
      else w(msg);
    }
  });
  const next = (): Promise<Record<string, unknown>> =>
    new Promise((resolve) => {
      const m = queued.shift();
      if (m === undefined) waiting.push(resolve);
      else resolve(m);
    });
  await next(); // the greeting
  const run = async (execute: string, args?: Record<string, unknown>): Promise<unknown> => {
    const reply = next();
    s.write(`${JSON.stringify(args === undefined ? { execute } : { execute, arguments: args })}\n`);
    const msg = await reply;
    if ('error' in msg) throw new Error(`QMP ${execute}: ${JSON.stringify(msg.error)}`);
    return msg.return;
  };
  await run('qmp_capabilities');
  return { run, close: () => s.destroy() };
}
