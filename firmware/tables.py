"""ANSI C12.19 tables and procedures of the optical port: each layout declared once.

    import tables as T
    e = T.find(23)                           # (number, access) of ST23, or None
    n = T.build(m, svc, 23, buf)             # a small table, whole, into buf
    T.pack(buf, 0, T.ST1, values)            # a flat layout; the host parses with the same bytes
    code = T.write(m, svc, 5, off, buf, s, n)    # a write the session may make
    code = T.procedure(m, svc, buf, s, n)        # a write to ST7

psem.py imports this module at the end of the meter's boot (it is the largest part of
the port, and a failure to find it room must not stop the meter from metering). To keep
it small the integer constants are module-private (`_NAME = const(...)` takes no RAM on a
board); the host tools load this file with CPython (host_tools/c1218.py), where they are
plain attributes, and publish them without the underscore (T.MASTER, T.PROC_SEAL, ...).
Nothing at import time needs more than micropython.const; firmware modules are imported
inside the functions.

Conventions (ST0): little-endian integers, ISO 646 characters, TM_FORMAT 2 (UINT8 date
and time fields, years since 2000), offset-count access, NI_FORMAT1 INT48 (summations
in Wh), NI_FORMAT2 INT32 (demands in W). A flat layout is bytes of `NAME:size` fields
separated by spaces: `:4` an unsigned integer of 4 bytes, `:-2` a signed one, `:c16`
16 characters (or raw bytes) padded with spaces.

Small tables are built whole (the response is a snapshot: a value cannot tear between
packets); the BIG ones (TOU calendar, load profile, event log, configuration) are read a piece at a
time for each packet.

What the rest of the meter provides (each optional, found with getattr):
- meter.clock_time (seconds since 2000), meter.set_time(t), meter.demand_reset() (False
  inside the reset lock-out): billing.py; without them, the RTC and no demand.
- meter.demand: resets, maximum(tier) -> (watts, seconds since 2000), tier -1 the total;
  cumulative_w, tier_cumulative_w[tier] (cumulative demand, W); clear().
- meter.tou: nbr_tiers, tier_wh(tier) -> (delivered Wh, received Wh), current_tier,
  season, dims() -> (seasons, special schedules, tier switches, non-recurring dates,
  recurring dates), calendar_size(), calendar_into(off, n, buf, boff) -> ST54 bytes,
  time_zone_min (ST53; no DST); clear().
- meter.load_profile: dims() -> (blocks, intervals per block, channels, interval min),
  status() -> the six ST63 values, read_into(off, n, buf, boff) -> ST64 bytes; clear().
- meter.events: record(code, data), capacity, count(), last_seq, entry(i) -> (seconds
  since 2000, sequence, user id, event code, argument bytes), i = 0 the oldest.
- meter.cal_step: None, or the calibration step the meter's loop is to run (meter.py runs
  it and calls calibration_done); without it the calibration procedure is refused.

The calibration procedure (MFG 2) takes longer than a response may: it answers 1 (accepted,
not completed) with CAL_PROGRESS, the meter's loop runs the step, and ST8 then holds the
final result (0 with CAL_RESPONSE; 3 a result the chip cannot take or no energy where the
load should give some; 4 the load not seen in time, or the chip reset: try again). While a
step runs, writes (procedures and configuration) are answered BSY.
"""

try:
    from micropython import const
except ImportError:  # CPython (the host tools)

    def const(x):  # type: ignore[misc]
        return x


# access levels: the Security service's password decides; Logon alone is anonymous
_ANONYMOUS = const(0)
_READER = const(1)
_PROGRAMMER = const(2)
_MASTER = const(3)
_NEVER = const(4)
_MFG = const(0x800)  # manufacturer tables and procedures: TBL_PROC_NBR bit 11

# procedures (ST7 / ST8): numbers, ST8 result codes, when the seal allows them
_PROC_CLEAR_DATA = const(3)
_PROC_CLEAR_STD_STATUS = const(7)
_PROC_CLEAR_MFG_STATUS = const(8)
_PROC_REMOTE_RESET = const(9)
_PROC_SET_TIME = const(10)
_SET_QUAL = const(4)  # procedure 10 SET_MASK bit 2: TIME_DATE_QUAL is given
_QUAL_DST = const(0x08)  # TIME_DATE_QUAL DST_FLAG: daylight saving time in force
_QUAL_DST_APPLIED = const(0x40)  # DST_APPLIED_FLAG: the time is local wall time, DST included
_PROC_SEAL = const(0x800)  # MFG + 0
_PROC_UNSEAL = const(0x801)  # MFG + 1
_PROC_CALIBRATE = const(0x802)  # MFG + 2: one calibration step (CAL_PARAMS)
_PROC_DONE = const(0)
_PROC_ACCEPTED = const(1)
_PROC_INVALID = const(2)
_PROC_CONFLICT = const(3)
_PROC_TIMING = const(4)
_PROC_UNKNOWN = const(6)
_SEALED_OK = const(1)  # allowed on a software-sealed meter
_PLUG_OK = const(2)  # allowed with the seal plug in
_DEMAND_RESET_ONLY = const(4)  # allowed sealed or plugged when it only resets demand

# MT0 SEAL_FLAGS and ST3 ED_MFG_STATUS (seal.py sets them)
_SEAL_SEALED = const(1)
_SEAL_PLUG = const(2)
_SEAL_LOCKED_OUT = const(4)
_SEAL_FW_CHANGED = const(8)
_SEAL_CONFIG_CHANGED = const(16)

