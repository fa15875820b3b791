"""The contract's functions around a built model: forward passes, a training step, weights, counts."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Mapping

import mxnet as mx
import numpy as np
from mxnet import autograd

from shared_spec import contract as C
from shared_spec import weights as neutral

from .builder import GoogLeNet, named_blocks, named_parameters


def _check_model(model) -> None:
    if not isinstance(model, GoogLeNet):
        raise C.ContractError(f"model must come from impl_mxnet.build (it is no impl_mxnet.GoogLeNet). "
                              f"Received: model={type(model).__name__}")


def _context(model: GoogLeNet) -> mx.Context:
    return next(iter(named_parameters(model).values())).list_ctx()[0]


def _input(model: GoogLeNet, x) -> mx.nd.NDArray:
    _check_model(model)
    x = C.check_input(model.spec, x)
    return mx.nd.array(x, ctx=_context(model), dtype=np.float32)


def forward(model: GoogLeNet, x, *, training: bool = False):
    """Logits as numpy; in training mode with aux heads on, ``(main, aux1, aux2)``.

    Training mode uses batch statistics and dropout. MXNet updates BN running
    statistics only in a backward pass, so this forward leaves them unchanged.
    """
    training = C.check_training(training)
    data = _input(model, x)
    with autograd.train_mode() if training else autograd.predict_mode():
        out = model(data)
    if isinstance(out, tuple):
        return tuple(o.asnumpy() for o in out)
    return out.asnumpy()


@contextmanager
def _imperative(model: GoogLeNet):
    """Run un-hybridized (forward hooks only fire imperatively); restore hybridization after."""
    active = getattr(model, "_active", False)
    flags = dict(getattr(model, "_flags", ()))
    if active:
        model.hybridize(False)
    try:
        yield
    finally:
        if active:
            model.hybridize(True, backend=getattr(model, "_backend", None), **flags)


def layer_outputs(model: GoogLeNet, x) -> dict[str, np.ndarray]:
    """Eval-mode output of every layer in ``spec.walk()``, channels-first."""
    data = _input(model, x)
    names = [layer.name for layer in model.spec.walk()]
    blocks = dict(named_blocks(model))
    outputs: dict[str, np.ndarray] = {}

    def hook(name):
        return lambda block, inputs, output: outputs.__setitem__(name, output.asnumpy())

    with _imperative(model):
        handles = [blocks[name].register_forward_hook(hook(name)) for name in names]
        try:
            with autograd.predict_mode():
                model(data)
        finally:
            for handle in handles:
                handle.detach()
    return {name: outputs[name] for name in names}


def _cross_entropy(logits, labels):
    return -mx.nd.pick(mx.nd.log_softmax(logits, axis=-1), labels, axis=-1).mean()


def train_step(model: GoogLeNet, x, y, *, lr: float = 0.01) -> dict:
    """One plain-SGD step on mean CE(main) + sum(loss_weight * mean CE(aux))."""
    lr = C.check_lr(lr)
    data = _input(model, x)
    y = C.check_labels(model.spec, y, data.shape[0])
    labels = mx.nd.array(y, ctx=data.context, dtype=np.float32)
    data.attach_grad()
    with autograd.record(train_mode=True):
        outputs = model(data)
        outputs = outputs if isinstance(outputs, tuple) else (outputs,)
        loss = _cross_entropy(outputs[0], labels)
        for head, aux in zip(model.spec.aux_heads, outputs[1:]):
            loss = loss + head.loss_weight * _cross_entropy(aux, labels)
    loss.backward()  # also updates the BN running statistics (MXNet does it in backward)
    for param in named_parameters(model).values():
        if param.grad_req != "null":
            param.set_data(param.data() - lr * param.grad())
    return {"loss": float(loss.asscalar()), "input_grad": data.grad.asnumpy(), "weights": export_weights(model)}


def export_weights(model: GoogLeNet) -> dict[str, np.ndarray]:
    """Neutral layout, which is Gluon's own: conv OIHW, dense (out, in) over an NCHW flatten."""
    _check_model(model)
    return {key: param.data().asnumpy().astype(np.float32, copy=False)
            for key, param in named_parameters(model).items()}


def import_weights(model: GoogLeNet, weights: Mapping[str, np.ndarray]) -> None:
    _check_model(model)
    neutral.check_weights(model.spec, weights)
    for key, param in named_parameters(model).items():
        param.set_data(mx.nd.array(np.asarray(weights[key], dtype=np.float32), ctx=param.list_ctx()[0]))


def save_weights(model: GoogLeNet, path: str | os.PathLike) -> None:
    _check_model(model)
    neutral.save_weights(path, export_weights(model), model.spec)


def load_weights(model: GoogLeNet, path: str | os.PathLike) -> None:
    _check_model(model)
    weights, _ = neutral.load_weights(path, model.spec)
    import_weights(model, weights)


def count_params(model: GoogLeNet) -> tuple[int, int]:
    """``(trainable, buffers)``: Gluon's ``grad_req='null'`` parameters are BN's running mean and variance."""
    _check_model(model)
    trainable = buffers = 0
    for param in named_parameters(model).values():
        size = int(np.prod(param.shape))
        if param.grad_req == "null":
            buffers += size
        else:
            trainable += size
    return trainable, buffers


def device_of(model: GoogLeNet) -> str:
    _check_model(model)
    return "gpu" if _context(model).device_type == "gpu" else "cpu"


def framework_version() -> str:
    return mx.__version__
