"""GoogLeNet from a :class:`shared_spec.Spec`, written straight into an ONNX graph with ``onnx.helper``.

One table, :data:`OPS`, maps each spec op to a function that appends ONNX nodes to a
:class:`GraphBuilder`; every number comes from the spec's resolved records and the
oracle's shapes (the graph has a fixed C x H x W and a symbolic batch axis ``N``).

Names: the input is ``x``; each layer's output tensor is named by its spec name
(``inception3a.branch2.conv1`` is the conv unit's post-activation output, ``inception3a``
the concatenation, ``aux1`` the aux head's logits); inner nodes are ``NAME.conv``,
``NAME.bn``, ``NAME.relu``; initializers are the neutral weight keys
(``NAME.conv.weight``, ``NAME.bn.gamma`` ...). The graph's outputs are ``logits`` and,
with aux heads on, one per head (``aux1``, ``aux2``); with ``all_layers=True`` every
name in ``spec.walk()`` is an output too.

No deep-learning framework is imported here: only ``onnx`` and ``numpy``.
"""

from __future__ import annotations

import json
from typing import Callable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

import shared_spec
from shared_spec import contract as C
from shared_spec import spec as S

OPSET = 17
MIN_OPSET = 13  # Slice/Split/Pad with inputs, BatchNormalization without spatial
INPUT = "x"
LOGITS = "logits"
PRODUCER = "googlenet-suite impl_onnx"


class OnnxBuildError(C.ContractError):
    """The spec asks for something this builder cannot express. One line."""


def check_opset(opset) -> int:
    top = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise C.ContractError(f"opset must be an integer in {MIN_OPSET}..{top} (onnx {onnx.__version__}). "
                         f"Received: opset={opset!r}")
    return opset


def onnx_ceil_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int) -> int:
    """ONNX's ceil_mode output size as its operator spec states it: ceil((in + pads - k) / s) + 1,
    without the rule that a last window may not start in the padding (onnxruntime versions differ
    there, so the builder only trusts ceil_mode where the two rules agree)."""
    return S.ceil_div(size + pad_before + pad_after - kernel, stride) + 1


class GraphBuilder:
    """Collects nodes; tracks each tensor's (C, H, W) shape from the oracle's rules."""

    def __init__(self, spec: S.Spec, opset: int):
        self.spec = spec
        self.opset = opset
        self.nodes: list[onnx.NodeProto] = []
        self.constants: list[onnx.TensorProto] = []  # non-weight initializers (slice bounds, axes)

    def node(self, op_type: str, inputs: list[str], output: str, name: str | None = None, **attrs) -> str:
        self.nodes.append(helper.make_node(op_type, inputs, [output], name=name or output, **attrs))
        return output

    def const(self, name: str, values, dtype=np.int64) -> str:
        self.constants.append(numpy_helper.from_array(np.asarray(values, dtype=dtype), name=name))
        return name

    def reduce_mean(self, x: str, axes: list[int], output: str) -> str:
        if self.opset >= 18:  # axes became an input in opset 18
            return self.node("ReduceMean", [x, self.const(f"{output}.axes", axes)], output, keepdims=1)
        return self.node("ReduceMean", [x], output, axes=axes, keepdims=1)


# --------------------------------------------------------------------------- the op table
# Each function: (graph, layer, input tensor name, input shape (C, H, W) or (F,)) -> output tensor name.
# The output tensor carries the layer's spec name.

ACTIVATIONS = {"relu": "Relu"}


def _onnx_pads(padding: tuple[int, int, int, int], extra_h: int = 0, extra_w: int = 0) -> list[int]:
    """spec (top, bottom, left, right) -> ONNX [top, left, bottom, right]."""
    top, bottom, left, right = padding
    return [top, left, bottom + extra_h, right + extra_w]


