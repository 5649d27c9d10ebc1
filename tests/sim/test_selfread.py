"""Billing-period data (issue 16) on the simulated board: ST25 (the registers at the last
demand reset) and the ST26 self-reads, daily at SELF_READ_TIME and on each demand reset,
read with an independent decoding of their C12.19 layout and with meterctl's.

A month of metering takes a day of wall time at the simulator's pace, so the month here is
a month of nights: the board is on from 23:40 to 00:17 and off (its RTC on its battery)
the rest of each day, a known load on from 23:45 to 00:15. Every quarter hour at 3 kW is
750 Wh (6 kW: 1500 Wh), so the expected registers are sums of those, hand-counted below.
"""

from __future__ import annotations

import json

import holdup
import pytest
from billing_rpc import MeterRPC, secs

from host_tools import readout
from host_tools.c1218 import TABLES, Client, parse, parse_st23
from host_tools.repo import firmware_module
from host_tools.sim import SimBoard
from host_tools.sim.board import DEFAULT_HEAP_KB

pytestmark = pytest.mark.sim_only

T = TABLES
config = firmware_module("config")
HOLD_UP_MS = holdup.hold_up_ms(60.0)
VOLTS = 240.0
START = "2026-03-01T23:39:00"


def night(board: SimBoard, meter: MeterRPC, day: int, amps: float, reset: bool = False) -> None:
    """March `day`, 23:40 on, load 23:45-00:15, [a demand reset at 00:16], off at 00:17."""
    base = secs(f"2026-03-{day:02d}T00:00:00") - secs(START)
    board.set_load(VOLTS, 0.0)
    board.run(base + 23 * 3600 + 40 * 60 - board.virtual_time())
    board.power_on()
    board.run(base + 23 * 3600 + 45 * 60 - board.virtual_time())
    board.set_load(VOLTS, amps)
    board.run(base + 24 * 3600 + 15 * 60 - board.virtual_time())
    board.set_load(VOLTS, 0.0)
    board.run(base + 24 * 3600 + 16 * 60 - board.virtual_time())
    if reset:
        assert meter.call("result = m.demand_reset()") is True
    board.run(base + 24 * 3600 + 17 * 60 - board.virtual_time())
    board.power_off(sag_ms=HOLD_UP_MS)


def read_tables(board: SimBoard) -> tuple[dict, bytes, bytes, bytes, list, dict | None]:
    """ST21, ST23, ST25, ST26 (whole reads), and meterctl's decoding of ST26 and ST25."""
    with Client.open(board.optical_port) as c, c.session(password="", packet_size=256, nbr_packets=8):
        st21 = parse(T.ST21, c.read(21))
        st23, st25, st26 = c.read(23), c.read(25), c.read(26)
        return st21, st23, st25, st26, readout.read_self_reads(c), readout.read_previous(c)


def entry(st21: dict, raw: bytes) -> tuple[str, int, int, int, str]:
    """(END_DATE_TIME, SEASON, delivered Wh, max demand W, its time): C12.19's ST26 entry,
    with ST21 REG_FUNC1 bits 1 (date/time field) and 0 (season field) set."""
    assert st21["REG_FUNC1"] & 3 == 3
    y, mo, d, hh, mi = raw[:5]
    regs = parse_st23(st21, raw[6:])
    (wy, wmo, wd, wh, wmi), watts = regs["total"]["demands"][0]
    return (f"{2000 + y}-{mo:02d}-{d:02d}T{hh:02d}:{mi:02d}", raw[5], regs["total"]["summations"][0], watts,
            f"{2000 + wy}-{wmo:02d}-{wd:02d}T{wh:02d}:{wmi:02d}")  # fmt: skip


