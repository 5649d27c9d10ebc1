"""ADE7953 metering IC: chip logic over a small SPI or I2C transport.

    from ade7953 import ADE7953, SpiTransport
    ade = ADE7953(SpiTransport(b.ade_spi, b.ade_cs), b.ade_reset, b.ade_irq, b.clock)
    ade.settings[ade7953.AWGAIN] = 0x4BF3F1   # what every bring-up writes (metrology fills it)
    ade.begin()                  # reset, wait for RESET, unlock, lock the interface, configure, verify
    ade.read_active(False)       # read-with-reset: ade.d_wa (and d_wb) in energy LSB
    ade.config_ok()              # False after an unexpected reset or on a dead bus

The transport carries exactly one register of the width its address implies; the chip
logic never touches a bus. Energies are read with reset, each register exactly once per
read call (one code path), so nothing is lost or counted twice. `settings` is the whole
configuration (address -> raw register value): begin() writes it after every reset, in a
fixed order that honours the datasheet's rules (no-load thresholds written with no-load
detection off, CF1DEN written twice, the CF output enabled last) and reads every register
back, so a chip that reset by itself is brought back to exactly the same state.
Register facts: /work/shared/reference/ade7953.md (datasheet Rev. C).
"""

import time

from micropython import const

# --- registers the metrology configures (public: metrology and calibration name them) ---
# 8-bit
SAGCYC = const(0x000)
DISNOLOAD = const(0x001)
LCYCMODE = const(0x004)
PGA_V = const(0x007)
PGA_IA = const(0x008)
PGA_IB = const(0x009)
# 16-bit
CONFIG = const(0x102)
CF1DEN = const(0x103)
CFMODE = const(0x107)
PHCALA = const(0x108)
PHCALB = const(0x109)
# 24-bit (always reached at 0x2xx; the 32-bit mirror at 0x3xx is never used)
SAGLVL = const(0x200)
ACCMODE = const(0x201)
AP_NOLOAD = const(0x203)
VAR_NOLOAD = const(0x204)
VA_NOLOAD = const(0x205)
IRQENA = const(0x22C)
AWGAIN = const(0x282)
AVARGAIN = const(0x283)
AVAGAIN = const(0x284)
AWATTOS = const(0x289)
AVAROS = const(0x28A)
AVAOS = const(0x28B)
BWGAIN = const(0x28E)
BVARGAIN = const(0x28F)
BVAGAIN = const(0x290)
BWATTOS = const(0x295)
BVAROS = const(0x296)
BVAOS = const(0x297)

# --- registers only this driver reads ---
_UNLOCK_KEY_ADDR = const(0x0FE)
_UNLOCK_KEY = const(0xAD)
_PERIOD = const(0x10E)
_OPTIMUM = const(0x120)
_OPTIMUM_VALUE = const(0x0030)
_AVA = const(0x210)
_BVA = const(0x211)
_AWATT = const(0x212)
_BWATT = const(0x213)
_AVAR = const(0x214)
_BVAR = const(0x215)
_IRMSA = const(0x21A)
_IRMSB = const(0x21B)
_VRMS = const(0x21C)
_AENERGYA = const(0x21E)
_AENERGYB = const(0x21F)
_RENERGYA = const(0x220)
_RENERGYB = const(0x221)
_APENERGYA = const(0x222)
_APENERGYB = const(0x223)
_VPEAK = const(0x226)
_RSTVPEAK = const(0x227)
_IRQSTATA = const(0x22D)
_RSTIRQSTATA = const(0x22E)

# --- values ---
_CONFIG_LOCKED = const(0x0004)  # COMM_LOCK = 0 (locked), HPFEN = 1, SWRST = 0
_CONFIG_RESET = const(0x8004)  # what CONFIG reads after any reset: unlocked, HPF on
_CONFIG_SWRST = const(0x0080)
_COMM_UNLOCKED = const(0x8000)
IRQ_SAG = const(1 << 19)
IRQ_RESET = const(1 << 20)  # always enabled: the chip says it (re)started
NOLOAD_ALL = const(0x07)  # DISNOLOAD: active, reactive and apparent detection off
_ACCMODE_RW = const(0x3FF)  # bits 10..21 of ACCMODE are live status, not settings
_READY_TIMEOUT_MS = const(200)  # the datasheet: ready ~66 ms after power-up; wait no longer
_POWER_UP_MS = const(100)  # past the ~66 ms a chip powered up with the MCU takes to be ready
ENERGY_LSB_PER_S_FS = const(206900)  # energy LSB/s at full-scale inputs and unity gain
POWER_FS = const(4862401)  # AWATT code at full-scale inputs
RMS_FS = const(9032007)  # VRMS / IRMS code at full-scale inputs
WAVE_FS = const(6500000)  # V waveform (and VPEAK) code at full-scale peak
_MWS_PER_LSB = const(360)  # the metrology's energy LSB, 0.1 mWh = 360 mWs (noload_x)
_PHCAL_MAX = const(383)
_PHCAL_ADVANCE = const(0x200)
_PHCAL_STEP_X = const(1570796)  # one PHCAL step in urad times (PERIOD + 1): pi/2 x 1e6

