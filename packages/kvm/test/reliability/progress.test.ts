import { describe, expect, test } from 'vitest';
import { progressReporter } from './progress.js';

describe('progressReporter (the long random tests report as they go)', () => {
  const lines = (total: number, chunk: number): string[] => {
    const report = progressReporter('[model] ci', total, chunk);
    const out: string[] = [];
    for (let done = 0; done < total; ) {
      done = Math.min(total, done + chunk);
      const line = report({ sequences: done, commands: done * 10 }, done);
      if (line !== undefined) out.push(line);
    }
    return out;
  };

  test('the CI budget (6,000 sequences in chunks of 100) prints ten lines, one every 600 sequences', () => {
    const out = lines(6000, 100);
    expect(out).toHaveLength(10);
    expect(out[0]).toBe('[model] ci: 600/6000 sequences (10%), 6000 commands, 0.6 s');
    expect(out.at(-1)).toBe('[model] ci: 6000/6000 sequences (100%), 60000 commands, 6.0 s');
  });

  test('a soak of 100,000 prints about ten; a run of a few chunks prints one per chunk and always its end', () => {
    expect(lines(100_000, 100)).toHaveLength(10);
    expect(lines(300, 100)).toHaveLength(3);
    const odd = lines(1050, 100); // 11 chunks: every chunk, the last one partial
    expect(odd).toHaveLength(11);
    expect(odd.at(-1)).toContain('1050/1050 sequences (100%)');
  });
});
