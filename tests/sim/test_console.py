"""The simulated board's USB console behaves like a board's: mpremote and ampy work
unchanged (no `resume`), Ctrl-C interrupts main.py, Ctrl-D soft-reboots."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

BIN = Path(sys.executable).parent


def tool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout)


_unread: dict[int, bytes] = {}


def read_until(port: serial.Serial, marker: bytes, timeout: float = 10.0) -> bytes:
    """Read up to and including marker; what came after it is kept for the next call."""
    data = _unread.pop(id(port), b"")
    end = time.monotonic() + timeout
    while marker not in data:
        if time.monotonic() > end:
            raise AssertionError(f"no {marker!r} on the console; got {data[-300:]!r}")
        data += port.read(256)
    at = data.index(marker) + len(marker)
    _unread[id(port)] = data[at:]
    return data[:at]


def test_mpremote_exec_cp_and_ls(sim, tmp_path):
    r = tool("mpremote", "connect", sim.console_port, "exec", "print(6 * 7)")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "42"
    src = tmp_path / "notes.txt"
    src.write_text("calibrated on the bench\n")
    r = tool("mpremote", "connect", sim.console_port, "cp", str(src), ":notes.txt")
    assert r.returncode == 0, r.stderr
    assert (sim.state_dir / "fs" / "notes.txt").read_text() == "calibrated on the bench\n"
    r = tool("mpremote", "connect", sim.console_port, "fs", "ls")
    assert r.returncode == 0, r.stderr
    assert "notes.txt" in r.stdout and "main.py" in r.stdout
    # the board's filesystem is "/": the host's own files are not visible
    r = tool("mpremote", "connect", sim.console_port, "exec", "import os; print(sorted(os.listdir('/')))")
    assert "'main.py'" in r.stdout and "'etc'" not in r.stdout


def test_ampy_ls_and_put(sim, tmp_path):
    r = tool("ampy", "--port", sim.console_port, "ls")
    assert r.returncode == 0, r.stderr
    listed = r.stdout.split()
    assert "/main.py" in listed and "/board.mpy" in listed  # the sim board is flashed compiled
    src = tmp_path / "config.json"
    src.write_text('{"kh": 1.0}')
    r = tool("ampy", "--port", sim.console_port, "put", str(src), "config.json")
    assert r.returncode == 0, r.stderr
    assert (sim.state_dir / "fs" / "config.json").read_text() == '{"kh": 1.0}'


def test_ctrl_c_interrupts_main_and_keeps_its_globals_then_ctrl_d_reboots(sim):
    hellos = sim.hw.hello_count
    with serial.Serial(sim.console_port, 115200, timeout=0.1) as port:
        port.write(b"\x03")
        out = read_until(port, b">>> ")
        assert b"KeyboardInterrupt" in out
        port.write(b"print('meter' in globals(), type(board).__name__)\r")
        read_until(port, b"True module")  # main.py's globals are still there
        read_until(port, b">>> ")
        port.write(b"\x04")  # Ctrl-D at the friendly REPL: soft reboot, main.py runs again
        read_until(port, b"soft reboot")
    deadline = time.monotonic() + 10
    while sim.hw.hello_count == hellos and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sim.hw.hello_count == hellos + 1, "main.py runs again after the soft reboot"
    sim.set_load(240.0, 5.0)
    sim.run(30)  # and meters again
    assert sim.console.reboots >= 1


def test_raw_repl_soft_reset_stays_in_raw_repl_without_main(sim):
    with serial.Serial(sim.console_port, 115200, timeout=0.1) as port:
        port.write(b"\r\x03\x03")
        read_until(port, b">>> ")
        port.write(b"\r\x01")
        read_until(port, b"raw REPL; CTRL-B to exit\r\n>")
        hellos = sim.hw.hello_count
        port.write(b"\x04")
        read_until(port, b"soft reboot\r\n")
        read_until(port, b"raw REPL; CTRL-B to exit\r\n>")
        port.write(b"print(1+1)\x04")
        out = read_until(port, b"\x04>")
        assert b"OK2" in out
        assert sim.hw.hello_count == hellos, "a raw-REPL soft reset does not run main.py"


@pytest.mark.parametrize("sequence", [b"\x03", b"\r\x03\x03"])
def test_ctrl_c_at_the_prompt_is_harmless(sim, sequence):
    with serial.Serial(sim.console_port, 115200, timeout=0.1) as port:
        port.write(b"\x03")
        read_until(port, b">>> ")
        port.write(sequence)
        time.sleep(0.3)
        port.write(b"print(40 + 2)\r")
        out = read_until(port, b"42")
        assert b"KeyboardInterrupt" not in out.split(b"40 + 2")[-1]
