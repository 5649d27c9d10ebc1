"""meterctl's read-side commands as a technician or a script meets them: each run as a
subprocess against the meter's optical port, its output checked against what the meter
really holds (the simulated board's true energy and LCD, the tables read directly)."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from host_tools.c1218 import TABLES as T
from host_tools.c1218 import Client, parse
from host_tools.readout import read_lcd, read_registers, read_status, register_fields
from host_tools.repo import firmware_module

METERCTL = str(Path(sys.executable).parent / "meterctl")


def ok_json(result: subprocess.CompletedProcess) -> dict | list:
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return json.loads(result.stdout)  # nothing but JSON on stdout


def mt5_registers(port: str) -> dict[str, int]:
    """MT5 read with the client, without meterctl: the INT64 words by FIELDS name."""
    with Client.open(port) as c, c.session(password=""):
        data = c.read(T.MFG + 5)
    return {n: int.from_bytes(data[8 * i : 8 * i + 8], "little", signed=True) for i, n in enumerate(register_fields())}


@pytest.mark.sim_only
def test_read_json_has_the_registers_at_full_resolution_and_matches_the_true_energy(meter, meterctl):
    meter.sim.set_load(240, 10)
    meter.sim.run(3600)
    meter.sim.set_load(240, -5)  # export for half an hour
    meter.sim.run(1800)
    r = ok_json(meterctl("read", "--port", meter.optical, "--json"))
    true = meter.sim.true_energy_wh()
    assert r["delivered_wh"] == pytest.approx(true["delivered"], rel=0.01)
    assert r["received_wh"] == pytest.approx(true["received"], rel=0.01)
    assert true["delivered"] > 2000 and true["received"] > 500
    # exactly what MT5 holds, to the 0.1 mWh
    words = mt5_registers(meter.optical)
    assert round(r["delivered_wh"] * 10000) == words["delivered_wh"] * 10000 + words["delivered_res"]
    assert round(r["received_wh"] * 10000) == words["received_wh"] * 10000 + words["received_res"]
    assert r["net_wh"] == pytest.approx(r["delivered_wh"] - r["received_wh"], abs=1e-4)
    for name in register_fields():
        if name.endswith("_wh"):
            value = r["registers"][name]
            assert round(value * 10000) == words[name] * 10000 + words[name[:-3] + "_res"], name
    # ST23: the whole-Wh registers, tier A (no TOU schedule: all day), demand
    a = r["tiers"][0]
    assert [t["tier"] for t in r["tiers"]] == ["A", "B", "C", "D"]
    assert a["delivered_wh"] == words["delivered_wh"] and a["received_wh"] == words["received_wh"]
    assert a["net_wh"] == a["delivered_wh"] - a["received_wh"]
    assert r["demand"]["max_w"] == pytest.approx(2400, rel=0.03)
    assert r["demand"]["max_time"].startswith("2026-01-05T") and r["demand"]["resets"] == 0
    # MT3 now: exporting 5 A at 240 V
    i = r["instantaneous"]
    assert i["volts"] == pytest.approx(240, rel=0.02) and i["hz"] == pytest.approx(60, abs=0.05)
    assert i["amps_a"] == pytest.approx(5, rel=0.03)
    assert i["watts"] == pytest.approx(-1200, rel=0.03)
    human = meterctl("read", "--port", meter.optical)
    assert human.returncode == 0 and f"{r['delivered_wh']:,.4f}" in human.stdout


@pytest.mark.sim_only
def test_read_shows_the_cumulative_and_continuously_cumulative_demand(meter, meterctl):
    """Issue 16, by hand: 2 kW for an hour (15-minute block demand: maximum 2000 W), a demand
    reset: cumulative 2000 W; 3 kW for an hour: continuously cumulative = 2000 + the
    maximum now (3000 W) = 5000 W; a second reset: cumulative 5000 W. The simulated board
    is an uncalibrated meter: within 3 %; the sums are exact on the meter's own values."""
    meter.sim.set_load(240, 2000 / 240)
    meter.sim.run(3600)
    assert meterctl("reset-demand", "--port", meter.optical).returncode == 0
    first = ok_json(meterctl("read", "--port", meter.optical, "--json"))["demand"]
    assert first["cumulative_w"] == pytest.approx(2000, rel=0.03) and first["max_w"] == 0
    assert first["cont_cumulative_w"] == first["cumulative_w"]
    meter.sim.set_load(240, 3000 / 240)
    meter.sim.run(3600)
    r = ok_json(meterctl("read", "--port", meter.optical, "--json"))
    d = r["demand"]
    assert d["max_w"] == pytest.approx(3000, rel=0.03) and d["cumulative_w"] == first["cumulative_w"]
    assert d["cont_cumulative_w"] == d["cumulative_w"] + d["max_w"] == pytest.approx(5000, rel=0.03)
    a = r["tiers"][0]  # no TOU schedule: all of it tier A
    assert (a["cum_demand_w"], a["cont_cum_demand_w"]) == (d["cumulative_w"], d["cont_cumulative_w"])
    assert all(t["cum_demand_w"] == t["cont_cum_demand_w"] == 0 for t in r["tiers"][1:])
    human = meterctl("read", "--port", meter.optical)
    assert human.returncode == 0
    assert f"cumulative {d['cumulative_w']:,} W, continuously cumulative {d['cont_cumulative_w']:,} W" in human.stdout
    assert meterctl("reset-demand", "--port", meter.optical).returncode == 0
    d2 = ok_json(meterctl("read", "--port", meter.optical, "--json"))["demand"]
    assert d2["cumulative_w"] == d["cont_cumulative_w"] == d2["cont_cumulative_w"]
    assert d2["cumulative_w"] == pytest.approx(5000, rel=0.03) and d2["max_w"] == 0 and d2["resets"] == 2


