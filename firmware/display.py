"""What the LCD shows: an identifier and a 6-digit value, refreshed without allocation.

Only the RAM bytes that changed are sent to the HT1621, so a refresh that changes
nothing costs nothing and a scroll step costs one frame.
"""

import lcd_glyphs as G

_DIGITS = 6


class Display:
    def __init__(self, lcd):
        self._lcd = lcd
        self._ram = bytearray(G.RAM_SIZE)
        self._shown = bytearray(G.RAM_SIZE)
        self._text = bytearray(b"        ")
        self._valid = False  # the chip's RAM is unknown until the first full write

    def show_value(self, ident, value, ann, dots=0):
        """ident: 2 characters; value: an int shown on 6 digits (rolling over 999999 to
        000000; a negative value lights the minus annunciator); dots: lcd_glyphs mask."""
        if value < 0:
            value = -value
            ann |= G.ANN_NEG
        t = self._text
        t[0] = ord(ident[0])
        t[1] = ord(ident[1])
        v = value % 1000000
        for i in range(7, 1, -1):
            t[i] = 48 + v % 10
            v //= 10
        self._render(ann, dots)

    def show_text(self, text, ann=0):
        t = self._text
        for i in range(8):
            t[i] = ord(text[i]) if i < len(text) else 32
        self._render(ann)

    def _render(self, ann, dots=0):
        G.encode_into(self._ram, self._text, dots, ann)
        if not self._valid:
            self._lcd.write(self._ram)
            self._shown[:] = self._ram
            self._valid = True
            return
        ram, shown = self._ram, self._shown
        first = 0
        while first < G.RAM_SIZE and ram[first] == shown[first]:
            first += 1
        if first == G.RAM_SIZE:
            return  # nothing changed: nothing to send
        last = G.RAM_SIZE - 1
        while ram[last] == shown[last]:
            last -= 1
        self._lcd.write(ram, first, last)
        shown[:] = ram

    def reinit(self):
        """Re-send the controller set-up and the whole RAM (its power-on reset is unreliable)."""
        self._lcd.reinit()
        self._valid = False
        self._render_again()

    def _render_again(self):
        self._lcd.write(self._ram)
        self._shown[:] = self._ram
        self._valid = True
