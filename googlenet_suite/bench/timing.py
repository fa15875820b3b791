"""Timing in the measuring process: calls repeated until their spread settles or a time budget ends, the
statistics of the times, and the process's memory.

Repeats follow ``torch.utils.benchmark``'s adaptive autorange and pyperf: at least ``min_repeats`` calls, then
more until the interquartile range is within ``settle`` of the median, or ``budget_s`` of timed calls has
passed. A spread that never settles is not hidden: the caller flags it.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable


@dataclass(frozen=True, slots=True)
class Timing:
    """How long each measurement (one part, forward or training step, of one group) may take."""

    min_repeats: int = 10
    warmup: int = 2
    budget_s: float = 10.0  # seconds of timed calls, after min_repeats, before the measurement stops unsettled
    settle: float = 0.05  # stop as soon as IQR / median is within this
    max_repeats: int = 10_000

    def __post_init__(self):
        if self.min_repeats < 1 or self.warmup < 0 or self.budget_s < 0:
            raise ValueError(f"min_repeats >= 1, warmup >= 0 and budget_s >= 0. Received: {self}")


def quartiles(values: list[float]) -> tuple[float, float, float]:
    values = sorted(values)
    if len(values) < 2:
        return values[0], values[0], values[0]
    q1, q2, q3 = statistics.quantiles(values, n=4)
    return q1, q2, q3


def relative_iqr(values: list[float]) -> float:
    q1, median, q3 = quartiles(values)
    return (q3 - q1) / median if median > 0 else float("inf")


def stats(times: list[float]) -> dict:
    q1, _, q3 = quartiles(times)
    median = statistics.median(times)
    return {"median_s": median, "min_s": min(times), "max_s": max(times), "q1_s": q1, "q3_s": q3,
            "iqr_s": q3 - q1, "spread": (q3 - q1) / median if median > 0 else float("inf"), "repeats": len(times)}


def _time(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def autorange(fns: dict[str, Callable[[], object]], timing: Timing) -> dict[str, list[float]]:
    """Time several callables in alternation, each once per repeat, the order reversed every other repeat
    (a b, b a, a b, ...), so that load from other processes hits each alike; ``times[a][i]`` and
    ``times[b][i]`` were taken back to back. Stops at ``min_repeats`` once every callable's spread is within
    ``settle``, else when ``budget_s`` has passed (or at ``max_repeats``)."""
    for _ in range(timing.warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order, start, repeat = list(fns), time.perf_counter(), 0
    while repeat < timing.max_repeats:
        for name in (order if repeat % 2 == 0 else order[::-1]):
            times[name].append(_time(fns[name]))
        repeat += 1
        if repeat < timing.min_repeats:
            continue
        settled = all(relative_iqr(values) <= timing.settle for values in times.values())
        if settled or time.perf_counter() - start >= timing.budget_s:
            break
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """Median and quartiles ``(median, q1, q3)`` over repeats of ``numerator[i] / denominator[i]`` (two
    callables timed back to back by ``autorange``). Drift on a shared machine (both slower for a while)
    cancels in each pair; in the ratio of the two medians it does not."""
    q1, median, q3 = quartiles([a / b for a, b in zip(numerator, denominator, strict=True)])
    return median, q1, q3


# --------------------------------------------------------------------------- memory


def _status_field(name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(name + ":"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def rss_bytes() -> int | None:
    """This process's resident memory now (Linux), else None."""
    return _status_field("VmRSS")


def peak_rss_bytes() -> int | None:
    """This process's peak resident memory (Linux VmHWM), else None."""
    return _status_field("VmHWM")


def reset_peak_rss() -> None:
    """Start the peak afresh from the current resident memory, where the kernel allows it."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass
