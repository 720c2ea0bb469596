/**
 * The remaining vCPU ioctls a VMM sets up a vCPU with (arch/x86/kvm/x86.c `kvm_arch_vcpu_ioctl`,
 * virt/kvm/kvm_main.c `kvm_vcpu_ioctl`): the TSC frequency, machine-check setup, kvmclock pause, the signal mask
 * of KVM_RUN, the vAPIC page, TPR-access reporting and per-vCPU capabilities.
 *
 * @module
 */
import { KernelError } from '@vac/core';
import {
  KVM_CAP_ENFORCE_PV_FEATURE_CPUID,
  KVM_ENABLE_CAP,
  KVM_GET_STATS_FD,
  KVM_GET_TSC_KHZ,
  KVM_KVMCLOCK_CTRL,
  KVM_SET_SIGNAL_MASK,
  KVM_SET_TSC_KHZ,
  KVM_SET_VAPIC_ADDR,
  KVM_TPR_ACCESS_REPORTING,
  KVM_X86_SETUP_MCE,
} from '../abi/constants.js';
import { KVM_MAX_MCE_BANKS } from '../abi/constants-x86.js';
import { copyFromUser, copyToUser, userAccess } from '../abi/codec.js';
import { KVM_ENABLE_CAP_CODEC } from '../abi/structs.js';
import { KVM_SIGNAL_MASK_CODEC, KVM_TPR_ACCESS_CTL_CODEC, KVM_VAPIC_ADDR_CODEC, U64_POINTER_CODEC } from '../abi/structs-x86.js';
import { valueArg, type IoctlDef } from './ioctl-table.js';
import { openStatsFd, statsFops } from './stats.js';
import { vcpuArch } from './vcpu-arch.js';
import { setTscKhz } from './vcpu-tsc.js';
import { VcpuRequest, makeRequest } from './vcpu-requests.js';
import type { Vcpu } from './vcpu.js';
import { x86Caps } from './x86-caps.js';
import { vendorArch } from './vendor-arch.js';

