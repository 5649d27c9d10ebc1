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

A calibration step accepted over the port (tables.py, MFG procedure 2: ST8 says 1,
accepted) waits in cal_step; the loop then runs it (calibration.py, imported for the
step and dropped after: it is large), serving the port meanwhile through cal_idle, and
puts the final result in ST8. The step measures the chip itself: the energy it sees is
test energy, not registered, and the meter does not poll until it ends.

Supervision: run() arms the board's watchdog (WDT_TIMEOUT_MS) before boot and feeds it
after each metering poll and between a calibration step's sleeps, so a loop that stops
polling (a hang, a bus stuck low) is reset by the hardware. An exception that escapes
the loop is printed on the console, filed (resets.py: type, module, line; an event unless
the same fault keeps coming back), the registers are saved, and the firmware then stops
feeding the watchdog: it resets the MCU, and the next boot meters on from the EEPROM and
from what the metering chip counted meanwhile (metrology's warm start: the chip never
lost power). The causes of every start are counted (MT6).
"""

import gc
import time

from micropython import const

import ade7953
import billing
import c1218
import config
import display
import events
import ht1621
import metrology
import psem
import resets
import status
import storage

VERSION = "0.1.0"
VERSION_NUMBER = const(0)  # C12.19 ST1 FW_VERSION_NUMBER / FW_REVISION_NUMBER
REVISION_NUMBER = const(1)
POLL_MS = const(1000)
# The watchdog's timeout: the RP2040's longest (8,388 ms) rounded down. It must cover the
# longest step between two feeds; measured on the simulated board (tests/bench/watchdog.py)
# and stated in firmware/README.md ("Watchdog").
WDT_TIMEOUT_MS = const(8000)
_CAL_PROC_LO = const(0x02)  # ST8's TBL_PROC_NBR of the calibration procedure (0x802), low byte first
_CAL_PROC_HI = const(0x08)
_PROC_ACCEPTED = const(1)
_PROC_CONFLICT = const(3)
_PROC_TIMING = const(4)


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
        self.cal_step = None  # a calibration step waiting for the loop (tables.py sets it)
        self.cal_phcal = [None, None]  # calibration.py's memory between its gain and phase steps
        self._cal_t0 = 0
        self.resets = resets.Resets(self.storage)
        self.wdt = None  # the board's watchdog, armed by run()
        self._stop = False  # stop(): the loop returns at the end of this turn
        self.console = None  # the USB console while metering (console.py); a test's fake board has none
        if getattr(board, "console", None) is not None:
            import console

            self.console = console.Console(board, self)

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
        c = self.console
        return self._uart.any() or self.metrology.irq_pending() or (c is not None and c.any())

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
        self.metrology.begin()  # warm if the chip kept power and its configuration
        self.storage.restore(self.energy)
        gc.collect()  # restore's records and buffers: garbage before powerup.py comes in
        cause_of = getattr(self.board, "reset_cause", None)
        cause = self.resets.boot(cause_of() if cause_of is not None else "power_on", self.metrology.warm)
        self.billing.boot(cause)  # power down and up, outage rules; before anything logs
        gc.collect()  # powerup.py, dropped: its code and temporaries, before tables.py loads
        self.services.boot()  # the seal record; a sealed meter checks its firmware files
        # from now on a long save yields to a power-fail warning (not during boot: the chip's
        # SAG flag can be up while its voltage settles, and boot's records must be whole)
        self.storage.ee.abort = self.metrology.sag_pending
        self.booted = True

    def poll(self):
        self.metrology.poll()
        self.polls += 1
        now = self.clock.ticks_ms()
        if self.storage.tick(self.energy, now) and self._load_config():
            # the EEPROM answers after a boot without it: its calibration goes to the chip
            self.metrology.poll()  # what the chip counted meanwhile, before begin() resets it
            self.metrology.begin()
        if self.storage.aborted:  # the power-fail warning stopped a save: the loop saves on it now
            self.storage.aborted = False
            return
        self.billing.tick(now)
        self.display.tick(now)

    def run(self):
        """Meter until stop(): arm the watchdog, boot, loop. Whatever escapes is a fault
        (the module docstring): it never returns to the REPL then."""
        arm = getattr(self.board, "watchdog", None)
        if arm is not None and self.wdt is None:
            self.wdt = arm(WDT_TIMEOUT_MS)
        try:
            if not self.booted:
                self.boot()
            self._loop()
        except KeyboardInterrupt:  # Ctrl-C reached the loop: a stop, as m.stop() is
            if self.booted:
                self._stopped()
            elif self.wdt is not None:
                self.wdt.hold()
            raise
        except Exception as exc:  # noqa: BLE001 - anything: filed, then the watchdog resets
            if self.wdt is None:
                raise  # a board without a watchdog (a test's fake) shows it as before
            self._fault(exc)

    def _loop(self):
        clock = self.clock
        wake = self._wake
        wdt = self.wdt
        con = self.console
        if con is not None:
            con.start()  # main.py took it already; a test's main.py may not have
        next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)
        while not self._stop:
            if self.metrology.irq_pending():
                self.metrology.on_irq()
            self.link.feed_available()
            self.billing.apply_changes()  # a configuration the port just wrote
            if con is not None and con.any():
                con.serve()
                if self._stop:
                    continue  # m.stop() typed there: the loop ends now, not after a sleep
            if self.cal_step is not None:
                self._calibrate()
                next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)
            if time.ticks_diff(clock.ticks_ms(), next_poll) >= 0:
                self.poll()
                if wdt is not None:
                    wdt.feed()  # a poll ran: metering goes on
                next_poll = time.ticks_add(next_poll, POLL_MS)
                if time.ticks_diff(clock.ticks_ms(), next_poll) >= 0:
                    next_poll = time.ticks_add(clock.ticks_ms(), POLL_MS)  # fell behind: resync
            clock.wait_until(next_poll, wake, self.link.deadline())  # wakes for the port's timers too
        self._stopped()

    # ---- supervision ---------------------------------------------------------------------
    def _fault(self, exc):
        """An exception escaped the loop (the module docstring): it never returns."""
        import gc
        import sys

        gc.collect()
        sys.print_exception(exc)
        try:
            if self.console is not None:
                self.console.release()  # nobody serves it now: Ctrl-C and the REPL are MicroPython's
        except Exception:  # noqa: BLE001 - the watchdog resets the board all the same
            pass
        if self.booted:  # before that, RAM holds nothing the EEPROM lacks (the chip keeps the rest)
            try:
                self.storage.save_registers(self.energy)  # the registers before anything else
            except Exception:  # noqa: BLE001 - the fault may be the storage's own: reset all the same
                pass
        try:
            if self.resets.fault(exc):
                self.events.record(events.EV_FIRMWARE_FAULT, self.resets.fault_data())
        except Exception:  # noqa: BLE001
            pass
        print("meter: fault filed; the watchdog resets the board")
        clock = self.clock
        while True:  # no feed from here: the watchdog resets the MCU within WDT_TIMEOUT_MS
            clock.wait_until(time.ticks_add(clock.ticks_ms(), 1000), None)

    def stop(self):
        """Stop metering and give the REPL the console (`m.stop()` at the meter's console):
        the loop ends after this turn, the registers are saved, the stop logged and the
        watchdog held (fed by a timer) so the REPL is not reset under the person using it.
        Ctrl-D (a soft reboot) meters again."""
        self._stop = True
        if self.console is not None:
            self.console.release()  # MicroPython's REPL gets the console (and Ctrl-C) back

    def _stopped(self):
        """The loop ended for the REPL: the watchdog held first (the person at the REPL must
        not be reset under them), then the registers saved and the stop logged."""
        if self.wdt is not None:
            self.wdt.hold()
        self._stop = False
        try:
            self.storage.save_registers(self.energy)
            self.events.record(events.EV_STOPPED)
        except Exception:  # noqa: BLE001 - a stop must reach the REPL whatever the EEPROM says
            pass

    def reboot(self):
        """A soft reboot asked for at the console: the registers saved, the cause recorded
        (MT6 counts it as a reset), then the board's soft reset: main.py starts again."""
        self.storage.save_registers(self.energy)
        self.resets.intend(resets.RESET)
        self.board.soft_reset()

    # ---- a calibration step run from the optical port ---------------------------------
    def cal_idle(self):
        """Between a calibration step's sleeps: serve the port, show the seconds so far in ST8
        and feed the watchdog (a step measures for minutes; the chip is being read)."""
        self.link.feed_available()
        if self.wdt is not None:
            self.wdt.feed()
        st8 = self.services.st8
        if st8[0] == _CAL_PROC_LO and st8[1] == _CAL_PROC_HI and st8[3] == _PROC_ACCEPTED:
            s = time.ticks_diff(self.clock.ticks_ms(), self._cal_t0) // 1000
            st8[5] = s & 0xFF  # tables.CAL_PROGRESS: STEP, ELAPSED_S
            st8[6] = (s >> 8) & 0xFF

    def cal_wake(self):
        return self._uart.any()

    def _calibrate(self):
        """Run the step waiting in cal_step; its result goes to ST8 (tables.calibration_done).
        A fault is an ST8 result, never the end of the loop."""
        import gc
        import sys

        import tables

        step = self.cal_step
        self._cal_t0 = self.clock.ticks_ms()
        code = _PROC_CONFLICT
        result = None
        try:
            gc.collect()
            import calibration

            try:
                amps = step[1] / 1000
                pf = step[2] / 1000 if amps else 1.0
                result = calibration.calibrate(self, step[0] / 1000, amps, pf, step[3] or None, wait_s=step[5])
                code = 0
            except calibration.CalibrationTimeout as exc:
                print("calibration:", exc)
                code = _PROC_TIMING
            except calibration.CalibrationError as exc:
                print("calibration:", exc)
            finally:
                sys.modules.pop("calibration", None)
                del calibration
        except MemoryError:
            code = _PROC_TIMING  # no room for calibration.py now: try again
        except Exception as exc:  # noqa: BLE001 - a chip that stopped answering, a fault: reported in ST8
            sys.print_exception(exc)
        self.cal_step = None
        tables.calibration_done(self.services, step, code, result)
        gc.collect()
