"""Benchmark: the firmware's CPU cost per poll, scaled to a 125 MHz RP2040 (issue 9, item 3).

The simulated board's buses reach the host over a socket, so timing a step there would
measure IPC. Instead this writes a MicroPython script with a board of small in-VM fakes
(an ADE7953 register file on SPI, a 24LC256 bytearray on I2C, pins, a UART holding canned
C12.18 packets, a virtual 1 s poll clock, an RTC), runs the real firmware modules on it in
the unix `micropython`, and times with time.ticks_us: one Meter.poll(), one Display.tick()
(steady and scrolling) and one optical-port request (a full read of ST1, its ACK included).
Pins the firmware toggles a lot (ADE7953 CS, the HT1621 lines) are C calls, as machine.Pin's
are; the Python fakes' cost is measured per call and shown subtracted ('net'), while the
scaled figures keep it (an upper bound). The bus wire time is estimated separately from the
bytes the fakes saw. The host->RP2040 scale is a pystone run here against an ESTIMATE of the
RP2040's pystone rate built from two published figures (REFERENCE and RATIO below).

Run: .venv/bin/python tests/bench/cpu.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from host_tools.c1218 import packet
from host_tools.repo import FIRMWARE_DIR

MICROPYTHON = Path(sys.executable).parent / "micropython"
POLL_MS = 1000  # firmware/meter.py POLL_MS
GOAL_SHARE = 0.05
SPI_HZ = 1_000_000  # boards/pico/board.py _ADE_SPI_HZ
I2C_HZ = 400_000  # boards/pico/board.py _I2C_HZ

# The scaling reference. No published time of a fixed MicroPython workload on an RP2040 at
# 125 MHz whose exact code could be run here was found with the search tools (see the report).
# So the RP2040's pystone rate is ESTIMATED from two published figures, never measured:
# MicroPython's own pystone on the pyboard (STM32F405 at 168 MHz), times the pyboard/Pico speed
# ratio one author measured with one script on both boards under the same MicroPython version.
REFERENCE = {
    "source": "https://github.com/micropython/micropython/pull/4858 (dpgeorge, 2019-06-19)",
    "workload": "tests/perf_bench/misc_pystone.py (Pystone 1.2), run-perfbench N=100 M=100",
    "board": "PYBv1.0, STM32F405 Cortex-M4 at 168 MHz, MicroPython of mid-2019",
    "pystones_per_s": 1847.56,
}
RATIO = {
    "source": "https://scruss.com/blog/tag/benchmark/ (Parallel MicroPython Benchmarking, results table)",
    "what": "one float-heavy script, MicroPython 1.24.1: pyboard v1.1 STM32F405RG @ 168 MHz 13.0 s, "
    "Raspberry Pi Pico W RP2040 @ 125 MHz 19.8 s",
    "pyboard_s": 13.0,
    "pico_s": 19.8,
}
RP2040_MHZ = 125

SCRIPT = r"""
import sys, time, gc

REQ_HEX = %(requests)r
N_POLL = %(n_poll)d
N_DISP = %(n_disp)d
N_REQ = %(n_req)d
PYSTONE_LOOPS = %(loops)d
from fake_board import *  # noqa: F403  (tests/bench/fake_board.py: the board's fakes)

