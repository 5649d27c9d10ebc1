"""ANSI C12.18 link layer for the optical port: framing, CRC-16/X-25, ACK/NAK, toggle bit.

The receiver is a byte-at-a-time state machine with bounded work per byte, so the
meter's loop can feed it whatever the UART holds and go back to metering. Bytes that
are not part of a packet starting with 0xEE (a wake-up 0x55, the optical echo) are
dropped. A complete packet with a good CRC is ACKed and handed to `handler(data)`,
whose answer goes back as one response packet; a bad CRC is NAKed.

    link = Link(uart, handler)
    link.feed_available()      # in the main loop
"""

from micropython import const

STX = const(0xEE)
ACK = const(0x06)
NAK = const(0x15)
_TOGGLE = const(0x20)
_MAX_DATA = const(1024)
_HDR = const(6)

# response codes
OK = const(0x00)
ERR = const(0x01)
SNS = const(0x02)
ISC = const(0x03)
ONP = const(0x04)
IAR = const(0x05)
ISSS = const(0x0A)


def crc16(buf, n, crc=0xFFFF):
    """CRC-16/X-25 (reflected 0x8408, init 0xFFFF, final xor 0xFFFF) over buf[:n]."""
    for i in range(n):
        crc ^= buf[i]
        for _ in range(8):
            if crc & 1:
                crc = (crc >> 1) ^ 0x8408
            else:
                crc >>= 1
    return crc ^ 0xFFFF


class Link:
    def __init__(self, uart, handler):
        self._uart = uart
        self._handler = handler
        self._pkt = bytearray(_HDR + _MAX_DATA + 2)
        self._n = 0
        self._need = 0
        self._rx = bytearray(64)
        self._one = bytearray(1)
        self._tx = bytearray(_HDR + _MAX_DATA + 2)
        self._last_toggle = -1
        self._tx_toggle = 0
        self._last_response = 0  # length of the last response (resent on a duplicate)
        self.packets = 0
        self.naks = 0

    def feed_available(self):
        """Take what the UART holds (a bounded amount) and act on complete packets."""
        uart = self._uart
        if not uart.any():
            return
        n = uart.readinto(self._rx)
        if not n:
            return
        rx = self._rx
        for i in range(n):
            self._byte(rx[i])

    def _byte(self, b):
        pkt = self._pkt
        n = self._n
        if n == 0:
            if b != STX:
                return  # wake-up byte, echo or line noise between packets
        pkt[n] = b
        n += 1
        self._n = n
        if n == _HDR:
            length = (pkt[4] << 8) | pkt[5]
            if length > _MAX_DATA:
                self._n = 0
                self._send_byte(NAK)
                self.naks += 1
                return
            self._need = _HDR + length + 2
        elif n > _HDR and n == self._need:
            self._n = 0
            self._packet(n)

    def _packet(self, n):
        pkt = self._pkt
        crc = crc16(pkt, n - 2)
        if pkt[n - 2] != crc & 0xFF or pkt[n - 1] != crc >> 8:
            self._send_byte(NAK)
            self.naks += 1
            return
        self._send_byte(ACK)
        toggle = pkt[2] & _TOGGLE
        if toggle == self._last_toggle and self._last_response:
            self._uart.write(memoryview(self._tx)[: self._last_response])  # a retransmission
            return
        self._last_toggle = toggle
        self.packets += 1
        length = n - _HDR - 2
        tx = self._tx
        rlen = self._handler(memoryview(pkt)[_HDR : _HDR + length], memoryview(tx)[_HDR:])
        self._respond(pkt[1], rlen)

    def _respond(self, identity, rlen):
        tx = self._tx
        tx[0] = STX
        tx[1] = identity
        tx[2] = self._tx_toggle
        self._tx_toggle ^= _TOGGLE
        tx[3] = 0
        tx[4] = rlen >> 8
        tx[5] = rlen & 0xFF
        end = _HDR + rlen
        crc = crc16(tx, end)
        tx[end] = crc & 0xFF
        tx[end + 1] = crc >> 8
        self._last_response = end + 2
        self._uart.write(memoryview(tx)[: end + 2])

    def _send_byte(self, b):
        self._one[0] = b
        self._uart.write(self._one)