def test_the_plain_functions_give_what_the_commands_print(meter, meterctl):
    from_cli = ok_json(meterctl("read", "--port", meter.optical, "--json"))
    status_cli = ok_json(meterctl("status", "--port", meter.optical, "--json"))
    with Client.open(meter.optical) as c, c.session(password=""):
        regs, status = read_registers(c), read_status(c)
        text, ram = read_lcd(c)
    assert regs["registers"] == from_cli["registers"] and regs["tiers"] == from_cli["tiers"]
    assert status["sealed"] == status_cli["sealed"] and status["firmware"] == status_cli["firmware"]
    assert len(ram) == 16 and len(text) == 8


@pytest.mark.parametrize("spelling", ["1", "ST1", "st1", "0x001"])
def test_table_st1_names_the_manufacturer_however_the_table_is_spelled(meter, meterctl, spelling):
    t = ok_json(meterctl("table", spelling, "--port", meter.optical, "--json"))
    assert t["table"] == 1 and t["name"] == "ST1" and t["size"] == 32
    assert t["fields"]["MANUFACTURER"] == "OMTR" and t["fields"]["ED_MODEL"] == "OPENMTR1"
    assert bytes.fromhex(t["hex"])[:4] == b"OMTR"


def test_table_human_raw_and_partial_reads(meter, meterctl):
    human = meterctl("table", "ST1", "--port", meter.optical)
    assert human.returncode == 0 and "MANUFACTURER" in human.stdout and "OMTR" in human.stdout
    raw = meterctl("table", "ST1", "--raw", "--port", meter.optical)
    assert raw.returncode == 0 and "4f 4d 54 52" in raw.stdout and "MANUFACTURER" not in raw.stdout
    part = ok_json(meterctl("table", "0x805", "--offset", "16", "--count", "8", "--port", meter.optical, "--json"))
    assert part["offset"] == 16 and part["size"] == 8 and "fields" not in part
    beyond = meterctl("table", "MT5", "--offset", "4000", "--count", "8", "--port", meter.optical)
    assert beyond.returncode == 2 and "MT5 has no bytes 4000..4007" in beyond.stderr and beyond.stdout == ""
    whole = ok_json(meterctl("table", "MT5", "--port", meter.optical, "--json"))
    assert bytes.fromhex(whole["hex"])[16:24] == bytes.fromhex(part["hex"])
    assert set(whole["fields"]) == {n for n in register_fields() if n.endswith("_wh")}


def test_table_decodes_the_configuration_status_and_event_tables(meter, meterctl):
    mt1 = ok_json(meterctl("table", "MT1", "--port", meter.optical, "--json"))
    settings = {s["name"]: s["value"] for s in mt1["fields"]}
    assert settings["ELEMENTS"] == 1 and settings["LP_INTERVAL_MIN"] == 15 and "PW_MASTER" not in settings
    st3 = ok_json(meterctl("table", "3", "--port", meter.optical, "--json"))
    assert st3["fields"]["ED_MODE"] == 1 and isinstance(st3["fields"]["status_names"], list)
    st76 = ok_json(meterctl("table", "ST76", "--port", meter.optical, "--json"))
    assert st76["fields"]["entries"][0]["EVENT_NAME"] == "POWER_UP"
    mt0 = ok_json(meterctl("table", "MT0", "--port", meter.optical, "--json"))
    assert mt0["fields"]["FAILED_PASSWORDS"] == 0 and len(mt0["fields"]["SEAL_FW_HASH"]) == 64  # hex


