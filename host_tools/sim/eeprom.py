"""Model of a 24LC-series I2C EEPROM (24LC256 by default) for the simulated board.

The simulator's bus layer matches the 7-bit address and calls ``i2c_write`` /
``i2c_read`` with the current virtual time; the model answers as the part does:

* two address bytes, MSB first, masked to the size;
* a page write wraps inside its page and keeps at most ``page`` bytes (later
  bytes overwrite earlier ones in the page buffer);
* the internal write cycle starts at STOP and lasts ``write_cycle_s``: until it
  ends the part does not acknowledge its address (acknowledge polling), so a
  write or read returns False / None;
* ``power_cut(now)`` during a write cycle tears the addressed page: every byte of
  it ends up old, new or random (deterministically from ``seed``), at least one
  byte differing from what was being written.

Bytes live in the file at ``path`` (created filled with 0xFF, the erased state).
A write is put into the file as soon as its cycle starts, one page at a time, so a
killed simulator process keeps either the finished write or, after a power cut, the
torn page. Wear, ``page_writes[i]`` = write cycles of page i, lives in
``path + ".wear"`` (one little-endian uint32 per page); a cycle is counted when it
starts, so one torn by a power cut counts too (its cells were programmed).

Example::

    ee = EEPROM24("/tmp/ee.bin")                      # 24LC256
    ee.i2c_write(b"\\x01\\x00hello", stop=True, now=0.0)  # write cycle until 0.005
    ee.i2c_write(b"", stop=True, now=0.001)           # False: still busy (NAK)
    ee.i2c_write(b"\\x01\\x00", stop=False, now=0.006)   # set the pointer ...
    ee.i2c_read(5, now=0.006)                         # ... b"hello"
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass
from pathlib import Path

ERASED = 0xFF


@dataclass
class _Cycle:
    page: int  # page index
    old: bytes  # page contents before the write
    new: bytes  # page contents the write is programming
    until: float  # virtual time the cycle ends


class EEPROM24:
    def __init__(
        self,
        path: str,
        *,
        size: int = 32768,
        page: int = 64,
        address: int = 0x50,
        write_cycle_s: float = 0.005,
        seed: int = 0,
    ) -> None:
        if size <= 0 or size & (size - 1) or size > 0x10000:
            raise ValueError(f"size must be a power of two up to 65536, not {size}")
        if page <= 0 or page & (page - 1) or page > size:
            raise ValueError(f"page must be a power of two up to the size, not {page}")
        if not 0 <= address < 0x80:
            raise ValueError(f"address must be a 7-bit I2C address, not {address:#x}")
        if write_cycle_s < 0:
            raise ValueError("write_cycle_s must not be negative")
        self.path = Path(path)
        self.wear_path = Path(str(path) + ".wear")
        self.size = size
        self.page = page
        self.address = address
        self.write_cycle_s = write_cycle_s
        self.seed = seed
        self.pointer = 0  # internal address counter
        self.torn_pages: list[int] = []  # pages torn by power cuts, in order
        self._cycle: _Cycle | None = None
        self._mem = bytearray(self._load_data())
        self.page_writes: list[int] = self._load_wear()

    # --- files ------------------------------------------------------------------------

    def _load_data(self) -> bytes:
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(bytes([ERASED]) * self.size)
        data = self.path.read_bytes()
        if len(data) != self.size:
            raise ValueError(
                f"{self.path} holds {len(data)} bytes, expected {self.size} for this part"
            )
        return data

    def _load_wear(self) -> list[int]:
        pages = self.size // self.page
        if not self.wear_path.exists():
            self.wear_path.write_bytes(bytes(4 * pages))
        raw = self.wear_path.read_bytes()
        if len(raw) != 4 * pages:
            raise ValueError(f"{self.wear_path} holds {len(raw)} bytes, expected {4 * pages}")
        return list(struct.unpack(f"<{pages}I", raw))

    def _persist(self, offset: int, length: int) -> None:
        with open(self.path, "r+b") as f:
            f.seek(offset)
            f.write(self._mem[offset : offset + length])

    def _persist_wear(self, page: int) -> None:
        with open(self.wear_path, "r+b") as f:
            f.seek(4 * page)
            f.write(struct.pack("<I", self.page_writes[page] & 0xFFFFFFFF))

    # --- I2C slave --------------------------------------------------------------------

    def busy(self, now: float) -> bool:
        """True while an internal write cycle is in progress."""
        cycle = self._cycle
        if cycle is None:
            return False
        if now < cycle.until:
            return True
        self._cycle = None  # the cycle completed
        return False

    def i2c_write(self, data: bytes, stop: bool, now: float) -> bool:
        """One addressed write transaction (address byte already matched and stripped).

        Returns False (address NAK, nothing happens) while a write cycle is in progress.
        ``b""`` is an acknowledge poll. Two bytes set the address pointer (random read
        when ``stop`` is False). More bytes with ``stop`` start a page write; without
        ``stop`` (a repeated START follows) the write is aborted, as on the real part,
        and only the pointer is set.
        """
        if self.busy(now):
            return False
        if len(data) < 2:
            return True  # acknowledge poll (or a lone high address byte: ignored)
        addr = ((data[0] << 8) | data[1]) & (self.size - 1)
        payload = bytes(data[2:])
        if not payload or not stop:
            self.pointer = addr
            return True
        self._page_write(addr, payload, now)
        return True

    def _page_write(self, addr: int, payload: bytes, now: float) -> None:
        mask = self.page - 1
        base = addr & ~mask
        offset = addr & mask
        old = bytes(self._mem[base : base + self.page])
        new = bytearray(old)
        for k, b in enumerate(payload):  # wraps within the page, later bytes win
            new[(offset + k) & mask] = b
        self._mem[base : base + self.page] = new
        index = base // self.page
        self.page_writes[index] += 1
        self._cycle = _Cycle(index, old, bytes(new), now + self.write_cycle_s)
        self.pointer = base + ((offset + len(payload)) & mask)
        self._persist(base, self.page)
        self._persist_wear(index)

    def i2c_read(self, n: int, now: float) -> bytes | None:
        """Sequential read of n bytes from the pointer (wraps at the end); None = NAK."""
        if n < 0:
            raise ValueError("n must not be negative")
        if self.busy(now):
            return None
        out = bytearray()
        p = self.pointer
        while len(out) < n:
            take = min(n - len(out), self.size - p)
            out += self._mem[p : p + take]
            p = (p + take) % self.size
        self.pointer = p
        return bytes(out)

    # --- power ------------------------------------------------------------------------

    def power_cut(self, now: float) -> bool:
        """Supply lost at ``now``; True if a write cycle in progress tore its page.

        Afterwards the part is idle again (as after power-up): not busy, pointer 0.
        """
        cycle = self._cycle if self.busy(now) else None
        if cycle is not None:
            self._tear(cycle)
        self._cycle = None
        self.pointer = 0
        return cycle is not None

    def _tear(self, cycle: _Cycle) -> None:
        rng = random.Random(f"{self.seed}/{cycle.page}/{self.page_writes[cycle.page]}")
        result = bytearray(self.page)
        for i in range(self.page):
            pick = rng.randrange(3)
            if pick == 0:
                result[i] = cycle.old[i]
            elif pick == 1:
                result[i] = cycle.new[i]
            else:
                result[i] = rng.randrange(256)
        if bytes(result) == cycle.new:
            i = rng.randrange(self.page)
            result[i] = cycle.new[i] ^ (1 << rng.randrange(8))
        base = cycle.page * self.page
        self._mem[base : base + self.page] = result
        self.torn_pages.append(cycle.page)
        self._persist(base, self.page)

    # --- tests and fault injection ------------------------------------------------------

    def dump(self) -> bytes:
        """The whole memory as it is now."""
        return bytes(self._mem)

    def load_bytes(self, offset: int, data: bytes) -> None:
        """Overwrite memory directly (no write cycle, no wear), and the file with it."""
        if offset < 0 or offset + len(data) > self.size:
            raise ValueError(f"{len(data)} bytes at {offset:#x} do not fit in {self.size} bytes")
        self._mem[offset : offset + len(data)] = data
        self._persist(offset, len(data))

    def flip_bit(self, offset: int, bit: int) -> None:
        """Flip one bit (fault injection)."""
        self.load_bytes(offset, bytes([self._mem[offset] ^ (1 << bit)]))


__all__ = ["EEPROM24", "ERASED"]
