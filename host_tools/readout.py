"""meterctl's read-side commands: what a bench technician or a script wants to see of a
meter through its optical port, without changing anything on it.

    meterctl read    --port P [--json]     registers at full resolution, tiers, demand, V/A/W
    meterctl read --previous --port P [--json]   ST25: the registers at the last demand reset
    meterctl self-reads --port P [--json]  ST26: the self-reads, oldest first
    meterctl table   N --port P [--raw] [--offset O --count C] [--json]
    meterctl status  --port P [--json]     mode, status bits, seal, tamper, lock-out, clock
    meterctl events  --port P [--json]     the event log, oldest first
    meterctl profile --port P [--csv FILE] [--json]
    meterctl watch   --port P [--interval S] [--count N]
    meterctl lcd     --port P [--png FILE] [--json]

Every number is decoded with the firmware's own declarations (firmware/tables.py for the
layouts, metrology.py, status.py, events.py, loadprofile.py and config.py for the names),
so a field added there shows up here without a second list to keep in step. The firmware
modules that import `micropython` without a fallback are read as source (their constants
and EnergyRegisters.FIELDS), never imported.

The plain functions (read_registers, read_status, read_profile, read_lcd, event_rows) take
an open client already logged on at the reader level; host_tools/demo.py calls them.
"""

from __future__ import annotations

import argparse
import ast
import csv
import datetime
import json
import sys
import time
from functools import cache
from typing import Any

from host_tools import optical
from host_tools.c1218 import TABLES as T
from host_tools.c1218 import Client, ServiceError, layout_size, parse, parse_st23, read_events
from host_tools.optical import EXIT_OK, MeterctlError
from host_tools.repo import FIRMWARE_DIR, firmware_module

EPOCH_2000 = datetime.datetime(2000, 1, 1)  # the meter counts seconds from here
LSB_PER_WH = 10000  # metrology.LSB_PER_WH: a register's residue is in 0.1 mWh
TIER_NAMES = "ABCDEFG"
LEVEL_NAMES = {0: "anonymous", 1: "reader", 2: "programmer", 3: "master"}
ED_MODE_FLAGS = ((1, "metering"), (2, "test mode"), (4, "meter shop mode"))  # C12.19 ST3 ED_MODE
SEAL_FLAG_NAMES = (
    (T.SEAL_SEALED, "SEALED"),
    (T.SEAL_PLUG, "SEAL_PLUG"),
    (T.SEAL_LOCKED_OUT, "LOCKED_OUT"),
    (T.SEAL_FW_CHANGED, "FIRMWARE_CHANGED"),
    (T.SEAL_CONFIG_CHANGED, "CONFIG_CHANGED"),
)
FLAT_LAYOUTS = {
    1: T.ST1, 3: T.ST3, 5: T.ST5, 21: T.ST21, 51: T.ST51, 52: T.ST52, 53: T.ST53, 55: T.ST55,
    61: T.ST61, 63: T.ST63, 71: T.ST71, T.MFG + 0: T.MT0, T.MFG + 3: T.MT3, T.MFG + 6: T.MT6,
}  # fmt: skip
ANN_LABELS = {"KWH": "kWh", "KW": "kW", "KVARH": "kvarh", "KVAR": "kvar", "NEG": "minus", "COL": "colons"}
MT1, MT3, MT4, MT5, MT6 = T.MFG + 1, T.MFG + 3, T.MFG + 4, T.MFG + 5, T.MFG + 6
RESETS = firmware_module("resets")  # the causes, fault types and modules MT6 and the log name


# ---- the firmware's names -------------------------------------------------------------
@cache
def _source_tree(module: str) -> ast.Module:
    return ast.parse((FIRMWARE_DIR / f"{module}.py").read_text(), filename=f"{module}.py")


@cache
def firmware_constants(module: str) -> dict[str, int]:
    """The module-level integer constants of a firmware module (`NAME = const(1 << 3)`),
    evaluated from its source: the module itself imports micropython, which CPython lacks."""
    out: dict[str, int] = {}
    for node in _source_tree(module).body:
        if not (isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name)):
            continue
        try:
            code = compile(ast.Expression(node.value), module, "eval")
            value = eval(code, {"__builtins__": {}, "const": lambda x: x}, dict(out))  # noqa: S307 (our own source)
        except Exception:  # not a constant expression (a tuple of names, a call): not a constant
            continue
        if isinstance(value, int):
            out[node.targets[0].id] = value
    return out


@cache
def register_fields() -> tuple[str, ...]:
    """metrology.EnergyRegisters.FIELDS: the MT5 words, in order."""
    for node in ast.walk(_source_tree("metrology")):
        if isinstance(node, ast.ClassDef) and node.name == "EnergyRegisters":
            for item in node.body:
                if isinstance(item, ast.Assign) and any(getattr(t, "id", "") == "FIELDS" for t in item.targets):
                    return tuple(ast.literal_eval(item.value))
    raise RuntimeError("firmware/metrology.py has no EnergyRegisters.FIELDS")


@cache
def status_bits() -> list[tuple[int, str]]:
    """ST3 ED_STD_STATUS1 bits by name (firmware/status.py)."""
    return sorted((v, k) for k, v in firmware_constants("status").items() if v and not v & (v - 1))


@cache
def event_names() -> dict[int, str]:
    """Event codes named as firmware/events.py names them, without the EV_."""
    return {v: k[3:] for k, v in firmware_constants("events").items() if k.startswith("EV_")}


@cache
def lp_flag_bits() -> list[tuple[int, str]]:
    c = firmware_constants("loadprofile")
    names = ("POWER_OUTAGE", "CLOCK_CHANGED", "PARTIAL", "CLOCK_INVALID", "CLOCK_BACKWARD", "DST")
    return [(c[n], n) for n in names]