def conv(g: GraphBuilder, layer: S.Conv, x: str, shape) -> str:
    name = layer.name
    inputs = [x, f"{name}.conv.weight"] + ([f"{name}.conv.bias"] if layer.bias else [])
    out = name if layer.norm is None and layer.activation is None else f"{name}.conv"
    y = g.node("Conv", inputs, out, name=f"{name}.conv", kernel_shape=list(layer.kernel),
               strides=list(layer.stride), pads=_onnx_pads(layer.padding))
    if layer.norm is not None:
        out = name if layer.activation is None else f"{name}.bn"
        # inference mode: running statistics (training_mode defaults to 0). ONNX's BatchNormalization always
        # takes a scale: a BN without gamma (Keras's scale=False) gets a constant of ones, not a weight.
        scale = (f"{name}.bn.gamma" if layer.norm.scale
                 else g.const(f"{name}.bn.ones", np.ones(layer.out_channels), dtype=np.float32))
        y = g.node("BatchNormalization", [y, scale] + [f"{name}.bn.{k}" for k in S.BN_KEYS[1:]], out,
                   name=f"{name}.bn", epsilon=float(layer.norm.eps))
    if C.check_activation(layer.activation, layer.path) is not None:
        y = g.node(ACTIVATIONS[layer.activation], [y], name, name=f"{name}.relu")
    return y


def pool_plan(layer: S.Pool, h: int, w: int) -> tuple[list[int], int]:
    """(ONNX pads, ceil_mode) giving exactly the oracle's output size and windows.

    ceil rounding: ``ceil_mode=1`` where ONNX's ceil size equals ``shared_spec.pool_output_size``;
    elsewhere (the oracle drops a last window that would start in the padding) floor mode with the
    extra bottom/right padding of ``shared_spec.ceil_extra_padding`` (MaxPool pads never win a max;
    a ceil-mode average pool with extra padding is rejected by the oracle already).
    """
    (kh, kw), (sh, sw), (top, bottom, left, right) = layer.kernel, layer.stride, layer.padding
    if layer.rounding == "floor":
        return _onnx_pads(layer.padding), 0
    oh = shared_spec.pool_output_size(h, kh, sh, top, bottom, "ceil")
    ow = shared_spec.pool_output_size(w, kw, sw, left, right, "ceil")
    if (onnx_ceil_size(h, kh, sh, top, bottom), onnx_ceil_size(w, kw, sw, left, right)) == (oh, ow):
        return _onnx_pads(layer.padding), 1
    extra_h = shared_spec.ceil_extra_padding(h, kh, sh, top, bottom, "ceil")
    extra_w = shared_spec.ceil_extra_padding(w, kw, sw, left, right, "ceil")
    return _onnx_pads(layer.padding, extra_h, extra_w), 0


def pool(g: GraphBuilder, layer: S.Pool, x: str, shape) -> str:
    _, h, w = shape
    pads, ceil_mode = pool_plan(layer, h, w)
    attrs = dict(kernel_shape=list(layer.kernel), strides=list(layer.stride), pads=pads, ceil_mode=ceil_mode)
    if layer.op == "maxpool":
        return g.node("MaxPool", [x], layer.name, **attrs)
    return g.node("AveragePool", [x], layer.name, count_include_pad=int(layer.count_include_pad), **attrs)


def global_avgpool(g: GraphBuilder, layer: S.GlobalAvgPool, x: str, shape) -> str:
    return g.node("GlobalAveragePool", [x], layer.name)  # N x C x 1 x 1