# The order begin() writes settings in. DISNOLOAD is not here: it is written 7 (off)
# before the thresholds and its configured value last. CF1DEN precedes CFMODE (the pin
# starts pulsing only once its divider is right); IRQENA comes last.
_ORDER = (
    PGA_V,
    PGA_IA,
    PGA_IB,
    LCYCMODE,
    ACCMODE,
    AP_NOLOAD,
    VAR_NOLOAD,
    VA_NOLOAD,
    AWGAIN,
    AVARGAIN,
    AVAGAIN,
    BWGAIN,
    BVARGAIN,
    BVAGAIN,
    AWATTOS,
    AVAROS,
    AVAOS,
    BWATTOS,
    BVAROS,
    BVAOS,
    PHCALA,
    PHCALB,
    CF1DEN,
    CFMODE,
    SAGLVL,
    SAGCYC,
    IRQENA,
)


def _width(addr):
    """Register width in bytes, fixed by the address (datasheet Tables 13-15)."""
    if addr == 0x702 or addr == 0x800 or addr < 0x100:
        return 1
    if addr < 0x200:
        return 2
    if addr < 0x300:
        return 3
    return 4


def signed24(v):
    """A 24-bit two's complement register value as an int (small int: no allocation)."""
    return v - 0x1000000 if v & 0x800000 else v