def test_a_month_of_daily_self_reads_and_two_demand_resets(tmp_path):
    with SimBoard(tmp_path, seed=16, ideal=True, boot=False, heap_kb=DEFAULT_HEAP_KB, start_time=START) as board:
        meter = MeterRPC(board, {config.SELF_READ_TIME: 0})  # daily at midnight
        # March 1-10 at 3 kW (12.5 A), a reset after the night of the 10th; 11-20 at 6 kW,
        # a reset after the 20th; 21-31 at 3 kW
        for day in range(1, 21):
            night(board, meter, day, 12.5 if day <= 10 else 25.0, reset=day in (10, 20))
        board.power_on()
        board.run(60.0)
        st21, st23, st25, st26, rows, prev = read_tables(board)
        # ST21: REG_FUNC2 self-read sequence numbers (bit 1), daily (bit 2), one with each
        # demand reset (bits 4-5 = 1); four self-reads kept
        assert st21["REG_FUNC2"] == 0x16 and st21["NBR_SELF_READS"] == 4
        size = 6 + len(st23)
        assert len(st25) == size and len(st26) == 6 + 4 * size
        # ST26 list status: circular (bit 2), overflowed (bit 1), 4 valid, the newest last;
        # self-reads numbered 1.. in order: daily 1-10, reset 11, daily 12-21, reset 22
        assert st26[0] == 0x06 and st26[1] == 4 and st26[2] == 3
        assert int.from_bytes(st26[3:5], "little") == 22 and st26[5] == 4
        got = [entry(st21, st26[6 + i * size : 6 + (i + 1) * size]) for i in range(4)]
        # the newest four: the midnights after March 18, 19, 20 and the reset at 00:16 on the 21st.
        # Delivered at midnight after night n: nights 1-10 give 750 + 750 Wh, nights 11-20
        # 1500 + 1500 Wh, less the last 00:00-00:15 of the night itself: 15,000 + 3,000 (n - 10) - 1,500
        max_6kw = "2026-03-12T00:00"  # the first 6 kW interval: 23:45-00:00 on March 11
        assert [g[0] for g in got] == ["2026-03-19T00:00", "2026-03-20T00:00", "2026-03-21T00:00", "2026-03-21T00:16"]
        expected = [15000 + 3000 * 8 - 1500, 15000 + 3000 * 9 - 1500, 15000 + 3000 * 10 - 1500, 45000]
        assert all(abs(g[2] - w) <= 3 for g, w in zip(got, expected, strict=True)), (got, expected)
        # each carries the demand maximum of its billing period (the reset's: before it cleared it)
        assert all(abs(g[3] - 6000) <= 2 and g[4] == max_6kw for g in got), got
        assert all(g[1] == 0 for g in got), "one season"
        # ST25: the registers at the reset after March 20, the count of resets before it (1)
        prev_when, _, prev_wh, prev_w, prev_at = entry(st21, st25)
        assert (prev_when, prev_at) == ("2026-03-21T00:16", max_6kw)
        assert abs(prev_wh - 45000) <= 3 and abs(prev_w - 6000) <= 2 and st25[6] == 1
        # while ST23 moved on: reset twice, maximum cleared, nothing metered since
        now = parse_st23(st21, st23)
        assert now["resets"] == 2 and now["total"]["demands"][0][1] == 0
        assert abs(now["total"]["summations"][0] - 45000) <= 3
        # meterctl decodes the same numbers
        assert [r["seq"] for r in rows] == [19, 20, 21, 22]
        assert [(r["time"], r["delivered_wh"], r["demand"]["max_w"]) for r in rows] == [g[0:1] + g[2:4] for g in got]
        assert prev is not None and (prev["time"], prev["delivered_wh"]) == (prev_when, prev_wh)
        assert prev["demand"]["resets"] == 1 and prev["demand"]["max_time"] == max_6kw
        board.power_off(sag_ms=HOLD_UP_MS)

        for day in range(21, 32):
            night(board, meter, day, 12.5)
        board.power_on()  # April 1st
        board.run(60.0)
        st21, st23, st25b, st26, rows, _ = read_tables(board)
        got = [entry(st21, st26[6 + i * size : 6 + (i + 1) * size]) for i in range(4)]
        # the midnights after March 28-31: 45,000 + 1,500 (n - 20) - 750 Wh, and a
        # maximum of 3 kW since the reset (first: 23:45-00:00 on March 21)
        assert [g[0] for g in got] == ["2026-03-29T00:00", "2026-03-30T00:00", "2026-03-31T00:00", "2026-04-01T00:00"]
        expected = [45000 + 1500 * n - 750 for n in (8, 9, 10, 11)]
        assert all(abs(g[2] - w) <= 3 for g, w in zip(got, expected, strict=True)), (got, expected)
        assert all(abs(g[3] - 3000) <= 2 and g[4] == "2026-03-22T00:00" for g in got), got
        assert int.from_bytes(st26[3:5], "little") == 33 and [r["seq"] for r in rows] == [30, 31, 32, 33]
        assert st25b == st25, "ST25 holds the last reset's registers through eleven power cycles"


