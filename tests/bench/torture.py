"""Benchmark: power-cut torture of the register storage on the simulated board.

Cuts the power again and again while the real firmware meters a load, at 60 Hz and 50 Hz
in turn: at random instants (of the boot too), right after every byte of a register-record
write (the memory address bytes included; after the last one the write cycle has started
and the cut tears the page), in the middle of a write cycle, and after the line fails with
the sag warning (ADE7953 SAG, raised by the chip after its detection delay): at a random
instant, with the warning landing just as one of the next page writes starts its cycle or
as one of the next page reads starts (the line having failed one worst-case detection delay
before), each with the hold-up from the line failing that covers the detection, a write
cycle in flight and the warning's own (tests/sim/holdup.py); with one write cycle less,
too little for both; or with the warning's own save cut short at every byte. After each cut
the EEPROM image is decoded on the host (tests/sim/test_storage_image.py) and judged against
the source's exact energy: a valid record, never backwards, never more than the truth, and
the energy lost by this cut within the bound (zero after a sag warning with that hold-up;
with a write cycle less and a write cycle in flight, the energy since the poll that started
it, under 0.1 s; the save threshold plus one poll without). Every `check_every` cuts the
firmware itself is asked, over the console, what it restored.

    .venv/bin/python tests/bench/torture.py [cuts=10000] [seed=1] [workers=CPUs, at least 2]

tests/sim/test_storage_torture.py runs the same engine with 1,000 cuts in the suite.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sim"))

import holdup  # noqa: E402
import test_storage_image as image  # noqa: E402

from host_tools.sim import SimBoard  # noqa: E402
from host_tools.sim.board import DEFAULT_HEAP_KB  # noqa: E402

VOLTS = 240.0
LINE_HZ = (60.0, 50.0)  # cut i meters at LINE_HZ[(i // 2) % 2]: both directions at both
BOOT_S = 0.5  # the firmware restores and brings its chips up with no load applied
RECORD_WRITE_BYTES = 2 + image.delta_size()  # memory address + a delta record (one page), at most
POLL_S = 1.0
ZERO_WH = 0.002  # "zero loss": 2 mWh of float and chip-fraction noise on a period's energy
ZERO_REL = 1e-6
HEAP_KB = DEFAULT_HEAP_KB

# scenario, weight
PLAN = (
    ("instant", 2),  # no warning, a random instant (anywhere: sleeping, polling, writing)
    ("sag", 3),  # the line fails at a random instant; the hold-up for every instant
    ("byte", 3),  # no warning, after byte n of the next register write (n = 0 .. all)
    ("sag-byte", 2),  # the line fails, and the warning's own save is cut after byte n
    ("sag-write", 2),  # the warning as the k-th next page write starts its cycle; the same hold-up
    ("sag-read", 1),  # the warning as the k-th next page read starts (a read-back); the same
    ("sag-write-short", 1),  # as sag-write with a write cycle less: the warning's own delta is cut short
    ("mid-cycle", 1),  # no warning, halfway through the next write cycle
    ("boot", 1),  # no warning, a random instant of the boot (restore, chip start, repairs)
)
WARNED = ("sag", "sag-write", "sag-read")  # scenarios where the hold-up covers the save: zero loss


def hold_up_ms(hz: float, scenario: str = "sag") -> float:
    """From the line failing: the worst detection at hz, a write cycle in flight and the
    warning's own (holdup.py); one write cycle less for sag-write-short."""
    return holdup.hold_up_ms(hz, cycles=1 if scenario == "sag-write-short" else 2)


# With a write cycle less and a cycle in flight, the registers as of the poll that started it stand: every
# record written from a poll has the registers of that poll on the chip before it
# (storage.registers_first, and a delta before a base). A poll's writes take well under 0.1 s.
SINCE_POLL_S = 0.1


