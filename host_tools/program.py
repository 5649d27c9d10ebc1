"""meterctl's write-side commands: what a bench technician changes on a meter through its
optical port, each with one line that says what went wrong when it does.

    meterctl program --config FILE [--dry-run] --port P --password PW
    meterctl set-time [--now | 2026-11-24T08:00:00] --port P --password PW
    meterctl reset-demand --port P
    meterctl calibrate --volts V --amps A --pf PF [--seconds S] --port P --password MASTER
    meterctl seal | unseal --port P --password MASTER

A configuration file (TOML; host_tools/examples/meter.toml documents every key) is checked
whole before a byte is sent, against the rules the meter applies (firmware/config.py
validate: the one declaration of each setting's allowed values, which the meter's optical
port and power-up apply too), so a mistake is named with its key at once
rather than found as a bare "refused" from the meter. The settings then go in one MT1 write,
which the meter takes all or none, and are read back.

A calibration step takes minutes of the meter's time, more than a response may wait: the
meter accepts it (ST8 result 1), runs it in its loop while still answering the port, and
puts the final result in ST8, which the host polls. Between polls the host sends the Wait
service, so the session outlives the pauses whatever the pace of the meter's clock.

The plain functions (load_config, validate, apply_settings, set_time, reset_demand,
calibrate, seal, unseal) take an open client at the level needed; host_tools/demo.py calls them.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import re
import struct
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from host_tools import optical
from host_tools.c1218 import PROC_RESULTS, Client, ServiceError, pad_password, parse, parse_st23, set_time_params
from host_tools.c1218 import TABLES as T
from host_tools.cli import UsageError
from host_tools.optical import EXIT_OK, EXIT_REFUSED, MeterctlError
from host_tools.repo import FIRMWARE_DIR, firmware_module

config = firmware_module("config")
MT0, MT1, MT2 = T.MFG + 0, T.MFG + 1, T.MFG + 2
PASSWORD_LEVELS = ("reader", "programmer", "master")  # MT2: 20 bytes each, in this order
DAY_TYPES = ("weekday", "saturday", "sunday", "holiday")  # tou.py WEEKDAY .. HOLIDAY
# [tou] dst: the names of config.DST's rules; holidays by rule name weekdays in the order
# config.HOLIDAY_NTH counts them (0 Monday), and "last" is config.HOLIDAY_LAST
DST_RULES = {"none": config.DST_NONE, "north-america": config.DST_NORTH_AMERICA, "eu": config.DST_EU}
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HOLIDAY_SYNTAX = ('"YYYY-MM-DD" (once), "MM-DD" (every year), "MM-DD-observed" (every year, a Saturday\'s '
                  'on the Friday, a Sunday\'s on the Monday), or "M-N-DAY" (the Nth DAY of month M: N 1-4 or '
                  '"last", DAY mon..sun; "11-4-thu" the fourth Thursday of November)')  # fmt: skip
ID_STYLES = ("DE/NG", "TX/RX")  # config.ID_STYLE 0, 1
FORMS = ("1S", "2S")  # config.ELEMENTS 1, 2: the meter form (config.py, metrology.py)
DISPLAY_ITEM_CONSTANTS = {
    "delivered": "ITEM_DELIVERED", "received": "ITEM_RECEIVED", "net": "ITEM_NET",
    "max_demand": "ITEM_MAX_DEMAND", "tier": "ITEM_TOU_TIER", "date": "ITEM_DATE", "time": "ITEM_TIME",
    "version": "ITEM_VERSION", "test": "ITEM_SEGMENTS",
    "cum_demand": "ITEM_CUM_DEMAND", "cont_cum_demand": "ITEM_CONT_CUM_DEMAND",
}  # fmt: skip
MAX_BYTES = config._MAX_BYTES  # the longest byte-string setting
MAX_ITEMS = config._MAX_ITEMS  # the longest display list
POLL_S = 0.2  # between two reads of ST8 while a calibration step runs
WAIT_S = 255  # the Wait service's most: the session outlives a poll's pause


# ---- the firmware's own numbers ---------------------------------------------------------
@cache
def _source(module: str) -> str:
    return (FIRMWARE_DIR / f"{module}.py").read_text()


def _fw_const(module: str, name: str) -> int:
    """`NAME = const(N)` of a firmware module that cannot be imported on the host."""
    m = re.search(rf"^{name} = const\((0x[0-9A-Fa-f]+|\d+)\)", _source(module), re.M)
    if m is None:
        raise RuntimeError(f"firmware/{module}.py no longer declares {name}")
    return int(m[1], 0)


@cache
def display_items() -> dict[str, int]:
    """Item name -> the code firmware/display.py declares for it."""
    return {name: _fw_const("display", const) for name, const in DISPLAY_ITEM_CONSTANTS.items()}


@cache
def demand_intervals() -> tuple[int, ...]:
    """The demand and load-profile intervals the meter keeps (config.validate, probed)."""
    return tuple(m for m in range(1, 61) if _accepts(config.DEMAND_INTERVAL_MIN, m))


def _accepts(key: int, value: int) -> bool:
    """config.validate takes value for key on its own (a conflict with another setting aside)."""
    return bool(config.validate(key, value, config.Config()) != key)


def _edge(key: int, inside: int, step: int) -> int:
    """The last value from `inside` on, going by step's sign, that _accepts (a range's end)."""
    far = inside
    while _accepts(key, far + step) and abs(step) < 1 << 32:
        far += step
        step *= 2
    while abs(step) > 1:
        step //= 2
        if _accepts(key, far + step):
            far += step
    return far


@cache
def own_range(key: int) -> tuple[int, int, tuple[int, ...]]:
    """An integer setting's least and most values, and the ones between (up to 60) the meter
    takes (config.validate, probed: the host keeps no copy of the ranges)."""
    near = [v for v in range(-1, 101) if _accepts(key, v)]
    lo = _edge(key, near[0], -1) if near[0] == -1 else near[0]
    hi = _edge(key, near[-1], 1) if near[-1] == 100 else near[-1]
    return lo, hi, tuple(v for v in near if lo <= v <= hi) if hi - lo <= 60 else ()


def _request_max() -> int:
    """The most MT1 data one write may carry: the link's longest request less its header."""
    return _fw_const("c1218", "_REQ_MAX") - 6  # write: code, table (2), count (2); checksum


