"""meterctl flash against the simulated board's console, with mpremote and with ampy,
source and compiled: the files land, verify by hash, and the meter boots and answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import flash
from host_tools.sim import SimBoard

METERCTL = str(Path(sys.executable).parent / "meterctl")


@pytest.mark.parametrize("tool", ["mpremote", "ampy"])
@pytest.mark.parametrize("compiled", [False, True], ids=["source", "mpy"])
def test_flash_a_blank_board_then_it_meters_and_answers(tmp_path, tool, compiled):
    # compiling the whole firmware from source on the board needs the compiler's RAM on
    # top: the source case gets a large heap; the compiled case runs in the default one
    heap = 256 if compiled else 1024
    with SimBoard(state_dir=tmp_path, flash=False, speed=1.0, heap_kb=heap) as board:
        assert not (tmp_path / "fs" / "main.py").exists()
        args = [METERCTL, "flash", "--board", "sim", "--port", board.console_port, "--tool", tool,
                "--optical", board.optical_port, "--timeout", "20"]
        if compiled:
            args.append("--compile")
        r = subprocess.run(args, capture_output=True, text=True, timeout=180)
        assert r.returncode == 0, r.stderr
        assert "verified" in r.stderr and "answers on the optical port" in r.stderr
        names = sorted(p.name for p in (tmp_path / "fs").iterdir())
        expected = sorted(f.name for f in flash.plan("sim", compile=compiled))
        assert names == expected
        assert ("meter.mpy" in names) == compiled and "main.py" in names
        assert board.hw.hello_count >= 1, "the flashed firmware booted"
        board.set_load(240, 10)
        board.run(60)
        assert board.true_energy_wh()["delivered"] > 0


def test_verification_catches_a_file_that_differs(sim):
    files = flash.plan("sim")
    flash.flash(sim.console_port, files)
    (sim.state_dir / "fs" / "meter.py").write_text("# tampered\n")
    with pytest.raises(flash.FlashError, match="verification failed for meter.py"):
        flash.verify(sim.console_port, files)


def test_no_device_at_the_port_is_one_line_with_exit_code_3(tmp_path):
    r = subprocess.run([METERCTL, "flash", "--board", "pico", "--port", str(tmp_path / "ttyACM9"), "--timeout", "5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [
        f"meterctl: no device at {tmp_path / 'ttyACM9'} "
        "(hint: is the board plugged in? `mpremote devs` lists the ports)"
    ]


def _answers(port: str, seconds: float = 20.0) -> bool:
    import time

    from host_tools.c1218 import C1218Error, Client

    end = time.monotonic() + seconds
    while time.monotonic() < end:
        try:
            with Client.open(port) as c:
                c.identify()
            return True
        except C1218Error:
            time.sleep(0.2)
    return False


def test_a_sealed_meter_is_refused_unless_the_seal_is_broken_with_the_master_password(tmp_path):
    from host_tools.c1218 import TABLES, Client, read_events

    with SimBoard(state_dir=tmp_path, speed=1.0) as board:
        with Client.open(board.optical_port).session(password="") as c:  # a factory meter: blank passwords
            c.procedure(TABLES.PROC_SEAL)
        def files():
            return {p.name: p.stat().st_mtime_ns for p in (tmp_path / "fs").iterdir()}

        before = files()
        base = [METERCTL, "flash", "--board", "sim", "--port", board.console_port, "--timeout", "20", "--compile"]
        r = subprocess.run(base, capture_output=True, text=True, timeout=120)
        assert r.returncode == 5, r.stderr
        assert r.stderr.strip().splitlines() == [
            "meterctl: the meter is sealed: flashing it would break the seal "
            "(hint: unseal it first, or give --break-seal --password MASTER --optical PORT)"
        ]
        assert files() == before, "nothing was written"
        assert _answers(board.optical_port), "the refused meter runs on"

        r = subprocess.run([*base, "--break-seal"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--break-seal needs --optical" in r.stderr

        breaking = [*base, "--break-seal", "--optical", board.optical_port, "--password"]
        r = subprocess.run([*breaking, "wrong"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 5 and "wrong password for the master level" in r.stderr, r.stderr
        r = subprocess.run([*breaking, ""], capture_output=True, text=True, timeout=120)  # a factory meter's
        assert r.returncode == 0, r.stderr
        assert "seal broken" in r.stderr and "verified" in r.stderr
        with Client.open(board.optical_port).session(password="") as c:
            codes = [e["EVENT_CODE"] for e in read_events(c)]
        assert TABLES.MFG + 3 in codes  # unsealed, logged by the meter
