"""The benchtop demo (`meterctl demo`, `make demo`): a household day with rooftop solar.

On the simulated board it does what a bench technician does with a new meter, through
the same code as the meterctl commands: flash the firmware over the console (mpremote,
compiled), calibrate against the "reference standard" (the simulated source), program a
time-of-use schedule, set the clock, then run one day in accelerated virtual time (import
at night, export at midday, the EV in the evening) while the LCD scrolls; then read the
registers, tiers, maximum demand, event log and load profile over the optical port, plot
the day's profile to a PNG, seal the meter and show that reprogramming is refused.

With `--board pico --console PORT --optical PORT` it runs the same steps on a real board
on the bench, without the simulated day and calibration (the bench's own source drives
the meter there), and unseals the meter again at the end.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from datetime import datetime
from pathlib import Path

from host_tools import flash, program, readout
from host_tools.c1218 import C1218Error, Client, ServiceError, pad_password
from host_tools.optical import EXIT_FAILED, EXIT_OK
from host_tools.profile_plot import plot_profile

TTY = sys.stdout.isatty()  # progress bars redraw in place on a terminal only
DAY = datetime(2026, 6, 17)  # a Wednesday near midsummer: a long solar day
VOLTS = 240.0
CALIBRATION = ((VOLTS, 0.0, 1.0, 300), (VOLTS, 10.0, 1.0, 60), (VOLTS, 10.0, 0.5, 60))  # V, A, PF, s
TOU = {
    # the demo's utility: off-peak A, shoulder B from 07:00, peak C 16:00-21:00 on weekdays
    "tou": {"schedule": {"weekday": {"00:00": "A", "07:00": "B", "16:00": "C", "21:00": "A"}}},
    "display": {"items": ["delivered", "received", "net", "max_demand", "tier", "time"], "scroll_s": 10},
}


def household_kw(hour: float) -> tuple[float, float]:
    """(consumption, solar) in kW at this hour of the demo's day."""
    use = 0.35  # fridge, standby
    if 6.5 <= hour < 8.5:
        use += 1.8  # kettle, shower, toaster
    if 12 <= hour < 13:
        use += 0.8
    if 17 <= hour < 20:
        use += 2.4  # cooking
    if 19 <= hour < 22:
        use += 7.2  # the EV charges
    sun = 5.2 * math.sin(math.pi * (hour - 5.5) / 15.0) if 5.5 <= hour <= 20.5 else 0.0
    return use, max(sun, 0.0)


def _say(text: str = "") -> None:
    print(text, flush=True)


def _bar(done: float, total: float, width: int = 24) -> str:
    n = int(width * done / total)
    return "[" + "#" * n + "." * (width - n) + "]"


def _session(port: str) -> Client:
    return Client.open(port)


def _flash(console: str, optical: str, board_name: str) -> None:
    files = flash.plan(board_name, compile=True)
    _say(f"1. flash: {len(files)} files, compiled by mpy-cross, over the console with mpremote")
    t = time.monotonic()

    def progress(done: int, total: int, name: str) -> None:
        if TTY:
            print(f"\r   {_bar(done, total)} {done}/{total} {name:<16}", end="\n" if done == total else "", flush=True)

    flash.flash(console, files, tool="mpremote", progress=progress, timeout=30)
    flash.verify(console, files, tool="mpremote", timeout=30)
    failure = flash.boot_failure(flash.soft_reboot(console, timeout=15))
    if failure:
        raise flash.FlashError(f"the firmware failed at boot: {failure}")
    end = time.monotonic() + 20
    while True:
        try:
            with Client.open(optical) as c:
                c.identify()
            break
        except C1218Error:
            if time.monotonic() > end:
                raise
            time.sleep(0.2)
    _say(f"   verified by sha256, rebooted, the meter answers on the optical port ({time.monotonic() - t:.1f} s)")


def _calibrate(board, optical: str) -> None:
    _say("2. calibrate against the reference standard (offsets, gain at PF 1, phase at PF 0.5)")
    board.set_speed(400)  # each step integrates a few minutes of board time
    with Client.open(optical).session(password="") as c:
        for volts, amps, pf, seconds in CALIBRATION:
            board.set_load(volts, amps, pf=pf)
            result = program.calibrate(c, volts, amps, pf, seconds)
            _say(f"   {volts:.0f} V {amps:4.1f} A PF {pf:.1f} over {seconds:3d} s: {_describe(result)}")
    board.set_speed(0)


def _describe(result: object) -> str:
    if isinstance(result, dict):
        return ", ".join(f"{k} {v}" for k, v in result.items())
    return str(result) if result is not None else "done"


def _program(optical: str, when: datetime) -> dict:
    """Program, set the clock; the registers as they stand then."""
    _say("3. program the time-of-use schedule and display list, set the clock")
    settings = program.validate(TOU, "demo")
    with Client.open(optical).session(password="") as c:
        program.apply_settings(c, settings)
        program.set_time(c, when)
        regs = readout.read_registers(c)
    _say("   weekday tiers: A off-peak 21:00-07:00, B shoulder 07:00-16:00, C peak 16:00-21:00")
    _say(f"   clock set to {when:%Y-%m-%d %H:%M} ({when:%A})")
    return regs


