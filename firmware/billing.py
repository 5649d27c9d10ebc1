"""Billing: the meter clock, demand, time of use, the load profile and the event log together.

    b = billing.Billing(meter)        # after meter.storage; meter.metrology.energy is read
    b.boot()                          # after storage.restore(): power down and up (powerup.py)
    b.tick(now_ms)                    # every poll: one tick comparison unless a boundary is due
    b.set_time(seconds_since_2000)    # a time set (logs the old and the new time)
    b.demand_reset()                  # False inside the lock-out
    b.clock, b.demand, b.tou, b.load_profile, b.events

Nothing is counted per poll: every register here is a difference of the energy registers
(delivered and received Wh, 0.1 mWh residue) taken at boundaries. Boundaries (demand
sub-intervals, load-profile intervals, tier switches, and a clock check at least every
RECHECK_S) are scheduled on the board clock from the RTC's reading; at each one the RTC
is read again, so an interval ends at the first poll whose RTC reading has reached its
end, and that poll's energy (the second before the reading) belongs to the interval
that ends.

The state record (storage.STATE_START: a storage.Ring of 244-byte records in 256-byte
slots; a cut tears at most the record in flight) holds what must survive a power cut
besides the energy registers, laid out by LAYOUT below. It is written at every
load-profile interval end, demand interval end (or new rolling maximum), tier switch,
demand reset, time set, configuration change and at boot. Each register record also
carries the time it was written (storage's `extra`, if storage offers it): the sag
warning's save then stamps the power-down time to the second.
"""

# Rules for a time set (set_time, or an RTC moved behind the meter's back, found at the
# next clock check); the power-up rules are in powerup.py:
# - Log TIME_OLD (stamped with the old time, data the new) and TIME_NEW (the reverse).
# - A change that stays inside the running demand sub-interval does not end it; one that
#   stays inside the running load-profile interval does not end it either (the interval
#   is flagged CLOCK_CHANGED). Otherwise demand ends its interval (partial, stamped with
#   the old time) and starts a partial one at the new time with the rolling window empty;
#   the load profile records the interval at its aligned end with CLOCK_CHANGED | PARTIAL
#   and starts one at the new time (a forward change's skipped intervals are filled with
#   CLOCK_CHANGED entries while they fit in the open block). A backward change also flags
#   CLOCK_BACKWARD the interval it cuts and the one it begins (or the one it stays in).
# - The clock is valid from then on; a suspended demand resumes at the new time, and time
#   of use, held on the tier in force while the clock was invalid, follows the clock again.

import sys
import time

from micropython import const

import config
import demand
import events
import loadprofile
import status
import storage
import timekeeping as tk
import tou

RECHECK_S = const(60)  # the RTC is read at least this often (a change made behind our back)
STATE = const(244)  # the state record's payload: 256-byte slots, four pages
STATE_START = getattr(storage, "STATE_START", 0x0A00)  # the layout's spare 1.5 KiB
STATE_LENGTH = getattr(storage, "STATE_LENGTH", 0x0600)
_KIND_STATE = const(0x54)  # "T"
CLOCK_VALID = const(1)  # state flags
SUSPENDED = const(2)
UNKNOWN = const(0xFFFFFFFF)  # an outage of unknown length, in event data

