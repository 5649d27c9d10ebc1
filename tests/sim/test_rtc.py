"""Time across outages (issue 15, items 1 and 3) on the simulated board, with the firmware's
own RTC driver (firmware/rtc.py) on the virtual DS3231 and PCF8563 (host_tools/sim/rtc.py):

- with a backup cell, a 2 s and a 30 h outage each come back with the right time (ST52 over
  the optical port against the board's start time + virtual_time()); the 30 h one suspends
  demand until a time set, the 2 s one does not;
- without battery-backed time (rtc="volatile", a plain Pico), after a 2 s outage the LCD
  still scrolls DE, NG and NT with the registers' values, the clock error as an item of its
  own (Er 005) with the alarm sign, and ST3 says the clock is invalid;
- the cell taken out during an outage: clock invalid, LOW_BATTERY, demand suspended, and a
  time set clears them (and the chip's OSF / VL flag);
- the TOU tier in force at the power-down is held while the clock is invalid;
- an RTC chip that does not answer: the meter meters on with its clock invalid;
- the driver in the VM against the virtual chips: BCD, weekday, 12-hour mode, the century,
  the flag, seconds() under heap_lock().

Expected times are the board's start time plus virtual_time() (what a clock that kept time
reads), register values are written out from the datasheets, LCD values from the register
by the display rule (kWh with one decimal in six digits).
"""

from __future__ import annotations

import datetime as dt

import holdup
import pytest
from billing_rpc import EV, MeterRPC, secs

from host_tools.c1218 import TABLES as T
from host_tools.c1218 import Client, parse, read_events, set_time_params
from host_tools.readout import firmware_constants
from host_tools.sim import SimBoard
from host_tools.sim.board import DEFAULT_START

HOLD_UP_MS = holdup.hold_up_ms(60.0)  # the sag warning and its save at 60 Hz (holdup.py)

pytestmark = pytest.mark.sim_only

START = secs(DEFAULT_START)
ST = firmware_constants("status")  # the ST3 bit numbers, as the firmware declares them
CLOCK_ERROR, LOW_BATTERY = ST["CLOCK_ERROR"], ST["LOW_BATTERY"]
LOST_FLAG, LOST_EARLIER_OR_UNSET, LOST_NO_ANSWER = 1, (2, 4), 3  # timekeeping.LOST_*: the CLOCK_ERROR event's data
EV_LOW_BATTERY = 44  # C12.19 standard event "low battery detected"
TOU_WEEKDAY = 0x42  # config.TOU_SCHEDULE, season 0, weekday
WEEKDAY = bytes((0, 0, 0, 7, 0, 1, 17, 0, 2, 21, 0, 0))  # A, B from 07:00, C from 17:00, A from 21:00
ALARM, BATTERY = 0x0001, 0x4000  # lcd_glyphs.ANN_ALM, ANN_BAT
EPOCH = dt.datetime(2000, 1, 1)


def true_time(board: SimBoard) -> int:
    """What a clock that kept time reads now: the board's start time + virtual time."""
    return START + int(board.virtual_time())


def st52(c: Client) -> int:
    f = parse(T.ST52, c.read(52))
    when = dt.datetime(2000 + f["YEAR"], f["MONTH"], f["DAY"], f["HOUR"], f["MINUTE"], f["SECOND"])
    return int((when - EPOCH).total_seconds())


def st3(c: Client) -> int:
    return parse(T.ST3, c.read(3))["ED_STD_STATUS1"]


def optical(board: SimBoard, what):
    """One C12.18 session: what(client)."""
    with Client.open(board.optical_port) as c, c.session(password=""):
        return what(c)


def set_time(board: SimBoard, t: int) -> None:
    """Procedure 10 (`meterctl set-time`), date and time."""
    when = EPOCH + dt.timedelta(seconds=t)
    params = set_time_params((when.year - 2000, when.month, when.day, when.hour, when.minute, when.second))
    optical(board, lambda c: c.procedure(T.PROC_SET_TIME, params))


def events_since(board: SimBoard, seq: int) -> list[tuple[int, bytes]]:
    """(code, data) of the events logged after sequence number seq, oldest first."""
    entries = optical(board, read_events)
    return [(e["EVENT_CODE"], bytes(e["EVENT_ARGUMENT"])) for e in entries if e["EVENT_SEQ_NBR"] > seq]


