"""LCD segment layout of the meter display: the one source of truth.

Shared by the firmware (MicroPython: encode_into() on every refresh) and the
host simulator (CPython: decode() for the LCD read-back). No imports besides
``micropython.const``. On MicroPython, importing it interns the one-character
strings of printable ASCII (about 1 KB), so that encode_into() does not
allocate when given a str; bytes / bytearray text never allocates.

Usage (firmware)::

    import lcd_glyphs as g
    ram = bytearray(g.RAM_SIZE)           # allocate once
    g.encode_into(ram, "DE012345", dots=g.dot_after(2), ann=g.ANN_KWH | g.ANN_DEL)
    lcd.write(ram)                        # ht1621.HT1621.write()
    text = bytearray(b"TX      ")         # or fill a bytearray in place
    g.encode_into(ram, text, ann=g.ANN_KWH | g.ANN_REC)

Usage (host)::

    text, dots, ann = g.decode(ram)       # ("DE012345", 0x08, ANN_KWH | ANN_DEL)

Display
-------
One HT1621 (32 addresses x 4 bits = 16 bytes of display RAM). Eight 7-segment
characters: 0..1 = identifier ("DE", "TX", "Er", ...), 2..7 = value digits
(2 = leftmost). Character i is RAM byte i, spread over nibble addresses 2i and
2i+1.

RAM byte j <-> HT1621 nibbles: the low nibble (bits 0..3) is address 2j, the
high nibble (bits 4..7) is address 2j+1, and bit k of a nibble is D(k). The
HT1621 write frame sends address 0 and auto-increments, each nibble D0..D3
first, so the driver clocks every RAM byte out LSB first (bit 0 .. bit 7).

Segment bits of a character byte (as on the common PDC-6X1 module)::

     aaa        a = 0x10   b = 0x20   c = 0x40   d = 0x08
    f   b       e = 0x04   f = 0x01   g = 0x02
     ggg        0x80 = the character's extra segment (see table)
    e   c
     ddd

Extra segments and annunciators (``ann`` flags, ``dots`` mask):

=============  ========  ===============  ===================================
flag / dot     value     RAM byte, bit    address, data bit
=============  ========  ===============  ===================================
ANN_ALM        0x0001    0, 0x80          1, D3 (extra segment of char 0)
ANN_NEG        0x0002    1, 0x80          3, D3 (extra segment of char 1:
                                          minus sign left of the value)
dots bit k     1 << k    2+k, 0x80        2k+5, D3 (decimal point AFTER value
(k = 0..5)                                digit k; k = 0 is char 2)
ANN_KWH        0x0004    8, 0x01          16, D0  "kWh"
ANN_KW         0x0008    8, 0x02          16, D1  "kW"
ANN_KVARH      0x0010    8, 0x04          16, D2  "kvarh"
ANN_KVAR       0x0020    8, 0x08          16, D3  "kvar"
ANN_DEL        0x0040    8, 0x10          17, D0  delivered (import) arrow
ANN_REC        0x0080    8, 0x20          17, D1  received (export) arrow
ANN_COL        0x0100    8, 0x40          17, D2  colons (hh:mm:ss, both)
ANN_COMM       0x0200    8, 0x80          17, D3  optical port activity
ANN_T1..T4     0x0400..  9, 0x01..0x08    18, D0..D3  tariff tier 1..4
               0x2000
ANN_BAT        0x4000    9, 0x10          19, D0  battery / supply warning
(free)                   9, 0x20..0x80    19, D1..D3
(free)                   10..15           20..31
=============  ========  ===============  ===================================

In general: flag bit n >= 2 is RAM byte 8 + (n - 2) // 8, bit (n - 2) % 8.
Annunciator flags stay below 2**15 so they are small ints on every port.

Font
----
Digits as usual (7 has no f segment, 6 and 9 have tails). Letters, drawn as
well as 7 segments allow::

    A  a b c e f g    (A)        N  a b c e f    (tall n)
    B  c d e f g      (b)        O  = 0
    C  a d e f                   P  a b e f g
    D  b c d e g      (d)        Q  a b c f g    (q)
    E  a d e f g                 R  a e f        (tall r, so that R != r)
    F  a e f g                   S  = 5
    G  a c d e f                 T  d e f g      (t)
    H  c e f g        (h)        U  b c d e f
    I  e f            (left bar, so that I != 1)
    J  b c d e                   V  c d e        (u)
    K  a c e f g                 W  b d f        (legs up from d)
    L  d e f                     X  b c e f g    (the H shape)
    M  a c e          (legs down from a)         Y  b c d f g
                                 Z  = 2

Lowercase letters use the uppercase glyph, except c (d e g), i (c),
n (c e g), o (c d e g) and r (e g), which have their own.
Symbols: ' ' blank, '-' g, '_' d, '=' d g, '"' b f, "'" b, '[' = C,
']' a b c d. Every other character (including '?', '.', non-ASCII) is drawn
as the fallback glyph a d g (three bars, FALLBACK), which decodes as '?'.

decode() returns one canonical character per pattern, preferring a digit,
then an uppercase letter, then a lowercase letter, then a symbol: "O" and "o"
differ ("0" / "o"), "S" decodes as "5", "Z" as "2", "u" as "V", "h" as "H".
All identifiers the meter shows decode back unchanged: DE TX NG RX NT Er KW
DM TI DA VE TR (use canonical() to compare any other text).
"""

