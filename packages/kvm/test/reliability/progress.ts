/**
 * Progress lines for the long random tests: the model test runs about a minute in CI (much longer as a soak)
 * and would otherwise print nothing until it ends. {@link progressReporter} says, after each chunk of
 * sequences, whether to print a line: about ten lines per run, at whole chunks, so the output is the same on
 * every run of a seed (the elapsed time aside) and costs one `console.log` per tenth.
 */

/** What a progress line reports. */
export interface ProgressCounts {
  readonly sequences: number;
  readonly commands: number;
}

/**
 * A reporter for a run of `total` sequences in chunks of `chunk`: call it after each chunk with the counts so
 * far; it returns the line to print at every tenth of the run (and at its end), `undefined` otherwise.
 *
 * @param label - what runs (`'[model] ci'`)
 * @param total - sequences in the whole run
 * @param chunk - sequences per chunk
 */
export function progressReporter(label: string, total: number, chunk: number): (counts: ProgressCounts, elapsedMs: number) => string | undefined {
  const chunks = Math.max(1, Math.ceil(total / chunk));
  const every = Math.max(1, Math.round(chunks / 10));
  let seen = 0;
  return (counts, elapsedMs) => {
    seen++;
    if (seen % every !== 0 && seen !== chunks) return undefined;
    const pct = Math.floor((100 * counts.sequences) / Math.max(1, total));
    return `${label}: ${counts.sequences}/${total} sequences (${pct}%), ${counts.commands} commands, ${(elapsedMs / 1000).toFixed(1)} s`;
  };
}
