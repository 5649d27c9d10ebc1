"""The event log: what a utility needs to trust the meter, in an EEPROM ring that survives cuts.

    log = events.EventLog(storage, clock)        # clock: timekeeping.MeterClock
    log.record(events.EV_DEMAND_RESET, b"\\x01\\x00")   # time stamped now; data: up to 4 bytes
    log.count(), log.capacity, log.last_seq
    seq, t, code, data = log.read(0)             # the newest entry (t: seconds since 2000)
    t, seq, user, code, data = log.entry(0)      # the oldest first (the C12.19 ST76 order)

Every entry has a sequence number that only grows (the ring record's own: it survives
power cuts; a torn entry is skipped, so numbers may have gaps, never repeats). The codes
are C12.19's standard event numbers, and manufacturer events from MFG (0x800) up; the
four data bytes are the event's argument. Anyone may log: security (failed logons,
lock-outs), the seal, metrology (metering-IC resets), billing.py (power down and up,
time changes, demand reset, configuration change, the ST3 faults as they appear).

An entry: time (UINT32, seconds since 2000), code (UINT16), user id (UINT16), data (4).
`LogRing` is storage.Ring (appends, the oldest slot overwritten) plus an index of its slots
by sequence, built at the first read by logread.py: reading entry i costs one record
read, not a walk over the ring. The reading code lives in logread.py, imported on the
first read, so a meter nobody reads does not hold it in RAM.
"""

from micropython import const

import records
import storage

# C12.19 standard event codes
EV_POWER_DOWN = const(1)  # time: the last known time before the cut
EV_POWER_UP = const(2)  # data: outage in seconds (UINT32), 0xFFFFFFFF when unknown
EV_TIME_OLD = const(3)  # time: the old time; data: the new time (seconds since 2000)
EV_TIME_NEW = const(4)  # time: the new time; data: the old time
EV_PROCEDURE = const(9)
EV_TABLE_WRITTEN = const(10)
EV_DEMAND_RESET = const(20)  # data: the reset count (UINT16)
EV_CONFIG_CHANGED = const(36)  # "meter reprogrammed"; data: CRC-32 of the new configuration
EV_CONFIGURATION_ERROR = const(37)  # the ST3 flags, logged when they appear
EV_NONVOLATILE_MEMORY_FAILURE = const(41)
EV_CLOCK_ERROR = const(42)  # data: why (timekeeping.LOST_*)
EV_MEASUREMENT_ERROR = const(43)
EV_LOW_BATTERY = const(44)  # the RTC chip's backup failed (its lost-time flag seen at boot)
EV_TAMPER = const(47)
# manufacturer events
MFG = const(0x800)
EV_BAD_PASSWORD = const(0x800)
EV_LOCKOUT = const(0x801)
EV_SEALED = const(0x802)
EV_UNSEALED = const(0x803)
EV_FIRMWARE_CHANGED = const(0x804)
EV_DATA_CLEARED = const(0x805)
EV_PASSWORD_CHANGED = const(0x806)
EV_DEMAND_SUSPENDED = const(0x808)  # data: the outage in seconds (0xFFFFFFFF unknown)
EV_FIRMWARE_FAULT = const(0x809)  # data: resets.py's type index, module index, line (UINT16)
EV_RESET = const(0x80A)  # the MCU restarted, the line on; data: resets.CAUSES index, downtime s (UINT16)
# the USB console was used while sealed (console.py; once per burst of bytes, a burst
# starting after 60 s of silence); data: what closed it (bit 0 the software seal, bit 1
# the seal plug), the burst's first byte (0x03 Ctrl-C, 0x01 Ctrl-A: a tool breaking in),
# the bytes of the burst before this one, counted in RAM (UINT16, 0xFFFF: as many or more)
EV_CONSOLE_ACCESS = const(0x80B)
EV_STOPPED = const(0x80D)  # metering stopped for the REPL (m.stop() at the console)
EV_METERING_IC_RESET = const(0x810)  # metrology.EVENT_CHIP_RESET; data: the energy lost (UINT32)

# every code above that the meter logs (ST72 and ST75 list them)
LOGGED = (
    EV_POWER_DOWN, EV_POWER_UP, EV_TIME_OLD, EV_TIME_NEW, EV_PROCEDURE, EV_TABLE_WRITTEN,
    EV_DEMAND_RESET, EV_CONFIG_CHANGED, EV_CONFIGURATION_ERROR, EV_NONVOLATILE_MEMORY_FAILURE,
    EV_CLOCK_ERROR, EV_MEASUREMENT_ERROR, EV_LOW_BATTERY, EV_TAMPER, EV_BAD_PASSWORD, EV_LOCKOUT, EV_SEALED,
    EV_UNSEALED, EV_FIRMWARE_CHANGED, EV_DATA_CLEARED, EV_PASSWORD_CHANGED, EV_DEMAND_SUSPENDED,
    EV_FIRMWARE_FAULT, EV_RESET, EV_CONSOLE_ACCESS, EV_STOPPED, EV_METERING_IC_RESET,
)  # fmt: skip

