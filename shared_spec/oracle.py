"""The framework-free oracle: shapes, parameters, buffers and MACs of a spec.

Shape inference lives here and nowhere else (the loader calls
:func:`output_shape` to resolve dense input sizes and to reject inputs that
are too small). Shapes are channels-first, without the batch axis.

Conventions:
- trainable parameters: conv weights and biases, BN gamma (where it has a
  scale) and beta, dense weights and biases;
- buffers: BN running mean and running variance (PyTorch's
  ``num_batches_tracked`` counter is not a statistic and is not counted);
- MACs: multiply-accumulates of convolutions and dense layers per image
  (pooling, BN, LRN, activations and additions are not counted).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .errors import SuiteError
from .spec import (AdaptiveAvgPool, Aux, Concat, Conv, Dense, Dropout, Flatten, GlobalAvgPool, Layer, LRN, Pool,
                   Spec, SpecError, TransformInput, ceil_div)

Shape = tuple[int, ...]


class ShapeError(SuiteError, ValueError):
    """A layer cannot take the shape it is given."""

    def __init__(self, message: str, layer: Layer | None = None):
        super().__init__(message)
        self.layer = layer


@dataclass(frozen=True, slots=True)
class LayerInfo:
    name: str
    op: str
    depth: int
    in_shape: Shape
    out_shape: Shape
    params: int
    buffers: int
    macs: int
    container: bool


@dataclass(frozen=True, slots=True)
class Analysis:
    variant: str
    input_shape: Shape
    num_classes: int
    aux_logits: bool
    layers: tuple[LayerInfo, ...]
    params: int
    buffers: int
    macs: int
    min_input_size: tuple[int, int]
    aux_outputs: tuple[tuple[str, Shape], ...]

    def layer(self, name: str) -> LayerInfo:
        for info in self.layers:
            if info.name == name:
                return info
        raise KeyError(name)

    @property
    def output_shape(self) -> Shape:
        return self.layers_top[-1].out_shape

    @property
    def layers_top(self) -> tuple[LayerInfo, ...]:
        return tuple(info for info in self.layers if info.depth == 0)

    def stage_shapes(self, spec: Spec) -> dict[str, Shape]:
        return {stage: self.layer(last).out_shape for stage, last in spec.stages}


def pool_output_size(size: int, kernel: int, stride: int, pad_before: int, pad_after: int, rounding: str) -> int:
    """PyTorch's rule; with ceil, a last window that would start in the padding is dropped."""
    span = size + pad_before + pad_after - kernel
    if rounding == "floor":
        return span // stride + 1
    out = ceil_div(span, stride) + 1
    if (out - 1) * stride >= size + pad_before:
        out -= 1
    return out


def ceil_extra_padding(size: int, kernel: int, stride: int, pad_before: int, pad_after: int, rounding: str) -> int:
    """Zeros (or -inf) to add after ``pad_after`` so that a 'valid' floor pool gives the ceil size.

    Frameworks without a ceil mode (Keras) pad explicitly by this much.
    """
    out = pool_output_size(size, kernel, stride, pad_before, pad_after, rounding)
    return max(0, (out - 1) * stride + kernel - (size + pad_before + pad_after))


def output_shape(layer: Layer, shape: Shape) -> Shape:
    """Output shape of a leaf layer (containers are walked by the caller)."""
    try:
        return _output_shape(layer, shape)
    except ShapeError as exc:
        exc.layer = exc.layer or layer
        raise


def _output_shape(layer: Layer, shape: Shape) -> Shape:
    if isinstance(layer, Conv):
        c, h, w = _map(layer, shape)
        if c != layer.in_channels:
            raise ShapeError(f"{layer.name}: expects {layer.in_channels} channels, gets {c}")
        (kh, kw), (sh, sw), (pt, pb, pl, pr) = layer.kernel, layer.stride, layer.padding
        oh, ow = (h + pt + pb - kh) // sh + 1, (w + pl + pr - kw) // sw + 1
        return _positive(layer, (layer.out_channels, oh, ow), (h, w))
    if isinstance(layer, Pool):
        c, h, w = _map(layer, shape)
        (kh, kw), (sh, sw), (pt, pb, pl, pr) = layer.kernel, layer.stride, layer.padding
        oh = pool_output_size(h, kh, sh, pt, pb, layer.rounding)
        ow = pool_output_size(w, kw, sw, pl, pr, layer.rounding)
        out = _positive(layer, (c, oh, ow), (h, w))
        if layer.op == "avgpool" and (ceil_extra_padding(h, kh, sh, pt, pb, layer.rounding)
                                      or ceil_extra_padding(w, kw, sw, pl, pr, layer.rounding)):
            raise ShapeError(f"{layer.name}: a ceil-mode average pool whose last window hangs over the input "
                             f"({h}x{w}) divides differently in each framework; not supported")
        return out
    if isinstance(layer, GlobalAvgPool):
        c, _, _ = _map(layer, shape)
        return (c, 1, 1)
    if isinstance(layer, AdaptiveAvgPool):
        c, _, _ = _map(layer, shape)
        return (c, *layer.output_size)
    if isinstance(layer, (LRN, Dropout)):
        return shape
    if isinstance(layer, TransformInput):
        c, _, _ = _map(layer, shape)
        if c != len(layer.scale):
            raise ShapeError(f"{layer.name}: re-normalises {len(layer.scale)} channels, gets {c}")
        return shape
    if isinstance(layer, Flatten):
        size = 1
        for d in shape:
            size *= d
        return (size,)
    if isinstance(layer, Dense):
        if len(shape) != 1:
            raise ShapeError(f"{layer.name}: dense needs a flat input, gets {shape}")
        if shape[0] != layer.in_features:
            raise ShapeError(f"{layer.name}: expects {layer.in_features} input features, gets {shape[0]}")
        return (layer.out_features,)
    raise ShapeError(f"{layer.name}: no shape rule for op {layer.op!r}")


