"""The 24LC-series EEPROM model: page wrap, acknowledge polling, reads, power cuts, files, wear."""

from __future__ import annotations

from pathlib import Path

import pytest

from host_tools.sim.eeprom import EEPROM24

ROOT = Path(__file__).resolve().parents[2]

T_WC = 0.005


def addr(a: int) -> bytes:
    return bytes([a >> 8, a & 0xFF])


def read_at(ee: EEPROM24, a: int, n: int, now: float) -> bytes:
    assert ee.i2c_write(addr(a), stop=False, now=now)
    data = ee.i2c_read(n, now)
    assert data is not None
    return data


@pytest.fixture
def ee(tmp_path: Path) -> EEPROM24:
    return EEPROM24(str(tmp_path / "ee.bin"))


def test_new_file_is_erased(tmp_path: Path, ee: EEPROM24) -> None:
    assert ee.dump() == b"\xff" * 32768
    assert (tmp_path / "ee.bin").read_bytes() == b"\xff" * 32768
    assert ee.page_writes == [0] * 512
    assert ee.address == 0x50


def test_write_then_sequential_read(ee: EEPROM24) -> None:
    assert ee.i2c_write(addr(0x0100) + b"hello", stop=True, now=0.0)
    assert read_at(ee, 0x0100, 5, now=1.0) == b"hello"
    # sequential read continues from the pointer, random read moves it
    assert read_at(ee, 0x00FE, 2, now=1.0) == b"\xff\xff"
    assert ee.i2c_read(3, now=1.0) == b"hel"
    assert ee.i2c_read(2, now=1.0) == b"lo"


def test_sequential_read_wraps_at_end_of_memory(ee: EEPROM24) -> None:
    ee.load_bytes(0, b"AB")
    ee.load_bytes(32766, b"yz")
    assert read_at(ee, 32766, 4, now=0.0) == b"yzAB"
    assert ee.i2c_read(1, now=0.0) == b"\xff"  # pointer now at 2


def test_memory_address_is_masked_to_the_size(ee: EEPROM24) -> None:
    assert ee.i2c_write(addr(0x8000 + 0x10) + b"\x42", stop=True, now=0.0)
    assert read_at(ee, 0x0010, 1, now=1.0) == b"\x42"


def test_current_address_read_after_write(ee: EEPROM24) -> None:
    ee.i2c_write(addr(0x40) + b"abc", stop=True, now=0.0)
    assert ee.i2c_read(2, now=1.0) == b"\xff\xff"  # pointer = last written + 1 (0x43)
    assert read_at(ee, 0x42, 2, now=1.0) == b"c\xff"


