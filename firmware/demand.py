"""Demand: block and rolling interval demand from the delivered-energy register, in watts.

    d = demand.Demand(energy)               # metrology.EnergyRegisters
    d.setup(15, 1, 60)                      # interval minutes, sub-intervals (1: block), lock-out s
    d.start(t)                              # an interval from t (seconds since 2000) to its aligned end
    if t >= d.due: d.close(d.due, tier); d.start(d.due)    # billing.py does this at every boundary
    d.present_w, d.previous_w, d.max_w, d.max_time, d.cumulative_w, d.resets
    d.reset()                               # False inside the lock-out
    d.split(tier)                           # a tier switch inside the interval (tou.py calls it)
    d.tier_max_w[i], d.tier_max_time[i]     # per TOU tier: by the energy each tier saw
    d.cumulative_w, d.tier_cumulative_w[i]  # cumulative demand; continuously cumulative = it + the maximum

Demand is the average power over the interval: energy x 3600 / interval seconds, from the
register's full resolution (0.1 mWh), rounded to the watt. Block demand: one value per
interval. Rolling demand: the interval is `subs` sub-intervals and a value is computed at
the end of every sub-interval over the last `subs` of them. Boundaries are aligned to the
clock: an interval (or sub-interval) ends at a multiple of its length after midnight.
Nothing here runs per poll: energy is read by difference at the boundaries.
"""

# Rules where the standard leaves a choice (firmware/README.md has them all):
# - A partial interval (cut short by a power outage, a time change, a configuration change,
#   or begun at power-up, after a time change) is divided by the full interval length: it
#   can understate demand, never inflate it, and it competes for the maximum like any other.
# - Rolling demand keeps its sub-intervals in RAM: after a restart (power-up, time change)
#   the window starts empty and missing sub-intervals count as zero.
# - While suspended (an outage of more than 24 h, or a clock not known to be right),
#   nothing is computed: present demand reads 0 and the maxima stay as they are.
# - A demand reset moves the maximum into the cumulative demand (and reset_max_w), each
#   tier's maximum into that tier's, zeroes the maxima (total and per tier), counts itself
#   and is refused for `lockout_s` seconds after the previous one, counted on powered time
#   (the board's ticks, not the meter's clock: setting the clock back does not shorten it).
#   Across a power cut it holds: the seconds left are kept in billing's state record (saved
#   at every interval end) and go on counting at power-up, so an outage neither ends nor
#   shortens it (the seconds since the last save before the cut are counted again: the
#   lock-out can only come out longer, by at most one interval).
#   Continuously cumulative demand is the cumulative demand plus the maximum now.
# - Per-tier demand (this project's rule: ANSI C12.19 lays out a tier's maximum demand in
#   ST23 but does not say how an interval that a tier switch cuts is credited): an
#   interval's demand in tier i is the energy the tiers booked to i during the interval
#   (tou.py's registers, split at the switch to the 0.1 mWh) over the whole interval
#   length; each tier's maximum competes with those. With a switch A -> B at 07:10 in a
#   15-minute interval of constant load P, tier A's demand is P x 10/15 and tier B's
#   P x 5/15: the tiers' demands add up to the total's, as their energies do; no tier
#   is credited with power it did not bill, and it is the partial-interval rule above
#   (a tier present for part of an interval is divided by the full length). Rolling
#   demand keeps each sub-interval's energy per tier and sums a tier over the window.
#   The split of the running sub-interval is RAM: a power cut inside it gives the
#   energy before the cut to the tier in force at the power-down.

import time

from micropython import const

NBR_TIERS = const(4)
_LSB_PER_WH = const(10000)  # metrology.LSB_PER_WH


