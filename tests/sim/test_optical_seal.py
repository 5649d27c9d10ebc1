"""The seal, on the simulated board: the seal plug, the software seal (every writable
table and every procedure tried, from the firmware's own declarations), the seal record,
the firmware fingerprint checked at boot, and unsealing."""

from __future__ import annotations

import hashlib
import re
import zlib
from pathlib import Path

import pytest

from host_tools.c1218 import TABLES, Client, ServiceError, pad_password, parse, read_events, set_time_params
from host_tools.repo import FIRMWARE_DIR, firmware_module

T = TABLES
config = firmware_module("config")
TAMPER_DETECT = 1 << 12  # ED_STD_STATUS1 bit 12 in C12.19 (status.TAMPER_DETECT)
MASTER_PW, PROGRAMMER_PW = "master-333", "prog-22"
EVENTS = {
    k: int(v, 0)
    for k, v in re.findall(r"^(EV_\w+) = const\((0x[0-9A-Fa-f]+|\d+)\)", (FIRMWARE_DIR / "events.py").read_text(), re.M)
}
DEMAND_RESET = b"\x01"
SET_TIME = set_time_params((26, 1, 5, 12, 30, 0))


def program_passwords(board) -> None:
    with Client.open(board.optical_port) as c, c.session(password=""):
        c.write(T.MFG + 2, pad_password("reader-1") + pad_password(PROGRAMMER_PW) + pad_password(MASTER_PW))


def set_master(board) -> None:
    """A master password alone (reader and programmer stay blank): a meter seals only then."""
    with Client.open(board.optical_port) as c, c.session(password=""):
        c.write(T.MFG + 2, pad_password(MASTER_PW), offset=40)


def stored_master(board) -> bytes:
    """PW_MASTER's 40-byte salted hash as the EEPROM's configuration record holds it."""
    image = board.hw.eeprom.dump()
    at = image.find(bytes([config.PW_MASTER, 40]))
    assert at >= 0
    return image[at + 2 : at + 42]


def writable_tables() -> list[int]:
    """Every table a port write can change, procedures (ST7) aside: from the declarations."""
    return [number for number, access in T.TABLES if access >> 4 != T.NEVER and number != 7]


def valid_write(number: int) -> bytes:
    if number == 5:
        return b"SEALED METER 7".ljust(20)
    if number == T.MFG + 1:
        return bytes([config.KH_MWH, 0x82]) + (2000).to_bytes(2, "little")
    if number == T.MFG + 2:
        return pad_password("reader-1") + pad_password(PROGRAMMER_PW) + pad_password(MASTER_PW)
    raise AssertionError(f"no data to write to table {number}: declare it here")


def params(number: int) -> bytes:
    return {T.PROC_REMOTE_RESET: DEMAND_RESET, T.PROC_SET_TIME: SET_TIME}.get(number, b"")


def attempt_write(c: Client, number: int) -> str:
    try:
        c.write(number, valid_write(number))
    except ServiceError as exc:
        return exc.name
    return "ok"


def attempt_procedure(c: Client, number: int, data: bytes) -> str:
    try:
        c.procedure(number, data, check=False)
    except ServiceError as exc:
        return exc.name
    return "ok"


def fs_hash(fs: Path) -> bytes:
    """What seal.firmware_hash() computes: every .py/.mpy in the root, by name, names included."""
    h = hashlib.sha256()
    for p in sorted(fs.iterdir(), key=lambda p: p.name):
        if p.is_file() and p.suffix in (".py", ".mpy"):
            h.update(p.name.encode() + b"\x00")
            h.update(p.read_bytes())
    return h.digest()


def mt0(c: Client) -> dict:
    return parse(T.MT0, c.read(T.MFG + 0))


