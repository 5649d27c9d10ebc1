"""The power-cut torture (issue 4) in the suite: 1,000 cuts of the simulated board while
the firmware meters at 60 Hz and 50 Hz, at random instants, after every byte of a register
write, in the middle of a write cycle, and after the line fails with the sag warning (the
hold-up from the failure that covers the chip's detection and the save, also with the
warning landing as a write cycle or a read starts; a write cycle less; or the warning's own
save cut short at every byte). The engine and its checks are in tests/bench/torture.py,
which runs 10,000 for `make bench`.

After each cut the EEPROM image must hold a valid record that is never behind the
previous one, never ahead of the energy that really flowed, and that lost nothing after
a warning and no more than the save threshold plus a poll without one; a sample of power-ons
also asks the firmware what it restored.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import test_storage_image as image

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))

import torture  # noqa: E402

pytestmark = [pytest.mark.sim_only, pytest.mark.slow]

CUTS = 1000


def test_a_thousand_power_cuts_never_lose_or_double_count_the_registers():
    stats = torture.run(CUTS, seed=11, workers=1, check_every=100)
    print(torture.report(stats, image.save_wh()))
    assert stats.failures == []
    assert stats.cuts == CUTS and stats.survived == CUTS
    assert stats.firmware_checks == CUTS // 100
    assert set(stats.by_scenario) == {
        "instant", "sag", "byte", "sag-byte", "sag-write", "sag-read", "sag-write-short", "mid-cycle", "boot"
    }
    # every byte position of a register write was cut at least once, with and without warning
    assert stats.by_scenario["byte"] > torture.RECORD_WRITE_BYTES
    assert stats.by_scenario["sag-byte"] > torture.RECORD_WRITE_BYTES
    assert stats.torn_pages > 0, "some cuts landed inside a write cycle"
    assert stats.max_loss_warned_wh <= torture.ZERO_WH
