"""ANSI C12.18 link layer for the optical port: framing, CRC-16/X-25, ACK/NAK, toggle bit,
multi-packet messages, negotiated packet size and baud rate, timeouts and the optical echo.

    link = Link(board.optical, services, board)   # services: psem.Services
    link.feed_available()                          # in the meter's loop, after metering

The receiver is a byte-at-a-time state machine: each call takes at most _RX_CHUNK bytes
from the UART and each byte costs a few operations (the CRC is table driven), so the
loop goes back to metering quickly whatever arrives. The rules, in the order they apply:

- Echo: an optical port may hear its own transmission. Every byte sent is expected back
  until the first transmission of a session shows whether an echo comes: bytes that
  match what was sent are held until they stop matching (then they are real input and
  replayed) or match it all (an echo: from then on skipped byte for byte). A complete
  packet identical to the last one sent is dropped as an echo whatever was learnt.
- Outside a packet, bytes other than 0xEE are dropped (a 0x55 wake-up, noise), except an
  ACK or NAK while a response packet waits for one.
- A header whose length exceeds the negotiated packet size, or a bad CRC, gets a NAK; the
  receiver then hunts for the next 0xEE. 0.5 s without a byte drops a partial packet.
- A good packet is ACKed at once. One with the toggle bit and CRC of the last request is
  a retransmission: ACKed, its response sent again, not executed twice. A new request
  while a response waits for its ACK stands for that ACK (the client has moved on).
- A response longer than a packet goes out as a multi-packet message, a packet per ACK;
  a NAK or 2 s without an answer resends the packet (3 times, then it is given up).
- Baud rate: the switch happens when the negotiate response is ACKed. Until a good packet
  arrives at the new rate, any other input means the client stayed behind: back to 9600.
- 6 s without traffic (or what a Wait asked for) ends the session: defaults again.

The timers run on the board's clock whenever the loop comes round: on every input event,
at least every poll (meter.POLL_MS), and at the instant `deadline()` names: the loop hands
it to the board's clock (`clock.wait_until(next_poll, wake, link.deadline())`), which
wakes then, so a timer acts on time. The simulated board also uses it to keep virtual
time from reaching that instant before a real client on the port could have answered
(boards/sim/README.md, Time).
"""

import sys
import time
from array import array

try:
    from micropython import const
except ImportError:  # CPython: the host tests check the CRC and the constants

    def const(x):  # type: ignore[misc]
        return x


STX = const(0xEE)
ACK = const(0x06)
NAK = const(0x15)
_TOGGLE = const(0x20)
_MULTI = const(0x80)
_FIRST = const(0x40)
_HDR = const(6)
OVERHEAD = const(8)  # header + CRC
DEFAULT_PACKET = const(64)
MAX_PACKET = const(256)  # the largest packet size the meter negotiates
MAX_PACKETS = const(255)
DEFAULT_BAUD = const(9600)
_REQ_MAX = const(320)  # the longest multi-packet request reassembled
_RX_CHUNK = const(64)  # bytes taken from the UART per call: bounded work per loop
_ECHO_SIZE = const(288)  # expected echo: an ACK, a full packet and some NAKs
_CHAR_TIMEOUT_MS = const(500)
_ACK_TIMEOUT_MS = const(2000)
CHANNEL_TIMEOUT_MS = const(6000)
_RETRIES = const(3)
_ECHO_MARGIN_MS = const(100)
_ECHO_UNKNOWN = const(0)
_ECHO_NO = const(1)
_ECHO_YES = const(2)

# response codes (ANSI C12.18)
OK = const(0x00)
ERR = const(0x01)
SNS = const(0x02)
ISC = const(0x03)
ONP = const(0x04)
IAR = const(0x05)
BSY = const(0x06)
DNR = const(0x07)
DLK = const(0x08)
RNO = const(0x09)
ISSS = const(0x0A)


def _make_table():
    t = array("H", bytes(512))
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
        t[i] = c
    return t