@cache
def config_names() -> dict[int, str]:
    """MT1 setting ids named from firmware/config.py (TOU_SCHEDULE+n for the day schedules)."""
    cfg = firmware_module("config")
    ids = {key for key, _ in cfg.DEFAULTS}
    names: dict[int, str] = {}
    for k, v in vars(cfg).items():  # in declaration order: an id's name comes before a setting's
        if k.isupper() and isinstance(v, int) and v in ids:  # values (config.DST_EU = 2 is no id)
            names.setdefault(v, k)
    for key in ids:
        if key not in names and key > cfg.TOU_SCHEDULE:
            names[key] = f"TOU_SCHEDULE+{key - cfg.TOU_SCHEDULE}"
    return names


def table_name(number: int) -> str:
    return f"MT{number - T.MFG}" if number >= T.MFG else f"ST{number}"


def table_number(text: str) -> int:
    """`23`, `ST23`, `MT0` (0x800 + 0), `0x805` -> the table number (argparse type)."""
    s = text.strip().upper()
    try:
        if s.startswith(("ST", "MT")) and s[2:].isdigit():
            number = int(s[2:]) + (T.MFG if s[0] == "M" else 0)
        else:
            number = int(s, 0)
    except ValueError:
        number = -1
    if not 0 <= number <= 0xFFFF:
        raise argparse.ArgumentTypeError(f"a table is a number (23, 0x805) or a name (ST23, MT5), not {text!r}")
    return number


