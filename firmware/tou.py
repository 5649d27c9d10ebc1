"""Time of use: up to 4 tiers (A-D) chosen by season, day type and the time of day.

    t = tou.Tou(energy)                      # metrology.EnergyRegisters; powerup.py reads
                                             # its schedule from config.TOU_*
    t.switch(now)                            # at boot and whenever now >= t.due (billing.py)
    t.tier                                   # 0-3: A-D, the tier in force
    t.tier_wh(i)                             # (delivered Wh, received Wh) of tier i
    t.delivered_wh, t.received_wh            # all four, as tuples

The schedule (config.py, ids 0x40-0x51): TOU_SEASONS holds up to 4 season start dates as
(month, day) byte pairs (none: one season all year; a date before the first start belongs
to the last season); TOU_HOLIDAYS holds (year - 2000, month, day) triples, year 0xFF for
every year; TOU_SCHEDULE + 4 * season + day type holds that day's switch points as
(hour, minute, tier) triples. Day types: WEEKDAY (Monday-Friday), SATURDAY, SUNDAY,
HOLIDAY (a listed date, whatever its weekday). A day's tier before its first switch point
is the tier of its last one (a day schedule describes a 24-hour cycle: "23:00 A" then
"07:00 B" means A overnight); a day without switch points is all tier A.

The tiers always sum to the totals: the registers count whole Wh and every Wh the total
gains goes to the tier in force, by difference at each tier change (no work per poll):
tier i = folded[i] + (total - total at the last change, if i is the tier in force).
"""

from micropython import const

import timekeeping as tk

NBR_TIERS = const(4)
NBR_SEASONS = const(4)
WEEKDAY = const(0)
SATURDAY = const(1)
SUNDAY = const(2)
HOLIDAY = const(3)
EVERY_YEAR = const(0xFF)


class Tou:
    def __init__(self, energy):
        self._e = energy
        self.nbr_tiers = NBR_TIERS
        self.tier = 0  # the display reads this: 0-3 for A-D
        self.current_tier = 0  # the same, by its C12.19 name
        self.season = 0
        self.day_type = WEEKDAY
        self.due = 0  # the next tier, day or season change (seconds since 2000)
        self.folded_del = [0] * NBR_TIERS  # Wh up to the last change
        self.folded_rec = [0] * NBR_TIERS
        self.base_del = 0  # the totals at the last change
        self.base_rec = 0
        self.seasons = []  # (month, day) starts, sorted
        self.holidays = []  # (year or EVERY_YEAR, month, day)
        self.schedules = [[] for _ in range(NBR_SEASONS * 4)]  # per season * 4 + day type
        self.max_w = [0] * NBR_TIERS  # billing.py points these at the demand's per-tier maxima
        self.max_time = [0] * NBR_TIERS

    # --- the schedule (powerup.py reads it from the configuration) -------------------
    def _season_of(self, mo, d):
        s = self.seasons
        if not s:
            return 0
        k = len(s) - 1  # before the first start: the last season, from the year before
        for i in range(len(s)):
            if s[i] <= (mo, d):
                k = i
        return k

    def _is_holiday(self, y, mo, d):
        for hy, hm, hd in self.holidays:
            if hm == mo and hd == d and (hy == EVERY_YEAR or hy == y):
                return True
        return False

    def at(self, t):
        """(tier, season, day type, time of the next change) at t seconds since 2000."""
        days = t // tk.DAY
        minute = (t - days * tk.DAY) // 60
        y, mo, d = tk.date_of(days)
        season = self._season_of(mo, d)
        if self._is_holiday(y, mo, d):
            day_type = HOLIDAY
        else:
            wd = tk.weekday(days)
            day_type = SATURDAY if wd == 5 else SUNDAY if wd == 6 else WEEKDAY
        sched = self.schedules[season * 4 + day_type]
        tier = sched[-1][1] if sched else 0
        nxt = -1
        for m, tr in sched:
            if m <= minute:
                tier = tr
            elif nxt < 0:
                nxt = m
        due = days * tk.DAY + nxt * 60 if nxt >= 0 else (days + 1) * tk.DAY  # or midnight
        return tier, season, day_type, due

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
        """Bring the tier, season and day type up to time t; True if the tier changed."""
        tier, self.season, self.day_type, self.due = self.at(t)
        if tier == self.tier:
            return False
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

    def dims(self):
        """(seasons, special schedules, tier switches, non-recurring dates, recurring dates)."""
        import logread

        return logread.tou_dims(self)
