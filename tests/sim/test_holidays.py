"""Holidays by rule (issue 16): the nth or last weekday of a month and fixed dates "observed"
on a weekday, beside one-off and every-year dates, as `[tou] holidays` gives them; the day
type worked out in the MicroPython VM over ten years, and the tier on the simulated board.

The dates below were written from a calendar and checked against Python's calendar module.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from pathlib import Path

import pytest
from billing_rpc import MeterRPC, secs
from test_calendar import SPECIAL_SCHEDULE, decode_st54

from host_tools import program
from host_tools.c1218 import TABLES as T
from host_tools.c1218 import Client, parse
from host_tools.repo import firmware_module
from host_tools.sim import SimBoard
from host_tools.sim.board import DEFAULT_HEAP_KB

pytestmark = pytest.mark.sim_only

config = firmware_module("config")
REPO = Path(__file__).resolve().parents[2]
MICROPYTHON = Path(sys.executable).parent / "micropython"
WEEKDAY, SATURDAY, SUNDAY, HOLIDAY = 0, 1, 2, 3  # tou.py's day types
YEARS = range(2026, 2036)

THANKSGIVING = ["2026-11-26", "2027-11-25", "2028-11-23", "2029-11-22", "2030-11-28",
                "2031-11-27", "2032-11-25", "2033-11-24", "2034-11-23", "2035-11-22"]  # fmt: skip
MEMORIAL_DAY = ["2026-05-25", "2027-05-31", "2028-05-29", "2029-05-28", "2030-05-27",
                "2031-05-26", "2032-05-31", "2033-05-30", "2034-05-29", "2035-05-28"]  # fmt: skip
LABOR_DAY = ["2026-09-07", "2027-09-06", "2028-09-04", "2029-09-03", "2030-09-02",
             "2031-09-01", "2032-09-06", "2033-09-05", "2034-09-04", "2035-09-03"]  # fmt: skip
# 4 July observed: 2026 a Saturday (Friday 3rd), 2027 and 2032 a Sunday (Monday 5th)
JULY_4 = ["2026-07-03", "2027-07-05", "2028-07-04", "2029-07-04", "2030-07-04",
          "2031-07-04", "2032-07-05", "2033-07-04", "2034-07-04", "2035-07-04"]  # fmt: skip
# 1 January observed: 2028 and 2033 a Saturday (Friday 31 December before), 2034 a Sunday;
# 2036-01-01 is a Tuesday, so nothing of it falls in 2035
NEW_YEAR = ["2026-01-01", "2027-01-01", "2027-12-31", "2029-01-01", "2030-01-01",
            "2031-01-01", "2032-01-01", "2032-12-31", "2034-01-02", "2035-01-01"]  # fmt: skip
CHRISTMAS = [f"{y}-12-25" for y in YEARS]  # "12-25": the date, whatever the weekday
ONE_OFF = ["2027-04-02"]
HOLIDAYS = ["11-4-thu", "5-last-mon", "9-1-mon", "07-04-observed", "01-01-observed", "12-25", "2027-04-02"]
EXPECTED = set(THANKSGIVING + MEMORIAL_DAY + LABOR_DAY + JULY_4 + NEW_YEAR + CHRISTMAS + ONE_OFF)
WEEKENDS_NOT_MOVED = ["2026-07-04", "2027-07-04", "2028-01-01", "2034-01-01"]  # the dates themselves


def schedule_settings() -> dict[int, bytes]:
    """The holidays as `meterctl program` encodes them; weekdays B, weekends A, holidays D."""
    raw = b"".join(program.parse_holiday(h) or b"?" for h in HOLIDAYS)
    return {
        config.TOU_HOLIDAYS: raw,
        config.TOU_SCHEDULE + WEEKDAY: bytes((0, 0, 1)),
        config.TOU_SCHEDULE + HOLIDAY: bytes((0, 0, 3)),
    }


def run_vm(script: str) -> str:
    r = subprocess.run([str(MICROPYTHON), "-X", "heapsize=2M", "-c", script], capture_output=True, text=True,
                       timeout=300, cwd=REPO / "firmware")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def test_the_holiday_strings_encode_as_documented():
    raw = {h: program.parse_holiday(h) for h in HOLIDAYS}
    assert raw == {
        "11-4-thu": bytes((0xF4, 11, 3)),  # HOLIDAY_NTH + 4, November, Thursday (0 Monday)
        "5-last-mon": bytes((0xF5, 5, 0)),  # HOLIDAY_NTH + HOLIDAY_LAST
        "9-1-mon": bytes((0xF1, 9, 0)),
        "07-04-observed": bytes((0xFE, 7, 4)),
        "01-01-observed": bytes((0xFE, 1, 1)),
        "12-25": bytes((0xFF, 12, 25)),
        "2027-04-02": bytes((27, 4, 2)),
    }
    for h, b in raw.items():
        assert b is not None and program.render_holiday(b) == h
    for bad in ("11-5-thu", "13-1-mon", "11-4-thursday", "02-30-observed", "0-last-fri", "2100-01-01"):
        assert program.parse_holiday(bad) is None, bad


def test_ten_years_of_holidays_by_rule_in_the_vm():
    """Every day of 2026-2035 at noon: the holiday day type on exactly the expected dates."""
    first = (dt.date(2026, 1, 1) - dt.date(2000, 1, 1)).days
    last = (dt.date(2035, 12, 31) - dt.date(2000, 1, 1)).days
    script = (
        "import json, config, tou, powerup\n"
        "cfg = config.Config()\n"
        f"for k, v in {sorted(schedule_settings().items())!r}:\n"
        "    cfg.set(k, v)\n"
        "t = tou.Tou(None)\n"
        "print(powerup._tou(t, cfg))\n"
        "out = []\n"
        f"for d in range({first}, {last + 1}):\n"
        "    tier, season, day_type, due = t.at(d * 86400 + 43200)\n"
        "    out.append((d, tier, day_type))\n"
        "print(json.dumps(out))\n"
    )
    ok, got = run_vm(script).splitlines()
    assert ok == "True", "the rules are valid settings"
    rows = json.loads(got)
    assert len(rows) == 3652
    holidays = set()
    for d, tier, day_type in rows:
        date = dt.date(2000, 1, 1) + dt.timedelta(days=d)
        if day_type == HOLIDAY:
            holidays.add(date.isoformat())
            assert tier == 3, date
        else:
            assert day_type == {5: SATURDAY, 6: SUNDAY}.get(date.weekday(), WEEKDAY), date
            assert tier == (0 if date.weekday() >= 5 else 1), date
    assert holidays == EXPECTED
    for d in THANKSGIVING + MEMORIAL_DAY + JULY_4:  # the day before and after are ordinary days
        day = dt.date.fromisoformat(d)
        for other in (day - dt.timedelta(days=1), day + dt.timedelta(days=1)):
            assert other.isoformat() not in holidays, (d, other)
    assert not holidays & set(WEEKENDS_NOT_MOVED), "an observed holiday's weekend date keeps its schedule"


def test_the_day_type_is_worked_out_without_allocating():
    """tou._find (the tier lookup switch() runs) with the heap locked, over days with rules."""
    times = [secs(d + "T12:00:00") for d in ["2027-11-24", "2027-11-25", "2027-11-26", "2027-12-31", "2028-01-03"]]
    script = (
        "import config, tou, powerup, micropython\n"
        "cfg = config.Config()\n"
        f"for k, v in {sorted(schedule_settings().items())!r}:\n"
        "    cfg.set(k, v)\n"
        f"cfg.set({config.DST}, {config.DST_NORTH_AMERICA})\n"
        "t = tou.Tou(None)\n"
        "powerup._tou(t, cfg)\n"
        f"times = {times!r}\n"
        "out = bytearray(len(times))\n"
        "def look(t, times, out):\n"
        "    micropython.heap_lock()\n"
        "    for i in range(len(times)):\n"
        "        t._find(times[i])\n"
        "        out[i] = t._found[1]\n"
        "    micropython.heap_unlock()\n"
        "look(t, times, out)\n"
        "print(list(out))\n"
    )
    assert run_vm(script).strip() == str([WEEKDAY, HOLIDAY, WEEKDAY, HOLIDAY, WEEKDAY])


def test_holidays_by_rule_programmed_with_meterctl_switch_the_tier(meter, meterctl, tmp_path):
    """[tou] holidays with rules through `meterctl program`; on Thanksgiving 2027 (Thursday
    25 November) the tier is the holiday schedule's, the day before and after the weekday's."""
    path = tmp_path / "meter.toml"
    path.write_text(
        '[tou]\nholidays = ["11-4-thu", "5-last-mon"]\n'
        '[tou.schedule.weekday]\n"00:00" = "B"\n[tou.schedule.holiday]\n"00:00" = "D"\n'
    )
    done = meterctl("program", "--port", meter.optical, "--config", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "11-4-thu, 5-last-mon" in done.stdout, "read back and shown as written"
    if meter.sim is not None:
        meter.sim.run(2.0)
    tiers = {}
    with Client.open(meter.optical) as c, c.session(password=""):
        for day in ("2027-11-24", "2027-11-25", "2027-11-26", "2028-05-29"):
            program.set_time(c, dt.datetime.fromisoformat(day + "T12:00:00"))
            if meter.sim is not None:
                meter.sim.run(2.0)
            tiers[day] = parse(T.ST55, c.read(55))["STATUS"] & 7  # CURRENT_TIER
        st51 = parse(T.ST51, c.read(51))
        st54 = c.read_all(54, st51["CALENDAR_TBL_SIZE"])
    assert tiers == {"2027-11-24": 1, "2027-11-25": 3, "2027-11-26": 1, "2028-05-29": 3}
    # ST54 gives a C12.19 reader the rules' dates of the meter's year (2028), special schedule 0
    assert decode_st54(st51, st54)["non_recurring"] == [((2028, 11, 23), SPECIAL_SCHEDULE, 0),
                                                        ((2028, 5, 29), SPECIAL_SCHEDULE, 0)]  # fmt: skip


@pytest.mark.parametrize("text", ["11-5-thu", "11-4-thursday", "2027-02-30"])
def test_a_bad_holiday_rule_is_one_line(meterctl, tmp_path, text):
    path = tmp_path / "meter.toml"
    path.write_text(f'[tou]\nholidays = ["{text}"]\n')
    done = meterctl("program", "--config", str(path), "--dry-run")
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert f"tou.holidays[0]: {text!r} is not a date or a rule" in lines[0]
    assert '"11-4-thu" the fourth Thursday of November' in lines[0], "the syntax is named"


def test_a_malformed_rule_in_the_meter_is_a_configuration_error():
    """Bytes no rule has (a 6th weekday, a weekday 7, marker 0xF8) are refused at power-up."""
    for raw in (bytes((0xF6, 11, 3)), bytes((0xF4, 11, 7)), bytes((0xF8, 1, 1)), bytes((0xFE, 13, 1))):
        script = (
            "import config, tou, powerup\n"
            "cfg = config.Config()\n"
            f"cfg.set({config.TOU_HOLIDAYS}, {raw!r})\n"
            "t = tou.Tou(None)\n"
            "print(powerup._tou(t, cfg), len(t.holidays))\n"
        )
        assert run_vm(script).split() == ["False", "0"], raw


def test_the_settings_rule_refuses_a_malformed_rule_before_it_is_stored():
    """config.validate (what the optical port's MT1 write and meterctl program ask) refuses
    the bytes power-up would refuse, and takes the documented rules and dates."""
    bad = (bytes((0xF6, 11, 3)), bytes((0xF4, 11, 7)), bytes((0xF8, 1, 1)), bytes((0xFE, 13, 1)),
           bytes((26, 4, 32)), bytes((0xFF, 12)))  # fmt: skip
    good = bytes((0xF4, 11, 3, 0xF5, 5, 0, 0xFF, 12, 25, 0xFE, 7, 4, 27, 4, 2))
    script = (
        "import config\n"
        "cfg = config.Config()\n"
        f"print([config.validate({config.TOU_HOLIDAYS}, b, cfg) for b in {bad!r}])\n"
        f"print(config.validate({config.TOU_HOLIDAYS}, {good!r}, cfg))\n"
    )
    refused, taken = run_vm(script).splitlines()
    assert refused == repr([config.TOU_HOLIDAYS] * len(bad))
    assert taken == "None"


def test_no_holiday_setting_with_dst_off_is_unchanged(tmp_path):
    """The defaults: no DST, one season; ST55's tier A at a weekday noon."""
    with SimBoard(tmp_path, seed=2, ideal=True, boot=False, heap_kb=DEFAULT_HEAP_KB,
                  start_time="2027-11-25T12:00:00") as board:  # fmt: skip
        meter = MeterRPC(board, {})
        board.power_on()
        assert meter.get("m.tou.tier", "m.tou.day_type", "m.tou.dst_at(m.clock_time)") == (0, WEEKDAY, 0)
