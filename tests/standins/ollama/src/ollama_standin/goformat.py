"""Ollama's human-readable formats (format/ package), table layout and Go value printing."""

from __future__ import annotations

import math
import time
import unicodedata
from typing import Any

from .gojson import GoMap, format_float_g, go_quote

KILOBYTE = 1000
MEGABYTE = KILOBYTE * 1000
GIGABYTE = MEGABYTE * 1000
TERABYTE = GIGABYTE * 1000
GIBIBYTE = 1024**3


def human_bytes(size: int) -> str:
    """format.HumanBytes: decimal units, no decimals from 10 up."""
    unit = ""
    value = 0.0
    for limit, name in ((TERABYTE, "TB"), (GIGABYTE, "GB"), (MEGABYTE, "MB"), (KILOBYTE, "KB")):
        if size >= limit:
            value, unit = size / limit, name
            break
    else:
        return f"{size} B"
    if value >= 10:
        return f"{int(value)} {unit}"
    if value != math.trunc(value):
        return f"{_go_round(value, 1)} {unit}"
    return f"{int(value)} {unit}"


def _go_round(value: float, places: int) -> str:
    # fmt's %.1f rounds half to even on the binary value, like Python's format.
    return f"{value:.{places}f}"


def human_bytes2(size: int) -> str:
    """format.HumanBytes2: binary units with one decimal."""
    for limit, unit in ((GIBIBYTE, "GiB"), (1024**2, "MiB"), (1024, "KiB")):
        if size >= limit:
            return f"{size / limit:.1f} {unit}"
    return f"{size} B"


def human_number(count: int) -> str:
    """format.HumanNumber: the parameter-size label (8.2B, 567.23M, 2K)."""
    if count >= 1_000_000_000:
        number = count / 1_000_000_000
        return f"{number:.0f}B" if number == math.floor(number) else f"{number:.1f}B"
    if count >= 1_000_000:
        number = count / 1_000_000
        return f"{number:.0f}M" if number == math.floor(number) else f"{number:.2f}M"
    if count >= 1_000:
        return f"{count / 1_000:.0f}K"
    return str(count)


def _human_duration(seconds_f: float) -> str:
    seconds = int(seconds_f)
    if seconds < 1:
        return "Less than a second"
    if seconds == 1:
        return "1 second"
    if seconds < 60:
        return f"{seconds} seconds"
    minutes = int(seconds_f / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = round(seconds_f / 3600)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds_f / 3600) // 24 // 365} years"


def human_time(epoch_ns: int | None, zero_value: str, now_ns: int | None = None) -> str:
    """format.HumanTime: '5 minutes ago', 'About a minute from now', 'Forever'."""
    if epoch_ns is None:
        return zero_value
    now_ns = time.time_ns() if now_ns is None else now_ns
    delta = (now_ns - epoch_ns) / 1e9
    if int(delta / 3600) // 24 // 365 < -20:
        return "Forever"
    if delta < 0:
        return _human_duration(-delta) + " from now"
    return _human_duration(delta) + " ago"


# ----------------------------------------------------------------------------- tables


def display_width(text: str) -> int:
    width = 0
    for ch in text:
        if unicodedata.combining(ch):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


def _wrap(text: str, limit: int) -> list[str]:
    """tablewriter's WrapString: wrap on spaces; a longer word stays whole."""
    words = text.split()
    if not words:
        return [text]
    lines: list[str] = []
    current = ""
    for word in words:
        candidate = word if not current else current + " " + word
        if current and display_width(candidate) > limit:
            lines.append(current)
            current = word
        else:
            current = candidate
    lines.append(current)
    return lines


def render_table(
    rows: list[list[str]], header: list[str] | None = None, col_width: int = 30
) -> str:
    """olekukonko/tablewriter v0.0.5 as Ollama configures it: no border, no whitespace mode,
    four-space padding, left aligned; every row cell is followed by the padding (so lines end
    with four spaces) and the last header cell by one space."""
    padding = "    "
    cells: list[list[list[str]]] = []
    widths: dict[int, int] = {}

    def measure(col: int, text: str) -> list[str]:
        lines = text.split("\n")
        wrapped: list[str] = []
        max_width = max(display_width(line) for line in lines)
        limit = min(max_width, col_width)
        new_max = limit
        for i, para in enumerate(lines):
            para_lines = _wrap(para, limit)
            for line in para_lines:
                new_max = max(new_max, display_width(line))
            if i > 0:
                wrapped.append(" ")
            wrapped.extend(para_lines)
        if widths.get(col, 0) < new_max or col not in widths:
            widths[col] = max(widths.get(col, 0), new_max)
        return wrapped

    header_cells = [measure(i, h.upper()) for i, h in enumerate(header)] if header else []
    for row in rows:
        cells.append([measure(i, value) for i, value in enumerate(row)])
    ncols = max([len(header or [])] + [len(r) for r in rows]) if (rows or header) else 0

    out: list[str] = []
    if header:
        height = max(len(c) for c in header_cells)
        for line_no in range(height):
            parts = []
            for col in range(ncols):
                text = (
                    header_cells[col][line_no]
                    if col < len(header_cells) and line_no < len(header_cells[col])
                    else ""
                )
                pad = " " if col == ncols - 1 else padding
                parts.append(text + " " * (widths.get(col, 0) - display_width(text)) + pad)
            out.append("".join(parts))
    for row in cells:
        height = max((len(c) for c in row), default=1)
        for line_no in range(height):
            parts = []
            for col, cell in enumerate(row):
                text = cell[line_no] if line_no < len(cell) else "  "
                parts.append(text + " " * (widths.get(col, 0) - display_width(text)) + padding)
            out.append("".join(parts))
    return "".join(line + "\n" for line in out)


# ------------------------------------------------------------------------ Go values


def go_v(value: Any) -> str:
    """fmt's %v for values decoded from JSON (float64, string, bool, slices, maps)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float_g(value)
    if isinstance(value, int):
        return str(value)
    if value is None:
        return "<nil>"
    if isinstance(value, list):
        return "[" + " ".join(go_v(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items()) if isinstance(value, GoMap) else value.items()
        return "map[" + " ".join(f"{k}:{go_v(v)}" for k, v in items) + "]"
    return str(value)


def go_sharp_v(value: Any) -> str:
    """fmt's %#v for the same values."""
    if isinstance(value, str):
        return go_quote(value)
    if isinstance(value, list):
        return "[]interface {}{" + ", ".join(go_sharp_v(v) for v in value) + "}"
    return go_v(value)
