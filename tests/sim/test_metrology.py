"""Metrology (issue 3) on the simulated board, the firmware in MicroPython: the ADE7953
driver, the energy registers, no creep and the starting load, calibration, CF1, chip
resets, bus failures and the model's checks of the driver.

Each board runs a main.py written here: the real Meter with a given Config, optional
calibration steps (calibration.calibrate in the firmware, taking board time), and a
wrapped Metrology.poll that prints every register with the board's ticks_us every
PRINT_POLLS polls. The test reads those lines from the console; the truth over a window
between two lines is the source's exact power times the board time between them.
"""

from __future__ import annotations

import os
import re
import threading
import time

import holdup
import pytest

from host_tools.sim import SimBoard

# The hold-up from the line failing that loses nothing at any instant, at the source's 60 Hz:
# the chip's worst SAG detection, a write cycle in flight, the warning's own (holdup.py).
HOLD_UP_MS = holdup.hold_up_ms(60.0)

pytestmark = pytest.mark.sim_only

PRINT_POLLS = 32  # a multiple of SLOW_POLLS: reactive and apparent energy are read every 8 polls
TA = 30.0

# config ids (firmware/config.py)
ELEMENTS, CT_REVERSE_A, KH_MWH = 0x01, 0x02, 0x04
EVENT_CHIP_RESET = 0x0810
MEASUREMENT_ERROR = 1 << 7

MAIN = """
import gc, sys, board, meter, config
cfg = config.Config()
for k, v in {settings!r}:
    cfg.set(k, v)
m = meter.Meter(board.make(), cfg)
met = m.metrology

class Events:
    def record(self, code, data):
        print('EVENT', code, data)

met.events = Events()

def report(tag):
    e = met.energy
    fields = ' '.join(str(getattr(e, f)) for f in e.FIELDS)
    print(tag, m.clock.ticks_us(), met.chip_resets, met.bus_errors, m.status.bits, fields)

print('FIELDS', ' '.join(met.energy.FIELDS))
m.boot()
if {cal!r}:
    gc.collect()
    import calibration  # only while calibrating
    for step in {cal!r}:
        gc.collect()
        print('CAL', step, calibration.calibrate(m, *step[:3], seconds=step[3], wait_s=36000))
    del calibration, sys.modules['calibration']
gc.collect()
{extra}
_poll = met.poll
_n = [0]

def poll():
    _poll()
    _n[0] += 1
    if _n[0] % {every} == 0:
        report('REG')

met.poll = poll
_sag = met.sag_handler

def sag():
    report('SAG')
    if _sag is not None:
        _sag()

met.sag_handler = sag
print('READY')
m.run()
"""

_LINE = re.compile(r"^(REG|SAG) (\d+) (\d+) (\d+) (\d+) (.*)$", re.M)

UNCALIBRATED_GAIN_PPM = (1.012 * 0.982 - 1) * 1e6  # the simulated board's V and IA gain errors

# 240 V: offsets with no current, gain at TA, phase at TA PF 0.5 lag
CALIBRATION = ((240.0, 0.0, 1.0, 600), (240.0, TA, 1.0, 60), (240.0, TA, 0.5, 60))


class Reading(dict):
    """One printed line: the registers by name plus t_us, chip_resets, bus_errors, status."""

    def wh(self, name: str) -> float:
        """A register in Wh (varh, VAh) with its residue: the name without _wh/_res."""
        return self[name + "_wh"] + self[name + "_res"] / 1e4


def readings(board: SimBoard, tag: str = "REG", at_least: int = 0) -> list[Reading]:
    """The lines printed so far; with at_least, wait (up to 10 s of wall time) for that many."""
    time.sleep(0.05)  # the console relays asynchronously
    end = time.monotonic() + 10
    while len(re.findall(rf"^{tag} ", board.console.text(), re.M)) < at_least and time.monotonic() < end:
        time.sleep(0.05)  # a loaded machine relays later
    text = board.console.text()
    names = re.search(r"^FIELDS (.*)$", text, re.M)[1].split()
    out = []
    for m in _LINE.finditer(text):
        if m[1] != tag:
            continue
        r = Reading(zip(names, map(int, m[6].split()), strict=True))
        r.update(t_us=int(m[2]), chip_resets=int(m[3]), bus_errors=int(m[4]), status=int(m[5]))
        out.append(r)
    return out


