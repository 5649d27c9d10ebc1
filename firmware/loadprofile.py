"""The load profile: delivered and received Wh per interval, with status flags, 30+ days in EEPROM.

    lp = loadprofile.LoadProfile(storage, energy)
    lp.interval_s = 15 * 60             # powerup.py takes it from config.LP_INTERVAL_MIN
    lp.start(t)                         # an interval from t to its aligned end, lp.due
    lp.close()                          # at the boundary lp.due: one entry, flags lp.flags
    lp.count()                          # intervals kept (closed blocks + the open one)
    seq, end, wh_del, wh_rec, flags = lp.read(0)   # the newest interval (end: seconds since 2000)

Intervals are kept in blocks of BLOCK_INTERVALS (24: 6 hours at 15 minutes), one
storage.Ring record of 128 bytes (two pages) per block: 5.3 bytes an interval. The ring
always keeps all its slots but one full (the oldest goes when a block closes): 8 KiB,
64 blocks, keep 15.75 days at 15 minutes; 30 days need 16 KiB (128 blocks: 31.75 days).
The block being filled lives in RAM and in billing.py's state record (saved at every
interval end), and goes to the ring when full.

Block payload (116 bytes, little-endian):
  0  UINT32  bits 0-26 the first interval's end in minutes since 2000, bits 27-31 the
             number of intervals in the block
  4  UINT24  the first interval's sequence number (every interval has one; they only grow)
  7  UINT8   bits 0-5 the interval length in minutes; bit 6 DST (every interval of the
             block ends in daylight saving time), bit 7 CLOCK_BACKWARD (its last interval
             was cut or begun by a backward time set)
  8  24 x (UINT16 Wh delivered, UINT16 Wh received)   (saturating at 65,535 Wh)
  104 24 status nibbles, interval k in byte 104 + k // 2, the low nibble for even k
The intervals of a block are consecutive: interval k ends at first + k x length.
Blocks written before bits 6 and 7 existed read as neither (they were 0).

Status flags (a nibble per interval, and two kept per block):
  POWER_OUTAGE   the power failed during the interval (with PARTIAL), or was off for all
                 of it (without PARTIAL, and zero energy: a filler entry)
  CLOCK_CHANGED  the time was set during the interval (with PARTIAL), or the interval was
                 skipped by a forward change (without PARTIAL: a filler entry)
  PARTIAL        the meter measured only part of the interval
  CLOCK_INVALID  the meter's clock was not known to be right (ST3 clock error)
  CLOCK_BACKWARD the clock was set back during the interval: the interval cut at the old
                 time and the one begun at the new time (with CLOCK_CHANGED); intervals
                 after them may repeat the ends of earlier ones
  DST            daylight saving time was in force (at the interval's start; the rules' changes
                 fall on interval boundaries; the times stay standard time: tou.py)
The 16 KiB ring keeps 127 blocks of 24 intervals (30 days at 15 minutes, tests/sim/
test_events.py): a wider status would not fit, so the rare flags are per block. An interval
with CLOCK_BACKWARD is always the last of its block (the block closes after it), and a
change of DST starts a new block: both cost a short block a few times a year.
A gap (an outage, a forward time change) is filled with filler entries while it fits in
the open block; a longer gap, a backward change or a new interval length closes the
block early and starts another at the next interval.
"""

from micropython import const

import events
import storage

POWER_OUTAGE = const(1)
CLOCK_CHANGED = const(2)
PARTIAL = const(4)
CLOCK_INVALID = const(8)
CLOCK_BACKWARD = const(16)
DST = const(32)

BLOCK_INTERVALS = const(24)
BLOCK = const(116)
CHANNELS = const(2)
_ENTRIES = const(8)
_NIBBLES = const(104)
_KIND = const(0x50)  # "P"
_MAX_WH = const(0xFFFF)
_MINUTES = const((1 << 27) - 1)
_LEN = const(0x3F)  # byte 7: the interval minutes, and the block's flags
_B_DST = const(0x40)
_B_BACK = const(0x80)
dst_at = None  # billing.py sets it to tou.dst_at, for the DST flag (a module global: the
# instance's attribute table is full)


def _put(b, o, v, n):
    for i in range(n):
        b[o + i] = (v >> (8 * i)) & 0xFF


def _get(b, o, n):
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 8) | b[o + i]
    return v


