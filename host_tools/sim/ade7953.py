"""Register-accurate model of the Analog Devices ADE7953 metering IC (the simulated board's chip).

The firmware talks to it through SPI frames (or I2C transfers); the simulator feeds the analog
inputs at the pins and moves chip time forward:

    chip = ADE7953(seed=1)                       # powered, ready after READY_DELAY_S
    chip.set_inputs(v_pin=0.16, ia_pin=0.02, ib_pin=0.0,
                    phase_a_deg=0.0, phase_b_deg=0.0, hz=60.0)
    chip.advance(0.1)                            # IRQSTATA.RESET set, irq_asserted is True
    chip.spi_select()
    miso = chip.spi_exchange(bytes([0x02, 0x2E, 0x80, 0, 0, 0]))   # read RSTIRQSTATA
    chip.spi_deselect()                          # read side effects happen here
    chip.violations                              # driver mistakes the model noticed

Spec: /work/shared/reference/ade7953.md (sections 1 to 3 and the checklist of section 7).
Pure CPython, stdlib only, no I/O, no threads. advance() and the spi_* calls are the hot path:
power codes and energy rates are cached and recomputed only after set_inputs() or a register
write, so advance(dt) costs a few multiply-adds.

Modelling choices where the datasheet is silent or unclear (the reference's [Unclear] notes):
- Wrong byte count on SPI or I2C: rejected (no change, no read side effect, LAST_* kept).
- Every 32-bit read sign-extends bit 23, unsigned registers too; bits 31:24 of writes ignored.
  CRC and LAST_RWDATA_32 (0x3FF) are the exceptions: they hold 32 real bits.
- LAST_*: updated by successful accesses only; reads of LAST_* themselves do not update them;
  writes refused by WRITE_PROTECT, the unlock key or a read-only register are not successful.
- Read side effects (read-with-reset energies, RST*PEAK, RSTIRQSTATx) happen at the end of
  the transfer (CS rising, I2C read done) and remove what was read: energy that arrives
  between the header and the end of the frame is kept, so no energy is lost by a read.
- 0x0FE key: one-shot. Any other completed transaction disarms it; reads of 0x0FE return 0.
- COMM_LOCK: released only by a reset (power-up, RESET pin, SWRST); bit 15 reads as written.
  The 1.2 us CS hold time after a COMM_LOCK write is not checked (the API carries no timing).
- CFxDEN: with strict=True the value sticks on the second of two identical back-to-back
  writes; with strict=False every write applies. Both record a single write as a violation.
- 0x120 != 0x0030 (optimum setting missing): both current channels read UNOPTIMISED_GAIN_ERROR
  high, and the first metering read after a reset records "optimum setting missing".
- VERSION reads 0x00. Undocumented addresses read 0 and ignore writes (violation recorded).
- CRC: 0xFFFFFFFF while disabled; otherwise crc32(config) ^ crc32(reset config) ^ 0x48739163,
  so the reset configuration gives 0x48739163 and any change gives another value.
- Energy: rate 206,900 x P / 4,862,401 LSB/s; the fraction is carried between steps. Half-full
  latches on crossing +-0x400000, overflow on wrapping through 0x7FFFFF/0x800000.
- Ampere-hour mode and CF on IRMS: 206,900 LSB/s at IRMS = 9,032,007 (scaling not given).
- CF pulses: counted, not shaped. One pulse per CFxDEN DFC steps (0 treated as 1) of the
  selected quantity in either direction; code 1000/1001 carry (A + B) / 2. cf1_pulses and
  cf2_pulses count pulses seen on the pins and survive chip resets.
- No-load: |code| < 4,862,401 / (1.4 x (65,536 - X_NOLOAD)); sign bits frozen in no-load and
  0 in positive-only/absolute (or antitamper) modes; no-load IRQ bits latch on entry only.
- Sag (section 3.9; the sister parts' datasheets say it outright: the flag is set "at the end
  of the SAGCYC-th half line cycle for which the line voltage falls below the threshold"): a
  half cycle counts when its peak abs(V) stays below SAGLVL, and SAG latches at the end of the
  SAGCYC-th such half cycle in a row. Half cycles are the chip's own waveform's (the V register
  reads the same phase), and go on at the last non-zero line frequency once the voltage is
  gone (no zero crossings at 0 V: the chip's half-line-cycle timer keeps running), so a sag to
  0 V is detected too. So the half cycle in which the line fails counts only if what it
  reached before the failure stays below SAGLVL: failing to 0 V from a peak pk at phase f
  (0..1 of a half cycle), it counts when pk x sin(pi x min(f, 1/2)) < SAGLVL, and the flag
  comes SAGCYC - f half cycles later if it counts, SAGCYC + 1 - f if not: between
  SAGCYC - a and SAGCYC + 1 - a half cycles, a = asin(SAGLVL / pk) / pi (0.295 for a SAGLVL of
  80 % of the peak), never at once. Latched once per sag, re-armed when the voltage recovers;
  the timer's length is fixed when the sag starts (a SAGCYC written during a sag applies to
  the next one). `next_event_s()` tells a host clock when the flag is due.
- Line-cycle mode: the half-cycle count runs from the first LINECYC write, so enabling a
  quantity mid-period gives a partial first period. LINECYC = 0: no CYCEND. PFMODE (PF from
  line-cycle energies), REVP, ZX pins, pulse widths, integrator and HPF are not modelled.
- Waveform registers V/IA/IB read the instantaneous sample at the chip's current time;
  inputs are not clipped (registers saturate at their width instead).
- The chip is powered at construction (the same as power_up()).
- Measurement noise (noise_1s, default 0 = none): white noise in the active and reactive
  power of both channels, input-referred (added with the offsets, before the xGAIN
  registers), a property of chip time and not of how the host steps. Its level is the sd of
  its mean over 1 s, in power codes: over a window of T seconds the mean has sd
  noise_1s / sqrt(T / 1 s), so the energy's noise grows as sqrt(T). The datasheet's only
  figure (p.1: "less than 0.1 % error in active and reactive energy measurements over a
  dynamic range of 3000:1") gives NOISE_1S: at 1/3000 of full scale (FULL_SCALE_POWER /
  3000 = 1,620.8 codes) an energy read over a 10 s accumulation is taken to be within
  0.1 % at 3 sigma, so the 10 s mean has sd 1,620.8 x 0.001 / 3 = 0.540 codes and
  NOISE_1S = 0.540 x sqrt(10) = 1.709 codes. The noise is held on a fixed grid of
  NOISE_CELL_S = 0.1 s of chip time (the power filters settle in about 200 ms: the AWATT
  register and the no-load comparison see a band-limited power, sd NOISE_1S / sqrt(0.1)
  = 5.4 codes); a host step inside a cell draws nothing, a step across many whole cells
  draws their mean once (sd NOISE_1S / sqrt(n x 0.1 s)). The energy over any window is
  then the exact integral of the same noise process whatever the step sizes, and a given
  seed and sequence of calls gives the same run.
"""

import binascii
import math
import random

