"""A real client is never outrun by virtual time (DESIGN.md principle 3; issue 15 item 7).

The board runs at set_speed(400) (the demo's calibration): a virtual second in 2.5 ms of
real time. The meter's C12.18 timers (0.5 s between characters, 2 s for an ACK, 6 s of
channel silence) still run in virtual time, but the simulated board never lets virtual
time reach one of them before the client has been silent that long in its own, real
time (host_tools/sim/server.py). So a client that pauses 50-300 ms of real time (a
descheduled process on a loaded machine: 20-120 s of virtual time here) keeps its
session, and a client that stays silent longer than a timer in real time still loses it.

The clients are real: host_tools.c1218's Client, and raw bytes on the pseudo-terminal
where a test must pause where no well-behaved client does (inside a packet, before an
ACK). No wall-clock duration is asserted: the pauses are what the client does; what is
checked is what the meter did (its answers and MT0's link counters). Where a test needs
the meter to have acted on an expired timer, it waits until virtual time has gone past
that timer, which the board only allows once the timer has run out in real time.
"""

from __future__ import annotations

import time

import pytest
import serial

from host_tools.c1218 import ACK, STX, TABLES, Client, ServiceError, crc16, packet, parse

pytestmark = pytest.mark.sim_only

T = TABLES
SPEED = 400
PAUSES = (0.05, 0.1, 0.2, 0.3)  # seconds of real time: 20-120 s of the board's time at speed 400
LOGON = b"\x50\x00\x07" + b"realtime  "
READ_ST1 = b"\x30\x00\x01"


class Raw:
    """The optical port byte by byte: packets sent and read whole, ACKs when the test says."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 9600, timeout=0.02)
        self.toggle = False

    def close(self) -> None:
        self.port.close()

    def send(self, data: bytes) -> None:
        self.port.write(data)
        self.port.flush()

    def read_byte(self, limit: float = 10.0) -> int:
        end = time.monotonic() + limit
        while time.monotonic() < end:
            b = self.port.read(1)
            if b:
                return b[0]
        raise AssertionError("the meter sent nothing")

    def read_packet(self, limit: float = 10.0) -> tuple[int, int, bytes]:
        """The meter's next packet (ctrl, seq, data), CRC checked; stray ACKs are skipped."""
        b = self.read_byte(limit)
        while b == ACK:
            b = self.read_byte(limit)
        assert b == STX, f"expected a packet from the meter, got {b:#04x}"
        head = bytes([b]) + bytes(self.read_byte() for _ in range(5))
        n = int.from_bytes(head[4:6], "big")
        rest = bytes(self.read_byte() for _ in range(n + 2))
        crc = crc16(head + rest[:n])
        assert rest[n:] == bytes([crc & 0xFF, crc >> 8]), "a packet from the meter with a bad CRC"
        return head[2], head[3], rest[:n]

    def request(self, data: bytes, ack_pause: float = 0.0, split: int = 0, split_pause: float = 0.0) -> bytes:
        """Send a request (optionally in two parts, `split` bytes first, with a pause
        between), read the meter's ACK and its response a packet at a time, pausing
        `ack_pause` before each ACK; the whole response."""
        pkt = packet(data, self.toggle)
        self.toggle = not self.toggle
        if split:
            self.send(pkt[:split])
            time.sleep(split_pause)
            self.send(pkt[split:])
        else:
            self.send(pkt)
        assert self.read_byte() == ACK, "the meter ACKs a good request at once"
        out = b""
        while True:
            _ctrl, seq, chunk = self.read_packet()
            out += chunk
            time.sleep(ack_pause)
            self.send(bytes([ACK]))
            if seq == 0:
                return out

    def quiet(self, seconds: float = 0.2) -> bytes:
        """What the meter sends within `seconds` (it should be nothing)."""
        end = time.monotonic() + seconds
        out = b""
        while time.monotonic() < end:
            out += self.port.read(64)
        return out


@pytest.fixture
def fast(sim):
    """The sim fixture's board with virtual time flowing 400 times faster than real time."""
    sim.set_speed(SPEED)
    yield sim
    sim.set_speed(0)


@pytest.fixture
def raw(fast):
    r = Raw(fast.optical_port)
    yield r
    r.close()


def open_session(raw: Raw, packet_size: int = 64, packets: int = 8) -> None:
    """Identify, negotiate, logon, security with the factory's blank master password."""
    assert raw.request(b"\x20")[:1] == b"\x00"
    assert raw.request(b"\x60" + packet_size.to_bytes(2, "big") + bytes([packets]))[:1] == b"\x00"
    assert raw.request(LOGON)[:1] == b"\x00"
    assert raw.request(b"\x51" + bytes(20))[:1] == b"\x00"


