"""What the LCD shows: a programmable display list of identifier + value items.

    d = display.Display(ht1621.HT1621(cs, wr, data), meter)  # meter: .config .status .energy
    d.boot()                  # all segments lit until the first item is due
    d.tick(clock.ticks_ms())  # every poll: scroll when due, draw, re-initialise the chip

Nothing here allocates per refresh. The item table and the rules are comments below: a
board that compiles this file pays nothing for comments, but several KB of heap for a
long docstring while it compiles.
"""

# The display list is config.DISPLAY_ITEMS, a byte string of item codes in scroll order;
# each item stays SCROLL_S seconds (1-30), never less than SCROLL_MIN_S (a communication
# module may need 10 s). Errors (status.py declares which are fatal):
# - while a FATAL error lasts, "Er nnn" (status.fatal_code() on 3 digits, alarm sign lit)
#   replaces the list; when the fault clears, the interrupted item comes back for a full
#   scroll time;
# - NONFATAL errors leave the list scrolling with the alarm sign lit on every item, and
#   each one present is an item of its own, "Er nnn" with the alarm sign, after the list's
#   last item (in status.NONFATAL's order); an error item whose fault clears while it is
#   shown gives way to the next item at once.
#
# Error codes (status.FATAL, status.NONFATAL; the README's LCD table):
#
# code  ST3 bit (ED_STD_STATUS1)       kind      meaning
# 1     NONVOLATILE_MEMORY_FAILURE     fatal     the EEPROM does not answer, or lost the registers
# 2     MEASUREMENT_ERROR              fatal     the metering chip does not answer
# 3     CONFIGURATION_ERROR            non-fatal a setting out of range: its default is used
# 4     TAMPER_DETECT                  non-fatal a tamper condition
# 5     CLOCK_ERROR                    non-fatal no valid time: demand suspended, TOU tier held,
#                                                date and time shown as dashes
# 6     LOW_BATTERY                    non-fatal the RTC chip's backup failed (its lost-time flag
#                                                at boot), until a time set; battery sign lit too
#
# Item codes, declared here once (a tool that programs DISPLAY_ITEMS sends these bytes):
#
# code  item               identifier  value and annunciators
# 1     delivered energy   DE (TX)     kWh in DISPLAY_DIGITS digits, DISPLAY_DECIMALS of
#                                      them decimals, leading zeros shown; kWh, delivered arrow
# 2     received energy    NG (RX)     the same; kWh, received arrow
# 3     net energy         NT          delivered - received; kWh; the minus sign when negative
# 4     maximum demand     DM          meter.demand.max_kw_x1000 as kW with 3 decimals
#                                      ("  7.250"); kW; "------" without a demand subsystem
# 5     present TOU tier   TR          meter.tou.tier 0-3 as "A".."D" and that tier's T1..T4
#                                      sign; "------" without a TOU subsystem
# 6     date               DA          MM.DD.YY (North American order); "--.--.--" while
#                                      the clock is invalid (ST3 CLOCK_ERROR)
# 7     time               TI          HHMMSS with the colons, local time (daylight time
#                                      in DST, tou.py); "--:--:--" while invalid
# 8     firmware version   VE          meter.VERSION, "0.1.0" -> "   0.1.0"
# 9     all-segments test  88          every segment, point and annunciator lit
# 10    cumulative demand  CD          meter.demand.cumulative_w (the maxima moved by demand
#                                      resets) as kW with 3 decimals; kW; "------" without demand
# 11    continuously       CC          meter.demand.cont_cumulative_w (cumulative + the maximum
#       cumulative demand              now), the same way. Demand values roll over at 1000 kW
#
# ID_STYLE 0 names the energies DE / NG / NT, 1 names them TX / RX / NT. An energy value
# rolls over at 10**DISPLAY_DIGITS display units (999999 -> 000000); the register keeps its
# full value. A code this firmware does not know is skipped; an empty list shows item 1.
#
# No allocation per refresh (a refresh runs every poll): the text and RAM images are
# preallocated, identifiers are bytes, numbers are small ints, and only the RAM bytes that
# changed go to the HT1621. The date and time items take the meter's clock (seconds since
# 2000, timekeeping.date_into: no tuple; machine.RTC.datetime() would make one) once when
# they come on, and count seconds on the board clock from there.
#
# The HT1621's power-on reset is unreliable: every REINIT_S of board clock the display
# re-sends the init commands and the whole RAM.