FULL_SCALE_RMS = 9_032_007
FULL_SCALE_POWER = 4_862_401
ENERGY_LSB_PER_S_FS = 206_900
WAVE_FULL_SCALE = 6_500_000
CLKIN_HZ = 3_580_000
PERIOD_CLOCK_HZ = CLKIN_HZ / 16          # 223,750 Hz: PERIOD and ANGLE LSB
PHCAL_STEP_S = 4 / CLKIN_HZ              # 1.117 us
ZXTOUT_LSB_S = 256 / CLKIN_HZ            # 71.5 us
READY_DELAY_S = 0.066                    # power-up: 26 ms + 40 ms
RESET_READY_DELAY_S = 0.001              # RESET pin or SWRST
UNLOCK_KEY = 0xAD
OPTIMUM_SETTING = 0x0030
UNOPTIMISED_GAIN_ERROR = 0.003           # our choice: what a missing 0x120 write costs
CRC_RESET_VALUE = 0x48739163
MAX_VIOLATIONS = 10_000                  # the list stops growing; violation_count keeps counting
# The datasheet's accuracy figure [DS p.1] and how it is read (module docstring): the noise level.
DATASHEET_ERROR = 0.001                  # "less than 0.1 % error" ...
DATASHEET_DYNAMIC_RANGE = 3000           # ... "over a dynamic range of 3000:1"
DATASHEET_WINDOW_S = 10.0                # our reading: an energy accumulated over 10 s ...
DATASHEET_SIGMAS = 3.0                   # ... within the 0.1 % at 3 sigma
NOISE_1S = (FULL_SCALE_POWER / DATASHEET_DYNAMIC_RANGE * DATASHEET_ERROR / DATASHEET_SIGMAS
            * math.sqrt(DATASHEET_WINDOW_S))   # 1.709 power codes: sd of the noise's 1 s mean
NOISE_CELL_S = 0.1                       # the noise is held this long (the power filter's band)
_ENERGY_K = ENERGY_LSB_PER_S_FS / FULL_SCALE_POWER
_IRMS_K = ENERGY_LSB_PER_S_FS / FULL_SCALE_RMS
_ZX_MIN = 1 / 1250                       # below this fraction of full scale: no zero crossings

# IRQSTATA bits (group B uses bits 0 to 13 with the same meaning for channel B).
IRQ_AEHF, IRQ_VAREHF, IRQ_VAEHF = 1 << 0, 1 << 1, 1 << 2
IRQ_AEOF, IRQ_VAREOF, IRQ_VAEOF = 1 << 3, 1 << 4, 1 << 5
IRQ_AP_NOLOAD, IRQ_VAR_NOLOAD, IRQ_VA_NOLOAD = 1 << 6, 1 << 7, 1 << 8
IRQ_APSIGN, IRQ_VARSIGN = 1 << 9, 1 << 10
IRQ_ZXTO_I, IRQ_ZXI, IRQ_OI = 1 << 11, 1 << 12, 1 << 13
IRQ_ZXTO, IRQ_ZXV, IRQ_OV, IRQ_WSMP = 1 << 14, 1 << 15, 1 << 16, 1 << 17
IRQ_CYCEND, IRQ_SAG, IRQ_RESET, IRQ_CRC = 1 << 18, 1 << 19, 1 << 20, 1 << 21

# The register map, declared once. 24-bit registers are listed at 0x2xx; each is also reached
# as a 32-bit register at 0x3xx (same storage). Access: "rw", "r" (read-only), "w" (write-only).
#   name            address width reset      signed access
REGISTERS = (
    ("SAGCYC",         0x000, 8,  0x00,      False, "rw"),
    ("DISNOLOAD",      0x001, 8,  0x00,      False, "rw"),
    ("LCYCMODE",       0x004, 8,  0x40,      False, "rw"),
    ("PGA_V",          0x007, 8,  0x00,      False, "rw"),
    ("PGA_IA",         0x008, 8,  0x00,      False, "rw"),
    ("PGA_IB",         0x009, 8,  0x00,      False, "rw"),
    ("WRITE_PROTECT",  0x040, 8,  0x00,      False, "rw"),
    ("LAST_OP",        0x0FD, 8,  0x00,      False, "r"),
    ("UNLOCK",         0x0FE, 8,  0x00,      False, "w"),   # the 0xAD key [DS p.18]
    ("LAST_RWDATA_8",  0x0FF, 8,  0x00,      False, "r"),
    ("VERSION",        0x702, 8,  0x00,      False, "r"),   # value not in the datasheet: 0x00
    ("EX_REF",         0x800, 8,  0x00,      False, "rw"),
    ("ZXTOUT",         0x100, 16, 0xFFFF,    False, "rw"),
    ("LINECYC",        0x101, 16, 0x0000,    False, "rw"),
    ("CONFIG",         0x102, 16, 0x8004,    False, "rw"),
    ("CF1DEN",         0x103, 16, 0x003F,    False, "rw"),
    ("CF2DEN",         0x104, 16, 0x003F,    False, "rw"),
    ("CFMODE",         0x107, 16, 0x0300,    False, "rw"),
    ("PHCALA",         0x108, 16, 0x0000,    False, "rw"),  # 10-bit sign-magnitude
    ("PHCALB",         0x109, 16, 0x0000,    False, "rw"),
    ("PFA",            0x10A, 16, 0x0000,    True,  "r"),
    ("PFB",            0x10B, 16, 0x0000,    True,  "r"),
    ("ANGLE_A",        0x10C, 16, 0x0000,    True,  "r"),
    ("ANGLE_B",        0x10D, 16, 0x0000,    True,  "r"),
    ("PERIOD",         0x10E, 16, 0x0000,    False, "r"),
    ("ALT_OUTPUT",     0x110, 16, 0x0000,    False, "rw"),
    ("OPT_SETTING",    0x120, 16, 0x0000,    False, "rw"),  # needs the key first
    ("LAST_ADD",       0x1FE, 16, 0x0000,    False, "r"),
    ("LAST_RWDATA_16", 0x1FF, 16, 0x0000,    False, "r"),
    ("SAGLVL",         0x200, 24, 0x000000,  False, "rw"),
    ("ACCMODE",        0x201, 24, 0x000000,  False, "rw"),  # bits 10..21 are live status
    ("AP_NOLOAD",      0x203, 24, 0x00E419,  False, "rw"),
    ("VAR_NOLOAD",     0x204, 24, 0x00E419,  False, "rw"),
    ("VA_NOLOAD",      0x205, 24, 0x000000,  False, "rw"),
    ("AVA",            0x210, 24, 0,         True,  "r"),
    ("BVA",            0x211, 24, 0,         True,  "r"),
    ("AWATT",          0x212, 24, 0,         True,  "r"),
    ("BWATT",          0x213, 24, 0,         True,  "r"),
    ("AVAR",           0x214, 24, 0,         True,  "r"),
    ("BVAR",           0x215, 24, 0,         True,  "r"),
    ("IA",             0x216, 24, 0,         True,  "r"),
    ("IB",             0x217, 24, 0,         True,  "r"),
    ("V",              0x218, 24, 0,         True,  "r"),
    ("IRMSA",          0x21A, 24, 0,         False, "r"),
    ("IRMSB",          0x21B, 24, 0,         False, "r"),
    ("VRMS",           0x21C, 24, 0,         False, "r"),
    ("AENERGYA",       0x21E, 24, 0,         True,  "r"),
    ("AENERGYB",       0x21F, 24, 0,         True,  "r"),
    ("RENERGYA",       0x220, 24, 0,         True,  "r"),
    ("RENERGYB",       0x221, 24, 0,         True,  "r"),
    ("APENERGYA",      0x222, 24, 0,         True,  "r"),
    ("APENERGYB",      0x223, 24, 0,         True,  "r"),
    ("OVLVL",          0x224, 24, 0xFFFFFF,  False, "rw"),
    ("OILVL",          0x225, 24, 0xFFFFFF,  False, "rw"),
    ("VPEAK",          0x226, 24, 0,         False, "r"),
    ("RSTVPEAK",       0x227, 24, 0,         False, "r"),
    ("IAPEAK",         0x228, 24, 0,         False, "r"),
    ("RSTIAPEAK",      0x229, 24, 0,         False, "r"),
    ("IBPEAK",         0x22A, 24, 0,         False, "r"),
    ("RSTIBPEAK",      0x22B, 24, 0,         False, "r"),
    ("IRQENA",         0x22C, 24, 0x100000,  False, "rw"),
    ("IRQSTATA",       0x22D, 24, 0,         False, "r"),
    ("RSTIRQSTATA",    0x22E, 24, 0,         False, "r"),
    ("IRQENB",         0x22F, 24, 0,         False, "rw"),
    ("IRQSTATB",       0x230, 24, 0,         False, "r"),
    ("RSTIRQSTATB",    0x231, 24, 0,         False, "r"),
    ("AIGAIN",         0x280, 24, 0x400000,  False, "rw"),
    ("AVGAIN",         0x281, 24, 0x400000,  False, "rw"),
    ("AWGAIN",         0x282, 24, 0x400000,  False, "rw"),
    ("AVARGAIN",       0x283, 24, 0x400000,  False, "rw"),
    ("AVAGAIN",        0x284, 24, 0x400000,  False, "rw"),
    ("RESERVED_285",   0x285, 24, 0,         True,  "rw"),
    ("AIRMSOS",        0x286, 24, 0,         True,  "rw"),
    ("RESERVED_287",   0x287, 24, 0,         True,  "rw"),
    ("VRMSOS",         0x288, 24, 0,         True,  "rw"),
    ("AWATTOS",        0x289, 24, 0,         True,  "rw"),
    ("AVAROS",         0x28A, 24, 0,         True,  "rw"),
    ("AVAOS",          0x28B, 24, 0,         True,  "rw"),
    ("BIGAIN",         0x28C, 24, 0x400000,  False, "rw"),
    ("BVGAIN",         0x28D, 24, 0x400000,  False, "rw"),
    ("BWGAIN",         0x28E, 24, 0x400000,  False, "rw"),
    ("BVARGAIN",       0x28F, 24, 0x400000,  False, "rw"),
    ("BVAGAIN",        0x290, 24, 0x400000,  False, "rw"),
    ("RESERVED_291",   0x291, 24, 0,         True,  "rw"),
    ("BIRMSOS",        0x292, 24, 0,         True,  "rw"),
    ("RESERVED_293",   0x293, 24, 0,         False, "rw"),
    ("RESERVED_294",   0x294, 24, 0,         False, "rw"),
    ("BWATTOS",        0x295, 24, 0,         True,  "rw"),
    ("BVAROS",         0x296, 24, 0,         True,  "rw"),
    ("BVAOS",          0x297, 24, 0,         True,  "rw"),
    ("LAST_RWDATA_24", 0x2FF, 24, 0,         False, "r"),   # 0x3FF: LAST_RWDATA_32
    ("CRC",            0x37F, 32, 0xFFFFFFFF, False, "r"),  # 32-bit only
)

