"""Issue 16, tables and procedures: ST8 after a refused procedure, ST64's END_READINGS and
clock flags, the demand-reset lock-out on powered time, ST76's header and user ids."""

from __future__ import annotations

import datetime as dt

import holdup
import pytest
from billing_rpc import MeterRPC

from host_tools import readout
from host_tools.c1218 import TABLES, Client, ServiceError, pad_password, parse, read_events, set_time_params
from host_tools.sim import SimBoard

T = TABLES
MASTER_PW, PROGRAMMER_PW, READER_PW = "master-333", "prog-22", "reader-1"
HOLD_UP_MS = holdup.hold_up_ms(60.0)  # the sag warning and its save at 60 Hz (holdup.py)


def program_passwords(board) -> None:
    with Client.open(board.optical_port) as c, c.session(password=""):
        c.write(T.MFG + 2, pad_password(READER_PW) + pad_password(PROGRAMMER_PW) + pad_password(MASTER_PW))


def refused(c: Client, number: int, seq: int, params: bytes = b"") -> str:
    """Write ST7 directly (no ST8 read after): the service error's name, or "ok"."""
    try:
        c.write(7, number.to_bytes(2, "little") + bytes([seq]) + params)
    except ServiceError as exc:
        return exc.name
    return "ok"


# ---- ST8 -------------------------------------------------------------------------------
def test_st8_keeps_the_last_real_result_when_a_procedure_is_refused(sim):
    program_passwords(sim)
    with Client.open(sim.optical_port) as c, c.session(password=PROGRAMMER_PW):
        assert c.procedure(T.PROC_CLEAR_STD_STATUS) == (0, b"")
        before = c.read(8)
    assert before[0:2] == (7).to_bytes(2, "little") and before[3] == 0
    with Client.open(sim.optical_port) as c, c.session(password=READER_PW):
        assert refused(c, T.PROC_CLEAR_DATA, 0x77) == "isc", "clear data needs the master"
        assert c.read(8) == before, "ST8 does not say 03 00 77 00 (completed) for a refused procedure"
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        c.procedure(T.PROC_SEAL)
        sealed = c.read(8)
        assert sealed[0:2] == T.PROC_SEAL.to_bytes(2, "little") and sealed[3] == 0
        assert refused(c, T.PROC_CLEAR_DATA, 0x78) == "dlk", "clear data on a sealed meter"
        assert c.read(8) == sealed, "a procedure the seal refused leaves ST8 as it was"


# ---- ST64: END_READINGS and the clock flags ---------------------------------------------
# C12.19 ST64 EXTENDED_INT_STATUS, the common nibble (byte 0, bits 0-3)
DST_FLAG, POWER_FAIL_FLAG, CLOCK_RESET_FORWARD, CLOCK_RESET_BACKWARDS = 1, 2, 4, 8
PARTIAL_INTERVAL, SKIPPED_INTERVAL = 2, 4  # a channel's status value (byte 0 bits 4-7)
EPOCH = dt.datetime(2000, 1, 1)


def st64_blocks(c: Client) -> list[dict]:
    """ST64 as ST61 dimensions it, the ST63-valid blocks oldest first: {end, readings,
    intervals: [(status0, status1, Wh delivered, Wh received)]} (UINT16 channels)."""
    st61 = parse(T.ST61, c.read(61))
    st63 = parse(T.ST63, c.read(63))
    nblk, ints, chns = st61["NBR_BLKS_SET1"], st61["NBR_BLK_INTS_SET1"], st61["NBR_CHNS_SET1"]
    assert (chns, st61["LP_FLAGS"] & 0x400) == (2, 0x400), "two channels, BLK_END_READ_FLAG"
    per, head = chns // 2 + 1 + 2 * chns, 5 + 6 * chns
    size = head + ints * per
    data = c.read_all(64, nblk * size, 240)
    out = []
    last, valid = st63["LAST_BLOCK_ELEMENT"], st63["NBR_VALID_BLOCKS"]
    for k in range(valid):
        j = (last - valid + 1 + k) % nblk
        b = data[j * size : (j + 1) * size]
        n = st63["NBR_VALID_INT"] if j == last else max(
            (i + 1 for i in range(ints) if any(b[head + i * per : head + (i + 1) * per])), default=0)  # fmt: skip
        y, mo, d, hh, mi = b[:5]
        rows = []
        for i in range(n):
            e = b[head + i * per : head + (i + 1) * per]
            rows.append((e[0], e[1], int.from_bytes(e[2:4], "little"), int.from_bytes(e[4:6], "little")))
        out.append({
            "end": dt.datetime(2000 + y, mo, d, hh, mi) if n else None,
            "readings": tuple(int.from_bytes(b[o : o + 6], "little", signed=True) for o in (5, 11)),
            "intervals": rows,
        })  # fmt: skip
    return out


