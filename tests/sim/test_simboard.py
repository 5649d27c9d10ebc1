"""The simulated board as a board: boot, clean stop, energy against the truth, power,
virtual time, the optical port and firmware crashes. The firmware runs in MicroPython."""

from __future__ import annotations

import os
import threading
import time

import holdup
import pytest

from host_tools.c1218 import Client
from host_tools.repo import firmware_module
from host_tools.sim import FirmwareCrashed, SimBoard, SimError
from host_tools.sim.board import PICO_FREE_AFTER_BOOT

G = firmware_module("lcd_glyphs")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0): look at its state
    with open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[1].split()[0] != "Z"


def _sim_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith(("sim-", "optical-"))]


def read_items(board: SimBoard, idents=("DE", "NG", "NT"), step: float = 1.0, limit: float = 60.0) -> dict:
    """Run the board until each display item has been on the LCD; return ident -> (value, ann)."""
    seen: dict[str, tuple[float, int]] = {}
    t = 0.0
    while len(seen) < len(idents) and t < limit:
        text, dots, ann = board.hw.lcd.display()
        ident = text[:2]
        if ident in idents:
            value = int(text[2:]) / 10.0 if dots == G.dot_after(1) else int(text[2:])
            seen[ident] = (-value if ann & G.ANN_NEG else value, ann)
        board.run(step)
        t += step
    assert len(seen) == len(idents), f"the LCD never showed {set(idents) - set(seen)}"
    return seen


def test_boots_and_stops_leaving_nothing_behind():
    board = SimBoard(seed=1).start()
    pid = board.firmware_pid()
    assert pid and _alive(pid)
    assert board.hw.hello_count == 1
    assert board.lcd_text().strip(), "the firmware shows something on the LCD after boot"
    state_dir = board.state_dir
    board.close()
    assert not _alive(pid)
    assert _sim_threads() == []
    assert not state_dir.exists(), "a temporary state dir is removed"


def test_stops_cleanly_when_the_test_fails():
    pid = None
    with pytest.raises(RuntimeError):
        with SimBoard(seed=1) as board:
            pid = board.firmware_pid()
            raise RuntimeError("a failing test")
    assert pid and not _alive(pid)
    assert _sim_threads() == []


def test_registers_delivered_energy_close_to_the_truth(sim):
    sim.set_load(240.0, 20.0, pf=1.0)
    sim.run(2 * 3600)
    truth = sim.true_energy_wh()
    assert truth["delivered"] == pytest.approx(9600.0)
    items = read_items(sim)
    # uncalibrated (issue 3 calibrates): the board's analog errors stay within 2 %
    assert items["DE"][0] == pytest.approx(truth["delivered"] / 1000, rel=0.02)
    assert items["NG"][0] == 0
    assert items["DE"][1] & G.ANN_KWH


def test_export_counts_as_received_and_net_goes_negative(sim):
    sim.set_load(240.0, 10.0)
    sim.run(1800)  # 1.2 kWh in
    sim.set_load(240.0, -20.0)  # rooftop solar exporting 4.8 kW
    sim.run(3600)
    truth = sim.true_energy_wh()
    assert truth["received"] == pytest.approx(4800.0, abs=0.01)
    items = read_items(sim)
    assert items["NG"][0] == pytest.approx(4.8, abs=0.15)
    assert items["DE"][0] == pytest.approx(1.2, abs=0.15)
    assert items["NT"][0] < 0 and items["NT"][1] & G.ANN_NEG


def test_optical_port_answers_identify(sim):
    with Client.open(sim.optical_port) as client:
        std, ver, rev = client.identify()
    assert (std, ver, rev) == (0, 1, 0)


def test_metering_goes_on_while_the_port_talks(sim):
    sim.set_load(120.0, 5.0)
    with Client.open(sim.optical_port) as client:
        for _ in range(5):
            client.identify()
            sim.run(600)
    assert sim.true_energy_wh()["delivered"] == pytest.approx(120 * 5 * 3000 / 3600, rel=1e-3)
    assert read_items(sim)["DE"][0] == pytest.approx(0.5, abs=0.11)


