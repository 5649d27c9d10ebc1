"""Meter forms (issue 16): Form 1S (1 element, 2 wire) and Form 2S (1.5 element, 3 wire
120/240 V, the voltage input across the two legs), the firmware in MicroPython against the
simulated service.

Every expected value is computed by hand from the service (../shared/reference/field.md,
"Meter forms"): a 2S service at 240 V across the legs is 120 V from each leg to neutral,
so leg A's I_A and leg B's I_B carry 120 x I_A + 120 x I_B watts at PF 1. The firmware's
formula, V_AB x (I_A + I_B) / 2, is never used to make an expectation. The board runs the
metering harness of test_metrology.py (registers printed every 32 polls, the firmware's
own calibration run first); one test goes end to end through `meterctl program` with
`[metrology] form = "2S"` and `meterctl read --json`.
"""

from __future__ import annotations

import json

import pytest
from test_metrology import CALIBRATION, ELEMENTS, ppm, start, window

from host_tools.sim import SimBoard
from host_tools.sim.source import Source

pytestmark = pytest.mark.sim_only

ACCURACY_PPM = 100  # issue 3's bound for a calibrated meter (test_metrology.py)


# ---- the service model: its truth is the physics, not the meter's formula ----------------------


def test_source_3_wire_truth_is_per_leg_to_neutral():
    s = Source()
    s.set_load(240.0, 10.0, channel="A")
    s.set_load(240.0, 10.0, channel="B")
    assert s.power_w() == pytest.approx(2400.0)  # 120 V x 10 A + 120 V x 10 A
    assert s.leg_power_w() == pytest.approx((1200.0, 1200.0))
    pins = s.pin_inputs()  # the chip sees V_AB and both line currents
    assert pins["v_pin"] == pytest.approx(0.240)  # 240 V through the 1000:1 divider
    assert pins["ia_pin"] == pytest.approx(10 / 707.107) and pins["ib_pin"] == pytest.approx(10 / 707.107)
    s.set_load(240.0, 20.0, channel="A")
    s.set_load(240.0, 10.0, channel="B")
    assert s.power_w() == pytest.approx(3600.0)  # 120 x 20 + 120 x 10, not 240 x 30
    s.set_load(240.0, 10.0, channel="A")
    s.set_load(240.0, -4.0, channel="B")  # leg B exports
    assert s.power_w() == pytest.approx(720.0)  # 1200 W - 480 W
    s.set_load(240.0, 10.0, pf=0.5, channel="A")
    s.set_load(240.0, 0.0, channel="B")
    assert s.power_w() == pytest.approx(600.0)  # 120 V x 10 A x 0.5


def test_source_2_wire_is_unchanged_and_has_no_leg_b():
    s = Source()
    s.set_load(240.0, 10.0)
    assert s.power_w() == pytest.approx(2400.0)  # Form 1S: 240 V x 10 A
    assert s.pin_inputs()["ib_pin"] == 0.0
    s.set_load(120.0, -5.0)
    assert s.power_w() == pytest.approx(-600.0)


def test_source_legs_set_apart_show_the_half_element_error():
    s = Source()
    s.set_load(240.0, 20.0, channel="A", volts_an=110.0)  # leg B: 240 - 110 = 130 V
    s.set_load(240.0, 0.0, channel="B")
    assert s.leg_volts() == pytest.approx((110.0, 130.0))
    assert s.power_w() == pytest.approx(2200.0)  # 110 V x 20 A
    assert s.pin_inputs()["v_pin"] == pytest.approx(0.240)  # V_AB is still 240 V
    s.set_load(240.0, 10.0, channel="A", volts_bn=130.0)
    s.set_load(240.0, 10.0, channel="B")
    assert s.power_w() == pytest.approx(2400.0)  # 110 x 10 + 130 x 10: balanced currents, no error
    s.set_load(230.0, 10.0, channel="A")  # a new voltage: the legs balanced again (115 V each)
    assert s.leg_volts() == pytest.approx((115.0, 115.0))
    with pytest.raises(ValueError, match="legs must add up"):
        s.set_load(240.0, 10.0, volts_an=100.0, volts_bn=100.0)


# ---- a calibrated Form 2S meter on the simulated board ------------------------------------------


@pytest.fixture(scope="module")
def form_2s():
    """ELEMENTS = 2, calibrated by the firmware on a 2S bench: 240 V across the legs and the
    same current through both current elements (calibration.py)."""
    board = start(settings=[(ELEMENTS, 2)], cal=CALIBRATION, channel_b=True)
    yield board
    board.close()


def _load(board: SimBoard, ia: float, ib: float, **kw) -> None:
    board.set_load(240.0, ia, channel="A", **kw)
    board.set_load(240.0, ib, channel="B", **kw)


