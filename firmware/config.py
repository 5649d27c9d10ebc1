"""The meter's configuration: every programmable setting, one declaration each.

    cfg = Config()                    # the factory defaults
    cfg.get(KH_MWH)                   # 1000: 1.0 Wh per CF1 pulse
    cfg.set(SCROLL_S, 12)
    blob = cfg.encode()               # what storage keeps (two CRC-checked copies)
    cfg = Config.decode(blob)         # unknown ids are kept, so older firmware keeps newer fields

Settings are integers or byte strings keyed by a one-byte id. The encoding is a run of
`id, length (1 byte), value`; integers are little-endian signed of 1, 2 or 4 bytes
(chosen by value). The same ids are what the optical port's manufacturer configuration
table and `meterctl program` use, so a setting is named once for firmware, tables and
tools. Id ranges: 0x01-0x1F metrology and calibration, 0x20-0x2F display, 0x30-0x3F
demand and load profile, 0x40-0x5F time of use, 0x60-0x7F security, 0x80-0xFF reserved.
A setting's values (DST_NONE ...) are declared after the ids, below the setting they
belong to: tools name the ids by the first constant of each value (host_tools/readout.py).
"""

try:
    from micropython import const
except ImportError:  # CPython: host tools and tests read the ids from here

    def const(x):  # type: ignore[misc]
        return x


