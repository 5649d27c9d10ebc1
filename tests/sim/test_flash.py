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


def test_no_device_at_the_port_is_one_line_with_exit_code_1(tmp_path):
    r = subprocess.run([METERCTL, "flash", "--board", "pico", "--port", str(tmp_path / "ttyACM9"), "--timeout", "5"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("meterctl: mpremote failed") and "Traceback" not in r.stderr
