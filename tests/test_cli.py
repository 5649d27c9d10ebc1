"""meterctl as a person meets it: one readable line for a mistake, JSON for scripts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

METERCTL = str(Path(sys.executable).parent / "meterctl")


@pytest.mark.parametrize(
    "args, message",
    [
        (["sim", "--speed", "fast"], "--speed must be a number"),
        (["sim", "--speed", "-1"], "--speed must be >= 0"),
        (["sim", "--volts", "240", "--pf", "1.5"], "pf must be within -1..1"),
        (["sim", "--amps", "3"], "--amps needs --volts"),
        (["launch"], "invalid choice"),
        ([], "required"),
    ],
)
def test_a_wrong_argument_gets_one_line_and_exit_code_2(args, message):
    r = subprocess.run([METERCTL, *args], capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.sim_only
def test_meterctl_sim_prints_its_ports_and_stops_cleanly_on_ctrl_c(tmp_path):
    proc = subprocess.Popen(
        [METERCTL, "sim", "--state", str(tmp_path), "--speed", "1", "--volts", "240", "--amps", "5"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        info = json.loads(proc.stdout.readline())
        assert Path(info["optical_port"]).exists() and Path(info["console_port"]).exists()
        assert info["state_dir"] == str(tmp_path)
        assert (tmp_path / "fs" / "main.py").exists() and (tmp_path / "eeprom.bin").exists()
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert "mp_boot.py" not in subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