def _positive(kind: type, name: str):
    def check(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {text!r}") from None
        if value <= 0:
            raise argparse.ArgumentTypeError(f"{name} must be > 0, not {text}")
        return value

    return check


def _non_negative(name: str):
    def check(text: str) -> int:
        try:
            value = int(text, 0)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a whole number, not {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"{name} must be >= 0, not {text}")
        return value

    return check


# ---- small decoders ---------------------------------------------------------------------
def stime(raw: bytes) -> str | None:
    """An STIME_DATE / LTIME_DATE of TM_FORMAT 2 as ISO text; None when all zero (never)."""
    if not any(raw):
        return None
    y, mo, d, hh, mi = raw[:5]
    text = f"{2000 + y:04d}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}"
    return text + (f":{raw[5]:02d}" if len(raw) > 5 else "")


def _text(value: Any) -> Any:
    """A field for people and JSON: characters as text, other bytes as hex."""
    if isinstance(value, bytes):
        if all(32 <= b < 127 for b in value):
            return value.rstrip(b" ").decode("ascii")
        return value.hex()
    return value


def hexdump(data: bytes, start: int = 0) -> str:
    lines = []
    for i in range(0, len(data), 16):
        chunk = data[i : i + 16]
        ascii_ = "".join(chr(b) if 32 <= b < 127 else "." for b in chunk)
        lines.append(f"{start + i:06x}  {chunk.hex(' '):<47}  {ascii_}")
    return "\n".join(lines) if lines else "(empty)"


def _wh(whole: int, res: int) -> float:
    return round((whole * LSB_PER_WH + res) / LSB_PER_WH, 4)


def decode_registers(data: bytes) -> dict[str, float]:
    """MT5 (EnergyRegisters.pack_into: INT64 words) -> {name_wh: Wh with 4 decimals}."""
    fields = register_fields()
    words = {name: int.from_bytes(data[8 * i : 8 * i + 8], "little", signed=True) for i, name in enumerate(fields)}
    return {n: _wh(words[n], words[n[:-3] + "_res"]) for n in fields if n.endswith("_wh")}


def decode_instantaneous(data: bytes) -> dict[str, float]:
    v = parse(T.MT3, data)
    return {
        "volts": v["VOLTS_MV"] / 1000, "amps_a": v["AMPS_A_MA"] / 1000, "amps_b": v["AMPS_B_MA"] / 1000,
        "watts": v["WATTS_MW"] / 1000, "vars": v["VARS_MVAR"] / 1000, "va": v["VA_MVA"] / 1000,
        "pf": v["PF_MILLI"] / 1000, "hz": v["HZ_CENTI"] / 100,
    }  # fmt: skip


def decode_config(blob: bytes) -> list[dict[str, Any]]:
    """MT1: config.py's TLV settings (id, length | 0x80 for a signed integer, value)."""
    names = config_names()
    out = []
    i = 0
    while i + 2 <= len(blob):
        key, length, signed = blob[i], blob[i + 1] & 0x7F, blob[i + 1] & 0x80
        raw = blob[i + 2 : i + 2 + length]
        value: Any = int.from_bytes(raw, "little", signed=True) if signed else raw.hex()
        out.append({"id": f"0x{key:02x}", "name": names.get(key, "?"), "value": value})
        i += 2 + length
    return out


def decode_lcd(ram: bytes) -> dict[str, Any]:
    """MT4 (the HT1621 RAM) as lcd_glyphs decodes it: text, points, annunciators."""
    g = firmware_module("lcd_glyphs")
    text, dots, ann = g.decode(ram)
    shown = text[: g.N_ID] + " "
    for k, ch in enumerate(text[g.N_ID :]):
        shown += ch + ("." if dots >> k & 1 else "")
    names = sorted((v, ANN_LABELS.get(k[4:], k[4:])) for k, v in vars(g).items() if k[:4] == "ANN_" and k != "ANN_ALL")
    return {
        "text": text,
        "shown": shown.rstrip(),
        "dots": dots,
        "annunciators": [name for bit, name in names if ann & bit],
        "ram": bytes(ram).hex(),
    }


def _bitmap(data: bytes) -> list[int]:
    return [8 * i + b for i, byte in enumerate(data) for b in range(8) if byte >> b & 1]


def decode_st0(data: bytes) -> dict[str, Any]:
    out: dict[str, Any] = {k: _text(v) for k, v in parse(T.ST0, data).items()}
    off = layout_size(T.ST0)
    for name, dim in (
        ("STD_TBLS_USED", "DIM_STD_TBLS_USED"), ("MFG_TBLS_USED", "DIM_MFG_TBLS_USED"),
        ("STD_PROC_USED", "DIM_STD_PROC_USED"), ("MFG_PROC_USED", "DIM_MFG_PROC_USED"),
        ("STD_TBLS_WRITE", "DIM_STD_TBLS_USED"), ("MFG_TBLS_WRITE", "DIM_MFG_TBLS_USED"),
    ):  # fmt: skip
        out[name] = _bitmap(data[off : off + out[dim]])
        off += out[dim]
    return out


def decode_tiers(st21: dict[str, int], st23: bytes) -> dict[str, Any]:
    """ST23 (as ST21 dimensions it; summations 0 delivered, 1 received, 2 net, ST22) per tier."""
    parsed = parse_st23(st21, st23)

    def block(b: dict[str, Any]) -> dict[str, Any]:
        sums = b["summations"] + [0, 0, 0]
        when, watts = b["demands"][0] if b["demands"] else (b"", 0)
        cum = b["cumulative"][0] if b["cumulative"] else None
        cont = b["cont_cumulative"][0] if b["cont_cumulative"] else None
        return {"delivered_wh": sums[0], "received_wh": sums[1], "net_wh": sums[2],
                "max_demand_w": watts, "max_demand_time": stime(when) if when else None,
                "cum_demand_w": cum, "cont_cum_demand_w": cont}  # fmt: skip

    tiers = [{"tier": TIER_NAMES[i] if i < len(TIER_NAMES) else str(i + 1), **block(b)}
             for i, b in enumerate(parsed["tiers"])]  # fmt: skip
    return {"resets": parsed["resets"], "total": block(parsed["total"]), "tiers": tiers}


def _read_big(client: Client, number: int, offset: int, count: int) -> bytes:
    """Partial reads of at most one negotiated message each."""
    room = max(1, client.nbr_packets * (client.packet_size - 8) - 4)  # less code, count and checksum
    return b"".join(client.read(number, o, min(room, offset + count - o)) for o in range(offset, offset + count, room))


# ---- what the demo and the commands read ---------------------------------------------
def read_registers(client: Client) -> dict[str, Any]:
    """The `read --json` dict: registers (MT5), tiers and demand (ST21/ST23), MT3, the clock."""
    regs = decode_registers(client.read(MT5))
    st21 = parse(T.ST21, client.read(21))
    total = decode_tiers(st21, client.read(23))
    delivered, received = regs["delivered_wh"], regs["received_wh"]
    return {
        "time": stime(client.read(52)[:6]),
        "delivered_wh": delivered,
        "received_wh": received,
        "net_wh": round(delivered - received, 4),
        "tiers": total["tiers"],
        "demand": {
            "max_w": total["total"]["max_demand_w"],
            "max_time": total["total"]["max_demand_time"],
            "cumulative_w": total["total"]["cum_demand_w"],
            "cont_cumulative_w": total["total"]["cont_cum_demand_w"],
            "resets": total["resets"],
            # ST21 NBR_PRESENT_DEMANDS is 0: this meter serves no present-demand table (ST28)
            "present_w": None,
        },
        "instantaneous": decode_instantaneous(client.read(MT3)),
        "registers": regs,
    }


# ---- billing-period data: ST25 and ST26 (firmware/selfread.py) -----------------------------
def _entry_layout(client: Client) -> tuple[dict[str, int], int, int]:
    """(ST21, the entry's header bytes, the register data's bytes): ST25's and each ST26
    entry's END_DATE_TIME and SEASON as REG_FUNC1 flags them, the registers as ST23 is now."""
    st21 = parse(T.ST21, client.read(21))
    head = (5 if st21["REG_FUNC1"] & T.DATE_TIME_FIELD_FLAG else 0) + (
        1 if st21["REG_FUNC1"] & T.SEASON_INFO_FIELD_FLAG else 0
    )
    return st21, head, len(client.read(23))


def decode_billing_entry(st21: dict[str, int], raw: bytes) -> dict[str, Any]:
    """An ST25 record or ST26 entry: {'time', 'season', then as `read --json` has them}."""
    off, when, season = 0, None, None
    if st21["REG_FUNC1"] & T.DATE_TIME_FIELD_FLAG:
        when, off = stime(raw[:5]), 5
    if st21["REG_FUNC1"] & T.SEASON_INFO_FIELD_FLAG:
        season, off = raw[off], off + 1
    regs = decode_tiers(st21, raw[off:])
    total = regs["total"]
    return {
        "time": when,
        "season": season,
        "delivered_wh": total["delivered_wh"],
        "received_wh": total["received_wh"],
        "net_wh": total["net_wh"],
        "tiers": regs["tiers"],
        "demand": {"max_w": total["max_demand_w"], "max_time": total["max_demand_time"], "resets": regs["resets"]},
    }


def read_previous(client: Client) -> dict[str, Any] | None:
    """ST25 decoded; None before the first demand reset (all zero)."""
    st21, head, size = _entry_layout(client)
    raw = _read_big(client, 25, 0, head + size)
    return decode_billing_entry(st21, raw) if any(raw) else None


def read_self_reads(client: Client) -> list[dict[str, Any]]:
    """ST26's valid entries, oldest first, each with its sequence number."""
    st21, head, size = _entry_layout(client)
    start = layout_size(T.SELF_READ_HEADER)
    raw = _read_big(client, 26, 0, start + st21["NBR_SELF_READS"] * (head + size))
    h = parse(T.SELF_READ_HEADER, raw)
    n, last = h["NBR_VALID_ENTRIES"], h["LAST_ENTRY_SEQ_NUMBER"]
    out = []
    for i in range(n):
        entry = raw[start + i * (head + size) : start + (i + 1) * (head + size)]
        out.append({"seq": (last - (n - 1 - i)) & 0xFFFF, **decode_billing_entry(st21, entry)})
    return out


def fault_text(type_index: int, module_index: int, line: int) -> str:
    """resets.py's fault record as a person reads it: 'MemoryError in psem.py line 210'."""
    types, modules = RESETS.FAULT_TYPES, RESETS.MODULES.decode().split()
    kind = types[type_index].__name__ if type_index < len(types) else f"exception #{type_index}"
    where = f"{modules[module_index]}.py" if module_index < len(modules) else "another module"
    return f"{kind} in {where} line {line}"


def decode_resets(data: bytes) -> dict[str, Any]:
    """MT6: {'resets': counts by cause, 'last_start': cause, 'last_fault': text or None}."""
    mt6 = parse(T.MT6, data)
    causes = RESETS.CAUSES.decode().split()
    counts = {name: mt6[f"RESETS_{name.upper()}"] for name in causes}
    last = mt6["LAST_CAUSE"]
    fault = None
    if mt6["FAULT_REPEATS"] or counts["fault"]:
        fault = fault_text(mt6["FAULT_TYPE"], mt6["FAULT_MODULE"], mt6["FAULT_LINE"])
    return {
        "resets": counts,
        "last_start": causes[last] if last < len(causes) else f"cause {last}",
        "last_fault": fault,
        "last_fault_repeats": mt6["FAULT_REPEATS"],
    }


def read_status(client: Client) -> dict[str, Any]:
    """ST3, MT0, ST52, ST1 and MT6 as the `status --json` dict (every table anonymous)."""
    st3 = parse(T.ST3, client.read(3))
    mt0 = parse(T.MT0, client.read(T.MFG))
    st1 = parse(T.ST1, client.read(1))
    clock = client.read(52)
    bits = st3["ED_STD_STATUS1"] | st3["ED_STD_STATUS2"] << 16
    names = [name for bit, name in status_bits() if bits & bit]
    seal = mt0["SEAL_FLAGS"] | st3["ED_MFG_STATUS"]
    clock_error = firmware_constants("status")["CLOCK_ERROR"]
    try:
        starts = decode_resets(client.read(MT6))
    except ServiceError:  # a firmware from before MT6
        starts = {"resets": None, "last_start": None, "last_fault": None, "last_fault_repeats": 0}
    return {
        "mode": st3["ED_MODE"],
        "mode_names": [name for bit, name in ED_MODE_FLAGS if st3["ED_MODE"] & bit],
        "status_bits": bits,
        "status": names,
        "sealed": bool(seal & T.SEAL_SEALED),
        "seal_plug": bool(seal & T.SEAL_PLUG),
        "tamper": "TAMPER_DETECT" in names,
        "seal_flags": [name for bit, name in SEAL_FLAG_NAMES if seal & bit],
        "seal_count": mt0["SEAL_COUNT"],
        "lockout_left_s": mt0["LOCKOUT_LEFT_S"],
        "failed_passwords": mt0["FAILED_PASSWORDS"],
        "lockouts": mt0["LOCKOUTS"],
        "clock": stime(clock[:6]),
        "clock_valid": not bits & clock_error,
        "clock_dst": bool(clock[6] & T.QUAL_DST),  # ST52 is standard time; local is an hour on
        "firmware": f"{st1['FW_VERSION_NUMBER']}.{st1['FW_REVISION_NUMBER']}",
        "hardware": f"{st1['HW_VERSION_NUMBER']}.{st1['HW_REVISION_NUMBER']}",
        "manufacturer": _text(st1["MANUFACTURER"]),
        "model": _text(st1["ED_MODEL"]),
        "serial": _text(st1["MFG_SERIAL_NUMBER"]),
        **starts,
    }


def _event_detail(code: int, arg: bytes) -> str:
    n = int.from_bytes(arg, "little")
    name = event_names().get(code, "")
    if name == "POWER_UP":
        return "outage unknown" if n == 0xFFFFFFFF else f"outage {n} s"
    if name in ("TIME_OLD", "TIME_NEW"):
        when = (EPOCH_2000 + datetime.timedelta(seconds=n)).isoformat()
        return ("new time " if name == "TIME_OLD" else "old time ") + when
    if name == "DEMAND_RESET":
        return f"reset {n & 0xFFFF}"
    if name == "PROCEDURE":
        return f"procedure {arg[0] | arg[1] << 8}, result {arg[2]}"
    if name == "CONFIG_CHANGED":
        return f"crc {n:08x}"
    if name == "DEMAND_SUSPENDED":
        return "outage unknown" if n == 0xFFFFFFFF else f"outage {n} s"
    if name == "METERING_IC_RESET":
        return f"lost {n / LSB_PER_WH:.4f} Wh"
    if name == "CONSOLE_ACCESS":
        closed = {1: "the software seal", 2: "the seal plug", 3: "the seal and the plug"}.get(arg[0], "?")
        before = int.from_bytes(arg[2:4], "little")
        return f"closed by {closed}, first byte 0x{arg[1]:02x}, {before} bytes in the burst before"
    if name == "FIRMWARE_FAULT":
        return fault_text(arg[0], arg[1], arg[2] | arg[3] << 8)
    if name == "RESET":
        causes = RESETS.CAUSES.decode().split()
        down = arg[1] | arg[2] << 8
        cause = causes[arg[0]].replace("_", " ") if arg[0] < len(causes) else f"cause {arg[0]}"
        return f"{cause}, down {'unknown' if down == 0xFFFF else f'{down} s'}"
    if name == "CLOCK_ERROR":
        return clock_lost_why().get(n, "")
    return ""


_LOST_WHY = {
    "LOST_FLAG": "the RTC chip flagged its time lost (its backup failed)",
    "LOST_EARLIER": "the RTC read earlier than the last known time",
    "LOST_NO_ANSWER": "the RTC chip did not answer",
    "LOST_NEVER_SET": "the RTC was never set",
}


@cache
def clock_lost_why() -> dict[int, str]:
    """The CLOCK_ERROR event's data (timekeeping.LOST_*), in words."""
    consts = firmware_constants("timekeeping")
    return {consts[name]: words for name, words in _LOST_WHY.items() if name in consts}


def event_rows(client: Client) -> list[dict[str, Any]]:
    """The event log, oldest first: seq, time, code, name, user id, argument (hex), detail."""
    rows = []
    for e in read_events(client):
        code, arg = e["EVENT_CODE"], bytes(e["EVENT_ARGUMENT"])
        when = bytes((e["YEAR"], e["MONTH"], e["DAY"], e["HOUR"], e["MINUTE"], e["SECOND"]))
        rows.append({
            "seq": e["EVENT_SEQ_NBR"], "time": stime(when) or "2000-01-01T00:00:00", "code": code,
            "name": event_names().get(code, f"EVENT_0x{code:03x}"), "user_id": e["USER_ID"],
            "argument": arg.hex(), "detail": _event_detail(code, arg),
        })  # fmt: skip
    return rows


def _lp_flags(status0: int, status1: int) -> list[str]:
    """ST64 EXTENDED_INT_STATUS back to loadprofile.py's flags (logread.lp_read_into has the
    layout). The common nibble: 1 DST, 2 power failure, 4 clock reset forward, 8 backward;
    channel 1 (high nibble): 2 partial, 4 skipped (a filler entry); status1's high nibble,
    bit 0: the manufacturer's CLOCK_INVALID."""
    bits = dict((name, bit) for bit, name in lp_flag_bits())
    flags = 0
    if status0 & 1:
        flags |= bits["DST"]
    if status0 & 2:
        flags |= bits["POWER_OUTAGE"]
    if status0 & 12:
        flags |= bits["CLOCK_CHANGED"]
    if status0 & 8:
        flags |= bits["CLOCK_BACKWARD"]
    if (status0 >> 4) == 2 or status1 & 15 == 2:
        flags |= bits["PARTIAL"]
    if status1 >> 4 & 1:
        flags |= bits["CLOCK_INVALID"]
    return [name for bit, name in lp_flag_bits() if flags & bit]


def read_profile(client: Client) -> list[dict[str, Any]]:
    """The load profile (ST61 dimensions, ST63 where, ST64 data), oldest interval first:
    {end, delivered_wh, received_wh, flags, interval_min, register_delivered_wh,
    register_received_wh}: the registers at the interval's end, from the block's END_READINGS
    less the intervals after it in the block (None when the meter gives no reading: zeros).
    The newest block holds ST63 NBR_VALID_INT intervals; the older ones as many as up to
    their last non-empty entry."""
    st61 = parse(T.ST61, client.read(61))
    st63 = parse(T.ST63, client.read(63))
    nblocks, ints, chns = st61["NBR_BLKS_SET1"], st61["NBR_BLK_INTS_SET1"], st61["NBR_CHNS_SET1"]
    minutes = st61["MAX_INT_TIME_SET1"]
    per_int = chns // 2 + 1 + 2 * chns
    head = 5 + 6 * chns
    size = head + ints * per_int
    valid, last = st63["NBR_VALID_BLOCKS"], st63["LAST_BLOCK_ELEMENT"]
    if not valid or not nblocks:
        return []
    first = (last - valid + 1) % nblocks
    order = [(first + k) % nblocks for k in range(valid)]
    # one read per run of consecutive blocks (two when the ring wraps)
    runs: list[tuple[int, int]] = []
    for j in order:
        if runs and runs[-1][0] + runs[-1][1] == j:
            runs[-1] = (runs[-1][0], runs[-1][1] + 1)
        else:
            runs.append((j, 1))
    data: dict[int, bytes] = {}
    for start, n in runs:
        raw = _read_big(client, 64, start * size, n * size)
        for k in range(n):
            data[start + k] = raw[k * size : (k + 1) * size]
    rows: list[dict[str, Any]] = []
    for j in order:
        block = data[j]
        entries = [block[head + k * per_int : head + (k + 1) * per_int] for k in range(ints)]
        if j == last:
            count = st63["NBR_VALID_INT"]
        else:
            count = max((k + 1 for k, e in enumerate(entries) if any(e)), default=0)
        if not count or not any(block[:5]):
            continue
        y, mo, d, hh, mi = block[:5]
        end = datetime.datetime(2000 + y, mo, d, hh, mi)
        reg_d = int.from_bytes(block[5:11], "little", signed=True) if chns > 0 else 0
        reg_r = int.from_bytes(block[11:17], "little", signed=True) if chns > 1 else 0
        known = bool(reg_d or reg_r)
        wh = [
            (int.from_bytes(e[per_int - 2 * chns : per_int - 2 * chns + 2], "little"),
             int.from_bytes(e[per_int - 2 * chns + 2 : per_int - 2 * chns + 4], "little"))
            for e in entries[:count]
        ]  # fmt: skip
        after_d = after_r = 0
        regs: list[tuple[int | None, int | None]] = []
        for dw, rw in reversed(wh):
            regs.append((reg_d - after_d, reg_r - after_r) if known else (None, None))
            after_d += dw
            after_r += rw
        regs.reverse()
        for k in range(count):
            e = entries[k]
            rows.append({
                "end": (end - datetime.timedelta(minutes=(count - 1 - k) * minutes)).isoformat(timespec="minutes"),
                "delivered_wh": int.from_bytes(e[per_int - 2 * chns : per_int - 2 * chns + 2], "little"),
                "received_wh": int.from_bytes(e[per_int - 2 * chns + 2 : per_int - 2 * chns + 4], "little"),
                "flags": _lp_flags(e[0], e[1] if chns > 1 else 0),
                "interval_min": minutes,
                "register_delivered_wh": regs[k][0],
                "register_received_wh": regs[k][1],
            })  # fmt: skip
    return rows


def read_lcd(client: Client) -> tuple[str, bytes]:
    """The LCD now: (its 8 characters as lcd_glyphs decodes them, the 16 RAM bytes of MT4)."""
    ram = bytes(client.read(MT4))
    return firmware_module("lcd_glyphs").decode(ram)[0], ram


# ---- output -------------------------------------------------------------------------------
def _print_json(value: Any) -> None:
    print(json.dumps(value, indent=2))


def _fmt_wh(v: float) -> str:
    return f"{v:>16,.4f}"


def _fmt_w(v: int | None) -> str:
    return "-" if v is None else f"{v:,}"


def show_registers(r: dict[str, Any]) -> str:
    lines = [f"meter time {r['time'] or 'unknown'}", "", "energy (Wh, full resolution)"]
    for key in ("delivered_wh", "received_wh", "net_wh"):
        lines.append(f"  {key[:-3]:<10}{_fmt_wh(r[key])}")
    lines += ["", "tiers        delivered Wh   received Wh        net Wh   max demand W"
              "   cum. demand W  cont. cum. W  at"]  # fmt: skip
    for t in r["tiers"]:
        lines.append(
            f"  {t['tier']:<4}{t['delivered_wh']:>16,}{t['received_wh']:>14,}{t['net_wh']:>14,}"
            f"{t['max_demand_w']:>15,}{_fmt_w(t['cum_demand_w']):>16}{_fmt_w(t['cont_cum_demand_w']):>14}"
            f"  {t['max_demand_time'] or '-'}"
        )
    d = r["demand"]
    lines += ["", f"demand: maximum {d['max_w']:,} W at {d['max_time'] or '-'}, {d['resets']} resets"
              + ("" if d["present_w"] is None else f", present {d['present_w']:,} W"),
              f"  cumulative {_fmt_w(d['cumulative_w'])} W,"
              f" continuously cumulative {_fmt_w(d['cont_cumulative_w'])} W"]  # fmt: skip
    i = r["instantaneous"]
    lines += [
        "",
        f"now: {i['volts']:.3f} V  {i['amps_a']:.3f} A (A)  {i['amps_b']:.3f} A (B)  {i['watts']:.3f} W"
        f"  {i['vars']:.3f} var  {i['va']:.3f} VA  PF {i['pf']:.3f}  {i['hz']:.2f} Hz",
        "",
        "registers (Wh; varh_ in varh, vah_ in VAh)",
    ]
    for name, value in r["registers"].items():
        lines.append(f"  {name:<20}{_fmt_wh(value)}")
    return "\n".join(lines)


def show_billing_entry(r: dict[str, Any], title: str) -> str:
    lines = [f"{title} {r['time'] or 'unknown'}" + ("" if r["season"] is None else f", season {r['season'] + 1}"), ""]
    for key in ("delivered_wh", "received_wh", "net_wh"):
        lines.append(f"  {key[:-3]:<10}{r[key]:>16,} Wh")
    lines += ["", "tiers        delivered Wh   received Wh        net Wh   max demand W  at"]
    for t in r["tiers"]:
        lines.append(
            f"  {t['tier']:<4}{t['delivered_wh']:>16,}{t['received_wh']:>14,}{t['net_wh']:>14,}"
            f"{t['max_demand_w']:>15,}  {t['max_demand_time'] or '-'}"
        )
    d = r["demand"]
    lines += ["", f"demand: maximum {d['max_w']:,} W at {d['max_time'] or '-'}, {d['resets']} resets before"]
    return "\n".join(lines)


def show_status(s: dict[str, Any]) -> str:
    yes = {True: "yes", False: "no"}
    return "\n".join([
        f"meter          {s['manufacturer']} {s['model']} serial {s['serial'] or '-'}",
        f"firmware       {s['firmware']} (hardware {s['hardware']})",
        f"mode           {', '.join(s['mode_names']) or '-'} ({s['mode']})",
        f"status         {', '.join(s['status']) or 'none'}",
        f"sealed         {yes[s['sealed']]} (seals {s['seal_count']})",
        f"seal plug      {'in' if s['seal_plug'] else 'out'}",
        f"tamper         {yes[s['tamper']]}",
        f"lock-out       {str(s['lockout_left_s']) + ' s left' if s['lockout_left_s'] else 'off'}"
        f" ({s['failed_passwords']} failed passwords, {s['lockouts']} lock-outs)",
        f"clock          {s['clock']} ({'valid' if s['clock_valid'] else 'NOT valid: set it'})"
        f"{', standard time: DST in force' if s.get('clock_dst') else ''}",
        f"starts         {_show_starts(s)}",
    ])  # fmt: skip


def _show_starts(s: dict[str, Any]) -> str:
    if s.get("resets") is None:
        return "- (this firmware has no MT6)"
    counts = ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in s["resets"].items())
    text = f"{counts}; last: {s['last_start'].replace('_', ' ')}"
    if s["last_fault"]:
        text += f"; last fault {s['last_fault']}"
        if s["last_fault_repeats"] > 1:
            text += f" ({s['last_fault_repeats']} times in a row)"
    return text


