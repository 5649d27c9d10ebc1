"""The simulated board's USB console behaves like a board's, and the meter owns it while it
meters (firmware/console.py): mpremote and ampy work unchanged (no `resume` needed) and
run their code inside the running meter, which goes on metering; Ctrl-C opens the meter's
own REPL instead of stopping it; Ctrl-D there, and `mpremote soft-reset` and `reset`, do
what they do on a board. The sealed console: test_console_seal.py."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial

from host_tools.sim import SimBoard, SimError

BIN = Path(sys.executable).parent
WATTS = 240.0 * 10.0  # the load every test here applies: 2.4 kW, 40 Wh a minute


def tool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, timeout=timeout)


def mpremote(board: SimBoard, *args: str) -> str:
    r = tool("mpremote", "connect", board.console_port, *args)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


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


def wait_for(cond, what: str, seconds: float = 20.0) -> None:
    end = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.fixture
def ideal():
    """A board without the simulated chip's errors, metering 2.4 kW: its registers follow the
    source to the watt-hour, so metering across console use is checked against the truth."""
    with SimBoard(seed=1, ideal=True) as board:
        board.set_load(240.0, 10.0)
        yield board


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


def test_mpremote_exec_runs_in_the_meter_and_metering_goes_on(ideal):
    """The README's example: it reads the running meter and does not stop it."""
    hellos = ideal.hw.hello_count
    ideal.run(60)
    first = int(mpremote(ideal, "exec", "print(m.energy.delivered_wh)"))
    assert first == pytest.approx(WATTS * 60 / 3600, abs=1)  # 40 Wh in the first minute
    ideal.run(600)
    second = int(mpremote(ideal, "resume", "exec", "print(m.energy.delivered_wh)"))
    assert second - first == pytest.approx(WATTS * 600 / 3600, abs=1)  # 400 Wh in ten minutes
    polls = mpremote(ideal, "exec", "print(m.polls, m.console.serving)").split()
    assert int(polls[0]) >= 660 and polls[1] == "True"  # code runs from the meter's own loop
    assert ideal.hw.hello_count == hellos and ideal.console.reboots == 0, "the firmware never restarted"


def test_ampy_put_and_run_while_the_meter_meters(ideal, tmp_path):
    ideal.run(60)
    script = tmp_path / "look.py"
    script.write_text("print(m.energy.delivered_wh)\n")
    r = tool("ampy", "--port", ideal.console_port, "run", str(script))
    assert r.returncode == 0, r.stderr
    first = int(r.stdout.strip())
    notes = tmp_path / "notes.txt"
    notes.write_text("bench 3\n")
    r = tool("ampy", "--port", ideal.console_port, "put", str(notes), "notes.txt")
    assert r.returncode == 0, r.stderr
    ideal.run(300)
    r = tool("ampy", "--port", ideal.console_port, "run", str(script))
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.strip()) - first == pytest.approx(WATTS * 300 / 3600, abs=1)  # 200 Wh in 5 min
    assert (ideal.state_dir / "fs" / "notes.txt").read_text() == "bench 3\n"


def test_ctrl_c_opens_the_meters_own_repl_and_the_meter_meters_on(ideal):
    with serial.Serial(ideal.console_port, 115200, timeout=0.1) as port:
        port.write(b"\x03")
        out = read_until(port, b">>> ")
        assert b"m.stop()" in out and b"KeyboardInterrupt" not in out  # a hint, not a stopped main.py
        port.write(b"m.polls\r")
        polls = int(read_until(port, b">>> ").split(b"\r\n")[1].split()[0])
        ideal.run(30)  # the loop polls while a person sits at the prompt
        port.write(b"m.polls\r")
        assert int(read_until(port, b">>> ").split(b"\r\n")[1].split()[0]) == pytest.approx(polls + 30, abs=1)
        port.write(b"for k in range(3):\r    print('k', k)\r\r")
        out = read_until(port, b">>> ")
        assert b"k 0" in out and b"k 2" in out
        port.write(b"1 / 0\r")
        out = read_until(port, b">>> ")
        assert b'File "<stdin>", line 1' in out and b"ZeroDivisionError" in out
        # Ctrl-C interrupts the code it runs, as on a board, and only that code
        port.write(b"import time\r")
        read_until(port, b">>> ")
        port.write(b"while True: time.sleep_ms(5)\r")
        time.sleep(0.5)
        port.write(b"\x03")
        assert b"KeyboardInterrupt" in read_until(port, b">>> ")
        energy = ideal.true_energy_wh()["delivered"]
        ideal.run(60)
        port.write(b"m.energy.delivered_wh\r")
        got = int(read_until(port, b">>> ").split(b"\r\n")[1].split()[0])
        assert got == pytest.approx(energy + WATTS * 60 / 3600, abs=1)