def last_seq(board: SimBoard) -> int:
    return max(e["EVENT_SEQ_NBR"] for e in optical(board, read_events))


def scroll(board: SimBoard, seconds: int) -> list[tuple[str, int]]:
    """(text, annunciators) each second of virtual time."""
    out = []
    for _ in range(seconds):
        board.run(1.0)
        text, _, ann = board.hw.lcd.display()
        out.append((text, ann))
    return out


# --- a backup cell: the time survives -------------------------------------------------------


@pytest.mark.parametrize("chip", ["ds3231", "pcf8563"])
def test_a_2_s_and_a_30_h_outage_come_back_with_the_right_time(tmp_path, chip):
    with SimBoard(tmp_path, seed=21, ideal=True, boot=False, rtc=chip) as board:
        meter = MeterRPC(board)
        board.set_load(240.0, 10.0)
        board.power_on()
        board.run(600.0)
        assert abs(optical(board, st52) - true_time(board)) <= 1
        assert not optical(board, st3) & CLOCK_ERROR

        # 2 s: the time goes on, the outage is known (2 s and the whole-second rounding of
        # the power-down stamp and the boot's reading), demand runs on
        board.power_off(sag_ms=HOLD_UP_MS)
        board.run(2.0)
        board.power_on()
        clock, bits = optical(board, lambda c: (st52(c), st3(c)))
        assert abs(clock - true_time(board)) <= 1 and not bits & CLOCK_ERROR
        outage, suspended = meter.get("m.billing.outage_s", "m.demand.suspended")
        assert 2 <= outage <= 3 and suspended is False

        # 30 h: the time is right, demand is suspended (> 24 h) until a time set
        seq = last_seq(board)
        board.power_off(sag_ms=HOLD_UP_MS)
        board.run(30 * 3600.0)
        board.power_on()
        clock, bits = optical(board, lambda c: (st52(c), st3(c)))
        assert abs(clock - true_time(board)) <= 1 and not bits & (CLOCK_ERROR | LOW_BATTERY)
        outage, suspended = meter.get("m.billing.outage_s", "m.demand.suspended")
        assert 30 * 3600 <= outage <= 30 * 3600 + 1 and suspended is True
        codes = [code for code, _ in events_since(board, seq)]
        assert codes == [EV["EV_POWER_DOWN"], EV["EV_DEMAND_SUSPENDED"], EV["EV_POWER_UP"]]
        board.run(20 * 60.0)
        assert meter.get("m.demand.suspended", "m.demand.present_w") == (True, 0), "still suspended"
        set_time(board, true_time(board))
        assert meter.get("m.demand.suspended") is False
        assert abs(optical(board, st52) - true_time(board)) <= 1


# --- no battery-backed time: metering and the scroll go on ----------------------------------


def test_without_battery_backed_time_the_lcd_scrolls_the_registers_and_st3_says_invalid(tmp_path):
    with SimBoard(tmp_path, seed=22, ideal=True, boot=False, rtc="volatile") as board:
        meter = MeterRPC(board)
        board.set_load(240.0, 20.0)
        board.power_on()
        set_time(board, true_time(board))  # a plain Pico's clock is right until the next cut
        assert not optical(board, st3) & CLOCK_ERROR
        board.run(1800.0)
        board.power_off(sag_ms=HOLD_UP_MS)
        board.run(2.0)
        board.power_on()
        board.set_load(240.0, 0.0)  # the registers stand still while the LCD is read
        board.run(2.0)
        bits = optical(board, st3)
        assert bits & CLOCK_ERROR and not bits & LOW_BATTERY, "the MCU's RTC has no flag: no battery to call low"
        delivered, received, valid = meter.get("m.energy.delivered_wh", "m.energy.received_wh", "m.billing.clock.valid")
        assert valid is False and delivered > 1000
        shown = scroll(board, 45)
        texts = {text for text, _ in shown}
        # kWh with one decimal on six digits: the register's Wh // 100
        assert f"DE{delivered // 100 % 10**6:06d}" in texts
        assert f"NG{received // 100 % 10**6:06d}" in texts
        assert f"NT{(delivered - received) // 100 % 10**6:06d}" in texts
        assert "Er   005" in texts, "the clock error is an item of its own"
        assert all(ann & ALARM for _, ann in shown), "the alarm sign stays lit while the list scrolls"
        order = [t[:2] for i, (t, _) in enumerate(shown) if i == 0 or shown[i - 1][0][:2] != t[:2]]
        cycle = ["DE", "NG", "NT", "Er"]  # the list, then the error's item
        steps = zip(order, order[1:], strict=False)
        assert set(order) == set(cycle) and all(cycle[(cycle.index(a) + 1) % 4] == b for a, b in steps)
        seq_codes = events_since(board, 0)
        assert (EV["EV_CLOCK_ERROR"], bytes((2, 0, 0, 0))) in seq_codes, "why: the RTC read earlier than the last time"


