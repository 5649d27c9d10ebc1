"""PSEM services (the ANSI C12.18 application layer) of the optical port.

    svc = psem.Services(meter)     # then c1218.Link(uart, svc, board) plugs itself in
    svc.boot()                     # the seal record and the firmware check
    n = svc.handle(buf, start, length)   # a request -> the response's length
    svc.resp_into(pos, out, off, k)      # the link takes the response a packet at a time

Session states: BASE (nothing yet) -Identify-> IDENTIFIED -Logon-> SESSION -Logoff->
IDENTIFIED; Terminate from anywhere and the link's channel timeout go back to BASE.
Identify and Negotiate belong before Logon, Logon once, Security / reads / writes /
Logoff inside the session, Wait anywhere after Identify; a request in the wrong state
gets ISSS, an unknown service SNS. Checks, in order: state (ISSS), request length and
checksum (ERR), table (IAR), access level (ISC), seal plug and seal (DLK), range (IAR),
response too large for the negotiated packets (ONP).

Access: Logon alone is anonymous (level 0: public tables); the Security service's
password raises the session to reader, programmer or master (security.py). Each table
has a read and a write level (tables.TABLES), each procedure its level (PROCEDURES).

The seal: with the seal plug in, every table write and every procedure but time set and
demand reset is refused (DLK); on a software-sealed meter every write to a configuration,
calibration, identity or password table, and every procedure that clears or alters
legal registers (all but time set, demand reset and unseal), is refused (DLK). Reads,
time set and demand reset always work.

RAM: the tables (tables.py, the largest part of the port) are imported at the end of
boot(), after everything the meter needs to meter is in place, and stay. If the heap
cannot take them then, the meter meters on and every read or write retries the import
(answering ERR while it fails): the port never stops the meter. They are never dropped
and loaded again: MicroPython's heap does not compact, and a module loaded late into a
heap that has been in use finds no room for its larger pieces.
"""

from micropython import const

import c1218 as L
import events
import seal
import security

BASE = const(0)
IDENTIFIED = const(1)
SESSION = const(2)

_IDENTIFY = const(0x20)
_TERMINATE = const(0x21)
_READ = const(0x30)
_READ_PART = const(0x3F)
_WRITE = const(0x40)
_WRITE_PART = const(0x4F)
_LOGON = const(0x50)
_SECURITY = const(0x51)
_LOGOFF = const(0x52)
_NEGOTIATE = const(0x60)
_NEGOTIATE_LAST = const(0x6B)
_WAIT = const(0x70)

_STD_C1218 = const(0)
_VERSION = const(1)
_REVISION = const(0)
_MIN_PACKET = const(32)
_PASSWORD = const(20)
_ST8_DATA = const(16)
_OUT = const(256)  # a table built whole (tables._SCRATCH, 253 bytes) and its read response fit here
_ANONYMOUS = const(0)  # tables.ANONYMOUS
_NEVER = const(4)  # tables.NEVER
_MT1 = const(0x801)  # tables.MFG + 1: the configuration

# C12.18 baud-rate codes; the meter takes the fastest it supports of those offered
BAUDS = (0, 300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 28800, 57600, 38400, 115200, 128000, 256000)
_BAUD_MIN = const(1200)
_BAUD_MAX = const(57600)


