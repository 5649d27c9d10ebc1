"""Security on the optical port, on the simulated board: the session state machine,
access levels per table, salted password hashes, the padding rule and the lock-out."""

from __future__ import annotations

import re

import pytest

from host_tools.c1218 import CODES, TABLES, Client, ServiceError, checksum, pad_password, parse, read_events
from host_tools.repo import FIRMWARE_DIR, firmware_module

T = TABLES
config = firmware_module("config")
PASSWORDS = {T.READER: "reader-1", T.PROGRAMMER: "prog-22", T.MASTER: "master-333"}
LEVEL_NAMES = {T.ANONYMOUS: "anonymous", T.READER: "reader", T.PROGRAMMER: "programmer", T.MASTER: "master"}


def event_codes() -> dict[str, int]:
    """The event codes declared in firmware/events.py (a module the host cannot import)."""
    text = (FIRMWARE_DIR / "events.py").read_text()
    return {k: int(v, 0) for k, v in re.findall(r"^(EV_\w+) = const\((0x[0-9A-Fa-f]+|\d+)\)", text, re.M)}


EVENTS = event_codes()


def program_passwords(board, passwords=PASSWORDS, master="") -> None:
    """A factory meter answers master to the blank password: set the three passwords."""
    data = b"".join(pad_password(passwords[level]) for level in (T.READER, T.PROGRAMMER, T.MASTER))
    with Client.open(board.optical_port) as c, c.session(password=master):
        c.write(T.MFG + 2, data)


def code_of(client: Client, data: bytes) -> str:
    resp = client.exchange(data)
    return "ok" if resp[0] == 0 else ServiceError(resp[0], "").name


def mt0(client: Client) -> dict:
    return parse(T.MT0, client.read(T.MFG + 0))


def test_requests_out_of_order_get_isss_and_unknown_services_sns(sim):
    logon = b"\x50\x00\x05" + b"order     "
    with Client.open(sim.optical_port) as c:
        # base state: only Identify (and Terminate) make sense
        assert code_of(c, b"\x30\x00\x01") == "isss"
        assert code_of(c, logon) == "isss"
        assert code_of(c, b"\x60\x00\x80\x02") == "isss"
        assert code_of(c, b"\x70\x05") == "isss"
        assert code_of(c, b"\x52") == "isss"
        assert code_of(c, b"\x99") == "sns"
        assert code_of(c, b"\x20") == "ok"
        # identified: no reads, writes, security or logoff before logon
        assert code_of(c, b"\x30\x00\x01") == "isss"
        assert code_of(c, b"\x51" + bytes(20)) == "isss"
        assert code_of(c, b"\x52") == "isss"
        assert code_of(c, b"\x60\x00\x80\x02") == "ok"
        assert code_of(c, b"\x70\x05") == "ok"
        assert code_of(c, logon) == "ok"
        # in session: no second identify, negotiate or logon
        assert code_of(c, b"\x20") == "isss"
        assert code_of(c, b"\x60\x00\x80\x02") == "isss"
        assert code_of(c, logon) == "isss"
        assert code_of(c, b"\x30\x00\x01") == "ok"
        assert code_of(c, b"\x50") == "isss", "state before length"
        assert code_of(c, b"\x30\x00") == "err", "a request too short for its service"
        assert code_of(c, b"\x52") == "ok"
        assert code_of(c, b"\x30\x00\x01") == "isss", "logged off: back to identified"
        assert code_of(c, b"\x21") == "ok"
        assert code_of(c, b"\x30\x00\x01") == "isss"


def _write_request(table: int, data: bytes) -> bytes:
    return b"\x40" + table.to_bytes(2, "big") + len(data).to_bytes(2, "big") + data + bytes([checksum(data)])


def _valid_write(table: int, level: int) -> bytes:
    """Data a write to `table` would be accepted with (the password table keeps PASSWORDS)."""
    if table == 5:
        return b"METER 0001".ljust(20)
    if table == 7:  # a procedure this level may run: demand reset (reader) or set time
        if level >= T.PROGRAMMER:
            return (10).to_bytes(2, "little") + bytes([1, 3, 26, 1, 5, 12, 0, 0, 0])
        return (9).to_bytes(2, "little") + bytes([1, 1])
    if table == T.MFG + 1:
        return bytes([config.SCROLL_S, 0x81, 11])
    if table == T.MFG + 2:
        return b"".join(pad_password(PASSWORDS[lv]) for lv in (T.READER, T.PROGRAMMER, T.MASTER))
    raise AssertionError(f"no test data for table {table}")


