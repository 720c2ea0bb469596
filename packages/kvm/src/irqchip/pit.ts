/**
 * The in-kernel i8254 PIT, Linux's `struct kvm_pit` (arch/x86/kvm/i8254.c): three channels at ports
 * 0x40-0x42, the control word at 0x43 (counter latch, read-back, access modes LSB/MSB/LSB-then-MSB, modes
 * 0-5), the 1193181 Hz input clock counted in simulated time, channel 0 raising GSI 0 in modes 0/1/4
 * (one-shot) and 2/3 (periodic, at least `min_timer_period_us` = 200 µs apart), the speaker port 0x61 (gate
 * of channel 2, its output, the refresh toggle), and KVM_REINJECT_CONTROL's reinjection of ticks the guest has
 * not yet acknowledged.
 *
 * As in KVM, only channel 0 has a timer; channels 1 and 2 are read back from their load time. BCD counting
 * is stored but not modelled, and mode 4/5's strobe is approximated as KVM does.
 *
 * @module
 */

import {
  KVM_PIT_BASE_ADDRESS,
  KVM_PIT_FLAGS_HPET_LEGACY,
  KVM_PIT_FLAGS_SPEAKER_DATA_ON,
  KVM_PIT_FREQ,
  KVM_PIT_MEM_LENGTH,
  KVM_PIT_SPEAKER_DUMMY,
  KVM_SPEAKER_BASE_ADDRESS,
  MIN_TIMER_PERIOD_US,
} from './constants.js';
import {
  assertKvmPitState,
  makeKvmPitChannelState,
  makeKvmPitState2,
  type kvm_pit_channel_state,
  type kvm_pit_state,
  type kvm_pit_state2,
} from './state/pit-state.js';
import { DeviceClock, NSEC_PER_SEC, SimTimer, mulDiv } from './time.js';

const RW_STATE_MSB = 2;
const RW_STATE_WORD0 = 3;
const RW_STATE_WORD1 = 4;
const FREQ = BigInt(KVM_PIT_FREQ);

/** What the PIT needs from its VM. */
export interface PitHooks {
  /** `kvm_set_irq(kvm, pit->irq_source_id, 0, level, false)`. */
  setIrq0(level: boolean): void;
  /** PIT → LVT0 in NMI mode (`kvm_apic_nmi_wd_deliver` on every vCPU) when `vapics_in_nmi_mode > 0`. */
  nmiWatchdog(): void;
  /** `ioapic_in_kernel(kvm)`: without it channel 0 never arms its timer. */
  ioapicInKernel(): boolean;
  /** `kthread_queue_work(pit->worker, …)`: run `work` once the current operation is over. */
  queueWork(work: () => void): void;
}

/** The PIT of one VM. */
export class KvmPit {
  readonly #hooks: PitHooks;
  readonly #clock = new DeviceClock();
  readonly #channels: [kvm_pit_channel_state, kvm_pit_channel_state, kvm_pit_channel_state];
  /** `kvm_pit_config.flags` at creation. */
  readonly speakerDummy: boolean;
  #flags = 0;
  #isPeriodic = false;
  #period = 0n;
  readonly #timer = new SimTimer();
  #reinject = false;
  #pending = 0;
  #irqAck = true;
  #workQueued = false;

  /** `kvm_create_pit(kvm, flags)` at `now`: reset, then reinjection on (KVM's default). */
  constructor(hooks: PitHooks, configFlags: number, now: bigint) {
    this.#hooks = hooks;
    this.speakerDummy = (configFlags & KVM_PIT_SPEAKER_DUMMY) !== 0;
    this.#channels = [makeKvmPitChannelState(), makeKvmPitChannelState(), makeKvmPitChannelState()];
    this.#clock.see(now);
    this.#reset(now);
    this.setReinject(true);
  }

