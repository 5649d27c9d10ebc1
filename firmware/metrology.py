"""Metrology: the ADE7953 set up from the configuration, and the legal energy registers.

    met = Metrology(ade, board, cfg, status)
    met.begin()          # configure the chip (gains, offsets, phase, no-load, CF1, sag)
    met.poll()           # every POLL_MS: read-with-reset energies, register them
    met.on_irq()         # when the IRQ pin is low: chip reset -> re-init; sag -> poll, save
    met.energy.delivered_wh, met.energy.net_wh()

Units. The energy gains are set so that one energy LSB is exactly 1/10,000 Wh (0.1 mWh,
and 0.1 mvarh, 0.1 mVAh): the nominal gain follows from the board's front end
(v_ratio, i_ratio_milli) and calibration corrects it for the real parts. Every register
is then an exact small-int sum (Wh + a residue below 10,000): no float, no drift, ever.

Meter forms (config.ELEMENTS; ../shared/reference/field.md, "Meter forms"). Form 1S
(ELEMENTS = 1): 1 element, 2 wire, the voltage input across the two wires (line to
neutral on 120 V), channel A: energy = A. Form 2S (ELEMENTS = 2): 1.5 element, 3 wire
120/240 V, the one voltage input across the two hot legs (V_AB, 240 V), channel A on leg
A's CT and channel B on leg B's: the chip's per-channel energies are V_AB x I_A and
V_AB x I_B, each twice what its leg carries when the legs are balanced, so the meter's
energy is (A + B) / 2 (exact while V_AN = V_BN, the half-element assumption). The halving
is done per channel on every reading, after the channel's CT_REVERSE sign, carrying the
odd LSB to the next reading: nothing is lost, a register is never more than 1 LSB
(0.1 mWh) behind the exact half. It applies to everything that is energy or power: the
registers (and so demand, TOU and the load profile, which read them), reactive and
apparent energy, the loss estimate of a chip reset, instantaneous W/var/VA (MT3) and CF1
(code 9 is (A + B) / 2 already). Calibration is per channel against V_AB x I on both
(calibration.py); the no-load threshold is the chip's, per channel, in the chip's own
units (V_AB x I on 2S: the starting load of one leg, 0.05 A, is 12 W there, 3.3 times
the 3.6 W threshold).

Registers (EnergyRegisters.FIELDS): active energy delivered and received in total and
per element (A, B: on 2S each leg's half); reactive energy per quadrant, by the signs of
P and Q over the same interval (Q1: P >= 0, Q >= 0, delivered with a lagging current; Q2:
P < 0, Q >= 0; Q3: P < 0, Q < 0; Q4: P >= 0, Q < 0); apparent energy by the direction of
P. On 2S the direction of the total is decided on the signed sum of each poll (a leg
importing while the other exports nets out), each element's on its own sign. A reversed
CT is a setting (CT_REVERSE_A/B): that channel's signs are turned over in software.

Timing. Active energy is read every poll (1 s): at the board's maximum load (200 A x
240 V = 48 kW, 133,333 LSB/s) a register would reach half-full (2**22 LSB) after 31 s and
overflow after 63 s; at the front end's full scale (88 kW) after 17 s and 34 s. Reactive
and apparent energy, CONFIG and one more configuration register (round robin) are read
every SLOW_POLLS polls (8 s, half the half-full time at full scale), PERIOD every fourth
time: a poll costs one SPI read, 1.5 on average (1 element).

Chip reset. An unexpected reset raises the RESET interrupt (it cannot be disabled):
on_irq() brings the chip up again at once with the same settings, counts it in
`chip_resets` and logs it with `events.record(EVENT_CHIP_RESET, lost)`. The reset clears
the chip's accumulators, so the energy since the last poll is lost: at most one poll
period (1 s) plus the bring-up (a few ms; the RESET wait is capped at 200 ms), i.e. at
most 1.2 s of energy: 16 Wh at 48 kW, 2.4 Wh at 240 V x 30 A. `lost` is the estimate
(0.1 mWh units: the last poll's energy rate times the time since it). Were the interrupt
missed, the CONFIG check finds the chip unlocked within 8 polls: up to 8 s would then
have been counted at the chip's reset gains (16 % low on the reference front end) and
the poll that finds it is discarded. A register found changed without a reset is
re-written by a bring-up the same way.

Bus failure: up to RETRIES bring-ups at once, then status MEASUREMENT_ERROR (one bring-up
try per poll after that); the flag clears on the first good bring-up. Never an exception.
"""