# --- metrology and calibration (issue 3) ---
# ELEMENTS: the meter form, i.e. how the voltage input is wired (metrology.py). 1 = Form 1S:
# 1 element, 2 wire, voltage input across the two wires, channel A: energy = V x I_A.
# 2 = Form 2S: 1.5 element, 3 wire 120/240 V, voltage input across the two hot legs
# (240 V), channel A on leg A, B on leg B: energy = V_AB x (I_A + I_B) / 2.
ELEMENTS = const(0x01)
CT_REVERSE_A = const(0x02)  # 1: channel A's current transformer is wired reversed
CT_REVERSE_B = const(0x03)
KH_MWH = const(0x04)  # meter constant Kh, mWh per CF1 pulse (1000 = 1.0 Wh)
AWGAIN = const(0x05)  # ADE7953 energy gains; 0 = the board's nominal gain
AVARGAIN = const(0x06)
AVAGAIN = const(0x07)
BWGAIN = const(0x08)
BVARGAIN = const(0x09)
BVAGAIN = const(0x0A)
PHCALA = const(0x0B)  # fixed PHCAL register value (sign-magnitude), used while PHASE_A_URAD is 0
PHCALB = const(0x0C)
V_NV_PER_LSB = const(0x0D)  # VRMS scale, nanovolts per LSB; 0 = nominal from the board
IA_NA_PER_LSB = const(0x0E)  # IRMSA scale, nanoamps per LSB; 0 = nominal
IB_NA_PER_LSB = const(0x0F)
NOLOAD_PERMILLE_START = const(0x10)  # no-load threshold as a share of the starting load at 120 V (per mille)
PHASE_A_URAD = const(0x11)  # CT phase error, microradians of extra current lag (calibration); PHCAL per line frequency
PHASE_B_URAD = const(0x12)
AWATTOS = const(0x13)  # ADE7953 power offsets (signed register values, 1/512 code); 0 = none
AVAROS = const(0x14)
AVAOS = const(0x15)
BWATTOS = const(0x16)
BVAROS = const(0x17)
BVAOS = const(0x18)
# --- display (issue 6) ---
DISPLAY_ITEMS = const(0x20)  # bytes: item codes in scroll order (display.py)
SCROLL_S = const(0x21)  # seconds per item, SCROLL_MIN_S .. 30 (_SCROLL_LIMIT_S)
SCROLL_MIN_S = const(0x22)  # the least scroll time the meter accepts (1 .. SCROLL_S)
DISPLAY_DIGITS = const(0x23)  # digits shown for energy (1..6)
DISPLAY_DECIMALS = const(0x24)  # of which decimals (0..3, fewer than DISPLAY_DIGITS)
ID_STYLE = const(0x25)  # 0: DE/NG/NT, 1: TX/RX/NT
# --- demand and load profile (issue 5) ---
DEMAND_INTERVAL_MIN = const(0x30)  # 5, 6, 10, 12, 15, 20, 30 or 60 (validate: an interval)
DEMAND_SUBINTERVALS = const(0x31)  # 1 = block demand; n > 1 = rolling demand of n sub-intervals
# (n divides DEMAND_INTERVAL_MIN: each sub-interval is whole minutes, so it divides the hour too)
DEMAND_RESET_LOCKOUT_S = const(0x32)
LP_INTERVAL_MIN = const(0x33)  # load-profile interval: an interval, as DEMAND_INTERVAL_MIN
SELF_READ_TIME = const(0x38)  # the daily self-read (ST26), minutes after local midnight 0-1439; -1: none
# --- time of use (issue 5: tou.py has the rules) ---
TOU_SEASONS = const(0x40)  # bytes: up to 4 season starts as (month, day) pairs; b"" = one season
TOU_HOLIDAYS = const(0x41)  # bytes: 3-byte holidays, by the first byte (tou.py applies them):
HOLIDAY_EVERY_YEAR = const(0xFF)  # (0xFF, month, day): that date every year
HOLIDAY_OBSERVED = const(0xFE)  # (0xFE, month, day): every year, on the Friday before if a
# Saturday, the Monday after if a Sunday (the weekend day itself keeps its weekend schedule)
HOLIDAY_NTH = const(0xF0)  # (0xF0 + n, month, weekday 0 Monday .. 6 Sunday): the nth weekday
HOLIDAY_LAST = const(5)  # of the month, n = 1-4, or n = HOLIDAY_LAST the last (0xF5)
# anything below 0xF0: (year - 2000, month, day), that one date
TOU_SCHEDULE = const(0x42)  # + 4 * season + day type (0 weekday, 1 Sat, 2 Sun, 3 holiday), to 0x51:
# bytes, that day's switch points as (hour, minute, tier 0-3) triples; b"" = tier A all day
DST = const(0x52)  # daylight saving time rule: DST_NONE, DST_NORTH_AMERICA or DST_EU (tou.py)
DST_NONE = const(0)  # the clock, TOU and LCD keep standard time all year
DST_NORTH_AMERICA = const(1)  # 2nd Sunday of March 02:00 -> 03:00, 1st Sunday of November 02:00 -> 01:00
DST_EU = const(2)  # last Sunday of March and of October, 01:00 UTC (needs TIME_ZONE_MIN)
TIME_ZONE_MIN = const(0x53)  # standard time minus UTC, minutes (ST53 TIME_ZONE_OFFSET): -300 New York
TIME_ZONE_MIN_LO = const(-720)  # its range: UTC-12:00 ..
TIME_ZONE_MIN_HI = const(840)  # .. UTC+14:00
# --- security and identity (issue 7: security.py, tables.py) ---
PW_READER = const(0x60)  # bytes: salt + SHA-256 of the password (security.py); b"" = blank
PW_PROGRAMMER = const(0x61)
PW_MASTER = const(0x62)
LOCKOUT_S = const(0x63)  # seconds the port refuses every password after LOCKOUT_TRIES wrong ones
LOCKOUT_TRIES = const(0x64)
SERIAL_NUMBER = const(0x70)  # bytes: ST1 MFG_SERIAL_NUMBER (16 characters)
DEVICE_ID = const(0x71)  # bytes: ST5 IDENTIFICATION (20 characters, the utility's meter number)