def show_lcd(lcd: dict[str, Any]) -> str:
    return f"[{lcd['shown']:<15}]  {' '.join(lcd['annunciators'])}"


def decode_table(client: Client, number: int, data: bytes) -> Any:
    """Named fields where the firmware declares the table's layout; None otherwise."""
    if number in FLAT_LAYOUTS:
        fields = {k: _text(v) for k, v in parse(FLAT_LAYOUTS[number], data).items()}
        if number == 3:
            bits = fields["ED_STD_STATUS1"] | fields["ED_STD_STATUS2"] << 16
            fields["status_names"] = [name for bit, name in status_bits() if bits & bit]
        if number in (52, 55):
            fields["time"] = stime(data[:6])
        return fields
    if number == 0:
        return decode_st0(data)
    if number == 23:
        return decode_tiers(parse(T.ST21, client.read(21)), data)
    if number == 76:
        entry, start = layout_size(T.EVENT_ENTRY), layout_size(T.LOG_HEADER)
        head = parse(T.LOG_HEADER, data)
        entries = []
        for i in range(head["NBR_VALID_ENTRIES"]):
            e = {k: _text(v) for k, v in parse(T.EVENT_ENTRY, data, start + i * entry).items()}
            e["EVENT_NAME"] = event_names().get(e["EVENT_CODE"], "?")
            entries.append(e)
        return {"header": head, "entries": entries}
    if number == MT1:
        return decode_config(data)
    if number == MT4:
        return decode_lcd(data)
    if number == MT5:
        return decode_registers(data)
    return None


