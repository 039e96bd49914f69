# Copyright (c) localllm.fleet contributors
# Apache License 2.0 (see galaxy.yml)
"""One-line progress reports for long transfers (pulls, downloads, bundle imports).

Sizes use decimal units as `ollama list` and `ollama pull` print them (1 GB = 10^9 bytes),
so the numbers an operator sees in Ansible's output match what Ollama's own tools say.
"""

from __future__ import annotations

import os
import shutil

_UNITS = ((10**12, "TB"), (10**9, "GB"), (10**6, "MB"), (10**3, "KB"))


def human_bytes(count: int | float) -> str:
    """`815 B`, `2.5 KB`, `12.3 GB`, `404 GB`: one decimal below 100 of a unit."""
    count = max(float(count), 0.0)
    for size, unit in _UNITS:
        if count >= size:
            value = count / size
            return f"{value:.0f} {unit}" if value >= 100 else f"{value:.1f} {unit}"
    return f"{count:.0f} B"


def human_duration(seconds: float) -> str:
    """`45s`, `3m05s`, `2h07m`."""
    seconds = max(round(seconds), 0)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def progress_line(label: str, completed: int, total: int | None, rate: float | None = None) -> str:
    """`deepseek-r1:32b: 12.3 GB of 19.9 GB (62%), 85.1 MB/s, about 1m30s left`.

    `total` None or 0 means unknown; `rate` is bytes per second over the last slice.
    """
    if total:
        completed = min(completed, total)
        percent = int(completed * 100 // total)
        line = f"{label}: {human_bytes(completed)} of {human_bytes(total)} ({percent}%)"
    else:
        line = f"{label}: {human_bytes(completed)}"
    if rate is not None and rate > 0:
        line += f", {human_bytes(rate)}/s"
        if total and completed < total:
            line += f", about {human_duration((total - completed) / rate)} left"
    return line


def free_bytes(path: str) -> int | None:
    """Free bytes on the file system that holds `path` (or its nearest existing parent)."""
    current = os.path.abspath(path)
    while not os.path.exists(current):
        parent = os.path.dirname(current)
        if parent == current:
            return None
        current = parent
    try:
        return shutil.disk_usage(current).free
    except OSError:
        return None


def space_problem(path: str, needed: int, what: str) -> str | None:
    """`not enough space in <dir>: <what> needs X, Y free`, or None when it fits (or the
    free space cannot be read: the write itself will then say)."""
    free = free_bytes(path)
    if free is None or needed <= free:
        return None
    return (
        f"not enough space in {path}: {what} needs {human_bytes(needed)}, {human_bytes(free)} free"
    )
