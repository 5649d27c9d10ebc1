"""MicroPython's REPL protocols on the console of a running meter (console.py feeds it).

    r = repl.Repl(console)
    pos = r.feed(buf, pos, end)   # takes bytes; returns after a command ran (or at end)

The raw REPL is the one shared/runtime/pyexec.c implements, byte for byte where a tool
looks: Ctrl-A answers "raw REPL; CTRL-B to exit\\r\\n>"; the code comes until Ctrl-D,
which answers "OK", then the code's output, "\\x04", the traceback if any, "\\x04" and
">". Ctrl-D with nothing before it is a soft reset: "OK\\r\\n", "MPY: soft reboot\\r\\n"
and the raw banner again, as a board answers, but the meter keeps running: only the
console's globals are reset. Raw-paste ("\\x05A\\x01") answers "R\\x00" (not supported:
mpremote falls back to the plain raw REPL, as pyboard.py and ampy always use). Ctrl-B
goes to the friendly REPL, Ctrl-C clears the code received so far.

The friendly REPL is small: Ctrl-C gives a ">>> " prompt and a one-line hint; a line is
evaluated (its value printed) or executed; a line ending in ":" (or with a bracket left
open) continues with "... " until a blank line; backspace edits, escape sequences
(arrow keys) are ignored; Ctrl-D at an empty prompt reboots the meter (m.reboot(): a real
soft reboot, registers saved); `m.stop()` stops metering and gives MicroPython's own REPL
the console.

Code runs in main.py's globals (where `m` is) with Ctrl-C enabled (board.console
.take(False)), so Ctrl-C interrupts it; the KeyboardInterrupt is printed as a board
prints it and the meter goes on. SystemExit (sys.exit()) is a soft reset, as on a board.
The watchdog is fed as a command starts: one that runs longer than its timeout without
ending has the MCU reset, as on a board.
"""

import gc
import io
import sys

from micropython import const

_IDLE = const(0)  # the meter meters; only Ctrl-C (or Ctrl-A) opens a REPL
_FRIENDLY = const(1)
_RAW = const(2)
_CTRL_A = const(1)
_CTRL_B = const(2)
_CTRL_C = const(3)
_CTRL_D = const(4)
_CTRL_E = const(5)
_BS = const(8)
_LF = const(10)
_CR = const(13)
_ESC = const(27)
_DEL = const(127)
_MORE_BLOCK = const(1)  # a compound statement: more lines until a blank one
_MORE_OPEN = const(2)  # a bracket, a triple quote or a backslash left open

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
SOFT_REBOOT = b"MPY: soft reboot\r\n"
HINT = b"meter running: m is the meter; m.stop() stops it for the REPL, Ctrl-D reboots, Ctrl-A raw REPL\r\n"
PROMPT = b">>> "
MORE = b"... "


def _open(text):
    """True if text leaves a bracket, a triple-quoted string or a backslash open."""
    depth = 0
    quote = None
    i = 0
    n = len(text)
    while i < n:
        ch = text[i]
        if quote is not None:
            if ch == "\\":
                i += 1
            elif text.startswith(quote, i):
                i += len(quote) - 1
                quote = None
            elif ch == "\n" and len(quote) == 1:
                quote = None
        elif ch == "#":
            while i < n and text[i] != "\n":
                i += 1
        elif ch in "\"'":
            quote = ch * 3 if text.startswith(ch * 3, i) else ch
            i += len(quote) - 1
        elif ch in "([{":
            depth += 1
        elif ch in ")]}":
            depth -= 1
        i += 1
    return depth > 0 or (quote is not None and len(quote) == 3) or text.endswith("\\")


def _print_exception(exc):
    """The traceback as a board's REPL prints it: from the console's code down, without
    the frame of _run that called it."""
    buf = io.StringIO()
    sys.print_exception(exc, buf)
    lines = buf.getvalue().split("\n")
    sys.stdout.write("\n".join(line for line in lines if not line.startswith('  File "repl.py"')))


