"""Benchmark: EEPROM wear at the worst-case save rate, and the lifetime it implies.

The worst case of the save policy (firmware/README.md) is the most energy the front end
can register: both current channels at full scale (250 A rms) at the voltage channel's
full scale (353.6 V rms), 176.8 kW into the chip, in both directions (the load reverses
every 10 minutes, so delivered and received both advance and net stays near zero). The
firmware runs that on the simulated board, configured for Form 2S (ELEMENTS = 2) through
its stored configuration. A 2S meter registers half the channels' sum (88.4 kW, as a 1S
meter at full scale does), so this runs the policy, sized for MAX_POWER_W = 176.8 kW, at
half the rate it is sized for (figures measured before issue 16 ran it at the full
rate), for `hours` of virtual time (24 by default, about a minute of
wall time); the EEPROM model counts every page's write cycles. The year's figures are
the measured ones scaled by 8766 h / `hours`: extrapolated, because the whole year would
take about six hours of wall time, and linear, because the rotation spreads the records
evenly over the slots (the printed spread shows it).

    .venv/bin/python tests/bench/wear.py [hours=24]
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "sim"))

import holdup  # noqa: E402
import test_storage_image as image  # noqa: E402

from host_tools.sim import SimBoard  # noqa: E402

FS_VOLTS = 0.5 / 2**0.5 * 1000  # 353.6 V rms: 0.5 V peak at the pins, a 1000:1 divider
FS_AMPS = 250.0
REVERSE_S = 600.0
HOURS_PER_YEAR = 8766.0
ENDURANCE = image.C["ENDURANCE"]
ELEMENTS = 0x01  # config id (firmware/config.py)


def main() -> int:
    hours = float(sys.argv[1]) if len(sys.argv) > 1 else 24.0
    t0 = time.monotonic()
    with SimBoard(seed=1, ideal=True, boot=False) as board:
        ee = board.hw.eeprom
        image.load_config(ee, {ELEMENTS: 2})
        board.set_load(FS_VOLTS, 0.0, channel="A")
        board.set_load(FS_VOLTS, 0.0, channel="B")
        board.power_on()
        start_wear = list(ee.page_writes)
        start_recs = image.newest_registers(ee.dump())
        sign, left = 1.0, hours * 3600.0
        while left > 0:
            board.set_load(FS_VOLTS, sign * FS_AMPS, channel="A")
            board.set_load(FS_VOLTS, sign * FS_AMPS, channel="B")
            step = min(REVERSE_S, left)
            board.run(step)
            left -= step
            sign = -sign
        board.power_off(sag_ms=holdup.hold_up_ms(60.0))  # the line fails; the warning saves
        wear = [w - s for w, s in zip(ee.page_writes, start_wear, strict=True)]
        end = image.newest_registers(ee.dump())
        truth = board.true_energy_wh()
    wall = time.monotonic() - t0
    page = ee.page
    first_delta = image.C["DELTAS_START"] // page
    delta_wear = wear[first_delta : first_delta + image.slots(ee.size, page) * image.delta_size(page) // page]
    base_wear = wear[image.C["REGISTERS_START"] // page : first_delta]
    busiest = max(range(len(wear)), key=wear.__getitem__)
    saves = end.seq - start_recs.seq
    moved = sum(end.wh(d) - start_recs.wh(d) for d in ("delivered", "received"))
    scale = HOURS_PER_YEAR / hours
    per_year = wear[busiest] * scale
    save_wh = image.save_wh(ee.size, page)
    policy_years = ENDURANCE * image.slots(ee.size, page) * save_wh / (image.C["MAX_POWER_W"] * HOURS_PER_YEAR)
    print(f"{hours:g} h of virtual time at 176.8 kW into the chip (2 x {FS_AMPS:.0f} A at {FS_VOLTS:.1f} V; "
          f"2S: 88.4 kW), reversing every {REVERSE_S / 60:.0f} min, in {wall:.0f} s of wall time")
    print(f"  registered: {moved / 1000:,.1f} kWh moved (delivered + received); the source: "
          f"{(truth['delivered'] + truth['received']) / 1000:,.1f} kWh")
    print(f"  register records written: {saves:,} (one per {moved / max(saves, 1):.0f} Wh; threshold {save_wh} Wh); "
          f"delta slots: {min(delta_wear)} to {max(delta_wear)} writes each over {len(delta_wear)} pages; "
          f"base pages: up to {max(base_wear)}")
    print(f"  most-written page of the chip: #{busiest} (0x{busiest * page:04x}, {region(busiest * page)}), "
          f"{wear[busiest]:,} writes -> {per_year:,.0f} in a year (extrapolated x{scale:,.0f})")
    print(f"  implied lifetime at {ENDURANCE:,} cycles: {ENDURANCE / per_year:.1f} years "
          f"(the policy's arithmetic, a delta per {save_wh} Wh: {policy_years:.1f} years)")
    return 0 if ENDURANCE / per_year >= 40 else 1


def region(addr: int) -> str:
    """The layout region an address is in (firmware/README.md)."""
    c = image.C
    regions = [
        (c["DELTAS_START"], "register deltas"),
        (c["REGISTERS_START"], "register bases"),
        (c["LOAD_PROFILE_START"], "load profile"),
        (c["EVENT_LOG_START"], "event log"),
        (c.get("STATE_START", c["EVENT_LOG_START"]), "billing state"),
        (c["CONFIG_START"], "configuration"),
        (c["SEAL_START"], "seal"),
        (c["FORMAT_START"], "layout marker"),
    ]
    return next(name for start, name in regions if addr >= start)


if __name__ == "__main__":
    sys.exit(main())