try:
    from micropython import const

    _MICROPYTHON = True
except ImportError:  # CPython
    _MICROPYTHON = False

    def const(x):  # type: ignore[misc]
        return x


RAM_SIZE = const(16)  # bytes of display RAM (32 nibbles)
N_CHARS = const(8)  # characters on the glass
N_ID = const(2)  # identifier characters (0, 1)
N_DIGITS = const(6)  # value digits (2..7)

# Segment bits of one character byte.
SEG_A = const(0x10)
SEG_B = const(0x20)
SEG_C = const(0x40)
SEG_D = const(0x08)
SEG_E = const(0x04)
SEG_F = const(0x01)
SEG_G = const(0x02)
SEG_X = const(0x80)  # extra segment: decimal point / annunciator

FALLBACK = const(0x1A)  # a d g: drawn for characters the font lacks

# Annunciator flags (see the table in the module docstring).
ANN_ALM = const(0x0001)
ANN_NEG = const(0x0002)
ANN_KWH = const(0x0004)
ANN_KW = const(0x0008)
ANN_KVARH = const(0x0010)
ANN_KVAR = const(0x0020)
ANN_DEL = const(0x0040)
ANN_REC = const(0x0080)
ANN_COL = const(0x0100)
ANN_COMM = const(0x0200)
ANN_T1 = const(0x0400)
ANN_T2 = const(0x0800)
ANN_T3 = const(0x1000)
ANN_T4 = const(0x2000)
ANN_BAT = const(0x4000)
ANN_ALL = const(0x7FFF)

DOTS_ALL = const(0x3F)  # all six decimal points

_ANN_RAM = const(8)  # first RAM byte holding annunciators
_ANN_SHIFT = const(2)  # flags below this bit live in the extra segments

# 7-segment patterns for ord(ch) 32..127.
# fmt: off
_FONT = bytes(
    (
        # ' '   !     "     #     $     %     &     '
        0x00, 0x1A, 0x21, 0x1A, 0x1A, 0x1A, 0x1A, 0x20,
        # (     )     *     +     ,     -     .     /
        0x1A, 0x1A, 0x1A, 0x1A, 0x1A, 0x02, 0x1A, 0x1A,
        # 0     1     2     3     4     5     6     7
        0x7D, 0x60, 0x3E, 0x7A, 0x63, 0x5B, 0x5F, 0x70,
        # 8     9     :     ;     <     =     >     ?
        0x7F, 0x7B, 0x1A, 0x1A, 0x1A, 0x0A, 0x1A, 0x1A,
        # @     A     B     C     D     E     F     G
        0x1A, 0x77, 0x4F, 0x1D, 0x6E, 0x1F, 0x17, 0x5D,
        # H     I     J     K     L     M     N     O
        0x47, 0x05, 0x6C, 0x57, 0x0D, 0x54, 0x75, 0x7D,
        # P     Q     R     S     T     U     V     W
        0x37, 0x73, 0x15, 0x5B, 0x0F, 0x6D, 0x4C, 0x29,
        # X     Y     Z     [     \     ]     ^     _
        0x67, 0x6B, 0x3E, 0x1D, 0x1A, 0x78, 0x1A, 0x08,
        # `     a     b     c     d     e     f     g
        0x1A, 0x77, 0x4F, 0x0E, 0x6E, 0x1F, 0x17, 0x5D,
        # h     i     j     k     l     m     n     o
        0x47, 0x40, 0x6C, 0x57, 0x0D, 0x54, 0x46, 0x4E,
        # p     q     r     s     t     u     v     w
        0x37, 0x73, 0x06, 0x5B, 0x0F, 0x4C, 0x4C, 0x29,
        # x     y     z     {     |     }     ~     DEL
        0x67, 0x6B, 0x3E, 0x1A, 0x1A, 0x1A, 0x1A, 0x1A,
    )
)
# fmt: on

