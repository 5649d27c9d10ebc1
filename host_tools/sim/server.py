"""The simulated board's virtual hardware and its one clock.

The firmware's bus objects (boards/sim/board.py) send ops over a Unix socket; this
module answers them from the models: the ADE7953 on SPI with its CS, reset and IRQ
pins, the 24LC EEPROM on I2C, the HT1621 on three GPIOs, the optical UART on a
pseudo-terminal, the seal plug and the CF1 output.

Virtual time only moves here: when the firmware sleeps (up to what the board allows:
the end of `run()`, the real-time pace, or a pending power cut) and by the time each bus
transfer takes. Between `run()` calls a board at speed 0 is frozen but still wakes the
firmware for optical-port bytes, so a host tool can talk to it without timers expiring.
"""

from __future__ import annotations

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
from host_tools.sim.source import Source

W = simwire()
TICKS_MASK = (1 << 30) - 1
EPOCH_2000 = 946684800
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
        self.lcd = HT1621()
        self.optical = Pty()
        self._pacer = PacedWriter(self.optical) if optical_pacing else None
        self.optical_rx = bytearray()
        self.optical_tx_log = bytearray()
        self.optical_baud = 9600
        self.seal_inserted = False
        self.rtc_battery = rtc_battery
        self.rtc_offset_s = rtc_start  # RTC seconds since 2000 = offset + virtual seconds
        self.powered = False
        self.cut_at_us: int | None = None
        self.cut_on_write = False
        self.cut_after_i2c_bytes: int | None = None  # cut the next EEPROM write after this many bytes
        # (page writes to let by, hold-up us, (lo, hi): only page writes at lo <= address < hi count)
        self.sag_on_write: tuple[int, int, tuple[int, int]] | None = None
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
        self.mcu_resets.append((self.vt_us / 1e6, name))
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

    def rtc_seconds(self) -> int:
        return self.rtc_offset_s + self.vt_us // 1_000_000

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
        self.cut_at_us = None
        self.cut_on_write = False
        self.cut_after_i2c_bytes = None
        self.sag_on_write = None
        self.source.line_live = True
        self._apply_source()
        self.ade.power_up()
        self.lcd.power_on()
        if not self.rtc_battery:
            self.rtc_offset_s = -(self.vt_us // 1_000_000)  # a volatile RTC restarts at 2000-01-01
        self.optical_rx.clear()
        self._reported = (0, 0)

    def sag(self, hold_up_us: int) -> None:
        """The line fails now: the ADE7953 raises SAG (if enabled), the supply holds up
        hold_up_us, then the power is cut."""
        self.source.line_live = False
        self._apply_source()
        self.ade.raise_sag()
        self.cut_at_us = self.vt_us + hold_up_us

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
        self.eeprom.power_cut(self.vt_us / 1e6)
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
                self.rtc_seconds() & 0xFFFFFFFF,
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
            return data
        if code == W.OP_UART_WRITE:
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

    def _i2c_target(self, addr: int) -> EEPROM24 | None:
        if self.eeprom_present and addr == 0x50:
            return self.eeprom
        return None

    def _i2c_write(self, addr: int, stop: bool, data: bytes) -> bytes:
        dev = self._i2c_target(addr)
        n = self.cut_after_i2c_bytes
        if n is not None and dev is not None and stop and len(data) > 2 and n <= len(data):
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
        if ok and stop and len(data) > 2 and self.sag_on_write is not None:
            skip, hold_us, (lo, hi) = self.sag_on_write  # the sag comes as this page's cycle starts
            if lo <= (data[0] << 8 | data[1]) < hi:
                self.sag_on_write = (skip - 1, hold_us, (lo, hi)) if skip else None
                if not skip:
                    self.sag(hold_us)
        if ok and stop and len(data) > 2 and self.cut_on_write:
            # cut in the middle of the write cycle that just started
            self.advance_to(self.vt_us + int(dev.write_cycle_s * 1e6 / 2))
            self.cut()
            raise PowerCut()
        return bytes([W.I2C_STATUS_ACK if ok else W.I2C_STATUS_NAK])

    def _i2c_read(self, addr: int, n: int) -> bytes:
        self.spend(W.I2C_US_OVERHEAD + W.I2C_US_PER_BYTE * (n + 1))
        dev = self._i2c_target(addr)
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
        cv = self.cv
        while True:
            self.poll_optical()
            if self.new_event() or self.vt_us >= deadline:
                return
            limit = self.time_limit()
            if limit > self.vt_us:
                target = min(deadline, limit)
                if self.cut_at_us is not None and target >= self.cut_at_us:
                    self.advance_to(self.cut_at_us)
                    self.cut()
                    raise PowerCut()
                if self.wdt_armed() and target >= self.wdt_due_us:
                    self.advance_to(self.wdt_due_us)
                    self.mcu_reset(W.RESET_WATCHDOG, "watchdog")
                self.advance_to(target)
                continue
            self.sleeping = True
            cv.notify_all()
            cv.wait(0.002 if self.speed > 0 else 0.02)
            self.sleeping = False
            if not self.powered or self.closed or self.vm_generation != gen:
                raise PowerCut()

    def vm_gone(self) -> None:
        with self.cv:
            self.vm_generation += 1
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
