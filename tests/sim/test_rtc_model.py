"""The simulated board's RTC chips (host_tools/sim/rtc.py) against their datasheets: BCD time
registers, the 1 Hz count and its carries (midnight, month ends, leap years, the century
bit), 12-hour mode, the countdown chain restarted by a write, the lost-time flags (DS3231
OSF, PCF8563 VL), the power-on values, the backup cell across an outage, the register
pointer's wrap. Expected register values are written out by hand from the datasheets'
register maps; times come from Python's calendar.
"""

from __future__ import annotations

import datetime as dt

import pytest

from host_tools.sim.rtc import DS3231, PCF8563

EPOCH = dt.datetime(2000, 1, 1)


def secs(when: str) -> int:
    return int((dt.datetime.fromisoformat(when) - EPOCH).total_seconds())


def regs(chip, first: int, n: int, now: float) -> bytes:
    assert chip.i2c_write(bytes([first]), stop=False, now=now)
    data = chip.i2c_read(n, now)
    assert data is not None
    return data


def write(chip, first: int, data: bytes, now: float) -> None:
    assert chip.i2c_write(bytes([first]) + data, stop=True, now=now)


def powered(model, when: str, battery: bool = True):
    chip = model(start_s=secs(when), battery=battery)
    chip.supply(True, 0.0)
    return chip


# --- DS3231 -------------------------------------------------------------------------------


def test_ds3231_holds_the_time_in_bcd_and_counts_seconds():
    chip = powered(DS3231, "2026-01-05T13:45:30")  # a Monday: day 1 (1 = Monday, firmware/rtc.py)
    assert regs(chip, 0x00, 7, 0.0) == bytes.fromhex("30 45 13 01 05 01 26")
    assert regs(chip, 0x00, 2, 29.999) == bytes.fromhex("59 45")
    assert regs(chip, 0x00, 2, 30.0) == bytes.fromhex("00 46")
    # 10 h 14 min 30 s later: midnight, the date and the day of week step on
    assert regs(chip, 0x00, 7, 36870.0) == bytes.fromhex("00 00 00 02 06 01 26")
    assert chip.seconds(36870.0) == secs("2026-01-06T00:00:00")


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("2026-01-31T23:59:59", "00 00 00 01 02 26"),  # January's end
        ("2027-02-28T23:59:59", "00 00 00 01 03 27"),  # not a leap year
        ("2028-02-28T23:59:59", "00 00 00 29 02 28"),  # a leap year
        ("2099-12-31T23:59:59", "00 00 00 01 81 00"),  # the year passes 99 -> 00: century bit
    ],
)
def test_ds3231_carries_month_ends_leap_years_and_the_century(before, after):
    chip = powered(DS3231, before)
    got = regs(chip, 0x00, 7, 1.0)
    assert got[:3] + got[4:] == bytes.fromhex(after)


def test_ds3231_day_of_week_wraps_from_7_to_1_at_midnight():
    chip = powered(DS3231, "2026-01-11T23:59:59")  # a Sunday: 7
    assert regs(chip, 0x03, 1, 0.0) == b"\x07"
    assert regs(chip, 0x03, 1, 1.0) == b"\x01"


def test_ds3231_twelve_hour_mode_counts_through_midnight():
    chip = powered(DS3231, "2026-01-05T23:59:59")
    write(chip, 0x02, b"\x71", 0.0)  # 12-hour mode (bit 6), PM (bit 5), 11: 11 PM
    assert regs(chip, 0x00, 5, 1.0) == bytes.fromhex("00 00 52 02 06")  # 12 AM (bit 6, 12), Tuesday the 6th
    write(chip, 0x02, b"\x51", 2.0)  # 11 AM: 11:00:01 (the second counted at 1.0 s)
    assert regs(chip, 0x00, 3, 3600.0) == bytes.fromhex("59 59 51")
    assert regs(chip, 0x00, 3, 3601.0) == bytes.fromhex("00 00 72")  # 12 PM


def test_ds3231_writing_the_seconds_restarts_the_countdown_chain():
    chip = powered(DS3231, "2026-01-05T00:00:00")
    write(chip, 0x00, b"\x10", 0.7)  # 10 s, written 0.7 s into a second
    assert regs(chip, 0x00, 1, 1.699) == b"\x10"
    assert regs(chip, 0x00, 1, 1.7) == b"\x11"  # a whole second after the write