DEFAULTS = (
    (ELEMENTS, 1),
    (CT_REVERSE_A, 0),
    (CT_REVERSE_B, 0),
    (KH_MWH, 1000),
    (AWGAIN, 0),
    (AVARGAIN, 0),
    (AVAGAIN, 0),
    (BWGAIN, 0),
    (BVARGAIN, 0),
    (BVAGAIN, 0),
    (PHCALA, 0),
    (PHCALB, 0),
    (V_NV_PER_LSB, 0),
    (IA_NA_PER_LSB, 0),
    (IB_NA_PER_LSB, 0),
    (NOLOAD_PERMILLE_START, 600),
    (PHASE_A_URAD, 0),
    (PHASE_B_URAD, 0),
    (AWATTOS, 0),
    (AVAROS, 0),
    (AVAOS, 0),
    (BWATTOS, 0),
    (BVAROS, 0),
    (BVAOS, 0),
    (DISPLAY_ITEMS, b"\x01\x02\x03"),
    (SCROLL_S, 10),
    (SCROLL_MIN_S, 10),
    (DISPLAY_DIGITS, 6),
    (DISPLAY_DECIMALS, 1),
    (ID_STYLE, 0),
    (DEMAND_INTERVAL_MIN, 15),
    (DEMAND_SUBINTERVALS, 1),
    (DEMAND_RESET_LOCKOUT_S, 60),
    (LP_INTERVAL_MIN, 15),
    (SELF_READ_TIME, -1),
    (PW_READER, b""),
    (PW_PROGRAMMER, b""),
    (PW_MASTER, b""),
    (LOCKOUT_S, 60),
    (LOCKOUT_TRIES, 3),
    (SERIAL_NUMBER, b""),
    (DEVICE_ID, b""),
    (TOU_SEASONS, b""),
    (TOU_HOLIDAYS, b""),
    (DST, DST_NONE),
    (TIME_ZONE_MIN, 0),
    (TOU_SCHEDULE + 0, b""),  # season 0 weekday; then Saturday, Sunday, holiday, season 1 ...
    (TOU_SCHEDULE + 1, b""),
    (TOU_SCHEDULE + 2, b""),
    (TOU_SCHEDULE + 3, b""),
    (TOU_SCHEDULE + 4, b""),
    (TOU_SCHEDULE + 5, b""),
    (TOU_SCHEDULE + 6, b""),
    (TOU_SCHEDULE + 7, b""),
    (TOU_SCHEDULE + 8, b""),
    (TOU_SCHEDULE + 9, b""),
    (TOU_SCHEDULE + 10, b""),
    (TOU_SCHEDULE + 11, b""),
    (TOU_SCHEDULE + 12, b""),
    (TOU_SCHEDULE + 13, b""),
    (TOU_SCHEDULE + 14, b""),
    (TOU_SCHEDULE + 15, b""),
)


def valid_time_setting(key, value):
    """The DST and time-zone settings' rule: a rule id, and a zone in whole quarter hours
    (every zone in use is). validate() applies it with the others."""
    if key == DST:
        return DST_NONE <= value <= DST_EU
    if key == TIME_ZONE_MIN:
        return TIME_ZONE_MIN_LO <= value <= TIME_ZONE_MIN_HI and value % 15 == 0
    return True


def holiday_ok(y, mo, d):
    """One 3-byte TOU_HOLIDAYS entry (y, mo, d) is well formed: a date (y < HOLIDAY_NTH,
    or every year, or observed) or the nth / last weekday of a month (weekday 0-6)."""
    if not 1 <= mo <= 12:
        return False
    if HOLIDAY_NTH < y <= HOLIDAY_NTH + HOLIDAY_LAST:
        return d <= 6
    return (y < HOLIDAY_NTH or y == HOLIDAY_EVERY_YEAR or y == HOLIDAY_OBSERVED) and 1 <= d <= 31


