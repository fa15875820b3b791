"""The known traps, one row each: the layer kinds it applies to (and when), how to re-run the layer with it (in
numpy, :mod:`shared_spec.numeric`, from the user's own input to the layer) and how to say it. A new trap is one
row of :data:`TRAPS`.

A trap either changes a layer's values (BatchNorm's eps, LRN's alpha, a missing ReLU) or its output shape
(padding missing or different, floor vs ceil, ``'same'`` at stride 2, a pool's kernel size; a conv's kernel size
is seen in its weights), or its parameters (a BatchNorm with a gamma the spec has not, or without the one it has:
the row's ``built`` gives the layer as the trap builds it, and :mod:`.mapping` names the row whose tensors are the
user's). On a layer whose output shape is found nowhere in the user's model, the row whose re-run gives the user's
shape is named.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable, Mapping

import numpy as np

from shared_spec import numeric
from shared_spec.spec import AdaptiveAvgPool, Conv, Dense, Flatten, LRN, Pool

ANY = (object,)


@dataclass(frozen=True, slots=True)
class At:
    """What a trap sees: the layer's input (channels-first), the neutral weights, and around the layer the layer
    that feeds it with its output before a functional ReLU (when the user's code applies one) and, before a dense
    layer, the (C, H, W) flattened."""

    x: np.ndarray
    weights: Mapping[str, np.ndarray]
    source_layer: object = None
    source_raw: np.ndarray | None = None
    flat_source: tuple[int, ...] | None = None

    @property
    def hw(self) -> tuple[int, int] | None:
        return tuple(self.x.shape[2:]) if self.x.ndim == 4 else None


@dataclass(frozen=True, slots=True)
class Trap:
    name: str
    kinds: tuple[type, ...]
    when: Callable[[object, At], bool]
    rerun: Callable[[object, At], np.ndarray | None]
    say: Callable[[object, At], str]
    built: Callable[[object], object] | None = None  # the layer as the trap builds it, where its parameters differ


def _always(layer, at) -> bool:
    return True


def _strided_same(layer, at) -> bool:
    return at.hw is not None and max(layer.stride) > 1 and numeric.keras_same(layer, at.hw) != layer.padding


def _padded(layer, at) -> bool:
    return any(layer.padding)


def _same(layer, at):
    same = numeric.keras_same(layer, at.hw)
    if isinstance(layer, Conv):
        return numeric.conv(layer, at.x, at.weights, padding=same)
    return numeric.pool(layer, at.x, padding=same, rounding="floor", count_include_pad=False)


def _other_eps(layer) -> float:
    return 1e-5 if np.isclose(layer.norm.eps, 1e-3) else 1e-3


def _other_rounding(layer) -> str:
    return "floor" if layer.rounding == "ceil" else "ceil"


def _kernel(layer, step: int):
    return tuple(max(1, k + step) for k in layer.kernel)


def _kernel_say(layer, step: int) -> str:
    return f"a {'x'.join(map(str, _kernel(layer, step)))} kernel where the spec has {'x'.join(map(str, layer.kernel))}"


def _repad(layer, at, padding):
    if isinstance(layer, Conv):
        return numeric.conv(layer, at.x, at.weights, padding=padding)
    return numeric.pool(layer, at.x, padding=padding)


def _pads(layer, step: int) -> tuple[int, int, int, int]:
    return tuple(max(0, p + step) for p in layer.padding)


def _fits(layer, at, kernel=None, padding=None) -> bool:
    """The re-run layer still has at least one output cell."""
    (kh, kw), (t, b, l, r) = kernel or layer.kernel, padding or layer.padding
    return at.hw is not None and at.hw[0] + t + b >= kh and at.hw[1] + l + r >= kw


def _scaled(layer, scale: bool):
    """The conv unit with a BatchNorm that has a scale (gamma) or not."""
    return replace(layer, norm=replace(layer.norm, scale=scale))


def _scale_is(scale: bool):
    return lambda layer, at: layer.norm is not None and layer.norm.scale == scale


def _counts_pad(counts: bool):
    """An average pool that pads, counting the padding where the spec does not (``counts``) or the reverse."""
    return lambda layer, at: layer.op == "avgpool" and any(layer.padding) and layer.count_include_pad != counts


def _as_op(layer, op: str, count_include_pad: bool = True):
    return replace(layer, op=op, count_include_pad=count_include_pad and op == "avgpool")


_NO_RELU = {Conv: numeric.conv, Dense: numeric.dense}

TRAPS: tuple[Trap, ...] = (
    # first: where two rows give the same output ('same' at stride 2 pads a pool as ceil rounding does), the
    # earlier is named
    Trap("floor-rounding", (Pool,), lambda layer, at: layer.rounding == "ceil",
         lambda layer, at: numeric.pool(layer, at.x, rounding="floor"),
         lambda layer, at: "floor rounding where the spec has ceil"),
    Trap("ceil-rounding", (Pool,), lambda layer, at: layer.rounding == "floor",
         lambda layer, at: numeric.pool(layer, at.x, rounding="ceil"),
         lambda layer, at: "ceil rounding where the spec has floor"),
    Trap("same-padding-stride-2", (Conv, Pool), _strided_same, _same,
         lambda layer, at: f"TF/Keras 'same' padding at stride {layer.stride[0]}: pads "
                           f"{numeric.keras_same(layer, at.hw)} where the spec pads {layer.padding}"),
    Trap("missing-padding", (Conv, Pool), lambda layer, at: _padded(layer, at) and _fits(layer, at, padding=(0,) * 4),
         lambda layer, at: _repad(layer, at, (0, 0, 0, 0)),
         lambda layer, at: f"no padding where the spec pads {layer.padding}"),
    Trap("padding-one-less", (Conv, Pool),
         lambda layer, at: _padded(layer, at) and _pads(layer, -1) != (0,) * 4
         and _fits(layer, at, padding=_pads(layer, -1)),
         lambda layer, at: _repad(layer, at, _pads(layer, -1)),
         lambda layer, at: f"padding {_pads(layer, -1)} where the spec pads {layer.padding}"),
    Trap("padding-one-more", (Conv, Pool), lambda layer, at: at.hw is not None,
         lambda layer, at: _repad(layer, at, _pads(layer, +1)),
         lambda layer, at: f"padding {_pads(layer, +1)} where the spec pads {layer.padding}"),
    Trap("kernel-one-less", (Pool,), lambda layer, at: min(layer.kernel) > 1 and at.hw is not None,
         lambda layer, at: numeric.pool(replace(layer, kernel=_kernel(layer, -1)), at.x),
         lambda layer, at: _kernel_say(layer, -1)),
    Trap("kernel-one-more", (Pool,), lambda layer, at: _fits(layer, at, kernel=_kernel(layer, 1)),
         lambda layer, at: numeric.pool(replace(layer, kernel=_kernel(layer, 1)), at.x),
         lambda layer, at: _kernel_say(layer, 1)),
    Trap("bn-eps", (Conv,), lambda layer, at: layer.norm is not None,
         lambda layer, at: numeric.conv(layer, at.x, at.weights, eps=_other_eps(layer)),
         lambda layer, at: f"BatchNorm eps {_other_eps(layer):g} where the spec has {layer.norm.eps:g}"),
    Trap("missing-relu", (Conv, Dense), lambda layer, at: layer.activation == "relu",
         lambda layer, at: _NO_RELU[type(layer)](layer, at.x, at.weights, activation=False),
         lambda layer, at: f"no ReLU after {layer.name}"),
    Trap("zero-pool-padding", (Pool,),
         lambda layer, at: layer.op == "maxpool" and (any(layer.padding) or layer.rounding == "ceil"),
         lambda layer, at: numeric.pool(layer, at.x, pad_value=0.0),
         lambda layer, at: "zero padding in a max pool where the spec pads with -inf"),
    # the pool-count trap, one row per direction (named as one trap: what a test or a CI rule matches on)
    Trap("avgpool-count-pad", (Pool,), _counts_pad(True),
         lambda layer, at: numeric.pool(layer, at.x, count_include_pad=True),
         lambda layer, at: "an average pool that counts the padding where the spec does not (torch's "
                           "F.avg_pool2d(x, 3, 1, 1) default, torchvision's code; Gluon's AvgPool2D)"),
    Trap("avgpool-count-pad", (Pool,), _counts_pad(False),
         lambda layer, at: numeric.pool(layer, at.x, count_include_pad=False),
         lambda layer, at: "an average pool that does not count the padding where the spec does (Keras's 'same' "
                           "AveragePooling2D, count_include_pad=False)"),
    Trap("max-for-avg-pool", (Pool,), lambda layer, at: layer.op == "avgpool",
         lambda layer, at: numeric.pool(_as_op(layer, "maxpool"), at.x),
         lambda layer, at: f"a max pool where the spec averages ({layer.kernel[0]}x{layer.kernel[1]}/"
                           f"{layer.stride[0]}, pytorch-fid's Mixed_7c)"),
    Trap("avg-for-max-pool", (Pool,), lambda layer, at: layer.op == "maxpool",
         lambda layer, at: numeric.pool(_as_op(layer, "avgpool", count_include_pad=True), at.x),
         lambda layer, at: "an average pool (counting the padding) where the spec takes the max"),
    Trap("avg-for-max-pool-excluding-padding", (Pool,), lambda layer, at: layer.op == "maxpool" and any(layer.padding),
         lambda layer, at: numeric.pool(_as_op(layer, "avgpool", count_include_pad=False), at.x),
         lambda layer, at: "an average pool (not counting the padding) where the spec takes the max"),
    Trap("bn-missing-scale", (Conv,),
         lambda layer, at: _scale_is(True)(layer, at) and np.any(at.weights[f"{layer.name}.bn.gamma"] != 1),
         lambda layer, at: numeric.conv(_scaled(layer, False), at.x, at.weights),
         lambda layer, at: "BatchNorm without a scale (gamma) where the spec has one (Keras's conv2d_bn, "
                           "scale=False): gamma is 1, the suite's cannot be loaded",
         built=lambda layer: _scaled(layer, False)),
    Trap("bn-extra-scale", (Conv,), lambda layer, at: False,  # the value it changes is the user's own gamma
         lambda layer, at: None,
         lambda layer, at: "BatchNorm with a scale (gamma) where the spec has none (torch's BatchNorm2d, Gluon's "
                           "BatchNorm): the check sets it to 1; a gamma your model trains has no place in the "
                           "variant's weights",
         built=lambda layer: _scaled(layer, True)),
    Trap("adaptive-pool", (Pool,), lambda layer, at: layer.op == "avgpool",
         lambda layer, at: numeric.adaptive_avgpool(at.x, numeric.pool(layer, at.x).shape[2:]),
         lambda layer, at: f"an adaptive average pool to the same size where the spec pools "
                           f"{layer.kernel[0]}/{layer.stride[0]}"),
    Trap("fixed-aux-pool", (AdaptiveAvgPool,), _always,
         lambda layer, at: numeric.fixed_avgpool(at.x, layer.output_size),
         lambda layer, at: f"a fixed average pool where the spec pools adaptively to {layer.output_size}"),
    Trap("lrn-alpha-total", (LRN,), _always, lambda layer, at: numeric.lrn(layer, at.x, alpha_per_size=False),
         lambda layer, at: f"LRN alpha {layer.alpha:g} applied whole, where the spec divides it by size {layer.size}"),
    Trap("lrn-radius-size", (LRN,), _always, lambda layer, at: numeric.lrn(layer, at.x, window=2 * layer.size + 1),
         lambda layer, at: f"LRN window of {2 * layer.size + 1} channels (size {layer.size} read as a radius)"),
    Trap("lrn-alpha-and-radius", (LRN,), _always,
         lambda layer, at: numeric.lrn(layer, at.x, alpha_per_size=False, window=2 * layer.size + 1),
         lambda layer, at: "both: alpha applied whole and size read as a radius"),
    Trap("nhwc-flatten", (Dense,), lambda layer, at: at.flat_source is not None,
         lambda layer, at: numeric.dense(layer, at.x, at.weights, source_shape=at.flat_source),
         lambda layer, at: f"NHWC flatten order before {layer.name} (the spec flattens {at.flat_source} "
                           f"channels-first)"),
    Trap("nhwc-flatten", (Flatten,), lambda layer, at: at.x.ndim == 4 and at.x.shape[2] * at.x.shape[3] > 1,
         lambda layer, at: numeric.flatten(at.x, channels_last=True), lambda layer, at: "NHWC flatten order"),
    Trap("missing-relu", ANY, lambda layer, at: at.source_raw is not None and at.source_layer is not None,
         lambda layer, at: numeric.forward(layer, at.source_raw, at.weights),
         lambda layer, at: f"no ReLU after {at.source_layer.name} (this layer gets its pre-activation output)"),
)


def traps(layer, at: At) -> list[tuple[str, str, np.ndarray]]:
    """(trap, what it means, the layer's output with it) for every trap that applies to ``layer``."""
    out = []
    for trap in TRAPS:
        if not isinstance(layer, trap.kinds) or not trap.when(layer, at):
            continue
        y = trap.rerun(layer, at)
        if y is not None:
            out.append((trap.name, trap.say(layer, at), y))
    return out


def in_parameters(layer, roles: set[str]):
    """The trap whose build of ``layer`` has exactly the user's BatchNorm tensors ``roles`` (``bn.gamma``, ...),
    or None: a BatchNorm with a scale where the spec has none, or the reverse."""
    return next((trap for trap in TRAPS if trap.built is not None and isinstance(layer, trap.kinds)
                 and getattr(layer, "norm", None) is not None and trap.built(layer) != layer
                 and {f"bn.{key}" for key in trap.built(layer).norm.keys} == roles), None)
