"""Battery-backed real-time clock chips on the I2C bus beside the EEPROM.

    import rtc
    chip = rtc.DS3231(i2c)          # Maxim DS3231 at 0x68; rtc.PCF8563(i2c): NXP PCF8563 at 0x51
    chip.datetime()                 # (year, month, day, weekday Mon=0, hh, mm, ss, 0): machine.RTC's
    chip.datetime((2026, 1, 5, 0, 8, 30, 0, 0))   # set it; clears the chip's lost-time flag
    chip.seconds()                  # seconds since 2000-01-01 00:00:00, read without allocating
    chip.lost()                     # True: the chip flags its time as untrustworthy

A chip that does not answer raises OSError (machine.I2C's own), for the caller to handle.
Nothing goes on the bus until the first call.
"""

# What each chip holds (datasheets; ../shared/reference/field.md):
# - DS3231: BCD time registers 0x00-0x06 (seconds, minutes, hours, day of week 1-7, date,
#   month with the century in bit 7, year 00-99). Hours bit 6 selects 12-hour mode (then
#   bit 5 is PM); this driver writes 24-hour mode and reads either. 0x0E control: bit 7
#   EOSC, when 1 the oscillator stops on battery (cleared here at a time set). 0x0F status:
#   bit 7 OSF, the oscillator stopped (first power, or neither VCC nor VBAT could keep it
#   going): the time is invalid until the flag is written 0. The day-of-week register is
#   the user's to number: this driver writes 1 = Monday .. 7 = Sunday.
# - PCF8563: 0x00 control_status_1 (bit 5 STOP, bit 3 TESTC: 0 for normal operation,
#   written 0 here at a time set so the clock runs), BCD time registers 0x02-0x08
#   (VL_seconds: bit 7 VL, voltage low, the clock's integrity is not guaranteed; minutes,
#   hours 0-23, days, weekdays 0-6 with Sunday 0 as the datasheet assigns them,
#   century_months with C in bit 7, years).
# - Both toggle the century bit when the years register passes 99 -> 00: set means
#   2100-2199 here. Both take 00 as a leap year, right for 2000-2099.
# The weekday datetime() returns is computed from the date (machine.RTC on rp2 does the
# same), so it is right whatever another tool wrote into the chip's weekday register.

from micropython import const

from timekeeping import days_from_2000, weekday

# Names are kept few on purpose: every new name is an interned string (a qstr) in RAM when
# the module is loaded from a .mpy, and underscore constants cost none.
_DS3231_ADDR = const(0x68)
_PCF8563_ADDR = const(0x51)

_DS_TIME = const(0x00)
_DS_CONTROL = const(0x0E)
_DS_STATUS = const(0x0F)
_DS_OSF = const(0x80)  # status bit 7
_DS_EOSC = const(0x80)  # control bit 7
_DS_12H = const(0x40)  # hours bit 6
_DS_PM = const(0x20)  # hours bit 5 in 12-hour mode

_PCF_CONTROL1 = const(0x00)
_PCF_TIME = const(0x02)
_PCF_VL = const(0x80)  # VL_seconds bit 7

_CENTURY = const(0x80)  # month register bit 7, both chips
_DAY_S = const(86400)


def _bcd(v):
    return (v >> 4) * 10 + (v & 0x0F)


