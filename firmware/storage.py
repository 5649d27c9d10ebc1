"""The meter's non-volatile memory: registers, configuration, seal and rings in EEPROM.

    st = storage.Storage(b.i2c, b.eeprom_addr, b.eeprom_size, b.eeprom_page, b.clock, status)
    st.extra = obj              # optional: obj.SIZE bytes (pack_into/unpack_from) in every record
    st.restore(energy)          # boot: the newest whole base plus its newest whole delta
    st.tick(energy, now_ms)     # every poll: the save policy
    st.save_now(energy)         # the power-fail warning (ADE7953 SAG)
    blob = st.load_config()     # bytes or None; st.save_config(blob); load_seal / save_seal
    blob = st.load_resets()     # after restore(): resets.py's record; st.save_resets(blob)
    log = storage.Ring(st, storage.EVENT_LOG_START, storage.EVENT_LOG_LENGTH, 12)

Layout, save policy and its endurance arithmetic: firmware/README.md.
"""

# Registers: a base (every FIELD, 8 bytes each, in two copies) is written rarely; each
# save in between is a delta from it (a 32-bit word per register, one page), rotated over
# every delta slot (wear levelling). No write ever covers the newest whole base or delta,
# so a cut at any instant leaves them. Configuration, seal and the layout marker are
# records.Dual pairs. A bus failure never escapes: the meter meters on in RAM,
# NONVOLATILE_MEMORY_FAILURE is set, and tick() writes the registers as soon as the chip
# acknowledges again.

import struct
import time

from micropython import const

import eeprom
import metrology
import records
import status
from records import Ring  # noqa: F401  (storage.Ring is the rings' public name)

# layout: every boundary is a multiple of 128 bytes, a page of either part
FORMAT_START = const(0x0000)  # layout marker and the reset counts, two copies of 128 bytes
SEAL_START = const(0x0100)  # software seal, two copies of 128 bytes
CONFIG_START = const(0x0200)  # configuration blob, two copies of 1 KiB
CONFIG_COPY = const(0x0400)
STATE_START = const(0x0A00)  # billing state ring (billing.py): 6 slots of 256 bytes
STATE_LENGTH = const(0x0600)
EVENT_LOG_START = const(0x1000)
EVENT_LOG_LENGTH = const(0x1000)
LOAD_PROFILE_START = const(0x2000)
LOAD_PROFILE_LENGTH = const(0x4000)  # 128 blocks of 24 intervals: 31.75 days at 15 minutes
REGISTERS_START = const(0x6000)  # base records: 2 pairs of copies, 512-byte slots
BASE_SLOT = const(512)
# billing-period data (selfread.py): 256-byte slots of storage.Ring, taken from the deltas
PREV_RESET_START = const(0x6800)  # ST25: the registers at the last demand reset, 2 slots
PREV_RESET_LENGTH = const(0x0200)
SELF_READ_START = const(0x6A00)  # ST26: the self-reads, NBR_SELF_READS + 1 slots
SELF_READ_LENGTH = const(0x0500)
DELTAS_START = const(0x6F00)  # delta records, a page or more each, to the end of the chip
LAYOUT_VERSION = const(3)
# layout 2 had an 8 KiB load profile and its register records from 0x4000: a chip marked 2
# is scanned from there once, and its registers carried over into a base of this layout
_V2_REGISTERS = const(0x4000)

# save policy (firmware/README.md)
SAVE_MS = const(60000)  # a changed register is saved at least this often
MAX_POWER_W = const(176800)  # 2 channels x 353.6 V x 250 A: twice what a 1S or 2S meter registers
# (88.4 kW: Form 2S halves the channels' sum), so the policy's lifetime is met with room
ENDURANCE = const(1000000)  # page write cycles, 24LC256 and 24LC512
LIFETIME_H = const(350640)  # 40 years of 8766 h
_WH_STEP = const(50)
_BASE_DUE = const(0x3FFFFFFF)  # a periodic save writes a new base once a delta word passes this

_KIND_BASE = const(0x52)
_KIND_DELTA = const(0x44)
_KIND_CONFIG = const(0x43)
_KIND_SEAL = const(0x53)
_KIND_FORMAT = const(0x46)
_MARKER = const(8)  # the layout marker's bytes; the record's payload goes on with resets.py's
_RESETS_MAX = const(100)  # 128-byte copies: 116 bytes of payload, 8 of them the marker
# register record flags: bit 0 lost, bits 1-3 the base's generation (a delta names the
# base it was made on; only two bases exist at a time), bits 4-7 the bytes of extra
_FLAG_LOST = const(1)  # every register copy was lost once: counting restarted at zero
_GEN_MASK = const(0x0E)
_EXTRA_SHIFT = const(4)

