"""The builder contract's shared rules: devices and every argument check, written once.

Each ``impl_X`` package implements the contract of ``docs/builders.md`` in its framework's own idiom;
what must be the *same* in all of them lives here, so the builders cannot drift apart: which devices
exist and how ``"auto"`` chooses, what an input batch, a label vector, a learning rate, a seed, an
activation or an op may be, and the one error type and message form (``... Received: x=...``) for a
bad argument. Imports no deep-learning framework: a builder passes in what only it can know (whether
its framework sees a GPU).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .errors import InputError
from .spec import Spec, SpecError

DEVICES = ("auto", "cpu", "gpu")
ACTIVATIONS = ("relu",)


class ContractError(InputError):
    """A bad argument to a contract function. One line, ending in ``Received: name=value``."""


def _received(name: str, value) -> str:
    text = repr(value)
    return f"Received: {name}={text if len(text) <= 80 else text[:79] + '…'}"


# --------------------------------------------------------------------------- devices


def resolve_device(device, *, has_gpu: Callable[[], bool], framework: str) -> str:
    """The device rule: ``"auto"`` takes the GPU when the framework sees one, else the CPU; ``"cpu"`` and
    ``"gpu"`` force it, and ``"gpu"`` without one is an error. ``has_gpu`` is only called when needed."""
    if device not in DEVICES:
        raise ContractError(f"device must be one of {', '.join(map(repr, DEVICES))}. {_received('device', device)}")
    if device == "cpu":
        return "cpu"
    if has_gpu():
        return "gpu"
    if device == "gpu":
        raise ContractError(f"device='gpu' but {framework} sees no GPU. {_received('device', device)}")
    return "cpu"


# --------------------------------------------------------------------------- build arguments


def check_spec(spec) -> Spec:
    if not isinstance(spec, Spec):
        raise ContractError(f"spec must be a shared_spec.Spec (from shared_spec.load). "
                            f"{_received('spec', spec if isinstance(spec, (str, type(None))) else type(spec).__name__)}")
    return spec


def check_seed(seed) -> int | None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ContractError(f"seed must be None or an integer >= 0. {_received('seed', seed)}")
    return seed


def check_activation(name: str | None, where: str) -> str | None:
    """Every builder knows the same activations; an unknown one is refused, never ignored."""
    if name is not None and name not in ACTIVATIONS:
        raise ContractError(f"{where}: unknown activation; expected one of {', '.join(ACTIVATIONS)}. "
                            f"{_received('activation', name)}")
    return name


def unknown_op(op: str, known: Iterable[str], where: str) -> ContractError:
    """The error for a layer record whose op has no entry in a builder's op table."""
    return ContractError(f"{where}: no layer for op {op!r}; this builder knows {', '.join(sorted(known))}. "
                         f"{_received('op', op)}")


def check_model_spec(model, package: str) -> Spec:
    """The spec a model was built from (``model.spec``), or the error for a model from elsewhere."""
    spec = getattr(model, "spec", None)
    if not isinstance(spec, Spec):
        raise ContractError(f"model must come from {package}.build (it has no .spec). "
                            f"{_received('model', type(model).__name__)}")
    return spec


# --------------------------------------------------------------------------- run arguments


def check_input(spec: Spec, x) -> np.ndarray:
    """A float32, C-contiguous NCHW batch of the spec's input shape (any real dtype is cast)."""
    x = np.asarray(x)
    if x.dtype == object or not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ContractError(f"x must be a real-valued array. {_received('x.dtype', x.dtype)}")
    if x.ndim != 4 or x.shape[0] < 1 or tuple(x.shape[1:]) != spec.input_shape:
        raise ContractError(f"x must be an NCHW batch of shape (N, {', '.join(map(str, spec.input_shape))}) "
                            f"for variant {spec.variant!r}. {_received('x.shape', tuple(x.shape))}")
    return np.ascontiguousarray(x, dtype=np.float32)


def check_labels(spec: Spec, y, batch: int) -> np.ndarray:
    """One integer class in ``[0, num_classes)`` per example, as int64."""
    y = np.asarray(y)
    if y.shape != (batch,) or not np.issubdtype(y.dtype, np.integer):
        raise ContractError(f"y must hold one integer class per example, shape ({batch},). "
                            f"Received: y.shape={y.shape}, y.dtype={y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= spec.num_classes):
        bad = int(y[(y < 0) | (y >= spec.num_classes)][0])
        raise ContractError(f"y must be class indices in [0, {spec.num_classes}). "
                            f"Received: y.shape={y.shape}, y.dtype={y.dtype}, a value {bad}")
    return y.astype(np.int64)


def check_lr(lr) -> float:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not math.isfinite(lr) or lr < 0:
        raise ContractError(f"lr must be a finite number >= 0. {_received('lr', lr)}")
    return float(lr)


def check_training(training) -> bool:
    if not isinstance(training, bool):
        raise ContractError(f"training must be True or False. {_received('training', training)}")
    return training


# --------------------------------------------------------------------------- ONNX exporters


def check_export(model, package: str, *, aux, opset, opsets: Iterable[int] | None = None) -> Spec:
    """The arguments every ``impl_X.onnx_export.export_onnx`` takes; returns the model's spec. ``opsets``: the
    only opsets that exporter can write (mx2onnx), else any integer (the exporter or onnx refuses the rest)."""
    spec = check_model_spec(model, package)
    if not isinstance(aux, bool):
        raise ContractError(f"aux must be True or False. {_received('aux', aux)}")
    if aux and not spec.aux_heads:
        raise ContractError(f"aux=True but {spec.variant} was built without aux heads "
                            f"(shared_spec.load(..., aux_logits=True)). {_received('aux', aux)}")
    if isinstance(opset, bool) or not isinstance(opset, int) or (opsets is not None and opset not in opsets):
        allowed = f"one of {', '.join(map(str, opsets))}" if opsets is not None else "an integer"
        raise ContractError(f"{package}'s ONNX exporter writes opset {allowed}. {_received('opset', opset)}")
    return spec


def onnx_output_names(spec: Spec, aux: bool) -> list[str]:
    """The outputs every exported file has: ``logits``, then each aux head by its spec name."""
    return ["logits", *(head.name for head in spec.aux_heads)] if aux else ["logits"]


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


def check_handwritten(spec: Spec, params: int) -> None:
    """The hand-written model is torchvision's GoogLeNet: refuse a spec it is not (a ratio would be meaningless)."""
    from .oracle import analyze

    expected = analyze(spec).params
    if spec.aux_logits or params != expected:
        raise RuntimeError(f"the hand-written model is torchvision's GoogLeNet without aux heads "
                           f"({params:,} parameters); variant {spec.variant!r} has {expected:,}"
                           f"{' and aux heads' if spec.aux_logits else ''}: not the same network")


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
    "ACTIVATIONS", "BENCH_MODES", "BENCH_SOURCES", "PEAK_CONV", "PEAK_MATMUL", "PEAK_REPEATS", "TRAIN_WORK", "against_fp32", "bench_model", "best_gflops", "check_bf16_path", "conv_flops", "cpu_has_bf16", "DEVICES", "ContractError", "EpochStats", "SpecError",
    "check_activation", "check_bench_options", "check_handwritten", "check_input", "check_labels", "check_lr",
    "check_export", "check_model_spec", "check_seed", "check_spec", "check_training", "compile_now", "onnx_output_names",
    "resolve_device", "unknown_op",
]
