"""GoogLeNet as an MXNet Gluon ``HybridBlock``, built from a ``shared_spec.Spec``.

Every spec op maps to a Gluon block through one table, :data:`OPS`. The builder
holds no channel numbers or kernel sizes: each factory reads its layer record,
plus the oracle's input shape where the Gluon layer needs it (pools choose their
rounding per input size).

Names are structural. Each block is registered under the spec's short name
(``inception4a`` -> ``branch2`` -> ``conv1`` -> ``conv``), so the path through
the block tree *is* the spec name, and :func:`named_parameters` returns the
neutral weight keys (``inception4a.branch2.conv1.conv.weight``). Gluon's own
parameter names are set to the same strings through explicit prefixes, so
``model.collect_params()`` reads the same; nothing depends on Gluon's automatic
``hybridsequential0_conv3_`` prefixes.

MXNet facts this file relies on (measured with mxnet 1.9.1, CPU, see
tests/test_mxnet_traps.py):

- BatchNorm: ``moving = momentum * moving + (1 - momentum) * batch``, so Gluon
  gets ``1 - spec momentum``. The running variance is updated with the
  *biased* batch variance (divide by N*H*W), whereas PyTorch updates it with
  the unbiased one (N*H*W - 1); the normalisation itself uses the biased
  variance in both. The update happens in the *backward* pass: a training-mode
  forward without ``backward()`` (``autograd.train_mode()`` or
  ``autograd.record()`` alone) uses batch statistics but leaves the running
  statistics untouched, unlike PyTorch, which updates them in ``forward``.
- LRN: ``F.LRN`` computes ``a / (knorm + alpha / nsize * sum a^2) ** beta``,
  the spec's PyTorch/Caffe form, so ``alpha`` passes through unchanged.
- Pooling ``pooling_convention="full"`` sizes are ``ceil((n + 2p - k) / s) + 1``
  without PyTorch's rule that drops a last window starting in the padding. Where
  that rule bites (kernel 2, stride 2, pad 1 on 3: full 3, PyTorch 2), the
  ceil size equals the floor size and ``"valid"`` gives the same windows, so
  symmetric padding never needs more (see :func:`pool_plan`). Asymmetric
  padding is padded explicitly (``-inf`` for max) and pooled ``"valid"``.
"""

from __future__ import annotations

import math
from typing import Callable, Iterator, Mapping

import mxnet as mx
import numpy as np
from mxnet import autograd
from mxnet.gluon import HybridBlock, Parameter, nn

import shared_spec
from shared_spec import Aux, Concat, Conv, Init, Layer, Pool, Spec, analyze, ceil_extra_padding, pool_output_size
from shared_spec import contract as C

Shape = tuple[int, ...]


# --------------------------------------------------------------------------- blocks


class Sequence(HybridBlock):
    """Layers run in order; each child is registered under its name relative to ``path``."""

    def __init__(self, layers: tuple[Layer, ...], shapes: Mapping[str, Shape], path: str):
        super().__init__(prefix=f"{path}." if path else "")
        for layer in layers:
            self.register_child(make_block(layer, shapes), _child_name(layer.name, path))

    def hybrid_forward(self, F, x):
        for block in self._children.values():
            x = block(x)
        return x


class GoogLeNet(Sequence):
    """The whole network. Aux heads branch off the main path and add outputs.

    The graph always computes every head (a hybridized graph has one fixed set
    of outputs); :meth:`forward` returns ``(main, aux1, aux2)`` in training mode
    and ``main`` alone in eval mode.
    """

    def __init__(self, spec: Spec):
        super().__init__(spec.layers, {info.name: info.in_shape for info in analyze(spec).layers}, "")
        self.spec = spec

    def hybrid_forward(self, F, x):
        aux_outputs = []
        for block in self._children.values():
            if isinstance(block, AuxHead):
                aux_outputs.append(block(x))  # the main path goes on with x
            else:
                x = block(x)
        return (x, *aux_outputs) if aux_outputs else x

    def forward(self, x):
        out = super().forward(x)
        if isinstance(out, (list, tuple)):
            out = tuple(out)
            if isinstance(x, mx.nd.NDArray) and not autograd.is_training():
                return out[0]
        return out