DATA_LENGTH = const(4)
ENTRY = const(12)
_KIND = const(0x45)  # "E"
_PENDING = const(8)  # entries kept in RAM while the EEPROM does not answer


class LogRing:
    """storage.Ring plus an index of its slots by sequence number (logread.py builds it)."""

    def __init__(self, st, start, length, size, kind):
        self.ring = storage.Ring(st, start, length, size, kind)
        self.st = st
        self.start = start
        self.kind = kind
        self.size = size
        self.slots = self.ring.slots
        self.buf = bytearray(records.OVERHEAD + size)  # the record last loaded
        self._body = memoryview(self.buf)[0 : records.HEADER + size]  # its CRC's span, made once
        self.order = None  # slots oldest first, once indexed
        self.seqs = None  # their sequence numbers
        self.tags = None  # their payloads' first four bytes (little-endian)

    def load(self, i):
        """Read slot i into buf: its sequence number, or -1 if it holds no whole record.
        Raises OSError."""
        addr = self.start + i * self.ring.slot_size
        self.st.ee.read_into(addr, self.buf)
        if not records.valid(self.buf, addr, self.kind, self.size, self._body):
            return -1
        return records.sequence(self.buf)

    def append(self, payload):
        """Write payload over the oldest slot; True if it is on the chip."""
        if not self.ring.append(payload):
            self.order = None
            return False
        order = self.order
        if order is not None:  # keep the index (logread.py made its lists with room for every slot)
            i = (order[-1] + 1) % self.slots if order else 0
            try:
                seq = self.load(i)
            except OSError:
                seq = -1
            if seq > (self.seqs[-1] if order else 0) and self._holds(payload):
                if i in order:
                    k = order.index(i)
                    del order[k], self.seqs[k], self.tags[k]
                order.append(i)
                self.seqs.append(seq)
                self.tags.append(payload[0] | payload[1] << 8 | payload[2] << 16 | payload[3] << 24)
            else:
                self.order = None  # not where expected: index again at the next read
        return True


    def _holds(self, payload):
        """buf's payload is `payload` (compared in place: a slice would allocate)."""
        buf, h = self.buf, records.HEADER
        for k in range(self.size):
            if buf[h + k] != payload[k]:
                return False
        return True


class EventLog:
    def __init__(self, st, clock):
        self.log = LogRing(st, storage.EVENT_LOG_START, storage.EVENT_LOG_LENGTH, ENTRY, _KIND)
        self.capacity = self.log.slots
        self._clock = clock
        self._entry = bytearray(ENTRY)
        self._pending = []  # (time, code, user, data) not yet on the chip
        self.unlogged = 0  # entries lost: the chip did not answer and the RAM queue was full
        self.user = 0  # USER_ID of what is logged now: psem.py sets the session's while it answers

    def record(self, code, data=b"", user=None, t=None):
        """Log an event now (or at t, seconds since 2000); True if it is on the chip.
        data: up to 4 bytes, or an integer (kept as a UINT32). user: the C12.18 logon's
        USER_ID, by default self.user (0: the meter itself)."""
        if user is None:
            user = self.user
        if isinstance(data, int):
            data = bytes((data & 0xFF, data >> 8 & 0xFF, data >> 16 & 0xFF, data >> 24 & 0xFF))
        if t is None:
            t = self._clock.now() if self._clock.begun else 0
        if (not self._pending or self.flush()) and self._write(t, code, user, data):
            return True
        if len(self._pending) < _PENDING:
            self._pending.append((t, code, user, bytes(data[:DATA_LENGTH])))
        else:
            self.unlogged += 1
        return False

    def _write(self, t, code, user, data):
        e = self._entry
        for i in range(ENTRY):
            e[i] = (t >> (8 * i)) & 0xFF if i < 4 else 0
        e[4] = code & 0xFF
        e[5] = code >> 8
        e[6] = user & 0xFF
        e[7] = (user >> 8) & 0xFF
        for i in range(min(len(data), DATA_LENGTH)):
            e[8 + i] = data[i]
        return self.log.append(e)

    def flush(self):
        """Write the entries queued while the EEPROM did not answer (oldest first)."""
        while self._pending:
            if not self._write(*self._pending[0]):
                return False
            self._pending.pop(0)
        return True

    # reading: logread.py, imported on the first read
    def count(self):
        import logread

        return logread.count(self.log)

    @property
    def last_seq(self):
        import logread

        return logread.newest_seq(self.log)

    def read(self, i):
        """The i-th newest entry (0 = newest): (seq, time, code, data bytes), or None."""
        import logread

        return logread.event(self, i)

    def entry(self, i):
        """The i-th oldest entry (0 = oldest), as C12.19 ST76 lists them: (time, seq,
        user id, code, data bytes); zeros past the end."""
        import logread

        return logread.entry(self, i)
