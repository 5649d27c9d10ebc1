"""The meter's clock: the board's RTC as seconds since 2000, kept honest across power cuts.

    clk = timekeeping.MeterClock(board, status)
    clk.start(t, valid, now_ms)   # boot (powerup.py decides t and valid from the RTC)
    t = clk.read(now_ms)          # the RTC now; clk.jump != 0 if someone moved it meanwhile
    t = clk.now(now_ms)           # the count since the last read (no RTC access, no allocation)
    clk.set(t, now_ms)            # set the RTC: the clock is valid (ST3 CLOCK_ERROR cleared)
    clk.rtc_lost(), clk.read_rtc()  # boot only (powerup.py): the chip's lost-time flag, its reading
    y, mo, d, hh, mi, ss = timekeeping.civil(t)
    timekeeping.weekday(t // timekeeping.DAY)   # 0 Monday .. 6 Sunday
    timekeeping.nth_weekday(2027, 3, 2, 6)      # the second Sunday of March 2027, a day number

Time is an integer count of seconds since 2000-01-01 00:00:00, the meter's local standard
time all year: daylight saving time (config.DST) is applied on top by tou.py for the TOU
schedule and the LCD only, so the clock, the load profile and demand never skip or repeat.
The civil-date arithmetic is done here, not with time.localtime, because the ports
disagree on the epoch (1970 on the unix port, 2000 on the RP2040).
"""

# The RTC is the authority. It is read at boot, when a time is set and at every billing
# boundary (an interval end, a tier switch, at least once a minute); between reads the
# meter counts seconds on the board's clock, so a poll never touches the RTC
# (machine.RTC.datetime() allocates a tuple). A read that differs from the count by more
# than JUMP_S seconds is a time change made behind the meter's back (a tool writing the
# RTC directly): `jump` says by how much. The power-up rules are in powerup.py.
#
# The RTC is the board's: a battery-backed chip (firmware/rtc.py: DS3231, PCF8563) or the
# MCU's own machine.RTC (board.rtc_chip says which). An RTC that lost its time is never
# written at boot: the meter counts on from the last known time with `offset` (meter time
# = RTC + offset), so a chip keeps its lost-time flag, and ST3 LOW_BATTERY with it, until
# a time set writes it. An RTC that stops answering is not a crash: a read at a boundary
# returns the count (the board clock carries the time), and when the chip answers again
# the count goes on from where it is (a new offset, not a jump).

import time

from micropython import const

import status

DAY = const(86400)
JUMP_S = const(2)  # an RTC further than this from the count was changed behind our back
EARLIEST_VALID = const(757382400)  # 2024-01-01: an RTC reading earlier was never set
# Why the clock is invalid (`MeterClock.cause`; the data of the CLOCK_ERROR event)
LOST_FLAG = const(1)  # the RTC chip flags its time lost (DS3231 OSF, PCF8563 VL): its backup failed
LOST_EARLIER = const(2)  # the RTC read earlier than the last known time (no battery-backed time)
LOST_NO_ANSWER = const(3)  # the RTC chip did not answer on the I2C bus
LOST_NEVER_SET = const(4)  # a first boot on an RTC reading before 2024


def days_from_2000(y, m, d):
    """Days from 2000-01-01 to y-m-d (proleptic Gregorian)."""
    if m <= 2:
        y -= 1
        m += 12
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * (m - 3) + 2) // 5 + d - 730426


def date_into(days, out):
    """out[0], out[1], out[2] = year, month, day of a day number counted from 2000-01-01.
    The metering loop's callers (TOU, the LCD) keep `out`: a tuple would be an allocation."""
    z = days + 730425  # days from 0000-03-01 (H. Hinnant's civil_from_days)
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    mo = mp + 3 if mp < 10 else mp - 9
    out[0] = yoe + era * 400 + (1 if mo <= 2 else 0)
    out[1] = mo
    out[2] = doy - (153 * mp + 2) // 5 + 1


def date_of(days):
    """(year, month, day) of a day number counted from 2000-01-01."""
    out = [0, 0, 0]
    date_into(days, out)
    return out[0], out[1], out[2]


def weekday(days):
    """0 Monday .. 6 Sunday (2000-01-01 was a Saturday)."""
    return (days + 5) % 7


def nth_weekday(y, mo, n, wd):
    """Day number (from 2000-01-01) of the nth weekday wd (0 Monday .. 6 Sunday) of month mo
    of year y, n = 1-4; n = 5 the last one (DST rules and holidays by rule: tou.py)."""
    if n == 5:
        last = days_from_2000(y + 1 if mo == 12 else y, mo % 12 + 1, 1) - 1
        return last - (weekday(last) - wd) % 7
    first = days_from_2000(y, mo, 1)
    return first + (wd - weekday(first)) % 7 + 7 * (n - 1)


def seconds(y, mo, d, hh=0, mi=0, ss=0):
    return days_from_2000(y, mo, d) * DAY + hh * 3600 + mi * 60 + ss


