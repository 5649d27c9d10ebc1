"""The simulated board: the same Board contract as boards/pico and boards/esp32, but
every bus reaches virtual hardware on the host through a Unix socket.

It runs in the MicroPython unix port, started by host_tools.sim.SimBoard, which sets
METER_SIM_SOCKET. The firmware cannot tell it from a real board:

    import board
    b = board.make()
    b.ade_cs(0); b.ade_spi.write_readinto(frame, frame); b.ade_cs(1)
    b.clock.wait_until(time.ticks_add(b.clock.ticks_ms(), 1000), wake)

The clock is virtual: it only moves when the host says so (a sleep, or the time a bus
transfer takes), so a simulated day runs in seconds and the same seed gives the same run.
No machine module is used here; hardware enters through the socket alone (machine.py
beside this file is the board's `machine`: reset() and soft_reset() over the same wire).

The USB console is the VM's stdin/stdout, a pseudo-terminal the host relays
(host_tools/sim/console.py): the same stdio.Stdio as a Pico's, but the unix port turns
Ctrl-C into an interrupt through the terminal's ISIG (kbd_intr(-1) would only give
SIGINT its default action, which kills the VM), so taking the console switches ISIG off,
and tells the host, which then wakes a sleeping firmware for console bytes as it does
for optical ones.
"""

import os
import socket
import termios
import time

import simwire as W
from micropython import const

import rtc
from stdio import Stdio

_OUT_SIZE = const(2048)
_IN_SIZE = const(1024)
_EPOCH_2000_IN_1970 = const(946684800)
_WIRE_TICKS_MASK = const((1 << 30) - 1)  # the reply header carries ticks modulo 2**30
_KEEP = object()  # Clock.wait_until without `silence`: the host keeps the deadline it was told
_ISIG = const(0x0001)  # termios c_lflag bit on Linux: Ctrl-C raises SIGINT
_live = None  # the board made last: machine.reset() goes over its link


class _Link:
    """One request/reply channel to the host; posted ops ride with the next call."""

    def __init__(self, path):
        self._path = path
        self._sock = None
        self._connect()
        self._out = bytearray(_OUT_SIZE)
        self._n = 0
        self._hdr = bytearray(W.REPLY_HEADER)
        self.inbuf = bytearray(_IN_SIZE)
        self.ms = 0
        self.us = 0
        self.rtc = 0
        self.flags = 0
        self.rx_waiting = 0
        self._dead = False  # the host closed this link: the board lost power or the MCU reset

    def _connect(self):
        if self._sock is not None:
            self._sock.close()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(b"\x01\x00" + self._path.encode() + b"\x00")  # struct sockaddr_un
        self._sock = sock
        self._dirty = False

    def begin(self, op, plen):
        """Reserve an op of plen payload bytes; return where its payload starts."""
        if plen + 6 > _OUT_SIZE:
            raise ValueError("sim op too large")
        n = self._n
        if op != W.OP_SYNC and n + 3 + plen > _OUT_SIZE - 3:  # always leave room for the SYNC that flushes
            self.call(W.OP_SYNC, 0)
            n = 0
        o = self._out
        o[n] = op
        o[n + 1] = plen & 0xFF
        o[n + 2] = plen >> 8
        self._n = n + 3 + plen
        return n + 3

    def put_u32(self, i, v):
        o = self._out
        o[i] = v & 0xFF
        o[i + 1] = (v >> 8) & 0xFF
        o[i + 2] = (v >> 16) & 0xFF
        o[i + 3] = (v >> 24) & 0xFF

    def put(self, i, data, n):
        self._out[i : i + n] = data[0:n] if n != len(data) else data

    def call(self, op, plen):
        """Queue op (whose payload the caller has written), send all, wait for the reply."""
        if op == W.OP_SYNC:
            self.begin(op, 0)
        if self._dead:
            raise OSError(5)  # never reconnect to hardware that reset us: this VM is on its way out
        if self._dirty:
            self._connect()  # a call was interrupted (Ctrl-C): its reply is lost, start afresh
        self._dirty = True
        self._sock.write(self._out, self._n)
        self._n = 0
        h = self._hdr
        if self._sock.readinto(h) != W.REPLY_HEADER:
            self._dead = True
            raise OSError(5)  # EIO: the host went away (the board lost power, the MCU reset)
        n = h[0] | h[1] << 8
        # The host sends the clock wrapped at 2**30, but the unix port's ticks period is
        # 2**62 (a 64-bit build): time.ticks_diff() would break at each wrap (ticks_us every
        # 1,074 s). Unwrapped here, the ticks stay small ints on this port and never wrap.
        ms = h[2] | h[3] << 8 | h[4] << 16 | h[5] << 24
        us = h[6] | h[7] << 8 | h[8] << 16 | h[9] << 24
        self.ms += (ms - self.ms) & _WIRE_TICKS_MASK
        self.us += (us - self.us) & _WIRE_TICKS_MASK
        self.rtc = h[10] | h[11] << 8 | h[12] << 16 | h[13] << 24
        self.flags = h[14]
        self.rx_waiting = h[15] | h[16] << 8
        if n:
            self._sock.readinto(self.inbuf, n)
        self._dirty = False
        return n


