"""The meter: one cooperative loop that meters, saves, refreshes the LCD and serves the port.

    import board, meter
    m = meter.Meter(board.make())
    m.run()

Metering has the first claim on the loop: the chip is polled every POLL_MS (well inside
the 20 s an energy register takes to half-fill at full scale); the optical port gets
whatever bytes are waiting between polls, a bounded amount each time; the loop sleeps
on the board's clock until the next poll or an input event (port bytes, chip IRQ).
Each subsystem lives in its own module and owns its state; this module only wires
them together and decides the order of work.
"""

import time

from micropython import const

import ade7953
import c1218
import config
import display
import ht1621
import metrology
import psem
import status

VERSION = "0.1.0"
VERSION_NUMBER = const(0)  # C12.19 ST1 FW_VERSION_NUMBER / FW_REVISION_NUMBER
REVISION_NUMBER = const(1)
POLL_MS = const(1000)


class Meter:
    def __init__(self, board, cfg=None):
        self.board = board
        self.clock = board.clock
        self.config = cfg if cfg is not None else config.Config()
        self.status = status.Status()
        ade = ade7953.ADE7953(
            ade7953.SpiTransport(board.ade_spi, board.ade_cs), board.ade_reset, board.ade_irq, board.clock
        )
        self.metrology = metrology.Metrology(ade, board, self.config, self.status)
        self.display = display.Display(ht1621.HT1621(board.lcd_cs, board.lcd_wr, board.lcd_data), self)
        self.services = psem.Services(self)
        self.link = c1218.Link(board.optical, self.services.handle)
        self.polls = 0
        self.booted = False
        self._irq = board.ade_irq
        self._uart = board.optical

    @property
    def energy(self):
        return self.metrology.energy

    def _wake(self):
        return self._uart.any() or self._irq.value() == 0

    def boot(self):
        self.display.boot()
        self.metrology.begin()
        self.booted = True

    def poll(self):
        self.metrology.poll()
        self.polls += 1
        self.display.tick(self.clock.ticks_ms())

    def run(self):
        if not self.booted:
            self.boot()
        clock = self.clock
        wake = self._wake
        next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)
        while True:
            if self._irq.value() == 0:
                self.metrology.on_irq()
            self.link.feed_available()
            if time.ticks_diff(clock.ticks_ms(), next_poll) >= 0:
                self.poll()
                next_poll = time.ticks_add(next_poll, POLL_MS)
                if time.ticks_diff(clock.ticks_ms(), next_poll) >= 0:
                    next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)  # fell behind: resync
            clock.wait_until(next_poll, wake)