def test_ds3231_power_on_values_when_neither_supply_nor_cell_held_it():
    chip = powered(DS3231, "2026-01-05T12:00:00")
    chip.supply(False, 10.0)
    chip.set_battery(False, 20.0)  # the cell taken out of an unpowered board
    chip.supply(True, 30.0)
    r = regs(chip, 0x00, 0x13, 30.0)
    assert r[:7] == bytes.fromhex("00 00 00 01 01 01 00")  # 01/01/00, day 1, 00:00:00
    assert r[0x0E] == 0x1C  # control: EOSC 0, RS2 RS1 1, INTCN 1
    assert r[0x0F] == 0x88  # status: OSF and EN32kHz
    assert chip.seconds(30.0) == 0


def test_ds3231_osf_stays_until_written_zero():
    chip = powered(DS3231, "2026-01-05T12:00:00", battery=False)
    chip.supply(False, 1.0)
    chip.supply(True, 2.0)
    assert regs(chip, 0x0F, 1, 2.0) == b"\x88"
    write(chip, 0x0F, b"\xff", 2.0)  # writing 1 neither sets nor clears it
    assert regs(chip, 0x0F, 1, 2.0) == b"\x88"
    write(chip, 0x0F, b"\x08", 2.0)  # 0 clears it, EN32kHz kept
    assert regs(chip, 0x0F, 1, 2.0) == b"\x08"
    write(chip, 0x0F, b"\x80", 2.0)  # a 1 cannot set it again; EN32kHz written 0
    assert regs(chip, 0x0F, 1, 2.0) == b"\x00"


def test_ds3231_keeps_time_on_its_cell_and_stops_on_it_with_eosc():
    start = secs("2026-01-05T12:00:00")
    chip = powered(DS3231, "2026-01-05T12:00:00")
    chip.supply(False, 10.0)
    chip.supply(True, 10.0 + 30 * 3600)  # a 30 h outage on the cell
    assert chip.seconds(10.0 + 30 * 3600) == start + 10 + 30 * 3600
    assert regs(chip, 0x0F, 1, 10.0 + 30 * 3600)[0] & 0x80 == 0, "no OSF: it never stopped"
    # EOSC = 1: the oscillator stops when the chip goes to its cell; the registers stay
    write(chip, 0x0E, b"\x9c", 200000.0)
    chip.supply(False, 200000.0)
    chip.supply(True, 203600.0)
    assert chip.seconds(203600.0) == start + 200000
    assert regs(chip, 0x0F, 1, 203600.0)[0] & 0x80, "OSF: the oscillator stopped"
    assert chip.seconds(203601.0) == start + 200001, "with VCC it runs whatever EOSC says"


def test_ds3231_pointer_wraps_after_0x12_and_the_temperature_is_read_only():
    chip = powered(DS3231, "2026-01-05T12:00:07")
    write(chip, 0x11, b"\x55\x40", 0.0)
    assert regs(chip, 0x11, 3, 0.0) == bytes.fromhex("19 00 07")  # 25.00 C, then seconds at 0x00


def test_ds3231_illogical_time_does_not_count():
    chip = powered(DS3231, "2026-01-05T12:00:00")
    write(chip, 0x05, b"\x13", 0.0)  # month 13
    assert regs(chip, 0x00, 1, 5.0) == b"\x00"
    assert chip.seconds(5.0) is None


def test_no_answer_without_supply():
    chip = DS3231(start_s=0)
    assert chip.i2c_write(b"\x00", stop=False, now=0.0) is False
    assert chip.i2c_read(1, now=0.0) is None


# --- PCF8563 ------------------------------------------------------------------------------


def test_pcf8563_holds_the_time_in_bcd_with_sunday_0():
    chip = powered(PCF8563, "2026-01-04T09:05:07")  # a Sunday
    assert regs(chip, 0x02, 7, 0.0) == bytes.fromhex("07 05 09 04 00 01 26")
    assert regs(chip, 0x02, 7, 14 * 3600 + 54 * 60 + 53.0) == bytes.fromhex("00 00 00 05 01 01 26")  # Monday 1


