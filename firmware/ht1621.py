"""HT1621 segment LCD controller, bit-banged over CS, WR and DATA.

The driver takes three output pins that are already set up (any object with
``.value(v)``, e.g. ``machine.Pin(n, Pin.OUT, value=1)``); pin numbers never
appear here. The display RAM image is 16 bytes, laid out by lcd_glyphs
(byte j = nibble addresses 2j (bits 0..3) and 2j+1 (bits 4..7)).

Usage::

    from machine import Pin
    import lcd_glyphs
    from ht1621 import HT1621

    lcd = HT1621(Pin(13, Pin.OUT, value=1), Pin(14, Pin.OUT, value=1),
                 Pin(15, Pin.OUT, value=0))   # sends the init commands
    ram = bytearray(lcd_glyphs.RAM_SIZE)
    lcd_glyphs.encode_into(ram, "DE001234", ann=lcd_glyphs.ANN_KWH)
    lcd.write(ram)          # whole RAM in one frame; does not allocate
    lcd.reinit()            # now and then: the chip's power-on reset is unreliable
    lcd.off()

Protocol (Holtek HT1621): CS low opens a frame; DATA is sampled on the rising
edge of WR; CS high ends the frame. Mode ID 100 = command (8 command bits MSB
first + 1 don't-care bit), 101 = write (6-bit address MSB first, then 4-bit
nibbles D0..D3 with auto-increment). One command per frame.

Timing: every WR phase spans at least one Pin.value() call plus bytecode, so
the interpreter clocks far below the chip's limit (the Holtek datasheet gives a
minimum WR pulse of 3.34 us at 3 V; that figure is not from hardware.md). A
native/viper rewrite would need explicit delays.
"""

from micropython import const

_MODE_CMD = const(0b100)
_MODE_WRITE = const(0b101)

# Command codes (8 bits; the 9th, don't-care bit is sent as 0).
_SYS_DIS = const(0b0000_0000)
_SYS_EN = const(0b0000_0001)
_LCD_OFF = const(0b0000_0010)
_LCD_ON = const(0b0000_0011)
_WDT_DIS = const(0b0000_0101)
_RC256K = const(0b0001_1000)
_BIAS_13_4COM = const(0b0010_1001)
_NORMAL = const(0b1110_0011)

_RAM_BYTES = const(16)  # 32 nibbles


class HT1621:
    def __init__(self, cs, wr, data):
        self._cs = cs
        self._wr = wr
        self._data = data
        cs.value(1)
        wr.value(1)
        self.reinit()

    def _bits(self, word, n):
        # Clock out the n low bits of word, MSB first (CS already low).
        wr = self._wr
        data = self._data
        while n:
            n -= 1
            wr.value(0)
            data.value((word >> n) & 1)
            wr.value(1)

    def _command(self, cmd):
        cs = self._cs
        cs.value(0)
        try:
            # 3-bit mode, 8-bit command, 1 don't-care bit.
            self._bits((_MODE_CMD << 9) | (cmd << 1), 12)
        finally:
            cs.value(1)

    def reinit(self):
        """Send the init commands; RAM is not touched (call write() next)."""
        self._command(_SYS_EN)
        self._command(_RC256K)
        self._command(_BIAS_13_4COM)
        self._command(_WDT_DIS)
        self._command(_NORMAL)
        self._command(_LCD_ON)

    def off(self):
        """Blank the glass and stop the oscillator (lowest power)."""
        self._command(_LCD_OFF)
        self._command(_SYS_DIS)

    def write(self, ram, first=0, last=_RAM_BYTES - 1):
        """Write RAM bytes first..last (nibbles 2*first .. 2*last+1) in one frame.

        The default is all 16 bytes; a refresh that changed one character sends one."""
        wr = self._wr
        data = self._data
        cs = self._cs
        cs.value(0)
        try:
            self._bits((_MODE_WRITE << 6) | (first << 1), 9)  # mode 101, 6-bit address
            for j in range(first, last + 1):
                b = ram[j]
                # Low nibble (address 2j) then high nibble (2j+1), D0 first:
                # the whole byte LSB first.
                for _ in range(8):
                    wr.value(0)
                    data.value(b & 1)
                    wr.value(1)
                    b >>= 1
        finally:
            cs.value(1)
