import * as K from '@vac/kvm';
import { intel } from '@vac/vmx';
import { amd } from '@vac/svm';
import { OUT_LOOP, makeHost, makeVm, openDev, vmmProcess } from './lib/guest.js';
const hw = process.argv[2] === 'amd' ? amd() : intel();
const host = makeHost(hw, 2);
host.modprobe(K.kvm({ postfix: '0' }));
const proc = vmmProcess(host);
const sys = openDev(proc, 'kvm0');
const vm = makeVm(proc, sys, OUT_LOOP, 1);
const fd = (vm.vcpus[0] as { fd: number }).fd;
proc.ioctl(fd, K.KVM_RUN, 0);
const list = K.msrIndexList(proc, sys).filter((m) => m !== 0x4b564d06);
const n = list.length;
const b = new Uint8Array(8 + 16 * n);
const dv = new DataView(b.buffer);
dv.setUint32(0, n, true);
list.forEach((m, i) => dv.setUint32(8 + 16 * i, m, true));
const cpu = (): number => { const u = process.cpuUsage(); return (u.user + u.system) * 1000; };
const rounds = Number(process.argv[3] ?? 20000);
for (let r = 0; r < 6; r++) {
  let t = cpu();
  for (let i = 0; i < rounds; i++) if (proc.ioctl(fd, K.KVM_GET_MSRS, b) !== n) throw new Error('get');
  const g = (cpu() - t) / rounds;
  t = cpu();
  for (let i = 0; i < rounds; i++) if (proc.ioctl(fd, K.KVM_SET_MSRS, b) !== n) throw new Error('set');
  const s = (cpu() - t) / rounds;
  console.log(`${n} MSRs: GET ${(g / 1000).toFixed(2)} µs (${(g / n).toFixed(0)} ns/MSR), SET ${(s / 1000).toFixed(2)} µs (${(s / n).toFixed(0)} ns/MSR)`);
}