@pytest.mark.parametrize("level", sorted(LEVEL_NAMES), ids=lambda lv: LEVEL_NAMES[lv])
def test_every_table_is_read_and_written_at_its_declared_level(sim, level):
    program_passwords(sim)
    with Client.open(sim.optical_port) as c:
        c.identify()
        c.negotiate(256, 64)
        c.logon(user_id=10 + level)
        if level:
            c.security(PASSWORDS[level])
        assert mt0(c)["SESSION_LEVEL"] == level
        for number, _ in T.TABLES:
            e = T.find(number)
            want = "ok" if T.read_level(e) <= level else "isc"
            req = b"\x30" + number.to_bytes(2, "big")
            if number == 64:  # the load profile (20,608 bytes) is larger than a message: a partial read
                req = b"\x3f" + number.to_bytes(2, "big") + (0).to_bytes(3, "big") + (16).to_bytes(2, "big")
            got = code_of(c, req)
            assert got == want, f"read of table {number} at level {LEVEL_NAMES[level]}"
            wl = T.write_level(e)
            if wl == T.NEVER:
                assert code_of(c, _write_request(number, b"\x00")) == "isc", f"write of read-only table {number}"
                continue
            want = "ok" if wl <= level else "isc"
            got = code_of(c, _write_request(number, _valid_write(number, level)))
            assert got == want, f"write of table {number} at level {LEVEL_NAMES[level]}"


def test_the_password_padding_rule(sim):
    """A password is its 20 bytes, NUL-padded (security.py): '0' and space are characters."""
    program_passwords(sim, {T.READER: "0000", T.PROGRAMMER: "2000", T.MASTER: "1234"})
    with Client.open(sim.optical_port) as c, c.session():
        c.security("2000")
        assert mt0(c)["SESSION_LEVEL"] == T.PROGRAMMER
        c.security("0000")
        assert mt0(c)["SESSION_LEVEL"] == T.READER
        c.security(b"1234" + bytes(16))
        assert mt0(c)["SESSION_LEVEL"] == T.MASTER
        assert c.exchange(b"\x51" + b"1234")[0] == 0, "a short request: the meter pads with NUL"
        wrong = ("2", "20", "200", "20000", "", "0", "000", "00000", "123", "12340", "12345", "1234\x01", " 1234")
        for pw in wrong:
            assert code_of(c, b"\x51" + pad_password(pw)) == "isc", repr(pw)
            c.security("1234")  # right after each wrong one: no lock-out here
        for pad in (b" ", b"0"):
            assert code_of(c, b"\x51" + pad_password("1234", pad)) == "isc", f"'1234' padded with {pad!r}"
            c.security("1234")
        assert code_of(c, b"\x51") == "isc", "no bytes at all: the blank password, not reader's '0000'"
    program_passwords(sim, {T.READER: "r", T.PROGRAMMER: "p", T.MASTER: "9" * 20}, master="1234")
    with Client.open(sim.optical_port) as c, c.session(password="9" * 20):
        assert mt0(c)["SESSION_LEVEL"] == T.MASTER, "a full 20-byte password, no padding"


def test_a_client_padding_with_spaces_opens_what_it_set(sim):
    """A client that pads with spaces sets and presents the same 20 bytes: that works."""
    data = b"".join(pad_password(pw, b" ") for pw in ("r", "p", "1234"))
    with Client.open(sim.optical_port) as c, c.session(password=""):
        c.write(T.MFG + 2, data)
    with Client.open(sim.optical_port) as c, c.session():
        c.security("1234", pad=b" ")
        assert mt0(c)["SESSION_LEVEL"] == T.MASTER
        assert code_of(c, b"\x51" + pad_password("1234")) == "isc", "NUL-padded: other bytes"


def _stored(image: bytes, key: int) -> bytes:
    """The value of a password setting in the EEPROM's configuration record (config.py's TLV)."""
    at = image.find(bytes([key, 40]))
    assert at >= 0, f"no 40-byte setting 0x{key:02x} in the EEPROM"
    return image[at + 2 : at + 42]


def test_passwords_are_kept_as_salted_hashes_never_in_clear(sim):
    import hashlib

    program_passwords(sim)
    first = _stored(sim.hw.eeprom.dump(), config.PW_MASTER)
    with Client.open(sim.optical_port) as c, c.session(password=PASSWORDS[T.MASTER]):
        blob = c.read(T.MFG + 1)
        assert code_of(c, b"\x30" + (T.MFG + 2).to_bytes(2, "big")) == "isc", "MT2 is write only"
        c.write(T.MFG + 2, pad_password(PASSWORDS[T.MASTER]), offset=40)  # the same master password again
    image = sim.hw.eeprom.dump()
    for pw in PASSWORDS.values():
        assert pw.encode() not in image, "no password in clear in the EEPROM"
        assert pw.encode() not in blob
    settings = dict(config.Config.decode(blob).items())
    assert settings[config.PW_MASTER] == b"", "MT1 does not carry the hashes (only the defaults decode)"
    assert bytes([config.PW_MASTER, 40]) not in blob
    second = _stored(image, config.PW_MASTER)
    assert first != second, "a new salt every time a password is set"
    for stored in (first, second):
        salt, digest = stored[:8], stored[8:]
        assert hashlib.sha256(salt + PASSWORDS[T.MASTER].encode()).digest() == digest


