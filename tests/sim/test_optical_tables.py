"""The C12.19 tables and procedures on the simulated board: every table the firmware
declares (tables.py) read against the standard's layouts and against the meter's real
state (registers, clock, status, LCD, configuration), and the procedures' effects."""

from __future__ import annotations

import re

import pytest

from host_tools.c1218 import TABLES, Client, ServiceError, parse, parse_st23, set_time_params
from host_tools.repo import FIRMWARE_DIR, firmware_module

T = TABLES
config = firmware_module("config")
G = firmware_module("lcd_glyphs")
UNPROGRAMMED = 1 << 0  # ED_STD_STATUS1 bit 0 in C12.19 (status.UNPROGRAMMED)


def read_everything(c: Client) -> dict[int, bytes]:
    """Every readable table, whole; one larger than a negotiated message (the load profile:
    20,608 bytes) answers ONP to a full read and is read in parts, as clients do."""
    out = {}
    for n, _ in T.TABLES:
        if T.read_level(T.find(n)) == T.NEVER:
            continue
        try:
            out[n] = c.read(n)
        except ServiceError as exc:
            assert exc.name == "onp" and n == 64, exc
            size = parse(T.ST61, c.read(61))["LP_MEMORY_LEN"]
            assert size > c.nbr_packets * (c.packet_size - 8)
            out[n] = c.read_all(n, size)
    return out


def bitmap(data: bytes) -> set[int]:
    return {8 * i + b for i, byte in enumerate(data) for b in range(8) if byte >> b & 1}


