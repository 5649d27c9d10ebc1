"""Boot-time work of billing.py: the configuration read, the state record restored, the
power-up rules applied.

    import powerup
    powerup.boot(billing)             # billing.Billing.boot() does this
    powerup.reconfigure(billing, t)   # when config.Config.changes moved

billing.py imports this module for the call and drops it from sys.modules afterwards: this
code is in RAM only while it runs (at boot, and when the configuration changes).
"""

# Power-up rules (firmware/README.md, "Demand, time of use and logs: the rules"):
# - The last known time is the newer of the state record's and the register record's
#   stamps. The RTC lost its time when it says so (a chip's OSF / VL flag: its battery
#   failed; that also sets ST3 LOW_BATTERY until a time set clears the flag), when it
#   reads earlier than the last known time or than 2024 (a Pico's own RTC has no battery:
#   the rp2 port restarts it at 2021-01-01), or when it does not answer on the bus: the
#   meter then counts on from the last known time (the RTC is left as it is,
#   timekeeping.py) and the clock is invalid (ST3 CLOCK_ERROR, the CLOCK_ERROR event's
#   data says why) until a time is set; the outage's length is unknown. An RTC at or
#   after the last known time kept running: the outage lasted the difference, and the
#   clock is as valid as it was before the cut. A first boot (no state record) trusts an
#   RTC that reads 2024 or later and does not flag its time lost.
# - Time of use follows the clock only while it is valid: without a valid time the tier
#   in force at the power-down stays in force (tier A on a first boot) until a time set.
# - Log POWER_DOWN stamped with the last known time and POWER_UP stamped now (data: the
#   outage in seconds, 0xFFFFFFFF unknown); set ST3 POWER_FAILURE (latched: the clear
#   standard status procedure clears it). A start with the line on (only the MCU restarted:
#   resets.py's watchdog, fault or reset) logs RESET instead (data: the cause, and the time
#   the meter was down in seconds, 0xFFFF unknown or longer): not a power failure. The
#   interval rules below are the same for both: the meter did not meter meanwhile.
# - An outage that ends inside the demand sub-interval it began in does not end it; one
#   that ends inside its load-profile interval does not end that (flagged POWER_OUTAGE).
#   Otherwise demand ends the interval as a partial one stamped with the power-down time,
#   and the load profile records it at its aligned end with POWER_OUTAGE | PARTIAL, then
#   starts a partial interval at power-up (POWER_OUTAGE too); the intervals the outage
#   covered are filled with zero POWER_OUTAGE entries while they fit in the open block.
#   Rolling demand's window is RAM: it restarts empty.
# - After an outage longer than MAX_OUTAGE_S (24 h), or of unknown length, demand is
#   suspended until a time is set (DEMAND_SUSPENDED logged); a 2-hour outage is not.
#   Suspension survives further power cuts (a state flag).
# - Tiers: what the registers gained since the last tier change goes to the tier in force
#   then; if the registers came back older than the tiers' base (a torn register write),
#   the difference is taken back from that tier (then the others), so the tiers still sum
#   to the totals. Then the tier for the time now is taken.
# - A configuration value out of range is replaced by its default and sets ST3
#   CONFIGURATION_ERROR (cleared when the configuration is good again).

from micropython import const

import config
import events
import loadprofile as L
import status
import timekeeping as tk
import tou as T
from billing import CLOCK_VALID, LAYOUT, SUSPENDED, UNKNOWN, u32

MAX_OUTAGE_S = const(86400)


def _switches(raw):
    """A day's (minute of day, tier) switch points, sorted; None if malformed."""
    if len(raw) % 3:
        return None
    out = []
    for i in range(0, len(raw), 3):
        h, m, tier = raw[i], raw[i + 1], raw[i + 2]
        if h > 23 or m > 59 or tier >= T.NBR_TIERS:
            return None
        out.append((h * 60 + m, tier))
    out.sort()
    return out


