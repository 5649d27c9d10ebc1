"""Draw the meter's LCD as a person sees it, from the 16 bytes of HT1621 display RAM.

    from host_tools.lcd_render import render_png
    render_png(board.hw.lcd.ram_bytes(), "lcd.png")       # the simulated board's glass
    render_png(ram_read_over_the_optical_port, "lcd.png", scale=3)

Every segment, decimal point and annunciator is a shape on the glass (seven-segment
characters, the minus sign, the colons, arrows and unit labels), dark when its RAM bit is
set and a faint ghost when not, as on a real reflective LCD. Which RAM bit drives which
shape comes from firmware/lcd_glyphs.py, the layout the firmware itself encodes with: the
image cannot drift from the firmware.

`python -m host_tools.lcd_render OUT.png` renders the simulated board's LCD after a few
hours of load on the delivered-energy item (the README's picture); `--ram HEX` renders a
given RAM image instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from host_tools.repo import firmware_module

G = firmware_module("lcd_glyphs")

BEZEL = (52, 56, 60)
GLASS = (197, 206, 180)
LIT = (24, 28, 26)
UNLIT = (184, 193, 167)  # a segment that is off still shows faintly on a reflective LCD

# The glass, in units of one pixel at scale 1.
WIDTH, HEIGHT = 344, 128
BORDER = 8  # the bezel around the glass
_SLANT = 0.07  # italic lean of the characters (x per unit of height)
_SEGMENTS = tuple((name, getattr(G, "SEG_" + name.upper())) for name in "abcdefg")


@dataclass
class Shape:
    """One thing on the glass that one RAM bit turns dark: a segment, a point, an annunciator."""

    name: str
    byte: int
    bit: int
    # ("poly", points), ("outline", (points, width)), ("ellipse", box), ("rect", box),
    # ("text", ((x, y), text, size)); all in glass units
    parts: list[tuple[str, tuple]] = field(default_factory=list)

    def draw(self, draw: ImageDraw.ImageDraw, fill, scale: float) -> None:
        for kind, args in self.parts:
            if kind == "poly":
                draw.polygon([(x * scale, y * scale) for x, y in args], fill=fill)
            elif kind == "outline":
                points, width = args
                pixels = [(x * scale, y * scale) for x, y in points]
                draw.polygon(pixels, outline=fill, width=max(1, round(width * scale)))
            elif kind == "ellipse":
                x0, y0, x1, y1 = args
                draw.ellipse((x0 * scale, y0 * scale, x1 * scale, y1 * scale), fill=fill)
            elif kind == "rect":
                x0, y0, x1, y1 = args
                draw.rectangle((x0 * scale, y0 * scale, x1 * scale, y1 * scale), fill=fill)
            elif kind == "text":
                (x, y), text, size = args
                draw.text((x * scale, y * scale), text, fill=fill, font=_font(size * scale), anchor="ls")
            else:
                raise ValueError(f"unknown shape part {kind!r}")

    def lit(self, ram: bytes) -> bool:
        return bool(ram[self.byte] & self.bit)


def _font(px: float) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=max(6, round(px)))
    except (OSError, ValueError):  # a Pillow without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def _bit_of(**encode_kw) -> tuple[int, int]:
    """(RAM byte, bit mask) that lcd_glyphs.encode_into() sets for one dot or flag."""
    ram = bytearray(G.RAM_SIZE)
    G.encode_into(ram, "", **encode_kw)
    hits = [(i, b) for i, b in enumerate(ram) if b]
    if len(hits) != 1 or hits[0][1] & (hits[0][1] - 1):
        raise ValueError(f"{encode_kw} does not set exactly one RAM bit")
    return hits[0]


def _hexagon_h(x1: float, x2: float, y: float, t: float) -> list[tuple[float, float]]:
    h = t / 2
    return [(x1, y), (x1 + h, y - h), (x2 - h, y - h), (x2, y), (x2 - h, y + h), (x1 + h, y + h)]


def _hexagon_v(x: float, y1: float, y2: float, t: float) -> list[tuple[float, float]]:
    h = t / 2
    return [(x, y1), (x + h, y1 + h), (x + h, y2 - h), (x, y2), (x - h, y2 - h), (x - h, y1 + h)]


def _lean(points: Iterable[tuple[float, float]], base_y: float) -> list[tuple[float, float]]:
    return [(x + (base_y - y) * _SLANT, y) for x, y in points]


def _digit(char: int, x: float, y: float, w: float, h: float, t: float) -> list[Shape]:
    """The seven segments of character `char` in the box (x, y, w, h), stroke t."""
    gap = t * 0.18
    left, right = x + t / 2, x + w - t / 2
    top, mid, bottom = y + t / 2, y + h / 2, y + h - t / 2
    paths = {
        "a": _hexagon_h(left + gap, right - gap, top, t),
        "g": _hexagon_h(left + gap, right - gap, mid, t),
        "d": _hexagon_h(left + gap, right - gap, bottom, t),
        "f": _hexagon_v(left, top + gap, mid - gap, t),
        "b": _hexagon_v(right, top + gap, mid - gap, t),
        "e": _hexagon_v(left, mid + gap, bottom - gap, t),
        "c": _hexagon_v(right, mid + gap, bottom - gap, t),
    }
    base = y + h
    return [Shape(f"char{char}.{name}", char, bit, [("poly", _lean(paths[name], base))]) for name, bit in _SEGMENTS]


def shapes() -> list[Shape]:
    """Every shape on the glass, in glass units (multiply by the scale for pixels)."""
    out: list[Shape] = []
    # identifier: two smaller characters on the left, bottom-aligned with the value
    id_w, id_h, id_t, id_y = 20.0, 36.0, 4.6, 50.0
    for i in range(G.N_ID):
        out += _digit(i, 16 + i * 28, id_y, id_w, id_h, id_t)
    # value: six characters, a decimal point after each
    v_w, v_h, v_t, v_y, v_x0, v_pitch = 28.0, 56.0, 6.0, 30.0, 96.0, 40.0
    for k in range(G.N_DIGITS):
        x = v_x0 + k * v_pitch
        out += _digit(G.N_ID + k, x, v_y, v_w, v_h, v_t)
        byte, bit = _bit_of(dots=1 << k)
        px = x + v_w + 1.5
        out.append(Shape(f"point{k}", byte, bit, [("ellipse", (px, v_y + v_h - 6, px + 6, v_y + v_h))]))
    # colons between value digits 1|2 and 3|4 (hh:mm:ss), one annunciator
    parts: list[tuple[str, tuple]] = []
    for k in (1, 3):
        cx = v_x0 + k * v_pitch + v_w + (v_pitch - v_w) / 2
        for cy in (v_y + v_h * 0.32, v_y + v_h * 0.68):
            lean = (v_y + v_h - cy) * _SLANT
            parts.append(("rect", (cx - 2.5 + lean, cy - 2.5, cx + 2.5 + lean, cy + 2.5)))
    out.append(Shape("colons", *_bit_of(ann=G.ANN_COL), parts))
    # the minus sign, between the identifier and the value
    out.append(Shape("minus", *_bit_of(ann=G.ANN_NEG), [("poly", _hexagon_h(72, 90, v_y + v_h / 2, 5.0))]))
    # top row: alarm, tariff tiers, battery, optical-port activity
    warning = [(16, 22), (26, 5), (36, 22)]
    out.append(
        Shape(
            "alarm",
            *_bit_of(ann=G.ANN_ALM),
            [("outline", (warning, 2.0)), ("rect", (25, 11, 27, 16.5)), ("rect", (25, 18, 27, 20))],
        )
    )
    for n, flag in enumerate((G.ANN_T1, G.ANN_T2, G.ANN_T3, G.ANN_T4)):
        out.append(Shape(f"T{n + 1}", *_bit_of(ann=flag), [("text", ((100 + n * 26, 20), f"T{n + 1}", 11))]))
    out.append(
        Shape(
            "battery",
            *_bit_of(ann=G.ANN_BAT),
            [
                ("rect", (222, 9, 246, 11)),
                ("rect", (222, 19, 246, 21)),
                ("rect", (222, 9, 224, 21)),
                ("rect", (244, 9, 246, 21)),
                ("rect", (246, 12.5, 249, 17.5)),
                ("rect", (226, 13, 233, 17)),
            ],
        )
    )
    out.append(Shape("comm", *_bit_of(ann=G.ANN_COMM), [("text", ((262, 20), "COMM", 11))]))
    # bottom row: direction arrows, then the units
    out.append(
        Shape(
            "delivered",
            *_bit_of(ann=G.ANN_DEL),
            [("poly", [(16, 102), (16, 114), (26, 108)]), ("text", ((30, 113), "DEL", 10))],
        )
    )
    out.append(
        Shape(
            "received",
            *_bit_of(ann=G.ANN_REC),
            [("poly", [(72, 102), (72, 114), (62, 108)]), ("text", ((76, 113), "REC", 10))],
        )
    )
    units = ((G.ANN_KWH, "kWh", 130), (G.ANN_KW, "kW", 170), (G.ANN_KVARH, "kvarh", 204), (G.ANN_KVAR, "kvar", 258))
    for flag, label, x in units:
        out.append(Shape(label, *_bit_of(ann=flag), [("text", ((x, 114), label, 13))]))
    return out


def render(ram: bytes, scale: float = 2.0) -> Image.Image:
    """The glass as an RGB image, `scale` pixels per glass unit."""
    if len(ram) != G.RAM_SIZE:
        raise ValueError(f"the HT1621 display RAM is {G.RAM_SIZE} bytes, not {len(ram)}")
    border = BORDER
    img = Image.new("RGB", (round((WIDTH + 2 * border) * scale), round((HEIGHT + 2 * border) * scale)), BEZEL)
    glass = Image.new("RGB", (round(WIDTH * scale), round(HEIGHT * scale)), GLASS)
    draw = ImageDraw.Draw(glass)
    for shape in shapes():
        shape.draw(draw, LIT if shape.lit(ram) else UNLIT, scale)
    img.paste(glass, (round(border * scale), round(border * scale)))
    return img


def render_png(ram: bytes, path: str | Path, scale: float = 2.0) -> Path:
    """Write the glass for this RAM image as a PNG; returns the path."""
    path = Path(path)
    render(bytes(ram), scale).save(path, format="PNG", optimize=True)
    return path


def _sim_ram() -> bytes:
    """The simulated board's LCD RAM on the delivered-energy item after some hours of load."""
    from host_tools.sim import SimBoard

    with SimBoard(seed=1) as board:
        board.set_load(240.0, 25.0, pf=0.98)  # 5.9 kW
        board.run(6 * 3600 + 37 * 60)
        for _ in range(60):
            text, _, _ = board.hw.lcd.display()
            if text[:2] in ("DE", "TX"):
                return board.hw.lcd.ram_bytes()
            board.run(1.0)
    raise RuntimeError("the delivered-energy item never came on the LCD")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m host_tools.lcd_render", description=__doc__.split("\n")[0])
    parser.add_argument("out", type=Path, help="PNG file to write")
    parser.add_argument("--ram", help="16 bytes of HT1621 RAM as hex (default: the simulated board's LCD)")
    parser.add_argument("--scale", type=float, default=2.0, help="pixels per glass unit (default 2)")
    args = parser.parse_args(argv)
    try:
        ram = bytes.fromhex(args.ram) if args.ram else _sim_ram()
        render_png(ram, args.out, args.scale)
    except (ValueError, RuntimeError, OSError) as exc:
        print(f"lcd_render: {exc}", file=sys.stderr)
        return 1
    text, dots, ann = G.decode(ram)
    print(f"{args.out}: {text!r} dots=0x{dots:02x} ann=0x{ann:04x}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
