"""The optical port's C12.18 link layer on the simulated board, byte for byte: CRC,
ACK/NAK, toggle-bit retransmissions, multi-packet messages, negotiated packet size and
baud rate, the channel and character timeouts, the wake-up byte and the optical echo.

The client is host_tools.c1218 (what a utility's tool would be); raw bytes go through
the same pseudo-terminal where a test must send what no well-behaved client sends."""

from __future__ import annotations

import time

import pytest
import serial

from host_tools.c1218 import (
    ACK,
    FIRST,
    MULTI,
    NAK,
    STX,
    TABLES,
    TOGGLE,
    Client,
    ServiceError,
    checksum,
    crc16,
    packet,
    parse,
)
from host_tools.repo import firmware_module

T = TABLES
L = firmware_module("c1218")
LOGON = b"\x50\x00\x07" + b"linktest  "


class Raw:
    """The optical port without a client's manners: write bytes, collect what comes back."""

    def __init__(self, path: str) -> None:
        self.port = serial.Serial(path, 9600, timeout=0.02)
        self.toggle = False

    def close(self) -> None:
        self.port.close()

    def send(self, data: bytes) -> None:
        self.port.write(data)

    def collect(self, quiet: float = 0.15, limit: float = 3.0) -> bytes:
        """Everything the meter sends until it has been quiet for `quiet` seconds."""
        out = bytearray()
        end = time.monotonic() + limit
        last = time.monotonic()
        while time.monotonic() < end:
            chunk = self.port.read(512)
            if chunk:
                out += chunk
                last = time.monotonic()
            elif time.monotonic() - last > quiet:
                break
        return bytes(out)

    def request(self, data: bytes, ack: bool = True) -> list:
        """Send a request packet (next toggle); return the meter's reaction as tokens."""
        self.send(packet(data, self.toggle))
        self.toggle = not self.toggle
        got = tokens(self.collect())
        if ack and got and isinstance(got[-1], tuple):
            self.send(bytes([ACK]))
        return got


def tokens(data: bytes) -> list:
    """The meter's output as 'ACK', 'NAK' and (ctrl, seq, payload) packets (CRC checked)."""
    out: list = []
    i = 0
    while i < len(data):
        b = data[i]
        if b == ACK:
            out.append("ACK")
            i += 1
        elif b == NAK:
            out.append("NAK")
            i += 1
        elif b == STX and i + 6 <= len(data):
            n = int.from_bytes(data[i + 4 : i + 6], "big")
            pkt = data[i : i + 8 + n]
            assert len(pkt) == 8 + n, f"a truncated packet from the meter: {data[i:].hex()}"
            crc = crc16(pkt[:-2])
            assert pkt[-2:] == bytes([crc & 0xFF, crc >> 8]), "a packet from the meter with a bad CRC"
            out.append((pkt[2], pkt[3], pkt[6:-2]))
            i += 8 + n
        else:
            raise AssertionError(f"unexpected byte {b:#04x} from the meter in {data.hex()}")
    return out


def mt0(client: Client) -> dict:
    return parse(T.MT0, client.read(T.MFG + 0))


@pytest.fixture
def raw(sim):
    r = Raw(sim.optical_port)
    yield r
    r.close()


def test_crc_matches_the_reference_vectors():
    vectors = [
        (b"123456789", 0x906E),
        (bytes.fromhex("EE000000000120"), 0x1013),
        (bytes.fromhex("EE002000000120"), 0x7082),
        (bytes.fromhex("EE000000000100"), 0x3111),
        (bytes.fromhex("EE00000000033000 00".replace(" ", "")), 0x1CDC),
    ]
    for data, want in vectors:
        assert L.crc16(data, len(data)) == want  # the firmware's table-driven CRC
        assert crc16(data) == want  # the host client's
    assert checksum(b"\x01\x02\x03") == 0xFA and checksum(b"AB") == 0x7D


def test_identify_answers_with_an_ack_then_the_response(raw):
    got = raw.request(b"\x20")
    assert got == ["ACK", (0x00, 0, b"\x00\x00\x01\x00\x00")]


def test_wake_up_byte_and_noise_before_a_packet_are_ignored(raw):
    raw.send(b"\x55\x55\x00\xff\x13\x37")
    assert raw.collect() == b""
    assert raw.request(b"\x20")[0] == "ACK"


