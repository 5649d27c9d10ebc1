"""Benchmark: the firmware's RAM on the simulated board, and what its metering step allocates.

A week of a household's life (load steps both ways, rooftop solar at noon, a 50 Hz day,
the example configuration's TOU schedule and display list, a daily optical-port read,
three power cuts with the sag warning) runs with every metering step (Meter.poll: read the
chip, registers, save, demand, TOU, load profile, display) inside micropython.heap_lock():
any allocation there raises MemoryError, which the harness counts and prints with its
traceback. The board's boot.py (written here) imports the whole firmware first and notes
what that takes; every SAMPLE_POLLS polls it collects and samples the live data (what the
firmware holds beyond its modules), and prints the peak.

What this VM cannot show: `micropython -X heapsize=64K` with the whole firmware. The unix
port is a 64-bit build and copies every module into the GC heap: about 150 KB here for
76 KB of .mpy (a ROMFS image of it, mounted from a bytes object, still costs 84 KB of
image plus 75 KB of function, class and dict objects). On a board those objects are 32-bit
and, with the firmware frozen or in a ROMFS, the bytecode stays in flash; neither can be
built here. So the figures are the modules' cost on this VM and the firmware's live data,
the part a small heap must hold beside them (the issue's goal: a peak under 48 KB).

Run: .venv/bin/python tests/bench/heap.py [--days N] [--data-kb K ...]
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from host_tools.c1218 import TABLES, Client, parse, parse_st23  # noqa: E402
from host_tools.sim import SimBoard  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sim"))
import holdup  # noqa: E402
from accuracy import _drain  # noqa: E402  (a console nobody reads holds the board's lines back)

EXAMPLE = ROOT / "host_tools" / "examples" / "meter.toml"
WARM_POLLS = 3  # polls after each boot before the lock: the chip's first readings settle
SAMPLE_POLLS = 300  # a live-data sample (gc.collect) every 5 minutes of metering
GOAL_BYTES = 48 * 1024  # issue 9's goal for the heap's peak

# boot.py on the simulated board: MicroPython.
BOOT_PY = """
import gc, micropython, sys
import board, meter, tables, powerup, calibration, logread  # the whole firmware: its code stays, as in a board's flash
gc.collect()
_code = gc.mem_alloc()
print('HEAP code', _code, 'free', gc.mem_free())
_poll = meter.Meter.poll
_n = [0, 0, 0]  # polls, allocations caught, live-data peak
def _locked_poll(self):
    n = _n[0] = _n[0] + 1
    if n <= {warm}:
        _poll(self)
        if n == {warm}:
            gc.collect()
            print('HEAP booted', gc.mem_alloc() - _base)
            micropython.qstr_info()
        return
    micropython.heap_lock()
    try:
        if n == {warm} + 1:
            try:
                bytearray(8)
            except MemoryError:
                print('HEAP canary caught')
        _poll(self)
    except MemoryError as e:
        micropython.heap_unlock()
        _n[1] += 1
        print('HEAP allocation in a locked poll')
        sys.print_exception(e)
        return
    except BaseException:
        micropython.heap_unlock()
        raise
    micropython.heap_unlock()
    if n % {sample} == 0:
        gc.collect()
        live = gc.mem_alloc() - _base
        if live > _n[2]:
            _n[2] = live
        print('HEAP locked', n - {warm}, 'caught', _n[1], 'peak', _n[2])
meter.Meter.poll = _locked_poll
gc.collect()
micropython.qstr_info()  # the VM's interned names: a new pool for main.py's shows in the data
_base = gc.mem_alloc()  # the harness counts with the modules: what main.py adds is the firmware's
"""

_LINE = re.compile(r"HEAP (code|booted|locked|canary|allocation)\b(.*)")
_QSTR = re.compile(r"qstr pool: .*n_total_bytes=(\d+)")


@dataclass
class Figures:
    """What the board printed over the run (one boot per power-up)."""

    code: list[int] = field(default_factory=list)  # bytes of heap the firmware's code took
    booted: list[int] = field(default_factory=list)  # live data after boot and the first polls
    locked: int = 0  # locked polls (summed over boots)
    caught: int = 0  # allocations inside a locked poll
    peak: int = 0  # sampled peak of live data
    canaries: int = 0
    qstr_growth: int = 0  # bytes the VM's qstr pools grew by between the harness and boot's end
    tracebacks: list[str] = field(default_factory=list)


def figures(text: str) -> Figures:
    f = Figures()
    boot_locked = 0
    for line in text.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        kind, rest = m[1], m[2].split()
        if kind == "code":
            f.locked += boot_locked
            boot_locked = 0
            f.code.append(int(rest[0]))
        elif kind == "booted":
            f.booted.append(int(rest[0]))
        elif kind == "locked":
            boot_locked = int(rest[0])
            f.peak = max(f.peak, int(rest[4]))
        elif kind == "canary":
            f.canaries += 1
        elif kind == "allocation":
            f.caught += 1
    f.locked += boot_locked
    pools = [int(m[1]) for m in _QSTR.finditer(text)]
    if len(pools) >= 2:
        f.qstr_growth = pools[1] - pools[0]
    tb = text.split("Traceback")
    f.tracebacks = ["Traceback" + t[:600] for t in tb[1:]]
    return f


def start(seed: int = 3, extra: str = "") -> SimBoard:
    """A simulated board whose boot.py heap-locks every poll and samples the live data
    (`extra`: more MicroPython for boot.py, run last)."""
    board = SimBoard(seed=seed).start()
    threading.Thread(target=_drain, args=(board.console_port,), daemon=True).start()
    boot = BOOT_PY.format(warm=WARM_POLLS, sample=SAMPLE_POLLS) + extra
    (board.state_dir / "fs" / "boot.py").write_text(boot)
    board.power_off()
    board.power_on()
    return board


def meterctl(*args: str) -> None:
    import subprocess

    exe = str(Path(sys.executable).parent / "meterctl")
    done = subprocess.run([exe, *args], capture_output=True, text=True, timeout=120)
    if done.returncode:
        raise RuntimeError(f"meterctl {args[0]}: {done.stderr.strip() or done.stdout.strip()}")


def optical_read(board: SimBoard) -> None:
    """What a meter reader's session does: registers, clock, the last load-profile block, events."""
    with Client.open(board.optical_port) as c, c.session(password="", packet_size=256, nbr_packets=8):
        c.read(23)
        c.read(52)
        st61 = parse(TABLES.ST61, c.read(61))
        c.read(64, 0, min(1024, st61["LP_MEMORY_LEN"]))
        c.read(76, 0, 64)