class Demand:
    def __init__(self, energy):
        self._e = energy
        self.interval_s = 900
        self.subs = 1
        self.sub_s = self.interval_s
        self.lockout_s = 60
        self._window = [0] * NBR_TIERS  # completed sub-intervals' energy per tier (0.1 mWh), a ring
        self._wi = 0  # the slot (sub-interval) the running one will take
        self._part = [0] * NBR_TIERS  # the running sub-interval's energy per tier before its last switch
        self.start_time = 0  # the running sub-interval's start and end (seconds since 2000)
        self.due = 0
        self.start_wh = 0  # the delivered register at its start
        self.start_res = 0
        self.suspended = False
        self.previous_w = 0  # the last value computed
        self.max_w = 0
        self.max_time = 0  # seconds since 2000 of the maximum's interval end, 0 if none
        self.tier_max_w = [0] * NBR_TIERS
        self.tier_max_time = [0] * NBR_TIERS
        self.cumulative_w = 0  # sum of the maxima moved by resets
        self.tier_cumulative_w = [0] * NBR_TIERS
        self.resets = 0
        self.reset_max_w = 0  # the maximum the last reset moved
        self.reset_time = 0
        self.lock_left_s = 0  # the reset lock-out's seconds left at tick _lock_ms (powered time)
        self._lock_ms = 0
        self.ticks = time.ticks_ms  # the board's ticks (billing.py sets board.clock's)
        self.now = None  # callable: the meter's time, for reset() without an argument
        self.on_change = None  # called after a reset or a clear (billing saves its state)

    def setup(self, interval_min, subs, lockout_s):
        """Take valid settings (config.validate's rule: powerup.configure applies it)."""
        self.interval_s = interval_min * 60
        self.subs = subs
        self.sub_s = self.interval_s // subs
        self.lockout_s = lockout_s
        if self.lock_left_s > lockout_s:
            self.lock_left_s = lockout_s  # a shorter lock-out set: it applies now
        if len(self._window) != subs * NBR_TIERS:
            self._window = [0] * (subs * NBR_TIERS)
            self._wi = 0

    # --- intervals -----------------------------------------------------------------------
    def start(self, t):
        """A sub-interval from t to the next aligned boundary, counting from the register now."""
        e = self._e
        self.start_wh = e.delivered_wh
        self.start_res = e.delivered_res
        self.start_time = t
        self.due = (t // self.sub_s + 1) * self.sub_s
        p = self._part
        for i in range(NBR_TIERS):
            p[i] = 0

    def forget(self):
        """Empty the rolling window (after a restart missing sub-intervals count as 0)."""
        w = self._window
        for i in range(len(w)):
            w[i] = 0
        self._wi = 0

    def restart(self, t):
        """Start afresh at t, the rolling window empty."""
        self.forget()
        self.start(t)

    def energy(self):
        """Delivered energy in the running sub-interval, 0.1 mWh."""
        e = self._e
        return (e.delivered_wh - self.start_wh) * _LSB_PER_WH + e.delivered_res - self.start_res

    def split(self, tier):
        """A tier switch: the running sub-interval's energy so far, less what earlier
        switches booked, goes to `tier` (the tier in force until now)."""
        p = self._part
        n = self.energy()
        for v in p:
            n -= v
        if 0 <= tier < NBR_TIERS:
            p[tier] += n

    def watts(self, lsb):
        d = 25 * self.interval_s  # lsb * 1e-4 Wh * 3600 s/h / interval_s
        return (lsb * 9 + d // 2) // d

    def close(self, stamp, tier):
        """End the running sub-interval (its energy since the last split is `tier`'s):
        compute the demand of the window, total and per tier, stamp each new maximum with
        `stamp` (seconds since 2000). True if a maximum changed."""
        if self.suspended:
            return False
        self.split(tier)
        w, p = self._window, self._part
        base = self._wi * NBR_TIERS
        for i in range(NBR_TIERS):
            w[base + i] = p[i]
        self._wi = (self._wi + 1) % self.subs
        new = False
        total = 0
        for i in range(NBR_TIERS):
            e = 0
            for k in range(i, len(w), NBR_TIERS):
                e += w[k]
            total += e
            dem = self.watts(e)
            if dem > self.tier_max_w[i]:
                self.tier_max_w[i] = dem
                self.tier_max_time[i] = stamp
                new = True
        dem = self.watts(total)
        self.previous_w = dem
        if dem > self.max_w:
            self.max_w = dem
            self.max_time = stamp
            new = True
        return new

    def resume(self, t):
        self.suspended = False
        self.restart(t)

    # --- what the display and the optical port read ---------------------------------------
    @property
    def present_w(self):
        """The demand of the interval in progress so far (the energy since its start over
        the whole interval length: it grows to the value the interval will close with)."""
        if self.suspended:
            return 0
        total = self.energy()
        w = self._window
        skip = self._wi * NBR_TIERS  # the oldest sub-interval leaves the window at the next close
        for i in range(len(w)):
            if not skip <= i < skip + NBR_TIERS:
                total += w[i]
        return self.watts(total)

    @property
    def max_kw_x1000(self):
        return self.max_w  # kW with three decimals is watts

    @property
    def cont_cumulative_w(self):
        return self.cumulative_w + self.max_w

    def maximum(self, tier=-1):
        """(watts, seconds since 2000) of the maximum: the total for tier -1."""
        if tier < 0:
            return self.max_w, self.max_time
        return self.tier_max_w[tier], self.tier_max_time[tier]

    # --- reset ------------------------------------------------------------------------------
    def locked(self, now=None):
        """Inside the reset lock-out (powered time: `now`, the meter's time, is not used)."""
        return self.lock_left() > 0

    def lock_left(self):
        """Seconds of the reset lock-out left, counted down on the board's ticks. Called at
        least every billing.RECHECK_S while it runs, far inside the ticks' wrap."""
        left = self.lock_left_s
        if left:
            gone = time.ticks_diff(self.ticks(), self._lock_ms) // 1000
            if gone > 0:
                left = left - gone if gone < left else 0
                self.lock_left_s = left
                self._lock_ms = time.ticks_add(self._lock_ms, gone * 1000)
        return left

    def reset(self, now=None):
        """Demand reset: False (nothing done) inside the lock-out after the previous one."""
        if now is None:
            now = self.now() if self.now is not None else 0
        if self.locked(now):
            return False
        self.cumulative_w += self.max_w
        self.reset_max_w = self.max_w
        self.max_w = 0
        self.max_time = 0
        for i in range(NBR_TIERS):
            self.tier_cumulative_w[i] += self.tier_max_w[i]
            self.tier_max_w[i] = 0
            self.tier_max_time[i] = 0
        self.resets += 1
        self.reset_time = now
        self.lock_left_s = self.lockout_s
        self._lock_ms = self.ticks()
        if self.on_change is not None:
            self.on_change()
        return True

    def clear(self):
        """Zero every demand register (the clear-data procedure); the interval restarts."""
        self.previous_w = self.max_w = self.max_time = 0
        self.cumulative_w = self.resets = self.reset_max_w = self.reset_time = self.lock_left_s = 0
        for i in range(NBR_TIERS):
            self.tier_cumulative_w[i] = 0
            self.tier_max_w[i] = 0
            self.tier_max_time[i] = 0
        self.restart(self.start_time)
        if self.on_change is not None:
            self.on_change()
