"""Runs first in the simulated board's MicroPython VM (unix port), as a board's own
start-up does: the board's filesystem becomes "/", then boot.py and main.py run.

This file is MicroPython code but is not on the board's filesystem: the simulator
passes it to the VM (`micropython -i mp_boot.py`), so tools that list "/" see only what
was flashed. With METER_SIM_MAIN=0 (a soft reset from the raw REPL) only boot.py runs.
Tracebacks name main.py, as on a board.
"""

import os
import select
import sys
import termios

import vfs

# Ctrl-C raises KeyboardInterrupt while code runs (the terminal's ISIG; the REPL switches it
# off while it reads a line, so Ctrl-C at a prompt stays a byte), as a board's does.
_attrs = termios.tcgetattr(0)
_attrs[3] |= 0x0001  # ISIG on Linux
termios.tcsetattr(0, termios.TCSANOW, _attrs)
del _attrs

vfs.umount("/")
vfs.mount(vfs.VfsPosix(os.getenv("METER_SIM_FS")), "/")
os.chdir("/")
sys.path[:] = ["", "/lib", ".frozen"]
_scripts = ("boot.py", "main.py") if os.getenv("METER_SIM_MAIN") == "1" else ("boot.py",)
_poll = select.poll()
_poll.register(sys.stdin, select.POLLIN)
if _poll.poll(0) and b"\x03" in sys.stdin.buffer.read(1):
    _scripts = ()  # a Ctrl-C typed while the board was starting: stay at the REPL
del _poll
for _script in _scripts:
    try:
        os.stat(_script)
    except OSError:
        continue
    with open(_script) as _f:
        _code = compile(_f.read(), _script, "exec")
    del _f
    exec(_code)
