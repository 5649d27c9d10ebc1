"""Demand: block and rolling interval demand from the delivered-energy register, in watts.

    d = demand.Demand(energy)               # metrology.EnergyRegisters
    d.setup(15, 1, 60)                      # interval minutes, sub-intervals (1: block), lock-out s
    d.start(t)                              # an interval from t (seconds since 2000) to its aligned end
    if t >= d.due: d.close(d.due, tier); d.start(d.due)    # billing.py does this at every boundary
    d.present_w, d.previous_w, d.max_w, d.max_time, d.cumulative_w, d.resets
    d.reset()                               # False inside the lock-out
    d.tier_max_w[i], d.tier_max_time[i]     # per TOU tier (the tier in force during the interval)

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
# - A demand reset moves the maximum into the cumulative demand (and reset_max_w), zeroes
#   the maxima (total and per tier), counts itself and is refused for `lockout_s` seconds
#   of meter time after the previous one.

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
        self._window = [0]  # the completed sub-intervals' energy (0.1 mWh), a ring
        self._wi = 0
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
        self.resets = 0
        self.reset_max_w = 0  # the maximum the last reset moved
        self.reset_time = 0
        self.now = None  # callable: the meter's time, for reset() without an argument
        self.on_change = None  # called after a reset or a clear (billing saves its state)

    def setup(self, interval_min, subs, lockout_s):
        """Take valid settings (config.validate's rule: powerup.configure applies it)."""
        self.interval_s = interval_min * 60
        self.subs = subs
        self.sub_s = self.interval_s // subs
        self.lockout_s = lockout_s
        if len(self._window) != subs:
            self._window = [0] * subs
            self._wi = 0

    # --- intervals -----------------------------------------------------------------------
    def start(self, t):
        """A sub-interval from t to the next aligned boundary, counting from the register now."""
        e = self._e
        self.start_wh = e.delivered_wh
        self.start_res = e.delivered_res
        self.start_time = t
        self.due = (t // self.sub_s + 1) * self.sub_s

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

    def watts(self, lsb):
        d = 25 * self.interval_s  # lsb * 1e-4 Wh * 3600 s/h / interval_s
        return (lsb * 9 + d // 2) // d

    def close(self, stamp, tier):
        """End the running sub-interval: compute the demand of the window, stamp a new
        maximum with `stamp` (seconds since 2000) for the total and for `tier`."""
        if self.suspended:
            return
        w = self._window
        w[self._wi] = self.energy()
        self._wi = (self._wi + 1) % len(w)
        total = 0
        for v in w:
            total += v
        dem = self.watts(total)
        self.previous_w = dem
        if dem > self.max_w:
            self.max_w = dem
            self.max_time = stamp
        if 0 <= tier < NBR_TIERS and dem > self.tier_max_w[tier]:
            self.tier_max_w[tier] = dem
            self.tier_max_time[tier] = stamp

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
        for i in range(len(w)):
            if i != self._wi:  # the oldest sub-interval leaves the window at the next close
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
    def locked(self, now):
        return self.resets > 0 and 0 <= now - self.reset_time < self.lockout_s

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
            self.tier_max_w[i] = 0
            self.tier_max_time[i] = 0
        self.resets += 1
        self.reset_time = now
        if self.on_change is not None:
            self.on_change()
        return True

    def clear(self):
        """Zero every demand register (the clear-data procedure); the interval restarts."""
        self.previous_w = self.max_w = self.max_time = 0
        self.cumulative_w = self.resets = self.reset_max_w = self.reset_time = 0
        for i in range(NBR_TIERS):
            self.tier_max_w[i] = 0
            self.tier_max_time[i] = 0
        self.restart(self.start_time)
        if self.on_change is not None:
            self.on_change()
