"""A host-side reader and writer of the firmware's EEPROM layout (firmware/storage.py,
firmware/records.py), written from firmware/README.md, not from the firmware's code, and
checked against it here: what the firmware writes, this decodes; what this writes, the
firmware restores.

The torture test and the benchmarks use it to judge an EEPROM image after a power cut
without stopping the firmware:

    image = board.hw.eeprom.dump()
    regs = newest_registers(image)          # what the firmware will restore, or None
    regs.fields["delivered_wh"], regs.seq
    load_config(image, {0x01: 2})           # program ELEMENTS = 2 into a blank image

Layout constants and the register FIELDS are read from the firmware's sources, so a
change there reaches this reader; the record format itself is written out again here.
"""

from __future__ import annotations

import ast
import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import holdup
import pytest

REPO = Path(__file__).resolve().parents[2]
FIRMWARE = REPO / "firmware"

HEADER = struct.Struct("<BHBI")  # kind, payload length, flags, sequence
OVERHEAD = HEADER.size + 4  # + CRC-32

# The hold-up from the line failing that loses nothing at any instant, at the source's 60 Hz:
# the chip's worst SAG detection, a write cycle in flight, the warning's own (holdup.py).
HOLD_UP_MS = holdup.hold_up_ms(60.0)


def _consts(module: str) -> dict[str, int]:
    text = (FIRMWARE / module).read_text()
    return {m[1]: int(m[2], 0) for m in re.finditer(r"^(\w+) = const\(([0-9a-fA-Fx_]+)\)", text, re.M)}