def test_meterctl_prints_the_previous_billing_period_and_the_self_reads(tmp_path, meterctl):
    with SimBoard(tmp_path, seed=17, ideal=True, boot=False, start_time="2026-05-04T23:58:00") as board:
        meter = MeterRPC(board, {config.SELF_READ_TIME: 0})
        board.set_load(VOLTS, 0.0)
        board.power_on()
        none = meterctl("read", "--previous", "--port", board.optical_port)
        assert none.returncode == 0 and none.stdout.strip() == "no demand reset yet"
        board.set_load(VOLTS, 12.5)  # 3 kW
        board.run(60.0 * 6)  # past midnight: a self-read
        assert meter.call("result = m.demand_reset()") is True
        board.set_load(VOLTS, 0.0)
        board.run(5.0)
        prev = json.loads(meterctl("read", "--previous", "--port", board.optical_port, "--json").stdout)
        rows = json.loads(meterctl("self-reads", "--port", board.optical_port, "--json").stdout)
        human = meterctl("self-reads", "--port", board.optical_port).stdout
        text = meterctl("read", "--previous", "--port", board.optical_port).stdout
    assert [r["seq"] for r in rows] == [1, 2] and rows[0]["time"] == "2026-05-05T00:00"
    assert rows[1] == {"seq": 2, **prev}
    # the reset's maximum: the interval 23:45-00:00 with under 2 minutes of 3 kW, over 15 minutes
    assert prev["demand"]["resets"] == 0 and 300 < prev["demand"]["max_w"] <= 400
    assert 0 < rows[0]["delivered_wh"] < prev["delivered_wh"]
    assert "2026-05-05 00:00" in human and "at the last demand reset, 2026-05-05T00:0" in text


def test_a_cut_while_a_self_read_is_written_loses_that_one_only(tmp_path):
    """The power fails as the second of the self-read record's four pages starts its write
    cycle (the sag warning stops the record there, the hold-up saves the registers): that
    self-read is lost, the older one reads back byte for byte, and the missed self-read time
    is made up at power-up. Failing as the last page starts, the record is whole."""
    storage = readout.firmware_constants("storage")
    ring = (storage["SELF_READ_START"], storage["SELF_READ_START"] + storage["SELF_READ_LENGTH"])
    start = "2026-06-01T23:50:00"
    with SimBoard(tmp_path, seed=18, ideal=True, boot=False, start_time=start) as board:
        meter = MeterRPC(board, {config.SELF_READ_TIME: 10})  # 00:10
        board.set_load(VOLTS, 12.5)
        board.power_on()
        board.run(secs("2026-06-02T00:05:30") - secs(start) - board.virtual_time())
        with Client.open(board.optical_port) as c, c.session(password=""):  # procedure 9, ACTION_FLAG bit 1
            assert c.procedure(T.PROC_REMOTE_RESET, b"\x02") == (0, b"")  # a self read now: number 1, 00:05
        first = read_tables(board)[3]
        size = (len(first) - 6) // 4
        assert first[1] == 1 and first[3:5] == b"\x01\x00"
        board.power_off(sag_ms=HOLD_UP_MS, sag_at_write=2, sag_in=ring)
        board.run(secs("2026-06-02T00:12:00") - secs(start) - board.virtual_time())
        assert not board.hw.powered, "the sag came with the 00:10 self-read"
        board.power_on()
        board.run(30.0)
        st21, _, _, st26, rows, _ = read_tables(board)
        assert st26[6 : 6 + size] == first[6 : 6 + size], "the older self-read, intact"
        # the 00:10 one was lost and made up at power-up (00:12), numbered 2
        assert [(r["seq"], r["time"]) for r in rows] == [(1, "2026-06-02T00:05"), (2, "2026-06-02T00:12")]
        # its registers: 3 kW from 00:05:30 to the cut at 00:10 (225 Wh), all saved on the warning
        assert abs(rows[1]["delivered_wh"] - rows[0]["delivered_wh"] - 225) <= 3

        meter.call(f"m.config.set({config.SELF_READ_TIME}, 20)")  # 00:20
        board.power_off(sag_ms=HOLD_UP_MS, sag_at_write=4, sag_in=ring)
        board.run(secs("2026-06-02T00:22:00") - secs(start) - board.virtual_time())
        assert not board.hw.powered, "the sag came with the 00:20 self-read"
        board.power_on()
        board.run(30.0)
        rows = read_tables(board)[4]
    assert [(r["seq"], r["time"]) for r in rows][2:] == [(3, "2026-06-02T00:20")], "whole: not made up again"
