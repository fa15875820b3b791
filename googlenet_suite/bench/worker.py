"""The measuring process: ``python -m googlenet_suite.bench.worker JOB RESULT``.

Each framework, and each group (variant x batch x mode) of it, is measured in a fresh process of its own,
started by :mod:`googlenet_suite.bench.session`: its peak RSS is its own, no framework's state, import order or
OpenMP threads are left over from another, and a crash costs one group's rows. ``JOB`` is a pickled
:class:`Measure` or :class:`Export` written by the session; ``RESULT`` receives one JSON object.

Each framework plugs in through ``impl_<key>.bench`` (found through the registry):

- ``runner(spec, *, source, mode, device, batch, train)``: an object with ``forward()`` (one eval-mode forward of
  a batch already on the device, synchronised), ``train_step()`` (forward + backward + plain SGD, synchronised),
  ``peak_gpu_bytes()``, ``device`` and ``notes`` (what "fast" meant there);
- ``set_threads(intra, inter)``: the framework's intra- and inter-op threads, set before any work, read back;
- ``peak_gflops(device, dtype, *, matmul, conv, repeats)``: the faster of a large matmul and a 3x3
  convolution, in GFLOP/s; None where ``dtype`` has no fast path;
- ``resolve_device(device)``, and ``MODES`` where it has fewer than :data:`MODES`;
- ``HANDWRITTEN``: variant -> the framework's hand-written network of it (source ``hand``); a variant not in it
  has no ``hand`` row, and the result's ``notes`` say so.
"""

from __future__ import annotations

import json
import pickle
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import shared_spec
from shared_spec import protocol

from .. import frameworks as fw_registry
from .. import harness
from . import machine
from .timing import Timing, autorange, peak_rss_bytes, reset_peak_rss, rss_bytes, stats

MODES = protocol.BENCH_MODES
PEAK_DTYPES = ("float32", "bfloat16")
EXPORT = "export:"  # an onnxruntime row's source: "export:torch" is PyTorch's exporter's file
PARTS = {"forward": "forward", "train": "train_step"}  # a row's part -> the runner's method
#: the distributions whose versions a worker reports, where it imported them
VERSIONED = ("torch", "tensorflow", "keras", "mxnet", "onnxruntime", "onnx", "numpy")


@dataclass(frozen=True, slots=True)
class Threads:
    """Intra-op threads (one operator's parallel loops), inter-op threads (operators run side by side), and how
    an idle thread waits for work: ``PASSIVE`` (it sleeps) or ``ACTIVE`` (it spins). Spinning threads keep
    a core that a busy machine needs for the one thread that still works: torch's eager d2l forward ran at
    700-3000 ms a call with OpenMP's default or ACTIVE waits and at 55 ms with PASSIVE, on the 2-core machine
    at load average 10 (docs/benchmarks.md)."""

    intra: int
    inter: int = 1
    wait: str = "PASSIVE"

    def env(self) -> dict[str, str]:
        """What the measuring process's environment says before any framework is imported (OpenMP reads it
        once; MXNet's engine workers and TensorFlow's pools too; onnxruntime's sessions read the wait policy)."""
        intra, inter = str(self.intra), str(self.inter)
        return {"OMP_NUM_THREADS": intra, "MKL_NUM_THREADS": intra, "TF_NUM_INTRAOP_THREADS": intra,
                "TF_NUM_INTEROP_THREADS": inter, "MXNET_CPU_WORKER_NTHREADS": inter, "OMP_WAIT_POLICY": self.wait}

    def record(self) -> dict:
        return {"intra": self.intra, "inter": self.inter, "wait": self.wait}


@dataclass(frozen=True, slots=True)
class PeakProtocol:
    """The kernels each framework's ``peak_gflops`` times: an ``matmul`` x ``matmul`` fp32 matmul and a 3x3
    convolution of ``conv`` = (batch, channels in = out, side), best of ``repeats``."""

    matmul: int
    conv: tuple[int, int, int]
    repeats: int

    @classmethod
    def protocol(cls) -> "PeakProtocol":
        """The protocol's constants, read at call time (tests make them small)."""
        return cls(protocol.PEAK_MATMUL, tuple(protocol.PEAK_CONV), protocol.PEAK_REPEATS)


@dataclass(frozen=True, slots=True)
class Measure:
    """One group: ``sources`` of one framework's model of ``spec`` at one batch and mode, timed in alternation."""

    framework: str
    spec: shared_spec.Spec
    sources: tuple[str, ...]
    mode: str
    batch: int
    device: str
    train: bool
    threads: Threads
    timing: Timing
    files: tuple[tuple[str, str], ...] = ()  # (export source, ONNX file) for onnxruntime's export rows
    peak: PeakProtocol | None = None  # also time the framework's peak kernels, after the group


@dataclass(frozen=True, slots=True)
class Export:
    """``framework``'s model of ``spec`` (seeded weights: speed does not depend on them) written by its ONNX
    exporter to ``path``."""

    framework: str
    spec: shared_spec.Spec
    path: str
    threads: Threads


