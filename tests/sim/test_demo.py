"""`meterctl demo` (what `make demo` runs) end to end: it exits 0, plots the day, the
calibrated meter agrees with the simulated source, and the sealed meter refuses a write."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from PIL import Image

METERCTL = str(Path(sys.executable).parent / "meterctl")


def test_the_demo_runs_a_solar_day_plots_it_and_ends_sealed(tmp_path):
    r = subprocess.run([METERCTL, "demo", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr
    out = r.stdout
    for step in ("1. flash", "2. calibrate", "3. program", "4. one day", "5. read", "6. seal"):
        assert step in out
    errors = [float(e) for e in re.findall(r"\(error ([-+]\d+\.\d+) %\)", out)]
    assert len(errors) == 2 and all(abs(e) < 0.05 for e in errors), out  # delivered and received, calibrated
    assert re.search(r"tier C: in +\d+\.\d+ kWh", out), "the evening peak lands in tier C"
    png = tmp_path / "load-profile.png"
    assert f"plot saved to {png.resolve()}" in out
    with Image.open(png) as img:
        assert img.format == "PNG" and img.size == (960, 420)
    assert "reprogramming refused: the meter answered DLK" in out
    assert "THE SEAL DID NOT HOLD" not in out
