"""The CLI's progress display on stderr (progress/ package): spinners and bars redrawn every
100 ms with the same terminal escape sequences, so captured stderr looks like upstream's."""

from __future__ import annotations

import shutil
import sys
import threading
import time

from .goformat import human_bytes

_FRAMES = [
    "\u280b",
    "\u2819",
    "\u2839",
    "\u2838",
    "\u283c",
    "\u2834",
    "\u2826",
    "\u2827",
    "\u2807",
    "\u280f",
]


class Spinner:
    def __init__(self, message: str) -> None:
        self.message = message
        self.started = time.monotonic()
        self.stopped: float | None = None

    def set_message(self, message: str) -> None:
        self.message = message

    def stop(self) -> None:
        if self.stopped is None:
            self.stopped = time.monotonic()

    def render(self) -> str:
        out = ""
        if self.message:
            out = self.message.strip() + " "
        if self.stopped is None:
            out += _FRAMES[int((time.monotonic() - self.started) * 10) % len(_FRAMES)] + " "
        return out


class Bar:
    def __init__(self, message: str, total: int, initial: int) -> None:
        self.message = message
        self.total = total
        self.initial = initial
        self.current = initial
        self.started = time.monotonic()
        self.stopped: float | None = time.monotonic() if initial >= total else None

    def set(self, value: int) -> None:
        value = min(value, self.total)
        self.current = value
        if value >= self.total and self.stopped is None:
            self.stopped = time.monotonic()

    def percent(self) -> float:
        return self.current / self.total * 100 if self.total > 0 else 0.0

    def render(self) -> str:
        width = shutil.get_terminal_size((80, 24)).columns if sys.stderr.isatty() else 80
        pre = (self.message.strip() + " " if self.message else "") + f"{self.percent():3.0f}%"
        if self.stopped is None:
            cur, mx = human_bytes(self.current), human_bytes(self.total)
            suf = " " * (6 - len(cur)) + cur + "/" + " " * (6 - len(mx)) + mx
        else:
            mx = human_bytes(self.total)
            suf = " " * (6 - len(mx)) + mx + " " * 7
        suf += " " * 18
        free = width - len(pre) - len(suf) - 5
        filled = int(free * self.percent() / 100)
        mid = " \u2595" + "\u2588" * max(filled, 0) + " " * max(free - filled, 0) + "\u258f "
        return pre + mid + suf


class Progress:
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.states: list[Spinner | Bar] = []
        self.pos = 0
        self.lock = threading.Lock()
        self.done = threading.Event()
        self.stopped = False
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def add(self, state: Spinner | Bar) -> None:
        with self.lock:
            self.states.append(state)

    def _loop(self) -> None:
        while not self.done.wait(0.1):
            with self.lock:
                self._render()

    def _render(self) -> None:
        out = ["\033[?2026h", "\033[?25l"]
        out += ["\033[A"] * max(self.pos - 1, 0)
        out.append("\033[1G")
        for i, state in enumerate(self.states):
            out.append(state.render() + "\033[K")
            if i < len(self.states) - 1:
                out.append("\n")
        out += ["\033[?25h", "\033[?2026l"]
        self.pos = len(self.states)
        try:
            self.stream.write("".join(out))
            self.stream.flush()
        except (OSError, ValueError):
            pass

    def _stop(self) -> tuple[bool, int]:
        with self.lock:
            if self.stopped:
                return False, self.pos
            self.stopped = True
            self.done.set()
            for state in self.states:
                if isinstance(state, Spinner):
                    state.stop()
            self._render()
            return True, self.pos

    def stop(self) -> None:
        stopped, _ = self._stop()
        if stopped:
            self.stream.write("\n")
            self.stream.flush()

    def stop_and_clear(self) -> None:
        self.stream.write("\033[?25l")
        stopped, pos = self._stop()
        if stopped:
            for i in range(pos):
                if i > 0:
                    self.stream.write("\033[A")
                self.stream.write("\033[2K\033[1G")
        self.stream.write("\033[?25h")
        self.stream.flush()