def _show_fields(value: Any, indent: str = "") -> str:
    """Decoded fields for people: `NAME  value` a line, a list of records one record a line."""
    if isinstance(value, list):
        if not value:
            return f"{indent}(none)"
        return "\n".join(indent + "  ".join(f"{k}={v}" for k, v in v.items()) if isinstance(v, dict)
                         else f"{indent}{v}" for v in value)  # fmt: skip
    lines = []
    for k, v in value.items():
        if isinstance(v, dict) or (isinstance(v, list) and v and isinstance(v[0], dict)):
            lines += [f"{indent}{k}:", _show_fields(v, indent + "  ")]
        else:
            lines.append(f"{indent}{k:<24}{v}")
    return "\n".join(lines)


def _table_size(client: Client, number: int) -> int | None:
    """The size of a table read a piece at a time (BIG), as its dimensioning table says."""
    if number == 64:
        return parse(T.ST61, client.read(61))["LP_MEMORY_LEN"]
    if number in (25, 26):
        st21, head, size = _entry_layout(client)
        per = 1 if number == 25 else st21["NBR_SELF_READS"]
        return (0 if number == 25 else layout_size(T.SELF_READ_HEADER)) + per * (head + size)
    if number == 76:
        n = parse(T.ST71, client.read(71))["NBR_EVENT_ENTRIES"]
        return layout_size(T.LOG_HEADER) + n * layout_size(T.EVENT_ENTRY)
    return None


