"""The watchdog and the supervisor: an exception that escapes the metering loop, or a loop
that stops (a bus stuck low), ends in a watchdog reset of the MCU alone; the meter files
the fault, counts the start by its cause (MT6, `meterctl status --json`) and meters on,
losing nothing the metering chip still held.

Expected energies come from the simulated source (volts x amps x time), on an ideal board
(no gain errors, no noise), so one poll's energy is the bound a hand computation gives.
"""

from __future__ import annotations

import json

import pytest

from host_tools import readout
from host_tools.c1218 import Client
from host_tools.sim import SimBoard

pytestmark = pytest.mark.sim_only

VOLTS, AMPS = 240.0, 10.0
POLL_WH = VOLTS * AMPS * 1.0 / 3600  # one 1 s poll at 2,400 W: 0.667 Wh
WDT_S = 8.0  # firmware/meter.py WDT_TIMEOUT_MS, as the note states it


def _read(board: SimBoard) -> tuple[float, dict, list, dict]:
    """The source's delivered Wh, and the meter's registers, events and status once it has
    polled all of it: the load off, then two polls (a register lags by up to a poll)."""
    board.set_load(VOLTS, 0.0)
    board.run(2.5)
    truth = board.true_energy_wh()["delivered"]
    with Client.open(board.optical_port).session(password="") as c:
        out = truth, readout.read_registers(c), readout.event_rows(c), readout.read_status(c)
    board.set_load(VOLTS, AMPS)
    return out


def test_an_exception_in_a_poll_is_filed_the_watchdog_resets_and_nothing_is_lost():
    with SimBoard(seed=3, ideal=True) as board:
        board.set_load(VOLTS, AMPS)
        board.run(120)
        board.inject_fault("poll")
        t_fault = board.virtual_time()
        board.run(3600)
        truth, regs, events, status = _read(board)
        resets = board.mcu_resets
        console = board.console.text()

    # one MCU reset, by the watchdog: its timeout after the last feed, the poll before the
    # one that raised (polls are 1 s apart; the injection lands between two)
    assert [name for _, name in resets] == ["watchdog"]
    assert t_fault - 1.0 + WDT_S <= resets[0][0] <= t_fault + WDT_S
    assert "RuntimeError: fault injected by SimBoard.inject_fault" in console
    # filed: the event with its type and module (the simulated board's SPI raised it)
    faults = [e for e in events if e["name"] == "FIRMWARE_FAULT"]
    assert len(faults) == 1 and faults[0]["detail"].startswith("RuntimeError in board.py line ")
    starts = [e for e in events if e["name"] == "RESET"]
    assert len(starts) == 1 and starts[0]["detail"].startswith("fault, down ")
    assert not [e for e in events if e["name"] == "POWER_DOWN"]  # the line never failed
    assert status["resets"] == {"power_on": 1, "watchdog": 0, "fault": 1, "reset": 0}
    assert status["last_start"] == "fault"
    assert status["last_fault"] == faults[0]["detail"]
    # metering resumed and lost at most the poll that raised: the chip kept its energy
    # through the reset (warm start), the registers were saved before it
    assert truth - POLL_WH - 0.001 <= regs["delivered_wh"] <= truth + 0.001


def test_a_hang_is_reset_by_the_watchdog_and_metering_resumes():
    with SimBoard(seed=4, ideal=True) as board:
        board.set_load(VOLTS, AMPS)
        board.run(600)
        board.inject_fault("hang")
        board.run(120)
        truth0, regs0, _, status = _read(board)
        board.run(1800)
        truth1, regs1, events, _ = _read(board)
        resets = board.mcu_resets

    assert [name for _, name in resets] == ["watchdog"]
    assert status["resets"]["watchdog"] == 1 and status["last_start"] == "watchdog"
    assert not [e for e in events if e["name"] == "FIRMWARE_FAULT"]  # nothing to file: it hung
    # what was in RAM since the last register record is lost (at most SAVE_MS = 60 s of
    # energy, or the 50 Wh step, plus a poll); the chip's count since the last poll is not
    lost = truth0 - regs0["delivered_wh"]
    assert -0.001 <= lost <= 60 * VOLTS * AMPS / 3600 + POLL_WH
    # and from then on it meters exactly
    assert regs1["delivered_wh"] - regs0["delivered_wh"] == pytest.approx(truth1 - truth0, abs=0.001)


def test_a_fault_that_comes_back_at_every_start_is_counted_but_logged_sparingly():
    with SimBoard(seed=5, ideal=True) as board:
        board.set_load(VOLTS, AMPS)
        board.run(30)
        for _ in range(3):
            board.inject_fault("poll")
            board.run(30)
        _, _, events, status = _read(board)
    assert status["resets"]["fault"] == 3 and status["last_fault_repeats"] == 3
    # logged at the 1st and 2nd of the run (then 4th, 8th...): the log is not flooded
    assert len([e for e in events if e["name"] == "FIRMWARE_FAULT"]) == 2
    assert len([e for e in events if e["name"] == "RESET"]) == 3


def test_power_cuts_and_resets_are_counted_by_cause_in_meterctl_status(meterctl):
    with SimBoard(seed=6) as board:
        board.set_load(VOLTS, AMPS)
        board.run(10)
        board.power_off()
        board.run(5)
        board.power_on()
        board.run(10)
        out = meterctl("status", "--port", board.optical_port, "--json")
        text = meterctl("status", "--port", board.optical_port)
    assert out.returncode == 0, out.stderr
    status = json.loads(out.stdout)
    assert status["resets"] == {"power_on": 2, "watchdog": 0, "fault": 0, "reset": 0}
    assert status["last_start"] == "power_on" and status["last_fault"] is None
    assert "clock" in status and "clock_valid" in status
    assert "power on 2, watchdog 0, fault 0, reset 0; last: power on" in text.stdout


def test_the_longest_legitimate_steps_stay_inside_the_watchdog_timeout():
    """A calibration step (offsets: 600 s of the chip's time), a full load-profile read and
    an event-log read over the optical port, and boots (first and warm) run with the
    watchdog armed: none of them is reset, and the longest stretch between two feeds stays
    under the timeout (tests/bench/watchdog.py prints the figures)."""
    from host_tools import program

    with SimBoard(seed=7) as board:
        board.set_load(VOLTS, 0.0)
        hw = board.hw
        with Client.open(board.optical_port).session(password="") as c:
            board.set_speed(400)
            program.calibrate(c, VOLTS, 0.0, 1.0, 600)
            board.set_speed(0)
            readout.read_profile(c)
            readout.event_rows(c)
        board.power_off()
        board.power_on()
        board.run(5)
        longest = hw.wdt_longest_us / 1e6
        resets = board.mcu_resets
    assert resets == []
    assert 0 < longest < WDT_S
