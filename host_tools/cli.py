"""meterctl: the bench technician's command line.

    meterctl flash --board {pico,esp32,sim} --port PORT [--tool mpremote|ampy] [--source]
    meterctl read [--previous]|self-reads|table|status|events|profile|watch|lcd --port OPTICAL ...   (readout.py)
    meterctl program|set-time|reset-demand|calibrate|seal|unseal --port OPTICAL ... (program.py)
    meterctl sim [--state DIR] [--speed X] [--rtc KIND] [--volts V --amps A --pf PF --hz F]
    meterctl demo

Errors a person can make (a bad argument, a missing port, a wrong password) get one line
on stderr with a hint and a documented exit code, never a traceback (optical.py lists
the codes: 0 ok, 1 failed, 2 usage, 3 port, 4 no answer, 5 refused).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from host_tools import optical
from host_tools.optical import EXIT_FAILED, EXIT_OK, EXIT_USAGE, MeterctlError

EPILOG = """exit codes: 0 ok, 1 the operation failed, 2 bad usage, 3 the port (no device, busy),
4 the meter does not answer, 5 access refused (password, lock-out, seal)"""


class UsageError(Exception):
    """A wrong command-line argument: one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}")


def _positive(kind: type, name: str, allow_zero: bool = False):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name} must be a number, not {text!r}") from None
        if value < 0 or (value == 0 and not allow_zero):
            raise argparse.ArgumentTypeError(f"{name} must be {'>= 0' if allow_zero else '> 0'}, not {text}")
        return value

    return parse


def _pf(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"pf must be a number, not {text!r}") from None
    if not -1.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"pf must be within -1..1, not {text}")
    return value


def cmd_sim(args: argparse.Namespace) -> int:
    from host_tools.sim import SimBoard

    if args.amps is not None and args.volts is None:
        raise UsageError("meterctl sim: --amps needs --volts")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with SimBoard(state_dir=args.state, seed=args.seed, speed=args.speed, rtc=args.rtc) as board:
        if args.volts is not None:
            board.set_load(args.volts, args.amps or 0.0, pf=args.pf, hz=args.hz)
        info = {
            "optical_port": board.optical_port,
            "console_port": board.console_port,
            "state_dir": str(board.state_dir),
            "speed": args.speed,
            "rtc": args.rtc,
        }
        print(json.dumps(info), flush=True)
        stop.wait()  # the console is the user's now: Ctrl-C on it stops main.py, not us
    return EXIT_OK


_progress_open = False  # a progress line without its newline yet


def _progress_bar(done: int, total: int, name: str) -> None:
    global _progress_open
    _progress_open = done != total
    width = 30
    filled = width * done // max(total, 1)
    end = "\n" if done == total else ""
    bar = "#" * filled + "." * (width - filled)
    print(f"\r  [{bar}] {done}/{total} {name:<16}", end=end, file=sys.stderr, flush=True)


def _break_seal(args: argparse.Namespace) -> None:
    """Unseal over the optical port with the master password: the meter checks it and
    logs the unseal, so breaking a seal to reflash always leaves a trace."""
    from host_tools import optical
    from host_tools.c1218 import TABLES, C1218Error, parse

    if not args.optical:
        raise UsageError("meterctl flash: --break-seal needs --optical PORT (the meter checks the master password)")
    with optical.session(args, level="master", port=args.optical) as client:
        try:
            if not parse(TABLES.MT0, client.read(TABLES.MFG + 0))["SEAL_FLAGS"] & TABLES.SEAL_SEALED:
                return
            client.procedure(TABLES.PROC_UNSEAL)
        except C1218Error as exc:
            raise optical.explain(exc, args.optical) from None
    print("seal broken with the master password (the meter logged it: event 'unsealed')", file=sys.stderr)


