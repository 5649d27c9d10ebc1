"""Sealed means sealed on the console too (firmware/console.py): with the software seal on,
or the seal plug in, every console byte is read and dropped, nothing runs, nothing
answers, and the access is logged once per burst (event 0x80B, CONSOLE_ACCESS). Checked
with the tools an intruder would use, against the registers and the event log read over
the optical port, also after a power cycle."""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.c1218 import TABLES, Client, pad_password, read_events
from host_tools.readout import decode_registers
from host_tools.repo import FIRMWARE_DIR
from host_tools.sim import SimBoard

BIN = Path(sys.executable).parent
EV_CONSOLE_ACCESS = int(
    re.search(r"^EV_CONSOLE_ACCESS = const\((\w+)\)", (FIRMWARE_DIR / "events.py").read_text(), re.M)[1], 0
)
ATTACK = "m.energy.delivered_wh = 7; m.storage.save_registers(m.energy)"
SOFTWARE_SEAL, SEAL_PLUG = 1, 2  # the event's first data byte: what closed the console
QUIET_S = 60  # console.py: a burst starts after this much silence


@pytest.fixture
def board():
    with SimBoard(seed=1, ideal=True) as b:
        b.set_load(240.0, 10.0)  # 2.4 kW: 40 Wh a minute
        b.run(60)
        yield b


MASTER = "master-333"


def seal(board: SimBoard) -> None:
    """Set a master password (a meter with a blank one will not seal), then seal."""
    with Client.open(board.optical_port).session(password="") as c:  # a factory meter: blank passwords
        c.write(TABLES.MFG + 2, pad_password(MASTER), offset=40)
    with Client.open(board.optical_port).session(password=MASTER) as c:
        c.procedure(TABLES.PROC_SEAL)


def registers(board: SimBoard) -> dict[str, float]:
    with Client.open(board.optical_port).session(password="") as c:
        return decode_registers(c.read(TABLES.MFG + 5))


def console_accesses(board: SimBoard) -> list[bytes]:
    with Client.open(board.optical_port).session(password="") as c:
        return [bytes(e["EVENT_ARGUMENT"]) for e in read_events(c) if e["EVENT_CODE"] == EV_CONSOLE_ACCESS]


def attempt(board: SimBoard, *args: str, timeout: float = 6) -> str:
    """mpremote, as a person (or a script) would run it; what it printed, or 'no answer' (in
    `timeout` seconds: the meter drops the bytes at once, the wait is for mpremote).
    On a board mpremote gives up after 10 s ("could not enter raw repl"); on the simulated
    board's pseudo-terminal it waits for an answer that never comes, and is stopped."""
    try:
        r = subprocess.run([str(BIN / "mpremote"), "connect", board.console_port, *args],
                           capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "no answer"
    return f"exit {r.returncode}: {r.stdout}{r.stderr}"


def test_a_sealed_meter_ignores_mpremote_and_logs_the_attempt(board):
    seal(board)
    before = registers(board)
    assert before["delivered_wh"] == pytest.approx(40, abs=1)
    assert attempt(board, "resume", "exec", ATTACK) == "no answer"
    assert attempt(board, "exec", ATTACK) == "no answer"  # with the soft reset too
    assert registers(board) == before, "the registers are untouched (no virtual time passed)"
    # one burst (no 60 s of silence between the two tries): one entry, for the software seal
    [entry] = console_accesses(board)
    assert entry[0] == SOFTWARE_SEAL
    assert entry[1] == 0x0D  # mpremote's first byte: the "\r" of "\r\x03" (then Ctrl-C)
    r = subprocess.run([str(BIN / "meterctl"), "events", "--port", board.optical_port],
                        capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    [line] = [x for x in r.stdout.splitlines() if "CONSOLE_ACCESS" in x]
    assert "closed by the software seal, first byte 0x0d, 0 bytes in the burst before" in line

    board.run(QUIET_S + 1)  # metering went on: another 40.67 Wh
    assert attempt(board, "resume", "exec", ATTACK) == "no answer"
    first, second = console_accesses(board)
    assert first == entry and second[0] == SOFTWARE_SEAL
    # the burst before: mpremote (transport_serial.enter_raw_repl) writes "\r\x03", then "\r\x01",
    # and waits for the raw REPL's banner, which never comes: 4 bytes a try, the code never sent
    assert int.from_bytes(second[2:4], "little") == 2 * 4
    metered = before["delivered_wh"] + 2400.0 * (QUIET_S + 1) / 3600
    assert registers(board)["delivered_wh"] == pytest.approx(metered, abs=1)
    board.power_off(sag_ms=20)
    board.power_on()
    assert registers(board)["delivered_wh"] == pytest.approx(metered, abs=1), "what the EEPROM kept: not 7"


def test_the_seal_plug_alone_closes_the_console_and_pulling_it_opens_it(board):
    board.set_seal_plug(True)
    before = registers(board)
    assert attempt(board, "resume", "exec", ATTACK) == "no answer"
    assert registers(board) == before
    [entry] = console_accesses(board)
    assert entry[0] == SEAL_PLUG
    board.set_seal_plug(False)
    out = attempt(board, "exec", "print(m.energy.delivered_wh)", timeout=60)
    assert out == f"exit 0: {int(before['delivered_wh'])}\n", "the unsealed console answers again"


def test_the_console_opens_again_when_the_seal_is_broken_over_the_optical_port(board):
    seal(board)
    assert attempt(board, "exec", "print(6 * 7)") == "no answer"
    with Client.open(board.optical_port).session(password=MASTER) as c:
        c.procedure(TABLES.PROC_UNSEAL)
    assert attempt(board, "exec", "print(6 * 7)", timeout=60) == "exit 0: 42\n"


def test_a_flood_of_bytes_costs_one_entry(board):
    import serial

    seal(board)
    with serial.Serial(board.console_port, 115200, timeout=0.1) as port:
        for _ in range(50):
            port.write(bytes(range(256)) * 4)  # 51,200 bytes
            time.sleep(0.01)
        time.sleep(1.0)
        assert port.read(4096) == b"", "nothing answered"
    board.run(5)  # the meter drains what is left between its polls
    assert len(console_accesses(board)) == 1