REG = {name: addr for name, addr, *_ in REGISTERS}
SIGNED = frozenset(name for name, _, _, _, signed, _ in REGISTERS if signed)
_RESET = {name: reset for name, _, _, reset, _, _ in REGISTERS}
# address -> (name, width in bytes, access); 32-bit mirrors added for every 24-bit register
_DECODE = {}
for _name, _addr, _bits, _reset, _signed, _acc in REGISTERS:
    _DECODE[_addr] = (_name, _bits // 8, _acc)
    if _bits == 24:
        _DECODE[_addr + 0x100] = (_name, 4, _acc)
del _name, _addr, _bits, _reset, _signed, _acc

_ENERGY_INDEX = {"AENERGYA": 0, "RENERGYA": 1, "APENERGYA": 2,
                 "AENERGYB": 3, "RENERGYB": 4, "APENERGYB": 5}
_POWER_INDEX = {"AWATT": 0, "AVAR": 1, "AVA": 2, "BWATT": 3, "BVAR": 4, "BVA": 5}
_PEAK_INDEX = {"VPEAK": 0, "RSTVPEAK": 0, "IAPEAK": 1, "RSTIAPEAK": 1,
               "IBPEAK": 2, "RSTIBPEAK": 2}
_LAST_NAMES = frozenset(("LAST_OP", "LAST_ADD", "LAST_RWDATA_8", "LAST_RWDATA_16",
                         "LAST_RWDATA_24"))
_METERING = frozenset(_ENERGY_INDEX) | frozenset(_POWER_INDEX) | frozenset(
    ("IRMSA", "IRMSB", "VRMS", "PFA", "PFB"))
_CRC_NAMES = ("LCYCMODE", "PGA_V", "PGA_IA", "PGA_IB", "WRITE_PROTECT", "CONFIG", "CF1DEN",
              "CF2DEN", "CFMODE", "PHCALA", "PHCALB", "ALT_OUTPUT", "ACCMODE", "IRQENA",
              "IRQENB") + tuple(n for n, a, *_ in REGISTERS if 0x280 <= a <= 0x297)
_PGA_GAIN = {0: 1, 1: 2, 2: 4, 3: 8, 4: 16}
_PGA_GAIN_IA = {0: 1, 1: 2, 2: 4, 3: 8, 4: 16, 5: 22}
# LCYCMODE bit -> energy index (bit 6 is RSTREAD)
_LCYC_INDEX = (0, 3, 1, 4, 2, 5)
# CFxSEL code -> (DFC indices as a bit mask, divider factor). DFC 6/7 = IRMS A/B.
_CF_SOURCES = {0: (1 << 0, 1), 1: (1 << 1, 1), 2: (1 << 2, 1), 3: (1 << 6, 1),
               4: (1 << 3, 1), 5: (1 << 4, 1), 6: (1 << 5, 1), 7: (1 << 7, 1),
               8: ((1 << 6) | (1 << 7), 2), 9: ((1 << 0) | (1 << 3), 2)}
_HALF = 0x400000
_CRC_RESET_BYTES = b"".join(_RESET[n].to_bytes(3, "little") for n in _CRC_NAMES)


def _sext24(v):
    """Two's complement value of a 24-bit register."""
    v &= 0xFFFFFF
    return v - 0x1000000 if v & 0x800000 else v


def _code24(x):
    """A signed quantity as a saturated 24-bit register value."""
    v = int(round(x))
    v = 0x7FFFFF if v > 0x7FFFFF else -0x800000 if v < -0x800000 else v
    return v & 0xFFFFFF


def _code16(v):
    v = 0x7FFF if v > 0x7FFF else -0x8000 if v < -0x8000 else v
    return v & 0xFFFF


def _sin_max(a, b):
    """The largest sin(pi x) for x in [a, b], 0 <= a <= b <= 1: a half cycle's peak share."""
    if a <= 0.5 <= b:
        return 1.0
    return max(math.sin(math.pi * a), math.sin(math.pi * b))


def _wrap24(v):
    return ((v + 0x800000) & 0xFFFFFF) - 0x800000


class ADE7953:
    """The chip: registers, SPI/I2C slave, energy accumulation, flags and CF pulses."""

    I2C_ADDRESS = 0x38

    def __init__(self, *, seed: int = 0, strict: bool = True,
                 gain_error: dict | None = None, phase_error_deg: dict | None = None,
                 noise_1s: float = 0.0, offset_codes: dict | None = None):
        ge = gain_error or {}
        self._ge = (1.0 + ge.get("V", 0.0), 1.0 + ge.get("IA", 0.0), 1.0 + ge.get("IB", 0.0))
        pe = phase_error_deg or {}
        self._pe = (pe.get("A", 0.0), pe.get("B", 0.0))
        oc = offset_codes or {}
        self._oc = (oc.get("A", 0.0), oc.get("B", 0.0))
        self._noise_1s = float(noise_1s)
        self._rng = random.Random(seed)
        self._noise = (0.0, 0.0, 0.0, 0.0)   # input-referred W, var of A then B (power codes)
        self._noise_gain = (1.0, 1.0, 1.0, 1.0)
        self._cell_left = 0.0                # chip time left in the current noise cell
        self.strict = strict
        self.violations = []
        self.violation_count = 0
        self.cf1_pulses = 0
        self.cf2_pulses = 0
        self._inputs = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0)   # v, ia, ib, phase a, phase b, hz
        self._hz_last = 50.0
        self._powered = False
        self._reset_low = False
        self._spi_active = False
        self._spi_buf = bytearray()
        self.power_up()

    # ---- power and reset -------------------------------------------------------------
    def power_up(self) -> None:
        """Supply on: registers to reset values, ready after READY_DELAY_S.

        The RESET pin counts as released (the MCU's pins come up as inputs, RESET pulled up).
        """
        self._powered = True
        self._reset_low = False
        self._reset(READY_DELAY_S)

    def power_down(self) -> None:
        """Supply off: everything is ignored until power_up()."""
        self._powered = False
        self._ready = False
        self._spi_active = False

    def set_reset_pin(self, level: int) -> None:
        """RESET pin (active low): held low, the chip ignores the bus; rising = reset."""
        if not self._powered:
            return
        if not level:
            self._reset_low = True
            self._ready = False
        elif self._reset_low:
            self._reset_low = False
            self._reset(RESET_READY_DELAY_S)

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def irq_asserted(self) -> bool:
        """IRQ pin low: a latched group-A status bit is enabled."""
        return self._ready and (self._irqa & self._regs["IRQENA"]) != 0

    def poke_status(self, *, sag: bool = False) -> None:
        """Latch status bits directly, whatever the configuration (a test hook)."""
        if sag and self._ready:
            self._irqa |= IRQ_SAG

    def raise_sag(self) -> None:
        """Latch SAG now, as the chip does when its detection ends, if the driver configured
        sag detection (SAGLVL and SAGCYC non-zero): a simulator's hook to place the warning on
        an instant of its choosing (SimBoard.power_off(sag_at_write=k)), its inputs already
        failed. The sag in force then counts as detected: no second flag for it."""
        if not self._ready:
            return
        if self._dirty:
            self._recompute()
        r = self._regs
        if r["SAGLVL"] and r["SAGCYC"]:
            self._irqa |= IRQ_SAG
            self._sag_armed = False

    def sag_delay_max_s(self) -> float | None:
        """The longest the chip can take to flag a line that fails to 0 V now, whatever the
        instant of its cycle (module docstring, Sag): (SAGCYC + 1 - asin(SAGLVL / pk) / pi)
        half cycles of the line frequency, pk the voltage's peak now. None: sag detection off."""
        if self._dirty and self._ready:
            self._recompute()
        r = self._regs
        if not (r["SAGLVL"] and r["SAGCYC"]):
            return None
        pk = self._pk[0] if self._pk else 0
        a = math.asin(min(1.0, r["SAGLVL"] / pk)) / math.pi if pk > 0 else 0.5
        return (r["SAGCYC"] + 1.0 - a) / (2.0 * self._hz_last)

    def next_event_s(self) -> float | None:
        """Chip time until the next flag the model times by itself (a sag being counted),
        or None: a host clock that moves in big steps stops there, so the IRQ pin falls on
        time."""
        if not self._powered or not self._ready or self._reset_low:
            return None
        if self._dirty:
            self._recompute()
        if not self._sag_armed:
            return None
        return max(0.0, self._sag_delay - self._sag_t)

    def _reset(self, delay):
        """Every register to its reset value; the chip answers again after `delay` s."""
        self._regs = dict(_RESET)
        self._energy = [0] * 6
        self._lc_acc = [0] * 6
        self._frac = [0.0] * 8
        self._peaks = [0, 0, 0]
        self._irqa = 0
        self._irqb = 0
        self._nl = 0          # live no-load bits, ACCMODE layout (16..21)
        self._sign = 0        # live sign bits, ACCMODE layout (10..13)
        self._last32 = 0
        self._key_armed = False
        self._den_pending = None
        self._armed_prev = False
        self._den_prev = None
        self._swrst = False
        self._iface = None
        self._locked = None
        self._i2c_ptr = None
        self._opt_warned = False
        self._crc_ref = None
        self._cf_acc = [0, 0]
        self._lc_mask = 0
        self._linecyc = 0     # LINECYC of the running period (0: none running)
        self._linecyc_next = None
        self._lc_left = 0.0   # half cycles left in the running period
        self._lc_epoch = 0
        self._hc = 0.0
        self._hc_count = 0
        self._sag_cond = False
        self._sag_armed = False
        self._sag_t = 0.0
        self._sag_delay = 0.0
        self._vseg = None     # (half cycle, phase 0..1, V peak) when the voltage took its level
        self._hcpk = (-1, 0.0)   # (half cycle, its peak abs(V) before the present level)
        self._pk = ()
        self._zx_present = 0
        self._zx_since = [0.0, 0.0, 0.0]
        self._zxto_done = 0
        self._period = 0
        self._t = 0.0
        self._levels_stale = True
        self._rates = ()
        self._pw = [0.0] * 6
        self._pf = [0, 0]
        self._ready = False
        self._wait = delay
        self._dirty = True

    def _become_ready(self):
        self._ready = True
        self._irqa |= IRQ_RESET
        self._dirty = True

    # ---- analog inputs and time ------------------------------------------------------
    def set_inputs(self, *, v_pin: float, ia_pin: float, ib_pin: float,
                   phase_a_deg: float, phase_b_deg: float, hz: float) -> None:
        """Signals at the pins: volts rms before the PGA, current lag in degrees, line hz."""
        self._inputs = (float(v_pin), float(ia_pin), float(ib_pin),
                        float(phase_a_deg), float(phase_b_deg), float(hz))
        if hz > 0:
            self._hz_last = float(hz)
        self._dirty = True

    def advance(self, seconds: float) -> None:
        """Move chip time forward: energies, CF pulses, flags, line cycles, sag."""
        if seconds <= 0.0 or not self._powered or self._reset_low:
            return
        if not self._ready:
            self._wait -= seconds
            if self._wait > 0.0:
                return
            seconds = -self._wait
            self._become_ready()
            if seconds <= 0.0:
                return
        if self._dirty:
            self._recompute()
        self._t += seconds
        if self._lc_running:
            rate = self._hc_rate
            while seconds > 0.0:
                to_end = self._lc_left / rate
                if to_end > seconds:
                    self._lc_left -= seconds * rate
                    self._step(seconds)
                    break
                self._step(to_end)
                seconds -= to_end
                self._end_cycle()
                if not self._lc_running:
                    self._step(seconds)
                    break
        else:
            self._step(seconds)

    def _step(self, dt):
        """Accumulate `dt` seconds at the cached rates and run the timers."""
        if self._noise_1s:
            self._noisy(dt)
        else:
            self._accumulate(dt)
        self._irqa |= IRQ_WSMP
        hc = self._hc + dt * self._hc_rate
        if hc >= 1.0:
            k = int(hc)
            hc -= k
            self._half_cycles(k)
        self._hc = hc
        if self._watch:
            self._slow(dt)

    def _noisy(self, dt):
        """Accumulate `dt` with the noise held on its fixed grid of NOISE_CELL_S cells:
        the rest of the current cell, then the whole cells (one draw: their mean), then
        the start of a new cell. Steps inside a cell (the bus traffic) draw nothing."""
        left = self._cell_left
        if dt <= left:
            self._cell_left = left - dt
            self._accumulate(dt)
            return
        if left > 0.0:
            self._accumulate(left)
            dt -= left
        n = int(dt / NOISE_CELL_S)
        if n:
            span = n * NOISE_CELL_S
            self._draw(span)
            self._accumulate(span)
            dt = max(0.0, dt - span)
        self._draw(NOISE_CELL_S)
        self._accumulate(dt)
        self._cell_left = NOISE_CELL_S - dt

    def _draw(self, span):
        """New noise: its mean over `span` seconds (sd NOISE_1S / sqrt(span)), then the rates."""
        g, sd = self._rng.gauss, self._noise_1s / math.sqrt(span)
        self._noise = (g(0.0, sd), g(0.0, sd), g(0.0, sd), g(0.0, sd))
        self._evaluate(self._noisy_power(), True)

    def _noisy_power(self):
        """The six power codes with the current noise (input-referred: times the gains)."""
        p, n, k = self._base, self._noise, self._noise_gain
        return (p[0] + n[0] * k[0], p[1] + n[1] * k[1], p[2],
                p[3] + n[2] * k[2], p[4] + n[3] * k[3], p[5])

    def _accumulate(self, dt):
        """dt seconds at the cached energy rates: into the registers and the CF outputs."""
        frac = self._frac
        for i, rate in self._rates:
            a = frac[i] + rate * dt
            n = int(a)
            frac[i] = a - n
            if n:
                self._count(i, n)

    def _count(self, i, n):
        """n LSB steps of DFC i: into the energy register (or line-cycle sum) and the CFs."""
        bit = 1 << i
        if self._lc_mask & bit:
            self._lc_acc[i] += n
        elif i < 6:
            e = self._energy
            old = e[i]
            new = old + n
            kind = i % 3
            flags = 0
            if old < _HALF <= new or old > -_HALF >= new:
                flags = IRQ_AEHF << kind
            if new > 0x7FFFFF or new < -0x800000:
                flags |= IRQ_AEOF << kind
                new = _wrap24(new)
            e[i] = new
            if flags:
                if i < 3:
                    self._irqa |= flags
                else:
                    self._irqb |= flags
        if self._cf_bits & bit:
            for pin in (0, 1):
                src = self._cf[pin]
                if src is not None and src[0] & bit:
                    a = self._cf_acc[pin] + n
                    d = src[1]
                    if a >= d or a <= -d:
                        q = abs(a) // d
                        a = a - q * d if a > 0 else a + q * d
                        if pin:
                            self.cf2_pulses += q
                        else:
                            self.cf1_pulses += q
                    self._cf_acc[pin] = a

    def _half_cycles(self, k):
        """k voltage half cycles went by: zero-crossing flags (ZX_EDGE honoured)."""
        n0 = self._hc_count
        self._hc_count = n0 + k
        present = self._zx_present
        if not present:
            return
        edge = (self._regs["CONFIG"] >> 12) & 3
        # crossing number c is positive-going when c is even
        if edge in (0, 3) or k >= 2 or ((n0 + 1) & 1) == (0 if edge == 2 else 1):
            if present & 1:
                self._irqa |= IRQ_ZXV
            if present & 2:
                self._irqa |= IRQ_ZXI
            if present & 4:
                self._irqb |= IRQ_ZXI

    def _slow(self, dt):
        """Rare work: peaks and over-limit flags after a change, sag and ZXTO timers."""
        watch = False
        if self._levels_stale:
            self._levels_stale = False
            pk, peaks, r = self._pk, self._peaks, self._regs
            for j in (0, 1, 2):
                if pk[j] > peaks[j]:
                    peaks[j] = pk[j]
            if pk[0] > r["OVLVL"]:
                self._irqa |= IRQ_OV
            if pk[1] > r["OILVL"]:
                self._irqa |= IRQ_OI
            if pk[2] > r["OILVL"]:
                self._irqb |= IRQ_OI
        if self._sag_armed:
            self._sag_t += dt
            if self._sag_t >= self._sag_delay - 1e-9:
                self._irqa |= IRQ_SAG
                self._sag_armed = False
            else:
                watch = True
        waiting = ~self._zx_present & 7 & ~self._zxto_done
        if waiting:
            limit = self._regs["ZXTOUT"] * ZXTOUT_LSB_S
            for j, flag in ((0, IRQ_ZXTO), (1, IRQ_ZXTO_I), (2, IRQ_ZXTO_I)):
                if waiting >> j & 1 and self._t - self._zx_since[j] >= limit:
                    self._zxto_done |= 1 << j
                    if j == 2:
                        self._irqb |= flag
                    else:
                        self._irqa |= flag
            watch = watch or bool(~self._zx_present & 7 & ~self._zxto_done)
        self._watch = watch

    def _end_cycle(self):
        """A line-cycle period ended: load and hold the sums, CYCEND, apply a new LINECYC."""
        mask = self._lc_mask
        for i in range(6):
            if mask >> i & 1:
                self._energy[i] = _wrap24(self._lc_acc[i])
                self._lc_acc[i] = 0
        self._lc_epoch += 1
        self._irqa |= IRQ_CYCEND
        if self._linecyc_next is not None:
            self._linecyc = self._linecyc_next
            self._linecyc_next = None
        self._lc_left = float(self._linecyc)
        self._lc_running = self._linecyc > 0 and self._lc_running

    # ---- the measurement model (section 3.2) -----------------------------------------
    def _recompute(self):
        """Codes, thresholds and rates after a change of inputs or registers."""
        r = self._regs
        v_pin, ia_pin, ib_pin, ph_a, ph_b, hz = self._inputs
        opt = 1.0 if r["OPT_SETTING"] == OPTIMUM_SETTING else 1.0 + UNOPTIMISED_GAIN_ERROR
        k = math.sqrt(2.0) / 0.5
        xv = abs(v_pin) * self._ge[0] * _PGA_GAIN.get(r["PGA_V"] & 7, 1) * k
        xa = abs(ia_pin) * self._ge[1] * _PGA_GAIN_IA.get(r["PGA_IA"] & 7, 1) * k * opt
        xb = abs(ib_pin) * self._ge[2] * _PGA_GAIN.get(r["PGA_IB"] & 7, 1) * k * opt

        def g(name):
            return r[name] / 0x400000

        va, vb = xv * g("AVGAIN"), xv * g("BVGAIN")
        ia, ib = xa * g("AIGAIN"), xb * g("BIGAIN")
        self._vrms = math.sqrt(max(0.0, (FULL_SCALE_RMS * va) ** 2 + _sext24(r["VRMSOS"]) * 4096))
        self._irms = (math.sqrt(max(0.0, (FULL_SCALE_RMS * ia) ** 2 + _sext24(r["AIRMSOS"]) * 4096)),
                      math.sqrt(max(0.0, (FULL_SCALE_RMS * ib) ** 2 + _sext24(r["BIRMSOS"]) * 4096)))
        self._pk = (int(round(WAVE_FULL_SCALE * va)), int(round(WAVE_FULL_SCALE * ia)),
                    int(round(WAVE_FULL_SCALE * ib)))
        phis = (self._phase(ph_a + self._pe[0], r["PHCALA"], hz) + (180.0 if ia_pin < 0 else 0.0),
                self._phase(ph_b + self._pe[1], r["PHCALB"], hz) + (180.0 if ib_pin < 0 else 0.0))
        base = []
        for ch, (vx, ix, pre) in enumerate((( va, ia, "A"), (vb, ib, "B"))):
            s = FULL_SCALE_POWER * vx * ix
            phi = math.radians(phis[ch])
            off = self._oc[ch]
            base += [(s * math.cos(phi) + off) * g(pre + "WGAIN") + _sext24(r[pre + "WATTOS"]) / 512,
                     (s * math.sin(phi) + off) * g(pre + "VARGAIN") + _sext24(r[pre + "VAROS"]) / 512,
                     s * g(pre + "VAGAIN") + _sext24(r[pre + "VAOS"]) / 512]
        self._base = base
        self._noise_gain = (g("AWGAIN"), g("AVARGAIN"), g("BWGAIN"), g("BVARGAIN"))
        self._wave = (self._pk[0], self._pk[1] * (-1 if ia_pin < 0 else 1),
                      self._pk[2] * (-1 if ib_pin < 0 else 1),
                      math.radians(phis[0] - (180.0 if ia_pin < 0 else 0.0)),
                      math.radians(phis[1] - (180.0 if ib_pin < 0 else 0.0)), hz)
        # line frequency, phase angles, zero crossings
        present = 0
        if hz > 0:
            present = (xv * g("AVGAIN") >= _ZX_MIN) | (ia >= _ZX_MIN) << 1 | (ib >= _ZX_MIN) << 2
        if present & 1:
            self._period = min(0xFFFF, max(0, round(PERIOD_CLOCK_HZ / hz) - 1))
        self._angle = tuple(
            _code16(round(((p + 180.0) % 360.0 - 180.0) / 360.0 * PERIOD_CLOCK_HZ / hz))
            if hz > 0 else 0 for p in phis)
        for j in range(3):
            if not present >> j & 1 and self._zx_present >> j & 1:
                self._zx_since[j] = self._t
        self._zxto_done &= ~present
        self._zx_present = present
        self._hc_rate = 2.0 * hz if hz > 0 else 0.0
        # sag: the peak of the half cycle running now, then the half cycles still to count
        n, f, pk = self._hc_count, self._hc, self._pk[0]
        seg = self._vseg
        if seg is None:
            self._vseg = (n, f, pk)
        elif seg[2] != pk:       # the level that ends now reached this much of this half cycle
            before = self._hcpk[1] if self._hcpk[0] == n else 0.0
            self._hcpk = (n, max(before, seg[2] * _sin_max(seg[1] if seg[0] == n else 0.0, f)))
            self._vseg = (n, f, pk)
        cond = bool(r["SAGLVL"] and r["SAGCYC"] and pk < r["SAGLVL"])
        if cond and not self._sag_cond:
            counts = (self._hcpk[1] if self._hcpk[0] == n else 0.0) < r["SAGLVL"]
            halves = 1.0 - f + r["SAGCYC"] - (1 if counts else 0)
            self._sag_delay = halves / (2.0 * self._hz_last)
            self._sag_t = 0.0
            self._sag_armed = True
        elif not cond:
            self._sag_armed = False
        self._sag_cond = cond
        # no-load thresholds (section 3.10); -1 when DISNOLOAD turns the detection off
        dis = r["DISNOLOAD"]
        thr = [-1.0 if dis >> b & 1 else FULL_SCALE_POWER / (1.4 * (65536 - min(r[n], 65535)))
               for b, n in enumerate(("AP_NOLOAD", "VAR_NOLOAD", "VA_NOLOAD"))]
        # CF sources and the IRMS DFCs they may need
        cfm = r["CFMODE"]
        self._cf = [None, None]
        for pin in (0, 1):
            sel = cfm >> (4 * pin) & 0xF
            if not cfm >> (8 + pin) & 1 and sel in _CF_SOURCES:
                mask, factor = _CF_SOURCES[sel]
                self._cf[pin] = (mask, max(1, r["CF2DEN" if pin else "CF1DEN"]) * factor)
        self._cf_bits = (self._cf[0] or (0,))[0] | (self._cf[1] or (0,))[0]
        acc = r["ACCMODE"]
        self._irms_rates = tuple((6 + ch, self._irms[ch] * _IRMS_K) for ch in (0, 1)
                                 if self._cf_bits >> (6 + ch) & 1 and self._irms[ch])
        # per channel: thresholds, energy modes, and the apparent-energy rate in Ah mode
        self._chan = tuple((*thr, acc >> (2 * ch) & 3, acc >> (4 + 2 * ch) & 3,
                            self._irms[ch] * _IRMS_K if acc >> (8 + ch) & 1 else None)
                           for ch in (0, 1))
        lcm = r["LCYCMODE"]
        self._lc_mask = sum(1 << _LCYC_INDEX[b] for b in range(6) if lcm >> b & 1)
        self._lc_running = self._linecyc > 0 and hz > 0 and bool(present & 1)
        self._levels_stale = True
        self._watch = True
        self._dirty = not self._ready   # evaluate again (latching) once the chip is ready
        self._evaluate(self._noisy_power() if self._noise_1s else base, self._ready)

    @staticmethod
    def _phase(lag_deg, phcal, hz):
        """Current lag after the PHCAL block: bit 9 = advance, bits 8:0 = 1.117 us steps."""
        step = min(phcal & 0x1FF, 383) * PHCAL_STEP_S * 360.0 * hz
        return lag_deg - step if phcal & 0x200 else lag_deg + step

    def _evaluate(self, p, latch):
        """No-load, sign bits, PF and energy rates from the six power codes."""
        nl = sign = 0
        rates = []
        pf = [0, 0]
        for ch in (0, 1):
            tp, tq, ts, wm, qm, ah = self._chan[ch]
            j = 3 * ch
            P, Q, S = p[j], p[j + 1], p[j + 2]
            nlp, nlq, nls = abs(P) < tp, abs(Q) < tq, abs(S) < ts
            nl |= (nlp | nls << 1 | nlq << 2) << (16 + j)
            # sign bits: live, frozen in no-load, 0 in the unsigned modes
            if wm not in (1, 2):
                ap_bit = 1 << (10 + ch)
                sign |= self._sign & ap_bit if nlp else ap_bit if P < 0 else 0
            if qm not in (1, 2):
                var_bit = 1 << (12 + ch)
                sign |= self._sign & var_bit if nlq else var_bit if Q < 0 else 0
            if not nlp:
                x = P if wm == 0 or wm == 3 else abs(P) if wm == 2 else P if P > 0 else 0.0
                if x:
                    rates.append((j, x * _ENERGY_K))
            if not nlq:
                x = Q if qm == 0 or qm == 3 else abs(Q) if qm == 2 else -Q if P < 0 else Q
                if x:
                    rates.append((j + 1, x * _ENERGY_K))
            if nls:
                pf[ch] = 0x7FFF
            else:
                x = S * _ENERGY_K if ah is None else ah
                if x:
                    rates.append((j + 2, x))
                if not nlp and S > 0:
                    v = round(abs(P) / S * 32768)
                    pf[ch] = _code16(-v if ((P < 0) if nlq else (Q < 0)) else v)
        if latch:
            entered = nl & ~self._nl
            changed = sign ^ self._sign
            for ch in (0, 1):
                e = entered >> (16 + 3 * ch)
                f = ((e & 1) and IRQ_AP_NOLOAD) | ((e & 2) and IRQ_VA_NOLOAD) \
                    | ((e & 4) and IRQ_VAR_NOLOAD)
                if changed >> (10 + ch) & 1:
                    f |= IRQ_APSIGN
                if changed >> (12 + ch) & 1:
                    f |= IRQ_VARSIGN
                if ch:
                    self._irqb |= f
                else:
                    self._irqa |= f
            self._nl, self._sign = nl, sign
        self._rates = tuple(rates) + self._irms_rates
        self._pw = p
        self._pf = pf

    def _crc(self):
        """CRC register: see the module docstring for the choice."""
        r = self._regs
        if not r["CONFIG"] & 0x100:
            return 0xFFFFFFFF
        vals = dict(r, CONFIG=r["CONFIG"] & ~0x100, ACCMODE=r["ACCMODE"] & 0x3FF)
        data = b"".join(vals[n].to_bytes(3, "little") for n in _CRC_NAMES)
        return binascii.crc32(data) ^ binascii.crc32(_CRC_RESET_BYTES) ^ CRC_RESET_VALUE

    # ---- register values -------------------------------------------------------------
    def _native(self, name):
        """Raw value of a register at its native width (24 bits for the mirrored ones)."""
        if name in _ENERGY_INDEX:
            return self._energy[_ENERGY_INDEX[name]] & 0xFFFFFF
        if name in _POWER_INDEX:
            return _code24(self._pw[_POWER_INDEX[name]])
        if name in _PEAK_INDEX:
            return self._peaks[_PEAK_INDEX[name]]
        if name == "IRQSTATA" or name == "RSTIRQSTATA":
            return self._irqa
        if name == "IRQSTATB" or name == "RSTIRQSTATB":
            return self._irqb
        if name == "ACCMODE":
            return self._regs["ACCMODE"] | self._sign | self._nl
        if name == "VRMS":
            return min(0xFFFFFF, int(round(self._vrms)))
        if name == "IRMSA" or name == "IRMSB":
            return min(0xFFFFFF, int(round(self._irms[name == "IRMSB"])))
        if name == "PFA" or name == "PFB":
            return self._pf[name == "PFB"]
        if name == "ANGLE_A" or name == "ANGLE_B":
            return self._angle[name == "ANGLE_B"]
        if name == "PERIOD":
            return self._period
        if name in ("V", "IA", "IB"):
            vpk, iapk, ibpk, phia, phib, hz = self._wave
            w = math.pi * ((self._hc_count & 1) + self._hc)   # the half-cycle grid's phase
            if name == "V":
                return _code24(vpk * math.sin(w))
            return _code24(iapk * math.sin(w - phia) if name == "IA" else ibpk * math.sin(w - phib))
        if name == "CRC":
            return self._crc()
        if name == "LAST_RWDATA_24":
            return self._last32 & 0xFFFFFF
        if name == "UNLOCK":
            return 0
        return self._regs[name]

    def _access_value(self, name, nbytes):
        """What a read at an address of width `nbytes` returns (32-bit: bit 23 extended)."""
        if self._dirty:
            self._recompute()
        if nbytes == 4 and name == "LAST_RWDATA_24":
            return self._last32 & 0xFFFFFFFF
        v = self._native(name)
        if nbytes == 4 and name != "CRC" and v & 0x800000:
            v |= 0xFF000000
        return v

    def peek(self, addr: int) -> int:
        """Register value as a read at `addr` would return it, without any side effect."""
        info = _DECODE.get(addr)
        return 0 if info is None else self._access_value(info[0], info[1])

    def peek_signed(self, addr: int) -> int:
        """peek() as a signed number for signed registers (and every 32-bit address)."""
        info = _DECODE.get(addr)
        v = self.peek(addr)
        if info is None:
            return 0
        bits = 8 * info[1]
        if (info[0] in SIGNED or bits == 32) and v >> (bits - 1) & 1:
            v -= 1 << bits
        return v

    # ---- transactions (shared by SPI and I2C) ----------------------------------------
    def _violate(self, msg):
        self.violation_count += 1
        if len(self.violations) < MAX_VIOLATIONS:
            self.violations.append(msg)

    def _gate(self, iface):
        """None if the chip answers on `iface`; "" if silent; else a violation message."""
        if not self._powered or self._reset_low:
            return ""
        if self._locked is not None and self._locked != iface:
            return f"{iface} access after COMM_LOCK locked the interface to {self._locked}"
        if not self._ready:
            return "access before ready"
        self._iface = iface
        return None

    def _latch_read(self, addr):
        """(info, value) of a read at `addr`; the side effects wait for _finish_read()."""
        info = _DECODE.get(addr)
        if info is None:
            return None, 0, 0
        return info, self._access_value(info[0], info[1]), self._lc_epoch

    def _begin(self):
        """Start of a completed transaction: the key and a CFxDEN first write are one-shot."""
        self._armed_prev, self._key_armed = self._key_armed, False
        self._den_prev, self._den_pending = self._den_pending, None

    def _end(self):
        if self._den_prev is not None:
            self._violate(f"{self._den_prev[0]} written once (needs two consecutive writes)")
            self._den_prev = None
        if self._swrst:
            self._reset(RESET_READY_DELAY_S)

    def _record_last(self, op, addr, nbytes, value):
        """LAST_OP, LAST_ADD and the LAST_RWDATA register of this width (section 1.7)."""
        r = self._regs
        r["LAST_OP"] = op
        r["LAST_ADD"] = addr
        if nbytes == 1:
            r["LAST_RWDATA_8"] = value
        elif nbytes == 2:
            r["LAST_RWDATA_16"] = value
        else:  # 0x2FF and 0x3FF share storage; 0x3FF keeps all 32 bits of a 32-bit access
            self._last32 = (value if nbytes == 4 else _sext24(value)) & 0xFFFFFFFF

    def _finish_read(self, addr, ndata, latch):
        info, value, epoch = latch
        self._begin()
        if info is None:
            self._violate(f"read of undocumented address 0x{addr:03X}")
        elif ndata != info[1]:
            self._violate(f"wrong width: read of 0x{addr:03X} ({info[0]}, {8 * info[1]}-bit) "
                          f"with {ndata} data bytes")
        else:
            name = info[0]
            self._read_side_effects(name, value, epoch)
            if name not in _LAST_NAMES:
                self._record_last(0x35, addr, ndata, value)
            if name in _METERING and not self._opt_warned \
                    and self._regs["OPT_SETTING"] != OPTIMUM_SETTING:
                self._opt_warned = True
                self._violate("optimum setting missing: metering read without the "
                              "0xAD/0x0FE, 0x0030/0x120 unlock sequence")
        self._end()

    def _read_side_effects(self, name, value, epoch):
        i = _ENERGY_INDEX.get(name)
        if i is not None:
            if self._regs["LCYCMODE"] & 0x40:
                if self._lc_mask >> i & 1:
                    if epoch == self._lc_epoch:
                        self._energy[i] = 0
                else:
                    self._energy[i] = _wrap24(self._energy[i] - _sext24(value))
        elif name.startswith("RST"):
            if name == "RSTIRQSTATA":
                self._irqa &= ~value
            elif name == "RSTIRQSTATB":
                self._irqb &= ~value
            else:
                self._peaks[_PEAK_INDEX[name]] = 0
            self._levels_stale = True
            self._watch = True

    def _finish_write(self, addr, ndata, value):
        info = _DECODE.get(addr)
        self._begin()
        if info is None:
            self._violate(f"write to undocumented address 0x{addr:03X}")
        elif ndata != info[1]:
            self._violate(f"wrong width: write of 0x{addr:03X} ({info[0]}, {8 * info[1]}-bit) "
                          f"with {ndata} data bytes")
        elif self._write(info[0], info[1], value & 0xFFFFFF if ndata == 4 else value):
            self._record_last(0xCA, addr, ndata, value)
            if self._crc_ref is not None and info[0] in _CRC_NAMES \
                    and self._crc() != self._crc_ref:
                self._irqa |= IRQ_CRC
        self._end()

    def _write(self, name, nbytes, v):
        """Apply a write of the right width; False if refused."""
        r = self._regs
        if _DECODE[REG[name]][2] == "r":
            self._violate(f"write to read-only register {name}")
            return False
        if name != "WRITE_PROTECT" and r["WRITE_PROTECT"] >> min(nbytes - 1, 2) & 1:
            return False          # dropped silently, as the chip does
        if name == "UNLOCK":
            self._key_armed = v == UNLOCK_KEY
            return True
        if name == "OPT_SETTING" and not self._armed_prev:
            self._violate("write to 0x120 without the 0xAD key written to 0x0FE just before")
            return False
        if name in ("CF1DEN", "CF2DEN"):
            if self._den_prev == (name, v):
                self._den_prev = None         # the second write: the value sticks
            else:
                self._den_pending = (name, v)  # a first write; _end() reports an earlier one
                if self.strict:
                    return True
        elif name == "CONFIG":
            if v & 0x80:
                self._swrst = True
                return True
            if not v & 0x8000:
                self._locked = self._iface
        elif name == "ACCMODE":
            v &= 0x3FF
            if any(v >> b & 3 == 3 for b in (0, 2, 4, 6)):
                self._violate("ACCMODE selects the reserved accumulation mode 11")
        elif name == "IRQENA":
            v = (v | IRQ_RESET) & 0x3FFFFF
            if v & IRQ_CRC and not r["IRQENA"] & IRQ_CRC:
                r["IRQENA"] = v
                self._crc_ref = self._crc()
            elif not v & IRQ_CRC:
                self._crc_ref = None
        elif name == "IRQENB":
            v &= 0x3FFF
        elif name in ("PGA_V", "PGA_IA", "PGA_IB"):
            if v & 7 not in (_PGA_GAIN_IA if name == "PGA_IA" else _PGA_GAIN):
                self._violate(f"{name} code {v & 7} is not a defined gain")
        elif name == "LINECYC":
            if self._linecyc == 0:
                self._linecyc, self._lc_left = v, float(v)
            else:
                self._linecyc_next = v
        elif name == "LCYCMODE":
            old = self._lc_mask
            r[name] = v
            self._recompute()
            for i in range(6):
                if old >> i & 1 and not self._lc_mask >> i & 1:
                    self._energy[i] = _wrap24(self._energy[i] + self._lc_acc[i])
                if not old >> i & 1:
                    self._lc_acc[i] = 0
            return True
        elif name == "CFMODE":
            for sel in (v & 0xF, v >> 4 & 0xF):
                if sel not in _CF_SOURCES:
                    self._violate(f"CFMODE selects undefined CF source code {sel}")
        r[name] = v
        self._dirty = True
        return True

    # ---- SPI slave -------------------------------------------------------------------
    def spi_select(self) -> None:
        """CS falling edge: a new frame starts (CS resets the SPI state machine)."""
        self._spi_buf.clear()
        self._spi_resp = b""
        self._spi_latch = None
        self._spi_read = False
        self._spi_active = True
        self._spi_reject = self._gate("SPI")

    def spi_exchange(self, mosi: bytes) -> bytes:
        """Bytes clocked while CS is low; returns as many MISO bytes."""
        n = len(mosi)
        if not self._spi_active:
            return bytes(n)
        buf = self._spi_buf
        n0 = len(buf)
        buf += mosi
        if self._spi_reject is not None:
            return bytes(n)
        if n0 < 3:
            if n0 + n < 3:
                return bytes(n)
            addr, cmd = buf[0] << 8 | buf[1], buf[2]
            self._spi_addr = addr
            self._spi_read = bool(cmd & 0x80)
            if cmd & 0x7F:
                self._violate(f"SPI command byte 0x{cmd:02X} (only 0x80 or 0x00 are defined)")
            if self._spi_read:
                latch = self._latch_read(addr)
                self._spi_latch = latch
                if latch[0] is not None:
                    self._spi_resp = bytes(3) + latch[1].to_bytes(latch[0][1], "big")
        out = self._spi_resp[n0:n0 + n]
        return out if len(out) == n else out + bytes(n - len(out))

    def spi_deselect(self) -> None:
        """CS rising edge: the frame ends; a write applies if it carried `width` bytes."""
        if not self._spi_active:
            return
        self._spi_active = False
        nb = len(self._spi_buf)
        if nb == 0:
            return
        if self._spi_reject is not None:
            if self._spi_reject:
                self._violate(self._spi_reject)
            return
        if nb < 3:
            self._begin()
            self._violate(f"SPI frame ended after {nb} header bytes")
            self._end()
        elif self._spi_read:
            self._finish_read(self._spi_addr, nb - 3, self._spi_latch)
        else:
            self._finish_write(self._spi_addr, nb - 3, int.from_bytes(self._spi_buf[3:], "big"))

    # ---- I2C slave (address 0x38; the bus layer strips the address byte) ---------------
    def i2c_write(self, data: bytes, stop: bool) -> bool:
        """Register address (2 bytes) then data MSB first; False = address not ACKed."""
        rej = self._gate("I2C")
        if rej is not None:
            if rej:
                self._violate(rej)
            return False
        n = len(data)
        self._i2c_ptr = None
        if n == 0:
            return True           # an address probe (scan)
        if n == 1:
            self._begin()
            self._violate("I2C write shorter than the 16-bit register address")
            self._end()
            return True
        addr = data[0] << 8 | data[1]
        if n == 2:
            if stop:
                self._begin()
                self._violate(f"I2C write of 0x{addr:03X} without data "
                              "(a read needs a repeated START)")
                self._end()
            else:
                self._i2c_ptr = addr
            return True
        self._finish_write(addr, n - 2, int.from_bytes(data[2:], "big"))
        return True

    def i2c_read(self, n: int) -> bytes:
        """Data of the register addressed by the preceding i2c_write(..., stop=False)."""
        rej = self._gate("I2C")
        if rej is not None:
            if rej:
                self._violate(rej)
            return b"\xff" * n
        addr, self._i2c_ptr = self._i2c_ptr, None
        if addr is None:
            self._begin()
            self._violate("I2C read without a register address")
            self._end()
            return b"\xff" * n
        latch = self._latch_read(addr)
        out = latch[1].to_bytes(latch[0][1], "big") if latch[0] is not None else b""
        out = (out + bytes(n))[:n]
        self._finish_read(addr, n, latch)
        return out
