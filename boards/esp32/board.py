"""Board definition: ESP32 DevKitC (ESP32-WROOM-32, no PSRAM) wired to the meter front-end.

Copy this file to the ESP32's filesystem root beside the firmware. Importing it
does nothing; ``make()`` builds the buses and pins. This module and its
siblings in boards/ are the only code that touches ``machine``: the firmware
takes every bus and pin from the ``Board`` (see DESIGN.md, principle 1).

Usage::

    import time
    import board

    b = board.make()
    b.ade_cs(0)
    try:
        b.ade_spi.write(b"\\x07\\x02\\x80")   # read VERSION (0x702, 8-bit)
        version = b.ade_spi.read(1)
    finally:
        b.ade_cs(1)
    deadline = time.ticks_add(b.clock.ticks_ms(), 1000)
    b.clock.wait_until(deadline, b.optical.any)

Pins (wiring table and the clashes avoided: boards/esp32/README.md):

    ADE7953 SPI(2) (VSPI)  SCK 18, MOSI 23, MISO 19, CS 4 (driven as a GPIO;
                           VSPI's usual CS, GPIO5, is a strapping pin)
    ADE7953                RESET 27, IRQ 32 (pull-up), CF1 35 (input only)
    EEPROM I2C(1)          SCL 25, SDA 26, 400 kHz (I2C(0)'s default pins
                           18/19 are VSPI's)
    RTC chip               on I2C(1) beside the EEPROM: DS3231 0x68 (RTC_CHIP),
                           or PCF8563 0x51
    IR port UART2          TX 17, RX 16 (UART1's default pins are the flash's)
    HT1621 LCD             CS 13, WR 21, DATA 22
    seal plug              33 (pull-up; low while inserted)

No output sits on a strapping pin (0, 2, 5, 12, 15), on the flash pins (6-11)
or on the input-only pins (34-39, which have no pull resistors either).
"""

import machine
from machine import I2C, RTC, SPI, UART, WDT, Pin, Timer
from micropython import const

import rtc
from clock import Clock
from stdio import Stdio

# Which clock keeps the time across a power cut (boards/esp32/README.md, "Real-time clock"):
#   "ds3231"  a Maxim DS3231 on the EEPROM's I2C bus at 0x68, with a coin cell or supercap
#             on VBAT (the part hobby and carrier boards carry, e.g. the ZS-042 module)
#   "pcf8563" an NXP PCF8563 on that bus at 0x51, with its backup supply
#   "mcu"     the MCU's own RTC, on a board that keeps it powered through an outage
#   "none"    the MCU's own RTC as a plain board has it: lost at every power cut
RTC_CHIP = "ds3231"

_ADE_SPI_ID = const(2)  # VSPI
_ADE_SCK = const(18)
_ADE_MOSI = const(23)
_ADE_MISO = const(19)
_ADE_CS = const(4)
_ADE_RESET = const(27)
_ADE_IRQ = const(32)
_CF1 = const(35)  # input-only pin: fine, CF1 is driven push-pull by the ADE7953
_ADE_SPI_HZ = const(1_000_000)  # the ADE7953 allows up to 5 MHz

_I2C_ID = const(1)
_I2C_SCL = const(25)
_I2C_SDA = const(26)
_I2C_HZ = const(400_000)

_OPT_UART_ID = const(2)
_OPT_TX = const(17)
_OPT_RX = const(16)
_OPT_BAUD = const(9600)
_OPT_RXBUF = const(512)  # ESP-IDF needs more than its 128-byte hardware FIFO
_OPT_TXBUF = const(512)

_LCD_CS = const(13)
_LCD_WR = const(21)
_LCD_DATA = const(22)

_SEAL_PLUG = const(33)


_WDT_HOLD_MS = const(1000)  # how often the timer feeds a held watchdog
_WDT_TIMER_ID = const(0)  # the hardware timer that feeds the watchdog while held


class Watchdog:
    """machine.WDT, plus hold(): hardware timer 0: its callback is scheduled even while the
    REPL waits for input, so a person at the REPL after m.stop() is not reset (a WDT cannot
    be stopped once started, not even by a soft reset)."""

    def __init__(self, timeout_ms: int) -> None:
        self._wdt = WDT(timeout=timeout_ms)
        self._timer: Timer | None = None

    def feed(self) -> None:
        self._wdt.feed()

    def hold(self) -> None:
        if self._timer is None:
            self._timer = Timer(_WDT_TIMER_ID, period=_WDT_HOLD_MS, callback=self._tick)

    def _tick(self, _timer: Timer) -> None:
        self._wdt.feed()


