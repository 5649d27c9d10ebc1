"""Register-level models of the battery-backed RTC chips for the simulated board's I2C bus:
the Maxim DS3231 (address 0x68) and the NXP PCF8563 (0x51), counting in virtual time.

The simulator's bus layer matches the 7-bit address and calls ``i2c_write`` / ``i2c_read``
with the virtual time in seconds, as for the EEPROM model. A write's first byte sets the
register pointer and the bytes after it go to successive registers; a read returns
successive registers from the pointer; the pointer wraps after the last register (DS3231
0x12, PCF8563 0x0F) to 0x00.

Power: ``supply(on, now)`` is the board's 3.3 V. While it is off the chip runs on its
backup cell if one is fitted (``set_battery``); with neither it loses everything, and the
next ``supply(True, ...)`` is a first application of power: the registers take their
power-on values and the lost-time flag is set (DS3231 OSF, PCF8563 VL).

    chip = DS3231(start_s=820454400)          # as a factory leaves it: set, flag clear, cell in
    chip.i2c_write(b"\\x00", stop=False, now=0.0)
    chip.i2c_read(7, now=0.0)                 # BCD seconds .. year
    chip.supply(False, 1.0); chip.set_battery(False, 1.0); chip.supply(True, 3.0)
    chip.seconds(3.0)                         # 0: 2000-01-01 00:00:00, the power-on value
    chip.state(3.0), DS3231.from_state(d)     # for the board's board.json

Datasheet facts modelled (../shared/reference/field.md has the summary):

DS3231 (Maxim, "Extremely Accurate I2C-Integrated RTC/TCXO/Crystal")
- 0x00-0x06 seconds, minutes, hours, day (1-7), date, month/century, year, in BCD; hours
  bit 6 = 12-hour mode (bit 5 PM there, the 20-hour bit in 24-hour mode); the century bit
  (month bit 7) toggles when the year passes 99 -> 00; the day register increments at
  midnight. Writing the seconds restarts the countdown chain: the next second is a whole
  second later. 0x07-0x0D alarms (stored only), 0x0E control, 0x0F status, 0x10 aging
  offset, 0x11-0x12 temperature (read only; the model reads 25.00 C).
- Control power-on value 0x1C (EOSC 0, INTCN 1, RS2 RS1 1); with VCC the oscillator always
  runs, on VBAT only while EOSC = 0 (EOSC = 1 on battery stops it: the registers stay as
  they are and OSF is set).
- Status bit 7 OSF: set the first time power is applied and whenever the oscillator
  stops; it stays 1 until written 0 (writing 1 leaves it). Bit 3 EN32kHz is 1 at power-on;
  A1F, A2F (bits 0, 1) can only be written 0; BSY (bit 2) reads 0 here.
- Time and date at power-on: the DS3231's datasheet leaves them undefined; its DS3231M
  sibling documents 01/01/00, day 1, 00:00:00, which the model uses.

PCF8563 (NXP, "Real-time clock/calendar")
- 0x00 control_status_1 (TEST1 bit 7, STOP bit 5, TESTC bit 3), 0x01 control_status_2,
  0x02 VL_seconds (bit 7 VL), 0x03 minutes, 0x04 hours (0-23), 0x05 days, 0x06 weekdays
  (0-6, Sunday 0), 0x07 century_months (C bit 7, toggled when the year passes 99 -> 00),
  0x08 years, in BCD; 0x09-0x0C alarms (AE bit 7), 0x0D CLKOUT_control, 0x0E
  timer_control, 0x0F timer: stored only. Bits the part does not implement read 0.
- STOP = 1 stops the clock (registers static) and clears the prescaler; the first second
  after STOP returns to 0 comes 0.507813 s later.
- Reset values: control_status_1 0x08 (TESTC 1), control_status_2 0x00, VL 1 (the time
  registers themselves are undefined: the model uses 2000-01-01 00:00:00, a Saturday: 6),
  alarms 0x80 (AE 1: disabled), CLKOUT_control 0x80 (FE 1, 32.768 kHz), timer_control
  0x03, timer 0x00. The VL flag can only be cleared through the interface.

Both take a year 00 as a leap year (right for 2000-2099). Time and date values out of
range (a month 13, a BCD digit above 9) are "undefined operation" in both datasheets: the
model stops counting until they are written right.
"""

from __future__ import annotations

import datetime as _dt

_US = 1_000_000
_EPOCH = _dt.datetime(2000, 1, 1)
_CENTURY_S = (_dt.datetime(2100, 1, 1) - _EPOCH).days * 86400


def _bcd(v: int) -> int | None:
    hi, lo = v >> 4, v & 0x0F
    return None if hi > 9 or lo > 9 else hi * 10 + lo


