"""Benchmark: how fast the simulated board runs the real firmware, and what it costs.

Prints simulated seconds per wall second for a day at a steady load, the VM's and the
host's CPU time, the bus round trips, and the firmware's heap after boot (measured in the
VM over the console, with the meter's objects alive). Run: .venv/bin/python tests/bench/sim_speed.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from host_tools.sim import SimBoard


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 24.0
    t0 = time.monotonic()
    with SimBoard(seed=1) as board:
        boot_wall = time.monotonic() - t0
        board.set_load(240.0, 15.0, pf=0.9)
        pid = board.firmware_pid()
        assert pid is not None
        vm0, host0, ops0 = _cpu_seconds(pid), time.process_time(), board.hw.ops
        t = time.monotonic()
        board.run(hours * 3600)
        wall = time.monotonic() - t
        vm, host, ops = _cpu_seconds(pid) - vm0, time.process_time() - host0, board.hw.ops - ops0
        mpremote = Path(sys.executable).parent / "mpremote"
        heap = subprocess.run(
            [str(mpremote), "connect", board.console_port, "resume", "exec",
             "import gc; gc.collect(); print(gc.mem_alloc(), gc.mem_free(), m.polls)"],
            capture_output=True, text=True, timeout=30,
        ).stdout.split()
    print(f"board boot (VM start + 1 s virtual): {boot_wall:.2f} s wall")
    speed = hours * 3600 / wall
    print(f"{hours:g} h of virtual time at 3.24 kW: {wall:.2f} s wall = {speed:,.0f} simulated s per wall s")
    print(f"  CPU: MicroPython VM {vm:.2f} s, host (virtual hardware) {host:.2f} s")
    print(f"  bus ops served: {ops:,} ({ops / (hours * 3600):.1f} per simulated second)")
    if len(heap) == 3:
        alloc, free = int(heap[0]), int(heap[1])
        print(
            f"  firmware heap with the meter alive after {int(heap[2]):,} polls "
            f"(VM -X heapsize={board.heap_kb}K): {alloc:,} B in use, {free:,} B free"
        )


if __name__ == "__main__":
    main()
