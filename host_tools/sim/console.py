"""The simulated board's USB console: the MicroPython VM behind a pseudo-terminal that
behaves like a board's, so mpremote and ampy work unchanged (no `resume` needed).

The firmware owns this console while it meters (firmware/console.py: the board's take()
switches ISIG off and tells the hardware), and answers it itself: the relay only
carries the bytes, and tells the hardware when it forwards some, so a firmware asleep in
virtual time wakes for them as it does for optical-port bytes (VirtualHardware asks
`input_waiting()` until the VM has read them). What follows is about MicroPython's own
REPL: a blank board's, an older firmware's, or the REPL after `m.stop()`.

The unix port differs from a board in three ways, and this relay evens them out:
- Ctrl-C is only a byte to a script the unix port runs from a raw terminal: the VM's
  pseudo-terminal is made its controlling terminal and mp_boot.py turns ISIG on, so the
  kernel turns Ctrl-C into SIGINT (KeyboardInterrupt) while code runs, and the REPL's
  own raw mode turns it back into a byte at a prompt, exactly as in a terminal.
- Ctrl-D (a soft reset) makes the unix port exit: the relay starts a new VM and prints
  "MPY: soft reboot", in raw REPL mode if the reset came from the raw REPL (boot only,
  as a board does), otherwise running main.py.
- A power cut kills the VM outright; power-on starts it again with main.py.
"""

from __future__ import annotations

import array
import fcntl
import os
import pty
import select
import signal
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Callable
from pathlib import Path

from host_tools.sim.ptys import Pty

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n>"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
FRIENDLY_PROMPT = b">>> "
TRACEBACK = b"Traceback (most recent call last):"
LOG_LIMIT = 256 * 1024
INPUT_FRESH_S = 0.5  # after forwarding bytes, look this long for them in the VM's terminal
BOOT_SCRIPT = Path(__file__).with_name("mp_boot.py")


def _take_controlling_tty() -> None:
    """In the child, before exec: its stdin pty becomes its controlling terminal, so the
    kernel can send it SIGINT for a Ctrl-C (only async-signal-safe work here)."""
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


def micropython_binary() -> Path:
    """The unix port installed in the same venv as this interpreter (make setup)."""
    exe = Path(sys.executable).parent / "micropython"
    if not exe.exists():
        raise FileNotFoundError(f"{exe} not found: run 'make setup' to install the MicroPython unix port")
    return exe


