"""The programmable source on the simulated board's terminals, and the truth it keeps.

A source is what a meter test bench applies, modelled as the service itself, so its truth
never borrows the meter's formula (../shared/reference/field.md, "Meter forms"):

- 2 wire (Form 1S, the default): `volts` across the two wires, the line current on
  channel A. True power V x I_A x cos(phi_A).
- 3 wire, 120/240 V (Form 2S): two hot legs and a neutral. `volts` is the voltage across
  the two legs (V_AB, 240 V); the legs' voltages to neutral V_AN and V_BN are 180 degrees
  apart and V_AN + V_BN = V_AB (each volts / 2 unless set apart with volts_an / volts_bn).
  Channel A carries leg A's line current, channel B leg B's. Each leg's load sits between
  its leg and the neutral (a 240 V load between the legs carries the same current in both),
  so the true power is V_AN x I_A x cos(phi_A) + V_BN x I_B x cos(phi_B). The service is
  3 wire from the first load given to channel B (leg B), or to volts_an / volts_bn, and
  stays so: a service does not rewire itself.

What the ADE7953 sees (pin_inputs): its one voltage input across the two wires (1S) or the
two legs (2S: V_AB), channel A = I_A, channel B = I_B (a 2S meter's leg-B current coil is
poled so that a delivered leg-B current is in phase with V_AB). A 2S meter therefore
computes V_AB x (I_A + I_B) / 2, which equals the truth only while V_AN = V_BN: with the
legs apart (volts_an / volts_bn) the difference, (V_AN - V_BN) x (I_A - I_B) / 2 at PF 1,
is the half-element assumption's known error.

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
    phase_deg: float = 0.0  # current lag behind its voltage (positive = inductive)

    def power_w(self, volts: float) -> float:
        return volts * self.amps * math.cos(math.radians(self.phase_deg))


class Source:
    """The service's voltages, per-channel (per-leg) current and the exact energy integral."""

    def __init__(self) -> None:
        self.volts = 0.0  # across the two wires (2 wire) or the two legs (3 wire: V_AB)
        self.hz = 60.0
        self.channels = {c: Channel() for c in CHANNELS}
        self.three_wire = False  # a 120/240 V service: channel A = leg A, channel B = leg B
        self.volts_an: float | None = None  # leg A to neutral (None: volts / 2, balanced legs)
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
        volts_an: float | None = None,
        volts_bn: float | None = None,
    ) -> None:
        """One channel's (leg's) current and the service voltage; volts_an / volts_bn set a
        3 wire service's legs apart (either one: the other is volts minus it)."""
        if channel not in self.channels:
            raise ValueError(f"channel must be 'A' or 'B', not {channel!r}")
        if not -1.0 <= pf <= 1.0:
            raise ValueError(f"pf must be within -1..1, not {pf}")
        if volts < 0 or hz <= 0:
            raise ValueError("volts must be >= 0 and hz > 0")
        an = _leg_a(float(volts), volts_an, volts_bn)
        ch = self.channels[channel]
        sign = -1.0 if pf < 0 else 1.0
        ch.amps = amps * sign
        ch.phase_deg = phase_deg if phase_deg is not None else math.degrees(math.acos(abs(pf)))
        if an is not None or float(volts) != self.volts:
            self.volts_an = an  # legs set apart stay so until volts changes: then balanced again
        self.volts = float(volts)
        self.hz = float(hz)
        if channel == "B" or an is not None:
            self.three_wire = True

    def live_volts(self) -> float:
        return self.volts if self.line_live else 0.0

    def leg_volts(self) -> tuple[float, float]:
        """(V_AN, V_BN) of a 3 wire service now (0 during an outage)."""
        v = self.live_volts()
        if not v:
            return 0.0, 0.0
        an = self.volts_an if self.volts_an is not None else v / 2
        return an, v - an

    def leg_power_w(self) -> tuple[float, float]:
        """Each leg's (channel's) true active power: 3 wire V_AN x I_A, V_BN x I_B; 2 wire
        V x I_A and nothing on B (a 1S meter has no second current element)."""
        a, b = self.channels["A"], self.channels["B"]
        if not self.three_wire:
            return a.power_w(self.live_volts()), 0.0
        an, bn = self.leg_volts()
        return a.power_w(an), b.power_w(bn)

    def power_w(self) -> float:
        pa, pb = self.leg_power_w()
        return pa + pb

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
        """What the ADE7953 sees at its pins through the board's divider and CTs: the voltage
        across the wires (2 wire) or the legs (3 wire, V_AB = V_AN + V_BN), I_A and I_B. A
        2 wire service has no second current element: channel B sees nothing."""
        i_ratio = W.I_RATIO_MILLI / 1000.0
        a, b = self.channels["A"], self.channels["B"]
        live = self.line_live
        return {
            "v_pin": self.live_volts() / W.V_RATIO,
            "ia_pin": a.amps / i_ratio if live else 0.0,
            "ib_pin": b.amps / i_ratio if live and self.three_wire else 0.0,
            "phase_a_deg": a.phase_deg,
            "phase_b_deg": b.phase_deg,
            "hz": self.hz,
        }


def _leg_a(volts: float, volts_an: float | None, volts_bn: float | None) -> float | None:
    """V_AN from what set_load was given (None: not given, balanced or as before)."""
    if volts_an is None and volts_bn is None:
        return None
    an = volts_an if volts_an is not None else volts - float(volts_bn)  # type: ignore[arg-type]
    bn = volts_bn if volts_bn is not None else volts - an
    if an < 0 or bn < 0 or abs(an + bn - volts) > 1e-9 * max(1.0, volts):
        raise ValueError(f"the legs must add up to volts (V_AN + V_BN = V_AB): {an} + {bn} != {volts}")
    return float(an)