def test_three_wrong_passwords_lock_the_port_even_for_the_right_one(sim):
    program_passwords(sim)
    with Client.open(sim.optical_port) as c:
        with c.session():
            for _ in range(3):
                assert code_of(c, b"\x51" + pad_password("guess")) == "isc"
            assert code_of(c, b"\x51" + pad_password(PASSWORDS[T.MASTER])) == "isc", "locked out"
            status = mt0(c)
        assert status["FAILED_PASSWORDS"] == 3 and status["LOCKOUTS"] == 1
        assert 59 <= status["LOCKOUT_LEFT_S"] <= 60
        assert status["SEAL_FLAGS"] & T.SEAL_LOCKED_OUT
        with c.session():  # a new session does not lift the lock-out
            assert code_of(c, b"\x51" + pad_password(PASSWORDS[T.READER])) == "isc"
        sim.run(61)
        with c.session(password=PASSWORDS[T.MASTER]):
            status = mt0(c)
            codes = [e["EVENT_CODE"] for e in read_events(c)]
        assert status["SESSION_LEVEL"] == T.MASTER and status["LOCKOUT_LEFT_S"] == 0
        # logged in the event log (events.py), or counted when a meter has none
        if codes:
            assert codes.count(EVENTS["EV_BAD_PASSWORD"]) == 3 and codes.count(EVENTS["EV_LOCKOUT"]) == 1
        else:
            assert status["EVENTS_NOT_LOGGED"] == 4


def test_the_lockout_time_is_a_setting(sim):
    program_passwords(sim)
    with Client.open(sim.optical_port) as c:
        with c.session(password=PASSWORDS[T.MASTER]):
            c.write(T.MFG + 1, bytes([config.LOCKOUT_S, 0x81, 10, config.LOCKOUT_TRIES, 0x81, 2]))
            for _ in range(2):
                assert code_of(c, b"\x51" + pad_password("nope")) == "isc"
            assert code_of(c, b"\x51" + pad_password(PASSWORDS[T.MASTER])) == "isc"
        sim.run(11)
        with c.session(password=PASSWORDS[T.MASTER]):
            assert mt0(c)["SESSION_LEVEL"] == T.MASTER


def test_the_lockout_survives_a_power_cut_and_counts_powered_time(sim):
    """3 wrong, the supply cut for 10 minutes: still locked, for 60 s of powered time from
    power-up, the right password too; then open, and a later power cut does not lock again."""
    program_passwords(sim)
    with Client.open(sim.optical_port) as c, c.session():
        for _ in range(3):
            assert code_of(c, b"\x51" + pad_password("guess")) == "isc"
    sim.power_off()
    sim.run(600)  # off: the outage is not powered time
    sim.power_on()
    with Client.open(sim.optical_port) as c:
        with c.session():
            status = mt0(c)
            assert code_of(c, b"\x51" + pad_password(PASSWORDS[T.MASTER])) == "isc", "locked after the power cut"
        assert status["SEAL_FLAGS"] & T.SEAL_LOCKED_OUT
        assert 50 <= status["LOCKOUT_LEFT_S"] <= 60, "a whole lock-out again, less the boot"
        sim.run(40)
        with c.session():
            assert code_of(c, b"\x51" + pad_password(PASSWORDS[T.MASTER])) == "isc", "40 s powered: still locked"
        sim.run(21)
        with c.session(password=PASSWORDS[T.MASTER]):
            assert mt0(c)["SESSION_LEVEL"] == T.MASTER and mt0(c)["LOCKOUT_LEFT_S"] == 0
    sim.power_off()
    sim.power_on()
    with Client.open(sim.optical_port) as c, c.session(password=PASSWORDS[T.MASTER]):
        assert mt0(c)["SESSION_LEVEL"] == T.MASTER, "the lock-out ended: a power cut does not bring it back"


def test_wrong_passwords_in_a_row_are_counted_across_power_cuts(sim):
    """Two wrong, a power cut, one wrong: the third in a row locks (a probe that cycles the
    supply gets no more tries than one that does not)."""
    program_passwords(sim)
    with Client.open(sim.optical_port) as c, c.session():
        for _ in range(2):
            assert code_of(c, b"\x51" + pad_password("guess")) == "isc"
    sim.power_off()
    sim.power_on()
    with Client.open(sim.optical_port) as c, c.session():
        assert code_of(c, b"\x51" + pad_password("guess")) == "isc"
        assert code_of(c, b"\x51" + pad_password(PASSWORDS[T.MASTER])) == "isc", "the third in a row locked"
        assert mt0(c)["SEAL_FLAGS"] & T.SEAL_LOCKED_OUT


def test_a_security_request_shorter_than_20_bytes_is_padded(sim):
    with Client.open(sim.optical_port) as c, c.session():
        assert c.exchange(b"\x51")[0] == CODES["ok"], "no password bytes at all: the blank password"
        assert c.exchange(b"\x51abc")[0] == CODES["isc"]
