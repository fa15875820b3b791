"""The machine a bench runs on: its CPU, the cores this process may use, a theoretical peak read from the
CPU's flags and clock, and how busy the other processes kept those cores while something was timed.

Linux only where it reads ``/proc``; elsewhere each reading is None and says so, never a guessed number.
"""

from __future__ import annotations

import os
import platform
import time
from dataclasses import dataclass
from pathlib import Path

from shared_spec import protocol

CPUINFO = Path("/proc/cpuinfo")
STAT = Path("/proc/stat")
#: fp32 lanes of the widest vector unit the flags name; an FMA is two flops per lane, and a core is
#: assumed to issue two vector FMAs per cycle (Intel Xeon with AVX-512, AMD Zen 4 and 5, most AVX2 cores)
VECTOR_LANES = (("avx512f", 16), ("avx2", 8), ("avx", 8), ("sse2", 4))
FMA_UNITS = 2
#: bf16 flops per cycle and core beyond fp32: AMX's tile unit (1024), AVX512_BF16's dot product (2 x fp32)
BF16_PATHS = (("amx_bf16", lambda fp32: 1024.0), ("avx512_bf16", lambda fp32: 2 * fp32))


cores = protocol.cores  # the cores this process may run on (its affinity)


def _cpuinfo() -> dict[str, str]:
    """The first processor's fields of /proc/cpuinfo (empty where there is none)."""
    try:
        text = CPUINFO.read_text()
    except OSError:
        return {}
    fields = {}
    for line in text.split("\n\n")[0].splitlines():
        key, _, value = line.partition(":")
        fields[key.strip()] = value.strip()
    return fields


@dataclass(frozen=True, slots=True)
class Estimate:
    """Cores x clock x flops per cycle: what the vector units could do at the clock /proc/cpuinfo shows."""

    fp32_gflops: float
    bf16_gflops: float | None
    how: str


def describe() -> dict:
    """The CPU's name, the cores used, its clock and vector flags, and the theoretical estimate (or why none)."""
    info = _cpuinfo()
    flags = set(info.get("flags", "").split())
    mhz = float(info["cpu MHz"]) if info.get("cpu MHz", "").replace(".", "", 1).isdigit() else None
    machine = {"cpu": info.get("model name") or platform.processor() or platform.machine(), "cores": cores(),
               "cpu_count": os.cpu_count(), "mhz": mhz,
               "flags": sorted(flags & {"avx512f", "avx2", "fma", "avx512_bf16", "amx_bf16", "amx_tile"})}
    estimate = theoretical(flags, mhz, machine["cores"])
    machine["estimate"] = None if estimate is None else {"float32": estimate.fp32_gflops,
                                                         "bfloat16": estimate.bf16_gflops, "how": estimate.how}
    return machine


def theoretical(flags: set[str], mhz: float | None, n_cores: int) -> Estimate | None:
    """None where the clock or the vector flags cannot be read."""
    lanes = next((n for flag, n in VECTOR_LANES if flag in flags), None)
    if mhz is None or lanes is None:
        return None
    fma = 2 if "fma" in flags or "avx512f" in flags else 1
    per_cycle = lanes * fma * FMA_UNITS
    bf16 = next((rule(per_cycle) for flag, rule in BF16_PATHS if flag in flags), None)
    ghz = mhz / 1000 * n_cores
    unit = next(flag for flag, n in VECTOR_LANES if n == lanes and flag in flags)
    how = (f"{n_cores} cores x {mhz / 1000:.2f} GHz (/proc/cpuinfo) x {per_cycle} fp32 flops/cycle ({lanes} lanes "
           f"of {unit} x {fma} (FMA) x {FMA_UNITS} units, assumed)")
    return Estimate(ghz * per_cycle, ghz * bf16 if bf16 else None, how)


# --------------------------------------------------------------------------- how busy the others kept our cores


def _busy_seconds(cpus: set[int]) -> float | None:
    """Non-idle time (steal included: another VM had the core) of ``cpus`` since boot, from /proc/stat."""
    try:
        lines = STAT.read_text().splitlines()
    except OSError:
        return None
    hz, busy = os.sysconf("SC_CLK_TCK"), 0
    for line in lines:
        name, *values = line.split()
        if name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in cpus:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, values[:8])
            busy += user + nice + system + irq + softirq + steal
    return busy / hz


class Window:
    """``with Window() as w: ...timed calls...``; then ``w.reading()``: the wall time, this process's CPU time,
    the other processes' share of the cores this process may use (in cores: 1.0 = one core kept busy all the
    time) and the 1-minute load average before and after."""

    def __enter__(self) -> "Window":
        self._cpus = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
        self._load_before = os.getloadavg()[0]
        self._busy = _busy_seconds(self._cpus)
        self._own = _own_cpu()
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        self._wall = time.perf_counter() - self._start
        busy = _busy_seconds(self._cpus)
        self._own = _own_cpu() - self._own
        self._busy = None if busy is None or self._busy is None else busy - self._busy
        self._load_after = os.getloadavg()[0]

    def reading(self) -> dict:
        others = None if self._busy is None or self._wall <= 0 else max(0.0, (self._busy - self._own) / self._wall)
        return {"wall_s": self._wall, "own_cpu_s": self._own, "others_cores": others,
                "loadavg": [self._load_before, self._load_after], "cores": len(self._cpus)}


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system
