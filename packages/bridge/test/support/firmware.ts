/**
 * Real-mode firmware images assembled with asm16, 64 KiB each: code at 0xF0000 (CS = 0xF000, offset 0) and
 * `jmp 0xf000:0` at the reset vector 0xFFFF0 — what QEMU's `-bios` loads, and what `fixtures/irqchip.c` loads
 * at 0xF0000 and starts at the same reset vector.
 */
import { picInit } from '@vac/test-support/pic';
import { Asm16, asm16 } from '@vac/kvm';

/** The line the hello firmware prints. */
export const FIRMWARE_LINE = 'hello from vac firmware';

/** The port a firmware writes its final count to (QEMU ignores it; `fixtures/irqchip.c` stops there). */
export const DONE_PORT = 0x80;
/** The port the events firmware writes for its ioeventfd (a guest write the kernel side handles). */
export const IOEVENTFD_PORT = 0x510;

const COUNTER = 0x500;

function image(a: Asm16): Uint8Array {
  const out = new Uint8Array(65536);
  out.set(a.bytes(), 0);
  out.set([0xea, 0x00, 0x00, 0x00, 0xf0], 0xfff0); // jmp far 0xf000:0x0000
  return out;
}

/** The hello firmware: prints {@link FIRMWARE_LINE} on COM1 (port 0x3f8) and halts. */
export function helloFirmware(): Uint8Array {
  const a = asm16({ org: 0 }).mov('dx', 0x3f8);
  for (const ch of `${FIRMWARE_LINE}\n`) a.mov('al', ch.charCodeAt(0)).out('dx', 'al');
  a.label('halt').hlt().jmp('halt');
  return image(a);
}

/** DS = SS = 0, a stack, the IVT entries of `vectors` (vector → handler label, segment 0xF000). */
function setup(a: Asm16, vectors: Record<number, string>): Asm16 {
  a.cli().xor('ax', 'ax').mov('ds', 'ax').mov('ss', 'ax').mov('sp', 0x7000).mov(Asm16.word(COUNTER), 0);
  for (const [vector, label] of Object.entries(vectors)) a.mov(Asm16.word(Number(vector) * 4), { label }).mov(Asm16.word(Number(vector) * 4 + 2), 0xf000);
  return a;
}

/** Halt with interrupts on until the counter reaches `n` (no lost wake-up: `sti; hlt` is one shadow), then report it on {@link DONE_PORT} and halt for good. */
function waitCount(a: Asm16, n: number): Asm16 {
  return a
    .label('idle').cli().cmp(Asm16.word(COUNTER), n).jae('done').sti().hlt().jmp('idle')
    .label('done').mov('al', Asm16.byte(COUNTER)).out(DONE_PORT, 'al')
    .label('halt').cli().hlt().jmp('halt');
}

/**
 * An interrupt handler: prints `text` on COM1, counts, EOIs the master PIC, returns. With `last`, the handler
 * that counts to it also masks every IRQ at the PIC first: a slow guest (a user-space PIC and PIT, whose time is
 * QEMU's wall clock) may have the next tick pending already, and `iret` opens a window for it before the idle
 * loop's `cli`.
 */
function printingHandler(a: Asm16, label: string, text: string, digit: boolean, last?: number): Asm16 {
  a.label(label).push('ax').push('dx').inc(Asm16.word(COUNTER)).mov('dx', 0x3f8);
  for (const ch of text) a.mov('al', ch.charCodeAt(0)).out('dx', 'al');
  if (digit) a.mov('al', Asm16.byte(COUNTER)).add('al', 0x30).out('dx', 'al').mov('al', 10).out('dx', 'al');
  if (last !== undefined) a.cmp(Asm16.word(COUNTER), last).jb(`${label}_eoi`).mov('al', 0xff).out(0x21, 'al').label(`${label}_eoi`);
  return a.mov('al', 0x20).out(0x20, 'al').pop('dx').pop('ax').iret();
}

/**
 * The tick firmware: programs the PIC and PIT channel 0 (mode 2, `count` PIT cycles: 11932 ≈ 10 ms), enables
 * interrupts and halts; each IRQ 0 prints `tick N` (N = 1…`ticks`, a single digit); after the last it writes
 * `ticks` to {@link DONE_PORT} and halts with interrupts off for good.
 */
export function tickFirmware(ticks: number, count = 11932): Uint8Array {
  if (ticks < 1 || ticks > 9) throw new Error('tickFirmware prints single digits: 1..9 ticks');
  const a = setup(asm16({ org: 0 }), { 8: 'irq0' });
  picInit(a, [0], { disableLapic: true });
  a.mov('al', 0x34).out(0x43, 'al').mov('al', count & 0xff).out(0x40, 'al').mov('al', count >> 8).out(0x40, 'al');
  waitCount(a, ticks);
  printingHandler(a, 'irq0', 'tick ', true, ticks);
  return image(a);
}