def _map(layer, shape):
    if len(shape) != 3:
        raise ShapeError(f"{layer.name}: {layer.op} needs a (C, H, W) input, gets {shape}")
    return shape


def _positive(layer, out, in_hw):
    if out[1] < 1 or out[2] < 1:
        raise ShapeError(f"{layer.name} gets {in_hw[0]}x{in_hw[1]}, its output would be {out[1]}x{out[2]} "
                         f"(too small)")
    return out


def param_counts(layer: Layer) -> tuple[int, int]:
    """(trainable, buffers) of a leaf layer."""
    if isinstance(layer, Conv):
        kh, kw = layer.kernel
        params = layer.out_channels * layer.in_channels * kh * kw + (layer.out_channels if layer.bias else 0)
        buffers = 0
        if layer.norm is not None:
            params += (2 if layer.norm.scale else 1) * layer.out_channels  # beta, and gamma where it scales
            buffers = 2 * layer.out_channels
        return params, buffers
    if isinstance(layer, Dense):
        return layer.out_features * layer.in_features + (layer.out_features if layer.bias else 0), 0
    return 0, 0


def macs(layer: Layer, out_shape: Shape) -> int:
    if isinstance(layer, Conv):
        kh, kw = layer.kernel
        return out_shape[0] * out_shape[1] * out_shape[2] * layer.in_channels * kh * kw
    if isinstance(layer, Dense):
        return layer.in_features * layer.out_features
    return 0


def _walk(layers, shape: Shape, depth: int, infos: list, aux_out: list, check_dense: bool = True) -> Shape:
    for layer in layers:
        if isinstance(layer, Concat):
            start = len(infos)
            infos.append(None)  # placeholder, filled in below
            outs = []
            for branch in layer.branches:
                outs.append(_walk(branch.layers, shape, depth + 1, infos, aux_out, check_dense))
            hw = {o[1:] for o in outs}
            if len(hw) != 1:
                raise ShapeError(f"{layer.name}: branches end in different spatial sizes "
                                 f"{', '.join(f'{b.name}: {o}' for b, o in zip(layer.branches, outs))}")
            out = (sum(o[0] for o in outs), *outs[0][1:])
            params = sum(i.params for i in infos[start + 1:] if not i.container)
            buffers = sum(i.buffers for i in infos[start + 1:] if not i.container)
            mac = sum(i.macs for i in infos[start + 1:] if not i.container)
            infos[start] = LayerInfo(layer.name, layer.op, depth, shape, out, params, buffers, mac, True)
            shape = out
        elif isinstance(layer, Aux):
            start = len(infos)
            infos.append(None)
            out = _walk(layer.layers, shape, depth + 1, infos, aux_out, check_dense)
            params = sum(i.params for i in infos[start + 1:] if not i.container)
            buffers = sum(i.buffers for i in infos[start + 1:] if not i.container)
            mac = sum(i.macs for i in infos[start + 1:] if not i.container)
            infos[start] = LayerInfo(layer.name, layer.op, depth, shape, out, params, buffers, mac, True)
            aux_out.append((layer.name, out))
            # the main path goes on with the same tensor
        else:
            if isinstance(layer, Dense) and not check_dense and len(shape) == 1:
                layer = replace(layer, in_features=shape[0])
            out = output_shape(layer, shape)
            params, buffers = param_counts(layer)
            infos.append(LayerInfo(layer.name, layer.op, depth, shape, out, params, buffers, macs(layer, out), False))
            shape = out
    return shape