class Services:
    def __init__(self, meter):
        self._m = meter
        self.link = None  # set by c1218.Link
        self.state = BASE
        self.level = _ANONYMOUS
        self.user_id = 0
        self.security = security.Security(meter)
        self.seal = seal.Seal(meter, self.security)
        self._T = None  # the tables module, imported at boot (or at the first read or write)
        self._out = bytearray(_OUT)  # the response when it fits; tables are built at [3:]
        self._table = memoryview(self._out)[3:]
        self._stream = False  # a read response produced a packet at a time
        self._tid = 0
        self._off = 0
        self._cnt = 0
        self._sum = 0
        self.st8 = bytearray(4 + _ST8_DATA)
        self.st8_len = 4
        self.writes = 0
        self.procedures = 0
        self._recalibrate = False

    def boot(self):
        self.seal.boot()
        try:
            self._tables()
        except MemoryError:
            self.link.faults += 1  # reads and writes retry; metering goes on

    def timeout(self):
        """The link's channel-traffic timeout: the session is over."""
        self._end()

    def _end(self):
        self.state = BASE
        self.level = _ANONYMOUS
        self.user_id = 0

    def _tables(self):
        T = self._T
        if T is None:
            import tables as T

            self._T = T
        return T

    def log(self, code, data):
        self.security.log(code, data)

    def refuse(self, code):
        """A one-byte response (a plain OK too)."""
        self._stream = False
        self._out[0] = code
        return 1

    # ---- requests ------------------------------------------------------------------
    def handle(self, buf, s, n):
        """Answer the request in buf[s:s + n]; return the response length. What the meter
        logs meanwhile (a procedure, a write, a bad password, a time set, a demand reset, the
        seal) carries the logon's USER_ID in the event log."""
        ev = getattr(self._m, "events", None)
        if ev is None:
            return self._handle(buf, s, n)
        ev.user = self.user_id
        try:
            return self._handle(buf, s, n)
        finally:
            ev.user = 0

    def _handle(self, buf, s, n):
        self._stream = False
        if n < 1:
            return self.refuse(L.ERR)
        code = buf[s]
        st = self.state
        if code == _READ or code == _READ_PART:
            return self._read(buf, s, n, code == _READ_PART)
        if code == _WRITE or code == _WRITE_PART:
            return self._write(buf, s, n, code == _WRITE_PART)
        if code == _IDENTIFY:
            if st == SESSION:
                return self.refuse(L.ISSS)
            self.state = IDENTIFIED
            out = self._out
            out[0] = L.OK
            out[1] = _STD_C1218
            out[2] = _VERSION
            out[3] = _REVISION
            out[4] = 0  # the end of the (empty) feature list
            return 5
        if code == _TERMINATE:
            self._end()
            self.link.end_session()
            return self.refuse(L.OK)
        if _NEGOTIATE <= code <= _NEGOTIATE_LAST:
            return self._negotiate(buf, s, n, code - _NEGOTIATE)
        if code == _LOGON:
            if st != IDENTIFIED:
                return self.refuse(L.ISSS)
            if n < 13:
                return self.refuse(L.ERR)
            self.user_id = buf[s + 1] << 8 | buf[s + 2]
            self.state = SESSION
            self.level = _ANONYMOUS
            return self.refuse(L.OK)
        if code == _SECURITY:
            if st != SESSION:
                return self.refuse(L.ISSS)
            level = self.security.verify(buf, s + 1, n - 1 if n - 1 < _PASSWORD else _PASSWORD)
            if level < 0:
                return self.refuse(L.ISC)
            self.level = level
            return self.refuse(L.OK)
        if code == _LOGOFF:
            if st != SESSION:
                return self.refuse(L.ISSS)
            self.state = IDENTIFIED
            self.level = _ANONYMOUS
            return self.refuse(L.OK)
        if code == _WAIT:
            if st == BASE:
                return self.refuse(L.ISSS)
            if n < 2:
                return self.refuse(L.ERR)
            self.link.wait(buf[s + 1])
            return self.refuse(L.OK)
        return self.refuse(L.SNS)

    def _negotiate(self, buf, s, n, k):
        if self.state != IDENTIFIED:
            return self.refuse(L.ISSS)
        if n < 4 + k:
            return self.refuse(L.ERR)
        size = buf[s + 1] << 8 | buf[s + 2]
        nbr = buf[s + 3]
        if size < _MIN_PACKET or nbr == 0:
            return self.refuse(L.IAR)
        if size > L.MAX_PACKET:
            size = L.MAX_PACKET
        baud = code = 0
        for i in range(k):
            c = buf[s + 4 + i]
            b = BAUDS[c] if c < len(BAUDS) else 0
            if _BAUD_MIN <= b <= _BAUD_MAX and b > baud:
                baud = b
                code = c
        if not baud:  # none offered, or none the meter can do: it stays where it is
            baud = self.link.baud
            code = BAUDS.index(baud)
        self.link.negotiated(size, nbr, baud)
        out = self._out
        out[0] = L.OK
        out[1] = size >> 8
        out[2] = size & 0xFF
        out[3] = nbr
        out[4] = code
        return 5

    def _size(self, T, tid):
        """The table's size; a small one is built whole into the response buffer at [3:]."""
        return T.build(self._m, self, tid, self._table)

    def _read(self, buf, s, n, partial):
        if self.state != SESSION:
            return self.refuse(L.ISSS)
        if n < (8 if partial else 3):
            return self.refuse(L.ERR)
        T = self._tables()
        tid = buf[s + 1] << 8 | buf[s + 2]
        e = T.find(tid)
        if e is None:
            return self.refuse(L.IAR)
        if T.read_level(e) > self.level:
            return self.refuse(L.ISC)
        size = self._size(T, tid)
        if partial:
            off = buf[s + 3] << 16 | buf[s + 4] << 8 | buf[s + 5]
            cnt = buf[s + 6] << 8 | buf[s + 7]
            if off + cnt > size:
                return self.refuse(L.IAR)
        else:
            off, cnt = 0, size
        if cnt + 4 > self.link.max_response():
            return self.refuse(L.ONP)
        out = self._out
        out[0] = L.OK
        out[1] = cnt >> 8
        out[2] = cnt & 0xFF
        if tid not in T.BIG:  # built whole at out[3:]: the piece asked for moves to the front
            total = 0
            for i in range(3, 3 + cnt):
                v = out[off + i]
                out[i] = v
                total += v
            out[3 + cnt] = -total & 0xFF
            return cnt + 4
        self._stream = True
        self._tid = tid
        self._off = off
        self._cnt = cnt
        return cnt + 4

    def resp_into(self, pos, buf, boff, n):
        """Response bytes [pos, pos + n) into buf[boff:]; called in order, pos 0 again on a resend."""
        if not self._stream:
            out = self._out
            for i in range(n):
                buf[boff + i] = out[pos + i]
            return
        if pos == 0:
            self._sum = 0
        cnt = self._cnt
        end = pos + n
        while pos < end:
            if pos < 3:
                buf[boff] = self._out[pos]
                pos += 1
                boff += 1
            elif pos < 3 + cnt:
                k = (end if end < 3 + cnt else 3 + cnt) - pos
                self._T.read(self._m, self._tid, self._off + pos - 3, k, buf, boff)
                total = self._sum
                for i in range(boff, boff + k):
                    total += buf[i]
                self._sum = total & 0xFF
                pos += k
                boff += k
            else:
                buf[boff] = -self._sum & 0xFF
                pos += 1
                boff += 1

    def _write(self, buf, s, n, partial):
        if self.state != SESSION:
            return self.refuse(L.ISSS)
        h = 8 if partial else 5
        if n < h + 1:
            return self.refuse(L.ERR)
        cnt = buf[s + h - 2] << 8 | buf[s + h - 1]
        if n < h + cnt + 1:
            return self.refuse(L.ERR)
        total = 0
        for i in range(s + h, s + h + cnt + 1):
            total += buf[i]
        if total & 0xFF:
            return self.refuse(L.ERR)  # the data checksum
        T = self._tables()
        tid = buf[s + 1] << 8 | buf[s + 2]
        e = T.find(tid)
        if e is None:
            return self.refuse(L.IAR)
        wl = T.write_level(e)
        if wl == _NEVER or wl > self.level:
            return self.refuse(L.ISC)
        off = buf[s + 3] << 16 | buf[s + 4] << 8 | buf[s + 5] if partial else 0
        if tid != 7:
            if self.seal.plug_in() or self.seal.sealed:
                return self.refuse(L.DLK)
        if tid == 7 or tid == _MT1:
            if off:  # a procedure or a list of settings: from the start only
                return self.refuse(L.IAR)
        else:
            size = self._size(T, tid)
            if off + cnt > size or (not partial and cnt != size):
                return self.refuse(L.IAR)
        code = T.write(self._m, self, tid, off, buf, s + h, cnt)
        if code == L.OK and tid != 7:
            self.writes += 1
            self.log(events.EV_TABLE_WRITTEN, bytes((tid & 0xFF, tid >> 8)))
        return self.refuse(code)

    # ---- what table writes call ----------------------------------------------------
    def store_config(self, settings):
        """Set validated (id, value) pairs, keep them (meter.storage) and apply them."""
        m = self._m
        cfg = m.config
        old = [(k, cfg.get(k)) for k, _ in settings]
        for k, v in settings:
            cfg.set(k, v)
        st = getattr(m, "storage", None)
        if st is not None and st.save_config(cfg.encode()) is False:
            for k, v in old:
                cfg.set(k, v)
            return L.ERR
        cfg.by = self.user_id  # the configuration-changed event, logged when it is applied
        for k, _ in settings:
            if k < 0x20:  # calibration: the metering chip takes it at begin(), after the answer
                self._recalibrate = True
        return L.OK

    def after_response(self):
        """Work that waits until the response is on its way (the link calls it): bringing
        the metering chip up again with new calibration takes it a while."""
        if not self._recalibrate:
            return
        self._recalibrate = False
        met = self._m.metrology
        apply = getattr(met, "apply_config", None)
        try:
            if apply is not None:
                apply()
            else:
                met.poll()  # what the chip has counted so far, under the old constants
                met.begin()
        except OSError:
            pass  # metrology reports its chip's faults (ST3); the port has answered already
