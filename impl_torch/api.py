"""The builder contract (docs/builders.md) for PyTorch models made by :func:`impl_torch.build`.

numpy in, numpy out: ``x`` is a float32 NCHW batch, weights are the neutral
layout of ``spec.weight_shapes()`` (PyTorch's own layout, with BN ``weight``/
``bias`` named ``gamma``/``beta``).
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Mapping

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from shared_spec import contract as C
from shared_spec import weights as W

# neutral key suffix -> torch's name for it (BN affine parameters)
_TORCH_NAMES = {"gamma": "weight", "beta": "bias"}


def _torch_key(key: str) -> str:
    """``inception3a.branch1.conv1.bn.gamma`` -> ``inception3a.branch1.conv1.bn.weight``."""
    head, _, last = key.rpartition(".")
    if head.endswith(".bn") or head == "bn":
        last = _TORCH_NAMES.get(last, last)
    return f"{head}.{last}"


def _spec(model: nn.Module):
    return C.check_model_spec(model, "impl_torch")


def _input(model: nn.Module, x) -> torch.Tensor:
    return torch.from_numpy(C.check_input(_spec(model), x)).to(_device(model))


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def ieee_fp32_settings() -> list[tuple[object, str, object]]:
    """torch's global switches for plain fp32 on CUDA, as ``(owner, attribute, value)``: cuDNN convolutions
    first, cuBLAS matmuls second. Newer torch has the fp32_precision API, older the allow_tf32 flags; mixing
    the two is an error in newer torch."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(getattr(cudnn, "conv", None), "fp32_precision"):  # newer torch: the fp32_precision API
        return [(cudnn.conv, "fp32_precision", "ieee"), (matmul, "fp32_precision", "ieee")]
    return [(cudnn, "allow_tf32", False), (matmul, "allow_tf32", False)]


@contextlib.contextmanager
def ieee_fp32(enabled: bool = True) -> Iterator[None]:
    """Plain fp32 on CUDA: cuDNN convolutions default to TF32 on Ampere and later (about 1e-3 relative
    error), far outside the suite's 1e-4 agreement. Sets torch's global flags for the block, then restores
    them. A no-op unless ``enabled`` (the model is on a GPU)."""
    if not enabled:
        yield
        return
    settings = ieee_fp32_settings()
    saved = [getattr(owner, name) for owner, name, _ in settings]
    try:
        for owner, name, value in settings:
            setattr(owner, name, value)
        yield
    finally:
        for (owner, name, _), value in zip(settings, saved):
            setattr(owner, name, value)


def _exact(model: nn.Module):
    return ieee_fp32(_device(model).type == "cuda")


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32, copy=True)


def forward(model: nn.Module, x, *, training: bool = False):
    """Logits ``(N, classes)``; in training mode with aux heads on, ``(main, aux1, aux2)``.

    Training mode uses dropout and BN batch statistics (and updates the running statistics, as
    torch does); eval mode uses neither. The model's own mode is restored afterwards.
    """
    training = C.check_training(training)
    xt = _input(model, x)
    was_training = model.training
    model.train(training)
    try:
        with torch.no_grad(), _exact(model):
            out = model(xt)
    finally:
        model.train(was_training)
    return tuple(_numpy(o) for o in out) if isinstance(out, tuple) else _numpy(out)


def layer_outputs(model: nn.Module, x) -> dict[str, np.ndarray]:
    """Eval-mode activations of every layer in ``spec.walk()``, channels-first, aux heads included."""
    spec = _spec(model)
    xt = _input(model, x)
    outputs: dict[str, np.ndarray] = {}

    def hook(name):
        def record(module, args, output):
            outputs[name] = _numpy(output)  # a copy: later in-place ops cannot change it
        return record

    names = [layer.name for layer in spec.walk()]
    handles = [model.get_submodule(name).register_forward_hook(hook(name)) for name in names]
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), _exact(model):
            model(xt, with_aux=True)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {name: outputs[name] for name in names}


def train_step(model: nn.Module, x, y, *, lr: float = 0.01) -> dict:
    """One plain SGD step (no momentum, no weight decay) in training mode.

    ``loss = mean CE(main) + sum(aux.loss_weight * mean CE(aux_i))``. Returns the loss of this forward,
    the gradient of the loss with respect to ``x`` and ``export_weights`` after the step. Parameter
    gradients are left in ``.grad``, as after ``optimizer.step()``.
    """
    spec = _spec(model)
    lr = C.check_lr(lr)
    xt = _input(model, x).requires_grad_(True)
    yt = torch.from_numpy(C.check_labels(spec, y, xt.shape[0])).to(xt.device)
    was_training = model.training
    model.train()
    try:
        model.zero_grad(set_to_none=True)
        with _exact(model):
            out = model(xt)
            main, *aux = out if isinstance(out, tuple) else (out,)
            loss = F.cross_entropy(main, yt)
            for head, logits in zip(spec.aux_heads, aux, strict=True):
                loss = loss + head.loss_weight * F.cross_entropy(logits, yt)
            loss.backward()
        with torch.no_grad():
            for param in model.parameters():
                if param.grad is not None:
                    param.add_(param.grad, alpha=-lr)
    finally:
        model.train(was_training)
    return {"loss": float(loss.detach()), "input_grad": _numpy(xt.grad), "weights": export_weights(model)}


def export_weights(model: nn.Module) -> dict[str, np.ndarray]:
    """float32 copies keyed and shaped exactly as ``spec.weight_shapes()``, in that order."""
    spec = _spec(model)
    state = model.state_dict()
    return {key: _numpy(state[_torch_key(key)]) for key in spec.weight_shapes()}


def import_weights(model: nn.Module, weights: Mapping[str, np.ndarray]) -> None:
    """Check every key and shape first (``WeightsError`` naming the key), then copy all values in."""
    spec = _spec(model)
    W.check_weights(spec, weights)
    state = model.state_dict()  # tensors that share storage with the model's parameters and buffers
    with torch.no_grad():
        for key, value in weights.items():
            state[_torch_key(key)].copy_(torch.from_numpy(np.asarray(value, dtype=np.float32)))


def save_weights(model: nn.Module, path: str | os.PathLike) -> None:
    W.save_weights(path, export_weights(model), _spec(model))


def load_weights(model: nn.Module, path: str | os.PathLike) -> None:
    weights, _ = W.load_weights(path, _spec(model))
    import_weights(model, weights)


def count_params(model: nn.Module) -> tuple[int, int]:
    """(trainable parameters, BN running mean + var); ``num_batches_tracked`` is a counter, not counted."""
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    buffers = sum(b.numel() for name, b in model.named_buffers() if not name.endswith("num_batches_tracked"))
    return trainable, buffers


def device_of(model: nn.Module) -> str:
    return "gpu" if _device(model).type == "cuda" else "cpu"


def framework_version() -> str:
    return str(torch.__version__)