def _to_bcd(n: int) -> int:
    return (n // 10) << 4 | n % 10


class _Chip:
    """Register file, pointer, power and the 1 Hz count shared by both parts."""

    NAME = ""
    ADDRESS = 0
    SIZE = 0  # registers
    MASKS: bytes = b""  # the bits each register implements
    TIME = 0  # the first time register
    CENTURY_REG = 0  # month register (century in bit 7)

    def __init__(self, start_s: int | None = None, battery: bool = True) -> None:
        self.regs = bytearray(self.SIZE)
        self.pointer = 0
        self.battery = battery
        self.vcc = False
        self.alive = True  # the registers are held (VCC or the cell has been there throughout)
        self.phase_us = 0  # how far into the running second the prescaler is
        self._last_us = 0
        if start_s is None:
            self._power_on_values()
        else:
            self._factory(start_s)

    # --- what a subclass says -----------------------------------------------------------
    def _power_on_values(self) -> None:
        raise NotImplementedError

    def _factory(self, start_s: int) -> None:
        raise NotImplementedError

    def _running(self) -> bool:
        raise NotImplementedError

    def _on_stop(self) -> None:
        """The oscillator stopped while the registers were held (DS3231: OSF)."""

    def _fields(self) -> tuple[int, int, int, int, int, int, int] | None:
        """(year 0-99, month, day, hour 0-23, minute, second, century bit) or None if illogical."""
        raise NotImplementedError

    def _store(self, yy: int, mo: int, d: int, hh: int, mi: int, ss: int, century: int, days_passed: int) -> None:
        raise NotImplementedError

    # --- time ---------------------------------------------------------------------------
    def _advance(self, now_us: int) -> None:
        """Count the whole seconds since the last look, as the chip's 1 Hz tick would."""
        dt = now_us - self._last_us
        self._last_us = now_us
        if dt <= 0 or not self.alive or not self._running():
            return
        total = self.phase_us + dt
        ticks, self.phase_us = divmod(total, _US)
        if ticks:
            self._add_seconds(ticks)

    def _add_seconds(self, n: int) -> None:
        f = self._fields()
        if f is None:
            return  # undefined operation: the model does not count
        yy, mo, d, hh, mi, ss, century = f
        try:
            start = _dt.datetime(2000 + yy, mo, d, hh, mi, ss)
        except ValueError:
            return  # a 31 April, a 29 February 2001: undefined too
        t0 = int((start - _EPOCH).total_seconds())
        t = t0 + n
        days_passed = (t // 86400 - t0 // 86400) % 7  # midnights, for the weekday register
        while t >= _CENTURY_S:  # 2099-12-31 23:59:59 -> 2000-01-01 00:00:00, century bit toggled
            t -= _CENTURY_S
            century ^= 1
        end = _EPOCH + _dt.timedelta(seconds=t)
        self._store(end.year - 2000, end.month, end.day, end.hour, end.minute, end.second, century, days_passed)

    def seconds(self, now: float) -> int | None:
        """The time the chip holds now, seconds since 2000-01-01 (century bit: 2100-2199),
        or None if its registers do not hold a date."""
        self._advance(_us(now))
        f = self._fields()
        if f is None:
            return None
        yy, mo, d, hh, mi, ss, century = f
        try:
            when = _dt.datetime(2000 + yy, mo, d, hh, mi, ss)
        except ValueError:
            return None
        return int((when - _EPOCH).total_seconds()) + (_CENTURY_S if century else 0)

    def registers(self, now: float) -> bytes:
        """Every register as a read from 0x00 would return it now."""
        self._advance(_us(now))
        return bytes(self.regs)

    # --- power --------------------------------------------------------------------------
    def supply(self, on: bool, now: float) -> None:
        """The board's supply (VCC) comes or goes."""
        now_us = _us(now)
        self._advance(now_us)
        was_running = self.alive and self._running()
        if on and not self.alive:  # a first application of power
            self._power_on_values()
            self.alive = True
            self.phase_us = 0
        self.vcc = on
        self._settle(was_running)

    def set_battery(self, present: bool, now: float) -> None:
        """Fit or remove the backup cell (or supercap)."""
        self._advance(_us(now))
        was_running = self.alive and self._running()
        self.battery = present
        self._settle(was_running)

    def _settle(self, was_running: bool) -> None:
        if not self.vcc and not self.battery:
            self.alive = False  # nothing holds the registers: lost
            return
        if was_running and not self._running():
            self._on_stop()

    # --- I2C slave ----------------------------------------------------------------------
    def i2c_write(self, data: bytes, stop: bool, now: float) -> bool:
        """One addressed write (address byte already matched): the register pointer, then
        data for successive registers. Always acknowledged while the chip has VCC."""
        if not self.vcc:
            return False
        self._advance(_us(now))
        if not data:
            return True
        self.pointer = data[0] % self.SIZE
        for b in data[1:]:
            self._write_reg(self.pointer, b)
            self.pointer = (self.pointer + 1) % self.SIZE
        return True

    def i2c_read(self, n: int, now: float) -> bytes | None:
        """n successive registers from the pointer (the time as of this START)."""
        if not self.vcc:
            return None
        self._advance(_us(now))
        out = bytearray()
        for _ in range(n):
            out.append(self.regs[self.pointer])
            self.pointer = (self.pointer + 1) % self.SIZE
        return bytes(out)

    def _write_reg(self, reg: int, value: int) -> None:
        self.regs[reg] = value & self.MASKS[reg]

    # --- the board's board.json ---------------------------------------------------------
    def state(self, now: float) -> dict:
        self._advance(_us(now))
        return {
            "kind": self.NAME,
            "regs": self.regs.hex(),
            "phase_us": self.phase_us,
            "battery": self.battery,
            "alive": self.alive,
        }

    @classmethod
    def from_state(cls, state: dict) -> _Chip:
        """The chip as state() left it, unpowered, at virtual time 0."""
        chip = cls()
        chip.regs[:] = bytes.fromhex(state["regs"])
        chip.phase_us = int(state["phase_us"])
        chip.battery = bool(state["battery"])
        chip.alive = bool(state["alive"]) and chip.battery
        return chip


def _us(now: float) -> int:
    return int(round(now * _US))


class DS3231(_Chip):
    NAME = "ds3231"
    ADDRESS = 0x68
    SIZE = 0x13
    # seconds .. year, alarm 1 (4), alarm 2 (3), control, status, aging, temperature MSB, LSB
    MASKS = bytes((0x7F, 0x7F, 0x7F, 0x07, 0x3F, 0x9F, 0xFF)) + bytes([0xFF] * 7)
    MASKS += bytes((0xFF, 0x8B, 0xFF, 0xFF, 0xC0))
    TIME = 0x00
    CONTROL = 0x0E
    STATUS = 0x0F
    OSF = 0x80
    EOSC = 0x80
    CONTROL_POWER_ON = 0x1C
    STATUS_POWER_ON = 0x88  # OSF, EN32kHz
    TEMPERATURE = (0x19, 0x00)  # 25.00 C

    def _power_on_values(self) -> None:
        self.regs[:] = bytes(self.SIZE)
        self.regs[3] = 0x01  # day 1
        self.regs[4] = 0x01  # date 01
        self.regs[5] = 0x01  # month 01, century 0 (year 00)
        self.regs[self.CONTROL] = self.CONTROL_POWER_ON
        self.regs[self.STATUS] = self.STATUS_POWER_ON
        self.regs[0x11], self.regs[0x12] = self.TEMPERATURE

    def _factory(self, start_s: int) -> None:
        self._power_on_values()
        self.regs[self.STATUS] = 0x08  # the time was set: OSF cleared
        self._set_time(start_s)

    def _set_time(self, t: int) -> None:
        century = 1 if t >= _CENTURY_S else 0
        when = _EPOCH + _dt.timedelta(seconds=t - century * _CENTURY_S)
        r = self.regs
        r[0], r[1], r[2] = _to_bcd(when.second), _to_bcd(when.minute), _to_bcd(when.hour)
        r[3] = when.isoweekday()  # 1 = Monday, as firmware/rtc.py numbers it
        r[4], r[5], r[6] = _to_bcd(when.day), _to_bcd(when.month) | century << 7, _to_bcd(when.year - 2000)

    def _running(self) -> bool:
        return self.vcc or (self.battery and not self.regs[self.CONTROL] & self.EOSC)

    def _on_stop(self) -> None:
        self.regs[self.STATUS] |= self.OSF

    def _hour(self) -> int | None:
        h = self.regs[2]
        if h & 0x40:  # 12-hour mode: bit 5 PM, 1-12
            v = _bcd(h & 0x1F)
            return None if v is None or not 1 <= v <= 12 else v % 12 + (12 if h & 0x20 else 0)
        return _bcd(h & 0x3F)

    def _fields(self):
        r = self.regs
        vals = (_bcd(r[6]), _bcd(r[5] & 0x1F), _bcd(r[4] & 0x3F), self._hour(), _bcd(r[1] & 0x7F), _bcd(r[0] & 0x7F))
        if any(v is None for v in vals):
            return None
        yy, mo, d, hh, mi, ss = vals  # type: ignore[misc]
        if not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mi <= 59 and ss <= 59):
            return None
        return yy, mo, d, hh, mi, ss, r[5] >> 7

    def _store(self, yy, mo, d, hh, mi, ss, century, days_passed):
        r = self.regs
        r[0], r[1] = _to_bcd(ss), _to_bcd(mi)
        if r[2] & 0x40:  # keep 12-hour mode
            h12 = hh % 12 or 12
            r[2] = 0x40 | (0x20 if hh >= 12 else 0) | _to_bcd(h12)
        else:
            r[2] = _to_bcd(hh)
        if days_passed:
            r[3] = (r[3] - 1 + days_passed) % 7 + 1 if 1 <= r[3] <= 7 else r[3]
        r[4], r[5], r[6] = _to_bcd(d), _to_bcd(mo) | century << 7, _to_bcd(yy)

    def _write_reg(self, reg: int, value: int) -> None:
        r = self.regs
        if reg == self.STATUS:  # OSF, A2F, A1F: written 0 clears, 1 leaves; EN32kHz as written
            keep = r[reg] & 0x83 & value
            r[reg] = keep | (value & 0x08)
            return
        if reg in (0x11, 0x12):
            return  # temperature: read only
        if reg == 0x00:
            self.phase_us = 0  # writing the seconds restarts the countdown chain
        super()._write_reg(reg, value)


class PCF8563(_Chip):
    NAME = "pcf8563"
    ADDRESS = 0x51
    SIZE = 0x10
    MASKS = bytes((0xA8, 0x1F, 0xFF, 0x7F, 0x3F, 0x3F, 0x07, 0x9F, 0xFF, 0xFF, 0xBF, 0xBF, 0x87, 0x83, 0x83, 0xFF))
    CONTROL1 = 0x00
    TIME = 0x02
    VL = 0x80
    STOP = 0x20
    FIRST_SECOND_US = 507_813  # after STOP goes back to 0

    def _power_on_values(self) -> None:
        self.regs[:] = bytes.fromhex("08 00 80 00 00 01 06 01 00 80 80 80 80 80 03 00")

    def _factory(self, start_s: int) -> None:
        self._power_on_values()
        self.regs[self.CONTROL1] = 0x00  # normal mode, as a driver leaves it
        self._set_time(start_s)

    def _set_time(self, t: int) -> None:
        century = 1 if t >= _CENTURY_S else 0
        when = _EPOCH + _dt.timedelta(seconds=t - century * _CENTURY_S)
        r = self.regs
        r[2], r[3], r[4] = _to_bcd(when.second), _to_bcd(when.minute), _to_bcd(when.hour)  # VL 0
        r[5], r[6] = _to_bcd(when.day), when.isoweekday() % 7  # Sunday 0
        r[7], r[8] = _to_bcd(when.month) | century << 7, _to_bcd(when.year - 2000)

    def _running(self) -> bool:
        return (self.vcc or self.battery) and not self.regs[self.CONTROL1] & self.STOP

    def _fields(self):
        r = self.regs
        vals = (_bcd(r[8]), _bcd(r[7] & 0x1F), _bcd(r[5] & 0x3F), _bcd(r[4] & 0x3F))
        vals += (_bcd(r[3] & 0x7F), _bcd(r[2] & 0x7F))
        if any(v is None for v in vals):
            return None
        yy, mo, d, hh, mi, ss = vals  # type: ignore[misc]
        if not (1 <= mo <= 12 and 1 <= d <= 31 and hh <= 23 and mi <= 59 and ss <= 59):
            return None
        return yy, mo, d, hh, mi, ss, r[7] >> 7

    def _store(self, yy, mo, d, hh, mi, ss, century, days_passed):
        r = self.regs
        r[2] = (r[2] & self.VL) | _to_bcd(ss)
        r[3], r[4], r[5] = _to_bcd(mi), _to_bcd(hh), _to_bcd(d)
        if days_passed:
            r[6] = (r[6] + days_passed) % 7
        r[7], r[8] = _to_bcd(mo) | century << 7, _to_bcd(yy)

    def _write_reg(self, reg: int, value: int) -> None:
        if reg == self.CONTROL1:
            stopped = self.regs[reg] & self.STOP
            if value & self.STOP and not stopped:
                self.phase_us = 0  # the prescaler is cleared and held
            elif stopped and not value & self.STOP:
                self.phase_us = _US - self.FIRST_SECOND_US
        super()._write_reg(reg, value)


MODELS = {DS3231.NAME: DS3231, PCF8563.NAME: PCF8563}

__all__ = ["DS3231", "MODELS", "PCF8563"]
