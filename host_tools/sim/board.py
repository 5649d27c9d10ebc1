"""SimBoard: a whole simulated meter board for tests, the demo and `meterctl sim`.

    from host_tools.sim import SimBoard
    with SimBoard(seed=1) as board:            # boots firmware/main.py in MicroPython
        board.set_load(240, 10, pf=1.0)        # 2.4 kW delivered on channel A (Form 1S)
        # Form 2S: board.set_load(240, IA, channel="A"); board.set_load(240, IB, channel="B")
        board.run(3600)                        # one hour of virtual time, in well under 1 s
        print(board.lcd_text(), board.true_energy_wh())
        board.power_off(sag_ms=40)             # the line fails; 40 ms of hold-up from then
        board.power_on()

Tools reach it like hardware: `board.console_port` (MicroPython REPL, raw REPL,
Ctrl-C, Ctrl-D) and `board.optical_port` (the IR port) are pseudo-terminal paths.

Time: at speed 0 (the default) virtual time moves only inside run(), power_off() and
power_on(), so a run is deterministic for a given seed; the firmware still answers the
optical port meanwhile, its protocol timers stopped. At speed > 0 virtual time also
flows at that multiple of real time between calls (`meterctl sim --speed 1`). At any
speed virtual time never reaches the meter's next optical-port timeout before a real
client has been silent that long in real time (boards/sim/README.md, Time): a run()
over such a timer waits for it.
"""

from __future__ import annotations

import datetime as _dt
import json
import shutil
import tempfile
import time
from pathlib import Path

from host_tools.sim.ade7953 import NOISE_1S
from host_tools.sim.console import Console
from host_tools.sim.server import EPOCH_2000, RTC_KINDS, Server, VirtualHardware

DEFAULT_START = "2026-01-05T00:00:00"  # a Monday
# The heap the VM gets: as close to a Raspberry Pi Pico's as this VM allows, never kinder.
# The Pico (official MicroPython v1.28 rp2 image, GC heap 245,888 B) had 135,456 B free after
# booting this firmware from .mpy files as it was before its console and RTC drivers, the
# largest free block 30.6 KB (../shared/rp2); a 32-bit VM (tests/bench/heap32.py) puts
# today's firmware 12.4 KB higher, so about 122 KB free on the Pico (estimated). This VM is
# a 64-bit build (8-byte object slots, not 4) and, like the Pico with .mpy files, keeps the
# bytecode in its heap. Anything allocated later costs here at least the bytes it costs on
# the Pico (byte buffers the same, objects up to twice), so a VM with no more free bytes
# after boot than the Pico runs out first. 316 KB leaves 114.3 KB free after boot (94 % of
# the estimate, below the measured figure: tests/sim/test_simboard.py checks it;
# tests/bench/sim_speed.py measures it, boards/sim/README.md has the table). What a 32-bit
# board needs is measured on a 32-bit VM (tests/test_board_heap.py).
DEFAULT_HEAP_KB = 316
PICO_FREE_AFTER_BOOT = 135_456  # B, gc.mem_free() on the emulated Pico (../shared/rp2/README.md)
BOOT_SECONDS = 1.0  # virtual time power_on() gives the firmware to bring its chips up

# The simulated board's imperfections: an uncalibrated meter is visibly wrong and, without
# its no-load threshold, it would creep (see boards/sim/README.md).
SIM_ADE_OPTIONS = {
    "gain_error": {"V": 0.012, "IA": -0.018, "IB": 0.009},
    "phase_error_deg": {"A": 0.30, "B": -0.20},
    "offset_codes": {"A": 60.0, "B": 45.0},
    "noise_1s": NOISE_1S,  # 1.709 power codes, from the datasheet's 0.1 % at 3000:1 (ade7953.py)
}


class SimError(RuntimeError):
    """The simulated board could not do what was asked (with the console's last words)."""


class FirmwareCrashed(SimError):
    """The firmware stopped with an exception; the message is its traceback."""


def _rtc_seconds(start: str | _dt.datetime) -> int:
    when = start if isinstance(start, _dt.datetime) else _dt.datetime.fromisoformat(start)
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.UTC)
    return int(when.timestamp()) - EPOCH_2000