# faults behind NONVOLATILE_MEMORY_FAILURE
_IO = const(1)  # the chip does not answer, or a write did not stick
_LOST = const(2)  # the registers were lost (sticky: every record carries _FLAG_LOST)
_CONFIG = const(4)  # both configuration copies damaged
_SEAL = const(8)  # both seal copies damaged


def _newest(seqs):
    """The index of the highest sequence number in seqs (the later one of equal ones: the
    higher address), or -1 when none is left (taken ones are set to -1)."""
    best = -1
    for i in range(len(seqs)):
        if seqs[i] >= 0 and (best < 0 or seqs[i] >= seqs[best]):
            best = i
    return best


class Storage:
    def __init__(self, i2c, addr, size, page, clock, status_flags, max_power_w=MAX_POWER_W):
        if size <= DELTAS_START:
            raise ValueError("an EEPROM of %d bytes is too small for this layout" % size)
        ee = eeprom.EEPROM(i2c, addr, size, page, clock)
        self.ee = ee
        self._clock = clock
        self._status = status_flags
        self._max_power_w = max_power_w
        self._format = records.Dual(ee, FORMAT_START, 128, _KIND_FORMAT)
        self._seal = records.Dual(ee, SEAL_START, 128, _KIND_SEAL)
        self._config = records.Dual(ee, CONFIG_START, CONFIG_COPY, _KIND_CONFIG)
        # extra: None, or an object with SIZE, pack_into(buf, off) and unpack_from(buf, off)
        # whose bytes ride in every register record (a base holds them all, a delta the
        # first ones that fit its page) and are handed back at restore
        self.extra = None
        self._faults = 0
        self._lost = 0  # _FLAG_LOST once every copy was lost
        self._restored = False  # the newest records and the sequence are known
        self._after_marker = b""  # what the layout marker's record carries after it (resets.py)
        self._seq = 0  # the highest sequence of any whole register record
        self._base = None  # the base's registers (a list in FIELDS order), or None: a base is due
        self.aborted = False  # a save stopped by the power-fail warning (meter.py clears it)
        self._energy = None  # the meter's registers, as tick() last saw them
        self._gen = 0  # the base's generation (deltas name it in their flags)
        self._pair = 0  # the pair of base slots the next base goes to
        self._delta = -1  # slot of the newest delta: never the next one written
        self._next = 0  # slot the next delta goes to
        self._due = clock.ticks_ms()
        self._del_wh = 0  # delivered and received Wh as last saved
        self._rec_wh = 0
        self._key = -1  # FIELDS count x 16 + extra.SIZE the records were sized for
        self.saves = 0
        self.nfields = 0

    def _size(self, energy):
        """Size records, slots and the save threshold from FIELDS and extra.SIZE."""
        names = energy.FIELDS
        n = len(names)
        es = self.extra.SIZE if self.extra is not None else 0
        if n * 16 + es == self._key:  # an int: a save sizes nothing (no allocation)
            return
        if records.OVERHEAD + 8 * n + es > BASE_SLOT or es > 15:
            raise ValueError("%d registers do not fit a base slot" % n)
        self._key = n * 16 + es
        self.nfields = n
        # a delta holds one signed 32-bit word per part: a *_wh field with its *_res in
        # 0.1 mWh (wh * LSB_PER_WH + res), or any other field alone
        parts = []
        for i in range(n):
            name = names[i]
            if name.endswith("_res") and name[:-4] + "_wh" in names:
                continue
            res = name[:-3] + "_res" if name.endswith("_wh") else ""
            parts.append((i, names.index(res) if res in names else -1))
        self._parts = parts
        page = self.ee.page
        words = records.OVERHEAD + 4 * len(parts)
        self.delta_size = (words + page - 1) // page * page
        self._dextra = min(es, self.delta_size - words)  # what of extra fits the delta's pages
        self._brec = bytearray(records.OVERHEAD + 8 * n + es)
        self._drec = bytearray(words + self._dextra)
        # what a save's CRC covers and its read-back, made once: saves run in the metering loop
        self._bbody = memoryview(self._brec)[0 : len(self._brec) - 4]
        self._dbody = memoryview(self._drec)[0 : len(self._drec) - 4]
        self._bcheck = bytearray(len(self._brec))
        self._bpages = self.ee.pages_of(self._brec)
        self._bchecks = self.ee.pages_of(self._bcheck)
        self._dcheck = bytearray(len(self._drec))
        self._base_vals = [0] * n  # the last base's registers (self._base points here)
        self._xbuf = bytearray(es)
        self._image = bytearray(8 * n)  # the registers as last saved
        self._scratch = bytearray(8 * n)
        self.slots = (self.ee.size - DELTAS_START) // self.delta_size
        per = ENDURANCE * self.slots
        need = (self._max_power_w * LIFETIME_H + per - 1) // per
        self.save_wh = (need + _WH_STEP - 1) // _WH_STEP * _WH_STEP

    def _fault(self, bit):
        self._faults |= bit
        self._status.set(status.NONVOLATILE_MEMORY_FAILURE)

    def _ok(self, bit):
        self._faults &= ~bit
        if not self._faults:
            self._status.clear(status.NONVOLATILE_MEMORY_FAILURE)

    def io_error(self):
        self._fault(_IO)

    @property
    def failed(self):
        """True while the chip does not answer: the registers live in RAM only."""
        return bool(self._faults & _IO)

    # --- registers ---------------------------------------------------------------
    def _record(self, addr, kind, n):
        rec = bytearray(records.OVERHEAD + n)
        self.ee.read_into(addr, rec)
        return rec if records.valid(rec, addr, kind, n) else None

    def _scan(self, start):
        """(base, delta, top): the newest whole base (seq, addr, record), the newest whole
        delta made on it, and the highest sequence of any whole register record, from
        start to the end of the chip.

        Every page start is a candidate, not only today's slot starts, so records written
        with another layout (other FIELDS) are found too. Candidates are kept as small ints
        (address | length << 16, and the sequence) in four lists, newest taken first: a tuple
        each was 3 KB of a boot's garbage on a 32-bit board."""
        ee = self.ee
        hdr = bytearray(records.HEADER)
        b_at, b_seq, d_at, d_seq = [], [], [], []
        for addr in range(start, ee.size, ee.page):
            ee.read_into(addr, hdr)
            kind = hdr[0]  # records.header() without its tuple: 512 pages on a 24LC256
            if kind != _KIND_BASE and kind != _KIND_DELTA:
                continue
            n = hdr[1] | hdr[2] << 8
            if n == 0 or n > BASE_SLOT - records.OVERHEAD or addr + n + records.OVERHEAD > ee.size:
                continue  # not a register record (a torn header may claim anything)
            if kind == _KIND_BASE:
                b_at.append(addr | n << 16)
                b_seq.append(records.sequence(hdr))
            else:
                d_at.append(addr | n << 16)
                d_seq.append(records.sequence(hdr))
        base = self._take_newest(b_seq, b_at, _KIND_BASE, -1)
        top = base[0] if base else 0
        while True:
            delta = self._take_newest(d_seq, d_at, _KIND_DELTA, base[0] if base else -1)
            if delta is None:
                return base, None, top  # none left, or the rest older than the base
            top = max(top, delta[0])
            if base is None:
                return base, None, top
            if not (delta[2][3] ^ base[2][3]) & _GEN_MASK:
                return base, delta, top

    def _take_newest(self, seqs, ats, kind, oldest):
        """The newest whole record of kind among the candidates, taken out of them:
        (seq, addr, record), or None when none is left at sequence `oldest` or newer."""
        while True:
            i = _newest(seqs)
            if i < 0 or seqs[i] < oldest:
                return None
            seq, at = seqs[i], ats[i]
            seqs[i] = -1
            rec = self._record(at & 0xFFFF, kind, at >> 16)
            if rec is not None:
                return seq, at & 0xFFFF, rec

    def _apply(self, energy, base, delta):
        """Set energy to base + delta and hand extra its bytes. A record written before
        registers were appended to FIELDS has fewer: the new ones start at zero."""
        rec = base[2]
        es = rec[3] >> _EXTRA_SHIFT
        nb = (records.header(rec)[1] - es) // 8
        vals = [struct.unpack_from("<q", rec, records.HEADER + 8 * i)[0] for i in range(nb)]
        vals += [0] * (self.nfields - nb)
        self._base = vals[:]
        x = records.HEADER + 8 * nb
        if delta is not None:
            rec = delta[2]
            es = rec[3] >> _EXTRA_SHIFT
            k = (records.header(rec)[1] - es) // 4
            lsb = metrology.LSB_PER_WH
            for p in range(min(k, len(self._parts))):
                d = struct.unpack_from("<i", rec, records.HEADER + 4 * p)[0]
                i, j = self._parts[p]
                if j < 0:
                    vals[i] += d
                else:
                    total = vals[i] * lsb + vals[j] + d
                    vals[i] = total // lsb
                    vals[j] = total % lsb
            x = records.HEADER + 4 * k
        names = energy.FIELDS
        for i in range(self.nfields):
            setattr(energy, names[i], vals[i])
        if self.extra is not None:
            xb = self._xbuf
            for i in range(len(xb)):
                xb[i] = rec[x + i] if i < es else 0
            self.extra.unpack_from(xb, 0)

    def restore(self, energy):
        """Load the newest whole base record plus the newest delta made on it into energy;
        True if there was a base.

        A blank EEPROM is initialised (a base of the registers, the layout marker) and
        UNPROGRAMMED set. An initialised one without any whole base sets
        NONVOLATILE_MEMORY_FAILURE for good; a chip that does not answer, until it does.
        A chip marked with layout 2 is read from its old register area, and what it held
        becomes a base of this layout before the marker says 3 (a cut before that: layout
        2 again, where the new base is found too)."""
        self._size(energy)
        found = False
        try:
            fmt = self._format.load()  # written after the first base: the chip was in service
            if fmt is not None:
                self._after_marker = fmt[_MARKER:]
            old = fmt is not None and fmt[2] == 2
            base, delta, top = self._scan(_V2_REGISTERS if old else REGISTERS_START)
            self._seq = top
            if base is not None:
                self._apply(energy, base, delta)
                self._gen = (base[2][3] & _GEN_MASK) >> 1
                self._lost = base[2][3] & _FLAG_LOST
                # the next base goes to the pair of slots holding neither the base nor
                # (an old layout's) delta: the newest records stay whole until it is
                rel = base[1] - REGISTERS_START
                busy = rel >= 2 * BASE_SLOT
                self._delta, self._next = -1, 0
                aligned = not old
                if delta is not None:
                    rel = delta[1] - REGISTERS_START
                    busy = busy or 2 * BASE_SLOT <= rel < 4 * BASE_SLOT
                    rel -= DELTAS_START - REGISTERS_START
                    aligned = aligned and rel >= 0 and rel % self.delta_size == 0
                    self._delta = rel // self.delta_size
                    self._next = (self._delta + 1) % self.slots
                self._pair = 1 - busy
                self._restored = found = True
                self._mark(energy)
                if self._lost:
                    self._fault(_LOST)
                if not aligned:  # another layout or delta size: a base first, no delta overlaps it
                    self._delta, self._next = -1, 0
                    self._write_base(energy)
            else:
                if self._format.state == records.EMPTY:  # blank: unprogrammed unless configured
                    if self._config.state != records.VALID:
                        self._status.set(status.UNPROGRAMMED)
                else:
                    self._lost = _FLAG_LOST
                    self._fault(_LOST)
                self._pair, self._delta, self._next = 0, -1, 0
                self._restored = True
                self._write_base(energy)
            if old or self._format.state != records.VALID:  # blank, a first boot cut short, layout 2
                self._write_format()
            self._ok(_IO)
        except eeprom.Aborted:
            pass  # the power failed again during boot: the older records stand
        except OSError:
            self._fault(_IO)
        return found

    def _write_format(self):
        fmt = bytearray(b"OM\x00\x00\x00\x00\x00\x00")
        fmt[2] = LAYOUT_VERSION
        fmt[3] = self.nfields
        fmt[4:6] = self.ee.page.to_bytes(2, "little")
        fmt[6:8] = (self.ee.size >> 8).to_bytes(2, "little")
        self._format.save(bytes(fmt) + self._after_marker)

    def _mark(self, energy):
        energy.pack_into(self._image, 0)
        self._del_wh = energy.delivered_wh
        self._rec_wh = energy.received_wh
        self._due = time.ticks_add(self._clock.ticks_ms(), SAVE_MS)

    def _pack_extra(self, rec, off, n):
        if n:
            xb = self._xbuf
            self.extra.pack_into(xb, 0)
            for k in range(n):  # no slice: a save allocates nothing
                rec[off + k] = xb[k]

    def _write_base(self, energy):
        """Both copies of a base record into the next pair of slots; raises OSError, or
        eeprom.Aborted if the power-fail warning stops copy 0 before its last page (the last
        base then stands, and the warning's delta goes on it). Once copy 0 is written, the
        warning stops the rest (its read-back, copy 1) and copy 0 is the new base: the hold-up
        is for the warning's delta. Either way self.aborted tells the meter's loop."""
        prev = self._base
        self._base = None  # until both copies are written, deltas wait
        rec = self._brec
        n = 8 * self.nfields
        es = len(self._xbuf)
        energy.pack_into(rec, records.HEADER)
        self._pack_extra(rec, records.HEADER + n, es)
        seq = self._seq + 1
        self._seq = seq  # spent even if a copy fails: no later record takes it
        gen = (self._gen + 1) & 7
        flags = self._lost | gen << 1 | es << _EXTRA_SHIFT
        for copy in (0, 1):
            addr = REGISTERS_START + (2 * self._pair + copy) * BASE_SLOT
            records.seal(rec, addr, _KIND_BASE, flags, seq, n + es, self._bbody)
            try:
                checked = records.write_checked(self.ee, addr, rec, self._bcheck, self._bpages, self._bchecks)
            except eeprom.Aborted:
                if copy == 0:
                    self._base = prev  # the old pair is untouched: prev (its values) still holds
                    raise
                checked = False
            if not checked:  # the warning came: copy 0 is whole, the hold-up is for its delta
                self.aborted = True
                break
        vals = self._base_vals
        names = energy.FIELDS
        for i in range(len(vals)):
            vals[i] = getattr(energy, names[i])
        self._base = vals
        self._gen = gen
        self._pair ^= 1
        self.saves += 1
        self._mark(energy)

    def _write_delta(self, energy, urgent):
        """A delta on the base; False (nothing written) if a base is due. Raises OSError."""
        base = self._base
        if base is None:
            return False
        names = energy.FIELDS
        rec = self._drec
        off = records.HEADER
        limit = 0x7FFFFFFF if urgent else _BASE_DUE
        for i, j in self._parts:
            d = getattr(energy, names[i]) - base[i]
            if j >= 0:
                d = d * metrology.LSB_PER_WH + getattr(energy, names[j]) - base[j]
            if d > limit or d < -limit:
                return False
            struct.pack_into("<i", rec, off, d)
            off += 4
        es = self._dextra
        self._pack_extra(rec, off, es)
        addr = DELTAS_START + self._next * self.delta_size
        seq = self._seq + 1
        self._seq = seq
        flags = self._lost | self._gen << 1 | es << _EXTRA_SHIFT
        records.seal(rec, addr, _KIND_DELTA, flags, seq, len(rec) - records.OVERHEAD, self._dbody)
        if not records.write_checked(self.ee, addr, rec, self._dcheck):
            self.aborted = True  # the warning came during its write cycle: its delta first
        self._delta = self._next
        self._next = (self._next + 1) % self.slots
        self.saves += 1
        self._mark(energy)
        return True

    def _late_restore(self, energy):
        """The chip answers after a boot without it: what was metered in RAM since boot is
        added to the stored registers (every FIELD accumulates; a *_res carries into *_wh)."""
        ram = [getattr(energy, name) for name in energy.FIELDS]
        if not self.restore(energy):
            return not self._faults & _IO  # blank or lost: restore() saved what RAM holds
        names = energy.FIELDS
        for i in range(len(names)):
            setattr(energy, names[i], getattr(energy, names[i]) + ram[i])
        lsb = metrology.LSB_PER_WH
        for i, j in self._parts:
            if j >= 0:
                r = getattr(energy, names[j])
                setattr(energy, names[j], r % lsb)
                setattr(energy, names[i], getattr(energy, names[i]) + r // lsb)
        return True

    def save_registers(self, energy, urgent=False):
        """Write a register record now (a delta, or a base when one is due); True if it is
        on the chip. urgent: a delta even when a base would be due (a single page)."""
        self._size(energy)
        try:
            if not self._restored and not self._late_restore(energy):
                return False
            if not self._write_delta(energy, urgent):
                # a base is due: the registers go first as a delta on the current base (one
                # page), so a power-fail warning that stops the base's many pages finds them
                # saved as of this poll, whatever its hold-up
                if self._base is not None:
                    self._write_delta(energy, True)
                self._write_base(energy)
        except eeprom.Aborted:
            self.aborted = True  # the power-fail warning came: the meter's loop saves on it now
            return False
        except OSError:
            self._fault(_IO)
            if self._restored and (self._next + 1) % self.slots != self._delta:
                self._next = (self._next + 1) % self.slots  # a worn slot is skipped next time
            return False
        self._ok(_IO)
        return True

    def _changed(self, energy):
        energy.pack_into(self._scratch, 0)
        return self._scratch != self._image

    def save_now(self, energy):
        """The power-fail warning: a delta at once (one page write), unless nothing
        changed since the last record (a flickering line then costs no wear)."""
        self._size(energy)
        if self._restored and not self._faults & _IO and not self._changed(energy):
            return True
        abort, self.ee.abort = self.ee.abort, None  # the warning's own record never yields
        try:
            return self.save_registers(energy, True)
        finally:
            self.ee.abort = abort

    def tick(self, energy, now_ms):
        """The save policy, once per poll: a record when delivered + received moved by
        save_wh, or SAVE_MS after the last one if anything changed. While the chip is
        away, one acknowledge poll per tick, and a record as soon as it answers. True
        when it answered after a boot without it (load the configuration then)."""
        self._energy = energy
        if self._faults & _IO or not self._restored:
            if not self.ee.ready():
                return False
            was = self._restored
            return self.save_registers(energy) and not was
        if abs(energy.delivered_wh - self._del_wh) + abs(energy.received_wh - self._rec_wh) >= self.save_wh:
            self.save_registers(energy)
        elif time.ticks_diff(now_ms, self._due) >= 0:
            self._due = time.ticks_add(now_ms, SAVE_MS)
            if self._changed(energy):
                self.save_registers(energy)
        return False

    def registers_first(self):
        """Before a log, state or configuration record: the registers as of this poll go
        first (a one-page delta, if they moved since the last record). A power-fail warning
        that lands as that record's write cycle starts may find too little hold-up left for
        its own delta (a cycle cannot be stopped); then this delta holds all but the energy
        since this poll's chip reading, not since the last periodic save."""
        e = self._energy
        if e is not None and self._restored and not self._faults & _IO and self._changed(e):
            self.save_registers(e, True)

    # --- configuration and seal -------------------------------------------------------
    def _load(self, dual, fault):
        try:
            blob = dual.load()
        except OSError:
            self._fault(_IO)
            return None
        if dual.state == records.DAMAGED:
            self._fault(fault)
        return blob

    def _save(self, dual, fault, blob):
        self.registers_first()
        try:
            dual.save(blob)
        except eeprom.Aborted:
            return False  # power failing: the other copy stands
        except OSError:
            self._fault(_IO)
            return False
        self._ok(fault)
        self._ok(_IO)
        return True

    def load_config(self):
        """The newest valid configuration blob, or None: UNPROGRAMMED if none was ever
        stored, NONVOLATILE_MEMORY_FAILURE if both copies are damaged."""
        blob = self._load(self._config, _CONFIG)
        if blob is not None:
            self._status.clear(status.UNPROGRAMMED)
        elif self._config.state == records.EMPTY and not self._faults & _IO:
            self._status.set(status.UNPROGRAMMED)
        return blob

    def save_config(self, blob):
        """Both copies; True when stored (UNPROGRAMMED cleared)."""
        if self._save(self._config, _CONFIG, blob):
            self._status.clear(status.UNPROGRAMMED)
            return True
        return False

    def load_seal(self):
        return self._load(self._seal, _SEAL)

    def save_seal(self, blob):
        return self._save(self._seal, _SEAL, blob)

    def load_resets(self):
        """resets.py's record, kept after the layout marker in its record (both copies), as
        restore() found it; None if there is none yet."""
        return self._after_marker or None

    def save_resets(self, blob):
        """Store resets.py's record with the layout marker (written after the first base
        only: before restore() there is nothing to store it with); True when stored."""
        if len(blob) > _RESETS_MAX or self._format.state != records.VALID:
            return False
        self._after_marker = bytes(blob)
        self.registers_first()
        try:
            self._write_format()
        except eeprom.Aborted:
            return False  # power failing: the other copy stands
        except OSError:
            self._fault(_IO)
            return False
        self._ok(_IO)
        return True