def _tou(tu, cfg):
    """The TOU schedule from the configuration; False if a setting was malformed (it is
    then ignored: no seasons, no holidays or an all-A day)."""
    ok = True
    raw = cfg.get(config.TOU_SEASONS)
    seasons = []
    if len(raw) % 2 or len(raw) > 2 * T.NBR_SEASONS:
        ok = False
    else:
        for i in range(0, len(raw), 2):
            if not 1 <= raw[i] <= 12 or not 1 <= raw[i + 1] <= 31:
                ok = False
                seasons = []
                break
            seasons.append((raw[i], raw[i + 1]))
    seasons.sort()
    tu.seasons = seasons
    raw = cfg.get(config.TOU_HOLIDAYS)
    holidays = []
    if len(raw) % 3:
        ok = False
    else:
        for i in range(0, len(raw), 3):
            y, mo, d = raw[i], raw[i + 1], raw[i + 2]
            if not config.holiday_ok(y, mo, d):  # config.validate's rule
                ok = False
                continue
            holidays.append((y if y >= config.HOLIDAY_NTH else 2000 + y, mo, d))
    tu.holidays = holidays
    dst, zone = cfg.get(config.DST), cfg.get(config.TIME_ZONE_MIN)
    if not (config.valid_time_setting(config.DST, dst) and config.valid_time_setting(config.TIME_ZONE_MIN, zone)):
        ok = False
        dst, zone = config.DST_NONE, 0
    tu.rules(dst, zone)  # after the holidays: forgets the day worked out with the old ones
    for k in range(T.NBR_SEASONS * 4):
        sw = _switches(cfg.get(config.TOU_SCHEDULE + k))
        if sw is None:
            ok = False
            sw = []
        tu.schedules[k] = sw
    return ok


def _repair(cfg):
    """Put every setting config.validate refuses (a blob stored by older firmware, or one
    the rules have since narrowed) back to its default; True if there was none. Of two that
    conflict, the one validate names goes back first; a pass that changes nothing ends it
    (the defaults agree with each other)."""
    ok = True
    for _ in range(4):
        changed = False
        for k, _default in config.DEFAULTS:
            fault = config.validate(k, cfg.get(k), cfg)
            if fault is not None:
                ok = False
                for d, value in config.DEFAULTS:
                    if d == fault and cfg.get(d) != value:
                        cfg.set(d, value)
                        changed = True
        if not changed:
            break
    return ok


def configure(b):
    """Apply the demand, load-profile and TOU settings; True if all were valid (config.validate:
    the same rule as the optical port's; a refused one runs on its default)."""
    cfg = b.meter.config
    get = cfg.get
    ok = _repair(cfg)
    lockout = get(config.DEMAND_RESET_LOCKOUT_S)
    b.demand.setup(get(config.DEMAND_INTERVAL_MIN), get(config.DEMAND_SUBINTERVALS), lockout)
    b.load_profile.interval_s = get(config.LP_INTERVAL_MIN) * 60
    ok = _tou(b.tou, cfg) and ok  # after _repair always True: a guard while parsing
    st = b.meter.status
    if not ok:
        st.set(status.CONFIGURATION_ERROR)
    elif b.cfg_bad:
        st.clear(status.CONFIGURATION_ERROR)
    b.cfg_bad = not ok
    b.cfg_seen = getattr(cfg, "changes", 0)
    return ok


def reconfigure(b, t):
    """The configuration changed while running: log it (data: its CRC-32); a new demand or
    load-profile interval length ends the running one (partial) and starts one at t."""
    import binascii

    d, lp = b.demand, b.load_profile
    was = (d.interval_s, d.subs, lp.interval_s)
    configure(b)
    cfg = b.meter.config
    b.events.record(events.EV_CONFIG_CHANGED, u32(binascii.crc32(cfg.encode())), user=cfg.by, t=t)
    cfg.by = 0  # a change made later at the console is the meter's own (user 0)
    if (d.interval_s, d.subs) != was[:2]:
        d.close(t, b.tou.tier)
        d.restart(t)
    if lp.interval_s != was[2]:
        lp.close(L.PARTIAL)
        lp.start(t, L.PARTIAL)
    b.tou.switch(t)
    b.save(t)


def _unpack(b, buf):
    lay = LAYOUT
    off = 0
    for f in range(0, len(lay), 4):
        n = lay[f + 3]
        v = 0
        for k in range(n - 1, -1, -1):
            v = (v << 8) | buf[off + k]
        obj = b.parts[lay[f]]
        if lay[f + 2] >= 0:
            getattr(obj, lay[f + 1])[lay[f + 2]] = v
        else:
            setattr(obj, lay[f + 1], v)
        off += n
    lp = b.load_profile
    blk = lp.block
    blk[:] = buf[off : off + len(blk)]
    # bytes 4-6: the lock-out's seconds left in the record (billing.save); the block's
    # first sequence number is next_seq less its intervals
    b.demand.lock_left_s = blk[4] | blk[5] << 8 | blk[6] << 16
    first = lp.next_seq - lp.n if lp.n else 0
    for k in range(3):
        blk[4 + k] = (first >> (8 * k)) & 0xFF
    tu = b.tou
    tu.current_tier = tu.tier
    tu.folded_del[3] = tu.base_del - tu.folded_del[0] - tu.folded_del[1] - tu.folded_del[2]
    tu.folded_rec[3] = tu.base_rec - tu.folded_rec[0] - tu.folded_rec[1] - tu.folded_rec[2]


