"""The USB console while the meter meters: closed and logged when sealed, MicroPython's
REPL when not.

    c = console.Console(board, meter)   # namespace: main.py's globals (where `m` lives)
    c.start()                           # the meter owns the console from now (board.console.take)
    if c.any():                         # every loop turn: cheap, no allocation
        c.serve()                       # a bounded amount of work, then back to metering

A meter cannot leave its console to MicroPython's REPL: a Pico's or an ESP32's watchdog
cannot be stopped once armed and survives a soft reset, so a meter that dropped to the
REPL would be reset within seconds, and a Ctrl-C that raised KeyboardInterrupt anywhere
in the loop could cut a register save in two. So the firmware owns the console for as
long as it meters (board.console.take(True): Ctrl-C is a byte like any other), and
reads it between polls:

- Sealed (the software seal, or the seal plug in): every byte is read and dropped;
  nothing runs, nothing answers. The first byte after 60 s of silence on the console
  is logged (events.EV_CONSOLE_ACCESS: what closed it, that byte, the size of the burst
  before), so a flood of bytes costs one entry, not the log.
- Unsealed: repl.py (imported at the first byte, so a meter nobody talks to does not
  hold it) speaks MicroPython's raw REPL, as mpremote and ampy expect it, and a small
  friendly REPL for a person; the code they send runs here, between two polls, in
  main.py's globals. Metering never stops for it; `m.stop()` stops it and gives the
  console back to MicroPython's REPL.
"""

import time

from micropython import const

import events

_QUIET_MS = const(60000)  # a console silent this long: its next byte starts a new burst
_CHUNK = const(64)  # bytes taken per serve(): metering keeps the first claim on the loop
_SOFTWARE_SEAL = const(1)
_SEAL_PLUG = const(2)


class Console:
    def __init__(self, board, meter, namespace=None):
        self.port = board.console
        self.meter = meter
        self._ns = namespace
        self._clean = None  # the namespace before the first command: what a soft reset restores
        self._buf = bytearray(_CHUNK)
        self._pos = 0
        self._len = 0
        self.repl = None  # repl.Repl while unsealed and in use
        self.released = False  # m.stop(): the console goes back to MicroPython's REPL
        self.serving = False  # console code runs from the meter's loop (not at MicroPython's REPL)
        self.dropped = 0  # bytes dropped while sealed since the last logged access
        self._last_ms = 0
        self._quiet = True  # no byte yet, or none for _QUIET_MS

    def start(self):
        """The meter takes the console (again): Ctrl-C no longer breaks in."""
        self.released = False
        self.port.take(True)

    def release(self):
        """Give the console back to MicroPython's REPL (m.stop()); the REPL here goes quiet."""
        self.released = True
        self.repl = None
        self.port.take(False)

    def any(self):
        return self._pos < self._len or self.port.any()

    def namespace(self):
        """Where console code runs: main.py's globals (`m`, `board`) unless given."""
        ns = self._ns
        if ns is None:
            import __main__  # type: ignore[import-not-found]  # main.py's globals, a board's built-in

            ns = self._ns = __main__.__dict__
        if self._clean is None:
            self._clean = dict(ns)
        return ns

    def soft_reset(self):
        """What a board's soft reset does to the REPL's globals, without stopping the meter."""
        ns = self.namespace()
        clean = self._clean
        for name in [n for n in ns if n not in clean]:
            del ns[name]
        ns.update(clean)

    def serve(self):
        if self._pos >= self._len:
            self._len = self.port.readinto(self._buf)
            self._pos = 0
        seal = self.meter.services.seal
        plug = seal.plug_in()
        if seal.sealed or plug:
            self._drop((_SOFTWARE_SEAL if seal.sealed else 0) | (_SEAL_PLUG if plug else 0))
            return
        r = self.repl
        if r is None:
            import repl

            r = self.repl = repl.Repl(self)
        self.serving = True
        try:
            self._pos = r.feed(self._buf, self._pos, self._len)
        except KeyboardInterrupt:  # a Ctrl-C that slipped past the end of console code
            self._pos = self._len
            if not self.released:
                self.port.take(True)
        finally:
            self.serving = False

    def _drop(self, closed_by):
        """Sealed: the bytes go nowhere; a burst's first byte is logged."""
        self.repl = None  # a session left open when the meter was sealed ends here
        n = self._len - self._pos
        if n <= 0:
            return
        first = self._buf[self._pos]
        self._pos = self._len = 0
        now = self.meter.clock.ticks_ms()
        if self._quiet or time.ticks_diff(now, self._last_ms) >= _QUIET_MS:
            before = min(self.dropped, 0xFFFF)
            self.meter.events.record(events.EV_CONSOLE_ACCESS, bytes((closed_by, first, before & 0xFF, before >> 8)))
            self.dropped = 0
            self._quiet = False
        self.dropped += n
        self._last_ms = now
