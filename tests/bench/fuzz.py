"""Fuzz the optical port of the simulated board and check every reaction.

    .venv/bin/python tests/bench/fuzz.py [frames] [seed]     # default: 1,000,000 frames

Batches of frames (random bytes, bad CRCs, truncated packets, wrong and oversize lengths,
out-of-order services, huge offsets and counts, duplicates, the meter's own echo, stray
ACKs and NAKs, multi-packet requests, wrong passwords) go through the pseudo-terminal as
fast as it takes them while the board's virtual time is frozen; between batches the
board meters a load for a second of virtual time. A reference model of the C12.18 link
and the PSEM services (written from the standard's rules, not from the firmware) predicts
the meter's exact output for every batch: each ACK and NAK, and every response packet's
header, response code and length (a read's data is the meter's business; its CRC and
checksum are checked). At the end: nothing changed without authorisation (configuration,
passwords, seal, identification, clock) and the energy registered matches a twin board
that metered the same load without fuzzing, and the truth.

tests/sim/test_optical_fuzz.py runs the same engine on 10,000+ frames in the default suite.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import serial

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from host_tools.c1218 import (  # noqa: E402
    ACK,
    FIRST,
    MULTI,
    NAK,
    STX,
    TABLES,
    TOGGLE,
    Client,
    checksum,
    crc16,
    packet,
    pad_password,
    parse,
)
from host_tools.sim import SimBoard  # noqa: E402

T = TABLES
PASSWORDS = ("fz-reader", "fz-programmer", "fz-master")
OK, ERR, SNS, ISC, ONP, IAR, DLK, ISSS = 0, 1, 2, 3, 4, 5, 8, 10
BASE, IDENTIFIED, SESSION = 0, 1, 2
MAX_PACKET, REQ_MAX = 256, 320
BAUDS = (0, 300, 600, 1200, 2400, 4800, 9600, 14400, 19200, 28800, 57600, 38400, 115200, 128000, 256000)


@dataclass
class Wild:
    """An expected packet whose data the model cannot know (a read): header, length, code."""

    header: bytes
    code: int | None  # the response code (first data byte) when this is the first packet

    @property
    def size(self) -> int:
        return 8 + int.from_bytes(self.header[4:6], "big")


@dataclass
class Model:
    """What the meter must answer: the C12.18 link and PSEM rules, from the standard."""

    sizes: dict[int, int]  # table sizes, read once from the meter
    packet_size: int = 64
    nbr: int = 1
    state: int = BASE
    level: int = 0
    out: list = field(default_factory=list)  # expected output: bytes and Wild
    # receiver
    rx: bytearray = field(default_factory=bytearray)
    need: int = 0
    # transmitter
    tx_toggle: int = 0
    awaiting: bool = False
    resp: list = field(default_factory=list)  # the response: a list of bytes, None for unknown
    resp_code: int = 0
    pos: int = 0
    chunk: int = 0
    tries: int = 0
    last_tx: bytes | None = None  # the last packet sent, when it is known byte for byte
    last_tx_len: int = 0
    identity: int = 0
    last_toggle: int = -1
    last_crc: int = -1
    dup_resends: bool = False
    end_after: bool = False
    baud: int = 9600
    pending_baud: int = 0
    probation: bool = False  # switched baud rate, no good packet at it yet
    req: bytearray | None = None
    req_seq: int = 0
    # echo learning (nothing echoes in the sim: it resolves to 'no echo' at the first mismatch)
    echo_unknown: bool = True
    echo_yes: bool = False
    eq: list = field(default_factory=list)  # what may come back; 256 stands for an unknown byte
    held: int = 0

    def defaults(self) -> None:
        self.packet_size, self.nbr = 64, 1
        self.baud, self.pending_baud, self.probation = 9600, 0, False
        self.end_after = False
        self.last_toggle = self.last_crc = -1
        self.dup_resends = False
        self.resp = []
        self.awaiting = False
        self.last_tx, self.last_tx_len = None, 0
        self.echo_unknown, self.echo_yes, self.eq, self.held = True, False, [], 0
        self.req = None

    # ---- input -------------------------------------------------------------------
    def feed(self, data: bytes) -> None:
        for b in data:
            self.input(b)

    def input(self, b: int) -> None:
        if self.echo_yes and self.eq:
            if b == self.eq[0]:
                del self.eq[0]
                return
            self.eq = []
        elif self.echo_unknown and self.eq:
            if b == self.eq[self.held]:
                self.held += 1
                if self.held < len(self.eq):
                    return
                if len(self.eq) > 8:  # a whole packet came back: an echoing port
                    self.echo_unknown, self.echo_yes, self.eq, self.held = False, True, [], 0
                    return
                held, self.eq, self.held = self.eq, [], 0  # a lone ACK or NAK: input after all
                for x in held:
                    self.byte(x)
                return
            self.no_echo()
        self.byte(b)

    def no_echo(self) -> None:
        """The held bytes were input after all: the port does not echo; replay them."""
        held = self.eq[: self.held]
        self.echo_unknown, self.eq, self.held = False, [], 0
        for x in held:
            self.byte(x)

    def write(self, item, learn: bool = False) -> None:
        self.out.append(item)
        if self.echo_yes:
            self.eq += [256] * item.size if isinstance(item, Wild) else list(item)
        elif self.echo_unknown:
            if learn:
                self.eq, self.held = [], 0
            elif not self.eq:
                return
            self.eq += [256] * item.size if isinstance(item, Wild) else list(item)

    def byte(self, b: int) -> None:
        rx = self.rx
        if not rx:
            if b == STX:
                rx.append(b)
                self.need = 0
            elif self.awaiting and b == ACK:
                self.acked()
            elif self.awaiting and b == NAK:
                self.resend()
            elif self.probation:
                self.fallback()
            return
        rx.append(b)
        n = len(rx)
        if n == 6:
            length = int.from_bytes(rx[4:6], "big")
            if length > self.packet_size - 8:
                rx.clear()
                self.refuse()
            else:
                self.need = 8 + length
        elif n > 6 and n == self.need:
            pkt = bytes(rx)
            rx.clear()
            self.complete(pkt)

    def complete(self, pkt: bytes) -> None:
        crc = crc16(pkt[:-2])
        if pkt[-2:] != bytes([crc & 0xFF, crc >> 8]):
            self.refuse()
            return
        if self.last_tx is not None and pkt == self.last_tx:
            return  # the meter's own packet, echoed
        self.probation = False
        ctrl, seq = pkt[2], pkt[3]
        toggle = ctrl & TOGGLE
        if toggle == self.last_toggle and crc == self.last_crc:
            self.write(bytes([ACK]))
            if self.dup_resends and self.resp:
                self.pos = 0
                self.send_packet()
            return
        self.abandon()
        self.last_toggle, self.last_crc = toggle, crc
        self.write(bytes([ACK]), learn=True)
        self.identity = pkt[1]
        data = pkt[6:-2]
        if ctrl & MULTI:
            self.dup_resends = False
            if ctrl & FIRST:
                self.req = bytearray()
            elif self.req is None or seq != self.req_seq - 1:
                self.req = None
                return
            self.req_seq = seq
            self.req += data
            if seq:
                return
            req = bytes(self.req)
            self.req = None
            self.handle(req) if len(req) <= REQ_MAX else self.reply([ONP])
        else:
            self.req = None
            self.handle(data)
        self.dup_resends = True
        self.pos = 0
        self.send_packet()

    # ---- output ------------------------------------------------------------------
    def send_packet(self) -> None:
        md = self.packet_size - 8
        total = len(self.resp)
        chunk = min(md, total - self.pos)
        npk = (total + md - 1) // md
        ctrl = self.tx_toggle
        if npk > 1:
            ctrl |= MULTI | (FIRST if self.pos == 0 else 0)
        left = min(npk - 1 - self.pos // md, 255)
        header = bytes([STX, self.identity, ctrl, left]) + chunk.to_bytes(2, "big")
        body = self.resp[self.pos : self.pos + chunk]
        if None in body:
            item = Wild(header, self.resp_code if self.pos == 0 else None)
            self.last_tx = None
        else:
            p = header + bytes(body)
            crc = crc16(p)
            item = p + bytes([crc & 0xFF, crc >> 8])
            self.last_tx = item
        self.last_item = item
        self.chunk = chunk
        self.tries = 0
        self.awaiting = True
        self.write(item)

    def resend(self) -> None:
        if self.tries >= 3:
            self.abandon()
            return
        self.tries += 1
        self.write(self.last_item)

    def acked(self) -> None:
        self.pos += self.chunk
        self.tx_toggle ^= TOGGLE
        if self.pos < len(self.resp):
            self.send_packet()
            return
        self.awaiting = False
        self.finish(True)

    def abandon(self) -> None:
        if self.awaiting:
            self.awaiting = False
            self.tx_toggle ^= TOGGLE
            self.finish(False)

    def refuse(self) -> None:
        if self.probation:
            self.fallback()
        self.write(bytes([NAK]))

    def fallback(self) -> None:
        """Input at a new baud rate that is no packet: the client stayed behind."""
        self.probation = False
        self.rx.clear()
        self.baud = 9600

    def finish(self, acked: bool) -> None:
        if self.end_after:
            self.defaults()
            return
        baud, self.pending_baud = self.pending_baud, 0
        if baud and acked:
            self.baud = baud
            self.probation = True
            self.rx.clear()

    def reply(self, data: list) -> None:
        self.resp = data
        self.resp_code = data[0]

    # ---- PSEM --------------------------------------------------------------------
    def handle(self, req: bytes) -> None:
        n = len(req)
        if not n:
            return self.reply([ERR])
        code, st = req[0], self.state
        if code in (0x30, 0x3F):
            return self.read(req, code == 0x3F)
        if code in (0x40, 0x4F):
            return self.write_table(req, code == 0x4F)
        if code == 0x20:
            if st == SESSION:
                return self.reply([ISSS])
            self.state = IDENTIFIED
            return self.reply([OK, 0, 1, 0, 0])
        if code == 0x21:
            self.state, self.level = BASE, 0
            self.end_after = True
            return self.reply([OK])
        if 0x60 <= code <= 0x6B:
            k = code - 0x60
            if st != IDENTIFIED:
                return self.reply([ISSS])
            if n < 4 + k:
                return self.reply([ERR])
            size, nbr = int.from_bytes(req[1:3], "big"), req[3]
            if size < 32 or nbr == 0:
                return self.reply([IAR])
            size = min(size, MAX_PACKET)
            rates = [(BAUDS[c], c) for c in req[4 : 4 + k] if c < len(BAUDS) and 1200 <= BAUDS[c] <= 57600]
            baud, code = max(rates) if rates else (self.baud, BAUDS.index(self.baud))
            self.packet_size, self.nbr = size, nbr
            self.pending_baud = baud if baud != self.baud else 0
            return self.reply([OK, size >> 8, size & 0xFF, nbr, code])
        if code == 0x50:
            if st != IDENTIFIED:
                return self.reply([ISSS])
            if n < 13:
                return self.reply([ERR])
            self.state, self.level = SESSION, 0
            return self.reply([OK])
        if code == 0x51:
            if st != SESSION:
                return self.reply([ISSS])
            return self.reply([ISC])  # the fuzzer never knows a password
        if code == 0x52:
            if st != SESSION:
                return self.reply([ISSS])
            self.state, self.level = IDENTIFIED, 0
            return self.reply([OK])
        if code == 0x70:
            if st == BASE:
                return self.reply([ISSS])
            return self.reply([ERR] if n < 2 else [OK])
        return self.reply([SNS])

    def read(self, req: bytes, partial: bool) -> None:
        if self.state != SESSION:
            return self.reply([ISSS])
        if len(req) < (8 if partial else 3):
            return self.reply([ERR])
        tid = int.from_bytes(req[1:3], "big")
        e = T.find(tid)
        if e is None:
            return self.reply([IAR])
        if T.read_level(e) > self.level:
            return self.reply([ISC])
        size = self.sizes[tid]
        if partial:
            off, cnt = int.from_bytes(req[3:6], "big"), int.from_bytes(req[6:8], "big")
            if off + cnt > size:
                return self.reply([IAR])
        else:
            cnt = size
        if cnt + 4 > (self.packet_size - 8) * self.nbr:
            return self.reply([ONP])
        self.reply([OK, cnt >> 8, cnt & 0xFF] + [None] * (cnt + 1))

    def write_table(self, req: bytes, partial: bool) -> None:
        if self.state != SESSION:
            return self.reply([ISSS])
        h = 8 if partial else 5
        n = len(req)
        if n < h + 1:
            return self.reply([ERR])
        cnt = int.from_bytes(req[h - 2 : h], "big")
        if n < h + cnt + 1 or sum(req[h : h + cnt + 1]) & 0xFF:
            return self.reply([ERR])
        e = T.find(int.from_bytes(req[1:3], "big"))
        if e is None:
            return self.reply([IAR])
        wl = T.write_level(e)
        if wl == T.NEVER or wl > self.level:
            return self.reply([ISC])
        raise AssertionError("the fuzzer has no write access")


class Port:
    """The optical pty with a reader thread, so neither side ever blocks on a full buffer."""

    def __init__(self, path: str) -> None:
        self.ser = serial.Serial(path, 9600, timeout=0.01, write_timeout=10)
        self.buf = bytearray()
        self.cv = threading.Condition()
        self.stop = False
        self.thread = threading.Thread(target=self._run, name="fuzz-reader", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop:
            data = self.ser.read(65536)
            if data:
                with self.cv:
                    self.buf += data
                    self.cv.notify_all()

    def take(self, n: int, timeout: float) -> bytes:
        """At least n bytes (all that came), or what came before `timeout` s of silence."""
        with self.cv:
            last = len(self.buf)
            end = time.monotonic() + timeout
            while len(self.buf) < n:
                left = end - time.monotonic()
                if left <= 0:
                    break
                self.cv.wait(min(left, 0.05))
                if len(self.buf) != last:
                    last = len(self.buf)
                    end = time.monotonic() + timeout
            out = bytes(self.buf)
            self.buf.clear()
            return out

    def close(self) -> None:
        self.stop = True
        self.thread.join(timeout=2)
        self.ser.close()


class Fuzzer:
    """Generates batches of frames, feeds the model the same bytes, checks the meter."""

    def __init__(self, board: SimBoard, seed: int, sizes: dict[int, int]) -> None:
        self.board = board
        self.rng = random.Random(seed)
        self.model = Model(sizes)
        self.port = Port(board.optical_port)
        self.toggle = False
        self.last_frame = b""
        self.frames = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.kinds: dict[str, int] = {}
        self.codes: dict[int, int] = {}
        self.drips = 0

    def close(self) -> None:
        self.port.close()

    def start(self) -> None:
        """Learn the one thing the model cannot know, the meter's toggle bit, with an Identify."""
        p = self.pkt(b"\x20", identity=0)
        self.port.ser.write(p)
        got = self.port.take(14, 2.0)
        assert got[:1] == bytes([ACK]) and len(got) == 14, got.hex()
        self.model.tx_toggle = got[3] & TOGGLE
        self.model.feed(p)
        assert self.model.out[1] == got[1:], "the model's answer to Identify"
        self.model.out = []
        self.port.ser.write(bytes([ACK]))
        self.model.feed(bytes([ACK]))

    # ---- frames ------------------------------------------------------------------
    def pkt(self, data: bytes, ctrl: int = 0, seq: int = 0, identity: int | None = None) -> bytes:
        ident = self.rng.choice((0, 0, 0, 5, 0xFF)) if identity is None else identity
        p = packet(data, self.toggle, ident, ctrl, seq)
        self.toggle = not self.toggle
        return p

    def service(self) -> bytes:
        """A PSEM request, well formed or not, for whatever state the session is in."""
        r = self.rng
        tids = [n for n, _ in T.TABLES] + [2, 4, 6, 9, 24, 60, 77, 2047, T.MFG + 6, 0xFFFF, r.randrange(65536)]
        # mostly what the session state calls for, so that every state is well visited
        state = self.model.state
        if r.random() < 0.5:
            kind = {BASE: 0, IDENTIFIED: r.choice((2, 3, 3)), SESSION: r.choice((4, 7, 8, 9, 12, 13))}[state]
        else:
            kind = r.randrange(20)
        if kind == 0:
            return b"\x20"
        if kind == 1:
            return b"\x21" if r.random() < 0.2 else b"\x52"
        if kind == 2:
            size = r.choice((0, 16, 31, 32, 48, 64, 100, 128, 200, 256, 512, 1024, 0xFFFF))
            nbr = r.choice((0, 1, 2, 4, 8, 64, 255))
            baud = r.choice((b"", b"\x06", b"\x01", b"\x0c", b"\x0e", b"\x20"))
            req = bytes([0x60 + len(baud)]) + size.to_bytes(2, "big") + bytes([nbr]) + baud
            return req[: r.randrange(1, len(req) + 1)] if r.random() < 0.1 else req
        if kind == 3:
            req = b"\x50" + r.randrange(65536).to_bytes(2, "big") + bytes(r.randrange(32, 127) for _ in range(10))
            return req[: r.randrange(1, 14)] if r.random() < 0.1 else req
        if kind == 4:
            # near misses, never one a truncation turns into a password ("fz-master1" would)
            guess = (
                r.choice(("", "FZ-MASTER", "fz-maste", "fz-mastex", "xfz-master", "0" * 20))
                if r.random() < 0.5
                else None
            )
            pw = pad_password(guess, r.choice((b"\x00", b" ", b"0"))) if guess is not None else r.randbytes(20)
            return b"\x51" + pw[: r.randrange(0, 21)]
        if kind == 5:
            return b"\x52"
        if kind == 6:
            return bytes([0x70, r.randrange(256)])[: r.choice((1, 2, 2, 2))]
        if kind in (7, 8, 9, 10, 11):
            tid = r.choice(tids)
            if kind == 7:
                return b"\x30" + tid.to_bytes(2, "big")
            off = r.choice((0, 1, r.randrange(64), r.randrange(6000), 0xFFFFFF, r.randrange(1 << 24)))
            cnt = r.choice((0, 1, r.randrange(64), r.randrange(300), 5000, 0xFFFF, r.randrange(65536)))
            req = b"\x3f" + tid.to_bytes(2, "big") + off.to_bytes(3, "big") + cnt.to_bytes(2, "big")
            return req[: r.randrange(1, 9)] if r.random() < 0.05 else req
        if kind in (12, 13):
            tid = r.choice(tids)
            data = r.randbytes(r.randrange(0, 40))
            ck = checksum(data) if r.random() < 0.7 else r.randrange(256)
            cnt = len(data) if r.random() < 0.8 else r.randrange(65536)
            if kind == 12:
                return b"\x40" + tid.to_bytes(2, "big") + cnt.to_bytes(2, "big") + data + bytes([ck])
            off = r.choice((0, r.randrange(100), 0xFFFFFF))
            head = b"\x4f" + tid.to_bytes(2, "big") + off.to_bytes(3, "big")
            return head + cnt.to_bytes(2, "big") + data + bytes([ck])
        if kind == 14:
            return bytes([r.choice((0x00, 0x01, 0x22, 0x31, 0x41, 0x53, 0x6C, 0x71, 0x80, 0xEE, 0xFF))])
        return r.randbytes(r.randrange(0, 24))

    def frame(self) -> tuple[str, bytes]:
        """One frame of a random kind, and the bytes that follow it (ACKs, NAKs or nothing)."""
        r = self.rng
        roll = r.random()
        if roll < 0.10:
            return "random", bytes(r.choice((STX, r.randrange(256))) for _ in range(r.randrange(1, 48)))
        if roll < 0.18:
            p = bytearray(self.pkt(self.service()))
            p[r.randrange(len(p))] ^= 1 << r.randrange(8)
            return "bad CRC", bytes(p)
        if roll < 0.24:
            p = self.pkt(self.service())
            return "truncated", p[: r.randrange(1, len(p))]
        if roll < 0.29:
            data = self.service()
            p = bytearray(packet(data, self.toggle))
            self.toggle = not self.toggle
            wrong = max(0, len(data) + r.choice((-3, -1, 1, 2, 9)))
            p[4:6] = wrong.to_bytes(2, "big")
            return "wrong length", bytes(p)
        if roll < 0.32:
            n = r.choice((self.model.packet_size - 7, 300, 1024, 0xFFFF))
            return "oversize", bytes([STX, 0, 0, 0]) + n.to_bytes(2, "big") + r.randbytes(r.randrange(0, 12))
        if roll < 0.35 and self.last_frame:
            return "duplicate", self.last_frame
        if roll < 0.37 and isinstance(self.model.last_tx, bytes) and not self.model.echo_unknown:
            return "echo", self.model.last_tx
        if roll < 0.40:
            return "stray", bytes(r.choice((ACK, NAK, 0x55)) for _ in range(r.randrange(1, 4)))
        if roll < 0.43:
            return "multi-packet", self.multi()
        p = self.pkt(self.service())
        self.last_frame = p
        return "service", p

    def multi(self) -> bytes:
        """A request in several packets: whole, out of order, or cut short."""
        r = self.rng
        data = self.service() + r.randbytes(r.randrange(0, 80))
        room = max(1, min(self.model.packet_size - 8, r.choice((8, 16, 40))))
        chunks = [data[i : i + room] for i in range(0, len(data), room)] or [b""]
        out = b""
        for i, chunk in enumerate(chunks):
            seq = len(chunks) - 1 - i
            if r.random() < 0.05:
                seq = r.randrange(8)
            ctrl = MULTI | (FIRST if i == 0 else 0)
            out += self.pkt(chunk, ctrl, seq, identity=0)
        return out

    def after(self) -> bytes:
        """What the client sends after a frame: usually an ACK per expected packet."""
        r = self.rng
        m = self.model
        if not m.awaiting:
            return b""
        md = m.packet_size - 8
        left = (len(m.resp) - m.pos + md - 1) // md
        roll = r.random()
        if roll < 0.80:
            return bytes([ACK]) * left
        if roll < 0.90:
            return bytes([NAK]) + bytes([ACK]) * left
        return b""  # no ACK: the next request must stand for it

    # ---- a batch -----------------------------------------------------------------
    def batch(self, n: int, drip: bool = False) -> None:
        m = self.model
        m.out = []
        stream = bytearray()
        for _ in range(n):
            kind, data = self.frame()
            self.kinds[kind] = self.kinds.get(kind, 0) + 1
            m.feed(data)
            follow = self.after()
            m.feed(follow)
            stream += data + follow
            self.frames += 1
        if m.rx:  # a partial packet: line noise completes it (the meter NAKs it, or not)
            filler = bytes(m.need - len(m.rx)) if m.need else bytes(6 - len(m.rx))
            m.feed(filler)
            stream += filler
            if m.rx:
                filler = bytes(m.need - len(m.rx))
                m.feed(filler)
                stream += filler
        sync = self.pkt(b"\x70\x05")  # Wait: a one-packet answer in any state
        m.feed(sync)
        m.feed(bytes([ACK]))
        stream += sync + bytes([ACK])
        if m.held:  # an ACK held while the echo is learnt: the board's run() lets its timer go
            m.no_echo()
        assert not m.rx and not m.awaiting
        expected = m.out
        size = sum(x.size if isinstance(x, Wild) else len(x) for x in expected)
        if drip:
            for b in stream:
                self.port.ser.write(bytes([b]))
                time.sleep(0.002)
        else:
            for i in range(0, len(stream), 4096):
                self.port.ser.write(stream[i : i + 4096])
        got = self.port.take(size, timeout=3.0)
        self.bytes_in += len(stream)
        self.bytes_out += len(got)
        self.check(expected, got, stream)

    def check(self, expected: list, got: bytes, stream: bytes) -> None:
        i = 0
        for k, item in enumerate(expected):
            where = f"item {k} of {len(expected)} at byte {i} of the meter's output"
            if isinstance(item, Wild):
                n = item.size
                pkt = got[i : i + n]
                assert pkt[:6] == item.header, f"{where}: header {pkt[:6].hex()} != {item.header.hex()}"
                assert len(pkt) == n, f"{where}: truncated packet"
                crc = crc16(pkt[:-2])
                assert pkt[-2:] == bytes([crc & 0xFF, crc >> 8]), f"{where}: bad CRC from the meter"
                if item.code is not None:
                    assert pkt[6] == item.code, f"{where}: code {pkt[6]} != {item.code}"
                    self.codes[pkt[6]] = self.codes.get(pkt[6], 0) + 1
                i += n
            else:
                seen = got[i : i + len(item)]
                context = got[max(0, i - 40) : i + 60].hex()
                assert seen == item, f"{where}: {seen.hex()} != {item.hex()} in {context}"
                if len(item) > 8:
                    self.codes[item[6]] = self.codes.get(item[6], 0) + 1
                i += len(item)
        assert i == len(got), f"the meter sent {len(got) - i} bytes more than expected: {got[i : i + 80].hex()}"


