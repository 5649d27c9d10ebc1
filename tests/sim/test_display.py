"""The display list (issue 6) on the simulated board, read back segment by segment from the
HT1621 model: every item, the scroll order and timing in virtual time, the enforced minimum
scroll time, rollover, a negative net, an error interrupting the scroll, the all-segments
test and the periodic re-initialisation. Then display.py in the MicroPython VM under
heap_lock() (no allocation per refresh), and the LCD renderer for `meterctl lcd --png`.

Each board runs a custom main.py (the firmware's own modules, a few settings made after
boot, then the meter's loop), so the display list is programmed the way the optical port
will program it: through config ids.
"""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
from contextlib import contextmanager
from pathlib import Path

import pytest

from host_tools.repo import firmware_module
from host_tools.sim import SimBoard

G = firmware_module("lcd_glyphs")
ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
BIN = Path(sys.executable).parent
MICROPYTHON = BIN / "micropython"
START = dt.datetime(2026, 1, 5, tzinfo=dt.UTC)  # SimBoard's default RTC start

# Item codes (firmware/display.py declares them; these tests use the bytes a tool would send).
DELIVERED, RECEIVED, NET, MAX_DEMAND, TOU_TIER, DATE, TIME, VERSION, SEGMENTS = range(1, 10)
CUM_DEMAND, CONT_CUM_DEMAND = 10, 11

MAIN = """\
import board, config, meter, status
m = meter.Meter(board.make())
m.boot()
cfg = m.config
{setup}
m.run()
"""

# A fault the test can switch from the host: the measurement error is set while the seal
# plug is in (a test hook only; the real meter's faults come from its subsystems).
FAULT_ON_PLUG = """
_poll = m.poll
def poll():
    if m.board.seal_plug.value() == 0:
        m.status.set(status.MEASUREMENT_ERROR)
    else:
        m.status.clear(status.MEASUREMENT_ERROR)
    _poll()
m.poll = poll
"""


@contextmanager
def meter_board(tmp_path: Path, setup: str = "", **kw):
    """A simulated board (ideal analog front end, no load) running main.py with `setup`
    (MicroPython lines with `m`, `cfg`, `config`, `status` in scope) before m.run()."""
    board = SimBoard(state_dir=tmp_path, seed=1, ideal=True, boot=False, **kw).start()
    try:
        (tmp_path / "fs" / "main.py").write_text(MAIN.format(setup=textwrap.dedent(setup)))
        board.power_on()
        yield board
    finally:
        board.close()


def program(items, scroll_s=None, min_s=None, **settings) -> str:
    lines = [f"cfg.set(config.DISPLAY_ITEMS, bytes({tuple(items)!r}))"]
    if scroll_s is not None:
        lines.append(f"cfg.set(config.SCROLL_S, {scroll_s})")
    if min_s is not None:
        lines.append(f"cfg.set(config.SCROLL_MIN_S, {min_s})")
    lines += [f"cfg.set(config.{k}, {v!r})" for k, v in settings.items()]
    return "\n".join(lines) + "\n"


def sample(board: SimBoard, seconds: int, step: float = 1.0) -> list[tuple[float, str, int, int]]:
    """(virtual time, text, dots, annunciators) after each step of virtual time."""
    out = []
    for _ in range(int(seconds / step)):
        board.run(step)
        out.append((board.virtual_time(), *board.hw.lcd.display()))
    return out


def runs(shown: list[tuple[float, str, int, int]]) -> list[tuple[str, int]]:
    """Consecutive samples grouped: [(identifier, how many samples)]."""
    out: list[tuple[str, int]] = []
    for _, text, _, _ in shown:
        if out and out[-1][0] == text[:2]:
            out[-1] = (text[:2], out[-1][1] + 1)
        else:
            out.append((text[:2], 1))
    return out


ENERGY = """
m.energy.delivered_wh = 12345678   # 12345.678 kWh
m.energy.received_wh = 2345600     # 2345.6 kWh
"""
DEMAND_AND_TOU = """
class _Demand:
    max_kw_x1000 = 7250
class _Tou:
    tier = 2
    def dst_at(self, t):  # no DST rule: the LCD's date and time are standard time
        return 0
m.demand = _Demand()
m.tou = _Tou()
"""

ALL_ITEMS = (DELIVERED, RECEIVED, NET, MAX_DEMAND, TOU_TIER, DATE, TIME, VERSION, SEGMENTS)