def link_counters(raw: Raw) -> dict:
    resp = raw.request(b"\x30\x08\x00")  # MT0: seal, security and link counters
    assert resp[0] == 0, f"MT0 read answered {resp[0]:#04x} (0x0a: isss, the session was lost)"
    n = int.from_bytes(resp[1:3], "big")
    return parse(T.MT0, resp[3 : 3 + n])


def wait_virtual(board, seconds: float, limit: float = 60.0) -> None:
    """Until the board's time has gone `seconds` beyond now (at speed 400: a moment, unless
    it is held for the client's real time, which is the point)."""
    target = board.virtual_time() + seconds
    end = time.monotonic() + limit
    while board.virtual_time() < target:
        assert time.monotonic() < end, "virtual time stopped"
        time.sleep(0.01)


def test_a_client_that_pauses_before_each_ack_keeps_its_session(fast, raw):
    fast.set_load(240.0, 10.0)
    open_session(raw)
    for pause in PAUSES:
        resp = raw.request(b"\x30\x00\x17", ack_pause=pause)  # ST23: 200 bytes, four 64-byte packets
        assert resp[0] == 0 and int.from_bytes(resp[1:3], "big") == 196
        resp = raw.request(READ_ST1, ack_pause=pause)
        assert resp[3:7] == b"OMTR"
    counters = link_counters(raw)
    assert counters["LINK_RETRANSMITS"] == 0, "no packet was sent again: every ACK was in time"
    assert counters["LINK_TIMEOUTS"] == 0 and counters["LINK_NAKS"] == 0
    assert counters["SESSION_LEVEL"] == T.MASTER, "the session is the one opened"
    assert raw.quiet() == b""


@pytest.mark.parametrize("split", [1, 4, 7])
def test_a_client_that_pauses_inside_a_packet_keeps_it(fast, raw, split):
    """A pause of up to 250 ms (100 s of the board's time) between two characters of a
    request: the meter still takes the packet whole (the limit is 500 ms of the client's
    time; 250 ms leaves a loaded machine room)."""
    open_session(raw)
    for pause in (0.05, 0.15, 0.25):
        resp = raw.request(READ_ST1, split=split, split_pause=pause)
        assert resp[0] == 0 and resp[3:7] == b"OMTR", "the packet was taken whole after the pause"
    counters = link_counters(raw)
    assert counters["LINK_NAKS"] == 0 and counters["LINK_TIMEOUTS"] == 0


def test_a_client_that_pauses_between_requests_keeps_its_session_without_wait(fast):
    with Client.open(fast.optical_port) as c, c.session(password=""):
        for pause in PAUSES:
            time.sleep(pause)  # 20-120 s of the board's time: far past the 6 s channel timeout
            assert c.read(1)[:4] == b"OMTR"
            time.sleep(pause)
            c.read(23)
        counters = parse(T.MT0, c.read(T.MFG + 0))
    assert counters["LINK_TIMEOUTS"] == 0 and counters["LINK_RETRANSMITS"] == 0
    assert c.retries == 0


def firmware_read(board, sent: float, limit: float = 10.0) -> float:
    """The virtual time (s) at which the firmware took bytes sent at monotonic `sent`."""
    end = time.monotonic() + limit
    while True:
        traffic = board.hw.traffic
        if traffic is not None and traffic[1] >= sent:
            return traffic[0] / 1e6
        assert time.monotonic() < end, "the firmware never read the bytes"
        time.sleep(0.005)


def test_a_partial_packet_is_still_dropped_after_half_a_second_of_real_silence(fast, raw):
    open_session(raw)
    pkt = packet(READ_ST1, raw.toggle)
    assert STX not in pkt[1:], "the tail must not look like a new packet"
    sent = time.monotonic()
    raw.send(pkt[:4])
    taken = firmware_read(fast, sent)
    time.sleep(0.6)  # more than the 500 ms between characters, in the client's time
    # The board's time past the timer (0.5 s after the bytes were taken): the meter woke
    # for it and acted. Not much further: the channel timer (6 s from the last ACK, which
    # a partial packet does not restart) must not run out too.
    wait_virtual(fast, taken + 0.6 - fast.virtual_time())
    raw.send(pkt[4:])
    assert raw.quiet(0.3) == b"", "the tail alone is no packet: no ACK, no NAK"
    resp = raw.request(READ_ST1)  # the same packet again, whole: taken (the session lives on)
    assert resp[3:7] == b"OMTR"


