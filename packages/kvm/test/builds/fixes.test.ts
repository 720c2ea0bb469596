/**
 * The fix table (builds/fixes.ts, docs/builds.md): at least 20 real KVM x86 fixes, each classified from the files
 * and functions its commit touches, and the share a module swap can deploy.
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { KVM_X86_FIXES, VAC_OWNED_FUNCTIONS, classifyFix, fixShare } from '../../src/index.js';

describe('KVM x86 fixes: module swap or VAC', () => {
  test('at least 20 fixes, distinct upstream commits; 17 CVE or stable fixes, 3 upstream fixes of VAC-side code', () => {
    expect(KVM_X86_FIXES.length).toBeGreaterThanOrEqual(20);
    expect(new Set(KVM_X86_FIXES.map((f) => f.commit.slice(0, 12))).size).toBe(KVM_X86_FIXES.length);
    for (const f of KVM_X86_FIXES) {
      expect(f.commit, f.subject).toMatch(/^[0-9a-f]{12,40}$/);
      expect(f.cve, f.subject).toMatch(/^(CVE-\d{4}-\d{4,}|stable|fix)$/);
      expect(f.files.length, f.subject).toBeGreaterThan(0);
    }
    expect(KVM_X86_FIXES.filter((f) => f.cve !== 'fix').length).toBe(17);
  });

  test('each entry\'s classification is the one its files and functions give', () => {
    expect(KVM_X86_FIXES.filter((f) => classifyFix(f) !== f.area).map((f) => f.subject)).toEqual([]);
  });

  test('16 of 20 deploy by loading a new kvmX (80 %); 4 change VAC-owned code', () => {
    expect(fixShare()).toEqual({ kvmX: 16, vac: 4, share: 0.8 });
    expect(KVM_X86_FIXES.filter((f) => f.area === 'vac').map((f) => f.commit.slice(0, 12))).toEqual(['1650b4ebc99d', '4f6ea0a87608', '6a3236580b0b', 'b23c83ad2c63']);
  });

  test('the rule: a VAC-owned function or file makes a fix VAC\'s, whatever else it touches', () => {
    expect(classifyFix({ files: ['arch/x86/kvm/vmx/vmx.c'], functions: ['vmx_vcpu_run'] })).toBe('kvmX');
    expect(classifyFix({ files: ['arch/x86/kvm/vmx/vmx.c'], functions: ['vmx_vcpu_run', 'allocate_vpid'] })).toBe('vac');
    expect(classifyFix({ files: ['arch/x86/kernel/reboot.c'], functions: [] })).toBe('vac');
    expect(VAC_OWNED_FUNCTIONS).toContain('sev_asid_new');
    expect(fixShare([])).toEqual({ kvmX: 0, vac: 0, share: 0 });
  });

  test('docs/builds.md shows the same table and share: one row per fix (commit, subject, CVE, where it deploys), in order', () => {
    const md = readFileSync(new URL('../../../../docs/builds.md', import.meta.url), 'utf8');
    const section = md.slice(md.indexOf('## Which fixes can ship by a module swap'), md.indexOf('## A/B across modules'));
    const rows = [...section.matchAll(/^\| ([0-9a-f]{12}) \| (.+?) \| (CVE-[\d-]+|stable|fix) \| [^|]+ \| [^|]+ \| (.+?) \|$/gm)].map((m) => ({ commit: m[1], subject: m[2], cve: m[3], area: m[4]!.includes('VAC') ? 'vac' : 'kvmX' }));
    expect(rows).toEqual(KVM_X86_FIXES.map((f) => ({ commit: f.commit.slice(0, 12), subject: f.subject, cve: f.cve, area: f.area })));
    const { kvmX, vac, share } = fixShare();
    expect(section).toContain(`**${kvmX} of ${kvmX + vac} (${Math.round(share * 100)} %) deploy by loading a new module**; the ${vac} that do not`);
  });
});
