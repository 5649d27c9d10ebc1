"""The simulated board's `machine`: what tools and people call on a board's, over the
simulated board's wire (board.py). On the board's filesystem this file shadows the unix
port's own machine module (DESIGN.md), which has no reset().

    import machine
    machine.reset()        # an MCU reset: the VM restarts and runs main.py (mpremote reset)
    machine.soft_reset()   # "MPY: soft reboot", then main.py

Either way the metering chip, the EEPROM, the RTC and the LCD keep their power and their
state, as on a board whose MCU resets. The firmware itself never imports machine: it
asks its board (board.reset(), board.soft_reset()).
"""

import board


def reset():
    board.restart()


def soft_reset():
    board.restart(soft=True)