import time

from micropython import const

import ade7953 as A
import config
import status

LSB_PER_WH = const(10000)
W_PER_CODE = 0.36 * A.ENERGY_LSB_PER_S_FS / A.POWER_FS  # a power code in W (one energy LSB = 0.1 mWh)
GAIN_UNITY = const(0x400000)
SLOW_POLLS = const(8)  # polls between reactive/apparent/PERIOD reads
RETRIES = const(3)  # bring-ups tried at once after a bus failure
EVENT_CHIP_RESET = const(0x0810)  # C12.19 manufacturer event 16 (STD_VS_MFG_FLAG): metering IC reset
_V_START = const(120)  # lowest rated voltage: the starting load must register there too
_START_DIV = const(5000)  # starting current = full-scale rms / 5000 (0.05 A for 250 A FS, 200 A class)
_SAG_PERMILLE = const(800)  # sag level: 80 % of the line voltage seen at bring-up
# SAGCYC: the power-fail warning comes at the end of the first whole half cycle below
# SAGLVL. Each half cycle more is 10 ms (50 Hz) or 8.3 ms (60 Hz) more hold-up the supply
# must give, on top of the EEPROM's save, for every outage; with 1 the warning's worst case
# is 1.7 half cycles (17.0 / 14.2 ms: the failing half cycle may have reached SAGLVL first).
# What 1 costs: a dip that keeps one whole half cycle under 80 % and then recovers also
# saves the registers, one delta page of EEPROM wear (firmware/README.md: the wear budget
# holds hundreds a day); shorter notches never reach a whole half cycle and do not count.
_SAG_HALF_CYCLES = const(1)
_SAG_SETTLE_MS = const(50)  # VPEAK over 2.5 cycles at 50 Hz
_PERIOD_60HZ = const(3728)  # PERIOD at 60 Hz, until the line is measured
_CF1_SUM_AB = const(9)  # CFMODE CF1SEL: (active A + active B) / 2, i.e. at half rate (datasheet Table 19)
_CF2_OFF = const(0x0200)  # CFMODE CF2DIS


def nominal_gain(v_ratio, i_ratio_milli):
    """The xWGAIN that makes one energy LSB 0.1 mWh on an ideal front end.

    Full scale at PGA 1 is 0.5 V peak at the pins, i.e. 0.5/sqrt(2) V rms; the line sees
    that times the divider (v_ratio) and the CT/burden (A per pin volt)."""
    fs_rms = 0.5 / 1.4142135623730951
    p_fs_w = fs_rms * v_ratio * fs_rms * i_ratio_milli / 1000.0
    wh_per_lsb = p_fs_w / A.ENERGY_LSB_PER_S_FS / 3600.0
    return int(GAIN_UNITY * wh_per_lsb * LSB_PER_WH + 0.5)