def test_date_and_time_items_show_dashes_while_the_clock_is_invalid(tmp_path):
    items = {0x20: bytes((6, 7)), 0x21: 1, 0x22: 1}  # DISPLAY_ITEMS: date, time; 1 s scroll
    with SimBoard(tmp_path, seed=23, ideal=True, boot=False, rtc="volatile") as board:
        MeterRPC(board, items)
        board.power_on()  # a first boot on a plain Pico: never set
        shown = {text for text, _ in scroll(board, 6)}
        assert {"DA------", "TI------", "Er   005"} <= shown
        set_time(board, secs("2026-03-02T08:00:00"))
        shown = {text[:2] for text, _ in scroll(board, 6)}
        assert shown == {"DA", "TI"}, "a valid clock: no error item"
        assert "DA030226" in {text for text, _ in scroll(board, 3)}


# --- the backup cell taken out during an outage ---------------------------------------------


@pytest.mark.parametrize(("chip", "flag_reg", "flag"), [("ds3231", 0x0F, 0x80), ("pcf8563", 0x02, 0x80)])
def test_a_missing_cell_makes_the_clock_invalid_and_low_battery_until_a_time_set(tmp_path, chip, flag_reg, flag):
    with SimBoard(tmp_path, seed=24, ideal=True, boot=False, rtc=chip) as board:
        meter = MeterRPC(board)
        board.set_load(240.0, 10.0)
        board.power_on()
        board.run(1200.0)
        seq = last_seq(board)
        down = true_time(board)
        board.power_off(sag_ms=HOLD_UP_MS)
        board.set_rtc_battery(False)  # the cell taken out of the unpowered board
        board.run(3600.0)
        board.power_on()
        assert board.hw.rtc_chip.registers(board.virtual_time())[flag_reg] & flag, "the chip flags its time lost"
        bits = optical(board, st3)
        assert bits & CLOCK_ERROR and bits & LOW_BATTERY
        # the meter counts on from the power-down, not from the chip's 2000-01-01
        assert down - 1 <= optical(board, st52) <= down + 5  # the power-down stamp is a whole second
        assert meter.get("m.demand.suspended") is True
        logged = events_since(board, seq)
        assert (EV["EV_CLOCK_ERROR"], bytes((LOST_FLAG, 0, 0, 0))) in logged
        assert EV_LOW_BATTERY in [code for code, _ in logged]
        assert (EV["EV_POWER_UP"], b"\xff\xff\xff\xff") in logged, "an outage of unknown length"
        shown = scroll(board, 60)
        texts = {text for text, _ in shown}
        assert {"Er   005", "Er   006"} <= texts and any(t.startswith("DE") for t in texts)
        assert all(ann & BATTERY for _, ann in shown), "the battery sign while LOW_BATTERY lasts"

        # a new cell and a time set: valid, the flag and LOW_BATTERY cleared, demand resumes
        board.set_rtc_battery(True)
        set_time(board, true_time(board))
        assert not board.hw.rtc_chip.registers(board.virtual_time())[flag_reg] & flag
        assert not optical(board, st3) & (CLOCK_ERROR | LOW_BATTERY)
        assert meter.get("m.demand.suspended", "m.billing.clock.valid") == (False, True)
        assert not {text for text, _ in scroll(board, 45)} & {"Er   005", "Er   006"}
        # and the chip keeps the time across the next outage
        board.power_off(sag_ms=HOLD_UP_MS)
        board.run(600.0)
        board.power_on()
        clock, bits = optical(board, lambda c: (st52(c), st3(c)))
        assert abs(clock - true_time(board)) <= 1 and not bits & (CLOCK_ERROR | LOW_BATTERY)