const MCG_CTL_P = 1n << 8n;
const MCG_CMCI_P = 1n << 10n;
/** The misc vCPU ioctls. */
export const VCPU_MISC_IOCTLS: readonly IoctlDef<Vcpu>[] = [
  {
    name: 'KVM_SET_TSC_KHZ',
    request: KVM_SET_TSC_KHZ,
    arg: { dir: 'value' },
    run(v, arg) {
      const op = 'KVM_SET_TSC_KHZ';
      const caps = x86Caps(v.vm.instance);
      let khz = valueArg(arg, op) % 2 ** 32; // (u32)arg
      if (vendorArch(v.vm.instance).tscControl && khz >= caps.maxGuestTscKhz) throw new KernelError('EINVAL', op, `${khz} kHz is not below the maximum`);
      if (khz === 0) khz = caps.tscKhz;
      if (!setTscKhz(v, khz)) throw new KernelError('EINVAL', op, `${khz} kHz is below the host's ${caps.tscKhz} kHz and the CPU cannot scale the TSC`);
      return 0;
    },
  },
  {
    name: 'KVM_GET_TSC_KHZ',
    request: KVM_GET_TSC_KHZ,
    arg: { dir: 'none' },
    run: (v) => vcpuArch(v).tscKhz,
  },
  {
    name: 'KVM_X86_SETUP_MCE',
    request: KVM_X86_SETUP_MCE,
    arg: { dir: 'in', codec: U64_POINTER_CODEC },
    run(v, arg) {
      // kvm_vcpu_ioctl_x86_setup_mce
      const op = 'KVM_X86_SETUP_MCE';
      const [mcgCap = 0n] = copyFromUser(U64_POINTER_CODEC, arg, op);
      const banks = Number(mcgCap & 0xffn);
      if (banks === 0 || banks > KVM_MAX_MCE_BANKS) throw new KernelError('EINVAL', op, `${banks} banks (1 … ${KVM_MAX_MCE_BANKS})`);
      if ((mcgCap & ~(x86Caps(v.vm.instance).supportedMceCap | 0xffn | 0xff0000n)) !== 0n) throw new KernelError('EINVAL', op, `unsupported MCG_CAP bits in 0x${mcgCap.toString(16)}`);
      const a = vcpuArch(v);
      a.mcgCap = mcgCap;
      if ((mcgCap & MCG_CTL_P) !== 0n) a.mcgCtl = 0xffff_ffff_ffff_ffffn;
      const cmci = (mcgCap & MCG_CMCI_P) !== 0n;
      for (let b = 0; b < banks; b++) {
        a.mceBanks.setWords(b * 4, 0xffff_ffff, 0xffff_ffff); // IA32_MCi_CTL: all ones
        if (cmci) a.mciCtl2.setWords(b, 0, 0);
      }
      // kvm_apic_after_set_mcg_cap: MCG_CAP.CMCI_P adds the CMCI LVT of an in-kernel LAPIC.
      v.intr?.chip?.lapic.setMcgCap(mcgCap);
      return 0;
    },
  },
  {
    name: 'KVM_KVMCLOCK_CTRL',
    request: KVM_KVMCLOCK_CTRL,
    arg: { dir: 'none' },
    run(v) {
      // kvm_set_guest_paused: only for a guest that enabled kvmclock.
      const a = vcpuArch(v);
      if (!a.pvclock.active) throw new KernelError('EINVAL', 'KVM_KVMCLOCK_CTRL', 'the guest has not enabled kvmclock (MSR_KVM_SYSTEM_TIME)');
      a.pvclock.stoppedRequest = true;
      makeRequest(v, VcpuRequest.ClockUpdate);
      return 0;
    },
  },
  {
    name: 'KVM_SET_SIGNAL_MASK',
    request: KVM_SET_SIGNAL_MASK,
    arg: { dir: 'in', codec: KVM_SIGNAL_MASK_CODEC },
    run(v, arg) {
      const op = 'KVM_SET_SIGNAL_MASK';
      // A NULL pointer turns the mask off.
      if (arg === undefined || arg === null || arg === 0) {
        vcpuArch(v).sigmask = undefined;
        return 0;
      }
      const h = userAccess(op, () => KVM_SIGNAL_MASK_CODEC.copyInHeader(arg));
      if (h.len !== 8) throw new KernelError('EINVAL', op, `len ${h.len}: a sigset_t is 8 bytes`);
      const set = userAccess(op, () => KVM_SIGNAL_MASK_CODEC.copyInEntries(arg, 8));
      vcpuArch(v).sigmask = set.reduce((m, b, i) => m | (BigInt(b) << BigInt(8 * i)), 0n);
      return 0;
    },
  },
  {
    name: 'KVM_SET_VAPIC_ADDR',
    request: KVM_SET_VAPIC_ADDR,
    arg: { dir: 'in', codec: KVM_VAPIC_ADDR_CODEC },
    run(v, arg) {
      // Without an in-kernel LAPIC: EINVAL before the argument is read.
      if (!v.vm.irqchip) throw new KernelError('EINVAL', 'KVM_SET_VAPIC_ADDR', 'no in-kernel LAPIC');
      const va = copyFromUser(KVM_VAPIC_ADDR_CODEC, arg, 'KVM_SET_VAPIC_ADDR');
      vcpuArch(v).vapicAddr = va.vapic_addr;
      return 0;
    },
  },
  {
    name: 'KVM_TPR_ACCESS_REPORTING',
    request: KVM_TPR_ACCESS_REPORTING,
    arg: { dir: 'inout', codec: KVM_TPR_ACCESS_CTL_CODEC },
    run(v, arg) {
      const op = 'KVM_TPR_ACCESS_REPORTING';
      const tac = copyFromUser(KVM_TPR_ACCESS_CTL_CODEC, arg, op);
      if (tac.flags !== 0) throw new KernelError('EINVAL', op, 'flags must be 0');
      vcpuArch(v).tprAccessReporting = tac.enabled !== 0;
      copyToUser(KVM_TPR_ACCESS_CTL_CODEC, tac, arg, op);
      return 0;
    },
  },
  {
    name: 'KVM_ENABLE_CAP',
    request: KVM_ENABLE_CAP,
    arg: { dir: 'in', codec: KVM_ENABLE_CAP_CODEC },
    run(v, arg) {
      // kvm_vcpu_ioctl_enable_cap (no Hyper-V in the model: CONFIG_KVM_HYPERV=n)
      const op = 'KVM_ENABLE_CAP';
      const cap = copyFromUser(KVM_ENABLE_CAP_CODEC, arg, op);
      if (cap.flags !== 0) throw new KernelError('EINVAL', op, 'flags must be 0');
      if (cap.cap !== KVM_CAP_ENFORCE_PV_FEATURE_CPUID) throw new KernelError('EINVAL', op, `capability ${cap.cap} cannot be enabled on a vCPU`);
      vcpuArch(v).pvCpuidEnforce = cap.args[0] !== 0n;
      return 0;
    },
  },
  {
    name: 'KVM_GET_STATS_FD',
    request: KVM_GET_STATS_FD,
    arg: { dir: 'none' },
    run: (v, _arg, proc) => openStatsFd(proc, statsFops(v.vm.instance.module), v.vm, v),
  },
];