# ST23 (C12.19 CURRENT_REG_DATA_TBL) as ST21 declares it: REG_FUNC1 flags, field sizes
_SEASON_INFO_FIELD_FLAG = const(1)  # REG_FUNC1: ST25/ST26 entries carry SEASON
_DATE_TIME_FIELD_FLAG = const(2)  # END_DATE_TIME in ST25/ST26, EVENT_TIME in each DEMANDS_RCD
_DEMAND_RESET_CTR_FLAG = const(0x04)  # NBR_DEMAND_RESETS first
_CUM_DEMAND_FLAG = const(0x10)  # CUM_DEMAND in each DEMANDS_RCD
_CONT_CUM_DEMAND_FLAG = const(0x20)  # CONT_CUM_DEMAND
_REG_FUNC1 = const(
    _SEASON_INFO_FIELD_FLAG | _DATE_TIME_FIELD_FLAG | _DEMAND_RESET_CTR_FLAG | _CUM_DEMAND_FLAG | _CONT_CUM_DEMAND_FLAG
)
_NBR_SUMMATIONS = const(3)
_NBR_DEMANDS = const(1)
_NBR_OCCUR = const(1)
_NI_FMAT1 = const(6)  # ST0 NI_FORMAT1 INT48: summations, CUM_DEMAND, CONT_CUM_DEMAND
_NI_FMAT2 = const(4)  # ST0 NI_FORMAT2 INT32: DEMAND
_STIME_DATE = const(5)  # TM_FORMAT 2: YY MM DD hh mm
_DEMANDS_RCD = const(_STIME_DATE + 2 * _NI_FMAT1 + _NI_FMAT2)  # EVENT_TIME, CUM_DEMAND, CONT_CUM_DEMAND, DEMAND
_DATA_BLK = const(_NBR_SUMMATIONS * _NI_FMAT1 + _NBR_DEMANDS * _DEMANDS_RCD)  # no COINCIDENTS
_SCRATCH = const(253)  # the most a table built whole may take (psem builds at its buffer + 3)
_PASSWORD = const(20)  # MT2: the passwords of READER, PROGRAMMER, MASTER, 20 bytes each
_NBR_TIERS = const(4)  # served (as zeros) without meter.tou
_LP_BLOCKS = const(8)  # load-profile dimensions without meter.load_profile
_LP_CHANNELS = const(2)
_NBR_STD_EVENTS = const(6)  # ST72 bitmap bytes: standard events 0..47
_NBR_MFG_EVENTS = const(3)  # manufacturer events 0..23
_EVENT_DATA_LENGTH = const(4)
_EV_HEADER = const(11)
_LIST_OVERFLOW = const(2)  # ST63 and ST76 FLAGS: OVERFLOW_FLAG, LIST_TYPE_FLAG (circular)
_LIST_CIRCULAR = const(4)
# ST21 REG_FUNC2 bits (C12.19), and the self-reads ST26 keeps (selfread.py)
_SELF_READ_INHIBIT_OVERFLOW_FLAG = const(1)
_SELF_READ_SEQ_NBR_FLAG = const(2)
_DAILY_SELF_READ_FLAG = const(4)
_WEEKLY_SELF_READ_FLAG = const(8)
_SELF_READ_DEMAND_RESET = const(0x10)  # bits 4-5 = 1: a self read with every demand reset
NBR_SELF_READS = const(4)  # public: selfread.py reads it
_EV_ENTRY = const(16)  # EVENT_ENTRY: LTIME_DATE, sequence, user, code, 4 argument bytes
_OK = const(0)
_ERR = const(1)
_ISC = const(3)
_IAR = const(5)
_BSY = const(6)
_DLK = const(8)

# the calibration procedure's parameter ranges (CAL_PARAMS) and the wait for its load
_CAL_PARAMS_LEN = const(12)  # CAL_PARAMS
_CAL_VOLTS_MIN_MV = const(1000)
_CAL_VOLTS_MAX_MV = const(500000)
_CAL_AMPS_MAX_MA = const(200000)
_CAL_SECONDS_MAX = const(3600)
_CAL_PF_GAIN = const(990)  # PF x 1000 from here up: the gain step; below: the phase step
_CAL_WAIT_S = const(30)  # the step waits this long (board time) for its load before result 4
_CAL_OFFSETS = const(0)  # CAL_RESPONSE STEP
_CAL_GAIN = const(1)
_CAL_PHASE = const(2)

# ---- flat layouts (the firmware packs and the host parses with these) ---------------
# ST0, then STD_TBLS_USED, MFG_TBLS_USED, STD_PROC_USED, MFG_PROC_USED, STD_TBLS_WRITE,
# MFG_TBLS_WRITE, each as long as its DIM_ field
ST0 = (
    b"FORMAT_CONTROL_1:1 FORMAT_CONTROL_2:1 FORMAT_CONTROL_3:1 DEVICE_CLASS:c4 NAMEPLATE_TYPE:1"
    b" DEFAULT_SET_USED:1 MAX_PROC_PARM_LENGTH:1 MAX_RESP_DATA_LEN:1 STD_VERSION_NO:1 STD_REVISION_NO:1"
    b" DIM_STD_TBLS_USED:1 DIM_MFG_TBLS_USED:1 DIM_STD_PROC_USED:1 DIM_MFG_PROC_USED:1"
    b" DIM_MFG_STATUS_USED:1 NBR_PENDING:1"
)
ST1 = (
    b"MANUFACTURER:c4 ED_MODEL:c8 HW_VERSION_NUMBER:1 HW_REVISION_NUMBER:1 FW_VERSION_NUMBER:1"
    b" FW_REVISION_NUMBER:1 MFG_SERIAL_NUMBER:c16"
)
ST3 = b"ED_MODE:1 ED_STD_STATUS1:2 ED_STD_STATUS2:1 ED_MFG_STATUS:1"
ST5 = b"IDENTIFICATION:c20"
ST21 = (
    b"REG_FUNC1:1 REG_FUNC2:1 NBR_SELF_READS:1 NBR_SUMMATIONS:1 NBR_DEMANDS:1 NBR_COIN_VALUES:1"
    b" NBR_OCCUR:1 NBR_TIERS:1 NBR_PRESENT_DEMANDS:1 NBR_PRESENT_VALUES:1"
)
ST51 = (
    b"TIME_FUNC_FLAG1:1 TIME_FUNC_FLAG2:1 CALENDAR_FUNC:1 NBR_NON_RECURR_DATES:1 NBR_RECURR_DATES:1"
    b" NBR_TIER_SWITCHES:2 CALENDAR_TBL_SIZE:2"
)
ST52 = b"YEAR:1 MONTH:1 DAY:1 HOUR:1 MINUTE:1 SECOND:1 TIME_DATE_QUAL:1"
ST53 = b"DST_HOUR:1 DST_MINUTE:1 DST_SECOND:1 DST_TIME_AMT:1 TIME_ZONE_OFFSET:-2"
ST55 = ST52 + b" STATUS:2"
ST61 = b"LP_MEMORY_LEN:4 LP_FLAGS:2 LP_FMATS:1 NBR_BLKS_SET1:2 NBR_BLK_INTS_SET1:2 NBR_CHNS_SET1:1 MAX_INT_TIME_SET1:1"
ST63 = (
    b"LP_SET_STATUS_FLAGS:1 NBR_VALID_BLOCKS:2 LAST_BLOCK_ELEMENT:2 LAST_BLOCK_SEQ_NBR:4"
    b" NBR_UNREAD_BLOCKS:2 NBR_VALID_INT:2"
)
ST71 = (
    b"LOG_FLAGS:1 NBR_STD_EVENTS:1 NBR_MFG_EVENTS:1 HIST_DATA_LENGTH:1 EVENT_DATA_LENGTH:1"
    b" NBR_HISTORY_ENTRIES:2 NBR_EVENT_ENTRIES:2"
)
# ST26 SELF_READ_DATA_TBL's list status; then NBR_SELF_READS entries: END_DATE_TIME
# (STIME_DATE), SEASON, the registers as in ST23 (ST25: one such entry, no list status)
SELF_READ_HEADER = (
    b"LIST_STATUS:1 NBR_VALID_ENTRIES:1 LAST_ENTRY_ELEMENT:1 LAST_ENTRY_SEQ_NUMBER:2 NBR_UNREAD_ENTRIES:1"
)
LOG_HEADER = b"FLAGS:1 NBR_VALID_ENTRIES:2 LAST_ENTRY_ELEMENT:2 LAST_ENTRY_SEQ_NBR:4 NBR_UNREAD_ENTRIES:2"
# ST76 entries (LOG_FLAGS: date and time, no event number)
EVENT_ENTRY = b"YEAR:1 MONTH:1 DAY:1 HOUR:1 MINUTE:1 SECOND:1 EVENT_SEQ_NBR:2 USER_ID:2 EVENT_CODE:2 EVENT_ARGUMENT:c4"
# MT0: the seal record, the security counters, the link's counters and the session
MT0 = (
    b"SEAL_FLAGS:1 SEAL_COUNT:2 SEAL_TIME:4 SEAL_CONFIG_CRC:4 SEAL_FW_HASH:c32 FAILED_PASSWORDS:2"
    b" LOCKOUTS:2 LOCKOUT_LEFT_S:2 EVENTS_NOT_LOGGED:2 PROCEDURES_RUN:2 TABLE_WRITES:2 LINK_NAKS:2"
    b" LINK_RETRANSMITS:2 LINK_TIMEOUTS:2 LINK_FALLBACKS:2 PORT_FAULTS:2 SESSION_LEVEL:1 SESSION_USER:2"
    b" HEAP_FREE:4"
)
# MT6: why the meter started (resets.py): counts by cause, the last cause, the last fault
# (its resets.FAULT_TYPES and resets.MODULES indexes, its line) and its run in a row
MT6 = (
    b"RESETS_POWER_ON:2 RESETS_WATCHDOG:2 RESETS_FAULT:2 RESETS_RESET:2 LAST_CAUSE:1"
    b" FAULT_TYPE:1 FAULT_MODULE:1 FAULT_LINE:2 FAULT_REPEATS:2"
)
# MT3: instantaneous values (channel B when two elements)
MT3 = b"VOLTS_MV:4 AMPS_A_MA:-4 AMPS_B_MA:-4 WATTS_MW:-4 VARS_MVAR:-4 VA_MVA:4 PF_MILLI:-2 HZ_CENTI:2"
# ST8's response data to the seal procedure
SEAL_RESPONSE = b"SEAL_COUNT:2 SEAL_CONFIG_CRC:4"
# the calibration procedure: its parameters (PF lagging, 0 seconds = the step's default:
# 600 for offsets, 60 otherwise), ST8's data while it runs, and its final result. RESULT_x:
# offsets: the active power offset change (1/512 chip code); gain: the active energy error
# measured before the step (ppm); phase: the active error left at PF 0.5 (ppm), with the
# CT phase error found (PHASE_x_URAD, urad of current lag). CHANNELS: bit 0 A, bit 1 B.
CAL_PARAMS = b"VOLTS_MV:4 AMPS_MA:4 PF_MILLI:-2 SECONDS:2"
CAL_PROGRESS = b"STEP:1 ELAPSED_S:2"
CAL_RESPONSE = b"STEP:1 CHANNELS:1 RESULT_A:-4 RESULT_B:-4 PHASE_A_URAD:-3 PHASE_B_URAD:-3"