# --- the rule of each setting (the one declaration: the optical port's MT1 write, power-up,
# the display and `meterctl program` all ask validate(); nothing else range-checks). An
# interval (demand, load profile): 5, 6, 10, 12, 15, 20, 30 or 60 minutes, whole blocks of
# the hour (an interval ends on the quarter hour or the like); under 5 minutes a demand is a
# spike and the load profile's 128 blocks would hold less than a week.
_SCROLL_LIMIT_S = const(30)  # the longest programmable scroll time
_INTERVAL_LEAST = const(5)  # minutes
_NBR_SEASONS = const(4)  # TOU_SCHEDULE's layout: 4 seasons x 4 day types (tou.NBR_SEASONS)
_NBR_TIERS = const(4)  # a switch point's tier is 0 .. 3, A .. D (tou.NBR_TIERS)
_MAX_BYTES = const(40)  # the longest byte-string setting
_MAX_ITEMS = const(32)  # the longest display list
_HASH = const(40)  # a stored password: salt (8) + SHA-256 (32), security.py


def _alone(key, v):
    """An integer setting within its own range, whatever the others hold."""
    if key == DEMAND_INTERVAL_MIN or key == LP_INTERVAL_MIN:
        return _INTERVAL_LEAST <= v <= 60 and 60 % v == 0
    if key == DST or key == TIME_ZONE_MIN:
        return valid_time_setting(key, v)
    lo, hi = -0x800000, 0xFFFFFF  # chip registers and scales: 24 bits
    if key == ELEMENTS:
        lo, hi = 1, 2
    elif key == CT_REVERSE_A or key == CT_REVERSE_B or key == ID_STYLE:
        lo, hi = 0, 1
    elif key == KH_MWH:
        lo, hi = 1, 1000000
    elif key == NOLOAD_PERMILLE_START:
        lo, hi = 0, 1000
    elif key == SCROLL_S or key == SCROLL_MIN_S:
        lo, hi = 1, _SCROLL_LIMIT_S
    elif key == DISPLAY_DIGITS:
        lo, hi = 1, 6
    elif key == DISPLAY_DECIMALS:
        lo, hi = 0, 3
    elif key == DEMAND_SUBINTERVALS:
        lo, hi = 1, 60
    elif key == DEMAND_RESET_LOCKOUT_S:
        lo, hi = 0, 86400
    elif key == SELF_READ_TIME:
        lo, hi = -1, 1439
    elif key == LOCKOUT_S:
        lo, hi = 1, 3600
    elif key == LOCKOUT_TRIES:
        lo, hi = 1, 10
    return lo <= v <= hi


def validate(key, value, cfg):
    """None if value may be stored for key beside cfg's other settings (cfg.get; for a
    write of several, a Config holding them all), else the id of the setting at fault: key
    itself (no such setting, the wrong kind, out of its range) or the other setting its
    value conflicts with: SCROLL_S >= SCROLL_MIN_S, DISPLAY_DECIMALS < DISPLAY_DIGITS,
    DEMAND_SUBINTERVALS dividing DEMAND_INTERVAL_MIN (each sub-interval whole minutes)."""
    try:
        old = cfg.get(key)
    except KeyError:
        return key
    if isinstance(old, int) != isinstance(value, int):
        return key
    if not isinstance(value, int):
        n = len(value)
        step = 0
        if key == DISPLAY_ITEMS:
            ok = 1 <= n <= _MAX_ITEMS and 0 not in value
        elif PW_READER <= key <= PW_MASTER:
            ok = n == 0 or n == _HASH
        elif key == TOU_SEASONS:  # (month, day) starts
            ok = not n % 2 and n <= 2 * _NBR_SEASONS
            step = 2
        elif TOU_SCHEDULE <= key < TOU_SCHEDULE + 4 * _NBR_SEASONS:  # (hour, minute, tier) switch points
            ok = not n % 3 and n <= _MAX_BYTES
            step = 3
        elif key == TOU_HOLIDAYS:  # 3-byte entries (HOLIDAY_*)
            ok = not n % 3 and n <= _MAX_BYTES
            step = 3
        else:
            ok = n <= _MAX_BYTES
        i = 0
        while ok and step and i < n:  # no allocation: power-up runs this for every setting
            if step == 2:
                ok = 1 <= value[i] <= 12 and 1 <= value[i + 1] <= 31
            elif key == TOU_HOLIDAYS:
                ok = holiday_ok(value[i], value[i + 1], value[i + 2])
            else:
                ok = value[i] <= 23 and value[i + 1] <= 59 and value[i + 2] < _NBR_TIERS
            i += step
        return None if ok else key
    if not _alone(key, value):
        return key
    if key == SCROLL_S or key == SCROLL_MIN_S:
        a, b = SCROLL_S, SCROLL_MIN_S
    elif key == DISPLAY_DIGITS or key == DISPLAY_DECIMALS:
        a, b = DISPLAY_DIGITS, DISPLAY_DECIMALS
    elif key == DEMAND_INTERVAL_MIN or key == DEMAND_SUBINTERVALS:
        a, b = DEMAND_INTERVAL_MIN, DEMAND_SUBINTERVALS
    else:
        return None
    other = b if key == a else a
    va = value if key == a else cfg.get(a)
    vb = value if key == b else cfg.get(b)
    if not _alone(other, cfg.get(other)):
        return None  # the other one is at fault alone
    if a == SCROLL_S:
        ok = va >= vb
    elif a == DISPLAY_DIGITS:
        ok = vb < va
    else:
        ok = va % vb == 0
    return None if ok else other


