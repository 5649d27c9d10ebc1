"""A host-side ANSI C12.18 client for the optical port (over pyserial, real or pseudo-terminal).

    with Client.open("/dev/ttyUSB0") as c:
        std, ver, rev = c.identify()

Every wait has a per-read timeout and an overall deadline; a silent meter gives
`NoAnswer`, a refused request gives `ServiceError` with the response code.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import serial

STX, ACK, NAK = 0xEE, 0x06, 0x15
TOGGLE = 0x20
RESPONSE_CODES = {
    0x00: "ok", 0x01: "err", 0x02: "sns", 0x03: "isc", 0x04: "onp", 0x05: "iar",
    0x06: "bsy", 0x07: "dnr", 0x08: "dlk", 0x09: "rno", 0x0A: "isss",
}  # fmt: skip


def crc16(data: bytes) -> int:
    """CRC-16/X-25 as C12.18 uses it (sent low byte first)."""
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0x8408 if crc & 1 else crc >> 1
    return crc ^ 0xFFFF


def packet(data: bytes, toggle: bool = False, identity: int = 0, ctrl: int = 0, seq: int = 0) -> bytes:
    head = bytes([STX, identity, ctrl | (TOGGLE if toggle else 0), seq]) + len(data).to_bytes(2, "big")
    crc = crc16(head + data)
    return head + data + bytes([crc & 0xFF, crc >> 8])


class C1218Error(Exception):
    """Base of the optical-port errors."""


class NoAnswer(C1218Error):
    pass


class ServiceError(C1218Error):
    def __init__(self, code: int, service: str) -> None:
        self.code = code
        name = RESPONSE_CODES.get(code, f"0x{code:02x}")
        super().__init__(f"the meter answered {name} to {service}")


@dataclass
class Timeouts:
    ack: float = 2.0  # for the ACK of a packet
    response: float = 2.0  # for the response packet
    char: float = 0.5  # between characters of a packet


class Client:
    def __init__(self, port: serial.Serial, timeouts: Timeouts | None = None) -> None:
        self.port = port
        self.t = timeouts or Timeouts()
        self._toggle = False

    @classmethod
    def open(cls, path: str, baud: int = 9600, timeouts: Timeouts | None = None) -> Client:
        return cls(serial.Serial(path, baud, timeout=0.05), timeouts)

    def close(self) -> None:
        self.port.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_byte(self, deadline: float) -> int:
        while time.monotonic() < deadline:
            b = self.port.read(1)
            if b:
                return b[0]
        raise NoAnswer("no answer from the meter on the optical port")

    def request(self, data: bytes, service: str = "request", retries: int = 3) -> bytes:
        """Send one request packet, wait for its ACK and the response; return the response data."""
        pkt = packet(data, self._toggle)
        for _ in range(retries):
            self.port.reset_input_buffer()
            self.port.write(pkt)
            try:
                b = self._read_byte(time.monotonic() + self.t.ack)
            except NoAnswer:
                continue
            if b == ACK:
                break
        else:
            raise NoAnswer(f"no ACK from the meter for {service}")
        self._toggle = not self._toggle
        resp = self._read_packet(time.monotonic() + self.t.response)
        self.port.write(bytes([ACK]))
        if not resp or resp[0] != 0:
            raise ServiceError(resp[0] if resp else 0x01, service)
        return resp

    def _read_packet(self, deadline: float) -> bytes:
        while self._read_byte(deadline) != STX:
            pass
        head = bytes([STX]) + bytes(self._read_byte(time.monotonic() + self.t.char) for _ in range(5))
        length = int.from_bytes(head[4:6], "big")
        rest = bytes(self._read_byte(time.monotonic() + self.t.char) for _ in range(length + 2))
        data, crc = rest[:length], rest[length:]
        if crc16(head + data) != crc[0] | crc[1] << 8:
            self.port.write(bytes([NAK]))
            raise C1218Error("bad CRC in the meter's response")
        return data

    def identify(self) -> tuple[int, int, int]:
        resp = self.request(b"\x20", "identify")
        return resp[1], resp[2], resp[3]

    def terminate(self) -> None:
        self.request(b"\x21", "terminate")
