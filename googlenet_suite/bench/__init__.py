"""``googlenet-suite bench``: the frameworks' speed side by side, each in a process of its own, with the
machine's limit beside every figure and a flag on every figure the machine's noise makes untrustworthy.

- :mod:`.session`: :func:`run` (the CLI's door): one ``worker`` process per framework x variant x batch x
  mode, the machine-wide limit, the flags;
- :mod:`.worker`: the measuring process, and the protocol each ``impl_<key>.bench`` implements;
- :mod:`.timing`: repeats until the spread settles or a budget ends, statistics, memory;
- :mod:`.machine`: the CPU, its theoretical peak, how busy the other processes kept our cores;
- :mod:`.report`: the table and the plot.
"""

from shared_spec import contract, protocol

from .report import plot, render_result
from .session import PRESETS, RATIO_LIMIT, run
from .timing import Timing, autorange, paired_ratio
from .worker import EXPORT, PeakProtocol, Threads

SOURCES = protocol.BENCH_SOURCES
MODES = protocol.BENCH_MODES
DEVICES = contract.DEVICES

__all__ = ["DEVICES", "EXPORT", "MODES", "PRESETS", "PeakProtocol", "RATIO_LIMIT", "SOURCES",
           "Threads", "Timing", "autorange", "paired_ratio", "plot", "render_result", "run"]