@contextlib.contextmanager
def _firmware_config() -> Iterator[None]:
    """tables.py's checks `import config`: give them the firmware's config.py meanwhile."""
    saved = sys.modules.get("config")
    sys.modules["config"] = config
    try:
        yield
    finally:
        if saved is None:
            del sys.modules["config"]
        else:
            sys.modules["config"] = saved


# ---- settings ---------------------------------------------------------------------------
@dataclass
class Setting:
    path: str  # where the file says it: "display.scroll_s"
    key: int  # config.py id
    value: int | bytes


@dataclass
class Settings:
    """A validated configuration: MT1 settings and MT2 passwords (index: PASSWORD_LEVELS)."""

    source: str
    values: list[Setting] = field(default_factory=list)
    passwords: dict[int, str] = field(default_factory=dict)

    @property
    def level(self) -> str:
        """The access level the settings need (tables.config_level; passwords: master)."""
        with _firmware_config():
            levels = [T.config_level(s.key) for s in self.values]
        return "master" if self.passwords or T.MASTER in levels else "programmer"

    def lines(self) -> list[str]:
        out = [f"{s.path:<30} {render(s.key, s.value)}" for s in self.values]
        out += [f"passwords.{PASSWORD_LEVELS[i]:<20} (set)" for i in sorted(self.passwords)]
        return out


def render(key: int, value: int | bytes) -> str:
    """A setting as a person writes it in the file."""
    c = config
    if isinstance(value, int):
        if key == c.KH_MWH:
            return f"{value / 1000:g} Wh per pulse"
        if key in (c.CT_REVERSE_A, c.CT_REVERSE_B):
            return "true" if value else "false"
        if key == c.ID_STYLE:
            return ID_STYLES[value] if 0 <= value < len(ID_STYLES) else str(value)
        if key == c.ELEMENTS:
            return repr(FORMS[value - 1]) if 1 <= value <= len(FORMS) else str(value)
        if key == c.SELF_READ_TIME:
            return "none" if value < 0 else f"{value // 60:02d}:{value % 60:02d}"
        return str(value)
    if key == c.DISPLAY_ITEMS:
        names = {code: name for name, code in display_items().items()}
        return ", ".join(names.get(b, f"#{b}") for b in value)
    if key == c.TOU_SEASONS:
        return ", ".join(f"{value[i]:02d}-{value[i + 1]:02d}" for i in range(0, len(value) - 1, 2)) or "(one season)"
    if key == c.DST:
        return {v: k for k, v in DST_RULES.items()}.get(value, str(value))
    if key == c.TOU_HOLIDAYS:
        return ", ".join(render_holiday(value[i : i + 3]) for i in range(0, len(value) - 2, 3)) or "(none)"
    if c.TOU_SCHEDULE <= key < c.TOU_SCHEDULE + 16:
        points = [
            f"{value[i]:02d}:{value[i + 1]:02d} {'ABCDEFGH'[value[i + 2] & 7]}" for i in range(0, len(value) - 2, 3)
        ]
        return ", ".join(points) or "A all day"
    if key == c.DEVICE_ID:
        return repr(value.decode("ascii", "replace").rstrip())
    return value.hex() or "(empty)"


class _Checker:
    """Turns a parsed TOML document into Settings, or one line naming the first mistake."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.out = Settings(source)

    def fail(self, path: str, problem: str) -> None:
        raise UsageError(f"{self.source}: {path}: {problem}")

    def add(self, path: str, key: int, value: int | bytes) -> None:
        self.out.values.append(Setting(path, key, value))

    def keys(self, section: str, table: Any, known: tuple[str, ...]) -> dict[str, Any]:
        if not isinstance(table, dict):
            self.fail(section, f"must be a table ([{section}]), not {_kind(table)}")
        for key in table:
            if key not in known:
                self.fail(f"{section}.{key}", f"unknown key ([{section}] takes {', '.join(known)})")
        return table

    def integer(self, path: str, value: Any, lo: int | None = None, hi: int | None = None) -> int:
        """A whole number; its range is config.validate's (checked with the rest, check_rules),
        unless lo and hi bound a value the file gives in other units."""
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, f"must be a whole number, not {_kind(value)} {value!r}")
        if lo is not None and value < lo:
            self.fail(path, f"{value} is below the least allowed ({lo})")
        if hi is not None and value > hi:
            self.fail(path, f"{value} is above the most allowed ({hi})")
        return value

    def boolean(self, path: str, value: Any) -> int:
        if not isinstance(value, bool):
            self.fail(path, f"must be true or false, not {_kind(value)} {value!r}")
        return int(value)

    def string(self, path: str, value: Any) -> str:
        if not isinstance(value, str):
            self.fail(path, f"must be a string, not {_kind(value)} {value!r}")
        return value

    def strings(self, path: str, value: Any, most: int) -> list[str]:
        if not isinstance(value, list):
            self.fail(path, f"must be a list of strings, not {_kind(value)} {value!r}")
        if len(value) > most:
            self.fail(path, f"{len(value)} entries, the meter takes at most {most}")
        return [self.string(f"{path}[{i}]", v) for i, v in enumerate(value)]

    def month_day(self, path: str, text: str) -> tuple[int, int]:
        m = re.fullmatch(r"(\d\d)-(\d\d)", text)
        if m is None or not _real_date(2000, int(m[1]), int(m[2])):  # 2000: a leap year, Feb 29 allowed
            self.fail(path, f"{text!r} is not a date as MM-DD")
        return int(m[1]), int(m[2])


def parse_holiday(text: str) -> bytes | None:
    """A [tou] holidays string as config.TOU_HOLIDAYS' 3 bytes (HOLIDAY_SYNTAX), None if it is not one."""
    c = config
    m = re.fullmatch(r"(\d{4})-(\d\d)-(\d\d)", text)
    if m:
        y, mo, d = int(m[1]), int(m[2]), int(m[3])
        ok = 2000 <= y <= 2099 and _real_date(y, mo, d)  # the years the meter keeps
        return bytes((y - 2000, mo, d)) if ok else None
    m = re.fullmatch(r"(\d\d)-(\d\d)(-observed)?", text)
    if m:
        mo, d = int(m[1]), int(m[2])
        if not _real_date(2000, mo, d):  # 2000: a leap year, Feb 29 allowed
            return None
        return bytes((c.HOLIDAY_OBSERVED if m[3] else c.HOLIDAY_EVERY_YEAR, mo, d))
    m = re.fullmatch(r"(\d{1,2})-([1-4]|last)-([a-z]{3})", text)
    if m and 1 <= int(m[1]) <= 12 and m[3] in WEEKDAYS:
        n = c.HOLIDAY_LAST if m[2] == "last" else int(m[2])
        return bytes((c.HOLIDAY_NTH + n, int(m[1]), WEEKDAYS.index(m[3])))
    return None


