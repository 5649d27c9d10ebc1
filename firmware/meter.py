"""The meter: one cooperative loop that meters, refreshes the LCD and serves the port.

    import board, meter
    meter.Meter(board.make()).run()

Metering has the first claim on the loop: the chip is polled every POLL_MS (well inside
the 20 s an energy register takes to half-fill at full scale); the optical port gets
whatever bytes are waiting between polls, a bounded amount each time; the loop sleeps
on the board's clock until the next poll or an input event (port bytes, chip IRQ).
"""

import time

from micropython import const

import ade7953
import c1218
import display
import ht1621
import lcd_glyphs as G
import metrology
import psem

VERSION = "0.1.0"
POLL_MS = const(1000)
SCROLL_MS = const(10000)
_ITEMS = ("DE", "RX", "NT")  # delivered, received, net: kWh with one decimal


class Meter:
    def __init__(self, board):
        self.board = board
        self.clock = board.clock
        self.ade = ade7953.ADE7953(
            ade7953.SpiTransport(board.ade_spi, board.ade_cs), board.ade_reset, board.ade_irq, board.clock
        )
        g = metrology.nominal_gain(board.v_ratio, board.i_ratio_milli)
        self.gains = (g, g, g, g, g, g)
        self.energy = metrology.EnergyRegisters()
        self.display = display.Display(ht1621.HT1621(board.lcd_cs, board.lcd_wr, board.lcd_data))
        self.services = psem.Services(self)
        self.link = c1218.Link(board.optical, self.services.handle)
        self.elements = 1  # 1: one element on channel A; 2: 1.5 element, A and B
        self.polls = 0
        self.item = 0
        self._next_scroll = 0
        self._dot1 = G.dot_after(1)
        self._irq = board.ade_irq
        self._uart = board.optical

    def _wake(self):
        return self._uart.any() or self._irq.value() == 0

    def boot(self):
        self.display.show_text("  8888  ")
        self.ade.begin(self.gains)
        self.item = len(_ITEMS) - 1
        self._next_scroll = self.clock.ticks_ms()

    def poll(self):
        """Read the chip's energy since the last poll and register it."""
        ade = self.ade
        ade.read_energy(self.elements == 2)
        self.energy.add(ade.d_wa + ade.d_wb)
        self.polls += 1
        self.refresh_display()

    def refresh_display(self):
        e = self.energy
        now = self.clock.ticks_ms()
        if time.ticks_diff(now, self._next_scroll) >= 0:
            self.item = (self.item + 1) % len(_ITEMS)
            self._next_scroll = time.ticks_add(now, SCROLL_MS)
        i = self.item
        if i == 0:
            self.display.show_value("DE", e.delivered_wh // 100, G.ANN_KWH | G.ANN_DEL, self._dot1)
        elif i == 1:
            self.display.show_value("RX", e.received_wh // 100, G.ANN_KWH | G.ANN_REC, self._dot1)
        else:
            net = e.net_wh()
            tenths = net // 100 if net >= 0 else -((-net) // 100)
            self.display.show_value("NT", tenths, G.ANN_KWH, self._dot1)

    def on_irq(self):
        status = self.ade.irq_status()
        if status & (1 << 20):  # the chip reset by itself: bring it up again
            self.ade.begin(self.gains)

    def run(self):
        self.boot()
        clock = self.clock
        wake = self._wake
        next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)
        while True:
            if self._irq.value() == 0:
                self.on_irq()
            self.link.feed_available()
            if time.ticks_diff(clock.ticks_ms(), next_poll) >= 0:
                self.poll()
                next_poll = time.ticks_add(next_poll, POLL_MS)
                if time.ticks_diff(clock.ticks_ms(), next_poll) >= 0:
                    next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)  # fell behind: resync
            clock.wait_until(next_poll, wake)
