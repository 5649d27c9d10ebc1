"""The TOU calendar (issue 7): an independent C12.19 reader finds the schedule the meter
runs in ST51 (dimensions) + ST54 (CALENDAR_TBL), and no daylight saving time in ST51/ST53.

The schedule is programmed as a user does (`meterctl program`); ST54 is decoded here from
the standard's layout (firmware/README.md names the sources), not with the firmware's code,
and compared with what was programmed, minute by minute, using tou.py's documented rule."""

from __future__ import annotations

import json
import time

from host_tools.c1218 import TABLES, Client, parse

T = TABLES
TIERS = "ABCD"
SATURDAY, SUNDAY, WEEKDAY = "saturday", "sunday", "weekday"
SELECT_SEASON, SPECIAL_SCHEDULE = 3, 19  # CALENDAR_ACTION codes: 3 + season, 19 + special schedule
DST_ON, DST_OFF = 1, 2

# the schedule under test: two seasons; weekday peak/off-peak (its own in season 2), weekends
# flat; a one-off holiday and Christmas every year, flat D
PROGRAM = """
[tou]
seasons = ["01-01", "07-01"]
holidays = ["2026-01-19", "12-25"]

[tou.schedule.weekday]
"00:00" = "A"
"07:00" = "B"
"17:00" = "C"
"21:00" = "A"

[tou.schedule.holiday]
"00:00" = "D"

[tou.schedule.season2.weekday]
"08:00" = "B"
"20:00" = "A"
"""
BLANK = """
[tou]
seasons = []
holidays = []

[tou.schedule]
"""
POINTS = {  # (season, day type): the switch points programmed, as (minute of day, tier)
    (0, WEEKDAY): [(0, 0), (420, 1), (1020, 2), (1260, 0)],
    (1, WEEKDAY): [(480, 1), (1200, 0)],
    (0, "holiday"): [(0, 3)],
    (1, "holiday"): [(0, 3)],
}


# ---- an independent ST54 decoder, from the standard's layout ------------------------------
def decode_st54(st51: dict, data: bytes) -> dict:
    """CALENDAR_TBL as ST51 dimensions it (TM_FORMAT 2, no anchor date, SEPARATE_WEEKDAYS 0)."""
    assert not st51["TIME_FUNC_FLAG1"] & 0x20, "no ANCHOR_DATE"
    assert not st51["TIME_FUNC_FLAG2"] & 0x02, "no separate weekdays"
    seasons, special = st51["CALENDAR_FUNC"] & 15, st51["CALENDAR_FUNC"] >> 4
    pos = 0

    def take(n: int) -> bytes:
        nonlocal pos
        pos += n
        assert pos <= len(data), "ST54 is shorter than ST51 says"
        return data[pos - n : pos]

    out: dict = {"non_recurring": [], "recurring": [], "switches": [], "matrix": []}
    for _ in range(st51["NBR_NON_RECURR_DATES"]):
        yy, mm, dd, ctrl = take(4)
        out["non_recurring"].append(((2000 + yy, mm, dd), ctrl & 0x1F, ctrl >> 5))
    for _ in range(st51["NBR_RECURR_DATES"]):
        raw = take(3)
        rdate = int.from_bytes(raw[:2], "little")
        month, offset, weekday, day = rdate & 15, rdate >> 4 & 15, rdate >> 8 & 7, rdate >> 11
        out["recurring"].append(((month, day), offset, weekday, raw[2] & 0x1F, raw[2] >> 5))
    for _ in range(st51["NBR_TIER_SWITCHES"]):
        raw = take(3)
        bfld = int.from_bytes(raw[:2], "little")
        tier, flags, minute, hour = bfld & 7, bfld >> 3 & 3, bfld >> 5 & 63, bfld >> 11
        assert flags == 0 and minute < 60 and hour < 24, raw.hex()
        out["switches"].append((raw[2], hour * 60 + minute, tier))
    for _ in range(seasons):
        row = take(3 + special)
        out["matrix"].append({SATURDAY: row[0], SUNDAY: row[1], WEEKDAY: row[2], "special": list(row[3:])})
    assert pos == len(data) == st51["CALENDAR_TBL_SIZE"], "ST54 is exactly as ST51 dimensions it"
    return out


def day_schedules(cal: dict) -> dict[int, list[tuple[int, int]]]:
    days: dict[int, list[tuple[int, int]]] = {}
    for day_id, minute, tier in cal["switches"]:
        days.setdefault(day_id, []).append((minute, tier))
    return days