  /** `kvm_pit_reset`. */
  #reset(now: bigint): void {
    this.#flags = 0;
    this.#channels.forEach((c, i) => {
      c.mode = 0xff;
      c.gate = i !== 2 ? 1 : 0;
      this.#loadCount(i, 0, now);
    });
    this.#resetReinject();
  }

  /** Whether ticks are reinjected (KVM_REINJECT_CONTROL). */
  get reinject(): boolean {
    return this.#reinject;
  }

  /** Ticks counted but not yet delivered and acknowledged (`pit_state.pending`). */
  get pending(): number {
    return this.#pending;
  }

  /** `kvm_pit_reset_reinject`. */
  #resetReinject(): void {
    this.#pending = 0;
    this.#irqAck = true;
  }

  /** `kvm_pit_set_reinject` (KVM_REINJECT_CONTROL): the ack and mask notifiers on GSI 0 exist only while on. */
  setReinject(reinject: boolean): void {
    if (this.#reinject === reinject) return;
    if (reinject) this.#resetReinject();
    this.#reinject = reinject;
  }

  /** The ack notifier of GSI 0 (`kvm_pit_ack_irq`), while reinjecting. */
  ackIrq(): void {
    if (!this.#reinject) return;
    this.#irqAck = true;
    if (this.#pending > 0) {
      this.#pending--;
      if (this.#pending > 0) this.#queueWork();
    }
  }

  /** The mask notifier of GSI 0 (`pit_mask_notifer`), while reinjecting: unmasking forgets old ticks. */
  maskChanged(masked: boolean): void {
    if (this.#reinject && !masked) this.#resetReinject();
  }

  #queueWork(): void {
    if (this.#workQueued) return;
    this.#workQueued = true;
    this.#hooks.queueWork(() => {
      this.#workQueued = false;
      this.#doWork();
    });
  }

  /** `pit_do_work`: pulse GSI 0 unless an injected tick still waits for its ack. */
  #doWork(): void {
    if (this.#reinject) {
      if (!this.#irqAck) return;
      this.#irqAck = false;
    }
    this.#hooks.setIrq0(true);
    this.#hooks.setIrq0(false);
    this.#hooks.nmiWatchdog();
  }

  /** `kpit_elapsed`: ns since the channel's count started. */
  #elapsed(ch: number, now: bigint): bigint {
    if (ch === 0) return this.#period === 0n ? 0n : this.#period - this.#timer.remaining(now);
    return now - (this.#channels[ch] as kvm_pit_channel_state).count_load_time;
  }

  /** Input-clock ticks since the count started (`mul_u64_u32_div(t, KVM_PIT_FREQ, NSEC_PER_SEC)`, unsigned). */
  #ticks(ch: number, now: bigint): bigint {
    return mulDiv(BigInt.asUintN(64, this.#elapsed(ch, now)), FREQ, NSEC_PER_SEC);
  }

  /** `pit_get_count`. */
  #getCount(ch: number, now: bigint): number {
    const c = this.#channels[ch] as kvm_pit_channel_state;
    const d = this.#ticks(ch, now);
    const count = BigInt(c.count);
    switch (c.mode) {
      case 0:
      case 1:
      case 4:
      case 5:
        return Number(BigInt.asUintN(16, count - d));
      case 3:
        return Number(count - ((2n * d) % count));
      default:
        return Number(count - (d % count));
    }
  }

  /** `pit_get_out`: the channel's OUT pin. */
  #getOut(ch: number, now: bigint): number {
    const c = this.#channels[ch] as kvm_pit_channel_state;
    const d = this.#ticks(ch, now);
    const count = BigInt(c.count);
    switch (c.mode) {
      case 1:
        return d < count ? 1 : 0;
      case 2:
        return d % count === 0n && d !== 0n ? 1 : 0;
      case 3:
        return d % count < (count + 1n) >> 1n ? 1 : 0;
      case 4:
      case 5:
        return d === count ? 1 : 0;
      default:
        return d >= count ? 1 : 0;
    }
  }

  /** `pit_latch_count`. */
  #latchCount(ch: number, now: bigint): void {
    const c = this.#channels[ch] as kvm_pit_channel_state;
    if (c.count_latched) return;
    c.latched_count = this.#getCount(ch, now) & 0xffff;
    c.count_latched = c.rw_mode;
  }

  /** `pit_latch_status` (NULL COUNT, bit 6, is not reported — as in KVM). */
  #latchStatus(ch: number, now: bigint): void {
    const c = this.#channels[ch] as kvm_pit_channel_state;
    if (c.status_latched) return;
    c.status = ((this.#getOut(ch, now) << 7) | (c.rw_mode << 4) | (c.mode << 1) | c.bcd) & 0xff;
    c.status_latched = 1;
  }

  /** `create_pit_timer`. */
  #createTimer(val: number, periodic: boolean, now: bigint): void {
    if (!this.#hooks.ioapicInKernel() || this.#flags & KVM_PIT_FLAGS_HPET_LEGACY) return;
    const interval = mulDiv(BigInt(val), NSEC_PER_SEC, FREQ);
    this.#timer.cancel();
    this.#period = interval;
    this.#isPeriodic = periodic;
    this.#resetReinject();
    const min = BigInt(MIN_TIMER_PERIOD_US) * 1000n;
    if (periodic && this.#period < min) this.#period = min;
    this.#timer.start(now + interval);
  }

  /** `pit_load_count`. */
  #loadCount(ch: number, value: number, now: bigint): void {
    const val = value === 0 ? 0x10000 : value;
    const c = this.#channels[ch] as kvm_pit_channel_state;
    c.count = val;
    if (ch !== 0) {
      c.count_load_time = now;
      return;
    }
    switch (c.mode) {
      case 0:
      case 1:
      case 4:
        this.#createTimer(val, false, now);
        break;
      case 2:
      case 3:
        this.#createTimer(val, true, now);
        break;
      default:
        this.#timer.cancel(); // destroy_pit_timer
    }
  }

  /** `kvm_pit_load_count`: `hpetLegacyStart` loads channel 0 without starting its timer. */
  #kvmLoadCount(ch: number, val: number, hpetLegacyStart: boolean, now: bigint): void {
    if (!hpetLegacyStart) {
      this.#loadCount(ch, val, now);
      return;
    }
    const c = this.#channels[0];
    const saved = c.mode;
    c.mode = 0xff;
    this.#loadCount(ch, val, now);
    c.mode = saved;
  }

  /** `pit_set_gate`: a rising gate restarts modes 1, 2, 3 and 5. */
  #setGate(ch: number, val: number, now: bigint): void {
    const c = this.#channels[ch] as kvm_pit_channel_state;
    if ((c.mode === 1 || c.mode === 2 || c.mode === 3 || c.mode === 5) && c.gate < val) c.count_load_time = now;
    c.gate = val;
  }

  /** Whether `port` is one of the PIT's (0x40-0x43). */
  static inRange(port: number): boolean {
    return port >= KVM_PIT_BASE_ADDRESS && port < KVM_PIT_BASE_ADDRESS + KVM_PIT_MEM_LENGTH;
  }

  /** A guest OUT to 0x40-0x43 (`pit_ioport_write`); `false` for another port. */
  ioWrite(port: number, value: number, now: bigint): boolean {
    if (!KvmPit.inRange(port)) return false;
    this.#clock.see(now);
    const val = value & 0xff;
    const addr = port & 3;
    if (addr === 3) {
      const channel = val >> 6;
      if (channel === 3) {
        for (let ch = 0; ch < 3; ch++) {
          if (val & (2 << ch)) {
            if (!(val & 0x20)) this.#latchCount(ch, now);
            if (!(val & 0x10)) this.#latchStatus(ch, now);
          }
        }
      } else {
        const s = this.#channels[channel] as kvm_pit_channel_state;
        const access = (val >> 4) & 3;
        if (access === 0) {
          this.#latchCount(channel, now);
        } else {
          s.rw_mode = access;
          s.read_state = access;
          s.write_state = access;
          s.mode = (val >> 1) & 7;
          if (s.mode > 5) s.mode -= 4;
          s.bcd = val & 1;
        }
      }
    } else {
      const s = this.#channels[addr] as kvm_pit_channel_state;
      switch (s.write_state) {
        case RW_STATE_MSB:
          this.#loadCount(addr, val << 8, now);
          break;
        case RW_STATE_WORD0:
          s.write_latch = val;
          s.write_state = RW_STATE_WORD1;
          break;
        case RW_STATE_WORD1:
          this.#loadCount(addr, s.write_latch | (val << 8), now);
          s.write_state = RW_STATE_WORD0;
          break;
        default: // RW_STATE_LSB (1), and any value SET_PIT stored
          this.#loadCount(addr, val, now);
      }
    }
    return true;
  }

  /** A guest IN from 0x40-0x43 (`pit_ioport_read`): the byte, 0 for 0x43, `undefined` for another port. */
  ioRead(port: number, now: bigint): number | undefined {
    if (!KvmPit.inRange(port)) return undefined;
    this.#clock.see(now);
    const addr = port & 3;
    if (addr === 3) return 0;
    const s = this.#channels[addr] as kvm_pit_channel_state;
    if (s.status_latched) {
      s.status_latched = 0;
      return s.status;
    }
    if (s.count_latched) {
      switch (s.count_latched) {
        case RW_STATE_MSB:
          s.count_latched = 0;
          return s.latched_count >> 8;
        case RW_STATE_WORD0:
          s.count_latched = RW_STATE_MSB;
          return s.latched_count & 0xff;
        default:
          s.count_latched = 0;
          return s.latched_count & 0xff;
      }
    }
    switch (s.read_state) {
      case RW_STATE_MSB:
        return (this.#getCount(addr, now) >> 8) & 0xff;
      case RW_STATE_WORD0:
        s.read_state = RW_STATE_WORD1;
        return this.#getCount(addr, now) & 0xff;
      case RW_STATE_WORD1:
        s.read_state = RW_STATE_WORD0;
        return (this.#getCount(addr, now) >> 8) & 0xff;
      default:
        return this.#getCount(addr, now) & 0xff;
    }
  }

  /** A guest OUT to 0x61 (`speaker_ioport_write`): bit 0 gates channel 2, bit 1 is the speaker data. */
  speakerWrite(value: number, now: bigint): void {
    this.#clock.see(now);
    if (value & 2) this.#flags |= KVM_PIT_FLAGS_SPEAKER_DATA_ON;
    else this.#flags &= ~KVM_PIT_FLAGS_SPEAKER_DATA_ON;
    this.#setGate(2, value & 1, now);
  }

  /** A guest IN from 0x61 (`speaker_ioport_read`): data, gate, channel 2's OUT (bit 5), refresh toggle (bit 4, every 2^14 ns). */
  speakerRead(now: bigint): number {
    this.#clock.see(now);
    const refresh = Number((now >> 14n) & 1n);
    return (
      ((this.#flags & KVM_PIT_FLAGS_SPEAKER_DATA_ON ? 1 : 0) << 1) |
      (this.#channels[2].gate & 0xff) |
      (this.#getOut(2, now) << 5) |
      (refresh << 4)
    ) & 0xff;
  }

  /** Whether the speaker port answers (`KVM_PIT_SPEAKER_DUMMY` at creation) and `port` is it. */
  ownsSpeakerPort(port: number): boolean {
    return this.speakerDummy && port === KVM_SPEAKER_BASE_ADDRESS;
  }

  /** When channel 0's timer fires next. */
  nextDeadline(): bigint | undefined {
    return this.#timer.deadline();
  }

  /**
   * Run channel 0's expiries due by `now` (`pit_timer_fn`), each at its own period boundary: a reinjecting PIT
   * counts every tick in `pending`; each expiry queues `pit_do_work`, which pulses GSI 0 (for a reinjecting PIT
   * only once the previous tick was acknowledged). Expiries passed in one call queue the work once, as a kthread
   * work item queued again before it ran is not queued twice — a caller wanting one pulse per tick advances to
   * each `nextDeadline()` in turn.
   */
  advance(now: bigint): void {
    this.#clock.see(now);
    const at = this.#timer.takeDue(now);
    if (at === undefined) return;
    let fired = 1n;
    if (this.#isPeriodic && this.#period > 0n) {
      fired += (now - at) / this.#period;
      this.#timer.start(at + fired * this.#period);
    }
    if (this.#reinject) this.#pending += Number(fired);
    this.#queueWork();
  }

  /** KVM_GET_PIT2 (`kvm_vm_ioctl_get_pit2`). */
  getState2(): kvm_pit_state2 {
    return makeKvmPitState2({ channels: this.#channels, flags: this.#flags });
  }

  /** KVM_GET_PIT (`kvm_vm_ioctl_get_pit`). */
  getState(): kvm_pit_state {
    return { channels: this.getState2().channels };
  }

  /** KVM_SET_PIT2 at `now` (`kvm_vm_ioctl_set_pit2`): raw copy, flags kept, every count reloaded. */
  setState2(ps: kvm_pit_state2, now: bigint): void {
    assertKvmPitState(ps, true);
    this.#clock.see(now);
    const start = !(this.#flags & KVM_PIT_FLAGS_HPET_LEGACY) && (ps.flags & KVM_PIT_FLAGS_HPET_LEGACY) !== 0;
    this.#copyChannels(ps);
    this.#flags = ps.flags >>> 0;
    for (let i = 0; i < 3; i++) this.#kvmLoadCount(i, this.#channels[i]?.count ?? 0, start && i === 0, now);
  }

  /** KVM_SET_PIT at `now` (`kvm_vm_ioctl_set_pit`): raw copy of the channels, every count reloaded. */
  setState(ps: kvm_pit_state, now: bigint): void {
    assertKvmPitState(ps, false);
    this.#clock.see(now);
    this.#copyChannels(ps);
    for (let i = 0; i < 3; i++) this.#kvmLoadCount(i, ps.channels[i]?.count ?? 0, false, now);
  }

  #copyChannels(ps: kvm_pit_state): void {
    ps.channels.forEach((c, i) => Object.assign(this.#channels[i] as kvm_pit_channel_state, makeKvmPitChannelState(c)));
  }
}