def intervals(blocks: list[dict], minutes: int = 15) -> list[tuple[dt.datetime, int, int]]:
    """(end, status byte 0, status byte 1) of every interval, oldest first."""
    out = []
    for b in blocks:
        n = len(b["intervals"])
        for i, e in enumerate(b["intervals"]):
            out.append((b["end"] - dt.timedelta(minutes=minutes * (n - 1 - i)), e[0], e[1]))
    return out


def now_of(board) -> dt.datetime:
    return EPOCH + dt.timedelta(seconds=board.rtc_seconds())


def run_to(board, when: dt.datetime) -> None:
    board.run((when - now_of(board)).total_seconds())


def test_st64_end_readings_are_the_registers_at_each_blocks_end(tmp_path):
    with SimBoard(tmp_path, seed=31, ideal=True, boot=False) as board:
        board.set_load(240.0, 0.0)
        board.power_on()
        start = dt.datetime(2026, 1, 5, 0, 15, 1)
        run_to(board, start)
        board.set_load(240.0, 10.0)  # 2400 W from 00:15:01: 600 Wh an interval
        run_to(board, dt.datetime(2026, 1, 5, 7, 16, 0))
        with Client.open(board.optical_port) as c, c.session(password=""):
            blocks = st64_blocks(c)
            rows = readout.read_profile(c)
            st63 = parse(T.ST63, c.read(63))
    assert st63["NBR_UNREAD_BLOCKS"] == st63["NBR_VALID_BLOCKS"] == 2, "nothing acknowledged: all unread"
    closed, open_ = blocks[-2], blocks[-1]
    # a block is 24 intervals: the first ends 00:15 (begun at power-up), the last 06:00
    assert closed["end"] == dt.datetime(2026, 1, 5, 6, 0) and len(closed["intervals"]) == 24
    assert open_["end"] == dt.datetime(2026, 1, 5, 7, 15)
    # 2400 W from 00:15:01: 2400 x 5 h 44 min 59 s = 13,799.3 Wh at 06:00; 16,799.3 at 07:15
    assert closed["readings"][0] == pytest.approx(13799, abs=2)
    assert open_["readings"][0] == pytest.approx(16799, abs=2)
    assert closed["readings"][1] == 0 and open_["readings"][1] == 0, "nothing received"
    at = {r["end"]: r for r in rows}
    assert at["2026-01-05T02:15"]["register_delivered_wh"] == pytest.approx(4799, abs=2), "2 hours at 2400 W"
    assert at["2026-01-05T02:15"]["register_received_wh"] == 0


