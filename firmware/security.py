"""Who may do what on the optical port: passwords, access levels and the lock-out.

    sec = security.Security(meter)
    level = sec.verify(buf, start, n)     # 1 reader, 2 programmer, 3 master; -1 wrong, -2 locked out
    stored = sec.hashed(buf, start, 20)   # what config keeps for a new password

Passwords are 20 bytes on the wire. They are kept as salt (8 random bytes) + SHA-256 of
salt and password, in the configuration (config.PW_READER, PW_PROGRAMMER, PW_MASTER),
never in clear. An empty setting is the blank password: a factory meter answers every
level to a blank password until the utility programs them (write MT2 as master).

Padding rule: a password is exactly 20 bytes, compared whole; a shorter one is padded
with NUL (0x00) to 20, by the client (host_tools/c1218.py pad_password, termineter) and by
the meter for a Security request shorter than 20 bytes. Nothing else is padding: '0' and
space are characters, so with the password "2000" neither "2" nor "20" opens, and with
"0000" the blank password (20 NULs) does not. The hash covers the 20 bytes without their
trailing NULs, which is the same as comparing all 20 (the NULs are implied), and keeps a
NUL-padded password set by earlier firmware valid. The blank password is 20 NULs.

The Security service tries the levels from master down and grants the highest whose
password matches. After LOCKOUT_TRIES wrong passwords in a row (3) the service refuses
every password, the right one too, for LOCKOUT_S seconds (60) of powered time (the board's
monotonic ticks, not the settable clock). The count survives Logoff, Terminate and a power
cut: the seal record (seal.py) keeps the count and whether a lock-out runs, and a lock-out
cut short by a power cut starts again, whole, at power-up. EEPROM wear: the record is
written once for each wrong password outside a lock-out (none while one runs: those are
refused unchecked), once when a lock-out ends and once at a right password after wrong
ones, so at most LOCKOUT_TRIES + 1 writes (each two page copies) per LOCKOUT_S of powered
time: 4 a minute, 240 an hour with the defaults, however fast a probe tries or the supply
is cycled (boot only reads). Wrong passwords and lock-outs are logged (meter.events when
it exists, otherwise counted in `unlogged`).
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


def significant(buf, start, n):
    """The length of the password in buf[start:start + n] without its trailing NUL padding."""
    while n and buf[start + n - 1] == 0:
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
        self.persist = None  # seal.Seal's: store the count and the lock-out (the seal record)
        self._stored = 0  # the failures the record holds

    def restore(self, failures, locked):
        """Power-up, from the seal record: the wrong passwords in a row, and a lock-out that
        was running (it starts again, whole: the outage is not powered time)."""
        self.failures = self._stored = failures
        if locked:
            self._lock()

    def _lock(self):
        self._locked = True
        self._until = time.ticks_add(self._m.clock.ticks_ms(), self._m.config.get(config.LOCKOUT_S) * 1000)

    def _store(self):
        if self.persist is not None:
            self.persist()
        self._stored = self.failures

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
            self._store()
        return self._locked

    def remaining_s(self):
        if not self.locked():
            return 0
        return (time.ticks_diff(self._until, self._m.clock.ticks_ms()) + 999) // 1000

    def reset_lockout(self):
        self._locked = False
        self.failures = 0
        if self._stored:
            self._store()

    def verify(self, buf, start, n):
        """The access level a password opens, -1 if it matches none, -2 while locked out."""
        if self.locked():
            return -2
        n = significant(buf, start, n)
        cfg = self._m.config
        for level in range(_MASTER, _READER - 1, -1):  # PW_READER, PW_PROGRAMMER, PW_MASTER follow
            if self._matches(cfg.get(config.PW_READER + level - 1), buf, start, n):
                self.failures = 0
                if self._stored:
                    self._store()
                return level
        self.failures = min(self.failures + 1, 255)
        self.failed_total += 1
        if self.failures >= cfg.get(config.LOCKOUT_TRIES):
            self._lock()
            self.lockouts += 1
        self._store()  # before the answer: a power cut right after it cannot undo the count
        self.log(events.EV_BAD_PASSWORD, bytes((self.failures,)))
        if self._locked:
            self.log(events.EV_LOCKOUT, bytes((cfg.get(config.LOCKOUT_S) & 0xFF,)))
        return -1

    def log(self, code, data):
        self.unlogged = log_event(self._m, code, data, self.unlogged)