# --- time of use without a valid clock ------------------------------------------------------


def test_the_tou_tier_in_force_at_the_power_down_is_held_until_a_time_set(tmp_path):
    with SimBoard(tmp_path, seed=25, ideal=True, boot=False) as board:  # a DS3231
        meter = MeterRPC(board, {TOU_WEEKDAY: WEEKDAY})
        board.set_load(240.0, 10.0)  # 2.4 kW
        board.power_on()
        board.run(8 * 3600.0)  # Monday 08:00: tier B
        assert meter.get("m.tou.tier") == 1
        board.power_off(sag_ms=HOLD_UP_MS)
        board.set_rtc_battery(False)
        board.run(60.0)
        board.power_on()
        assert meter.get("m.billing.clock.valid", "m.tou.tier") == (False, 1)
        b_before, total_before = meter.get("m.tou.tier_wh(1)[0]", "m.energy.delivered_wh")
        board.run(10 * 3600.0)  # past 17:00 (C) and 21:00 (A) on any clock
        tier, b_after, total_after = meter.get("m.tou.tier", "m.tou.tier_wh(1)[0]", "m.energy.delivered_wh")
        assert tier == 1, "held on B"
        assert b_after - b_before == total_after - total_before, "all the energy went to the held tier"
        assert total_after - total_before >= 2400 * 10 - 10
        set_time(board, true_time(board))  # Monday 18:01 or so: tier C
        assert meter.get("m.tou.tier") == 2
        board.run(3 * 3600.0)  # and it switches again by the clock: 21:00 A
        assert meter.get("m.tou.tier") == 0


# --- an RTC chip that does not answer ------------------------------------------------------


def test_an_rtc_chip_that_does_not_answer_leaves_the_meter_metering_with_an_invalid_clock(tmp_path):
    with SimBoard(tmp_path, seed=26, ideal=True, boot=False) as board:
        meter = MeterRPC(board)
        board.set_load(240.0, 10.0)
        board.power_on()
        board.run(300.0)
        seq = last_seq(board)
        board.power_off(sag_ms=HOLD_UP_MS)
        with board.hw.cv:
            board.hw.rtc_present = False  # a broken wire to the DS3231
        board.run(60.0)
        board.power_on()
        wh0 = meter.get("m.energy.delivered_wh")
        board.run(600.0)  # boundaries come and go: each RTC read fails
        wh1, valid, down = meter.get("m.energy.delivered_wh", "m.billing.clock.valid", "m.billing.clock.rtc_down")
        assert valid is False and down is True
        assert wh1 - wh0 == pytest.approx(2400 * 600 / 3600, abs=2), "metering goes on"
        bits = optical(board, st3)
        assert bits & CLOCK_ERROR and not bits & LOW_BATTERY
        assert (EV["EV_CLOCK_ERROR"], bytes((LOST_NO_ANSWER, 0, 0, 0))) in events_since(board, seq)
        # the chip answers again: the meter's count goes on (no time change), still invalid
        with board.hw.cv:
            board.hw.rtc_present = True
        seq = last_seq(board)
        board.run(180.0)
        assert meter.get("m.billing.clock.valid", "m.billing.clock.rtc_down") == (False, False)
        assert EV["EV_TIME_NEW"] not in [code for code, _ in events_since(board, seq)]
        set_time(board, true_time(board))
        assert meter.get("m.billing.clock.valid") is True
        assert abs(board.rtc_seconds() - true_time(board)) <= 1, "the time set reached the chip"


# --- the driver in the VM against the virtual chips -----------------------------------------

LOCKED_READ = """
import micropython
r = m.board.rtc
s = lost = result = None  # the names exist before the lock: a new global would grow the dict
micropython.heap_lock()
try:
    s = r.seconds()
    lost = r.lost()
finally:
    micropython.heap_unlock()
result = (s, lost)
"""