def one_cycle(board: SimBoard) -> dict[str, tuple[str, int, int, float]]:
    """Identifier -> (text, dots, ann, virtual time) for one pass of a 1 s scroll."""
    return {text[:2]: (text, dots, ann, t) for t, text, dots, ann in sample(board, len(ALL_ITEMS))}


def test_every_item_on_the_glass(tmp_path):
    with meter_board(tmp_path, program(ALL_ITEMS, 1, 1) + ENERGY + DEMAND_AND_TOU) as board:
        board.run(1)  # the first item comes on at the first poll after boot
        seen = one_cycle(board)
        rtc_now, vt_now = board.hw.rtc_seconds(), board.virtual_time()
    assert seen["DE"][:3] == ("DE123456", G.dot_after(1), G.ANN_KWH | G.ANN_DEL)  # 12345.6 kWh
    assert seen["NG"][:3] == ("NG023456", G.dot_after(1), G.ANN_KWH | G.ANN_REC)  # 2345.6
    assert seen["NT"][:3] == ("NT100000", G.dot_after(1), G.ANN_KWH)  # 10000.078 -> 10000.0
    assert seen["DM"][:3] == ("DM  7250", G.dot_after(3), G.ANN_KW)  # 7.250 kW
    assert seen["TR"][:3] == ("TR     C", 0, G.ANN_T3)  # tier 2 = C
    assert seen["DA"][:3] == ("DA010526", 0x0A, 0)  # 01.05.26
    assert seen["VE"][:3] == ("VE   010", 0x18, 0)  # 0.1.0
    assert seen["88"][:3] == ("88888888", G.DOTS_ALL, G.ANN_ALL)
    text, dots, ann, t = seen["TI"]
    assert (dots, ann) == (0, G.ANN_COL)
    # the RTC runs on virtual time from START; the poll that drew the item came up to 1 s
    # before the sample, and the item counts seconds on the board clock from its RTC read
    assert text[2:] in {(START + dt.timedelta(seconds=s)).strftime("%H%M%S") for s in (int(t) - 1, int(t))}
    assert rtc_now == int((START - dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).total_seconds() + vt_now)


def test_tx_rx_style_with_demand_and_tier_items(tmp_path):
    items = (DELIVERED, RECEIVED, NET, MAX_DEMAND, TOU_TIER)
    with meter_board(tmp_path, program(items, 1, 1, ID_STYLE=1) + ENERGY) as board:
        board.run(1)
        seen = {text[:2]: (text, ann) for _, text, _, ann in sample(board, len(items))}
    assert seen == {
        "TX": ("TX123456", G.ANN_KWH | G.ANN_DEL),
        "RX": ("RX023456", G.ANN_KWH | G.ANN_REC),
        "NT": ("NT100000", G.ANN_KWH),
        "DM": ("DM  0000", G.ANN_KW),  # no demand yet: the energy came in before the first interval ended
        "TR": ("TR     A", G.ANN_T1),  # the default schedule: tier A all day
    }


def test_scroll_order_and_timing_in_virtual_time(tmp_path):
    order = (NET, VERSION, DELIVERED, DATE)
    with meter_board(tmp_path, program(order, 4, 2) + ENERGY) as board:
        at_boot = board.hw.lcd.display()
        shown = sample(board, 40)
    assert at_boot == ("88888888", G.DOTS_ALL, G.ANN_ALL)  # the power-up segment test
    groups = runs(shown)
    # from the first poll, the list in its programmed order, cyclically, 4 s an item
    assert groups == [(ident, 4) for ident in ("NT", "VE", "DE", "DA") * 2 + ("NT", "VE")]
    changes = [shown[i][0] for i in range(1, len(shown)) if shown[i][1][:2] != shown[i - 1][1][:2]]
    assert [round(b - a, 6) for a, b in zip(changes, changes[1:], strict=False)] == [4.0] * 8


@pytest.mark.parametrize(
    ("scroll_s", "min_s", "expected_s"),
    [
        (3, 1, 3),  # a 3 s scroll with the minimum lowered to 1 s
        (10, 10, 10),  # the default minimum
        (30, 10, 30),  # the longest
    ],
)
def test_the_scroll_time_is_the_programmed_one(tmp_path, scroll_s, min_s, expected_s):
    with meter_board(tmp_path, program((DELIVERED, RECEIVED), scroll_s, min_s)) as board:
        groups = runs(sample(board, 3 * expected_s))
    assert groups == [("DE", expected_s), ("NG", expected_s), ("DE", expected_s)]


