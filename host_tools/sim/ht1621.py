"""Model of the HT1621 segment LCD controller, driven pin change by pin change.

The simulated board calls ``set_pins(cs, wr, data)`` whenever any of the three
lines changes. The model samples DATA on each rising edge of WR while CS is
low and decodes the frame as the bits arrive:

* ``100`` + 9-bit commands (8 command bits MSB first + 1 don't-care bit;
  several commands may follow one another in the same frame),
* ``101`` + 6-bit address (MSB first) + 4-bit nibbles D0..D3 with
  auto-increment, wrapping at 32,
* ``110`` read frames are accepted and ignored (the model drives no RD line).

A rising CS ends the frame; a frame that ends inside a command, an address or
a nibble is recorded in ``errors`` (the partial part is discarded).

Example::

    lcd = HT1621()
    for cs, wr, data in trace:
        lcd.set_pins(cs, wr, data)
    lcd.text()          # "DE001234" ("" while the system or the LCD is off)
    lcd.display()       # ("DE001234", dots, annunciator flags)
"""

from __future__ import annotations

from host_tools.repo import firmware_module

glyphs = firmware_module("lcd_glyphs")

RAM_NIBBLES = 32

_MODE_CMD = 0b100
_MODE_WRITE = 0b101
_MODE_READ = 0b110

_COMMANDS = {
    0x00: "SYS DIS",
    0x01: "SYS EN",
    0x02: "LCD OFF",
    0x03: "LCD ON",
    0x04: "TIMER DIS",
    0x05: "WDT DIS",
    0x06: "TIMER EN",
    0x07: "WDT EN",
    0x08: "TONE OFF",
    0x09: "TONE ON",
    0x0C: "CLR TIMER",
    0x0E: "CLR WDT",
    0x80: "IRQ DIS",
    0x88: "IRQ EN",
    0xE0: "TEST",
    0xE3: "NORMAL",
}


