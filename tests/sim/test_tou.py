"""Time of use (issue 5): the calendar arithmetic and the tier lookup in the MicroPython VM
against an independent model written here from tou.py's documented rules, and on the
simulated board tiers that switch at the programmed times on a weekday, a Saturday, a
Sunday, holidays (one-off and every year) and in a second season, always summing to the
totals.
"""

from __future__ import annotations

import datetime as dt
import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from billing_rpc import EPOCH, MeterRPC, secs

from host_tools.sim import SimBoard
from host_tools.sim.board import DEFAULT_HEAP_KB

pytestmark = pytest.mark.sim_only

REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = Path(sys.executable).parent / "micropython"
HEAP_KB = DEFAULT_HEAP_KB  # the simulated board's (host_tools/sim/board.py)
TOU_SEASONS, TOU_HOLIDAYS, TOU_SCHEDULE = 0x40, 0x41, 0x42
WEEKDAY, SATURDAY, SUNDAY, HOLIDAY = 0, 1, 2, 3

# the calendar under test: season 1 from July 1; a one-off holiday and Christmas every year
SEASONS = [(1, 1), (7, 1)]
HOLIDAYS = [(2026, 1, 19), (None, 12, 25)]
SCHEDULES = {  # (season, day type): (hour, minute, tier) switch points, in any order
    (0, WEEKDAY): [(0, 0, 0), (7, 0, 1), (17, 0, 2), (21, 0, 0)],
    (0, SATURDAY): [(9, 0, 3), (13, 0, 0)],  # before 09:00 the day's last tier: A
    (0, HOLIDAY): [(0, 0, 3)],
    (1, WEEKDAY): [(0, 0, 0), (12, 0, 2)],
    (1, SATURDAY): [(22, 0, 1), (6, 0, 0)],  # B from 22:00 to midnight and before 06:00
    (1, HOLIDAY): [(0, 0, 3)],
}  # Sundays: no switch points, tier A all day


def settings() -> dict[int, bytes]:
    out: dict[int, bytes] = {
        TOU_SEASONS: bytes(v for s in SEASONS for v in s),
        TOU_HOLIDAYS: bytes(v for y, m, d in HOLIDAYS for v in ((0xFF if y is None else y - 2000), m, d)),
    }
    for (season, day_type), points in SCHEDULES.items():
        out[TOU_SCHEDULE + 4 * season + day_type] = bytes(v for p in points for v in p)
    return out


def model(t: int) -> tuple[int, int, int, int]:
    """(tier, season, day type, next change) at t seconds since 2000, from tou.py's rules."""
    when = EPOCH + dt.timedelta(seconds=t)
    starts = sorted(SEASONS)
    season = max((i for i, s in enumerate(starts) if s <= (when.month, when.day)), default=len(starts) - 1)
    if any(m == when.month and d == when.day and y in (None, when.year) for y, m, d in HOLIDAYS):
        day_type = HOLIDAY
    else:
        day_type = {5: SATURDAY, 6: SUNDAY}.get(when.weekday(), WEEKDAY)
    points = sorted((h * 60 + m, tier) for h, m, tier in SCHEDULES.get((season, day_type), []))
    minute = when.hour * 60 + when.minute
    tier = points[-1][1] if points else 0
    for m, tr in points:
        if m <= minute:
            tier = tr
    midnight = t - (when.hour * 3600 + when.minute * 60 + when.second)
    later = [m for m, _ in points if m > minute]
    return tier, season, day_type, midnight + (later[0] * 60 if later else 86400)


