"""What the GPU check's sections share: what each run measures (the profiles), the time guard, the log."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import importlib.util
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import shared_spec

from .. import harness

SEED = 0
T0_ENV = "GPU_CHECK_T0"  # the run's start (time.time()); the child processes inherit it for their log lines
SCHEMA = "googlenet-suite/gpu-check/1"
TARGETS = {"forward": 20_000.0, "train": 5_000.0}  # images/s, torch bf16 ("fast") at 224 on the H200
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding googlenet_suite, shared_spec, impl_*


@dataclass(frozen=True, slots=True)
class Case:
    """A variant at a size, and a batch."""

    variant: str
    overrides: dict = field(default_factory=dict)
    batch: int = 2

    @property
    def key(self) -> tuple[str, str]:  # a dict key (the overrides are a dict)
        return self.variant, self.label

    @property
    def label(self) -> str:  # "aux_logits=True, input_size=64x64"
        return ", ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, tuple) else v}"
                         for k, v in self.overrides.items())

    def spec(self) -> shared_spec.Spec:
        return shared_spec.load(self.variant, **self.overrides)

    def to_json(self) -> dict:
        return {"variant": self.variant, "batch": self.batch,
                "overrides": {k: list(v) if isinstance(v, tuple) else v for k, v in self.overrides.items()}}

    @classmethod
    def from_json(cls, data: dict) -> Case:
        overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in data["overrides"].items()}
        return cls(data["variant"], overrides, data["batch"])


@dataclass(frozen=True, slots=True)
class Profile:
    """What one run measures, and the seconds each part may take."""

    equivalence: tuple[Case, ...]
    train_step: Case
    keras: tuple[Case, ...]
    bench: Case
    bench_batches: tuple[int, ...]
    total_s: float
    equivalence_s: float
    keras_s: float  # the benchmark gets whatever is left
    keras_child_s: float
    plain_bench_s: float
    warmup: int  # calls before the timed ones; the first of a compiled cell includes the compilation
    repeats: int
    compiled: tuple[str, ...]  # the passes torch.compile runs in the fast role


_TRAIN = {"aux_logits": True, "dropout": 0.0}  # dropout 0: the CPU and CUDA draw different masks
_SMALL = {"input_size": (64, 64)}


def profile(*, cpu: bool, quick: bool, variant: str | None = None) -> Profile:
    """GPU: the README's variants at their sizes, 7.5 minutes in all (leaving margin under 8). CPU: tiny inputs
    and a generous budget (no target to meet, and a CPU shared by several jobs, six times oversubscribed,
    should not trip the guards: a quiet one needs under a minute); compiling is minutes on a small CPU,
    so ``--cpu`` compiles the forward pass only and ``--cpu --quick`` nothing. ``variant``: every section on
    that variant alone (:func:`variant_profile`); an unknown one is ``shared_spec``'s SpecError (exit 2)."""
    if variant is not None:
        return variant_profile(variant, cpu=cpu, quick=quick)
    if not cpu:
        return Profile(equivalence=(Case("googlenet", {}, 4), Case("d2l", {}, 4)),
                       train_step=Case("googlenet", _TRAIN, 8), keras=(Case("googlenet"), Case("d2l")),
                       bench=Case("googlenet"), bench_batches=(1, 32, 128, 256), total_s=450.0,
                       equivalence_s=90.0, keras_s=160.0, keras_child_s=90.0, plain_bench_s=75.0,
                       warmup=2 if quick else 3, repeats=8 if quick else 20, compiled=("forward", "train"))
    # --cpu --quick: 48x48, the smallest with 2x2 last-stage maps (BatchNorm at batch 1)
    bench = Case("googlenet", {"input_size": (48, 48)} if quick else _SMALL)
    return Profile(equivalence=(Case("googlenet", _SMALL), Case("d2l", _SMALL)),
                   train_step=Case("googlenet", {**_TRAIN, **_SMALL}), keras=(Case("d2l", _SMALL),),
                   bench=bench, bench_batches=(1, 2), total_s=600.0, equivalence_s=200.0, keras_s=150.0,
                   keras_child_s=120.0, plain_bench_s=150.0, warmup=1, repeats=3 if quick else 5,
                   compiled=() if quick else ("forward",))


