"""``googlenet-suite check --keras``: a user's own ``keras.Model`` (Sequential, functional or subclassed), read and
set in the neutral layout (HWIO <-> OIHW, dense (in, out) <-> (out, in)), every layer's output recorded by wrapping
its ``call`` for one forward pass; a functional model's data flow read from its layer graph
(``googlenet_suite/check/`` does the rest)."""

from __future__ import annotations

import numpy as np

import keras

CHANNELS_LAST = True

_CONV = (keras.layers.Conv2D,)
_BN = (keras.layers.BatchNormalization,)
_POOL = (keras.layers.MaxPooling2D, keras.layers.AveragePooling2D, keras.layers.GlobalAveragePooling2D,
         keras.layers.GlobalMaxPooling2D)


def is_model(obj) -> bool:
    return isinstance(obj, keras.layers.Layer)


def prepare(obj, spec):
    if not isinstance(obj, keras.layers.Layer):
        raise TypeError(f"expected a keras.Model, got {type(obj).__module__}.{type(obj).__name__}")
    if not obj.built or not obj.weights:
        c, h, w = spec.input_shape
        obj(np.zeros((1, h, w, c), np.float32))  # builds a Sequential or subclassed model
    return obj


def _layers(model) -> list[tuple[str, object]]:
    """Every sublayer with a dotted path, depth first in tracking order."""
    out = []

    def walk(layer, prefix):
        for child in layer._flatten_layers(include_self=False, recursive=False):
            name = f"{prefix}{child.name}"
            out.append((name, child))
            walk(child, f"{name}.")

    walk(model, "")
    return out


def _tensors(layer) -> dict[str, object]:
    if isinstance(layer, _CONV):
        return {"conv.weight": layer.kernel, "conv.bias": layer.bias}
    if isinstance(layer, _BN):
        return {"bn.gamma": layer.gamma, "bn.beta": layer.beta, "bn.running_mean": layer.moving_mean,
                "bn.running_var": layer.moving_variance}
    if isinstance(layer, keras.layers.Dense):
        return {"dense.weight": layer.kernel, "dense.bias": layer.bias}
    return {}


def _neutral_shape(role: str, shape) -> tuple[int, ...]:
    if role == "conv.weight":
        kh, kw, i, o = shape
        return (o, i, kh, kw)
    if role == "dense.weight":
        return (shape[1], shape[0])
    return tuple(shape)


def parameters(model) -> list[dict]:
    out = []
    for name, layer in _layers(model):
        for role, var in _tensors(layer).items():
            if var is not None:
                out.append({"name": f"{name}.{role.split('.')[-1]}", "module": name, "role": role,
                            "shape": _neutral_shape(role, tuple(var.shape)), "_var": var})
    return out


def _functional(layer) -> bool:
    return bool(getattr(layer, "_nodes", None)) and not isinstance(layer, keras.Sequential) \
        and bool(getattr(layer, "outputs", None))


def _graph(model, prefix: str, edges: dict) -> None:
    """``model``'s layers -> the layers whose outputs they take, in input order, named by dotted path; a functional
    model inside is expanded (its input layers fed by what feeds it, its name standing for its outputs)."""
    for layer in model._flatten_layers(include_self=False, recursive=False):
        inbound = [node for k, node in enumerate(layer._inbound_nodes) if f"{id(layer)}_ib-{k}" in model._nodes]
        sources = tuple(f"{prefix}{t._keras_history.operation.name}" for node in inbound for t in node.input_tensors)
        name = f"{prefix}{layer.name}"
        if _functional(layer):
            for tensor in layer.inputs:
                edges[f"{name}.{tensor._keras_history.operation.name}"] = sources
            _graph(layer, f"{name}.", edges)
            sources = tuple(f"{name}.{t._keras_history.operation.name}" for t in layer.outputs)
        edges[name] = edges.get(name, ()) + sources


def flow(model, x=None) -> dict | None:
    """A functional model's layer graph (nested functional models expanded): each layer -> the layers whose
    outputs it takes, in input order (a ``Concatenate``'s is its branch order), and the output layers. None for a
    Sequential or subclassed model (the order its layers run in is then its data flow); a Sequential or
    subclassed layer inside a functional model keeps its place, its own layers in the order they run."""
    if not _functional(model):
        return None
    edges: dict = {}
    _graph(model, "", edges)
    return {"edges": edges, "outputs": tuple(t._keras_history.operation.name for t in model.outputs)}


def load(model, values: dict[str, np.ndarray]) -> None:
    by_name = {p["name"]: p for p in parameters(model)}
    for name, value in values.items():
        p = by_name[name]
        if p["role"] == "conv.weight":
            value = value.transpose(2, 3, 1, 0)
        elif p["role"] == "dense.weight":
            value = value.T
        p["_var"].assign(np.ascontiguousarray(value, np.float32))


def _numpy(value) -> np.ndarray | None:
    try:
        array = keras.ops.convert_to_numpy(value)
    except Exception:
        return None
    if array.ndim == 4:
        return array.transpose(0, 3, 1, 2).copy()  # NHWC -> NCHW
    return array.copy() if array.ndim == 2 else None


def run(model, x: np.ndarray):
    """Logits and every layer's output (channels-first), in the order the layers finish."""
    records = []
    wrapped = []
    for name, layer in _layers(model):
        kind = ("conv" if isinstance(layer, _CONV) else "bn" if isinstance(layer, _BN) else
                "dense" if isinstance(layer, keras.layers.Dense) else "pool" if isinstance(layer, _POOL) else "other")
        activation = getattr(layer, "activation", None)
        linear = activation is None or getattr(activation, "__name__", "") == "linear"
        original = layer.call

        def call(*args, _original=original, _name=name, _kind=kind, _pre=kind in ("conv", "bn", "dense") and linear,
                 **kwargs):
            out = _original(*args, **kwargs)
            value = _numpy(out)
            if value is not None:
                records.append({"name": _name, "kind": _kind, "value": value, "pre_activation": _pre})
            return out

        object.__setattr__(layer, "call", call)
        wrapped.append(layer)
    try:
        logits = model(np.ascontiguousarray(x.transpose(0, 2, 3, 1)), training=False)
    finally:
        for layer in wrapped:
            object.__delattr__(layer, "call")
    if isinstance(logits, (list, tuple)):
        logits = logits[0]
    return keras.ops.convert_to_numpy(logits), records
