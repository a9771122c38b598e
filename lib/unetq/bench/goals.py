"""The study's performance goals, checked against ratios measured side by side in one run.

A :class:`Goal` is a measured ratio, the target it must reach and the direction; :func:`verdict`
prints one ``PASS``/``FAIL`` line per goal plus a count, and :func:`load_note` a warning when other
processes used the CPU while the benchmark ran (a busy machine makes a FAIL inconclusive, not a
PASS suspect: interleaved timing hits every case alike). ``make bench`` prints both; nothing here
is a test: timings never decide a test.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..machine import busy_warning


@dataclass(frozen=True)
class Goal:
    """``measured`` against ``target``: met when ``measured >= target`` (``at_least``) or
    ``measured <= target``; ``unit`` is printed after both numbers (``"x"`` for ratios)."""

    name: str
    measured: float
    target: float
    at_least: bool = True
    unit: str = "x"

    @property
    def measured_ok(self) -> bool:
        return self.measured is not None and not math.isnan(float(self.measured))

    @property
    def met(self) -> bool:
        if not self.measured_ok:
            return False
        return float(self.measured) >= self.target if self.at_least else float(self.measured) <= self.target

    def line(self) -> str:
        sign = ">=" if self.at_least else "<="
        if not self.measured_ok:
            return f"NOT MEASURED  {self.name} (goal {sign} {self.target:g}{self.unit})"
        return (f"{'PASS' if self.met else 'FAIL':<12}  {self.name}: {float(self.measured):.3g}{self.unit} "
                f"(goal {sign} {self.target:g}{self.unit})")


def verdict(goals: list[Goal]) -> str:
    """One line per goal and ``N of M goals met`` (goals that could not be measured count as not met)."""
    lines = [g.line() for g in goals]
    lines.append(f"{sum(g.met for g in goals)} of {len(goals)} goals met")
    return "\n".join(lines)


def load_note(threads: int, busy_before: float | None, busy_after: float | None) -> str:
    """A warning naming the busiest sample when other processes used half a core or more
    before or after the timing, else ``""``."""
    samples = [b for b in (busy_before, busy_after) if b is not None]
    return busy_warning(threads, max(samples)) if samples else busy_warning(threads)
