"""ADE7953 metering IC: chip logic over a small SPI or I2C transport.

    from ade7953 import ADE7953, SpiTransport
    ade = ADE7953(SpiTransport(b.ade_spi, b.ade_cs), b.ade_reset, b.ade_irq, b.clock)
    ade.begin()                       # reset, unlock, lock the interface, configure
    ade.read_energy()                 # read-with-reset; deltas in ade.d_wa, ade.d_wb, ...

The transport carries exactly one register of the width its address implies; the
chip logic never touches a bus. Energies are read with reset (each register exactly
once per poll, one code path) so nothing is lost or counted twice.
"""

import time

from micropython import const

# 8-bit registers
_SAGCYC = const(0x000)
_DISNOLOAD = const(0x001)
_LCYCMODE = const(0x004)
_PGA_V = const(0x007)
_PGA_IA = const(0x008)
_PGA_IB = const(0x009)
_UNLOCK_KEY_ADDR = const(0x0FE)
_UNLOCK_KEY = const(0xAD)
# 16-bit registers
_CONFIG = const(0x102)
_CF1DEN = const(0x103)
_CFMODE = const(0x107)
_PHCALA = const(0x108)
_PHCALB = const(0x109)
_PERIOD = const(0x10E)
_OPTIMUM = const(0x120)
_OPTIMUM_VALUE = const(0x0030)
# 24-bit registers (read at 0x2xx; the 32-bit mirror at 0x3xx is never used)
_SAGLVL = const(0x200)
_ACCMODE = const(0x201)
_AP_NOLOAD = const(0x203)
_VAR_NOLOAD = const(0x204)
_VA_NOLOAD = const(0x205)
_AWATT = const(0x212)
_BWATT = const(0x213)
_IRMSA = const(0x21A)
_IRMSB = const(0x21B)
_VRMS = const(0x21C)
_AENERGYA = const(0x21E)
_AENERGYB = const(0x21F)
_RENERGYA = const(0x220)
_RENERGYB = const(0x221)
_APENERGYA = const(0x222)
_APENERGYB = const(0x223)
_IRQENA = const(0x22C)
_RSTIRQSTATA = const(0x22E)
_AWGAIN = const(0x282)
_AVARGAIN = const(0x283)
_AVAGAIN = const(0x284)
_BWGAIN = const(0x28E)
_BVARGAIN = const(0x28F)
_BVAGAIN = const(0x290)

_CONFIG_LOCKED_HPF = const(0x0004)  # COMM_LOCK = 0 (locked), HPFEN = 1
_CONFIG_SWRST = const(0x0080)
_IRQ_RESET = const(1 << 20)
_IRQ_SAG = const(1 << 19)
_READY_TIMEOUT_MS = const(200)  # the datasheet: ready within ~66 ms of power-up
_GAIN_UNITY = const(0x400000)


def _width(addr):
    """Register width in bytes, fixed by the address (datasheet Tables 13-15)."""
    if addr == 0x702 or addr == 0x800 or addr < 0x100:
        return 1
    if addr < 0x200:
        return 2
    if addr < 0x300:
        return 3
    return 4


class ChipError(OSError):
    """The metering IC did not answer as it must (no RESET flag, a write not taken)."""


class SpiTransport:
    """Register access over SPI (mode 3): addr_hi, addr_lo, 0x80 read / 0x00 write, data MSB first."""

    def __init__(self, spi, cs):
        self._spi = spi
        self._cs = cs
        self._bufs = (None, bytearray(4), bytearray(5), bytearray(6), bytearray(7))

    def read(self, addr):
        n = _width(addr)
        buf = self._bufs[n]
        buf[0] = addr >> 8
        buf[1] = addr & 0xFF
        buf[2] = 0x80
        for i in range(3, 3 + n):
            buf[i] = 0
        self._cs(0)
        try:
            self._spi.write_readinto(buf, buf)
        finally:
            self._cs(1)
        v = 0
        for i in range(3, 3 + n):
            v = (v << 8) | buf[i]
        return v

    def write(self, addr, value):
        n = _width(addr)
        buf = self._bufs[n]
        buf[0] = addr >> 8
        buf[1] = addr & 0xFF
        buf[2] = 0x00
        for i in range(n):
            buf[2 + n - i] = (value >> (8 * i)) & 0xFF
        self._cs(0)
        try:
            self._spi.write(buf)
        finally:
            self._cs(1)