class LoadProfile:
    def __init__(self, st, energy):
        self.log = events.LogRing(st, storage.LOAD_PROFILE_START, storage.LOAD_PROFILE_LENGTH, BLOCK, _KIND)
        self._e = energy
        self.interval_s = 900
        self.block = bytearray(BLOCK)  # the open block (saved in billing's state record)
        self.next_seq = 1  # the next interval's sequence number
        self.del0 = 0  # the registers at the running interval's start
        self.rec0 = 0
        self.flags = 0  # the running interval's flags so far
        self.due = 0  # the running interval's end, seconds since 2000
        self.blocks_lost = 0  # blocks the EEPROM did not take
        self.view = None  # logread.py's cache: (the ring block last read, its seq, ...)
        self.sums = None  # logread.py's cache: each ring slot's Wh totals (END_READINGS)

    # --- intervals (powerup.py sets interval_s from config.LP_INTERVAL_MIN) --------------
    @property
    def n(self):
        """Intervals in the open block."""
        return self.block[3] >> 3

    def start(self, t, flags=0):
        """An interval from t to the next aligned boundary, counting from the registers now."""
        e = self._e
        self.del0 = e.delivered_wh
        self.rec0 = e.received_wh
        if dst_at is not None and dst_at(t):
            flags |= DST
        self.flags = flags
        self.due = (t // self.interval_s + 1) * self.interval_s

    def close(self, flags=0):
        """End the running interval: its entry at its aligned end, self.due. A gap before
        it is filled with entries flagged with its cause (outage or time change)."""
        e = self._e
        d = min(max(e.delivered_wh - self.del0, 0), _MAX_WH)
        r = min(max(e.received_wh - self.rec0, 0), _MAX_WH)
        f = self.flags | flags
        self.append(self.due, d, r, f, f & (POWER_OUTAGE | CLOCK_CHANGED) or POWER_OUTAGE)

    def append(self, end, wh_del, wh_rec, flags, fill=POWER_OUTAGE):
        """Add an interval ending at `end`; a gap since the last one is filled with `fill`
        entries while it fits in the open block."""
        b = self.block
        imin = self.interval_s // 60
        endm = end // 60
        dst = _B_DST if flags & DST else 0
        n = self.n
        if n:
            first = _get(b, 0, 4) & _MINUTES
            expect = first + n * imin
            if (b[7] & _LEN) != imin or endm < expect or (endm - first) % imin or (b[7] & _B_DST) != dst:
                self.flush()
            elif endm > expect:
                gap = (endm - expect) // imin
                if n + gap < BLOCK_INTERVALS:
                    for _ in range(gap):
                        self._put_entry(0, 0, fill)
                else:
                    self.flush()
        if not self.n:
            for i in range(BLOCK):
                b[i] = 0
            _put(b, 0, endm & _MINUTES, 4)
            _put(b, 4, self.next_seq, 3)
            b[7] = imin | dst
        self._put_entry(wh_del, wh_rec, flags)
        if self.n >= BLOCK_INTERVALS or flags & CLOCK_BACKWARD:
            b[7] |= _B_BACK if flags & CLOCK_BACKWARD else 0
            self.flush()

    def _put_entry(self, d, r, flags):
        b = self.block
        k = self.n
        o = _ENTRIES + 4 * k
        _put(b, o, d, 2)
        _put(b, o + 2, r, 2)
        b[_NIBBLES + k // 2] |= (flags & 15) << (4 * (k & 1))
        b[3] = (b[3] & 7) | ((k + 1) << 3)
        self.next_seq += 1
        self.view = None

    def flush(self):
        """Close the open block: into the ring (the oldest block goes)."""
        if not self.n:
            return True
        ok = self.log.append(self.block)
        if not ok:
            self.blocks_lost += 1
        for i in range(BLOCK):
            self.block[i] = 0
        self.view = None
        self.sums = None
        return ok

    def clear(self):
        """The clear-data procedure (the registers were zeroed): forget the open block and
        count the running interval from zero. Closed blocks stay until overwritten."""
        for i in range(BLOCK):
            self.block[i] = 0
        self.view = self.sums = None
        self.start(self.due - self.interval_s, self.flags)

    # --- reading: logread.py, imported on the first read --------------------------------
    def count(self):
        """Intervals held: the ring's blocks and the open one."""
        import logread

        return logread.lp_count(self)

    def read(self, i):
        """The i-th newest interval (0 = the newest): (sequence, end in seconds since 2000,
        Wh delivered, Wh received, flags), or None past the oldest."""
        import logread

        return logread.lp_read(self, i)

    def dims(self):
        """C12.19 ST61: (blocks, intervals per block, channels, interval minutes)."""
        return self.log.slots, BLOCK_INTERVALS, CHANNELS, self.interval_s // 60

    def status(self):
        """C12.19 ST63: (flags, valid blocks, last block element, its sequence, unread
        blocks, intervals in the last block); the open block is the element after the
        newest ring block."""
        import logread

        return logread.lp_status(self)

    def read_into(self, off, n, buf, boff):
        """C12.19 ST64 bytes [off, off + n) into buf[boff:] (logread.py has the layout)."""
        import logread

        logread.lp_read_into(self, off, n, buf, boff)