def run_until(board: SimBoard, text: str, limit_s: float = 36000, step: float = 10) -> None:
    t = 0.0
    while text not in board.console.text():
        assert t < limit_s, f"{text!r} never printed; console:\n{board.console.text()[-3000:]}"
        board.run(step)
        t += step
        time.sleep(0.005)


def _drain(path: str) -> None:
    """Read the console port, as a terminal would: a console nobody reads throttles the
    board's output (the relay waits for the port), and the lines would come late."""
    fd = os.open(path, os.O_RDONLY | os.O_NOCTTY)
    try:
        while os.read(fd, 65536):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)


def start(settings=(), cal=(), extra="", seed=1, volts=240.0, amps=0.0, pf=1.0, channel_b=False) -> SimBoard:
    """A board running MAIN; calibration steps are applied on the source as the firmware
    asks for them (each step waits until it sees its load)."""
    board = SimBoard(seed=seed).start()
    threading.Thread(target=_drain, args=(board.console_port,), daemon=True).start()
    board.set_load(volts, amps, pf=pf)
    if channel_b:
        board.set_load(volts, amps, pf=pf, channel="B")
    main = MAIN.format(settings=tuple(settings), cal=tuple(cal), extra=extra, every=PRINT_POLLS)
    (board.state_dir / "fs" / "main.py").write_text(main)
    board.power_off()
    for i, (v, a, p, _) in enumerate(cal):
        board.set_load(v, a, pf=p)
        if channel_b:
            board.set_load(v, a, pf=p, channel="B")
        if i == 0:
            board.power_on()
        run_until(board, f"CAL ({v}, {a}, {p}")
    if not cal:
        board.power_on()
    run_until(board, "READY")
    return board


def window(board: SimBoard, seconds: float, settle: float = 5.0) -> tuple[Reading, Reading, float]:
    """Meter the current load for `seconds` at least; (first, last reading, true power W)."""
    t_change = board.virtual_time()
    board.run(settle + seconds + 2 * PRINT_POLLS)
    rs = [r for r in readings(board) if r["t_us"] / 1e6 >= t_change + settle]
    assert (rs[-1]["t_us"] - rs[0]["t_us"]) / 1e6 >= seconds - 1
    return rs[0], rs[-1], board.hw.source.power_w()


def true_wh(r0: Reading, r1: Reading, power_w: float) -> float:
    return abs(power_w) * (r1["t_us"] - r0["t_us"]) / 3.6e9


def ppm(got: float, true: float) -> float:
    return (got - true) / true * 1e6


# ---- a calibrated single-element meter -------------------------------------------------


@pytest.fixture(scope="module")
def calibrated():
    board = start(cal=CALIBRATION)
    yield board
    board.close()


def test_calibration_writes_the_config_and_fixes_gain_and_phase(calibrated):
    cal = re.findall(r"^CAL (.*)$", calibrated.console.text(), re.M)
    assert len(cal) == 3
    # the uncalibrated board was visibly wrong: -0.6 % (gains +1.2 % V, -1.8 % IA)
    gain_error_ppm = int(re.search(r"\[(-?\d+)\]", cal[1])[1])
    assert -7000 < gain_error_ppm < -5000
    # the CT's 0.30 deg phase error is found (5,236 urad) and PF 0.5 is then right
    phase_urad, residual_ppm = map(int, re.search(r"\[\((-?\d+), (-?\d+)\)\]", cal[2]).groups())
    assert abs(phase_urad - 5236) < 30
    assert abs(residual_ppm) < 100
    assert calibrated.ade_violations() == []