def civil(t):
    """(year, month, day, hour, minute, second) of t seconds since 2000."""
    days = t // DAY
    r = t - days * DAY
    y, mo, d = date_of(days)
    return y, mo, d, r // 3600, r // 60 % 60, r % 60


class MeterClock:
    """The board's RTC seen through the board clock (see the module docstring)."""

    SIZE = 8  # storage's `extra`: the time of every register record (pack_into, unpack_from)

    def __init__(self, board, status_flags):
        self._rtc = board.rtc
        self._rtc_seconds = getattr(board.rtc, "seconds", None)  # the simulated board's cheap read
        self._ticks = board.clock
        self._status = status_flags
        self.battery_backed = bool(getattr(board, "rtc_battery_backed", False))
        self.valid = False
        self.begun = False  # start() has run: the count means something
        self.jump = 0  # the last read's surprise: RTC minus count, 0 when within JUMP_S
        self._anchor_s = 0
        self._anchor_ms = board.clock.ticks_ms()
        self.last_known = 0  # the newest register record's time stamp (unpack_from)
        self.offset = 0  # meter time = RTC + offset; not 0 only while the RTC has lost its time
        self.rtc_down = False  # the last RTC access failed (no answer): the count carries the time
        self.cause = 0  # why the clock is invalid (LOST_*), 0 when it is not known to be

    def read_rtc(self):
        """The RTC's own reading in seconds since 2000 (the chips' seconds() allocates nothing;
        machine.RTC.datetime() does: boot and boundaries only). Raises OSError."""
        if self._rtc_seconds is not None:
            return self._rtc_seconds()
        dt = self._rtc.datetime()  # machine.RTC order: y, mo, d, weekday, hh, mi, ss, subseconds
        return seconds(dt[0], dt[1], dt[2], dt[4], dt[5], dt[6])

    def rtc_lost(self):
        """True if the RTC flags its own time as lost (a chip's OSF / VL); machine.RTC has no
        such flag. Raises OSError."""
        lost = getattr(self._rtc, "lost", None)
        return bool(lost()) if lost is not None else False

    def write_rtc(self, t):
        y, mo, d, hh, mi, ss = civil(t)
        self._rtc.datetime((y, mo, d, weekday(t // DAY), hh, mi, ss, 0))

    def now(self, now_ms=None):
        """Seconds since 2000: the last RTC read plus whole seconds of board clock since."""
        if now_ms is None:
            now_ms = self._ticks.ticks_ms()
        return self._anchor_s + time.ticks_diff(now_ms, self._anchor_ms) // 1000

    def read(self, now_ms):
        """Read the RTC, anchor the count on it and return the meter's time; sets `jump`.
        An RTC that does not answer leaves the count as it runs."""
        count = self.now(now_ms)
        try:
            raw = self.read_rtc()
        except OSError:
            self.rtc_down = True
            self.jump = 0
            return count
        if self.rtc_down:  # it answers again: the count goes on from where it is
            self.rtc_down = False
            self.offset = count - raw
        t = raw + self.offset
        d = t - count
        if self.offset and (d > JUMP_S or d < -JUMP_S):
            # set behind the meter's back while the meter counted on from the last known
            # time: the RTC's own reading is the time now
            self.offset = 0
            t = raw
            d = t - count
        self.jump = d if d > JUMP_S or d < -JUMP_S else 0
        self._anchor_s = t
        self._anchor_ms = now_ms
        return t

    def start(self, t, valid, now_ms):
        """Count from t (the RTC's reading, or what it was set to) at now_ms."""
        self._anchor_s = t
        self._anchor_ms = now_ms
        self.jump = 0
        self.begun = True
        self.mark(valid)

    def mark(self, valid):
        """The clock is (not) known to be right: ST3 CLOCK_ERROR follows."""
        self.valid = valid
        if valid:
            self._status.clear(status.CLOCK_ERROR)
        else:
            self._status.set(status.CLOCK_ERROR)

    def set(self, t, now_ms):
        """Set the RTC to t (seconds since 2000), which clears a chip's lost-time flag; the
        clock is valid from now on. An RTC that does not answer keeps the count's time only
        (until the next power cut)."""
        try:
            self.write_rtc(t)
            self.offset = 0
            self.rtc_down = False
        except OSError:
            self.rtc_down = True
        self.cause = 0
        self.start(t, True, now_ms)

    def pack_into(self, buf, off):
        t = self.now() if self.begun else 0  # 0: no time known (a record written during boot)
        for i in range(8):
            buf[off + i] = (t >> (8 * i)) & 0xFF if i < 4 else 0
        buf[off + 4] = 1 if self.valid else 0

    def unpack_from(self, buf, off):
        t = buf[off] | buf[off + 1] << 8 | buf[off + 2] << 16 | buf[off + 3] << 24
        if t > self.last_known:
            self.last_known = t
