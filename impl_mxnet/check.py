"""``googlenet-suite check --gluon``: a user's own Gluon ``Block`` (legacy ``nd`` or ``npx.set_np()`` numpy mode),
initialised if it is not, read and set in the neutral layout (Gluon's is the same: OIHW, (out, in)), run
un-hybridized with forward hooks on every block (``googlenet_suite/check.py`` does the rest)."""

from __future__ import annotations

import mxnet as mx
import numpy as np
from mxnet import autograd, gluon
from mxnet.gluon import nn

CHANNELS_LAST = False

_CONV = (nn.Conv2D,)
_BN = (nn.BatchNorm,)
_POOL = (nn.MaxPool2D, nn.AvgPool2D, nn.GlobalAvgPool2D, nn.GlobalMaxPool2D)


def _np_mode() -> bool:
    return bool(mx.util.is_np_array())


def _array(x: np.ndarray):
    return mx.np.array(x, dtype=np.float32) if _np_mode() else mx.nd.array(x, dtype=np.float32)


def is_model(obj) -> bool:
    return isinstance(obj, gluon.Block)


def prepare(obj, spec):
    if not isinstance(obj, gluon.Block):
        raise TypeError(f"expected a Gluon Block, got {type(obj).__module__}.{type(obj).__name__}")
    params = obj.collect_params()
    if any(p._data is None and p._deferred_init == () for p in params.values()):
        obj.initialize()
    with autograd.predict_mode():
        obj(_array(np.zeros((1, *spec.input_shape), np.float32)))  # finishes deferred initialisation
    return obj


def _blocks(block, prefix="") -> list[tuple[str, gluon.Block]]:
    out = []
    for name, child in block._children.items():
        child = child() if callable(child) and not isinstance(child, gluon.Block) else child  # weakref in 2.x
        path = f"{prefix}{name}"
        out.append((path, child))
        out.extend(_blocks(child, f"{path}."))
    return out


def _tensors(block) -> dict[str, object]:
    if isinstance(block, _CONV):
        return {"conv.weight": block.weight, "conv.bias": block.bias}
    if isinstance(block, _BN):
        return {"bn.gamma": block.gamma, "bn.beta": block.beta, "bn.running_mean": block.running_mean,
                "bn.running_var": block.running_var}
    if isinstance(block, nn.Dense):
        return {"dense.weight": block.weight, "dense.bias": block.bias}
    return {}


def parameters(model) -> list[dict]:
    out = []
    for name, block in _blocks(model):
        for role, param in _tensors(block).items():
            if param is not None:
                out.append({"name": f"{name}.{role.split('.')[-1]}", "module": name, "role": role,
                            "shape": tuple(param.shape), "_param": param})
    return out


def load(model, values: dict[str, np.ndarray]) -> None:
    by_name = {p["name"]: p for p in parameters(model)}
    for name, value in values.items():
        by_name[name]["_param"].set_data(_array(np.ascontiguousarray(value, np.float32)))


def run(model, x: np.ndarray):
    """Logits and every block's output, in the order the blocks finish (hooks fire only un-hybridized)."""
    records, handles = [], []
    hybrid = [b for _, b in [("", model), *_blocks(model)] if getattr(b, "_active", False)]
    for block in hybrid:
        block.hybridize(False)
    for name, block in _blocks(model):
        kind = ("conv" if isinstance(block, _CONV) else "bn" if isinstance(block, _BN) else
                "dense" if isinstance(block, nn.Dense) else "pool" if isinstance(block, _POOL) else "other")
        pre = kind == "bn" or kind in ("conv", "dense") and getattr(block, "act", None) is None

        def hook(blk, inputs, output, _name=name, _kind=kind, _pre=pre):
            if hasattr(output, "asnumpy") and output.ndim in (2, 4):
                records.append({"name": _name, "kind": _kind, "value": output.asnumpy().copy(),
                                "pre_activation": _pre})

        handles.append(block.register_forward_hook(hook))
    try:
        with autograd.predict_mode():
            out = model(_array(x))
    finally:
        for handle in handles:
            handle.detach()
        for block in hybrid:
            block.hybridize(True)
    if isinstance(out, (tuple, list)):
        out = out[0]
    return out.asnumpy(), records