@pytest.mark.parametrize("volts,amps,pf", [(240.0, TA, 1.0), (240.0, TA, 0.5), (240.0, -TA, 1.0), (120.0, 3.0, 1.0)])
def test_calibrated_energy_within_100_ppm_of_the_truth(calibrated, volts, amps, pf):
    """Issue 3's bound. The chip's noise is far below it here (3 A at 120 V: about 4 ppm,
    1 sigma, from the 30 min window and the 10 min offset calibration)."""
    calibrated.set_load(volts, amps, pf=pf)
    r0, r1, power = window(calibrated, 1800)
    true = true_wh(r0, r1, power)
    got, other = ("delivered", "received") if amps > 0 else ("received", "delivered")
    assert abs(ppm(r1.wh(got) - r0.wh(got), true)) < 100, (r1.wh(got) - r0.wh(got), true)
    assert r1.wh(other) == r0.wh(other)
    assert r1.wh("a_" + got) - r0.wh("a_" + got) == pytest.approx(r1.wh(got) - r0.wh(got))
    assert calibrated.ade_violations() == []


def test_cf1_pulses_times_kh_match_the_registered_energy_within_one_pulse(calibrated):
    calibrated.set_load(240.0, 20.0)
    calibrated.run(PRINT_POLLS + 2)
    r0 = readings(calibrated)[-1]
    t0, p0 = calibrated.virtual_time(), calibrated.cf1_pulses
    calibrated.run(3 * 3600)
    r1 = readings(calibrated)[-1]
    t1, p1 = calibrated.virtual_time(), calibrated.cf1_pulses
    registered = r1.wh("delivered") - r0.wh("delivered")
    assert registered > 14000
    # the pulses are counted from t0 to t1, the registers from one printed poll to another
    edges = 4800 * ((t1 - r1["t_us"] / 1e6) - (t0 - r0["t_us"] / 1e6)) / 3600
    assert abs((p1 - p0) - registered - edges) <= 1.0


def test_reactive_and_apparent_registers(calibrated):
    calibrated.set_load(240.0, TA, pf=0.5)  # lagging: Q1
    r0, r1, _ = window(calibrated, 1200)
    h = (r1["t_us"] - r0["t_us"]) / 3.6e9
    q1 = r1.wh("varh_q1") - r0.wh("varh_q1")
    assert q1 == pytest.approx(240 * TA * 0.8660254 * h, rel=2e-3)
    assert r1.wh("vah_delivered") - r0.wh("vah_delivered") == pytest.approx(240 * TA * h, rel=2e-3)
    calibrated.set_load(240.0, -TA, pf=0.5)  # received, current lagging the reversed voltage: Q3
    r0, r1, _ = window(calibrated, 600)
    h = (r1["t_us"] - r0["t_us"]) / 3.6e9
    assert r1.wh("varh_q3") - r0.wh("varh_q3") == pytest.approx(240 * TA * 0.8660254 * h, rel=2e-3)
    assert r1.wh("vah_received") - r0.wh("vah_received") == pytest.approx(240 * TA * h, rel=2e-3)
    assert r1.wh("varh_q1") == r0.wh("varh_q1")


