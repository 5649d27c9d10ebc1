"""Issue 16, tables and procedures: ST8 after a refused procedure, ST64's END_READINGS and
clock flags, the demand-reset lock-out on powered time, ST76's header and user ids."""

from __future__ import annotations

import pytest

from host_tools.c1218 import TABLES, Client, ServiceError, pad_password, parse, read_events, set_time_params
from host_tools.repo import firmware_module

T = TABLES
MASTER_PW, PROGRAMMER_PW, READER_PW = "master-333", "prog-22", "reader-1"


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
