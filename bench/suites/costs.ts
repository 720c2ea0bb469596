/**
 * 7. Costs that grew too fast (issue 14): each measured against itself at a smaller size in the same run, so the
 * ratio says how the cost grows, whatever the machine.
 *
 * - `checkInvariants(host)`, per vCPU: 1 module with V vCPUs (the baseline), 64 modules sharing the same V vCPUs
 *   (a check that went over every module's vCPUs once per module grew with modules × vCPUs), and 1 module with
 *   8 V vCPUs. Linear means both ratios stay near 1.
 * - A posted-interrupt wakeup on a CPU where one vCPU is blocked (halted with an in-kernel irqchip, re-blocked
 *   before each wakeup, untimed), with 1,024 vCPUs on the host (the baseline) and with 131,072: Linux walks only
 *   that CPU's wakeup list (`wakeup_vcpus_on_cpu`), so the ratio should stay near 1.
 */
import { checkInvariants, type Host, type Process } from '@vac/core';
import { KVM_CREATE_IRQCHIP, KVM_CREATE_VCPU, KVM_CREATE_VM, KVM_RUN, kvm, vcpuOf } from '@vac/kvm';
import { intel } from '@vac/vmx';
import { check, fmtFactor, fmtNs, measure, row, type Budget, type Measurement, type Row, type TargetCheck } from '../lib/harness.js';
import { addMemory, makeHost, openDev, resetVcpu, vmmProcess } from '../lib/guest.js';

const GROUP = '7. Costs that grew too fast';

/** `KVM_MAX_VCPUS`: vCPUs per VM. */
const PER_VM = 1024;

/** A host of 64 CPUs with `modules` KVM modules holding `vcpus` vCPUs between them (VMs of up to 1,024). */
function populated(modules: number, vcpus: number): Host {
  const host = makeHost(intel(), 64);
  const proc = vmmProcess(host, 1 << 20);
  const perModule = vcpus / modules;
  for (let m = 0; m < modules; m++) {
    host.modprobe(kvm({ postfix: String(m) }));
    const sys = openDev(proc, `kvm${m}`);
    for (let left = perModule; left > 0; left -= PER_VM) {
      const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
      for (let id = 0; id < Math.min(PER_VM, left); id++) proc.ioctl(vm, KVM_CREATE_VCPU, id);
    }
  }
  return host;
}

function timeCheck(b: Budget, name: string, host: Host): Measurement {
  return measure(
    b,
    name,
    () => {
      const v = checkInvariants(host);
      if (v.length !== 0) throw new Error(`${name}: ${JSON.stringify(v[0])}`);
    },
    { time: b.quick ? 1 : 400, iterations: b.quick ? 2 : 10, warmupTime: b.quick ? 1 : 100, warmupIterations: b.quick ? 1 : 3 },
  );
}

/** A HLT loop: `L: hlt; jmp L`. */
const HLT_LOOP = [0xf4, 0xeb, 0xfd];

/**
 * A host of 64 CPUs with `total` vCPUs on kvm0 (VMs with an in-kernel irqchip), one of them a thread inside
 * KVM_RUN on CPU 5 running a HLT loop: after one tick it is blocked on CPU 5's wakeup list.
 */
function withBlockedVcpu(total: number): { host: Host; block: () => void } {
  const host = makeHost(intel(), 64);
  host.modprobe(kvm({ postfix: '0' }));
  const proc: Process = vmmProcess(host, 1 << 20);
  const sys = openDev(proc, 'kvm0');
  let runner = -1;
  for (let left = total; left > 0; left -= PER_VM) {
    const vm = proc.ioctl(sys, KVM_CREATE_VM, 0);
    proc.ioctl(vm, KVM_CREATE_IRQCHIP, 0);
    if (runner < 0) addMemory(proc, vm, HLT_LOOP);
    for (let id = 0; id < Math.min(PER_VM, left); id++) {
      const fd = proc.ioctl(vm, KVM_CREATE_VCPU, id);
      if (runner < 0) {
        resetVcpu(proc, fd);
        runner = fd;
      }
    }
  }
  const fd = runner;
  host.scheduler.spawn(proc, { cpu: 5, name: 'halter' }, function* (t) {
    yield* t.ioctl(fd, KVM_RUN, 0);
  });
  const v = vcpuOf(proc, fd);
  const block = (): void => {
    host.scheduler.tick();
    if (v.blockedOn !== 5) throw new Error('the halting vCPU did not block on CPU 5');
  };
  block();
  return { host, block };
}

