"""In-VM fakes of the meter's board for benchmarks and heap checks that run the real firmware
in a MicroPython VM without the simulated board's socket: an ADE7953 register file on SPI
(a fixed load), a 24LC256 on I2C, pins, a UART holding canned C12.18 packets, a virtual 1 s
poll clock and, on the same I2C, a DS3231's time registers driven by the firmware's own
driver (rtc.py), as the Pico and ESP32 boards have by default. MicroPython code:
tests/bench/cpu.py times the firmware on them, tests/vm32.py runs it on them in a 32-bit VM
with a board's heap.
"""

import gc  # noqa: F401  (cpu.py's script takes it from here)
import sys
import time

ticks_us = time.ticks_us
diff = time.ticks_diff

# ---- counters of what the fakes saw (bus bytes, calls) ----------------------------------
C = {"spi": 0, "spi_b": 0, "i2c": 0, "i2c_b": 0, "pin": 0, "uart": 0}


class Pin:
    def __init__(self, v=1, on_change=None):
        self._v = v
        self._cb = on_change

    def value(self, v=None):
        C["pin"] += 1
        if v is None:
            return self._v
        if self._cb is not None and v != self._v:
            self._cb(v)
        self._v = v

    def __call__(self, v=None):
        return self.value(v)


class CPin:
    # a pin whose writes cost what a machine.Pin's do: a lookup and a call into C, no Python frame
    def __init__(self):
        self.value = bool


class Ade:
    # register file of an ADE7953: writes kept and read back; energy reads a fixed count
    ENERGY = {0x21E: 12000, 0x21F: 0, 0x220: 3000, 0x221: 0, 0x222: 13000, 0x223: 0}
    LIVE = {0x21C: 4516003, 0x21A: 2000000, 0x21B: 0, 0x212: 1200000, 0x214: 300000,
            0x210: 1300000, 0x10E: 4474, 0x702: 0x80}

    def __init__(self, board):
        self.reg = {0x102: 0x8004}
        self.irq_flags = 0
        self.board = board

    def reset(self, level):
        if level == 0:
            self.reg = {0x102: 0x8004}
            self.irq_flags = 1 << 20
            self.board.ade_irq._v = 0

    def read(self, addr):
        if addr == 0x22E:
            v = self.irq_flags
            self.irq_flags = 0
            self.board.ade_irq._v = 1
            return v
        v = self.ENERGY.get(addr)
        if v is not None:
            return v
        v = self.LIVE.get(addr)
        if v is not None:
            return v
        return self.reg.get(addr, 0)


class SPI:
    def __init__(self, ade):
        self.ade = ade

    def write_readinto(self, w, r):
        n = len(w)
        C["spi"] += 1
        C["spi_b"] += n
        v = self.ade.read(w[0] << 8 | w[1])
        for i in range(n - 1, 2, -1):
            r[i] = v & 0xFF
            v >>= 8

    def write(self, w):
        n = len(w)
        C["spi"] += 1
        C["spi_b"] += n
        v = 0
        for i in range(3, n):
            v = v << 8 | w[i]
        self.ade.reg[w[0] << 8 | w[1]] = v


