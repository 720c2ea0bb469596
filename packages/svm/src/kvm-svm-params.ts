/**
 * kvm_amd's module parameters (arch/x86/kvm/svm/svm.c, sev.c), as the SVM half declares them to every KVM module.
 *
 * @module
 */
import { boolParam, intParam } from '@vac/core';
import { kstrtoll } from '@vac/core/internal';
import type { ParamSpec } from '@vac/core';

/** `KVM_SVM_DEFAULT_PLE_WINDOW` (`arch/x86/kvm/svm/svm.h`): the default `pause_filter_count`. */
const KVM_SVM_DEFAULT_PLE_WINDOW = 3000;

/**
 * A `ushort` parameter (`param_set_ushort` → `kstrtou16`, base 0: `0x` hex, leading-`0` octal, decimal; no
 * sign but `+`). The core has helpers for `int` and `uint` only.
 */
function ushortParam(defaultValue: number, description: string): ParamSpec<number> {
  return {
    type: 'ushort',
    defaultValue,
    description,
    parse(raw) {
      if (raw.startsWith('-')) return undefined;
      const v = kstrtoll(raw);
      if (v === undefined || v < 0n || v > 0xffffn) return undefined;
      return Number(v);
    },
    show: (v) => String(v),
  };
}

/**
 * kvm_amd's module parameters, with Linux's names, types and defaults:
 *
 * | name | Linux declaration | default |
 * |---|---|---|
 * | `npt` | `module_param_named(npt, npt_enabled, bool, 0444)` | Y |
 * | `nested` | `module_param(nested, int, 0444)` — declared `bool` here, the type of kvm_intel's `nested`, because the two vendors share the name in one module image | Y |
 * | `avic` | `module_param(avic, bool, 0444)` | N |
 * | `sev` | `module_param_named(sev, sev_enabled, bool, 0444)` (sev.c) | Y |
 * | `sev_es` | `module_param_named(sev_es, sev_es_enabled, bool, 0444)` (sev.c) | Y |
 * | `nrips` | `module_param(nrips, int, 0444)` | 1 |
 * | `vls` | `module_param(vls, int, 0444)` | 1 |
 * | `vgif` | `module_param(vgif, int, 0444)` | 1 |
 * | `lbrv` | `module_param(lbrv, int, 0444)` | 1 |
 * | `pause_filter_count` | `module_param(pause_filter_count, ushort, 0444)` | 3000 (`KVM_SVM_DEFAULT_PLE_WINDOW`) |
 * | `dump_invalid_vmcb` | `module_param(dump_invalid_vmcb, bool, 0644)` | N |
 *
 * The `int` ones take numbers (`nrips=0`), not `Y`/`N`, as in Linux. Linux rewrites several of these
 * variables in `svm_hardware_setup()` (so sysfs shows the effective value); here the parameters stay as
 * loaded and the effective values are the module's {@link SvmKvmModule.features}.
 */
export const svmParams = {
  npt: boolParam(true, 'Use nested paging (NPT) for guests (npt_enabled).'),
  nested: boolParam(true, 'Allow nested virtualization (SVM in guests).'),
  avic: boolParam(false, 'Enable the AMD advanced virtual interrupt controller (AVIC).'),
  sev: boolParam(true, 'Enable SEV guests (KVM_SEV_INIT).'),
  sev_es: boolParam(true, 'Enable SEV-ES guests (KVM_SEV_ES_INIT).'),
  nrips: intParam(1, 'Use next-RIP save on #VMEXIT.'),
  vls: intParam(1, 'Use virtual VMLOAD/VMSAVE.'),
  vgif: intParam(1, 'Use virtual GIF.'),
  lbrv: intParam(1, 'Use LBR virtualization.'),
  pause_filter_count: ushortParam(KVM_SVM_DEFAULT_PLE_WINDOW, 'PAUSE intercept filter count (0: no pause-loop exiting).'),
  dump_invalid_vmcb: boolParam(false, 'Dump the VMCB when VMRUN fails its consistency checks.'),
} as const;

/** The type of {@link svmParams}. */
export type SvmParams = typeof svmParams;
