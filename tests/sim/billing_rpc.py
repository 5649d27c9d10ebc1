"""Talk to the running meter on the simulated board without stopping it (issue 5's tests).

The billing tests look at the meter and act on it (set the time, reset demand) while it
keeps metering. (`mpremote resume exec` now runs code inside the running meter too,
firmware/console.py; this file's RPC runs each call at a poll.) So the board gets a main.py that
builds the meter, applies test settings and, after each poll, runs the code of a file the
test drops into the board's filesystem (state_dir/fs is its "/"):

    meter = MeterRPC(board, settings={0x31: 3})     # writes main.py; power the board on after
    board.power_on()
    meter.call("result = m.demand.max_w")           # one poll (1 s of virtual time) later: the value

Virtual time only moves inside board.run(), so a call is deterministic: the code runs at
the first poll after the file appears, and its `result` comes back through another file.
"""

from __future__ import annotations

import ast
import datetime as dt
import re
from pathlib import Path

from host_tools.sim import SimBoard

EPOCH = dt.datetime(2000, 1, 1)
REPO = Path(__file__).resolve().parents[2]
# the event codes, as firmware/events.py declares them
EV = {
    name: int(value, 0)
    for name, value in re.findall(r"^(EV_\w+) = const\((\w+)\)", (REPO / "firmware/events.py").read_text(), re.M)
}

MAIN = """import os, board, meter
m = meter.Meter(board.make())
for k, v in {settings!r}:
    m.config.set(k, v)
def _poll(poll=m.poll):
    poll()
    try:
        f = open("rpc_in.py")
    except OSError:
        return
    src = f.read()
    f.close()
    os.remove("rpc_in.py")
    g = {{"m": m}}
    exec(src, g)
    f = open("rpc_out.txt", "w")
    f.write(repr(g.get("result")))
    f.close()
m.poll = _poll
m.run()
"""


def secs(when: str) -> int:
    """Seconds since 2000-01-01 of an ISO date and time (the meter's time base)."""
    return int((dt.datetime.fromisoformat(when) - EPOCH).total_seconds())


def iso(seconds: int) -> str:
    return (EPOCH + dt.timedelta(seconds=seconds)).isoformat()


class MeterRPC:
    def __init__(self, board: SimBoard, settings: dict[int, int | bytes] | None = None) -> None:
        assert board.state_dir is not None
        self.board = board
        self.fs = Path(board.state_dir) / "fs"
        items = tuple(sorted((settings or {}).items()))
        (self.fs / "main.py").write_text(MAIN.format(settings=items))

    def call(self, code: str, polls: int = 3):
        """Run code beside the meter `m` at the next poll; the value it puts in `result`."""
        out = self.fs / "rpc_out.txt"
        out.unlink(missing_ok=True)
        (self.fs / "rpc_in.py").write_text(code)
        for _ in range(polls):
            self.board.run(1.0)
            if out.exists():
                return ast.literal_eval(out.read_text())
        raise AssertionError(f"the meter did not run {code!r}; console:\n{self.board.console.text()[-1500:]}")

    def get(self, *exprs: str):
        """The values of expressions about the meter `m`, in one poll."""
        values = self.call("result = (" + ", ".join(exprs) + ",)")
        return values if len(exprs) > 1 else values[0]

    def now(self) -> int:
        return self.get("m.clock_time")