@pytest.mark.parametrize("scroll_s", [3, 45], ids=["below the 10 s minimum", "beyond the 30 s limit"])
def test_a_scroll_time_the_rule_refuses_is_not_clamped_but_flagged(tmp_path, scroll_s):
    """Set behind the port's back (as a blob stored by older firmware would be): the meter puts
    it back to its default (10 s) and shows Er 003 after the list, rather than silently
    scrolling at some other time (issue 16)."""
    with meter_board(tmp_path, program((DELIVERED, RECEIVED), scroll_s)) as board:
        groups = runs(sample(board, 40))
    assert groups[:3] == [("DE", 10), ("NG", 10), ("Er", 10)], groups


def test_a_displayed_value_rolls_over_while_the_register_keeps_its_value(tmp_path):
    setup = program((DELIVERED,)) + "m.energy.delivered_wh = 99999990  # 99999.990 kWh\n"
    with meter_board(tmp_path, setup) as board:
        board.run(1)
        assert board.hw.lcd.display() == ("DE999999", G.dot_after(1), G.ANN_KWH | G.ANN_DEL)
        board.set_load(240.0, 20.0)  # 4.8 kW: 80 Wh a minute
        board.run(60)
        text = board.lcd_text()
        register = int(mpremote_exec(board, "print(m.energy.delivered_wh)"))
    assert text == "DE000000"  # 100000.0x kWh on a 6-digit, 1-decimal display
    assert 100_000_050 <= register <= 100_000_110, "the register keeps counting past the display"


def test_digits_and_decimals_are_programmable(tmp_path):
    setup = program((DELIVERED, RECEIVED), 1, 1, DISPLAY_DIGITS=5, DISPLAY_DECIMALS=1) + ENERGY
    with meter_board(tmp_path, setup) as board:
        board.run(1)
        seen = {text[:2]: (text, dots) for _, text, dots, _ in sample(board, 2)}
    # 5 digits, 1 of them a decimal: 12345.678 kWh rolls over to 2345.6, 2345.6 stays
    assert seen == {"DE": ("DE 23456", G.dot_after(1)), "NG": ("NG 23456", G.dot_after(1))}


def test_a_negative_net_lights_the_minus_sign(tmp_path):
    setup = program((NET,)) + (
        "m.energy.delivered_wh = 1000\n"
        "m.energy.received_wh = 3500\n"
        "m.energy.received_res = 5000  # received 3500.5 Wh: net -2500.5 Wh\n"
    )
    with meter_board(tmp_path, setup) as board:
        board.run(1)
        text, dots, ann = board.hw.lcd.display()
        board.set_load(240.0, -20.0)  # exporting 4.8 kW: 80 Wh a minute
        board.run(16 * 60)  # 1280 Wh more out
        later = board.hw.lcd.display()
    assert (text, dots) == ("NT000025", G.dot_after(1)) and ann == G.ANN_KWH | G.ANN_NEG  # -2.5 kWh
    assert later[0] == "NT000037" and later[2] & G.ANN_NEG  # -3.78 kWh


def test_an_error_interrupts_the_scroll_while_the_fault_lasts(tmp_path):
    with meter_board(tmp_path, program((DELIVERED, RECEIVED, NET)) + FAULT_ON_PLUG + ENERGY) as board:
        before = sample(board, 14)  # DE for 10 s, then NG for 4 s
        board.set_seal_plug(True)  # the fault comes
        during = sample(board, 25)
        board.set_seal_plug(False)  # and goes
        after = sample(board, 22)
    assert runs(before)[-1] == ("NG", 4)
    # from the next poll, the error code (measurement error = 2) and the alarm sign, only
    assert {(text, ann) for _, text, _, ann in during} == {("Er   002", G.ANN_ALM)}
    # then the interrupted item for a full scroll time, and the list goes on
    assert runs(after) == [("NG", 10), ("NT", 10), ("DE", 2)]
    assert after[0][1] == "NG023456" and after[0][3] == G.ANN_KWH | G.ANN_REC


