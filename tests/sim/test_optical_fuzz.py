"""Bad input on the optical port: 12,000 fuzzed frames through the simulated board's
pseudo-terminal, every reaction checked against a model of the C12.18 rules.

The engine is tests/bench/fuzz.py (`make bench` runs it on 1,000,000 frames): random
bytes, bad CRCs, truncated packets, wrong and oversize lengths, a slow drip, out-of-order
services, huge offsets and counts, duplicates, the meter's own echo, stray ACKs and NAKs,
multi-packet requests and wrong passwords. Between batches the board meters a load for a
second. Asserted there: the exact NAK/ACK/response for every frame, no crash or hang,
nothing changed without a password, the energy the truth and an unfuzzed twin agree on.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

FUZZ = Path(__file__).resolve().parents[1] / "bench" / "fuzz.py"


def _engine():
    spec = importlib.util.spec_from_file_location("meter_fuzz", FUZZ)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_twelve_thousand_fuzzed_frames_get_the_right_answer_and_change_nothing():
    res = _engine().run(12_000, seed=7, batch=400, report=None)
    assert res["frames"] >= 10_000
    # every kind of bad input went through, and every kind of answer came back
    for kind in ("random", "bad CRC", "truncated", "wrong length", "oversize", "duplicate", "echo", "stray"):
        assert res["kinds"].get(kind, 0) > 50, kind
    assert res["kinds"]["multi-packet"] > 50 and res["kinds"]["service"] > 5000
    for code in (0x00, 0x01, 0x02, 0x03, 0x05, 0x0A):  # ok, err, sns, isc, iar, isss
        assert res["codes"].get(code, 0) > 20, f"response code {code:#04x}"
    assert res["naks"] > 1000
    assert res["lockouts"] >= 1, "wrong passwords locked the port"
    print(
        f"{res['frames']:,} frames in {res['wall_s']:.1f} s ({res['frames_per_s']:,.0f} frames/s); "
        f"codes {res['codes']}; energy (fuzzed, twin, truth) {res['energy_wh']}"
    )
