"""meterctl flash against the simulated board's console, with mpremote and with ampy: the
files land (.mpy by default), verify by hash, stale .py/.mpy twins go, and the meter that
booted serves a real read (ST1, ST3, MT0) or the command fails with one line. Through a
running meter (its console runs the code), an older firmware's REPL and a blank board."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from host_tools import flash
from host_tools.sim import SimBoard

METERCTL = str(Path(sys.executable).parent / "meterctl")


def meterctl(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([METERCTL, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def running():
    """A board whose time flows (speed 1), as `meterctl sim` runs one: after the reboot that
    ends a flash, the meter boots in virtual time (a board frozen at speed 0 would wait)."""
    with SimBoard(seed=1, speed=1.0) as board:
        yield board


def fs_names(board: SimBoard) -> list[str]:
    return sorted(p.name for p in (board.state_dir / "fs").iterdir())


def last_line(r: subprocess.CompletedProcess[str]) -> str:
    lines = [x for x in r.stderr.splitlines() if x.strip() and "[" not in x]  # not the progress bar
    return lines[-1] if lines else ""


@pytest.mark.parametrize("tool", ["mpremote", "ampy"])
@pytest.mark.parametrize("form", [[], ["--compile"]], ids=["default", "compile"])
def test_flash_a_blank_board_then_it_meters_and_answers(tmp_path, tool, form):
    with SimBoard(state_dir=tmp_path, flash=False, speed=1.0) as board:
        assert not (tmp_path / "fs" / "main.py").exists()
        r = meterctl("flash", "--board", "sim", "--port", board.console_port, "--tool", tool,
                     "--optical", board.optical_port, "--timeout", "20", *form)
        assert r.returncode == 0, r.stderr
        assert "verified" in r.stderr
        assert last_line(r).startswith("the meter answers over the optical port: firmware 0.1,")
        assert fs_names(board) == sorted(f.name for f in flash.plan("sim"))
        assert "meter.mpy" in fs_names(board) and "main.py" in fs_names(board)  # .mpy is the default
        assert board.hw.hello_count >= 1, "the flashed firmware booted"
        r = meterctl("read", "--port", board.optical_port, "--json", timeout=60)
        assert r.returncode == 0, r.stderr
        board.set_load(240, 10)
        # frozen before run(): at speed > 0, with virtual time only following real time, run()
        # waits until the hardware thread happens to be idle (minutes, also before this branch)
        board.set_speed(0)
        board.run(60)
        assert board.true_energy_wh()["delivered"] > 0


def test_flash_through_a_running_meter_checks_the_read_over_the_console(running):
    """No --optical: the check runs the firmware's own table code inside the meter."""
    hellos = running.hw.hello_count
    r = meterctl("flash", "--board", "sim", "--port", running.console_port, "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert running.hw.hello_count == hellos + 1, "one reboot, at the end"
    line = last_line(r)
    assert line.startswith("the meter answers over the console: firmware 0.1, status 0x"), line
    assert int(line.split("heap free ")[1].split()[0].replace(",", "")) > 10_000


def test_source_is_refused_on_the_simulated_board_and_the_esp32(sim, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (sim.state_dir / "fs").iterdir()}
    for board in ("sim", "esp32"):
        r = meterctl("flash", "--board", board, "--port", sim.console_port, "--source")
        assert r.returncode == 2, r.stderr
        [line] = r.stderr.strip().splitlines()
        assert line.startswith(f"meterctl: --source is refused on board {board}: ")
        assert "MemoryError in its 316 KB" in line if board == "sim" else "90-110 KB free" in line
    assert {p.name: p.stat().st_mtime_ns for p in (sim.state_dir / "fs").iterdir()} == before
    r = meterctl("flash", "--board", "sim", "--port", sim.console_port, "--source", "--compile")
    assert r.returncode == 2 and "not allowed with argument" in r.stderr


def test_stale_twins_are_removed_both_ways(running):
    sim = running
    fs = sim.state_dir / "fs"
    (fs / "meter.py").write_text("raise ImportError('a stale source twin: imported before meter.mpy')\n")
    (fs / "main.mpy").write_bytes(b"M\x06stale")  # a twin of main.py, which is always source
    r = meterctl("flash", "--board", "sim", "--port", sim.console_port, "--timeout", "20")
    assert r.returncode == 0, r.stderr
    assert "removed 2 stale twins: main.mpy, meter.py" in r.stderr
    assert fs_names(sim) == sorted(f.name for f in flash.plan("sim"))
    # and the other way: sending sources removes their .mpy (flash.py's own API: --source is
    # refused on this board, its twins rule is not)
    removed = flash.flash(sim.console_port, [f for f in flash.plan("sim", compile=False) if f.name == "tou.py"])
    assert removed == ["tou.mpy"] and "tou.py" in fs_names(sim) and "tou.mpy" not in fs_names(sim)


def test_a_flash_that_leaves_a_meter_that_cannot_boot_fails_with_one_line(tmp_path):
    # 160 KB: the simulated VM holds the .mpy bytecode in its heap, and the firmware does not
    # fit (MemoryError while importing; 200 KB is enough): a board too small for it
    with SimBoard(state_dir=tmp_path, flash=False, speed=1.0, heap_kb=160) as board:
        r = meterctl("flash", "--board", "sim", "--port", board.console_port, "--timeout", "20")
        assert r.returncode != 0
        line = last_line(r)
        assert line.startswith("meterctl: the firmware failed at boot: MemoryError") or (
            line.startswith("meterctl: flashed, but ") and "MemoryError" in line
        ), r.stderr
        assert "Traceback" not in r.stderr


def test_flash_over_an_older_firmware_that_does_not_own_its_console(tmp_path):
    """A firmware from before console.py: Ctrl-C stops it and MicroPython's REPL answers."""
    with SimBoard(state_dir=tmp_path, speed=1.0) as board:
        (tmp_path / "fs" / "main.py").write_text(
            "import board, meter\nm = meter.Meter(board.make())\nm.console = None\nm.run()\n"
        )
        board.set_speed(0)  # power_on() runs the boot: frozen, it cannot wait on real time (above)
        board.power_off()
        board.power_on()
        board.set_speed(1.0)
        assert not board.hw.console_owned
        r = meterctl("flash", "--board", "sim", "--port", board.console_port, "--optical", board.optical_port,
                     "--timeout", "20")
        assert r.returncode == 0, r.stderr
        assert last_line(r).startswith("the meter answers over the optical port")
        assert board.hw.console_owned, "the new firmware owns its console"


def test_verification_catches_a_file_that_differs(sim):
    files = flash.plan("sim")
    flash.flash(sim.console_port, files)
    (sim.state_dir / "fs" / "meter.mpy").write_bytes(b"tampered")
    with pytest.raises(flash.FlashError, match="verification failed for meter.mpy"):
        flash.verify(sim.console_port, files)


def test_no_device_at_the_port_is_one_line_with_exit_code_3(tmp_path):
    r = meterctl("flash", "--board", "pico", "--port", str(tmp_path / "ttyACM9"), "--timeout", "5", timeout=60)
    assert r.returncode == 3
    assert r.stderr.strip().splitlines() == [
        f"meterctl: no device at {tmp_path / 'ttyACM9'} "
        "(hint: is the board plugged in? `mpremote devs` lists the ports)"
    ]


def test_a_sealed_meter_is_refused_unless_the_seal_is_broken_with_the_master_password(tmp_path):
    from host_tools.c1218 import TABLES, Client, pad_password, read_events

    master = "master-9"  # a meter with a blank master password will not seal
    with SimBoard(state_dir=tmp_path, speed=1.0) as board:
        with Client.open(board.optical_port).session(password="") as c:  # a factory meter: blank passwords
            c.write(TABLES.MFG + 2, pad_password(master), offset=40)
        with Client.open(board.optical_port).session(password=master) as c:
            c.procedure(TABLES.PROC_SEAL)

        def files():
            return {p.name: p.stat().st_mtime_ns for p in (tmp_path / "fs").iterdir()}

        before = files()
        base = [METERCTL, "flash", "--board", "sim", "--port", board.console_port, "--timeout", "20"]
        # without the optical port: the sealed meter's console says nothing
        r = subprocess.run(base, capture_output=True, text=True, timeout=120)
        assert r.returncode == 4, r.stderr
        assert r.stderr.strip().splitlines() == [
            f"meterctl: the meter's console on {board.console_port} does not answer (hint: a sealed meter "
            "(software seal or seal plug) closes its console: give --break-seal --password MASTER --optical "
            "PORT, or pull the seal plug; else check that this is the board's USB console)"
        ]
        # with it: the seal is read there first
        r = subprocess.run([*base, "--optical", board.optical_port], capture_output=True, text=True, timeout=120)
        assert r.returncode == 5, r.stderr
        assert r.stderr.strip().splitlines() == [
            "meterctl: the meter is sealed: flashing it would break the seal "
            "(hint: unseal it first, or give --break-seal --password MASTER --optical PORT)"
        ]
        assert files() == before, "nothing was written"

        r = subprocess.run([*base, "--break-seal"], capture_output=True, text=True, timeout=60)
        assert r.returncode == 2 and "--break-seal needs --optical" in r.stderr

        breaking = [*base, "--break-seal", "--optical", board.optical_port, "--password"]
        r = subprocess.run([*breaking, "wrong"], capture_output=True, text=True, timeout=120)
        assert r.returncode == 5 and "wrong password for the master level" in r.stderr, r.stderr
        r = subprocess.run([*breaking, master], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr
        assert "seal broken" in r.stderr and "verified" in r.stderr
        with Client.open(board.optical_port).session(password="") as c:
            codes = [e["EVENT_CODE"] for e in read_events(c)]
        assert TABLES.MFG + 3 in codes  # unsealed, logged by the meter
