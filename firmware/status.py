"""The meter's health and mode flags, as ANSI C12.19 ST3 reports them.

Every subsystem sets or clears its own condition here; the LCD shows an error code
while any error lasts and the optical port reads the same bits (ED_STD_STATUS1).

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

# the LCD's "Er nnn" code for each error, most serious first
ERROR_CODES = (
    (NONVOLATILE_MEMORY_FAILURE, 1),
    (MEASUREMENT_ERROR, 2),
    (CONFIGURATION_ERROR, 3),
    (TAMPER_DETECT, 4),
    (CLOCK_ERROR, 5),
)


class Status:
    def __init__(self):
        self.bits = 0

    def set(self, bit):
        self.bits |= bit

    def clear(self, bit):
        self.bits &= ~bit

    def has(self, bit):
        return bool(self.bits & bit)

    def error_code(self):
        """The LCD error number of the most serious error present, or 0."""
        for bit, code in ERROR_CODES:
            if self.bits & bit:
                return code
        return 0