@pytest.mark.parametrize("how", ["reset pin", "SWRST"])
def test_chip_reset_mid_run_is_recovered_counted_and_the_loss_bounded(calibrated, how):
    calibrated.set_load(240.0, TA)
    calibrated.run(PRINT_POLLS + 5)
    resets0 = readings(calibrated)[-1]["chip_resets"]
    r0 = readings(calibrated)[-1]
    calibrated.run(100.5)  # the reset falls half-way between two polls
    hw = calibrated.hw
    with hw.cv:
        if how == "reset pin":
            hw.ade.set_reset_pin(0)
            hw.ade.set_reset_pin(1)
        else:  # a software reset, as a glitch on the bus could write it
            hw.ade.spi_select()
            hw.ade.spi_exchange(bytes([0x01, 0x02, 0x00, 0x00, 0x84]))
            hw.ade.spi_deselect()
        hw.cv.notify_all()
    calibrated.run(300)
    r1 = readings(calibrated)[-1]
    assert r1["chip_resets"] == resets0 + 1
    events = re.findall(r"^EVENT (\d+) (\d+)$", calibrated.console.text(), re.M)
    assert int(events[-1][0]) == EVENT_CHIP_RESET
    lost_lsb = int(events[-1][1])
    true = true_wh(r0, r1, 240 * TA)
    lost = true - (r1.wh("delivered") - r0.wh("delivered"))
    # the energy since the last poll is lost: at most one poll period (1 s, 2 Wh at 7.2 kW)
    # and the bring-up (ms), plus the calibration error over the window
    assert 0 < lost < 240 * TA * 1.05 / 3600 + true * 500e-6
    assert lost_lsb / 1e4 == pytest.approx(lost, abs=1.0)
    assert r1["status"] & MEASUREMENT_ERROR == 0
    assert hw.ade.peek(0x102) == 0x0004, "locked and configured again"
    assert hw.ade.peek(0x120) == 0x0030
    assert calibrated.ade_violations() == []
    # metering goes on at the calibrated accuracy
    r2, r3, power = window(calibrated, 600)
    assert abs(ppm(r3.wh("delivered") - r2.wh("delivered"), true_wh(r2, r3, power))) < 500


def test_a_changed_configuration_register_is_found_and_rewritten(calibrated):
    hw = calibrated.hw
    resets0 = readings(calibrated)[-1]["chip_resets"]
    good = hw.ade.peek(0x282)
    with hw.cv:  # AWGAIN corrupted (as by a bus glitch), the chip not reset
        hw.ade.spi_select()
        hw.ade.spi_exchange(bytes([0x02, 0x82, 0x00, 0x40, 0x00, 0x00]))
        hw.ade.spi_deselect()
    assert hw.ade.peek(0x282) == 0x400000
    calibrated.run(8 * 40)  # one register is checked every 8 polls
    assert hw.ade.peek(0x282) == good
    assert readings(calibrated)[-1]["chip_resets"] == resets0
    assert calibrated.ade_violations() == []


# ---- no creep, starting load ---------------------------------------------------------


def test_no_creep_over_24_hours_then_the_starting_load_registers():
    """Rated voltage, no current, the chip's noise (offsets calibrated): nothing registers
    in a day, in any register (without the no-load threshold the noise alone would move the
    residues: about 2.5 mWh, 1 sigma, in a day). Then 0.05 A (the starting load of a 200 A
    class meter) registers, at 240 V and at 120 V, off by the uncalibrated gain only."""
    board = start(cal=CALIBRATION[:1])
    try:
        board.run(PRINT_POLLS + 2)
        r0 = readings(board)[-1]
        board.run(24 * 3600)
        r1 = readings(board)[-1]
        assert (r1["t_us"] - r0["t_us"]) / 3.6e9 > 23.9
        for name in r0:
            if name != "t_us":
                assert r1[name] == r0[name], name
        for volts in (240.0, 120.0):
            board.set_load(volts, 0.05)
            r0, r1, power = window(board, 3600)
            got = r1.wh("delivered") - r0.wh("delivered")
            # the uncalibrated gain (+1.2 % V, -1.8 % IA: -0.62 %) and the noise: 1 sigma 230 ppm
            # at 120 V (10 min of offset calibration, 1 h here), 115 ppm at 240 V. An offset left
            # uncalibrated (60 codes: +7.7 % at 240 V) or a no-load threshold that ate the starting
            # load fails this.
            assert ppm(got, true_wh(r0, r1, power)) == pytest.approx(UNCALIBRATED_GAIN_PPM, abs=1500)
        assert board.ade_violations() == []
    finally:
        board.close()


# ---- configurations --------------------------------------------------------------------