def test_st64_tells_a_backward_clock_set_from_a_forward_one(tmp_path):
    with SimBoard(tmp_path, seed=32, ideal=True, boot=False) as board:
        board.set_load(240.0, 5.0)
        board.power_on()
        run_to(board, dt.datetime(2026, 1, 5, 1, 7, 30))
        with Client.open(board.optical_port) as c, c.session(password=""):
            c.procedure(T.PROC_SET_TIME, set_time_params((26, 1, 5, 0, 57, 30)))  # back 10 minutes
        run_to(board, dt.datetime(2026, 1, 5, 2, 5, 0))
        with Client.open(board.optical_port) as c, c.session(password=""):
            c.procedure(T.PROC_SET_TIME, set_time_params((26, 1, 5, 2, 40, 0)))  # forward 35 minutes
        run_to(board, dt.datetime(2026, 1, 5, 3, 1, 0))
        with Client.open(board.optical_port) as c, c.session(password=""):
            got = intervals(st64_blocks(c))
            rows = readout.read_profile(c)
    hm = [(t.strftime("%H:%M"), s0 & 15) for t, s0, _ in got]
    i = hm.index(("01:15", CLOCK_RESET_BACKWARDS))
    # 00:45 and 01:00 as usual; 01:15 cut at 01:07:30 by the set back; 01:00 again (begun at
    # 00:57:30), then 01:15 again: the repeats follow the intervals flagged backward
    assert hm[i - 2 : i + 4] == [
        ("00:45", 0), ("01:00", 0), ("01:15", CLOCK_RESET_BACKWARDS), ("01:00", CLOCK_RESET_BACKWARDS),
        ("01:15", 0), ("01:30", 0),
    ]  # fmt: skip
    assert got[i][1] >> 4 == PARTIAL_INTERVAL and got[i + 1][1] >> 4 == PARTIAL_INTERVAL
    # 02:15 cut at 02:05 by the set forward; 02:30 skipped; 02:45 begun at 02:40
    j = hm.index(("02:15", CLOCK_RESET_FORWARD))
    assert hm[j : j + 4] == [("02:15", CLOCK_RESET_FORWARD), ("02:30", CLOCK_RESET_FORWARD),
                             ("02:45", CLOCK_RESET_FORWARD), ("03:00", 0)]  # fmt: skip
    assert [got[k][1] >> 4 for k in range(j, j + 4)] == [PARTIAL_INTERVAL, SKIPPED_INTERVAL, PARTIAL_INTERVAL, 0]
    assert not any(s0 & (DST_FLAG | POWER_FAIL_FLAG) for _, s0, _ in got)
    flags = [(r["end"][11:], r["flags"]) for r in rows]
    k = flags.index(("01:15", ["CLOCK_CHANGED", "PARTIAL", "CLOCK_BACKWARD"]))
    assert flags[k + 1] == ("01:00", ["CLOCK_CHANGED", "PARTIAL", "CLOCK_BACKWARD"])
    assert ("02:15", ["CLOCK_CHANGED", "PARTIAL"]) in flags, "meterctl profile: forward is CLOCK_CHANGED alone"


def test_st64_exports_clock_invalid_for_a_meter_without_a_known_time(tmp_path):
    with SimBoard(tmp_path, seed=33, ideal=True, boot=False, rtc="volatile") as board:
        board.set_load(240.0, 5.0)
        board.power_on()
        board.run(2400.0)
        with Client.open(board.optical_port) as c, c.session(password=""):
            assert parse(T.ST3, c.read(3))["ED_STD_STATUS1"] & (1 << 6), "ST3 clock error"
            got = intervals(st64_blocks(c))
            rows = readout.read_profile(c)
    assert len(got) >= 2
    assert all(s1 >> 4 == 1 for _, _, s1 in got), "the manufacturer's CLOCK_INVALID bit (byte 1, bit 4)"
    assert all("CLOCK_INVALID" in r["flags"] for r in rows)


# ---- ST76: the header and the user ids --------------------------------------------------
EV_TIME_OLD, EV_TIME_NEW, EV_PROCEDURE, EV_DEMAND_RESET = 3, 4, 9, 20  # C12.19 standard events
EV_CONFIG_CHANGED = 36  # C12.19 "meter reprogrammed"
EV_BAD_PASSWORD, EV_SEALED, EV_UNSEALED = 0x800, 0x802, 0x803  # the manufacturer's (events.py)
ORDER_FLAG, OVERFLOW_FLAG, LIST_TYPE_FLAG, INHIBIT_OVERFLOW_FLAG = 1, 2, 4, 8  # ST76 EVENT_FLAGS


def st76_header(c: Client) -> dict:
    return parse(T.LOG_HEADER, c.read(76, 0, 11))