class HT1621:
    def __init__(self) -> None:
        self.ram = bytearray(RAM_NIBBLES)  # one nibble per address
        self.system_on = False
        self.lcd_on = False
        self.bias: int | None = None  # 2 or 3 (1/2 or 1/3 bias)
        self.commons: int | None = None  # 2, 3 or 4
        self.clock: str | None = None  # "RC256K", "XTAL32K", "EXT256K"
        self.frames = 0  # completed write frames
        self.commands: list[int] = []  # every command code received, in order
        self.errors: list[str] = []  # malformed frames
        self._cs = 1
        self._wr = 1
        self._reset_frame()

    # --- pins -----------------------------------------------------------------

    def set_pins(self, cs: int, wr: int, data: int) -> None:
        cs, wr, data = int(bool(cs)), int(bool(wr)), int(bool(data))
        if cs != self._cs:
            if cs:
                self._end_frame()
            else:
                self._reset_frame()
                self._in_frame = True
        elif not cs and wr and not self._wr:
            self._bit(data)
        self._cs = cs
        self._wr = wr

    def power_on(self) -> None:
        """Supply comes back: the unreliable POR is modelled as RAM cleared and system off."""
        self.ram[:] = bytes(RAM_NIBBLES)
        self.system_on = False
        self.lcd_on = False
        self.bias = None
        self.commons = None
        self.clock = None
        self._reset_frame()

    # --- read-back --------------------------------------------------------------

    def ram_bytes(self) -> bytes:
        """The 16 RAM bytes as lcd_glyphs lays them out (byte j = addr 2j | addr 2j+1 << 4)."""
        r = self.ram
        return bytes(
            (r[2 * j] & 0xF) | ((r[2 * j + 1] & 0xF) << 4) for j in range(RAM_NIBBLES // 2)
        )

    @property
    def visible(self) -> bool:
        return self.system_on and self.lcd_on

    def display(self) -> tuple[str, int, int]:
        """(text, dots, annunciators) as shown; ("", 0, 0) while the glass is blank."""
        if not self.visible:
            return "", 0, 0
        return glyphs.decode(self.ram_bytes())

    def text(self) -> str:
        """The 8 characters shown ('' while the system or the LCD is off)."""
        return self.display()[0]

    # --- frame decoding -----------------------------------------------------------

    def _reset_frame(self) -> None:
        self._in_frame = False
        self._mode: int | None = None
        self._acc = 0  # bits of the field being received
        self._nacc = 0
        self._addr: int | None = None
        self._nibbles = 0
        self._ncmds = 0

    def _bit(self, bit: int) -> None:
        if not self._in_frame:
            return
        if self._mode is None:
            self._acc = (self._acc << 1) | bit
            self._nacc += 1
            if self._nacc == 3:
                self._mode, self._acc, self._nacc = self._acc, 0, 0
                if self._mode not in (_MODE_CMD, _MODE_WRITE, _MODE_READ):
                    self.errors.append(f"unknown mode id {self._mode:03b}")
            return
        if self._mode == _MODE_CMD:
            self._acc = (self._acc << 1) | bit
            self._nacc += 1
            if self._nacc == 9:
                self._command(self._acc >> 1)
                self._ncmds += 1
                self._acc, self._nacc = 0, 0
        elif self._mode == _MODE_WRITE:
            if self._addr is None:
                self._acc = (self._acc << 1) | bit
                self._nacc += 1
                if self._nacc == 6:
                    self._addr, self._acc, self._nacc = self._acc, 0, 0
            else:
                self._acc |= bit << self._nacc  # D0 first
                self._nacc += 1
                if self._nacc == 4:
                    self.ram[self._addr] = self._acc
                    self._addr = (self._addr + 1) % RAM_NIBBLES
                    self._nibbles += 1
                    self._acc, self._nacc = 0, 0
        # read frames and unknown modes: ignore the remaining bits

    def _end_frame(self) -> None:
        if not self._in_frame:
            return
        mode = self._mode
        if mode is None:
            self.errors.append(f"frame ended after {self._nacc} bit(s), before the mode id")
        elif mode == _MODE_CMD:
            if self._nacc:
                self.errors.append(f"command frame ended {self._nacc} bit(s) into a command")
            elif not self._ncmds:
                self.errors.append("command frame without a command")
        elif mode == _MODE_WRITE:
            if self._addr is None:
                self.errors.append(f"write frame ended {self._nacc} bit(s) into the address")
            elif self._nacc:
                self.errors.append(
                    f"write frame ended {self._nacc} bit(s) into a nibble"
                    f" ({self._nibbles} nibble(s) written)"
                )
            elif not self._nibbles:
                self.errors.append("write frame without data")
            else:
                self.frames += 1
        self._reset_frame()

    def _command(self, cmd: int) -> None:
        self.commands.append(cmd)
        if len(self.commands) > 512:  # periodic re-inits must not grow it for ever
            del self.commands[:256]
        if cmd == 0x00:
            self.system_on = False
        elif cmd == 0x01:
            self.system_on = True
        elif cmd == 0x02:
            self.lcd_on = False
        elif cmd == 0x03:
            self.lcd_on = True
        elif cmd & 0xFC == 0x18:
            self.clock = "RC256K"
        elif cmd & 0xFC == 0x14:
            self.clock = "XTAL32K"
        elif cmd & 0xFC == 0x1C:
            self.clock = "EXT256K"
        elif cmd & 0xF0 == 0x20:
            # BIAS: 0010 abX c -- ab: 00 = 2, 01 = 3, 10 = 4 commons; c: 0 = 1/2, 1 = 1/3
            ab = (cmd >> 2) & 0x3
            if ab == 3:
                self.errors.append(f"bias command {cmd:08b} with invalid commons")
                return
            self.commons = (2, 3, 4)[ab]
            self.bias = 3 if cmd & 1 else 2
        elif cmd in _COMMANDS or 0x40 <= cmd <= 0x7F or 0xA0 <= cmd <= 0xBF or cmd >= 0xE0:
            pass  # timers, tones, IRQ, time base, test modes: no effect on the model
        else:
            self.errors.append(f"unknown command {cmd:08b}")
