"""Shared fixtures. The suite runs against the simulated board unless told otherwise:

    pytest                                  # the simulated board (CI, a first try)
    pytest --board pico --console /dev/ttyACM0 --optical /dev/ttyUSB0   # a real board

Tests that need the virtual hardware's powers (power cuts, load control, the models
themselves) are marked `sim_only` (everything under tests/sim/ is) and skipped on a real board.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("meter", "the board under test")
    group.addoption("--board", default="sim", choices=("sim", "pico", "esp32"), help="board under test (default: sim)")
    group.addoption("--console", help="a real board's USB console port (mpremote)")
    group.addoption("--optical", help="a real board's optical port (IR probe)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--board") == "sim":
        return
    skip = pytest.mark.skip(reason="needs the simulated board's virtual hardware")
    for item in items:
        if "sim_only" in item.keywords or "tests/sim/" in item.nodeid:
            item.add_marker(skip)


@pytest.fixture
def sim():
    """A fresh simulated board, booted; always shut down, even when the test fails."""
    from host_tools.sim import SimBoard

    with SimBoard(seed=1) as board:
        yield board