class ShiftOnlyBatchNorm(HybridBlock):
    """BatchNorm with beta but no gamma: Keras's ``BatchNormalization(scale=False)``.

    Gluon's ``nn.BatchNorm(scale=False)`` still owns a ``gamma`` parameter (``grad_req='null'``, fixed at 1),
    which would be one more weight key and count as a buffer. This block has only ``beta``, ``running_mean``
    and ``running_var`` and calls the same ``F.BatchNorm`` operator with ``fix_gamma=True`` (gamma taken as 1)
    on a ones tensor, so batch statistics, running-statistic updates and eval mode are ``nn.BatchNorm``'s.
    """

    def __init__(self, *, axis: int, momentum: float, epsilon: float, in_channels: int, prefix: str):
        super().__init__(prefix=prefix)
        self._kwargs = {"axis": axis, "eps": epsilon, "momentum": momentum, "fix_gamma": True,
                        "use_global_stats": False}
        self.beta = self.params.get("beta", shape=(in_channels,), init="zeros")
        self.running_mean = self.params.get("running_mean", grad_req="null", shape=(in_channels,), init="zeros",
                                            differentiable=False)
        self.running_var = self.params.get("running_var", grad_req="null", shape=(in_channels,), init="ones",
                                           differentiable=False)

    def cast(self, dtype):
        super().cast("float32" if np.dtype(dtype).name == "float16" else dtype)  # as nn.BatchNorm

    def hybrid_forward(self, F, x, beta, running_mean, running_var):
        return F.BatchNorm(x, F.ones_like(beta), beta, running_mean, running_var, name="fwd", **self._kwargs)


class ConvUnit(HybridBlock):
    """Conv, optional BatchNorm, optional ReLU: torchvision's ``BasicConv2d``."""

    def __init__(self, layer: Conv, shapes: Mapping[str, Shape]):
        super().__init__(prefix=f"{layer.name}.")
        top, bottom, left, right = layer.padding
        symmetric = top == bottom and left == right
        # Gluon pads symmetrically; anything else is padded explicitly first.
        self._pad_width = None if symmetric else (0, 0, 0, 0, top, bottom, left, right)
        self._relu = C.check_activation(layer.activation, layer.path) == "relu"
        self.conv = nn.Conv2D(layer.out_channels, layer.kernel, strides=layer.stride,
                              padding=(top, left) if symmetric else (0, 0), use_bias=layer.bias,
                              in_channels=layer.in_channels, prefix=f"{layer.name}.conv.")
        self.bn = None
        if layer.norm is not None:
            norm_block = nn.BatchNorm if layer.norm.scale else ShiftOnlyBatchNorm
            self.bn = norm_block(axis=1, momentum=1.0 - layer.norm.momentum, epsilon=layer.norm.eps,
                                 in_channels=layer.out_channels, prefix=f"{layer.name}.bn.")

    def hybrid_forward(self, F, x):
        if self._pad_width is not None:
            x = F.pad(x, mode="constant", pad_width=self._pad_width, constant_value=0)
        x = self.conv(x)
        if self.bn is not None:
            x = self.bn(x)
        # Activation(act_type="relu") is MXNet's fused path (nn.Activation uses it); the generic F.relu
        # operator is ~1.8x slower on the CPU for the same numbers (measured by googlenet-suite bench).
        return F.Activation(x, act_type="relu") if self._relu else x


