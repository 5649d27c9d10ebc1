"""Records that survive a power cut: a header, the payload and a CRC-32, on their own pages.

    rec = bytearray(records.OVERHEAD + n)           # payload goes at records.HEADER
    records.seal(rec, addr, kind, flags, seq, n)    # then ee.write(addr, rec)
    records.valid(rec, addr, kind, n)               # whole, and written at addr?
    cfg = records.Dual(ee, 0x200, 0x400, kind)      # a blob in two copies: load() / save(blob)
    log = records.Ring(st, 0x1000, 0x1000, 12)      # storage.Ring: append(), read(0) newest first

Format, little-endian: kind, payload length (2), flags, sequence (4), payload, CRC-32 (4).
"""

# The CRC covers everything before it and is seeded with the record's EEPROM address, so a
# record that lands elsewhere (a page-wrap bug, a stuck address line) is not believed. A
# record owns its pages (a ring slot never straddles one): a write torn by a power cut can
# only damage records of that page, and the CRC shows it. binascii.crc32 is in the unix,
# rp2 and esp32 ports alike (zlib's polynomial, as CPython's zlib.crc32 on the host).

import binascii
import struct

from micropython import const

from eeprom import Aborted

HEADER = const(8)
OVERHEAD = const(12)
_HDR = "<BHBI"  # kind, payload length, flags, sequence

EMPTY = const(0)  # never written, or its first write never finished
VALID = const(1)
DAMAGED = const(2)  # written once, but no copy passes its CRC now


def seal(buf, addr, kind, flags, seq, n, body=None):
    """Fill in the header and CRC of the record whose n payload bytes are in buf. A caller
    that saves from the metering loop passes body = memoryview(buf)[0 : HEADER + n], made
    once: a memoryview made here would be a heap allocation per save."""
    struct.pack_into(_HDR, buf, 0, kind, n, flags, seq)
    if body is None:
        body = memoryview(buf)[0 : HEADER + n]
    struct.pack_into("<I", buf, HEADER + n, binascii.crc32(body, addr))


def header(buf):
    """(kind, payload length, flags, sequence) of the record in buf."""
    return struct.unpack_from(_HDR, buf, 0)


def valid(buf, addr, kind, n, body=None):
    """True if buf holds a whole record of this kind and payload length written at addr.
    `body` as for seal(): a ring scans its slots with it, allocating nothing."""
    if buf[0] != kind or buf[1] | buf[2] << 8 != n:
        return False
    if body is None:
        body = memoryview(buf)[0 : HEADER + n]
    k = HEADER + n
    return binascii.crc32(body, addr) == buf[k] | buf[k + 1] << 8 | buf[k + 2] << 16 | buf[k + 3] << 24


def sequence(buf):
    """The sequence number of the record in buf (header() without its tuple)."""
    return buf[4] | buf[5] << 8 | buf[6] << 16 | buf[7] << 24


def write_checked(ee, addr, buf, check=None, pages=None, checks=None):
    """Write and read back: a chip that acknowledges but does not program (WP tied high,
    a worn page) must not pass for a saved record. `check`: a buffer of buf's size for the
    read-back, and `pages`: ee.pages_of(buf), `checks`: ee.pages_of(check), kept by a caller
    that saves from the metering loop (no allocation then). Returns False, not read back,
    if the power-fail warning came while the last page was written or comes during the
    read-back (ee.abort, asked before each page read): the hold-up belongs to the warning's
    own save, and a whole read-back (about 3 ms for 128 bytes at 400 kHz, 6 ms for 256)
    would push it past the hold-up. True once read back."""
    ee.write(addr, buf, pages)
    abort = ee.abort
    if check is None:
        check = bytearray(len(buf))
    if abort is not None and len(buf) > ee.page:
        if checks is None:
            checks = ee.pages_of(check)
        at = addr
        for part in checks:
            if abort():
                return False
            ee.read_into(at, part)
            at += len(part)
    else:
        if abort is not None and abort():
            return False
        ee.read_into(addr, check)
    if check != buf:
        raise OSError("EEPROM write at 0x%04x did not stick" % addr)
    return True


