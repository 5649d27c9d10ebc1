"""Pseudo-terminals: the simulated board's USB console and IR optical port.

A host tool opens `Pty.path` exactly as it opens /dev/ttyACM0; the simulator holds the
master side. It also keeps the slave open itself, so the port stays usable between two
tools (a closed last slave would make the master read EIO) and raw mode sticks.
"""

from __future__ import annotations

import errno
import os
import pty
import threading
import time
import tty


class Pty:
    """One pseudo-terminal pair in raw mode, the master non-blocking."""

    def __init__(self) -> None:
        self.master, self._slave = pty.openpty()
        tty.setraw(self._slave)
        self.path = os.ttyname(self._slave)
        os.set_blocking(self.master, False)
        self._closed = False
        self._stalled = False

    def read(self, n: int = 4096) -> bytes:
        try:
            return os.read(self.master, n)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                return b""
            raise

    def write(self, data: bytes, timeout: float = 1.0) -> int:
        """Write all of data unless nobody reads for `timeout` s: then drop the rest, as
        an IR LED shines into the void when no probe is there, and drop at once from then
        on until a reader takes bytes again (an unread port must not slow the board)."""
        done = 0
        end = time.monotonic() + (0.0 if self._stalled else timeout)
        while done < len(data):
            try:
                done += os.write(self.master, data[done:])
                self._stalled = False
            except BlockingIOError:
                if time.monotonic() > end:
                    self._stalled = True
                    break
                time.sleep(0.001)
        return done

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            for fd in (self.master, self._slave):
                try:
                    os.close(fd)
                except OSError:
                    pass


class PacedWriter:
    """Sends bytes to a Pty no faster than a UART at `baud` (10 bits a byte, 8N1)."""

    def __init__(self, port: Pty) -> None:
        self._port = port
        self._queue = bytearray()
        self._cv = threading.Condition()
        self.baud = 9600
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="optical-pacer", daemon=True)
        self._thread.start()

    def send(self, data: bytes) -> None:
        with self._cv:
            self._queue += data
            self._cv.notify()

    def _run(self) -> None:
        next_t = time.monotonic()
        while True:
            with self._cv:
                while not self._queue and not self._stop:
                    self._cv.wait()
                if self._stop:
                    return
                chunk = bytes(self._queue[:16])
                del self._queue[:16]
            now = time.monotonic()
            next_t = max(next_t, now)
            delay = next_t - now
            if delay > 0:
                time.sleep(delay)
            self._port.write(chunk)
            next_t += len(chunk) * 10.0 / self.baud

    def close(self) -> None:
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=1)
