"""The bench and training protocol every framework follows: what a bench runner measures and how, what a
train loop reports. Framework-free, like the builder contract (:mod:`shared_spec.contract`) it sits beside.

- Bench runners (``impl_X.bench``): the sources and modes a runner takes (:func:`check_bench_options`),
  the refusal of a bf16 mode where the device has no bf16 instructions, the reduced-precision logits
  against fp32, the machine's reachable peak (a square matmul and a 3x3 convolution, the faster of the
  two), the model a runner times (spec-built or hand-written), and compiling before the timed calls.
- Fast-mode A/B scripts (``python -m impl_X.fast_modes``): their options (:func:`ab_parser`,
  :func:`chosen_candidates`) and their timing and report (:func:`ab_compare`).
- Train loops (``impl_X.train``): :class:`EpochStats`, what one epoch reports.
"""

from __future__ import annotations

import argparse
import math
import os
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from .contract import ContractError, _received
from .spec import Spec


# --------------------------------------------------------------------------- bench runners

BENCH_SOURCES = ("spec", "hand")
#: plain: eager fp32 as a beginner writes it; fast: the framework's fastest fp32 path; bf16: that path computing
#: in bfloat16 (fp32 weights), where the device has bf16 instructions
BENCH_MODES = ("plain", "fast", "bf16")
#: the square fp32 matmul every ``bench.peak_gflops`` times: large enough to reach a BLAS's steady rate
#: (2 x 2048^3 = 17 GFLOP, about 0.1 s at 150 GFLOP/s), small enough to measure in a second
PEAK_MATMUL = 2048
#: the 3x3 convolution (padding 1) every ``peak_gflops`` times beside the matmul, as (batch, channels in = out,
#: side): GoogLeNet's work is convolutions, which the frameworks run on oneDNN even where their matmul goes
#: to a BLAS that is slower on this CPU (on the 2-core AMD EPYC: torch's matmul about 210 GFLOP/s against its
#: convolution's 555, MXNet's 130 against 270); the peak is the faster of the two. 2 x 8 x 256^2 x 9 x 28^2 =
#: 7.4 GFLOP
PEAK_CONV = (8, 256, 28)
PEAK_REPEATS = 5
#: a training step's work as a multiple of the forward's: the backward pass computes the gradients of
#: the inputs and of the weights, each about one forward's multiply-adds
TRAIN_WORK = 3


def check_bench_options(source: str, mode: str, batch: int, *, sources: tuple[str, ...] = BENCH_SOURCES) -> None:
    """The arguments every framework's ``bench.runner`` takes (``sources``: those this runner has)."""
    if source not in sources:
        raise ContractError(f"source must be one of {', '.join(sources)}. {_received('source', source)}")
    if mode not in BENCH_MODES:
        raise ContractError(f"mode must be one of {', '.join(BENCH_MODES)}. {_received('mode', mode)}")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ContractError(f"batch must be an integer >= 1. {_received('batch', batch)}")


def check_bf16_path(framework: str, has_path: bool) -> None:
    """``mode="bf16"`` where the device cannot compute in bf16 (a CPU without AVX512_BF16 or AMX): refused,
    since emulated bf16 is slower than fp32 and its figures would mislead."""
    if not has_path:
        raise ContractError(f"{framework} has no bf16 path on this device (it needs a CPU with AVX512_BF16 or AMX, "
                            f"or a GPU). {_received('mode', 'bf16')}")


def against_fp32(reference, output) -> dict[str, float]:
    """How far a reduced-precision forward's logits are from the same model's fp32 logits on the same batch:
    the max abs diff, the fp32 logits' scale (max abs) and their ratio."""
    reference = np.asarray(reference, dtype=np.float64)
    diff = float(np.max(np.abs(np.asarray(output, dtype=np.float64) - reference)))
    scale = float(np.max(np.abs(reference)))
    return {"max_abs_diff": diff, "logit_scale": scale, "relative": diff / scale if scale > 0 else math.inf}


