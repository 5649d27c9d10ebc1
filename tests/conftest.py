"""Shared fixtures. The suite runs against the simulated board unless told otherwise:

    pytest                                  # the simulated board (CI, a first try)
    pytest --board pico --console /dev/ttyACM0 --optical /dev/ttyUSB0   # a real board

Tests that need the virtual hardware's powers (power cuts, load control, the models
themselves) are marked `sim_only` (everything under tests/sim/ is) and skipped on a real board.
"""

from __future__ import annotations

import signal

import pytest


def pytest_configure(config: pytest.Config) -> None:
    # A suite started in the background by a non-interactive shell (`make test &`, a CI
    # runner's script) inherits SIGINT ignored, and so does every meterctl it starts; the
    # Ctrl-C tests send SIGINT to meterctl: give it back its default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


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


class MeterUnderTest:
    """The ports a test talks to, whatever the board: `optical` (C12.18) and `console`
    (the USB REPL); `sim` is the SimBoard on the simulated board, None on a real one."""

    def __init__(self, board: str, optical: str, console: str | None, sim=None) -> None:
        self.board = board
        self.optical = optical
        self.console = console
        self.sim = sim


@pytest.fixture
def meter(request: pytest.FixtureRequest):
    """The meter under test: a fresh simulated board (booted, frozen between requests, so
    its timers only run when a test runs it), or the real board given on the command line.

    On a real board the tests change what a bench meter may have changed anyway (the
    clock, the display list, demand), never its calibration or passwords, unless they put
    them back."""
    board = request.config.getoption("--board")
    if board == "sim":
        from host_tools.sim import SimBoard

        with SimBoard(seed=1) as sim:
            yield MeterUnderTest("sim", sim.optical_port, sim.console_port, sim)
        return
    optical = request.config.getoption("--optical")
    if not optical:
        pytest.skip("a real board needs --optical PORT (its IR probe)")
    yield MeterUnderTest(board, optical, request.config.getoption("--console"))


def run_meterctl(*args: str, timeout: float = 120):
    """Run meterctl as a person does; a CompletedProcess with text stdout and stderr."""
    import subprocess
    import sys
    from pathlib import Path

    exe = str(Path(sys.executable).parent / "meterctl")
    return subprocess.run([exe, *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def meterctl():
    """run_meterctl: `meterctl("read", "--port", meter.optical, "--json")`."""
    return run_meterctl