# ---- commands -----------------------------------------------------------------------------
def cmd_read(args: argparse.Namespace) -> int:
    if args.previous:
        with optical.session(args, "reader") as client:
            prev = read_previous(client)
        if args.json:
            _print_json(prev)
        else:
            print(show_billing_entry(prev, "at the last demand reset,") if prev else "no demand reset yet")
        return EXIT_OK
    with optical.session(args, "reader") as client:
        regs = read_registers(client)
    print(json.dumps(regs, indent=2) if args.json else show_registers(regs))
    return EXIT_OK


def cmd_self_reads(args: argparse.Namespace) -> int:
    with optical.session(args, "reader") as client:
        rows = read_self_reads(client)
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print("no self-reads yet")
    else:
        print("   seq  time              season   delivered Wh   received Wh  max demand W  at")
    for r in rows:
        d = r["demand"]
        season = "-" if r["season"] is None else r["season"] + 1
        print(f"{r['seq']:>6}  {(r['time'] or '-').replace('T', ' '):<16}  {season!s:>6}"
              f"{r['delivered_wh']:>15,}{r['received_wh']:>14,}{d['max_w']:>14,}  {d['max_time'] or '-'}")  # fmt: skip
    return EXIT_OK


def cmd_table(args: argparse.Namespace) -> int:
    from host_tools.cli import UsageError

    number = args.number
    entry = T.find(number)
    if entry is None:
        served = ", ".join(table_name(n) for n, _ in T.TABLES if T.read_level(T.find(n)) != T.NEVER)
        raise UsageError(f"meterctl table: the meter has no table {table_name(number)} (it serves {served})")
    level = T.read_level(entry)
    if level == T.NEVER:
        raise UsageError(f"meterctl table: {table_name(number)} is write-only")
    if (args.offset is None) != (args.count is None):
        raise UsageError("meterctl table: --offset and --count go together")
    with optical.session(args, LEVEL_NAMES[level]) as client:
        if args.offset is not None:
            try:
                data = _read_big(client, number, args.offset, args.count)
            except ServiceError as exc:
                if exc.name != "iar":
                    raise
                raise MeterctlError(
                    f"{table_name(number)} has no bytes {args.offset}..{args.offset + args.count - 1}",
                    "read the whole table first to see its size",
                    optical.EXIT_USAGE,
                ) from None
            fields = None
        else:
            size = _table_size(client, number)
            data = _read_big(client, number, 0, size) if size else client.read(number)
            fields = None if args.raw else decode_table(client, number, data)
    start = args.offset or 0
    if args.json:
        out: dict[str, Any] = {"table": number, "name": table_name(number), "offset": start, "size": len(data)}
        if fields is not None:
            out["fields"] = fields
        out["hex"] = data.hex()
        _print_json(out)
    else:
        what = f"{table_name(number)} (table {number}, 0x{number:03x}): {len(data)} bytes"
        print(what + (f" from offset {start}" if args.offset is not None else ""))
        print(hexdump(data, start) if fields is None else _show_fields(fields, "  "))
    return EXIT_OK


