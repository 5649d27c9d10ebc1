"""Who may do what on the optical port: passwords, access levels and the lock-out.

    sec = security.Security(meter)
    level = sec.verify(buf, start, n)     # 1 reader, 2 programmer, 3 master; -1 wrong, -2 locked out
    stored = sec.hashed(buf, start, 20)   # what config keeps for a new password

Passwords are 20 bytes on the wire. They are kept as salt (8 random bytes) + SHA-256 of
salt and password, in the configuration (config.PW_READER, PW_PROGRAMMER, PW_MASTER),
never in clear. An empty setting is the blank password: a factory meter answers every
level to a blank password until the utility programs them (write MT2 as master).

Padding rule: clients pad short passwords with 0x00, 0x20 or ASCII '0'. Trailing bytes
0x00, 0x20 and 0x30, in any mix, are padding and are stripped before hashing, both when a
password is set and when one is checked. So "1234" padded any of the three ways matches,
and a password's own trailing '0' characters are not significant: "12340" is the same
password as "1234" (choose passwords that do not end in '0' if that matters). A password
that is all padding is the blank password.

The Security service tries the levels from master down and grants the highest whose
password matches. After LOCKOUT_TRIES wrong passwords in a row (3) the service refuses
every password, the right one too, for LOCKOUT_S seconds (60) of the board's clock; the
count survives Logoff and Terminate (not a power cut). Wrong passwords and lock-outs are
logged (meter.events when it exists, otherwise counted in `unlogged`).
"""

import hashlib
import os
import time

from micropython import const

import config
import events

_SALT = const(8)
_READER = const(1)  # access levels: tables.READER, PROGRAMMER, MASTER
_MASTER = const(3)
_PADDING = b"\x00 0"


def significant(buf, start, n):
    """The length of the password in buf[start:start + n] without its trailing padding."""
    while n and buf[start + n - 1] in _PADDING:
        n -= 1
    return n


def _digest(salt, buf, start, n):
    h = hashlib.sha256(salt)
    if n:
        h.update(bytes(buf[start : start + n]))
    return h.digest()


def log_event(meter, code, data, counter):
    """Record in the event log when there is one; return counter + 1 when there is none."""
    events = getattr(meter, "events", None)
    if events is not None:
        events.record(code, data)
        return counter
    return counter + 1


class Security:
    def __init__(self, meter):
        self._m = meter
        self.failures = 0  # wrong passwords in a row
        self.failed_total = 0
        self.lockouts = 0
        self.unlogged = 0  # security events with no event log to take them
        self._until = 0
        self._locked = False

    def hashed(self, buf, start, n):
        """The stored form of a new password: salt + SHA-256(salt + password), or b'' if blank."""
        n = significant(buf, start, n)
        if not n:
            return b""
        salt = os.urandom(_SALT)
        return salt + _digest(salt, buf, start, n)

    def _matches(self, stored, buf, start, n):
        if not stored:
            return n == 0
        return _digest(stored[:_SALT], buf, start, n) == stored[_SALT:]

    def locked(self):
        if self._locked and time.ticks_diff(self._until, self._m.clock.ticks_ms()) <= 0:
            self._locked = False
            self.failures = 0
        return self._locked

    def remaining_s(self):
        if not self.locked():
            return 0
        return (time.ticks_diff(self._until, self._m.clock.ticks_ms()) + 999) // 1000

    def reset_lockout(self):
        self._locked = False
        self.failures = 0

    def verify(self, buf, start, n):
        """The access level a password opens, -1 if it matches none, -2 while locked out."""
        if self.locked():
            return -2
        n = significant(buf, start, n)
        cfg = self._m.config
        for level in range(_MASTER, _READER - 1, -1):  # PW_READER, PW_PROGRAMMER, PW_MASTER follow
            if self._matches(cfg.get(config.PW_READER + level - 1), buf, start, n):
                self.failures = 0
                return level
        self.failures += 1
        self.failed_total += 1
        self.log(events.EV_BAD_PASSWORD, bytes((self.failures,)))
        if self.failures >= cfg.get(config.LOCKOUT_TRIES):
            self._locked = True
            self._until = time.ticks_add(self._m.clock.ticks_ms(), cfg.get(config.LOCKOUT_S) * 1000)
            self.lockouts += 1
            self.log(events.EV_LOCKOUT, bytes((cfg.get(config.LOCKOUT_S) & 0xFF,)))
        return -1

    def log(self, code, data):
        self.unlogged = log_event(self._m, code, data, self.unlogged)
