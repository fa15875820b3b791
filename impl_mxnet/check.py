"""``googlenet-suite check --gluon``: a user's own Gluon ``Block`` (legacy ``nd`` or ``npx.set_np()`` numpy mode),
initialised if it is not, read and set in the neutral layout (Gluon's is the same: OIHW, (out, in)), run
un-hybridized with forward hooks on every block; its data flow followed through the blocks and the
concatenations (``googlenet_suite/check/`` does the rest)."""

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


def _arrays(value) -> list:
    if isinstance(value, mx.nd.NDArray):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [a for item in value for a in _arrays(item)]
    return []


_CONCATS = [(mx.nd, "concat"), (mx.nd, "Concat"), (mx.np, "concatenate")]


def flow(model, x: np.ndarray) -> dict | None:
    """One forward (un-hybridized, its own weights) followed: every leaf block -> the blocks whose outputs it takes,
    and each concatenation's inputs in order (``F.concat``, ``np.concatenate``). None where a block's input came
    from a function the check does not follow (``npx.relu`` between blocks): the order blocks ran in stands then."""
    origin, alive, edges = {}, [], {}

    def mark(value, name):
        for array in _arrays(value):
            origin[id(array)] = name
            alive.append(array)

    def sources(value):
        return tuple(dict.fromkeys(origin[id(a)] for a in _arrays(value) if id(a) in origin))

    def concat(original):
        def call(*args, **kwargs):
            out = original(*args, **kwargs)
            found = sources((args, kwargs))
            if len(found) > 1:
                name = f"concat#{len(edges)}"
                edges[name] = found
                mark(out, name)
            return out
        return call

    layers = _CONV + _BN + _POOL + (nn.Dense,)  # a Conv2D's own Activation child is part of it
    inner = {f"{name}." for name, block in _blocks(model) if isinstance(block, layers)}
    leaves = [(name, block) for name, block in _blocks(model)
              if (isinstance(block, layers) or not block._children) and not name.startswith(tuple(inner))]
    hybrid = [b for _, b in [("", model), *_blocks(model)] if getattr(b, "_active", False)]
    for block in hybrid:  # before the hooks go on (hybridize warns of hooks it would not run)
        block.hybridize(False)
    handles, ran = [], []
    for name, block in leaves:
        def before(blk, inputs, _name=name):
            ran.append(_name)
            edges[_name] = edges.get(_name, ()) + sources(inputs)

        def after(blk, inputs, output, _name=name):
            mark(output, _name)
        handles += [block.register_forward_pre_hook(before), block.register_forward_hook(after)]
    originals = [(module, attr, getattr(module, attr)) for module, attr in _CONCATS if hasattr(module, attr)]
    try:
        for module, attr, original in originals:
            setattr(module, attr, concat(original))
        inputs = _array(x)
        mark(inputs, "(input)")
        with autograd.predict_mode():
            out = model(inputs)
    except Exception:
        return None
    finally:
        for module, attr, original in originals:
            setattr(module, attr, original)
        for handle in handles:
            handle.detach()
        for block in hybrid:
            block.hybridize(True)
    outputs = sources(out[0] if isinstance(out, (tuple, list)) else out)
    if not outputs or any(not edges.get(name) for name in ran):
        return None
    return {"edges": edges, "outputs": outputs}
