"""Calibration against a reference standard, run by the meter's own firmware.

    import calibration
    m.boot()
    calibration.calibrate(m, 240, 0)          # 1. offsets: line voltage, no current
    calibration.calibrate(m, 240, 30, 1.0)    # 2. gains (W, VA) and the V / I rms scales
    calibration.calibrate(m, 240, 30, 0.5)    # 3. phase at PF 0.5 lag, var gain
    m.run()                                   # the meter, calibrated (run() skips boot())

Each call is one step at the load the bench applies (volts, amps, PF as the reference
standard states them; amps on every element in use). A Form 2S meter is calibrated as
benches do it: the voltage across its voltage input (the legs', 240 V) and the same
current through both current elements in series. Its reference standard then reads
V_AB x (I_A + I_B) / 2 = volts x amps, and so does each channel of the chip (V_AB x I):
each channel's gain is found against volts x amps, as on 1S, and the metrology's
(A + B) / 2 is then right. The step waits (up to wait_s of board time) until the chip
sees that load (voltage and current within 10 %, PF within 0.05), lets it settle, then
integrates the chip's energy registers over `seconds` of board time (the board's clock:
virtual time on the simulated board) and compares them with volts x amps x PF x time.
Results go to the chip at once and to the Config (config.py ids 0x05-0x18), which is
saved when the meter has storage. Energy read while calibrating is test energy: it is
not registered.

Why this order: the offsets (measured with no-load detection off and no current) are
what light loads need; the gain step then sees no offset; the phase step finds the CT's
phase error from the active energy at PF 0.5 and, because the gain was measured with
the same phase error present, also removes the gain's cos(error) part (13.7 ppm for 0.3
deg). The phase is kept as an angle (PHASE_x_URAD): the metrology turns it into PHCAL
steps for the line frequency it measures, and trims the remainder in software.

Floats appear only here, never in the metering path; energies and gains are integers.

Run over the optical port (meterctl calibrate: tables.py's MFG procedure 2), the meter's
loop imports this module for one step and drops it after (meter.py). Its sleeps then call
m.cal_idle() (the port is served, ST8 shows the progress) and wake on m.cal_wake(); and
what the phase step needs from the gain step is kept on the meter (m.cal_phcal), since
the module is gone between the two.
"""

import math
import time

from micropython import const

import ade7953 as A
import config

_SETTLE_MS = const(2000)  # after the load is seen: the rms and power filters settle in ~200 ms
_STEP_MS = const(1000)  # a read every second: far inside the energy registers' 17 s half-fill
_TOLERANCE = 0.1  # the load must be within 10 % (and 0.05 A) of the stated one
_PF_TOLERANCE = 0.05
_GAIN_MIN = const(0x200000)  # the datasheet's range for xWGAIN: -50 % .. +50 %
_GAIN_MAX = const(0x600000)
_OS_LIMIT = const(0x7FFFFF)
_UNIT_MWS = const(360)  # mWs per energy LSB (0.1 mWh)
_CODE_NUM = const(4862401)  # power code per (energy LSB/s) = 4,862,401 / 206,900
_CODE_DEN = const(206900)

# energy kinds in a measurement, per channel
_W = const(0)
_VAR = const(1)
_VA = const(2)

# (gain Config id, offset Config id, chip register) per channel and kind
_GAIN_IDS = (
    (config.AWGAIN, config.AVARGAIN, config.AVAGAIN),
    (config.BWGAIN, config.BVARGAIN, config.BVAGAIN),
)
_OS_IDS = (
    (config.AWATTOS, config.AVAROS, config.AVAOS),
    (config.BWATTOS, config.BVAROS, config.BVAOS),
)
_PHASE_IDS = (config.PHASE_A_URAD, config.PHASE_B_URAD)
_PHCAL_REGS = (A.PHCALA, A.PHCALB)



class CalibrationError(ValueError):
    """The step could not be done: a result out of the chip's range, no energy where the
    load should give some (the wiring, the CT orientation). ST8 result 3."""


class CalibrationTimeout(CalibrationError):
    """The stated load was not seen in time, or the chip reset while measuring: the same
    step may work when tried again. ST8 result 4."""


