/**
 * The shape of the house, enforced: the packages depend on each other only along the allowed arrows
 * (core ← vmx, svm ← kvm ← bridge; examples and tools on top), and @vac/core names no vendor and no KVM concept —
 * no identifier made of the words vmx, svm, vpid, asid or sev, and none of the event names KVM declares. A third
 * vendor or a different hypervisor module plugs in without touching a file of core (see the third-vendor test in
 * @vac/kvm).
 *
 * @module
 */
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import ts from 'typescript';
import { describe, expect, test } from 'vitest';

const root = join(import.meta.dirname, '..', '..', '..');

function sources(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (p.endsWith('.ts')) out.push(p);
  }
  return out;
}

/** Every identifier and every string (or template text) of a file's code, comments left out (from its syntax tree). */
function tokens(file: string): Array<{ kind: 'identifier' | 'string'; text: string }> {
  const sf = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest, false, ts.ScriptKind.TS);
  const out: Array<{ kind: 'identifier' | 'string'; text: string }> = [];
  const visit = (n: ts.Node): void => {
    if (ts.isIdentifier(n) || ts.isPrivateIdentifier(n)) out.push({ kind: 'identifier', text: n.text });
    else if (ts.isStringLiteral(n) || ts.isNoSubstitutionTemplateLiteral(n) || ts.isTemplateHead(n) || ts.isTemplateMiddle(n) || ts.isTemplateTail(n)) {
      out.push({ kind: 'string', text: n.text });
    }
    ts.forEachChild(n, visit);
  };
  visit(sf);
  return out;
}

/** The words of an identifier: `newAsid` → new, asid; `VMX_NR_VPIDS` → vmx, nr, vpids; `#sevAsids` → sev, asids. */
function words(identifier: string): string[] {
  return identifier
    .replace(/^#/, '')
    .replace(/([a-z0-9])([A-Z])/g, '$1 $2')
    .replace(/([A-Z]+)([A-Z][a-z])/g, '$1 $2')
    .split(/[\s_$]+/)
    .filter((w) => w !== '')
    .map((w) => w.toLowerCase());
}

/** The packages a file imports, by package name (`@vac/vmx`) or by the folder a relative import reaches. */
function importedPackages(file: string): string[] {
  // Code only: an import in a doc comment (an `@example` showing how a user imports the packages) is no dependency.
  const text = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '');
  const out: string[] = [];
  for (const m of text.matchAll(/(?:from|import)\s*\(?\s*'([^']+)'/g)) {
    const spec = m[1] as string;
    if (spec.startsWith('@vac/')) out.push(spec.split('/').slice(0, 2).join('/'));
    else if (spec.startsWith('.')) {
      const target = relative(join(root, 'packages'), join(file, '..', spec));
      const pkg = target.split('/')[0];
      if (pkg !== undefined && !pkg.startsWith('..')) out.push(`@vac/${pkg}`);
    }
  }
  return out;
}

const VENDOR_WORDS = new Set(['vmx', 'svm', 'vpid', 'vpids', 'asid', 'asids', 'sev']);
const KVM_EVENTS = ['vm:create', 'vm:destroy', 'vcpu:create', 'vcpu:load', 'vcpu:put', 'vcpu:exit', 'pmi:guest'];

describe('the house', () => {
  test('@vac/core names no vendor: no identifier is made of the words vmx, svm, vpid, asid or sev', () => {
    const found: string[] = [];
    for (const file of sources(join(root, 'packages', 'core', 'src'))) {
      for (const t of tokens(file)) {
        if (t.kind === 'identifier' && words(t.text).some((w) => VENDOR_WORDS.has(w))) found.push(`${relative(root, file)}: ${t.text}`);
      }
    }
    expect(found).toEqual([]);
  });

  test('@vac/core names no KVM event', () => {
    const found: string[] = [];
    for (const file of sources(join(root, 'packages', 'core', 'src'))) {
      for (const t of tokens(file)) if (t.kind === 'string' && KVM_EVENTS.some((e) => t.text.includes(e))) found.push(`${relative(root, file)}: '${t.text}'`);
    }
    expect(found).toEqual([]);
  });

  test('the word check sees what it must (a guard against a check that finds nothing)', () => {
    expect(words('newAsid')).toEqual(['new', 'asid']);
    expect(words('VMX_NR_VPIDS')).toEqual(['vmx', 'nr', 'vpids']);
    expect(words('#sevAsids')).toEqual(['sev', 'asids']);
    expect(words('closeVm').some((w) => VENDOR_WORDS.has(w))).toBe(false);
    expect(words('VacSvm').some((w) => VENDOR_WORDS.has(w))).toBe(true);
  });

  test('packages depend only along the allowed arrows', () => {
    const allowed: Record<string, readonly string[]> = {
      '@vac/core': [],
      '@vac/vmx': ['@vac/core'],
      '@vac/svm': ['@vac/core'],
      '@vac/kvm': ['@vac/core', '@vac/vmx', '@vac/svm'],
      '@vac/bridge': ['@vac/core', '@vac/vmx', '@vac/svm', '@vac/kvm'],
    };
    const found: string[] = [];
    for (const [pkg, may] of Object.entries(allowed)) {
      const dir = join(root, 'packages', pkg.slice('@vac/'.length), 'src');
      for (const file of sources(dir)) {
        for (const dep of importedPackages(file)) {
          if (dep !== pkg && !may.includes(dep)) found.push(`${relative(root, file)} imports ${dep}`);
        }
      }
    }
    expect(found).toEqual([]);
  });
});