def test_power_cut_stops_the_vm_and_power_on_restarts_the_firmware(sim):
    sim.set_load(240.0, 10.0)
    sim.run(60)
    pid = sim.firmware_pid()
    before = dict(sim.true_energy_wh())
    sim.power_off()
    assert not _alive(pid)
    sim.run(3600)  # an hour's outage: nothing flows through a dead line
    assert sim.true_energy_wh() == before
    sim.power_on()
    assert sim.hw.hello_count == 2
    assert sim.firmware_pid() != pid
    sim.run(60)
    assert sim.true_energy_wh()["delivered"] > before["delivered"]


def test_the_line_fails_and_the_supply_holds_up_then_cuts(sim):
    """power_off(sag_ms=H): the line fails now and the supply lasts H ms from then. The
    metering chip's own SAG comes only after its detection delay (tests/sim/holdup.py):
    a hold-up shorter than the shortest detection gives the firmware no warning, so no
    record; one that covers the worst detection and the save gives it its delta."""
    sim.set_load(240.0, 10.0)  # 60 Hz
    sim.run(30)
    ee = sim.hw.eeprom
    writes = sum(ee.page_writes)
    t0 = sim.virtual_time()
    short = holdup.detection_min_ms(60.0) - 0.5
    sim.power_off(sag_ms=short)
    assert not sim.hw.powered
    assert (sim.virtual_time() - t0) * 1000 == pytest.approx(short, abs=0.01)
    assert sum(ee.page_writes) == writes, "cut before the chip could warn"
    sim.power_on()
    sim.run(30)
    writes = sum(ee.page_writes)
    t0 = sim.virtual_time()
    sim.power_off(sag_ms=holdup.hold_up_ms(60.0))
    assert (sim.virtual_time() - t0) * 1000 == pytest.approx(holdup.hold_up_ms(60.0), abs=0.01)
    assert sum(ee.page_writes) == writes + 1, "the warning's delta, one page"


def test_a_day_runs_in_seconds_and_is_deterministic():
    runs = []
    for _ in range(2):
        with SimBoard(seed=7) as board:
            board.set_load(240.0, 15.0, pf=0.9)
            t = time.monotonic()
            board.run(24 * 3600)
            wall = time.monotonic() - t
            runs.append(
                (board.virtual_time(), board.lcd_text(), board.hw.ops, board.hw.ade.peek(0x21E), board.true_energy_wh())
            )
    print(f"24 h of virtual time in {wall:.1f} s of wall time ({86400 / wall:.0f}x real time)")
    # The goal is under 30 s (tests/bench/sim_speed.py prints the figure: 25-40 s
    # on this machine). A timed assert that close flakes on a loaded CI machine, so the
    # suite guards against gross slow-downs (a hang or a busy loop) only.
    assert wall < 180.0
    assert runs[0] == runs[1]


def test_firmware_exception_at_boot_is_reported_with_its_traceback(tmp_path):
    fs = tmp_path / "fs"
    fs.mkdir()
    (fs / "main.py").write_text("def start():\n    raise ValueError('boom at boot')\n\nstart()\n")
    with pytest.raises(FirmwareCrashed, match="boom at boot") as info:
        SimBoard(state_dir=tmp_path, flash=False).start()
    assert "Traceback" in str(info.value) and "main.py" in str(info.value)


def test_firmware_exception_while_running_fails_the_run(tmp_path):
    board = SimBoard(state_dir=tmp_path, seed=1).start()
    try:
        # a firmware that meters a little, then dies
        (tmp_path / "fs" / "main.py").write_text(
            "import board, meter, time\n"
            "m = meter.Meter(board.make())\n"
            "m.boot()\n"
            "for _ in range(5):\n"
            "    m.clock.wait_until(time.ticks_add(m.clock.ticks_ms(), 1000))\n"
            "raise RuntimeError('firmware fault after 5 s')\n"
        )
        board.power_off()
        board.power_on(boot_seconds=0)
        with pytest.raises(FirmwareCrashed, match="firmware fault after 5 s"):
            board.run(60)
    finally:
        pid = board.firmware_pid()
        board.close()
    assert pid is None or not _alive(pid)