def _first_line(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def _versions() -> dict[str, str]:
    return {name: getattr(sys.modules[name], "__version__", "?") for name in VERSIONED if name in sys.modules}


def _bench_module(key: str):
    fw_registry.load(key, tensorflow_backend=True)  # FrameworkMissing: the framework's status, not a row
    return fw_registry.part(key, "bench")


def group(module, job: Measure) -> list[dict]:
    """One row per source, the sources timed in alternation (``timing.autorange``); each part's timing comes
    with how busy the other processes kept this process's cores meanwhile (``machine.Window``)."""
    macs = shared_spec.analyze(job.spec).macs
    files = dict(job.files)
    runners, rows = {}, {}
    for source in _sources(module, job):
        base = {"framework": job.framework, "variant": job.spec.variant, "source": source, "mode": job.mode,
                "batch": job.batch}
        try:
            start = time.perf_counter()
            extra = {"model_file": files[source]} if source.startswith(EXPORT) else {}
            runner = module.runner(job.spec, source=source.split(":")[0], mode=job.mode, device=job.device,
                                   batch=job.batch, train=job.train, **extra)
            rows[source] = {**base, "device": runner.device, "notes": runner.notes,
                            "setup_s": round(time.perf_counter() - start, 3)}
            if getattr(runner, "precision", None) is not None:  # mode bf16: its logits against fp32
                rows[source]["bf16_vs_fp32"] = runner.precision
            runners[source] = runner
        except Exception as exc:  # a row that says what failed; the other rows still run
            rows[source] = {**base, "error": _first_line(exc)}
    try:
        for part, method in PARTS.items():
            if part == "train" and not job.train or not runners:
                continue
            with machine.Window() as window:
                times = autorange({s: getattr(r, method) for s, r in runners.items()}, job.timing)
            reading = window.reading()
            work = protocol.TRAIN_WORK if part == "train" else 1  # backward: input and weight gradients
            for source in runners:
                figures = stats(times[source])
                images = job.batch / figures["median_s"]
                rows[source][part] = {**figures, "images_per_s": images, "gflops": 2 * work * macs * images / 1e9,
                                      "times_s": times[source], "machine": reading}
                if part == "forward":
                    rows[source][part]["latency_ms"] = figures["median_s"] * 1000
    except Exception as exc:
        return [{**{k: rows[s][k] for k in ("framework", "variant", "source", "mode", "batch")},
                 "error": _first_line(exc)} for s in rows]
    for source, runner in runners.items():
        rows[source]["peak_gpu_bytes"] = runner.peak_gpu_bytes()
    return list(rows.values())


def _sources(module, job: Measure) -> tuple[str, ...]:
    """The job's sources less ``hand`` where the framework has no hand-written network of the variant."""
    return tuple(s for s in job.sources if s != "hand" or job.spec.variant in getattr(module, "HANDWRITTEN", {}))


def _notes(module, job: Measure) -> list[str]:
    if "hand" not in job.sources or "hand" in _sources(module, job):
        return []
    return [f"{job.framework} has no hand-written {job.spec.variant} (it has "
            f"{', '.join(getattr(module, 'HANDWRITTEN', {})) or 'none'}): spec-built rows only"]


def measure(job: Measure) -> dict:
    module = _bench_module(job.framework)
    if job.mode not in getattr(module, "MODES", MODES):  # onnxruntime: no bf16
        return {"status": "skipped"}
    threads = {**module.set_threads(job.threads.intra, job.threads.inter), "wait": job.threads.wait}
    module.resolve_device(job.device)  # a device the framework cannot use: bad input (exit 2)
    after_import = rss_bytes()
    reset_peak_rss()
    rows = group(module, job)
    peak_rss = peak_rss_bytes()
    for row in rows:
        row.update(threads=threads, rss_after_import_bytes=after_import)
        if "error" not in row:
            row["peak_rss_bytes"] = peak_rss  # the group's: spec-built and hand-written live together
    peaks = None
    if job.peak is not None:
        with machine.Window() as window:  # a limit measured on a busy machine is too low: said so
            peaks = {dtype: module.peak_gflops(job.device, dtype, matmul=job.peak.matmul, conv=job.peak.conv,
                                               repeats=job.peak.repeats) for dtype in PEAK_DTYPES}
        peaks["machine"] = window.reading()
    return {"status": "ok", "rows": rows, "peaks": peaks, "threads": threads, "versions": _versions(),
            "notes": _notes(module, job)}


def export(job: Export) -> dict:
    mod = fw_registry.load(job.framework)
    harness.export_onnx(job.framework, mod.build(job.spec, device="cpu", seed=0), job.path, aux=False)
    return {"status": "ok", "path": job.path, "versions": _versions()}


JOBS = {Measure: measure, Export: export}


def main(argv: list[str] | None = None) -> int:
    job_file, result_file = argv if argv is not None else sys.argv[1:]
    job = pickle.loads(Path(job_file).read_bytes())  # written by this suite's session, never by a user
    try:
        result = JOBS[type(job)](job)
    except fw_registry.FrameworkMissing as exc:
        result = {"status": "missing", "hint": str(exc)}
    except shared_spec.InputError as exc:  # a device the framework cannot use: the command's exit 2
        result = {"status": "bad_input", "error": str(exc).splitlines()[0]}
    except Exception as exc:  # the group's rows say what failed; the session goes on
        result = {"status": "error", "error": _first_line(exc)}
    Path(result_file).write_text(json.dumps(result))
    return 0


if __name__ == "__main__":  # run as a script, this file is __main__: the job's classes are the package's
    from googlenet_suite.bench.worker import main as package_main

    sys.exit(package_main())
