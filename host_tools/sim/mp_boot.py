"""Runs first in the simulated board's MicroPython VM (unix port), as a board's own
start-up does: the board's filesystem becomes "/", then boot.py and main.py run.

This file is MicroPython code but is not on the board's filesystem: the simulator
passes it to the VM (`micropython -i mp_boot.py`), so tools that list "/" see only what
was flashed. With METER_SIM_MAIN=0 (a soft reset from the raw REPL) only boot.py runs.
Tracebacks name main.py, as on a board.
"""

import os
import sys

import vfs

vfs.umount("/")
vfs.mount(vfs.VfsPosix(os.getenv("METER_SIM_FS")), "/")
os.chdir("/")
sys.path[:] = ["", "/lib", ".frozen"]
for _script in ("boot.py", "main.py") if os.getenv("METER_SIM_MAIN") == "1" else ("boot.py",):
    try:
        os.stat(_script)
    except OSError:
        continue
    with open(_script) as _f:
        _code = compile(_f.read(), _script, "exec")
    del _f
    exec(_code)
