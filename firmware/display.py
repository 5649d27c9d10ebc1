"""What the LCD shows: the display list scrolling identifier + value items.

The RAM image is rebuilt every refresh without allocation, and only the bytes that
changed are sent to the HT1621, so a refresh that changes nothing costs nothing.
"""

import time

import config
import lcd_glyphs as G

# display item codes (config.DISPLAY_ITEMS)
ITEM_DELIVERED = 1
ITEM_RECEIVED = 2
ITEM_NET = 3


class Display:
    def __init__(self, lcd, meter):
        self._lcd = lcd
        self._meter = meter
        self._ram = bytearray(G.RAM_SIZE)
        self._shown = bytearray(G.RAM_SIZE)
        self._text = bytearray(b"        ")
        self._valid = False  # the chip's RAM is unknown until the first full write
        self.index = 0
        self._next_scroll = 0

    def boot(self):
        self.show_text("  8888  ")
        self.index = -1
        self._next_scroll = self._meter.clock.ticks_ms()

    def tick(self, now):
        """Advance the scroll when due, then draw the current item."""
        cfg = self._meter.config
        items = cfg.get(config.DISPLAY_ITEMS)
        if time.ticks_diff(now, self._next_scroll) >= 0:
            self.index = (self.index + 1) % len(items)
            scroll_s = max(cfg.get(config.SCROLL_S), cfg.get(config.SCROLL_MIN_S))
            self._next_scroll = time.ticks_add(now, scroll_s * 1000)
        self.draw(items[self.index])

    def draw(self, item):
        e = self._meter.energy
        dots = G.dot_after(1)
        if item == ITEM_DELIVERED:
            self.show_value("DE", e.delivered_wh // 100, G.ANN_KWH | G.ANN_DEL, dots)
        elif item == ITEM_RECEIVED:
            self.show_value("RX", e.received_wh // 100, G.ANN_KWH | G.ANN_REC, dots)
        elif item == ITEM_NET:
            net = e.net_wh()
            tenths = net // 100 if net >= 0 else -((-net) // 100)
            self.show_value("NT", tenths, G.ANN_KWH, dots)

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
        ram, shown = self._ram, self._shown
        if not self._valid:
            self._lcd.write(ram)
            shown[:] = ram
            self._valid = True
            return
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
        self._render(0)