@pytest.mark.parametrize(
    ("before", "after"),
    [
        ("2028-02-28T23:59:59", "00 00 00 29 02 28"),
        ("2027-12-31T23:59:59", "00 00 00 01 01 28"),
        ("2099-12-31T23:59:59", "00 00 00 01 81 00"),  # C toggled as the year passes 99 -> 00
    ],
)
def test_pcf8563_carries_leap_years_and_the_century(before, after):
    chip = powered(PCF8563, before)
    got = regs(chip, 0x02, 7, 1.0)
    assert got[:4] + got[5:] == bytes.fromhex(after)


def test_pcf8563_weekday_wraps_from_6_to_0():
    chip = powered(PCF8563, "2026-01-10T23:59:59")  # a Saturday: 6
    assert regs(chip, 0x06, 1, 0.0) == b"\x06"
    assert regs(chip, 0x06, 1, 1.0) == b"\x00"


def test_pcf8563_reset_values_and_vl_after_losing_all_power():
    chip = powered(PCF8563, "2026-01-05T12:00:00", battery=False)
    chip.supply(False, 1.0)
    chip.supply(True, 2.0)
    r = regs(chip, 0x00, 0x10, 2.0)
    assert r[0x00] == 0x08  # control_status_1: TESTC 1, STOP 0
    assert r[0x01] == 0x00
    assert r[0x02] & 0x80, "VL: the clock's integrity is not guaranteed"
    assert all(r[a] & 0x80 for a in (0x09, 0x0A, 0x0B, 0x0C)), "alarms disabled (AE 1)"
    assert r[0x0D] & 0x83 == 0x80  # CLKOUT on at 32.768 kHz
    assert r[0x0E] & 0x83 == 0x03  # timer off, 1/60 Hz
    write(chip, 0x02, b"\x00", 2.0)  # only the interface clears VL
    assert regs(chip, 0x02, 1, 2.0) == b"\x00"


def test_pcf8563_keeps_time_on_its_cell():
    start = secs("2026-01-05T12:00:00")
    chip = powered(PCF8563, "2026-01-05T12:00:00")
    chip.supply(False, 2.0)
    chip.supply(True, 2.0 + 30 * 3600)
    assert chip.seconds(2.0 + 30 * 3600) == start + 2 + 30 * 3600
    assert regs(chip, 0x02, 1, 2.0 + 30 * 3600)[0] & 0x80 == 0


def test_pcf8563_stop_freezes_the_clock_and_the_first_second_after_comes_in_0_507813_s():
    chip = powered(PCF8563, "2026-01-05T12:00:00")
    write(chip, 0x00, b"\x20", 0.3)  # STOP
    assert regs(chip, 0x02, 1, 10.0) == b"\x00"
    write(chip, 0x00, b"\x00", 10.0)
    assert regs(chip, 0x02, 1, 10.5078) == b"\x00"
    assert regs(chip, 0x02, 1, 10.50782) == b"\x01"


def test_pcf8563_unimplemented_bits_read_0_and_the_pointer_wraps_after_0x0f():
    chip = powered(PCF8563, "2026-01-05T12:00:00")
    write(chip, 0x0A, b"\xff", 0.0)  # hour alarm: AE and 6 bits
    assert regs(chip, 0x0A, 1, 0.0) == b"\xbf"
    write(chip, 0x0F, b"\x2a", 0.0)
    assert regs(chip, 0x0F, 2, 0.0) == bytes((0x2A, 0x00))  # timer, then control_status_1


# --- kept across the simulator's runs (board.json) ------------------------------------------


@pytest.mark.parametrize("model", [DS3231, PCF8563])
def test_state_round_trip_with_and_without_the_cell(model):
    chip = powered(model, "2026-01-05T12:00:00")
    chip.supply(False, 100.0)
    kept = model.from_state(chip.state(100.0))
    kept.supply(True, 0.0)  # the next run's virtual time starts again at 0
    assert kept.seconds(0.0) == secs("2026-01-05T12:01:40")
    chip.set_battery(False, 100.0)
    lost = model.from_state(chip.state(100.0))
    lost.supply(True, 0.0)
    assert lost.seconds(0.0) == 0, "no cell: the power-on time"