def test_bad_crc_gets_a_nak_and_the_retry_is_answered(raw):
    good = packet(b"\x20")
    raw.send(good[:-1] + bytes([good[-1] ^ 0x40]))
    assert tokens(raw.collect()) == ["NAK"]
    raw.send(good)
    got = tokens(raw.collect())
    assert got[0] == "ACK" and got[1][2][0] == 0


def test_a_length_beyond_the_negotiated_packet_is_naked_at_once(raw):
    # 64-byte packets before negotiation: at most 56 data bytes; the NAK comes after the header
    raw.send(bytes([STX, 0, 0, 0, 0, 57]))
    assert tokens(raw.collect()) == ["NAK"]
    raw.send(bytes([STX, 0, 0, 0, 0xFF, 0xFF]))
    assert tokens(raw.collect()) == ["NAK"]
    assert raw.request(b"\x20")[0] == "ACK", "the receiver hunts for the next packet after a NAK"


def test_a_partial_packet_is_dropped_after_the_character_timeout(sim, raw):
    full = packet(b"\x20")
    raw.send(full[:5])
    assert raw.collect() == b""
    sim.run(1.0)  # more than 0.5 s without a byte: the meter forgets the partial packet
    raw.send(full)
    got = tokens(raw.collect())
    assert got[0] == "ACK", "the retransmission after the timeout is taken whole, not NAKed"


def test_a_slow_drip_within_the_character_timeout_is_one_packet(sim, raw):
    for b in packet(b"\x20"):
        raw.send(bytes([b]))
        sim.run(0.3)  # 0.3 s between characters: inside the 0.5 s limit
    got = tokens(raw.collect())
    assert got[0] == "ACK" and got[1][2][:1] == b"\x00"


def test_a_retransmission_is_acked_and_answered_again_but_not_executed_twice(sim, raw):
    for data in (b"\x20", b"\x60\x00\x80\x04", LOGON, b"\x51" + bytes(20)):  # blank password: master
        assert raw.request(data)[1][2][:1] == b"\x00"
    st7 = (7).to_bytes(2, "little") + b"\x01"  # clear standard status flags, sequence 1
    write = b"\x40\x00\x07" + len(st7).to_bytes(2, "big") + st7 + bytes([checksum(st7)])
    pkt = packet(write, raw.toggle)
    raw.send(pkt)
    first = tokens(raw.collect())
    raw.send(pkt)  # the client missed the answer: same toggle bit, same packet
    again = tokens(raw.collect())
    raw.send(bytes([ACK]))
    assert first[0] == "ACK" and again[0] == "ACK"
    assert first[1][2] == again[1][2] == b"\x00"
    raw.toggle = not raw.toggle
    read = b"\x30\x08\x00"  # MT0
    got = raw.request(read)
    counters = parse(T.MT0, got[1][2][3:-1])
    assert counters["PROCEDURES_RUN"] == 1, "the retransmitted write ran the procedure once"


def test_a_nak_from_the_client_makes_the_meter_send_the_packet_again(raw):
    got = raw.request(b"\x20", ack=False)
    raw.send(bytes([NAK]))
    again = tokens(raw.collect())
    assert again == [got[1]], "the same packet, same toggle bit"
    raw.send(bytes([ACK]))
    assert raw.collect() == b""


def test_a_response_larger_than_a_packet_is_a_multi_packet_message(sim, raw):
    sim.set_load(240.0, 20.0)
    sim.run(600)
    for data in (b"\x20", b"\x60\x00\x40\x08", LOGON, b"\x51" + bytes(20)):
        raw.request(data)
    raw.send(packet(b"\x30\x00\x17", raw.toggle))  # ST23: 196 bytes, 56 per packet
    raw.toggle = not raw.toggle
    out = tokens(raw.collect())
    assert out[0] == "ACK" and len(out) == 2, "one packet, then the meter waits for its ACK"
    packets = [out[1]]
    while packets[-1][1]:
        raw.send(bytes([ACK]))
        nxt = tokens(raw.collect())
        assert len(nxt) == 1
        packets.append(nxt[0])
    raw.send(bytes([ACK]))
    ctrls = [p[0] for p in packets]
    assert [p[1] for p in packets] == [3, 2, 1, 0], "seq counts the packets still to come"
    assert ctrls[0] & (MULTI | FIRST) == MULTI | FIRST
    assert all(c & (MULTI | FIRST) == MULTI for c in ctrls[1:])
    toggles = [c & TOGGLE for c in ctrls]
    assert all(a != b for a, b in zip(toggles, toggles[1:], strict=False)), "every new packet flips the toggle bit"
    assert all(len(p[2]) <= 56 for p in packets)
    data = b"".join(p[2] for p in packets)
    assert data[0] == 0 and int.from_bytes(data[1:3], "big") == 196 and len(data) == 200
    assert checksum(data[3:-1]) == data[-1]
    assert int.from_bytes(data[4:10], "little") == pytest.approx(800, rel=0.025), "ST23 total delivered Wh"