class Pin:
    """A GPIO: outputs are posted to the host; inputs read the levels of the last reply."""

    def __init__(self, link, pin_id, out, value=1, flag=0, invert=False):
        self._link = link
        self._id = pin_id
        self._out = out
        self._v = value
        self._flag = flag
        self._invert = invert
        if out:
            self._post(value)

    def _post(self, v):
        link = self._link
        n = link._n
        if n + 5 > _OUT_SIZE - 3:
            link.call(W.OP_SYNC, 0)
            n = 0
        o = link._out
        o[n] = W.OP_PIN
        o[n + 1] = 2
        o[n + 2] = 0
        o[n + 3] = self._id
        o[n + 4] = v
        link._n = n + 5

    def value(self, v=None):
        if v is None:
            if self._out:
                return self._v
            level = 1 if self._link.flags & self._flag else 0
            return level ^ 1 if self._invert else level
        v = 1 if v else 0
        if v != self._v:
            self._v = v
            self._post(v)
        return None

    def __call__(self, v=None):
        return self.value(v)

    def on(self):
        self.value(1)

    def off(self):
        self.value(0)


class SPI:
    """machine.SPI subset used by the ADE7953 driver; CS is a separate Pin, as on a board."""

    def __init__(self, link, bus_id=0):
        self._link = link
        self._bus = bus_id

    def write_readinto(self, wbuf, rbuf):
        n = len(wbuf)
        link = self._link
        i = link.begin(W.OP_SPI, n + 1)
        link._out[i] = self._bus
        link.put(i + 1, wbuf, n)
        link.call(W.OP_SPI, n + 1)
        if link.flags & W.FLAG_FAULT:
            raise RuntimeError("fault injected by SimBoard.inject_fault")
        src = link.inbuf
        for k in range(n):  # a copy loop, not a slice: no allocation per transfer
            rbuf[k] = src[k]

    def write(self, wbuf):
        n = len(wbuf)
        link = self._link
        i = link.begin(W.OP_SPI, n + 1)
        link._out[i] = self._bus
        link.put(i + 1, wbuf, n)
        link.call(W.OP_SPI, n + 1)
        if link.flags & W.FLAG_FAULT:
            raise RuntimeError("fault injected by SimBoard.inject_fault")

    def readinto(self, rbuf, write=0):
        n = len(rbuf)
        link = self._link
        i = link.begin(W.OP_SPI, n + 1)
        o = link._out
        o[i] = self._bus
        for k in range(n):
            o[i + 1 + k] = write
        link.call(W.OP_SPI, n + 1)
        src = link.inbuf
        for k in range(n):
            rbuf[k] = src[k]