def resolve_dense(layers: tuple[Layer, ...], shape: Shape) -> tuple[tuple[Layer, ...], Shape]:
    """Fill in each dense layer's input size from the shapes; check a declared one."""
    out = []
    for layer in layers:
        if isinstance(layer, Concat):
            branches, outs = [], []
            for branch in layer.branches:
                blayers, bshape = resolve_dense(branch.layers, shape)
                branches.append(replace(branch, layers=blayers))
                outs.append(bshape)
            if len({o[1:] for o in outs}) != 1:
                raise ShapeError(f"{layer.name}: branches end in different spatial sizes "
                                 f"{', '.join(f'{b.name}: {o}' for b, o in zip(layer.branches, outs))}", layer)
            layer = replace(layer, branches=tuple(branches))
            shape = (sum(o[0] for o in outs), *outs[0][1:])
        elif isinstance(layer, Aux):
            alayers, _ = resolve_dense(layer.layers, shape)
            layer = replace(layer, layers=alayers)
        else:
            if isinstance(layer, Dense) and len(shape) == 1:
                if layer.in_features and layer.in_features != shape[0]:
                    raise ShapeError(f"in: {layer.name!r} declares {layer.in_features} input features, "
                                     f"but the previous layer gives {shape[0]}", layer)
                layer = replace(layer, in_features=shape[0])
            shape = output_shape(layer, shape)
        out.append(layer)
    return tuple(out), shape


def _shapes_ok(spec: Spec, size: tuple[int, int]) -> bool:
    try:
        _walk(spec.layers, (spec.in_channels, *size), 0, [], [], check_dense=False)
    except ShapeError:
        return False
    return True


def min_input_size(spec: Spec, limit: int = 4096) -> tuple[int, int]:
    """Smallest square input for which every spatial size stays >= 1 (dense sizes follow the input)."""
    for size in range(1, limit + 1):
        if _shapes_ok(spec, (size, size)):
            return (size, size)
    raise SpecError(f"{spec.variant}: no input up to {limit}x{limit} gives valid spatial sizes")


def analyze(spec: Spec) -> Analysis:
    infos: list[LayerInfo] = []
    aux_out: list = []
    try:
        _walk(spec.layers, spec.input_shape, 0, infos, aux_out)
    except ShapeError as exc:
        minimum = min_input_size(spec)
        hint = ""
        if not _shapes_ok(spec, spec.input_size):
            hint = f"; the minimum input for {spec.variant} is {minimum[0]}x{minimum[1]}"
        raise SpecError(f"{spec.variant}: input {spec.input_size[0]}x{spec.input_size[1]}: {exc}{hint}") from None
    leaves = [i for i in infos if not i.container]
    return Analysis(
        variant=spec.variant,
        input_shape=spec.input_shape,
        num_classes=spec.num_classes,
        aux_logits=spec.aux_logits,
        layers=tuple(infos),
        params=sum(i.params for i in leaves),
        buffers=sum(i.buffers for i in leaves),
        macs=sum(i.macs for i in leaves),
        min_input_size=min_input_size(spec),
        aux_outputs=tuple(aux_out),
    )


BYTES_PER_VALUE = 4  # float32


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """A lower bound on the memory a framework needs for ``spec`` (float32, ``batch`` images):
    every parameter and buffer once, plus every leaf layer's output (the input included)."""

    batch: int
    params: int  # parameters + buffers, values
    activations: int  # values, for the whole batch
    layers: tuple[tuple[str, int], ...]  # (leaf layer name, bytes it adds: its weights + its output)

    @property
    def bytes(self) -> int:
        return (self.params + self.activations) * BYTES_PER_VALUE

    def first_over(self, limit: int) -> str | None:
        """The layer at which the running total first exceeds ``limit`` bytes (None if it never does)."""
        total = _product((self.batch, *self.input_shape)) * BYTES_PER_VALUE if self.input_shape else 0
        for name, size in self.layers:
            total += size
            if total > limit:
                return name
        return None

    input_shape: Shape = ()  # without the batch axis


def _product(shape) -> int:
    out = 1
    for d in shape:
        out *= d
    return out


def memory_estimate(spec: Spec, batch: int = 1) -> MemoryEstimate:
    """Parameters, buffers and activations of ``spec`` for ``batch`` images, from the shape rules alone
    (nothing is allocated: sizes are Python integers, so a 10**12-class head is just a big number)."""
    infos: list[LayerInfo] = []
    try:
        _walk(spec.layers, spec.input_shape, 0, infos, [])
    except ShapeError as exc:
        raise SpecError(f"{spec.variant}: input {spec.input_size[0]}x{spec.input_size[1]}: {exc}") from None
    params, activations = 0, _product(spec.input_shape) * batch
    layers = []
    for info in infos:
        if info.container:
            continue
        values = batch * _product(info.out_shape)
        params += info.params + info.buffers
        activations += values
        layers.append((info.name, (info.params + info.buffers + values) * BYTES_PER_VALUE))
    return MemoryEstimate(batch, params, activations, tuple(layers), tuple(spec.input_shape))