# The state record, little-endian unsigned: part (0 this object, 1 demand, 2 tou, 3 the
# load profile), attribute, list index or -1, bytes. Then the load profile's open block.
# The open block's first sequence number (its bytes 4-6) is not kept: it is next_seq less
# the block's intervals; those 3 bytes of the record hold the demand-reset lock-out's
# seconds left (UINT24) instead. LAYOUT and the block fill the record.
# Tier D's folded registers are not kept: they are the base minus tiers A, B and C.
# The tiers' cumulative demands (W) take 3 bytes as their maxima do. The record is full
# (244 bytes): demand.previous_w (the last interval's demand) and reset_max_w (the last
# reset's maximum) are RAM only, 0 after a restart until an interval ends or a reset.
# fmt: off
LAYOUT = (
    0, "saved_at", -1, 4,   0, "flags", -1, 1,
    3, "del0", -1, 5,       3, "rec0", -1, 5,       3, "flags", -1, 1,      3, "next_seq", -1, 3,
    1, "start_time", -1, 4, 1, "start_wh", -1, 5,   1, "start_res", -1, 2,
    1, "max_w", -1, 3,      1, "max_time", -1, 4,
    1, "tier_max_w", 0, 3,  1, "tier_max_w", 1, 3,  1, "tier_max_w", 2, 3,  1, "tier_max_w", 3, 3,
    1, "tier_max_time", 0, 4, 1, "tier_max_time", 1, 4, 1, "tier_max_time", 2, 4, 1, "tier_max_time", 3, 4,
    1, "cumulative_w", -1, 4, 1, "resets", -1, 2,   1, "reset_time", -1, 4,
    1, "tier_cumulative_w", 0, 3, 1, "tier_cumulative_w", 1, 3, 1, "tier_cumulative_w", 2, 3,
    1, "tier_cumulative_w", 3, 3,
    2, "folded_del", 0, 5,  2, "folded_del", 1, 5,  2, "folded_del", 2, 5,
    2, "folded_rec", 0, 5,  2, "folded_rec", 1, 5,  2, "folded_rec", 2, 5,
    2, "base_del", -1, 5,   2, "base_rec", -1, 5,   2, "tier", -1, 1,
)
# ST3 flags logged when they appear, and their event codes
_FAULTS = (
    status.CONFIGURATION_ERROR, events.EV_CONFIGURATION_ERROR,
    status.NONVOLATILE_MEMORY_FAILURE, events.EV_NONVOLATILE_MEMORY_FAILURE,
    status.CLOCK_ERROR, events.EV_CLOCK_ERROR,
    status.MEASUREMENT_ERROR, events.EV_MEASUREMENT_ERROR,
    status.TAMPER_DETECT, events.EV_TAMPER,
    status.LOW_BATTERY, events.EV_LOW_BATTERY,
)
# fmt: on


def u32(v):
    """v as 4 little-endian bytes (event data)."""
    return bytes((v & 0xFF, v >> 8 & 0xFF, v >> 16 & 0xFF, v >> 24 & 0xFF))