class PoolUnit(HybridBlock):
    """Max or average pool with the spec's padding and rounding, for one input size."""

    def __init__(self, layer: Pool, shapes: Mapping[str, Shape]):
        super().__init__(prefix=f"{layer.name}.")
        self._pad_width, self._kwargs = pool_plan(layer, shapes[layer.name])
        self._pad_value = -math.inf if layer.op == "maxpool" else 0.0
        # Explicit zero padding would count in the average: divide by the real count instead.
        self._divide_by_count = (self._pad_width is not None and layer.op == "avgpool"
                                 and not layer.count_include_pad)

    def hybrid_forward(self, F, x):
        if self._pad_width is None:
            return F.Pooling(x, **self._kwargs)
        out = F.Pooling(F.pad(x, mode="constant", pad_width=self._pad_width, constant_value=self._pad_value),
                        **self._kwargs)
        if self._divide_by_count:
            ones = F.ones_like(F.slice_axis(x, axis=1, begin=0, end=1))
            share = F.Pooling(F.pad(ones, mode="constant", pad_width=self._pad_width, constant_value=0),
                              **self._kwargs)  # real elements / window size
            out = F.broadcast_div(out, share)
        return out


class LocalResponseNorm(HybridBlock):
    def __init__(self, layer: shared_spec.LRN, shapes: Mapping[str, Shape]):
        super().__init__(prefix=f"{layer.name}.")
        # MXNet's LRN divides alpha by nsize itself, like the spec (PyTorch/Caffe).
        self._kwargs = dict(alpha=layer.alpha, beta=layer.beta, knorm=layer.k, nsize=layer.size)

    def hybrid_forward(self, F, x):
        return F.LRN(x, **self._kwargs)


class TransformInput(HybridBlock):
    """torchvision's ``transform_input``: channel ``c`` becomes ``x[:, c] * scale[c] + shift[c]``, channel by
    channel with scalar operators (no Gluon parameter, so no weight key)."""

    def __init__(self, layer: shared_spec.TransformInput, shapes: Mapping[str, Shape]):
        super().__init__(prefix=f"{layer.name}.")
        self._scale, self._shift = layer.scale, layer.shift

    def hybrid_forward(self, F, x):
        channels = [F.slice_axis(x, axis=1, begin=c, end=c + 1) * scale + shift
                    for c, (scale, shift) in enumerate(zip(self._scale, self._shift))]
        return F.concat(*channels, dim=1)


class AdaptiveAvgPool(HybridBlock):
    def __init__(self, layer: shared_spec.AdaptiveAvgPool, shapes: Mapping[str, Shape]):
        super().__init__(prefix=f"{layer.name}.")
        self._output_size = layer.output_size

    def hybrid_forward(self, F, x):
        return F.contrib.AdaptiveAvgPooling2D(x, output_size=self._output_size)


class ConcatUnit(HybridBlock):
    """Parallel branches on the same input, concatenated along channels."""

    def __init__(self, layer: Concat, shapes: Mapping[str, Shape]):
        super().__init__(prefix=f"{layer.name}.")
        for branch in layer.branches:
            self.register_child(Sequence(branch.layers, shapes, branch.name), _child_name(branch.name, layer.name))

    def hybrid_forward(self, F, x):
        return F.concat(*[branch(x) for branch in self._children.values()], dim=1)


class AuxHead(Sequence):
    """A side classifier; :class:`GoogLeNet` feeds it the current tensor and goes on unchanged."""

    def __init__(self, layer: Aux, shapes: Mapping[str, Shape]):
        super().__init__(layer.layers, shapes, layer.name)


def _dense(layer: shared_spec.Dense, shapes: Mapping[str, Shape]) -> HybridBlock:
    return nn.Dense(layer.out_features, activation=C.check_activation(layer.activation, layer.path),
                    use_bias=layer.bias,
                    in_units=layer.in_features, prefix=f"{layer.name}.")


OpFactory = Callable[[Layer, Mapping[str, Shape]], HybridBlock]

