/**
 * The model-based tester's listeners that call back at random (issue 14): an `observe` command puts one listener on
 * one event of the host, with one behaviour, until the next `observe`. At each delivery (at most {@link BUDGET} per
 * command, so a listener that acts on the events its own calls make stops) the listener checks that it runs outside
 * any kernel operation and records what `checkInvariants` says, then:
 *
 * - `throw`: throws (the host must record a warning and go on);
 * - `probe`: nothing more;
 * - `refuse`: calls entry points that must be refused whatever the state (rmmod of an unknown module, cpuDown(0),
 *   close(-1), open of a missing node, spawn on a missing CPU, resume when not suspended), each with its errno and the
 *   host exactly as before;
 * - `spawnKill`: spawns a process and kills it;
 * - `openClose`: init opens /dev/kvm0 (when it is there) and closes it.
 *
 * The last two change the host and undo the change, inside whatever the model is checking: the model, which knows
 * nothing of them, must still agree with the host afterwards, and a failing command must still leave
 * `host.snapshot()` as it was. (Calls whose effects the model would have to predict — a module load, a KVM_RUN — are
 * the deterministic suite's, `reentrancy.test.ts`: there the expected state is the same call made right after.)
 *
 * @module
 */
import { KernelError, O_RDWR, checkInvariants, type EventName, type Host, type Violation } from '@vac/core';
import { firstDifference } from '@vac/test-support';

/** Every event of the host. */
export const OBSERVED_EVENTS: readonly EventName[] = [
  'warning', 'module:load', 'module:unload', 'device:register', 'device:unregister', 'process:spawn', 'process:exit',
  'fd:open', 'fd:close', 'cpu:online', 'cpu:offline', 'power', 'virt:enable', 'virt:disable', 'virt:usage',
  'l1d:flush', 'tlb:flush', 'vm:create', 'vm:destroy', 'vcpu:create', 'vcpu:load', 'vcpu:put', 'vcpu:exit', 'pmi:guest',
];

/** What an observer does at a delivery (`off` removes it). */
export const OBSERVER_ACTS = ['off', 'throw', 'probe', 'refuse', 'spawnKill', 'openClose'] as const;
export type ObserverAct = (typeof OBSERVER_ACTS)[number];

/** Deliveries an observer acts on per command. */
const BUDGET = 2;

/** The calls a listener makes that must be refused, with their errno, whatever the host's state. */
function refusals(host: Host): Array<[string, () => unknown, string]> {
  const out: Array<[string, () => unknown, string]> = [
    ['rmmod of an unknown module', () => host.rmmod('kvm-none'), 'ENOENT'],
    ['cpuDown(0)', () => host.cpuDown(0), 'EBUSY'],
    ['close(-1)', () => host.init.close(-1), 'EBADF'],
    ['open of a missing node', () => host.init.open('/dev/none', O_RDWR), 'ENOENT'],
    ['spawn on a missing CPU', () => host.spawn({ cpu: 99 }), 'EINVAL'],
  ];
  if (host.systemState !== 'suspended') out.push(['resume when not suspended', () => host.resume(), 'EINVAL']);
  return out;
}

/** The random observer of one world. */
export class Observer {
  readonly #host: Host;
  #off: (() => void) | undefined;
  #budget = 0;
  readonly #seen: Violation[] = [];
  readonly #problems: string[] = [];
  /** Deliveries acted on, by behaviour. */
  readonly calls: Record<string, number> = {};

  constructor(host: Host) {
    this.#host = host;
  }

  /** Listen to `event` with behaviour `act` from now on (replacing the previous observer). */
  set(event: EventName, act: ObserverAct): void {
    this.#off?.();
    this.#off = act === 'off' ? undefined : this.#host.events.on(event, () => this.#deliver(event, act));
  }

  /** A command begins: a fresh budget, nothing seen yet. */
  beginCommand(): void {
    this.#budget = BUDGET;
    this.#seen.length = 0;
    this.#problems.length = 0;
  }

  /** The violations the listener saw at its deliveries during this command. */
  seen(): readonly Violation[] {
    return this.#seen;
  }

  /** What went wrong in the listener's calls during this command (a refusal that was not, a host that changed). */
  problems(): readonly string[] {
    return this.#problems;
  }

  #deliver(event: EventName, act: ObserverAct): void {
    if (this.#budget <= 0) return;
    this.#budget--;
    this.calls[act] = (this.calls[act] ?? 0) + 1;
    const host = this.#host;
    if (host.events.inKernel) this.#problems.push(`a listener of ${event} ran inside a kernel operation`);
    this.#seen.push(...checkInvariants(host));
    switch (act) {
      case 'throw':
        throw new Error(`observer of ${event}`);
      case 'refuse':
        for (const [what, fn, code] of refusals(host)) {
          const before = host.snapshot();
          let got = 'ok';
          try {
            fn();
          } catch (e) {
            if (!(e instanceof KernelError)) throw e;
            got = e.code;
          }
          if (got !== code) this.#problems.push(`${what} from a listener of ${event}: ${got}, expected ${code}`);
          const d = firstDifference(before, host.snapshot());
          if (d !== undefined) this.#problems.push(`${what} from a listener of ${event} changed the host at ${d}`);
        }
        return;
      case 'spawnKill':
        host.spawn({ name: 'observer' }).kill();
        return;
      case 'openClose':
        try {
          const fd = host.init.open('/dev/kvm0', O_RDWR);
          host.init.close(fd);
        } catch (e) {
          if (!(e instanceof KernelError)) throw e;
        }
        return;
      case 'probe':
      case 'off':
        return;
    }
  }
}
