"""Time source for the firmware on a real board.

The firmware never calls ``time`` for scheduling: it asks the board's clock, so
that the simulated board (boards/sim/) can hand it a ``Clock`` with the same
three methods running on a virtual clock shared with the virtual hardware. A
day of metering then runs in seconds, deterministically, and the same firmware
bytes run on both. This module is the real-time implementation used by
boards/pico and boards/esp32; its only time source is ``time``.

Ticks are MicroPython ticks: they wrap (every 2**30 ms on the RP2040 and the
ESP32), so compare them only with ``time.ticks_diff`` and move them only with
``time.ticks_add``. A virtual clock must hand out values in the same ticks
space so that those two functions stay correct.

Usage::

    import time
    from clock import Clock

    clock = Clock()
    deadline = time.ticks_add(clock.ticks_ms(), 1000)
    clock.wait_until(deadline, uart.any)   # back at the deadline or on the first byte

``wait_until`` sleeps in steps of at most 1 ms and allocates nothing itself,
so it may run in the steady-state loop; whether the whole call is
allocation-free also depends on ``wake``.
"""

import time

from micropython import const

# MicroPython never evaluates annotations and has no ``typing``: this block is
# for type checkers only (mypy treats any ``TYPE_CHECKING`` name as true) and the
# compiler drops it, since the constant is False.
TYPE_CHECKING = const(False)
if TYPE_CHECKING:
    from typing import Callable

    # The MicroPython stubs give tick values opaque types so that only
    # time.ticks_diff/ticks_add may combine them; other modules can take these
    # names from here inside their own ``if TYPE_CHECKING:`` block.
    from _mpy_shed.time_mp import _TicksMs as TicksMs
    from _mpy_shed.time_mp import _TicksUs as TicksUs


class Clock:
    """Real-time clock for the firmware's scheduler (see the module docstring)."""

    def ticks_ms(self) -> TicksMs:
        """Millisecond tick counter (wrapping; use time.ticks_diff)."""
        return time.ticks_ms()

    def ticks_us(self) -> TicksUs:
        """Microsecond tick counter (wrapping; use time.ticks_diff)."""
        return time.ticks_us()

    def wait_until(
        self, deadline_ms: TicksMs, wake: Callable[[], object] | None = None, silence: TicksMs | None = None
    ) -> None:
        """Return at ``deadline_ms`` (a ticks_ms value) or as soon as ``wake()`` is truthy.

        ``wake`` may return a bool or a count (``uart.any`` fits); it is
        called first, so pending work is seen even when the deadline has
        passed, and ``None`` means a plain sleep (as on the simulated board).
        The deadline is compared with ``time.ticks_diff``, so it is safe
        across the tick counter's wrap. Between checks the CPU sleeps 1 ms,
        which lets scheduled pin-IRQ handlers run and caps the extra latency
        at about 1 ms.

        ``silence`` is when the optical port's earliest timer that runs on the
        client's silence fires (``c1218.Link.deadline()``), or None: the sleep
        also ends then, so the timer acts on time rather than at the next poll.
        One already due when the sleep starts is ignored (the loop has just run
        the timers: ending the sleep at once would only make the loop spin).
        The simulated board's clock also uses it to hold virtual time for a
        real client (boards/sim/README.md, Time).
        """
        ticks_ms = time.ticks_ms
        ticks_diff = time.ticks_diff
        sleep_ms = time.sleep_ms
        if silence is not None and ticks_diff(silence, ticks_ms()) > 0 and ticks_diff(silence, deadline_ms) < 0:
            deadline_ms = silence
        while True:
            if wake is not None and wake():
                return
            if ticks_diff(deadline_ms, ticks_ms()) <= 0:
                return
            sleep_ms(1)
