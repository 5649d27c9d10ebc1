"""Flash the firmware to a board's filesystem with mpremote or ampy, verify, reboot, check.

    files = plan(board="pico")                      # .mpy files (compile=False: sources)
    console_answers(port)                           # a sealed meter's console is silent
    seal_state(port)                                # 'sealed', 'open', 'none', 'unknown'
    flash(port, files, tool="mpremote", progress=print_bar)   # stale .py/.mpy twins removed
    verify(port, files, tool="mpremote")            # sha256 of every file, computed on the board
    soft_reboot(port)                               # main.py runs, as after a power-up
    check_console(port) or check_optical(optical)   # ST1, ST3 and MT0 read from the meter

The tools are run as a person would run them (their command lines, from this venv),
so a board that works with `mpremote cp` works here, and so does ampy.

The code this module runs on the board (the seal check, the hashes, the removals, the
read check) works wherever the console leads: into a running meter (firmware/console.py:
the code runs between two polls, in main.py's globals, so it uses the meter `m` and
never builds a second board), into MicroPython's REPL of an older firmware (stopped by
Ctrl-C) or of a blank board. Each piece of code runs inside a function, so the globals
it leaves behind are the names it was given, nothing else.
"""

from __future__ import annotations

import binascii
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
# Boards that cannot run the firmware from its sources (`meterctl flash --source`), and the
# figures that say why. Compiling on the board needs the compiler's RAM, in large free blocks.
SOURCE_REFUSED = {
    "sim": (
        "its VM compiles the sources in its own heap, beside their bytecode: booted from source the "
        "firmware fails with MemoryError in its 316 KB (importing meter.py), as it did at 160, 200, 280 "
        "and 288 KB, though it booted at 240 and 304-384 KB before the console came: a matter of "
        "fragmentation (SimBoard(compile=False)); as .mpy it boots from 200 KB"
    ),
    "esp32": (
        "an ESP32 without PSRAM has 90-110 KB free: even the .mpy files' bytecode (80.1 KB, about "
        "117 KB with the meter's data) does not fit beside the compiler (boards/esp32/README.md, "
        "tests/bench/heap32.py); the firmware goes into flash there (frozen or a ROMFS)"
    ),
}
# Allowed: a Pico with the official rp2 image booted the firmware from sources in 6 s with
# 124 KB free but a largest free block of 7.2 KB; from .mpy in 1.5 s, 135 KB free, a 30.6 KB
# block (../shared/rp2/README.md): it works, with far less room for a later allocation.


class FlashError(Exception):
    """Flashing failed in a way the user can act on (the message says how)."""


@dataclass
class BoardFile:
    name: str  # name on the board's filesystem root
    data: bytes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def twin(self) -> str:
        """The same module in the other form (x.py for x.mpy, x.mpy for x.py): stale if present."""
        stem, _, ext = self.name.rpartition(".")
        return f"{stem}.{'py' if ext == 'mpy' else 'mpy'}"


@dataclass
class MeterCheck:
    """What the meter answered after the reboot: ST1, ST3 and MT0, decoded."""

    firmware: str
    std_status: int  # ST3 ED_STD_STATUS1
    mfg_status: int  # ST3 ED_MFG_STATUS (the seal flags)
    heap_free: int  # MT0 HEAP_FREE: gc.mem_free() as the meter built the table
    over: str  # "the optical port" or "the console"

    def line(self) -> str:
        return (
            f"the meter answers over {self.over}: firmware {self.firmware}, "
            f"status 0x{self.std_status:04x}, heap free {self.heap_free:,} B"
        )


def _bin(name: str) -> str:
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise FlashError(f"{path} not found: run 'make setup'")
    return str(path)


def source_refusal(board: str) -> str | None:
    """Why `--source` cannot work on this board (None: it can)."""
    return SOURCE_REFUSED.get(board)


def plan(board: str, compile: bool = True) -> list[BoardFile]:
    """The files a board gets: firmware/*.py and boards/<board>/*.py, as .mpy unless compile=False."""
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


MPREMOTE_BATCH = 8  # files per `mpremote cp a b c :` (one session: no tool start-up, no soft reset per file)


def _put(port: str, tool: str, local: list[Path], timeout: float) -> None:
    """Copy files to the board's root under their own names."""
    if tool == "mpremote":
        _run([_bin("mpremote"), "connect", port, "cp", *map(str, local), ":"], timeout * len(local))
    else:
        for path in local:
            _run([_bin("ampy"), "--port", port, "put", str(path), path.name], timeout)


def _exec(port: str, tool: str, code: str, timeout: float, resume: bool = False) -> str:
    """Run code on the board. mpremote soft-resets first unless resume; ampy always does:
    a running meter only resets its console's globals, an older firmware or a blank
    board restarts without main.py."""
    if tool == "mpremote":
        return _run([_bin("mpremote"), "connect", port, *(["resume"] if resume else []), "exec", code], timeout)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(code)
    try:
        return _run([_bin("ampy"), "--port", port, "run", f.name], timeout)
    finally:
        Path(f.name).unlink()


