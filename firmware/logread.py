"""Reading the logs: event-log entries, load-profile intervals and their C12.19 views.

    import logread
    logread.event(meter.events, 0)             # what EventLog.read(0) returns
    logread.lp_read(meter.load_profile, 0)     # what LoadProfile.read(0) returns

Imported on the first read (an optical-port session, the console), not at boot, so a
meter nobody reads keeps this code out of RAM; events.py and loadprofile.py call in here.
The index of a LogRing (its slots by sequence number) is built here at the first read,
with one pass over the ring, and kept up to date by LogRing.append().
"""

from micropython import const

_H = const(8)  # records.HEADER
_MINUTES = const((1 << 27) - 1)
_ST64_INT = const(6)  # per interval: extended status (2 bytes), two UINT16
_ST64_HEAD = const(17)  # BLK_END_TIME (5), END_READINGS (2 x INT48)
_ST64_BLOCK = const(_ST64_HEAD + 24 * _ST64_INT)


def _u32(b, o):
    return b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24


# --- a LogRing's index -----------------------------------------------------------------
def index(lr):
    """Build lr's index (slots by sequence) if it has none; False while the chip is away."""
    if lr.order is not None:
        return True
    slots = lr.slots
    # made at full capacity and cut to n at the end (del keeps a list's room): LogRing.append
    # then extends them from the metering loop without allocating; nothing else is made here
    order, seqs, tags = [0] * slots, [0] * slots, [0] * slots
    n = 0
    try:
        for i in range(slots):
            seq = lr.load(i)
            if seq < 0:
                continue
            j = n  # insertion by sequence: a ring is in order but for its wrap, so few moves
            while j > 0 and seqs[j - 1] > seq:
                seqs[j], order[j], tags[j] = seqs[j - 1], order[j - 1], tags[j - 1]
                j -= 1
            seqs[j], order[j], tags[j] = seq, i, _u32(lr.buf, _H)
            n += 1
    except OSError:
        lr.st.io_error()
        return False
    del order[n:], seqs[n:], tags[n:]
    lr.order, lr.seqs, lr.tags = order, seqs, tags
    return True


def count(lr):
    return len(lr.order) if index(lr) else 0


def newest_seq(lr):
    return lr.seqs[-1] if index(lr) and lr.seqs else 0


def read(lr, k):
    """The k-th newest record (0 = newest) into lr.buf: its sequence number, or -1."""
    for _ in range(2):
        if not index(lr) or not 0 <= k < len(lr.order):
            return -1
        j = len(lr.order) - 1 - k
        try:
            seq = lr.load(lr.order[j])
        except OSError:
            lr.st.io_error()
            return -1
        if seq == lr.seqs[j]:
            return seq
        lr.order = None  # damaged or overwritten since: index again
    return -1


# --- the event log ---------------------------------------------------------------------
def event(log, i):
    """EventLog.read(i): (seq, time, code, data bytes) of the i-th newest, or None."""
    seq = read(log.log, i)
    if seq < 0:
        return None
    b = log.log.buf
    return seq, _u32(b, _H), b[_H + 4] | b[_H + 5] << 8, bytes(b[_H + 8 : _H + 12])


def entry(log, i):
    """EventLog.entry(i): (time, seq, user, code, data bytes) of the i-th oldest."""
    k = count(log.log) - 1 - i
    seq = read(log.log, k) if k >= 0 else -1
    if seq < 0:
        return 0, 0, 0, 0, b"\x00\x00\x00\x00"
    b = log.log.buf
    return _u32(b, _H), seq, b[_H + 6] | b[_H + 7] << 8, b[_H + 4] | b[_H + 5] << 8, bytes(b[_H + 8 : _H + 12])


# --- the load profile ------------------------------------------------------------------
def header(block):
    """(first interval end in seconds since 2000, intervals, first sequence, minutes)."""
    w = _u32(block, 0)
    return (w & _MINUTES) * 60, w >> 27, block[4] | block[5] << 8 | block[6] << 16, block[7] & 0x3F


