/** A 64 KiB real-mode firmware, assembled with asm16: prints one line on COM1 (port 0x3f8) and halts. */
import { asm16 } from '@vac/kvm';

/** The line the firmware prints. */
export const FIRMWARE_LINE = 'hello from vac firmware';

/** The firmware image: code at 0xF0000 (CS = 0xF000, offset 0), `jmp 0xf000:0` at the reset vector 0xFFFF0. */
export function helloFirmware(): Uint8Array {
  const a = asm16({ org: 0 }).mov('dx', 0x3f8);
  for (const ch of `${FIRMWARE_LINE}\n`) a.mov('al', ch.charCodeAt(0)).out('dx', 'al');
  const code = a.label('halt').hlt().jmp('halt').bytes();
  const image = new Uint8Array(65536);
  image.set(code, 0);
  image.set([0xea, 0x00, 0x00, 0x00, 0xf0], 0xfff0); // jmp far 0xf000:0x0000
  return image;
}