def cmd_flash(args: argparse.Namespace) -> int:
    from host_tools import flash, optical

    if not Path(args.port).exists():
        raise MeterctlError(
            f"no device at {args.port}", "is the board plugged in? `mpremote devs` lists the ports", optical.EXIT_PORT
        )
    if args.source and flash.source_refusal(args.board):
        raise MeterctlError(
            f"--source is refused on board {args.board}: {flash.source_refusal(args.board)}",
            "flash .mpy files: leave out --source",
            EXIT_USAGE,
        )
    if args.break_seal:
        _break_seal(args)
    elif args.optical:
        _refuse_if_sealed(args)
    if not flash.console_answers(args.port, min(args.timeout, 10.0)):
        raise MeterctlError(
            f"the meter's console on {args.port} does not answer",
            "a sealed meter (software seal or seal plug) closes its console: give --break-seal --password MASTER "
            "--optical PORT, or pull the seal plug; else check that this is the board's USB console",
            optical.EXIT_NO_ANSWER,
        )
    state = flash.seal_state(args.port, args.tool, args.timeout)
    if state == "sealed":  # an older firmware answers its console sealed
        raise MeterctlError(
            "the meter is sealed: flashing it would break the seal",
            "unseal it first, or give --break-seal --password MASTER --optical PORT",
            optical.EXIT_REFUSED,
        )
    if state == "unknown":
        print("warning: could not read the seal record (EEPROM not answering?); flashing anyway", file=sys.stderr)
    files = flash.plan(args.board, compile=not args.source)
    kind = "source" if args.source else "compiled .mpy"
    print(f"flashing {len(files)} files ({kind}, board {args.board}) to {args.port} with {args.tool}", file=sys.stderr)
    removed = flash.flash(args.port, files, tool=args.tool, progress=_progress_bar, timeout=args.timeout)
    if removed:
        print(f"removed {len(removed)} stale twins: {', '.join(removed)}", file=sys.stderr)
    flash.verify(args.port, files, tool=args.tool, timeout=args.timeout)
    print(f"verified: {len(files)} files match by sha256", file=sys.stderr)
    failure = flash.boot_failure(flash.soft_reboot(args.port, timeout=args.timeout))
    if failure:
        raise MeterctlError(f"the firmware failed at boot: {failure}", _boot_hint(args), EXIT_FAILED)
    try:
        if args.optical:
            check = flash.check_optical(args.optical, timeout=args.timeout)
        else:
            check = flash.check_console(args.port, args.tool, timeout=args.timeout)
    except flash.FlashError as exc:
        said = flash.boot_failure(flash.console_tail(args.port, 2.0))
        raise MeterctlError(
            f"flashed, but {exc}" + (f"; the console says: {said}" if said else ""),
            _boot_hint(args),
            optical.EXIT_NO_ANSWER,
        ) from None
    print(check.line(), file=sys.stderr)
    return EXIT_OK


def _boot_hint(args: argparse.Namespace) -> str:
    if args.source:
        return "flash .mpy files (leave out --source): they need far less of the board's RAM"
    return "see the board's console (mpremote connect PORT), or flash again"


def _refuse_if_sealed(args: argparse.Namespace) -> None:
    """With --optical, the seal is read there first (MT0, anonymous): a sealed meter's console
    would not answer at all, this says why. A port that does not answer (a blank board, a
    firmware that does not run) leaves the question to the console."""
    from host_tools import optical
    from host_tools.c1218 import TABLES, C1218Error, parse

    try:
        with optical.open_port(args.optical, 2.0) as client:  # a missing or busy probe: its own line
            with client.session():
                flags = parse(TABLES.MT0, client.read(TABLES.MFG + 0))["SEAL_FLAGS"]
    except C1218Error:
        return
    if flags & TABLES.SEAL_SEALED:
        raise MeterctlError(
            "the meter is sealed: flashing it would break the seal",
            "unseal it first, or give --break-seal --password MASTER --optical PORT",
            optical.EXIT_REFUSED,
        )
    if flags & TABLES.SEAL_PLUG:
        raise MeterctlError(
            "the seal plug is in: the meter's console is closed", "pull the seal plug to flash", optical.EXIT_REFUSED
        )