/**
 * The events firmware (for KVM_IOEVENTFD and KVM_IRQFD): writes 1 to port {@link IOEVENTFD_PORT}, then halts
 * with IRQ 4 and IRQ 5 unmasked; the IRQ 4 handler prints `A`, the IRQ 5 handler `B`; after both it writes 2 to
 * {@link DONE_PORT} and halts for good.
 */
export function eventsFirmware(): Uint8Array {
  const a = setup(asm16({ org: 0 }), { 0x0c: 'irq4', 0x0d: 'irq5' });
  picInit(a, [4, 5], { disableLapic: true });
  a.mov('dx', IOEVENTFD_PORT).mov('al', 1).out('dx', 'al');
  waitCount(a, 2);
  printingHandler(a, 'irq4', 'A', false);
  printingHandler(a, 'irq5', 'B', false);
  return image(a);
}

/** The RAM the counter firmware keeps writing and checksums: 64 KiB (16 pages) at 0x10000, segment 0x1000. */
export const COUNTER_RAM = { segment: 0x1000, pages: 16 } as const;

/**
 * The counter firmware (a guest to migrate): programs the PIC and PIT channel 0 (mode 2, `count` PIT cycles:
 * 65535 ≈ 18.2 Hz) and halts between ticks, forever. Each IRQ 0 adds 1 to a 16-bit counter N, computes a
 * checksum of its {@link COUNTER_RAM} as the previous ticks left it (over its 32768 words in order:
 * `sum = rol(sum, 1) + word`), prints `NNNN SSSS` (N and the checksum, 4 hex digits each) and a newline, then
 * writes N into the word at offset `2N mod 4096` of each of the 16 pages — so every tick dirties those 16
 * pages, and RAM that came across a migration wrong shows in the next line's checksum
 * ({@link counterChecksum} gives the right one).
 */
export function counterFirmware(count = 65535): Uint8Array {
  const a = setup(asm16({ org: 0 }), { 8: 'irq0' });
  picInit(a, [0], { disableLapic: true });
  a.mov('al', 0x34).out(0x43, 'al').mov('al', count & 0xff).out(0x40, 'al').mov('al', count >> 8).out(0x40, 'al');
  a.label('idle').sti().hlt().jmp('idle');
  a.label('irq0').push('ax').push('bx').push('cx').push('dx').push('si').push('di').push('es');
  a.inc(Asm16.word(COUNTER)).mov('ax', COUNTER_RAM.segment).mov('es', 'ax');
  a.xor('si', 'si').xor('bx', 'bx').mov('cx', COUNTER_RAM.pages * 2048);
  a.label('sum').rol('bx', 1).add('bx', Asm16.word('es', 'si')).add('si', 2).loop('sum');
  a.mov('dx', 0x3f8).mov('ax', Asm16.word(COUNTER)).call('hex4').mov('al', 0x20).out('dx', 'al');
  a.mov('ax', 'bx').call('hex4').mov('al', 10).out('dx', 'al');
  a.mov('ax', Asm16.word(COUNTER)).mov('di', 'ax').shl('di', 1).and('di', 0xffe).mov('cx', COUNTER_RAM.pages);
  a.label('write').mov(Asm16.word('es', 'di'), 'ax').add('di', 0x1000).loop('write');
  a.mov('al', 0x20).out(0x20, 'al').pop('es').pop('di').pop('si').pop('dx').pop('cx').pop('bx').pop('ax').iret();
  // hex4: AX as 4 hex digits on port DX (CX kept).
  a.label('hex4').push('cx').mov('cx', 4);
  a.label('digit').rol('ax', 4).push('ax').and('al', 0x0f).add('al', 0x30).cmp('al', 0x39).jbe('print').add('al', 7);
  a.label('print').out('dx', 'al').pop('ax').loop('digit');
  return image(a.pop('cx').ret());
}

/**
 * The checksum {@link counterFirmware} prints with counter `n` (1, 2, …): that of its RAM after ticks 1 … n−1,
 * starting from zeroed RAM — the same computation in TypeScript.
 */
export function counterChecksum(n: number): number {
  const words = new Uint16Array(COUNTER_RAM.pages * 2048);
  for (let k = 1; k < n; k++) for (let page = 0; page < COUNTER_RAM.pages; page++) words[page * 2048 + (k & 0x7ff)] = k & 0xffff;
  let sum = 0;
  for (const w of words) sum = ((((sum << 1) | (sum >>> 15)) & 0xffff) + w) & 0xffff;
  return sum;
}
