"""The simulated board's wire: how the firmware's bus objects reach the virtual hardware.

Declared once and imported by both sides: boards/sim/board.py (MicroPython, on the
simulated board's filesystem) and host_tools/sim/server.py (CPython, the virtual
hardware). Nothing here touches a bus; it only names numbers.

A request is one or more ops sent in a single write: posted ops (pin changes, UART
bytes) ride along with the next synchronous op, which the host answers with one reply.

    op:    OP (1 byte) | payload length (2 bytes, little-endian) | payload
    reply: payload length (2) | ticks_ms (4) | ticks_us (4) | MCU RTC seconds since 2000 (4)
           | flags (1) | optical bytes waiting (2) | payload

ticks_ms and ticks_us travel modulo 2**30; boards/sim/board.py unwraps them, because the
unix port's ticks period is 2**62 (time.ticks_diff() would break at a 2**30 wrap) and
there they stay small ints (no allocation).
"""

try:
    from micropython import const
except ImportError:  # CPython (the host side)

    def const(x):
        return x


# Synchronous ops: the host answers each with a reply.
OP_HELLO = const(0x01)  # payload: firmware banner; reply payload: the last hardware reset (RESET_*)
# OP_SLEEP payload: u32 milliseconds [, u32 ms from now to the firmware's earliest
# client-silence deadline (c1218.Link.deadline()), SLEEP_NO_SILENCE: none pending]; returns
# early on a new event or at that deadline. Without the second word the host keeps the
# deadline it was last told. The host never lets virtual time reach the deadline before a
# real client could have answered (boards/sim/README.md, Time).
OP_SLEEP = const(0x02)
OP_SPI = const(0x03)  # payload: bus id, MOSI bytes; reply payload: MISO bytes
OP_I2C_WRITE = const(0x04)  # payload: addr, stop, data; reply payload: 1 = ACK, 0 = NAK
OP_I2C_READ = const(0x05)  # payload: addr, n; reply payload: status byte then n bytes
OP_UART_READ = const(0x06)  # payload: u16 max; reply payload: the bytes taken
OP_SYNC = const(0x07)  # no payload: flush posted ops, refresh the clock and flags
# no reply: nothing (machine.reset: the MCU resets) or SOFT_RESET (machine.soft_reset: the VM
# restarts, "MPY: soft reboot", the MCU's watchdog and reset cause as they were); either way
# the host starts a new VM with main.py and the chips keep their power
OP_RESET = const(0x08)
# Posted ops: no reply; applied in order before the next synchronous op.
OP_PIN = const(0x10)  # payload: pin id, level
OP_UART_WRITE = const(0x11)  # payload: bytes to send on the optical port
OP_UART_BAUD = const(0x12)  # payload: u32 baud rate
OP_RTC_SET = const(0x13)  # payload: u32 seconds since 2000-01-01 (the MCU RTC; the RTC chips sit on I2C)
OP_WDT = const(0x14)  # payload: u32: a timeout in ms arms the watchdog, 0 feeds it, 0xFFFFFFFF holds it
OP_CONSOLE = const(0x15)  # payload: 1 = the firmware owns the USB console (Ctrl-C is a byte), 0 = the REPL has it

SOFT_RESET = const(0x53)  # OP_RESET's payload for machine.soft_reset()

REPLY_HEADER = const(17)
SLEEP_NO_SILENCE = const(0xFFFFFFFF)  # OP_SLEEP's second word: no client-silence timer pending

# Reply flags: the input pins' levels as the firmware would read them.
FLAG_ADE_IRQ = const(0x01)  # ADE7953 IRQ asserted (pin low)
FLAG_SEAL_PLUG = const(0x02)  # seal plug inserted (pin low)
FLAG_CF1 = const(0x04)  # CF1 output level (1 = high, the LED off)
FLAG_FAULT = const(0x08)  # SimBoard.inject_fault(): the bus call this reply ends raises RuntimeError

# OP_HELLO's reply: what the MCU's reset-cause register says (machine.reset_cause()). A
# soft reboot is not a hardware reset: it leaves the cause as it was, as on an RP2040.
RESET_POWER_ON = const(0)
RESET_WATCHDOG = const(1)  # the watchdog bit; an RP2040's machine.reset() goes through it too

# The watchdog's OP_WDT payloads besides a timeout
WDT_FEED = const(0)
WDT_HOLD = const(0xFFFFFFFF)

# Pin ids (the sim board's "GPIO numbers").
PIN_ADE_CS = const(1)
PIN_ADE_RESET = const(2)
PIN_ADE_IRQ = const(3)
PIN_LCD_CS = const(4)
PIN_LCD_WR = const(5)
PIN_LCD_DATA = const(6)
PIN_SEAL = const(7)
PIN_CF1 = const(8)

I2C_STATUS_ACK = const(1)
I2C_STATUS_NAK = const(0)

# Bus timing charged to virtual time, so firmware that polls a bus sees time pass.
SPI_US_PER_BYTE = const(8)  # 1 MHz SCLK
I2C_US_PER_BYTE = const(23)  # 400 kHz, 9 clocks per byte, plus start/stop
I2C_US_OVERHEAD = const(25)

# The simulated board's analog front end (boards/sim/README.md): line volts per volt
# at the ADE7953 pins, and line amps per volt across the current-channel burden.
# 250 A rms at channel full scale (0.5 V peak at PGA 1); 353.6 V rms at voltage full scale.
V_RATIO = const(1000)
I_RATIO_MILLI = const(707107)  # 707.107 A per pin volt, in milli-units to stay an int
