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
import billing
import c1218
import config
import display
import ht1621
import metrology
import psem
import status
import storage

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
        self.storage = storage.Storage(
            board.i2c, board.eeprom_addr, board.eeprom_size, board.eeprom_page, board.clock, self.status
        )
        self._stored_config = cfg is None  # a Config handed in (tests) is not replaced
        self.billing = billing.Billing(self)  # the clock, demand, TOU, load profile, event log
        self.demand = self.billing.demand
        self.tou = self.billing.tou
        self.events = self.billing.events
        self.load_profile = self.billing.load_profile
        self.metrology.events = self.events
        self.storage.extra = self.billing.clock  # every register record carries its time
        self.metrology.sag_handler = self._save_on_sag
        self.display = display.Display(ht1621.HT1621(board.lcd_cs, board.lcd_wr, board.lcd_data), self)
        self.services = psem.Services(self)
        self.link = c1218.Link(board.optical, self.services, board)
        self.polls = 0
        self.booted = False
        self._irq = board.ade_irq
        self._uart = board.optical

    @property
    def energy(self):
        return self.metrology.energy

    @property
    def clock_time(self):
        """The meter's time in seconds since 2000-01-01 (timekeeping.py)."""
        return self.billing.now()

    def set_time(self, seconds):
        """Set the date and time (seconds since 2000): logged; demand and load profile follow."""
        return self.billing.set_time(seconds)

    def demand_reset(self):
        """A demand reset from the meter itself (console, button): False inside the lock-out."""
        return self.billing.demand_reset()

    def _wake(self):
        return self._uart.any() or self.metrology.irq_pending()

    def _save_on_sag(self):
        """The line is failing (ADE7953 SAG, energy just read): save while the hold-up lasts."""
        self.storage.save_now(self.energy)

    def _load_config(self):
        """Take the stored configuration, if there is one; True if it was applied."""
        if not self._stored_config:
            return False
        blob = self.storage.load_config()
        if blob is None:
            return False
        try:
            self.config.load(blob)
        except config.ConfigError:
            self.status.set(status.CONFIGURATION_ERROR)
            return False
        return True

    def boot(self):
        self.display.boot()
        self._load_config()  # first: the chip takes its calibration from it
        self.metrology.begin()
        self.storage.restore(self.energy)
        self.billing.boot()  # power down and up, outage rules; before anything logs
        self.services.boot()  # the seal record; a sealed meter checks its firmware files
        self.booted = True

    def poll(self):
        self.metrology.poll()
        self.polls += 1
        now = self.clock.ticks_ms()
        if self.storage.tick(self.energy, now) and self._load_config():
            # the EEPROM answers after a boot without it: its calibration goes to the chip
            self.metrology.poll()  # what the chip counted meanwhile, before begin() resets it
            self.metrology.begin()
        self.billing.tick(now)
        self.display.tick(now)

    def run(self):
        if not self.booted:
            self.boot()
        clock = self.clock
        wake = self._wake
        next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)
        while True:
            if self.metrology.irq_pending():
                self.metrology.on_irq()
            self.link.feed_available()
            if time.ticks_diff(clock.ticks_ms(), next_poll) >= 0:
                self.poll()
                next_poll = time.ticks_add(next_poll, POLL_MS)
                if time.ticks_diff(clock.ticks_ms(), next_poll) >= 0:
                    next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)  # fell behind: resync
            clock.wait_until(next_poll, wake)