class SimBoard:
    """A meter board made of the real firmware in the MicroPython VM and virtual hardware."""

    def __init__(
        self,
        state_dir: str | Path | None = None,
        seed: int = 0,
        *,
        speed: float = 0.0,
        heap_kb: int = DEFAULT_HEAP_KB,
        flash: bool = True,
        compile: bool = True,
        rtc: str = "ds3231",
        start_time: str | _dt.datetime = DEFAULT_START,
        optical_pacing: bool = False,
        ideal: bool = False,
        stall_timeout: float = 20.0,
        boot: bool = True,
    ) -> None:
        if rtc not in RTC_KINDS:
            raise ValueError(f"rtc must be one of {', '.join(repr(k) for k in RTC_KINDS)}")
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.seed = seed
        self.speed = speed
        self.heap_kb = heap_kb
        self.flash = flash
        self.compile = compile  # flash .mpy, as `meterctl flash` does for a board
        # the board's time-keeping RTC (boards/sim/README.md): "ds3231" or "pcf8563", a chip on
        # the I2C bus with a backup cell; "volatile", a plain Pico's own RTC, lost at every
        # power-up; "battery", the MCU's own RTC kept by a battery
        self.rtc = rtc
        self.start_time = start_time
        self.optical_pacing = optical_pacing
        self.ade_options = {} if ideal else SIM_ADE_OPTIONS
        self.stall_timeout = stall_timeout
        self.boot = boot
        self._own_dir = state_dir is None
        self.state_dir = Path(state_dir) if state_dir is not None else None
        self._sock_dir: str | None = None
        self.hw: VirtualHardware | None = None
        self.server: Server | None = None
        self.console: Console | None = None
        self._tb_seen = 0

    # ---- lifecycle -----------------------------------------------------------------
    def __enter__(self) -> SimBoard:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> SimBoard:
        if self.state_dir is None:
            self.state_dir = Path(tempfile.mkdtemp(prefix="meter-sim-"))
        self.state_dir.mkdir(parents=True, exist_ok=True)
        fs = self.state_dir / "fs"
        fs.mkdir(exist_ok=True)
        if self.flash:
            from host_tools.flash import plan

            for old in fs.glob("*.*py"):
                old.unlink()
            for f in plan("sim", compile=self.compile):
                (fs / f.name).write_bytes(f.data)
        saved = self._load_state()
        self._sock_dir = tempfile.mkdtemp(prefix="msim")  # sun_path is short: keep it in /tmp
        sock = str(Path(self._sock_dir) / "hw.sock")
        try:
            self.hw = VirtualHardware(
                self.state_dir,
                seed=self.seed,
                rtc_start=saved.get("rtc_offset_s", _rtc_seconds(self.start_time)),
                rtc_battery=self.rtc != "volatile" and saved.get("rtc_battery", True),
                rtc=self.rtc,
                rtc_chip_state=saved.get("rtc_chip"),
                optical_pacing=self.optical_pacing,
                ade_options=self.ade_options,
            )
            self.server = Server(self.hw, sock)
            env = {"METER_SIM_SOCKET": sock, "METER_SIM_RTC": self.rtc}
            self.console = Console(fs, env, self.heap_kb)
            self.hw.on_cut = self._on_cut
            self.hw.on_mcu_reset = self._on_mcu_reset
            self.hw.on_soft_reset = self._on_soft_reset
            self.hw.console_waiting = self.console.input_waiting
            self.console.on_vm_gone = self.hw.vm_gone
            self.console.on_input = self.hw.console_input
            if self.boot:
                self.power_on()
            self.hw.set_speed(self.speed)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the VM and every thread; nothing is left running (also after a failure)."""
        if self.hw is not None:
            self._save_state()
            with self.hw.cv:
                self.hw.closed = True  # a firmware asleep in the hardware thread wakes and ends
                self.hw.cv.notify_all()
        if self.console is not None:
            self.console.close()
        if self.server is not None:
            self.server.close()
        if self.hw is not None:
            self.hw.close()
        if self._sock_dir is not None:
            shutil.rmtree(self._sock_dir, ignore_errors=True)
            self._sock_dir = None
        if self._own_dir and self.state_dir is not None:
            shutil.rmtree(self.state_dir, ignore_errors=True)
        self.console = self.server = self.hw = None

    def _load_state(self) -> dict:
        assert self.state_dir is not None
        path = self.state_dir / "board.json"
        if path.exists():
            return json.loads(path.read_text())
        return {}

    def _save_state(self) -> None:
        if self.state_dir is None or not self.state_dir.exists() or self.hw is None:
            return
        hw = self.hw
        with hw.cv:
            # the MCU's RTC (a battery-backed one keeps its time) and the RTC chip's registers
            chip = hw.rtc_chip_state()
            kept = hw.rtc_seconds()  # a board of another RTC kind from this state dir starts there
            state = {"rtc_offset_s": hw.mcu_rtc_seconds() if kept is None else kept, "rtc_battery": hw.rtc_battery}
            if chip is not None:
                state["rtc_chip"] = chip
                state["rtc_battery"] = chip["battery"]
        (self.state_dir / "board.json").write_text(json.dumps(state))

    # ---- ports ---------------------------------------------------------------------
    @property
    def optical_port(self) -> str:
        return self._hw().optical.path

    @property
    def console_port(self) -> str:
        return self._con().port.path

    def _hw(self) -> VirtualHardware:
        if self.hw is None:
            raise SimError("the board is not started")
        return self.hw

    def _con(self) -> Console:
        if self.console is None:
            raise SimError("the board is not started")
        return self.console

    # ---- the bench: source, seal plug, power ---------------------------------------
    def set_load(
        self,
        volts: float,
        amps: float,
        pf: float = 1.0,
        hz: float = 60.0,
        channel: str = "A",
        phase_deg: float | None = None,
        volts_an: float | None = None,
        volts_bn: float | None = None,
    ) -> None:
        """Apply a load. Negative amps or a negative pf make that channel's power
        negative: energy received (export); `phase_deg` (current lag, negative = lead)
        overrides pf. A 2 wire service (Form 1S) by default: volts across the wires, the
        current on channel A. Loading channel B makes it a 3 wire 120/240 V service (Form
        2S): volts across the two legs, A and B the legs' line currents, the legs at
        volts / 2 to neutral unless volts_an / volts_bn set them apart (host_tools/sim/source.py)."""
        legs = {"volts_an": volts_an, "volts_bn": volts_bn}
        self._hw().set_load(volts=volts, amps=amps, pf=pf, hz=hz, channel=channel, phase_deg=phase_deg, **legs)

    def set_seal_plug(self, inserted: bool) -> None:
        hw = self._hw()
        with hw.cv:
            hw.seal_inserted = bool(inserted)
            hw.cv.notify_all()

    def true_energy_wh(self) -> dict[str, float]:
        src = self._hw().source
        return {"delivered": src.delivered_wh, "received": src.received_wh}

    def lcd_text(self) -> str:
        return self._hw().lcd.text()

    @property
    def cf1_pulses(self) -> int:
        return self._hw().ade.cf1_pulses

    def set_rtc_battery(self, present: bool) -> None:
        """Fit or remove the backup cell of the board's RTC (the chip's; on rtc="battery" the
        MCU's). Without it, the next power cut stops the clock: the chip then powers up with
        its power-on time and its lost-time flag set (DS3231 OSF, PCF8563 VL)."""
        hw = self._hw()
        with hw.cv:
            hw.set_rtc_battery(bool(present))

    def rtc_seconds(self) -> int | None:
        """What the board's time-keeping RTC holds now, seconds since 2000 (None: a chip
        whose registers hold no date)."""
        hw = self._hw()
        with hw.cv:
            return hw.rtc_seconds()

    def virtual_time(self) -> float:
        """Seconds of virtual time since the board was made: the board's start time plus
        this is the true time (what a battery-backed RTC that kept time would read)."""
        return self._hw().vt_us / 1e6

    def power_off(
        self,
        sag_ms: float | None = None,
        during_write: bool = False,
        after_i2c_bytes: int | None = None,
        sag_at_write: int | None = None,
        sag_in: tuple[int, int] = (0, 0x10000),
        sag_at_read: int | None = None,
    ) -> None:
        """Cut the power now; or, with sag_ms=H, let the line fail now and the supply hold
        up H ms of virtual time from then: the ADE7953 raises its SAG warning by itself, if
        the firmware enabled it, once SAGCYC half cycles below SAGLVL have gone by (between
        SAGCYC - 1 and SAGCYC + 1 half cycles of the line frequency, depending on where in
        its cycle the line fails: host_tools/sim/ade7953.py, Sag), so H must cover that
        detection delay as well as the save; or, with during_write, cut in the middle of the
        next EEPROM write cycle; or, with after_i2c_bytes=n, right after the n-th byte
        (address bytes included) of the next EEPROM page write (n = its length: just after
        STOP, tearing the page). With sag_ms too, the cut comes at that byte or at the end
        of the hold-up, whichever is first. Without sag_ms, during_write and after_i2c_bytes
        return at once: the cut happens in a later run(). With sag_at_write=k and sag_ms=H:
        the warning lands as the write cycle of the k-th EEPROM page write from now starts
        (k=1: the next one; a record of several pages is several page writes; with
        sag_in=(lo, hi) only the page writes at addresses lo to hi - 1 count), the line
        having failed one worst-case detection delay D before (ADE7953.sag_delay_max_s());
        H still counts from that failure, so the cut comes H - D after the warning (the line
        carries its load up to the warning: that energy must be saved too); returns at
        once (it happens in a later run()). sag_at_read=k does the same as the k-th EEPROM
        read from now starts (a record's read-back, a page at a time; with sag_in, only the
        reads from addresses lo to hi - 1 count)."""
        hw = self._hw()
        with hw.cv:
            if not hw.powered:
                return
            if sag_at_write is not None:
                if sag_ms is None or sag_at_write < 1:
                    raise ValueError("sag_at_write needs sag_ms and counts from 1")
                hw.sag_on_write = (sag_at_write - 1, int(sag_ms * 1000), sag_in)
                return
            if sag_at_read is not None:
                if sag_ms is None or sag_at_read < 1:
                    raise ValueError("sag_at_read needs sag_ms and counts from 1")
                hw.sag_on_read = (sag_at_read - 1, int(sag_ms * 1000), sag_in)
                return
            if after_i2c_bytes is not None:
                hw.cut_after_i2c_bytes = after_i2c_bytes
                hw.cv.notify_all()
                if sag_ms is None:
                    return
            if during_write:
                hw.cut_on_write = True
                hw.cv.notify_all()
                return
            if sag_ms is None:
                hw.cut()
                return
            hw.sag(int(sag_ms * 1000))  # the line is gone; the supply holds up a while
            hw.cv.notify_all()
        self._wait(lambda: not hw.powered, what="the power cut after the hold-up")

    def power_on(self, boot_seconds: float = BOOT_SECONDS) -> None:
        """Power up: the chips reset, the firmware starts from what the EEPROM holds and
        gets `boot_seconds` of virtual time to come up."""
        hw, con = self._hw(), self._con()
        with hw.cv:
            if hw.powered:
                return
            hellos = hw.hello_count
            hw.power_on()
            self._tb_seen = len(con.tracebacks)
        con.power_on()
        if not (con.fs_dir / "main.py").exists():
            return  # a blank board (MicroPython but no firmware yet) waits at its REPL
        self._wait(lambda: hw.hello_count > hellos, what="the firmware to start")
        if boot_seconds:
            self.run(boot_seconds)

    def _on_soft_reset(self) -> None:
        """machine.soft_reset(): "MPY: soft reboot", a new VM runs main.py; the chips powered."""
        if self.console is not None:
            self.console.soft_reboot()

    def _on_cut(self) -> None:
        if self.console is not None:
            self.console.power_off()
        if self.server is not None:
            self.server.drop()

    def _on_mcu_reset(self) -> None:
        """The MCU reset (its watchdog, machine.reset()): a new VM runs main.py; the
        metering chip, the EEPROM, the RTC chip and the line never lost power."""
        con = self.console
        if con is None:
            return
        con.power_off()
        if self.hw is not None and self.hw.powered:
            con.power_on()

    # ---- faults --------------------------------------------------------------------
    def inject_fault(self, kind: str = "poll") -> None:
        """A test hook: "poll" makes the firmware's next SPI transfer (a metering poll's
        first chip read) raise RuntimeError in the VM; "hang" makes that transfer never
        return, as a bus stuck low would, until the watchdog resets the MCU."""
        if kind not in ("poll", "hang"):
            raise ValueError("kind must be 'poll' or 'hang'")
        hw = self._hw()
        with hw.cv:
            hw.inject = kind

    @property
    def mcu_resets(self) -> list[tuple[float, str]]:
        """Every MCU reset so far: (virtual seconds, "watchdog" or "reset")."""
        return list(self._hw().mcu_resets)

    # ---- time ----------------------------------------------------------------------
    def set_speed(self, speed: float) -> None:
        """Virtual seconds per real second between run() calls (0: frozen, the default)."""
        if speed < 0:
            raise ValueError("speed must be >= 0")
        self.speed = speed
        self._hw().set_speed(speed)

    def run(self, seconds: float) -> None:
        """Advance virtual time by `seconds` as fast as the firmware allows, and no faster
        than a client on the optical port: past one of the meter's timeouts of the
        client's silence only once the client has been silent that long in real time."""
        hw = self._hw()
        if hw.powered:
            # Count from where the firmware sleeps, not from wherever its bus transfers have
            # taken the clock at this wall-clock instant: that keeps a run deterministic.
            self._wait(lambda: not hw.powered or hw.sleeping, what="the firmware to sleep")
        with hw.cv:
            target = hw.vt_us + int(round(seconds * 1e6))
            if not hw.powered:
                hw.advance_to(target)  # an outage: nothing runs, nothing flows
                hw.run_target_us = max(hw.run_target_us, target)
                return
            hw.run_target_us = max(hw.run_target_us, target)
            hw.cv.notify_all()
        self._wait(lambda: not hw.powered or (hw.vt_us >= target and hw.sleeping), what=f"run({seconds})")
        with hw.cv:
            if not hw.powered and hw.vt_us < target:
                hw.advance_to(target)
            if self.speed > 0:
                hw.set_speed(self.speed)

    def _wait(self, done, what: str) -> None:
        """Wait for done() with the firmware alive and making progress, or raise."""
        hw, con = self._hw(), self._con()
        last_vt, last_ops, last_change = hw.vt_us, hw.ops, time.monotonic()
        with hw.cv:
            while not done():
                self._check_alive()
                hw.cv.wait(0.1)  # the hardware thread notifies on every sleep and power change
                if hw.vt_us != last_vt or hw.ops != last_ops or hw.held:  # held: for a client's time
                    last_vt, last_ops, last_change = hw.vt_us, hw.ops, time.monotonic()
                elif time.monotonic() - last_change > self.stall_timeout:
                    raise SimError(
                        f"the simulated board made no progress for {self.stall_timeout:.0f} s "
                        f"waiting for {what}; console:\n{con.text()[-2000:]}"
                    )

    def _check_alive(self) -> None:
        hw, con = self._hw(), self._con()
        if self.server is not None and self.server.errors:
            raise SimError(f"sim protocol error: {self.server.errors[-1]}")
        if not hw.powered:
            return
        if not con.at_prompt or hw.console_owned:  # the firmware's own prompt: it runs
            return
        if len(con.tracebacks) > self._tb_seen and not con.tracebacks[-1].endswith("KeyboardInterrupt:"):
            raise FirmwareCrashed(con.tracebacks[-1])
        raise SimError(f"the firmware is not running (the VM is at its REPL); console:\n{con.text()[-2000:]}")

    def firmware_pid(self) -> int | None:
        return self._con().pid

    def ade_violations(self) -> list[str]:
        return list(self._hw().ade.violations)