def test_the_all_segments_test_lights_every_segment(tmp_path):
    with meter_board(tmp_path, program((SEGMENTS,))) as board:
        board.run(3)
        ram = board.hw.lcd.ram_bytes()
        assert board.hw.lcd.visible
    # the layout's segments (lcd_glyphs): 8 characters of 7 segments + their extra segment
    # (alarm, minus, 6 points), 8 annunciators in byte 8 and 5 (T1..T4, battery) in byte 9
    assert ram == b"\xff" * 9 + b"\x1f" + bytes(6)
    assert G.decode(ram) == ("88888888", G.DOTS_ALL, G.ANN_ALL)
    # and nothing else: a single bit beyond them decodes to no segment or annunciator
    for byte in range(9, 16):
        for bit in range(8):
            if byte == 9 and bit < 5:
                continue
            one = bytearray(16)
            one[byte] = 1 << bit
            assert G.decode(one) == (" " * 8, 0, 0)


def test_the_chip_is_reinitialised_every_minute_and_recovers_from_a_glitch(tmp_path):
    with meter_board(tmp_path, program((DELIVERED,)) + ENERGY) as board:
        board.run(2)
        lcd = board.hw.lcd
        assert lcd.text() == "DE123456"
        sys_en = lcd.commands.count(0x01)
        with board.hw.cv:
            lcd.power_on()  # a supply glitch: RAM lost, the controller off
        assert lcd.text() == ""
        board.run(60)
        assert lcd.text() == "DE123456" and lcd.display()[2] == G.ANN_KWH | G.ANN_DEL
        board.run(240)
        assert lcd.commands.count(0x01) - sys_en == 5  # once every 60 s of board clock
        assert lcd.errors == []
        assert (lcd.bias, lcd.commons, lcd.clock) == (3, 4, "RC256K")