class Board:
    """Every bus and pin the firmware uses, built at construction."""

    name = "esp32"
    eeprom_addr = 0x50
    eeprom_size = 32768
    eeprom_page = 64
    heap_budget_kb = 90  # low end of 90-110 KB free without PSRAM, reference/hardware.md
    # The analog front end (README "Analog front end"): line volts per volt at the ADE7953
    # voltage pins (a 1000:1 divider) and line amps per volt across the CT burden, in
    # milli-units (250 A rms reaches channel full scale: a 200 A class meter with headroom).
    v_ratio = 1000
    i_ratio_milli = 707107

    def __init__(self) -> None:
        # Chip selects high before the SPI clock starts: the ADE7953 latches onto
        # SPI at its first CS falling edge.
        self.ade_cs = Pin(_ADE_CS, Pin.OUT, value=1)
        self.ade_reset = Pin(_ADE_RESET, Pin.OUT, value=1)
        self.ade_spi = SPI(
            _ADE_SPI_ID,
            baudrate=_ADE_SPI_HZ,
            polarity=1,  # SPI mode 3: SCLK idles high,
            phase=1,  # data sampled on the rising (second) edge
            bits=8,
            firstbit=SPI.MSB,
            sck=Pin(_ADE_SCK),
            mosi=Pin(_ADE_MOSI),
            miso=Pin(_ADE_MISO),
        )
        self.ade_irq = Pin(_ADE_IRQ, Pin.IN, Pin.PULL_UP)  # open-drain, active low
        self.cf1 = Pin(_CF1, Pin.IN)  # push-pull from the ADE7953, active low

        self.i2c = I2C(_I2C_ID, scl=Pin(_I2C_SCL), sda=Pin(_I2C_SDA), freq=_I2C_HZ)
        # the RTC (RTC_CHIP above); nothing goes on the bus until the meter reads it
        self.rtc_chip = RTC_CHIP
        self.rtc_battery_backed = RTC_CHIP != "none"
        self.rtc: RTC | rtc.DS3231 | rtc.PCF8563
        if RTC_CHIP == "ds3231":
            self.rtc = rtc.DS3231(self.i2c)
        elif RTC_CHIP == "pcf8563":
            self.rtc = rtc.PCF8563(self.i2c)
        else:
            self.rtc = RTC()

        self.lcd_cs = Pin(_LCD_CS, Pin.OUT, value=1)
        self.lcd_wr = Pin(_LCD_WR, Pin.OUT, value=1)
        self.lcd_data = Pin(_LCD_DATA, Pin.OUT, value=1)

        # timeout=0: reads never block the meter loop (on this port a write
        # blocks until the whole buffer is queued).
        self.optical = UART(
            _OPT_UART_ID,
            baudrate=_OPT_BAUD,
            bits=8,
            parity=None,
            stop=1,
            tx=Pin(_OPT_TX),
            rx=Pin(_OPT_RX),
            rxbuf=_OPT_RXBUF,
            txbuf=_OPT_TXBUF,
            timeout=0,
        )

        self.seal_plug = Pin(_SEAL_PLUG, Pin.IN, Pin.PULL_UP)

        self.clock = Clock()
        # the USB console (REPL) as the meter owns it while it meters: firmware/stdio.py
        self.console = Stdio()

    def set_optical_baud(self, baud: int) -> None:
        """Switch the optical port to ``baud`` (C12.18 negotiation), 8N1.

        Waits for the bytes already queued to leave at the old rate first. Only
        the rate is passed: on this port passing rxbuf/txbuf would reinstall
        the UART driver, and the other settings are kept.
        """
        self.optical.flush()
        self.optical.init(baudrate=baud, bits=8, parity=None, stop=1)


    def watchdog(self, timeout_ms: int) -> Watchdog:
        """Arm the watchdog: feed() it within timeout_ms or the MCU resets."""
        return Watchdog(timeout_ms)

    def reset_cause(self) -> str:
        """"watchdog" if the last hardware reset was the watchdog's, else "power_on"."""
        return "watchdog" if machine.reset_cause() == machine.WDT_RESET else "power_on"

    def reset(self) -> None:
        """A hard reset (ESP_RST_SW: reset_cause() says HARD_RESET, not the watchdog)."""
        machine.reset()

    def soft_reset(self) -> None:
        """A soft reboot: MicroPython restarts and runs main.py again."""
        machine.soft_reset()


def make() -> Board:
    """Build the board: every bus and pin, in a safe order."""
    return Board()
