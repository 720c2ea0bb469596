/**
 * The `/dev/kvm` ABI as TypeScript: ioctl encoding (`ioctl.ts`), the constants under their Linux names
 * (`constants.ts`), the ioctl argument structures with validators and C encoders (`structs.ts`), the C
 * layouts they are derived from (`layout.ts`) and the mmapped `struct kvm_run` area (`kvm-run.ts`).
 *
 * Everything is x86-64: sizes and offsets follow the System V ABI, and numbers come from
 * `include/uapi/linux/kvm.h` and `arch/x86/include/uapi/asm/kvm.h`.
 *
 * @module
 */
export * from './ioctl.js';
export * from './layout.js';
export * from './constants.js';
export * from './codec.js';
export * from './structs.js';
export * from './structs-irq.js';
export * from './structs-x86.js';
export * from './structs-nested.js';
export * from './constants-x86.js';
export * from './kvm-run.js';
