/**
 * The guest programs' seeded generator (the shared mulberry32 of @vac/test-support), so the programs are the same
 * on every machine and run.
 *
 * @module
 */

// The PRNG alone: the package's index also brings vitest's assertions, which the recorder (run by tsx) cannot load.
import { Random as SeededRandom } from '@vac/test-support/random';

/** The seeded generator of the guest programs, with byte and word choices biased towards edge values. */
export class Random extends SeededRandom {
  /** A byte. */
  u8(): number {
    return this.u32() & 0xff;
  }

  /** A 16-bit word, biased towards edge values (0, 1, 0x7f, 0x80, 0xff, 0x7fff, 0x8000, 0xffff) one time in four. */
  u16(): number {
    if (this.int(0, 3) === 0) return this.pick([0, 1, 0x7f, 0x80, 0xff, 0x100, 0x7fff, 0x8000, 0xffff, 0xfffe]);
    return this.u32() & 0xffff;
  }

  /** A byte, biased towards edge values one time in four. */
  byte(): number {
    if (this.int(0, 3) === 0) return this.pick([0, 1, 0x7f, 0x80, 0xff, 0xfe, 0x0f, 0x10]);
    return this.u8();
  }
}