def phcal_for(urad, period):
    """The PHCAL register value that compensates a current lag error of `urad` microradians
    at the line period PERIOD. One PHCAL step is CLKIN/4, a quarter of a PERIOD LSB, i.e.
    pi/2 / (PERIOD + 1) rad at any line frequency; the residual (phcal_residual: at most
    half a step, 0.012 deg at 60 Hz) is left for the caller to trim. Two functions, not a
    tuple: the metering loop calls them when the line frequency moves, and allocates nothing."""
    p1 = period + 1
    mag = urad if urad >= 0 else -urad
    code = (mag * p1 + _PHCAL_STEP_X // 2) // _PHCAL_STEP_X
    if code > _PHCAL_MAX:
        code = _PHCAL_MAX
    if urad >= 0 and code:  # the chip sees extra lag: advance the current (bit 9)
        return _PHCAL_ADVANCE | code
    return code


def phcal_residual(urad, reg, period):
    """The part of a `urad` lag error that the PHCAL value `reg` leaves at PERIOD."""
    applied = (reg & 0x1FF) * _PHCAL_STEP_X // (period + 1)
    return urad - applied if reg & _PHCAL_ADVANCE else urad + applied


def noload_x(p_mw):
    """X_NOLOAD for a no-load threshold of p_mw milliwatts, with one energy LSB = 0.1 mWh.

    A power code is then 360 mWs x 206,900 / 4,862,401 = 15.3 mW, and the chip compares
    |P| with 4,862,401 / (1.4 (65,536 - X)) codes, so X = 65,536 - 74,484,000 / (1.4 p_mw)."""
    x = 65536 - (_MWS_PER_LSB * ENERGY_LSB_PER_S_FS * 10) // (14 * (p_mw if p_mw > 0 else 1))
    return 0 if x < 0 else 65535 if x > 65535 else x


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


class ADE7953:
    """Bring-up, configuration with read-back, energy reads and instantaneous values.

    The IRQ pin is only read (low = an enabled status bit is latched); the caller decides
    when to look at it. Every wait has a deadline; every failure raises ChipError (an
    OSError, like a bus error), never returns quietly."""

    def __init__(self, transport, reset_pin, irq_pin, clock):
        self._t = transport
        self._reset = reset_pin
        self._irq = irq_pin
        self._clock = clock
        self.settings = {}  # address -> raw register value, written by begin() and set()
        self._verify = []  # settings' addresses in _ORDER, for the rotating check
        self._verify_i = 0
        self.resets = 0  # completed bring-ups
        # energy read by the last read_active() / read_slow(), in LSB (signed)
        self.d_wa = 0
        self.d_wb = 0
        self.d_vara = 0
        self.d_varb = 0
        self.d_vaa = 0
        self.d_vab = 0

    # ---- bring-up ----------------------------------------------------------------------
    def _wait_ready(self):
        """Wait (with a deadline) for the IRQ the chip raises when a reset completes, then
        read and clear the status; True if it says RESET. The pin is looked at after each
        1 ms sleep: right after the reset pulse it may still show the old state."""
        clock = self._clock
        deadline = time.ticks_add(clock.ticks_ms(), _READY_TIMEOUT_MS)
        while True:
            clock.wait_until(time.ticks_add(clock.ticks_ms(), 1), None)
            if self._irq.value() == 0 or time.ticks_diff(deadline, clock.ticks_ms()) <= 0:
                break
        return bool(self._t.read(_RSTIRQSTATA) & IRQ_RESET)  # the read releases IRQ

    def begin(self):
        """Reset (RESET pin; SWRST if the pin gets no answer), wait for the RESET flag,
        write the unlock pair, lock the interface, write `settings`, read them all back."""
        self._reset(0)
        time.sleep_us(20)  # the datasheet asks for >= 10 us low
        self._reset(1)
        t = self._t
        if not self._wait_ready():
            t.write(CONFIG, _CONFIG_RESET | _CONFIG_SWRST)  # the pin may not be wired: SWRST
            if not self._wait_ready():
                raise ChipError("ADE7953 did not report RESET within %d ms" % _READY_TIMEOUT_MS)
        t.write(_UNLOCK_KEY_ADDR, _UNLOCK_KEY)  # mandatory after every reset, consecutively
        t.write(_OPTIMUM, _OPTIMUM_VALUE)
        cfg = t.read(CONFIG)  # read-modify-write: lock, keep the HPF, never a stray SWRST
        t.write(CONFIG, cfg & ~(_COMM_UNLOCKED | _CONFIG_SWRST))
        if t.read(CONFIG) != _CONFIG_LOCKED:
            raise ChipError("ADE7953 interface did not lock")
        s = self.settings
        t.write(DISNOLOAD, NOLOAD_ALL)  # thresholds are written with the detection off
        for addr in _ORDER:
            if addr in s:
                self._write(addr, s[addr])
        t.write(DISNOLOAD, s.get(DISNOLOAD, 0))
        for addr in self._verify_list():
            self._check(addr)
        self.resets += 1

    def _verify_list(self):
        """The registers `settings` sets, in write order, then DISNOLOAD: what is checked.
        Rebuilt in place (no new list on a fragmented heap)."""
        s = self.settings
        v = self._verify
        del v[:]
        for addr in _ORDER:
            if addr in s:
                v.append(addr)
        v.append(DISNOLOAD)
        return v

    def adopt(self):
        """After an MCU-only restart: True if the chip kept its power and still holds
        `settings` (CONFIG locked, every setting read back), so metering goes on with no
        reset and the energy it counted meanwhile is taken by the next read. SAGLVL and
        PHCALA/B, which follow the line, are taken from the chip. Nothing is written."""
        clock = self._clock  # a chip that came up with the MCU is not read before it is ready
        clock.wait_until(time.ticks_add(clock.ticks_ms(), _POWER_UP_MS), None)
        t = self._t
        if t.read(CONFIG) != _CONFIG_LOCKED:
            return False  # its reset value: it was powered up, not kept
        s = self.settings
        s[SAGLVL] = t.read(SAGLVL)
        s[PHCALA] = t.read(PHCALA)
        s[PHCALB] = t.read(PHCALB)
        for addr in self._verify_list():
            got = t.read(addr)
            if addr == ACCMODE:
                got &= _ACCMODE_RW
            if got != self._expected(addr):
                return False
        return s[SAGLVL] != 0

    def _write(self, addr, value):
        t = self._t
        t.write(addr, value)
        if addr == CF1DEN:
            t.write(addr, value)  # CFxDEN takes a value only on two writes in a row

    def _expected(self, addr):
        v = self.settings.get(addr, 0)
        if addr == IRQENA:
            return v | IRQ_RESET
        return v

    def _check(self, addr):
        got = self._t.read(addr)
        if addr == ACCMODE:
            got &= _ACCMODE_RW
        if got != self._expected(addr):
            raise ChipError("ADE7953 register 0x%03x reads 0x%x, not 0x%x" % (addr, got, self._expected(addr)))

    def set(self, addr, value):
        """Change one setting now and for every later bring-up; read it back."""
        self.settings[addr] = value
        if addr not in self._verify:
            self._verify.append(addr)
        t = self._t
        if addr == AP_NOLOAD or addr == VAR_NOLOAD or addr == VA_NOLOAD:
            t.write(DISNOLOAD, NOLOAD_ALL)
            t.write(addr, value)
            t.write(DISNOLOAD, self.settings.get(DISNOLOAD, 0))
        else:
            self._write(addr, value)
        self._check(addr)

    # ---- health ------------------------------------------------------------------------
    def config_ok(self):
        """One read: CONFIG still locked as begin() left it. A chip that reset reads
        0x8004 (unlocked); a dead bus reads 0x0000 or 0xFFFF."""
        return self._t.read(CONFIG) == _CONFIG_LOCKED

    def config_reset(self):
        """After config_ok() failed: True if CONFIG holds its reset value (the chip reset)."""
        return self._t.read(CONFIG) == _CONFIG_RESET

    def verify_next(self):
        """Read back the next configured register (round robin); False on a mismatch."""
        v = self._verify
        if not v:
            return True
        i = self._verify_i
        if i >= len(v):
            i = 0
        self._verify_i = i + 1
        addr = v[i]
        got = self._t.read(addr)
        if addr == ACCMODE:
            got &= _ACCMODE_RW
        return got == self._expected(addr)

    def irq_asserted(self):
        """The IRQ pin is low: an enabled status bit is latched (read irq_status())."""
        return self._irq.value() == 0

    def sag_pending(self):
        """The IRQ pin is low for a SAG (the flags read, not cleared: on_irq still sees them)."""
        return self._irq.value() == 0 and bool(self._t.read(_IRQSTATA) & IRQ_SAG)

    def irq_status(self):
        """Read and clear the group A interrupt flags (releases the IRQ pin)."""
        return self._t.read(_RSTIRQSTATA)

    # ---- energy (read-with-reset: every call takes the energy out of the chip) ---------
    def read_active(self, both):
        """Active energy since the last call into d_wa (and d_wb when `both`)."""
        t = self._t
        self.d_wa = signed24(t.read(_AENERGYA))
        if both:
            self.d_wb = signed24(t.read(_AENERGYB))

    def read_slow(self, both):
        """Reactive and apparent energy since the last call into d_vara, d_vaa (and B)."""
        t = self._t
        self.d_vara = signed24(t.read(_RENERGYA))
        self.d_vaa = signed24(t.read(_APENERGYA))
        if both:
            self.d_varb = signed24(t.read(_RENERGYB))
            self.d_vab = signed24(t.read(_APENERGYB))

    # ---- instantaneous values (raw codes; metrology scales them) ------------------------
    def vrms(self):
        return self._t.read(_VRMS)

    def irms(self, channel_b=False):
        return self._t.read(_IRMSB if channel_b else _IRMSA)

    def watt(self, channel_b=False):
        return signed24(self._t.read(_BWATT if channel_b else _AWATT))

    def var(self, channel_b=False):
        return signed24(self._t.read(_BVAR if channel_b else _AVAR))

    def va(self, channel_b=False):
        return signed24(self._t.read(_BVA if channel_b else _AVA))

    def period(self):
        """PERIOD register: line period = (PERIOD + 1) / 223,750 s; 0 = no line seen."""
        return self._t.read(_PERIOD)

    def peak_voltage(self, settle_ms):
        """Largest |V| sample over `settle_ms` (RSTVPEAK clears, VPEAK reads): the sag
        level's scale."""
        clock = self._clock
        self._t.read(_RSTVPEAK)
        deadline = time.ticks_add(clock.ticks_ms(), settle_ms)
        while time.ticks_diff(deadline, clock.ticks_ms()) > 0:
            clock.wait_until(deadline, None)
        return self._t.read(_VPEAK)
