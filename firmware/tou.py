"""Time of use: up to 4 tiers (A-D) chosen by season, day type and the time of day.

    t = tou.Tou(energy)                      # metrology.EnergyRegisters; powerup.py reads
                                             # its schedule from config.TOU_*
    t.switch(now)                            # at boot and whenever now >= t.due (billing.py)
    t.tier                                   # 0-3: A-D, the tier in force
    t.held = True                            # no valid clock: the tier stays, no switch (billing.py)
    t.tier_wh(i)                             # (delivered Wh, received Wh) of tier i
    t.delivered_wh, t.received_wh            # all four, as tuples
    t.dims(), t.calendar_size()              # ST51: the schedule as a C12.19 calendar, and
    t.calendar_into(off, n, buf, boff)       # ST54 a piece at a time (firmware/README.md)

The schedule (config.py, ids 0x40-0x53): TOU_SEASONS holds up to 4 season start dates as
(month, day) byte pairs (none: one season all year; a date before the first start belongs
to the last season); TOU_HOLIDAYS holds 3-byte holidays: (year - 2000, month, day) one
date, (0xFF, month, day) every year, (0xFE, month, day) every year "observed" (a Saturday's
on the Friday, a Sunday's on the Monday), (0xF0 + n, month, weekday) the nth (1-4) or
last (n = 5) weekday of the month, 0 Monday (config.HOLIDAY_*); TOU_SCHEDULE + 4 * season
+ day type holds that day's switch points as (hour, minute, tier) triples. Day types:
WEEKDAY (Monday-Friday), SATURDAY, SUNDAY, HOLIDAY (a holiday, whatever its weekday). A
day's season and type are worked out once per day (cached), not at every switch.

Daylight saving time (config.DST, TIME_ZONE_MIN; `t.rules(dst, zone)`): the meter's clock
keeps local standard time all year (timekeeping.py), so the load profile's intervals and
the demand intervals never skip or repeat; the schedule runs on local time, standard time
+ 1 h while DST is in force (`t.dst_at(t)`), so a 07:00 peak begins at 06:00 standard time
in summer, and a transition is a change like a switch point. North America: from the
second Sunday of March 02:00 standard time to the first Sunday of November 02:00 daylight
time (01:00 standard); EU: the last Sundays of March and October at 01:00 UTC, which is
01:00 + TIME_ZONE_MIN in standard time. A day's tier before its first switch point
is the tier of its last one (a day schedule describes a 24-hour cycle: "23:00 A" then
"07:00 B" means A overnight); a day without switch points is all tier A.

The tiers always sum to the totals: the registers count whole Wh and every Wh the total
gains goes to the tier in force, by difference at each tier change (no work per poll):
tier i = folded[i] + (total - total at the last change, if i is the tier in force).
"""

from micropython import const

import config
import timekeeping as tk

NBR_TIERS = const(4)
NBR_SEASONS = const(4)
WEEKDAY = const(0)
SATURDAY = const(1)
SUNDAY = const(2)
HOLIDAY = const(3)
EVERY_YEAR = const(0xFF)
# ST54 CALENDAR_TBL (firmware/README.md, "The TOU calendar in ST51/ST54" says where the layout comes from)
_ACTION_SEASON = const(3)  # CALENDAR_ACTION: select season n is 3 + n
_ACTION_SPECIAL = const(19)  # special schedule n is 19 + n: the meter's one special schedule, its holidays
_UNUSED = const(0xFF)  # a day schedule id: that season's day type is never used
_NEVER = const(0x3FFFFFFF)  # `due` while held: no change is scheduled (a small int on 32-bit ports)
_ACTION_DST_ON = const(1)  # CALENDAR_ACTION DST_ON / DST_OFF
_ACTION_DST_OFF = const(2)
DST_S = const(3600)  # ST53 DST_TIME_AMT: the hour daylight saving time adds


def holiday_day(h, mo, d, y):
    """The day number (from 2000) a holiday by rule (config.HOLIDAY_OBSERVED, or
    HOLIDAY_NTH + n with d the weekday) falls on in year y."""
    if h == config.HOLIDAY_OBSERVED:
        days = tk.days_from_2000(y, mo, d)
        wd = tk.weekday(days)
        return days - 1 if wd == 5 else days + 1 if wd == 6 else days
    return tk.nth_weekday(y, mo, h - config.HOLIDAY_NTH, d)


