"""Benchmark: optical-port throughput at 9600 baud against the wire-time minimum.

    .venv/bin/python tests/bench/optical.py             # the simulated board, paced at 9600 baud
    .venv/bin/python tests/bench/optical.py /dev/ttyUSB0   # a real meter through an optical probe

Reads ST23 (current registers) and the whole load profile (ST64) in one session at
9600 baud, with the largest packets the meter negotiates, and reports:
- efficiency: the wire time every byte exchanged needs at 10 bits a byte (8N1), in both
  directions (the IR port is half duplex), over the wall time the reads took;
- payload efficiency: the same for the table bytes alone (packet headers, CRCs, ACKs,
  requests and read-response framing are the overhead);
- the meter's turnaround: from the end of a request (or ACK) on the wire to the first
  byte of its answer.

On the simulated board the meter's output is paced at the baud rate by the pseudo-
terminal (SimBoard(optical_pacing=True)); the client here paces its own output the same
way, so both directions cost wire time. The board runs at speed 1 (virtual time flows
with the wall clock): the meter's timers (2 s ACK, 6 s channel, 0.5 s between
characters) then mean what they mean on a bench, and the board keeps metering every
second while it answers. At speed 0 the reads would work too, but the board only looks
at the port between frozen-time slices every 20 ms, which the turnaround would show.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import serial

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from host_tools.c1218 import TABLES, Client, parse  # noqa: E402

BAUD = 9600


class PacedPort:
    """A serial port on a half-duplex wire at `baud` (10 bits a byte): writes take their
    wire time, and bytes read count as on the wire from when they arrive for as long as
    their wire time (the simulated port delivers the meter's bytes in 16-byte bursts at
    the start of their time slot: the burst's last byte is really on the wire later).
    `wire_free` is when the wire is idle again: a read's true end."""

    def __init__(self, port: serial.Serial, baud: int = BAUD) -> None:
        self.port = port
        self.baud = baud
        self.sent = 0
        self.received = 0
        self.wire_free = 0.0  # when the last byte written has left the wire
        self.turnarounds: list[float] = []
        self._waiting_since: float | None = None

    @property
    def baudrate(self) -> int:
        return self.port.baudrate

    @baudrate.setter
    def baudrate(self, value: int) -> None:
        self.port.baudrate = value

    def write(self, data: bytes) -> int:
        """Byte by byte at the baud rate: the meter gets the last byte when the wire would
        deliver it (a request is at most a dozen bytes, an ACK one)."""
        bt = 10.0 / self.baud
        t = max(time.monotonic(), self.wire_free)
        for b in data:
            t += bt  # the byte has crossed the wire at t
            delay = t - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            self.port.write(bytes([b]))
        self.wire_free = t
        self.sent += len(data)
        self._waiting_since = t
        return len(data)

    def read(self, n: int) -> bytes:
        data = self.port.read(n)
        if data:
            now = time.monotonic()
            if self._waiting_since is not None:
                # from the end of what we sent to the start of the meter's first byte
                self.turnarounds.append(max(now, self.wire_free) - self._waiting_since)
                self._waiting_since = None
            start = max(now, self.wire_free)  # a burst arrives at the start of its time on the wire
            self.wire_free = start + len(data) * 10.0 / self.baud
            self.received += len(data)
        return data

    def reset_input_buffer(self) -> None:
        self.port.reset_input_buffer()

    def close(self) -> None:
        self.port.close()


def measure(path: str, password: str = "") -> dict:
    paced = PacedPort(serial.Serial(path, BAUD, timeout=0.001))
    with Client(paced) as c:
        c.identify()
        size, nbr, _ = c.negotiate(packet_size=256, nbr_packets=255)
        c.logon(user_id=1, user="bench")
        c.security(password)
        st61 = parse(TABLES.ST61, c.read(61))
        results = {}
        for name, table in (("ST23", 23), ("ST64 load profile", 64)):
            paced.turnarounds.clear()
            sent0, recv0 = paced.sent, paced.received
            t0 = time.monotonic()
            data = c.read(table)
            wall = max(time.monotonic(), paced.wire_free) - t0
            nbytes = (paced.sent - sent0) + (paced.received - recv0)
            results[name] = {
                "table_bytes": len(data),
                "wire_bytes": nbytes,
                "wall_s": wall,
                "efficiency": nbytes * 10.0 / BAUD / wall,
                "payload_efficiency": len(data) * 10.0 / BAUD / wall,
                "turnaround_ms": [t * 1000 for t in paced.turnarounds],
            }
        c.logoff()
        c.terminate()
    return {"packet_size": size, "nbr_packets": nbr, "lp_memory_len": st61["LP_MEMORY_LEN"], "reads": results}


def report(res: dict) -> None:
    print(f"negotiated {res['packet_size']}-byte packets, up to {res['nbr_packets']} per message, {BAUD} baud")
    for name, r in res["reads"].items():
        ta = sorted(r["turnaround_ms"])
        mid = ta[len(ta) // 2] if ta else float("nan")
        print(
            f"{name}: {r['table_bytes']:,} table bytes, {r['wire_bytes']:,} bytes on the wire in {r['wall_s']:.3f} s: "
            f"efficiency {100 * r['efficiency']:.1f} % of the wire-time minimum "
            f"(payload {100 * r['payload_efficiency']:.1f} %); meter turnaround median {mid:.1f} ms, "
            f"max {max(ta) if ta else float('nan'):.1f} ms over {len(ta)} answers"
        )


def main() -> int:
    if len(sys.argv) > 1:
        res = measure(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else "")
        print(f"a meter on {sys.argv[1]}")
    else:
        from host_tools.sim import SimBoard

        with SimBoard(seed=1, speed=1.0, optical_pacing=True) as board:
            board.set_load(240.0, 20.0)
            res = measure(board.optical_port)
        print("the simulated board at speed 1, its optical output paced at the baud rate")
    report(res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
