"""One rule per setting (issue 16): what the optical port takes, power-up keeps and the display
uses are the same (firmware/config.py validate), on the simulated board.

The allowed values below are the documented ones, written out by hand: demand and
load-profile intervals of 5, 6, 10, 12, 15, 20, 30 or 60 minutes (whole blocks of the hour,
at least 5 minutes), sub-intervals that divide the interval into whole minutes, a scroll
time of SCROLL_MIN_S (10 s on a factory meter) to 30 s.
"""

from __future__ import annotations

from host_tools.c1218 import TABLES as T
from host_tools.c1218 import Client, ServiceError, parse
from host_tools.repo import firmware_module

config = firmware_module("config")
MT1 = T.MFG + 1
CONFIGURATION_ERROR = 1 << 1  # C12.19 ST3 ED_STD_STATUS1 bit 1 (the LCD's Er 003)
INTERVALS = (5, 6, 10, 12, 15, 20, 30, 60)


def tlv(*pairs: tuple[int, int]) -> bytes:
    """MT1 data: signed one-byte integer settings (config.py's TLV: id, 0x81, value)."""
    return b"".join(bytes([key, 0x81, value]) for key, value in pairs)


def write(c: Client, *pairs: tuple[int, int]) -> str:
    try:
        c.write(MT1, tlv(*pairs))
    except ServiceError as exc:
        return exc.name
    return "ok"


def state(c: Client) -> tuple[dict, bool]:
    """MT1's settings, and whether ST3 flags a configuration error."""
    settings = dict(config.Config.decode(c.read(MT1)).items())
    return settings, bool(parse(T.ST3, c.read(3))["ED_STD_STATUS1"] & CONFIGURATION_ERROR)


def power_cycle(sim) -> None:
    sim.power_off()
    sim.power_on()


def test_the_port_accepts_exactly_the_intervals_power_up_keeps(sim):
    """Every interval 1-60 the port is offered: 4 (and every other non-member) refused with
    IAR and nothing changed; each accepted one survives a power cycle without Er 003."""
    accepted = []
    with Client.open(sim.optical_port) as c, c.session(password=""):
        for minutes in range(1, 61):
            before, _ = state(c)
            code = write(c, (config.DEMAND_INTERVAL_MIN, minutes))
            if code == "ok":
                accepted.append(minutes)
            else:
                assert code == "iar", (minutes, code)
                assert state(c)[0] == before, f"{minutes}: refused, nothing changed"
    assert accepted == list(INTERVALS)
    for minutes in INTERVALS:
        with Client.open(sim.optical_port) as c, c.session(password=""):
            assert write(c, (config.DEMAND_INTERVAL_MIN, minutes), (config.LP_INTERVAL_MIN, minutes)) == "ok"
        power_cycle(sim)
        with Client.open(sim.optical_port) as c, c.session(password=""):
            settings, error = state(c)
        assert not error, f"{minutes} min: Er 003 after the power cycle"
        assert settings[config.DEMAND_INTERVAL_MIN] == minutes and settings[config.LP_INTERVAL_MIN] == minutes


def test_interval_4_is_refused_and_the_meter_keeps_its_configuration(sim):
    with Client.open(sim.optical_port) as c, c.session(password=""):
        before, _ = state(c)
        assert write(c, (config.DEMAND_INTERVAL_MIN, 4)) == "iar"
        assert write(c, (config.LP_INTERVAL_MIN, 4)) == "iar"
        assert write(c, (config.SCROLL_S, 12), (config.DEMAND_INTERVAL_MIN, 4)) == "iar", "all or none"
        assert state(c) == (before, False)
    power_cycle(sim)
    with Client.open(sim.optical_port) as c, c.session(password=""):
        assert state(c) == (before, False)


def test_subintervals_must_divide_the_interval_into_whole_minutes(sim):
    with Client.open(sim.optical_port) as c, c.session(password=""):
        before, _ = state(c)
        assert before[config.DEMAND_INTERVAL_MIN] == 15
        assert write(c, (config.DEMAND_INTERVAL_MIN, 15), (config.DEMAND_SUBINTERVALS, 4)) == "iar", "3.75 min"
        accepted = [n for n in range(1, 17) if write(c, (config.DEMAND_SUBINTERVALS, n)) == "ok"]
        assert accepted == [1, 3, 5, 15], "15 = 1 x 15, 3 x 5, 5 x 3, 15 x 1 minutes"
        assert write(c, (config.DEMAND_SUBINTERVALS, 3)) == "ok"
        assert write(c, (config.DEMAND_INTERVAL_MIN, 20)) == "iar", "20 min in 3 sub-intervals: 6.67 min"
        assert write(c, (config.DEMAND_INTERVAL_MIN, 30)) == "ok", "30 min in 3 sub-intervals of 10"
    power_cycle(sim)
    with Client.open(sim.optical_port) as c, c.session(password=""):
        settings, error = state(c)
    assert not error and (settings[config.DEMAND_INTERVAL_MIN], settings[config.DEMAND_SUBINTERVALS]) == (30, 3)


def test_a_scroll_time_above_30_s_is_refused_not_clamped(sim):
    with Client.open(sim.optical_port) as c, c.session(password=""):
        before, _ = state(c)
        try:
            c.write(MT1, bytes([config.SCROLL_S, 0x82, 200, 0]))  # 200: a two-byte signed integer
            code = "ok"
        except ServiceError as exc:
            code = exc.name
        assert code == "iar", "200 s"
        assert write(c, (config.SCROLL_S, 31)) == "iar"
        assert write(c, (config.SCROLL_S, 9)) == "iar", "below SCROLL_MIN_S (10)"
        assert state(c) == (before, False)
        assert write(c, (config.SCROLL_S, 30)) == "ok"
        assert state(c)[0][config.SCROLL_S] == 30


def test_meterctl_program_and_the_meter_accept_the_same_intervals(sim):
    """meterctl's check of a configuration file (host_tools/program.py validate, in-process
    here) and the meter's MT1 write agree on every interval 0-61, demand and load profile:
    neither keeps a rule of its own."""
    from host_tools import program
    from host_tools.cli import UsageError

    def host_accepts(section: str, value: int) -> bool:
        try:
            program.validate({section: {"interval_min": value}})
        except UsageError:
            return False
        return True

    disagree = []
    with Client.open(sim.optical_port) as c, c.session(password=""):
        for section, key in (("demand", config.DEMAND_INTERVAL_MIN), ("load_profile", config.LP_INTERVAL_MIN)):
            for value in range(0, 62):
                host = host_accepts(section, value)
                port = write(c, (key, value)) == "ok"
                if port != host:
                    disagree.append((section, value, "port" if port else "meterctl"))
    assert disagree == [], "accepted by one side only"
    assert [v for v in range(0, 62) if host_accepts("demand", v)] == list(INTERVALS)