def test_form_2s_balanced_legs_10_a_register_2_400_kwh_in_an_hour(form_2s):
    """A = B = 10 A at 240 V for an hour: 120 V x 10 A x 2 = 2400 W, 2.400 kWh (the firmware
    on main registered 4.8 kWh: V_AB x I_A + V_AB x I_B)."""
    _load(form_2s, 10.0, 10.0)
    t0, p0 = form_2s.virtual_time(), form_2s.cf1_pulses
    r0, r1, _ = window(form_2s, 3600)
    t1, p1 = form_2s.virtual_time(), form_2s.cf1_pulses
    hours = (r1["t_us"] - r0["t_us"]) / 3.6e9
    assert hours >= 1.0 - 1 / 3600
    got = r1.wh("delivered") - r0.wh("delivered")
    assert abs(ppm(got, 2400.0 * hours)) < ACCURACY_PPM, (got, 2400.0 * hours)
    assert r1.wh("received") == r0.wh("received")
    # each element registers its leg: 120 V x 10 A
    assert r1.wh("a_delivered") - r0.wh("a_delivered") == pytest.approx(1200.0 * hours, rel=5e-4)
    assert r1.wh("b_delivered") - r0.wh("b_delivered") == pytest.approx(1200.0 * hours, rel=5e-4)
    # VAh at PF 1: the same 2400 VA
    assert r1.wh("vah_delivered") - r0.wh("vah_delivered") == pytest.approx(2400.0 * hours, rel=2e-3)
    # CF1 (the calibration LED), Kh = 1 Wh: 2400 pulses an hour (the pulse count runs from t0
    # to t1, the registers from one printed poll to another)
    assert (p1 - p0) == pytest.approx(2400.0 * (t1 - t0) / 3600, abs=1.5)
    assert form_2s.ade_violations() == []


def test_form_2s_halving_keeps_the_full_resolution_at_the_starting_load(form_2s):
    """0.05 A (the starting load of a 200 A class meter) on leg A alone: 120 V x 0.05 A =
    6 W, 6.000 Wh in an hour. The chip counts about 33 LSB (0.1 mWh) a second on channel A
    here: a halving that dropped the odd LSB would lose up to half an LSB of some 16 a
    poll, up to 3 % (2.0 % measured with the carry taken out); the carried remainder loses
    nothing (0.014 % off here: the calibration and the noise)."""
    _load(form_2s, 0.05, 0.0)
    r0, r1, _ = window(form_2s, 3600)
    hours = (r1["t_us"] - r0["t_us"]) / 3.6e9
    got = r1.wh("delivered") - r0.wh("delivered")
    assert abs(ppm(got, 6.0 * hours)) < 1000, (got, 6.0 * hours)
    assert r1.wh("b_delivered") == r0.wh("b_delivered"), "no creep on the unloaded leg"


@pytest.mark.parametrize(
    "ia,ib,delivered_w,received_w,legs",
    [
        # leg A imports 10 A, leg B exports 4 A: 120 x 10 - 120 x 4 = 720 W delivered
        (10.0, -4.0, 720.0, 0.0, {"a_delivered": 1200.0, "b_received": 480.0}),
        # leg A imports 4 A, leg B exports 10 A: 120 x 4 - 120 x 10 = -720 W: received
        (4.0, -10.0, 0.0, 720.0, {"a_delivered": 480.0, "b_received": 1200.0}),
        # both legs export 10 A (solar on a 240 V inverter): 2400 W received
        (-10.0, -10.0, 0.0, 2400.0, {"a_received": 1200.0, "b_received": 1200.0}),
    ],
)
def test_form_2s_one_leg_importing_the_other_exporting(form_2s, ia, ib, delivered_w, received_w, legs):
    _load(form_2s, ia, ib)
    r0, r1, _ = window(form_2s, 1800)
    hours = (r1["t_us"] - r0["t_us"]) / 3.6e9
    for name, watts in (("delivered", delivered_w), ("received", received_w)):
        got = r1.wh(name) - r0.wh(name)
        if watts:
            assert abs(ppm(got, watts * hours)) < ACCURACY_PPM, (name, got, watts * hours)
        else:
            assert got == 0, name
    for name, watts in legs.items():
        assert r1.wh(name) - r0.wh(name) == pytest.approx(watts * hours, rel=5e-4), name
    net = (r1.wh("delivered") - r1.wh("received")) - (r0.wh("delivered") - r0.wh("received"))
    assert net == pytest.approx((delivered_w - received_w) * hours, rel=ACCURACY_PPM * 1e-6)
    assert form_2s.ade_violations() == []