def _loads(variant: str, overrides: dict) -> bool:
    try:
        shared_spec.load(variant, **overrides)
    except shared_spec.SpecError:
        return False
    return True


def variant_profile(variant: str, *, cpu: bool, quick: bool) -> Profile:
    """Every section on ``variant``: on the GPU at its own input size, the budgets of the default run; on the CPU
    at 64x64 (48x48 with ``--quick``), or the variant's smallest input where that is larger (Inception v3's
    75x75, the Gluon variant's 299x299). The training step has the aux heads where the variant has them at that
    size (Inception v3's needs 299x299) and dropout off where it has dropout; the benchmark leaves batch 1 out
    where the last maps are 1x1 (Inception v3 at 75x75)."""
    try:
        spec = shared_spec.load(variant)
    except shared_spec.SpecError as exc:  # an unknown name: the known ones, in one line
        raise shared_spec.SpecError(f"--variant: {exc}") from None
    size = {}
    if cpu:
        side, least = 48 if quick else 64, shared_spec.analyze(spec).min_input_size
        size = {"input_size": (max(side, least[0]), max(side, least[1]))}
    train = {**size, **{k: v for k, v in _TRAIN.items() if _loads(variant, {**size, k: v})}}
    default = profile(cpu=cpu, quick=quick)
    small = shared_spec.load(variant, **size)
    last = [shape for shape in shared_spec.analyze(small).stage_shapes(small).values() if len(shape) == 3][-1]
    # BatchNorm in training needs more than one value per channel: batch 1 only where the last maps are 2x2 or more
    batches = default.bench_batches if min(last[1:]) >= 2 else tuple(b for b in default.bench_batches if b > 1)
    return Profile(equivalence=(Case(variant, size, default.equivalence[0].batch),),
                   train_step=Case(variant, train, default.train_step.batch), keras=(Case(variant, size),),
                   bench=Case(variant, size), bench_batches=batches, total_s=default.total_s,
                   equivalence_s=default.equivalence_s, keras_s=default.keras_s,
                   keras_child_s=default.keras_child_s, plain_bench_s=default.plain_bench_s, warmup=default.warmup,
                   repeats=default.repeats, compiled=default.compiled)


class Guard:
    """A section's time limit (and the run's): ``left()`` seconds; work that would not fit is skipped."""

    def __init__(self, seconds: float | None, overall_end: float):
        self.end = overall_end if seconds is None else min(overall_end, time.monotonic() + seconds)

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, needed_s: float) -> bool:
        return self.left() >= needed_s


def started() -> float:
    """When the run began (time.time()); a child process has its parent's start."""
    return float(os.environ.get(T0_ENV) or time.time())


def log(message: str) -> None:
    """Progress on stderr (stdout carries the markdown): wall clock and seconds since the run began."""
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp} +{time.time() - started():6.1f}s] {message}", file=sys.stderr, flush=True)


def child_env(**extra: str) -> dict:
    """A child process's environment: the suite's packages first on PYTHONPATH (the checkout runs without pip
    install), the rest of PYTHONPATH (carried wheels) after them."""
    path = os.pathsep.join([str(PACKAGE_ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "PYTHONPATH": path, "TF_CPP_MIN_LOG_LEVEL": "2", **extra}


def present(module: str) -> bool:
    """Whether ``module`` can be found, without importing it (jax would claim the GPU)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def dist_version(name: str) -> str | None:
    """An installed distribution's version, from its metadata (nothing imported)."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def error_text(exc: BaseException) -> str:
    first = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {first}".strip()


def max_abs_diff(a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def scale(a) -> float:
    """The max abs value (0 for an empty array)."""
    return float(np.max(np.abs(a))) if np.size(a) else 0.0


def reference_weights(spec: shared_spec.Spec) -> dict:
    """The suite's weights for ``spec``, made by PyTorch on the CPU (the same in every section)."""
    return harness.reference_weights(spec, "torch", seed=SEED, device="cpu")
