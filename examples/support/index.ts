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

/**
 * The checks an example makes of its own story. A failed check is remembered, and the example goes on so that its
 * whole output is still printed; {@link Checks.conclude} ends the run: the failed checks on stderr and exit status 1,
 * or the example's one-line summary.
 */
export class Checks {
  readonly #failed: string[] = [];

  /** Remember `what` as failed unless `ok` holds (bound: pass it around as a plain function). */
  readonly expect = (ok: boolean, what: string): void => {
    if (!ok) this.#failed.push(what);
  };

  /** Remember `what` as failed. */
  readonly fail = (what: string): void => {
    this.#failed.push(what);
  };

  /** How many checks failed so far. */
  get failures(): number {
    return this.#failed.length;
  }

  /**
   * End the example: with failed checks, print the first 30 (and how many more) under "FAILED:" on stderr and exit
   * with status 1; otherwise print `summary` (when given) after a blank line.
   */
  conclude(summary?: string): void {
    if (this.#failed.length > 0) {
      const shown = this.#failed.slice(0, 30);
      const more = this.#failed.length - shown.length;
      console.error(`\nFAILED:\n- ${shown.join('\n- ')}${more > 0 ? `\n- … and ${more} more` : ''}`);
      process.exit(1);
    }
    if (summary !== undefined) console.log(`\n${summary}`);
  }
}