def cpu_has_bf16() -> bool:
    """Whether this CPU has bf16 matmul instructions (AVX512_BF16 or AMX), from Linux's /proc/cpuinfo."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line.split(":", 1)[1].split() for line in f if line.startswith("flags")), [])
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def best_gflops(matmul: Callable[[], object], n: int = PEAK_MATMUL, repeats: int | None = None, *,
                flops: float | None = None) -> float:
    """GFLOP/s of the fastest of ``repeats`` (default ``PEAK_REPEATS``) calls of ``matmul`` (one synchronised
    n x n @ n x n product, 2 n^3 flops, or ``flops`` for another kernel) after one warm-up call: the machine's
    reachable peak in that framework."""
    import time

    repeats = PEAK_REPEATS if repeats is None else repeats
    matmul()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul()
        best = min(best, time.perf_counter() - start)
    return (2 * n**3 if flops is None else flops) / best / 1e9


def conv_flops() -> float:
    """The flops of one ``PEAK_CONV`` convolution (read at call time: tests make it small)."""
    batch, channels, side = PEAK_CONV
    return 2 * batch * channels * channels * 9 * side * side


def handwritten_reference(framework: str, references: dict[str, Callable], spec: Spec) -> Callable:
    """The constructor of the hand-written network of ``spec``'s variant from a framework's ``references``
    table (variant -> constructor); a variant without one is refused in one line naming those there are."""
    if spec.variant not in references:
        raise ContractError(f"{framework} has no hand-written reference for variant {spec.variant!r} (it has one for "
                            f"{', '.join(references)}). {_received('variant', spec.variant)}")
    return references[spec.variant]


def check_handwritten(spec: Spec, params: int) -> None:
    """The hand-written model is the variant's network without aux heads: refuse a spec it is not (loaded with
    aux heads or other input channels; a ratio would be meaningless)."""
    from .oracle import analyze

    expected = analyze(spec).params
    if spec.aux_logits or params != expected:
        raise RuntimeError(f"the hand-written {spec.variant} model has {params:,} parameters and no aux heads; "
                           f"the variant as loaded has {expected:,}{' and aux heads' if spec.aux_logits else ''}: "
                           f"not the same network")


def bench_model(spec: Spec, source: str, *, build: Callable[[Spec], object], handwritten: Callable[[Spec], object],
                params: Callable[[object], int]) -> tuple[object, tuple[float, ...]]:
    """The model a bench runner times and the loss weights of its aux outputs: the spec-built one (its aux
    heads' weights), or the hand-written one, refused unless it is the spec's network (``check_handwritten``)."""
    if source == "spec":
        return build(spec), tuple(head.loss_weight for head in spec.aux_heads)
    model = handwritten(spec)
    check_handwritten(spec, params(model))
    return model, ()


def compile_now(runner, train: bool, what: str) -> None:
    """One forward (and one training step) at setup, so that compilation counts in ``setup_s`` and never in
    the timed calls; a failure is a RuntimeError naming ``what`` and the root cause, never a fallback."""
    try:
        runner.forward()
        if train:
            runner.train_step()
    except Exception as exc:
        cause = exc
        while cause.__cause__ is not None:
            cause = cause.__cause__
        lines = str(cause).strip().splitlines() or [""]
        raise RuntimeError(f"{what} failed: {type(cause).__name__}: {lines[0]}") from exc


# --------------------------------------------------------------------------- what a train loop reports


@dataclass(frozen=True, slots=True)
class EpochStats:
    """What one epoch of a framework's train loop reports, as d2l's ``train_ch6`` does: mean loss and accuracy
    over the epoch's training batches (training mode, weights changing as it goes), examples and optimizer steps."""

    loss: float
    accuracy: float
    examples: int
    steps: int


__all__ = [
    "BENCH_MODES", "BENCH_SOURCES", "EpochStats", "PEAK_CONV", "PEAK_MATMUL", "PEAK_REPEATS", "TRAIN_WORK",
    "against_fp32", "bench_model", "best_gflops", "check_bench_options", "check_bf16_path", "check_handwritten",
    "compile_now", "conv_flops", "cpu_has_bf16", "ab_report", "handwritten_reference", "images_per_s", "interleaved_medians",
]


def images_per_s(call: Callable[[], object], batch: int, repeats: int, *, warmup: int = 2) -> float:
    """``batch`` over the median time of ``repeats`` calls of ``call`` after ``warmup`` calls: the quick rate the
    fast-mode scripts (``python -m impl_tf.fast_modes``, ``impl_mxnet.fast_modes``) compare candidates by."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return batch / float(np.median(times))


def interleaved_medians(calls: dict[str, Callable[[], object]], *, rounds: int, per_round: int,
                        warmup: int = 2) -> dict[str, dict[str, list[float]]]:
    """A/B comparison on a shared machine: ``rounds`` rounds, each timing ``per_round`` calls of every candidate
    in turn (the order reversed every other round, a b, b a, ...), so that load from other processes hits each
    alike; per candidate, the median wall seconds (``"wall"``) and the median CPU seconds of this process, all
    its threads (``"cpu"``), of a call in each round. Compare candidates round by round (the ratio within a
    round cancels the load of the moment) and report the spread over the rounds, as the fast-mode scripts do.
    CPU time counts the work, not the waits for a core another process holds: on a busy machine it is the steadier
    figure, though it does not see a candidate that leaves cores idle (wall time does)."""
    for call in calls.values():
        for _ in range(warmup):
            call()
    medians: dict[str, dict[str, list[float]]] = {name: {"wall": [], "cpu": []} for name in calls}
    order = list(calls)
    for index in range(rounds):
        for name in (order if index % 2 == 0 else order[::-1]):
            wall, cpu = [], []
            for _ in range(per_round):
                start, start_cpu = time.perf_counter(), time.process_time()
                calls[name]()
                wall.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            medians[name]["wall"].append(float(np.median(wall)))
            medians[name]["cpu"].append(float(np.median(cpu)))
    return medians


def cores() -> int:
    """The cores this process may run on (its affinity), which is what its threads can use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def ab_parser(description: str, *, known: Sequence[str], default: str | None, per_round: int, rounds: int = 6,
              default_text: str | None = None) -> argparse.ArgumentParser:
    """A fast-mode script's options: ``--candidates`` (comma-separated, the first the baseline; ``default_text``
    says what a ``None`` default means), ``--rounds``, ``--per-round``; the script adds its own before parsing."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--candidates", default=default, help=f"comma-separated, the first the baseline: "
                                                              f"{','.join(known)} (default: {default_text or default})")
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--per-round", type=int, default=per_round)
    return parser


def chosen_candidates(parser: argparse.ArgumentParser, text: str, known: Sequence[str], *, where: str = "") -> list[str]:
    """``--candidates`` as a list, or the parser's one-line error (exit 2) naming the unknown and the known."""
    names = text.split(",")
    unknown = sorted(set(names) - set(known))
    if unknown:
        parser.error(f"--candidates: unknown {', '.join(unknown)}{where}; known: {', '.join(known)}")
    return names


def ab_compare(calls: dict[str, Callable[[], object]], *, header: str, rounds: int, per_round: int, flops: float,
               batch: int, peak: str = "peak") -> str:
    """What a fast-mode script prints: ``calls`` (the candidates, then the peak kernel under ``peak``) timed by
    :func:`interleaved_medians`, under ``header`` with the load average before and after, then :func:`ab_report`."""
    load_before = os.getloadavg()[0]
    medians = interleaved_medians(calls, rounds=rounds, per_round=per_round)
    return "\n".join([f"{header}, load average {load_before:.2f} -> {os.getloadavg()[0]:.2f}; batch {batch}, "
                      f"{rounds} rounds x {per_round} calls; median [min, max] over the rounds",
                      *ab_report(medians, flops=flops, batch=batch, peak=peak, cores=cores())])


def ab_report(medians: dict[str, dict[str, list[float]]], *, flops: float, batch: int, peak: str,
              cores: int) -> list[str]:
    """The lines the fast-mode scripts print from :func:`interleaved_medians`: per candidate (the first is the
    baseline; ``peak`` names the peak kernel timed among them, ``flops`` the work of one image), by wall time and
    by CPU time over ``cores`` (the rate had the process had its cores to itself): the median over the rounds of
    its images/s, of its GFLOP/s as a share of the peak kernel's in the same round, and of its speed-up over
    the baseline in the same round, each with its range over the rounds."""
    def spread(values: list[float], unit: str = "", scale: float = 1.0) -> str:
        return (f"{scale * float(np.median(values)):7.2f}{unit} [{scale * min(values):.2f}, "
                f"{scale * max(values):.2f}]")

    names = [name for name in medians if name != peak]
    lines = []
    for clock, per in (("wall", 1.0), ("cpu", 1.0 / cores)):
        peak_gflops = [conv_flops() / (t * per) / 1e9 for t in medians[peak][clock]]
        base = medians[names[0]][clock]
        lines.append(f" by {clock} time{f' / {cores} cores' if clock == 'cpu' else ''}:")
        lines.append(f"  {peak:18s} {spread(peak_gflops)} GFLOP/s (the peak kernel: a 3x3 convolution {PEAK_CONV})")
        for name in names:
            rates = [batch / (t * per) for t in medians[name][clock]]
            shares = [flops * rate / 1e9 / p for rate, p in zip(rates, peak_gflops)]
            speedups = [b / t for b, t in zip(base, medians[name][clock])]
            lines.append(f"  {name:18s} {spread(rates)} img/s   {spread(shares, '%', 100)} of the peak   "
                         f"{spread(speedups, 'x')} of {names[0]}")
    return lines