import time

from micropython import const

import config
import lcd_glyphs as G
import status
import timekeeping as tk

ITEM_DELIVERED = const(1)
ITEM_RECEIVED = const(2)
ITEM_NET = const(3)
ITEM_MAX_DEMAND = const(4)
ITEM_TOU_TIER = const(5)
ITEM_DATE = const(6)
ITEM_TIME = const(7)
ITEM_VERSION = const(8)
ITEM_SEGMENTS = const(9)
ITEM_CUM_DEMAND = const(10)
ITEM_CONT_CUM_DEMAND = const(11)
ITEM_LAST = const(11)
_ITEM_ERROR = const(0x100)  # a non-fatal error's own item: 0x100 | its code

REINIT_S = const(60)

_REINIT_MS = const(60000)
_BLANK = const(32)
_ZERO = const(48)
_DASH = const(45)
_DEMAND_DECIMALS = const(3)  # max_kw_x1000: kW with 3 decimals
_RES_DIGITS = const(4)  # the energy residue counts 0.1 mWh = 1e-4 Wh
_DATE_DOTS = const(0x0A)  # points after value digits 1 and 3: MM.DD.YY

# Energy identifiers, two bytes each: delivered, received, net for ID_STYLE 0, then 1.
_ENERGY_IDS = b"DENGNTTXRXNT"
_IDS = b"DMTRCDCC"  # ITEM_MAX_DEMAND, ITEM_TOU_TIER, ITEM_CUM_DEMAND, ITEM_CONT_CUM_DEMAND
_ID_DATE = b"DA"
_ID_TIME = b"TI"
_ID_VERSION = b"VE"
_ID_ERROR = b"Er"
_POW10 = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)