class Tou:
    def __init__(self, energy):
        self._e = energy
        self.nbr_tiers = NBR_TIERS
        self.tier = 0  # the display reads this: 0-3 for A-D
        self.current_tier = 0  # the same, by its C12.19 name
        self.season = 0
        self.day_type = WEEKDAY
        self.due = 0  # the next tier, day or season change (seconds since 2000)
        self.held = False  # the clock is invalid: the tier in force stays until a time set (billing.py)
        self.folded_del = [0] * NBR_TIERS  # Wh up to the last change
        self.folded_rec = [0] * NBR_TIERS
        self.base_del = 0  # the totals at the last change
        self.base_rec = 0
        self.seasons = []  # (month, day) starts, sorted
        self.holidays = []  # (year or EVERY_YEAR, month, day)
        self.schedules = [[] for _ in range(NBR_SEASONS * 4)]  # per season * 4 + day type
        # billing.py's Demand: its split() gets the tier ending, before a change; max_w and
        # max_time are its per-tier maxima. One attribute for the three: the instance's
        # attribute table stays at 29 slots (a 30th grows it to 47)
        self.demand = None
        self._ymd = [0, 0, 0]  # timekeeping.date_into's answer
        self._found = [0, 0, 0]  # _find's season, day type, next change
        self.time_zone_min = 0  # ST53 TIME_ZONE_OFFSET (config.TIME_ZONE_MIN): the clock's standard time - UTC
        self.dst_rule = 0  # config.DST: DST_NONE, DST_NORTH_AMERICA, DST_EU
        # the local day whose season and day type are known: day << 4 | season << 2 | day type,
        # -1 none (one attribute: the instance's attribute table is full at 29)
        self._day_key = -1
        self._day_id = bytearray(NBR_SEASONS * 4)  # ST54 day schedule id per season * 4 + day type
        self._pos = 0  # the ST54 walk: the offset reached,
        self._w_off = 0  # the window [off, end) written,
        self._w_end = 0
        self._w_buf = None  # into this buffer (None: only counting)
        self._w_boff = 0
        self._counts = [0, 0, 0]  # and the tier switches, non-recurring and recurring dates met

    # --- the schedule (powerup.py reads it from the configuration) -------------------
    def _season_of(self, mo, d):
        s = self.seasons
        if not s:
            return 0
        k = len(s) - 1  # before the first start: the last season, from the year before
        for i in range(len(s)):
            sm = s[i][0]
            if sm < mo or sm == mo and s[i][1] <= d:  # element compares: a tuple would allocate
                k = i
        return k

    def rules(self, dst, zone_min):
        """DST rule and time zone (config.DST, TIME_ZONE_MIN); also forgets the cached day
        (powerup.py calls it after setting seasons and holidays)."""
        self.dst_rule = dst
        self.time_zone_min = zone_min
        self._day_key = -1

    def dst_at(self, t):
        """DST_S if daylight saving time is in force at standard time t, else 0 (no
        allocation; the year of t is left in self._ymd[0])."""
        if not self.dst_rule:
            return 0
        ymd = self._ymd
        tk.date_into(t // tk.DAY, ymd)
        y = ymd[0]
        return DST_S if self._dst_edge(y, 0) <= t < self._dst_edge(y, 1) else 0

    def _dst_edge(self, y, end):
        """Year y's DST start (end 0) or end (end 1) in standard time, seconds since 2000."""
        if self.dst_rule == config.DST_EU:  # 01:00 UTC is 01:00 + the zone in standard time
            return tk.nth_weekday(y, 10 if end else 3, 5, 6) * tk.DAY + 3600 + self.time_zone_min * 60
        if end:  # North America: ends 02:00 daylight time, 01:00 standard
            return tk.nth_weekday(y, 11, 1, 6) * tk.DAY + 3600
        return tk.nth_weekday(y, 3, 2, 6) * tk.DAY + 7200  # begins 02:00 standard time

    def _is_holiday(self, days, y, mo, d):
        for hy, hm, hd in self.holidays:
            if hy == EVERY_YEAR or hy >= 2000:  # a date, every year or once
                if hm == mo and hd == d and (hy == EVERY_YEAR or hy == y):
                    return True
            elif hy == config.HOLIDAY_OBSERVED:  # may move into the year before or after
                for yy in range(y - 1, y + 2):
                    if holiday_day(hy, hm, hd, yy) == days:
                        return True
            elif hm == mo and holiday_day(hy, hm, hd, y) == days:
                return True
        return False

    def at(self, t):
        """(tier, season, day type, time of the next change) at t seconds since 2000."""
        tier = self._find(t)
        f = self._found
        return tier, f[0], f[1], f[2]

    def _find(self, t):
        """at() without its tuple (switch() runs in the metering loop): the tier, with the
        season, day type and time of the next change left in self._found."""
        off = self.dst_at(t)
        edge = -1  # the next DST change this year, if any
        if self.dst_rule:
            edge = self._dst_edge(self._ymd[0], 1 if off else 0)
        lt = t + off  # local time
        days = lt // tk.DAY
        minute = (lt - days * tk.DAY) // 60
        key = self._day_key
        if key >> 4 != days:
            ymd = self._ymd
            tk.date_into(days, ymd)
            y, mo, d = ymd[0], ymd[1], ymd[2]
            if self._is_holiday(days, y, mo, d):
                day_type = HOLIDAY
            else:
                wd = tk.weekday(days)
                day_type = SATURDAY if wd == 5 else SUNDAY if wd == 6 else WEEKDAY
            key = self._day_key = days << 4 | self._season_of(mo, d) << 2 | day_type
        season = key >> 2 & 3
        day_type = key & 3
        sched = self.schedules[season * 4 + day_type]
        tier = sched[-1][1] if sched else 0
        nxt = -1
        for m, tr in sched:
            if m <= minute:
                tier = tr
            elif nxt < 0:
                nxt = m
        f = self._found
        f[0] = season
        f[1] = day_type
        due = (days * tk.DAY + nxt * 60 if nxt >= 0 else (days + 1) * tk.DAY) - off  # or midnight
        if t < edge < due:  # DST begins or ends first
            due = edge
        f[2] = due
        return tier

    # --- the registers ------------------------------------------------------------------
    def fold(self):
        """Give the tier in force what the totals gained since the last change."""
        e = self._e
        t = self.tier
        self.folded_del[t] += e.delivered_wh - self.base_del
        self.folded_rec[t] += e.received_wh - self.base_rec
        self.base_del = e.delivered_wh
        self.base_rec = e.received_wh

    def switch(self, t):
        """Bring the tier, season and day type up to time t; True if the tier changed.
        While `held` (no valid time) nothing changes and no change is scheduled."""
        if self.held:
            self.due = _NEVER
            return False
        tier = self._find(t)
        f = self._found
        self.season, self.day_type, self.due = f[0], f[1], f[2]
        if tier == self.tier:
            return False
        if self.demand is not None:
            self.demand.split(self.tier)
        self.fold()
        self.tier = self.current_tier = tier
        return True

    def tier_wh(self, i):
        """(delivered Wh, received Wh) of tier i (0-3)."""
        e = self._e
        d, r = self.folded_del[i], self.folded_rec[i]
        if i == self.tier:
            d += e.delivered_wh - self.base_del
            r += e.received_wh - self.base_rec
        return d, r

    @property
    def max_w(self):
        return self.demand.tier_max_w if self.demand is not None else [0] * NBR_TIERS

    @property
    def max_time(self):
        return self.demand.tier_max_time if self.demand is not None else [0] * NBR_TIERS

    @property
    def delivered_wh(self):
        return tuple(self.tier_wh(i)[0] for i in range(NBR_TIERS))

    @property
    def received_wh(self):
        return tuple(self.tier_wh(i)[1] for i in range(NBR_TIERS))

    def clear(self):
        """Zero the tier registers (the clear-data procedure zeroes the totals too)."""
        for i in range(NBR_TIERS):
            self.folded_del[i] = 0
            self.folded_rec[i] = 0
        self.base_del = self._e.delivered_wh
        self.base_rec = self._e.received_wh
        # the totals were zeroed first: the tiers sum to them again

    # --- ST51/ST54: the schedule as a C12.19 calendar (built on a read, never per poll) ---------
    def dims(self):
        """ST51's (seasons, special schedules, tier switches, non-recurring dates, recurring
        dates), counted by the same walk that writes ST54: they cannot disagree."""
        self._walk()
        c = self._counts
        return len(self.seasons) or 1, 1 if self.holidays else 0, c[0], c[1], c[2]

    def _date(self, days, action):
        """A NON_RECURR_DATES entry: DATE (YY MM DD) + CALENDAR_CTRL."""
        ymd = self._ymd
        tk.date_into(days, ymd)
        self._emit(ymd[0] % 100, 1)
        self._emit(ymd[1], 1)
        self._emit(ymd[2], 1)
        self._emit(action, 1)
        self._counts[1] += 1

    def calendar_size(self):
        """ST51 CALENDAR_TBL_SIZE: the bytes of ST54."""
        self._walk()
        return self._pos

    def calendar_into(self, off, n, buf, boff):
        """Bytes [off, off + n) of ST54 into buf[boff:], without building the whole table
        (the largest schedule config.py allows is bigger than any packet)."""
        self._w_off = off
        self._w_end = off + n
        self._w_buf = buf
        self._w_boff = boff
        try:
            self._walk()
        finally:
            self._w_buf = None

    def _emit(self, value, size):
        """One little-endian field of ST54 at the walk's offset: written if in the window."""
        pos = self._pos
        buf = self._w_buf
        if buf is not None:
            for i in range(size):
                if self._w_off <= pos + i < self._w_end:
                    buf[self._w_boff + pos + i - self._w_off] = value >> (8 * i) & 0xFF
        self._pos = pos + size

    def _number_days(self, nbr_seasons, special):
        """Day schedule ids into self._day_id: identical days share one, numbered 0, 1, ...
        in the order season * 4 + day type first meets them; _UNUSED for days never used."""
        ids = self._day_id
        sch = self.schedules
        n = 0
        for k in range(NBR_SEASONS * 4):
            ids[k] = _UNUSED
            if k >= nbr_seasons * 4 or (k & 3 == HOLIDAY and not special):
                continue
            for j in range(k):
                if ids[j] != _UNUSED and sch[j] == sch[k]:
                    ids[k] = ids[j]
                    break
            else:
                ids[k] = n
                n += 1

    def _switch(self, minute, tier, day_id):
        """A TIER_SWITCH_RCD: TIER_SWITCH_BFLD (NEW_TIER bits 0-2, SWITCH_MIN 5-10,
        SWITCH_HOUR 11-15) and DAY_SCH_NUM."""
        self._emit(tier | (minute % 60) << 5 | (minute // 60) << 11, 2)
        self._emit(day_id, 1)
        self._counts[0] += 1

    def _walk(self):
        """Go through ST54 from its start: NON_RECURR_DATES, RECURR_DATES, TIER_SWITCHES,
        DAILY_SCHEDULE_ID_MATRIX (no ANCHOR_DATE: ST51 ANCHOR_DATE_FLAG is 0)."""
        self._pos = 0
        c = self._counts
        c[0] = c[1] = c[2] = 0
        nbr_seasons = len(self.seasons) or 1
        special = 1 if self.holidays else 0
        self._number_days(nbr_seasons, special)
        for y, mo, d in self.holidays:  # one-off holidays: DATE (YY MM DD) + CALENDAR_CTRL
            if y != EVERY_YEAR and y >= 2000:
                self._emit((y - 2000) % 100, 1)
                self._emit(mo, 1)
                self._emit(d, 1)
                self._emit(_ACTION_SPECIAL, 1)
                c[1] += 1
        yr = 0  # holidays and DST by rule: their dates this year (no day known yet: none)
        if self._day_key >= 0:
            tk.date_into(self._day_key >> 4, self._ymd)
            yr = self._ymd[0]
        if yr:
            for y, mo, d in self.holidays:
                if y < 2000 and y != EVERY_YEAR:
                    self._date(holiday_day(y, mo, d, yr), _ACTION_SPECIAL)
            if self.dst_rule:
                self._date(self._dst_edge(yr, 0) // tk.DAY, _ACTION_DST_ON)
                self._date(self._dst_edge(yr, 1) // tk.DAY, _ACTION_DST_OFF)
        for y, mo, d in self.holidays:  # every-year holidays: RDATE (MONTH bits 0-3, DAY 11-15) + CALENDAR_CTRL
            if y == EVERY_YEAR:
                self._emit(mo | d << 11, 2)
                self._emit(_ACTION_SPECIAL, 1)
                c[2] += 1
        s = self.seasons
        for i in range(len(s)):  # the season starts, every year
            self._emit(s[i][0] | s[i][1] << 11, 2)
            self._emit(_ACTION_SEASON + i, 1)
            c[2] += 1
        ids = self._day_id
        nxt = 0
        for k in range(nbr_seasons * 4):  # each day schedule once, by id, its switches by time
            day_id = ids[k]
            if day_id != nxt:
                continue  # unused, or the same as an earlier day
            nxt += 1
            sched = self.schedules[k]
            if not sched:
                self._switch(0, 0, day_id)  # no switch points: tier A all day
                continue
            if sched[0][0]:  # before the first switch point: the day's last tier (tou.py's rule)
                self._switch(0, sched[-1][1], day_id)
            for m, tier in sched:
                self._switch(m, tier, day_id)
        for i in range(nbr_seasons):  # per season: SATURDAY, SUNDAY, WEEKDAY, then the holiday schedule
            self._emit(ids[i * 4 + SATURDAY], 1)
            self._emit(ids[i * 4 + SUNDAY], 1)
            self._emit(ids[i * 4 + WEEKDAY], 1)
            if special:
                self._emit(ids[i * 4 + HOLIDAY], 1)