@dataclass
class Stats:
    cuts: int = 0
    survived: int = 0
    failures: list[str] = field(default_factory=list)
    max_loss_warned_wh: float = 0.0
    max_loss_short_wh: float = 0.0
    max_loss_short_s: float = 0.0  # the same as seconds of the load's energy
    max_loss_unwarned_wh: float = 0.0
    max_loss_share_of_bound: float = 0.0
    by_scenario: dict[str, int] = field(default_factory=dict)
    torn_pages: int = 0
    firmware_checks: int = 0
    virtual_s: float = 0.0
    wall_s: float = 0.0

    def merge(self, other: Stats) -> None:
        self.cuts += other.cuts
        self.survived += other.survived
        self.failures += other.failures
        self.max_loss_warned_wh = max(self.max_loss_warned_wh, other.max_loss_warned_wh)
        self.max_loss_short_wh = max(self.max_loss_short_wh, other.max_loss_short_wh)
        self.max_loss_short_s = max(self.max_loss_short_s, other.max_loss_short_s)
        self.max_loss_unwarned_wh = max(self.max_loss_unwarned_wh, other.max_loss_unwarned_wh)
        self.max_loss_share_of_bound = max(self.max_loss_share_of_bound, other.max_loss_share_of_bound)
        for k, v in other.by_scenario.items():
            self.by_scenario[k] = self.by_scenario.get(k, 0) + v
        self.torn_pages += other.torn_pages
        self.firmware_checks += other.firmware_checks
        self.virtual_s += other.virtual_s


def unwarned_bound_wh(watts: float, save_wh: float) -> float:
    """Energy a cut without warning may lose (firmware/README.md, save policy): what
    accumulated since the last record (under save_wh, or under SAVE_MS of energy) plus
    the poll in progress, with one more poll of slack for the bus time of each poll."""
    per_s = abs(watts) / 3600.0
    return min(save_wh, per_s * image.C["SAVE_MS"] / 1000.0) + per_s * 2 * POLL_S


def firmware_registers(board: SimBoard) -> dict[str, int]:
    """Ask the running firmware for its registers (this stops main.py, as Ctrl-C does)."""
    mpremote = Path(sys.executable).parent / "mpremote"
    expr = "print(*[getattr(m.energy, f) for f in m.energy.FIELDS])"
    out = subprocess.run(
        [str(mpremote), "connect", board.console_port, "resume", "exec", expr],
        capture_output=True,
        text=True,
        timeout=30,
    ).stdout.split()
    return dict(zip(image.FIELDS, map(int, out[-len(image.FIELDS) :]), strict=True))


