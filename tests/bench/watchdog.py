"""Benchmark: the longest stretch between two watchdog feeds, step by step (issue 15, item 2).

The firmware arms an 8,000 ms watchdog before boot (firmware/meter.py WDT_TIMEOUT_MS; an
RP2040 takes at most 8,388 ms) and feeds it after each metering poll and between a
calibration step's sleeps. This runs, on the simulated board with the watchdog armed, the
steps that hold the loop longest and prints, for each, the longest stretch between two
feeds (from arming to the first feed for a boot):

- in virtual time: the bus transfers (SPI at 1 MHz, I2C at 400 kHz, EEPROM write cycles
  acknowledge-polled) and the sleeps, which a real board spends at the same rates;
- in host wall time: what the unix VM took here, IPC to the virtual hardware included (an
  upper bound of the VM's own computing, not an RP2040 figure: the emulated RP2040's
  figures are in /work/shared/rp2/README.md and firmware/README.md "Watchdog").

Run: .venv/bin/python tests/bench/watchdog.py
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from host_tools import program, readout
from host_tools.c1218 import Client
from host_tools.sim import SimBoard


def _reset(board: SimBoard) -> None:
    hw = board.hw
    with hw.cv:
        hw.wdt_longest_us = 0
        hw.wdt_longest_wall = 0.0
        hw.wdt_fed_us, hw.wdt_fed_wall = hw.vt_us, time.monotonic()


def _take(board: SimBoard) -> tuple[float, float]:
    hw = board.hw
    with hw.cv:
        return hw.wdt_longest_us / 1e6, hw.wdt_longest_wall


def main() -> int:
    rows: list[tuple[str, float, float]] = []
    t0 = time.monotonic()
    with SimBoard(seed=21, boot=False) as board:
        board.power_on()  # a blank EEPROM: formatted at this first boot
        board.run(2)
        rows.append(("first boot, blank EEPROM (format, first base)", *_take(board)))
        wdt_ms = board.hw.wdt_timeout_us // 1000  # what the firmware armed (meter.py WDT_TIMEOUT_MS)

        board.set_load(240, 30, pf=0.9)
        board.run(6 * 3600)  # a few load-profile blocks and log entries
        _reset(board)
        board.power_off()
        board.power_on()
        board.run(2)
        rows.append(("power-up boot (restore, state, 16 KiB load-profile ring scan)", *_take(board)))

        board.inject_fault("poll")
        board.run(9.5)  # the fault, then the watchdog's reset 8 s after the last feed
        _reset(board)
        board.run(5)
        rows.append(("warm boot after a watchdog reset (the chip adopted)", *_take(board)))

        with Client.open(board.optical_port).session(password="") as c:
            # each step then a poll's feed, which closes the stretch that holds the step
            _reset(board)
            readout.read_profile(c)
            board.run(1.1)
            rows.append(("full load-profile read (ST61, ST63, ST64)", *_take(board)))
            _reset(board)
            readout.event_rows(c)
            board.run(1.1)
            rows.append(("full event-log read (ST71, ST76: the index built at once)", *_take(board)))
            _reset(board)
            program.apply_settings(c, program.validate({"demand": {"interval_min": 30}}, "bench"))
            board.run(1.1)
            rows.append(("a configuration write (MT1) and its apply", *_take(board)))
            board.set_load(240, 0.0)
            _reset(board)
            board.set_speed(400)
            program.calibrate(c, 240, 0.0, 1.0, 600)
            board.set_speed(0)
            rows.append(("calibration step: offsets, 600 s of chip time", *_take(board)))

        _reset(board)
        board.set_load(240, 30)
        board.run(5)
        board.power_off(sag_ms=50)
        rows.append(("the last poll before a power cut with the sag warning", *_take(board)))
        resets = board.mcu_resets

    print(f"watchdog timeout {wdt_ms} ms; longest stretch between two feeds, per step:")
    print(f"  {'step':<66} {'virtual s':>9} {'wall s':>7}")
    for name, v, w in rows:
        print(f"  {name:<66} {v:9.3f} {w:7.3f}")
    worst = max(rows, key=lambda r: r[1])
    print(f"longest legitimate step: {worst[0]}: {worst[1]:.3f} s of virtual time "
          f"({worst[1] * 1000 / wdt_ms:.0%} of the timeout), {worst[2]:.3f} s of host wall time")
    print(f"MCU resets: {resets} (only the injected fault's is expected)")
    print(f"wall time {time.monotonic() - t0:.0f} s")
    bad = [r for r in resets if r[1] != "watchdog"] or len(resets) != 1 or worst[1] * 1000 >= wdt_ms
    return 1 if bad else 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    sys.exit(main())
