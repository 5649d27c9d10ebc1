"""The hold-up a supply must give, from the line failing, for a warned power cut to lose no
energy on the simulated board: computed here from physics, never from the code under test.

Two parts, one after the other:

1. The ADE7953's sag detection (reference/ade7953.md 3.9; the sister parts' datasheets: the
   flag comes "at the end of the SAGCYC-th half line cycle for which the line voltage falls
   below the threshold"). A half cycle counts when its peak stays under SAGLVL; the half
   cycle in which the line fails has its peak pk x sin(pi x min(f, 1/2)) at phase f, so it
   counts only for f < asin(SAGLVL / pk) / pi. The warning comes SAGCYC - f half cycles after
   the failure if it counts, SAGCYC + 1 - f if not: at worst (SAGCYC + 1 - asin(L) / pi) half
   cycles, L = SAGLVL / pk. SAGCYC and L are the firmware's settings (firmware/metrology.py
   `_SAG_HALF_CYCLES`, `_SAG_PERMILLE` of the peak seen at bring-up), read from its source
   (one source of truth); the line keeps the voltage it had at bring-up in these tests.
2. The EEPROM: a write cycle cannot be stopped, so a warning that lands as one starts waits
   it out (5 ms, the 24LC256's and 24LC512's maximum: reference/hardware.md), then the
   warning's own record starts (a full read of the metering chip over SPI at 1 MHz and one
   page over I2C at 400 kHz, 66 bytes at 9 clocks each: 1.5 ms; with the SPI reads and the
   acknowledge polls, START_MS is allowed for it) and its write cycle ends 5 ms later.

    hold_up_ms(60.0)           # detection at 60 Hz + a cycle in flight + the warning's record
    hold_up_ms(50.0, cycles=1) # too little when a write cycle is in flight
"""

from __future__ import annotations

import math
import re
from pathlib import Path

_METROLOGY = (Path(__file__).resolve().parents[2] / "firmware" / "metrology.py").read_text()


def _const(name: str) -> int:
    m = re.search(rf"^{name} = const\((\d+)\)", _METROLOGY, re.M)
    if m is None:
        raise LookupError(f"{name} not found in firmware/metrology.py")
    return int(m[1])


SAGCYC = _const("_SAG_HALF_CYCLES")  # half cycles below SAGLVL before the warning
SAG_LEVEL = _const("_SAG_PERMILLE") / 1000  # SAGLVL as a share of the line's peak
WRITE_CYCLE_MS = 5.0  # 24LC256 / 24LC512: 5 ms maximum (reference/hardware.md)
START_MS = 3.0  # from the warning to its record's STOP: a chip read and one page over I2C
PAGE_READ_MS = 1.6  # one 64-byte page read at 400 kHz, 9 clocks a byte, with its address: 1.5 ms


def detection_ms(hz: float) -> float:
    """The longest the chip takes to warn after the line fails to 0 V (part 1 above)."""
    return (SAGCYC + 1 - math.asin(SAG_LEVEL) / math.pi) * 1000 / (2 * hz)


def detection_min_ms(hz: float) -> float:
    """The shortest (a failure just before the half cycle reaches SAGLVL): SAGCYC - asin(L) / pi."""
    return (SAGCYC - math.asin(SAG_LEVEL) / math.pi) * 1000 / (2 * hz)


def hold_up_ms(hz: float, cycles: int = 2) -> float:
    """Detection at worst, then `cycles` EEPROM write cycles (2: one in flight when the
    warning lands, then the warning's own) and the warning's start."""
    return detection_ms(hz) + START_MS + cycles * WRITE_CYCLE_MS