def test_form_2s_legs_apart_register_the_documented_half_element_error(form_2s):
    """V_AN = 110 V, V_BN = 130 V (V_AB still 240 V), 20 A on leg A only: 110 x 20 = 2200 W
    flow; a 2S meter sees 240 V and 20 A on A and registers 240 x 20 / 2 = 2400 W, +9.09 %
    (field.md: exact only when the legs are balanced). The truth comes from the legs."""
    _load(form_2s, 20.0, 0.0, volts_an=110.0)
    r0, r1, power = window(form_2s, 600)
    assert power == pytest.approx(2200.0)
    hours = (r1["t_us"] - r0["t_us"]) / 3.6e9
    got = r1.wh("delivered") - r0.wh("delivered")
    assert got / (2200.0 * hours) == pytest.approx(2400 / 2200, rel=5e-4)
    _load(form_2s, 10.0, 10.0, volts_an=110.0)  # balanced currents: 110 x 10 + 130 x 10, exact
    r0, r1, power = window(form_2s, 600)
    assert power == pytest.approx(2400.0)
    hours = (r1["t_us"] - r0["t_us"]) / 3.6e9
    assert r1.wh("delivered") - r0.wh("delivered") == pytest.approx(2400.0 * hours, rel=5e-4)


def test_form_1s_is_unchanged_240_v_10_a_is_2_4_kw():
    """Form 1S (the default): 240 V x 10 A = 2400 W on channel A, an hour 2.400 kWh (the
    board uncalibrated here: its -0.62 % gain error, test_metrology.py)."""
    board = start(amps=10.0)
    try:
        r0, r1, _ = window(board, 3600)
        hours = (r1["t_us"] - r0["t_us"]) / 3.6e9
        got = r1.wh("delivered") - r0.wh("delivered")
        assert got == pytest.approx(2400.0 * hours * (1.012 * 0.982), rel=2e-3)
        assert r1.wh("b_delivered") == r0.wh("b_delivered") == 0
    finally:
        board.close()


# ---- end to end: meterctl program form = "2S", then read -------------------------------------


def test_meterctl_programs_form_2s_and_read_shows_the_2s_energy_power_and_demand(meterctl, tmp_path):
    """On an ideal board (no gain, phase or offset errors): program `[metrology] form = "2S"`,
    apply A = B = 10 A at 240 V for an hour: 2400 Wh, MT3 shows 240 V, 10 A, 10 A and
    2400 W, the maximum demand is 2400 W (15 min block intervals all at that load)."""
    path = tmp_path / "meter.toml"
    path.write_text('[metrology]\nform = "2S"\n')
    with SimBoard(seed=1, ideal=True) as board:
        done = meterctl("program", "--config", str(path), "--port", board.optical_port)
        assert done.returncode == 0, done.stderr
        assert "metrology.form" in done.stdout and "'2S'" in done.stdout, done.stdout
        _load(board, 10.0, 10.0)
        board.run(60)
        first = json.loads(meterctl("read", "--port", board.optical_port, "--json").stdout)
        p0 = board.cf1_pulses
        board.run(3600)
        r = json.loads(meterctl("read", "--port", board.optical_port, "--json").stdout)
        assert r["delivered_wh"] - first["delivered_wh"] == pytest.approx(2400.0, abs=1.0)
        assert r["received_wh"] == 0
        assert board.cf1_pulses - p0 == pytest.approx(2400, abs=1.5)
        i = r["instantaneous"]
        assert i["volts"] == pytest.approx(240.0, rel=2e-3)
        assert i["amps_a"] == pytest.approx(10.0, rel=2e-3) and i["amps_b"] == pytest.approx(10.0, rel=2e-3)
        assert i["watts"] == pytest.approx(2400.0, rel=2e-3)
        assert i["va"] == pytest.approx(2400.0, rel=2e-3)
        assert i["pf"] == pytest.approx(1.0, abs=2e-3)
        assert r["demand"]["max_w"] == pytest.approx(2400, rel=2e-3)


def test_meterctl_form_key_and_its_alias(meterctl, tmp_path):
    for text, shown in (('form = "1S"', "'1S'"), ("elements = 2", "'2S'")):
        path = tmp_path / "m.toml"
        path.write_text(f"[metrology]\n{text}\n")
        done = meterctl("program", "--config", str(path), "--dry-run")
        assert done.returncode == 0, done.stderr
        assert shown in done.stdout, done.stdout
    for text, problem in (
        ('form = "12S"', "metrology.form: '12S' is not one of '1S' or '2S'"),
        ("form = 2", "metrology.form: must be a string"),
        ('form = "2S"\nelements = 2', "metrology.elements: give form or elements (its old name), not both"),
    ):
        path = tmp_path / "m.toml"
        path.write_text(f"[metrology]\n{text}\n")
        done = meterctl("program", "--config", str(path), "--dry-run")
        assert done.returncode == 2 and problem in done.stderr, done.stderr  # 2: a usage error
        assert "Traceback" not in done.stderr
