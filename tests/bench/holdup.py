"""Benchmark: the hold-up a warned power cut needs, measured on the simulated board, at 50 Hz
and 60 Hz.

The line fails at t = 0; the ADE7953 model raises SAG after its own detection delay
(SAGCYC whole half cycles below SAGLVL, on its waveform's phase); the firmware reads the
chip and writes its delta; the supply must last until that delta's write cycle ends. What
is measured, first with a hold-up long enough for everything (nothing is cut short):

- the line fails at `steps` instants spread over one half cycle (after a random share of a
  poll), the firmware metering 24 kW: the detection delay (line failure to SAG) and the
  hold-up needed (line failure to the end of the warning's own write cycle);
- the warning lands as a page write starts its cycle (`power_off(sag_at_write=k)`), at
  every page of a new base (copy A, then copy B) and of the billing state record, and as
  every page of their read-backs starts (`sag_at_read=k`), at 60 kW, the line having failed
  one worst-case detection delay before (sag_at_write's meaning): the hold-up needed is that
  delay plus the time from the warning to the end of its own write cycle.

The worst of them at each frequency, rounded up to 0.1 ms and one 0.1 ms step more (the
acknowledge polls put the same case tens of microseconds apart between runs), is then
checked both ways on every write and read-back case: with it nothing is lost; with 0.2 ms
less than the worst, the warning's delta is torn and energy is lost. The tests' hold-up
from physics (tests/sim/holdup.py) must not be below it.

    .venv/bin/python tests/bench/holdup.py [steps=20]

Execution takes no virtual time on the simulated board: a real MCU adds its own between the
warning and the STOP of its record.
"""

from __future__ import annotations

import math
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sim"))

import holdup  # noqa: E402
import test_storage_image as image  # noqa: E402

from host_tools.sim import SimBoard  # noqa: E402
from host_tools.sim.ade7953 import IRQ_SAG  # noqa: E402

VOLTS = 240.0
LONG_MS = 200.0  # a hold-up that covers everything: nothing is cut short
ZERO_WH = 0.002  # float and chip-fraction noise on a period's energy
REG, DELTAS = image.C["REGISTERS_START"], image.C["DELTAS_START"]
STATE, STATE_END = image.C["STATE_START"], image.C["STATE_START"] + image.C["STATE_LENGTH"]


class Probe:
    """Times on one board: the chip's SAG latching, the server placing a warning, page writes."""

    def __init__(self, board: SimBoard) -> None:
        self.board = board
        hw = board.hw
        self.sag_us: int | None = None
        self.warn_us: int | None = None
        self.writes: list[tuple[int, int]] = []  # (virtual us at STOP, address)
        advance, sag_now, write = hw.advance_to, hw.sag_now, hw.eeprom._page_write

        def advance_to(t_us: int) -> None:
            had = hw.ade._irqa & IRQ_SAG
            advance(t_us)
            if self.sag_us is None and not had and hw.powered and hw.ade._irqa & IRQ_SAG:
                self.sag_us = hw.vt_us

        def sag_now_(hold_up_us: int) -> None:
            self.warn_us = hw.vt_us
            sag_now(hold_up_us)

        def page_write(addr: int, payload: bytes, now: float):
            self.writes.append((round(now * 1e6), addr))
            return write(addr, payload, now)

        hw.advance_to, hw.sag_now, hw.eeprom._page_write = advance_to, sag_now_, page_write
        self.cycle_us = round(hw.eeprom.write_cycle_s * 1e6)

    def reset(self) -> None:
        self.sag_us = self.warn_us = None
        self.writes.clear()

    def own_cycle_end_us(self, warned_us: int) -> int | None:
        """End of the write cycle of the first page written after the warning: its delta."""
        after = [t for t, _ in self.writes if t >= warned_us]
        return after[0] + self.cycle_us if after else None


def saved_and_flowed(board: SimBoard, before, truth0: float) -> tuple[float, float]:
    after = image.newest_registers(board.hw.eeprom.dump())
    d = "delivered"
    return after.wh(d) - before.wh(d), board.true_energy_wh()[d] - truth0


def line_failures(board: SimBoard, probe: Probe, hz: float, steps: int, rng: random.Random) -> dict:
    """The line fails at `steps` phases of a half cycle: detection and hold-up needed (ms)."""
    half_s = 1 / (2 * hz)
    det, need, loss = [], [], 0.0
    for k in range(steps):
        board.set_load(VOLTS, 0.0, hz=hz)
        board.power_on()
        before = image.newest_registers(board.hw.eeprom.dump())
        truth0 = board.true_energy_wh()["delivered"]
        board.set_load(VOLTS, 100.0, hz=hz)  # 24 kW
        board.run(5.0 + rng.uniform(0.0, 1.0) + k * half_s / steps)
        probe.reset()
        t_fail = board.hw.vt_us
        board.power_off(sag_ms=LONG_MS)
        if probe.sag_us is None:
            raise RuntimeError(f"{hz} Hz, step {k}: no SAG")
        end = probe.own_cycle_end_us(probe.sag_us)
        if end is None:
            raise RuntimeError(f"{hz} Hz, step {k}: no record after the warning")
        det.append((probe.sag_us - t_fail) / 1000)
        need.append((end - t_fail) / 1000)
        saved, flowed = saved_and_flowed(board, before, truth0)
        loss = max(loss, flowed - saved)
    return {"detection": det, "need": need, "loss": loss}