def render_holiday(raw: bytes) -> str:
    """config.TOU_HOLIDAYS' 3 bytes as written in the file (parse_holiday's inverse)."""
    c = config
    h, mo, d = raw
    if h == c.HOLIDAY_EVERY_YEAR:
        return f"{mo:02d}-{d:02d}"
    if h == c.HOLIDAY_OBSERVED:
        return f"{mo:02d}-{d:02d}-observed"
    if c.HOLIDAY_NTH < h <= c.HOLIDAY_NTH + c.HOLIDAY_LAST and d < len(WEEKDAYS):
        n = h - c.HOLIDAY_NTH
        return f"{mo}-{'last' if n == c.HOLIDAY_LAST else n}-{WEEKDAYS[d]}"
    return f"{2000 + h}-{mo:02d}-{d:02d}" if h < c.HOLIDAY_NTH else raw.hex()


def _kind(value: Any) -> str:
    return {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "a list",
            dict: "a table"}.get(type(value), type(value).__name__)  # fmt: skip


def _real_date(y: int, mo: int, d: int) -> bool:
    try:
        datetime.date(y, mo, d)
    except ValueError:
        return False
    return True


def validate(data: dict[str, Any], source: str = "settings") -> Settings:
    """Check a parsed configuration (what meter.toml holds) whole; Settings, or UsageError
    with one line naming the first mistake (`meter.toml: display.scroll_s: ...`)."""
    ck = _Checker(source)
    for section in data:
        if section not in SECTIONS:
            ck.fail(section, f"unknown section (known: {', '.join(SECTIONS)})")
    for section, check in CHECKS.items():
        if section in data:
            check(ck, data[section])
    if not ck.out.values and not ck.out.passwords:
        raise UsageError(f"{source}: no settings in it: nothing to program")
    check_rules(ck.out, config.Config())  # the meter's own rule, against a factory meter's other settings
    return ck.out


