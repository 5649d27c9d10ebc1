"""Benchmark: what demand, time of use, the load profile and the event log cost (issue 5).

Prints the RAM each billing module takes when imported (the unix VM, a 64-bit build: a
32-bit board takes about half), the firmware's heap with the meter alive before and after
the reading code (logread.py) is loaded, the VM's CPU time for a simulated day with and
without a boundary's work, and the EEPROM page writes billing makes in a day per region
with the lifetime of the busiest page. Run: .venv/bin/python tests/bench/billing.py [hours]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sim"))

from billing_rpc import MeterRPC  # noqa: E402
from test_storage_image import C  # noqa: E402

from host_tools.sim import SimBoard  # noqa: E402

BIN = Path(sys.executable).parent
MODULES = ("timekeeping", "demand", "tou", "events", "loadprofile", "billing", "powerup", "logread")
ENDURANCE = 1_000_000


def import_ram() -> list[tuple[str, int]]:
    """Bytes of heap each module takes when imported (its dependencies imported first)."""
    with tempfile.TemporaryDirectory() as tmp:
        for src in (REPO / "firmware").glob("*.py"):
            if src.name != "main.py":
                subprocess.run([str(BIN / "mpy-cross"), "-o", f"{tmp}/{src.stem}.mpy", str(src)], check=True)
        script = (
            "import gc, sys\n"
            f"sys.path.insert(0, {tmp!r})\n"
            "for n in ('status', 'config', 'records', 'eeprom', 'metrology', 'storage'):\n"
            "    __import__(n)\n"
            f"for n in {MODULES!r}:\n"
            "    gc.collect(); a = gc.mem_alloc(); __import__(n); gc.collect()\n"
            "    print(n, gc.mem_alloc() - a)\n"
        )
        out = subprocess.run(
            [str(BIN / "micropython"), "-X", "heapsize=1M", "-c", script], capture_output=True, text=True
        )
    return [(name, int(size)) for name, size in (line.split() for line in out.stdout.splitlines())]


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 24.0
    print("RAM taken by each module's import (64-bit unix VM):")
    total = 0
    for name, size in import_ram():
        total += size if name not in ("powerup", "logread") else 0
        print(
            f"  {name:<12} {size:>7,} B"
            + (
                "  (loaded at boot and on a configuration change, then dropped)"
                if name == "powerup"
                else "  (loaded at the first log read)"
                if name == "logread"
                else ""
            )
        )
    print(f"  resident after boot: {total:,} B")

    with tempfile.TemporaryDirectory() as tmp, SimBoard(tmp, seed=1, ideal=True, boot=False, heap_kb=400) as board:
        meter = MeterRPC(board)
        board.set_load(240.0, 10.0)
        board.power_on()
        heap = "import gc\ngc.collect()\nresult = gc.mem_alloc()"
        before = meter.call(heap)
        meter.call("result = m.events.read(0) is not None and m.load_profile.read(0)")
        after = meter.call(heap)
        print(
            f"firmware heap in use with the meter alive (test main.py included): {before:,} B; "
            f"after the first log reads: {after:,} B"
        )
        wear0 = list(board.hw.eeprom.page_writes)
        pid = board.firmware_pid()
        assert pid is not None
        cpu0 = _cpu_seconds(pid)
        board.run(hours * 3600)
        cpu = _cpu_seconds(pid) - cpu0
        saves, blocks = meter.get("m.billing.saves", "m.load_profile.log.ring.count()")
        page = board.hw.eeprom.page
        wear = [b - a for a, b in zip(wear0, board.hw.eeprom.page_writes, strict=True)]
    print(
        f"{hours:g} h at 2.4 kW, 15-minute demand and load profile: VM CPU {cpu:.2f} s "
        f"(the whole firmware; tests/bench/sim_speed.py has the figure without load changes)"
    )
    print(f"  state records written: {saves:,}; load-profile blocks in the ring: {blocks}")
    for name in ("STATE", "EVENT_LOG", "LOAD_PROFILE"):
        start, length = C[name + "_START"], C[name + "_LENGTH"]
        pages = wear[start // page : (start + length) // page]
        per_day = sum(pages) * 24 / hours
        per_page = per_day / len(pages)  # each ring writes its slots in rotation
        years = ENDURANCE / (per_page * 365.25) if per_page else float("inf")
        print(
            f"  {name:<12} {per_day:>6.0f} page writes a day over {len(pages)} pages in rotation: "
            f"{per_page:.2f} per page a day, {years:,.0f} years to 1,000,000 cycles"
        )


if __name__ == "__main__":
    main()