def table_sizes(board: SimBoard) -> dict[int, int]:
    sizes = {}
    with Client.open(board.optical_port) as c, c.session(password=PASSWORDS[2], packet_size=256, nbr_packets=255):
        for number, _ in T.TABLES:
            if number in (7, T.MFG + 2):
                sizes[number] = {7: 0, T.MFG + 2: 60}[number]
            else:
                sizes[number] = len(c.read(number))
    return sizes


def snapshot(board: SimBoard) -> dict:
    """What no one without a password may change."""
    with Client.open(board.optical_port) as c, c.session(password=PASSWORDS[2], packet_size=256, nbr_packets=64):
        mt0 = parse(T.MT0, c.read(T.MFG + 0))
        return {
            "config": c.read(T.MFG + 1),
            "identification": c.read(5),
            "seal": {k: mt0[k] for k in ("SEAL_COUNT", "SEAL_TIME", "SEAL_CONFIG_CRC", "SEAL_FW_HASH")},
            "sealed": mt0["SEAL_FLAGS"] & T.SEAL_SEALED,
            "st8": c.read(8),
            "registers": c.read(T.MFG + 5),
            "clock": parse(T.ST52, c.read(52)),
            "rtc": board.hw.rtc_seconds(),
            "counters": mt0,
        }


