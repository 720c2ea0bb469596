import { describe, expect, test } from 'vitest';
import { fc, test as fcTest } from '@fast-check/vitest';
import {
  KVMIO,
  _IO,
  _IOC,
  _IOC_DIR,
  _IOC_NONE,
  _IOC_NR,
  _IOC_READ,
  _IOC_SIZE,
  _IOC_TYPE,
  _IOC_WRITE,
  _IOR,
  _IOW,
  _IOWR,
  formatIoctl,
} from '../../src/abi/index.js';

describe('ioctl encoding (asm-generic/ioctl.h)', () => {
  test('field geometry matches the generic header', () => {
    expect(KVMIO).toBe(0xae);
    expect(_IOC_NONE).toBe(0);
    expect(_IOC_WRITE).toBe(1);
    expect(_IOC_READ).toBe(2);
  });

  test('encoders produce the C values as unsigned 32-bit numbers', () => {
    expect(_IO(KVMIO, 0x80)).toBe(0xae80);
    expect(_IOR(KVMIO, 0x81, 0x90)).toBe(0x8090ae81);
    expect(_IOW(KVMIO, 0x82, 0x90)).toBe(0x4090ae82);
    expect(_IOWR(KVMIO, 0xba, 8)).toBe(0xc008aeba);
    expect(_IOC(3, 0xff, 0xff, 0x3fff)).toBe(0xffffffff);
    // never a negative int32
    expect(_IOR(KVMIO, 0x83, 0x138)).toBeGreaterThan(0);
    expect(_IOWR(KVMIO, 0x02, 4)).toBeGreaterThan(0x7fffffff);
  });

  test('decoders pick the fields apart', () => {
    const req = 0xc008aeba;
    expect(_IOC_DIR(req)).toBe(_IOC_READ | _IOC_WRITE);
    expect(_IOC_TYPE(req)).toBe(0xae);
    expect(_IOC_NR(req)).toBe(0xba);
    expect(_IOC_SIZE(req)).toBe(8);
    expect(_IOC_DIR(0x4138ae84)).toBe(_IOC_WRITE);
    expect(_IOC_SIZE(0x4138ae84)).toBe(0x138);
    expect(_IOC_DIR(0xae01)).toBe(_IOC_NONE);
    // negative int32 spelling of the same request decodes the same
    expect(_IOC_NR(0xc008aeba | 0)).toBe(0xba);
    expect(_IOC_DIR(0xc008aeba | 0)).toBe(3);
  });

  test('out-of-range fields are rejected instead of overlapping', () => {
    expect(() => _IOR(KVMIO, 0x100, 8)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => _IOR(0x100, 0x01, 8)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => _IOW(KVMIO, 0x01, 0x4000)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => _IOW(KVMIO, 0x01, -1)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => _IOC(4, KVMIO, 0, 0)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
    expect(() => _IO(KVMIO, 1.5)).toThrow(expect.objectContaining({ name: 'UsageError', code: 'ERR_OUT_OF_RANGE' }));
  });

  test('formatIoctl renders the macro', () => {
    expect(formatIoctl(0xae80)).toBe('_IO(0xae, 0x80)');
    expect(formatIoctl(0x8090ae81)).toBe('_IOR(0xae, 0x81, 144)');
    expect(formatIoctl(0x4020ae46)).toBe('_IOW(0xae, 0x46, 32)');
    expect(formatIoctl(0xc008aeba)).toBe('_IOWR(0xae, 0xba, 8)');
    expect(formatIoctl(0x0004ae00)).toBe('_IOC(0, 0xae, 0x00, 4)');
  });

  fcTest.prop([fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0x3fff })])(
    'encode/decode round-trip',
    (dir, type, nr, size) => {
      const req = _IOC(dir, type, nr, size);
      expect(req).toBeGreaterThanOrEqual(0);
      expect(req).toBeLessThanOrEqual(0xffffffff);
      expect(Number.isInteger(req)).toBe(true);
      expect([_IOC_DIR(req), _IOC_TYPE(req), _IOC_NR(req), _IOC_SIZE(req)]).toEqual([dir, type, nr, size]);
    },
  );
});
