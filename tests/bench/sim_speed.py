"""Benchmark: how fast the simulated board runs the real firmware, and what it costs.

Prints simulated seconds per wall second for a day at a steady load, the VM's and the
host's CPU time, the bus round trips, and the firmware's heap (measured in the VM over the
console, with the meter's objects alive): after a first boot, after a day, and after a
boot from the EEPROM; gc.mem_free() and the largest free block (the largest bytearray that
can be allocated, found by bisection), beside the Pico's (host_tools/sim/board.py).
Run: .venv/bin/python tests/bench/sim_speed.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from host_tools.sim import SimBoard
from host_tools.sim.board import PICO_FREE_AFTER_BOOT

MPREMOTE = Path(sys.executable).parent / "mpremote"
HEAP = """
import gc
gc.collect()
f, a = gc.mem_free(), gc.mem_alloc()
lo, hi = 0, f
while hi - lo > 16:
    mid = (lo + hi) // 2
    try:
        b = bytearray(mid)
        del b
        lo = mid
    except MemoryError:
        hi = mid
    gc.collect()
print('HEAP', a, f, lo, m.polls)
"""


def heap(board: SimBoard) -> tuple[int, int, int, int] | None:
    """(in use, free, largest free block, polls) in the board's VM, or None."""
    out = subprocess.run([str(MPREMOTE), "connect", board.console_port, "resume", "exec", HEAP],
                         capture_output=True, text=True, timeout=60).stdout.split()
    if "HEAP" not in out:
        return None
    i = out.index("HEAP")
    return int(out[i + 1]), int(out[i + 2]), int(out[i + 3]), int(out[i + 4])


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 24.0
    t0 = time.monotonic()
    with SimBoard(seed=1) as board:
        boot_wall = time.monotonic() - t0
        board.set_load(240.0, 15.0, pf=0.9)
        board.run(5.0)
        booted = heap(board)  # stops main.py: the power is cycled for the day
        board.power_off()
        board.power_on()
        pid = board.firmware_pid()
        assert pid is not None
        vm0, host0, ops0 = _cpu_seconds(pid), time.process_time(), board.hw.ops
        t = time.monotonic()
        board.run(hours * 3600)
        wall = time.monotonic() - t
        vm, host, ops = _cpu_seconds(pid) - vm0, time.process_time() - host0, board.hw.ops - ops0
        day = heap(board)
        board.power_off()
        board.power_on()
        board.run(5.0)
        restored = heap(board)
    print(f"board boot (VM start + 1 s virtual): {boot_wall:.2f} s wall")
    speed = hours * 3600 / wall
    print(f"{hours:g} h of virtual time at 3.24 kW: {wall:.2f} s wall = {speed:,.0f} simulated s per wall s")
    print(f"  CPU: MicroPython VM {vm:.2f} s, host (virtual hardware) {host:.2f} s")
    print(f"  bus ops served: {ops:,} ({ops / (hours * 3600):.1f} per simulated second)")
    print(f"  firmware heap (VM -X heapsize={board.heap_kb}K; the Pico: {PICO_FREE_AFTER_BOOT:,} B free after boot, "
          f"largest free block 30.6 KB):")
    figures = (("after a first boot", booted), (f"after {hours:g} h", day), ("after a boot from the EEPROM", restored))
    for what, h in figures:
        if h is None:
            print(f"    {what}: the console did not answer")
            continue
        alloc, free, largest, polls = h
        print(f"    {what} ({polls:,} polls): {alloc:,} B in use, {free:,} B free, largest free block {largest:,} B")
    if booted is not None and booted[1] > PICO_FREE_AFTER_BOOT:
        print("  FAILED: more free heap after boot than the Pico has: the simulated board is kinder")


if __name__ == "__main__":
    main()