#: spec op -> Gluon block factory; ``shapes`` maps layer names to the oracle's input shapes.
OPS: dict[str, OpFactory] = {
    "conv": ConvUnit,
    "maxpool": PoolUnit,
    "avgpool": PoolUnit,
    "global_avgpool": lambda layer, shapes: nn.GlobalAvgPool2D(prefix=f"{layer.name}."),
    "adaptive_avgpool": AdaptiveAvgPool,
    "lrn": LocalResponseNorm,
    "dropout": lambda layer, shapes: nn.Dropout(layer.rate, prefix=f"{layer.name}."),
    "flatten": lambda layer, shapes: nn.Flatten(prefix=f"{layer.name}."),
    "dense": _dense,
    "concat": ConcatUnit,
    "aux": AuxHead,
    "transform_input": TransformInput,
}


def make_block(layer: Layer, shapes: Mapping[str, Shape]) -> HybridBlock:
    factory = OPS.get(layer.op)
    if factory is None:
        raise C.unknown_op(layer.op, OPS, layer.path)
    return factory(layer, shapes)


def _child_name(name: str, parent: str) -> str:
    if not parent:
        return name
    if not name.startswith(parent + "."):
        raise ValueError(f"layer {name!r} is not inside {parent!r}")
    return name[len(parent) + 1:]


# --------------------------------------------------------------------------- pools