def load_config(path: str | Path) -> Settings:
    """Read and validate a TOML configuration file; Settings, or UsageError (one line)."""
    name = str(path)
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"{name}: no such file") from None
    except OSError as exc:
        raise UsageError(f"{name}: cannot read it: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise UsageError(f"{name}: not valid TOML: {exc}") from None
    return validate(data, name)


def _check_metrology(ck: _Checker, table: Any) -> None:
    t = ck.keys("metrology", table, ("form", "elements", "kh_wh", "ct_reversed_a", "ct_reversed_b"))
    if "form" in t:  # `elements` is its old name: 1 = "1S", 2 = "2S"
        if "elements" in t:
            ck.fail("metrology.elements", "give form or elements (its old name), not both")
        form = ck.string("metrology.form", t["form"])
        if form not in FORMS:
            ck.fail("metrology.form", f"{form!r} is not one of {' or '.join(repr(f) for f in FORMS)}")
        ck.add("metrology.form", config.ELEMENTS, FORMS.index(form) + 1)
    elif "elements" in t:
        ck.add("metrology.elements", config.ELEMENTS, ck.integer("metrology.elements", t["elements"], 1, 2))
    if "kh_wh" in t:
        kh = t["kh_wh"]
        if isinstance(kh, bool) or not isinstance(kh, int | float):
            ck.fail("metrology.kh_wh", f"must be a number of Wh per pulse, not {_kind(kh)} {kh!r}")
        mwh = round(kh * 1000)
        if abs(mwh - kh * 1000) > 1e-6:
            ck.fail("metrology.kh_wh", f"{kh} is not a whole number of mWh (the meter keeps Kh in mWh)")
        ck.add("metrology.kh_wh", config.KH_MWH, mwh)
    for name, key in (("ct_reversed_a", config.CT_REVERSE_A), ("ct_reversed_b", config.CT_REVERSE_B)):
        if name in t:
            ck.add(f"metrology.{name}", key, ck.boolean(f"metrology.{name}", t[name]))


def _check_display(ck: _Checker, table: Any) -> None:
    t = ck.keys("display", table, ("items", "scroll_s", "scroll_min_s", "digits", "decimals", "id_style"))
    if "items" in t:
        codes = display_items()
        names = ck.strings("display.items", t["items"], MAX_ITEMS)
        if not names:
            ck.fail("display.items", "an empty list: give at least one item")
        for i, name in enumerate(names):
            if name not in codes:
                ck.fail(f"display.items[{i}]", f"unknown item {name!r} (items: {', '.join(codes)})")
        ck.add("display.items", config.DISPLAY_ITEMS, bytes(codes[n] for n in names))
    for name, key in (("scroll_s", config.SCROLL_S), ("scroll_min_s", config.SCROLL_MIN_S),
                      ("digits", config.DISPLAY_DIGITS), ("decimals", config.DISPLAY_DECIMALS)):  # fmt: skip
        if name in t:
            ck.add(f"display.{name}", key, ck.integer(f"display.{name}", t[name]))
    if "id_style" in t:
        style = ck.string("display.id_style", t["id_style"])
        if style not in ID_STYLES:
            ck.fail("display.id_style", f"{style!r} is not one of {' or '.join(repr(s) for s in ID_STYLES)}")
        ck.add("display.id_style", config.ID_STYLE, ID_STYLES.index(style))


def _check_demand(ck: _Checker, table: Any) -> None:
    t = ck.keys("demand", table, ("interval_min", "subintervals", "reset_lockout_s"))
    for name, key in (("interval_min", config.DEMAND_INTERVAL_MIN), ("subintervals", config.DEMAND_SUBINTERVALS),
                      ("reset_lockout_s", config.DEMAND_RESET_LOCKOUT_S)):  # fmt: skip
        if name in t:
            ck.add(f"demand.{name}", key, ck.integer(f"demand.{name}", t[name]))


def _check_load_profile(ck: _Checker, table: Any) -> None:
    t = ck.keys("load_profile", table, ("interval_min",))
    if "interval_min" in t:
        ck.add("load_profile.interval_min", config.LP_INTERVAL_MIN, ck.integer("load_profile.interval_min",
                                                                              t["interval_min"]))  # fmt: skip


def _check_billing(ck: _Checker, table: Any) -> None:
    """[billing] self_read_time = "HH:MM" (the daily self-read, ST26, local time) or "none"."""
    t = ck.keys("billing", table, ("self_read_time",))
    if "self_read_time" in t:
        text = ck.string("billing.self_read_time", t["self_read_time"])
        m = re.fullmatch(r"(\d\d):(\d\d)", text)
        if text == "none":
            minute = -1
        elif m is not None and int(m[1]) < 24 and int(m[2]) < 60:
            minute = int(m[1]) * 60 + int(m[2])
        else:
            ck.fail("billing.self_read_time", f"{text!r} is not a time of day as HH:MM (00:00 to 23:59) or \"none\"")
        ck.add("billing.self_read_time", config.SELF_READ_TIME, minute)


def _check_tou(ck: _Checker, table: Any) -> None:
    t = ck.keys("tou", table, ("seasons", "holidays", "schedule", "dst", "time_zone_min"))
    nbr_seasons, nbr_tiers = config._NBR_SEASONS, config._NBR_TIERS
    seasons = None
    if "seasons" in t:
        starts = [ck.month_day(f"tou.seasons[{i}]", s) for i, s in enumerate(ck.strings("tou.seasons", t["seasons"],
                                                                                         nbr_seasons))]  # fmt: skip
        if starts != sorted(set(starts)):
            ck.fail("tou.seasons", "season starts must be in date order, each once (season1 is the first)")
        seasons = len(starts) or 1
        ck.add("tou.seasons", config.TOU_SEASONS, bytes(b for md in starts for b in md))
    if "holidays" in t:
        raw = bytearray()
        for i, text in enumerate(ck.strings("tou.holidays", t["holidays"], MAX_BYTES // 3)):
            one = parse_holiday(text)
            if one is None:
                ck.fail(f"tou.holidays[{i}]", f"{text!r} is not a date or a rule: give {HOLIDAY_SYNTAX}")
            raw += one
        ck.add("tou.holidays", config.TOU_HOLIDAYS, bytes(raw))
    if "dst" in t:
        rule = ck.string("tou.dst", t["dst"])
        if rule not in DST_RULES:
            ck.fail("tou.dst", f"{rule!r} is not a rule: give one of {', '.join(map(repr, DST_RULES))}")
        ck.add("tou.dst", config.DST, DST_RULES[rule])
    if "time_zone_min" in t:
        zone = ck.integer("tou.time_zone_min", t["time_zone_min"], config.TIME_ZONE_MIN_LO, config.TIME_ZONE_MIN_HI)
        if not config.valid_time_setting(config.TIME_ZONE_MIN, zone):
            ck.fail("tou.time_zone_min", f"{zone} is not a whole number of quarter hours")
        ck.add("tou.time_zone_min", config.TIME_ZONE_MIN, zone)
    if "schedule" in t:
        _check_schedule(ck, t["schedule"], seasons or nbr_seasons, nbr_seasons, nbr_tiers)


def _check_schedule(ck: _Checker, table: Any, usable: int, nbr_seasons: int, nbr_tiers: int) -> None:
    """[tou.schedule.DAY] for every season, [tou.schedule.seasonN.DAY] for one: the whole
    schedule is replaced (a day not given is tier A all day)."""
    names = DAY_TYPES + tuple(f"season{n}" for n in range(1, nbr_seasons + 1))
    t = ck.keys("tou.schedule", table, names)
    every = {d: _day(ck, f"tou.schedule.{d}", t[d], nbr_tiers) for d in DAY_TYPES if d in t}
    own: dict[int, dict[str, bytes]] = {}
    for n in range(1, nbr_seasons + 1):
        name = f"season{n}"
        if name not in t:
            continue
        if n > usable:
            ck.fail(f"tou.schedule.{name}", f"no such season: tou.seasons gives {usable}")
        days = ck.keys(f"tou.schedule.{name}", t[name], DAY_TYPES)
        own[n - 1] = {d: _day(ck, f"tou.schedule.{name}.{d}", days[d], nbr_tiers) for d in days}
    for season in range(nbr_seasons):
        for k, d in enumerate(DAY_TYPES):
            value = own.get(season, {}).get(d, every.get(d, b"")) if season < usable else b""
            ck.add(f"tou.schedule.season{season + 1}.{d}", config.TOU_SCHEDULE + 4 * season + k, value)


def _day(ck: _Checker, path: str, table: Any, nbr_tiers: int) -> bytes:
    """A day's switch points {"07:00": "B", ...} as (hour, minute, tier) triples, in time order."""
    if not isinstance(table, dict):
        ck.fail(path, f'must be a table of "HH:MM" = "A" switch points, not {_kind(table)}')
    tiers = "ABCDEFGH"[:nbr_tiers]
    points = []
    for when, tier in table.items():
        m = re.fullmatch(r"(\d\d):(\d\d)", when)
        if m is None or int(m[1]) > 23 or int(m[2]) > 59:
            ck.fail(f"{path}.{when}", "not a time of day as HH:MM (00:00 to 23:59)")
        if not isinstance(tier, str) or tier not in tiers:
            ck.fail(f"{path}.{when}", f"tier {tier!r}: the meter has tiers {', '.join(tiers)}")
        points.append((int(m[1]), int(m[2]), tiers.index(tier)))
    if len(points) > MAX_BYTES // 3:
        ck.fail(path, f"{len(points)} switch points, the meter takes at most {MAX_BYTES // 3} a day")
    return bytes(b for p in sorted(points) for b in p)


def _check_security(ck: _Checker, table: Any) -> None:
    t = ck.keys("security", table, ("lockout_s", "lockout_tries"))
    for name, key in (("lockout_s", config.LOCKOUT_S), ("lockout_tries", config.LOCKOUT_TRIES)):
        if name in t:
            ck.add(f"security.{name}", key, ck.integer(f"security.{name}", t[name]))


def _check_identity(ck: _Checker, table: Any) -> None:
    t = ck.keys("identity", table, ("device_id",))
    if "device_id" in t:
        text = ck.string("identity.device_id", t["device_id"])
        if len(text) > 20 or not all(" " <= ch <= "~" for ch in text):
            ck.fail("identity.device_id", f"{text!r}: at most 20 printable ASCII characters (ST5)")
        ck.add("identity.device_id", config.DEVICE_ID, text.encode().ljust(20))


def _check_passwords(ck: _Checker, table: Any) -> None:
    t = ck.keys("passwords", table, PASSWORD_LEVELS)
    for i, level in enumerate(PASSWORD_LEVELS):
        if level in t:
            pw = ck.string(f"passwords.{level}", t[level])
            if len(pw.encode()) > 20:
                ck.fail(f"passwords.{level}", "longer than the 20 bytes of a C12.18 password")
            ck.out.passwords[i] = pw


CHECKS: dict[str, Callable[[_Checker, Any], None]] = {
    "metrology": _check_metrology, "display": _check_display, "demand": _check_demand,
    "load_profile": _check_load_profile, "billing": _check_billing, "tou": _check_tou, "security": _check_security,
    "identity": _check_identity, "passwords": _check_passwords,
}  # fmt: skip
SECTIONS = tuple(CHECKS)


# ---- programming a meter ------------------------------------------------------------------
def read_config(client: Client) -> dict[int, int | bytes]:
    """MT1: the meter's settings (passwords aside), by config id."""
    return dict(config.Config.decode(client.read(MT1)).items())


def _tlv(key: int, value: int | bytes) -> bytes:
    one = config.Config()
    one._v = {key: value}  # config.py's own encoding of one setting
    return one.encode()


# The setting blamed when two conflict (the one that depends on the other), and what to say:
# {v} its value, {o} the other's value, {m} "the meter's " when the other is not in the file.
CONFLICTS = {
    (config.SCROLL_S, config.SCROLL_MIN_S): "{v} is below {m}scroll_min_s ({o})",
    (config.SCROLL_MIN_S, config.SCROLL_S): "{v} is above {m}scroll_s ({o})",
    (config.DISPLAY_DECIMALS, config.DISPLAY_DIGITS): "{v} leaves no whole digit of the {o} ({m}digits)",
    (config.DISPLAY_DIGITS, config.DISPLAY_DECIMALS): "{v} digits leave no whole digit with {m}decimals ({o})",
    (config.DEMAND_SUBINTERVALS, config.DEMAND_INTERVAL_MIN): "{v} does not divide {m}interval_min ({o}) into whole "
                                                              "minutes",
    (config.DEMAND_INTERVAL_MIN, config.DEMAND_SUBINTERVALS): "{v} is not divided into whole minutes by "
                                                              "{m}subintervals ({o})",
}  # fmt: skip
BLAMED = (config.SCROLL_S, config.DISPLAY_DECIMALS, config.DEMAND_SUBINTERVALS)


def _out_of_range(key: int, value: int | bytes) -> str:
    """Why config.validate refuses value for key on its own, in words."""
    if not isinstance(value, int):
        return f"the meter would refuse {render(key, value)}"
    lo, hi, among = own_range(key)
    if key in (config.DEMAND_INTERVAL_MIN, config.LP_INTERVAL_MIN) and 1 <= value <= 60:
        *most, last = demand_intervals()
        return (f"{value} minutes is not an interval the meter keeps: {', '.join(map(str, most))} or {last} "
                f"(whole blocks of the hour, at least {most[0]} minutes)")  # fmt: skip
    if value < lo:
        return f"{value} is below the least allowed ({render(key, lo)})"
    if value > hi:
        return f"{value} is above the most allowed ({render(key, hi)})"
    return f"{value} is not one the meter takes ({', '.join(map(str, among))})"


def check_rules(settings: Settings, base: Any, meter: bool = False) -> None:
    """config.validate on every setting, beside base's others (a factory meter's, or the
    meter's own read back when meter is true) as the write would leave them: the meter's own
    rule, so what passes here the meter takes. UsageError naming the first one refused."""
    given = {s.key: s for s in settings.values}
    view = config.Config.decode(base.encode())  # base as the write would leave it
    for s in settings.values:
        view.set(s.key, s.value)
    for s in settings.values:
        fault = config.validate(s.key, s.value, view)
        if fault is None:
            continue
        if fault == s.key:
            raise UsageError(f"{settings.source}: {s.path}: {_out_of_range(s.key, s.value)}")
        if fault not in given and not meter:
            continue  # with a setting of the meter's: checked against the meter's own value
        blamed, other = s.key, fault
        if fault in given and s.key not in BLAMED:
            blamed, other = fault, s.key  # both in the file: name the dependent one
        text = CONFLICTS.get((blamed, other), "{v} conflicts with setting " + hex(other) + " ({o})")
        text = text.format(v=view.get(blamed), o=view.get(other), m="" if other in given else "the meter's ")
        raise UsageError(f"{settings.source}: {given[blamed].path}: {text}")


def apply_settings(client: Client, settings: Settings) -> list[str]:
    """Send the settings in one MT1 write (the meter takes them all or none), then the
    passwords (MT2, master), and read MT1 back. Lines saying what was set, and what it was.
    The meter's refusals come out as ServiceError (dlk: sealed); its IAR as MeterctlError."""
    now = config.Config.decode(client.read(MT1))
    before = dict(now.items())
    check_rules(settings, now, meter=True)
    changed = [s for s in settings.values if before.get(s.key) != s.value]
    blob = b"".join(_tlv(s.key, s.value) for s in settings.values)
    if len(blob) > _request_max():  # too many for one write: the ones that change may fit
        blob = b"".join(_tlv(s.key, s.value) for s in changed)
    if len(blob) > _request_max():
        raise UsageError(
            f"{settings.source}: the changes take {len(blob)} bytes, more than the {_request_max()} "
            "of one write: program the time-of-use schedule from a second file"
        )
    if settings.values:
        try:
            client.write(MT1, blob)
        except ServiceError as exc:
            if exc.name not in ("iar", "err"):
                raise
            raise MeterctlError(
                f"the meter refused the settings ({exc.name}): nothing was changed",
                "its firmware may be older than this meterctl: `meterctl table 2049` shows what it has",
            ) from None
    for i in sorted(settings.passwords):
        client.write(MT2, pad_password(settings.passwords[i]), offset=i * 20)
    after = read_config(client)
    wrong = [s.path for s in settings.values if after.get(s.key) != s.value]
    if wrong:
        raise MeterctlError(f"the meter answered ok but does not hold {', '.join(wrong)}",
                            "read it back with `meterctl table 2049`; a power cut meanwhile?")  # fmt: skip
    lines = []
    for s in settings.values:
        if s not in changed:
            note = "(unchanged)"
        else:
            note = f"(was {render(s.key, before[s.key])})" if s.key in before else "(new)"
        lines.append(f"{s.path:<30} {render(s.key, s.value)}  {note}")
    lines += [f"passwords.{PASSWORD_LEVELS[i]:<20} (set)" for i in sorted(settings.passwords)]
    return lines


# ---- the clock, demand, the seal ------------------------------------------------------------
def read_clock(client: Client) -> datetime.datetime | None:
    """The meter's local time (ST52, its clock, in standard time all year, plus ST53
    DST_TIME_AMT while TIME_DATE_QUAL says DST is in force), None if it holds no valid date."""
    st52 = parse(T.ST52, client.read(52))
    try:
        when = datetime.datetime(2000 + st52["YEAR"], st52["MONTH"], st52["DAY"], st52["HOUR"], st52["MINUTE"],
                                 st52["SECOND"])  # fmt: skip
    except ValueError:
        return None
    qual = st52["TIME_DATE_QUAL"]
    if qual & T.QUAL_DST and not qual & T.QUAL_DST_APPLIED:
        when += datetime.timedelta(minutes=parse(T.ST53, client.read(53))["DST_TIME_AMT"])
    return when


def set_time(client: Client, when: datetime.datetime) -> tuple[datetime.datetime | None, datetime.datetime | None]:
    """Set the meter's date and time (procedure 10) to `when`, its local time (daylight time
    while its DST rule says so; in the repeated autumn hour `when.fold` picks: 0 the
    daylight one, PEP 495); its local clock (before, after)."""
    if not 2000 <= when.year <= 2099:
        raise UsageError(f"the meter keeps years 2000 to 2099, not {when.year}")
    before = read_clock(client)
    qual = T.QUAL_DST_APPLIED | (0 if when.fold else T.QUAL_DST) | when.isoweekday() % 7
    params = set_time_params((when.year - 2000, when.month, when.day, when.hour, when.minute, when.second),
                             mask=3 | T.SET_QUAL, qual=qual)  # fmt: skip
    result, _ = client.procedure(T.PROC_SET_TIME, params, check=False)
    if result != T.PROC_DONE:
        raise MeterctlError(f"the meter refused the time {when:%Y-%m-%d %H:%M:%S}: {PROC_RESULTS.get(result, result)}")
    return before, read_clock(client)


def _demand(client: Client) -> tuple[int | None, int]:
    """(demand resets so far, the maximum demand in W) from ST21 and ST23."""
    st21 = parse(T.ST21, client.read(21))
    st23 = parse_st23(st21, client.read(23))
    demands = st23["total"]["demands"]
    return st23["resets"], demands[0][1] if demands else 0


def reset_demand(client: Client) -> dict[str, Any]:
    """A demand reset (procedure 9, ACTION_FLAG 1). {'resets', 'max_demand_w' before it}."""
    _, max_w = _demand(client)
    result, _ = client.procedure(T.PROC_REMOTE_RESET, b"\x01", check=False)
    if result == T.PROC_TIMING:
        raise MeterctlError(
            "the meter refused the demand reset: it is inside its demand-reset lock-out",
            "the meter takes one reset per demand.reset_lockout_s seconds; try again later",
        )
    if result != T.PROC_DONE:
        raise MeterctlError(f"the meter refused the demand reset: {PROC_RESULTS.get(result, result)}")
    resets, _ = _demand(client)
    return {"resets": resets, "max_demand_w": max_w}


def seal(client: Client) -> int:
    """Seal the meter (MFG procedure 0, master); the seal count."""
    result, data = client.procedure(T.PROC_SEAL, check=False)
    if result == T.PROC_CONFLICT:
        raise MeterctlError("the meter is sealed already", "`meterctl status` shows the seal record")
    if result == T.PROC_NO_AUTH:
        raise MeterctlError("the meter has no master password: it will not seal (anyone could unseal it)",
                            "set one first: [passwords] master in a file for `meterctl program`",
                            EXIT_REFUSED)  # fmt: skip
    if result != T.PROC_DONE:
        raise MeterctlError(f"the meter did not seal: {PROC_RESULTS.get(result, result)}")
    return parse(T.SEAL_RESPONSE, data)["SEAL_COUNT"]


def unseal(client: Client) -> int:
    """Unseal the meter (MFG procedure 1, master, the seal plug out); the seal count."""
    try:
        result, _ = client.procedure(T.PROC_UNSEAL, check=False)
    except ServiceError as exc:
        if exc.name == "dlk" and parse(T.MT0, client.read(MT0))["SEAL_FLAGS"] & T.SEAL_PLUG:
            raise MeterctlError("the seal plug is in: the meter will not unseal", "pull the seal plug first",
                                EXIT_REFUSED) from None  # fmt: skip
        raise
    if result == T.PROC_CONFLICT:
        raise MeterctlError("the meter is not sealed: nothing to unseal")
    if result != T.PROC_DONE:
        raise MeterctlError(f"the meter did not unseal: {PROC_RESULTS.get(result, result)}")
    return parse(T.MT0, client.read(MT0))["SEAL_COUNT"]


# ---- calibration --------------------------------------------------------------------------
STEP_NAMES = {T.CAL_OFFSETS: "offsets", T.CAL_GAIN: "gain", T.CAL_PHASE: "phase"}
CAL_FAILURES = {
    T.PROC_INVALID: ("the meter refused the step's parameters", "volts 1-500, amps 0-200, pf above 0 (lagging)"),
    T.PROC_CONFLICT: ("the meter could not calibrate at this load (a result out of the chip's range, or no "
                      "energy where the load should give some)", "check the wiring, the CT orientation and the load"),
    T.PROC_TIMING: ("the meter did not see the stated load in time (or its metering chip reset)",
                    "apply the load from the reference standard first, then run the step again"),
}  # fmt: skip


def step_kind(amps: float, pf: float) -> int:
    if not amps:
        return T.CAL_OFFSETS
    return T.CAL_GAIN if round(pf * 1000) >= T.CAL_PF_GAIN else T.CAL_PHASE


def step_seconds(amps: float, pf: float, seconds: int | None) -> int:
    """The most of the meter's time a step takes: the wait for its load, the settling, and
    one measurement (the phase step: two, the phase and then the var gain)."""
    kind = step_kind(amps, pf)
    measure = seconds or (600 if kind == T.CAL_OFFSETS else 60)
    return T.CAL_WAIT_S + 2 + measure * (2 if kind == T.CAL_PHASE else 1)


def calibrate(
    client: Client,
    volts: float,
    amps: float,
    pf: float = 1.0,
    seconds: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    margin: float = 30.0,
) -> dict[str, Any]:
    """One calibration step at the load the reference standard states (MFG procedure 2,
    master): offsets at amps 0, gains at PF 1, the phase at a lagging PF (0.5). Polls ST8
    until the meter has finished; progress(seconds so far, about how many) meanwhile.
    The result: {'step', and per channel what the step found}."""
    if not 1 <= volts <= 500 or not 0 <= amps <= 200 or (amps and not 0 < pf <= 1):
        raise UsageError("calibrate: volts 1-500, amps 0-200, and with a current a pf above 0 up to 1 (lagging)")
    if seconds is not None and not 0 <= seconds <= 3600:
        raise UsageError("calibrate: seconds must be within 0-3600 (0: the step's default)")
    params = struct.pack("<IIhH", round(volts * 1000), round(amps * 1000), round(pf * 1000) if amps else 1000,
                         seconds or 0)  # fmt: skip
    result, _ = client.procedure(T.PROC_CALIBRATE, params, check=False)
    total = step_seconds(amps, pf, seconds)
    deadline = time.monotonic() + total + margin
    if result == T.PROC_ACCEPTED and progress is not None:
        progress(0, total)
    seq = None
    while result == T.PROC_ACCEPTED:
        client.wait(WAIT_S)  # the session lasts through the pause, however fast the meter's clock
        time.sleep(POLL_S)
        st8 = client.read(8)
        if int.from_bytes(st8[0:2], "little") != T.PROC_CALIBRATE or (seq is not None and st8[2] != seq):
            raise MeterctlError("ST8 no longer answers the calibration step (another client on the port?)")
        seq, result, data = st8[2], st8[3], st8[4:]
        if result == T.PROC_ACCEPTED:
            if progress is not None:
                progress(parse(T.CAL_PROGRESS, data)["ELAPSED_S"], total)
            if time.monotonic() > deadline:
                raise MeterctlError(f"the calibration step did not finish within {total + margin:.0f} s",
                                    "the meter goes on with it: read ST8 (`meterctl table 8`) later")  # fmt: skip
    if result in CAL_FAILURES:
        message, hint = CAL_FAILURES[result]
        raise MeterctlError(message, hint)
    if result != T.PROC_DONE:
        raise MeterctlError(f"the calibration step failed: {PROC_RESULTS.get(result, result)}")
    r = parse(T.CAL_RESPONSE, data)
    out: dict[str, Any] = {"step": STEP_NAMES.get(r["STEP"], r["STEP"])}
    for bit, ch in ((1, "a"), (2, "b")):
        if not r["CHANNELS"] & bit:
            continue
        value = r[f"RESULT_{ch.upper()}"]
        if r["STEP"] == T.CAL_OFFSETS:
            out[f"watt_offset_{ch}_codes"] = round(value / 512, 3)
        elif r["STEP"] == T.CAL_GAIN:
            out[f"error_{ch}_ppm"] = value
        else:
            out[f"phase_{ch}_urad"] = r[f"PHASE_{ch.upper()}_URAD"]
            out[f"residual_{ch}_ppm"] = value
    return out


def describe(result: dict[str, Any]) -> str:
    """A calibration result as one line."""
    parts = []
    for key, value in result.items():
        if key.startswith("watt_offset_"):
            parts.append(f"channel {key[12].upper()}: active power offset changed by {value:+.3f} chip codes")
        elif key.startswith("error_"):
            parts.append(f"channel {key[6].upper()}: it read {value / 1e4:+.4f} % before the step")
        elif key.startswith("phase_"):
            parts.append(f"channel {key[6].upper()}: CT phase error {value} urad ({value * 57.2958e-6:.3f} deg)")
        elif key.startswith("residual_"):
            parts.append(f"{value / 1e4:+.4f} % left at this PF")
    return f"{result.get('step')}: " + ", ".join(parts)


# ---- the commands ---------------------------------------------------------------------------
def _when(text: str) -> datetime.datetime:
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date and time as 2026-11-24T08:00:00: {text!r}") from None
    if when.tzinfo is not None:
        raise argparse.ArgumentTypeError("give the meter's local time, without a time zone")
    return when


def _clock(value: datetime.datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M:%S}" if value else "(not set)"


def cmd_program(args: argparse.Namespace) -> int:
    settings = load_config(args.config)
    if args.dry_run:
        print(f"{args.config}: valid; {len(settings.values)} settings"
              f"{f' and {len(settings.passwords)} passwords' if settings.passwords else ''}, "
              f"for the {settings.level} password (dry run: nothing sent)")  # fmt: skip
        for line in settings.lines():
            print(f"  {line}")
        return EXIT_OK
    if not args.port:
        raise UsageError("meterctl program: --port is needed (or --dry-run to check the file only)")
    with optical.session(args, level=settings.level) as c:
        lines = apply_settings(c, settings)
    changed = sum("(was " in line for line in lines)
    print(f"programmed {args.port} from {args.config}: {changed} changed, read back and checked")
    for line in lines:
        print(f"  {line}")
    return EXIT_OK


def cmd_set_time(args: argparse.Namespace) -> int:
    when = datetime.datetime.now().replace(microsecond=0) if args.now else args.time
    if when is None:
        raise UsageError("meterctl set-time: give the time (2026-11-24T08:00:00) or --now")
    with optical.session(args, level="programmer") as c:
        before, after = set_time(c, when)
    print(f"meter clock before: {_clock(before)}")
    print(f"meter clock now:    {_clock(after)}")
    return EXIT_OK


def cmd_reset_demand(args: argparse.Namespace) -> int:
    with optical.session(args, level="reader") as c:
        done = reset_demand(c)
    resets = "" if done["resets"] is None else f" (demand resets: {done['resets']})"
    print(f"demand reset{resets}; the maximum demand was {done['max_demand_w'] / 1000:.3f} kW")
    return EXIT_OK


def cmd_calibrate(args: argparse.Namespace) -> int:
    kind = STEP_NAMES[step_kind(args.amps, args.pf)]
    shown = [False]

    def progress(done: int, total: int) -> None:
        if not shown[0]:
            print(f"calibration step ({kind}) at {args.volts:g} V {args.amps:g} A PF {args.pf:g} accepted by the "
                  "meter: measuring", file=sys.stderr, flush=True)  # fmt: skip
            shown[0] = True
        print(f"\r  {kind}: {done} s of the meter's time (at most about {total} s)", end="", file=sys.stderr,
              flush=True)  # fmt: skip

    with optical.session(args, level="master") as c:
        try:
            result = calibrate(c, args.volts, args.amps, args.pf, args.seconds, progress)
        finally:
            if shown[0]:
                print(file=sys.stderr, flush=True)
    print(describe(result))
    return EXIT_OK


def cmd_seal(args: argparse.Namespace) -> int:
    with optical.session(args, level="master") as c:
        count = seal(c)
    print(f"sealed (seal count {count}): the meter refuses configuration changes until it is unsealed")
    return EXIT_OK


def cmd_unseal(args: argparse.Namespace) -> int:
    with optical.session(args, level="master") as c:
        count = unseal(c)
    print(f"unsealed (seal count {count}; the meter logged it)")
    return EXIT_OK


def _number(kind: type, name: str, lo: float, hi: float) -> Callable[[str], Any]:
    def parse_arg(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {text!r}") from None
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"{name} must be within {lo:g}-{hi:g}, not {text}")
        return value

    return parse_arg


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's meterctl commands."""
    p = sub.add_parser("program", help="check a TOML configuration and program it (MT1, passwords MT2)")
    p.add_argument("--config", required=True, metavar="FILE", help="the settings (host_tools/examples/meter.toml)")
    p.add_argument("--dry-run", action="store_true", help="check the file and show the settings; no port needed")
    optical.add_port_options(p)
    for action in p._actions:
        if action.dest == "port":
            action.required = False  # --dry-run needs none; cmd_program asks for it otherwise
    p.set_defaults(func=cmd_program)

    p = sub.add_parser("set-time", help="set the meter's date and time (procedure 10)")
    when = p.add_mutually_exclusive_group()
    when.add_argument("time", nargs="?", type=_when, help="the meter's local time, as 2026-11-24T08:00:00")
    when.add_argument("--now", action="store_true", help="this computer's local time")
    optical.add_port_options(p)
    p.set_defaults(func=cmd_set_time)

    p = sub.add_parser("reset-demand", help="reset the maximum demand (procedure 9), once per lock-out")
    optical.add_port_options(p)
    p.set_defaults(func=cmd_reset_demand)

    p = sub.add_parser("calibrate", help="one calibration step against the reference standard's load (master)")
    p.add_argument("--volts", required=True, type=_number(float, "--volts", 1, 500), help="the standard's volts")
    p.add_argument("--amps", required=True, type=_number(float, "--amps", 0, 200),
                   help="its amps: 0 for the offsets step")  # fmt: skip
    p.add_argument("--pf", type=_number(float, "--pf", 0.05, 1), default=1.0,
                   help="its power factor, lagging: 1 for the gains, 0.5 for the phase (default 1)")  # fmt: skip
    p.add_argument(
        "--seconds",
        type=_number(int, "--seconds", 1, 3600),
        help="the measurement's length in the meter's time (default 600 for offsets, 60 otherwise)",
    )
    optical.add_port_options(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("seal", help="seal the meter (master): configuration and registers locked")
    optical.add_port_options(p)
    p.set_defaults(func=cmd_seal)
    p = sub.add_parser("unseal", help="unseal the meter (master, the seal plug out); logged")
    optical.add_port_options(p)
    p.set_defaults(func=cmd_unseal)
