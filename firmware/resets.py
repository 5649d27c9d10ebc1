"""Why the meter started: counts by cause kept in EEPROM, and where the last fault was.

    r = resets.Resets(meter.storage)
    cause = r.boot(board.reset_cause(), warm)  # after storage.restore(): count this start
    r.fault(exc)           # an exception escaped the loop: remember it; True: log it
    r.intend(resets.RESET) # a restart the firmware asks for (a soft reboot, machine.reset)
    r.counts[resets.WATCHDOG], r.cause, r.fault_data()

The cause is decided at boot from three witnesses: the metering chip (`warm`: it kept its
configuration, so the line never failed: only the MCU restarted), what the firmware wrote
before a restart it asked for or a fault it saw (the intent), and the MCU's own
reset-cause register (board.reset_cause(): "watchdog" or "power_on"; an RP2040's
machine.reset() goes through its watchdog too, hence the intent).

The record rides after the layout marker in storage's format record (two copies, written
at each boot: a cut tears one). FAULT_TYPES and MODULES only grow: the indexes in the
event log and in MT6 stay meaningful from one firmware version to the next.
"""

import sys

try:
    from micropython import const
except ImportError:  # CPython: the host tools read the tuples below

    def const(x):  # type: ignore[misc]
        return x


POWER_ON = const(0)  # the line came back: the metering chip had lost its configuration
WATCHDOG = const(1)  # the watchdog reset a loop that stopped feeding it
FAULT = const(2)  # an exception escaped the loop: logged, registers saved, then the watchdog
RESET = const(3)  # the MCU restarted with the line on: a soft reboot, machine.reset(), RUN pin
# names for the host (MT6, the event log): bytes, not a tuple of str, so that a board
# interns no name it never uses (a qstr costs RAM for good; bytes stay in the module's code)
CAUSES = b"power_on watchdog fault reset"
_NONE = const(0xFF)  # no intent recorded

# The exception classes a fault is filed under: the first that matches from index 1 on
# (a subclass before its base), else 0. Append only.
FAULT_TYPES = (
    Exception,
    MemoryError,
    OSError,
    NotImplementedError,
    RuntimeError,
    UnicodeError,
    ValueError,
    TypeError,
    IndexError,
    KeyError,
    AttributeError,
    ZeroDivisionError,
    OverflowError,
    NameError,
    ImportError,
    AssertionError,
    StopIteration,
    SyntaxError,
)
# The modules a fault can be raised in: firmware/ and boards/, by position (append only;
# 0xFF: another). Bytes, as CAUSES.
MODULES = (
    b"main meter ade7953 metrology storage records eeprom billing powerup demand tou"
    b" loadprofile events logread timekeeping clock display ht1621 lcd_glyphs c1218 psem"
    b" tables security seal config status calibration resets board simwire machine rtc console"
    b" repl stdio selfread"
)
_OTHER = const(0xFF)
# the record: counts of the four causes (u16), the last cause, the intent, the last
# fault's type, module and line, how many times in a row it came
_SIZE = const(16)


def describe(exc):
    """(type index, module index, line) of where exc was raised: its innermost frame."""
    t = 0
    for i in range(1, len(FAULT_TYPES)):
        if isinstance(exc, FAULT_TYPES[i]):
            t = i
            break
    import io

    buf = io.StringIO()
    sys.print_exception(exc, buf)  # type: ignore[attr-defined]
    text = buf.getvalue()
    at = text.rfind('File "')
    module, line = _OTHER, 0
    if at >= 0:
        end = text.find('"', at + 6)
        name = text[at + 6 : end]
        name = name[name.rfind("/") + 1 :]
        if name.endswith(".py"):
            name = name[:-3]
        names = MODULES.split()
        key = name.encode()
        if key in names:
            module = names.index(key)
        at = text.find("line ", end)
        if at >= 0:
            stop = at + 5
            while stop < len(text) and "0" <= text[stop] <= "9":
                stop += 1
            line = int(text[at + 5 : stop] or "0")
    return t, module, line if line < 0xFFFF else 0xFFFF


class Resets:
    def __init__(self, storage):
        self._st = storage
        self.counts = [0, 0, 0, 0]
        self.cause = POWER_ON
        self.intent = _NONE
        self.fault_type = 0
        self.fault_module = _OTHER
        self.fault_line = 0
        self.fault_repeats = 0  # the same fault, in a row

    def _load(self):
        blob = self._st.load_resets() if self._st is not None else None
        if blob is None or len(blob) < _SIZE:
            return
        c = self.counts
        for i in range(4):
            c[i] = blob[2 * i] | blob[2 * i + 1] << 8
        self.cause = blob[8]
        self.intent = blob[9]
        self.fault_type = blob[10]
        self.fault_module = blob[11]
        self.fault_line = blob[12] | blob[13] << 8
        self.fault_repeats = blob[14] | blob[15] << 8

    def _save(self):
        if self._st is None:
            return False
        b = bytearray(_SIZE)
        for i in range(4):
            b[2 * i] = self.counts[i] & 0xFF
            b[2 * i + 1] = self.counts[i] >> 8
        b[8] = self.cause
        b[9] = self.intent
        b[10] = self.fault_type
        b[11] = self.fault_module
        b[12] = self.fault_line & 0xFF
        b[13] = self.fault_line >> 8
        b[14] = self.fault_repeats & 0xFF
        b[15] = self.fault_repeats >> 8
        return self._st.save_resets(b)

    def boot(self, hw_cause, warm):
        """Decide and count why the meter starts now (module docstring); the cause."""
        self._load()
        if not warm:
            cause = POWER_ON  # the chip lost power too (an intent then never got its reset)
        elif self.intent != _NONE:
            cause = self.intent
        elif hw_cause == "watchdog":
            cause = WATCHDOG
        else:
            cause = RESET
        if cause != FAULT:
            self.fault_repeats = 0  # a fault's run ends at any other start
        if self.counts[cause] < 0xFFFF:
            self.counts[cause] += 1
        self.cause = cause
        self.intent = _NONE
        self._save()
        return cause

    def intend(self, cause):
        """The firmware is about to restart itself for `cause`: say so for the next boot."""
        self.intent = cause
        return self._save()

    def fault(self, exc):
        """An exception escaped the loop: file it and mark the coming reset as a fault.
        True if the event log should have it: the first of a run of the same fault and
        then at 2, 4, 8... in a row, so a fault that comes back at every start does not
        fill the log (the count in MT6 goes on)."""
        t, module, line = describe(exc)
        if (t, module, line) == (self.fault_type, self.fault_module, self.fault_line) and self.fault_repeats:
            self.fault_repeats += 1 if self.fault_repeats < 0xFFFF else 0
        else:
            self.fault_type, self.fault_module, self.fault_line = t, module, line
            self.fault_repeats = 1
        self.intent = FAULT
        self._save()
        n = self.fault_repeats
        return n & (n - 1) == 0

    def fault_data(self):
        """The 4 bytes of a FIRMWARE_FAULT event: type, module, line (UINT16)."""
        return bytes((self.fault_type, self.fault_module, self.fault_line & 0xFF, self.fault_line >> 8))