@pytest.mark.parametrize(("chip", "first"), [("ds3231", 0x00), ("pcf8563", 0x02)])
def test_the_firmware_driver_reads_and_sets_the_virtual_chip(tmp_path, chip, first):
    with SimBoard(tmp_path, seed=27, ideal=True, boot=False, rtc=chip) as board:
        meter = MeterRPC(board)
        board.power_on()
        model = board.hw.rtc_chip
        # machine.RTC's order, weekday Monday 0: 2026-01-05 was a Monday
        got = meter.get("m.board.rtc.datetime()")  # read at a poll up to 3 s of virtual time ago
        when = dt.datetime(got[0], got[1], got[2], got[4], got[5], got[6])
        assert 0 <= board.rtc_seconds() - int((when - EPOCH).total_seconds()) <= 3
        assert got[3] == when.weekday() and got[7] == 0 and when.date() == dt.date(2026, 1, 5)
        s, lost = meter.call(LOCKED_READ)  # no allocation: the boundaries read it under heap_lock()
        assert 0 <= board.rtc_seconds() - s <= 3 and lost is False

        # a time set through the driver: BCD in the chip's registers, 24-hour mode, flag clear
        meter.call("m.board.rtc.datetime((2031, 2, 3, 6, 4, 5, 6, 0))")  # 2031-02-03 was a Monday
        r = model.registers(board.virtual_time())
        # read back under a second later: the DS3231 restarted its countdown at the write, so
        # no second has passed; the PCF8563's prescaler runs on, so one may have
        if chip == "ds3231":
            assert r[0:7] == bytes.fromhex("06 05 04 01 03 02 31")  # day 1 = Monday
        else:
            assert r[2] in (0x06, 0x07) and r[3:9] == bytes.fromhex("05 04 03 01 02 31")  # weekday 1: Sunday is 0
        assert dt.date(2031, 2, 3).weekday() == 0

        # the chip's own flag, as the driver sees it (a cut without the cell), cleared by a
        # time set, which also lets the oscillator run (DS3231 EOSC 0, PCF8563 STOP 0)
        assert meter.get("m.board.rtc.lost()") is False
        board.set_rtc_battery(False)
        board.power_off(sag_ms=HOLD_UP_MS)
        board.run(5.0)
        board.power_on()
        assert meter.get("m.board.rtc.lost()") is True
        with board.hw.cv:
            if chip == "ds3231":
                model.i2c_write(bytes((0x0E, 0x9C)), True, board.virtual_time())  # EOSC 1
            else:
                model.i2c_write(bytes((0x00, 0x20)), True, board.virtual_time())  # STOP 1
        meter.call("m.board.rtc.datetime((2031, 2, 3, 0, 4, 5, 6, 0))")
        assert meter.get("m.board.rtc.lost()") is False
        r = model.registers(board.virtual_time())
        if chip == "ds3231":
            assert (r[0x0E], r[0x0F]) == (0x1C, 0x08), "EOSC and OSF cleared, the rest kept"
        else:
            assert r[0x00] == 0x00 and not r[0x02] & 0x80, "STOP and VL cleared: the clock runs"

        # what another tool may leave in the chip: 12-hour mode (DS3231), the century bit
        with board.hw.cv:
            if chip == "ds3231":
                model.i2c_write(bytes((0x00, 0x30, 0x15, 0x72, 0x05, 0x31, 0x12, 0x99)), True, board.virtual_time())
                want = (2099, 12, 31, 3, 12, 15, 30, 0)  # 12:15:30 PM, a Thursday
            else:
                model.i2c_write(bytes((0x02, 0x30, 0x15, 0x12, 0x01, 0x05, 0x81, 0x00)), True, board.virtual_time())
                want = (2100, 1, 1, 4, 12, 15, 30, 0)  # the century bit: 2100, a Friday
        got = meter.get("m.board.rtc.datetime()")
        assert got[:4] == want[:4] and got[4:6] == want[4:6] and 30 <= got[6] <= 33
        assert dt.date(want[0], want[1], want[2]).weekday() == want[3]