def in_cycle(board: SimBoard, probe: Probe, hz: float, hold_up_ms: float = LONG_MS) -> list[tuple[str, float, float]]:
    """The warning as each page of a new base and of the state record starts its cycle, and
    as each page of their read-backs starts: (where, hold-up needed in ms from the line
    failing, Wh lost with hold_up_ms)."""
    ee = board.hw.eeprom
    d_worst = holdup.detection_ms(hz)
    out = []
    cases = [(f"base page {k}", k, (REG, DELTAS), True) for k in range(1, 9)]
    cases += [(f"state page {k}", k, (STATE, STATE_END), False) for k in range(1, 5)]
    cases += [(f"base read-back page {k}", -k, (REG, DELTAS), True) for k in range(1, 5)]
    cases += [(f"state read-back page {k}", -k, (STATE, STATE_END), False) for k in range(1, 5)]
    for name, k, area, base in cases:
        if base:
            image.near_a_base(ee)
        board.set_load(VOLTS, 0.0, hz=hz)
        board.power_on()
        before = image.newest_registers(ee.dump())
        truth0 = board.true_energy_wh()["delivered"]
        board.set_load(VOLTS, 250.0, hz=hz)  # 60 kW
        probe.reset()
        if k > 0:
            board.power_off(sag_ms=hold_up_ms, sag_at_write=k, sag_in=area)
        else:
            board.power_off(sag_ms=hold_up_ms, sag_at_read=-k, sag_in=area)
        board.run(2 * image.save_wh() * 3600 / 60000 + 10.0 if base else 16 * 60.0)
        if board.hw.powered or probe.warn_us is None:
            raise RuntimeError(f"{hz} Hz, {name}: the warning never came")
        end = probe.own_cycle_end_us(probe.warn_us + 1)
        saved, flowed = saved_and_flowed(board, before, truth0)
        need = d_worst + (end - probe.warn_us) / 1000 if end is not None else math.inf
        out.append((name, need, flowed - saved))
    return out


def _span(values) -> str:
    return f"{min(values):.2f} to {max(values):.2f} ms"


def main() -> int:
    steps = int(sys.argv[1]) if len(sys.argv) > 1 else 20
    t0 = time.monotonic()
    rng = random.Random(1)
    failures = []
    print(f"firmware: SAGCYC {holdup.SAGCYC} half cycle(s), SAGLVL {holdup.SAG_LEVEL:.0%} of the line's peak; "
          f"EEPROM write cycle {holdup.WRITE_CYCLE_MS:.0f} ms (the model's: the 24LC256's maximum)")
    for hz in (50.0, 60.0):
        with SimBoard(seed=1, ideal=True, boot=False) as board:
            probe = Probe(board)
            line = line_failures(board, probe, hz, steps, rng)
            measured = in_cycle(board, probe, hz)
            worst_name, worst, _ = max(measured, key=lambda c: c[1])
            worst = max(worst, max(line["need"]))
            # one 0.1 ms step more: the acknowledge polls put the same case 40 us apart between runs
            figure = math.ceil(worst * 10 - 1e-6) / 10 + 0.1
            at_figure = in_cycle(board, probe, hz, hold_up_ms=figure)
            short = in_cycle(board, probe, hz, hold_up_ms=worst - 0.2)
        runs = measured + at_figure + short
        writes = [c[1] for c in runs if "read-back" not in c[0]]
        reads = [c[1] for c in runs if "read-back" in c[0]]
        det = line["detection"]
        print(f"{hz:.0f} Hz (half cycle {500 / hz:.2f} ms):")
        print(f"  the line fails at {steps} instants over a half cycle, 24 kW: detection {_span(det)} (by hand "
              f"{holdup.detection_min_ms(hz):.2f} to {holdup.detection_ms(hz):.2f}); "
              f"hold-up needed {_span(line['need'])}")
        print(f"  warning as a page write starts its cycle (8 base pages, 4 state pages), 60 kW, the line failed "
              f"{holdup.detection_ms(hz):.2f} ms before: hold-up needed {_span(writes)}")
        print(f"  warning as a page of a record's read-back starts (4 base, 4 state): hold-up needed {_span(reads)}")
        print(f"  worst: {worst:.2f} ms ({worst_name}); with {figure:.1f} ms nothing lost in {len(at_figure)} cases "
              f"(at most {max(c[2] for c in at_figure) * 1000:.3f} mWh); with {worst - 0.2:.2f} ms up to "
              f"{max(c[2] for c in short) * 1000:.1f} mWh lost")
        if max(det) > holdup.detection_ms(hz) + 0.01 or min(det) < holdup.detection_min_ms(hz) - 0.01:
            failures.append(f"{hz} Hz: a detection delay outside the hand bounds")
        if max(c[2] for c in at_figure) > ZERO_WH or line["loss"] > ZERO_WH:
            failures.append(f"{hz} Hz: energy lost with the measured hold-up")
        if max(c[2] for c in short) <= ZERO_WH:
            failures.append(f"{hz} Hz: nothing lost with 0.2 ms less: the figure is not the minimum")
        if figure > holdup.hold_up_ms(hz):
            failures.append(f"{hz} Hz: more than the tests' hold-up from physics ({holdup.hold_up_ms(hz):.2f} ms)")
    print(f"  ({time.monotonic() - t0:.0f} s of wall time)")
    for f in failures:
        print("  FAILED " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