def mpremote_exec(board: SimBoard, code: str) -> str:
    r = subprocess.run(
        [str(BIN / "mpremote"), "connect", board.console_port, "resume", "exec", code],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip()


# --- display.py in the MicroPython VM, under heap_lock() ----------------------------------

# A fake meter around the firmware's own Config, Status and EnergyRegisters, the real HT1621
# driver on pins that only keep their level, and a clock that wraps the tick counter half
# way through. Every tick runs under heap_lock(): any allocation raises MemoryError. The RAM
# image after each tick goes into a buffer allocated up front; the host decodes it.
MP_SCRIPT = r"""
import sys
sys.path.insert(0, FIRMWARE)
import micropython, time
import config, display, meter, metrology, status
from ht1621 import HT1621

class Pin:
    def __init__(self):
        self.v = 1
        self.changes = 0
    def value(self, v=None):
        if v is None:
            return self.v
        if v != self.v:
            self.v = v
            self.changes += 1

class Clock:
    def __init__(self):
        self.ms = time.ticks_add(0, -150500)  # the tick counter wraps 150 s into the run
    def ticks_ms(self):
        return self.ms

class Board:
    def __init__(self):
        self.reads = 0  # of the meter's clock, by the date and time items

class Demand:
    max_kw_x1000 = 12345
    cumulative_w = 2000
    cont_cumulative_w = 1234567  # 1234.567 kW: rolls over at 1000 kW

class Tou:
    tier = 3
    def dst_at(self, t):  # no DST rule
        return 0

class Meter:
    def __init__(self):
        self.config = config.Config()
        self.status = status.Status()
        self.energy = metrology.EnergyRegisters()
        self.clock = Clock()
        self.board = Board()

    @property
    def clock_time(self):  # 2026-12-31 23:59:50, seconds since 2000
        self.board.reads += 1
        return 9861 * 86400 + 23 * 3600 + 59 * 60 + 50

m = Meter()
m.demand = Demand()
m.tou = Tou()
cfg = m.config
cfg.set(config.DISPLAY_ITEMS, bytes((1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 200)))  # 0, 200: unknown
cfg.set(config.SCROLL_S, 1)
cfg.set(config.SCROLL_MIN_S, 1)
pins = (Pin(), Pin(), Pin())
lcd = HT1621(*pins)
d = display.Display(lcd, m)
d.boot()

N = TICKS
snap = bytearray(16 * N)
e = m.energy
i = 0
micropython.heap_lock()
try:
    while i < N:
        m.clock.ms = time.ticks_add(m.clock.ms, 1000)
        e.delivered_wh += 37
        e.received_res += 4999
        if e.received_res >= 10000:
            e.received_res -= 10000
            e.received_wh += 1
        if i == FAULT_FROM:
            m.status.set(status.MEASUREMENT_ERROR)
        if i == FAULT_TO:
            m.status.clear(status.MEASUREMENT_ERROR)
        d.tick(m.clock.ms)
        ram = d.ram
        for k in range(16):
            snap[16 * i + k] = ram[k]
        i += 1
    result = "ok"
except MemoryError:
    result = "ALLOC"
micropython.heap_unlock()
print("run|%s|%d|%d|%d|%s" % (result, i, d.reinits, m.board.reads, snap[: 16 * i].hex()))

# the time item alone for 15 s: it counts on from its one clock read, across midnight
cfg.set(config.DISPLAY_ITEMS, bytes((7,)))
cfg.set(config.SCROLL_S, 30)
times = bytearray(16 * 15)
micropython.heap_lock()
try:
    for i in range(15):
        m.clock.ms = time.ticks_add(m.clock.ms, 1000)
        d.tick(m.clock.ms)
        ram = d.ram
        for k in range(16):
            times[16 * i + k] = ram[k]
    result = "ok"
except MemoryError:
    result = "ALLOC"
micropython.heap_unlock()
print("time|%s|%s" % (result, times.hex()))

# non-fatal errors: the list scrolls on with the alarm sign, each error an item of its own;
# the clock error's item gives way at once when the error clears; date and time as dashes
cfg.set(config.DISPLAY_ITEMS, bytes((1, 6, 7)))
cfg.set(config.SCROLL_S, 1)
m.status.set(status.CLOCK_ERROR | status.LOW_BATTERY)
d.boot()  # the list from its first item
NF = 16
nonfatal = bytearray(16 * NF)
cleared_at = -1
micropython.heap_lock()
try:
    for i in range(NF):
        step = 1000
        if cleared_at < 0 and i > 6 and d.item == 0x105:  # "Er 005" on, a second time round
            m.status.clear(status.CLOCK_ERROR)  # a time set while its item is shown
            step = 10
            cleared_at = i
        m.clock.ms = time.ticks_add(m.clock.ms, step)
        d.tick(m.clock.ms)
        ram = d.ram
        for k in range(16):
            nonfatal[16 * i + k] = ram[k]
    result = "ok"
except MemoryError:
    result = "ALLOC"
micropython.heap_unlock()
m.status.clear(status.LOW_BATTERY)
print("nonfatal|%s|%d|%s" % (result, cleared_at, nonfatal.hex()))

# formats: (delivered Wh, residue, received Wh, residue, digits, decimals, item)
for case in FORMATS:
    dwh, dres, rwh, rres, digits, decimals, item = case
    e.delivered_wh, e.delivered_res, e.received_wh, e.received_res = dwh, dres, rwh, rres
    cfg.set(config.DISPLAY_DIGITS, digits)
    cfg.set(config.DISPLAY_DECIMALS, decimals)
    micropython.heap_lock()
    try:
        d.draw(item)
        result = "ok"
    except MemoryError:
        result = "ALLOC"
    micropython.heap_unlock()
    print("fmt|%s|%s" % (result, bytes(d.ram).hex()))

for item in (10, 11):  # cumulative and continuously cumulative demand
    micropython.heap_lock()
    try:
        d.draw(item)
        result = "ok"
    except MemoryError:
        result = "ALLOC"
    micropython.heap_unlock()
    print("cum|%s|%s" % (result, bytes(d.ram).hex()))

meter.VERSION = "1.12.3"
print("ver|%s" % bytes(display.Display(lcd, m)._version).decode())
d2 = display.Display(lcd, m)
d2.draw(8)
print("verram|%s" % bytes(d2.ram).hex())
"""

TICKS = 300
FAULT_FROM, FAULT_TO = 100, 107
FORMATS = [
    # (delivered Wh, res, received Wh, res, digits, decimals, item) -> text, dots, ann
    ((12345678, 0, 0, 0, 6, 1, DELIVERED), ("DE123456", G.dot_after(1), G.ANN_KWH | G.ANN_DEL)),
    ((12345678, 0, 0, 0, 6, 0, DELIVERED), ("DE012345", 0, G.ANN_KWH | G.ANN_DEL)),
    ((12345678, 0, 0, 0, 5, 1, DELIVERED), ("DE 23456", G.dot_after(1), G.ANN_KWH | G.ANN_DEL)),
    ((12345678, 0, 0, 0, 6, 3, DELIVERED), ("DE345678", G.dot_after(3), G.ANN_KWH | G.ANN_DEL)),
    ((12345678, 4321, 0, 0, 6, 4, DELIVERED), ("DE456784", G.dot_after(4), G.ANN_KWH | G.ANN_DEL)),
    ((12345678, 4321, 0, 0, 6, 5, DELIVERED), ("DE567843", G.dot_after(5), G.ANN_KWH | G.ANN_DEL)),
    ((12345678, 0, 0, 0, 9, 9, DELIVERED), ("DE567800", G.dot_after(5), G.ANN_KWH | G.ANN_DEL)),  # clamped
    ((999999, 0, 0, 0, 6, 0, DELIVERED), ("DE000999", 0, G.ANN_KWH | G.ANN_DEL)),
    ((999999999, 0, 0, 0, 6, 1, DELIVERED), ("DE999999", G.dot_after(1), G.ANN_KWH | G.ANN_DEL)),
    ((1000000000, 0, 0, 0, 6, 1, DELIVERED), ("DE000000", G.dot_after(1), G.ANN_KWH | G.ANN_DEL)),
    ((7, 0, 0, 0, 1, 0, DELIVERED), ("DE     0", 0, G.ANN_KWH | G.ANN_DEL)),
    ((0, 0, 1234, 0, 6, 2, RECEIVED), ("NG000123", G.dot_after(2), G.ANN_KWH | G.ANN_REC)),
    ((1000, 100, 3500, 5000, 6, 4, NET), ("NT025004", G.dot_after(4), G.ANN_KWH | G.ANN_NEG)),  # -2.50049
    ((3500, 5000, 1000, 100, 6, 4, NET), ("NT025004", G.dot_after(4), G.ANN_KWH)),
    ((1000, 0, 1000, 500, 6, 1, NET), ("NT000000", G.dot_after(1), G.ANN_KWH)),  # -0.05 Wh: no minus
    ((1000, 0, 1100, 0, 6, 1, NET), ("NT000001", G.dot_after(1), G.ANN_KWH | G.ANN_NEG)),
]


@pytest.fixture(scope="module")
def mp_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[list[str]]]:
    if not MICROPYTHON.exists():
        pytest.skip(f"no MicroPython at {MICROPYTHON}")
    tmp = tmp_path_factory.mktemp("mp_display")
    script = tmp / "display_heap.py"
    header = (
        f"FIRMWARE = {str(FIRMWARE)!r}\nTICKS = {TICKS}\nFAULT_FROM = {FAULT_FROM}\nFAULT_TO = {FAULT_TO}\n"
        f"FORMATS = {[case for case, _ in FORMATS]!r}\n"
    )
    script.write_text(header + MP_SCRIPT, encoding="utf-8")
    proc = subprocess.run([str(MICROPYTHON), str(script)], capture_output=True, text=True, timeout=120, cwd=tmp)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out: dict[str, list[list[str]]] = {}
    for line in proc.stdout.splitlines():
        kind, *fields = line.split("|")
        out.setdefault(kind, []).append(fields)
    return out