def _open(port: str) -> serial.Serial:
    try:
        return serial.Serial(port, 115200, timeout=0.1)
    except serial.SerialException as exc:
        raise FlashError(f"cannot open {port}: {exc}") from None


def console_answers(port: str, timeout: float = 10.0) -> bool:
    """Does anything answer Ctrl-C on the console? A running meter's own REPL, MicroPython's
    REPL (an older firmware, a blank board) all print ">>> "; a sealed meter's console
    reads every byte and says nothing."""
    with _open(port) as ser:
        ser.write(b"\r\x03\x03")
        time.sleep(0.05)
        ser.write(b"\x02")  # out of a raw REPL someone left open: Ctrl-C alone is silent there
        data = b""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            data += ser.read(256)
            if b">>> " in data:
                return True
    return False


REMOVE_CODE = """def _remove(names):
    import os
    for n in names:
        try:
            os.remove(n)
            print('REMOVED', n)
        except OSError:
            pass
_remove({names})
del _remove
"""


def flash(
    port: str,
    files: list[BoardFile],
    tool: str = "mpremote",
    progress: Callable[[int, int, str], None] | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Remove every file's stale twin (the .py of a .mpy sent: the board would import the
    .py first; the .mpy of a .py sent: stale), then copy every file. Returns the twins removed."""
    if tool not in TOOLS:
        raise FlashError(f"unknown tool {tool!r}: choose mpremote or ampy")
    out = _exec(port, tool, REMOVE_CODE.format(names=tuple(f.twin for f in files)), timeout)
    removed = [line.split()[1] for line in out.splitlines() if line.startswith("REMOVED ")]
    batch = MPREMOTE_BATCH if tool == "mpremote" else 1
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(0, len(files), batch):
            group = files[i : i + batch]
            if progress:
                progress(i, len(files), group[0].name)
            local = []
            for f in group:
                local.append(Path(tmp) / f.name)
                local[-1].write_bytes(f.data)
            _put(port, tool, local, timeout)
    if progress:
        progress(len(files), len(files), "done")
    return removed


HASH_CODE = """def _hashes(names):
    import hashlib, binascii
    for n in names:
        h = hashlib.sha256()
        try:
            with open(n, 'rb') as f:
                while True:
                    data = f.read(512)
                    if not data:
                        break
                    h.update(data)
            print(n, binascii.hexlify(h.digest()).decode())
        except OSError:
            print(n, 'missing')
_hashes({names})
del _hashes
"""


SEAL_CODE = """def _seal():
    meter = globals().get('m')
    seal = getattr(getattr(meter, 'services', None), 'seal', None)
    if seal is not None:
        return 'sealed' if seal.sealed else 'open'
    try:
        import board, status, storage
    except ImportError:
        return 'none'
    try:
        b = board.make()
        st = storage.Storage(b.i2c, b.eeprom_addr, b.eeprom_size, b.eeprom_page, b.clock, status.Status())
        r = st.load_seal()
        return 'sealed' if r and len(r) > 1 and r[0] == 0x53 and r[1] & 1 else 'open'
    except Exception as e:
        return 'unknown ' + repr(e)
