"""A PNG of a day's load profile: energy delivered (import) up, received (export) down,
one bar per interval, as the meter recorded it (read over the optical port).

    from host_tools.profile_plot import plot_profile
    plot_profile(rows, "load-profile.png", title="2026-06-17")

`rows` are `meterctl profile --json` rows: dicts with `end` (a datetime or ISO text),
`delivered_wh`, `received_wh` and `interval_min`, and `flags` (loadprofile.py's names):
an interval whose clock was set is marked above the plot (CLOCK_BACKWARD in red: the
intervals after it may repeat earlier times), one recorded without a known time in grey
(CLOCK_INVALID). Pillow draws it (no plotting library needed on a bench laptop).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

W, H = 960, 420
LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50
IMPORT = (200, 90, 40)
EXPORT = (40, 150, 80)
GRID = (225, 225, 225)
INK = (30, 30, 30)
BACKWARD = (200, 30, 30)
FORWARD = (230, 150, 30)
INVALID = (150, 150, 150)


def _time(value: Any) -> datetime:
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value))


def plot_profile(rows: Sequence[dict[str, Any]], path: str | Path, title: str = "") -> Path:
    """Draw the rows as average kW per interval; returns the path written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    font = ImageFont.load_default()
    kw_in, kw_out = [], []
    for r in rows:
        hours = (r.get("interval_min") or 15) / 60
        kw_in.append(r["delivered_wh"] / 1000 / hours)
        kw_out.append(r["received_wh"] / 1000 / hours)
    top = max([1.0, *kw_in])
    bottom = max([1.0, *kw_out])
    plot_h = H - TOP - BOTTOM
    zero = TOP + plot_h * top / (top + bottom)
    scale = plot_h / (top + bottom)

    def y(kw: float) -> float:
        return zero - kw * scale

    step = 1 if top + bottom <= 8 else 2 if top + bottom <= 16 else 5
    k = -int(bottom // step) * step
    while k <= top:
        d.line([(LEFT, y(k)), (W - RIGHT, y(k))], fill=GRID)
        d.text((8, y(k) - 6), f"{k:+d} kW" if k else "0 kW", fill=INK, font=font)
        k += step
    n = max(len(rows), 1)
    bar = (W - LEFT - RIGHT) / n
    for i, r in enumerate(rows):
        x0 = LEFT + i * bar + 1
        x1 = LEFT + (i + 1) * bar - 1
        if kw_in[i] > 0:
            d.rectangle([x0, y(kw_in[i]), x1, zero], fill=IMPORT)
        if kw_out[i] > 0:
            d.rectangle([x0, zero, x1, y(-kw_out[i])], fill=EXPORT)
        flags = r.get("flags") or ()
        mark = BACKWARD if "CLOCK_BACKWARD" in flags else FORWARD if "CLOCK_CHANGED" in flags else None
        if "CLOCK_INVALID" in flags:
            d.rectangle([x0, TOP - 4, x1, TOP - 1], fill=INVALID)
        if mark is not None:
            d.rectangle([x0, TOP - 9, x1, TOP - 5], fill=mark)
        end = _time(r["end"])
        if end.minute == 0 and end.hour % 3 == 0:
            d.line([(x1, H - BOTTOM), (x1, H - BOTTOM + 5)], fill=INK)
            d.text((x1 - 14, H - BOTTOM + 8), end.strftime("%H:%M"), fill=INK, font=font)
    d.line([(LEFT, zero), (W - RIGHT, zero)], fill=INK)
    heading = "Load profile" + (f", {title}" if title else "") + " (average kW per interval, as the meter recorded it)"
    d.text((LEFT, 12), heading, fill=INK, font=font)
    d.rectangle([W - 260, 10, W - 250, 20], fill=IMPORT)
    d.text((W - 244, 10), "delivered (import)", fill=INK, font=font)
    d.rectangle([W - 130, 10, W - 120, 20], fill=EXPORT)
    d.text((W - 114, 10), "received (export)", fill=INK, font=font)
    img.save(path)
    return path
