/**
 * 9. Memslots: KVM_SET_USER_MEMORY_REGION filling a VM's slots, one 4 KiB page each in ascending and in descending
 * guest-physical order (a VMM may add them either way), timed per slot while the VM already holds 1,000 and
 * 32,000 slots — the last inserts of a full VM against the first. Linux keeps memslots in an rbtree
 * (`kvm_insert_gfn_node`): the cost per slot should not grow with the count (issue 14: within 2×, and the whole
 * 32,764 in under a second).
 *
 * The timed call adds slot n+1 and deletes it again (size 0), so the VM keeps n slots across the samples.
 */
import { KVM_CREATE_VM, KVM_SET_USER_MEMORY_REGION, kvm } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { check, fmtFactor, fmtNs, measure, row, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';
import { makeHost, openDev, vmmProcess } from '../lib/guest.js';

const GROUP = '9. Memslots';
const PAGE = 0x1000;

/** A VM holding `n` one-page slots (ids 0…n-1), laid out ascending or descending; returns a timed add+delete. */
function vmWith(n: number, descending: boolean): { readonly op: () => void; readonly fill: () => number } {
  const host = makeHost(intel(), 2);
  host.modprobe(kvm({ postfix: '0' }));
  const proc = vmmProcess(host, 65_536);
  const vm = proc.ioctl(openDev(proc, 'kvm0'), KVM_CREATE_VM, 0);
  const mem = proc.mmapAnonymous(32_764 * PAGE);
  // Slot i at page (descending ? 32,763 - i : i) of guest memory, backed by the same page of `mem`.
  const page = (i: number): number => (descending ? 32_763 - i : i);
  const add = (i: number, size: number): void => {
    proc.ioctl(vm, KVM_SET_USER_MEMORY_REGION, { slot: i, flags: 0, guest_phys_addr: page(i) * PAGE, memory_size: size, userspace_addr: mem.addr + page(i) * PAGE });
  };
  const fill = (): number => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < 32_764; i++) add(i, PAGE);
    return Number(process.hrtime.bigint() - t0);
  };
  if (n < 32_764) for (let i = 0; i < n; i++) add(i, PAGE);
  return {
    op: () => {
      add(n, PAGE);
      add(n, 0);
    },
    fill,
  };
}

/** Run the group. */
export function runMemslots(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const rows: Row[] = [];
  const targets: TargetCheck[] = [];
  for (const descending of [false, true]) {
    const order = descending ? 'descending' : 'ascending';
    const at = (n: number): Measurement => measure(b, `memslot ${order} ${n}`, vmWith(n, descending).op);
    const m1k = at(1000);
    const m32k = at(32_000);
    rows.push(row(GROUP, `KVM_SET_USER_MEMORY_REGION add + delete (${order} addresses)`, 'VM with 1,000 slots', m1k, undefined, { note: 'baseline' }));
    rows.push(row(GROUP, `KVM_SET_USER_MEMORY_REGION add + delete (${order} addresses)`, 'VM with 32,000 slots', m32k, { label: '1,000 slots', m: m1k }));
    targets.push(check(`memslot add + delete at 32,000 slots within 2× of 1,000 (${order})`, `${fmtNs(m32k.nsPerOp)} vs ${fmtNs(m1k.nsPerOp)} (${fmtFactor(m32k.nsPerOp / m1k.nsPerOp)})`, m32k.nsPerOp / m1k.nsPerOp, 2));
    const whole = vmWith(32_764, descending).fill();
    targets.push(check(`all 32,764 slots of a VM in under 1 s (${order})`, fmtNs(whole), whole, 1e9));
  }
  return { rows, targets };
}