# ---- the tables: (number, read level | write level << 4) ------------------------------
TABLES = (
    (0, _ANONYMOUS | _NEVER << 4),
    (1, _ANONYMOUS | _NEVER << 4),
    (3, _ANONYMOUS | _NEVER << 4),
    (5, _ANONYMOUS | _PROGRAMMER << 4),  # the utility's meter number
    (7, _NEVER | _READER << 4),  # procedure initiate (each procedure has its own level)
    (8, _READER | _NEVER << 4),  # procedure response
    (21, _ANONYMOUS | _NEVER << 4),
    (22, _ANONYMOUS | _NEVER << 4),
    (23, _READER | _NEVER << 4),
    (25, _READER | _NEVER << 4),  # previous demand reset data (selfread.py)
    (26, _READER | _NEVER << 4),  # self-reads
    (51, _ANONYMOUS | _NEVER << 4),
    (52, _ANONYMOUS | _NEVER << 4),
    (53, _READER | _NEVER << 4),
    (54, _READER | _NEVER << 4),
    (55, _ANONYMOUS | _NEVER << 4),
    (61, _ANONYMOUS | _NEVER << 4),
    (62, _READER | _NEVER << 4),
    (63, _READER | _NEVER << 4),
    (64, _READER | _NEVER << 4),
    (71, _ANONYMOUS | _NEVER << 4),
    (72, _READER | _NEVER << 4),
    (73, _READER | _NEVER << 4),
    (74, _READER | _NEVER << 4),
    (75, _READER | _NEVER << 4),
    (76, _READER | _NEVER << 4),
    (0x800, _ANONYMOUS | _NEVER << 4),  # MT0 seal and security status
    (0x801, _READER | _PROGRAMMER << 4),  # MT1 configuration: config.py's TLV settings
    (0x802, _NEVER | _MASTER << 4),  # MT2 passwords (write only)
    (0x803, _READER | _NEVER << 4),  # MT3 instantaneous values
    (0x804, _READER | _NEVER << 4),  # MT4 the LCD's RAM
    (0x805, _READER | _NEVER << 4),  # MT5 the registers at full resolution (EnergyRegisters.FIELDS)
    (0x806, _ANONYMOUS | _NEVER << 4),  # MT6 resets by cause, the last fault
)
BIG = (25, 26, 54, 64, 76, 0x801)

# (number, level, flags)
PROCEDURES = (
    (_PROC_CLEAR_DATA, _MASTER, 0),  # zero the legal registers
    (_PROC_CLEAR_STD_STATUS, _PROGRAMMER, 0),  # the latched ST3 flags (power failure, tamper, ...)
    (_PROC_CLEAR_MFG_STATUS, _PROGRAMMER, 0),  # the password lock-out
    (_PROC_REMOTE_RESET, _READER, _DEMAND_RESET_ONLY),  # ACTION_FLAG bit 0: demand reset
    (_PROC_SET_TIME, _PROGRAMMER, _SEALED_OK | _PLUG_OK),
    (_PROC_SEAL, _MASTER, 0),
    (_PROC_UNSEAL, _MASTER, _SEALED_OK),  # and the seal plug out
    (_PROC_CALIBRATE, _MASTER, 0),  # the meter's loop runs it: ST8 says 1 until it ends
)


def pack(buf, off, layout, values):
    """Write values (one per field, in order) at buf[off:] following layout; the end."""
    i = 0
    k = 0
    n = len(layout)
    while i < n:
        while layout[i] != 58:  # ':'
            i += 1
        kind = layout[i + 1]
        i += 2 if kind == 99 or kind == 45 else 1  # 'c', '-'
        size = 0
        while i < n and layout[i] != 32:
            size = size * 10 + layout[i] - 48
            i += 1
        v = values[k]
        k += 1
        if kind == 99:
            for j in range(size):
                buf[off + j] = v[j] if j < len(v) else 0x20
            off += size
        else:
            off = put(buf, off, v, size)
    return off


