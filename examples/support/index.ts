/** Output helpers shared by the example programs (not part of the library). */

/** A table row: column header → cell. */
export type Row = Readonly<Record<string, string | number>>;

/**
 * Rows as an aligned text table: a header line, a rule, one line per row; numbers right-aligned, strings as they
 * are (no quotes, no index column). The columns are every key of every row, in first-seen order; a row without
 * a column has an empty cell there. Every column needs a header.
 */
export function formatTable(rows: ReadonlyArray<Row>): string {
  if (rows.length === 0) return '';
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const unnamed = cols.filter((c) => c.trim() === '');
  if (unnamed.length > 0) throw new Error('table: every column needs a header');
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const cell = (v: string | number | undefined, i: number): string => (typeof v === 'number' ? String(v).padStart(width[i] ?? 0) : String(v ?? '').padEnd(width[i] ?? 0));
  const lines = [cols.map((c, i) => c.padEnd(width[i] ?? 0)).join('  ').trimEnd(), width.map((w) => '-'.repeat(w)).join('  ')];
  for (const r of rows) lines.push(cols.map((c, i) => cell(r[c], i)).join('  ').trimEnd());
  return lines.join('\n');
}

/** Print rows as an aligned text table ({@link formatTable}); nothing for no rows. */
export function table(rows: ReadonlyArray<Row>): void {
  if (rows.length > 0) console.log(formatTable(rows));
}
