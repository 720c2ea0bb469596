/**
 * docs/abi.md lists exactly the ioctls the model dispatches (`KVM_IOCTL_TABLE`): each under its file's heading, with
 * its request number, and for a struct argument the struct and what the kernel does with it (in, out, inout).
 */
import { readFileSync } from 'node:fs';
import { describe, expect, test } from 'vitest';
import { KVM_IOCTL_TABLE, type KvmIoctlInfo } from '../../src/index.js';

const DOC = readFileSync(new URL('../../../../docs/abi.md', import.meta.url), 'utf8');

/** The headings of the three tables, by file. */
const SECTIONS: Record<KvmIoctlInfo['fd'], string> = { system: '## /dev/kvmX (the system fd)', vm: '## VM fd', vcpu: '## vCPU fd' };

/** One documented ioctl. */
interface DocRow {
  readonly fd: KvmIoctlInfo['fd'];
  readonly name: string;
  readonly value: string;
  /** `in kvm_regs`, `out u64`, … or `` for a value argument. */
  readonly arg: string;
}

/** The rows of the table under `heading` (a row may document a GET/SET pair: `A` / `B`). */
function rows(fd: KvmIoctlInfo['fd']): DocRow[] {
  const start = DOC.indexOf(SECTIONS[fd]);
  expect(start, SECTIONS[fd]).toBeGreaterThanOrEqual(0);
  const next = DOC.indexOf('\n## ', start + 1);
  const out: DocRow[] = [];
  for (const line of DOC.slice(start, next < 0 ? undefined : next).split('\n')) {
    if (!line.startsWith('| `KVM_')) continue;
    const cells = line.split(' | ').map((c) => c.replace(/^\| /, ''));
    const names = (cells[0] ?? '').split(' / ').map((n) => n.replaceAll('`', ''));
    const values = (cells[1] ?? '').split(' / ').map((v) => v.replaceAll('`', ''));
    const argCell = cells[2] ?? '';
    const m = /^(in|out|inout)(?: \/ (in|out|inout))? `([a-z0-9_]+)/.exec(argCell);
    names.forEach((name, i) => {
      const dir = m === null ? '' : i === 1 && m[2] !== undefined ? m[2] : (m[1] as string);
      out.push({ fd, name, value: values[i] ?? values[0] ?? '', arg: m === null ? '' : `${dir} ${m[3] as string}` });
    });
  }
  return out;
}

/** What the model's table says about one ioctl, in the doc's terms. */
function expected(r: KvmIoctlInfo): DocRow {
  const a = r.arg;
  let arg = '';
  if (a.dir === 'in' || a.dir === 'out' || a.dir === 'inout') {
    const c = a.codec as { layout?: { name: string }; header?: { layout: { name: string } } };
    const struct = c.layout?.name ?? c.header?.layout.name ?? '?';
    arg = `${a.dir} ${struct === 'u64_arg' ? 'u64' : struct}`;
  }
  return { fd: r.fd, name: r.name, value: `0x${r.request.toString(16).toUpperCase().replace('0X', '')}`, arg };
}

describe('docs/abi.md', () => {
  for (const fd of ['system', 'vm', 'vcpu'] as const) {
    test(`the ${fd} fd's table lists exactly its ioctls, with their numbers and argument structs`, () => {
      const doc = rows(fd).sort((x, y) => x.name.localeCompare(y.name));
      const model = KVM_IOCTL_TABLE.filter((r) => r.fd === fd).map(expected).sort((x, y) => x.name.localeCompare(y.name));
      expect(doc).toEqual(model);
    });
  }
});
