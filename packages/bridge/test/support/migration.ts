/**
 * QEMU's live migration as the migration test and `bench:bridge` drive it over QMP (the same steps through the
 * bridge and on the real /dev/kvm, so their downtimes compare).
 */
import { until } from './native.js';
import type { Qmp } from './qmp.js';

/** What `query-migrate` answers (the fields used here). */
export interface MigrationInfo {
  readonly status?: string;
  /** Milliseconds the guest was stopped (QEMU's own measure, from stop to the destination's start). */
  readonly downtime?: number;
  readonly 'total-time'?: number;
  readonly ram?: Readonly<Record<string, number>>;
}

/** QEMU's `max-bandwidth` for these migrations, bytes/s: 1 MiB/s, so each pass lasts several guest ticks. */
export const MIGRATION_BANDWIDTH = 1 << 20;

/** QEMU's default `downtime-limit` (ms), restored once pre-copy has made its passes. */
const DOWNTIME_LIMIT_MS = 300;

/**
 * Migrate the source QEMU of `qmp` to `uri` with at least two live pre-copy passes, and return `query-migrate`'s
 * final answer. A 1 ms downtime limit keeps QEMU from stopping the guest while any page is dirty; once the
 * dirty bitmap has been synced after the second pass (`dirty-sync-count` 3: setup, pass 1, pass 2) the limit
 * goes back to QEMU's default (300 ms), as an operator raises it (libvirt's `migrate-setmaxdowntime`), and the
 * migration converges: the guest stops, the last dirty pages go, the destination starts.
 */
export async function migrateWithPrecopy(qmp: Qmp, uri: string, timeoutMs = 120_000): Promise<MigrationInfo> {
  await qmp.run('migrate-set-parameters', { 'max-bandwidth': MIGRATION_BANDWIDTH, 'downtime-limit': 1 });
  await qmp.run('migrate', { uri });
  let info: MigrationInfo = {};
  const poll = async (): Promise<void> => {
    info = (await qmp.run('query-migrate')) as MigrationInfo;
  };
  const ended = (): boolean => info.status === 'completed' || info.status === 'failed';
  await until(() => ended() || (info.ram?.['dirty-sync-count'] ?? 0) >= 3, 'two pre-copy passes', timeoutMs, poll);
  if (!ended()) await qmp.run('migrate-set-parameters', { 'downtime-limit': DOWNTIME_LIMIT_MS });
  await until(ended, 'the migration to end', timeoutMs, poll);
  return info;
}
