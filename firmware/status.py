"""The meter's health and mode flags, as ANSI C12.19 ST3 reports them.

Every subsystem sets or clears its own condition here; the LCD shows an error code
while an error lasts (FATAL and NONFATAL below) and the optical port reads the same
bits (ED_STD_STATUS1).

    import status
    st = status.Status()
    st.set(status.MEASUREMENT_ERROR)  # the metering IC stopped answering
    st.clear(status.MEASUREMENT_ERROR)
"""

from micropython import const

# ED_STD_STATUS1 bit numbers (ST3)
UNPROGRAMMED = const(1 << 0)
CONFIGURATION_ERROR = const(1 << 1)
SELF_CHECK_ERROR = const(1 << 2)
RAM_FAILURE = const(1 << 3)
ROM_FAILURE = const(1 << 4)
NONVOLATILE_MEMORY_FAILURE = const(1 << 5)
CLOCK_ERROR = const(1 << 6)
MEASUREMENT_ERROR = const(1 << 7)
LOW_BATTERY = const(1 << 8)
LOW_LOSS_POTENTIAL = const(1 << 9)
DEMAND_OVERLOAD = const(1 << 10)
POWER_FAILURE = const(1 << 11)
TAMPER_DETECT = const(1 << 12)
REVERSE_ROTATION = const(1 << 13)

# The LCD's "Er nnn" code of each error, as (bit, code) pairs, most serious first; the
# README's LCD table says what each means.
# FATAL: the meter cannot show a register it can vouch for (the EEPROM that holds them
# does not answer or lost them, no metering chip): the most serious one's "Er nnn" and the
# alarm sign replace the display list while it lasts.
# NONFATAL: the legal quantities are still right: the list goes on scrolling with the
# alarm sign lit, and each of these errors present is an "Er nnn" item of its own after
# the list's last item (display.py).
FATAL = (NONVOLATILE_MEMORY_FAILURE, 1, MEASUREMENT_ERROR, 2)
NONFATAL = (CONFIGURATION_ERROR, 3, TAMPER_DETECT, 4, CLOCK_ERROR, 5, LOW_BATTERY, 6)


class Status:
    def __init__(self):
        self.bits = 0

    def set(self, bit):
        self.bits |= bit

    def clear(self, bit):
        self.bits &= ~bit

    def has(self, bit):
        return bool(self.bits & bit)

    def fatal_code(self):
        """The LCD error number of the most serious FATAL error present, or 0."""
        return _first(FATAL, self.bits)

    def error_code(self):
        """The LCD error number of the most serious error present, fatal or not, or 0."""
        return _first(FATAL, self.bits) or _first(NONFATAL, self.bits)

    def nonfatal(self):
        """The NONFATAL bits present (the LCD's alarm sign while the list scrolls)."""
        return self.bits & NONFATAL_BITS


def _first(pairs, bits):
    for i in range(0, len(pairs), 2):
        if bits & pairs[i]:
            return pairs[i + 1]
    return 0


def _mask(pairs):
    m = 0
    for i in range(0, len(pairs), 2):
        m |= pairs[i]
    return m


NONFATAL_BITS = _mask(NONFATAL)
