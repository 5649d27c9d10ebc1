"""The seal: the seal plug, the software seal and the firmware's fingerprint.

    seal = seal.Seal(meter, security)
    seal.boot()            # load the record; a sealed meter checks its firmware files
    seal.plug_in()         # the seal plug is inserted (the pin reads 0)
    seal.seal(user_id, now)     # ST8 result code; the manufacturer procedure MFG 0, master only,
                                # refused (5) while the master password is blank
    seal.unseal(user_id, now)   # MFG 1: the plug must be out (psem checks), master only

The seal record (RECORD) holds whether the meter is sealed, how many times it was
sealed, when it was last sealed or unsealed, the CRC-32 of the configuration and the
SHA-256 of the firmware files (every .py and .mpy in the filesystem root, by name
order, names included) at sealing. It lives in EEPROM through meter.storage
(save_seal / load_seal) and in RAM alone on a meter without storage. Nothing here
imports tables.py (psem.py loads it after boot, and if the heap allows): the seal's
flags and result codes are its own constants, which tables.py names for the host.

Hashing reads every firmware file, so it runs at boot and at sealing only. At boot a
sealed meter whose files no longer hash the same sets TAMPER_DETECT (ST3) and logs the
event; it meters on, and stays sealed (nothing in the record changes).
"""

import binascii
import hashlib
import os
import struct

from micropython import const

import config
import events
import status

# MAGIC, FLAGS (bit 0 sealed), COUNT, TIME (seconds since 2000-01-01 of the last seal or
# unseal), CONFIG_CRC, FW_HASH; then the password lock-out (security.py): FAILURES (wrong
# passwords in a row), LOCKED (1: a lock-out runs); little-endian. A 44-byte record (older
# firmware) has no lock-out part: none runs.
RECORD = "<BBHII32sBB"
_SEAL_PART = "<BBHII32s"
_MAGIC = const(0x53)
_RECORD = const(44)
_LOCK_AT = const(44)
_ROOT = "/"
# MT0 SEAL_FLAGS and ST3 ED_MFG_STATUS bits: tables.SEAL_SEALED ... SEAL_CONFIG_CHANGED
_SEALED = const(1)
_PLUG = const(2)
_LOCKED_OUT = const(4)
_FW_CHANGED = const(8)
_CONFIG_CHANGED = const(16)
_PROC_DONE = const(0)  # ST8 result codes: tables.PROC_DONE, PROC_CONFLICT, PROC_NO_AUTH
_PROC_CONFLICT = const(3)
_PROC_NO_AUTH = const(5)


def firmware_hash(root=_ROOT):
    """SHA-256 over the name and bytes of every .py and .mpy file in root, by name."""
    h = hashlib.sha256()
    buf = bytearray(256)
    names = sorted(n for n in os.listdir(root) if n.endswith(".py") or n.endswith(".mpy"))
    for name in names:
        h.update(name.encode())
        h.update(b"\x00")
        with open(root + name, "rb") as f:
            while True:
                n = f.readinto(buf)
                if not n:
                    break
                h.update(buf if n == len(buf) else buf[:n])
    return h.digest()


def config_crc(cfg):
    return binascii.crc32(cfg.encode()) & 0xFFFFFFFF


class Seal:
    def __init__(self, meter, sec):
        self._m = meter
        self._sec = sec
        self.sealed = False
        self.count = 0
        self.time = 0
        self.cfg_crc = 0
        self.fw_hash = bytes(32)
        self.fw_changed = False  # the firmware hash differed from the record at boot
        self._ram = None  # the record when there is no storage

    def _storage(self):
        return getattr(self._m, "storage", None)

    def boot(self):
        """Load the seal record; a sealed meter checks its firmware files against it."""
        st = self._storage()
        blob = st.load_seal() if st is not None else self._ram
        if blob is not None and len(blob) >= _RECORD and blob[0] == _MAGIC:
            _, flags, self.count, self.time, self.cfg_crc, self.fw_hash = struct.unpack_from(_SEAL_PART, blob, 0)
            self.sealed = bool(flags & 1)
            if len(blob) >= _LOCK_AT + 2:
                self._sec.restore(blob[_LOCK_AT], blob[_LOCK_AT + 1])
        self._sec.persist = self._save
        if self.sealed and self._hash_or_none() != self.fw_hash:
            self.fw_changed = True
            self._m.status.set(status.TAMPER_DETECT)
            self._sec.log(events.EV_FIRMWARE_CHANGED, b"")

    def _hash_or_none(self):
        """The firmware's hash; None if the files cannot be read (then it is not the sealed one)."""
        try:
            return firmware_hash()
        except OSError:
            return None

    def plug_in(self):
        return self._m.board.seal_plug.value() == 0

    def flags(self):
        """ST3's manufacturer status byte and MT0's SEAL_FLAGS."""
        f = _SEALED if self.sealed else 0
        if self.plug_in():
            f |= _PLUG
        if self._sec.locked():
            f |= _LOCKED_OUT
        if self.fw_changed:
            f |= _FW_CHANGED
        if self.sealed and config_crc(self._m.config) != self.cfg_crc:
            f |= _CONFIG_CHANGED
        return f

    def _save(self):
        sec = self._sec
        rec = struct.pack(RECORD, _MAGIC, 1 if self.sealed else 0, self.count, self.time, self.cfg_crc, self.fw_hash,
                          sec.failures, 1 if sec._locked else 0)  # fmt: skip
        st = self._storage()
        if st is None:
            self._ram = bytes(rec)
            return True
        return st.save_seal(bytes(rec)) is not False

    def seal(self, user_id, now):
        """Seal now (the caller checked master and the plug); an ST8 result code: 3 if
        sealed already, 5 (no authorization) while the master password is blank, for then
        anyone with a probe could unseal it."""
        if self.sealed:
            return _PROC_CONFLICT
        if not self._m.config.get(config.PW_MASTER):
            return _PROC_NO_AUTH
        self.sealed = True
        self.count = (self.count + 1) & 0xFFFF
        self.time = now
        self.cfg_crc = config_crc(self._m.config)
        self.fw_hash = firmware_hash()
        self.fw_changed = False
        self._save()
        self._sec.log(events.EV_SEALED, struct.pack("<HH", user_id, self.count))
        return _PROC_DONE

    def unseal(self, user_id, now):
        """Unseal (the caller checked master and that the plug is out)."""
        if not self.sealed:
            return _PROC_CONFLICT
        self.sealed = False
        self.time = now
        self._save()
        self._sec.log(events.EV_UNSEALED, struct.pack("<HH", user_id, self.count))
        return _PROC_DONE