def test_a_read_larger_than_the_negotiated_message_is_refused_and_partial_reads_work(sim):
    with Client.open(sim.optical_port) as c, c.session(password="", packet_size=64, nbr_packets=1):
        with pytest.raises(ServiceError) as info:
            c.read(23)  # 200 response bytes do not fit one 64-byte packet
        assert info.value.name == "onp"
        parts = c.read_all(23, 196)
    with Client.open(sim.optical_port) as c, c.session(password="", packet_size=64, nbr_packets=4):
        assert c.read(23)[:19] == parts[:19]


def test_negotiation_answers_what_the_meter_takes(raw):
    raw.request(b"\x20")
    got = raw.request(b"\x60\x04\x00\x02")  # 1024-byte packets asked: the meter takes at most 256
    assert got[1][2] == b"\x00\x01\x00\x02\x06"
    raw.request(LOGON)
    assert raw.request(b"\x60\x00\x40\x01")[1][2] == b"\x0a", "negotiate belongs before logon (isss)"


def test_a_large_request_goes_out_as_a_multi_packet_message(sim):
    from host_tools.repo import firmware_module as fm

    config = fm("config")
    items = bytes([1, 2, 3, 1] * 8)
    settings = bytes([config.SCROLL_S, 0x81, 12, config.SCROLL_MIN_S, 0x81, 5, config.DISPLAY_ITEMS, 32]) + items
    with Client.open(sim.optical_port) as c, c.session(password="", packet_size=48, nbr_packets=8):
        c.write(T.MFG + 1, settings)  # a 46-byte request in packets of 40 data bytes
        blob = c.read(T.MFG + 1)
    assert bytes([config.SCROLL_S, 0x81, 12]) in blob
    assert bytes([config.DISPLAY_ITEMS, 32]) + items in blob


def heard_at(data: bytes, sent_baud: int, uart_baud: int) -> bytes:
    """What a UART at uart_baud makes of 8N1 bytes sent back to back at sent_baud."""
    bits = []
    for b in data:
        bits += [0] + [(b >> i) & 1 for i in range(8)] + [1]
    total = len(bits) / sent_baud

    def level(t: float) -> int:
        k = int(t * sent_baud)
        return bits[k] if k < len(bits) else 1

    out = bytearray()
    t = 0.0
    step = 1.0 / (uart_baud * 16)
    while t < total:
        if level(t) == 0:
            v = 0
            for i in range(8):
                v |= level(t + (1.5 + i) / uart_baud) << i
            out.append(v)
            t += 9.5 / uart_baud
            while t < total and level(t) == 0:
                t += step
        t += step
    return bytes(out)


def test_the_baud_rate_switches_after_the_ack_and_the_link_goes_on(sim, raw):
    hw = sim.hw
    raw.request(b"\x20")
    got = raw.request(b"\x61\x01\x00\x04\x08", ack=False)  # 256 x 4, 19200 baud
    assert got[1][2] == b"\x00\x01\x00\x04\x08"
    time.sleep(0.2)
    assert hw.optical_baud == 9600, "the response goes out at the old rate"
    raw.send(bytes([ACK]))
    time.sleep(0.2)
    assert hw.optical_baud == 19200, "the switch comes with the ACK"
    raw.port.baudrate = 19200
    assert raw.request(LOGON)[1][2] == b"\x00"
    assert raw.request(b"\x30\x00\x01")[1][2][3:7] == b"OMTR"
    assert raw.request(b"\x21")[1][2] == b"\x00"
    time.sleep(0.2)
    assert hw.optical_baud == 9600, "back to 9600 when the session ends"