class I2C:
    """machine.I2C subset: writeto, readfrom(_into), writeto_mem, readfrom_mem(_into), scan."""

    def __init__(self, link):
        self._link = link

    def _write(self, addr, data, n, stop, memaddr=-1, addrsize=16):
        link = self._link
        extra = 0 if memaddr < 0 else addrsize // 8
        i = link.begin(W.OP_I2C_WRITE, 2 + extra + n)
        o = link._out
        o[i] = addr
        o[i + 1] = 1 if stop else 0
        if extra == 2:
            o[i + 2] = (memaddr >> 8) & 0xFF
            o[i + 3] = memaddr & 0xFF
        elif extra == 1:
            o[i + 2] = memaddr & 0xFF
        if n:
            link.put(i + 2 + extra, data, n)
        link.call(W.OP_I2C_WRITE, 0)
        if link.inbuf[0] != W.I2C_STATUS_ACK:
            raise OSError(19)  # ENODEV: no ACK, as machine.I2C reports it

    def _read(self, addr, buf):
        n = len(buf)
        link = self._link
        i = link.begin(W.OP_I2C_READ, 3)
        o = link._out
        o[i] = addr
        o[i + 1] = n & 0xFF
        o[i + 2] = n >> 8
        link.call(W.OP_I2C_READ, 0)
        if link.inbuf[0] != W.I2C_STATUS_ACK:
            raise OSError(19)
        src = link.inbuf
        for k in range(n):  # a copy loop, not a slice: a board's I2C read allocates nothing
            buf[k] = src[k + 1]

    def writeto(self, addr, buf, stop=True):
        self._write(addr, buf, len(buf), stop)
        return len(buf)

    def readfrom_into(self, addr, buf, stop=True):
        self._read(addr, buf)

    def readfrom(self, addr, nbytes, stop=True):
        buf = bytearray(nbytes)
        self._read(addr, buf)
        return bytes(buf)

    def writeto_mem(self, addr, memaddr, buf, addrsize=8):
        self._write(addr, buf, len(buf), True, memaddr, addrsize)

    def readfrom_mem_into(self, addr, memaddr, buf, addrsize=8):
        self._write(addr, b"", 0, False, memaddr, addrsize)
        self._read(addr, buf)

    def readfrom_mem(self, addr, memaddr, nbytes, addrsize=8):
        buf = bytearray(nbytes)
        self.readfrom_mem_into(addr, memaddr, buf, addrsize)
        return bytes(buf)

    def scan(self):
        found = []
        for addr in range(0x08, 0x78):
            try:
                self._write(addr, b"", 0, True)
                found.append(addr)
            except OSError:
                pass
        return found


class UART:
    """The IR optical port: bytes from the host's pseudo-terminal, 8N1."""

    def __init__(self, link, baudrate=9600):
        self._link = link
        self.baudrate = baudrate

    def any(self):
        return self._link.rx_waiting

    def readinto(self, buf, nbytes=-1):
        if nbytes < 0:
            nbytes = len(buf)
        link = self._link
        if not link.rx_waiting or not nbytes:
            return None
        i = link.begin(W.OP_UART_READ, 2)
        link._out[i] = nbytes & 0xFF
        link._out[i + 1] = nbytes >> 8
        n = link.call(W.OP_UART_READ, 2)
        if not n:
            return None
        buf[0:n] = link.inbuf[0:n]
        return n

    def read(self, nbytes=256):
        buf = bytearray(nbytes)
        n = self.readinto(buf)
        return bytes(buf[:n]) if n else None

    def write(self, data):
        link = self._link
        total = len(data)
        done = 0
        while done < total:
            n = min(total - done, 1024)
            i = link.begin(W.OP_UART_WRITE, n)
            link._out[i : i + n] = data[done : done + n]
            done += n
        return total

    def flush(self):
        self._link.call(W.OP_SYNC, 0)

    def init(self, baudrate=9600, **_kw):
        self.baudrate = baudrate
        i = self._link.begin(W.OP_UART_BAUD, 4)
        self._link.put_u32(i, baudrate)


