/**
 * Real C programs through the preload library and the bridge: the classic minimal VMM on kvm0 and on kvm1,
 * the fd table, argument passing and errno as a C program sees them, and the failure paths (no bridge, the
 * bridge gone, a VMM killed, a user without access). Skipped, with the reason, only where no C compiler is.
 */
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { checkInvariants } from '@vac/core';
import { KVM_GET_DEVICE_ATTR, KVM_GET_MSRS } from '@vac/kvm';
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { runControl, socketPaths, startDaemon, type Daemon } from '../src/index.js';
import { buildNative, nativeSkipReason, parseLines, runVmm, until, type Native } from './support/native.js';

const skip = nativeSkipReason();
if (skip !== undefined) console.warn(`@vac/bridge native tests skipped: ${skip}`);


describe.skipIf(skip !== undefined)('unchanged VMM binaries through vac', () => {
  let native: Native;
  let d: Daemon;
  let socket: string;
  const logs: string[] = [];

  beforeAll(async () => {
    native = buildNative();
    const runDir = mkdtempSync(join(tmpdir(), 'vac-run-'));
    d = await startDaemon({ runDir, host: { cpus: 2, modules: [{ name: 'kvm0' }, { name: 'kvm1' }], symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: (l) => logs.push(l) });
    socket = socketPaths(runDir).bridge;
  });
  afterAll(async () => {
    await d?.stop();
  });

  const vmCreatedOn = (): string[] => d.control.recorder.events().filter((e) => e.name === 'vm:create').map((e) => String((e.payload as unknown as { module: string }).module));
  const clean = async (): Promise<void> => {
    await until(() => d.bridge.sessions().size === 0, 'the VMM session to end');
    expect(d.host().processes().map((p) => p.name)).toEqual(['init']);
    expect(d.host().lsmod().map((m) => [m.name, m.refcount])).toEqual([['kvm1', 0], ['kvm0', 0], ['vac', 2]]);
    expect(checkInvariants(d.host())).toEqual([]);
  };

  test('the classic minimal VMM prints 4 and KVM_EXIT_HLT on kvm0 (/dev/kvm -> /dev/kvm0)', async () => {
    const first = d.bridge.calls().length;
    const r = await runVmm(native, socket, [native.lwn]);
    expect(r).toMatchObject({ code: 0, stdout: '4\nKVM_EXIT_HLT\n', stderr: '' });
    expect(vmCreatedOn().at(-1)).toBe('kvm0');
    // Its thread's requests (all under PIPE_BUF) came on the request FIFO, the replies on its socket.
    const calls = d.bridge.calls().slice(first);
    expect(calls.filter((c) => c.op === 'ioctl').map((c) => c.via)).toEqual(calls.filter((c) => c.op === 'ioctl').map(() => 'fifo'));
    await clean();
  });

  test('SMM: the SMI handler runs from SMRAM that only address space 1 maps — read from the VMM before, the guest’s write back in the VMM’s SMRAM after', async () => {
    // The lazy guest memory follows the vCPU's address space (lazy-memory.ts): through address space 0's slots the
    // handler's page would never be read from the VMM (the guest would run on zeros) nor its write written back.
    const r = await runVmm(native, socket, [native.smram]);
    expect(r.stderr).toBe('');
    expect(parseLines(r.stdout)).toEqual({ smram_read: '0x5a', smm_flag_on_out: '1', exit: 'hlt', smm_flag_on_hlt: '0', smram_written: '0x5b' });
    await clean();
  });

  test('with both sides spinning for their next message whatever the load (a bridge with `spin.always`, VAC_SPIN_ALWAYS=1), the same output; with VAC_NO_SPIN=1 too', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'vac-spin-'));
    const spinning = await startDaemon({ runDir, host: { cpus: 2, modules: [{ name: 'kvm0' }], symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: (l) => logs.push(l), spin: { us: 20_000, always: true } });
    try {
      for (const env of [{ VAC_SPIN_ALWAYS: '1', VAC_SPIN_US: '20000' }, { VAC_NO_SPIN: '1' }]) {
        const r = await runVmm(native, socketPaths(runDir).bridge, [native.lwn], { env });
        expect(r).toMatchObject({ code: 0, stdout: '4\nKVM_EXIT_HLT\n', stderr: '' });
        const calls = spinning.bridge.calls().filter((c) => c.op === 'ioctl');
        expect(new Set(calls.map((c) => c.via))).toEqual(new Set(['fifo']));
        await until(() => spinning.bridge.sessions().size === 0, 'the VMM session to end');
      }
      expect(checkInvariants(spinning.host())).toEqual([]);
    } finally {
      await spinning.stop();
    }
  });

  test('VAC_PRELOAD_TIMES=<prefix>: the library writes <prefix>.<pid> at exit, a line per call to the bridge (send and reply-seen times), the same output', async () => {
    const first = d.bridge.calls().length;
    const prefix = join(mkdtempSync(join(tmpdir(), 'vac-times-')), 'times');
    const r = await runVmm(native, socket, [native.lwn], { env: { VAC_PRELOAD_TIMES: prefix } });
    expect(r).toMatchObject({ code: 0, stdout: '4\nKVM_EXIT_HLT\n', stderr: '' });
    const ioctls = d.bridge.calls().slice(first).filter((c) => c.op === 'ioctl');
    const pid = ioctls[0]?.pid ?? 0;
    const [header, ...lines] = readFileSync(`${prefix}.${pid}`, 'utf8').trimEnd().split('\n');
    expect(header).toBe('tid op request send_ns seen_ns cpu_send cpu_seen how');
    const rows = lines.map((l) => l.split(' ').map(Number) as [number, number, number, number, number, number, number, number]);
    // OP_IOCTL (4): one line per ioctl the bridge answered, from the same thread, sent before its reply was seen.
    const libIoctls = rows.filter(([, op]) => op === 4);
    expect(libIoctls.map(([tid]) => tid)).toEqual(ioctls.map((c) => c.tid));
    for (const [, , , send, seen, , , how] of rows) {
      expect(seen).toBeGreaterThanOrEqual(send);
      expect([0, 1]).toContain(how);
    }
    await clean();
  });

  test('with VAC_NO_FIFO=1 the library sends every request on its socket, with the same output', async () => {
    const first = d.bridge.calls().length;
    const r = await runVmm(native, socket, [native.lwn], { env: { VAC_NO_FIFO: '1' } });
    expect(r).toMatchObject({ code: 0, stdout: '4\nKVM_EXIT_HLT\n', stderr: '' });
    const calls = d.bridge.calls().slice(first);
    expect(calls.length).toBeGreaterThan(5);
    expect(new Set(calls.map((c) => c.via))).toEqual(new Set(['socket']));
    await clean();
  });

  test('and unchanged on kvm1 after `vac rm /dev/kvm; vac ln -s /dev/kvm1 /dev/kvm`', async () => {
    expect(runControl(d.control, { cmd: 'rm', args: ['/dev/kvm'] }).ok).toBe(true);
    expect(runControl(d.control, { cmd: 'ln', args: ['/dev/kvm1', '/dev/kvm'] }).ok).toBe(true);
    const before = vmCreatedOn().length;
    const r = await runVmm(native, socket, [native.lwn]);
    expect(r).toMatchObject({ code: 0, stdout: '4\nKVM_EXIT_HLT\n', stderr: '' });
    expect(vmCreatedOn().slice(before)).toEqual(['kvm1']);
    await clean();
    runControl(d.control, { cmd: 'rm', args: ['/dev/kvm'] });
    runControl(d.control, { cmd: 'ln', args: ['/dev/kvm0', '/dev/kvm'] });
  });

  test('`vac run --dev /dev/kvm1` points one VMM’s /dev/kvm elsewhere (VAC_DEV_KVM)', async () => {
    const before = vmCreatedOn().length;
    const r = await runVmm(native, socket, [native.lwn], { env: { VAC_DEV_KVM: '/dev/kvm1' } });
    expect(r.stdout).toBe('4\nKVM_EXIT_HLT\n');
    expect(vmCreatedOn().slice(before)).toEqual(['kvm1']);
    await clean();
  });

  test('memory an argument points to: kvm_device_attr.addr is written in place, an unmapped one is EFAULT; feature MSRs on /dev/kvm', async () => {
    const r = await runVmm(native, socket, [native.probe, 'pointers']);
    expect(r.stderr).toBe('');
    const v = parseLines(r.stdout);
    // kvm_x86_dev_has_attr / kvm_x86_dev_get_attr (arch/x86/kvm/x86.c): put_user(kvm_caps.supported_xcr0, uaddr).
    const proc = d.host().spawn({ name: 'check' });
    const sys = proc.open('/dev/kvm0');
    const model = new BigUint64Array(1);
    proc.ioctl(sys, KVM_GET_DEVICE_ATTR, { flags: 0, group: 0, attr: 0n, addr: new Uint8Array(model.buffer) });
    expect(v).toMatchObject({ has_attr: '0', get_attr: '0', xcomp: `0x${(model[0] as bigint).toString(16)}`, before: '0x1111111111111111', after: '0x2222222222222222' });
    expect(v).toMatchObject({ get_attr_unmapped: '-1:EFAULT', get_attr_unknown: '-1:ENXIO' });
    // msr_io(NULL, argp, do_get_feature_msr, 1): MSR_IA32_ARCH_CAPABILITIES is read; 0x12345678 is none, and ends the batch.
    const msrs = { nmsrs: 1, entries: [{ index: 0x10a, reserved: 0, data: 0n }] };
    expect(proc.ioctl(sys, KVM_GET_MSRS, msrs)).toBe(1);
    expect(v).toMatchObject({ get_feature_msrs: '1', arch_caps: `0x${msrs.entries[0]?.data.toString(16)}`, second: '0x88' });
    proc.kill();
    await clean();
  });

  test('KVM_GET_DIRTY_LOG writes its bitmap into the VMM’s memory: the page the guest wrote, then nothing; a slot that does not exist is ENOENT', async () => {
    const r = await runVmm(native, socket, [native.probe, 'dirty']);
    expect(r.stderr).toBe('');
    // kvm_get_dirty_log (virt/kvm/kvm_main.c): one bit per page of the slot, copy_to_user of kvm_dirty_bitmap_bytes (8
    // bytes for 4 pages): page 1 (guest 0x2000) only; the next call finds nothing new; slot 3 does not exist: ENOENT (id_to_memslot finds none).
    expect(parseLines(r.stdout)).toMatchObject({ set_memory: '0', run: '0', exit: '5', guest_byte: '1', dirty_log: '0', bitmap: '0x2', guard: '0xeeeeeeeeeeeeeeee', dirty_log2: '0', bitmap2: '0x0', dirty_log_noslot: '-1:ENOENT' });
    await clean();
  });

  test('fd table, arguments, kvm_run and guest memory as a C program sees them, with the model’s exact errno', async () => {
    const first = d.bridge.calls().length;
    const r = await runVmm(native, socket, [native.probe]);
    expect(r.stderr).toBe('');
    expect(new Set(d.bridge.calls().slice(first).map((c) => c.tid)).size).toBe(2);
    expect(r.code).toBe(0);
    expect(parseLines(r.stdout)).toEqual({
      open: '3', // the bridge's own sockets stay out of the VMM's fd numbers
      api_version: '12',
      api_version_arg1: '-1:EINVAL',
      cap_user_memory: '1',
      vm_fd_is_real: '1', // a real fd, O_CLOEXEC as anon_inode_getfd makes it
      unknown_sys: '-1:EINVAL', // kvm_arch_dev_ioctl
      unknown_vm: '-1:ENOTTY', // kvm_arch_vm_ioctl
      unknown_vcpu: '-1:EINVAL', // kvm_arch_vcpu_ioctl
      not_kvm_vcpu: '-1:EINVAL',
      vcpu_dup_id: '-1:EEXIST',
      set_regs_null: '-1:EFAULT', // copy_from_user of a NULL struct
      get_regs_null: '-1:EFAULT', // copy_to_user
      set_regs: '0',
      sext_request: '0xffffffff8090ae81', // KVM_GET_REGS sign-extended, as QEMU passes it
      get_regs_sext: '0',
      rip: '0x1234',
      thread_get_regs: '0', // a second thread, over its own connection, on the same simulated fd table
      mmap_size: '12288',
      mmap_beyond: '-1:EINVAL',
      mmap_vm: '-1:ENODEV',
      mmap_run: '0',
      set_memory: '0',
      get_sregs: '0',
      set_sregs: '0',
      set_regs2: '0',
      run1: '0',
      exit1: '2', // KVM_EXIT_IO, written into the VMM's own kvm_run mapping
      port: '0x3f8',
      byte: '0x42', // the guest read what the VMM wrote before KVM_RUN
      run2: '0',
      exit2: '5', // KVM_EXIT_HLT
      guest_wrote: '0x5a', // the VMM sees the guest's write after KVM_RUN
      vmm_byte: '0x78', // the VMM's own write to the same page between runs survives the write-back
      run3: '0',
      exit3: '5',
      page2: '0x33', // a page the VMM had never touched (not read: zeros), written by the guest, seen by the VMM
      madvise: '0',
      run4: '0',
      exit4: '2',
      dropped_byte: '0x0', // the VMM dropped the page: the guest reads zeros again
      run_arg1: '-1:EINVAL',
      dup_vm: '0',
      close_vm: '0',
      vm_closed: '-1:EBADF',
      create_vcpu_on_dup: '0', // the VM file lives on through the dup
      dup2: '100',
      get_regs_on_dup2: '0',
      dupfd_cloexec: '0',
      dupfd_flags: '1',
      get_regs_on_dupfd: '0',
      dup2_over_kvm: '100',
      ioctl_on_replaced: '-1:ENOTTY', // fd 100 is /dev/null now: libc's own answer
      dup3: '101',
      close_dup3: '0',
      ioctl_after_close: '-1:EBADF',
      open_missing: '-1:ENOENT',
      munmap_run: '0',
    });
    await clean();
  });

  test('memory coherence: a VMM thread’s write reaches a guest spinning on it; guest and VMM writes to one page both survive', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'vac-run-'));
    const d2 = await startDaemon({ runDir, host: { cpus: 1, symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
    try {
      const r = await runVmm(native, socketPaths(runDir).bridge, [native.probe, 'spin']);
      expect(r.stderr).toBe('');
      expect(parseLines(r.stdout)).toEqual({
        open: '3',
        set_memory: '0',
        // One KVM_RUN, as on Linux: the guest spins inside it and sees the write there (the bridge syncs a running
        // guest's memory with the VMM's every 10 ms of wall time), with no EINTR to re-enter.
        spun: 'no',
        flag_seen: '0x5a', // the second thread's write, seen by the guest at its next KVM_RUN
        guest_byte: '0x11', // the guest's write to the page
        vmm_byte: '0x22', // the VMM thread's write to the same page, not overwritten by the write-back
      });
    } finally {
      await d2.stop();
    }
  });

  test('guest RAM on first touch: a KVM_RUN touching one page of 16 MiB reads that page and writes back the one byte the guest changed; a VMM write between runs is seen', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'vac-run-'));
    const d2 = await startDaemon({ runDir, host: { cpus: 1, symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
    try {
      let lines = '';
      let child: import('node:child_process').ChildProcess | undefined;
      const done = runVmm(native, socketPaths(runDir).bridge, [native.probe, 'lazy'], {
        onSpawn: (c) => {
          child = c;
          c.stdout?.on('data', (b: Buffer) => {
            lines += b.toString();
          });
        },
      });
      const stats = (): { bytesIn: number; bytesOut: number } => {
        const s = [...d2.bridge.sessions().values()][0];
        if (s === undefined) throw new Error('no VMM session');
        return { bytesIn: s.memory.stats.bytesIn, bytesOut: s.memory.stats.bytesOut };
      };
      const traffic: Array<{ bytesIn: number; bytesOut: number }> = [];
      for (const i of [1, 2]) {
        await until(() => lines.includes(`ready${i}=`), `the VMM to be ready for KVM_RUN ${i}`);
        const before = stats();
        child?.stdin?.write('go\n');
        await until(() => lines.includes(`guest_byte${i}=`), `KVM_RUN ${i} to return`);
        const after = stats();
        traffic.push({ bytesIn: after.bytesIn - before.bytesIn, bytesOut: after.bytesOut - before.bytesOut });
      }
      child?.stdin?.end('go\n');
      const r = await done;
      expect(r.stderr).toBe('');
      expect(parseLines(r.stdout)).toMatchObject({
        set_memory: '0',
        run1: '0',
        exit1: '2', // KVM_EXIT_IO
        out1: '0x42', // the VMM's byte, written before the first KVM_RUN
        guest_byte1: '0x11', // the guest's write, in the VMM's memory when KVM_RUN returns
        run2: '0',
        out2: '0x77', // the VMM's write between the runs to the page the guest had read
      });
      // One page of the 16 MiB (all present in the VMM) read per run, and only the byte the guest changed written.
      expect(traffic).toEqual([
        { bytesIn: 4096, bytesOut: 1 },
        { bytesIn: 4096, bytesOut: 0 },
      ]);
    } finally {
      await d2.stop();
    }
  });

  test('a VMM killed with SIGKILL: rmmod is refused while it runs, then its simulated process is killed and the host is clean', async () => {
    let lines = '';
    let child: import('node:child_process').ChildProcess | undefined;
    const done = runVmm(native, socket, [native.probe, 'hold'], {
      onSpawn: (c) => {
        child = c;
        c.stdout?.on('data', (b: Buffer) => {
          lines += b.toString();
        });
      },
    });
    await until(() => lines.includes('vcpu='), 'the VMM to create its vCPU');
    expect(lines).toContain('vcpu=5');
    const refused = runControl(d.control, { cmd: 'rmmod', args: ['kvm0'] });
    expect(refused).toMatchObject({ ok: false, code: 'EWOULDBLOCK', status: 1 });
    expect(refused.error).toMatch(/^rmmod: ERROR: Module kvm0 is in use/);
    child?.kill('SIGKILL');
    expect((await done).signal).toBe('SIGKILL');
    await clean();
    expect(logs.some((l) => /probe\[\d+\]\): its process exited; its simulated process was killed/.test(l))).toBe(true);
  });

  test('no bridge: open(/dev/kvm) fails with ENODEV and a message naming the socket', async () => {
    const r = await runVmm(native, socket, [native.lwn], { env: { VAC_SOCKET: join(native.dir, 'no-such.sock') } });
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`vac-preload: cannot open /dev/kvm*: the vac bridge is not running (socket ${join(native.dir, 'no-such.sock')}: No such file or directory)`);
    expect(r.stderr).toContain('/dev/kvm: No such device');
  });

  test.skipIf(process.getuid?.() !== 0)('a user without access to /dev/kvmX gets EACCES, as on Linux (root:kvm 0660)', async () => {
    const r = await runVmm(native, socket, [native.probe], { uid: 65534, gid: 65534 });
    expect(r.stdout).toBe('open=-1:EACCES\n');
    await clean();
  });

  test('the bridge goes away: the next call fails with EIO, a new open with ENODEV; nothing hangs', async () => {
    const runDir = mkdtempSync(join(tmpdir(), 'vac-run-'));
    const d2 = await startDaemon({ runDir, host: { cpus: 1, symlinks: [['/dev/kvm0', '/dev/kvm']] }, log: () => {} });
    let lines = '';
    let child: import('node:child_process').ChildProcess | undefined;
    const done = runVmm(native, socketPaths(runDir).bridge, [native.probe, 'eio'], {
      onSpawn: (c) => {
        child = c;
        c.stdout?.on('data', (b: Buffer) => {
          lines += b.toString();
        });
      },
    });
    await until(() => lines.includes('open='), 'the VMM to open /dev/kvm');
    await d2.stop();
    child?.stdin?.end('go\n');
    const r = await done;
    expect(parseLines(r.stdout)).toEqual({ open: '3', after_bridge_gone: '-1:EIO', open_after_gone: '-1:ENODEV' });
  });
});