def test_the_seal_plug_refuses_every_write_and_procedure_but_time_set_and_demand_reset(sim):
    sim.set_load(240.0, 10.0)
    sim.run(600)
    sim.set_seal_plug(True)
    with Client.open(sim.optical_port) as c, c.session(password=""):  # master: only the plug says no
        st3 = parse(T.ST3, c.read(3))
        assert st3["ED_MFG_STATUS"] & T.SEAL_PLUG
        before = c.read(T.MFG + 5)
        for number in writable_tables():
            assert attempt_write(c, number) == "dlk", f"table {number} written with the plug in"
        for number, _, flags in T.PROCEDURES:
            allowed = flags & T.PLUG_OK or flags & T.DEMAND_RESET_ONLY
            got = attempt_procedure(c, number, params(number))
            assert got == ("ok" if allowed else "dlk"), f"procedure {number:#x} with the plug in"
        # a remote reset that does more than the demand reset is refused too
        assert attempt_procedure(c, T.PROC_REMOTE_RESET, b"\x03") == "dlk"
        assert c.read(T.MFG + 5) == before, "the registers did not change"
        assert parse(T.ST52, c.read(52))["HOUR"] == 12, "the time set went through"
    sim.set_seal_plug(False)
    with Client.open(sim.optical_port) as c, c.session(password=""):
        assert not parse(T.ST3, c.read(3))["ED_MFG_STATUS"] & T.SEAL_PLUG
        assert attempt_write(c, 5) == "ok", "the plug out: writes again"


def test_a_meter_with_a_blank_master_password_will_not_seal(sim):
    """Anyone with a probe could unseal it: ST8 result 5 (C12.19: no authorization), nothing sealed."""
    with Client.open(sim.optical_port) as c, c.session(password=""):
        assert c.procedure(T.PROC_SEAL, check=False)[0] == 5
        record = mt0(c)
        assert not record["SEAL_FLAGS"] & T.SEAL_SEALED and record["SEAL_COUNT"] == 0
        assert attempt_write(c, 5) == "ok", "not sealed: writes go on"
    set_master(sim)
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        assert c.procedure(T.PROC_SEAL)[0] == 0
        assert mt0(c)["SEAL_FLAGS"] & T.SEAL_SEALED


def test_the_software_seal_refuses_configuration_and_register_changes(sim):
    sim.set_load(240.0, 10.0)
    sim.run(600)
    fs = sim.state_dir / "fs"
    set_master(sim)
    factory = config.Config()
    factory.set(config.PW_MASTER, stored_master(sim))
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        config_before = c.read(T.MFG + 1)
        result, data = c.procedure(T.PROC_SEAL)
        record = mt0(c)
        clock = parse(T.ST52, c.read(52))
        assert result == 0 and parse(T.SEAL_RESPONSE, data)["SEAL_COUNT"] == 1
        assert record["SEAL_FLAGS"] & T.SEAL_SEALED and record["SEAL_COUNT"] == 1
        assert record["SEAL_FW_HASH"] == fs_hash(fs), "the hash of the firmware files on the board"
        assert record["SEAL_CONFIG_CRC"] == zlib.crc32(factory.encode()), "the factory configuration's CRC"
        days = T.days_from_2000(2000 + clock["YEAR"], clock["MONTH"], clock["DAY"])
        now = days * 86400 + clock["HOUR"] * 3600 + clock["MINUTE"] * 60 + clock["SECOND"]
        assert abs(record["SEAL_TIME"] - now) <= 1
        before = c.read(T.MFG + 5)
        for number in writable_tables():
            assert attempt_write(c, number) == "dlk", f"table {number} written on a sealed meter"
        for number, _, flags in T.PROCEDURES:
            allowed = flags & T.SEALED_OK or flags & T.DEMAND_RESET_ONLY
            if number == T.PROC_UNSEAL:
                continue  # allowed, and it would end this test: the unseal test has it
            got = attempt_procedure(c, number, params(number))
            assert got == ("ok" if allowed else "dlk"), f"procedure {number:#x} on a sealed meter"
        assert attempt_procedure(c, T.PROC_REMOTE_RESET, b"\x03") == "dlk"
        assert c.read(T.MFG + 5) == before and c.read(T.MFG + 1) == config_before
        assert parse(T.ST52, c.read(52))["HOUR"] == 12, "time set works on a sealed meter"
        assert attempt_procedure(c, T.PROC_REMOTE_RESET, DEMAND_RESET) == "ok", "demand reset on a sealed meter"
    sim.power_off()
    sim.power_on()
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        after = mt0(c)
        st3 = parse(T.ST3, c.read(3))
        assert attempt_write(c, 5) == "dlk"
    assert after["SEAL_FLAGS"] & T.SEAL_SEALED, "the seal record is kept in EEPROM"
    assert not after["SEAL_FLAGS"] & T.SEAL_FW_CHANGED
    assert not st3["ED_STD_STATUS1"] & TAMPER_DETECT
    assert {k: after[k] for k in ("SEAL_COUNT", "SEAL_TIME", "SEAL_CONFIG_CRC", "SEAL_FW_HASH")} == {
        k: record[k] for k in ("SEAL_COUNT", "SEAL_TIME", "SEAL_CONFIG_CRC", "SEAL_FW_HASH")
    }