class Console:
    """Runs the VM for one simulated board and relays its console to `self.port.path`."""

    def __init__(self, fs_dir: Path, env: dict[str, str], heap_kb: int) -> None:
        self.fs_dir = fs_dir
        self.env = env
        self.heap_kb = heap_kb
        self.port = Pty()
        self.proc: subprocess.Popen[bytes] | None = None
        self._vm_fd: int | None = None
        self._lock = threading.RLock()
        self._booting_raw = False
        self._boot_buf = bytearray()
        self._sent_ctrl_a = False
        self._pending_input = bytearray()
        self.raw_mode = False
        self.powered = False
        self.log = bytearray()  # everything the VM printed (bounded)
        self.tracebacks: list[str] = []
        self.reboots = 0  # soft reboots (a VM restarted after "MPY: soft reboot")
        self.on_vm_gone: Callable[[], None] | None = None  # the hardware forgets that VM's requests
        self.on_input: Callable[[], None] | None = None  # bytes were forwarded to the VM
        self._slave_path: str | None = None
        self._input_until = 0.0  # monotonic time until which the VM's terminal is looked at
        self._input_seen = 0  # what input_waiting() last found
        self._tail = bytearray()
        self._stop = False
        self._thread = threading.Thread(target=self._relay, name="sim-console", daemon=True)
        self._thread.start()

    # ---- VM process -------------------------------------------------------------
    def _spawn(self, raw: bool) -> None:
        master, slave = pty.openpty()
        import tty

        tty.setraw(slave)
        args = [str(micropython_binary()), "-X", f"heapsize={self.heap_kb}K", "-i", str(BOOT_SCRIPT)]
        env = dict(os.environ)
        env.update(self.env)
        env["METER_SIM_FS"] = str(self.fs_dir)
        env["METER_SIM_MAIN"] = "0" if raw else "1"
        self.proc = subprocess.Popen(
            args,
            cwd=self.fs_dir,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            close_fds=True,
            start_new_session=True,
            preexec_fn=_take_controlling_tty,
        )
        self._slave_path = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(master, False)
        self._vm_fd = master
        self._booting_raw = raw
        self._boot_buf.clear()
        self._sent_ctrl_a = False

    def _kill(self) -> None:
        proc, fd = self.proc, self._vm_fd
        self.proc, self._vm_fd = None, None
        self._slave_path = None
        if proc is not None and proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc is not None:
            proc.wait(timeout=5)
        if fd is not None:
            os.close(fd)
        if proc is not None and self.on_vm_gone is not None:
            self.on_vm_gone()

    def power_on(self) -> None:
        with self._lock:
            self.powered = True
            self.raw_mode = False
            self._tail.clear()
            self._spawn(raw=False)

    def power_off(self) -> None:
        with self._lock:
            self.powered = False
            self._kill()

    def soft_reboot(self) -> None:
        """machine.soft_reset() in the firmware: "MPY: soft reboot", then a new VM runs main.py,
        as a board does; the board stays powered."""
        with self._lock:
            if not self.powered or self._stop:
                return
            self._kill()
            self.reboots += 1
            self._output(SOFT_REBOOT)
            self._tail.clear()
            self.raw_mode = False
            self._spawn(raw=False)

    def input_waiting(self) -> int:
        """Bytes forwarded to the VM that it has not read yet (its terminal's input queue),
        looked at only for a moment after a forward, or while some were waiting: the
        hardware thread asks this as a firmware that owns the console goes to sleep."""
        path = self._slave_path
        if path is None or (not self._input_seen and time.monotonic() > self._input_until):
            return 0
        try:
            fd = os.open(path, os.O_RDONLY | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError:
            return 0
        try:
            n = array.array("i", [0])
            fcntl.ioctl(fd, termios.FIONREAD, n, True)
        except OSError:
            n[0] = 0
        finally:
            os.close(fd)
        self._input_seen = n[0]
        return n[0]

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self.powered = False
            self._kill()
        self._thread.join(timeout=2)
        self.port.close()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def at_prompt(self) -> bool:
        """The console ends with a REPL prompt: MicroPython's, unless the firmware owns the
        console (VirtualHardware.console_owned), whose own REPL prompts the same way."""
        t = bytes(self._tail)
        return t.endswith(FRIENDLY_PROMPT) or (self.raw_mode and t.endswith(b">"))

    # ---- relay ---------------------------------------------------------------------
    def _relay(self) -> None:
        while not self._stop:
            fds = [self.port.master]
            vm_fd = self._vm_fd
            if vm_fd is not None:
                fds.append(vm_fd)
            try:
                ready, _, _ = select.select(fds, [], [], 0.2)
            except (OSError, ValueError):
                continue
            forwarded = False
            with self._lock:
                if self._stop:
                    return
                if self.port.master in ready:
                    forwarded = self._from_user(self.port.read())
                if vm_fd is not None and vm_fd == self._vm_fd:
                    if vm_fd in ready:
                        self._from_vm(vm_fd)
                    elif self.proc is not None and self.proc.poll() is not None:
                        self._from_vm(vm_fd)
            if forwarded and self.on_input is not None:
                self.on_input()  # outside the lock: the hardware thread takes its own

    def _from_user(self, data: bytes) -> bool:
        """Forward the user's bytes to the VM; True if some went."""
        if not data or not self.powered:
            return False  # an unpowered board hears nothing
        if self._booting_raw:
            self._pending_input += data
            return False
        self._input_until = time.monotonic() + INPUT_FRESH_S  # before: a full terminal waits for the VM
        self._to_vm(data)
        self._input_until = time.monotonic() + INPUT_FRESH_S
        return True

    def _to_vm(self, data: bytes) -> None:
        if self._vm_fd is None:
            return
        view = memoryview(data)
        while view:
            try:
                n = os.write(self._vm_fd, view)
                view = view[n:]
            except BlockingIOError:  # the VM's terminal is full: the VM reads it (woken meanwhile)
                self._input_until = time.monotonic() + INPUT_FRESH_S
                select.select([], [self._vm_fd], [], 0.05)
            except OSError:
                return

    def _from_vm(self, fd: int) -> None:
        try:
            data = os.read(fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            if self.proc is not None and self.proc.poll() is not None:
                self._vm_exited()
            return
        if self._booting_raw:
            self._boot_buf += data
            if not self._sent_ctrl_a and FRIENDLY_PROMPT in self._boot_buf:
                self._sent_ctrl_a = True
                self._to_vm(b"\x01")
            at = self._boot_buf.find(RAW_BANNER)
            if at >= 0:
                rest = bytes(self._boot_buf[at + len(RAW_BANNER) :])
                self._booting_raw = False
                self._output(RAW_BANNER + rest)
                pending, self._pending_input = bytes(self._pending_input), bytearray()
                if pending:
                    self._from_user(pending)
            return
        self._output(data)

    def _output(self, data: bytes) -> None:
        self.port.write(data)
        self.log += data
        if len(self.log) > LOG_LIMIT:
            del self.log[: len(self.log) - LOG_LIMIT]
        self._tail += data
        if len(self._tail) > 8192:
            del self._tail[:-4096]
        raw_at = self._tail.rfind(b"raw REPL; CTRL-B to exit")
        friendly_at = self._tail.rfind(FRIENDLY_PROMPT)
        if raw_at >= 0 or friendly_at >= 0:
            self.raw_mode = raw_at > friendly_at
        self._scan_traceback()

    def _scan_traceback(self) -> None:
        t = bytes(self._tail)
        at = t.rfind(TRACEBACK)
        if at < 0:
            return
        end = min((e for e in (t.find(FRIENDLY_PROMPT, at), t.find(b"\x04", at)) if e >= 0), default=-1)
        if end < 0:
            return
        banner = t.find(b"MicroPython ", at)  # the REPL banner that follows under -i
        if 0 <= banner < end:
            end = banner
        text = t[at:end].decode(errors="replace").replace("\r\n", "\n").strip()
        self.tracebacks.append(text)
        del self._tail[: end]

    def _vm_exited(self) -> None:
        """The unix port exits on a soft reset (or sys.exit): a board reboots."""
        raw = self.raw_mode
        self._kill()
        if not self.powered or self._stop:
            return
        self.reboots += 1
        self._output(SOFT_REBOOT)
        self._tail.clear()
        self._spawn(raw=raw)

    def text(self) -> str:
        return self.log.decode(errors="replace")

    def interrupt(self) -> None:
        """Ctrl-C as a person would type it."""
        with self._lock:
            forwarded = self._from_user(b"\x03")
        if forwarded and self.on_input is not None:
            self.on_input()