class Dual:
    """A blob in two copies written one after the other: a cut tears only the copy in
    flight and a bit flip in one copy leaves the other. load() raises OSError on the bus."""

    def __init__(self, ee, start, capacity, kind):
        self._ee = ee
        self._start = start
        self._capacity = capacity
        self._kind = kind
        self.seq = -1  # the newest valid copy's sequence; -1: not loaded, or none
        self.state = EMPTY

    def _read(self, k):
        # (record or None, seq, blank)
        addr = self._start + k * self._capacity
        hdr = bytearray(HEADER)
        self._ee.read_into(addr, hdr)
        if hdr == b"\xff" * HEADER:
            return None, -1, True
        kind, n, _, seq = header(hdr)
        if kind != self._kind or n > self._capacity - OVERHEAD:
            return None, -1, False
        rec = bytearray(OVERHEAD + n)
        self._ee.read_into(addr, rec)
        if not valid(rec, addr, kind, n):
            return None, -1, False
        return rec, seq, False

    def load(self):
        """The newest valid copy's payload or None (then self.state says EMPTY or
        DAMAGED); a damaged, blank or older copy is rewritten from the good one."""
        a, sa, blank_a = self._read(0)
        b, sb, blank_b = self._read(1)
        if a is None and b is None:
            self.seq = -1
            self.state = EMPTY if blank_a or blank_b else DAMAGED
            return None
        if b is None or (a is not None and sa >= sb):
            good, seq, other, other_seq = a, sa, 1, sb
        else:
            good, seq, other, other_seq = b, sb, 0, sa
        self.seq = seq
        self.state = VALID
        n = header(good)[1]
        if other_seq != seq:
            self._write(other, good, n, seq)
        return bytes(good[HEADER : HEADER + n])

    def _write(self, k, rec, n, seq):
        addr = self._start + k * self._capacity
        seal(rec, addr, self._kind, 0, seq, n)
        write_checked(self._ee, addr, rec)

    def save(self, blob):
        """Copy A, then copy B, with the next sequence number. Raises OSError."""
        n = len(blob)
        if n > self._capacity - OVERHEAD:
            raise ValueError("%d bytes do not fit in %d" % (n, self._capacity - OVERHEAD))
        if self.seq < 0:
            self.load()
        rec = bytearray(OVERHEAD + n)
        rec[HEADER : HEADER + n] = blob
        seq = self.seq + 1
        self._write(0, rec, n, seq)
        self._write(1, rec, n, seq)
        self.seq = seq
        self.state = VALID


class Ring:
    """Fixed-size records in a region, the oldest overwritten first (event log, load profile).

    Slots are the smallest power of two that holds a record, so none straddles a page;
    records sharing a page with one torn by a cut are detected and skipped like it.
    A bus failure puts the storage into its failed state (storage.io_error())."""

    def __init__(self, storage, start, length, record_size, kind=0x4C):
        page = storage.ee.page
        need = OVERHEAD + record_size
        slot = page
        while slot // 2 >= need:
            slot //= 2
        if need > page:
            slot = (need + page - 1) // page * page
        if start % page or length < slot:
            raise ValueError("a ring starts on a page and holds a record")
        self._storage = storage
        self._ee = storage.ee
        self._start = start
        self.record_size = record_size
        self.slot_size = slot
        self.slots = length // slot
        self._kind = kind
        self._buf = bytearray(need)
        self._body = memoryview(self._buf)[0 : HEADER + record_size]  # what the CRC covers
        self._check = bytearray(need)  # the read-back of an append
        self._pages = storage.ee.pages_of(self._buf) if need > page else None
        self._checks = storage.ee.pages_of(self._check) if need > page else None
        self._valid = bytearray(self.slots)  # 1 where a whole record sits
        self._newest = -1
        self._seq = 0
        self._count = 0
        self._scanned = False

    def _slot_ok(self, i):
        addr = self._start + i * self.slot_size
        self._ee.read_into(addr, self._buf)
        return valid(self._buf, addr, self._kind, self.record_size, self._body)

    def _ready(self):
        if self._scanned:
            return True
        try:
            newest, best, count = -1, -1, 0
            for i in range(self.slots):
                ok = self._slot_ok(i)
                self._valid[i] = 1 if ok else 0
                if ok:
                    count += 1
                    seq = sequence(self._buf)
                    if seq > best:
                        newest, best = i, seq
        except OSError:
            self._storage.io_error()
            return False
        self._newest = newest
        self._seq = max(best, 0)
        self._count = count
        self._scanned = True
        return True

    def count(self):
        """Valid records held (0 while the chip does not answer)."""
        return self._count if self._ready() else 0

    def append(self, record):
        """Write record (record_size bytes) over the oldest slot; True if it is on the chip."""
        if len(record) != self.record_size:
            raise ValueError("ring records are %d bytes" % self.record_size)
        if not self._ready():
            return False
        i = (self._newest + 1) % self.slots
        addr = self._start + i * self.slot_size
        buf = self._buf
        buf[HEADER : HEADER + self.record_size] = record
        seq = self._seq + 1
        seal(buf, addr, self._kind, 0, seq, self.record_size, self._body)
        self._storage.registers_first()
        try:
            write_checked(self._ee, addr, buf, self._check, self._pages, self._checks)
        except OSError:
            self._scanned = False  # rescan when the chip answers: page neighbours may be torn
            self._storage.io_error()
            return False
        except Aborted:  # the power is failing: the record stays unfinished (its CRC says so)
            self._scanned = False
            return False
        self._count += 1 - self._valid[i]
        self._valid[i] = 1
        self._newest = i
        self._seq = seq
        return True

    def read(self, k):
        """The k-th newest valid record's payload (k = 0: the newest), or None."""
        if k < 0 or not self._ready() or self._newest < 0:
            return None
        i = self._newest
        prev = self._seq + 1
        for _ in range(self.slots):
            if self._valid[i]:
                try:
                    ok = self._slot_ok(i)
                except OSError:
                    self._storage.io_error()
                    return None
                seq = header(self._buf)[3]
                if not ok or seq >= prev:  # damaged since the scan, or out of order
                    self._valid[i] = 0
                    self._count -= 1
                elif k == 0:
                    return bytes(self._buf[HEADER : HEADER + self.record_size])
                else:
                    k -= 1
                    prev = seq
            i = (i - 1) % self.slots
        return None