def test_address_only_write_with_stop_sets_pointer(ee: EEPROM24) -> None:
    ee.load_bytes(0x200, b"xyz")
    assert ee.i2c_write(addr(0x201), stop=True, now=0.0)
    assert not ee.busy(0.0)  # no write cycle
    assert ee.i2c_read(2, now=0.0) == b"yz"
    assert ee.page_writes[0x200 // 64] == 0


def test_page_write_wraps_within_the_page(ee: EEPROM24) -> None:
    ee.load_bytes(64, bytes(range(64)))
    ee.load_bytes(128, b"\x11")
    # 4 bytes from 62: 62, 63, then wraps to 64 and 65 of the SAME page (64..127)
    assert ee.i2c_write(addr(64 + 62) + b"ABCD", stop=True, now=0.0)
    page = read_at(ee, 64, 64, now=1.0)
    assert page[62:64] == b"AB"
    assert page[0:2] == b"CD"
    assert page[2:62] == bytes(range(2, 62))
    assert read_at(ee, 128, 1, now=1.0) == b"\x11"  # next page untouched
    assert ee.page_writes[1] == 1
    assert ee.page_writes[2] == 0


def test_more_than_a_page_keeps_the_last_page_bytes(ee: EEPROM24) -> None:
    data = bytes(range(70))  # 70 bytes into a 64-byte page from offset 0
    assert ee.i2c_write(addr(0) + data, stop=True, now=0.0)
    page = read_at(ee, 0, 64, now=1.0)
    assert page[:6] == bytes(range(64, 70))  # later bytes overwrote the first six
    assert page[6:] == bytes(range(6, 64))
    assert ee.page_writes[0] == 1


def test_acknowledge_polling(ee: EEPROM24) -> None:
    assert ee.i2c_write(addr(0) + b"x", stop=True, now=10.0)
    assert ee.busy(10.0)
    for now in (10.0, 10.001, 10.0049):
        assert ee.i2c_write(b"", stop=True, now=now) is False  # poll: NAK
        assert ee.i2c_write(addr(0), stop=False, now=now) is False
        assert ee.i2c_read(1, now=now) is None
    # a write attempted while busy is ignored entirely
    assert ee.i2c_write(addr(0) + b"y", stop=True, now=10.002) is False
    assert ee.i2c_write(b"", stop=True, now=10.0 + T_WC) is True  # ACK after t_WC
    assert not ee.busy(10.0 + T_WC)
    assert read_at(ee, 0, 1, now=10.006) == b"x"
    assert ee.page_writes[0] == 1


def test_write_without_stop_is_aborted(ee: EEPROM24) -> None:
    assert ee.i2c_write(addr(5) + b"zz", stop=False, now=0.0)
    assert not ee.busy(0.0)
    assert ee.i2c_read(2, now=0.0) == b"\xff\xff"  # pointer set to 5, nothing written
    assert ee.page_writes[0] == 0


def test_power_cut_during_write_tears_that_page_only(tmp_path: Path) -> None:
    path = tmp_path / "ee.bin"
    ee = EEPROM24(str(path), seed=7)
    ee.load_bytes(0, bytes(range(256)) * 128)
    before = ee.dump()
    new = bytes([0xA5]) * 64
    assert ee.i2c_write(addr(3 * 64) + new, stop=True, now=1.0)
    assert ee.power_cut(1.002) is True
    after = ee.dump()
    page = after[3 * 64 : 4 * 64]
    assert page != new
    old = before[3 * 64 : 4 * 64]
    # every byte is old, new, or garbage; with 64 bytes all three kinds appear
    assert any(page[i] == old[i] for i in range(64))
    assert any(page[i] == new[i] for i in range(64))
    assert any(page[i] not in (old[i], new[i]) for i in range(64))
    assert after[: 3 * 64] == before[: 3 * 64]
    assert after[4 * 64 :] == before[4 * 64 :]
    assert ee.torn_pages == [3]
    # the torn page is in the file; after the cut the part answers again
    assert path.read_bytes() == after
    assert not ee.busy(1.002)
    assert ee.i2c_write(b"", stop=True, now=1.003)


def test_tear_is_deterministic_from_the_seed(tmp_path: Path) -> None:
    def torn(seed: int, name: str) -> bytes:
        ee = EEPROM24(str(tmp_path / name), seed=seed)
        ee.i2c_write(addr(0) + bytes(64), stop=True, now=0.0)
        assert ee.power_cut(0.001)
        return ee.dump()[:64]

    assert torn(1, "a") == torn(1, "b")
    assert torn(1, "c") != torn(2, "d")


def test_partial_write_torn_can_damage_unwritten_bytes(tmp_path: Path) -> None:
    # 'page undefined': bytes that were not being written may change too
    changed = 0
    for seed in range(5):
        ee = EEPROM24(str(tmp_path / f"p{seed}"), seed=seed)
        ee.i2c_write(addr(10) + b"\x00", stop=True, now=0.0)
        assert ee.power_cut(0.0)
        page = ee.dump()[:64]
        assert page != b"\xff" * 10 + b"\x00" + b"\xff" * 53  # differs from the intent
        changed += sum(1 for i, b in enumerate(page) if i != 10 and b != 0xFF)
    assert changed > 0


def test_power_cut_after_the_cycle_does_nothing(tmp_path: Path) -> None:
    ee = EEPROM24(str(tmp_path / "ee.bin"))
    ee.i2c_write(addr(64) + b"done", stop=True, now=0.0)
    expected = ee.dump()
    assert ee.power_cut(T_WC) is False
    assert ee.dump() == expected
    assert ee.torn_pages == []
    assert ee.power_cut(100.0) is False  # and when idle


def test_persistence_across_instances(tmp_path: Path) -> None:
    path = str(tmp_path / "meter" / "ee.bin")  # parent directory is created
    ee = EEPROM24(path)
    ee.i2c_write(addr(0x1234) + b"persist", stop=True, now=0.0)
    ee.i2c_write(addr(0x1234) + b"PER", stop=True, now=0.01)
    ee.load_bytes(0x7FFF, b"\x00")
    del ee
    ee2 = EEPROM24(path)
    assert read_at(ee2, 0x1234, 7, now=0.0) == b"PERsist"
    assert ee2.dump()[0x7FFF] == 0
    assert ee2.page_writes[0x1234 // 64] == 2
    assert sum(ee2.page_writes) == 2
    assert Path(path + ".wear").stat().st_size == 4 * 512


def test_file_of_wrong_size_is_refused(tmp_path: Path) -> None:
    path = str(tmp_path / "ee.bin")
    EEPROM24(path)
    with pytest.raises(ValueError, match="expected 65536"):
        EEPROM24(path, size=65536, page=128)


def test_24lc512_geometry(tmp_path: Path) -> None:
    ee = EEPROM24(str(tmp_path / "512.bin"), size=65536, page=128)
    assert len(ee.dump()) == 65536
    assert len(ee.page_writes) == 512
    # a 128-byte page: offsets 120..127 then wrap to the start of the same page
    ee.i2c_write(addr(0xFF80 + 120) + bytes(range(10)), stop=True, now=0.0)
    page = read_at(ee, 0xFF80, 128, now=1.0)
    assert page[120:128] == bytes(range(8))
    assert page[0:2] == bytes([8, 9])
    assert ee.page_writes[511] == 1
    # the full 16-bit address space is reachable, and reads wrap at 64 KiB
    ee.load_bytes(0, b"\x5a")
    assert read_at(ee, 0xFFFF, 2, now=1.0) == b"\x07\x5a"


def test_wear_counts(ee: EEPROM24) -> None:
    now = 0.0
    for _ in range(5):
        assert ee.i2c_write(addr(0) + b"\x01", stop=True, now=now)
        now += T_WC
    for _ in range(3):
        assert ee.i2c_write(addr(65) + b"\x02\x03", stop=True, now=now)
        now += T_WC
    assert ee.page_writes[0] == 5
    assert ee.page_writes[1] == 3
    assert sum(ee.page_writes) == 8
    # fault injection and reads do not wear
    ee.flip_bit(0, 7)
    ee.i2c_read(100, now)
    assert sum(ee.page_writes) == 8
    assert ee.dump()[0] == 0x81


def test_constructor_checks(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        EEPROM24(str(tmp_path / "a"), size=30000)
    with pytest.raises(ValueError):
        EEPROM24(str(tmp_path / "b"), page=48)
    with pytest.raises(ValueError):
        EEPROM24(str(tmp_path / "c"), address=0x80)