def tier_at(points: list[tuple[int, int]], minute: int) -> int:
    """tou.py's rule: before a day's first switch point its last tier holds; none: tier A."""
    points = sorted(points)
    tier = points[-1][1] if points else 0
    for m, t in points:
        if m <= minute:
            tier = t
    return tier


# ---- helpers ---------------------------------------------------------------------------------
def settle(meter) -> None:
    """Let the meter's loop take up a new configuration (it reconfigures between polls)."""
    if meter.sim is not None:
        meter.sim.run(2.0)
    else:
        time.sleep(2.0)


def program(meter, meterctl, tmp_path, text: str) -> None:
    path = tmp_path / "meter.toml"
    path.write_text(text)
    r = meterctl("program", "--port", meter.optical, "--config", str(path))
    assert r.returncode == 0, r.stdout + r.stderr
    settle(meter)


def read_calendar(meter) -> tuple[dict, bytes, dict]:
    with Client.open(meter.optical) as c, c.session(password="", packet_size=256, nbr_packets=8):
        st51 = parse(T.ST51, c.read(51))
        st54 = c.read_all(54, st51["CALENDAR_TBL_SIZE"]) if st51["CALENDAR_TBL_SIZE"] else c.read(54)
        st53 = parse(T.ST53, c.read(53))
    return st51, st54, st53


# ---- tests -----------------------------------------------------------------------------------
def test_st54_describes_the_programmed_schedule(meter, meterctl, tmp_path):
    program(meter, meterctl, tmp_path, PROGRAM)
    st51, st54, _ = read_calendar(meter)
    assert st51["CALENDAR_FUNC"] == 2 | 1 << 4, "two seasons, one special schedule (the holidays)"
    assert st51["TIME_FUNC_FLAG2"] & 0x08, "SORT_TIER_SWITCHES: they come sorted"
    cal = decode_st54(st51, st54)

    assert cal["non_recurring"] == [((2026, 1, 19), SPECIAL_SCHEDULE + 0, 0)]
    assert sorted(cal["recurring"]) == [
        ((1, 1), 0, 0, SELECT_SEASON + 0, 0),  # season 1 from January 1, every year
        ((7, 1), 0, 0, SELECT_SEASON + 1, 0),  # season 2 from July 1
        ((12, 25), 0, 0, SPECIAL_SCHEDULE + 0, 0),  # Christmas, every year
    ]
    actions = [r[3] for r in cal["recurring"]] + [r[1] for r in cal["non_recurring"]]
    assert DST_ON not in actions and DST_OFF not in actions, "no calendar action is DST on/off"

    assert cal["switches"] == sorted(cal["switches"]), "sorted by day schedule, then time"
    days = day_schedules(cal)
    used = {i for row in cal["matrix"] for i in (row[SATURDAY], row[SUNDAY], row[WEEKDAY], *row["special"])}
    assert set(days) == used, "every day schedule the matrix names has its switches, and no other"
    assert len(cal["matrix"]) == 2
    for season, row in enumerate(cal["matrix"]):
        for day_type in (SATURDAY, SUNDAY, WEEKDAY, "holiday"):
            day_id = row["special"][0] if day_type == "holiday" else row[day_type]
            got = days[day_id]
            want = POINTS.get((season, day_type), [])
            for minute in range(0, 1440):
                assert tier_at(got, minute) == tier_at(want, minute), (season, day_type, minute)
            assert {m for m, _ in got} - {0} == {m for m, _ in want} - {0}, "switch times as programmed"
    # the exact records: what the meter runs, spelt out (a day starts with an explicit 00:00)
    s1, s2 = cal["matrix"]
    assert days[s1[WEEKDAY]] == [(0, 0), (420, 1), (1020, 2), (1260, 0)]
    assert days[s2[WEEKDAY]] == [(0, 0), (480, 1), (1200, 0)]  # before 08:00: the day's last tier, A
    assert days[s1[SATURDAY]] == days[s1[SUNDAY]] == [(0, 0)], "weekends flat A"
    assert s1[SATURDAY] == s1[SUNDAY] == s2[SATURDAY] == s2[SUNDAY], "identical days share one schedule id"
    assert days[s1["special"][0]] == days[s2["special"][0]] == [(0, 3)], "holidays flat D"
    assert len(set(days)) == 4 and sorted(days) == [0, 1, 2, 3]


