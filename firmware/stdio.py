"""The board's USB console (sys.stdin/sys.stdout) as a port the meter can own.

    port = stdio.Stdio()       # boards/pico and boards/esp32: board.console
    port.take(True)            # Ctrl-C is a byte the meter reads, not a KeyboardInterrupt
    if port.any():             # cheap, no allocation: the loop asks every turn
        n = port.readinto(buf) # only what is waiting: never blocks
    port.write(b"OK")
    port.take(False)           # Ctrl-C interrupts again (the REPL's, or code the console runs)

MicroPython's REPL reads the same stream, but only when no script runs: while main.py
meters, the bytes wait for whoever reads them, and the one thing that reaches the VM
on its own is the keyboard-interrupt character. `micropython.kbd_intr(-1)` turns that
off (rp2: the USB CDC and UART receive paths; esp32: the UART and USB-serial-JTAG
drivers), so nothing breaks into the running meter: console.py decides what the bytes
do. `kbd_intr(3)` gives Ctrl-C back.

A board's stdin `readinto` fills the whole buffer before it returns, so bytes are read
one at a time while poll says one is waiting. `ipoll` reuses its result tuple (made at
the first call, here in the constructor): `any()` allocates nothing.
"""

import select
import sys

import micropython


class Stdio:
    def __init__(self):
        self._in = sys.stdin.buffer
        self._out = sys.stdout.buffer
        self._poll = select.poll()
        self._poll.register(sys.stdin, select.POLLIN)
        self._one = bytearray(1)
        self.any()  # ipoll's result tuple is made now, not in the loop

    def any(self):
        for _ in self._poll.ipoll(0):
            return 1
        return 0

    def readinto(self, buf):
        """Read what is waiting, up to len(buf) bytes; their number (0: nothing)."""
        n = 0
        one = self._one
        size = len(buf)
        while n < size and self.any():
            if not self._in.readinto(one):
                break
            buf[n] = one[0]
            n += 1
        return n

    def write(self, data):
        self._out.write(data)

    def take(self, on):
        micropython.kbd_intr(-1 if on else 3)