def _gain_phcal(m):
    """The PHCAL register value in place when each channel's gain was measured (None:
    not measured since), kept on the meter."""
    s = getattr(m, "cal_phcal", None)
    if s is None:
        s = [None, None]
        m.cal_phcal = s
    return s


def _channels(m, channels):
    if channels is None:
        return (0, 1) if m.metrology.two else (0,)
    return tuple(i for i, name in enumerate("AB") if name in channels)


def _expected_lsb(p_mw, us):
    """Energy LSB that p_mw milliwatts give in `us` microseconds (0.1 mWh = 360 mWs)."""
    return p_mw * us // (_UNIT_MWS * 1000000)


def _sleep_until(m, deadline):
    """Sleep on the board clock; the meter's idle hook (if any) runs between sleeps, and
    the clock is told when the optical port's next timer is due (the loop does the same)."""
    clock = m.clock
    idle = getattr(m, "cal_idle", None)
    wake = getattr(m, "cal_wake", None)
    link = getattr(m, "link", None)
    while time.ticks_diff(deadline, clock.ticks_ms()) > 0:
        if idle is not None:
            idle()
        clock.wait_until(deadline, wake, link.deadline() if link is not None else None)


def wait_for_load(m, volts, amps, pf, chans, wait_s=600):
    """Wait until the chip sees the stated load on every channel in `chans`, then settle."""
    met = m.metrology
    clock = m.clock
    deadline = time.ticks_add(clock.ticks_ms(), wait_s * 1000)
    while True:
        v, ia, ib, _, q, _, pf_now, _ = met.instantaneous()
        ok = abs(v - volts) <= volts * _TOLERANCE
        for i in (ib if ch else ia for ch in chans):
            ok = ok and abs(i - abs(amps)) <= abs(amps) * _TOLERANCE + 0.05
        if amps:
            ok = ok and abs(abs(pf_now) - abs(pf)) <= _PF_TOLERANCE
            if abs(pf) < 0.99:  # the phase step needs a lagging (inductive) current
                ok = ok and q > 0
        if ok:
            _sleep_until(m, time.ticks_add(clock.ticks_ms(), _SETTLE_MS))
            return
        if time.ticks_diff(deadline, clock.ticks_ms()) <= 0:
            raise CalibrationTimeout("%s V %s A PF %s not seen within %d s" % (volts, amps, pf, wait_s))
        _sleep_until(m, time.ticks_add(clock.ticks_ms(), _STEP_MS))


def measure(m, seconds, chans):
    """Integrate the energy registers over `seconds` of board time.

    Returns (microseconds, sums, rms): sums[ch][kind] in LSB, CT orientation applied;
    rms = [VRMS, IRMSA, IRMSB] summed over `n` reads, n in rms[3]. Every register is read
    the same way each second, so each register's window is the same length."""
    met = m.metrology
    ade = met.ade
    clock = m.clock
    both = 1 in chans
    signs = (-1 if met.config.get(config.CT_REVERSE_A) else 1, -1 if met.config.get(config.CT_REVERSE_B) else 1)
    sums = [[0, 0, 0], [0, 0, 0]]
    rms = [0, 0, 0, 0]
    ade.read_active(True)  # the window opens: what was there before is not counted
    t0 = clock.ticks_us()
    ade.read_slow(True)
    total_us = 0
    deadline = clock.ticks_ms()
    while total_us < seconds * 1000000:
        deadline = time.ticks_add(deadline, _STEP_MS)
        _sleep_until(m, deadline)
        ade.read_active(True)
        t1 = clock.ticks_us()
        ade.read_slow(True)
        if not ade.config_ok():
            raise CalibrationTimeout("the metering IC reset during the measurement")
        total_us += time.ticks_diff(t1, t0)
        t0 = t1
        for ch in chans:
            s = sums[ch]
            sign = signs[ch]
            if ch:
                s[_W] += sign * ade.d_wb
                s[_VAR] += sign * ade.d_varb
                s[_VA] += ade.d_vab
            else:
                s[_W] += sign * ade.d_wa
                s[_VAR] += sign * ade.d_vara
                s[_VA] += ade.d_vaa
        rms[0] += ade.vrms()
        rms[1] += ade.irms(False)
        if both:
            rms[2] += ade.irms(True)
        rms[3] += 1
    return total_us, sums, rms


