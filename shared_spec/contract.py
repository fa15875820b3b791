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


__all__ = [
    "ACTIVATIONS", "DEVICES", "ContractError", "SpecError", "check_activation", "check_export", "check_input",
    "check_labels", "check_lr", "check_model_spec", "check_seed", "check_spec", "check_training", "onnx_output_names",
    "resolve_device", "unknown_op",
]
