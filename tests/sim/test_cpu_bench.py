"""tests/bench/cpu.py, the CPU cost benchmark, still measures: a --quick run prints the
table with positive figures, the scaling source it cites, and the goal line."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "tests" / "bench" / "cpu.py"
ROWS = (
    "metering step: Meter.poll()",
    "display refresh, steady",
    "display refresh, scroll",
    "optical request: read ST1 + ACK",
)


def test_cpu_bench_quick_prints_a_scaled_table():
    proc = subprocess.run([sys.executable, str(BENCH), "--quick"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for row in ROWS:
        line = next((ln for ln in out.splitlines() if ln.startswith(row)), None)
        assert line is not None, f"no row {row!r} in:\n{out}"
        median, net, p99, worst, rp2040_ms, share = re.findall(r"[\d.]+%?", line[len(row):])
        assert 0 < float(median) <= float(p99) <= float(worst) and 0 <= float(net) <= float(median)
        assert float(rp2040_ms) > 0 and float(share.rstrip("%")) > 0
    assert re.search(r"^scaling source: https://\S+ .*pystone.*: [\d.]+ pystones/s$", out, re.M)
    assert re.search(r"^pystone here \(unix micropython\): [\d,]+ pystones/s$", out, re.M)
    assert re.search(r"^goal: metering \+ display .* vs 5%: (met|NOT met)$", out, re.M)
    # the window really metered and saved, and the port answered the reads (ACK, then a packet)
    served = r"(\d+) EEPROM page writes, (\d+) Wh registered; (\d+) requests served; first reply 06ee.*healthy"
    window = re.search(served, out)
    assert window and all(int(g) > 0 for g in window.groups())