class _Chip:
    """What both chips share: the bus, the register buffers, the BCD time arithmetic. Of the
    seven time registers (from `_first`), 0 seconds, 1 minutes, 2 hours, 5 month (century in
    bit 7) and 6 year sit alike on both; the date is at `_date`, the weekday at the other."""

    def __init__(self, i2c, addr, first, d):
        self.i2c = i2c
        self.addr = addr
        self._first = first  # the first time register
        self._date = d  # the date's index among the seven
        self._buf = bytearray(7)  # the seven time registers, as last read
        self._one = bytearray(1)

    def _read(self):
        self.i2c.readfrom_mem_into(self.addr, self._first, self._buf)
        return self._buf

    def _get(self, reg):
        self.i2c.readfrom_mem_into(self.addr, reg, self._one)
        return self._one[0]

    def _put(self, reg, value):
        self._one[0] = value
        self.i2c.writeto_mem(self.addr, reg, self._one)

    def _hour(self, h):
        return _bcd(h & 0x3F)

    def seconds(self):
        """Seconds since 2000-01-01 00:00:00: one 7-byte read into a kept buffer and small
        ints only (the billing boundaries call it under micropython.heap_lock() in the tests)."""
        r = self._read()
        y = 2000 + _bcd(r[6]) + (100 if r[5] & _CENTURY else 0)
        days = days_from_2000(y, _bcd(r[5] & 0x1F), _bcd(r[self._date] & 0x3F))
        return days * _DAY_S + self._hour(r[2]) * 3600 + _bcd(r[1] & 0x7F) * 60 + _bcd(r[0] & 0x7F)

    def datetime(self, dt=None):
        """machine.RTC.datetime(): read (year, month, day, weekday Mon=0, hh, mm, ss, 0), or
        set from such a tuple (its weekday is not used: the chip's is computed from the date)."""
        if dt is None:
            r = self._read()
            y = 2000 + _bcd(r[6]) + (100 if r[5] & _CENTURY else 0)
            mo, d = _bcd(r[5] & 0x1F), _bcd(r[self._date] & 0x3F)
            w = weekday(days_from_2000(y, mo, d))
            return (y, mo, d, w, self._hour(r[2]), _bcd(r[1] & 0x7F), _bcd(r[0] & 0x7F), 0)
        y, mo, d, h, m, s = dt[0], dt[1], dt[2], dt[4], dt[5], dt[6]
        if not (2000 <= y <= 2199 and 1 <= mo <= 12 and 1 <= d <= 31 and h <= 23 and m <= 59 and s <= 59):
            raise ValueError("date and time out of the chip's range")
        buf = bytearray(7)
        for i, v in ((0, s), (1, m), (2, h), (self._date, d), (5, mo), (6, y % 100)):
            buf[i] = (v // 10) << 4 | v % 10
        buf[5] |= _CENTURY if y >= 2100 else 0
        self._write(buf, weekday(days_from_2000(y, mo, d)))
        return None


class DS3231(_Chip):
    def __init__(self, i2c, addr=_DS3231_ADDR):
        super().__init__(i2c, addr, _DS_TIME, 4)

    def _hour(self, h):
        if h & _DS_12H:  # 12-hour mode: 12 AM is 0 h, 12 PM is 12 h
            return _bcd(h & 0x1F) % 12 + (12 if h & _DS_PM else 0)
        return _bcd(h & 0x3F)

    def lost(self):
        """The oscillator stopped since the flag was last cleared (OSF): the time is not to be trusted."""
        return bool(self._get(_DS_STATUS) & _DS_OSF)

    def _write(self, buf, w):
        # seconds first: writing them restarts the chip's countdown chain, so the next
        # second comes a whole second after this write; hours in 24-hour mode (bit 6 clear)
        buf[3] = w + 1  # the day register: 1 = Monday
        self.i2c.writeto_mem(self.addr, _DS_TIME, buf)
        ctl = self._get(_DS_CONTROL)
        if ctl & _DS_EOSC:  # keep the oscillator running on the battery
            self._put(_DS_CONTROL, ctl & ~_DS_EOSC)
        # the time is good again: OSF to 0, the other bits as they are (the alarm flags
        # can only be written 0, so writing their 1 back leaves them)
        self._put(_DS_STATUS, self._get(_DS_STATUS) & ~_DS_OSF)


class PCF8563(_Chip):
    def __init__(self, i2c, addr=_PCF8563_ADDR):
        super().__init__(i2c, addr, _PCF_TIME, 3)

    def lost(self):
        """VL: the supply fell too low since the flag was last cleared: the time is not to be trusted."""
        return bool(self._get(_PCF_TIME) & _PCF_VL)

    def _write(self, buf, w):
        buf[4] = (w + 1) % 7  # weekdays as the datasheet assigns them: Sunday 0
        self.i2c.writeto_mem(self.addr, _PCF_TIME, buf)  # VL (seconds bit 7) 0: the time is good again
        self._put(_PCF_CONTROL1, 0)  # STOP 0 (the clock runs), TEST1 and TESTC 0: normal mode