class Torture:
    """One board, cut `cuts` times; check() raises nothing: failures are collected."""

    def __init__(self, board: SimBoard, seed: int, check_every: int = 0) -> None:
        self.board = board
        self.rng = random.Random(seed)
        self.check_every = check_every
        self.save_wh = image.save_wh(board.hw.eeprom.size, board.hw.eeprom.page)
        self.stats = Stats()
        self.prev = None  # (registers, truth) after the previous cut
        self.byte_n = {"byte": 0, "sag-byte": 0}
        self.write_bytes = RECORD_WRITE_BYTES
        weights = [w for _, w in PLAN]
        self._scenarios = [name for name, _ in PLAN]
        self._weights = weights

    def _power_on(self, hz: float = LINE_HZ[0]) -> None:
        b = self.board
        b.set_load(VOLTS, 0.0, hz=hz)
        b.power_on(boot_seconds=BOOT_S)

    def start(self) -> None:
        """First boot, then a minute at no load and a sag: the first delta shows the
        length of a register write (its extra bytes depend on the firmware's extra)."""
        self._power_on()
        self.board.run(1.0)
        self.board.set_load(VOLTS, 1.0)
        self.board.run(61.0)
        self.board.power_off(sag_ms=hold_up_ms(LINE_HZ[0]))
        img = self.board.hw.eeprom.dump()
        self.prev = (image.newest_registers(img), self.board.true_energy_wh())
        if self.prev[0] is None or not image.deltas(img):
            self.stats.failures.append("the first minute wrote no register record")
            return
        self.write_bytes = 2 + image.OVERHEAD + len(image.deltas(img)[0][3])

    def cycle(self, i: int) -> None:
        b, rng, st = self.board, self.rng, self.stats
        if self.check_every and i % self.check_every == 0:
            self._check_firmware()
        torn_before = len(b.hw.eeprom.torn_pages)
        scenario = rng.choices(self._scenarios, self._weights)[0]
        hw = b.hw
        hz = LINE_HZ[(i // 2) % 2]
        if scenario == "boot":
            b.set_load(VOLTS, 0.0, hz=hz)
            b.power_on(boot_seconds=0)
            with hw.cv:
                hw.cut_at_us = hw.vt_us + int(rng.uniform(0.0, 0.3) * 1e6)
                hw.cv.notify_all()
            b.run(BOOT_S)
            st.torn_pages += len(hw.eeprom.torn_pages) - torn_before
            if hw.powered:
                b.power_off()
            self._judge(i, scenario, 0.0)
            return
        self._power_on(hz)
        sign = 1 if i % 2 else -1  # both directions, alternately
        if scenario in ("byte", "sag-byte", "sag-write", "sag-read", "sag-write-short"):
            amps = rng.uniform(120.0, 250.0)  # a save comes within the run below
        else:
            amps = rng.uniform(2.0, 250.0)
        watts = VOLTS * amps
        b.set_load(VOLTS, sign * amps, hz=hz)
        if scenario == "instant":
            t = rng.uniform(0.0, 75.0)
            with hw.cv:
                hw.cut_at_us = hw.vt_us + int(t * 1e6)
                hw.cv.notify_all()
            b.run(t + 1.0)
        elif scenario == "sag":
            b.run(rng.uniform(0.5, 75.0))
            b.power_off(sag_ms=hold_up_ms(hz))
        elif scenario == "byte":
            n = self.byte_n["byte"] % (self.write_bytes + 1)
            self.byte_n["byte"] += 1
            b.power_off(after_i2c_bytes=n)
            b.run(70.0)
        elif scenario in ("sag-write", "sag-write-short"):
            b.power_off(sag_ms=hold_up_ms(hz, scenario), sag_at_write=rng.randint(1, 2))
            b.run(150.0)
        elif scenario == "sag-read":
            b.power_off(sag_ms=hold_up_ms(hz), sag_at_read=rng.randint(1, 2))
            b.run(150.0)
        elif scenario == "sag-byte":
            n = self.byte_n["sag-byte"] % (self.write_bytes + 1)
            self.byte_n["sag-byte"] += 1
            b.run(rng.uniform(1.5, 40.0))
            b.power_off(sag_ms=100.0, after_i2c_bytes=n)
        else:
            b.power_off(during_write=True)
            b.run(70.0)
        if hw.powered:
            st.failures.append(f"cut {i} ({scenario}): the cut never came (no register write?)")
            b.power_off()
        st.torn_pages += len(hw.eeprom.torn_pages) - torn_before
        self._judge(i, scenario, watts)

    def _judge(self, i: int, scenario: str, watts: float) -> None:
        st = self.stats
        st.cuts += 1
        st.by_scenario[scenario] = st.by_scenario.get(scenario, 0) + 1
        regs = image.newest_registers(self.board.hw.eeprom.dump())
        truth = self.board.true_energy_wh()
        prev_regs, prev_truth = self.prev
        bad = []
        if regs is None:
            bad.append("no valid register record")
        else:
            for d in ("delivered", "received"):
                res = regs.fields[f"{d}_res"]
                if not 0 <= res < image.LSB_PER_WH or regs.fields[f"{d}_wh"] < 0:
                    bad.append(f"{d}: invalid value {regs.fields[f'{d}_wh']} + {res}")
                now, before = regs.wh(d), prev_regs.wh(d)
                if now < before:
                    bad.append(f"{d} went backwards: {before} -> {now}")
                flowed = truth[d] - prev_truth[d]
                loss = flowed - (now - before)
                zero = ZERO_WH + ZERO_REL * flowed
                if loss < -zero:
                    bad.append(f"{d} counted {-loss:.4f} Wh more than flowed ({flowed:.4f} Wh)")
                if scenario == "sag-write-short":
                    st.max_loss_short_wh = max(st.max_loss_short_wh, loss)
                    st.max_loss_short_s = max(st.max_loss_short_s, loss * 3600 / watts)
                    bound = watts * SINCE_POLL_S / 3600 + zero
                    if loss > bound:
                        bad.append(f"{d}: {loss:.4f} Wh lost, over {SINCE_POLL_S} s of energy ({bound:.4f} Wh)")
                elif scenario in WARNED:
                    st.max_loss_warned_wh = max(st.max_loss_warned_wh, loss)
                    if loss > zero:
                        bad.append(f"{d}: {loss:.4f} Wh lost despite the warning")
                else:
                    st.max_loss_unwarned_wh = max(st.max_loss_unwarned_wh, loss)
                    bound = unwarned_bound_wh(watts, self.save_wh) + zero
                    st.max_loss_share_of_bound = max(st.max_loss_share_of_bound, loss / bound)
                    if loss > bound:
                        bad.append(f"{d}: {loss:.4f} Wh lost, over the bound {bound:.4f} Wh")
        if bad:
            st.failures.append(f"cut {i} ({scenario}, {watts:.0f} W): " + "; ".join(bad))
            if regs is None:
                regs = prev_regs
        else:
            st.survived += 1
        self.prev = (regs, truth)

    def _check_firmware(self) -> None:
        """Power on at no load: the firmware restored exactly the record the host decoder
        calls newest. (Asking stops main.py; the power goes off again after.)"""
        b = self.board
        expected = self.prev[0].fields
        self._power_on()
        got = firmware_registers(b)
        self.stats.firmware_checks += 1
        if got != expected:
            self.stats.failures.append(f"the firmware restored {got}, the newest record holds {expected}")
        b.power_off()
        if image.newest_registers(b.hw.eeprom.dump()).fields != expected:
            self.stats.failures.append("an idle power cycle changed the registers")


def run_chunk(args: tuple[int, int, int]) -> Stats:
    cuts, seed, check_every = args
    t0 = time.monotonic()
    # heap: room for the console's REPL beside the meter (the firmware checks); the
    # firmware's own heap budget is not what this measures
    with SimBoard(seed=seed, ideal=True, boot=False, heap_kb=HEAP_KB) as board:
        torture = Torture(board, seed, check_every)
        torture.start()
        for i in range(1, cuts + 1):
            torture.cycle(i)
        torture.stats.virtual_s = board.virtual_time()
    torture.stats.wall_s = time.monotonic() - t0
    return torture.stats


def run(cuts: int, seed: int = 1, workers: int = 1, check_every: int = 0) -> Stats:
    """`cuts` cuts over `workers` boards (processes), seeds seed, seed + 1, ..."""
    share = [cuts // workers + (k < cuts % workers) for k in range(workers)]
    total = Stats()
    t0 = time.monotonic()
    if workers == 1:
        total.merge(run_chunk((cuts, seed, check_every)))
    else:
        with ProcessPoolExecutor(workers) as pool:
            for st in pool.map(run_chunk, [(n, seed + k, check_every) for k, n in enumerate(share)]):
                total.merge(st)
    total.wall_s = time.monotonic() - t0
    return total


def report(st: Stats, save_wh: float) -> str:
    lines = [
        f"power cuts: {st.cuts:,}, survived (every check passed): {st.survived:,}",
        "  by scenario: " + ", ".join(f"{k} {v}" for k, v in sorted(st.by_scenario.items())),
        f"  EEPROM pages torn by the cuts: {st.torn_pages:,}; firmware restores checked over the console: "
        f"{st.firmware_checks}",
        f"  max energy lost per cut with the sag warning (hold-up from the line failing: "
        f"{hold_up_ms(60.0):.1f} ms at 60 Hz, {hold_up_ms(50.0):.1f} ms at 50 Hz): "
        f"{st.max_loss_warned_wh * 1000:.3f} mWh",
        f"  max energy lost per cut with the warning as a write cycle starts and a write cycle less "
        f"({hold_up_ms(60.0, 'sag-write-short'):.1f} / {hold_up_ms(50.0, 'sag-write-short'):.1f} ms): "
        f"{st.max_loss_short_wh * 1000:.1f} mWh, at most {st.max_loss_short_s * 1000:.1f} ms of the "
        f"load's energy (bound: {SINCE_POLL_S * 1000:.0f} ms)",
        f"  max energy lost per cut without warning: {st.max_loss_unwarned_wh:.1f} Wh "
        f"(bound: {save_wh:.0f} Wh or 60 s of energy, + a poll; worst share of the bound used: "
        f"{st.max_loss_share_of_bound:.0%})",
        f"  {st.virtual_s / 3600:.1f} h of virtual time in {st.wall_s:.0f} s of wall time",
    ]
    for f in st.failures[:20]:
        lines.append("  FAILED " + f)
    return "\n".join(lines)


def main() -> int:
    cuts = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    workers = int(sys.argv[3]) if len(sys.argv) > 3 else max(2, os.cpu_count() or 1)
    st = run(cuts, seed, workers, check_every=500)
    print(report(st, image.save_wh()))
    return 0 if not st.failures else 1


if __name__ == "__main__":
    sys.exit(main())