def prepare(board: SimBoard) -> None:
    data = b"".join(pad_password(p) for p in PASSWORDS)
    with Client.open(board.optical_port) as c, c.session(password=""):
        c.write(T.MFG + 2, data)
        c.write(5, b"FUZZED METER".ljust(20))


def run(
    frames: int, seed: int = 1, batch: int = 200, drip_batches: int = 2, report=print, keep_going: bool = False
) -> dict:
    """Fuzz a board with `frames` frames; the twin board meters the same load unfuzzed.
    Returns the figures. A wrong reaction raises AssertionError, or with keep_going is
    recorded in "deviations" (with the board's console) and the fuzzing goes on after a
    resynchronisation (7 s of silence end the session on both sides)."""
    load = (240.0, 15.0)
    with SimBoard(seed=seed, ideal=True) as board, SimBoard(seed=seed, ideal=True) as twin:
        for b in (board, twin):
            prepare(b)
            b.set_load(*load)
        sizes = table_sizes(board)
        table_sizes(twin)  # the same port traffic as the fuzzed board before the fuzzing
        before = snapshot(board)
        snapshot(twin)
        fz = Fuzzer(board, seed, sizes)
        fz.start()
        deviations: list[str] = []
        t0 = time.monotonic()
        batches = 0
        try:
            while fz.frames < frames:
                drip = batches < drip_batches
                try:
                    fz.batch(min(batch if not drip else 20, frames - fz.frames), drip=drip)
                except AssertionError as exc:
                    console = board.console.text()[-1500:] if board.console is not None else ""
                    text = f"{exc}\nafter {fz.frames:,} frames; the board's console:\n{console}"
                    if not keep_going:
                        raise AssertionError(text) from None
                    deviations.append(text)
                    for b in (board, twin):
                        b.run(7.0)  # the channel timeout: both ends start again from the base state
                    fz.port.take(1 << 20, 0.3)
                    fz.model = Model(sizes, tx_toggle=fz.model.tx_toggle)
                    fz.last_frame = b""
                    fz.start()
                fz.drips += drip
                for b in (board, twin):
                    b.run(1.0)
                batches += 1
                if report and batches % 500 == 0:
                    report(f"  {fz.frames:,} frames, {time.monotonic() - t0:.0f} s")
        finally:
            fz.close()
        wall = time.monotonic() - t0
        for b in (board, twin):
            b.run(61.0)  # any lock-out the fuzzer caused expires
        after = snapshot(board)
        control = snapshot(twin)
        truth = board.true_energy_wh()
    for key in ("config", "identification", "seal", "sealed", "st8"):
        assert after[key] == before[key], f"the fuzzing changed {key}"
    clock = after["clock"]
    days = T.days_from_2000(2000 + clock["YEAR"], clock["MONTH"], clock["DAY"])
    secs = days * 86400 + clock["HOUR"] * 3600 + clock["MINUTE"] * 60 + clock["SECOND"]
    assert abs(secs - after["rtc"]) <= 1, "the clock was not set by the fuzzer: it is the board's RTC"

    def wh(regs: bytes) -> float:
        return int.from_bytes(regs[0:8], "little") + int.from_bytes(regs[8:16], "little") / 10000

    fuzzed, twin_wh = wh(after["registers"]), wh(control["registers"])
    # ideal boards: the register is the truth but for what the last poll has not read yet
    # and the no-load threshold; the fuzzed board's clock ran a little ahead of the twin's
    # (EEPROM writes of the security events it logged take bus time), so the truth decides
    assert abs(fuzzed - truth["delivered"]) <= 0.001 * truth["delivered"] + 1.0, (fuzzed, truth)
    assert abs(fuzzed - twin_wh) <= 0.001 * twin_wh + 1.0, (fuzzed, twin_wh)
    counters = after["counters"]
    if not keep_going:
        assert counters["PORT_FAULTS"] == 0, "a service raised while fuzzed"
    return {
        "deviations": deviations,
        "port_faults": counters["PORT_FAULTS"],
        "frames": fz.frames,
        "batches": batches,
        "wall_s": wall,
        "frames_per_s": fz.frames / wall,
        "bytes_in": fz.bytes_in,
        "bytes_out": fz.bytes_out,
        "kinds": dict(sorted(fz.kinds.items(), key=lambda kv: -kv[1])),
        "codes": {k: fz.codes[k] for k in sorted(fz.codes)},
        "energy_wh": (fuzzed, twin_wh, truth["delivered"]),
        "naks": counters["LINK_NAKS"],
        "lockouts": counters["LOCKOUTS"],
        "heap_free": (before["counters"]["HEAP_FREE"], counters["HEAP_FREE"]),
        "failed_passwords": counters["FAILED_PASSWORDS"],
    }