def _fields() -> tuple[str, ...]:
    tree = ast.parse((FIRMWARE / "metrology.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "EnergyRegisters":
            for item in node.body:
                if isinstance(item, ast.Assign) and getattr(item.targets[0], "id", "") == "FIELDS":
                    return tuple(ast.literal_eval(item.value))
    raise LookupError("EnergyRegisters.FIELDS not found in firmware/metrology.py")


C = _consts("storage.py")
FIELDS = _fields()
LSB_PER_WH = _consts("metrology.py")["LSB_PER_WH"]
KIND_BASE, KIND_DELTA, KIND_CONFIG, KIND_SEAL, KIND_FORMAT = (
    C["_KIND_BASE"],
    C["_KIND_DELTA"],
    C["_KIND_CONFIG"],
    C["_KIND_SEAL"],
    C["_KIND_FORMAT"],
)
FLAG_LOST = C["_FLAG_LOST"]
BASE_SLOT = C["BASE_SLOT"]
# layout 2 (README: a layout change): the same records, the register area from 0x4000 and
# its deltas from 0x4800; the load profile was the 8 KiB at 0x2000
V2_REGISTERS, V2_DELTAS = 0x4000, 0x4800


GEN_MASK, EXTRA_SHIFT = C["_GEN_MASK"], C["_EXTRA_SHIFT"]


def parts(fields: tuple[str, ...] = FIELDS) -> list[tuple[int, int]]:
    """A delta's words: (field, its residue or -1) for each *_wh with its *_res, and each other field."""
    out = []
    for i, name in enumerate(fields):
        if name.endswith("_res") and name[:-4] + "_wh" in fields:
            continue
        res = name[:-3] + "_res" if name.endswith("_wh") else ""
        out.append((i, fields.index(res) if res in fields else -1))
    return out


def delta_size(page: int = 64) -> int:
    """A delta's slot: its words rounded up to whole pages (extra bytes fill what is left)."""
    return -(-(OVERHEAD + 4 * len(parts())) // page) * page


def delta_bytes(extra: int = 0, page: int = 64) -> int:
    """A delta record's length with `extra` bytes of extra.SIZE."""
    words = OVERHEAD + 4 * len(parts())
    return words + min(extra, delta_size(page) - words)


def slots(size: int = 32768, page: int = 64) -> int:
    """Delta slots: the records that the save policy rotates over."""
    return (size - C["DELTAS_START"]) // delta_size(page)


def save_wh(size: int = 32768, page: int = 64) -> int:
    """The energy save threshold the firmware derives for this part (README: save policy)."""
    per = C["ENDURANCE"] * slots(size, page)
    need = -(-C["MAX_POWER_W"] * C["LIFETIME_H"] // per)
    step = C["_WH_STEP"]
    return -(-need // step) * step


def record(addr: int, kind: int, seq: int, payload: bytes, flags: int = 0) -> bytes:
    body = HEADER.pack(kind, len(payload), flags, seq) + payload
    return body + struct.pack("<I", zlib.crc32(body, addr))


def parse(image: bytes, addr: int, kind: int) -> tuple[int, int, bytes] | None:
    """(seq, flags, payload) of a whole record of this kind at addr, or None."""
    if addr + OVERHEAD > len(image):
        return None
    k, n, flags, seq = HEADER.unpack_from(image, addr)
    end = addr + HEADER.size + n
    if k != kind or end + 4 > len(image):
        return None
    if zlib.crc32(image[addr:end], addr) != struct.unpack_from("<I", image, end)[0]:
        return None
    return seq, flags, bytes(image[addr + HEADER.size : end])


@dataclass
class Registers:
    seq: int  # the newest record that makes up these values (a delta's, or the base's)
    base_seq: int
    addr: int  # that record's address
    flags: int
    fields: dict[str, int]
    extra: bytes = b""

    def wh(self, direction: str = "delivered") -> float:
        """delivered / received (or any *_wh register's prefix) in Wh, with the residue."""
        return self.fields[f"{direction}_wh"] + self.fields[f"{direction}_res"] / LSB_PER_WH


def _records(image: bytes, page: int, kind: int, start: int | None = None) -> list[tuple[int, int, int, bytes]]:
    """Every whole record of a kind at a page start of the register area (from start, for
    another layout's image): (seq, addr, flags, payload)."""
    found = []
    for addr in range(C["REGISTERS_START"] if start is None else start, len(image), page):
        rec = parse(image, addr, kind)
        if rec is not None:
            found.append((rec[0], addr, rec[1], rec[2]))
    return sorted(found, reverse=True)


def _base_values(flags: int, payload: bytes) -> tuple[list[int], bytes]:
    es = flags >> EXTRA_SHIFT
    nb = (len(payload) - es) // 8
    words = list(struct.unpack(f"<{nb}q", payload[: 8 * nb]))
    return words + [0] * (len(FIELDS) - nb), payload[8 * nb :]


def _with_delta(base: list[int], flags: int, payload: bytes) -> tuple[list[int], bytes]:
    es = flags >> EXTRA_SHIFT
    k = (len(payload) - es) // 4
    vals = list(base)
    for (i, j), d in zip(parts(), struct.unpack(f"<{k}i", payload[: 4 * k]), strict=False):
        if j < 0:
            vals[i] += d
        else:
            vals[i], vals[j] = divmod(vals[i] * LSB_PER_WH + vals[j] + d, LSB_PER_WH)
    return vals, payload[4 * k :]


def history(image: bytes, page: int = 64, start: int | None = None) -> list[Registers]:
    """Every register state the image holds, newest first: element 0 is what the firmware
    restores (the newest whole base plus the newest whole delta of its generation made
    after it), then the base's older deltas, then older bases. start: where the register
    area begins, if not this layout's (layout 2: V2_REGISTERS)."""
    found = _records(image, page, KIND_BASE, start)
    if not found:
        return []
    states = []
    bases_seen: dict[int, tuple] = {}
    for seq, addr, flags, payload in found:
        bases_seen.setdefault(seq, (addr, flags, payload))  # two copies: one state
    ordered = sorted(bases_seen.items(), reverse=True)
    all_deltas = _records(image, page, KIND_DELTA, start)
    for n, (bseq, (baddr, bflags, bpayload)) in enumerate(ordered):
        vals, extra = _base_values(bflags, bpayload)
        later = ordered[n - 1][0] if n else None  # deltas after a newer base belong to it
        for seq, addr, flags, payload in all_deltas:
            if seq > bseq and (later is None or seq < later) and not (flags ^ bflags) & GEN_MASK:
                dvals, dextra = _with_delta(vals, flags, payload)
                states.append(Registers(seq, bseq, addr, flags, dict(zip(FIELDS, dvals, strict=True)), dextra))
        states.append(Registers(bseq, bseq, baddr, bflags, dict(zip(FIELDS, vals, strict=True)), extra))
    return states


def newest_registers(image: bytes, page: int = 64, start: int | None = None) -> Registers | None:
    """What the firmware restores at boot: the newest whole base plus its newest whole delta."""
    states = history(image, page, start)
    return states[0] if states else None


def bases(image: bytes, page: int = 64) -> list[tuple[int, int, int, bytes]]:
    return _records(image, page, KIND_BASE)


def deltas(image: bytes, page: int = 64) -> list[tuple[int, int, int, bytes]]:
    return _records(image, page, KIND_DELTA)


def dual(image: bytes, start: int, capacity: int, kind: int) -> bytes | None:
    """The newest whole copy's payload of a two-copy area, or None."""
    copies = [parse(image, start + k * capacity, kind) for k in (0, 1)]
    good = [c for c in copies if c is not None]
    return max(good, key=lambda c: c[0])[2] if good else None


def config_blob(settings: dict[int, int]) -> bytes:
    """config.Config.encode()'s TLV for integer settings: id, 0x80 | width, little-endian."""
    out = bytearray()
    for key in sorted(settings):
        v = settings[key]
        n = 1 if -128 <= v < 128 else 2 if -32768 <= v < 32768 else 4
        out += bytes([key, 0x80 | n]) + v.to_bytes(n, "little", signed=True)
    return bytes(out)


def load_config(eeprom, settings: dict[int, int], seq: int = 1) -> None:
    """Program a configuration into the part's memory directly (both copies)."""
    blob = config_blob(settings)
    for k in (0, 1):
        addr = C["CONFIG_START"] + k * C["CONFIG_COPY"]
        eeprom.load_bytes(addr, record(addr, KIND_CONFIG, seq, blob))


def load_base(eeprom, values: dict[str, int], seq: int = 1, pair: int = 0, fields=FIELDS, gen: int = 1) -> None:
    """Write a base record's two copies into the part's memory directly."""
    payload = struct.pack(f"<{len(fields)}q", *(values.get(f, 0) for f in fields))
    for copy in (0, 1):
        addr = C["REGISTERS_START"] + (2 * pair + copy) * BASE_SLOT
        eeprom.load_bytes(addr, record(addr, KIND_BASE, seq, payload, gen << 1))


def load_delta(eeprom, words: list[int], seq: int, gen: int = 1, slot: int = 0, page: int = 64) -> int:
    """Write a delta record (one signed word per part, on the base of generation gen)."""
    addr = C["DELTAS_START"] + slot * delta_size(page)
    payload = struct.pack(f"<{len(words)}i", *words)
    eeprom.load_bytes(addr, record(addr, KIND_DELTA, seq, payload, gen << 1))
    return addr



def near_a_base(eeprom) -> None:
    """A chip whose next periodic save writes a new base (a delta word 200 Wh short of it)."""
    words = [0] * len(parts())
    words[0] = C["_BASE_DUE"] - 200 * LSB_PER_WH
    eeprom.load_bytes(0, b"\xff" * eeprom.size)
    load_base(eeprom, {}, seq=1, gen=1)
    load_delta(eeprom, words, seq=2, gen=1, slot=0)

# --- the reader against the firmware ----------------------------------------------------

pytestmark = pytest.mark.sim_only


def test_the_firmware_s_records_decode_and_match_the_registers(sim):
    sim.set_load(240.0, 40.0)
    sim.run(130)  # two time-driven saves at 9.6 kW
    sim.power_off(sag_ms=HOLD_UP_MS)
    image = sim.hw.eeprom.dump()
    regs = newest_registers(image)
    assert regs is not None and regs.seq >= 4
    truth = sim.true_energy_wh()
    assert regs.wh("delivered") == pytest.approx(truth["delivered"], rel=0.02)  # the uncalibrated board
    assert regs.fields["received_wh"] == 0
    (base_seq, a, _, pa), (seq_b, b, _, pb) = bases(image)
    assert base_seq == seq_b == 1 and pa == pb and {a, b} == {C["REGISTERS_START"], C["REGISTERS_START"] + BASE_SLOT}
    assert regs.base_seq == 1
    found = deltas(image)
    assert [d[0] for d in found] == list(range(regs.seq, 1, -1)), "a delta per save after the first base"
    assert [d[1] for d in found][::-1] == [C["DELTAS_START"] + k * delta_size() for k in range(len(found))]
    assert delta_size() == 64, "a delta is one page: the warning's save is one write cycle"
    fmt = dual(image, C["FORMAT_START"], 128, KIND_FORMAT)
    assert fmt is not None and fmt[:2] == b"OM" and fmt[2] == C["LAYOUT_VERSION"] and fmt[3] == len(FIELDS)


def test_records_written_here_are_what_the_firmware_restores(tmp_path):
    from host_tools.sim import SimBoard

    with SimBoard(tmp_path, seed=2, ideal=True, boot=False) as board:
        values = {"delivered_wh": 123456, "delivered_res": 7890, "received_wh": 4321, "received_res": 5}
        load_base(board.hw.eeprom, values, seq=41, pair=1)
        words = [0] * len(parts())
        words[0] = 2 * LSB_PER_WH + 2111  # delivered: +2.2111 Wh, so the residue carries
        slot = slots() - 2  # the last two slots: the next delta goes to the last one
        load_delta(board.hw.eeprom, words, seq=44, gen=1, slot=slot)
        load_delta(board.hw.eeprom, [5] * len(parts()), seq=45, gen=2, slot=slot + 1)  # another base's: ignored
        board.set_load(240.0, 0.0)
        board.power_on()
        board.set_load(240.0, 10.0)
        board.run(30)
        board.power_off(sag_ms=HOLD_UP_MS)
        image = board.hw.eeprom.dump()
        regs = newest_registers(image)
        assert regs.seq == 46 and regs.base_seq == 41, "the next sequence, on the same base"
        assert regs.addr == C["DELTAS_START"] + (slot + 1) * delta_size(), "the slot after the restored delta"
        assert regs.fields["received_wh"] == 4321 and regs.fields["received_res"] == 5
        flowed = board.true_energy_wh()["delivered"]
        assert regs.wh("delivered") - 123459.0001 == pytest.approx(flowed, abs=0.01)