@pytest.mark.parametrize(
    "args, message",
    [
        (["table", "XYZ"], "a table is a number"),
        (["table", "999"], "no table ST999"),
        (["table", "7"], "write-only"),
        (["table", "64", "--offset", "0"], "--offset and --count go together"),
        (["table", "64", "--count", "-3"], "--count must be > 0"),
        (["watch", "--interval", "soon"], "--interval must be a number"),
    ],
)
def test_a_bad_argument_gets_one_line_and_exit_code_2(args, message):
    r = subprocess.run([METERCTL, *args, "--port", "/dev/null-meter"], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr


@pytest.mark.parametrize("command", [["read"], ["read", "--previous"], ["self-reads"]])
def test_a_missing_port_is_one_line_with_exit_code_3(meterctl, command):
    r = meterctl(*command, "--port", "/dev/no-such-probe")
    assert r.returncode == 3 and r.stderr.count("\n") == 1 and "no device at /dev/no-such-probe" in r.stderr


def test_a_fresh_meter_has_no_previous_billing_period_and_no_self_reads(meter, meterctl):
    """ST25 and ST26 before any demand reset or self-read (test_selfread.py has them filled)."""
    assert ok_json(meterctl("read", "--previous", "--port", meter.optical, "--json")) is None
    assert ok_json(meterctl("self-reads", "--port", meter.optical, "--json")) == []
    assert meterctl("self-reads", "--port", meter.optical).stdout.strip() == "no self-reads yet"
    st23 = ok_json(meterctl("table", "23", "--port", meter.optical, "--json"))["size"]
    st26 = ok_json(meterctl("table", "ST26", "--port", meter.optical, "--json"))
    # the list status (6 bytes), then 4 entries of END_DATE_TIME (5), SEASON (1) and ST23's bytes
    assert st26["size"] == 6 + 4 * (5 + 1 + st23) and st26["hex"] == "04" + "00" * (st26["size"] - 1)


def test_status_of_a_fresh_meter(meter, meterctl):
    s = ok_json(meterctl("status", "--port", meter.optical, "--json"))
    assert s["sealed"] is False and s["tamper"] is False and s["seal_plug"] is False
    assert s["mode_names"] == ["metering"] and s["lockout_left_s"] == 0 and s["failed_passwords"] == 0
    assert s["clock_valid"] is True and s["clock"].startswith("20")
    st1 = ok_json(meterctl("table", "ST1", "--port", meter.optical, "--json"))["fields"]
    assert s["firmware"] == f"{st1['FW_VERSION_NUMBER']}.{st1['FW_REVISION_NUMBER']}"
    human = meterctl("status", "--port", meter.optical)
    assert human.returncode == 0 and "sealed         no" in human.stdout and "tamper         no" in human.stdout


@pytest.mark.sim_only
def test_status_shows_the_seal_plug(meter, meterctl):
    meter.sim.set_seal_plug(True)
    s = ok_json(meterctl("status", "--port", meter.optical, "--json"))
    assert s["seal_plug"] is True and "SEAL_PLUG" in s["seal_flags"] and s["sealed"] is False


@pytest.mark.sim_only  # it would lock a real bench meter's port out for a minute
def test_status_counts_wrong_passwords_and_shows_the_lock_out(meter, meterctl):
    refused = meterctl("events", "--port", meter.optical, "--password", "wrong")
    assert refused.returncode == 5 and "wrong password" in refused.stderr
    s = ok_json(meterctl("status", "--port", meter.optical, "--json"))
    assert s["failed_passwords"] == 1 and s["lockout_left_s"] == 0
    for _ in range(2):  # LOCKOUT_TRIES is 3 on a factory meter
        meterctl("events", "--port", meter.optical, "--password", "wrong")
    s = ok_json(meterctl("status", "--port", meter.optical, "--json"))
    assert s["failed_passwords"] == 3 and s["lockouts"] == 1 and 0 < s["lockout_left_s"] <= 60
    human = meterctl("status", "--port", meter.optical)
    assert f"{s['lockout_left_s']} s left" in human.stdout


@pytest.mark.sim_only
def test_events_name_power_up_and_an_outage_oldest_first(meter, meterctl):
    meter.sim.run(60)
    meter.sim.power_off()
    meter.sim.run(120)  # two minutes without power
    meter.sim.power_on()
    rows = ok_json(meterctl("events", "--port", meter.optical, "--json"))
    names = [r["name"] for r in rows]
    assert names[0] == "POWER_UP" and "POWER_DOWN" in names and names.count("POWER_UP") == 2
    seqs = [r["seq"] for r in rows]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    last_up = [r for r in rows if r["name"] == "POWER_UP"][-1]
    outage = int.from_bytes(bytes.fromhex(last_up["argument"]), "little")
    # counted from the last time the meter saved its state (up to a minute before the cut) to the boot
    assert 120 <= outage <= 200 and last_up["detail"] == f"outage {outage} s"
    assert all({"time", "user_id", "code"} <= set(r) for r in rows)
    human = meterctl("events", "--port", meter.optical)
    assert human.returncode == 0 and "POWER_DOWN" in human.stdout and len(human.stdout.splitlines()) == len(rows)


def test_events_carry_the_user_id_meterctl_logged_on_with(meter, meterctl):
    r = meterctl("reset-demand", "--port", meter.optical, "--user-id", "42")
    assert r.returncode == 0, r.stderr
    rows = ok_json(meterctl("events", "--port", meter.optical, "--json"))
    resets = [r for r in rows if r["name"] == "DEMAND_RESET"]
    assert resets and resets[-1]["user_id"] == 42, "the logon's USER_ID, not 0"
    assert [r["user_id"] for r in rows if r["name"] == "POWER_UP"] == [0], "the meter's own events: user 0"


@pytest.mark.sim_only
def test_profile_rows_json_and_csv(meter, meterctl, tmp_path):
    meter.sim.set_load(240, 10)
    meter.sim.run(2 * 3600 + 60)  # from 00:00: eight 15-minute intervals closed
    rows = ok_json(meterctl("profile", "--port", meter.optical, "--json"))
    assert len(rows) == 8
    assert [r["end"] for r in rows] == [f"2026-01-05T{m // 60:02d}:{m % 60:02d}" for m in range(15, 121, 15)]
    for r in rows:
        assert r["delivered_wh"] == pytest.approx(600, rel=0.02) and r["received_wh"] == 0 and r["flags"] == []
    # the intervals add up to the whole-Wh register, less the 61 s of the running interval (40 Wh)
    words = mt5_registers(meter.optical)
    assert 30 <= words["delivered_wh"] - sum(r["delivered_wh"] for r in rows) <= 50
    out = tmp_path / "lp.csv"
    r = meterctl("profile", "--port", meter.optical, "--csv", str(out))
    assert r.returncode == 0 and str(out) in r.stderr and r.stdout == ""
    with out.open() as f:
        table = list(csv.reader(f))
    assert table[0] == ["end", "delivered_wh", "received_wh", "flags"] and len(table) == 1 + 8
    assert table[1][0] == "2026-01-05T00:15" and int(table[1][1]) == rows[0]["delivered_wh"]


@pytest.mark.sim_only
def test_profile_flags_the_intervals_a_power_outage_touched(meter, meterctl):
    meter.sim.set_load(240, 10)
    meter.sim.run(20 * 60)
    meter.sim.power_off()
    meter.sim.run(30 * 60)  # out from 00:20 to 00:50
    meter.sim.power_on()
    meter.sim.run(30 * 60)
    rows = ok_json(meterctl("profile", "--port", meter.optical, "--json"))
    by_end = {r["end"][11:]: r for r in rows}
    assert list(by_end) == ["00:15", "00:30", "00:45", "01:00", "01:15"]
    full = by_end["00:15"]["delivered_wh"]
    assert by_end["00:15"]["flags"] == [] and by_end["01:15"]["flags"] == []
    assert by_end["00:30"]["flags"] == ["POWER_OUTAGE", "PARTIAL"]
    # 00:15-00:20, less what the meter had not saved yet when the power went without warning
    assert full / 3 * 0.75 < by_end["00:30"]["delivered_wh"] <= full / 3 * 1.02
    assert by_end["00:45"]["flags"] == ["POWER_OUTAGE"] and by_end["00:45"]["delivered_wh"] == 0  # off throughout
    assert by_end["01:00"]["flags"] == ["POWER_OUTAGE", "PARTIAL"]
    assert by_end["01:00"]["delivered_wh"] == pytest.approx(full * 2 / 3, rel=0.05)  # 00:50 (+1 s boot)-01:00
    human = meterctl("profile", "--port", meter.optical)
    assert human.returncode == 0 and "POWER_OUTAGE PARTIAL" in human.stdout


@pytest.mark.sim_only
def test_profile_reads_every_block_oldest_first(meter, meterctl):
    with Client.open(meter.optical) as c, c.session(password=""):
        c.write(T.MFG + 1, bytes([firmware_module("config").LP_INTERVAL_MIN, 0x81, 5]))  # 5-minute intervals
    meter.sim.set_load(240, 10)
    meter.sim.run(2.5 * 3600)  # 30 intervals: a block of 24 in the ring, 6 in the open block
    with Client.open(meter.optical) as c, c.session(password=""):
        assert parse(T.ST63, c.read(63))["NBR_VALID_BLOCKS"] >= 2
    rows = ok_json(meterctl("profile", "--port", meter.optical, "--json"))
    five = rows[-30:]
    assert [r["end"][11:] for r in five] == [f"{m // 60:02d}:{m % 60:02d}" for m in range(5, 151, 5)]
    assert five[0]["flags"] == ["PARTIAL"] and 0 < five[0]["delivered_wh"] < 200  # began when the length changed
    for r in five[1:]:
        assert r["interval_min"] == 5 and r["flags"] == [] and r["delivered_wh"] == pytest.approx(200, rel=0.03)


@pytest.mark.sim_only
def test_lcd_text_and_png_are_what_the_glass_shows(meter, meterctl, tmp_path):
    from PIL import Image

    from host_tools.lcd_render import BORDER, HEIGHT, WIDTH

    meter.sim.set_load(240, 10)
    meter.sim.run(3600)
    lcd = ok_json(meterctl("lcd", "--port", meter.optical, "--json"))
    assert lcd["text"] == meter.sim.lcd_text() and lcd["text"][:2] in ("DE", "NG", "NT")
    assert "kWh" in lcd["annunciators"]
    png = tmp_path / "lcd.png"
    r = meterctl("lcd", "--port", meter.optical, "--png", str(png))
    assert r.returncode == 0 and f"saved the LCD to {png}" in r.stderr
    assert lcd["shown"] in r.stdout
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (2 * (WIDTH + 2 * BORDER), 2 * (HEIGHT + 2 * BORDER))
    bad = meterctl("lcd", "--port", meter.optical, "--png", str(tmp_path / "no" / "dir" / "x.png"))
    assert bad.returncode == 1 and "cannot write" in bad.stderr and "Traceback" not in bad.stderr


def test_watch_prints_one_line_per_refresh_when_not_a_tty(meter, meterctl):
    r = meterctl("watch", "--port", meter.optical, "--interval", "0.1", "--count", "3")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert len(lines) == 3
    with Client.open(meter.optical) as c, c.session(password=""):
        text, _ = read_lcd(c)
        volts = parse(T.MT3, c.read(T.MFG + 3))["VOLTS_MV"] / 1000
    for line in lines:
        assert f"LCD [{text[:2]}" in line and f"{volts:.2f} V" in line and "delivered" in line and "net" in line


def test_watch_refreshes_in_place_on_a_tty(meter):
    import os

    leader, follower = os.openpty()
    proc = subprocess.Popen(
        [METERCTL, "watch", "--port", meter.optical, "--interval", "0.1", "--count", "2"],
        stdout=follower, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    os.close(follower)
    out = b""
    try:
        proc.wait(timeout=30)
        while True:
            try:
                chunk = os.read(leader, 4096)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
    assert proc.returncode == 0
    text = out.decode()
    assert text.count("LCD [") == 2 and text.count("\x1b[3F") == 1  # the second view over the first


@pytest.mark.parametrize("interval", ["0.2", "0.01"])
def test_watch_ends_on_ctrl_c_with_exit_code_0_and_leaves_the_meter_free(meter, meterctl, interval):
    # interval 0.01: the Ctrl-C lands in the middle of an exchange most of the time
    proc = subprocess.Popen(
        [METERCTL, "watch", "--port", meter.optical, "--interval", interval],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        first = proc.stdout.readline()
        assert "LCD [" in first
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    # the session was ended on the way out: the next command is answered at once
    ok_json(meterctl("read", "--port", meter.optical, "--json"))


def test_a_session_another_client_left_open_does_not_lock_meterctl_out(meter, meterctl):
    c = Client.open(meter.optical)
    c.identify()
    c.negotiate(256, 8)
    c.logon(1)
    c.close()  # gone without Logoff or Terminate (killed, the probe pulled)
    ok_json(meterctl("read", "--port", meter.optical, "--json"))