def cmd_demo(args: argparse.Namespace) -> int:
    from host_tools.demo import run_demo

    return run_demo(args)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="meterctl",
        description="Flash, read, program and simulate the open meter.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)
    from host_tools import program, readout

    readout.register(sub)
    program.register(sub)

    s = sub.add_parser("sim", help="run a simulated board in the foreground")
    s.add_argument("--state", metavar="DIR", help="keep the board's EEPROM and filesystem here")
    s.add_argument("--speed", type=_positive(float, "--speed", allow_zero=True), default=1.0,
                   help="virtual seconds per real second (0 = frozen between requests; default 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--rtc", choices=("ds3231", "pcf8563", "volatile", "battery"), default="ds3231",
                   help="the clock that keeps the time: an RTC chip with its cell (default ds3231), "
                   "a plain Pico's volatile RTC, or the MCU's RTC with a battery (boards/sim/README.md)")
    s.add_argument("--volts", type=_positive(float, "--volts", allow_zero=True))
    s.add_argument("--amps", type=float, help="negative = energy received (export)")
    s.add_argument("--pf", type=_pf, default=1.0)
    s.add_argument("--hz", type=_positive(float, "--hz"), default=60.0)
    s.set_defaults(func=cmd_sim)

    f = sub.add_parser("flash", help="copy the firmware and the board's board.py to a board, verify, reboot")
    f.add_argument("--board", required=True, choices=("pico", "esp32", "sim"))
    f.add_argument("--port", required=True, help="the board's USB console (REPL) port")
    f.add_argument("--tool", choices=("mpremote", "ampy"), default="mpremote")
    form = f.add_mutually_exclusive_group()
    form.add_argument("--compile", action="store_true",
                      help="send .mpy files built by mpy-cross for the board (the default)")
    form.add_argument("--source", action="store_true",
                      help="send the .py sources (pico only: the simulated board and an ESP32 cannot compile "
                           "them in their RAM)")
    f.add_argument("--optical", metavar="PORT",
                   help="read the seal there first, and check the meter answers there afterwards")
    f.add_argument("--timeout", type=_positive(float, "--timeout"), default=30.0, help="seconds per step (default 30)")
    f.add_argument("--break-seal", action="store_true",
                   help="flash a sealed meter: unseal it first with --password (master) over --optical")
    f.add_argument("--password", type=optical.password_arg, default="", help="the master password, with --break-seal")
    f.add_argument("--user-id", type=int, default=1, help="the user id the unseal is logged with")
    f.add_argument("--baud", type=int, default=None, help=argparse.SUPPRESS)
    f.set_defaults(func=cmd_flash)

    d = sub.add_parser("demo", help="benchtop demo on the simulated board (bounded, exits 0)")
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--board", choices=("sim", "pico", "esp32"), default="sim", help="default: the simulated board")
    d.add_argument("--console", metavar="PORT", help="a real board's USB console (with --board pico|esp32)")
    d.add_argument("--optical", metavar="PORT", help="a real board's optical probe (with --board pico|esp32)")
    d.add_argument("--out", metavar="DIR", default="demo-output", help="where the plot goes (default demo-output/)")
    d.set_defaults(func=cmd_demo)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        return args.func(args)
    except UsageError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_USAGE
    except MeterctlError as exc:
        print(("\n" if _progress_open else "") + f"meterctl: {exc.line()}", file=sys.stderr)
        return exc.code
    except KeyboardInterrupt:
        return EXIT_FAILED
    except Exception as exc:  # a failure the user can act on: one line, no traceback
        from host_tools.c1218 import C1218Error
        from host_tools.flash import FlashError
        from host_tools.sim import SimError

        if isinstance(exc, (SimError, FlashError, C1218Error, OSError)):
            print(("\n" if _progress_open else "") + f"meterctl: {exc}", file=sys.stderr)
            return EXIT_FAILED
        raise


if __name__ == "__main__":
    sys.exit(main())
