"""Talking to a meter over its optical port the way every meterctl command does: the
common options, one session, and errors a person can act on.

    with optical.session(args, level="reader") as c:    # identify .. security
        st3 = c.read(3)

A failure becomes a `MeterctlError`: one line, a hint (as esptool gives), an exit code.
The exit codes (also in `meterctl --help`):

    0 ok
    1 the operation failed (the meter refused a value, a procedure did not complete, ...)
    2 bad usage (an argument, a configuration file)
    3 the port: no device there, or another program has it open
    4 the meter does not answer (or its answers keep arriving damaged)
    5 access refused: a wrong password, the password lock-out, a sealed meter
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
from collections.abc import Iterator

import serial

from host_tools.c1218 import TABLES, C1218Error, Client, LinkError, NoAnswer, ServiceError, Timeouts, parse

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_PORT, EXIT_NO_ANSWER, EXIT_REFUSED = 0, 1, 2, 3, 4, 5
BAUDS = (9600, 14400, 19200, 28800, 38400, 57600)
LEVELS = {"anonymous": 0, "reader": 1, "programmer": 2, "master": 3}


class MeterctlError(Exception):
    """What went wrong, what to try, and the exit code."""

    def __init__(self, message: str, hint: str = "", code: int = EXIT_FAILED) -> None:
        self.hint = hint
        self.code = code
        super().__init__(message)

    def line(self) -> str:
        return f"{self}" + (f" (hint: {self.hint})" if self.hint else "")


def seconds(text: str) -> float:
    """An argparse type: a positive number of seconds."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0 seconds, not {text}")
    return value


def password_arg(text: str) -> str:
    """An argparse type: a C12.18 password is at most 20 bytes."""
    if len(text.encode()) > 20:
        raise argparse.ArgumentTypeError(f"a password is at most 20 bytes, this one has {len(text.encode())}")
    return text


def add_port_options(p: argparse.ArgumentParser, password: bool = True) -> None:
    """--port, --baud, --timeout and (for commands that log on) --password, --user-id."""
    p.add_argument("--port", required=True, help="the optical probe's serial port (or the simulated board's pty)")
    p.add_argument("--baud", type=int, choices=BAUDS, help="ask the meter for this baud rate after identify")
    p.add_argument("--timeout", type=seconds, default=2.0, help="seconds to wait for each answer (default 2)")
    if password:
        p.add_argument("--password", type=password_arg, default="", help="the level's password (default: blank)")
        p.add_argument("--user-id", type=int, default=1, help="the user id logged on with (default 1)")


def open_port(path: str, timeout: float = 2.0) -> Client:
    """Open the optical port, exclusively, with named errors for the usual mistakes."""
    if not os.path.exists(path):
        raise MeterctlError(f"no device at {path}", "is the optical probe plugged in? see `ls /dev/tty*`", EXIT_PORT)
    try:
        port = serial.Serial(path, 9600, timeout=0.05, exclusive=True)
    except serial.SerialException as exc:
        text = str(exc)
        if "lock" in text.lower() or getattr(exc, "errno", None) in (errno.EBUSY, errno.EAGAIN):
            raise MeterctlError(
                f"{path} is busy", "another program has it open (a terminal, mpremote, a second meterctl)", EXIT_PORT
            ) from None
        if getattr(exc, "errno", None) == errno.EACCES or "Permission denied" in text:
            raise MeterctlError(
                f"no permission to open {path}", "add yourself to the dialout group, then log in again", EXIT_PORT
            ) from None
        raise MeterctlError(f"cannot open {path}: {text}", code=EXIT_PORT) from None
    t = max(timeout, 0.1)
    return Client(port, Timeouts(ack=t, response=t, char=min(0.5, t)))


def explain(exc: C1218Error, port: str) -> MeterctlError:
    """A C12.18 failure as a one-line MeterctlError with a hint."""
    if isinstance(exc, NoAnswer):
        return MeterctlError(
            f"the meter does not answer on {port}: {exc}",
            "is the probe on the meter's optical port, and the meter powered? try --timeout 5",
            EXIT_NO_ANSWER,
        )
    if isinstance(exc, LinkError):
        return MeterctlError(f"{port}: {exc}", "a noisy link: shade the probe from light, or try a lower --baud",
                             EXIT_NO_ANSWER)  # fmt: skip
    if isinstance(exc, ServiceError) and exc.name == "dlk":
        return MeterctlError(
            f"the meter is sealed: it refused the {exc.service}",
            "`meterctl unseal` with the master password, or pull the seal plug, first",
            EXIT_REFUSED,
        )
    if isinstance(exc, ServiceError) and exc.name == "isc":
        return MeterctlError(
            f"the meter refused the {exc.service}: the password's level is too low",
            "give --password with the programmer's or master's password",
            EXIT_REFUSED,
        )
    return MeterctlError(str(exc))


@contextlib.contextmanager
def session(args: argparse.Namespace, level: str = "anonymous", port: str | None = None) -> Iterator[Client]:
    """Identify, negotiate, logon and (from level reader up) security; logoff and
    terminate afterwards. Every C12.18 failure inside comes out as a MeterctlError.
    `port` overrides args.port (flash's --optical)."""
    port = port or args.port
    client = open_port(port, getattr(args, "timeout", 2.0))
    try:
        _identify(client)
        client.negotiate(256, 8, getattr(args, "baud", None))
        client.logon(getattr(args, "user_id", 1) or 1, "meterctl")
        interrupted = False
        try:
            if LEVELS[level] > 0:
                _security(client, getattr(args, "password", "") or "", level)
            yield client
        except KeyboardInterrupt:
            interrupted = True
            raise
        finally:
            if interrupted:
                _end_quickly(client)
            else:
                with contextlib.suppress(C1218Error):
                    client.logoff()
                    client.terminate()
    except C1218Error as exc:
        raise explain(exc, port) from None
    finally:
        client.close()


def _identify(client: Client) -> None:
    """Identify; a session some earlier client left open (killed, or its probe pulled)
    answers ISSS until the meter's channel timeout: Terminate ends it, then again."""
    try:
        client.identify()
    except ServiceError as exc:
        if exc.name != "isss":
            raise
        client.terminate()
        client.identify()


def _end_quickly(client: Client) -> None:
    """After Ctrl-C: Terminate with short timeouts (the interrupted exchange may still be
    answering), so the user is not kept and the meter is free for the next command at
    once; a second Ctrl-C, or a meter that does not answer, skips it."""
    client.t = Timeouts(ack=0.3, response=0.5, char=0.2)
    with contextlib.suppress(C1218Error, KeyboardInterrupt):
        client.terminate()


def _security(client: Client, password: str, level: str) -> None:
    try:
        client.security(password)
    except ServiceError as exc:
        if exc.name != "isc":
            raise
        mt0 = parse(TABLES.MT0, client.read(TABLES.MFG + 0))
        if mt0["LOCKOUT_LEFT_S"]:
            raise MeterctlError(
                f"the meter's password lock-out is on for {mt0['LOCKOUT_LEFT_S']} s more",
                "too many wrong passwords; wait, then try again with the right one",
                EXIT_REFUSED,
            ) from None
        raise MeterctlError(
            f"wrong password for the {level} level",
            "check --password; the meter locks the port out after repeated wrong ones",
            EXIT_REFUSED,
        ) from None