class Console(Stdio):
    """The USB console: the VM's stdin/stdout (a pseudo-terminal on the host)."""

    def __init__(self, link):
        super().__init__()
        self._link = link

    def take(self, on):
        attrs = termios.tcgetattr(0)
        attrs[3] = attrs[3] & ~_ISIG if on else attrs[3] | _ISIG
        termios.tcsetattr(0, termios.TCSANOW, attrs)
        i = self._link.begin(W.OP_CONSOLE, 1)
        self._link._out[i] = 1 if on else 0
        try:
            self._link.call(W.OP_SYNC, 0)  # the host knows before the next byte comes
        except OSError:
            pass  # the host is gone (a power cut): there is nobody to tell


class Clock:
    """Virtual ticks: the same methods as firmware/clock.py's Clock on a real board."""

    def __init__(self, link):
        self._link = link

    def ticks_ms(self):
        return self._link.ms

    def ticks_us(self):
        return self._link.us

    def wait_until(self, deadline_ms, wake=None, silence=_KEEP):
        """Sleep in virtual time; the host ends the sleep early on a new input event.

        With `silence` (c1218.Link.deadline(): when the optical port's earliest timer
        that runs on the client's silence fires, or None for none pending) the host is
        told that instant: the sleep also ends there, and virtual time does not reach it
        before a real client could have answered. Without the argument (a driver's short
        sleep, which does not run the port) the host keeps what it was last told."""
        link = self._link
        if wake is not None and wake():
            return
        ms = time.ticks_diff(deadline_ms, link.ms)
        if ms <= 0:
            link.call(W.OP_SYNC, 0)  # still flush posted ops and let bus time count
            return
        if silence is _KEEP:
            i = link.begin(W.OP_SLEEP, 4)
            link.put_u32(i, ms)
            link.call(W.OP_SLEEP, 4)
            return
        i = link.begin(W.OP_SLEEP, 8)
        link.put_u32(i, ms)
        if silence is None:
            link.put_u32(i + 4, W.SLEEP_NO_SILENCE)
        else:
            s = time.ticks_diff(silence, link.ms)
            link.put_u32(i + 4, s if s > 0 else 0)
        link.call(W.OP_SLEEP, 8)

    def sync(self):
        self._link.call(W.OP_SYNC, 0)


def _days_from_2000(y, m, d):
    """Days from 2000-01-01 to a civil date (UTC, no time zone: time.mktime would use the
    host's, and the RTC must not depend on where the simulator runs)."""
    if m <= 2:
        y -= 1
        m += 12
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * (m - 3) + 2) // 5 + d - 730426


class RTC:
    """machine.RTC look-alike over the MCU's RTC on the host (battery-backed or volatile)."""

    def __init__(self, link):
        self._link = link

    def seconds(self):
        return self._link.rtc

    def datetime(self, dt=None):
        if dt is None:
            t = time.gmtime(self._link.rtc + _EPOCH_2000_IN_1970)
            # machine.RTC order: year, month, day, weekday (Mon = 0), h, m, s, subseconds
            return (t[0], t[1], t[2], t[6], t[3], t[4], t[5], 0)
        secs = _days_from_2000(dt[0], dt[1], dt[2]) * 86400 + dt[4] * 3600 + dt[5] * 60 + dt[6]
        i = self._link.begin(W.OP_RTC_SET, 4)
        self._link.put_u32(i, secs)
        self._link.call(W.OP_SYNC, 0)
        return None


class Watchdog:
    """machine.WDT on the simulated board: the host resets the MCU when it is not fed for
    its timeout (virtual time, and wall time while the firmware runs without a bus call)."""

    def __init__(self, link, timeout_ms):
        self._link = link
        self._post(timeout_ms)

    def _post(self, v):
        i = self._link.begin(W.OP_WDT, 4)
        self._link.put_u32(i, v)

    def feed(self):
        self._post(W.WDT_FEED)

    def hold(self):
        """Keep it fed from now on (a board's timer callback does it): the REPL after m.stop()."""
        self._post(W.WDT_HOLD)
        self._link.call(W.OP_SYNC, 0)


