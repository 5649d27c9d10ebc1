"""24LC-series I2C EEPROM: page-split writes and acknowledge polling with a deadline.

    import eeprom
    ee = eeprom.EEPROM(b.i2c, b.eeprom_addr, b.eeprom_size, b.eeprom_page, b.clock)
    ee.write(0x4000, record)         # split at page boundaries; back when the chip is ready
    ee.read_into(0x4000, buf)        # raises OSError (EEPROMError or the bus's) on no ACK

The geometry comes from the board (24LC256: 32 KiB in 64-byte pages; 24LC512: 64 KiB in
128-byte pages): the driver never probes it with a write, because a probe overwrites
data and a power cut during it loses that data. A page write that runs past its page
wraps to the page's start on the chip, so every write is split at page boundaries.
The chip's write cycle starts at STOP and lasts up to 5 ms, during which it does not
acknowledge its address: the driver polls for that acknowledge (START, control byte,
one address byte, STOP: no data, so nothing is programmed) back to back, so the
write returns as soon as the cycle ends, and gives up after a deadline on the board's
clock rather than sleeping a fixed time or waiting for ever. (No sleep between polls:
on the simulated board each poll's bus time is what moves the clock forward, and a
REPL session at speed 0 has no other.)
"""

import time

from micropython import const

_READY_TIMEOUT_MS = const(20)  # four times the datasheet's 5 ms maximum write cycle


class EEPROMError(OSError):
    """The chip did not finish a write cycle in time, or is not there."""


class Aborted(Exception):
    """A write stopped before one of its pages because abort() asked (the power-fail
    warning: the hold-up time is for the registers' last record, not for a log's or the rest
    of a long one). The pages written are whole; the record's CRC marks it unfinished."""


# The one Aborted, made once: the warning comes when the chip says so, also inside a
# metering step (run under heap_lock() in tests/sim/test_heap.py), and an exception made at
# that moment would need the heap. Raising an instance allocates nothing with the heap locked
# (MicroPython skips the traceback then); unlocked, its traceback keeps one 32-byte buffer.
_ABORTED = Aborted()


class EEPROM:
    """One 24LC-series chip; reads and writes of any length at any address."""

    def __init__(self, i2c, addr, size, page, clock):
        if size <= 0 or size & (size - 1) or size > 0x10000:
            raise ValueError("EEPROM size must be a power of two up to 65536")
        if page <= 0 or page & (page - 1) or page > size:
            raise ValueError("EEPROM page must be a power of two up to the size")
        self._i2c = i2c
        self.addr = addr
        self.size = size
        self.page = page
        self._clock = clock
        self._poll = bytearray(1)  # the acknowledge poll's lone address byte
        self.writes = 0  # page writes issued since boot (diagnostics, benchmarks)
        self.abort = None  # a callable: True stops a write of several pages (meter.py: a chip IRQ)

    def ready(self):
        """One acknowledge poll: True if the chip answers now (idle and present)."""
        try:
            self._i2c.writeto(self.addr, self._poll)
        except OSError:
            return False
        return True

    def wait_ready(self):
        """Poll for the acknowledge until the write cycle ends, or raise EEPROMError."""
        clock = self._clock
        deadline = time.ticks_add(clock.ticks_ms(), _READY_TIMEOUT_MS)
        while not self.ready():  # each poll takes its bus time (about 70 us at 400 kHz)
            if time.ticks_diff(clock.ticks_ms(), deadline) >= 0:
                raise EEPROMError("EEPROM at 0x%02x did not acknowledge within %d ms" % (self.addr, _READY_TIMEOUT_MS))

    def _check(self, mem, n):
        if mem < 0 or n < 0 or mem + n > self.size:
            raise ValueError("EEPROM access of %d bytes at 0x%04x is outside the chip" % (n, mem))

    def read_into(self, mem, buf):
        """Fill buf from address mem (sequential read, one bus transaction)."""
        self._check(mem, len(buf))
        self._i2c.readfrom_mem_into(self.addr, mem, buf, addrsize=16)

    def write(self, mem, data, pages=None):
        """Write data at mem, one page write per page touched, each waited for; before each
        page, abort() may stop it (Aborted). A record saved from the metering loop must not
        allocate: one that fits its page goes as it is, and a longer one at a page boundary
        can come with `pages`, its page-sized views made once (pages_of)."""
        n = len(data)
        self._check(mem, n)
        page = self.page
        if n <= page - (mem & (page - 1)):
            self._stop_if_asked()
            self._write_page(mem, data)
            return
        if pages is not None and not mem & (page - 1):
            for chunk in pages:
                self._stop_if_asked()
                self._write_page(mem, chunk)
                mem += len(chunk)
            return
        mv = memoryview(data)
        done = 0
        while done < n:
            at = mem + done
            take = min(n - done, page - (at & (page - 1)))
            self._stop_if_asked()
            self._write_page(at, mv[done : done + take])
            done += take

    def _stop_if_asked(self):
        """Before each page: raise Aborted if abort() says so."""
        if self.abort is not None and self.abort():
            raise _ABORTED

    def _write_page(self, mem, data):
        self._i2c.writeto_mem(self.addr, mem, data, addrsize=16)
        self.writes += 1
        self.wait_ready()

    def pages_of(self, buf):
        """buf as page-sized memoryviews, for write(mem, buf, pages) at a page boundary."""
        mv = memoryview(buf)
        return [mv[i : i + self.page] for i in range(0, len(buf), self.page)]