print('SEAL', _seal())
del _seal
"""


def seal_state(port: str, tool: str = "mpremote", timeout: float = 30.0) -> str:
    """'sealed', 'open', 'none' (no firmware yet) or 'unknown', from the seal record (seal.py's):
    the running meter's (`m`), or read from the EEPROM through the firmware's modules where no
    meter runs (an older firmware, restarted without main.py by the soft reset)."""
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
    """Ctrl-C, then Ctrl-D at the friendly prompt: the board reboots into main.py (a running
    meter saves its registers first: m.reboot()).

    Returns what the console printed after the reboot, until it was quiet for a second."""
    with _open(port) as ser:
        ser.write(b"\r\x03\x03")
        _read_until(ser, b">>> ", timeout, "the REPL prompt")
        ser.write(b"\r\x02")  # leave a raw REPL if one was left open
        time.sleep(0.1)
        ser.reset_input_buffer()
        ser.write(b"\x04")
        _read_until(ser, b"soft reboot", timeout, "'soft reboot'")
        out = b""
        quiet = time.monotonic() + 1.0
        end = time.monotonic() + timeout
        while time.monotonic() < min(quiet, end):
            data = ser.read(256)
            if data:
                out += data
                quiet = time.monotonic() + 1.0
    return out.decode(errors="replace")


def boot_failure(console_text: str) -> str | None:
    """One line for a traceback the console printed: 'MemoryError: ... (psem.py, line 12)'."""
    lines = [line.strip() for line in console_text.replace("\r", "").splitlines() if line.strip()]
    if not any(line.startswith("Traceback") for line in lines):
        return None
    where = [line for line in lines if line.startswith('File "')]
    errors = [line for line in lines if not line.startswith(("File ", "Traceback", "MicroPython", "Type ", ">>>"))]
    what = errors[-1] if errors else "an exception"
    if where:
        place = where[-1].split('"')
        return f"{what} ({place[1]}{place[2].split(',')[1] if ',' in place[2] else ''})"
    return what


def _read_until(ser: serial.Serial, marker: bytes, timeout: float, what: str) -> bytes:
    data = b""
    end = time.monotonic() + timeout
    while marker not in data:
        if time.monotonic() > end:
            raise FlashError(f"no {what} from the board within {timeout:.0f} s: is {ser.port} its console?")
        data += ser.read(256)
    return data


# The read check, run inside the meter: the firmware's own table code builds ST1, ST3 and
# MT0 (MT0 reports gc.mem_free()), as it does for the optical port. `serving` says the code
# runs from the meter's loop (console.py), not at MicroPython's REPL after a crash.
CHECK_CODE = """def _check():
    meter = globals().get('m')
    if meter is None or not hasattr(meter, 'services'):
        try:
            import meter
        except Exception as e:
            return 'NOMETER ' + repr(e)
        return 'NOMETER'
    if not getattr(getattr(meter, 'console', None), 'serving', False):
        return 'STOPPED'
    import binascii, tables
    buf = bytearray(256)
    out = []
    for t in (1, 3, 0x800):
        n = tables.build(meter, meter.services, t, buf)
        out.append('%d:%s' % (t, binascii.hexlify(buf[:n]).decode()))
    return 'TABLES ' + ' '.join(out)
try:
    print('CHECK', _check())
except Exception as e:
    print('CHECK ERROR', repr(e))
del _check
"""


def _decode_check(st1: bytes, st3: bytes, mt0: bytes, over: str) -> MeterCheck:
    from host_tools.c1218 import TABLES, parse

    s1, s3, m0 = parse(TABLES.ST1, st1), parse(TABLES.ST3, st3), parse(TABLES.MT0, mt0)
    return MeterCheck(
        firmware=f"{s1['FW_VERSION_NUMBER']}.{s1['FW_REVISION_NUMBER']}",
        std_status=s3["ED_STD_STATUS1"],
        mfg_status=s3["ED_MFG_STATUS"],
        heap_free=m0["HEAP_FREE"],
        over=over,
    )


def check_console(port: str, tool: str = "mpremote", timeout: float = 30.0) -> MeterCheck:
    """ST1, ST3 and MT0 built by the running meter's own table code, read over the console;
    retried while the meter boots. FlashError with what went wrong if it cannot."""
    end = time.monotonic() + timeout
    while True:
        try:
            out = _exec(port, tool, CHECK_CODE, max(1.0, min(30.0, end - time.monotonic())), resume=True)
        except FlashError as exc:
            out = f"CHECK ERROR {exc}"
        line = next((x for x in out.splitlines() if x.startswith("CHECK ")), "CHECK ERROR no answer")
        kind, _, rest = line[6:].partition(" ")
        if kind == "TABLES":
            tables = dict(item.split(":") for item in rest.split())
            data = {int(k): binascii.unhexlify(v) for k, v in tables.items()}
            return _decode_check(data[1], data[3], data[0x800], "the console")
        if time.monotonic() > end:
            if kind == "NOMETER":
                why = f": importing meter raises {rest}" if rest else ""
                raise FlashError(f"no meter runs after the reboot (main.py did not build `m`){why}")
            if kind == "STOPPED":
                raise FlashError("the meter is not metering after the reboot (its loop has stopped)")
            raise FlashError(f"the meter could not build ST1, ST3 and MT0: {rest}")
        time.sleep(0.5)


def check_optical(port: str, timeout: float = 30.0) -> MeterCheck:
    """ST1, ST3 and MT0 read over the optical port (an anonymous session), retried while the
    meter boots. FlashError if it does not answer them."""
    from host_tools.c1218 import TABLES, C1218Error, Client, Timeouts

    end = time.monotonic() + timeout
    last = "no answer"
    while True:
        try:
            with Client.open(port, timeouts=Timeouts(ack=1.0, response=2.0)) as client:
                with client.session():
                    return _decode_check(client.read(1), client.read(3), client.read(TABLES.MFG), "the optical port")
        except (C1218Error, serial.SerialException, OSError) as exc:
            last = str(exc) or type(exc).__name__
        if time.monotonic() > end:
            raise FlashError(f"the meter does not serve ST1, ST3 and MT0 on {port} after the reboot: {last}")
        time.sleep(0.3)


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