def test_an_unacked_response_is_still_sent_again_after_two_seconds_of_real_silence(fast, raw):
    open_session(raw)
    pkt = packet(READ_ST1, raw.toggle)
    raw.toggle = not raw.toggle
    raw.send(pkt)
    assert raw.read_byte() == ACK
    first = raw.read_packet()
    again = raw.read_packet(limit=30.0)  # no ACK from us: the meter sends it again (2 s)
    assert again == first, "the same packet, the same toggle bit"
    raw.send(bytes([ACK]))
    assert link_counters(raw)["LINK_RETRANSMITS"] >= 1


def test_a_client_silent_longer_than_the_channel_timeout_loses_its_session(fast):
    """About 6.5 s of real time: the channel timeout is 6 s of the client's silence, and
    nothing shorter can show that it still ends a session at this speed."""
    with Client.open(fast.optical_port) as c:
        c.identify()
        c.logon()
        assert c.read(1)[:4] == b"OMTR"
        time.sleep(6.2)
        wait_virtual(fast, 2.0)  # past the timer: the meter has ended the session
        with pytest.raises(ServiceError) as info:
            c.read(1)
        assert info.value.name == "isss"
        c.identify()
        c.negotiate(256, 8)
        c.logon()
        assert parse(T.MT0, c.read(T.MFG + 0))["LINK_TIMEOUTS"] == 1
        c.logoff()
        c.terminate()


def test_a_power_cut_is_not_held_for_a_silent_client(sim):
    """The supply's hold-up after a sag runs out in virtual time whatever the port does,
    and after the cut the board forgets the client: nothing is held for it."""
    hw = sim.hw
    with Client.open(sim.optical_port) as c:
        c.identify()
        c.logon()
        c.wait(255)  # 255 s of the client's silence allowed
        holds = hw.holds
        sim.power_off(sag_ms=10)  # at speed 0: only the hold-up's 10 ms move the clock
        assert not hw.powered
        assert hw.holds == holds, "the hold-up was not held for the client"
        sim.power_on()
        sim.run(300)  # a fresh firmware: no session, nothing to hold for
        assert hw.holds == holds and hw.silence_us is None
        with pytest.raises(ServiceError) as info:
            c.read(1)
        assert info.value.name == "isss", "the power cut ended the session"


# boot.py: every Link.deadline() call of the meter's loop runs under micropython.heap_lock()
LOCKED_DEADLINE = """
import micropython, sys
import c1218
_deadline = c1218.Link.deadline
_n = [0, 0, 0, 0]  # calls, allocations caught, calls with a timer pending, canary
def _locked(self):
    micropython.heap_lock()
    try:
        if not _n[3]:
            _n[3] = 1
            try:
                bytearray(8)
            except MemoryError:
                _n[3] = 2
        d = _deadline(self)
    except MemoryError as e:
        micropython.heap_unlock()
        _n[1] += 1
        print('DEADLINE allocation')
        sys.print_exception(e)
        return None
    micropython.heap_unlock()
    _n[0] += 1
    if d is not None:
        _n[2] += 1
        if _n[2] % 20 == 0:
            print('DEADLINE', _n[0], _n[1], _n[2], _n[3])
    return d
c1218.Link.deadline = _locked
"""


def test_the_deadline_allocates_nothing_in_any_state_of_a_session(sim):
    """A partial packet, an echo window, an ACK awaited, a session open: the loop asks
    Link.deadline() every turn, under heap_lock() here."""
    (sim.state_dir / "fs" / "boot.py").write_text(LOCKED_DEADLINE)
    sim.power_off()
    sim.power_on()
    sim.set_speed(SPEED)
    r = Raw(sim.optical_port)
    try:
        open_session(r)
        for pause in (0.05, 0.1):
            r.request(READ_ST1, ack_pause=pause, split=3, split_pause=pause)
        sent = time.monotonic()
        r.send(packet(READ_ST1, r.toggle)[:3])  # a partial packet's timer running out
        taken = firmware_read(sim, sent)
        time.sleep(0.6)
        wait_virtual(sim, taken + 0.6 - sim.virtual_time())
    finally:
        r.close()
        sim.set_speed(0)
    lines = [ln.split() for ln in sim.console.text().splitlines() if ln.startswith("DEADLINE")]
    assert ["DEADLINE", "allocation"] not in lines, sim.console.text()[-2000:]
    calls, caught, pending, canary = (int(x) for x in lines[-1][1:])
    assert canary == 2, "heap_lock() must catch an allocation in this VM"
    assert caught == 0 and pending >= 20 and calls >= pending