class Billing:
    def __init__(self, meter):
        self.meter = meter
        self.clock = tk.MeterClock(meter.board, meter.status)
        self.events = events.EventLog(meter.storage, self.clock)
        e = meter.metrology.energy
        self.demand = demand.Demand(e)
        self.tou = tou.Tou(e)
        self.tou.demand = self.demand  # per-tier demand by the energy each tier saw (split)
        self.load_profile = loadprofile.LoadProfile(meter.storage, e)
        loadprofile.dst_at = self.tou.dst_at  # intervals in daylight saving time are flagged
        self.state = storage.Ring(meter.storage, STATE_START, STATE_LENGTH, STATE, _KIND_STATE)
        self._rec = bytearray(STATE)
        self.parts = (self, self.demand, self.tou, self.load_profile)
        self.demand.now = self.now
        self.demand.on_change = self._soon
        self._ticks = meter.board.clock
        self.demand.ticks = self._ticks.ticks_ms  # the reset lock-out runs on powered time
        self.demand._lock_ms = self._ticks.ticks_ms()
        self.saved_at = 0
        self.flags = 0
        self.saves = 0  # state records written since boot
        self.outage_s = 0  # the last power-up's outage in seconds (-1: unknown)
        self.cfg_seen = -1  # config.Config.changes when last applied
        self.cfg_bad = False  # CONFIGURATION_ERROR is ours
        self._due_ms = self._ticks.ticks_ms()
        self._save = False
        self._faults_seen = 0
        self.sr_due = 0  # the next daily self-read (selfread.py); 0: to be worked out
        self.sr_at = 0  # a daily self-read due at this time, for apply_changes()

    def now(self):
        """The meter's time, seconds since 2000 (no RTC access)."""
        return self.clock.now(self._ticks.ticks_ms())

    # --- the state record ---------------------------------------------------------------
    def save(self, t):
        """Write the state record (stamped t); True if it is on the chip."""
        self.saved_at = t
        self.demand.lock_left()  # the lock-out's seconds left, counted to now
        self.flags = (CLOCK_VALID if self.clock.valid else 0) | (SUSPENDED if self.demand.suspended else 0)
        buf = self._rec
        lay = LAYOUT
        off = 0
        for f in range(0, len(lay), 4):
            v = getattr(self.parts[lay[f]], lay[f + 1])
            if lay[f + 2] >= 0:
                v = v[lay[f + 2]]
            n = lay[f + 3]
            v = min(max(v, 0), (1 << (8 * n)) - 1)
            for k in range(n):
                buf[off + k] = (v >> (8 * k)) & 0xFF
            off += n
        block = self.load_profile.block
        buf[off : off + len(block)] = block
        left = self.demand.lock_left_s  # in place of the block's first sequence number
        for k in range(3):
            buf[off + 4 + k] = (left >> (8 * k)) & 0xFF
        self._save = False
        if self.state.append(buf):
            self.saves += 1
            return True
        return False

    def _soon(self):
        """Something changed between boundaries (a demand reset): save at the next poll."""
        self._save = True
        self._due_ms = self._ticks.ticks_ms()

    def _powerup(self, what, t=0):
        """Run powerup.boot or powerup.reconfigure, then drop that module from RAM."""
        import powerup

        self.sr_due = 0  # the daily self-read's time may have moved: worked out again
        try:
            getattr(powerup, what)(self, t)
        finally:
            sys.modules.pop("powerup", None)

    def boot(self, cause=0):
        """After storage.restore(): the state restored, the power-up rules (powerup.py) for
        a start of resets.CAUSES[cause] (0: the power came back).
        The load profile's ring is scanned now (16 KiB: 0.4 s of bus), not inside the poll
        that flushes its first block: the registers written before that block
        (storage.registers_first) would be as old as that poll's chip reading."""
        self._powerup("boot", cause)
        self.load_profile.log.ring.count()

    def apply_changes(self):
        """A configuration written since the last look (optical port, console): apply it now;
        and a daily self-read found due. The meter's loop calls this outside the metering
        step, which then never imports powerup.py or selfread.py (an import allocates; the
        steady state allocates nothing)."""
        if getattr(self.meter.config, "changes", 0) != self.cfg_seen:
            now_ms = self._ticks.ticks_ms()
            self._powerup("reconfigure", self.clock.now(now_ms))
            self._due_ms = now_ms  # new intervals: the next poll looks at the boundaries
        if self.sr_at:  # the daily self-read the metering step found due (selfread.py)
            t = self.sr_at
            self.sr_at = 0
            self._self_read("daily", self, t)

    # --- every poll ---------------------------------------------------------------------
    def tick(self, now_ms):
        """Once per poll: nothing unless a boundary (or the clock check) is due."""
        if time.ticks_diff(now_ms, self._due_ms) >= 0:
            self._boundaries(now_ms)

    def schedule(self, t, now_ms):
        """The next boundary, due half a poll early on the board clock: the poll that reads
        it on the RTC is never missed by a millisecond of bus-time jitter (an early look
        that finds nothing due just schedules again)."""
        nxt = min(self.demand.due, self.load_profile.due, self.tou.due, t + RECHECK_S, self.sr_due)
        self._due_ms = time.ticks_add(now_ms, max(nxt - t, 1) * 1000 - 500)

    def _boundaries(self, now_ms):
        clk = self.clock
        t = clk.read(now_ms)
        if clk.jump:
            self.time_changed(t - clk.jump, t)  # someone wrote the RTC: a time set
        if getattr(self.meter.config, "changes", 0) != self.cfg_seen:
            self._powerup("reconfigure", t)
        self.check_faults()
        self.events.flush()
        d, lp, tu = self.demand, self.load_profile, self.tou
        d.lock_left()  # counted often: the ticks wrap after days
        if t >= d.due:
            end = d.due
            new = d.close(end, tu.tier)  # the tier in force since the last switch: switches come after
            if t >= end + d.sub_s:  # more than one boundary since the last poll: a restart
                d.restart(t)
            else:
                d.start(end)
            if end % d.interval_s == 0 or new:
                self._save = True
        if t >= lp.due:
            lp.close()
            lp.start(lp.due if t < lp.due + lp.interval_s else t, 0 if clk.valid else loadprofile.CLOCK_INVALID)
            self._save = True
        if t >= tu.due and tu.switch(t):
            self._save = True
        if self._save:
            self.save(t)
        if t >= self.sr_due:
            if self.meter.config.get(config.SELF_READ_TIME) < 0:
                self.sr_due = 0x7FFFFFFF  # no daily self-read: selfread.py stays on the shelf
            else:
                self.sr_at = t  # taken outside the metering step: apply_changes()
        self.schedule(t, now_ms)

    def check_faults(self):
        """Log the ST3 faults that appeared since the last look."""
        bits = self.meter.status.bits
        new = bits & ~self._faults_seen
        self._faults_seen = bits
        for i in range(0, len(_FAULTS), 2):
            if new & _FAULTS[i]:
                code = _FAULTS[i + 1]
                # a clock error says why (timekeeping.LOST_*: the chip's flag, an RTC behind
                # the last known time, no answer, never set; 0: invalid since before the cut)
                self.events.record(code, self.clock.cause if code == events.EV_CLOCK_ERROR else b"")

    # --- time set and demand reset ------------------------------------------------------
    def set_time(self, t):
        """Set the meter's time (seconds since 2000): logged, intervals handled, clock valid.
        Writing the RTC clears a chip's lost-time flag, and ST3 LOW_BATTERY with it."""
        now_ms = self._ticks.ticks_ms()
        old = self.clock.read(now_ms)
        self.clock.set(t, now_ms)
        self.meter.status.clear(status.LOW_BATTERY)
        self._faults_seen &= ~status.LOW_BATTERY
        self.time_changed(old, t)
        return True

    def time_changed(self, old, new):
        """The time moved from old to new (the RTC already says new)."""
        self.clock.mark(True)  # only a time set moves the RTC
        self._faults_seen &= ~status.CLOCK_ERROR
        self.events.record(events.EV_TIME_OLD, u32(new), t=old)
        self.events.record(events.EV_TIME_NEW, u32(old), t=new)
        d, lp = self.demand, self.load_profile
        if d.suspended:
            d.resume(new)
        elif not d.start_time <= new < d.due:
            d.close(old, self.tou.tier)
            d.restart(new)
        back = loadprofile.CLOCK_BACKWARD if new < old else 0  # both intervals it touches
        if lp.due - lp.interval_s <= new < lp.due:
            lp.flags |= loadprofile.CLOCK_CHANGED | back
        else:
            lp.close(loadprofile.CLOCK_CHANGED | loadprofile.PARTIAL | back)
            lp.start(new, loadprofile.CLOCK_CHANGED | back | (loadprofile.PARTIAL if new % lp.interval_s else 0))
        self.tou.held = False  # TOU follows the clock again
        self.tou.switch(new)
        self.sr_due = 0
        self.save(new)
        self.schedule(new, self._ticks.ticks_ms())

    def _self_read(self, what, *args):
        """selfread.py's function `what`, then that module dropped from RAM."""
        import selfread

        try:
            return getattr(selfread, what)(*args)
        finally:
            sys.modules.pop("selfread", None)

    def demand_reset(self):
        """A demand reset from the meter itself (console, button): logged; False in the lock-out.
        Its self-read (ST25, ST26) is taken first: the maxima as the reset found them."""
        d = self.demand
        rec = self._self_read("record", self.meter, self.now())
        if not d.reset():
            return False
        self.events.record(events.EV_DEMAND_RESET, bytes((d.resets & 0xFF, d.resets >> 8 & 0xFF)))
        self._self_read("store", self.meter, rec, True)
        return True