class I2CTransport:
    """Register access over I2C at 0x38 with a 16-bit register address, data MSB first."""

    ADDRESS = 0x38

    def __init__(self, i2c):
        self._i2c = i2c
        self._bufs = (None, bytearray(1), bytearray(2), bytearray(3), bytearray(4))

    def read(self, addr):
        buf = self._bufs[_width(addr)]
        self._i2c.readfrom_mem_into(self.ADDRESS, addr, buf, addrsize=16)
        v = 0
        for b in buf:
            v = (v << 8) | b
        return v

    def write(self, addr, value):
        n = _width(addr)
        buf = self._bufs[n]
        for i in range(n):
            buf[n - 1 - i] = (value >> (8 * i)) & 0xFF
        self._i2c.writeto_mem(self.ADDRESS, addr, buf, addrsize=16)


def _signed24(v):
    return v - 0x1000000 if v & 0x800000 else v


class ADE7953:
    """Bring-up, configuration and energy reads; calibration values come from the caller."""

    def __init__(self, transport, reset_pin, irq_pin, clock):
        self._t = transport
        self._reset = reset_pin
        self._irq = irq_pin
        self._clock = clock
        self.resets = 0  # times the chip was (re)initialised
        # energy read at the last poll, in LSB (signed)
        self.d_wa = 0
        self.d_wb = 0
        self.d_vara = 0
        self.d_varb = 0
        self.d_vaa = 0
        self.d_vab = 0

    def _irq_pending(self):
        return self._irq.value() == 0

    def _wait_ready(self):
        clock = self._clock
        deadline = time.ticks_add(clock.ticks_ms(), _READY_TIMEOUT_MS)
        while self._irq.value() != 0:
            if time.ticks_diff(deadline, clock.ticks_ms()) <= 0:
                break
            clock.wait_until(deadline, self._irq_pending)
        status = self._t.read(_RSTIRQSTATA)  # clears RESET and releases IRQ
        if not status & _IRQ_RESET:
            raise ChipError("ADE7953 did not report RESET within the deadline")

    def begin(self, gains=None):
        """Hardware reset, wait for the RESET flag, unlock, lock the interface, configure.

        gains: (AWGAIN, AVARGAIN, AVAGAIN, BWGAIN, BVARGAIN, BVAGAIN) or None for unity."""
        self._reset(0)
        time.sleep_us(20)  # the datasheet asks for >= 10 us low
        self._reset(1)
        self._wait_ready()
        t = self._t
        t.write(_UNLOCK_KEY_ADDR, _UNLOCK_KEY)  # mandatory after every reset, consecutively
        t.write(_OPTIMUM, _OPTIMUM_VALUE)
        cfg = t.read(_CONFIG)
        t.write(_CONFIG, (cfg & ~0x8080) | _CONFIG_LOCKED_HPF)  # read-modify-write: lock, keep HPF
        if gains is not None:
            regs = (_AWGAIN, _AVARGAIN, _AVAGAIN, _BWGAIN, _BVARGAIN, _BVAGAIN)
            for i in range(6):
                t.write(regs[i], gains[i])
        if t.read(_CONFIG) & 0x8000:
            raise ChipError("ADE7953 interface did not lock")
        self.resets += 1

    def read_energy(self, channel_b=False):
        """Read each active-energy register in use once (read-with-reset) into d_wa / d_wb.

        channel_b: the 1.5-element configuration uses current channel B too."""
        t = self._t
        self.d_wa = _signed24(t.read(_AENERGYA))
        self.d_wb = _signed24(t.read(_AENERGYB)) if channel_b else 0

    def line_hz_x100(self):
        """Line frequency in 0.01 Hz: f = 223,750 / (PERIOD + 1)."""
        p = self._t.read(_PERIOD)
        return 22375000 // (p + 1) if p else 0

    def irq_status(self):
        """Read and clear the group A interrupt flags."""
        return self._t.read(_RSTIRQSTATA)