_CRC = _make_table()


def crc16(buf, n, start=0):
    """CRC-16/X-25 (reflected 0x8408, init 0xFFFF, final xor 0xFFFF) over buf[start:start + n]."""
    t = _CRC
    c = 0xFFFF
    for i in range(start, start + n):
        c = (c >> 8) ^ t[(c ^ buf[i]) & 0xFF]
    return c ^ 0xFFFF


class Link:
    """The C12.18 data-link layer of the optical port (see the module docstring)."""

    def __init__(self, uart, services, board):
        self._uart = uart
        self._svc = services
        self._board = board
        self._clock = board.clock
        services.link = self
        self._pkt = bytearray(MAX_PACKET)
        self._tx = bytearray(MAX_PACKET)
        self._rx = bytearray(_RX_CHUNK)
        self._echo_q = bytearray(_ECHO_SIZE)
        self._one = bytearray(1)
        self._req = None  # multi-packet reassembly, allocated on the first such request
        self._now = self._clock.ticks_ms()
        self.baud = DEFAULT_BAUD
        self.packets = 0  # requests executed
        self.naks = 0  # packets refused (bad CRC, oversize)
        self.dropped = 0  # partial packets dropped on the character timeout
        self.retransmits = 0  # response packets sent again
        self.timeouts = 0  # sessions ended by the channel timeout
        self.fallbacks = 0  # baud switches undone (the client stayed at 9600)
        self.faults = 0  # services that raised (answered ERR)
        self._n = 0
        self._need = 0
        self._crc = 0xFFFF
        self._t_byte = self._now
        self._identity = 0
        self._chunk = 0
        self._resp_pos = 0
        self._tries = 0
        self._deadline = self._now
        self._tx_toggle = 0  # alternates with every new packet, across sessions too
        self._defaults()

    # ---- session-wide settings -----------------------------------------------------
    def _defaults(self):
        """Power-up and end-of-session state: 64-byte packets, one per message, 9600 baud."""
        self.packet_size = DEFAULT_PACKET
        self.max_packets = 1
        self._pending_baud = 0
        self._end_after = False
        self._probation = False
        self._last_toggle = -1
        self._last_crc = -1
        self._dup_resends = False
        self._resp_len = 0
        self._await = False
        self._tx_len = 0
        self._echo = _ECHO_UNKNOWN
        self._eq_head = 0
        self._eq_n = 0
        self._held = 0
        self._t_sent = self._now
        self._silence_ms = CHANNEL_TIMEOUT_MS
        self._t_traffic = self._now
        self._req_n = -1
        self._req_seq = 0
        if self.baud != DEFAULT_BAUD:
            self._set_baud(DEFAULT_BAUD)

    def _set_baud(self, baud):
        self.baud = baud
        self._board.set_optical_baud(baud)

    def negotiated(self, packet_size, max_packets, baud):
        """The Negotiate service: the packet size and count apply at once; the baud rate
        once the client has ACKed the response."""
        self.packet_size = packet_size
        self.max_packets = max_packets
        self._pending_baud = baud if baud != self.baud else 0

    def end_session(self):
        """The Terminate service: back to the defaults once its response is out."""
        self._end_after = True

    def wait(self, seconds):
        """The Wait service: keep the session through `seconds` of silence (at least 6 s)."""
        ms = seconds * 1000
        self._silence_ms = ms if ms > CHANNEL_TIMEOUT_MS else CHANNEL_TIMEOUT_MS

    def max_response(self):
        """The most response bytes the negotiated packets can carry."""
        return (self.packet_size - OVERHEAD) * self.max_packets

    def _wire_ms(self, nbytes):
        return nbytes * 10000 // self.baud + 1

    # ---- the loop's entry point ----------------------------------------------------
    def feed_available(self):
        """Run the timers, then take what the UART holds (at most _RX_CHUNK bytes)."""
        now = self._clock.ticks_ms()
        self._now = now
        diff = time.ticks_diff
        if self._n and diff(now, self._t_byte) > _CHAR_TIMEOUT_MS:
            self._n = 0  # a partial packet the client gave up on
            self.dropped += 1
        if self._held and diff(now, self._t_sent) > self._wire_ms(self._eq_n) + _ECHO_MARGIN_MS:
            self._no_echo()  # the held bytes came too late to be an echo: real input
        if self._await and diff(now, self._deadline) >= 0:
            self._resend()
        if diff(now, self._t_traffic) >= self._silence_ms and self._active():
            self.timeouts += 1
            self._svc.timeout()
            self._n = 0
            self._defaults()
        uart = self._uart
        n = uart.any()
        if not n:
            return
        if n > _RX_CHUNK:
            n = _RX_CHUNK
        n = uart.readinto(self._rx, n)
        if not n:
            return
        self._t_byte = now
        rx = self._rx
        for i in range(n):
            self._input(rx[i])

    def deadline(self):
        """The ticks_ms at which the earliest timer that runs on the client's silence fires
        (a partial packet's character timeout, the echo window, the ACK timeout and its
        resends, the channel-traffic or Wait timeout while a session is active), or None.
        Each is the first tick at which feed_available() acts on it. It allocates
        nothing (ints only; the loop calls it every turn)."""
        diff = time.ticks_diff
        add = time.ticks_add
        d = None
        if self._n:  # feed_available drops the partial packet once more than 500 ms passed
            d = add(self._t_byte, _CHAR_TIMEOUT_MS + 1)
        if self._held:
            t = add(self._t_sent, self._wire_ms(self._eq_n) + _ECHO_MARGIN_MS + 1)
            if d is None or diff(t, d) < 0:
                d = t
        if self._await:
            t = self._deadline
            if d is None or diff(t, d) < 0:
                d = t
        if self._active():
            t = add(self._t_traffic, self._silence_ms)
            if d is None or diff(t, d) < 0:
                d = t
        return d

    def _active(self):
        return (
            self._svc.state != 0
            or self._await
            or self.baud != DEFAULT_BAUD
            or self.packet_size != DEFAULT_PACKET
            or self.max_packets != 1
        )

    # ---- echo ------------------------------------------------------------------------
    def _input(self, b):
        n = self._eq_n
        if n and self._echo != _ECHO_NO:
            q = self._echo_q
            if self._echo == _ECHO_YES:
                if b == q[self._eq_head]:
                    self._eq_head = (self._eq_head + 1) % _ECHO_SIZE
                    self._eq_n = n - 1
                    return
                self._eq_n = 0  # the echo ended early: b is real input
            else:
                held = self._held
                if b == q[(self._eq_head + held) % _ECHO_SIZE]:
                    held += 1
                    self._held = held
                    if held < n:
                        return
                    if n > OVERHEAD:  # all of a packet came back: this port echoes
                        self._echo = _ECHO_YES
                        self._eq_n = 0
                        self._held = 0
                        return
                    # a lone ACK or NAK that matched proves nothing: it was input
                    held = bytes(q[(self._eq_head + i) % _ECHO_SIZE] for i in range(held))
                    self._held = 0
                    self._eq_n = 0
                    for x in held:
                        self._byte(x)
                    return
                self._no_echo()
        self._byte(b)

    def _no_echo(self):
        """The held bytes were real input after all: no echo on this port; replay them."""
        self._echo = _ECHO_NO  # from here on _write expects nothing: the queue stays as it is
        q = self._echo_q
        head = self._eq_head
        n = self._held
        self._held = 0
        self._eq_n = 0
        for i in range(n):
            self._byte(q[(head + i) % _ECHO_SIZE])

    def _write(self, buf, start, end, learn=False):
        """Send buf[start:end] and expect its echo. While the echo is unknown, what is
        expected starts with the ACK of a request (learn): a lone NAK proves nothing."""
        self._uart.write(memoryview(buf)[start:end] if start or end != len(buf) else buf)
        self._t_sent = self._now
        echo = self._echo
        if echo == _ECHO_NO:
            return
        if echo == _ECHO_UNKNOWN:
            if learn:
                self._eq_head = 0
                self._eq_n = 0
                self._held = 0
            elif not self._eq_n:
                return
        q = self._echo_q
        n = self._eq_n
        for i in range(start, end):
            if n == _ECHO_SIZE:  # more than an echo could still bring: forget the oldest
                self._eq_head = (self._eq_head + 1) % _ECHO_SIZE
                n -= 1
                if self._held > n:
                    self._held = n
            q[(self._eq_head + n) % _ECHO_SIZE] = buf[i]
            n += 1
        self._eq_n = n

    def _send_byte(self, b, learn=False):
        self._one[0] = b
        self._write(self._one, 0, 1, learn)

    # ---- receiver ------------------------------------------------------------------
    def _byte(self, b):
        n = self._n
        if n == 0:
            if b == STX:
                self._pkt[0] = b
                self._n = 1
                self._need = 0
                self._crc = 0xFF ^ _CRC[(0xFFFF ^ b) & 0xFF]
            else:
                self._stray(b)
            return
        pkt = self._pkt
        pkt[n] = b
        n += 1
        self._n = n
        if n <= _HDR:
            c = self._crc
            self._crc = (c >> 8) ^ _CRC[(c ^ b) & 0xFF]
            if n == _HDR:
                length = (pkt[4] << 8) | pkt[5]
                if length > self.packet_size - OVERHEAD:
                    self._refuse()
                else:
                    self._need = _HDR + length + 2
            return
        need = self._need
        if n <= need - 2:
            c = self._crc
            self._crc = (c >> 8) ^ _CRC[(c ^ b) & 0xFF]
        elif n == need:
            self._n = 0
            self._complete(n)

    def _stray(self, b):
        """A byte outside a packet: an ACK/NAK for the response in flight, or noise."""
        if self._await:
            if b == ACK:
                self._traffic()
                self._acked()
                return
            if b == NAK:
                self._traffic()
                self._resend()
                return
        if self._probation:
            self._fallback()

    def _refuse(self):
        self._n = 0
        self.naks += 1
        if self._probation:
            self._fallback()
        self._send_byte(NAK)

    def _fallback(self):
        """Input at the new baud rate that is no packet: the client stayed at 9600."""
        self._probation = False
        self._n = 0
        self.fallbacks += 1
        self._set_baud(DEFAULT_BAUD)

    def _traffic(self):
        self._t_traffic = self._now

    def _complete(self, n):
        pkt = self._pkt
        crc = self._crc ^ 0xFFFF
        if pkt[n - 2] != crc & 0xFF or pkt[n - 1] != crc >> 8:
            self._refuse()
            return
        if self._is_own_packet(n):
            return
        self._traffic()
        self._silence_ms = CHANNEL_TIMEOUT_MS  # a Wait lasts until the next request
        self._probation = False
        ctrl = pkt[2]
        toggle = ctrl & _TOGGLE
        if toggle == self._last_toggle and crc == self._last_crc:
            self._send_byte(ACK)  # a retransmission: ACK it, answer again, run nothing
            if self._dup_resends and self._resp_len:
                self._resp_pos = 0
                self._send_packet()
            return
        self._abandon()  # a new request stands for the ACK we were waiting for
        self._last_toggle = toggle
        self._last_crc = crc
        self._send_byte(ACK, True)
        self._identity = pkt[1]
        length = n - OVERHEAD
        if ctrl & _MULTI:
            self._dup_resends = False
            if not self._reassemble(ctrl, pkt[3], length):
                return
            n = self._req_n
            self._req_n = -1
            if n > _REQ_MAX:
                self._resp_len = self._svc.refuse(ONP)
            else:
                self._serve(self._req, 0, n)
        else:
            self._req_n = -1
            self._serve(pkt, _HDR, length)
        self._dup_resends = True
        self.packets += 1
        self._resp_pos = 0
        self._send_packet()
        self._svc.after_response()

    def _serve(self, buf, start, n):
        """Run the service; a fault in it is answered ERR, counted and printed, and the
        meter goes on metering (the port must never stop it)."""
        try:
            self._resp_len = self._svc.handle(buf, start, n)
        except Exception as exc:  # noqa: BLE001 - any fault: the loop must go on
            self.faults += 1
            sys.print_exception(exc)
            self._resp_len = self._svc.refuse(ERR)

    def _reassemble(self, ctrl, seq, length):
        """Collect a multi-packet request; True when its last packet is in."""
        if ctrl & _FIRST:
            if self._req is None:
                self._req = bytearray(_REQ_MAX)
            self._req_n = 0
        elif self._req_n < 0 or seq != self._req_seq - 1:
            self._req_n = -1  # a packet out of sequence: the message is dropped
            return False
        self._req_seq = seq
        n = self._req_n
        if n + length > _REQ_MAX:
            self._req_n = _REQ_MAX + 1  # too long: answered ONP once complete
        else:
            self._req[n : n + length] = memoryview(self._pkt)[_HDR : _HDR + length]
            self._req_n = n + length
        return seq == 0

    def _is_own_packet(self, n):
        """True if the packet just received is byte for byte the last one sent (its echo)."""
        if n != self._tx_len:
            return False
        tx = self._tx
        pkt = self._pkt
        for i in range(n - 1, -1, -1):
            if pkt[i] != tx[i]:
                return False
        return True

    # ---- transmitter ---------------------------------------------------------------
    def _send_packet(self):
        tx = self._tx
        md = self.packet_size - OVERHEAD
        total = self._resp_len
        pos = self._resp_pos
        chunk = total - pos
        if chunk > md:
            chunk = md
        npk = (total + md - 1) // md
        ctrl = self._tx_toggle
        if npk > 1:
            ctrl |= _MULTI
            if pos == 0:
                ctrl |= _FIRST
        left = npk - 1 - pos // md
        tx[0] = STX
        tx[1] = self._identity
        tx[2] = ctrl
        tx[3] = left if left < 256 else 255
        tx[4] = chunk >> 8
        tx[5] = chunk & 0xFF
        try:
            self._svc.resp_into(pos, tx, _HDR, chunk)
        except Exception as exc:  # noqa: BLE001 - as in _serve
            self.faults += 1
            sys.print_exception(exc)
            self._await = False
            return
        end = _HDR + chunk
        crc = crc16(tx, end)
        tx[end] = crc & 0xFF
        tx[end + 1] = crc >> 8
        self._chunk = chunk
        self._tx_len = end + 2
        self._tries = 0
        self._await = True
        self._transmit()

    def _transmit(self):
        n = self._tx_len
        self._write(self._tx, 0, n)
        self._deadline = time.ticks_add(self._now, _ACK_TIMEOUT_MS + self._wire_ms(n))

    def _resend(self):
        """The client NAKed the packet, or did not answer in time: send it again."""
        if self._tries >= _RETRIES:
            self._abandon()
            return
        self._tries += 1
        self.retransmits += 1
        self._transmit()

    def _acked(self):
        self._resp_pos += self._chunk
        self._tx_toggle ^= _TOGGLE
        if self._resp_pos < self._resp_len:
            self._send_packet()
            return
        self._await = False
        self._finish(True)

    def _abandon(self):
        """Stop waiting for the ACK of the packet in flight (given up, or overtaken)."""
        if self._await:
            self._await = False
            self._tx_toggle ^= _TOGGLE
            self._finish(False)

    def _finish(self, acked):
        """The response is out (ACKed) or given up: apply what waited for it."""
        if self._end_after:
            self._defaults()
            return
        baud = self._pending_baud
        self._pending_baud = 0
        if baud and acked:
            self._set_baud(baud)
            self._probation = True
            self._n = 0