def adaptive_windows(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's adaptive pooling windows: [floor(i * size / out), ceil((i + 1) * size / out))."""
    return [((i * size) // out, -(-((i + 1) * size) // out)) for i in range(out)]


def adaptive_avgpool(g: GraphBuilder, layer: S.AdaptiveAvgPool, x: str, shape) -> str:
    """Not an ONNX op: one Slice + ReduceMean per output cell, concatenated along W, then H (exact)."""
    _, h, w = shape
    oh, ow = layer.output_size
    name = layer.name
    rows = []
    for i, (h0, h1) in enumerate(adaptive_windows(h, oh)):
        cells = []
        for j, (w0, w1) in enumerate(adaptive_windows(w, ow)):
            cell = f"{name}.cell{i}_{j}"
            sliced = g.node("Slice", [x, g.const(f"{cell}.starts", [h0, w0]), g.const(f"{cell}.ends", [h1, w1]),
                                      g.const(f"{cell}.axes", [2, 3])], f"{cell}.slice")
            cells.append(g.reduce_mean(sliced, [2, 3], f"{cell}.mean"))
        rows.append(g.node("Concat", cells, f"{name}.row{i}", axis=3))
    return g.node("Concat", rows, name, axis=2)  # N x C x oh x ow


def lrn(g: GraphBuilder, layer: S.LRN, x: str, shape) -> str:
    # ONNX LRN divides alpha by size like PyTorch/Caffe: x / (k + alpha / size * sum(x^2)) ** beta
    return g.node("LRN", [x], layer.name, size=layer.size, alpha=layer.alpha, beta=layer.beta, bias=layer.k)


def transform_input(g: GraphBuilder, layer: S.TransformInput, x: str, shape) -> str:
    """torchvision's transform_input: x * scale + shift per channel (constants of shape 1 x C x 1 x 1)."""
    name = layer.name
    scale = g.const(f"{name}.scale", np.reshape(layer.scale, (1, -1, 1, 1)), dtype=np.float32)
    shift = g.const(f"{name}.shift", np.reshape(layer.shift, (1, -1, 1, 1)), dtype=np.float32)
    return g.node("Add", [g.node("Mul", [x, scale], f"{name}.mul"), shift], name)


def dropout(g: GraphBuilder, layer: S.Dropout, x: str, shape) -> str:
    return g.node("Identity", [x], layer.name)  # inference only: dropout is the identity


def flatten(g: GraphBuilder, layer: S.Flatten, x: str, shape) -> str:
    return g.node("Flatten", [x], layer.name, axis=1)  # N x (C * H * W), channels-first order


def dense(g: GraphBuilder, layer: S.Dense, x: str, shape) -> str:
    name = layer.name
    inputs = [x, f"{name}.weight"] + ([f"{name}.bias"] if layer.bias else [])
    out = name if layer.activation is None else f"{name}.linear"
    y = g.node("Gemm", inputs, out, name=f"{name}.gemm", transB=1)  # weight is (out, in)
    if C.check_activation(layer.activation, layer.path) is not None:
        y = g.node(ACTIVATIONS[layer.activation], [y], name, name=f"{name}.relu")
    return y


def concat(g: GraphBuilder, layer: S.Concat, x: str, shape) -> str:
    outs = [_sequence(g, branch.layers, x, shape)[0] for branch in layer.branches]
    return g.node("Concat", outs, layer.name, axis=1)


def aux(g: GraphBuilder, layer: S.Aux, x: str, shape) -> str:
    last, _ = _sequence(g, layer.layers, x, shape)
    return g.node("Identity", [last], layer.name)  # the head's logits, under the head's name


OPS: dict[str, Callable[[GraphBuilder, S.Layer, str, tuple], str]] = {
    "conv": conv,
    "maxpool": pool,
    "avgpool": pool,
    "global_avgpool": global_avgpool,
    "adaptive_avgpool": adaptive_avgpool,
    "lrn": lrn,
    "dropout": dropout,
    "flatten": flatten,
    "dense": dense,
    "concat": concat,
    "aux": aux,
    "transform_input": transform_input,
}


def _layer(g: GraphBuilder, layer: S.Layer, x: str, shape) -> str:
    fn = OPS.get(layer.op)
    if fn is None:
        raise C.unknown_op(layer.op, OPS, layer.path)
    return fn(g, layer, x, shape)


def _sequence(g: GraphBuilder, layers, x: str, shape) -> tuple[str, tuple]:
    """Append the layers in order; aux heads branch off, the main path goes on with the same tensor."""
    for layer in layers:
        out = _layer(g, layer, x, shape)
        if isinstance(layer, S.Aux):
            continue
        x, shape = out, _shape_after(layer, shape)
    return x, shape


def _shape_after(layer: S.Layer, shape) -> tuple:
    if isinstance(layer, S.Concat):
        outs = [_branch_shape(b.layers, shape) for b in layer.branches]
        return (sum(o[0] for o in outs), *outs[0][1:])
    return shared_spec.oracle.output_shape(layer, shape)


def _branch_shape(layers, shape):
    for layer in layers:
        if not isinstance(layer, S.Aux):
            shape = _shape_after(layer, shape)
    return shape


# --------------------------------------------------------------------------- the model proto


def metadata(spec: S.Spec) -> dict[str, str]:
    return {
        "variant": spec.variant,
        "overrides": json.dumps(dict(spec.overrides), sort_keys=True, default=list),
        "suite_version": shared_spec.__version__,
    }


def output_names(spec: S.Spec, *, all_layers: bool = False) -> list[str]:
    names = [LOGITS] + [head.name for head in spec.aux_heads]
    if all_layers:
        names += [layer.name for layer in spec.walk() if layer.name not in names]
    return names


def build_proto(spec: S.Spec, weights: Mapping[str, np.ndarray], *, opset: int = OPSET,
                all_layers: bool = False) -> onnx.ModelProto:
    """The spec's network as an ONNX model; ``weights`` (neutral layout) become its initializers."""
    C.check_spec(spec)
    check_opset(opset)
    g = GraphBuilder(spec, opset)
    last, _ = _sequence(g, spec.layers, INPUT, spec.input_shape)
    g.node("Identity", [last], LOGITS)
    report = shared_spec.analyze(spec)
    batch = "N"

    def value_info(name: str, shape) -> onnx.ValueInfoProto:
        return helper.make_tensor_value_info(name, TensorProto.FLOAT, [batch, *shape])

    shapes = {LOGITS: (spec.num_classes,), **{info.name: info.out_shape for info in report.layers}}
    outputs = [value_info(name, shapes[name]) for name in output_names(spec, all_layers=all_layers)]
    initializers = [numpy_helper.from_array(np.ascontiguousarray(weights[key], dtype=np.float32), name=key)
                    for key in spec.weight_shapes()]
    graph = helper.make_graph(g.nodes, f"googlenet-suite.{spec.variant}", [value_info(INPUT, spec.input_shape)],
                              outputs, initializer=initializers + g.constants)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name=PRODUCER,
                              producer_version=shared_spec.__version__)
    helper.set_model_props(model, metadata(spec))
    return model


# --------------------------------------------------------------------------- init


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    receptive = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return shape[1] * receptive, shape[0] * receptive


def _trunc_normal(rng: np.random.Generator, shape, init: S.Init) -> np.ndarray:
    """normal(0, std) truncated to the absolute bounds [a, b] by redrawing what falls outside."""
    out = rng.normal(0.0, init.std, size=shape)
    bad = (out < init.a) | (out > init.b)
    while bad.any():
        out[bad] = rng.normal(0.0, init.std, size=int(bad.sum()))
        bad = (out < init.a) | (out > init.b)
    return out


def _xavier_uniform(rng: np.random.Generator, shape, init: S.Init) -> np.ndarray:
    fan_in, fan_out = _fans(shape)
    bound = float(np.sqrt(6.0 / (fan_in + fan_out)))
    return rng.uniform(-bound, bound, size=shape)


INITS: dict[str, Callable[[np.random.Generator, tuple, S.Init], np.ndarray]] = {
    "trunc_normal": _trunc_normal,
    "xavier_uniform": _xavier_uniform,
}


def init_weights(spec: S.Spec, seed: int | None = None) -> dict[str, np.ndarray]:
    """Neutral-layout weights by ``spec.init`` from ``numpy.random.default_rng(seed)``, in spec order."""
    init = spec.init
    if init.weight not in INITS:
        raise ValueError(f"unknown init; expected one of {', '.join(INITS)}. Received: init.weight={init.weight!r}")
    rng = np.random.default_rng(seed)
    weights: dict[str, np.ndarray] = {}
    for key, shape in spec.weight_shapes().items():
        if key.endswith(".weight"):
            value = INITS[init.weight](rng, shape, init)
        elif key.endswith(".bias"):
            value = np.full(shape, init.bias)
        elif key.endswith((".bn.gamma", ".bn.running_var")):
            value = np.ones(shape)
        else:  # .bn.beta, .bn.running_mean
            value = np.zeros(shape)
        weights[key] = value.astype(np.float32)
    return weights