def test_st0_declares_what_the_meter_has_and_every_table_reads_back(sim):
    with Client.open(sim.optical_port) as c, c.session(password="", packet_size=256, nbr_packets=64):
        tables = read_everything(c)
    st0 = tables[0]
    head = parse(T.ST0, st0)
    assert head["FORMAT_CONTROL_1"] == 0x02, "little-endian, ISO 646"
    assert head["FORMAT_CONTROL_2"] & 7 == 2, "TM_FORMAT 2: UINT8 date and time"
    assert head["FORMAT_CONTROL_3"] == 0x8A, "NI_FORMAT1 INT48, NI_FORMAT2 INT32"
    assert head["NAMEPLATE_TYPE"] == 2 and head["DIM_MFG_STATUS_USED"] == 1
    off = 19
    maps = []
    for dim in ("DIM_STD_TBLS_USED", "DIM_MFG_TBLS_USED", "DIM_STD_PROC_USED", "DIM_MFG_PROC_USED"):
        maps.append(bitmap(st0[off : off + head[dim]]))
        off += head[dim]
    for dim in ("DIM_STD_TBLS_USED", "DIM_MFG_TBLS_USED"):
        maps.append(bitmap(st0[off : off + head[dim]]))
        off += head[dim]
    assert off == len(st0)
    std, mfg, sproc, mproc, swrite, mwrite = maps
    declared = [n for n, _ in T.TABLES]
    assert std == {n for n in declared if n < T.MFG} >= {0, 1, 3, 5, 7, 8, 21, 22, 23, 25, 26, 52, 55, 61, 64, 71, 76}
    assert mfg == {n - T.MFG for n in declared if n >= T.MFG}
    assert sproc == {p[0] for p in T.PROCEDURES if p[0] < T.MFG} >= {3, 7, 8, 9, 10}
    assert mproc == {p[0] - T.MFG for p in T.PROCEDURES if p[0] >= T.MFG}
    assert swrite == {5, 7} and mwrite == {1, 2}
    # sizes: the flat layouts, and the tables other tables dimension
    for number, layout in ((1, T.ST1), (3, T.ST3), (5, T.ST5), (21, T.ST21), (51, T.ST51), (52, T.ST52)):
        assert len(tables[number]) == T_size(layout), f"table {number}"
    for number, layout in ((53, T.ST53), (55, T.ST55), (61, T.ST61), (63, T.ST63), (71, T.ST71)):
        assert len(tables[number]) == T_size(layout), f"table {number}"
    assert len(tables[T.MFG]) == T_size(T.MT0) and len(tables[T.MFG + 3]) == T_size(T.MT3)
    st21 = parse(T.ST21, tables[21])
    assert len(tables[22]) == st21["NBR_SUMMATIONS"] + st21["NBR_DEMANDS"] + (st21["NBR_DEMANDS"] + 7) // 8
    parse_st23(st21, tables[23])  # raises unless ST23 is exactly as ST21 dimensions it
    # REG_FUNC1 (C12.19): season (bit 0), date/time (1), demand-reset counter (2), cumulative (4) and
    # continuously cumulative demand (5); so ST23 is NBR_DEMAND_RESETS, then 5 blocks (total,
    # tiers A-D) of 3 INT48 summations + STIME_DATE 5 + CUM and CONT_CUM INT48 + DEMAND INT32
    assert st21["REG_FUNC1"] == 0x37 and st21["NBR_TIERS"] == 4
    assert len(tables[23]) == 1 + 5 * (3 * 6 + 5 + 6 + 6 + 4) == 196
    # ST25 and each ST26 entry: END_DATE_TIME (STIME_DATE, 5) and SEASON (1) as REG_FUNC1
    # bits 1 and 0 say, then ST23's register data; ST26's list status is 6 bytes (LIST_STATUS,
    # NBR_VALID_ENTRIES, LAST_ENTRY_ELEMENT, LAST_ENTRY_SEQ_NUMBER (2), NBR_UNREAD_ENTRIES)
    assert st21["REG_FUNC1"] & 3 == 3 and st21["NBR_SELF_READS"] >= 1
    assert len(tables[25]) == 5 + 1 + len(tables[23])
    assert len(tables[26]) == 6 + st21["NBR_SELF_READS"] * (5 + 1 + len(tables[23]))
    assert not any(tables[25]) and tables[26][1] == 0, "a fresh meter: no demand reset, no self-read"
    st51 = parse(T.ST51, tables[51])
    assert len(tables[54]) == st51["CALENDAR_TBL_SIZE"]
    st61 = parse(T.ST61, tables[61])
    assert len(tables[64]) == st61["LP_MEMORY_LEN"] > 0
    chans, ints = st61["NBR_CHNS_SET1"], st61["NBR_BLK_INTS_SET1"]
    block = 5 + 6 * chans + ints * (chans // 2 + 1 + 2 * chans)  # BLK_END_READ, EXTENDED_INT_STATUS, UINT16
    assert st61["LP_MEMORY_LEN"] == st61["NBR_BLKS_SET1"] * block
    assert st61["MAX_INT_TIME_SET1"] in (5, 10, 15, 30, 60)
    assert len(tables[62]) == 3 * chans + 1
    st71 = parse(T.ST71, tables[71])
    assert len(tables[72]) == st71["NBR_STD_EVENTS"] + st71["NBR_MFG_EVENTS"]
    ctrl = (
        st71["NBR_STD_EVENTS"]
        + st71["NBR_MFG_EVENTS"]
        + sum(head[d] for d in ("DIM_STD_TBLS_USED", "DIM_MFG_TBLS_USED", "DIM_STD_PROC_USED", "DIM_MFG_PROC_USED"))
    )
    assert len(tables[73]) == len(tables[75]) == ctrl
    entry = T_size(T.EVENT_ENTRY)
    assert entry == 6 + 6 + st71["EVENT_DATA_LENGTH"]
    assert len(tables[74]) == T_size(T.LOG_HEADER) + 0 * st71["NBR_HISTORY_ENTRIES"]
    assert len(tables[76]) == T_size(T.LOG_HEADER) + entry * st71["NBR_EVENT_ENTRIES"]
    assert parse(T.ST63, tables[63])["NBR_VALID_BLOCKS"] <= st61["NBR_BLKS_SET1"]
    assert parse(T.LOG_HEADER, tables[76])["NBR_VALID_ENTRIES"] <= st71["NBR_EVENT_ENTRIES"]


def T_size(layout: bytes) -> int:
    from host_tools.c1218 import layout_size

    return layout_size(layout)


def test_st1_names_the_meter_and_its_firmware_version(sim):
    source = (FIRMWARE_DIR / "meter.py").read_text()
    version = int(re.search(r"VERSION_NUMBER = const\((\d+)\)", source).group(1))
    revision = int(re.search(r"REVISION_NUMBER = const\((\d+)\)", source).group(1))
    with Client.open(sim.optical_port) as c, c.session(password=""):
        c.write(T.MFG + 1, bytes([config.SERIAL_NUMBER, 10]) + b"OM00001234")
        st1 = parse(T.ST1, c.read(1))
    assert st1["MANUFACTURER"] == b"OMTR" and st1["ED_MODEL"] == b"OPENMTR1"
    assert (st1["FW_VERSION_NUMBER"], st1["FW_REVISION_NUMBER"]) == (version, revision)
    assert st1["MFG_SERIAL_NUMBER"] == b"OM00001234      "


def test_st3_reports_the_firmwares_status_bits(sim):
    with Client.open(sim.optical_port) as c, c.session(password=""):
        fresh = parse(T.ST3, c.read(3))
        c.write(T.MFG + 1, bytes([config.SCROLL_S, 0x81, 12]))  # the configuration gets stored
        programmed = parse(T.ST3, c.read(3))
    assert fresh["ED_MODE"] & 1, "metering"
    assert fresh["ED_STD_STATUS1"] & UNPROGRAMMED, "a blank EEPROM: unprogrammed"
    assert not programmed["ED_STD_STATUS1"] & UNPROGRAMMED


def test_st23_and_mt5_follow_the_registers(sim):
    sim.set_load(240.0, 20.0)
    sim.run(1800)  # 2.4 kWh in
    sim.set_load(240.0, -10.0)
    sim.run(1800)  # 1.2 kWh out
    truth = sim.true_energy_wh()
    with Client.open(sim.optical_port) as c, c.session(password="", packet_size=128, nbr_packets=4):
        st21 = parse(T.ST21, c.read(21))
        st23 = parse_st23(st21, c.read(23))
        mt5 = c.read(T.MFG + 5)
    fields = [int.from_bytes(mt5[i : i + 8], "little", signed=True) for i in range(0, len(mt5), 8)]
    delivered_wh, _, received_wh, _ = fields[:4]
    assert st23["total"]["summations"] == [delivered_wh, received_wh, delivered_wh - received_wh]
    assert delivered_wh == pytest.approx(truth["delivered"], rel=0.025)
    assert received_wh == pytest.approx(truth["received"], rel=0.025)
    assert st23["resets"] == 0 and len(st23["tiers"]) == st21["NBR_TIERS"]
    # the tiers add up to the total (time of use, or zeros without it)
    tiers = [t["summations"] for t in st23["tiers"]]
    assert sum(t[0] for t in tiers) in (0, delivered_wh) and sum(t[1] for t in tiers) in (0, received_wh)
    when, watts = st23["total"]["demands"][0]
    assert 0 <= watts <= 240 * 20 * 1.03, "the maximum demand, if there is a demand register"
    assert (watts == 0) == (when == b"\x00" * 5)


def test_the_clock_tables_and_the_set_time_procedure(sim):
    hw = sim.hw
    with Client.open(sim.optical_port) as c, c.session(password=""):
        clock = parse(T.ST52, c.read(52))
        days = T.days_from_2000(2000 + clock["YEAR"], clock["MONTH"], clock["DAY"])
        secs = days * 86400 + clock["HOUR"] * 3600 + clock["MINUTE"] * 60 + clock["SECOND"]
        assert abs(secs - hw.rtc_seconds()) <= 1, "the meter's clock is the board's RTC"
        assert clock["TIME_DATE_QUAL"] & 7 == (days + 6) % 7  # 2026-01-05 is a Monday: 1
        assert clock["TIME_DATE_QUAL"] & 7 == 1
        assert c.procedure(T.PROC_SET_TIME, set_time_params((28, 2, 29, 23, 59, 58)))[0] == 0
        assert parse(T.ST52, c.read(52)) == {
            "YEAR": 28, "MONTH": 2, "DAY": 29, "HOUR": 23, "MINUTE": 59, "SECOND": 58, "TIME_DATE_QUAL": 2,
        }  # fmt: skip
        sim.run(3)
        st55 = parse(T.ST55, c.read(55))
        assert (st55["MONTH"], st55["DAY"], st55["HOUR"], st55["MINUTE"]) == (3, 1, 0, 0)
        c.procedure(T.PROC_SET_TIME, set_time_params((0, 0, 0, 6, 30, 0), mask=1))  # the time only
        st52 = parse(T.ST52, c.read(52))
        assert (st52["MONTH"], st52["DAY"], st52["HOUR"], st52["MINUTE"]) == (3, 1, 6, 30)
        for bad in ((27, 2, 29, 0, 0, 0), (26, 13, 1, 0, 0, 0), (26, 1, 1, 24, 0, 0), (26, 4, 31, 0, 0, 0)):
            result, _ = c.procedure(T.PROC_SET_TIME, set_time_params(bad), check=False)
            assert result == T.PROC_INVALID, bad
        assert parse(T.ST52, c.read(52))["HOUR"] == 6


def test_configuration_writes_are_checked_applied_and_kept(sim):
    with Client.open(sim.optical_port) as c:
        c.identify()
        c.logon()
        c.security("")  # blank: master on a factory meter; set a programmer password to test levels
        c.write(T.MFG + 2, b"\x00" * 20 + b"prog".ljust(20, b"\x00") + b"boss".ljust(20, b"\x00"))
        c.logoff()
        c.logon()
        c.security("prog")
        c.write(T.MFG + 1, bytes([config.SCROLL_S, 0x81, 15, config.DEMAND_INTERVAL_MIN, 0x81, 30]))
        cases = {
            "scroll time 0": bytes([config.SCROLL_S, 0x81, 0]),
            "below the least scroll time": bytes([config.SCROLL_S, 0x81, 5]),
            "a demand interval that does not divide the hour": bytes([config.DEMAND_INTERVAL_MIN, 0x81, 7]),
            "an unknown id": bytes([0x7E, 0x81, 1]),
            "bytes for an integer": bytes([config.SCROLL_S, 1, 15]),
            "a truncated setting": bytes([config.SCROLL_S, 0x82, 15]),
        }
        for what, data in cases.items():
            with pytest.raises(ServiceError) as info:
                c.write(T.MFG + 1, data)
            assert info.value.name in ("iar", "err"), what
        with pytest.raises(ServiceError) as info:
            c.write(T.MFG + 1, bytes([config.KH_MWH, 0x82]) + (500).to_bytes(2, "little"))
        assert info.value.name == "isc", "calibration needs the master"
        with pytest.raises(ServiceError) as info:
            c.write(T.MFG + 1, bytes([config.SCROLL_S, 0x81, 20, 0x7E, 0x81, 1]))
        assert info.value.name == "iar", "all or nothing"
        c.logoff()
        c.logon()
        c.security("boss")
        gain = 0x3A0000
        c.write(T.MFG + 1, bytes([config.AWGAIN, 0x84]) + gain.to_bytes(4, "little"))
        sim.run(1.0)  # the chip is brought up again with it: that takes the firmware a while
        c.terminate()
    assert sim.hw.ade.peek(0x282) == gain, "the new gain went to the ADE7953 (AWGAIN)"
    sim.power_off()
    sim.power_on()
    with Client.open(sim.optical_port) as c, c.session(password="boss"):
        settings = dict(config.Config.decode(c.read(T.MFG + 1)).items())
    assert settings[config.SCROLL_S] == 15 and settings[config.DEMAND_INTERVAL_MIN] == 30
    assert settings[config.AWGAIN] == gain, "kept in EEPROM over a power cut"
    assert sim.hw.ade.peek(0x282) == gain


def test_st5_identification_is_written_whole_or_in_part_and_kept(sim):
    with Client.open(sim.optical_port) as c, c.session(password=""):
        c.write(5, b"METER 000".ljust(20))
        c.write(5, b"42", offset=6)
        with pytest.raises(ServiceError) as info:
            c.write(5, b"short")  # a full write is the whole table
        assert info.value.name == "iar"
        with pytest.raises(ServiceError):
            c.write(5, b"xx", offset=19)  # past the end
    sim.power_off()
    sim.power_on()
    with Client.open(sim.optical_port) as c, c.session():
        assert c.read(5) == b"METER 420".ljust(20)


def test_clear_data_zeroes_the_registers_for_the_master_only(sim):
    sim.set_load(240.0, 10.0)
    sim.run(600)
    with Client.open(sim.optical_port) as c, c.session(password=""):
        c.write(T.MFG + 2, b"r".ljust(20, b"\x00") + b"p".ljust(20, b"\x00") + b"m".ljust(20, b"\x00"))
    with Client.open(sim.optical_port) as c, c.session(password="p"):
        with pytest.raises(ServiceError) as info:
            c.procedure(T.PROC_CLEAR_DATA)
        assert info.value.name == "isc"
        assert int.from_bytes(c.read(T.MFG + 5)[0:8], "little") > 300
    with Client.open(sim.optical_port) as c, c.session(password="m"):
        assert c.procedure(T.PROC_CLEAR_DATA) == (0, b"")
        assert c.read(T.MFG + 5) == bytes(len(c.read(T.MFG + 5)))
        assert c.procedure(T.PROC_CLEAR_STD_STATUS) == (0, b"")
        assert c.procedure(T.PROC_CLEAR_MFG_STATUS) == (0, b"")
        assert c.procedure(0x123, check=False)[0] == T.PROC_UNKNOWN
    sim.power_off()
    sim.power_on()
    with Client.open(sim.optical_port) as c, c.session(password="m"):
        assert int.from_bytes(c.read(T.MFG + 5)[0:8], "little") < 5, "the cleared registers were saved"


def test_remote_reset_resets_demand_once_per_lockout(sim):
    sim.set_load(240.0, 10.0)
    sim.run(1800)
    with Client.open(sim.optical_port) as c, c.session(password="", packet_size=128, nbr_packets=4):
        st21 = parse(T.ST21, c.read(21))
        before = parse_st23(st21, c.read(23))
        assert c.procedure(T.PROC_REMOTE_RESET, b"\x04", check=False)[0] == T.PROC_CONFLICT, "no season change"
        # ACTION_FLAG bit 1: a self read (issue 16), ST26's first entry, numbered 1
        assert c.procedure(T.PROC_REMOTE_RESET, b"\x02", check=False)[0] == 0
        st23 = c.read(23)
        st26 = c.read(26, 0, 12 + len(st23))  # the list status and the first entry
        assert st26[1] == 1 and st26[3:5] == b"\x01\x00"
        assert st26[12:] == st23, "the registers now, as ST23 has them"
        first = c.procedure(T.PROC_REMOTE_RESET, b"\x01", check=False)[0]
        if first == T.PROC_CONFLICT:
            pytest.skip("this firmware has no demand register")
        assert first == 0
        after = parse_st23(st21, c.read(23))
        assert after["resets"] == before["resets"] + 1
        assert after["total"]["demands"][0][1] == 0, "the maximum demand starts again"
        again = c.procedure(T.PROC_REMOTE_RESET, b"\x01", check=False)[0]
        assert again == T.PROC_TIMING, "inside the demand-reset lock-out"
    sim.run(61)
    with Client.open(sim.optical_port) as c, c.session(password=""):
        assert c.procedure(T.PROC_REMOTE_RESET, b"\x01")[0] == 0


def test_the_lcd_and_instantaneous_tables(sim):
    sim.set_load(240.0, 10.0, hz=50.0)
    sim.run(30)
    with Client.open(sim.optical_port) as c, c.session(password=""):
        ram = c.read(T.MFG + 4)
        inst = parse(T.MT3, c.read(T.MFG + 3))
    assert len(ram) == G.RAM_SIZE
    assert G.decode(ram) == sim.hw.lcd.display(), "the LCD table is what the glass shows"
    assert inst["HZ_CENTI"] == pytest.approx(5000, abs=5)
