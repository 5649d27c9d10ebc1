"""The programmable source on the simulated board's terminals, and the truth it keeps.

A source is what a meter test bench applies: one line voltage and a current per
current channel, each with its power factor (or phase angle) and the line frequency.
It knows exactly how much energy it has pushed through the meter in each direction, so
tests compare what the firmware registered against `true_energy_wh()`.

Direction: the energy is *delivered* (to the load) while the total active power is
positive and *received* (from rooftop solar) while it is negative. A negative `amps`
or a negative `pf` reverses the current, i.e. makes that channel's power negative;
both negative cancel out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from host_tools.repo import simwire

W = simwire()

CHANNELS = ("A", "B")


@dataclass
class Channel:
    amps: float = 0.0  # rms, signed: negative = current reversed (received)
    phase_deg: float = 0.0  # current lag behind the voltage (positive = inductive)

    def power_w(self, volts: float) -> float:
        return volts * self.amps * math.cos(math.radians(self.phase_deg))


class Source:
    """Line voltage, per-channel current and the exact energy integral."""

    def __init__(self) -> None:
        self.volts = 0.0
        self.hz = 60.0
        self.channels = {c: Channel() for c in CHANNELS}
        self.line_live = True  # False during an outage: nothing flows
        self.delivered_wh = 0.0
        self.received_wh = 0.0
        self._c_del = 0.0  # Kahan compensation: a year of 1 s steps stays exact
        self._c_rec = 0.0

    def set_load(
        self,
        volts: float,
        amps: float,
        pf: float = 1.0,
        hz: float = 60.0,
        channel: str = "A",
        phase_deg: float | None = None,
    ) -> None:
        if channel not in self.channels:
            raise ValueError(f"channel must be 'A' or 'B', not {channel!r}")
        if not -1.0 <= pf <= 1.0:
            raise ValueError(f"pf must be within -1..1, not {pf}")
        if volts < 0 or hz <= 0:
            raise ValueError("volts must be >= 0 and hz > 0")
        ch = self.channels[channel]
        sign = -1.0 if pf < 0 else 1.0
        ch.amps = amps * sign
        ch.phase_deg = phase_deg if phase_deg is not None else math.degrees(math.acos(abs(pf)))
        self.volts = float(volts)
        self.hz = float(hz)

    def live_volts(self) -> float:
        return self.volts if self.line_live else 0.0

    def power_w(self) -> float:
        v = self.live_volts()
        return sum(ch.power_w(v) for ch in self.channels.values())

    def advance(self, seconds: float) -> None:
        """Integrate the energy that flows during `seconds` (the load is constant meanwhile)."""
        if seconds <= 0:
            return
        wh = self.power_w() * seconds / 3600.0
        if wh > 0:
            y = wh - self._c_del
            t = self.delivered_wh + y
            self._c_del = (t - self.delivered_wh) - y
            self.delivered_wh = t
        elif wh < 0:
            y = -wh - self._c_rec
            t = self.received_wh + y
            self._c_rec = (t - self.received_wh) - y
            self.received_wh = t

    def pin_inputs(self) -> dict[str, float]:
        """What the ADE7953 sees at its pins through the board's divider and CTs."""
        i_ratio = W.I_RATIO_MILLI / 1000.0
        a, b = self.channels["A"], self.channels["B"]
        return {
            "v_pin": self.live_volts() / W.V_RATIO,
            "ia_pin": a.amps / i_ratio if self.line_live else 0.0,
            "ib_pin": b.amps / i_ratio if self.line_live else 0.0,
            "phase_a_deg": a.phase_deg,
            "phase_b_deg": b.phase_deg,
            "hz": self.hz,
        }
