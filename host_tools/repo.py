"""Where the project's own files are, for the host tools: the firmware they flash, the
board definitions and the wire constants shared with the simulated board.

host_tools is installed in editable mode from the checkout, so the firmware sits beside it.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE_DIR = ROOT / "firmware"
BOARDS_DIR = ROOT / "boards"
BOARD_NAMES = ("pico", "esp32", "sim")


def load_module(path: Path, name: str) -> ModuleType:
    """Import a MicroPython-and-CPython module (one that falls back from micropython.const)."""
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[name]
        raise
    return module


@cache
def simwire() -> ModuleType:
    """The simulated board's wire constants, declared once in boards/sim/simwire.py."""
    return load_module(BOARDS_DIR / "sim" / "simwire.py", "meter_simwire")


@cache
def firmware_module(name: str) -> ModuleType:
    """A shared firmware module (e.g. lcd_glyphs) imported on the host."""
    return load_module(FIRMWARE_DIR / f"{name}.py", f"meter_fw_{name}")


def firmware_files() -> list[Path]:
    """The files a board's filesystem gets from firmware/ (flat: one module per concept)."""
    return sorted(p for p in FIRMWARE_DIR.glob("*.py"))


def board_files(board: str) -> list[Path]:
    """A board's own files: board.py, plus what the simulated board needs beside it."""
    if board not in BOARD_NAMES:
        raise ValueError(f"unknown board {board!r}: choose one of {', '.join(BOARD_NAMES)}")
    return sorted((BOARDS_DIR / board).glob("*.py"))
