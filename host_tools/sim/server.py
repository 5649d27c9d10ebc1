"""The simulated board's virtual hardware and its one clock.

The firmware's bus objects (boards/sim/board.py) send ops over a Unix socket; this
module answers them from the models: the ADE7953 on SPI with its CS, reset and IRQ
pins, the 24LC EEPROM on I2C, the RTC chip (DS3231 or PCF8563, host_tools/sim/rtc.py) on
the same bus, the HT1621 on three GPIOs, the optical UART on a pseudo-terminal, the seal
plug and the CF1 output. The MCU's own RTC (machine.RTC on the board) rides in every reply
header.

Virtual time only moves here: when the firmware sleeps (up to what the board allows:
the end of `run()`, the real-time pace, or a pending power cut) and by the time each bus
transfer takes. Between `run()` calls a board at speed 0 is frozen but still wakes the
firmware for optical-port bytes, so a host tool can talk to it without timers expiring.

A real client is never outrun (DESIGN.md principle 3). The firmware's sleeps carry the
instant D (virtual ms) at which its earliest optical-port timer that runs on the client's
silence fires (c1218.Link.deadline(): a partial packet's 500 ms, the echo window, the 2 s
ACK timeout and its resends, the 6 s channel timeout or the Wait service's time while a
session is open); a sleep without it keeps the last one told. The host records the
virtual and wall-clock time of the optical traffic (the firmware's UART writes, and its
UART reads that returned bytes). D counts from an origin (v0, wall0) among them, and
virtual time may not reach D before wall0 + (D - v0) of real time: the client has had,
in its own time, all the silence the timer allows it. Until then a sleep may take
virtual time freely up to D - GUARD_US and, beyond that, only at the client's real pace
(v0 + wall time since wall0). Otherwise time runs as fast as the speed and run() allow,
at any speed (at speed 0 a run() over D waits in real time), and catches up afterwards
at speed > 0. The firmware also wakes at D, so the timer acts on time.

The origin (`origin()`) is the traffic seen when the firmware first told D (the traffic
that started that timer). A D told again keeps it (an unchanged D, or one that comes
back after an earlier timer fired: the channel timeout after a partial packet was
dropped), so traffic that did not restart the timer (stray bytes, a dropped packet, the
meter's NAK) does not move it. That matters once virtual time has run ahead of the
client: the latest traffic's virtual time is then far past the timer's start, and
counting from it would expire the timer early in real time. When virtual time has not
run ahead of real time since that anchor (speed 0 between run() calls, where all
traffic comes at one virtual instant; or while held), the latest traffic is the origin.

Bus time (`spend()`) is not held back: a burst of transfers between two sleeps (an
EEPROM save: about 5 ms a page) can carry virtual time past where a sleep was held. The
guard window (GUARD_US, 250 ms, far more than any burst between two sleeps) and the
real-time pace inside it keep that from bringing D early: a crossing could only come
early by the burst (a few ms). Every crossing of a pending D before its real-time
instant is counted (`early_crossings`, the largest shortfall in `early_max_s`) so a
benchmark can show there are none. A pending power cut (the supply's hold-up after a
sag) is not held for a client: the board dies then whatever the port is doing. A power
cut, a power-up and a new firmware connection forget D and the traffic.
"""

from __future__ import annotations

import math
import socket
import struct
import threading
import time
from collections.abc import Callable
from pathlib import Path

from host_tools.repo import simwire
from host_tools.sim.ade7953 import ADE7953
from host_tools.sim.eeprom import EEPROM24
from host_tools.sim.ht1621 import HT1621
from host_tools.sim.ptys import PacedWriter, Pty
from host_tools.sim.rtc import MODELS as RTC_MODELS
from host_tools.sim.source import Source

W = simwire()
TICKS_MASK = (1 << 30) - 1
GUARD_US = 250_000  # before a client-silence deadline, virtual time runs at most at real pace
EPOCH_2000 = 946684800
# What the official rp2 port's RTC reads after a power-up: ports/rp2/main.c starts the
# always-on timer at timeutils_seconds_since_epoch(2021, 1, 1, 0, 0, 0) before the soft-reset
# loop (a soft reset keeps the time, a power-up or hard reset restarts it there).
RP2_POWER_ON_S = 662774400  # 2021-01-01 00:00:00 in seconds since 2000
RTC_KINDS = ("ds3231", "pcf8563", "volatile", "battery")
_REPLY = struct.Struct("<HIIIBH")


class PowerCut(Exception):
    """The board lost power: the firmware connection ends here."""


class McuReset(Exception):
    """The MCU reset (its watchdog, machine.reset()): this VM's connection ends here, a new
    VM starts main.py; the metering chip, the EEPROM and the RTC chip keep their power."""