def run_vm(script: str) -> str:
    r = subprocess.run(
        [str(MICROPYTHON), "-X", "heapsize=2M", "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO / "firmware",
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_calendar_arithmetic_matches_the_gregorian_calendar():
    rng = random.Random(5)
    days = [0, 59, 60, 365, 366, 1154, 9131, 36524, 36525, 36584, 36585, 36889] + [
        rng.randrange(0, 70000) for _ in range(400)
    ]
    out = run_vm(
        "import timekeeping as tk\n"
        f"for d in {days!r}:\n"
        "    t = d * 86400 + (d * 7919) % 86400\n"
        "    c = tk.civil(t)\n"
        "    print(tk.date_of(d), tk.days_from_2000(*tk.date_of(d)), tk.weekday(d), c, tk.seconds(*c))\n"
    )
    for d, line in zip(days, out.splitlines(), strict=True):
        date = EPOCH.date() + dt.timedelta(days=d)
        t = d * 86400 + (d * 7919) % 86400
        when = EPOCH + dt.timedelta(seconds=t)
        civil = (when.year, when.month, when.day, when.hour, when.minute, when.second)
        assert line == f"({date.year}, {date.month}, {date.day}) {d} {date.weekday()} {civil} {t}", (d, line)


def test_the_tier_lookup_follows_the_programmed_calendar():
    """Every 7 minutes through days of each kind, and where seasons and years turn."""
    days = ["2026-01-09", "2026-01-10", "2026-01-11", "2026-01-19", "2027-01-19", "2026-06-30", "2026-07-01"]
    days += ["2026-07-04", "2026-07-05", "2026-12-25", "2030-12-25", "2026-12-31", "2027-01-01", "2028-02-29"]
    times = [secs(d + "T00:00:00") + k * 420 for d in days for k in range(206)]
    script = (
        "import json, config, tou, powerup\n"
        "cfg = config.Config()\n"
        f"for k, v in {sorted(settings().items())!r}:\n"
        "    cfg.set(k, v)\n"
        "t = tou.Tou(None)\n"
        "print(powerup._tou(t, cfg))\n"
        f"print(json.dumps([t.at(x) for x in {times!r}]))\n"
    )
    ok, got = run_vm(script).splitlines()
    assert ok == "True"
    for t, value in zip(times, json.loads(got), strict=True):
        assert tuple(value) == model(t), (EPOCH + dt.timedelta(seconds=t), value)


def test_a_malformed_schedule_is_flagged_and_ignored():
    script = (
        "import config, tou, powerup\n"
        "cfg = config.Config()\n"
        "cfg.set(0x42, bytes((7, 0, 9)))\n"  # tier 9 does not exist
        "t = tou.Tou(None)\n"
        "print(powerup._tou(t, cfg), t.at(7 * 3600)[0])\n"
    )
    assert run_vm(script).split() == ["False", "0"]


def test_tiers_switch_at_the_programmed_times_and_always_sum_to_the_totals(tmp_path):
    """24 kW through windows around switch points of each kind of day: the energy of each
    second goes to the tier the calendar gives for it (to a poll), the tiers sum to the
    total exactly, and the tier in force is the calendar's."""
    watts = 240.0 * 100.0
    start = "2026-01-09T16:55:00"  # a Friday
    windows = [
        start,  # weekday 17:00: A -> C
        "2026-01-10T08:55:00",  # Saturday 09:00: A -> D
        "2026-01-10T12:55:00",  # Saturday 13:00: D -> A
        "2026-01-11T06:55:00",  # Sunday: A all day
        "2026-01-19T06:55:00",  # the one-off holiday, a Monday: D, no switch to B at 07:00
        "2026-12-25T16:55:00",  # Christmas, every year, a Friday: D
        "2026-07-06T11:55:00",  # a Monday in season 1: A -> C at 12:00
        "2026-07-11T21:55:00",  # a Saturday in season 1: A -> B at 22:00
    ]
    with SimBoard(tmp_path, seed=9, ideal=True, boot=False, heap_kb=HEAP_KB, start_time=start) as board:
        meter = MeterRPC(board, settings())
        board.set_load(240.0, 100.0)
        board.power_on()
        for w in windows:
            if w != start:
                meter.call(f"result = m.set_time({secs(w)})")
            snaps = []
            for k in range(2):
                if k:
                    board.run(600.0 - 1.0)  # through the switch point, 5 minutes after the window's start
                t, tiers, total, tier = meter.get(
                    "m.clock_time", "m.tou.delivered_wh", "m.energy.delivered_wh", "m.tou.tier"
                )
                assert sum(tiers) == total, "the tiers sum to the total"
                assert tier == model(t)[0], (w, t)
                snaps.append((t, tiers))
            (t0, before), (t1, after) = snaps
            want = [0.0] * 4
            for s in range(t0 + 1, t1 + 1):  # the poll reading s counts the second before it
                want[model(s - 1)[0]] += watts / 3600
            got = [a - b for a, b in zip(after, before, strict=True)]
            assert all(abs(g - e) <= 2 * watts / 3600 for g, e in zip(got, want, strict=True)), (w, got, want)


def test_st54_pieces_are_written_without_allocating():
    """ST54 is served a packet's piece at a time (tables.BIG): with the heap locked, the
    largest schedule config.py allows is sized and written piecewise, and the pieces make
    the same bytes as one whole write."""
    days = "".join(
        f"cfg.set({TOU_SCHEDULE + k}, bytes(v for h in range(10, 23) for v in (h, {k}, h % 4)))\n" for k in range(16)
    )
    script = (
        "import config, tou, powerup, micropython\n"
        "cfg = config.Config()\n"
        f"cfg.set({TOU_SEASONS}, bytes((1, 1, 4, 1, 7, 1, 10, 1)))\n"
        f"cfg.set({TOU_HOLIDAYS}, bytes(v for k in range(13) for v in (255 if k % 2 else 30, 5, 1 + k)))\n"
        + days
        + "t = tou.Tou(None)\n"
        "print(powerup._tou(t, cfg))\n"
        "n = t.calendar_size()\n"
        "whole = bytearray(n)\n"
        "t.calendar_into(0, n, whole, 0)\n"
        "pieces = bytearray(n + 3)\n"
        "def serve(t, n, pieces):\n"  # locals: module-level names would grow the globals dict
        "    micropython.heap_lock()\n"
        "    for off in range(0, n, 61):\n"
        "        t.calendar_into(off, min(61, n - off), pieces, off + 3)\n"
        "    size = t.calendar_size()\n"
        "    micropython.heap_unlock()\n"
        "    return size\n"
        "size = serve(t, n, pieces)\n"
        "print(n, size, pieces[3:] == whole)\n"
    )
    ok, sizes = run_vm(script).splitlines()
    assert ok == "True"
    # 7 one-off holidays (4 bytes), 6 every year + 4 season starts (3), 16 days x 14 switches (3), 4 x 4 ids
    assert sizes == f"{7 * 4 + 10 * 3 + 16 * 14 * 3 + 16} {7 * 4 + 10 * 3 + 16 * 14 * 3 + 16} True"