def test_no_allocation_per_refresh_in_micropython(mp_run):
    result, ticks, reinits, rtc_reads, snaps = mp_run["run"][0]
    assert (result, int(ticks)) == ("ok", TICKS), "Display.tick() allocated under heap_lock()"
    assert int(reinits) == TICKS // 60  # every 60 s of board clock, across the tick wrap
    # the clock is read once each time the date or the time item comes on, not every refresh
    cycles = (TICKS - (FAULT_TO - FAULT_FROM)) / 9
    assert 2 * int(cycles) <= int(rtc_reads) <= 2 * int(cycles) + 2
    shown = [G.decode(bytes.fromhex(snaps[32 * i : 32 * i + 32])) for i in range(TICKS)]
    idents = [text[:2] for text, _, _ in shown]
    cycle = ["DE", "NG", "NT", "DM", "TR", "DA", "TI", "VE", "88"]  # codes 0 and 200 skipped
    assert idents[:FAULT_FROM] == (cycle * 12)[:FAULT_FROM]
    assert set(shown[FAULT_FROM:FAULT_TO]) == {("Er   002", 0, G.ANN_ALM)}
    # after the fault: the interrupted item again, then the list goes on
    resumed = cycle.index(idents[FAULT_FROM - 1])
    assert idents[FAULT_TO:] == (cycle * 40)[resumed : resumed + TICKS - FAULT_TO]
    texts = {text[:2]: (text, dots, ann) for text, dots, ann in shown[:9]}
    assert texts["DM"] == ("DM 12345", G.dot_after(3), G.ANN_KW)  # 12.345 kW
    assert texts["TR"] == ("TR     D", 0, G.ANN_T4)
    assert texts["DA"] == ("DA123126", 0x0A, 0)
    assert texts["VE"] == ("VE   010", 0x18, 0)
    # the time item counts on the board clock from its RTC read, across midnight
    times = [text[2:] for text, _, _ in shown if text.startswith("TI")]
    assert times[:3] == ["235950", "235950", "235950"]  # a fresh read at each showing
    result, ram = mp_run["time"][0]
    assert result == "ok"
    shown = [G.decode(bytes.fromhex(ram[32 * i : 32 * i + 32])) for i in range(15)]
    # one showing of 15 s: the first refresh reads the RTC, the rest count on the board clock
    expected = [f"TI2359{s:02d}" for s in range(50, 60)] + [f"TI00000{s}" for s in range(5)]
    assert [text for text, _, _ in shown] == expected
    assert {ann for _, _, ann in shown} == {G.ANN_COL}
    net = [(text, ann) for text, _, ann in shown if text.startswith("NT")]
    assert all(ann & G.ANN_KWH for _, ann in net)