class ConfigError(ValueError):
    """A configuration blob that does not decode (storage then uses the other copy)."""


def _int_bytes(v):
    if -128 <= v < 128:
        return 1
    if -32768 <= v < 32768:
        return 2
    return 4


class Config:
    def __init__(self):
        self.changes = 0  # counts set() and load(): who caches a setting sees it changed
        self.by = 0  # the C12.18 USER_ID of the session that set it last (EV_CONFIG_CHANGED)
        self._v = {}
        for key, value in DEFAULTS:
            self._v[key] = value

    def get(self, key):
        return self._v[key]

    def set(self, key, value):
        if key not in self._v:
            raise KeyError(key)
        if isinstance(self._v[key], int) != isinstance(value, int):
            raise TypeError("setting 0x%02x takes %s" % (key, "an int" if isinstance(self._v[key], int) else "bytes"))
        self._v[key] = value
        self.changes += 1

    def items(self):
        return self._v.items()

    def load(self, blob):
        """Take every setting from a stored blob (defaults for ids it lacks), in place,
        so each subsystem holding this Config sees them. Raises ConfigError."""
        self._v = Config.decode(blob)._v
        self.changes += 1

    def encode(self):
        out = bytearray()
        for key in sorted(self._v):
            v = self._v[key]
            if isinstance(v, int):
                n = _int_bytes(v)
                out.append(key)
                out.append(n | 0x80)  # bit 7 of the length: a signed integer
                for i in range(n):
                    out.append((v >> (8 * i)) & 0xFF)
            else:
                if len(v) > 127:
                    raise ValueError("setting 0x%02x too long" % key)
                out.append(key)
                out.append(len(v))
                out.extend(v)
        return bytes(out)

    @classmethod
    def decode(cls, blob):
        cfg = cls()
        i = 0
        n = len(blob)
        while i < n:
            if i + 2 > n:
                raise ConfigError("truncated setting header")
            key = blob[i]
            length = blob[i + 1] & 0x7F
            is_int = blob[i + 1] & 0x80
            i += 2
            if i + length > n:
                raise ConfigError("truncated setting 0x%02x" % key)
            raw = blob[i : i + length]
            i += length
            if is_int:
                if length not in (1, 2, 4):
                    raise ConfigError("bad integer width for 0x%02x" % key)
                v = 0
                for k in range(length - 1, -1, -1):
                    v = (v << 8) | raw[k]
                if v & (1 << (8 * length - 1)):
                    v -= 1 << (8 * length)
                cfg._v[key] = v
            else:
                cfg._v[key] = bytes(raw)
        return cfg