def stats(xs):
    xs = sorted(xs)
    n = len(xs)
    return {"median": xs[n // 2], "p99": xs[min(n - 1, n * 99 // 100)], "max": xs[-1], "n": n}


def snap():
    return dict(C)


def delta(a, b):
    return {k: b[k] - a[k] for k in a}


# ---- the fakes' own cost, per call ------------------------------------------------------
def fake_costs():
    b = Board()
    buf6 = bytearray(6)
    buf6[0] = 0x02
    buf6[1] = 0x1E
    page = bytearray(64)
    pin = b.ade_reset
    spi = b.ade_spi
    i2c = b.i2c
    n = 2000

    def per(fn):
        t = ticks_us()
        for _ in range(n):
            fn()
        return diff(ticks_us(), t) / n

    base = per(lambda: None)
    return {
        "pin": per(lambda: pin(0)) - base,
        "spi": per(lambda: spi.write_readinto(buf6, buf6)) - base,
        "i2c": per(lambda: i2c.writeto_mem(0x50, 0, page, 16)) - base,
    }


def fake_us(d, cost):
    return d["pin"] * cost["pin"] + d["spi"] * cost["spi"] + d["i2c"] * cost["i2c"]


# ---- a pystone (Pystone 1.2 algorithm, this project's own implementation) ----------------
# Checked once against CPython's Lib/test/pystone.py run in this same micropython: this one
# scores 5-7 percent fewer pystones/s (attributes on self instead of module globals), so the scale
# derived from it is that much low.
class Rec:
    def __init__(self, nxt=None, discr=0, enum=0, num=0, text=""):
        self.nxt = nxt
        self.discr = discr
        self.enum = enum
        self.num = num
        self.text = text

    def clone(self):
        return Rec(self.nxt, self.discr, self.enum, self.num, self.text)


class Stone:
    def __init__(self):
        self.int_g = 0
        self.bool_g = False
        self.ch1 = "\0"
        self.ch2 = "\0"
        self.arr1 = [0] * 51
        self.arr2 = [[0] * 51 for _ in range(51)]
        self.glb = None

    def run(self, loops):
        nxt = Rec()
        glb = Rec(nxt, 1, 3, 40, "DHRYSTONE PROGRAM, SOME STRING")
        self.glb = glb
        s1 = "DHRYSTONE PROGRAM, 1'ST STRING"
        self.arr2[8][7] = 10
        for _ in range(loops):
            self.p5()
            self.p4()
            a = 2
            b = 3
            s2 = "DHRYSTONE PROGRAM, 2'ND STRING"
            en = 2
            self.bool_g = not self.f2(s1, s2)
            while a < b:
                c = 5 * a - b
                c = self.p7(a, b)
                a += 1
            self.p8(self.arr1, self.arr2, a, c)
            self.glb = self.p1(self.glb)
            ch = "A"
            while ch <= self.ch2:
                if en == self.f1(ch, "C"):
                    en = self.p6(1)
                ch = chr(ord(ch) + 1)
            c = b * a
            b = c // a
            b = 7 * (c - b) - a
            a = self.p2(a)

    def p1(self, par):
        nxt = self.glb.clone()
        par.nxt = nxt
        par.num = 5
        nxt.num = par.num
        nxt.nxt = par.nxt
        nxt.nxt = self.p3(nxt.nxt)
        if nxt.discr == 1:
            nxt.num = 6
            nxt.enum = self.p6(par.enum)
            nxt.nxt = self.glb.nxt
            nxt.num = self.p7(nxt.num, 10)
        else:
            par = nxt.clone()
        nxt.nxt = None
        return par

    def p2(self, v):
        loc = v + 10
        while True:
            if self.ch1 == "A":
                loc -= 1
                v = loc - self.int_g
                en = 1
            if en == 1:
                return v

    def p3(self, out):
        if self.glb is not None:
            out = self.glb.nxt
        else:
            self.int_g = 100
        self.glb.num = self.p7(10, self.int_g)
        return out

    def p4(self):
        ok = self.ch1 == "A"
        ok = ok or self.bool_g
        self.ch2 = "B"

    def p5(self):
        self.ch1 = "A"
        self.bool_g = False

    def p6(self, e):
        out = e
        if not self.f3(e):
            out = 4
        if e == 1:
            out = 1
        elif e == 2:
            out = 1 if self.int_g > 100 else 4
        elif e == 3:
            out = 2
        elif e == 5:
            out = 3
        return out

    def p7(self, x, y):
        return y + (x + 2)

    def p8(self, a1, a2, x, y):
        loc = x + 5
        a1[loc] = y
        a1[loc + 1] = a1[loc]
        a1[loc + 30] = loc
        for i in range(loc, loc + 2):
            a2[loc][i] = loc
        a2[loc][loc - 1] += 1
        a2[loc + 20][loc] = a1[loc]
        self.int_g = 5

    def f1(self, c1, c2):
        return 1 if c1 != c2 else 2

    def f2(self, s1, s2):
        i = 1
        while i <= 1:
            if self.f1(s1[i], s2[i + 1]) == 1:
                ch = "A"
                i += 1
        if "W" <= ch <= "Z":
            i = 7
        if ch == "X":
            return True
        if s1 > s2:
            i += 7
            return True
        return False

    def f3(self, e):
        return e == 3


def pystones():
    best = None
    for _ in range(3):
        gc.collect()
        t = ticks_us()
        Stone().run(PYSTONE_LOOPS)
        us = diff(ticks_us(), t)
        best = us if best is None or us < best else best
    return PYSTONE_LOOPS * 1000000 / best


# ---- the reference workload first, in a fresh VM like the published run -----------------
stones = pystones()

# ---- the firmware on the fake board -----------------------------------------------------
import meter

cost = fake_costs()
b = Board()
m = meter.Meter(b)
m.boot()
clock = b.clock
out = {"fake_cost_us": cost}

# metering steps: the first 30 polls warm up (first records, the first scroll)
for _ in range(30):
    clock.ms += 1000
    m.poll()
gc.collect()
writes0 = m.storage.ee.writes
wh0 = m.energy.delivered_wh
c0 = snap()
raw = []
net = []
saving = []
ee = m.storage.ee
for _ in range(N_POLL):
    clock.ms += 1000
    s = snap()
    w = ee.writes
    t = ticks_us()
    m.poll()
    us = diff(ticks_us(), t)
    raw.append(us)
    if ee.writes != w:
        saving.append(us)
    net.append(us - fake_us(delta(s, snap()), cost))
c1 = delta(c0, snap())
out["poll_raw"] = stats(raw)
out["poll"] = stats(net)
out["poll_saving"] = stats(saving)
out["poll_bus"] = {k: c1[k] / N_POLL for k in c1}
out["page_writes"] = m.storage.ee.writes - writes0
out["polls"] = N_POLL
out["wh_delivered"] = m.energy.delivered_wh - wh0

# display: a steady refresh (no scroll due), and a scroll to the next item
disp = m.display
now = clock.ms
steady = []
scroll = []
steady_raw = []
scroll_raw = []
def timed_tick(at, raw, net):
    s = snap()
    t = ticks_us()
    disp.tick(at)
    us = diff(ticks_us(), t)
    raw.append(us)
    net.append(us - fake_us(delta(s, snap()), cost))
for i in range(N_DISP):
    timed_tick(now, steady_raw, steady)
    now = disp._next_scroll
    timed_tick(now, scroll_raw, scroll)
lcd = disp._lcd
pins = (lcd._cs, lcd._wr, lcd._data)
lcd._cs, lcd._wr, lcd._data = Pin(1), Pin(1), Pin(1)  # counted, for one scroll
s = snap()
disp.tick(disp._next_scroll)
out["display_scroll_bus"] = delta(s, snap())
lcd._cs, lcd._wr, lcd._data = pins
out["display_steady"] = stats(steady)
out["display_scroll"] = stats(scroll)
out["display_steady_raw"] = stats(steady_raw)
out["display_scroll_raw"] = stats(scroll_raw)

# optical port: identify and logon, then full reads of ST1, each with its ACK
uart = b.optical
link = m.link
reqs = [bytes.fromhex(h) for h in REQ_HEX]
ACK = b"\x06"


def exchange(pkt):
    uart.tx_n = 0
    uart.put(pkt)
    while uart.any():
        link.feed_available()
    resp = bytes(uart.tx[0 : uart.tx_n])
    uart.put(ACK)
    link.feed_available()
    return resp


for pkt in reqs[:2]:
    exchange(pkt)
opt = []
opt_raw = []
first = None
for i in range(N_REQ):
    pkt = reqs[2 + (i & 1)]
    s = snap()
    t = ticks_us()
    resp = exchange(pkt)
    us = diff(ticks_us(), t)
    opt_raw.append(us)
    opt.append(us - fake_us(delta(s, snap()), cost))
    if first is None:
        first = resp
out["optical"] = stats(opt)
out["optical_raw"] = stats(opt_raw)
out["optical_resp"] = first.hex()
out["optical_req_bytes"] = len(reqs[2])
out["link_packets"] = link.packets
out["error_code"] = m.status.error_code()
out["running"] = m.metrology.running
out["bus_errors"] = m.metrology.bus_errors
out["items"] = list(m.config.get(0x20))
out["pystones_per_s"] = stones
print("RESULT " + __import__("json").dumps(out))
"""


def requests() -> list[str]:
    """identify, logon, then a full read of ST1 with both toggle values (a new request each time)."""
    logon = b"\x50\x00\x02" + b"cpu-bench ".ljust(10)
    read_st1 = b"\x30\x00\x01"
    return [
        packet(b"\x20").hex(),
        packet(logon, toggle=True).hex(),
        packet(read_st1).hex(),
        packet(read_st1, toggle=True).hex(),
    ]


def measure(quick: bool) -> dict:
    params = {
        "requests": requests(),
        "n_poll": 120 if quick else 1200,
        "n_disp": 50 if quick else 500,
        "n_req": 30 if quick else 300,
        "loops": 1000 if quick else 10000,
    }
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "cpu_bench.py"
        script.write_text(
            f"import sys\nsys.path[:0] = [{str(FIRMWARE_DIR)!r}, {str(Path(__file__).parent)!r}, {tmp!r}]\n"
            + SCRIPT % params
        )
        proc = subprocess.run(
            [str(MICROPYTHON), "-X", "heapsize=4M", str(script)],
            capture_output=True, text=True, timeout=110,
        )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])
    raise RuntimeError(f"the benchmark script gave no result:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (a test's smoke run)")
    args = parser.parse_args()
    try:
        r = measure(args.quick)
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        print(f"cpu.py: could not measure: {exc}", file=sys.stderr)
        return 1
    if r["error_code"] or not r["running"] or r["bus_errors"]:
        print(f"cpu.py: the meter on the fake board was not healthy (error code {r['error_code']}, chip running "
              f"{r['running']}, {r['bus_errors']} bus errors): nothing measured is valid", file=sys.stderr)
        return 1

    ref_here = REFERENCE["pystones_per_s"] * RATIO["pyboard_s"] / RATIO["pico_s"]
    scale = r["pystones_per_s"] / ref_here  # RP2040 time = host time x scale
    print(f"pystone here (unix micropython): {r['pystones_per_s']:,.0f} pystones/s")
    print(f"scaling source: {REFERENCE['source']}: {REFERENCE['workload']}, {REFERENCE['board']}: "
          f"{REFERENCE['pystones_per_s']} pystones/s")
    print(f"  speed ratio source: {RATIO['source']}: {RATIO['what']}")
    print(f"  NO published RP2040 pystone figure was found: RP2040 at {RP2040_MHZ} MHz ESTIMATED as "
          f"{REFERENCE['pystones_per_s']} x {RATIO['pyboard_s']}/{RATIO['pico_s']} = {ref_here:,.0f} pystones/s "
          f"-> RP2040 time = time here x {scale:,.1f} (an estimate, not a measurement; the ratio comes from float "
          f"code, where the FPU-less RP2040 loses more than on integer code: RP2040 times likely overstated)")
    print()
    rows = [
        ("metering step: Meter.poll()", "poll"),
        ("display refresh, steady", "display_steady"),
        ("display refresh, scroll", "display_scroll"),
        ("optical request: read ST1 + ACK", "optical"),
    ]
    print(f"{'operation':<34} {'median us':>10} {'net us':>7} {'p99 us':>8} {'max us':>8} {'RP2040 ms':>10} "
          f"{'of 1 s':>7}")
    for name, key in rows:
        s, net = r[key + "_raw"], r[key]["median"]
        ms = s["median"] * scale / 1000
        print(f"{name:<34} {s['median']:>10.1f} {max(net, 0.0):>7.1f} {s['p99']:>8.1f} {s['max']:>8.1f} {ms:>10.2f} "
              f"{ms / POLL_MS:>7.2%}")
    print("  (us on this host; 'net' = with the fakes' own cost per call subtracted, an estimate; the RP2040 column "
          "scales the median WITH the fakes, an upper bound. Meter.poll() = metrology.poll (energy registers; every "
          "few polls reactive/apparent and a chip check), storage.tick, billing.tick, display.tick)")
    fc = r["fake_cost_us"]
    print(f"  fake cost per call subtracted: pin {fc['pin']:.2f} us, SPI read {fc['spi']:.2f} us, "
          f"I2C page {fc['i2c']:.2f} us")
    print(f"  in the window: {r['polls']} polls (1 s each), {r['page_writes']} EEPROM page writes, "
          f"{r['wh_delivered']} Wh registered; {r['link_packets']} requests served; "
          f"first reply {r['optical_resp'][:24]}...; meter healthy (no error code, chip running)")

    bus = r["poll_bus"]
    spi_ms = bus["spi_b"] * 8 / SPI_HZ * 1000
    i2c_ms = bus["i2c_b"] * 9 / I2C_HZ * 1000
    lcd_pins = r["display_scroll_bus"]["pin"]
    print(f"  bus time NOT in the figures (from the bytes the fakes saw, per poll): SPI {bus['spi_b']:.1f} B at "
          f"{SPI_HZ / 1e6:g} MHz = {spi_ms:.3f} ms; I2C {bus['i2c_b']:.1f} B at {I2C_HZ // 1000} kHz = "
          f"{i2c_ms:.3f} ms (averaged over saves), plus up to 5 ms per EEPROM page write spent polling for the "
          f"acknowledge (24LC256 write cycle; the fake answers at once)")
    poll_ms = r["poll_raw"]["median"] * scale / 1000
    share = (poll_ms + spi_ms + i2c_ms) / POLL_MS
    verdict = "met" if share < GOAL_SHARE else "NOT met"
    print(f"goal: metering + display (Meter.poll() includes display.tick) = {poll_ms:.2f} ms CPU + "
          f"{spi_ms + i2c_ms:.2f} ms bus per {POLL_MS} ms poll = {share:.2%} of an RP2040 (estimated) "
          f"vs {GOAL_SHARE:.0%}: {verdict}")
    sv = r["poll_saving"]
    save_ms = sv["median"] * scale / 1000
    worst_ms = r["poll_raw"]["max"] * scale / 1000
    print(f"  a poll that saves (EEPROM record, {sv['n']} in the window): median {sv['median']:.0f} us here = "
          f"{save_ms:.2f} ms = {save_ms / POLL_MS:.2%}; the worst poll {r['poll_raw']['max']:.0f} us = "
          f"{worst_ms:.2f} ms = {worst_ms / POLL_MS:.2%} (host noise included: 2 busy cores)")
    print(f"  a scroll's {lcd_pins} HT1621 pin writes are timed as C calls, inside the figures above")
    return 0


if __name__ == "__main__":
    sys.exit(main())