def test_reversed_ct_setting_registers_received_energy_as_received():
    """A CT wired backwards shows the chip the opposite sign. Energy received through it
    reaches the chip as if delivered (positive amps here); CT_REVERSE_A turns it over."""
    board = start(settings=[(CT_REVERSE_A, 1)], amps=10.0)
    try:
        r0, r1, power = window(board, 600)
        true = true_wh(r0, r1, power)
        assert r1.wh("received") - r0.wh("received") == pytest.approx(true, rel=0.02)
        assert r1.wh("delivered") == r0.wh("delivered")
        assert r1.wh("a_received") - r0.wh("a_received") == pytest.approx(true, rel=0.02)
        board.set_load(240.0, -10.0)  # delivered through the reversed CT
        r0, r1, power = window(board, 600)
        assert r1.wh("delivered") - r0.wh("delivered") == pytest.approx(true_wh(r0, r1, power), rel=0.02)
        assert r1.wh("received") == r0.wh("received")
    finally:
        board.close()


def test_form_2s_halves_the_sum_of_both_channels():
    """Form 2S (ELEMENTS = 2): 240 V across the legs, 20 A on leg A and 10 A on leg B is
    120 V x 20 A + 120 V x 10 A = 3600 W (this test once asserted 7200 W: V_AB x I_A +
    V_AB x I_B, the sum without the half). Per element: each leg's half."""
    cal = CALIBRATION
    board = start(settings=[(ELEMENTS, 2)], cal=cal, channel_b=True)
    try:
        board.set_load(240.0, 20.0, channel="A")
        board.set_load(240.0, 10.0, channel="B")
        t0, p0 = board.virtual_time(), board.cf1_pulses
        r0, r1, power = window(board, 1800)
        t1, p1 = board.virtual_time(), board.cf1_pulses
        assert power == pytest.approx(3600.0)  # the source's truth: 120 x 20 + 120 x 10
        h = (r1["t_us"] - r0["t_us"]) / 3.6e9
        total = r1.wh("delivered") - r0.wh("delivered")
        assert abs(ppm(total, 3600.0 * h)) < 500
        assert r1.wh("a_delivered") - r0.wh("a_delivered") == pytest.approx(2400.0 * h, rel=5e-4)
        assert r1.wh("b_delivered") - r0.wh("b_delivered") == pytest.approx(1200.0 * h, rel=5e-4)
        # CF1 carries (A + B) / 2 (the chip's code 1001): one pulse per Kh (1 Wh) of 3600 W
        edges = 3600.0 * ((t1 - r1["t_us"] / 1e6) - (t0 - r0["t_us"] / 1e6)) / 3600
        assert abs((p1 - p0) - total - edges) <= 1.0
        # opposite directions on the two legs: the total is decided on the sum,
        # 120 V x 20 A - 120 V x 5 A = 1800 W delivered
        board.set_load(240.0, -5.0, channel="B")
        r0, r1, power = window(board, 1800)
        h = (r1["t_us"] - r0["t_us"]) / 3.6e9
        assert r1.wh("delivered") - r0.wh("delivered") == pytest.approx(1800.0 * h, rel=5e-4)
        assert r1.wh("received") == r0.wh("received")
        assert r1.wh("a_delivered") - r0.wh("a_delivered") == pytest.approx(2400.0 * h, rel=5e-4)
        assert r1.wh("b_received") - r0.wh("b_received") == pytest.approx(600.0 * h, rel=5e-4)
        assert board.ade_violations() == []
    finally:
        board.close()


# ---- faults and the model's checks -------------------------------------------------------

# A transport that fails while the seal plug is in: the simulated SPI bus cannot fail by
# itself, so this one fault is a mock (of the transport only; the chip is the model).
FLAKY = """
class Flaky:
    def __init__(self, t, pin):
        self.t = t
        self.pin = pin
    def read(self, addr):
        if self.pin.value() == 0:
            raise OSError(5)
        return self.t.read(addr)
    def write(self, addr, value):
        if self.pin.value() == 0:
            raise OSError(5)
        self.t.write(addr, value)

met.ade._t = Flaky(met.ade._t, m.board.seal_plug)
"""