def _gain(cfg, ch, kind, met):
    return cfg.get(_GAIN_IDS[ch][kind]) or met.nominal_gain


def _set_gain(cfg, ch, kind, new, old):
    """Write a gain and scale the offset that goes with it: the chip adds the offset
    register after the gain, so an offset measured at gain `old` is off by new / old."""
    if not _GAIN_MIN <= new <= _GAIN_MAX:
        raise CalibrationError("gain 0x%06x out of the chip's range (check the wiring and the load)" % new)
    cfg.set(_GAIN_IDS[ch][kind], new)
    os_id = _OS_IDS[ch][kind]
    cfg.set(os_id, cfg.get(os_id) * new // old)


def _finish(m):
    m.metrology.apply_config()
    storage = getattr(m, "storage", None)
    if storage is not None:
        storage.save_config(m.config.encode())


def calibrate_offset(m, volts, amps=0, pf=1.0, seconds=600, channels=None, wait_s=600):
    """Power offsets (W, var, VA) from a measurement at no current (or a small one, with
    the gains already right). No-load detection is off while measuring. Returns the offset
    change in chip codes per channel, [(dW, dvar, dVA), ...]."""
    met = m.metrology
    ade = met.ade
    cfg = m.config
    chans = _channels(m, channels)
    wait_for_load(m, volts, amps, pf, chans, wait_s)
    disnoload = ade.settings.get(A.DISNOLOAD, 0)
    ade.set(A.DISNOLOAD, A.NOLOAD_ALL)  # the offset alone is under the no-load threshold
    try:
        us, sums, _ = measure(m, seconds, chans)
    finally:
        ade.set(A.DISNOLOAD, disnoload)
    s_mw = int(volts * abs(amps) * 1000)
    phi = math.acos(min(1.0, abs(pf)))
    expected = (int(s_mw * math.cos(phi)), int(s_mw * math.sin(phi)), s_mw)
    out = []
    for ch in chans:
        signs = -1 if cfg.get((config.CT_REVERSE_A, config.CT_REVERSE_B)[ch]) else 1
        changes = []
        for kind in (_W, _VAR, _VA):
            excess = sums[ch][kind] - _expected_lsb(expected[kind], us)
            if kind != _VA:
                excess *= signs  # back to the chip's own sign
            # LSB over us -> power code (x 4,862,401 / 206,900 per LSB/s) -> 1/512 code
            num = excess * 512 * _CODE_NUM * 1000000
            den = _CODE_DEN * us
            delta = -((2 * num + den) // (2 * den))
            os_id = _OS_IDS[ch][kind]
            new = cfg.get(os_id) + delta
            if not -_OS_LIMIT <= new <= _OS_LIMIT:
                raise CalibrationError("offset out of range")
            cfg.set(os_id, new)
            changes.append(delta / 512)
        out.append(tuple(changes))
    _finish(m)
    return out


def calibrate_gain(m, volts, amps, pf=1.0, seconds=60, channels=None, wait_s=600):
    """Active and apparent energy gains at (about) unity PF, and the V and I rms scales.
    Returns the active-energy error found, in ppm, per channel."""
    met = m.metrology
    cfg = m.config
    chans = _channels(m, channels)
    wait_for_load(m, volts, amps, pf, chans, wait_s)
    us, sums, rms = measure(m, seconds, chans)
    s_mw = int(volts * abs(amps) * 1000)
    p_mw = int(volts * abs(amps) * abs(pf) * 1000)
    out = []
    for ch in chans:
        w = sums[ch][_W]
        va = sums[ch][_VA]
        exp_w = p_mw * us  # in LSB x 360e6
        exp_va = s_mw * us
        if w <= 0 or va <= 0:
            raise CalibrationError("no energy delivered on channel %s (CT orientation?)" % "AB"[ch])
        den = w * _UNIT_MWS * 1000000
        old = _gain(cfg, ch, _W, met)
        new = (old * exp_w + den // 2) // den
        _set_gain(cfg, ch, _W, new, old)
        old_q = _gain(cfg, ch, _VAR, met)  # same V and I path: the same correction until the phase step
        _set_gain(cfg, ch, _VAR, old_q * new // old, old_q)
        old_va = _gain(cfg, ch, _VA, met)
        den_va = va * _UNIT_MWS * 1000000
        _set_gain(cfg, ch, _VA, (old_va * exp_va + den_va // 2) // den_va, old_va)
        out.append((w * _UNIT_MWS * 1000000 - exp_w) * 1000000 // exp_w)
        _gain_phcal(m)[ch] = met.ade.settings.get(_PHCAL_REGS[ch])
        n = rms[3]
        if rms[0]:
            cfg.set(config.V_NV_PER_LSB, int(volts * 1000) * 1000000 * n // rms[0])
        if rms[1 + ch] and amps:
            i_key = config.IB_NA_PER_LSB if ch else config.IA_NA_PER_LSB
            cfg.set(i_key, int(abs(amps) * 1000) * 1000000 * n // rms[1 + ch])
    _finish(m)
    return out


def _phcal_urad(reg, period):
    """The lag (urad) a PHCAL register value takes off: + when it advances the current."""
    urad = (reg & 0x1FF) * 1570796 // (period + 1)
    return urad if reg & 0x200 else -urad


def calibrate_phase(m, volts, amps, pf=0.5, seconds=60, channels=None, wait_s=600):
    """CT phase error from the active energy at a lagging PF (0.5), then the var gain.
    Returns (phase error found in urad, residual active error in ppm) per channel."""
    met = m.metrology
    ade = met.ade
    cfg = m.config
    chans = _channels(m, channels)
    wait_for_load(m, volts, amps, pf, chans, wait_s)
    period = ade.period() or 3728
    met.line_period(period)  # PHCAL is in steps of the line period: the one in use now
    us, sums, _ = measure(m, seconds, chans)
    s_mw = int(volts * abs(amps) * 1000)
    phi = math.acos(abs(pf))
    exp_s = s_mw * us / (_UNIT_MWS * 1e6)  # LSB, float: only ratios are taken
    out = []
    for ch in chans:
        ratio = sums[ch][_W] / exp_s  # = G cos(phi + r); G cos(r) = 1 if the gain came first
        reg = ade.settings.get(_PHCAL_REGS[ch])
        same = _gain_phcal(m)[ch] == reg
        if same:
            r = math.atan((math.cos(phi) - ratio) / math.sin(phi))
        else:
            r = math.acos(max(-1.0, min(1.0, ratio))) - phi
        urad = int(round(r * 1e6)) + _phcal_urad(reg, period)
        cfg.set(_PHASE_IDS[ch], urad)
        if same:
            old = _gain(cfg, ch, _W, met)
            _set_gain(cfg, ch, _W, int(old * math.cos(r) + 0.5), old)
            _gain_phcal(m)[ch] = None
        out.append(urad)
    _finish(m)
    # the var gain, with the phase now right; the active error left over is reported
    us, sums, _ = measure(m, seconds, chans)
    exp_q = int(s_mw * math.sin(phi)) * us
    exp_p = int(s_mw * abs(pf)) * us
    result = []
    for i, ch in enumerate(chans):
        q = sums[ch][_VAR]
        if q <= 0:
            raise CalibrationError("no lagging reactive energy on channel %s" % "AB"[ch])
        den = q * _UNIT_MWS * 1000000
        old = _gain(cfg, ch, _VAR, met)
        _set_gain(cfg, ch, _VAR, (old * exp_q + den // 2) // den, old)
        w = sums[ch][_W] + (met.trim_b_urad if ch else met.trim_a_urad) * q // 1000000
        result.append((out[i], (w * _UNIT_MWS * 1000000 - exp_p) * 1000000 // exp_p))
    _finish(m)
    return result


def calibrate(m, volts, amps, pf=1.0, seconds=None, channels=None, wait_s=600):
    """One calibration step, chosen by the reference load applied:
    no current -> offsets; PF of (about) 1 -> gains and rms scales; lagging PF -> phase.
    seconds: the integration time (default 600 s for offsets, 60 s otherwise)."""
    if not amps:
        return calibrate_offset(m, volts, 0, 1.0, seconds or 600, channels, wait_s)
    if abs(pf) >= 0.99:
        return calibrate_gain(m, volts, amps, pf, seconds or 60, channels, wait_s)
    return calibrate_phase(m, volts, amps, pf, seconds or 60, channels, wait_s)