def interval(block, k):
    """(Wh delivered, Wh received, flags) of interval k of a block: its nibble, and the
    block's DST (bit 6 of byte 7: every interval) and CLOCK_BACKWARD (bit 7: the last)."""
    o = 8 + 4 * k
    f = (block[104 + k // 2] >> (4 * (k & 1))) & 15
    if block[7] & 0x40:
        f |= 32  # loadprofile.DST
    if block[7] & 0x80 and k == (block[3] >> 3) - 1:
        f |= 16  # loadprofile.CLOCK_BACKWARD
    return block[o] | block[o + 1] << 8, block[o + 2] | block[o + 3] << 8, f


def _block_wh(block):
    """(Wh delivered, Wh received) over a block's intervals."""
    d = r = 0
    for k in range(block[3] >> 3):
        o = 8 + 4 * k
        d += block[o] | block[o + 1] << 8
        r += block[o + 2] | block[o + 3] << 8
    return d, r


def lp_count(lp):
    total = lp.n
    if count(lp.log):
        for w in lp.log.tags:
            total += w >> 27
    return total


def _ring_block(lp, k):
    """The k-th newest ring block (a copy, cached in lp.view), or None."""
    seq = read(lp.log, k)
    if seq < 0:
        return None
    view = lp.view
    if view is None or view[1] != seq:
        view = lp.view = (bytes(lp.log.buf[_H : _H + len(lp.block)]), seq, -1, None)
    return view[0]


def lp_read(lp, i):
    """LoadProfile.read(i): (seq, end time, Wh delivered, Wh received, flags) or None."""
    block = None
    n = lp.n
    k = 0
    if i < n:
        block, k = lp.block, n - 1 - i
    elif count(lp.log):
        i -= n
        tags = lp.log.tags
        for j in range(len(tags) - 1, -1, -1):
            c = tags[j] >> 27
            if i < c:
                block = _ring_block(lp, len(tags) - 1 - j)
                k = c - 1 - i
                break
            i -= c
    if block is None:
        return None
    first, _, seq, minutes = header(block)
    d, r, f = interval(block, k)
    return seq + k, first + k * minutes * 60, d, r, f


def capacity_days(lp):
    """Days of intervals the ring always holds (its oldest block may be the next to go)."""
    return (lp.log.slots - 1) * 24 * lp.interval_s // 86400


def _open_element(lp):
    order = lp.log.order if count(lp.log) else None
    return (order[-1] + 1) % lp.log.slots if order else 0


def lp_status(lp):
    blocks = count(lp.log)
    seq = newest_seq(lp.log)
    if lp.n:
        blocks = min(blocks + 1, lp.log.slots)
        last, seq, ints = _open_element(lp), seq + 1, lp.n
    elif blocks:
        last, ints = lp.log.order[-1], lp.log.tags[-1] >> 27
    else:
        last, ints = 0, 0
    wrapped = 2 if count(lp.log) >= lp.log.slots else 0
    return 0x24 | wrapped, blocks, last, seq, blocks, ints  # circular list, active; all unread (tables._st76)


def lp_read_into(lp, off, n, buf, boff):
    """ST64 bytes: per block BLK_END_TIME (STIME_DATE of its last interval), END_READINGS
    (INT48 Wh delivered and received at that time, see _end_readings), then per interval
    EXTENDED_INT_STATUS and two UINT16 Wh. The status, byte 0: the common nibble (C12.19:
    bit 0 DST_FLAG, 1 POWER_FAIL_FLAG, 2 CLOCK_RESET_FORWARD_FLAG, 3 CLOCK_RESET_BACKWARDS_FLAG)
    and channel 1's (2 partial interval, 4 skipped interval); byte 1: channel 2's, then the
    nibble two channels leave unused, where bit 0 says CLOCK_INVALID (the manufacturer's
    use: C12.19 has no interval flag for a clock not known to be right)."""
    for pos in range(off, off + n):
        j = pos // _ST64_BLOCK
        view = lp.view
        if view is None or view[2] != j:
            view = lp.view = (None, -1, j, _st64_block(lp, j))
        buf[boff + pos - off] = view[3][pos - j * _ST64_BLOCK]


def _st64_block(lp, j):
    import loadprofile as L
    import timekeeping

    out = bytearray(_ST64_BLOCK)
    if lp.n and j == _open_element(lp):
        block = lp.block
    else:
        try:
            if lp.log.load(j) < 0:
                return out
        except OSError:
            return out
        block = lp.log.buf[_H : _H + len(lp.block)]
    first, ints, _, minutes = header(block)
    if ints:
        y, mo, d, hh, mi, _ = timekeeping.civil(first + (ints - 1) * minutes * 60)
        out[0:5] = bytes(((y - 2000) % 100, mo, d, hh, mi))
        end_d, end_r = _end_readings(lp, j, block)
        for i in range(6):
            out[5 + i] = (end_d >> (8 * i)) & 0xFF
            out[11 + i] = (end_r >> (8 * i)) & 0xFF
    o = _ST64_HEAD
    for k in range(ints):
        dw, rw, f = interval(block, k)
        common = (1 if f & L.DST else 0) | (2 if f & L.POWER_OUTAGE else 0)
        common |= 8 if f & L.CLOCK_BACKWARD else 4 if f & L.CLOCK_CHANGED else 0
        chn = 2 if f & L.PARTIAL else 4 if f & (L.POWER_OUTAGE | L.CLOCK_CHANGED) else 0
        out[o] = common | chn << 4
        out[o + 1] = chn | (16 if f & L.CLOCK_INVALID else 0)
        out[o + 2] = dw & 0xFF
        out[o + 3] = dw >> 8
        out[o + 4] = rw & 0xFF
        out[o + 5] = rw >> 8
        o += _ST64_INT
    return out



def _end_readings(lp, j, block):
    """END_READINGS of the block in ring slot j (or the open block): the registers at its
    last interval's end. Not stored (a block has no room left: loadprofile.py); they are
    the registers at the running interval's start (lp.del0, lp.rec0) less the Wh of every
    interval recorded after that block, exact as the intervals are differences of the
    registers. Not so for a block older than a clear-data procedure, a block the EEPROM
    did not take, or an interval past 65,535 Wh: such a reading can only come out low, and
    one below zero reads 0 (not known)."""
    d, r = lp.del0, lp.rec0
    if block is not lp.block:
        od, orr = _block_wh(lp.block)
        d -= od
        r -= orr
        sums = _sums(lp)
        order = lp.log.order
        if sums is not None and j in order:
            for k in range(order.index(j) + 1, len(order)):
                o = 6 * order[k]
                d -= sums[o] | sums[o + 1] << 8 | sums[o + 2] << 16
                r -= sums[o + 3] | sums[o + 4] << 8 | sums[o + 5] << 16
        else:
            d = r = 0
    return (d if d > 0 else 0), (r if r > 0 else 0)


def _sums(lp):
    """Each ring slot's Wh delivered and received (UINT24 each): one pass over the ring,
    kept until the next block closes (lp.sums); None while the chip is away."""
    if lp.sums is not None:
        return lp.sums
    if not count(lp.log):
        return None
    lr = lp.log
    sums = bytearray(6 * lr.slots)
    try:
        for i in lr.order:
            if lr.load(i) >= 0:
                d, r = _block_wh(memoryview(lr.buf)[_H:])
                for k in range(3):
                    sums[6 * i + k] = (d >> (8 * k)) & 0xFF
                    sums[6 * i + 3 + k] = (r >> (8 * k)) & 0xFF
    except OSError:
        lr.st.io_error()
        return None
    lp.sums = sums
    return sums