def test_non_fatal_errors_scroll_as_items_of_their_own_without_allocating(mp_run):
    result, cleared_at, ram = mp_run["nonfatal"][0]
    assert result == "ok", "a refresh with non-fatal errors allocated under heap_lock()"
    shown = [G.decode(bytes.fromhex(ram[32 * i : 32 * i + 32])) for i in range(16)]
    texts = [text if not text.startswith("DE") else "DE" for text, _, _ in shown]
    c = int(cleared_at)
    assert c > 6
    # the list, then the errors in status.NONFATAL's order, one scroll time each
    cycle = ["DE", "DA------", "TI------", "Er   005", "Er   006"]
    assert texts[c - 5 : c] == cycle[4:] + cycle[:4]
    assert all(ann & G.ANN_ALM and ann & G.ANN_BAT for _, _, ann in shown), "alarm and battery signs throughout"
    dashes = {text: (dots, ann) for text, dots, ann in shown[:c] if "--" in text}
    assert dashes["DA------"][0] == 0x0A and dashes["TI------"][1] & G.ANN_COL, "the points and colons stay"
    # the clock error cleared 10 ms into its item's showing: the next item at once, then
    # the list with a date and a time, and only the battery's error item
    assert texts[c] == "Er   006"
    after = texts[c + 1 :]
    assert "Er   005" not in after and not any("--" in t for t in after)
    assert after[:3] == ["DE", "DA123126", after[2]] and after[2].startswith("TI")


def test_energy_formats_in_micropython(mp_run):
    for (case, expected), (result, ram) in zip(FORMATS, mp_run["fmt"], strict=True):
        assert result == "ok", f"draw() allocated for {case}"
        assert G.decode(bytes.fromhex(ram)) == expected, case


def test_cumulative_demand_items_in_micropython(mp_run):
    """Items 10 and 11 (issue 16): the cumulative demands in kW with 3 decimals, kW lit,
    drawn without allocating; 1234.567 kW rolls over at 1000 kW as the display says."""
    (r1, cd), (r2, cc) = mp_run["cum"]
    assert (r1, r2) == ("ok", "ok"), "draw() allocated for a cumulative demand item"
    assert G.decode(bytes.fromhex(cd)) == ("CD  2000", G.dot_after(3), G.ANN_KW)  # 2.000 kW
    assert G.decode(bytes.fromhex(cc)) == ("CC234567", G.dot_after(3), G.ANN_KW)  # 1234.567 kW


def test_version_layout(mp_run):
    assert mp_run["ver"] == [["  1123"]]
    assert G.decode(bytes.fromhex(mp_run["verram"][0][0])) == ("VE  1123", 0x14, 0)  # "1.12.3"


# --- the renderer behind `meterctl lcd --png` ----------------------------------------------


def _luma(rgb) -> float:
    r, g, b = rgb[:3]
    return 0.299 * r + 0.587 * g + 0.114 * b