def test_only_the_master_seals(sim):
    program_passwords(sim)
    with Client.open(sim.optical_port) as c, c.session(password=PROGRAMMER_PW):
        with pytest.raises(ServiceError) as info:
            c.procedure(T.PROC_SEAL)
        assert info.value.name == "isc"
        assert not mt0(c)["SEAL_FLAGS"] & T.SEAL_SEALED


def test_a_sealed_meter_finds_changed_firmware_at_boot(sim):
    fs = sim.state_dir / "fs"
    main = fs / "main.py"
    main.write_text(main.read_text() + "# an unsealed meter may be updated\n")
    sim.power_off()
    sim.power_on()
    set_master(sim)
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        assert not parse(T.ST3, c.read(3))["ED_STD_STATUS1"] & TAMPER_DETECT
        c.procedure(T.PROC_SEAL)
    sim.set_load(240.0, 10.0)
    sim.run(60)
    main.write_text(main.read_text() + "# changed after sealing\n")
    sim.power_off()
    sim.power_on()
    sim.run(600)
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        st3 = parse(T.ST3, c.read(3))
        record = mt0(c)
        codes = [e["EVENT_CODE"] for e in read_events(c)]
        assert attempt_procedure(c, T.PROC_CLEAR_STD_STATUS, b"") == "dlk", "a sealed meter keeps the flag"
        energy = int.from_bytes(c.read(T.MFG + 5)[0:8], "little")
    assert st3["ED_STD_STATUS1"] & TAMPER_DETECT, "ST3 reports the tamper"
    assert record["SEAL_FLAGS"] & T.SEAL_FW_CHANGED and record["SEAL_FLAGS"] & T.SEAL_SEALED
    assert record["SEAL_FW_HASH"] != fs_hash(fs)
    assert EVENTS["EV_FIRMWARE_CHANGED"] in codes if codes else record["EVENTS_NOT_LOGGED"] >= 1, "logged"
    assert energy > 0, "the meter meters on"


def test_unsealing_needs_the_plug_out_and_the_master_password_and_is_logged(sim):
    program_passwords(sim)
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        c.procedure(T.PROC_SEAL)
        logged = mt0(c)["EVENTS_NOT_LOGGED"]
    sim.set_seal_plug(True)
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        assert attempt_procedure(c, T.PROC_UNSEAL, b"") == "dlk", "not with the plug in"
    sim.set_seal_plug(False)
    with Client.open(sim.optical_port) as c, c.session(password=PROGRAMMER_PW):
        assert attempt_procedure(c, T.PROC_UNSEAL, b"") == "isc", "not below master"
        assert mt0(c)["SEAL_FLAGS"] & T.SEAL_SEALED
    with Client.open(sim.optical_port) as c, c.session(password=MASTER_PW):
        assert c.procedure(T.PROC_UNSEAL) == (0, b"")
        record = mt0(c)
        assert not record["SEAL_FLAGS"] & T.SEAL_SEALED and record["SEAL_COUNT"] == 1
        codes = [e["EVENT_CODE"] for e in read_events(c)]
        if codes:
            assert codes.count(EVENTS["EV_SEALED"]) == 1 and codes.count(EVENTS["EV_UNSEALED"]) == 1, "logged"
        else:
            assert record["EVENTS_NOT_LOGGED"] == logged + 1
        assert attempt_write(c, 5) == "ok", "writes work again"
        assert c.procedure(T.PROC_UNSEAL, check=False)[0] == T.PROC_CONFLICT, "not sealed: nothing to unseal"
        result, data = c.procedure(T.PROC_SEAL)
        assert parse(T.SEAL_RESPONSE, data)["SEAL_COUNT"] == 2
