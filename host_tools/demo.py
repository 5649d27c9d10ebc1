"""The benchtop demo (`meterctl demo`, `make demo`): a household day on the simulated board.

It boots the real firmware in MicroPython on the simulated board, talks to it over the
optical port, then drives load steps in accelerated virtual time (import at night,
export at midday from rooftop solar, import in the evening) and shows what the LCD
says against the energy the source really put through the meter.
"""

from __future__ import annotations

import argparse
import time

from host_tools.c1218 import Client
from host_tools.repo import firmware_module

# (label, volts, amps (negative = export), pf, hours)
DAY = (
    ("night, fridge and heating", 240.0, 6.0, 0.95, 4.0),
    ("morning, kettle and oven", 240.0, 18.0, 1.0, 2.0),
    ("midday, solar exporting", 240.0, -15.0, 1.0, 4.0),
    ("evening, cooking and EV", 240.0, 28.0, 0.98, 3.0),
)
ITEMS = ("DE", "NG", "NT")  # display.py, ID_STYLE 0


def _lcd_value(board) -> tuple[str, float, str]:
    glyphs = firmware_module("lcd_glyphs")
    text, dots, ann = board.hw.lcd.display()
    ident, digits = text[:2], text[2:]
    try:
        value = int(digits) / 10.0 if dots == glyphs.dot_after(1) else float(int(digits))
    except ValueError:
        return ident, 0.0, text
    if ann & glyphs.ANN_NEG:
        value = -value
    shown = f"{ident} {'-' if ann & glyphs.ANN_NEG else ' '}{digits[:-1]}.{digits[-1]} kWh"
    return ident, value, shown


def _read_lcd_items(board) -> dict[str, float]:
    seen: dict[str, float] = {}
    for _ in range(40):  # the display scrolls every 10 s
        ident, value, _ = _lcd_value(board)
        if ident in ITEMS:
            seen[ident] = value
        if len(seen) == len(ITEMS):
            break
        board.run(1.0)
    return seen


def run_demo(args: argparse.Namespace) -> int:
    from host_tools.sim import SimBoard

    started = time.monotonic()
    print("Open meter benchtop demo: the real firmware in MicroPython on the simulated board\n")
    with SimBoard(seed=args.seed) as board:
        print(f"  console (mpremote/ampy): {board.console_port}")
        print(f"  optical port (C12.18):   {board.optical_port}")
        with Client.open(board.optical_port) as client:
            std, ver, rev = client.identify()
        print(f"  optical port identify:   C12.18 std {std}, version {ver}.{rev}")
        print(f"  LCD after boot:          [{board.lcd_text()}]\n")
        print(f"  {'virtual time':>12}  {'load':>28}  {'LCD':<18} {'true in':>9} {'true out':>9}")
        for label, volts, amps, pf, hours in DAY:
            board.set_load(volts, amps, pf=pf)
            kw = volts * amps * pf / 1000
            for _ in range(int(hours * 2)):
                board.run(1800)
                truth = board.true_energy_wh()
                _, _, shown = _lcd_value(board)
                print(
                    f"  {board.virtual_time / 3600:10.1f} h  {label[:19]:<19} {kw:+6.2f} kW  {shown:<18}"
                    f" {truth['delivered'] / 1000:7.2f}   {truth['received'] / 1000:7.2f}"
                )
        board.set_load(240.0, 0.0)
        truth = board.true_energy_wh()
        shown = _read_lcd_items(board)
        true_kwh = {
            "DE": truth["delivered"] / 1000,
            "NG": truth["received"] / 1000,
            "NT": (truth["delivered"] - truth["received"]) / 1000,
        }
        names = {"DE": "delivered (import)", "NG": "received (export)", "NT": "net"}
        print("\n  register              LCD (kWh)   truth (kWh)   difference")
        for item in ITEMS:
            lcd = shown.get(item, float("nan"))
            print(f"  {names[item]:<20} {lcd:10.1f}   {true_kwh[item]:11.3f}   {lcd - true_kwh[item]:+9.3f}")
        print(
            "\n  The meter is not calibrated yet: the simulated board's analog front end has real"
            "\n  gain and phase errors, so expect a fraction of a percent. firmware/calibration.py"
            "\n  corrects them (tests/bench/accuracy.py); `meterctl calibrate` is still to come."
        )
    print(f"\n  demo finished in {time.monotonic() - started:.1f} s of wall time")
    return 0