def test_bus_failure_sets_measurement_error_then_recovers_without_a_crash():
    board = start(extra=FLAKY, amps=10.0)
    try:
        board.run(PRINT_POLLS + 2)
        assert readings(board)[-1]["status"] & MEASUREMENT_ERROR == 0
        board.set_seal_plug(True)
        board.run(2 * PRINT_POLLS)
        r = readings(board)[-1]
        assert r["status"] & MEASUREMENT_ERROR
        assert r["bus_errors"] >= 3
        board.set_seal_plug(False)
        board.run(2 * PRINT_POLLS)
        r0 = readings(board)[-1]
        assert r0["status"] & MEASUREMENT_ERROR == 0
        r1, r2, power = window(board, 300)
        assert r2.wh("delivered") - r1.wh("delivered") == pytest.approx(true_wh(r1, r2, power), rel=0.02)
    finally:
        board.close()


# The driver's own accesses: none is flagged. Then a wrong-width read, a 0x120 write
# without the key and a driver that skips the unlock pair: each is.
BAD = """
import micropython, ade7953
for _ in range(20):  # every register path, slow polls included, with the heap locked
    micropython.heap_lock()
    try:
        met.poll()
        ok = True
    except MemoryError:
        ok = False
    micropython.heap_unlock()
    if not ok:
        break
print('NOALLOC', ok)
bd = m.board
buf = bytearray([0x02, 0x1E, 0x80, 0, 0])  # AENERGYA (24-bit) read with 2 data bytes
bd.ade_cs(0)
bd.ade_spi.write_readinto(buf, buf)
bd.ade_cs(1)
met.ade._t.write(0x120, 0x30)  # without the 0xAD key first
print('BAD done')
"""


def test_model_flags_wrong_width_and_unlocked_accesses_but_not_the_driver():
    board = start(amps=5.0)
    try:
        board.run(120)
        assert board.ade_violations() == []
    finally:
        board.close()
    board = start(extra=BAD, amps=5.0)
    try:
        assert "NOALLOC True" in board.console.text()
        v = board.ade_violations()
        assert any("wrong width" in x and "0x21E" in x for x in v), v
        assert any("0x120 without the 0xAD key" in x for x in v), v
    finally:
        board.close()


SKIP_UNLOCK = """
import ade7953
class NoUnlock(ade7953.SpiTransport):
    def write(self, addr, value):
        if addr in (0x0FE, 0x120):
            return  # a driver that forgets the mandatory unlock pair
        super().write(addr, value)
met.ade._t = NoUnlock(m.board.ade_spi, m.board.ade_cs)
met._restart(1)  # a full bring-up (begin() would adopt the running chip: nothing to unlock)
met.poll()
"""


def test_model_flags_a_driver_that_skips_the_unlock_pair():
    board = start(extra=SKIP_UNLOCK, amps=5.0)
    try:
        board.run(5)
        assert any("optimum setting missing" in x for x in board.ade_violations())
    finally:
        board.close()


def test_sag_takes_the_energy_out_of_the_chip_before_the_handler():
    board = start(amps=TA)
    try:
        n = len(readings(board))
        while len(readings(board)) == n:  # up to the next printed poll
            board.run(1)
        r0 = readings(board)[-1]
        board.run(r0["t_us"] / 1e6 + 10.6 - board.virtual_time())  # the line fails 10.6 s after that poll
        board.power_off(sag_ms=HOLD_UP_MS)
        sag = readings(board, "SAG", at_least=1)
        assert len(sag) == 1
        r1 = sag[0]
        # the chip warned after its detection delay (tests/sim/holdup.py), not at once ...
        after_ms = (r1["t_us"] - r0["t_us"]) / 1000 - 10600
        assert holdup.detection_min_ms(60.0) - 0.1 <= after_ms <= holdup.detection_ms(60.0) + 0.5
        # ... and the sag's own poll took the last 0.6 s out of the chip before the handler ran
        registered = r1.wh("delivered") - r0.wh("delivered")
        assert registered == pytest.approx(240 * TA * 10.6 / 3600, rel=0.01)  # uncalibrated: -0.6 %
        # ... all of it: VAh (read every 8 polls otherwise) is as complete as Wh at PF 1
        assert r1.wh("vah_delivered") == pytest.approx(r1.wh("delivered"), rel=0.002)
    finally:
        board.close()