def test_a_client_that_asked_for_more_but_stayed_at_9600_is_followed_back(sim):
    hw = sim.hw
    with Client.open(sim.optical_port) as c:
        c.follow_baud = False
        c.identify()
        assert c.negotiate(256, 4, baud=19200)[2] == 19200
        time.sleep(0.2)
        assert hw.optical_baud == 19200
        # the client's next request, sent at 9600, as the meter's UART at 19200 hears it
        logon = packet(b"\x50\x00\x01" + b"stayer    ", True)
        c.port.write(heard_at(logon, 9600, 19200))
        time.sleep(0.3)
        assert hw.optical_baud == 9600, "garbage at the new rate: the meter went back to 9600"
        sim.run(1.0)  # the client waits for its ACK in vain, then sends again
        c.logon(user_id=1, user="stayer")
        assert c.read(1)[:4] == b"OMTR"
        assert mt0(c)["LINK_FALLBACKS"] == 1


def test_silence_ends_the_session_and_wait_keeps_it(sim):
    """About 13 s of real time: a run() that takes the board past a timer of the client's
    silence waits until the client has been silent that long in real time (a real client
    is never outrun: tests/sim/test_optical_realtime.py), so each expiry shown here costs
    its length: the 6 s channel timeout and a 7 s Wait (the shortest above 6 s)."""
    with Client.open(sim.optical_port) as c:
        c.identify()
        c.negotiate(128, 4)
        c.logon()
        sim.run(5.0)
        c.read(1)  # 5 s of silence: still in session
        sim.run(7.0)  # 7 s: the session is over, the defaults are back
        with pytest.raises(ServiceError) as info:
            c.read(1)
        assert info.value.name == "isss"
        c.packet_size, c.nbr_packets = 64, 1
        c.identify()
        c.logon()
        c.wait(30)
        sim.run(25.0)
        c.read(1)  # the Wait kept the session through 25 s of silence
        c.wait(7)
        sim.run(8.0)
        with pytest.raises(ServiceError):
            c.read(1)


def test_the_meters_own_echo_is_skipped(sim):
    """An optical head that echoes: every byte the meter sends comes straight back into
    its receiver, before the client answers. The meter learns it and skips the echo."""

    class EchoingPort:
        def __init__(self, port: serial.Serial) -> None:
            self.port = port
            self.echoed = 0

        def read(self, n: int) -> bytes:
            data = self.port.read(n)
            if data:
                self.port.write(data)  # the head's reflection reaches the meter first
                self.echoed += len(data)
            return data

        def write(self, data: bytes) -> int:
            return self.port.write(data)

        def reset_input_buffer(self) -> None:
            self.port.reset_input_buffer()

        @property
        def baudrate(self) -> int:
            return self.port.baudrate

        def close(self) -> None:
            self.port.close()

    sim.set_load(240.0, 10.0)
    sim.run(600)
    head = EchoingPort(serial.Serial(sim.optical_port, 9600, timeout=0.02))
    with Client(head) as c, c.session(password="", packet_size=64, nbr_packets=8):
        st23 = c.read(23)  # a multi-packet answer, an echo after every packet
        c.procedure(7)
        counters = mt0(c)
        assert c.read(1)[:4] == b"OMTR"
    assert head.echoed > 300
    assert int.from_bytes(st23[1:7], "little") > 0
    assert counters["PROCEDURES_RUN"] == 1
    assert counters["LINK_NAKS"] == 0 and counters["LINK_RETRANSMITS"] == 0 and counters["PORT_FAULTS"] == 0
    assert c.retries == 0


def test_an_echoed_response_packet_is_not_taken_for_a_request(raw):
    got = raw.request(b"\x20", ack=False)
    ctrl, seq, data = got[1]
    raw.send(bytes([ACK]))
    assert raw.collect() == b""
    crc_pkt = bytes([STX, 0, ctrl, seq]) + len(data).to_bytes(2, "big") + data
    crc = crc16(crc_pkt)
    raw.send(crc_pkt + bytes([crc & 0xFF, crc >> 8]))  # the meter's own last packet, echoed late
    assert raw.collect() == b"", "no ACK, no answer: it is the meter's own packet"