def test_render_png_draws_lit_segments_dark_and_unlit_light(tmp_path):
    from PIL import Image, ImageDraw

    from host_tools import lcd_render as R

    ram = bytearray(G.RAM_SIZE)
    G.encode_into(ram, "DE012345", G.dot_after(1), G.ANN_KWH | G.ANN_DEL | G.ANN_NEG | G.ANN_T3 | G.ANN_ALM)
    scale = 2
    path = R.render_png(bytes(ram), tmp_path / "lcd.png", scale=scale)
    img = Image.open(path).convert("RGB")
    assert img.size == (2 * (R.WIDTH + 2 * R.BORDER), 2 * (R.HEIGHT + 2 * R.BORDER))
    b = R.BORDER * scale
    glass = img.crop((b, b, b + R.WIDTH * scale, b + R.HEIGHT * scale))
    assert _luma(R.LIT) < 60 and _luma(R.UNLIT) > 150 and _luma(R.GLASS) > 150

    shapes = R.shapes()
    # one shape per RAM bit of the layout: 8 x 7 segments, 6 points, 15 annunciators
    assert len({(s.byte, s.bit) for s in shapes}) == len(shapes) == 8 * 7 + 6 + 15
    full = bytearray(G.RAM_SIZE)
    G.encode_into(full, "88888888", G.DOTS_ALL, G.ANN_ALL)
    assert all(s.lit(full) for s in shapes)

    covered = Image.new("L", glass.size, 0)
    lit_count = 0
    for shape in shapes:
        mask = Image.new("L", glass.size, 0)
        shape.draw(ImageDraw.Draw(mask), 255, scale)
        inside = _points(mask)
        assert len(inside) > 8, f"{shape.name} draws nothing"
        want = R.LIT if shape.lit(ram) else R.UNLIT
        colours = {glass.getpixel(xy) for xy in inside}
        assert colours == {want}, f"{shape.name}: {colours} where {want} was expected"
        lit_count += shape.lit(ram)
        covered.paste(255, mask=mask)
    # DE012345: d(5) E(5) 0(6) 1(2) 2(5) 3(5) 4(4) 5(5) segments, 1 point, 5 annunciators
    assert lit_count == 5 + 5 + 6 + 2 + 5 + 5 + 4 + 5 + 1 + 5
    # outside every shape the glass is bare
    bare = [glass.getpixel(xy) for xy in _points(covered, 0)][::97]
    assert bare and all(_luma(p) > 150 for p in bare)

    blank = R.render(bytes(G.RAM_SIZE), scale=1)
    inner = blank.crop((R.BORDER, R.BORDER, blank.width - R.BORDER, blank.height - R.BORDER))
    assert min(_luma(p) for p in inner.get_flattened_data()) > 150, "a blank RAM image lights nothing"
    with pytest.raises(ValueError):
        R.render(b"\x00" * 15)


def _points(mask, value: int = 255) -> list[tuple[int, int]]:
    """The (x, y) of every pixel of an "L" image that equals value."""
    w = mask.width
    return [(i % w, i // w) for i, v in enumerate(mask.tobytes()) if v == value]


# --- the error codes: declared once in status.py, documented in the README and display.py ---


def _declared_errors() -> set[tuple[int, str, str]]:
    """(code, ST3 flag, kind) from firmware/status.py's FATAL and NONFATAL (bit, code) pairs."""
    import ast

    tree = ast.parse((FIRMWARE / "status.py").read_text())
    out = set()
    for node in tree.body:
        if isinstance(node, ast.Assign) and node.targets[0].id in ("FATAL", "NONFATAL"):
            kind = "fatal" if node.targets[0].id == "FATAL" else "non-fatal"
            elts = node.value.elts
            for bit, code in zip(elts[::2], elts[1::2], strict=True):
                out.add((code.value, bit.id, kind))
    return out


def test_every_error_code_is_documented_as_status_py_declares_it():
    import re

    declared = _declared_errors()
    assert {c for c, _, _ in declared} == {1, 2, 3, 4, 5, 6}
    row = re.compile(r"^\| `Er (\d{3})` \| (\w+) \| ([\w-]+) \|", re.M)
    readme = {(int(c), flag, kind) for c, flag, kind in row.findall((ROOT / "README.md").read_text())}
    assert readme == declared, "README's LCD error table"
    line = re.compile(r"^# (\d)\s+(\w+)\s+(fatal|non-fatal)\b", re.M)
    comments = {(int(c), flag, kind) for c, flag, kind in line.findall((FIRMWARE / "display.py").read_text())}
    assert comments == declared, "display.py's comment table"
