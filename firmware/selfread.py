"""Billing-period data: ST25 (the registers at the last demand reset) and ST26 (self-reads).

    import selfread
    rec = selfread.record(m, t)           # the registers now (ST23's bytes), stamped t
    selfread.store(m, rec, reset=True)    # into ST26, and ST25 when a demand reset took it
    selfread.daily(b, t)                  # billing.py at b.sr_due: the daily self-read
    selfread.read_into(m, 25, off, n, buf, boff)   # tables.py: a piece of ST25 or ST26

Imported only when one is taken or read, then dropped (sys.modules.pop): a meter keeps
none of this in RAM. A self-read is ST23 as tables.py builds it at that instant (never
encoded twice), stored as a records.Ring record (CRC-checked, its own slot): a cut while
one is written loses that one only. ST26 keeps NBR_SELF_READS, in NBR_SELF_READS + 1 slots
so the one written never overwrites one still shown; ST25 the newest of two slots.

Rules (firmware/README.md, "Billing-period data"):
- A demand reset takes a self-read before it clears the maxima (its NBR_DEMAND_RESETS is
  the count before this reset: the period it closes), into ST25 and ST26 alike.
- The daily self-read is taken at SELF_READ_TIME (minutes after local midnight: the
  meter's clock, standard time, plus the hour of DST while a DST rule has it) every day;
  not while the clock is invalid (that day has none). A self-read time that passed
  without one (an outage across it, a time set forward over it) is made up
  once at the first look after (boot, the time set), stamped with when it was taken.
"""

from micropython import const

import config
import storage
import tables as T

_RECORD = const(244)  # ST23 length (1), sequence (2), time (4), season (1), ST23: 256-byte slots
_HEAD = const(8)
_KIND_PREV = const(0x50)  # "P": ST25
_KIND_SELF = const(0x56)  # "V": ST26
_ENTRY_HEAD = const(6)  # END_DATE_TIME (STIME_DATE), SEASON
_LIST_HEAD = const(6)  # T.SELF_READ_HEADER
_CIRCULAR = const(4)  # LIST_STATUS: ascending order (bit 0 clear), LIST_TYPE circular
_OVERFLOW = const(2)  # LIST_STATUS: older self-reads were overwritten
_NEVER = const(0x7FFFFFFF)
_BUILD = const(256)  # ST23 is built in this (tables.py builds a table whole in 253 bytes at most)


def _ring(m, kind):
    st = m.storage
    if kind == _KIND_PREV:
        return storage.Ring(st, storage.PREV_RESET_START, storage.PREV_RESET_LENGTH, _RECORD, kind)
    return storage.Ring(st, storage.SELF_READ_START, storage.SELF_READ_LENGTH, _RECORD, kind)


def record(m, t):
    """A self-read of the registers now, stamped t (seconds since 2000); None if ST23 has
    outgrown the record (it holds 236 bytes of it: 136 today, 7 tiers 217)."""
    buf = bytearray(_BUILD)
    n = T._st23(m, buf)
    if n > _RECORD - _HEAD:
        return None
    rec = bytearray(_RECORD)
    rec[0] = n
    T.put(rec, 3, t, 4)
    rec[7] = getattr(getattr(m, "tou", None), "season", 0)
    rec[_HEAD : _HEAD + n] = buf[0:n]
    return rec


def store(m, rec, reset=False):
    """Append a self-read to ST26 (numbered one past the newest), and to ST25 for a demand
    reset; True if ST26 has it on the chip."""
    if rec is None:
        return False
    ring = _ring(m, _KIND_SELF)
    last = ring.read(0)
    T.put(rec, 1, (T.get(last, 1, 2) + 1 if last else 1) & 0xFFFF, 2)
    if reset:
        _ring(m, _KIND_PREV).append(rec)
    return ring.append(rec)


def take(m, t, reset=False):
    return store(m, record(m, t), reset)


def _next(b, t, minute):
    """The first self-read instant after t (standard time, the meter's clock), `minute`
    after local midnight: with a DST rule in force local time is an hour ahead in summer,
    so a 00:00 self-read is taken at 23:00 standard time then (tou.dst_at)."""
    dst = b.tou.dst_at
    local = t + dst(t)
    day = local - local % 86400 + 60 * minute
    for k in (0, 1, 2):
        at = day + 86400 * k
        at = at - 3600 if dst(at - 3600) else at
        if at > t:
            return at
    return t + 86400


def daily(b, t):
    """At b.sr_due (0: unknown, after boot, a time set or a new configuration): take the
    daily self-read if its time has come since the newest self-read, and set b.sr_due."""
    m = b.meter
    minute = m.config.get(config.SELF_READ_TIME)
    if minute < 0:
        b.sr_due = _NEVER
        return
    due = b.sr_due
    if not due:  # the first self-read time after the newest self-read
        last = _ring(m, _KIND_SELF).read(0)
        due = _next(b, T.get(last, 3, 4) if last else t, minute)
    if due <= t and b.clock.valid:  # invalid: none today (ST26 shows the gap)
        take(m, t)
    b.sr_due = _next(b, t, minute)


def read_into(m, tid, off, n, buf, boff):
    """n bytes of ST25 or ST26 from offset off into buf[boff:]: built one entry at a time."""
    size = _ENTRY_HEAD + T._st23(m, bytearray(_BUILD))  # today's ST23 length
    if tid == 25:
        rec = _ring(m, _KIND_PREV).read(0)
        _piece(rec, size, 0, off, n, buf, boff)
        return
    ring = _ring(m, _KIND_SELF)
    count = min(ring.count(), T.NBR_SELF_READS)
    newest = ring.read(0)
    seq = T.get(newest, 1, 2) if newest else 0
    head = bytearray(_LIST_HEAD)
    status = _CIRCULAR | (_OVERFLOW if seq > count else 0)
    T.pack(head, 0, T.SELF_READ_HEADER, (status, count, count - 1 if count else 0, seq, count))
    end = off + n
    for k in range(max(off, 0), min(end, _LIST_HEAD)):
        buf[boff + k - off] = head[k]
    pos = _LIST_HEAD
    for i in range(T.NBR_SELF_READS):  # oldest first: entry i is the (count-1-i)-th newest
        if pos + size > off and pos < end:
            rec = ring.read(count - 1 - i) if i < count else None
            _piece(rec, size, pos, off, n, buf, boff)
        pos += size


def _piece(rec, size, pos, off, n, buf, boff):
    """The part of one entry (at table offset pos, size bytes) inside [off, off + n)."""
    entry = bytearray(size)
    if rec is not None:
        T.put_time(entry, 0, T.get(rec, 3, 4), 5)
        entry[5] = rec[7]
        k = min(rec[0], size - _ENTRY_HEAD)  # a self-read of another ST23 size: what fits
        entry[_ENTRY_HEAD : _ENTRY_HEAD + k] = rec[_HEAD : _HEAD + k]
    lo = max(off, pos)
    hi = min(off + n, pos + size)
    for k in range(lo, hi):
        buf[boff + k - off] = entry[k - pos]