# Preference order for decode(): the first character with a pattern wins.
_DECODE_ORDER = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZcinor -_=\"']"


def _intern_ascii():
    # MicroPython interns a one-character str (a qstr) the first time a str is
    # indexed at that character, which allocates. Indexing every printable
    # ASCII character once here, at import, keeps encode_into() free of
    # allocation for ASCII str text (cost: about 1 KB of qstrs).
    s = bytes(range(32, 127)).decode()
    for i in range(len(s)):
        s[i]


if _MICROPYTHON:
    _intern_ascii()


def glyph(ch):
    """7-segment pattern (without the extra segment) for one character."""
    c = ord(ch)
    if 32 <= c < 128:
        return _FONT[c - 32]
    return FALLBACK


def dot_after(decimals):
    """``dots`` mask for a value with ``decimals`` digits after the point.

    dot_after(0) is 0 (no point); dot_after(3) lights the point between value
    digits 2 and 3 ("123.456").
    """
    if decimals <= 0 or decimals >= N_DIGITS:
        return 0
    return 1 << (N_DIGITS - 1 - decimals)


def encode_into(buf, text, dots=0, ann=0):
    """Fill ``buf`` (bytearray(RAM_SIZE)) from up to 8 characters.

    ``text`` is a str, or bytes / bytearray / memoryview of character codes
    (one byte = one character; >= 0x80 draws the fallback). It is padded with
    blanks on the right / truncated to 8 characters. ``dots`` bit k lights the
    decimal point after value digit k (char 2 + k); ``ann`` is an OR of ANN_*
    flags.

    Does not allocate for bytes-like text, nor for str text of printable ASCII
    (see _intern_ascii). A non-ASCII character in a str allocates a qstr the
    first time MicroPython sees it; it is drawn as FALLBACK anyway.
    """
    n = len(text)
    is_str = isinstance(text, str)
    for i in range(N_CHARS):
        if i < n:
            c = ord(text[i]) if is_str else text[i]
            v = _FONT[c - 32] if 32 <= c < 128 else FALLBACK
        else:
            v = 0
        if i < N_ID:
            if ann & (1 << i):
                v |= SEG_X
        elif dots & (1 << (i - N_ID)):
            v |= SEG_X
        buf[i] = v
    buf[_ANN_RAM] = (ann >> _ANN_SHIFT) & 0xFF
    buf[_ANN_RAM + 1] = (ann >> (_ANN_SHIFT + 8)) & 0xFF
    for j in range(_ANN_RAM + 2, RAM_SIZE):
        buf[j] = 0


def _char_for(pattern):
    for ch in _DECODE_ORDER:
        if _FONT[ord(ch) - 32] == pattern:
            return ch
    return "?"


def decode(ram):
    """(text, dots, ann) from the 16 RAM bytes; unknown patterns give '?'."""
    chars = []
    dots = 0
    ann = 0
    for i in range(N_CHARS):
        v = ram[i]
        if v & SEG_X:
            if i < N_ID:
                ann |= 1 << i
            else:
                dots |= 1 << (i - N_ID)
        chars.append(_char_for(v & 0x7F))
    ann |= (ram[_ANN_RAM] | (ram[_ANN_RAM + 1] << 8)) << _ANN_SHIFT
    return "".join(chars), dots, ann & ANN_ALL


def canonical(text):
    """The text decode() gives back after encode_into(text) (8 chars)."""
    buf = bytearray(RAM_SIZE)
    encode_into(buf, text)
    return decode(buf)[0]