# (hours, amps, pf, hz): a household day with rooftop solar; negative amps: energy received
DAY = ((6, 2.0, 1.0, 60.0), (4, 20.0, 0.9, 60.0), (4, -25.0, 0.95, 60.0), (6, 40.0, 0.85, 60.0), (4, 8.0, 1.0, 60.0))
CUT_DAYS = (1, 3, 5)  # the line fails (the hold-up for the sag warning's save), at noon; back a minute later
FIFTY_HZ_DAY = 4


def week(board: SimBoard, days: int = 7, progress=None) -> None:
    meterctl("program", "--config", str(EXAMPLE), "--port", board.optical_port)
    meterctl("set-time", "2026-06-15T00:00:00", "--port", board.optical_port)  # a Monday, summer season
    for day in range(days):
        hz = 50.0 if day == FIFTY_HZ_DAY else 60.0
        for hours, amps, pf, _ in DAY:
            board.set_load(240.0, amps, pf=pf, hz=hz)
            if amps < 0 and day in CUT_DAYS:
                board.run(hours * 1800)
                board.power_off(sag_ms=holdup.hold_up_ms(hz))
                board.run(60)
                board.power_on()
                board.run(hours * 1800 - 60)
            elif amps < 0:
                board.run(hours * 1800)
                optical_read(board)
                board.run(hours * 1800)
            else:
                board.run(hours * 3600)
        if progress:
            progress(day)


def registers(board: SimBoard) -> tuple[int, int]:
    """(delivered Wh, received Wh) as the meter reports them in ST23."""
    with Client.open(board.optical_port) as c, c.session(password="", packet_size=256, nbr_packets=8):
        st21 = parse(TABLES.ST21, c.read(21))
        sums = parse_st23(st21, c.read(23))["total"]["summations"]
    return sums[0], sums[1]


@dataclass
class Result:
    figures: Figures
    wall_s: float
    console: str
    registered: tuple[int, int]  # (delivered, received) Wh in ST23 at the end
    truth: dict[str, float]  # the source's delivered and received Wh


def run(days: int, seed: int = 3) -> Result:
    board = start(seed)
    t0 = time.monotonic()
    try:
        week(board, days)
        registered = registers(board)
        truth = board.true_energy_wh()
        time.sleep(0.3)
        text = board.console.text()
    finally:
        board.close()
    return Result(figures(text), time.monotonic() - t0, text, registered, truth)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=7)
    args = ap.parse_args()
    r = run(args.days)
    f = r.figures
    ok = not f.tracebacks and f.caught == 0 and f.peak - f.qstr_growth < GOAL_BYTES
    print(f"{args.days} simulated days ({r.wall_s:.0f} s wall), {len(f.code)} boots (power cuts: {len(CUT_DAYS)}):")
    print(f"  the modules' cost on this 64-bit VM {max(f.code):>9,} B (gc.mem_alloc() after importing them all)")
    print(f"  live data after boot                {max(f.booted):>9,} B (of which the VM's qstr pools: "
          f"{f.qstr_growth:,} B, a new pool for main.py's names)")
    print(f"  peak live data (sampled)            {f.peak:>9,} B (every {SAMPLE_POLLS} polls, after gc.collect)")
    print(f"  the firmware's, without that pool   {f.peak - f.qstr_growth:>9,} B (goal < {GOAL_BYTES // 1024} KB)")
    print(f"  heap-locked metering steps          {f.locked:>9,} ({f.caught} allocated; canary caught {f.canaries}x)")
    print(f"  delivered / received (ST23)         {r.registered[0]:,} / {r.registered[1]:,} Wh; the source "
          f"{r.truth['delivered']:,.1f} / {r.truth['received']:,.1f} Wh (an uncalibrated board)")
    print(f"  result                              {'ok' if ok else 'FAILED'}")
    for tb in f.tracebacks[:3]:
        print(tb)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
