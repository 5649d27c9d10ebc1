"""firmware/clock.py, the real boards' clock, in the MicroPython VM (real time): the third
argument of wait_until is when the optical port's next timer of the client's silence fires
(c1218.Link.deadline()). The sleep ends there so the timer acts on time; one already due
is ignored, so the loop never spins on it. Only orderings are checked, never durations:
each sleep here either ends at its 60 s deadline (the check fails) or well before it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MICROPYTHON = Path(sys.executable).parent / "micropython"

SCRIPT = """
import time
from clock import Clock
c = Clock()
add, diff = time.ticks_add, time.ticks_diff
def waited(deadline_ms, silence):
    t0 = c.ticks_ms()
    c.wait_until(add(t0, deadline_ms), None, None if silence is None else add(t0, silence))
    return diff(c.ticks_ms(), t0)
w = waited(60000, 30)
print("silence", w >= 30, w < 60000)
w = waited(60, -5)
print("past", w >= 60)
w = waited(40, 60000)
print("later", w >= 40, w < 60000)
w = waited(40, None)
print("none", w >= 40, w < 60000)
n = [0]
def wake():
    n[0] += 1
    return n[0] > 3
t0 = c.ticks_ms()
c.wait_until(add(t0, 60000), wake, add(t0, 50000))
print("wake", n[0] == 4, diff(c.ticks_ms(), t0) < 50000)
"""


def test_wait_until_ends_at_the_ports_timer_and_ignores_one_already_due():
    r = subprocess.run([str(MICROPYTHON), "-c", SCRIPT], capture_output=True, text=True, timeout=300,
                       cwd=REPO / "firmware")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.split("\n")
    assert "silence True True" in lines, "the sleep ends at the port's timer, not at the poll"
    assert "past True" in lines, "a timer already due does not end the sleep at once"
    assert "later True True" in lines and "none True True" in lines
    assert "wake True True" in lines, "wake() still ends the sleep first"