def test_a_board_that_is_not_running_is_reported_not_waited_for(sim):
    sim.console.interrupt()  # Ctrl-C: the meter's own prompt (console.py); it meters on
    sim.run(10)
    _resume_exec(sim, "m.stop()")  # stopped: MicroPython's REPL waits
    with pytest.raises(SimError, match="not running"):
        sim.run(10)


def _resume_exec(board: SimBoard, code: str) -> str:
    import subprocess
    import sys
    from pathlib import Path

    mpremote = Path(sys.executable).parent / "mpremote"
    r = subprocess.run(
        [str(mpremote), "connect", board.console_port, "resume", "exec", code],
        capture_output=True, text=True, timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


def test_the_heap_after_boot_is_no_kinder_than_a_pico_s(sim):
    """The VM's heap (host_tools/sim/board.py says how it was chosen) leaves no more free
    bytes after boot than the Pico has with the same firmware from .mpy files: every
    allocation costs this 64-bit VM at least as many bytes, so it runs out first."""
    sim.run(4.0)
    free = int(_resume_exec(sim, "import gc; gc.collect(); print(gc.mem_free())").split()[-1])
    print(f"free after boot: {free:,} B (the Pico: {PICO_FREE_AFTER_BOOT:,} B)")
    assert free <= PICO_FREE_AFTER_BOOT


def test_the_stopped_firmware_can_still_use_its_board_at_the_repl(sim):
    """After m.stop() the REPL keeps `m`, and its board's link."""
    _resume_exec(sim, "m.stop()")
    sim.set_seal_plug(True)
    assert _resume_exec(sim, "m.board.clock.sync(); print(m.board.seal_plug.value())") == "0"
    sim.set_seal_plug(False)
    assert _resume_exec(sim, "m.board.clock.sync(); print(m.board.seal_plug.value())") == "1"
    # a second board at the REPL replaces the first connection instead of hanging (inside a
    # running meter it would cut the meter off its hardware: flash.py never makes one there)
    out = _resume_exec(sim, "import board; b2 = board.make(); print(b2.i2c.scan())")
    assert out == "[80, 104]"  # the 24LC256 at 0x50, and at 0x68 the DS3231: the default RTC chip


def test_a_cut_during_an_eeprom_write_cycle_tears_that_page(tmp_path):
    board = SimBoard(state_dir=tmp_path, seed=3).start()
    try:
        (tmp_path / "fs" / "main.py").write_text(
            "import board, time\n"
            "b = board.make()\n"
            "b.i2c.writeto_mem(0x50, 0x0100, bytes(range(64)), addrsize=16)\n"  # page 4, whole
            "t = time.ticks_add(b.clock.ticks_ms(), 20)\n"
            "while True:\n"
            "    b.clock.wait_until(t)\n"
            "    b.i2c.writeto_mem(0x50, 0x0140, b'\\xAA' * 64, addrsize=16)\n"  # page 5
            "    t = time.ticks_add(t, 1000)\n"
        )
        board.power_off()
        board.power_on(boot_seconds=0)
        board.run(0.5)
        assert board.hw.eeprom.dump()[0x100:0x140] == bytes(range(64))
        board.power_off(during_write=True)
        board.run(2)
        assert not board.hw.powered
        assert board.hw.eeprom.dump()[0x140:0x180] != b"\xaa" * 64, "the page in flight is torn"
        assert board.hw.eeprom.dump()[0x100:0x140] == bytes(range(64)), "other pages are intact"
    finally:
        board.close()


def test_optical_port_pacing_follows_the_baud_rate():
    with SimBoard(seed=1, optical_pacing=True) as board:
        with Client.open(board.optical_port) as client:
            t = time.monotonic()
            for _ in range(10):
                client.identify()
            elapsed = time.monotonic() - t
    # each exchange: ACK (1 byte) + a 13-byte response from the meter at 9600 baud
    assert elapsed >= 10 * 14 * 10 / 9600