class SoftReset(Exception):
    """machine.soft_reset(): this VM ends, a new one starts main.py; not a hardware reset (the
    watchdog runs on, the reset cause stays), and the chips keep their power."""


# How long a firmware may run without any bus call before the watchdog counts wall time:
# virtual time moves only on sleeps and bus transfers, but a real MCU that computes for
# its timeout without feeding is reset all the same.
WDT_POLL_S = 0.2


class VirtualHardware:
    """Models, virtual clock and the op dispatcher. All state is guarded by `cv`."""

    def __init__(
        self,
        state_dir: Path,
        seed: int,
        rtc_start: int,
        rtc_battery: bool,
        optical_pacing: bool,
        ade_options: dict,
        rtc: str = "battery",
        rtc_chip_state: dict | None = None,
    ) -> None:
        self.cv = threading.Condition(threading.RLock())
        self.vt_us = 0
        self.run_target_us = 0
        self.speed = 0.0
        self._rt_anchor: tuple[float, int] | None = None
        self.source = Source()
        self.ade = ADE7953(seed=seed, **ade_options)
        self.eeprom = EEPROM24(str(state_dir / "eeprom.bin"), seed=seed)
        self.eeprom_present = True
        self.rtc_present = True  # False: the RTC chip does not answer on the bus (a fault)
        self.lcd = HT1621()
        self.optical = Pty()
        self._pacer = PacedWriter(self.optical) if optical_pacing else None
        self.optical_rx = bytearray()
        self.optical_tx_log = bytearray()
        self.optical_baud = 9600
        self.seal_inserted = False
        if rtc not in RTC_KINDS:
            raise ValueError(f"rtc must be one of {', '.join(RTC_KINDS)}, not {rtc!r}")
        self.rtc_kind = rtc
        # the RTC chip on the I2C bus, if the board has one; kept state (board.json) if it
        # is the same part, else one set at the factory to rtc_start with its cell fitted
        self.rtc_chip = None
        if rtc in RTC_MODELS:
            model = RTC_MODELS[rtc]
            if rtc_chip_state is not None and rtc_chip_state.get("kind") == rtc:
                self.rtc_chip = model.from_state(rtc_chip_state)
            else:
                self.rtc_chip = model(start_s=rtc_start, battery=rtc_battery)
        # the MCU's RTC: a battery only on an "battery" board (a chip board's MCU is a plain one)
        self.rtc_battery = rtc_battery if rtc == "battery" else False
        self.rtc_offset_s = rtc_start  # MCU RTC seconds since 2000 = offset + virtual seconds
        self.powered = False
        self.cut_at_us: int | None = None
        self.cut_on_write = False
        self.cut_after_i2c_bytes: int | None = None  # cut the next EEPROM write after this many bytes
        # (page writes to let by, hold-up us, (lo, hi): only page writes at lo <= address < hi count)
        self.sag_on_write: tuple[int, int, tuple[int, int]] | None = None
        self.sag_on_read: tuple[int, int, tuple[int, int]] | None = None  # the same for reads
        self.on_cut: Callable[[], None] | None = None
        # machine.soft_reset(): the board starts a new VM ("MPY: soft reboot"); outside the lock
        self.on_soft_reset: Callable[[], None] | None = None
        # the firmware owns the USB console (OP_CONSOLE): console bytes wake its sleep, and a
        # ">>> " on the console is its own REPL's, not MicroPython's
        self.console_owned = False
        self.console_waiting: Callable[[], int] | None = None  # bytes the VM has not read yet
        self.sleeping = False
        self.closed = False
        self.vm_generation = 0  # bumped when a VM dies or reconnects: its pending requests end
        self.connected = False
        self.hello_count = 0
        self.ops = 0
        # the MCU's watchdog (machine.WDT): armed by the firmware, reset on expiry
        self.wdt_timeout_us = 0  # 0: not armed (a hardware reset disarms it)
        self.wdt_due_us = 0
        self.wdt_held = False  # fed by a timer (the REPL after m.stop())
        self.wdt_last_wall = time.monotonic()  # the firmware's last bus call or reply
        self.in_sleep = False  # the firmware waits in OP_SLEEP (it is not computing)
        self.mcu_cause = W.RESET_POWER_ON  # what machine.reset_cause() reports
        self.mcu_resets: list[tuple[float, str]] = []  # (virtual s, "watchdog" | "reset")
        self.on_mcu_reset: Callable[[], None] | None = None  # SimBoard: a new VM runs main.py
        self.inject: str | None = None  # SimBoard.inject_fault(): "poll" or "hang"
        # the longest stretch between two feeds (or arming and the first feed), in virtual
        # and in wall time: tests/bench/watchdog.py sets them to 0 and reads them per step
        self.wdt_fed_us = 0
        self.wdt_fed_wall = 0.0
        self.wdt_longest_us = 0
        self.wdt_longest_wall = 0.0
        self._fault_once = False
        self._pins = {W.PIN_ADE_CS: 1, W.PIN_LCD_CS: 1, W.PIN_LCD_WR: 1, W.PIN_LCD_DATA: 1}
        self._reported = (0, 0)  # (optical bytes, flags) the firmware last saw
        # a real client is never outrun (module docstring)
        self.silence_us: int | None = None  # the firmware's earliest client-silence deadline (vt)
        self.traffic: tuple[int, float] | None = None  # (vt_us, monotonic) of the last optical traffic
        self.anchor: tuple[int, float] | None = None  # the traffic silence_us counts from
        self._anchors: dict[int, tuple[int, float]] = {}  # every pending deadline told: its anchor
        self.held = False  # a sleep is held right now for a client's real time
        self.holds = 0  # sleeps that were held at least once
        self.early_crossings = 0  # bus time took vt over a pending deadline before its real time
        self.early_max_s = 0.0  # the largest such shortfall, in real seconds
        self._apply_source()

    # ---- clock ---------------------------------------------------------------------
    def advance_to(self, t_us: int) -> None:
        dt = t_us - self.vt_us
        if dt <= 0:
            return
        seconds = dt / 1e6
        self.source.advance(seconds)
        if self.powered:
            self.ade.advance(seconds)
        self.vt_us = t_us

    def spend(self, us: int) -> None:
        """A bus transfer takes time; a pending power cut or watchdog reset may fall inside it."""
        target = self.vt_us + us
        if self.cut_at_us is not None and target >= self.cut_at_us:
            self.advance_to(self.cut_at_us)
            self.cut()
            raise PowerCut()
        if self.wdt_armed() and target >= self.wdt_due_us:
            self.advance_to(self.wdt_due_us)
            self.mcu_reset(W.RESET_WATCHDOG, "watchdog")
        d = self.silence_us
        if d is not None and self.vt_us < d <= target:
            opens = self.client_time(d)
            if opens is not None:  # not held back (module docstring): counted, never expected
                self.early_crossings += 1
                self.early_max_s = max(self.early_max_s, opens - time.monotonic())
        self.advance_to(target)

    # ---- the MCU's watchdog and resets ---------------------------------------------------
    def wdt_armed(self) -> bool:
        return self.wdt_timeout_us > 0 and not self.wdt_held

    def _wdt(self, v: int) -> None:
        if v == W.WDT_HOLD:
            self.wdt_held = True
        elif v == W.WDT_FEED:
            if self.wdt_timeout_us:
                self.wdt_due_us = self.vt_us + self.wdt_timeout_us
                now = time.monotonic()
                self.wdt_longest_us = max(self.wdt_longest_us, self.vt_us - self.wdt_fed_us)
                self.wdt_longest_wall = max(self.wdt_longest_wall, now - self.wdt_fed_wall)
                self.wdt_fed_us, self.wdt_fed_wall = self.vt_us, now
        else:  # machine.WDT(timeout=v): armed (again) from now
            self.wdt_timeout_us = v * 1000
            self.wdt_due_us = self.vt_us + self.wdt_timeout_us
            self.wdt_held = False
            self.wdt_fed_us, self.wdt_fed_wall = self.vt_us, time.monotonic()

    def mcu_reset(self, cause: int, name: str) -> None:
        """The MCU resets now: the VM is replaced (SimBoard.on_mcu_reset, called by the server
        once this lock is released), the watchdog is disarmed, its UART FIFO is lost; the
        chips, the EEPROM and the line keep going. Raises McuReset."""
        self.mcu_cause = cause
        self.wdt_timeout_us = 0
        self.wdt_held = False
        if not self.rtc_battery:  # the rp2 port starts its RTC again at every hardware reset
            self.rtc_offset_s = RP2_POWER_ON_S - self.vt_us // 1_000_000
        self.mcu_resets.append((self.vt_us / 1e6, name))
        self.forget_client()  # a new firmware: no port timer pending
        self.optical_rx.clear()
        self._reported = (0, 0)
        self.console_owned = False
        self.vm_generation += 1  # whatever the old VM waited for ends now
        self.cv.notify_all()
        raise McuReset()

    def wdt_wall_expired(self) -> bool:
        """The firmware ran (no bus call, not asleep) for its watchdog timeout of wall time."""
        return (
            self.powered
            and self.connected
            and self.wdt_armed()
            and not self.in_sleep
            and time.monotonic() - self.wdt_last_wall > self.wdt_timeout_us / 1e6
        )

    # ---- a real client is never outrun (module docstring) -----------------------------
    def on_traffic(self) -> None:
        self.traffic = (self.vt_us, time.monotonic())

    def forget_client(self) -> None:
        """A power cut, a power-up, a new firmware: no timer pending, no traffic seen."""
        self.silence_us = None
        self.traffic = None
        self.anchor = None
        self._anchors.clear()

    def set_silence(self, d: int | None) -> None:
        """The firmware's earliest client-silence deadline, as a sleep told it (module
        docstring: which traffic it counts from)."""
        if d is None:
            self.silence_us = None
            self.anchor = None
            self._anchors.clear()
            return
        if d == self.silence_us:
            return  # the same timer: later traffic (a stray byte, the meter's NAK) did not restart it
        self.silence_us = d
        anchor = self._anchors.get(d)
        if anchor is None:
            anchor = self.traffic  # a timer just (re)started: by the traffic just seen
            if anchor is not None:
                vt = self.vt_us
                self._anchors = {k: a for k, a in self._anchors.items() if k > vt}
                self._anchors[d] = anchor
        self.anchor = anchor

    def origin(self) -> tuple[int, float] | None:
        """(vt_us, monotonic) the pending deadline counts from: its anchor, or the latest
        traffic if virtual time has not run ahead of real time since the anchor (at speed 0
        between run() calls, or while held: then the latest is the client's due)."""
        a, t = self.anchor, self.traffic
        if a is None or t is None:
            return a
        return t if t[1] - t[0] / 1e6 >= a[1] - a[0] / 1e6 else a

    def client_time(self, d: int) -> float | None:
        """The monotonic instant before which virtual time may not reach d (the client has
        not yet had d - v_origin of real silence), or None if it may now."""
        o = self.origin()
        if o is None or self.cut_at_us is not None:
            return None
        opens = o[1] + (d - o[0]) / 1e6
        return opens if time.monotonic() < opens else None

    def client_limit(self) -> int | None:
        """How far a sleep may take virtual time for the client's sake, or None (no bound)."""
        d = self.silence_us
        if d is None or self.vt_us >= d or self.client_time(d) is None:
            return None
        o = self.origin()
        assert o is not None
        paced = o[0] + int((time.monotonic() - o[1]) * 1e6)  # the client's own pace
        return min(d - 1, max(d - GUARD_US, paced))

    def time_limit(self) -> int:
        """How far a sleeping firmware may take virtual time right now."""
        limit = self.run_target_us
        if self.cut_at_us is not None:
            limit = max(limit, self.cut_at_us)
        if self.speed > 0 and self._rt_anchor is not None:
            wall0, vt0 = self._rt_anchor
            limit = max(limit, vt0 + int((time.monotonic() - wall0) * self.speed * 1e6))
        return limit

    def set_speed(self, speed: float) -> None:
        with self.cv:
            self.speed = speed
            self._rt_anchor = (time.monotonic(), self.vt_us)
            self.cv.notify_all()

    def mcu_rtc_seconds(self) -> int:
        """The MCU's own RTC (machine.RTC on the board), seconds since 2000."""
        return self.rtc_offset_s + self.vt_us // 1_000_000

    def rtc_seconds(self) -> int | None:
        """The board's time-keeping RTC now: the chip's time if it has one (None if its
        registers hold no date), else the MCU's."""
        if self.rtc_chip is not None:
            return self.rtc_chip.seconds(self.vt_us / 1e6)
        return self.mcu_rtc_seconds()

    def set_rtc_battery(self, present: bool) -> None:
        """Fit or remove the backup cell of the board's time-keeping RTC."""
        if self.rtc_kind == "volatile":
            if present:
                raise ValueError("a volatile RTC (a plain Pico's) has no battery to fit")
            return
        if self.rtc_chip is not None:
            self.rtc_chip.set_battery(present, self.vt_us / 1e6)
        else:
            self.rtc_battery = present

    def rtc_chip_state(self) -> dict | None:
        """The RTC chip's registers and power for board.json, as if the board were unplugged
        now (the next start finds it on its cell, or lost without one)."""
        if self.rtc_chip is None:
            return None
        now = self.vt_us / 1e6
        if self.powered:
            self.rtc_chip.supply(False, now)
        return self.rtc_chip.state(now)

    # ---- inputs --------------------------------------------------------------------
    def _apply_source(self) -> None:
        self.ade.set_inputs(**self.source.pin_inputs())

    def set_load(self, **kw) -> None:
        with self.cv:
            self.source.set_load(**kw)
            self._apply_source()
            self.cv.notify_all()

    def flags(self) -> int:
        f = 0
        if self.powered and self.ade.irq_asserted:
            f |= W.FLAG_ADE_IRQ
        if self.seal_inserted:
            f |= W.FLAG_SEAL_PLUG
        f |= W.FLAG_CF1  # idle high; pulses are counted by the model, not sampled
        return f

    def new_event(self) -> bool:
        rx, fl = self._reported
        if len(self.optical_rx) > rx or self.flags() != fl:
            return True
        # console bytes wake a firmware that owns the console for as long as they wait
        # (level, not edge: the relay's bytes reach the VM's terminal a moment after it
        # says so, and a wake that came too early would otherwise be the only one)
        return self.console_owned and self.console_waiting is not None and self.console_waiting() > 0

    def console_input(self) -> None:
        """The console relay forwarded bytes to the VM: a sleeping firmware looks again."""
        with self.cv:
            self.cv.notify_all()

    def poll_optical(self) -> None:
        data = self.optical.read()
        if data:
            self.optical_rx += data

    # ---- power ---------------------------------------------------------------------
    def power_on(self) -> None:
        self.powered = True
        self.mcu_cause = W.RESET_POWER_ON
        self.wdt_timeout_us = 0
        self.wdt_held = False
        self.inject = None
        self.forget_client()
        self.cut_at_us = None
        self.cut_on_write = False
        self.cut_after_i2c_bytes = None
        self.sag_on_write = None
        self.sag_on_read = None
        self.source.line_live = True
        self._apply_source()
        self.ade.power_up()
        self.lcd.power_on()
        if not self.rtc_battery:  # the MCU's RTC without a battery restarts as the rp2 port starts it
            self.rtc_offset_s = RP2_POWER_ON_S - self.vt_us // 1_000_000
        if self.rtc_chip is not None:
            self.rtc_chip.supply(True, self.vt_us / 1e6)
        self.optical_rx.clear()
        self._reported = (0, 0)

    def sag(self, hold_up_us: int) -> None:
        """The line fails now: the supply holds up hold_up_us from now, then the power is
        cut. The ADE7953 sees its voltage gone and raises SAG by itself (if the firmware
        enabled it) after its detection delay: SAGCYC half cycles below SAGLVL."""
        self.source.line_live = False
        self._apply_source()
        self.cut_at_us = self.vt_us + hold_up_us

    def sag_now(self, hold_up_us: int) -> None:
        """The SAG warning lands now (as a write cycle starts: power_off(sag_at_write=k)):
        the line failed one worst-case detection delay D ago, and the supply holds up
        hold_up_us from that failure, so the cut comes hold_up_us - D from now (at once if
        that is not positive: the supply died before the chip could warn). The line stops
        now (what it carried meanwhile is metered and must be saved too: no kinder)."""
        d = self.ade.sag_delay_max_s()
        self.source.line_live = False
        self._apply_source()
        if d is None:  # no detection configured: no warning, the line fails now
            self.cut_at_us = self.vt_us + hold_up_us
            return
        self.ade.raise_sag()
        self.cut_at_us = self.vt_us + max(0, hold_up_us - round(d * 1e6))

    def _chip_event_us(self) -> int | None:
        """Virtual time of the chip's next self-timed flag (a sag being counted), or None."""
        if not self.powered:
            return None
        s = self.ade.next_event_s()
        return None if s is None else self.vt_us + max(1, math.ceil(s * 1e6))

    def cut(self) -> None:
        """Power is gone now: the EEPROM tears a page in flight, the VM dies."""
        if not self.powered:
            return
        self.powered = False
        self.cut_at_us = None
        self.cut_on_write = False
        self.cut_after_i2c_bytes = None
        self.sag_on_write = None
        self.wdt_timeout_us = 0
        self.forget_client()
        self.sag_on_read = None
        self.eeprom.power_cut(self.vt_us / 1e6)
        if self.rtc_chip is not None:
            self.rtc_chip.supply(False, self.vt_us / 1e6)  # on its cell now, if it has one
        self.ade.power_down()
        self.source.line_live = False
        self._apply_source()
        if self.on_cut is not None:
            self.on_cut()
        self.cv.notify_all()

    # ---- ops -----------------------------------------------------------------------
    def header(self, payload: bytes) -> bytes:
        rx = len(self.optical_rx)
        fl = self.flags()
        self._reported = (rx, fl)
        if self._fault_once:  # SimBoard.inject_fault("poll"): this reply makes the call raise
            self._fault_once = False
            fl |= W.FLAG_FAULT
        return (
            _REPLY.pack(
                len(payload),
                (self.vt_us // 1000) & TICKS_MASK,
                self.vt_us & TICKS_MASK,
                self.mcu_rtc_seconds() & 0xFFFFFFFF,
                fl,
                min(rx, 0xFFFF),
            )
            + payload
        )

    def op(self, code: int, p: bytes, gen: int = 0) -> bytes | None:
        """Apply one op; return the reply payload for a synchronous op, None if posted."""
        if not self.powered:
            raise PowerCut()
        if self.cut_at_us is not None and self.vt_us >= self.cut_at_us:
            self.cut()
            raise PowerCut()
        self.ops += 1
        if code == W.OP_PIN:
            self._pin(p[0], p[1])
            return None
        if code == W.OP_SPI:
            if self.inject is not None:
                kind, self.inject = self.inject, None
                if kind == "hang":  # the firmware never comes back from this transfer
                    if not self.wdt_timeout_us:
                        raise ValueError("inject_fault('hang') with no watchdog armed")
                    self.advance_to(max(self.vt_us, self.wdt_due_us))
                    self.mcu_reset(W.RESET_WATCHDOG, "watchdog")
                self._fault_once = True
            self.spend(W.SPI_US_PER_BYTE * (len(p) - 1))
            return self.ade.spi_exchange(p[1:])
        if code == W.OP_SLEEP:
            if len(p) >= 8:  # the firmware's client-silence deadline, on the ms tick it fires
                s = int.from_bytes(p[4:8], "little")
                self.set_silence(None if s == W.SLEEP_NO_SILENCE else (self.vt_us // 1000 + s) * 1000)
            self._sleep(int.from_bytes(p[0:4], "little"), gen)
            return b""
        if code == W.OP_SYNC:
            return b""
        if code == W.OP_I2C_WRITE:
            return self._i2c_write(p[0], bool(p[1]), p[2:])
        if code == W.OP_I2C_READ:
            return self._i2c_read(p[0], p[1] | p[2] << 8)
        if code == W.OP_UART_READ:
            self.poll_optical()
            n = min(p[0] | p[1] << 8, len(self.optical_rx))
            data = bytes(self.optical_rx[:n])
            del self.optical_rx[:n]
            if n:
                self.on_traffic()
            return data
        if code == W.OP_UART_WRITE:
            self.on_traffic()
            self.optical_tx_log += p
            if len(self.optical_tx_log) > 65536:
                del self.optical_tx_log[:-32768]
            if self._pacer is not None:
                self._pacer.send(bytes(p))
            else:
                self.optical.write(bytes(p))
            return None
        if code == W.OP_UART_BAUD:
            self.optical_baud = int.from_bytes(p[0:4], "little")
            if self._pacer is not None:
                self._pacer.baud = self.optical_baud
            return None
        if code == W.OP_RTC_SET:
            self.rtc_offset_s = int.from_bytes(p[0:4], "little") - self.vt_us // 1_000_000
            return None
        if code == W.OP_HELLO:
            self.hello_count += 1
            return bytes((self.mcu_cause,))
        if code == W.OP_WDT:
            self._wdt(int.from_bytes(p[0:4], "little"))
            return None
        if code == W.OP_CONSOLE:
            self.console_owned = bool(p[0])
            return None
        if code == W.OP_RESET:
            if p[:1] == bytes((W.SOFT_RESET,)):
                self.optical_rx.clear()  # the VM's UART object goes; the watchdog, the cause stay
                self._reported = (0, 0)
                self.console_owned = False
                self.vm_generation += 1
                self.cv.notify_all()
                raise SoftReset()
            self.mcu_reset(W.RESET_WATCHDOG, "reset")  # an RP2040 resets through its watchdog
        raise ValueError(f"unknown sim op 0x{code:02x}")

    def _pin(self, pin: int, level: int) -> None:
        pins = self._pins
        old = pins.get(pin)
        pins[pin] = level
        if pin >= W.PIN_LCD_CS:
            if pin <= W.PIN_LCD_DATA:
                self.lcd.set_pins(pins[W.PIN_LCD_CS], pins[W.PIN_LCD_WR], pins[W.PIN_LCD_DATA])
            return
        if pin == W.PIN_ADE_CS:
            if old == 1 and level == 0:
                self.ade.spi_select()
            elif old == 0 and level == 1:
                self.ade.spi_deselect()
        elif pin == W.PIN_ADE_RESET:
            self.ade.set_reset_pin(level)

    def _i2c_target(self, addr: int):
        if self.eeprom_present and addr == 0x50:
            return self.eeprom
        chip = self.rtc_chip
        if chip is not None and self.rtc_present and addr == chip.ADDRESS:
            return chip
        return None

    def _i2c_write(self, addr: int, stop: bool, data: bytes) -> bytes:
        dev = self._i2c_target(addr)
        ee = dev is self.eeprom  # the power-cut and sag hooks below aim at EEPROM page writes
        n = self.cut_after_i2c_bytes
        if n is not None and ee and stop and len(data) > 2 and n <= len(data):
            # The supply dies after the n-th byte (memory address bytes count): with fewer than
            # all of them no STOP comes and the part programs nothing; with all of them the
            # write cycle has just started, and the cut tears its page.
            self.spend(W.I2C_US_OVERHEAD + W.I2C_US_PER_BYTE * (n + 1))
            dev.i2c_write(data[:n], n == len(data), self.vt_us / 1e6)
            self.cut()
            raise PowerCut()
        self.spend(W.I2C_US_OVERHEAD + W.I2C_US_PER_BYTE * (len(data) + 1))
        if dev is None:
            return bytes([W.I2C_STATUS_NAK])
        now = self.vt_us / 1e6
        ok = dev.i2c_write(data, stop, now)
        if ok and ee and stop and len(data) > 2 and self.sag_on_write is not None:
            skip, hold_us, (lo, hi) = self.sag_on_write  # the sag comes as this page's cycle starts
            if lo <= (data[0] << 8 | data[1]) < hi:
                self.sag_on_write = (skip - 1, hold_us, (lo, hi)) if skip else None
                if not skip:
                    self.sag_now(hold_us)
        if ok and ee and stop and len(data) > 2 and self.cut_on_write:
            # cut in the middle of the write cycle that just started
            self.advance_to(self.vt_us + int(dev.write_cycle_s * 1e6 / 2))
            self.cut()
            raise PowerCut()
        return bytes([W.I2C_STATUS_ACK if ok else W.I2C_STATUS_NAK])

    def _i2c_read(self, addr: int, n: int) -> bytes:
        dev = self._i2c_target(addr)
        if self.sag_on_read is not None and dev is self.eeprom and n:
            skip, hold_us, (lo, hi) = self.sag_on_read  # the warning comes as this read starts
            if lo <= dev.pointer < hi:
                self.sag_on_read = (skip - 1, hold_us, (lo, hi)) if skip else None
                if not skip:
                    self.sag_now(hold_us)
        self.spend(W.I2C_US_OVERHEAD + W.I2C_US_PER_BYTE * (n + 1))
        data = dev.i2c_read(n, self.vt_us / 1e6) if dev is not None else None
        if data is None:
            return bytes([W.I2C_STATUS_NAK])
        return bytes([W.I2C_STATUS_ACK]) + data

    def _sleep(self, ms: int, gen: int) -> None:
        self.in_sleep = True
        try:
            self._sleep_until(self.vt_us + ms * 1000, gen)
        finally:
            self.in_sleep = False

    def _sleep_until(self, deadline: int, gen: int) -> None:
        if self.silence_us is not None and self.vt_us < self.silence_us < deadline:
            deadline = self.silence_us  # the firmware wakes when its port's timer fires
        cv = self.cv
        held = False
        while True:
            self.poll_optical()
            if self.new_event() or self.vt_us >= deadline:
                return
            limit = self.time_limit()
            client = self.client_limit()  # None while a power cut is pending: it is not held
            if client is not None and client < min(deadline, limit):
                # held for the client: up to where its own time allows, then wait a little
                self.held = True
                if not held:
                    held = True
                    self.holds += 1
                event = self._chip_event_us()  # a sag counted meanwhile still lands on time
                if event is not None and event < client:
                    client = event
                if self.wdt_armed() and client >= self.wdt_due_us:
                    self.advance_to(self.wdt_due_us)
                    self.mcu_reset(W.RESET_WATCHDOG, "watchdog")
                self.advance_to(client)
            elif limit > self.vt_us:
                target = min(deadline, limit)
                event = self._chip_event_us()  # the IRQ pin falls on time, not at the step's end
                if event is not None and event < target:
                    target = event
                if self.cut_at_us is not None and target >= self.cut_at_us:
                    self.advance_to(self.cut_at_us)
                    self.cut()
                    raise PowerCut()
                if self.wdt_armed() and target >= self.wdt_due_us:
                    self.advance_to(self.wdt_due_us)
                    self.mcu_reset(W.RESET_WATCHDOG, "watchdog")
                self.advance_to(target)
                if target < limit:
                    continue  # the deadline or the chip's event: look again at once
                # as far as run() or the real-time pace allows for now: let real time pass
                # (at speed > 0 an immediate retry would spin, holding the lock, in steps of
                # microseconds until the deadline, and run() would never see the board asleep)
            self.sleeping = True
            cv.notify_all()
            cv.wait(0.002 if self.speed > 0 or self.held else 0.02)
            self.sleeping = False
            self.held = False
            if not self.powered or self.closed or self.vm_generation != gen:
                raise PowerCut()

    def vm_gone(self) -> None:
        with self.cv:
            self.vm_generation += 1
            self.forget_client()
            self.console_owned = False
            self.cv.notify_all()

    def close(self) -> None:
        with self.cv:
            self.closed = True
            self.cv.notify_all()
        if self._pacer is not None:
            self._pacer.close()
        self.optical.close()


class Server:
    """Accepts the firmware's connections and serves the newest: a board.make() after a
    reboot, or a second one typed at the REPL, replaces the one before."""

    def __init__(self, hw: VirtualHardware, path: str) -> None:
        self.hw = hw
        self.path = path
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(path)
        self._sock.listen(4)
        self._sock.settimeout(0.1)
        self._conn: socket.socket | None = None
        self._stop = False
        self.errors: list[str] = []
        self._threads: list[threading.Thread] = []
        self._thread = threading.Thread(target=self._accept, name="sim-accept", daemon=True)
        self._thread.start()
        self._watch_thread = threading.Thread(target=self._watch, name="sim-watchdog", daemon=True)
        self._watch_thread.start()

    def _watch(self) -> None:
        """The watchdog in wall time: a firmware that computes (no bus call, not asleep) for
        its whole timeout is reset as a real MCU would be (virtual time does not move then)."""
        hw = self.hw
        while not self._stop:
            time.sleep(WDT_POLL_S)
            with hw.cv:
                if not hw.wdt_wall_expired():
                    continue
                try:
                    hw.mcu_reset(W.RESET_WATCHDOG, "watchdog")
                except McuReset:
                    pass
            if hw.on_mcu_reset is not None and not self._stop:
                hw.on_mcu_reset()  # the old VM stopped first, then its connection
            self.drop()

    def drop(self) -> None:
        """Forget the current connection (its VM was killed or replaced)."""
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            self.hw.vm_gone()  # whatever the previous connection waited for ends now
            self.drop()
            self._conn = conn
            with self.hw.cv:
                gen = self.hw.vm_generation
            t = threading.Thread(target=self._run, args=(conn, gen), name="sim-hardware", daemon=True)
            self._threads = [x for x in self._threads if x.is_alive()] + [t]
            t.start()

    def _run(self, conn: socket.socket, gen: int) -> None:
        try:
            self._serve(conn, gen)
        except PowerCut:
            pass
        except McuReset:
            # outside the lock: stop this VM before its connection closes (it must not act on
            # the hang-up), then start another
            if self.hw.on_mcu_reset is not None and not self._stop:
                self.hw.on_mcu_reset()
        except SoftReset:
            if self.hw.on_soft_reset is not None and not self._stop:
                self.hw.on_soft_reset()
        except (OSError, ValueError, IndexError) as exc:
            # a VM killed by a power cut or a reboot just leaves; anything else is a fault
            if not self._stop and conn is self._conn and self.hw.powered and not isinstance(exc, OSError):
                self.errors.append(repr(exc))
        finally:
            with self.hw.cv:
                if conn is self._conn:
                    self.hw.connected = False
                self.hw.cv.notify_all()
            conn.close()

    def _serve(self, conn: socket.socket, gen: int) -> None:
        hw = self.hw
        buf = bytearray()
        op_pin = W.OP_PIN
        with hw.cv:
            hw.connected = True
        while not self._stop:
            chunk = conn.recv(65536)
            if not chunk:
                return
            buf += chunk
            pos = 0
            replies = []
            with hw.cv:  # one lock per batch: posted ops and the call they ride with
                if gen != hw.vm_generation:
                    return
                hw.wdt_last_wall = time.monotonic()
                while len(buf) - pos >= 3:
                    code = buf[pos]
                    plen = buf[pos + 1] | buf[pos + 2] << 8
                    end = pos + 3 + plen
                    if len(buf) < end:
                        break
                    if code == op_pin and hw.powered:  # the hot path: LCD bit-banging
                        hw._pin(buf[pos + 3], buf[pos + 4])
                        pos = end
                        continue
                    reply = hw.op(code, bytes(buf[pos + 3 : end]), gen)
                    pos = end
                    if reply is not None:
                        replies.append(hw.header(reply))
            del buf[:pos]
            if replies:
                conn.sendall(b"".join(replies))
                hw.wdt_last_wall = time.monotonic()  # the firmware computes from here

    def close(self) -> None:
        self._stop = True
        self.drop()
        try:
            self._sock.close()
        except OSError:
            pass
        self._thread.join(timeout=2)
        self._watch_thread.join(timeout=2)
        for t in self._threads:
            t.join(timeout=2)