def _carry(obj, wh_name, res_name, lsb):
    """Add lsb (>= 0) to a Wh + residue pair. getattr/setattr on existing attributes with
    interned names allocate nothing."""
    r = getattr(obj, res_name) + lsb
    if r >= LSB_PER_WH:
        setattr(obj, wh_name, getattr(obj, wh_name) + r // LSB_PER_WH)
        r %= LSB_PER_WH
    setattr(obj, res_name, r)


class EnergyRegisters:
    """The legal registers, each a pair: <name>_wh, whole units (Wh; varh and VAh for the
    varh_ and vah_ registers), and <name>_res, the residue in 0.1 milli-units (0..9999).

    FIELDS names every integer that makes up the legal registers, in a fixed order:
    storage saves and restores exactly these (pack_into / unpack_from), so a register
    added here is saved without touching storage. Delivered/received totals are decided
    on the sign of the (summed) active energy of each poll; per element on each
    element's own sign; varh per quadrant and VAh by the direction of the active energy
    over the same interval."""

    FIELDS = (
        "delivered_wh",
        "delivered_res",
        "received_wh",
        "received_res",
        "a_delivered_wh",
        "a_delivered_res",
        "a_received_wh",
        "a_received_res",
        "b_delivered_wh",
        "b_delivered_res",
        "b_received_wh",
        "b_received_res",
        "varh_q1_wh",
        "varh_q1_res",
        "varh_q2_wh",
        "varh_q2_res",
        "varh_q3_wh",
        "varh_q3_res",
        "varh_q4_wh",
        "varh_q4_res",
        "vah_delivered_wh",
        "vah_delivered_res",
        "vah_received_wh",
        "vah_received_res",
    )

    def __init__(self):
        for name in self.FIELDS:
            setattr(self, name, 0)

    def add(self, lsb):
        """Add one poll's signed total active energy: positive delivered, negative received."""
        if lsb > 0:
            _carry(self, "delivered_wh", "delivered_res", lsb)
        elif lsb < 0:
            _carry(self, "received_wh", "received_res", -lsb)

    def add_elements(self, wa, wb):
        """One poll of signed active energy per element (B is 0 on a 1 element meter)."""
        self.add(wa + wb)
        if wa > 0:
            _carry(self, "a_delivered_wh", "a_delivered_res", wa)
        elif wa < 0:
            _carry(self, "a_received_wh", "a_received_res", -wa)
        if wb > 0:
            _carry(self, "b_delivered_wh", "b_delivered_res", wb)
        elif wb < 0:
            _carry(self, "b_received_wh", "b_received_res", -wb)

    def add_reactive(self, p, q):
        """Reactive energy q (signed; + = lagging/inductive) into the quadrant that the
        active energy p of the same interval and q's sign select."""
        if q >= 0:
            if p >= 0:
                _carry(self, "varh_q1_wh", "varh_q1_res", q)
            else:
                _carry(self, "varh_q2_wh", "varh_q2_res", q)
        elif p < 0:
            _carry(self, "varh_q3_wh", "varh_q3_res", -q)
        else:
            _carry(self, "varh_q4_wh", "varh_q4_res", -q)

    def add_apparent(self, p, s):
        """Apparent energy s (>= 0) by the direction of the active energy p."""
        if s < 0:
            s = -s
        if p >= 0:
            _carry(self, "vah_delivered_wh", "vah_delivered_res", s)
        else:
            _carry(self, "vah_received_wh", "vah_received_res", s)

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

    def __init__(self, ade, board, cfg, status_):
        self.ade = ade
        self.board = board
        self.config = cfg
        self.status = status_
        self.energy = EnergyRegisters()
        self.nominal_gain = nominal_gain(board.v_ratio, board.i_ratio_milli)
        self.sag_handler = None  # called after a sag's final poll (storage saves the registers)
        self.events = None  # an event log with record(code, data), if the meter has one
        self.chip_resets = 0  # unexpected resets / configuration losses of the metering IC
        self.bus_errors = 0  # polls that failed on the bus
        self.sags = 0
        self.running = False  # the chip is configured and answering
        self.warm = False  # begin() found the chip running as configured (an MCU-only restart)
        self.two = False  # Form 2S (1.5 element): channels A and B, (A + B) / 2
        self._odd_a = 0  # 2S: the LSB left over from halving, per quantity, carried (0 or 1)
        self._odd_b = 0
        self._odd_q = 0
        self._odd_s = 0
        self._sign_a = 1  # -1: the CT is wired reversed
        self._sign_b = 1
        self._phase_a = 0  # CT phase error (urad of extra lag), from the configuration
        self._phase_b = 0
        self.trim_a_urad = 0  # the part of it PHCAL cannot take (urad), trimmed in software
        self.trim_b_urad = 0
        self._trim_res_a = 0  # sub-LSB remainder of the trim, carried
        self._trim_res_b = 0
        self._period = 0  # PERIOD the phase settings were made for (0: none yet)
        self._slow = 0  # polls until the next slow read
        self._slows = 0  # slow reads done (PERIOD is read every fourth)
        self._win_p = 0  # signed active energy since the last slow read (quadrant choice)
        self._last_ms = 0  # board ms of the last good poll, and its energy (loss estimate)
        self._last_lsb = 0
        self._last_dt = 1000
        self._want = {}  # settings(): what the chip should hold

    # ---- configuration -------------------------------------------------------------------
    def noload_register(self):
        """X_NOLOAD for a threshold at NOLOAD_PERMILLE_START of the starting load at 120 V.
        The starting current is the current channel's full-scale rms (0.5 V peak at the
        pin, PGA 1) / 5000: 0.05 A for the 250 A full scale of a 200 A class meter."""
        start_ma = self.board.i_ratio_milli * 353553 // 1000000 // _START_DIV
        return A.noload_x(self.config.get(config.NOLOAD_PERMILLE_START) * _V_START * start_ma // 1000)

    def cf1_settings(self):
        """(CF1DEN, CFMODE): one CF1 pulse per Kh of the meter's active energy, CF2 off: A
        (1S), or code 9, (A + B) / 2 (2S: the 2S energy itself, the same CF1DEN). Out of
        range: clamped, CONFIGURATION_ERROR."""
        den = self.config.get(config.KH_MWH) * LSB_PER_WH // 1000
        if den < 1 or den > 0xFFFF:
            self.status.set(status.CONFIGURATION_ERROR)
            den = 1 if den < 1 else 0xFFFF
        return den, _CF2_OFF | (_CF1_SUM_AB if self.two else 0)

    def sag_level(self):
        """SAGLVL: 80 % of the voltage peak seen now (the first bring-up), on the VPEAK
        scale; never under 80 % of 120 V (a board started without its line voltage)."""
        floor = A.WAVE_FS * _V_START * 1414 // (self.board.v_ratio * 500) * _SAG_PERMILLE // 1000
        peak = self.ade.peak_voltage(_SAG_SETTLE_MS) * _SAG_PERMILLE // 1000
        return peak if peak > floor else floor

    def settings(self):
        """The chip's whole configuration from the Config (0 = the board's nominal value),
        but SAGLVL (measured at the first bring-up): address -> register value."""
        c = self.config
        g = self.nominal_gain
        self.two = c.get(config.ELEMENTS) == 2
        self._sign_a = -1 if c.get(config.CT_REVERSE_A) else 1
        self._sign_b = -1 if c.get(config.CT_REVERSE_B) else 1
        self._phase_a = c.get(config.PHASE_A_URAD)
        self._phase_b = c.get(config.PHASE_B_URAD)
        x = self.noload_register()
        den, cfmode = self.cf1_settings()
        s = self._want  # filled in place: a 30-entry dict is a big block for a small heap
        s[A.PGA_V] = 0
        s[A.PGA_IA] = 0
        s[A.PGA_IB] = 0
        s[A.LCYCMODE] = 0x40  # continuous accumulation, read-with-reset
        s[A.ACCMODE] = 0  # signed active and reactive, VA (not Ah)
        s[A.AP_NOLOAD] = x
        s[A.VAR_NOLOAD] = x
        s[A.VA_NOLOAD] = x
        s[A.DISNOLOAD] = 0
        s[A.CF1DEN] = den
        s[A.CFMODE] = cfmode
        s[A.SAGCYC] = _SAG_HALF_CYCLES
        s[A.IRQENA] = A.IRQ_SAG | A.IRQ_RESET
        for key, reg in (
            (config.AWGAIN, A.AWGAIN),
            (config.AVARGAIN, A.AVARGAIN),
            (config.AVAGAIN, A.AVAGAIN),
            (config.BWGAIN, A.BWGAIN),
            (config.BVARGAIN, A.BVARGAIN),
            (config.BVAGAIN, A.BVAGAIN),
        ):
            s[reg] = c.get(key) or g
        for key, reg in (
            (config.AWATTOS, A.AWATTOS),
            (config.AVAROS, A.AVAROS),
            (config.AVAOS, A.AVAOS),
            (config.BWATTOS, A.BWATTOS),
            (config.BVAROS, A.BVAROS),
            (config.BVAOS, A.BVAOS),
        ):
            s[reg] = c.get(key) & 0xFFFFFF
        period = self._period or _PERIOD_60HZ
        s[A.PHCALA] = self._phcal(0, period)
        s[A.PHCALB] = self._phcal(1, period)
        return s

    def _phcal(self, ch, period):
        """Channel ch's PHCAL (0 A, 1 B) at PERIOD; sets its software trim (no allocation)."""
        urad = self._phase_b if ch else self._phase_a
        if urad:
            code = A.phcal_for(urad, period)
            trim = A.phcal_residual(urad, code, period)
        else:
            code = self.config.get(config.PHCALB if ch else config.PHCALA)
            trim = 0
        if ch:
            self.trim_b_urad = trim
        else:
            self.trim_a_urad = trim
        return code

    def apply_config(self):
        """Bring the running chip in line with the Config (after calibration or programming)."""
        s = self.settings()
        ade = self.ade
        if not self.running:
            ade.settings.update(s)
            return
        for addr in s:
            if ade.settings.get(addr) != s[addr]:
                ade.set(addr, s[addr])

    # ---- bring-up ------------------------------------------------------------------------
    def begin(self):
        """Configure the chip from the Config. A chip that does not answer sets
        MEASUREMENT_ERROR (poll() keeps trying); it never raises. Called again while
        metering (a Config loaded late), it changes only what differs: no reset, no
        energy lost."""
        if self.running:
            try:
                self.apply_config()
                return
            except OSError:
                self.bus_errors += 1
                self.running = False
        self.ade.settings.update(self.settings())
        if self._adopt():
            return
        self._restart(RETRIES)

    def _adopt(self):
        """The chip kept its power while the MCU restarted (the watchdog, a soft reboot):
        meter on without resetting it, so the energy it counted meanwhile is not lost; its
        PERIOD first, for PHCAL and the software trim. False: a full bring-up is due."""
        ade = self.ade
        try:
            if not ade.adopt():
                return False
            p = ade.period()
            if p:
                self._period = 0
                self.line_period(p)
        except OSError:
            return False
        self.running = True
        self.warm = True
        self.status.clear(status.MEASUREMENT_ERROR)
        self._slow = SLOW_POLLS
        self._win_p = 0
        self._last_ms = self.board.clock.ticks_ms()
        return True

    def _start(self):
        ade = self.ade
        ade.begin()
        if A.SAGLVL not in ade.settings:  # the first bring-up measures the line for it
            ade.set(A.SAGLVL, self.sag_level())
        p = ade.period()
        if p:
            self.line_period(p)
        ade.read_active(self.two)  # start every register from a clean interval
        ade.read_slow(self.two)
        self._slow = SLOW_POLLS
        self._win_p = 0

    def _restart(self, tries):
        """Bring the chip up (tries times at most); True once it runs. Sets or clears
        MEASUREMENT_ERROR; counts failures in bus_errors."""
        for _ in range(tries):
            try:
                self._start()
            except OSError:
                self.bus_errors += 1
                continue
            self.running = True
            self.status.clear(status.MEASUREMENT_ERROR)
            return True
        self.running = False
        self.status.set(status.MEASUREMENT_ERROR)
        return False

    def _chip_reset(self):
        """The chip lost its configuration (reset by itself): bring it up now, count and
        log it with the estimated energy lost since the last poll."""
        self.chip_resets += 1
        elapsed = time.ticks_diff(self.board.clock.ticks_ms(), self._last_ms)
        if not 0 < elapsed < 60000:
            elapsed = self._last_dt
        lost = abs(self._last_lsb) * elapsed // self._last_dt
        self._restart(RETRIES)
        if self.events is not None:
            self.events.record(EVENT_CHIP_RESET, lost)

    # ---- phase -----------------------------------------------------------------------------
    def line_period(self, p):
        """The line PERIOD measured: re-derive PHCAL and the software trim for it."""
        d = p - self._period
        if -2 <= d <= 2:  # +-0.05 %: not worth a write
            return
        self._period = p
        ade = self.ade
        code = self._phcal(0, p)
        if ade.settings.get(A.PHCALA) != code:
            ade.set(A.PHCALA, code)
        code = self._phcal(1, p)
        if ade.settings.get(A.PHCALB) != code:
            ade.set(A.PHCALB, code)

    # ---- metering --------------------------------------------------------------------------
    def poll(self):
        """Read the chip's energy since the last poll and register it. Never raises."""
        if not self.running:
            if not self._restart(1):
                return
        try:
            self._poll()
        except OSError:
            self.bus_errors += 1
            self.running = False
            self._restart(RETRIES)

    def _healthy(self):
        """CONFIG still locked and one more register as configured (round robin). False
        if the chip reset by itself (handled here); ChipError if it answers nonsense."""
        ade = self.ade
        if not ade.config_ok():
            if ade.config_reset():
                self._chip_reset()
                return False
            raise A.ChipError("ADE7953 CONFIG lost")
        if not ade.verify_next():
            raise A.ChipError("ADE7953 register changed")
        return True

    def _poll(self):
        ade = self.ade
        two = self.two
        ade.read_active(two)
        wa = ade.d_wa
        wb = ade.d_wb if two else 0
        self._slow -= 1
        if self._slow > 0:
            wa *= self._sign_a
            wb *= self._sign_b
            if two:  # 2S: each leg's half, the odd LSB carried (small ints: no allocation)
                wa += self._odd_a
                self._odd_a = wa & 1
                wa >>= 1
                wb += self._odd_b
                self._odd_b = wb & 1
                wb >>= 1
            self._win_p += wa + wb
        else:
            self._slow = SLOW_POLLS
            ade.read_slow(two)
            if not self._healthy():
                return  # what was read came from a chip that had reset: discarded
            self._slows += 1
            if self._slows & 3 == 0:
                period = ade.period()
                if period:
                    self.line_period(period)
            qa = ade.d_vara
            qb = ade.d_varb if two else 0
            # the phase residual PHCAL cannot take: P_true = P + r Q (r in urad)
            if self.trim_a_urad:
                t = qa * self.trim_a_urad + self._trim_res_a
                corr = t // 1000000
                self._trim_res_a = t - corr * 1000000
                wa += corr
            if self.trim_b_urad and two:
                t = qb * self.trim_b_urad + self._trim_res_b
                corr = t // 1000000
                self._trim_res_b = t - corr * 1000000
                wb += corr
            wa *= self._sign_a
            wb *= self._sign_b
            q = qa * self._sign_a + qb * self._sign_b
            s = ade.d_vaa
            if two:  # 2S: halves, as above
                wa += self._odd_a
                self._odd_a = wa & 1
                wa >>= 1
                wb += self._odd_b
                self._odd_b = wb & 1
                wb >>= 1
                q += self._odd_q
                self._odd_q = q & 1
                q >>= 1
                s += ade.d_vab + self._odd_s
                self._odd_s = s & 1
                s >>= 1
            p = self._win_p + wa + wb
            self._win_p = 0
            e = self.energy
            e.add_reactive(p, q)
            e.add_apparent(p, s)
        self.energy.add_elements(wa, wb)
        now = self.board.clock.ticks_ms()
        dt = time.ticks_diff(now, self._last_ms)
        if 0 < dt < 60000:
            self._last_dt = dt
        self._last_ms = now
        self._last_lsb = wa + wb

    def irq_pending(self):
        """The chip's IRQ wants on_irq(). False while the chip is down (a dead bus): poll()
        retries once per poll, rather than the loop spinning on a pin held low."""
        return self.running and self.ade.irq_asserted()

    def sag_pending(self):
        """The power-fail warning is up (storage stops a long write for it); False on a bus fault."""
        if not self.running:
            return False
        try:
            return self.ade.sag_pending()
        except OSError:
            return False

    def on_irq(self):
        """The IRQ pin is low: a reset (re-init within this call) or a sag (energy taken out
        of the chip first, then sag_handler, e.g. storage saving the registers)."""
        try:
            flags = self.ade.irq_status()
        except OSError:
            self.bus_errors += 1
            self.running = False
            self._restart(RETRIES)
            return
        if flags & A.IRQ_RESET:
            self._chip_reset()
        if flags & A.IRQ_SAG:
            self.sags += 1
            self._slow = 1  # a full poll: varh and VAh too, not only what the fast poll reads
            self.poll()
            if self.sag_handler is not None:
                self.sag_handler()

    # ---- instantaneous values ----------------------------------------------------------------
    def instantaneous(self):
        """(V, A on channel A, A on channel B, W, var, VA, PF, Hz) now, in SI units (floats:
        not for the metering path). V is the voltage input's (2S: across the legs); W, var
        and VA are the meter's total (2S: (A + B) / 2, CT orientation applied); PF is W / VA
        with the sign of var (negative: leading). The rms scales are the calibrated ones
        (0: the board's nominal)."""
        ade = self.ade
        c = self.config
        b = self.board
        two = self.two
        i_nom = b.i_ratio_milli * 353553 // A.RMS_FS  # nA per LSB at full scale
        v = ade.vrms() * (c.get(config.V_NV_PER_LSB) or b.v_ratio * 353553000 // A.RMS_FS) / 1e9
        ia = ade.irms(False) * (c.get(config.IA_NA_PER_LSB) or i_nom) / 1e9
        ib = ade.irms(True) * (c.get(config.IB_NA_PER_LSB) or i_nom) / 1e9 if two else 0.0
        w = self._sign_a * ade.watt(False)
        q = self._sign_a * ade.var(False)
        s = ade.va(False)
        if two:
            w = (w + self._sign_b * ade.watt(True)) / 2
            q = (q + self._sign_b * ade.var(True)) / 2
            s = (s + ade.va(True)) / 2
        pf = abs(w) / s if s > 0 else 1.0
        if q < 0:
            pf = -pf
        p = ade.period()
        hz = 223750 / (p + 1) if p else 0.0
        return (v, ia, ib, w * W_PER_CODE, q * W_PER_CODE, s * W_PER_CODE, pf, hz)
