"""The firmware's RAM over a simulated week: its live data stays under the 48 KB goal, and
every metering step runs under micropython.heap_lock() (tests/bench/heap.py has the harness,
and says what this 64-bit VM cannot show: the whole firmware in `-X heapsize=64K`).

The week (about 3-4 minutes of wall time) runs once for the module; each test reads what
the board printed: one boot per power-up, a canary allocation caught per boot (the lock
works in this VM), the count of locked metering steps and any allocation inside one.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import heap  # noqa: E402

pytestmark = [pytest.mark.sim_only, pytest.mark.slow]

DAYS = 7


@pytest.fixture(scope="module")
def week() -> heap.Result:
    return heap.run(DAYS)


def test_a_week_keeps_its_live_data_under_48_kb(week):
    f = week.figures
    assert not f.tracebacks, "".join(f.tracebacks[:3])
    assert len(f.code) == 1 + len(heap.CUT_DAYS), "one boot, then one per power cut"
    samples = DAYS * 86400 // heap.SAMPLE_POLLS
    assert week.console.count("HEAP locked") >= samples - 10 * len(f.code), "the live data was sampled all week"
    # the goal is the firmware's: less the pool of interned names the VM adds for main.py's
    assert 0 < f.qstr_growth < max(f.booted) <= f.peak, (f.qstr_growth, max(f.booted), f.peak)
    assert f.peak - f.qstr_growth < heap.GOAL_BYTES, (f.peak, f.qstr_growth)
    # the meter metered all week through: an uncalibrated board (-0.6 % gain error)
    delivered, received = week.registered
    assert delivered == pytest.approx(week.truth["delivered"], rel=0.02)
    assert received == pytest.approx(week.truth["received"], rel=0.02)
    assert received > 1000, "the solar hours were received energy"


def test_no_metering_step_allocates_in_a_week(week):
    f = week.figures
    assert f.canaries == len(f.code), "heap_lock() must catch an allocation in this VM"
    assert f.caught == 0, "".join(f.tracebacks[:3])
    # (nearly) every poll of the week: not the few after each boot nor the cuts' minute off
    assert f.locked >= 0.99 * DAYS * 86400


# an LCD refresh that keeps a list of its times: an allocation in every metering step
ALLOCATING_REFRESH = """
import display
_tick = display.Display.tick
_seen = []
def _tick_and_remember(self, now):
    _tick(self, now)
    _seen.append(now)
display.Display.tick = _tick_and_remember
"""


def test_the_lock_catches_an_allocation_in_a_step():
    """The lock is not vacuous: a metering step that allocates is caught and reported."""
    board = heap.start(extra=ALLOCATING_REFRESH)
    try:
        board.run(20)
        time.sleep(0.3)
        f = heap.figures(board.console.text())
    finally:
        board.close()
    assert f.canaries == 1
    assert f.caught >= 15, f"{f.caught} allocations caught in 20 polls"
    assert "_tick_and_remember" in "".join(f.tracebacks)