def cmd_status(args: argparse.Namespace) -> int:
    with optical.session(args, "anonymous") as client:
        status = read_status(client)
    print(json.dumps(status, indent=2) if args.json else show_status(status))
    return EXIT_OK


def cmd_events(args: argparse.Namespace) -> int:
    with optical.session(args, "reader") as client:
        rows = event_rows(client)
    if args.json:
        _print_json(rows)
        return EXIT_OK
    if not rows:
        print("the event log is empty")
    for r in rows:
        print(f"{r['seq']:>6}  {r['time']}  {r['name']:<24} user {r['user_id']:<5} {r['argument']}  {r['detail']}")
    return EXIT_OK


def cmd_profile(args: argparse.Namespace) -> int:
    with optical.session(args, "reader") as client:
        rows = read_profile(client)
    if args.csv:
        try:
            with open(args.csv, "w", newline="") as f:
                w = csv.writer(f)
                w.writerow(["end", "delivered_wh", "received_wh", "flags"])
                for r in rows:
                    w.writerow([r["end"], r["delivered_wh"], r["received_wh"], "|".join(r["flags"])])
        except OSError as exc:
            raise MeterctlError(
                f"cannot write {args.csv}: {exc.strerror}", "check the path", optical.EXIT_FAILED
            ) from None
        print(f"wrote {len(rows)} intervals to {args.csv}", file=sys.stderr)
    if args.json:
        _print_json(rows)
    elif not args.csv:
        if not rows:
            print("the load profile is empty")
        else:
            print("interval end        delivered Wh  received Wh  flags")
        for r in rows:
            print(
                f"{r['end'].replace('T', ' ')}  {r['delivered_wh']:>12}  {r['received_wh']:>11}  {' '.join(r['flags'])}"
            )
    return EXIT_OK


