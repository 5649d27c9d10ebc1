"""Energy registers: integer Wh with a sub-Wh residue, so years of polling never drift.

The ADE7953's energy-gain registers are calibrated so that one energy LSB is exactly
1/10,000 Wh (0.1 mWh). Every sum here is then an exact small-int operation: a poll adds
the signed LSB count to a residue and carries whole Wh, with no float and no rounding.

    reg = EnergyRegisters()
    reg.add(12345)          # +1.2345 Wh delivered
    reg.delivered_wh, reg.net_wh()
"""

from micropython import const

import config

LSB_PER_WH = const(10000)
GAIN_UNITY = const(0x400000)
_ENERGY_LSB_PER_S_FS = const(206900)  # ADE7953 energy rate at full-scale inputs (datasheet)


def nominal_gain(v_ratio, i_ratio_milli):
    """The xWGAIN that makes one energy LSB 0.1 mWh on an ideal front end.

    Full scale at PGA 1 is 0.5 V peak at the pins, i.e. 0.5/sqrt(2) V rms; the line sees
    that times the divider (v_ratio) and the CT/burden (A per pin volt)."""
    fs_rms = 0.5 / 1.4142135623730951
    p_fs_w = fs_rms * v_ratio * fs_rms * i_ratio_milli / 1000.0
    wh_per_lsb = p_fs_w / _ENERGY_LSB_PER_S_FS / 3600.0
    return int(GAIN_UNITY * wh_per_lsb * LSB_PER_WH + 0.5)


class EnergyRegisters:
    """Delivered and received active energy (Wh + 0.1 mWh residue); net may be negative.

    FIELDS names every integer that makes up the legal registers, in a fixed order:
    storage saves and restores exactly these (pack_into / unpack_from), so a register
    added here is saved without touching storage."""

    FIELDS = ("delivered_wh", "delivered_res", "received_wh", "received_res")

    def __init__(self):
        self.delivered_wh = 0
        self.delivered_res = 0
        self.received_wh = 0
        self.received_res = 0

    def add(self, lsb):
        """Add one poll's signed energy: positive is delivered, negative received."""
        if lsb > 0:
            r = self.delivered_res + lsb
            self.delivered_wh += r // LSB_PER_WH
            self.delivered_res = r % LSB_PER_WH
        elif lsb < 0:
            r = self.received_res - lsb
            self.received_wh += r // LSB_PER_WH
            self.received_res = r % LSB_PER_WH

    def net_wh(self):
        return self.delivered_wh - self.received_wh

    def pack_into(self, buf, offset):
        """Write the registers as little-endian signed 64-bit words (8 * len(FIELDS) bytes)."""
        for name in self.FIELDS:
            v = getattr(self, name)
            for i in range(8):
                buf[offset + i] = (v >> (8 * i)) & 0xFF
            offset += 8

    def unpack_from(self, buf, offset):
        for name in self.FIELDS:
            v = 0
            for i in range(7, -1, -1):
                v = (v << 8) | buf[offset + i]
            if v & (1 << 63):
                v -= 1 << 64
            setattr(self, name, v)
            offset += 8

    def delivered_lsb(self):
        """Full resolution, for the optical port: Wh * 10,000 + residue."""
        return self.delivered_wh * LSB_PER_WH + self.delivered_res

    def received_lsb(self):
        return self.received_wh * LSB_PER_WH + self.received_res


class Metrology:
    """The metering IC plus the registers it feeds: begin(), poll() every POLL_MS, on_irq()."""

    def __init__(self, ade, board, cfg, status):
        self.ade = ade
        self.board = board
        self.config = cfg
        self.status = status
        self.energy = EnergyRegisters()
        self.nominal_gain = nominal_gain(board.v_ratio, board.i_ratio_milli)

    def gains(self):
        cfg = self.config
        g = self.nominal_gain
        keys = (config.AWGAIN, config.AVARGAIN, config.AVAGAIN, config.BWGAIN, config.BVARGAIN, config.BVAGAIN)
        return tuple(cfg.get(k) or g for k in keys)

    def begin(self):
        self.ade.begin(self.gains())

    def poll(self):
        """Read the chip's energy since the last poll and register it."""
        ade = self.ade
        ade.read_energy(self.config.get(config.ELEMENTS) == 2)
        self.energy.add(ade.d_wa + ade.d_wb)

    def on_irq(self):
        flags = self.ade.irq_status()
        if flags & (1 << 20):  # the chip reset by itself: bring it up again
            self.begin()
