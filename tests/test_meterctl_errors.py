"""The mistakes people make with an optical probe, each one readable line with a hint and
its documented exit code (host_tools/optical.py): no device, a busy port, a meter that
does not answer, a wrong password, the lock-out, a bad argument. Never a traceback."""

from __future__ import annotations

import os

import pytest
import serial


def one_line(r, code: int, *parts: str) -> str:
    assert r.returncode == code, (r.returncode, r.stderr)
    assert r.stdout == ""
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("meterctl:") or code == 2, lines[0]
    for part in parts:
        assert part in lines[0], lines[0]
    assert "Traceback" not in r.stderr
    return lines[0]


def test_no_device_at_the_port(meterctl, tmp_path):
    r = meterctl("status", "--port", str(tmp_path / "ttyUSB7"))
    line = one_line(r, 3, f"no device at {tmp_path / 'ttyUSB7'}")
    assert "(hint: is the optical probe plugged in?" in line


def test_a_port_another_program_holds_is_busy(meter, meterctl):
    with serial.Serial(meter.optical, 9600, exclusive=True):
        r = meterctl("status", "--port", meter.optical)
    one_line(r, 3, f"{meter.optical} is busy", "another program has it open")
    assert meterctl("status", "--port", meter.optical).returncode == 0, "free again: it works"


def test_a_meter_that_does_not_answer(meterctl):
    master, slave = os.openpty()  # a probe with no meter in front of it: silence
    try:
        r = meterctl("status", "--port", os.ttyname(slave), "--timeout", "0.3")
    finally:
        os.close(master)
        os.close(slave)
    line = one_line(r, 4, "the meter does not answer on")
    assert "hint: is the probe on the meter's optical port" in line


def test_a_wrong_password(meter, meterctl):
    r = meterctl("read", "--port", meter.optical, "--password", "not-the-password")
    one_line(r, 5, "wrong password for the reader level", "hint: check --password")


@pytest.mark.sim_only  # a bench meter would stay locked out for a minute
def test_the_lockout_after_repeated_wrong_passwords_says_how_long(meter, meterctl):
    for _ in range(3):
        meterctl("read", "--port", meter.optical, "--password", "guess")
    r = meterctl("read", "--port", meter.optical)  # the right (blank) password, refused now
    one_line(r, 5, "the meter's password lock-out is on for", "wait, then try again")


@pytest.mark.parametrize(
    "args, message",
    [
        (["status", "--port", "/dev/null", "--timeout", "0"], "must be more than 0 seconds"),
        (["status", "--port", "/dev/null", "--timeout", "soon"], "not a number of seconds"),
        (["status"], "the following arguments are required: --port"),
        (["read", "--port", "/dev/null", "--baud", "1234"], "invalid choice"),
        (["read", "--port", "/dev/null", "--password", "x" * 21], "a password is at most 20 bytes"),
    ],
)
def test_bad_arguments_exit_2(meterctl, args, message):
    one_line(meterctl(*args), 2, message)
