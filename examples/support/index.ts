/** Output helpers shared by the example programs (not part of the library). */

/** Print rows as an aligned text table (numbers right-aligned). */
export function table(rows: ReadonlyArray<Record<string, string | number>>): void {
  const first = rows[0];
  if (first === undefined) return;
  const cols = Object.keys(first);
  const width = cols.map((c) => Math.max(c.length, ...rows.map((r) => String(r[c] ?? '').length)));
  const cell = (v: string | number | undefined, i: number): string => (typeof v === 'number' ? String(v).padStart(width[i] ?? 0) : String(v ?? '').padEnd(width[i] ?? 0));
  console.log(cols.map((c, i) => c.padEnd(width[i] ?? 0)).join('  ').trimEnd());
  console.log(width.map((w) => '-'.repeat(w)).join('  '));
  for (const r of rows) console.log(cols.map((c, i) => cell(r[c], i)).join('  ').trimEnd());
}