class Repl:
    def __init__(self, console):
        self._c = console
        self._port = console.port
        self.mode = _IDLE
        self.line = bytearray()  # the raw REPL's code, or the friendly REPL's input line
        self.text = ""  # a friendly statement's lines before this one
        self.more = 0
        self._esc = 0
        self._cr = False

    def _w(self, data):
        self._port.write(data)

    def feed(self, buf, pos, end):
        """Take buf[pos:end] byte by byte; stop after a command ran. Returns where it stopped."""
        while pos < end:
            c = buf[pos]
            pos += 1
            if self.mode == _RAW:
                ran = self._raw(c)
            elif self.mode == _FRIENDLY:
                ran = self._friendly(c)
            else:
                ran = self._idle(c)
            if ran or self._c.released:
                break
        return pos

    # ---- no REPL open: the meter owns the console ------------------------------------
    def _idle(self, c):
        if c == _CTRL_C:
            self._to_friendly(b"\r\n")
        elif c == _CTRL_A:
            self._to_raw()
        return False  # anything else a board would leave unread while main.py runs

    # ---- raw REPL ----------------------------------------------------------------------
    def _to_raw(self):
        self.mode = _RAW
        self.line = bytearray()
        self._w(RAW_BANNER + b">")

    def _raw(self, c):
        if c == _CTRL_A:
            line = self.line
            self.line = bytearray()
            if len(line) == 2 and line[0] == _CTRL_E:
                self._w(b"R\x00")  # raw-paste understood, not supported: the tool sends plain raw
            else:
                self._w(RAW_BANNER + b">")
        elif c == _CTRL_B:
            self._to_friendly(b"\r\n")
        elif c == _CTRL_C:
            self.line = bytearray()
        elif c == _CTRL_D:
            code = self.line
            self.line = bytearray()
            self._w(b"OK")
            if not code:
                self._w(b"\r\n")
                self._soft_reset()
                return True
            self._run(code, "exec", True)
            return True
        else:
            self.line.append(c)
        return False

    def _soft_reset(self):
        self._c.soft_reset()
        gc.collect()
        self._w(SOFT_REBOOT + RAW_BANNER + b">")

    # ---- friendly REPL -----------------------------------------------------------------
    def _to_friendly(self, lead):
        self.mode = _FRIENDLY
        self.line = bytearray()
        self.text = ""
        self.more = 0
        self._w(lead + HINT + PROMPT)

    def _friendly(self, c):
        if self._esc:  # an escape sequence (arrow keys): ESC [ ... final byte
            self._esc = 2 if c == 0x5B and self._esc == 1 else 0 if 0x40 <= c <= 0x7E else self._esc
            return False
        cr, self._cr = self._cr, c == _CR
        if c == _ESC:
            self._esc = 1
        elif c == _CR or (c == _LF and not cr):
            self._w(b"\r\n")
            return self._enter()
        elif c == _LF:
            pass  # the LF of a CR LF
        elif c == _CTRL_A:
            self._w(b"\r\n")
            self._to_raw()
        elif c == _CTRL_B:
            self._to_friendly(b"\r\n")
        elif c == _CTRL_C:
            self.line = bytearray()
            self.text = ""
            self.more = 0
            self._w(b"\r\n" + PROMPT)
        elif c == _CTRL_D:
            if self.more:
                return self._statement()
            if not self.line:
                self._w(b"\r\n")
                self._c.meter.reboot()  # registers saved; the board restarts main.py
        elif c == _BS or c == _DEL:
            if self.line:
                self.line = self.line[:-1]
                self._w(b"\b \b")
        elif c >= 0x20:
            self.line.append(c)
            self._w(bytes((c,)))
        return False

    def _enter(self):
        """A line is complete: run it, or wait for the rest of the statement."""
        try:
            line = bytes(self.line).decode()
        except UnicodeError:
            line = "?"  # not UTF-8: a syntax error, as the REPL would say
        self.line = bytearray()
        if self.more:
            if not line.strip() and self.more == _MORE_BLOCK:
                return self._statement()
            self.text += "\n" + line
            if self.more == _MORE_OPEN and not _open(self.text):
                if self.text.rstrip().endswith(":"):
                    self.more = _MORE_BLOCK
                else:
                    return self._statement()
            self._w(MORE)
            return False
        if not line.strip():
            self._w(PROMPT)
            return False
        self.text = line
        if _open(line):
            self.more = _MORE_OPEN
        elif line.rstrip().endswith(":"):
            self.more = _MORE_BLOCK
        else:
            return self._statement()
        self._w(MORE)
        return False

    def _statement(self):
        text = self.text
        self.text = ""
        self.more = 0
        self._run(text, "single", False)
        if not self._c.released and self.mode == _FRIENDLY:
            self._w(PROMPT)
        return True

    # ---- running code ------------------------------------------------------------------
    def _run(self, source, mode, raw):
        """Compile and run source in the console's globals, Ctrl-C enabled, as pyexec.c
        does: in the raw REPL the output ends with 0x04, then the traceback, then 0x04."""
        c = self._c
        port = self._port
        error = None
        leave = False
        try:
            ns = c.namespace()
            if not isinstance(source, str):
                source = bytes(source).decode()
            wdt = c.meter.wdt
            if wdt is not None:
                wdt.feed()  # the code gets the watchdog's whole timeout; longer, and the MCU resets
            port.take(False)
            try:
                exec(compile(source, "<stdin>", mode), ns)
            finally:
                self._retake()
        except SystemExit:
            leave = True
        except BaseException as exc:  # noqa: BLE001 - KeyboardInterrupt too: printed, the meter goes on
            error = exc
        self._retake()
        if raw:
            self._w(b"\x04")
        if error is not None:
            _print_exception(error)
        del error
        if raw:
            self._w(b"\x04")
        gc.collect()
        if c.released:
            return  # m.stop(): MicroPython's REPL speaks next
        if leave:
            if raw:
                self._soft_reset()
            else:
                c.meter.reboot()
        elif raw:
            self._w(b">")

    def _retake(self):
        """The meter takes the console back (unless m.stop() gave it away). A Ctrl-C that
        came as the code ended is raised in here (the loop below is a backward jump, where
        the VM raises a pending KeyboardInterrupt) and dropped: it came too late."""
        while not self._c.released:
            try:
                self._c.port.take(True)
                n = 0
                while n < 2:
                    n += 1
                return
            except KeyboardInterrupt:
                pass
