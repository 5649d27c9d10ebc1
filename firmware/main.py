"""Runs at boot on every board: wire up this board, then meter for ever.

After Ctrl-C the REPL keeps `m`, the running meter: m.energy.delivered_wh, m.ade, ...
"""

import board
import meter

m = meter.Meter(board.make())
m.run()