class Display:
    def __init__(self, lcd, meter):
        import meter as meter_module  # here, not at the top: meter imports this module

        self._lcd = lcd
        self._meter = meter
        self._ram = bytearray(G.RAM_SIZE)
        self._shown = bytearray(G.RAM_SIZE)
        self._text = bytearray(b"        ")
        self._valid = False  # the chip's RAM is unknown until the first full write
        self.index = -1  # position in the display list (-1: before the first item)
        self.item = 0  # the list's current item code (0 before the first one)
        self.error = 0  # the fatal error code shown instead of the list, 0 when the list runs
        self._error_bit = 0  # the status bit of the non-fatal error item shown, if one is
        self.reinits = 0
        self._next_scroll = 0
        self._next_reinit = 0
        # the meter's clock as read when a date/time item came on, and the board clock then
        self._clock_read = False
        self._date = bytearray(3)  # month, day, year % 100
        self._ymd = [0, 0, 0]  # timekeeping.date_into's answer
        self._sod = 0  # second of the day
        self._sod_ticks = 0
        # the firmware version, laid out once: digits right-aligned, a point after each part
        self._version = bytearray(b"      ")
        self._version_dots = 0
        n = 0
        for ch in reversed(meter_module.VERSION):
            if ch == "." and 0 < n < G.N_DIGITS:
                self._version_dots |= 1 << (G.N_DIGITS - 1 - n)
            elif "0" <= ch <= "9" and n < G.N_DIGITS:  # a suffix such as "-dev" is left out
                n += 1
                self._version[G.N_DIGITS - n] = ord(ch)

    # --- the scroll -------------------------------------------------------------------

    def boot(self):
        # the power-up segment test, until the first tick shows the list
        self.index = -1
        now = self._meter.clock.ticks_ms()
        self._next_reinit = time.ticks_add(now, _REINIT_MS)
        self.draw(ITEM_SEGMENTS)

    def scroll_ms(self):
        # SCROLL_S as set: config.validate keeps it within SCROLL_MIN_S .. 30 s
        # (the port refuses any other, power-up puts a stored one back to its default)
        return self._meter.config.get(config.SCROLL_S) * 1000

    def tick(self, now):
        """Every poll: re-initialise the chip when due, scroll when due, draw."""
        if time.ticks_diff(now, self._next_reinit) >= 0:
            self._next_reinit = time.ticks_add(now, _REINIT_MS)
            self.reinits += 1
            self._lcd.reinit()
            self._valid = False  # the render below sends all 16 bytes
        st = self._meter.status
        code = st.fatal_code()
        if code:
            self.error = code
            self._ident(_ID_ERROR)
            self._number(code, 3, 3)
            self._render(G.ANN_ALM | (G.ANN_BAT if st.bits & status.LOW_BATTERY else 0))
            return
        scroll = self.scroll_ms()
        if self.item & _ITEM_ERROR and not st.bits & self._error_bit:
            # the error this item shows has cleared: the next item, for a full scroll time
            self._advance()
            self.error = 0
            self._next_scroll = time.ticks_add(now, scroll)
        elif self.error or self.index < 0:
            # the first item after boot, or the fault has cleared: a full scroll time from now
            if self.index < 0:
                self._advance()
            self.error = 0
            self._next_scroll = time.ticks_add(now, scroll)
        elif time.ticks_diff(now, self._next_scroll) >= 0:
            self._advance()
            # from the last deadline, not from now: a poll is late by its bus time
            self._next_scroll = time.ticks_add(self._next_scroll, scroll)
            if time.ticks_diff(now, self._next_scroll) >= 0:
                self._next_scroll = time.ticks_add(now, scroll)  # fell behind: resync
        self.draw(self.item, now)

    def _advance(self):
        # positions 0 .. n-1 are the list's items, n .. n+k-1 the k non-fatal errors' items
        items = self._meter.config.get(config.DISPLAY_ITEMS)
        n = len(items)
        nf = status.NONFATAL
        total = n + len(nf) // 2
        bits = self._meter.status.bits
        self._clock_read = False
        for _ in range(total):
            i = self.index = (self.index + 1) % total
            if i < n:
                if ITEM_DELIVERED <= items[i] <= ITEM_LAST:
                    self.item = items[i]
                    return
            elif bits & nf[2 * (i - n)]:
                self._error_bit = nf[2 * (i - n)]
                self.item = _ITEM_ERROR | nf[2 * (i - n) + 1]
                return
        self.index = 0
        self.item = ITEM_DELIVERED

    # --- items ------------------------------------------------------------------------

    def draw(self, item, now=0):
        """Draw one item now (now: the board's ticks_ms, for the time item)."""
        m = self._meter
        t = self._text
        bits = m.status.bits
        ann = G.ANN_BAT if bits & status.LOW_BATTERY else 0
        if bits & status.NONFATAL_BITS:
            ann |= G.ANN_ALM
        dots = 0
        if item & _ITEM_ERROR:  # a non-fatal error's own item
            self._ident(_ID_ERROR)
            self._number(item & 0xFF, 3, 3)
            self._render(ann | G.ANN_ALM)
            return
        if ITEM_DELIVERED <= item <= ITEM_NET:
            self._draw_energy(item, ann)
            return
        if ITEM_MAX_DEMAND <= item <= ITEM_TOU_TIER or item >= ITEM_CUM_DEMAND:
            tier = item == ITEM_TOU_TIER
            source = getattr(m, "tou" if tier else "demand", None)
            self._ident(_IDS, 2 * (item - ITEM_MAX_DEMAND if item < ITEM_CUM_DEMAND else item - ITEM_SEGMENTS + 1))
            if source is None:
                for i in range(2, G.N_CHARS):
                    t[i] = _DASH
            elif tier:
                self._number(0, 0, 0)
                t[7] = 65 + (source.tier & 3)  # "A".."D"
                ann |= G.ANN_T1 << (source.tier & 3)
            else:  # watts are kW with 3 decimals
                w = source.max_kw_x1000
                if item == ITEM_CUM_DEMAND:
                    w = source.cumulative_w
                elif item == ITEM_CONT_CUM_DEMAND:
                    w = source.cont_cumulative_w
                self._number(w, G.N_DIGITS, _DEMAND_DECIMALS + 1)
                dots = G.dot_after(_DEMAND_DECIMALS)
            if not tier:
                ann |= G.ANN_KW
        elif (item == ITEM_DATE or item == ITEM_TIME) and bits & status.CLOCK_ERROR:
            # no valid time: dashes, never a wrong time that looks right
            self._ident(_ID_DATE if item == ITEM_DATE else _ID_TIME)
            for i in range(2, G.N_CHARS):
                t[i] = _DASH
            if item == ITEM_DATE:
                dots = _DATE_DOTS
            else:
                ann |= G.ANN_COL
        elif item == ITEM_DATE or item == ITEM_TIME:
            if not self._clock_read:
                # the meter's clock (timekeeping.py, as ST52 shows it), not machine.RTC's
                # datetime(): that makes a tuple, and a refresh allocates nothing
                secs = m.clock_time
                tou = getattr(m, "tou", None)
                if tou is not None:
                    secs += tou.dst_at(secs)  # local time: standard time + 1 h in DST (tou.py)
                days = secs // 86400
                ymd = self._ymd
                tk.date_into(days, ymd)
                self._date[0] = ymd[1]
                self._date[1] = ymd[2]
                self._date[2] = ymd[0] % 100
                self._sod = secs - days * 86400
                self._sod_ticks = now
                self._clock_read = True
            if item == ITEM_DATE:
                self._ident(_ID_DATE)
                self._pairs(self._date[0], self._date[1], self._date[2])
                dots = _DATE_DOTS
            else:
                sod = (self._sod + time.ticks_diff(now, self._sod_ticks) // 1000) % 86400
                self._ident(_ID_TIME)
                self._pairs(sod // 3600, sod // 60 % 60, sod % 60)
                ann |= G.ANN_COL
        elif item == ITEM_VERSION:
            self._ident(_ID_VERSION)
            for i in range(G.N_DIGITS):
                t[2 + i] = self._version[i]
            dots = self._version_dots
        else:  # the all-segments test
            for i in range(G.N_CHARS):
                t[i] = 56  # "8"
            ann = G.ANN_ALL
            dots = G.DOTS_ALL
        self._render(ann, dots)

    def _draw_energy(self, item, ann):
        m = self._meter
        e = m.energy
        self._ident(_ENERGY_IDS, (6 if m.config.get(config.ID_STYLE) == 1 else 0) + 2 * (item - ITEM_DELIVERED))
        digits = min(max(m.config.get(config.DISPLAY_DIGITS), 1), G.N_DIGITS)
        decimals = min(max(m.config.get(config.DISPLAY_DECIMALS), 0), digits - 1)
        ann |= G.ANN_KWH
        if item == ITEM_DELIVERED:
            wh, res = e.delivered_wh, e.delivered_res
            ann |= G.ANN_DEL
        elif item == ITEM_RECEIVED:
            wh, res = e.received_wh, e.received_res
            ann |= G.ANN_REC
        else:
            wh = e.delivered_wh - e.received_wh
            res = e.delivered_res - e.received_res
            if res < 0:
                wh -= 1
                res += 10000
            if wh < 0:  # |net|, truncated toward zero as the registers are, and the minus sign
                ann |= G.ANN_NEG
                wh = -wh - 1 if res else -wh
                res = 10000 - res if res else 0
        # wh + res / 10000 Wh in display units of 10**-decimals kWh, rolled over at 10**digits
        if decimals <= 3:
            value = (wh % _POW10[digits + 3 - decimals]) // _POW10[3 - decimals]
        else:
            x = decimals - 3  # digits below 1 Wh come from the residue
            value = (wh % _POW10[digits - x]) * _POW10[x] + res // _POW10[_RES_DIGITS - x]
        if not value:
            ann &= ~G.ANN_NEG  # a net that shows as zero shows no minus sign
        self._number(value, digits, digits)
        self._render(ann, G.dot_after(decimals))

    # --- text ---------------------------------------------------------------------------

    def _ident(self, ids, at=0):
        self._text[0] = ids[at]
        self._text[1] = ids[at + 1]

    def _number(self, value, digits, shown):
        # value's last `digits` digits right-aligned in the 6 value characters (so it rolls
        # over at 10**digits), zeros shown in the last `shown` places, blanks to the left
        t = self._text
        v = value % _POW10[digits]
        for place in range(G.N_DIGITS):
            if place < digits and (v or place < shown):
                t[7 - place] = _ZERO + v % 10
                v //= 10
            else:
                t[7 - place] = _BLANK

    def _pairs(self, a, b, c):
        t = self._text
        t[2] = _ZERO + a // 10 % 10
        t[3] = _ZERO + a % 10
        t[4] = _ZERO + b // 10
        t[5] = _ZERO + b % 10
        t[6] = _ZERO + c // 10
        t[7] = _ZERO + c % 10

    # --- the chip -------------------------------------------------------------------------

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
        """Re-send the chip's set-up and the whole RAM image now (tick() does it every REINIT_S)."""
        self._lcd.reinit()
        self._lcd.write(self._ram)
        self._shown[:] = self._ram
        self._valid = True

    @property
    def ram(self):
        """The 16-byte RAM image last sent to the chip (what the glass shows)."""
        return self._shown