def put(buf, off, v, n):
    """v as an n-byte little-endian integer (two's complement when negative); the end."""
    for i in range(n):
        buf[off + i] = (v >> (8 * i)) & 0xFF
    return off + n


def get(buf, off, n):
    v = 0
    for i in range(n - 1, -1, -1):
        v = (v << 8) | buf[off + i]
    return v


# ---- time ---------------------------------------------------------------------------
def days_from_2000(y, m, d):
    """Days from 2000-01-01 to y-m-d (proleptic Gregorian)."""
    if m <= 2:
        y -= 1
        m += 12
    return 365 * y + y // 4 - y // 100 + y // 400 + (153 * (m - 3) + 2) // 5 + d - 730426


def date_of(days):
    """(year, month, day) of a day number from 2000-01-01."""
    z = days + 730425  # days from 0000-03-01 (H. Hinnant, civil_from_days)
    era = z // 146097
    doe = z - era * 146097
    yoe = (doe - doe // 1460 + doe // 36524 - doe // 146096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    mo = mp + 3 if mp < 10 else mp - 9
    return yoe + era * 400 + (1 if mo <= 2 else 0), mo, doy - (153 * mp + 2) // 5 + 1


def now_s(m):
    """The meter's time in seconds since 2000-01-01: its clock (timekeeping.py), or the RTC."""
    t = getattr(m, "clock_time", None)
    if t is not None:
        return t
    dt = m.board.rtc.datetime()
    return days_from_2000(dt[0], dt[1], dt[2]) * 86400 + dt[4] * 3600 + dt[5] * 60 + dt[6]


def ltime(secs):
    """(YY, MM, DD, hh, mm, ss) of TM_FORMAT 2 for seconds since 2000-01-01."""
    days = secs // 86400
    r = secs - days * 86400
    y, mo, d = date_of(days)
    return (y - 2000) % 100, mo, d, r // 3600, r // 60 % 60, r % 60


def put_time(buf, off, secs, n=6):
    """An LTIME_DATE (6 bytes, seconds included) or STIME_DATE (5) of TM_FORMAT 2; the end."""
    t = ltime(secs)
    for i in range(n):
        buf[off + i] = t[i]
    return off + n


def find(tid):
    for e in TABLES:
        if e[0] == tid:
            return e
    return None


def read_level(e):
    return e[1] & 15


def write_level(e):
    return e[1] >> 4


# ---- building the small tables ------------------------------------------------------
def _bitmap(buf, off, procedures=False, mfg=False, writable=False, on=True):
    """A bitmap of table (or procedure) numbers of one kind, as long as ST0 dimensions it."""
    src = PROCEDURES if procedures else TABLES
    dim = 0
    for e in src:
        if (e[0] >= _MFG) == mfg:
            dim = max(dim, (e[0] & 0x7FF) // 8 + 1)
    for i in range(dim):
        buf[off + i] = 0
    if on:
        for e in src:
            if (e[0] >= _MFG) == mfg and (not writable or e[1] >> 4 != _NEVER):
                n = e[0] & 0x7FF
                buf[off + (n >> 3)] |= 1 << (n & 7)
    return off + dim


def _events_bitmap(buf, off, on):
    """ST72's (and ST75's) event bitmaps: the standard events, then the manufacturer's,
    as events.LOGGED lists them."""
    for i in range(_NBR_STD_EVENTS + _NBR_MFG_EVENTS):
        buf[off + i] = 0
    if on:
        import events  # the meter has it loaded already (billing.py); the host never calls this

        for code in events.LOGGED:
            n = code - _MFG + 8 * _NBR_STD_EVENTS if code >= _MFG else code
            buf[off + (n >> 3)] |= 1 << (n & 7)
    return off + _NBR_STD_EVENTS + _NBR_MFG_EVENTS


def build(m, svc, tid, buf):
    """Fill buf with the whole of a small table; its size (a BIG table: only its size)."""
    if tid >= 50:
        return _build_50(m, svc, tid, buf) if tid < _MFG else _build_mfg(m, svc, tid, buf)
    if tid == 0:
        # little-endian, ISO 646; TM_FORMAT 2, offset-count access; INT48 and INT32 values;
        # electric; parameters up to 24 bytes, responses up to 16; C12.19 version 1.0
        ds, dm = _bitmap(buf, 0), _bitmap(buf, 0, mfg=True)  # the DIM_ fields: what each bitmap takes
        dp, dq = _bitmap(buf, 0, True), _bitmap(buf, 0, True, True)
        off = pack(buf, 0, ST0, (0x02, 0x0A, 0x8A, b"OMTR", 2, 0, 24, 16, 1, 0, ds, dm, dp, dq, 1, 0))
        off = _bitmap(buf, off)
        off = _bitmap(buf, off, mfg=True)
        off = _bitmap(buf, off, True)
        off = _bitmap(buf, off, True, True)
        off = _bitmap(buf, off, writable=True)
        return _bitmap(buf, off, mfg=True, writable=True)
    if tid == 1:
        import config
        import meter

        # MANUFACTURER, ED_MODEL, hardware version 1.0, the firmware's version and revision
        values = (b"OMTR", b"OPENMTR1", 1, 0, meter.VERSION_NUMBER, meter.REVISION_NUMBER)
        return pack(buf, 0, ST1, values + (m.config.get(config.SERIAL_NUMBER),))
    if tid == 3:
        return pack(buf, 0, ST3, (1, m.status.bits & 0xFFFF, 0, svc.seal.flags()))
    if tid == 5:
        import config

        return pack(buf, 0, ST5, (m.config.get(config.DEVICE_ID),))
    if tid == 8:
        n = svc.st8_len
        buf[0:n] = svc.st8[0:n]
        return n
    if tid == 21:
        # REG_FUNC1: season and date/time fields, demand-reset counter, cumulative and
        # continuously cumulative demand; REG_FUNC2 and NBR_SELF_READS: selfread.py; 3
        # summations, 1 demand
        import config

        daily = _DAILY_SELF_READ_FLAG if m.config.get(config.SELF_READ_TIME) >= 0 else 0
        func2 = _SELF_READ_SEQ_NBR_FLAG | daily | _SELF_READ_DEMAND_RESET
        values = (_REG_FUNC1, func2, NBR_SELF_READS, _NBR_SUMMATIONS, _NBR_DEMANDS, 0, _NBR_OCCUR, _tiers(m), 0, 0)
        return pack(buf, 0, ST21, values)
    if tid == 22:
        # SUMMATION_SELECT, DEMAND_SELECT, MIN_OR_MAX_FLAGS. Sources: 0 Wh delivered,
        # 1 Wh received, 2 Wh net, 3 W delivered (its maximum demand)
        buf[0:5] = b"\x00\x01\x02\x03\x01"
        return 5
    if tid == 23:
        return _st23(m, buf)
    if tid == 25 or tid == 26:  # BIG: selfread.py reads them from EEPROM
        n = 6 + _st23(m, buf)  # END_DATE_TIME (5), SEASON (1): REG_FUNC1's flags; the registers
        return n if tid == 25 else 6 + NBR_SELF_READS * n
    return 0  # ST7: write only


def _build_50(m, svc, tid, buf):
    """ST51-ST76: time and TOU, load profile, logs."""
    tou = getattr(m, "tou", None)
    has_calendar = hasattr(tou, "calendar_into")
    if tid == 54:  # BIG: tou.calendar_into writes it a piece at a time (read() below)
        return tou.calendar_size() if has_calendar else 0
    if tid == 51:
        seasons, special, switches, nonrec, rec = tou.dims() if has_calendar else (0, 0, 0, 0, 0)
        size = tou.calendar_size() if has_calendar else 0
        # TIME_FUNC_FLAG1 0: no anchor date, dates as programmed (not sorted); TIME_FUNC_FLAG2:
        # CAP_TM_ZN_OFFSET (bit 4: ST53 has TIME_ZONE_OFFSET), SORT_TIER_SWITCHES (bit 3),
        # CAP_DST_AUTO (bit 0) while a DST rule (config.DST) is in force
        dst = 1 if getattr(tou, "dst_rule", 0) else 0
        return pack(buf, 0, ST51, (0, 0x18 | dst, seasons | special << 4, nonrec, rec, switches, size))
    if tid == 52 or tid == 55:
        secs = now_s(m)
        off = put_time(buf, 0, secs)
        # TIME_DATE_QUAL: day of week (Sunday 0; 2000-01-01 a Saturday), DST_FLAG (bit 3: DST in
        # force); DST_APPLIED (bit 6) clear: the clock is standard time all year (tou.py), and
        # local time is it + ST53 DST_TIME_AMT while DST_FLAG is set
        dst = tou.dst_at(secs) if hasattr(tou, "dst_at") else 0
        buf[off] = (secs // 86400 + 6) % 7 | (_QUAL_DST if dst else 0)
        if tid == 52:
            return off + 1
        tier = getattr(tou, "current_tier", 0)
        return put(buf, off + 1, (tier & 7) | (getattr(tou, "season", 0) & 15) << 9, 2)
    if tid == 53:
        # DST_TIME_EFF: the standard time of day of this year's spring change (North America
        # 02:00; EU 01:00 UTC), DST_TIME_AMT in minutes; no rule: 00:00:00 and 0.
        # TIME_ZONE_OFFSET: the zone of the clock's standard time, minutes east of UTC
        import tou as tu

        zone = getattr(tou, "time_zone_min", 0)
        eff = amt = 0
        if getattr(tou, "dst_rule", 0):
            eff = tou._dst_edge(date_of(now_s(m) // 86400)[0], 0) % 86400
            amt = tu.DST_S // 60
        return pack(buf, 0, ST53, (eff // 3600, eff // 60 % 60, eff % 60, amt, zone))
    if 61 <= tid <= 64:
        blocks, ints, chns, minutes = _lp_dims(m)
        # a block: BLK_END_TIME, END_READINGS (INT48 per channel), then per interval
        # EXTENDED_INT_STATUS (channels / 2 + 1 bytes) and a UINT16 per channel
        block = 5 + 6 * chns + ints * (chns // 2 + 1 + 2 * chns)
        if tid == 61:
            # LP_FLAGS: BLK_END_READ (4), EXTENDED_INT_STATUS (10); LP_FMATS: UINT16
            return pack(buf, 0, ST61, (blocks * block, 0x410, 0x02, blocks, ints, chns, minutes))
        if tid == 62:
            for c in range(chns):
                # CHNL_FLAG END_RDG_FLAG, LP_SOURCE_SELECT and END_BLK_RDG_SOURCE_SELECT: source c
                buf[3 * c] = 1
                buf[3 * c + 1] = c
                buf[3 * c + 2] = c
            buf[3 * chns] = 0x02  # INT_FMT_CDE1: UINT16
            return 3 * chns + 1
        if tid == 63:
            lp = getattr(m, "load_profile", None)
            return pack(buf, 0, ST63, lp.status() if lp is not None else (0, 0, 0, 0, 0, 0))
        return blocks * block
    capacity = getattr(getattr(m, "events", None), "capacity", 0)
    if tid == 71:
        # LOG_FLAGS: HIST_DATE_TIME; no history log; the event log of meter.events
        values = (0x02, _NBR_STD_EVENTS, _NBR_MFG_EVENTS, 0, _EVENT_DATA_LENGTH, 0, capacity)
        return pack(buf, 0, ST71, values)
    if tid == 74:
        return pack(buf, 0, LOG_HEADER, (0, 0, 0, 0, 0))
    if tid == 76:
        return _EV_HEADER + _EV_ENTRY * capacity
    on = tid != 73  # ST72 events supported; ST73 history log control (none); ST75 event log control
    off = _events_bitmap(buf, 0, on)
    if tid == 72:
        return off
    off = _bitmap(buf, off, writable=True, on=on)  # the tables whose writes are logged
    off = _bitmap(buf, off, mfg=True, writable=True, on=on)
    off = _bitmap(buf, off, True, on=on)  # and the procedures
    return _bitmap(buf, off, True, True, on=on)


def _build_mfg(m, svc, tid, buf):
    """MT0-MT6."""
    if tid == 0x800:
        sec, seal, link = svc.security, svc.seal, svc.link
        values = (seal.flags(), seal.count, seal.time, seal.cfg_crc, seal.fw_hash)
        counters = (sec.failed_total, sec.lockouts, sec.remaining_s(), sec.unlogged, svc.procedures, svc.writes)
        counters += (link.naks, link.retransmits, link.timeouts, link.fallbacks, link.faults)
        counters = tuple(min(c, 0xFFFF) for c in counters)
        import gc

        return pack(buf, 0, MT0, values + counters + (svc.level, svc.user_id, gc.mem_free()))
    if tid == 0x801:
        return len(_config_blob(m))
    if tid == 0x802:
        return 3 * _PASSWORD  # write only: never read; the size bounds partial writes
    if tid == 0x803:
        return pack(buf, 0, MT3, instantaneous(m))
    if tid == 0x804:
        ram = getattr(m.display, "ram", None)  # a property of display.Display, or a method
        ram = m.display._shown if ram is None else ram() if callable(ram) else ram
        buf[0 : len(ram)] = ram
        return len(ram)
    if tid == 0x806:
        r = m.resets
        c = r.counts
        return pack(buf, 0, MT6, (c[0], c[1], c[2], c[3], r.cause, r.fault_type, r.fault_module, r.fault_line,
                                  r.fault_repeats))  # fmt: skip
    e = m.energy  # MT5
    e.pack_into(buf, 0)
    return 8 * len(e.FIELDS)


def read(m, tid, off, n, buf, boff):
    """n bytes of a BIG table from offset off into buf[boff:]."""
    if tid == 64:
        lp = getattr(m, "load_profile", None)
        if lp is not None:
            lp.read_into(off, n, buf, boff)
        else:
            for i in range(boff, boff + n):
                buf[i] = 0
    elif tid == 76:
        _st76(m, off, n, buf, boff)
    elif tid == 54:
        m.tou.calendar_into(off, n, buf, boff)  # its size is 0 without a Tou: never asked then
    elif tid < 27:  # ST25, ST26
        _self_read("read_into", m, tid, off, n, buf, boff)
    else:
        buf[boff : boff + n] = _config_blob(m)[off : off + n]


def _self_read(what, *args):
    """selfread.py's function `what`, then that module dropped from RAM."""
    import sys

    import selfread

    try:
        return getattr(selfread, what)(*args)
    finally:
        sys.modules.pop("selfread", None)


def _tiers(m):
    n = getattr(getattr(m, "tou", None), "nbr_tiers", _NBR_TIERS)
    most = (_SCRATCH - 1) // _DATA_BLK - 1  # ST23 stays a snapshot (_SCRATCH bytes)
    return n if n < most else most


def st23_size(m):
    """ST23's bytes: NBR_DEMAND_RESETS, then the total's and each tier's data block."""
    return 1 + _DATA_BLK * (_tiers(m) + 1)


def _st23(m, buf):
    """NBR_DEMAND_RESETS, then the total and one block per tier: Wh delivered, received
    and net (NI_FMAT1), then the DEMANDS_RCD of the maximum demand: its time
    (STIME_DATE), CUM_DEMAND and CONT_CUM_DEMAND (W, NI_FMAT1), its value (W, NI_FMAT2)."""
    d = getattr(m, "demand", None)
    tou = getattr(m, "tou", None)
    buf[0] = getattr(d, "resets", 0) & 0xFF
    e = m.energy
    dwh, rwh = e.delivered_wh, e.received_wh
    cum = getattr(d, "cumulative_w", 0)
    tiers_cum = getattr(d, "tier_cumulative_w", None)
    off = 1
    for tier in range(-1, _tiers(m)):
        if tier >= 0:
            dwh, rwh = tou.tier_wh(tier) if hasattr(tou, "tier_wh") else (0, 0)
            cum = tiers_cum[tier] if tiers_cum is not None and tier < len(tiers_cum) else 0
        w, t = d.maximum(tier) if hasattr(d, "maximum") else (0, 0)
        off = put(buf, off, dwh, _NI_FMAT1)
        off = put(buf, off, rwh, _NI_FMAT1)
        off = put(buf, off, dwh - rwh, _NI_FMAT1)
        if t:
            put_time(buf, off, t, _STIME_DATE)
        else:
            buf[off : off + _STIME_DATE] = b"\x00\x00\x00\x00\x00"
        off = put(buf, off + _STIME_DATE, cum, _NI_FMAT1)
        off = put(buf, off, cum + w, _NI_FMAT1)  # continuously cumulative: + the maximum now
        off = put(buf, off, w, _NI_FMAT2)
    return off


def _st76(m, off, n, buf, boff):
    """The event log: its header, then one entry at a time (only the entries asked for).
    Header FLAGS (C12.19 EVENT_FLAGS): ORDER_FLAG 0 (oldest first), OVERFLOW_FLAG once an
    entry is gone (more numbered than held: the ring overwrote its oldest), LIST_TYPE_FLAG 1
    (circular), INHIBIT_OVERFLOW_FLAG 0 (ST71's EVENT_INHIBIT_OVF_FLAG is 0 too: the newest
    overwrites the oldest). NBR_UNREAD_ENTRIES: every valid entry, as the meter offers no
    procedure to acknowledge reads (UPDATE_LAST_READ_ENTRY is not in ST0's list)."""
    ev = getattr(m, "events", None)
    count = ev.count() if ev is not None else 0
    tmp = bytearray(_EV_ENTRY)
    end = off + n
    pos = 0  # table offset of tmp[0]
    if off >= _EV_HEADER:
        pos = off - (off - _EV_HEADER) % _EV_ENTRY
    while pos < end:
        if pos == 0:
            last = getattr(ev, "last_seq", 0)
            flags = _LIST_CIRCULAR | (_LIST_OVERFLOW if last > count else 0)
            size = pack(tmp, 0, LOG_HEADER, (flags, count, count - 1 if count else 0, last, count))
        else:
            i = (pos - _EV_HEADER) // _EV_ENTRY
            size = _EV_ENTRY
            if i < count:
                secs, seq, user, code, arg = ev.entry(i)
                pack(tmp, 0, EVENT_ENTRY, ltime(secs) + (seq, user, code, arg))
            else:
                for k in range(_EV_ENTRY):
                    tmp[k] = 0
        lo = off if off > pos else pos
        hi = end if end < pos + size else pos + size
        for k in range(lo, hi):
            buf[boff + k - off] = tmp[k - pos]
        pos += size


def _lp_dims(m):
    lp = getattr(m, "load_profile", None)
    if lp is not None:
        return lp.dims()
    import config

    minutes = m.config.get(config.LP_INTERVAL_MIN)
    return _LP_BLOCKS, 1440 // minutes, _LP_CHANNELS, minutes


def instantaneous(m):
    """MT3's values: mV, mA (A), mA (B), mW, mvar, mVA, PF x 1000, Hz x 100.

    From metrology's instantaneous() -> (volts, amps A, amps B, watts, vars, VA, pf, hz)
    in SI units once it exists; zeros until then (the line frequency from the chip)."""
    met = m.metrology
    f = getattr(met, "instantaneous", None)
    if f is not None:
        v = f()
        return tuple(int(v[i] * (100 if i == 7 else 1000)) for i in range(8))
    hz = 0
    ade = getattr(met, "ade", None)
    if hasattr(ade, "line_hz_x100"):
        try:
            hz = ade.line_hz_x100()
        except OSError:
            hz = 0
    return 0, 0, 0, 0, 0, 0, 0, hz


def _config_blob(m):
    """MT1: the configuration (config.Config.encode) without the password hashes."""
    import config

    blob = m.config.encode()
    out = bytearray()
    i = 0
    while i < len(blob):
        n = 2 + (blob[i + 1] & 0x7F)
        if not config.PW_READER <= blob[i] <= config.PW_MASTER:
            out.extend(blob[i : i + n])
        i += n
    return out


# ---- writes -----------------------------------------------------------------------
def write(m, svc, tid, off, buf, s, n):
    """A write the session may make (level, seal and range checked): a response code."""
    import config

    if getattr(m, "cal_step", None) is not None:
        return _BSY  # a calibration step is running: nothing may change under it
    if tid == 7:
        return procedure(m, svc, buf, s, n)
    if tid == 5:
        ident = bytearray(b" " * 20)
        old = m.config.get(config.DEVICE_ID)
        ident[0 : len(old)] = old
        ident[off : off + n] = buf[s : s + n]
        return svc.store_config(((config.DEVICE_ID, bytes(ident)),))
    if tid == 0x802:
        if off % _PASSWORD or n % _PASSWORD:
            return _IAR  # a whole password at a time
        settings = []
        for k in range(n // _PASSWORD):
            key = config.PW_READER + off // _PASSWORD + k  # PW_READER, PW_PROGRAMMER, PW_MASTER
            settings.append((key, svc.security.hashed(buf, s + k * _PASSWORD, _PASSWORD)))
        code = svc.store_config(settings)
        if code == _OK:
            import events

            svc.log(events.EV_PASSWORD_CHANGED, bytes((off // _PASSWORD, n // _PASSWORD)))
        return code
    # MT1: settings in config.py's TLV format; the ones given are set, all or none
    settings = []
    end = s + n
    while s < end:
        if s + 2 > end:
            return _ERR
        key = buf[s]
        length = buf[s + 1] & 0x7F
        signed = buf[s + 1] & 0x80
        s += 2
        if s + length > end or (signed and length not in (1, 2, 4)):
            return _ERR
        if signed:
            value = get(buf, s, length)
            if value & (1 << (8 * length - 1)):
                value -= 1 << (8 * length)
        else:
            value = bytes(buf[s : s + length])
        s += length
        try:
            m.config.get(key)
        except KeyError:
            return _IAR  # no such setting
        if config_level(key) > svc.level:
            return _ISC
        if not valid_setting(m.config, key, value):
            return _IAR
        settings.append((key, value))
    new = dict(settings)
    scroll = new.get(config.SCROLL_S, m.config.get(config.SCROLL_S))
    if scroll < new.get(config.SCROLL_MIN_S, m.config.get(config.SCROLL_MIN_S)):
        return _IAR
    return svc.store_config(settings)


def config_level(key):
    """Who may set a configuration id through MT1; passwords go through MT2 only."""
    import config

    if config.PW_READER <= key <= config.PW_MASTER:
        return _NEVER
    if config.DISPLAY_ITEMS <= key < config.PW_READER:
        return _PROGRAMMER  # display, demand, load profile, time of use
    return _MASTER  # calibration, security parameters, identity


def valid_setting(cfg, key, value):
    """True if value may be stored for key: a known id, its type, its range
    (config.validate(key, value) decides instead once config.py has one)."""
    import config as c

    check = getattr(c, "validate", None)
    if check is not None:
        return check(key, value)
    if isinstance(cfg.get(key), int) != isinstance(value, int):
        return False
    if key == c.DST or key == c.TIME_ZONE_MIN:
        return c.valid_time_setting(key, value)
    if not isinstance(value, int):
        if key == c.DISPLAY_ITEMS:
            return 1 <= len(value) <= 32 and 0 not in value
        return len(value) <= 40
    for k, lo, hi in (
        (c.ELEMENTS, 1, 2),
        (c.CT_REVERSE_A, 0, 1),
        (c.CT_REVERSE_B, 0, 1),
        (c.KH_MWH, 1, 1000000),
        (c.NOLOAD_PERMILLE_START, 0, 1000),
        (c.SCROLL_S, 1, 255),
        (c.SCROLL_MIN_S, 1, 255),
        (c.DISPLAY_DIGITS, 1, 6),
        (c.DISPLAY_DECIMALS, 0, 3),
        (c.ID_STYLE, 0, 1),
        (c.DEMAND_INTERVAL_MIN, 1, 60),
        (c.DEMAND_SUBINTERVALS, 1, 60),
        (c.DEMAND_RESET_LOCKOUT_S, 0, 86400),
        (c.LP_INTERVAL_MIN, 1, 60),
        (c.SELF_READ_TIME, -1, 1439),
        (c.LOCKOUT_S, 1, 3600),
        (c.LOCKOUT_TRIES, 1, 10),
    ):
        if k == key:
            if key in (c.DEMAND_INTERVAL_MIN, c.LP_INTERVAL_MIN) and 60 % value:
                return False  # an interval divides the hour
            return lo <= value <= hi
    return -0x800000 <= value <= 0xFFFFFF  # chip registers and scales: 24 bits


# ---- procedures (ST7 / ST8) -------------------------------------------------------
def procedure(m, svc, buf, s, n):
    """A write to ST7: TBL_PROC_NBR (2), PROC_SEQ_NBR, parameters; the result goes to ST8.
    Refused before it runs: ISC below its level, DLK by the seal plug or the seal; a refused
    procedure leaves ST8 as it was (ST8 holds only results of procedures that were taken)."""
    if n < 3:
        return _ERR
    number = buf[s] | buf[s + 1] << 8
    proc = number & 0x0FFF
    st8 = svc.st8
    p = None
    for q in PROCEDURES:
        if q[0] == proc:
            p = q
    if p is None:
        st8[0] = number & 0xFF
        st8[1] = number >> 8
        st8[2] = buf[s + 2]
        st8[3] = _PROC_UNKNOWN
        svc.st8_len = 4
        return _OK
    if p[1] > svc.level:
        return _ISC
    flags = p[2]
    demand_only = flags & _DEMAND_RESET_ONLY and n > 3 and buf[s + 3] == 1
    if svc.seal.plug_in() and not (flags & _PLUG_OK or demand_only):
        return _DLK
    if svc.seal.sealed and not (flags & _SEALED_OK or demand_only):
        return _DLK
    st8[0] = number & 0xFF
    st8[1] = number >> 8
    st8[2] = buf[s + 2]
    code, k = _run(m, svc, proc, buf, s + 3, n - 3, st8, 4)
    st8[3] = code
    svc.st8_len = 4 + k
    svc.procedures += 1
    import events

    svc.log(events.EV_PROCEDURE, bytes((proc & 0xFF, proc >> 8, code)))
    return _OK


def _run(m, svc, number, buf, s, n, out, o):
    """Run an allowed procedure; (ST8 result code, response bytes written at out[o:])."""
    if number == _PROC_SET_TIME:
        return _set_time(m, svc, buf, s, n), 0
    if number == _PROC_REMOTE_RESET:
        if n < 1:
            return _PROC_INVALID, 0
        if buf[s] & ~3:
            return _PROC_CONFLICT, 0  # season change: not supported
        if buf[s] & 2 and not _self_read("take", m, now_s(m)):  # ACTION_FLAG bit 1: one now
            return _PROC_CONFLICT, 0
        if not buf[s] & 1:
            return _PROC_DONE, 0
        reset = getattr(m, "demand_reset", None)  # billing.py: logged, the lock-out kept
        if reset is None:
            return _PROC_CONFLICT, 0  # no demand register in this configuration
        return (_PROC_DONE if reset() else _PROC_TIMING), 0  # TIMING: inside the reset lock-out
    if number == _PROC_CLEAR_DATA:
        e = m.energy
        for name in e.FIELDS:
            setattr(e, name, 0)
        for part in ("demand", "tou", "load_profile"):
            f = getattr(getattr(m, part, None), "clear", None)
            if f is not None:
                f()
        st = getattr(m, "storage", None)
        if hasattr(st, "save_registers"):
            st.save_registers(e)
        import events

        svc.log(events.EV_DATA_CLEARED, b"")
        return _PROC_DONE, 0
    if number == _PROC_CLEAR_STD_STATUS:
        import status as S

        m.status.clear(S.POWER_FAILURE | S.TAMPER_DETECT | S.DEMAND_OVERLOAD | S.REVERSE_ROTATION)
        svc.seal.fw_changed = False
        return _PROC_DONE, 0
    if number == _PROC_CLEAR_MFG_STATUS:
        svc.security.reset_lockout()
        return _PROC_DONE, 0
    if number == _PROC_CALIBRATE:
        return _calibrate(m, buf, s, n, out, o)
    if number == _PROC_SEAL:
        code = svc.seal.seal(svc.user_id, now_s(m))
        return code, pack(out, o, SEAL_RESPONSE, (svc.seal.count, svc.seal.cfg_crc)) - o
    return svc.seal.unseal(svc.user_id, now_s(m)), 0  # _PROC_UNSEAL


def _calibrate(m, buf, s, n, out, o):
    """Check a calibration step's parameters (CAL_PARAMS) and leave it to the meter's loop."""
    if not hasattr(m, "cal_step"):
        return _PROC_CONFLICT, 0  # a meter without the loop that runs it
    if n < _CAL_PARAMS_LEN:
        return _PROC_INVALID, 0
    volts, amps, pf, seconds = get(buf, s, 4), get(buf, s + 4, 4), get(buf, s + 8, 2), get(buf, s + 10, 2)
    if pf & 0x8000:
        pf -= 0x10000
    if not _CAL_VOLTS_MIN_MV <= volts <= _CAL_VOLTS_MAX_MV or amps > _CAL_AMPS_MAX_MA:
        return _PROC_INVALID, 0
    if seconds > _CAL_SECONDS_MAX or (amps and not 0 < pf <= 1000):
        return _PROC_INVALID, 0  # a current needs its PF: lagging (or 1), above 0
    kind = _CAL_OFFSETS if not amps else _CAL_GAIN if pf >= _CAL_PF_GAIN else _CAL_PHASE
    m.cal_step = (volts, amps, pf, seconds, out[2], _CAL_WAIT_S, kind)  # out[2]: PROC_SEQ_NBR
    return _PROC_ACCEPTED, pack(out, o, CAL_PROGRESS, (kind, 0)) - o


def calibration_done(svc, step, code, result):
    """The step meter.py ran is over: its final result in ST8 (CAL_RESPONSE when done) and
    the event log. result: what calibration.calibrate returned, one entry per channel."""
    st8 = svc.st8
    st8[0] = _PROC_CALIBRATE & 0xFF
    st8[1] = _PROC_CALIBRATE >> 8
    st8[2] = step[4]
    st8[3] = code
    svc.st8_len = 4
    if code == _PROC_DONE:
        kind = step[6]
        values = [kind, 0, 0, 0, 0, 0]
        for ch in range(len(result)):
            r = result[ch]
            values[1] |= 1 << ch
            if kind == _CAL_OFFSETS:
                values[2 + ch] = int(round(r[0] * 512))
            elif kind == _CAL_GAIN:
                values[2 + ch] = int(r)
            else:
                values[2 + ch] = int(r[1])
                values[4 + ch] = int(r[0])
        svc.st8_len = pack(st8, 4, CAL_RESPONSE, values)
    import events

    svc.log(events.EV_PROCEDURE, bytes((_PROC_CALIBRATE & 0xFF, _PROC_CALIBRATE >> 8, code)))


def _set_time(m, svc, buf, s, n):
    """SET_MASK (bit 0 time, bit 1 date, bit 2 qualifier), LTIME_DATE (YY MM DD hh mm ss),
    TIME_DATE_QUAL. The time is the meter's standard time (as ST52 shows it) unless the
    qualifier is given with DST_APPLIED: then it is local time, daylight time in summer."""
    if n < 7:
        return _PROC_INVALID
    mask = buf[s]
    now = now_s(m)
    y, mo, d = date_of(now // 86400)
    r = now % 86400
    hh, mi, ss = r // 3600, r // 60 % 60, r % 60
    if mask & 2:
        y, mo, d = 2000 + buf[s + 1], buf[s + 2], buf[s + 3]
        feb = 29 if y % 4 == 0 and (y % 100 or y % 400 == 0) else 28
        if y > 2099 or not 1 <= mo <= 12 or not 1 <= d <= (31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)[mo - 1]:
            return _PROC_INVALID
    if mask & 1:
        hh, mi, ss = buf[s + 4], buf[s + 5], buf[s + 6]
        if hh > 23 or mi > 59 or ss > 59:
            return _PROC_INVALID
    days = days_from_2000(y, mo, d)
    new = days * 86400 + hh * 3600 + mi * 60 + ss
    tou = getattr(m, "tou", None)
    if mask & _SET_QUAL and n > 7 and buf[s + 7] & _QUAL_DST_APPLIED and hasattr(tou, "dst_at"):
        # TIME_DATE_QUAL DST_APPLIED: a local (wall) time; the clock keeps standard time, so
        # the hour goes if the meter's rule has DST in force then. In the repeated autumn hour
        # DST_FLAG (bit 3) picks the daylight one; a time in the skipped spring hour is standard.
        import tou as tu

        if tou.dst_at(new - tu.DST_S) and (tou.dst_at(new) or buf[s + 7] & _QUAL_DST):
            new -= tu.DST_S
            days = new // 86400
            y, mo, d = date_of(days)
            r = new % 86400
            hh, mi, ss = r // 3600, r // 60 % 60, r % 60
    set_time = getattr(m, "set_time", None)  # billing.py: logged, demand and load profile follow
    if set_time is not None:
        set_time(new)
        return _PROC_DONE
    m.board.rtc.datetime((y, mo, d, (days + 5) % 7, hh, mi, ss, 0))  # weekday: Monday 0
    import events
    import status

    m.status.clear(status.CLOCK_ERROR)
    for code, secs in ((events.EV_TIME_OLD, now), (events.EV_TIME_NEW, new)):
        arg = bytearray(4)
        put(arg, 0, secs, 4)
        svc.log(code, arg)
    return _PROC_DONE