def test_a_blank_schedule_is_one_season_all_tier_a(meter, meterctl, tmp_path):
    program(meter, meterctl, tmp_path, PROGRAM)
    program(meter, meterctl, tmp_path, BLANK)  # what a new meter has: ST54 follows it back
    st51, st54, _ = read_calendar(meter)
    assert st51["CALENDAR_FUNC"] == 1, "one season, no special schedule"
    assert (st51["NBR_NON_RECURR_DATES"], st51["NBR_RECURR_DATES"], st51["NBR_TIER_SWITCHES"]) == (0, 0, 1)
    cal = decode_st54(st51, st54)
    assert cal["switches"] == [(0, 0, 0)], "00:00 tier A"
    assert cal["matrix"] == [{SATURDAY: 0, SUNDAY: 0, WEEKDAY: 0, "special": []}]


def test_no_daylight_saving_time_is_claimed(meter):
    st51, _, st53 = read_calendar(meter)
    assert not st51["TIME_FUNC_FLAG2"] & 0x01, "CAP_DST_AUTO clear"
    assert st51["TIME_FUNC_FLAG2"] & 0x10, "CAP_TM_ZN_OFFSET: ST53 has TIME_ZONE_OFFSET"
    assert st53["DST_TIME_AMT"] == 0
    assert (st53["DST_HOUR"], st53["DST_MINUTE"], st53["DST_SECOND"]) == (0, 0, 0)
    assert st53["TIME_ZONE_OFFSET"] == 0, "the meter has no time zone setting"


def test_partial_reads_of_st54_agree_with_the_full_read(meter, meterctl, tmp_path):
    program(meter, meterctl, tmp_path, PROGRAM)
    st51, full, _ = read_calendar(meter)
    size = len(full)
    assert size == st51["CALENDAR_TBL_SIZE"] == 4 + 3 * 3 + 3 * st51["NBR_TIER_SWITCHES"] + 2 * 4
    with Client.open(meter.optical) as c, c.session(password=""):
        assert c.read(54) == full
        for off in range(size):
            for count in {1, 2, 3, 7, size - off}:
                if 0 < count <= size - off:
                    assert c.read(54, off, count) == full[off : off + count], (off, count)
    r = meterctl("table", "54", "--port", meter.optical, "--json")
    assert r.returncode == 0, r.stderr
    assert bytes.fromhex(json.loads(r.stdout)["hex"]) == full
    r = meterctl("table", "54", "--port", meter.optical, "--offset", "5", "--count", "9", "--json")
    assert r.returncode == 0, r.stderr
    assert bytes.fromhex(json.loads(r.stdout)["hex"]) == full[5:14]


def test_the_largest_calendar_is_served_in_pieces(meter):
    """Every day of 4 seasons distinct with 13 switch points (40 bytes a setting at most)
    and 13 holidays: ST54 is larger than one packet and is read in parts, coherent with ST51."""
    config_key = 0x40
    seasons = bytes((1, 1, 4, 1, 7, 1, 10, 1))
    holidays = bytes(v for k in range(13) for v in ((0xFF, 12, 20 + k) if k % 2 else (26 + k, 3, 1 + k)))
    writes = [bytes((config_key, len(seasons))) + seasons, bytes((config_key + 1, len(holidays))) + holidays]
    want: dict[int, list[tuple[int, int]]] = {}
    for k in range(16):
        points = [(h, (k * 7 + h) % 60, (h + k) % 4) for h in range(10, 23)]  # 13 points, each day its own
        want[k] = [(h * 60 + m, t) for h, m, t in points]
        writes.append(bytes((0x42 + k, 39)) + bytes(v for p in points for v in p))
    with Client.open(meter.optical) as c, c.session(password=""):
        for w in writes:
            c.write(T.MFG + 1, w)
    settle(meter)
    with Client.open(meter.optical) as c, c.session(password="", packet_size=64, nbr_packets=2):
        st51 = parse(T.ST51, c.read(51))
        size = st51["CALENDAR_TBL_SIZE"]
        assert size > 253, "bigger than a table built whole"
        st54 = c.read_all(54, size, chunk=50)
    assert st51["CALENDAR_FUNC"] == 4 | 1 << 4
    assert (st51["NBR_NON_RECURR_DATES"], st51["NBR_RECURR_DATES"]) == (7, 6 + 4)
    assert st51["NBR_TIER_SWITCHES"] == 16 * 14, "13 points and the 00:00 carry-over a day"
    cal = decode_st54(st51, st54)
    days = day_schedules(cal)
    for season, row in enumerate(cal["matrix"]):
        for k, day_id in enumerate((row[WEEKDAY], row[SATURDAY], row[SUNDAY], row["special"][0])):
            got = days[day_id]
            assert got[0] == (0, want[season * 4 + k][-1][1]) and got[1:] == want[season * 4 + k]