class Board:
    """The simulated board's wiring: the same attribute names as every board.py."""

    name = "sim"
    eeprom_addr = 0x50
    eeprom_size = 32768
    eeprom_page = 64
    heap_budget_kb = 90
    v_ratio = W.V_RATIO
    i_ratio_milli = W.I_RATIO_MILLI

    def __init__(self, socket_path=None):
        path = socket_path or os.getenv("METER_SIM_SOCKET")
        if not path:
            raise OSError("METER_SIM_SOCKET is not set: start this board with host_tools.sim")
        link = _Link(path)
        self._link = link
        self.ade_spi = SPI(link)
        self.ade_cs = Pin(link, W.PIN_ADE_CS, True)
        self.ade_reset = Pin(link, W.PIN_ADE_RESET, True)
        self.ade_irq = Pin(link, W.PIN_ADE_IRQ, False, flag=W.FLAG_ADE_IRQ, invert=True)
        self.i2c = I2C(link)
        self.lcd_cs = Pin(link, W.PIN_LCD_CS, True)
        self.lcd_wr = Pin(link, W.PIN_LCD_WR, True)
        self.lcd_data = Pin(link, W.PIN_LCD_DATA, True)
        self.optical = UART(link)
        self.seal_plug = Pin(link, W.PIN_SEAL, False, flag=W.FLAG_SEAL_PLUG, invert=True)
        self.cf1 = Pin(link, W.PIN_CF1, False, flag=W.FLAG_CF1)
        self.clock = Clock(link)
        # the time-keeping RTC (SimBoard(rtc=...)): a chip on the I2C bus driven by the
        # firmware's own driver (firmware/rtc.py), or the MCU's RTC with or without a battery
        kind = os.getenv("METER_SIM_RTC") or "ds3231"
        if kind == "ds3231" or kind == "pcf8563":
            self.rtc = rtc.DS3231(self.i2c) if kind == "ds3231" else rtc.PCF8563(self.i2c)
            self.rtc_chip = kind
        else:
            self.rtc = RTC(link)
            self.rtc_chip = "mcu" if kind == "battery" else "none"
        self.rtc_battery_backed = self.rtc_chip != "none"
        self.console = Console(link)
        banner = b"sim"
        i = link.begin(W.OP_HELLO, len(banner))
        link.put(i, banner, len(banner))
        link.call(W.OP_HELLO, 0)
        self._cause = link.inbuf[0]
        global _live
        _live = self

    def watchdog(self, timeout_ms):
        """Arm the watchdog (as machine.WDT(timeout=...)): feed() it or the MCU resets."""
        return Watchdog(self._link, timeout_ms)

    def reset_cause(self):
        """"watchdog" if the last hardware reset was the watchdog's (machine.reset() on an
        RP2040 is one), else "power_on"; a soft reboot leaves it as it was."""
        return "watchdog" if self._cause == W.RESET_WATCHDOG else "power_on"

    def reset(self):
        """machine.reset(): the MCU restarts (main.py runs); the chips keep their power."""
        restart(self._link)

    def soft_reset(self):
        """machine.soft_reset(): the host starts a new VM, which prints "MPY: soft reboot" and
        runs main.py; the MCU's watchdog runs on, as a board's does through a soft reset."""
        restart(self._link, soft=True)

    def set_optical_baud(self, baud):
        self.optical.init(baudrate=baud)


def restart(link=None, soft=False):
    """Ask the host for a new VM: an MCU reset (machine.reset) or a soft reset. Never returns.
    Without a link: the board made last (machine.py's calls), or a link of its own."""
    if link is None:
        link = _live._link if _live is not None else _Link(os.getenv("METER_SIM_SOCKET") or "")
    if soft:
        link._out[link.begin(W.OP_RESET, 1)] = W.SOFT_RESET
    else:
        link.begin(W.OP_RESET, 0)
    try:
        link.call(W.OP_SYNC, 0)  # no reply comes: the host stops this VM
    except OSError:
        pass
    while True:
        time.sleep_ms(100)


def make():
    return Board()