def _settle(tu, e):
    """Registers restored older than the tiers' base: take the difference back."""
    pairs = ((tu.folded_del, e.delivered_wh, "base_del"), (tu.folded_rec, e.received_wh, "base_rec"))
    for folded, total, name in pairs:
        short = getattr(tu, name) - total
        if short > 0:
            for k in range(T.NBR_TIERS):
                i = (tu.tier + k) % T.NBR_TIERS
                take = min(short, folded[i])
                folded[i] -= take
                short -= take
            setattr(tu, name, total)


def _begin(clk, last, was_valid, st):
    """(time now, valid, outage seconds or -1) from the RTC and the last known time."""
    try:
        lost = clk.rtc_lost()
        t = clk.read_rtc()
    except OSError:  # no RTC on the bus: count from the last known time
        clk.rtc_down = True
        clk.cause = tk.LOST_NO_ANSWER
        return max(last, 0), False, -1
    if lost:  # its backup failed: the battery (or supercap) is flat or missing
        st.set(status.LOW_BATTERY)
        clk.cause = tk.LOST_FLAG
    if last <= 0:  # a first boot
        if not lost and t < tk.EARLIEST_VALID:
            clk.cause = tk.LOST_NEVER_SET
        return t, not clk.cause, 0
    if not lost and t >= last and t >= tk.EARLIEST_VALID:
        return t, was_valid, t - last
    if not lost:  # a Pico's RTC restarts at 2021-01-01 at every power-up
        clk.cause = tk.LOST_EARLIER if t < last else tk.LOST_NEVER_SET
    clk.offset = last - t  # the RTC is left as it is: a chip keeps its flag until a time set
    return last, False, -1


def boot(b, cause=0):
    """Restore the state record and apply the power-up rules (the comment above); cause:
    resets.CAUSES' index of this start (0: the power came back)."""
    now_ms = b.meter.board.clock.ticks_ms()
    configure(b)
    d, lp, tu, clk, log = b.demand, b.load_profile, b.tou, b.clock, b.events
    payload = b.state.read(0)
    if payload is not None:
        _unpack(b, payload)
    last = max(b.saved_at, clk.last_known)
    t, valid, outage = _begin(clk, last, bool(b.flags & CLOCK_VALID), b.meter.status)
    clk.start(t, valid, now_ms)
    tu.held = not valid  # no valid time: the tier restored from the state record stays
    b.outage_s = outage
    invalid = 0 if valid else L.CLOCK_INVALID
    if payload is None:  # a first boot, or every state record lost: nothing to close
        newest = lp.log.ring.read(0)  # the load profile's numbering goes on after its newest block
        if newest is not None:
            lp.next_seq = (newest[4] | newest[5] << 8 | newest[6] << 16) + (newest[3] >> 3)
        d.restart(t)
        lp.start(t, (L.PARTIAL if t % lp.interval_s else 0) | invalid)
        d.suspended = not valid
    else:
        if not cause:
            log.record(events.EV_POWER_DOWN, t=last)
            b.meter.status.set(status.POWER_FAILURE)
        _settle(tu, b.meter.metrology.energy)
        d.suspended = bool(b.flags & SUSPENDED)
        d.due = (d.start_time // d.sub_s + 1) * d.sub_s
        d.forget()  # the rolling window was in RAM
        if t >= d.due:
            d.close(last, tu.tier)
            d.restart(t)
        lp.due = (b.saved_at // lp.interval_s + 1) * lp.interval_s
        if t < lp.due:
            lp.flags |= L.POWER_OUTAGE | invalid
        else:
            lp.close(L.POWER_OUTAGE | L.PARTIAL)
            lp.start(t, L.POWER_OUTAGE | L.PARTIAL | invalid)
        if not d.suspended and (outage < 0 or outage > MAX_OUTAGE_S):
            d.suspended = True
            log.record(events.EV_DEMAND_SUSPENDED, u32(UNKNOWN if outage < 0 else outage), t=t)
    if cause:
        down = 0xFFFF if outage < 0 or outage > 0xFFFF else outage
        log.record(events.EV_RESET, bytes((cause, down & 0xFF, down >> 8, 0)), t=t)
    else:
        log.record(events.EV_POWER_UP, u32(UNKNOWN if outage < 0 else outage), t=t)
    tu.switch(t)
    b.check_faults()
    b.save(t)
    b.schedule(t, now_ms)
