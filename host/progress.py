"""Progress reporting on standard error for long-running commands."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """A progress line: redrawn in place on a terminal, a line per 10% otherwise (logs, CI)."""

    def __init__(self, total: int, label: str, stream: TextIO | None = None,
                 enabled: bool = True) -> None:
        self.total = max(total, 1)
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = self.stream.isatty()
        self.start = time.perf_counter()
        self._next_redraw = 0.0
        self._next_decile = 1

    def update(self, done: int) -> None:
        if not self.enabled:
            return
        if self.tty:
            now = time.perf_counter()
            if now < self._next_redraw and done < self.total:
                return
            self._next_redraw = now + 0.2
            self.stream.write("\r" + self._line(done))
            self.stream.flush()
        elif done * 10 >= self._next_decile * self.total:
            while done * 10 >= self._next_decile * self.total:
                self._next_decile += 1
            self.stream.write(self._line(done) + "\n")
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def _line(self, done: int) -> str:
        elapsed = time.perf_counter() - self.start
        rate = done / elapsed if elapsed > 0 else 0.0
        width = 30
        filled = width * done // self.total
        bar = "#" * filled + "." * (width - filled)
        return (f"{self.label} [{bar}] {done:,}/{self.total:,} "
                f"({100 * done // self.total}%) {rate:,.0f}/s")