def _scroll(board, seconds: int) -> list[str]:
    """Run `seconds` of board time a scroll step (10 s) at a time: what the LCD showed."""
    seen = []
    for _ in range(seconds // 10):
        board.run(10)
        text = readout.decode_lcd(board.hw.lcd.ram_bytes())["shown"]  # with its decimal points
        if text not in seen:
            seen.append(text)
    return seen


def _day(board) -> None:
    _say("4. one day of a household with rooftop solar (virtual time, 15-minute load steps)")
    _say(f"   {'time':>5}  {'use':>6} {'solar':>6} {'net':>7}   the LCD's scroll")
    board.set_speed(0)
    for q in range(96):
        hour = q / 4
        use, sun = household_kw(hour + 0.125)
        net_kw = use - sun
        board.set_load(VOLTS, net_kw * 1000 / VOLTS, pf=1.0)
        if q % 8 != 7:
            board.run(900)
            if TTY:
                print(f"\r   {_bar(q + 1, 96)} {q + 1}/96 intervals", end="", flush=True)
            continue
        board.run(840)
        shown = _scroll(board, 60)  # the last minute of every second hour: one turn of the list
        end = (q + 1) * 15
        print("\r" + " " * 60 + "\r" if TTY else "", end="")
        _say(f"   {end // 60:02d}:{end % 60:02d}  {use:5.2f}k {sun:5.2f}k {net_kw:+6.2f}k   " + " ".join(shown))
    board.set_load(VOLTS, 0.0)


def _report(optical: str, out_dir: Path, truth: dict | None, start: dict | None = None) -> None:
    _say("5. read over the optical port")
    with Client.open(optical).session(password="") as c:
        regs = readout.read_registers(c)
        events = readout.event_rows(c)
        rows = readout.read_profile(c)
    _say(f"   delivered {regs['delivered_wh'] / 1000:10.4f} kWh   received {regs['received_wh'] / 1000:10.4f} kWh"
         f"   net {regs['net_wh'] / 1000:+10.4f} kWh")  # fmt: skip
    if truth is not None:
        for key, name in (("delivered_wh", "delivered"), ("received_wh", "received")):
            true = truth[name]
            got = regs[key] - (start[key] if start else 0.0)
            err = (got - true) / true * 100 if true else 0.0
            _say(f"   {name:>9} today: meter {got / 1000:9.4f} kWh, simulated source {true / 1000:9.4f} kWh"
                 f" (error {err:+.3f} %)")  # fmt: skip
    for tier in regs.get("tiers", []):
        kw = (tier["max_demand_w"] or 0) / 1000
        _say(f"   tier {tier['tier']}: in {tier['delivered_wh'] / 1000:7.3f} kWh, out "
             f"{tier['received_wh'] / 1000:7.3f} kWh, max demand {kw:6.3f} kW")  # fmt: skip
    demand = regs.get("demand", {})
    if demand:
        _say(f"   maximum demand {demand.get('max_w', 0) / 1000:.3f} kW at {demand.get('max_time', '-')}")
    _say(f"   event log: {len(events)} entries; the last ones:")
    for e in events[-5:]:
        _say(f"     {e['time']}  {e['name']:<20} {e['detail']}")
    png = plot_profile(rows[-96:], out_dir / "load-profile.png", title=DAY.strftime("%Y-%m-%d"))
    _say(f"   load profile: {len(rows)} intervals; plot saved to {png.resolve()}")


DEMO_MASTER = "demo-master"  # the seal needs a master password (a blank one would not seal)


def _seal(optical: str, unseal_after: bool) -> bool:
    _say("6. seal the meter, then try to reprogram it")
    settings = program.validate({"display": {"scroll_s": 12}}, "demo")
    with Client.open(optical).session(password="") as c:
        c.write(program.MT2, pad_password(DEMO_MASTER), offset=40)
    _say(f"   master password set to {DEMO_MASTER!r}: a meter with a blank one will not seal")
    with Client.open(optical).session(password=DEMO_MASTER) as c:
        count = program.seal(c)
        _say(f"   sealed (seal count {count})")
        try:
            program.apply_settings(c, settings)
        except ServiceError as exc:
            refused = exc.name == "dlk"
            _say(f"   reprogramming refused: the meter answered {exc.name.upper()} (data locked) to the"
                 " configuration write; the seal holds")  # fmt: skip
        else:
            refused = False
            _say("   reprogramming was accepted: THE SEAL DID NOT HOLD")
        if unseal_after:
            program.unseal(c)
            c.write(program.MT2, pad_password(""), offset=40)
            _say("   unsealed again with the master password, and the master password blank again"
                 " (a bench meter is left as found)")  # fmt: skip
    return refused


def run_demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    out_dir = Path(args.out)
    if args.board != "sim":
        if not (args.console and args.optical):
            from host_tools.cli import UsageError

            raise UsageError("meterctl demo: a real board needs --console PORT and --optical PORT")
        _say(f"Open meter benchtop demo on a {args.board} board ({args.console}, probe on {args.optical})\n")
        _flash(args.console, args.optical, args.board)
        _program(args.optical, datetime.now().replace(microsecond=0))
        _report(args.optical, out_dir, None)
        ok = _seal(args.optical, unseal_after=True)
    else:
        from host_tools.sim import SimBoard

        _say("Open meter benchtop demo: the real firmware in MicroPython on the simulated board\n")
        with SimBoard(seed=args.seed, flash=False, speed=1.0) as board:
            _say(f"   console {board.console_port}, optical port {board.optical_port}")
            _flash(board.console_port, board.optical_port, "sim")
            _calibrate(board, board.optical_port)
            start = _program(board.optical_port, DAY)
            board.set_speed(0)
            before = board.true_energy_wh()
            _day(board)
            after = board.true_energy_wh()
            truth = {k: after[k] - before[k] for k in after}
            _report(board.optical_port, out_dir, truth, start)
            ok = _seal(board.optical_port, unseal_after=False)
    _say(f"\ndemo finished in {time.monotonic() - started:.1f} s of wall time")
    if not ok:
        print("meterctl: the sealed meter accepted a write", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK
