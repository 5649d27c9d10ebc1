"""Runs at boot on every board: wire up this board, then meter for ever.

The meter owns the USB console from the first lines on (console.py): Ctrl-C does not
stop it. Unsealed, the console is still MicroPython's REPL for mpremote, ampy and a
person, running beside the meter in these globals: m.energy.delivered_wh, m.ade, ...;
m.stop() stops metering and gives MicroPython's own REPL the console.
"""

import board

b = board.make()
b.console.take(True)  # before the long imports: Ctrl-C is a byte for the meter from here
try:
    import meter

    m = meter.Meter(b)
    m.run()
finally:
    b.console.take(False)  # the meter stopped (m.stop(), a fault): the REPL has the console again