def _watch_lines(client: Client) -> list[str]:
    lcd = decode_lcd(client.read(MT4))
    i = decode_instantaneous(client.read(MT3))
    r = decode_registers(client.read(MT5))
    net = round(r["delivered_wh"] - r["received_wh"], 4)
    return [
        f"LCD {show_lcd(lcd)}",
        f"{i['volts']:.2f} V  {i['amps_a']:.3f} A  {i['watts']:.1f} W  PF {i['pf']:.3f}  {i['hz']:.2f} Hz",
        f"delivered {r['delivered_wh']:.4f} Wh  received {r['received_wh']:.4f} Wh  net {net:.4f} Wh",
    ]


def cmd_watch(args: argparse.Namespace) -> int:
    tty = sys.stdout.isatty()
    shown = 0
    try:
        with optical.session(args, "reader") as client:
            while True:
                lines = _watch_lines(client)
                if tty:
                    up = f"\x1b[{len(lines)}F" if shown else ""
                    sys.stdout.write(up + "".join(f"\x1b[2K{line}\n" for line in lines))
                else:
                    sys.stdout.write(time.strftime("%H:%M:%S ") + " | ".join(lines) + "\n")
                sys.stdout.flush()
                shown += 1
                if args.count and shown >= args.count:
                    break
                time.sleep(args.interval)
    except KeyboardInterrupt:
        if tty:
            sys.stdout.write("\n")
    return EXIT_OK


def cmd_lcd(args: argparse.Namespace) -> int:
    with optical.session(args, "reader") as client:
        _, ram = read_lcd(client)
    lcd = decode_lcd(ram)
    if args.png:
        from host_tools.lcd_render import render_png

        try:
            path = render_png(ram, args.png)
        except OSError as exc:
            raise MeterctlError(f"cannot write {args.png}: {exc.strerror or exc}", "check the path") from None
        print(f"saved the LCD to {path}", file=sys.stderr)
    print(json.dumps(lcd, indent=2) if args.json else show_lcd(lcd))
    return EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    """Add this module's meterctl commands."""
    p = sub.add_parser("read", help="the registers: energy at full resolution, tiers, demand, V/A/W now")
    optical.add_port_options(p)
    p.add_argument("--previous", action="store_true", help="the registers at the last demand reset (ST25)")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_read)

    p = sub.add_parser("self-reads", help="the self-reads (ST26): time, season, registers, oldest first")
    optical.add_port_options(p)
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_self_reads)

    p = sub.add_parser("table", help="one C12.19 table, decoded into named fields (or hex)")
    p.add_argument("number", metavar="N", type=table_number, help="23, ST23, MT0 (= 0x800), 0x805")
    optical.add_port_options(p)
    p.add_argument("--raw", action="store_true", help="hex only, no decoding")
    p.add_argument("--offset", type=_non_negative("--offset"), help="a partial read from this byte (with --count)")
    p.add_argument("--count", type=_positive(int, "--count"), help="bytes of the partial read")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_table)

    p = sub.add_parser("status", help="mode, status flags, seal, tamper, lock-out, clock, firmware version")
    optical.add_port_options(p)
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("events", help="the event log, oldest first")
    optical.add_port_options(p)
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_events)

    p = sub.add_parser("profile", help="the load profile: one row per interval")
    optical.add_port_options(p)
    p.add_argument("--csv", metavar="FILE", help="write the rows as CSV (with a header row) to FILE")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("watch", help="a live view: the LCD, V, I, W, PF, Hz, energy (Ctrl-C ends it)")
    optical.add_port_options(p)
    p.add_argument("--interval", type=_positive(float, "--interval"), default=1.0, help="seconds between refreshes")
    p.add_argument("--count", type=_positive(int, "--count"), help="stop after this many refreshes")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("lcd", help="the LCD now, as text with annunciators (or a PNG)")
    optical.add_port_options(p)
    p.add_argument("--png", metavar="FILE", help="draw the glass, segments and all, into FILE")
    p.add_argument("--json", action="store_true", help="JSON on stdout")
    p.set_defaults(func=cmd_lcd)