/** Run the group. */
export function runCosts(b: Budget): { rows: Row[]; targets: TargetCheck[] } {
  const rows: Row[] = [];
  const targets: TargetCheck[] = [];

  // ---- checkInvariants ----
  const V = b.quick ? 1024 : 8192;
  const mods = b.quick ? 16 : 64;
  const perVcpu = (m: Measurement, n: number): Measurement => ({ ...m, nsPerOp: m.nsPerOp / n, meanNsPerOp: m.meanNsPerOp / n });
  const one = perVcpu(timeCheck(b, 'check 1 module', populated(1, V)), V);
  const base = { label: `checkInvariants, 1 module × ${V.toLocaleString('en-US')} vCPUs, per vCPU`, m: one };
  rows.push(row(GROUP, 'checkInvariants(host), per vCPU', `1 module, ${V.toLocaleString('en-US')} vCPUs`, one, undefined, { unit: 'vCPU', note: `whole check: ${fmtNs(one.nsPerOp * V)}` }));
  const many = perVcpu(timeCheck(b, 'check many modules', populated(mods, V)), V);
  rows.push(row(GROUP, 'checkInvariants(host), per vCPU', `${mods} modules, ${V.toLocaleString('en-US')} vCPUs`, many, base, { unit: 'vCPU', note: `whole check: ${fmtNs(many.nsPerOp * V)}` }));
  const bigV = 8 * V;
  const big = perVcpu(timeCheck(b, 'check 8x vCPUs', populated(1, bigV)), bigV);
  rows.push(row(GROUP, 'checkInvariants(host), per vCPU', `1 module, ${bigV.toLocaleString('en-US')} vCPUs`, big, base, { unit: 'vCPU', note: `whole check: ${fmtNs(big.nsPerOp * bigV)}` }));
  targets.push(check(`checkInvariants linear: ${mods} modules vs 1 over the same vCPUs, per vCPU, ≤ 2×`, `${fmtFactor(many.nsPerOp / one.nsPerOp)} (${fmtNs(many.nsPerOp)} vs ${fmtNs(one.nsPerOp)} per vCPU)`, many.nsPerOp / one.nsPerOp, 2));
  targets.push(check(`checkInvariants linear: 8× the vCPUs, per vCPU, ≤ 2×`, `${fmtFactor(big.nsPerOp / one.nsPerOp)} (${fmtNs(big.nsPerOp)} vs ${fmtNs(one.nsPerOp)} per vCPU)`, big.nsPerOp / one.nsPerOp, 2));

  // ---- posted-interrupt wakeup ----
  let pBase: { label: string; m: Measurement } | undefined;
  let first: Measurement | undefined;
  let last: Measurement | undefined;
  const sizes = b.quick ? [1024, 8192] : [1024, 131072];
  for (const total of sizes) {
    const { host, block } = withBlockedVcpu(total);
    const m = measure(
      b,
      `pi wakeup @${total}`,
      () => {
        const woken = host.raisePostedIntrWakeup(5);
        if (woken.length !== 1) throw new Error(`the wakeup woke ${woken.length} vCPUs`);
      },
      { beforeEach: block, time: b.quick ? 1 : 300, iterations: b.quick ? 3 : 200, warmupTime: b.quick ? 1 : 50, warmupIterations: b.quick ? 1 : 20 },
    );
    rows.push(row(GROUP, 'posted-interrupt wakeup, 1 vCPU blocked on the CPU', `${total.toLocaleString('en-US')} vCPUs on the host`, m, pBase, { note: 'raisePostedIntrWakeup(5); re-blocked by one tick, untimed' }));
    pBase ??= { label: `posted-interrupt wakeup with ${total.toLocaleString('en-US')} vCPUs`, m };
    first ??= m;
    last = m;
  }
  if (first !== undefined && last !== undefined) {
    targets.push(
      check(
        `posted-interrupt wakeup proportional to the vCPUs blocked on the CPU: ${sizes[1]?.toLocaleString('en-US')} vs ${sizes[0]?.toLocaleString('en-US')} vCPUs on the host, ≤ 2×`,
        `${fmtFactor(last.nsPerOp / first.nsPerOp)} (${fmtNs(last.nsPerOp)} vs ${fmtNs(first.nsPerOp)})`,
        last.nsPerOp / first.nsPerOp,
        2,
      ),
    );
  }
  return { rows, targets };
}
