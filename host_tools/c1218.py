"""A host-side ANSI C12.18 (PSEM) client for the optical port: a real probe or the
simulated board's pseudo-terminal.

    with Client.open("/dev/ttyUSB0") as c:
        std, ver, rev = c.identify()
        c.negotiate(packet_size=256, nbr_packets=8, baud=19200)
        c.logon(user_id=2, user="meterctl")
        c.security("secret")                  # padded to 20 bytes (0x00 unless told)
        st23 = c.read(23)                     # full read, a multi-packet answer reassembled
        part = c.read(64, offset=0, count=200)
        c.write(5, b"METER 0042".ljust(20))
        result, data = c.procedure(10, params)
        c.logoff(); c.terminate()

    with Client.open(port).session(password="secret") as c:   # identify .. logon .. security
        ...                                                   # logoff + terminate on the way out

Every wait has a per-character and an overall deadline. Errors: `NoAnswer` (silence),
`LinkError` (packets the link could not get through), `ServiceError` (the meter's
response code, `.code` and `.name`), `ProcedureError` (an ST8 result other than
completed), all `C1218Error`.

The table layouts come from the firmware's own declarations (firmware/tables.py), so
`parse(TABLES.ST1, data)` reads what the meter packed with the same bytes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import serial

from host_tools.repo import firmware_module

STX, ACK, NAK = 0xEE, 0x06, 0x15
TOGGLE, MULTI, FIRST = 0x20, 0x80, 0x40
OVERHEAD = 8
RESPONSE_CODES = {
    0x00: "ok", 0x01: "err", 0x02: "sns", 0x03: "isc", 0x04: "onp", 0x05: "iar",
    0x06: "bsy", 0x07: "dnr", 0x08: "dlk", 0x09: "rno", 0x0A: "isss",
}  # fmt: skip
CODES = {name: code for code, name in RESPONSE_CODES.items()}
BAUD_CODES = {300: 1, 600: 2, 1200: 3, 2400: 4, 4800: 5, 9600: 6, 14400: 7, 19200: 8, 28800: 9, 57600: 10, 38400: 11}
PROC_RESULTS = {
    0: "completed", 1: "accepted, not completed", 2: "invalid parameter", 3: "conflicts with setup",
    4: "timing constraint", 5: "not authorized", 6: "unrecognized procedure",
}  # fmt: skip
MFG = 0x800

TABLES = firmware_module("tables")  # the firmware's declarations: layouts, numbers, levels
# The firmware keeps its integer constants module-private (`_MASTER = const(3)` costs no RAM
# on a board); CPython sees them as attributes: publish them without the underscore.
for _name in [n for n in vars(TABLES) if n[:1] == "_" and n[1:2].isupper()]:
    setattr(TABLES, _name[1:], getattr(TABLES, _name))


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def crc16(data: bytes | bytearray) -> int:
    """CRC-16/X-25 as C12.18 uses it (sent low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc = (crc >> 8) ^ _CRC[(crc ^ b) & 0xFF]
    return crc ^ 0xFFFF


def packet(data: bytes, toggle: bool = False, identity: int = 0, ctrl: int = 0, seq: int = 0) -> bytes:
    head = bytes([STX, identity, ctrl | (TOGGLE if toggle else 0), seq]) + len(data).to_bytes(2, "big")
    crc = crc16(head + data)
    return head + data + bytes([crc & 0xFF, crc >> 8])


def checksum(data: bytes) -> int:
    """The table-data checksum: two's complement of the 8-bit sum."""
    return -sum(data) & 0xFF


def pad_password(password: str | bytes, pad: bytes = b"\x00") -> bytes:
    raw = password.encode() if isinstance(password, str) else bytes(password)
    if len(raw) > 20:
        raise ValueError("a C12.18 password is at most 20 bytes")
    return raw + pad * (20 - len(raw))


def parse(layout: bytes, data: bytes, offset: int = 0) -> dict[str, Any]:
    """A flat layout of firmware/tables.py (`NAME:4 NAME:-2 NAME:c16`) read from data."""
    out: dict[str, Any] = {}
    for field in layout.decode().split():
        name, size = field.split(":")
        if size.startswith("c"):
            n = int(size[1:])
            out[name] = bytes(data[offset : offset + n])
        else:
            n = abs(int(size))
            out[name] = int.from_bytes(data[offset : offset + n], "little", signed=size.startswith("-"))
        offset += n
    return out


def layout_size(layout: bytes) -> int:
    return sum(abs(int(f.split(b":")[1].lstrip(b"c"))) for f in layout.split())


class C1218Error(Exception):
    """Base of the optical-port errors."""


class NoAnswer(C1218Error):
    pass


class LinkError(C1218Error):
    """Packets that did not get through (NAKs, bad CRCs) after the retries."""


class ServiceError(C1218Error):
    def __init__(self, code: int, service: str) -> None:
        self.code = code
        self.name = RESPONSE_CODES.get(code, f"0x{code:02x}")
        self.service = service
        super().__init__(f"the meter answered {self.name} to {service}")


class ProcedureError(C1218Error):
    def __init__(self, result: int, number: int) -> None:
        self.result = result
        self.number = number
        super().__init__(f"procedure {number}: {PROC_RESULTS.get(result, result)}")


@dataclass
class Timeouts:
    ack: float = 2.0  # for the ACK of a packet
    response: float = 2.0  # for the response packet
    char: float = 0.5  # between characters of a packet


class Client:
    def __init__(self, port: serial.Serial, timeouts: Timeouts | None = None, identity: int = 0) -> None:
        self.port = port
        self.t = timeouts or Timeouts()
        self.identity = identity
        self.packet_size = 64
        self.nbr_packets = 1
        self.follow_baud = True  # False: a client that asks for a baud rate but stays at 9600
        self._toggle = False
        self._rx_last: tuple[int, int] | None = None  # (toggle, crc) of the last packet received
        self._seq = 0  # PROC_SEQ_NBR
        self.retries = 0  # packets sent again (NAK or no ACK)
        self.last_response = b""

    @classmethod
    def open(cls, path: str, baud: int = 9600, timeouts: Timeouts | None = None) -> Client:
        return cls(serial.Serial(path, baud, timeout=0.05), timeouts)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- link ------------------------------------------------------------------------
    def _read(self, n: int, deadline: float, char_timeout: float | None = None) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            now = time.monotonic()
            if now >= deadline:
                raise NoAnswer("no answer from the meter on the optical port")
            chunk = self.port.read(n - len(buf))
            if chunk:
                buf += chunk
                if char_timeout is not None:
                    deadline = time.monotonic() + char_timeout
        return bytes(buf)

    def _send(self, pkt: bytes, what: str) -> None:
        """Send one packet until it is ACKed (3 tries; NAK or silence means again)."""
        for attempt in range(4):
            if attempt:
                self.retries += 1
            self.port.reset_input_buffer()
            self.port.write(pkt)
            deadline = time.monotonic() + self.t.ack
            try:
                while True:
                    b = self._read(1, deadline)[0]
                    if b == ACK:
                        return
                    if b == NAK:
                        break
                    # anything else before the ACK (an echo, noise) is skipped
            except NoAnswer:
                continue
        raise NoAnswer(f"no ACK from the meter for {what}")

    def _send_message(self, data: bytes, what: str) -> None:
        """A request: one packet, or a multi-packet message when it is longer than a packet."""
        room = self.packet_size - OVERHEAD
        chunks = [data[i : i + room] for i in range(0, len(data), room)] or [b""]
        for i, chunk in enumerate(chunks):
            ctrl = 0
            if len(chunks) > 1:
                ctrl = MULTI | (FIRST if i == 0 else 0)
            pkt = packet(chunk, self._toggle, self.identity, ctrl, len(chunks) - 1 - i)
            self._send(pkt, what)
            self._toggle = not self._toggle

    def _read_packet(self, deadline: float) -> tuple[int, int, bytes] | None:
        """One packet: (ctrl, seq, data), or None after NAKing a damaged one."""
        while self._read(1, deadline)[0] != STX:
            pass
        head = bytes([STX]) + self._read(5, time.monotonic() + self.t.char, self.t.char)
        length = int.from_bytes(head[4:6], "big")
        if length > self.packet_size - OVERHEAD:
            self.port.write(bytes([NAK]))
            return None
        rest = self._read(length + 2, time.monotonic() + self.t.char, self.t.char)
        data, crc = rest[:length], rest[length:]
        value = crc16(head + data)
        if value != crc[0] | crc[1] << 8:
            self.port.write(bytes([NAK]))
            return None
        key = (head[2] & TOGGLE, value)
        self.port.write(bytes([ACK]))
        if key == self._rx_last:
            return self._read_packet(deadline)  # a retransmission of what we have: ACKed, dropped
        self._rx_last = key
        return head[2], head[3], data

    def _receive(self, what: str) -> bytes:
        """A response message, multi-packet ones reassembled."""
        data = bytearray()
        expect: int | None = None
        bad = 0
        deadline = time.monotonic() + self.t.response
        while True:
            try:
                got = self._read_packet(deadline)
            except NoAnswer:
                raise NoAnswer(f"no response from the meter to {what}") from None
            if got is None:
                bad += 1
                if bad > 3:
                    raise LinkError(f"the meter's response to {what} kept arriving damaged")
                deadline = time.monotonic() + self.t.response
                continue
            ctrl, seq, chunk = got
            if not ctrl & MULTI:
                return chunk
            if ctrl & FIRST:
                data = bytearray()
            elif expect is None or seq != expect:
                raise LinkError(f"packet {seq} out of sequence in the response to {what}")
            data += chunk
            if seq == 0:
                return bytes(data)
            expect = seq - 1
            deadline = time.monotonic() + self.t.response

    def exchange(self, data: bytes, what: str = "request") -> bytes:
        """Send a request, return the whole response (its first byte is the response code)."""
        self._send_message(data, what)
        resp = self._receive(what)
        self.last_response = resp
        return resp

    def request(self, data: bytes, service: str = "request") -> bytes:
        """exchange(), raising ServiceError unless the meter answered ok."""
        resp = self.exchange(data, service)
        if not resp or resp[0] != 0:
            raise ServiceError(resp[0] if resp else 0x01, service)
        return resp

    # ---- services --------------------------------------------------------------------
    def identify(self) -> tuple[int, int, int]:
        resp = self.request(b"\x20", "identify")
        return resp[1], resp[2], resp[3]

    def negotiate(self, packet_size: int = 256, nbr_packets: int = 8, baud: int | None = None) -> tuple[int, int, int]:
        """Ask for packets and a baud rate; switch to what the meter chose (unless follow_baud
        is off). Returns (packet size, packets per message, baud)."""
        req = bytes([0x60 + (1 if baud else 0)]) + packet_size.to_bytes(2, "big") + bytes([nbr_packets])
        if baud:
            req += bytes([BAUD_CODES[baud]])
        resp = self.request(req, "negotiate")
        self.packet_size = int.from_bytes(resp[1:3], "big")
        self.nbr_packets = resp[3]
        rate = {v: k for k, v in BAUD_CODES.items()}.get(resp[4], 9600) if len(resp) > 4 else self.port.baudrate
        if rate != self.port.baudrate and self.follow_baud:
            time.sleep(0.05)  # the ACK goes out at the old rate first
            self.port.baudrate = rate
        return self.packet_size, self.nbr_packets, rate

    def logon(self, user_id: int = 1, user: str = "meterctl") -> None:
        name = user.encode()[:10].ljust(10)
        self.request(b"\x50" + user_id.to_bytes(2, "big") + name, "logon")

    def security(self, password: str | bytes, pad: bytes = b"\x00") -> None:
        self.request(b"\x51" + pad_password(password, pad), "security")

    def logoff(self) -> None:
        self.request(b"\x52", "logoff")

    def terminate(self) -> None:
        self.request(b"\x21", "terminate")
        self.packet_size, self.nbr_packets = 64, 1
        if self.port.baudrate != 9600:
            time.sleep(0.05)
            self.port.baudrate = 9600

    def wait(self, seconds: int) -> None:
        self.request(bytes([0x70, seconds]), "wait")

    def read(self, table: int, offset: int | None = None, count: int | None = None) -> bytes:
        """A full read, or a partial one (offset and count); checks the data checksum."""
        if offset is None:
            req = b"\x30" + table.to_bytes(2, "big")
        else:
            req = b"\x3f" + table.to_bytes(2, "big") + offset.to_bytes(3, "big") + (count or 0).to_bytes(2, "big")
        what = f"read of table {table}"
        resp = self.request(req, what)
        n = int.from_bytes(resp[1:3], "big")
        data = resp[3 : 3 + n]
        if len(resp) != n + 4 or checksum(data) != resp[3 + n]:
            raise LinkError(f"bad length or checksum in the {what}")
        return data

    def read_all(self, table: int, size: int, chunk: int | None = None) -> bytes:
        """A table of `size` bytes in partial reads that fit one negotiated message."""
        chunk = chunk or self.nbr_packets * (self.packet_size - OVERHEAD) - 4
        return b"".join(self.read(table, off, min(chunk, size - off)) for off in range(0, size, chunk))

    def write(self, table: int, data: bytes, offset: int | None = None) -> None:
        body = len(data).to_bytes(2, "big") + data + bytes([checksum(data)])
        if offset is None:
            req = b"\x40" + table.to_bytes(2, "big") + body
        else:
            req = b"\x4f" + table.to_bytes(2, "big") + offset.to_bytes(3, "big") + body
        self.request(req, f"write of table {table}")

    def procedure(self, number: int, params: bytes = b"", check: bool = True) -> tuple[int, bytes]:
        """Write ST7 (TBL_PROC_NBR, PROC_SEQ_NBR, params), read ST8: (result code, data).
        `number` includes MFG (0x800) for a manufacturer procedure."""
        self._seq = (self._seq + 1) & 0xFF
        self.write(7, number.to_bytes(2, "little") + bytes([self._seq]) + params)
        st8 = self.read(8)
        if int.from_bytes(st8[0:2], "little") != number or st8[2] != self._seq:
            raise C1218Error(f"ST8 answers procedure {int.from_bytes(st8[0:2], 'little')}, not {number}")
        if check and st8[3] != 0:
            raise ProcedureError(st8[3], number)
        return st8[3], st8[4:]

    @contextlib.contextmanager
    def session(
        self,
        password: str | bytes | None = None,
        user_id: int = 1,
        packet_size: int = 256,
        nbr_packets: int = 8,
        baud: int | None = None,
    ) -> Iterator[Client]:
        """Identify, negotiate, logon and (with a password) security; logoff and terminate after."""
        self.identify()
        self.negotiate(packet_size, nbr_packets, baud)
        self.logon(user_id)
        try:
            if password is not None:
                self.security(password)
            yield self
        finally:
            with contextlib.suppress(C1218Error):
                self.logoff()
                self.terminate()


def read_events(client: Client) -> list[dict[str, Any]]:
    """The event log (ST76 as ST71 dimensions it), oldest first: one dict per entry."""
    st71 = parse(TABLES.ST71, client.read(71))
    if not st71["NBR_EVENT_ENTRIES"]:
        return []
    size = layout_size(TABLES.EVENT_ENTRY)
    start = layout_size(TABLES.LOG_HEADER)
    data = client.read_all(76, start + size * st71["NBR_EVENT_ENTRIES"])
    head = parse(TABLES.LOG_HEADER, data)
    return [parse(TABLES.EVENT_ENTRY, data, start + i * size) for i in range(head["NBR_VALID_ENTRIES"])]


def set_time_params(when: tuple[int, int, int, int, int, int], mask: int = 3, qual: int = 0) -> bytes:
    """Procedure 10's parameters: SET_MASK, LTIME_DATE (years since 2000), TIME_DATE_QUAL
    (taken with SET_MASK bit 2, TABLES.SET_QUAL: QUAL_DST_APPLIED says it is local time)."""
    y, mo, d, hh, mi, ss = when
    return bytes([mask, y % 100, mo, d, hh, mi, ss, qual])


def parse_st23(st21: dict[str, int], data: bytes) -> dict[str, Any]:
    """ST23 as ST21 dimensions it: {'resets', 'total': block, 'tiers': [block, ...]}, each
    block {'summations': [Wh ...], 'demands': [(stime bytes, W), ...], 'cumulative': [W or
    None, ...], 'cont_cumulative': [W or None, ...]} (one per demand; None: REG_FUNC1 leaves
    it out). Field sizes are the firmware's (NI_FMAT1, NI_FMAT2, STIME_DATE in tables.py)."""
    t = TABLES
    flags = st21["REG_FUNC1"]
    off = 1 if flags & t.DEMAND_RESET_CTR_FLAG else 0
    out: dict[str, Any] = {"resets": data[0] if off else None, "tiers": []}

    def number(size: int) -> int:
        nonlocal off
        off += size
        return int.from_bytes(data[off - size : off], "little", signed=True)

    for k in range(st21["NBR_TIERS"] + 1):
        sums = [number(t.NI_FMAT1) for _ in range(st21["NBR_SUMMATIONS"])]
        demands, cum, cont = [], [], []
        for _ in range(st21["NBR_DEMANDS"]):
            when = [b""] * st21["NBR_OCCUR"]
            if flags & t.DATE_TIME_FIELD_FLAG:
                when = [data[off + t.STIME_DATE * i : off + t.STIME_DATE * (i + 1)] for i in range(st21["NBR_OCCUR"])]
                off += t.STIME_DATE * st21["NBR_OCCUR"]
            cum.append(number(t.NI_FMAT1) if flags & t.CUM_DEMAND_FLAG else None)
            cont.append(number(t.NI_FMAT1) if flags & t.CONT_CUM_DEMAND_FLAG else None)
            demands += [(w, number(t.NI_FMAT2)) for w in when]
        block = {"summations": sums, "demands": demands, "cumulative": cum, "cont_cumulative": cont}
        if k == 0:
            out["total"] = block
        else:
            out["tiers"].append(block)
    if off != len(data):
        raise C1218Error(f"ST23 is {len(data)} bytes, ST21 dimensions {off}")
    return out