def test_ctrl_d_at_the_meters_prompt_reboots_it(ideal):
    ideal.run(120)  # 80 Wh
    hellos = ideal.hw.hello_count
    with serial.Serial(ideal.console_port, 115200, timeout=0.1) as port:
        port.write(b"\x03")
        read_until(port, b">>> ")
        port.write(b"\x04")  # Ctrl-D at the friendly prompt: m.reboot(), a real soft reboot
        read_until(port, b"MPY: soft reboot")
    wait_for(lambda: ideal.hw.hello_count == hellos + 1, "main.py to run again")
    assert ideal.console.reboots == 1
    ideal.run(60)
    delivered = int(mpremote(ideal, "exec", "print(m.energy.delivered_wh)"))
    assert delivered == pytest.approx(WATTS * 180 / 3600, abs=1), "saved before the reboot, then metered on"


def test_m_stop_gives_micropythons_repl_with_mains_globals(sim):
    hellos = sim.hw.hello_count
    with serial.Serial(sim.console_port, 115200, timeout=0.1) as port:
        port.write(b"\x03")
        read_until(port, b">>> ")
        port.write(b"m.stop()\r")
        assert b"MicroPython" in read_until(port, b">>> ")  # the VM's own REPL speaks now
        port.write(b"print('meter' in globals(), type(board).__name__)\r")
        read_until(port, b"True module")
        read_until(port, b">>> ")
        with pytest.raises(SimError, match="not running"):
            sim.run(5)
        port.write(b"\x04")  # Ctrl-D at MicroPython's REPL: a soft reboot, main.py runs again
        read_until(port, b"soft reboot")
    wait_for(lambda: sim.hw.hello_count == hellos + 1, "main.py to run again")
    sim.set_load(240.0, 5.0)
    sim.run(30)  # and meters again


def test_raw_repl_soft_reset_resets_the_console_not_the_meter(sim):
    hellos = sim.hw.hello_count
    with serial.Serial(sim.console_port, 115200, timeout=0.1) as port:
        port.write(b"\r\x03\x03")
        read_until(port, b">>> ")
        port.write(b"\r\x01")
        read_until(port, b"raw REPL; CTRL-B to exit\r\n>")
        port.write(b"left_over = 1\x04")
        assert read_until(port, b"\x04>").startswith(b"OK\x04")
        port.write(b"\x04")  # Ctrl-D on an empty raw REPL: a board's soft reset, answered as one
        assert read_until(port, b"soft reboot\r\n").endswith(b"OK\r\nMPY: soft reboot\r\n")
        read_until(port, b"raw REPL; CTRL-B to exit\r\n>")
        port.write(b"print(1+1, 'left_over' in globals(), 'm' in globals())\x04")
        out = read_until(port, b"\x04>")
        assert out.startswith(b"OK2 False True")  # the console's globals are fresh; the meter is there
        port.write(b"\r\x02")
        read_until(port, b">>> ")
    assert sim.hw.hello_count == hellos, "the meter did not restart"
    sim.run(5)


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


def test_mpremote_soft_reset_and_reset_behave_as_on_a_board(ideal):
    ideal.run(60)
    hellos = ideal.hw.hello_count
    mpremote(ideal, "resume", "exec", "bench_note = 'set'")
    r = tool("mpremote", "connect", ideal.console_port, "soft-reset")
    assert r.returncode == 0, r.stderr
    assert mpremote(ideal, "resume", "exec", "print('bench_note' in globals(), 'm' in globals())") == "False True"
    assert ideal.hw.hello_count == hellos, "a soft reset from the raw REPL leaves the meter running"

    r = tool("mpremote", "connect", ideal.console_port, "reset")  # machine.reset(): an MCU reset
    assert r.returncode == 0, r.stderr
    wait_for(lambda: ideal.hw.hello_count == hellos + 1, "main.py after the MCU reset")
    assert [name for _, name in ideal.mcu_resets] == ["reset"] and ideal.hw.powered, "the chips kept power"
    ideal.run(60)
    assert int(mpremote(ideal, "exec", "print(m.polls)")) >= 55, "the restarted meter meters (its boot took a moment)"


def test_machine_reset_at_micropythons_repl_restarts_the_meter(sim):
    hellos = sim.hw.hello_count
    mpremote(sim, "resume", "exec", "m.stop()")
    with serial.Serial(sim.console_port, 115200, timeout=0.1) as port:
        port.write(b"\r")
        read_until(port, b">>> ")
        port.write(b"import machine; machine.reset()\r")
        wait_for(lambda: sim.hw.hello_count == hellos + 1, "main.py after machine.reset()")
    sim.run(10)