def test_st76_logs_the_sessions_user_id_and_says_what_kind_of_list_it_is(sim):
    program_passwords(sim)
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW, user_id=42):
        c.procedure(T.PROC_SET_TIME, set_time_params((26, 1, 5, 12, 30, 0)))
        c.procedure(T.PROC_REMOTE_RESET, b"\x01")
        c.procedure(T.PROC_SEAL)
        c.procedure(T.PROC_UNSEAL)
        c.write(T.MFG + 1, bytes((0x21, 0x81, 12)))  # MT1: SCROLL_S 12 s, applied after the session
    with Client.open(sim.optical_port) as c, c.session(user_id=7):
        with pytest.raises(ServiceError):
            c.security("wrong")
    sim.run(5)
    with Client.open(sim.optical_port) as c, c.session(password=READER_PW):
        events = read_events(c)
        head = st76_header(c)
        st71 = parse(T.ST71, c.read(71))
    by_code: dict[int, list[int]] = {}
    for e in events:
        by_code.setdefault(e["EVENT_CODE"], []).append(e["USER_ID"])
    for code in (EV_TIME_OLD, EV_TIME_NEW, EV_DEMAND_RESET, EV_SEALED, EV_UNSEALED, EV_CONFIG_CHANGED):
        assert by_code[code][-1] == 42, f"event {code:#x}: the logged-on user"
    assert set(by_code[EV_PROCEDURE][-4:]) == {42}
    assert by_code[EV_BAD_PASSWORD][-1] == 7, "the user who tried a wrong password"
    assert by_code[2] == [0], "power up: the meter's own doing"
    # a circular list, oldest first, not yet overflowed; nothing acknowledged: all unread
    assert head["FLAGS"] == LIST_TYPE_FLAG
    assert head["NBR_VALID_ENTRIES"] == len(events) < st71["NBR_EVENT_ENTRIES"]
    assert head["NBR_UNREAD_ENTRIES"] == head["NBR_VALID_ENTRIES"]
    assert not st71["LOG_FLAGS"] & 0x10, "ST71 EVENT_INHIBIT_OVF_FLAG clear, as the ring overwrites"


def test_st76_says_overflow_once_the_ring_overwrote_its_oldest(sim):
    with Client.open(sim.optical_port) as c, c.session(password=""):
        capacity = parse(T.ST71, c.read(71))["NBR_EVENT_ENTRIES"]
        while st76_header(c)["LAST_ENTRY_SEQ_NBR"] < capacity:
            c.procedure(T.PROC_CLEAR_STD_STATUS)
        head = st76_header(c)
        assert head["FLAGS"] == LIST_TYPE_FLAG and head["NBR_VALID_ENTRIES"] == capacity
        c.procedure(T.PROC_CLEAR_STD_STATUS)
        head = st76_header(c)
    assert head["FLAGS"] == LIST_TYPE_FLAG | OVERFLOW_FLAG
    assert head["NBR_VALID_ENTRIES"] == capacity and head["LAST_ENTRY_SEQ_NBR"] == capacity + 1


# ---- the demand-reset lock-out on powered time -------------------------------------------
DEMAND_RESET_LOCKOUT_S = 0x32  # config.py


def remote_reset(board) -> int:
    with Client.open(board.optical_port) as c, c.session(password=""):
        return c.procedure(T.PROC_REMOTE_RESET, b"\x01", check=False)[0]


def set_clock(board, when: dt.datetime) -> None:
    with Client.open(board.optical_port) as c, c.session(password=""):
        c.procedure(T.PROC_SET_TIME, set_time_params((when.year - 2000, when.month, when.day, when.hour,
                                                      when.minute, when.second)))  # fmt: skip


def test_the_demand_reset_lock_out_runs_on_powered_time_not_the_clock(tmp_path):
    with SimBoard(tmp_path, seed=34, ideal=True, boot=False) as board:
        MeterRPC(board, {DEMAND_RESET_LOCKOUT_S: 3600})
        board.set_load(240.0, 10.0)
        board.power_on()
        board.run(1200.0)
        assert remote_reset(board) == 0
        board.run(600.0)  # 10 minutes of the hour gone
        set_clock(board, now_of(board) - dt.timedelta(minutes=10))
        assert remote_reset(board) == T.PROC_TIMING, "setting the clock back does not reopen the reset"
        set_clock(board, now_of(board) + dt.timedelta(hours=2))
        assert remote_reset(board) == T.PROC_TIMING, "nor does setting it forward end the lock-out"
        board.power_off(sag_ms=HOLD_UP_MS)
        board.run(300.0)
        board.power_on()
        assert remote_reset(board) == T.PROC_TIMING, "the lock-out holds across a 5-minute outage"
        board.run(1800.0)  # 40 powered minutes since the reset, and a few for the sessions
        assert remote_reset(board) == T.PROC_TIMING
        # 3600 s of powered time, plus at most one load-profile interval (15 min) counted
        # twice: the seconds left are saved at interval ends
        board.run(3600.0 - 2400.0 + 900.0)
        assert remote_reset(board) == 0