def main() -> int:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    print(f"fuzzing the optical port with {frames:,} frames (seed {seed})", flush=True)
    res = run(frames, seed, batch=500, report=lambda s: print(s, flush=True), keep_going=True)
    print(f"{res['frames']:,} frames in {res['batches']:,} batches, {res['wall_s']:.1f} s wall "
          f"({res['frames_per_s']:,.0f} frames/s); {res['bytes_in']:,} bytes in, {res['bytes_out']:,} out")  # fmt: skip
    print(f"  kinds: {res['kinds']}")
    print(f"  response codes: {res['codes']}")
    print(f"  link NAKs (MT0, 16-bit): {res['naks']:,}; wrong passwords {res['failed_passwords']:,}, "
          f"lock-outs {res['lockouts']:,}")  # fmt: skip
    print(f"  the board's free heap (MT0): {res['heap_free'][0]:,} B before, {res['heap_free'][1]:,} B after")
    fuzzed, twin, truth = res["energy_wh"]
    print(f"  energy: fuzzed board {fuzzed:.4f} Wh, unfuzzed twin {twin:.4f} Wh, truth {truth:.4f} Wh")
    print("  nothing changed without authorisation; metering matched the truth")
    if res["deviations"]:
        print(f"  {len(res['deviations'])} batch(es) NOT as the model predicted ({res['port_faults']} port faults):")
        for text in res["deviations"][:3]:
            print("    " + text.replace("\n", "\n    "))
        return 1
    print("  every reaction as the model predicted")
    return 0


if __name__ == "__main__":
    sys.exit(main())