class RTC:
    # a DS3231 as its driver (the firmware's rtc.py) reads it: 2027-01-01 + the fake clock's
    # seconds in BCD, 24-hour mode, OSF clear; writes are taken and forgotten. Nothing is
    # allocated, and few new names are made (each is a qstr in the heap check's RAM).
    BASE = 852076800  # 2027-01-01 in seconds since 2000

    def __init__(self, clock):
        self._clock = clock
        self._ymd = [0, 0, 0]
        self.reg = bytearray(0x13)

    def read_into(self, n, buf):
        t = self.BASE + self._clock.ms // 1000
        days = t // 86400
        s = t - days * 86400
        tk = sys.modules["timekeeping"]  # the firmware's, imported by then (rtc.py imports it)
        g = self._ymd
        tk.date_into(days, g)
        r = self.reg
        r[0], r[1], r[2] = s % 60, s // 60 % 60, s // 3600
        r[3], r[4], r[5], r[6] = tk.weekday(days) + 1, g[2], g[1], g[0] - 2000
        for i in range(7):
            if i != 3:
                r[i] = (r[i] // 10) << 4 | r[i] % 10
        for i in range(len(buf)):
            buf[i] = r[(n + i) % 0x13]


class I2C:
    def __init__(self, mem=None, blank=True):
        # the 24LC256's cells: a bytearray here, or memory outside the VM's heap (vm32.py);
        # blank: erased (0xFF), else as given (a reboot's EEPROM)
        self.mem = bytearray(32768) if mem is None else mem
        if blank:
            for i in range(32768):
                self.mem[i] = 0xFF

    def writeto(self, addr, buf, stop=True):
        C["i2c"] += 1
        C["i2c_b"] += len(buf) + 1
        if addr != 0x50 and addr != 0x68:
            raise OSError(19)
        return len(buf)

    def writeto_mem(self, addr, mem, buf, addrsize=8):
        n = len(buf)
        C["i2c"] += 1
        C["i2c_b"] += n + 3
        if addr == 0x68:  # the DS3231
            return
        self.mem[mem : mem + n] = buf

    def readfrom_mem_into(self, addr, mem, buf, addrsize=8):
        n = len(buf)
        C["i2c"] += 1
        C["i2c_b"] += n + 5
        if addr == 0x68:  # the DS3231
            self.rtc.read_into(mem, buf)
            return
        m = self.mem
        for i in range(n):  # no slice: as machine.I2C's, a read allocates nothing
            buf[i] = m[mem + i]

    def readfrom_mem(self, addr, mem, n, addrsize=8):
        b = bytearray(n)
        self.readfrom_mem_into(addr, mem, b)
        return bytes(b)


class UART:
    # One request in, one response out: a board's own UART buffers are the port's (on the
    # ESP32 in the IDF's heap, not MicroPython's), so these stay small.
    def __init__(self):
        self.rx = bytearray(256)
        self.rx_n = 0
        self.rx_i = 0
        self.tx = bytearray(512)
        self.tx_n = 0

    def put(self, data):
        self.rx[0 : len(data)] = data
        self.rx_n = len(data)
        self.rx_i = 0

    def any(self):
        return self.rx_n - self.rx_i

    def readinto(self, buf, n=-1):
        C["uart"] += 1
        left = self.rx_n - self.rx_i
        if n < 0 or n > left:
            n = left
        if not n:
            return None
        i = self.rx_i
        buf[0:n] = memoryview(self.rx)[i : i + n]
        self.rx_i = i + n
        return n

    def write(self, data):
        C["uart"] += 1
        n = len(data)
        t = self.tx_n
        if t + n <= len(self.tx):
            self.tx[t : t + n] = data
        self.tx_n = t + n
        return n

    def flush(self):
        pass

    def init(self, **kw):
        pass


class Console(UART):
    # the USB console (firmware/stdio.py's contract); what console code prints goes to
    # sys.stdout, as on a board, and the raw REPL's frame to write()
    def __init__(self):
        super().__init__()
        self.rx = bytearray(64)
        self.tx = bytearray(64)

    def take(self, on):
        pass


class Clock:
    # the firmware's time: 1000 ms per poll, moved by the benchmark; ticks_us is real
    def __init__(self):
        self.ms = 0

    def ticks_ms(self):
        return self.ms

    def ticks_us(self):
        return ticks_us()

    def wait_until(self, deadline, wake=None, silence=None):  # silence (the port's timers): the benchmark moves time
        if wake is not None and wake():
            return
        if diff(deadline, self.ms) > 0:
            self.ms = deadline


class Board:
    name = "bench"
    eeprom_addr = 0x50
    eeprom_size = 32768
    eeprom_page = 64
    rtc_battery_backed = True
    heap_budget_kb = 210
    v_ratio = 1000
    i_ratio_milli = 707107

    def __init__(self, eeprom=None, blank=True):
        self.clock = Clock()
        self.ade = Ade(self)
        self.ade_irq = Pin(1)
        self.ade_cs = bool  # called as cs(0) / cs(1): a C call, as machine.Pin.__call__ is
        self.ade_reset = Pin(1, self.ade.reset)
        self.ade_spi = SPI(self.ade)
        self.i2c = I2C(eeprom, blank)
        self.i2c.rtc = RTC(self.clock)
        import rtc  # the firmware's driver: imported here, the firmware's share of the heap

        self.rtc = rtc.DS3231(self.i2c)
        self.lcd_cs = CPin()
        self.lcd_wr = CPin()
        self.lcd_data = CPin()
        self.optical = UART()
        self.console = Console()
        self.seal_plug = Pin(1)
        self.cf1 = Pin(1)

    def set_optical_baud(self, baud):
        pass
