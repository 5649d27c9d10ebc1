"""Daylight saving time by rule (issue 16): the meter's clock, load profile and demand stay in
standard time all year; the TOU schedule and the LCD run on local time, an hour ahead while
DST is in force; ST51/ST52/ST53/ST54/ST55 say so; procedure 10 takes a local time.

The transition instants are written here by hand from a calendar (North America: the second
Sunday of March at 02:00 standard time and the first Sunday of November at 02:00 daylight
time, 01:00 standard; EU: the last Sundays of March and October at 01:00 UTC). March 2027
begins on a Monday, so its Sundays are the 7th, 14th, 21st and 28th; November 2027 begins on
a Monday, its first Sunday is the 7th; October 2027 ends on a Sunday, the 31st.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from billing_rpc import MeterRPC, secs
from test_calendar import decode_st54

from host_tools import program
from host_tools.c1218 import TABLES as T
from host_tools.c1218 import Client, ServiceError, parse, set_time_params
from host_tools.repo import firmware_module
from host_tools.sim import SimBoard
from host_tools.sim.board import DEFAULT_HEAP_KB

pytestmark = pytest.mark.sim_only

config = firmware_module("config")
REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = Path(sys.executable).parent / "micropython"
HOUR = 3600
DST_ON, DST_OFF = 1, 2  # CALENDAR_ACTION codes (C12.19 ST54)
ITEM_TIME = 7  # display.py's time item
PEAK = bytes((7, 0, 1, 21, 0, 0))  # every day: tier B from 07:00 local, A from 21:00
SETTINGS = {
    config.DST: config.DST_NORTH_AMERICA,
    config.TIME_ZONE_MIN: -300,  # US Eastern standard time
    config.DISPLAY_ITEMS: bytes((ITEM_TIME,)),
    config.TOU_SCHEDULE + 0: PEAK,  # weekday
    config.TOU_SCHEDULE + 1: PEAK,  # Saturday
    config.TOU_SCHEDULE + 2: PEAK,  # Sunday
}
# 2027, in the meter's standard time (seconds since 2000)
NA_ON_2027 = secs("2027-03-14T02:00:00")  # 02:00 EST -> 03:00 EDT
NA_OFF_2027 = secs("2027-11-07T01:00:00")  # 02:00 EDT -> 01:00 EST: 01:00 standard time


def run_vm(script: str) -> str:
    r = subprocess.run([str(MICROPYTHON), "-X", "heapsize=2M", "-c", script], capture_output=True, text=True,
                       timeout=120, cwd=REPO / "firmware")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def dst_in_vm(rule: int, zone: int, times: list[int]) -> list[int]:
    out = run_vm(
        "import json, tou\n"
        "t = tou.Tou(None)\n"
        f"t.rules({rule}, {zone})\n"
        f"print(json.dumps([t.dst_at(x) for x in {times!r}]))\n"
    )
    return json.loads(out)


def around(*instants: int) -> list[int]:
    return [x + d for x in instants for d in (-1, 0)]


# ---- the rules, in the MicroPython VM -----------------------------------------------------
@pytest.mark.parametrize(
    ("rule", "zone", "on", "off"),
    [
        (config.DST_NORTH_AMERICA, -300, "2026-03-08T02:00:00", "2026-11-01T01:00:00"),
        (config.DST_NORTH_AMERICA, -300, "2027-03-14T02:00:00", "2027-11-07T01:00:00"),
        (config.DST_NORTH_AMERICA, -480, "2028-03-12T02:00:00", "2028-11-05T01:00:00"),  # the zone plays no part
        (config.DST_EU, 60, "2027-03-28T02:00:00", "2027-10-31T02:00:00"),  # CET: 01:00 UTC is 02:00
        (config.DST_EU, 0, "2027-03-28T01:00:00", "2027-10-31T01:00:00"),  # London: 01:00 GMT
        (config.DST_EU, 120, "2026-03-29T03:00:00", "2026-10-25T03:00:00"),  # EET: 01:00 UTC is 03:00
    ],
)
def test_dst_begins_and_ends_at_the_rules_instants(rule, zone, on, off):
    """Standard time: DST from `on` (inclusive) to `off` (exclusive), one hour."""
    a, b = secs(on), secs(off)
    times = around(a, b) + [a - 40 * 86400, (a + b) // 2, b + 40 * 86400]
    assert dst_in_vm(rule, zone, times) == [0, HOUR, HOUR, 0, 0, HOUR, 0]


def test_no_rule_is_standard_time_all_year():
    assert dst_in_vm(config.DST_NONE, 0, around(NA_ON_2027, NA_OFF_2027) + [secs("2027-07-01T12:00:00")]) == [0] * 5


def test_tou_switches_at_local_time_and_transitions_are_changes():
    """A 07:00 peak begins at 06:00 standard time in summer, 07:00 in winter; the time of the
    next change the meter schedules stops at each transition."""
    times = {
        "winter 06:59:59": secs("2027-03-12T06:59:59"),  # a Friday, no DST: A
        "winter 07:00": secs("2027-03-12T07:00:00"),  # B
        "spring day 01:30": secs("2027-03-14T01:30:00"),  # local 01:30: A, next change the transition
        "spring change": NA_ON_2027,  # local 03:00: A, next change 07:00 local = 06:00 standard
        "summer 05:59:59": secs("2027-03-15T05:59:59"),  # local 06:59:59: A
        "summer 06:00": secs("2027-03-15T06:00:00"),  # local 07:00: B
        "summer 20:00": secs("2027-07-01T20:00:00"),  # local 21:00: A again
        "autumn day 00:30": secs("2027-11-07T00:30:00"),  # local 01:30 EDT: A, next the transition
        "autumn change": NA_OFF_2027,  # local 01:00 EST again: next change 07:00 standard
        "after 06:00": secs("2027-11-07T06:00:00"),  # local 06:00: A
    }
    script = (
        "import json, config, tou, powerup\n"
        "cfg = config.Config()\n"
        f"for k, v in {sorted(SETTINGS.items())!r}:\n"
        "    cfg.set(k, v)\n"
        "t = tou.Tou(None)\n"
        "print(powerup._tou(t, cfg))\n"
        f"print(json.dumps([t.at(x) for x in {list(times.values())!r}]))\n"
    )
    ok, got = run_vm(script).splitlines()
    assert ok == "True"
    got = dict(zip(times, json.loads(got), strict=True))
    tier = {k: v[0] for k, v in got.items()}
    assert tier == {
        "winter 06:59:59": 0, "winter 07:00": 1, "spring day 01:30": 0, "spring change": 0,
        "summer 05:59:59": 0, "summer 06:00": 1, "summer 20:00": 0, "autumn day 00:30": 0,
        "autumn change": 0, "after 06:00": 0,
    }  # fmt: skip
    assert got["spring day 01:30"][3] == NA_ON_2027
    assert got["spring change"][3] == secs("2027-03-14T06:00:00")
    assert got["summer 05:59:59"][3] == secs("2027-03-15T06:00:00")
    assert got["autumn day 00:30"][3] == NA_OFF_2027
    assert got["autumn change"][3] == secs("2027-11-07T07:00:00")


# ---- on the simulated board ----------------------------------------------------------------
def lcd_time(board: SimBoard) -> str:
    """The time item as HH:MM (the LCD shows TI and HHMMSS)."""
    text = board.lcd_text()
    assert text.startswith("TI"), text
    return f"{text[2:4]}:{text[4:6]}"


def clock_tables(board: SimBoard) -> tuple[dict, dict, dict, dict]:
    with Client.open(board.optical_port) as c, c.session(password=""):
        return (parse(T.ST51, c.read(51)), parse(T.ST52, c.read(52)), parse(T.ST53, c.read(53)),
                parse(T.ST55, c.read(55)))  # fmt: skip


def run_to(board: SimBoard, meter: MeterRPC, when: str) -> None:
    """Run the board until its clock reads `when` (standard time), give or take a poll."""
    left = secs(when) - meter.now()
    assert left > 0, when
    board.run(float(left))


def interval_ends(meter: MeterRPC, n: int) -> list[tuple[int, int]]:
    """(end, flags) of the newest n load-profile intervals, oldest first."""
    rows = meter.call(f"result = [m.load_profile.read(i) for i in range({n})]")
    return [(r[1], r[4]) for r in reversed(rows)]


def test_spring_forward_on_the_board(tmp_path):
    """2027-03-14, 02:00 EST -> 03:00 EDT, 2.4 kW (240 V x 10 A, unity power factor)."""
    with SimBoard(tmp_path, seed=3, ideal=True, boot=False, heap_kb=DEFAULT_HEAP_KB,
                  start_time="2027-03-14T01:40:00") as board:  # fmt: skip
        meter = MeterRPC(board, SETTINGS)
        board.set_load(240.0, 10.0)
        board.power_on()
        dst_flag = meter.get("__import__('loadprofile').DST")
        assert dst_flag == 32

        run_to(board, meter, "2027-03-14T01:58:05")
        assert lcd_time(board) == "01:58", "local standard time before the change"
        st51, st52, st53, st55 = clock_tables(board)
        assert st51["TIME_FUNC_FLAG2"] & 0x01, "CAP_DST_AUTO: a DST rule is in force"
        assert (st53["DST_HOUR"], st53["DST_MINUTE"], st53["DST_SECOND"], st53["DST_TIME_AMT"]) == (2, 0, 0, 60)
        assert st53["TIME_ZONE_OFFSET"] == -300
        assert (st52["HOUR"], st52["MINUTE"]) == (1, 58)
        assert st52["TIME_DATE_QUAL"] == 0, "Sunday (0), DST_FLAG clear"
        assert st55["TIME_DATE_QUAL"] == 0
        flags, tier = meter.get("m.load_profile.flags", "m.tou.tier")
        assert not flags & dst_flag and tier == 0

        run_to(board, meter, "2027-03-14T02:20:05")
        assert lcd_time(board) == "03:20", "local daylight time after"
        _, st52, _, st55 = clock_tables(board)
        assert (st52["HOUR"], st52["MINUTE"]) == (2, 20), "the clock stays in standard time"
        assert st52["TIME_DATE_QUAL"] == 0x08 == st55["TIME_DATE_QUAL"], "Sunday, DST_FLAG set, DST_APPLIED clear"
        flags, start, due, prev_w = meter.get("m.load_profile.flags", "m.demand.start_time", "m.demand.due",
                                              "m.demand.previous_w")  # fmt: skip
        assert flags & dst_flag, "the running interval is flagged DST"
        # the interval 02:00-02:15 standard time (03:00-03:15 local) was a whole 15-minute one
        assert (start, due) == (secs("2027-03-14T02:15:00"), secs("2027-03-14T02:30:00"))
        assert prev_w == pytest.approx(2400, rel=0.01), "the interval across the change: 2.4 kW, not 0 or double"

        run_to(board, meter, "2027-03-14T05:58:05")
        assert meter.get("m.tou.tier") == 0, "06:58 local: before the peak"
        run_to(board, meter, "2027-03-14T06:02:05")
        assert meter.get("m.tou.tier") == 1, "07:02 local (06:02 standard): the peak"
        assert lcd_time(board) == "07:02"

        ends = interval_ends(meter, 18)  # 01:45 .. 06:00 standard time: no gap, no repeat
        assert [e for e, _ in ends] == [secs("2027-03-14T01:45:00") + 900 * k for k in range(18)]
        assert all(not f & 0x0F for e, f in ends[1:]), "normal intervals: no outage, clock change or partial"
        # the load profile keeps the flag (per block: the change started a new one): the
        # intervals from 02:00 standard time on are DST, those before are not
        assert [bool(f & dst_flag) for _, f in ends] == [e > secs("2027-03-14T02:00:00") for e, _ in ends]


def test_fall_back_on_the_board(tmp_path):
    """2027-11-07, 02:00 EDT -> 01:00 EST: the hour 01:00-02:00 local is seen twice on the LCD,
    once in the clock (standard time)."""
    with SimBoard(tmp_path, seed=4, ideal=True, boot=False, heap_kb=DEFAULT_HEAP_KB,
                  start_time="2027-11-07T00:40:00") as board:  # fmt: skip
        meter = MeterRPC(board, SETTINGS)
        board.set_load(240.0, 10.0)
        board.power_on()
        dst_flag = meter.get("__import__('loadprofile').DST")

        run_to(board, meter, "2027-11-07T00:58:05")
        assert lcd_time(board) == "01:58", "local daylight time: 00:58 standard + 1 h"
        _, st52, _, _ = clock_tables(board)
        assert (st52["HOUR"], st52["MINUTE"], st52["TIME_DATE_QUAL"]) == (0, 58, 0x08)
        assert meter.get("m.load_profile.flags") & dst_flag

        run_to(board, meter, "2027-11-07T01:20:05")
        assert lcd_time(board) == "01:20", "local standard time: the hour again"
        _, st52, _, st55 = clock_tables(board)
        assert (st52["HOUR"], st52["MINUTE"], st52["TIME_DATE_QUAL"]) == (1, 20, 0)
        assert st55["TIME_DATE_QUAL"] == 0
        flags, start, prev_w = meter.get("m.load_profile.flags", "m.demand.start_time", "m.demand.previous_w")
        assert not flags & dst_flag
        assert start == secs("2027-11-07T01:15:00")
        assert prev_w == pytest.approx(2400, rel=0.01), "01:00-01:15 standard: a normal interval"
        ends = interval_ends(meter, 3)
        assert [e for e, _ in ends] == [secs("2027-11-07T00:45:00") + 900 * k for k in range(3)]
        assert all(not f & 0x0F for _, f in ends[1:])
        # 00:30-00:45 and 00:45-01:00 standard time were DST (01:30-02:00 EDT), 01:00-01:15 not
        assert [bool(f & dst_flag) for _, f in ends] == [True, True, False]


def test_set_time_in_local_time_and_st54_lists_the_transitions(tmp_path):
    """meterctl set-time gives local time (procedure 10 with TIME_DATE_QUAL DST_APPLIED): the
    meter keeps it as standard time; without the qualifier a time is standard time (ST52's)."""
    with SimBoard(tmp_path, seed=5, ideal=True, boot=False, heap_kb=DEFAULT_HEAP_KB,
                  start_time="2027-01-04T12:00:00") as board:  # fmt: skip
        meter = MeterRPC(board, SETTINGS)
        board.power_on()
        board.run(2.0)
        with Client.open(board.optical_port) as c, c.session(password=""):
            cases = [
                (dt.datetime(2027, 7, 1, 12, 0, 0), "2027-07-01T11:00:00"),  # summer: EDT is EST + 1 h
                (dt.datetime(2027, 12, 1, 12, 0, 0), "2027-12-01T12:00:00"),  # winter
                (dt.datetime(2027, 11, 7, 1, 30, 0, fold=0), "2027-11-07T00:30:00"),  # the first 01:30 (EDT)
                (dt.datetime(2027, 11, 7, 1, 30, 0, fold=1), "2027-11-07T01:30:00"),  # the second (EST)
                (dt.datetime(2027, 3, 14, 2, 30, 0), "2027-03-14T02:30:00"),  # no such local time: standard
            ]
            for local, standard in cases:
                before, after = program.set_time(c, local)
                clock = meter.now()
                assert 0 <= clock - secs(standard) <= 3, (local, standard)
                assert after is not None and abs((after - local).total_seconds()) <= 3 or local.hour == 2, local
            assert c.procedure(T.PROC_SET_TIME, set_time_params((27, 7, 1, 12, 0, 0)))[0] == T.PROC_DONE
            st52 = parse(T.ST52, c.read(52))
            assert (st52["HOUR"], st52["MINUTE"], st52["TIME_DATE_QUAL"] & 0x08) == (12, 0, 0x08), "standard time"
            assert program.read_clock(c).hour == 13, "meterctl shows local time: 13:00 EDT"
            st51 = parse(T.ST51, c.read(51))
            st54 = c.read_all(54, st51["CALENDAR_TBL_SIZE"])
        cal = decode_st54(st51, st54)
        assert ((2027, 3, 14), DST_ON, 0) in cal["non_recurring"]
        assert ((2027, 11, 7), DST_OFF, 0) in cal["non_recurring"]


def test_a_dst_setting_out_of_range_is_refused(tmp_path):
    with SimBoard(tmp_path, seed=6, ideal=True, boot=False, heap_kb=DEFAULT_HEAP_KB) as board:
        MeterRPC(board, {})
        board.power_on()
        board.run(2.0)
        with Client.open(board.optical_port) as c, c.session(password=""):
            for key, value in ((config.DST, 3), (config.TIME_ZONE_MIN, 10), (config.TIME_ZONE_MIN, 900)):
                raw = value.to_bytes(2, "little", signed=True)
                with pytest.raises(ServiceError):
                    c.write(T.MFG + 1, bytes((key, 0x82)) + raw)
            c.write(T.MFG + 1, bytes((config.TIME_ZONE_MIN, 0x82)) + (-300).to_bytes(2, "little", signed=True))