def _mxnet_pool_size(size: int, kernel: int, stride: int, pad: int, convention: str) -> int:
    span = size + 2 * pad - kernel
    return (span // stride if convention == "valid" else -(-span // stride)) + 1


def pool_plan(layer: Pool, in_shape: Shape) -> tuple[tuple[int, ...] | None, dict]:
    """``(explicit pad_width or None, F.Pooling kwargs)`` giving the oracle's output size.

    Symmetric padding uses Pooling's own ``pad`` with ``"valid"`` (floor) or
    ``"full"`` (ceil), whichever gives the oracle's size; the windows then start
    where PyTorch's do. One of the two always does: with ``P = n + 2p``,
    PyTorch's ceil size ``c = ceil((P - k) / s) + 1`` drops its last window when
    that window's start ``(c - 1) * s`` reaches ``n + p``; ``c - 1`` is then the
    floor size, unless ``s`` divides ``P - k``, which would put that start at
    ``P - k >= n + p``, i.e. ``p >= k`` (the spec allows at most ``k // 2``).
    Asymmetric padding pads the input explicitly, including
    ``ceil_extra_padding`` after, and pools ``"valid"``.
    """
    _, h, w = in_shape
    (kh, kw), (sh, sw), (top, bottom, left, right) = layer.kernel, layer.stride, layer.padding
    want = (pool_output_size(h, kh, sh, top, bottom, layer.rounding),
            pool_output_size(w, kw, sw, left, right, layer.rounding))
    kwargs = dict(kernel=layer.kernel, stride=layer.stride, pool_type="max" if layer.op == "maxpool" else "avg")
    if layer.op == "avgpool":
        kwargs["count_include_pad"] = layer.count_include_pad
    # MXNet's Pooling refuses a kernel larger than the padded input (googlenet at its 15x15 minimum:
    # maxpool3 sees 2x2); such windows take the explicit-padding path below.
    fits = h + top + bottom >= kh and w + left + right >= kw
    if top == bottom and left == right and fits:
        for convention in ("valid", "full"):
            if (_mxnet_pool_size(h, kh, sh, top, convention), _mxnet_pool_size(w, kw, sw, left, convention)) == want:
                return None, {**kwargs, "pad": (top, left), "pooling_convention": convention}
    extra_h = ceil_extra_padding(h, kh, sh, top, bottom, layer.rounding)
    extra_w = ceil_extra_padding(w, kw, sw, left, right, layer.rounding)
    return (0, 0, 0, 0, top, bottom + extra_h, left, right + extra_w), {**kwargs, "pad": (0, 0),
                                                                          "pooling_convention": "valid"}


# --------------------------------------------------------------------------- init


class TruncNormal(mx.init.Initializer):
    """normal(0, std) redrawn inside the absolute bounds [a, b] (torchvision's trunc_normal_).

    At the spec's std 0.01 and bounds +-2 (200 std) nothing is ever redrawn, so it
    draws exactly what ``mx.init.Normal(sigma=std)`` draws.
    """

    def __init__(self, std: float, a: float, b: float):
        super().__init__(std=std, a=a, b=b)
        self.std, self.a, self.b = std, a, b

    def _init_weight(self, _, arr):
        mx.nd.random.normal(0, self.std, out=arr)
        for _ in range(100):
            outside = (arr < self.a) + (arr > self.b)
            if not outside.sum().asscalar():
                return
            arr[:] = mx.nd.where(outside, mx.nd.random.normal(0, self.std, shape=arr.shape, ctx=arr.context), arr)
        raise ValueError(f"trunc_normal(std={self.std}, a={self.a}, b={self.b}): bounds too narrow to sample")


def _initializer(key: str, init: Init) -> mx.init.Initializer:
    if key.endswith((".bn.gamma", ".bn.running_var")):
        return mx.init.One()
    if key.endswith((".bn.beta", ".bn.running_mean")):
        return mx.init.Zero()
    if key.endswith(".bias"):
        return mx.init.Constant(init.bias)
    if init.weight == "trunc_normal":
        return TruncNormal(init.std, init.a, init.b)
    if init.weight == "xavier_uniform":
        # sqrt(magnitude / ((fan_in + fan_out) / 2)) = sqrt(6 / (fan_in + fan_out)): Glorot uniform.
        return mx.init.Xavier(rnd_type="uniform", factor_type="avg", magnitude=3)
    raise C.ContractError(f"unknown init. Received: init.weight={init.weight!r}")


# --------------------------------------------------------------------------- build


def named_blocks(block: HybridBlock, path: str = "") -> Iterator[tuple[str, HybridBlock]]:
    """Every descendant block with its structural name (``inception4a.branch2.conv1``)."""
    for name, child in block._children.items():
        child_path = f"{path}.{name}" if path else name
        yield child_path, child
        yield from named_blocks(child, child_path)


def named_parameters(model: HybridBlock) -> dict[str, Parameter]:
    """Neutral weight key -> Gluon parameter, keyed by the block path plus the parameter's attribute name."""
    params = {}
    for path, block in [("", model), *named_blocks(model)]:
        for name, param in block._reg_params.items():
            params[f"{path}.{name}" if path else name] = param
    return params


def context(device: str) -> mx.Context:
    """``shared_spec.contract``'s device rule, with MXNet's first GPU."""
    chosen = C.resolve_device(device, has_gpu=lambda: mx.context.num_gpus() > 0,
                              framework="MXNet (mx.context.num_gpus() == 0)")
    return mx.gpu(0) if chosen == "gpu" else mx.cpu()


def build(spec: Spec, *, device: str = "auto", seed: int | None = None, hybridize: bool = False) -> GoogLeNet:
    """The spec's network as a Gluon ``HybridBlock``, initialised by ``spec.init``.

    The model is built for ``spec.input_shape`` (pool rounding and dense input
    sizes depend on it). ``seed`` seeds MXNet's RNG: the same seed gives
    bit-identical weights. ``hybridize=True`` hybridizes with ``static_alloc``.
    """
    C.check_spec(spec)
    C.check_seed(seed)
    if not isinstance(hybridize, bool):
        raise C.ContractError(f"hybridize must be True or False. Received: hybridize={hybridize!r}")
    ctx = context(device)
    model = GoogLeNet(spec)
    if seed is not None:
        mx.random.seed(seed)
    for key, param in named_parameters(model).items():
        param.initialize(init=_initializer(key, spec.init), ctx=ctx)
    if hybridize:
        model.hybridize(static_alloc=True)
    return model
