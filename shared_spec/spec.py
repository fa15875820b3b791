"""The records of a GoogLeNet architecture spec: frozen dataclasses, nothing else.

:mod:`shared_spec.loader` reads a JSON spec (``googlenet.json`` beside this
module, or a user's own file), validates it and resolves it into a
:class:`Spec`: a tree of plain, immutable layer records with every number
resolved. Builders read only those records; this module imports neither the
loader nor the oracle (``load`` and friends are still reachable here, lazily).

No deep-learning framework is imported here.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator, Mapping, Union

from .errors import InputError

HERE = Path(__file__).resolve().parent
BUILTIN_SPEC = HERE / "googlenet.json"
#: the spec files shipped with the suite, searched in this order for a variant name (``load("inception-v3")``)
BUILTIN_SPECS = (BUILTIN_SPEC, HERE / "inception_v3.json")
SCHEMA_FILE = HERE / "schema.json"

OVERRIDES = ("num_classes", "in_channels", "input_size", "aux_logits", "dropout", "transform_input")


MAX_MESSAGE = 300  # characters in an error message; longer ones are cut with "…"


class SpecError(InputError):
    """A spec file, a variant name or an override is wrong. The message is one line of at most
    :data:`MAX_MESSAGE` characters (line breaks become spaces; a longer message is cut with "…")."""

    def __init__(self, message: object = "", *args):
        text = " ".join(str(message).split("\n")).replace("\r", " ")
        if len(text) > MAX_MESSAGE:
            text = text[: MAX_MESSAGE - 1] + "…"
        super().__init__(text, *args)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class BatchNorm:
    eps: float
    momentum: float  # weight of the new batch statistic (PyTorch convention)
    scale: bool = True  # False: no gamma (Keras's scale=False), the normalised value is only shifted by beta

    @property
    def keys(self) -> tuple[str, ...]:
        """The neutral weight suffixes after ``NAME.bn.``: gamma only where there is a scale."""
        return BN_KEYS if self.scale else BN_KEYS[1:]


@dataclass(frozen=True, slots=True)
class Conv:
    op: str  # "conv"
    name: str
    in_channels: int
    out_channels: int
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]  # top, bottom, left, right
    bias: bool
    norm: BatchNorm | None
    activation: str | None
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class Pool:
    op: str  # "maxpool" | "avgpool"
    name: str
    kernel: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int, int, int]
    rounding: str  # "floor" | "ceil"
    count_include_pad: bool
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class GlobalAvgPool:
    op: str  # "global_avgpool"
    name: str
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class AdaptiveAvgPool:
    op: str  # "adaptive_avgpool"
    name: str
    output_size: tuple[int, int]
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class LRN:
    op: str  # "lrn"
    name: str
    size: int
    alpha: float
    beta: float
    k: float
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class Dropout:
    op: str  # "dropout"
    name: str
    rate: float
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class TransformInput:
    """torchvision's ``transform_input``: input normalised by ``mean``/``std`` (per channel) is re-normalised
    to ``target_mean``/``target_std``, ``x * scale + shift`` per channel, with ``scale = std / target_std``
    and ``shift = (mean - target_mean) / target_std``: exactly ``GoogLeNet._transform_input``. No weights."""

    op: str  # "transform_input"
    name: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    target_mean: tuple[float, ...]
    target_std: tuple[float, ...]
    path: str = field(compare=False, default="")

    @property
    def scale(self) -> tuple[float, ...]:
        return tuple(s / t for s, t in zip(self.std, self.target_std))

    @property
    def shift(self) -> tuple[float, ...]:
        return tuple((m - tm) / t for m, tm, t in zip(self.mean, self.target_mean, self.target_std))


@dataclass(frozen=True, slots=True)
class Flatten:
    op: str  # "flatten"
    name: str
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class Dense:
    op: str  # "dense"
    name: str
    in_features: int
    out_features: int
    bias: bool
    activation: str | None
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class Branch:
    name: str
    layers: tuple["Layer", ...]


@dataclass(frozen=True, slots=True)
class Concat:
    """Parallel branches on the same input, concatenated along channels."""

    op: str  # "concat"
    name: str
    branches: tuple[Branch, ...]
    path: str = field(compare=False, default="")


@dataclass(frozen=True, slots=True)
class Aux:
    """A side head: runs ``layers`` on the current tensor; the main path goes on unchanged."""

    op: str  # "aux"
    name: str
    layers: tuple["Layer", ...]
    loss_weight: float
    path: str = field(compare=False, default="")


Layer = Union[Conv, Pool, GlobalAvgPool, AdaptiveAvgPool, LRN, Dropout, Flatten, Dense, Concat, Aux, TransformInput]
CONTAINERS = (Concat, Aux)


@dataclass(frozen=True, slots=True)
class Preprocess:
    """How an image file becomes the network's input, as the variant's published weights were evaluated: resize,
    center crop, the value range the 0..255 pixels map onto, then ``(x - mean) / std`` per channel.

    ``resize``: an int resizes the shorter side to it, keeping the aspect ratio; ``(H, W)`` resizes to exactly
    that (torchvision's ``Resize`` convention). ``crop``: the center crop ``(H, W)``, the network's input size.
    ``antialias``: True resizes as Pillow does (what torchvision's ``Resize`` does to a PIL image: a filter that
    widens when shrinking); False samples bilinearly at half-pixel centres without one (``F.interpolate(...,
    align_corners=False)``, OpenCV's ``INTER_LINEAR``). ``transform_input``: the published weights run with the
    variant's ``transform_input`` on (torchvision's ``googlenet``/``inception_v3`` with weights)."""

    resize: int | tuple[int, int]
    crop: tuple[int, int]
    interpolation: str  # "bilinear"
    antialias: bool
    range: tuple[float, float]  # pixel 0 maps to range[0], 255 to range[1], linearly
    mean: tuple[float, ...]
    std: tuple[float, ...]
    transform_input: bool
    source: str
    notes: str = ""
    path: str = field(compare=False, default="")

    def at(self, size: tuple[int, int]) -> "Preprocess":
        """The same recipe for an input of ``size`` (H, W): the crop becomes ``size`` and the resize keeps its
        ratio to the crop (torchvision's 256 for 224 is round(64 * 256 / 224) = 73 for 64)."""
        if tuple(size) == self.crop:
            return self
        if isinstance(self.resize, int):
            resize = round(min(size) * self.resize / min(self.crop))
        else:
            resize = tuple(round(s * r / c) for s, r, c in zip(size, self.resize, self.crop))
        return replace(self, resize=resize, crop=tuple(size))

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(w, h)`` of an image of ``width`` x ``height`` after the resize."""
        if not isinstance(self.resize, int):
            return (self.resize[1], self.resize[0])
        short = self.resize
        return (short, int(short * height / width)) if width <= height else (int(short * width / height), short)

    def as_dict(self) -> dict[str, Any]:
        """The recipe as JSON-ready values (the spec's keys; ``resize`` an int or [H, W], ``crop`` [H, W])."""
        return {"resize": self.resize if isinstance(self.resize, int) else list(self.resize), "crop": list(self.crop),
                "interpolation": self.interpolation, "antialias": self.antialias, "range": list(self.range),
                "mean": list(self.mean), "std": list(self.std), "transform_input": self.transform_input,
                "source": self.source, "notes": self.notes}

    def describe(self) -> str:
        """One line: ``shorter side to 342, center crop 299x299, bilinear (antialiased), [0, 1], mean (...), ...``."""
        resize = (f"shorter side to {self.resize}" if isinstance(self.resize, int)
                  else f"resize to {self.resize[0]}x{self.resize[1]}")
        crop = "" if self.crop == self.resize else f", center crop {self.crop[0]}x{self.crop[1]}"
        norm = "" if set(self.mean) == {0.0} and set(self.std) == {1.0} else \
            f", mean {_numbers(self.mean)} std {_numbers(self.std)}"
        return (f"{resize}{crop}, {self.interpolation} ({'antialiased' if self.antialias else 'no antialias'}), "
                f"range [{self.range[0]:g}, {self.range[1]:g}]{norm}"
                f"{'; the weights run with transform_input on' if self.transform_input else ''}")


#: torchvision's ImageNet evaluation transform (``ImageClassification``'s defaults: resize 256, crop 224, bilinear,
#: antialias, ImageNet mean/std): what ``predict`` does for a 3-channel variant that declares no pipeline
IMAGENET_EVAL = Preprocess(resize=256, crop=(224, 224), interpolation="bilinear", antialias=True, range=(0.0, 1.0),
                           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), transform_input=False,
                           source="torchvision's ImageNet evaluation transform (ImageClassification's defaults), the "
                                  "suite's default for a variant that declares no preprocess")


def _numbers(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:g}" for v in values) + ")"


@dataclass(frozen=True, slots=True)
class Init:
    weight: str  # "trunc_normal" | "xavier_uniform"
    std: float = 0.0
    a: float = 0.0
    b: float = 0.0
    bias: float = 0.0


@dataclass(frozen=True, slots=True)
class Spec:
    """One variant with its overrides applied: everything a builder needs."""

    variant: str
    description: str
    provenance: Mapping[str, str]
    expected: Mapping[str, Any]
    in_channels: int
    input_size: tuple[int, int]
    num_classes: int
    aux_logits: bool
    has_aux: bool  # the variant defines aux heads (whether or not they are on)
    init: Init
    stages: tuple[tuple[str, str], ...]
    layers: tuple[Layer, ...]
    source: str
    overrides: Mapping[str, Any]
    transform_input: bool = False  # the variant's transform_input layer is on (torchvision's flag)
    has_transform_input: bool = False  # the variant defines one (whether or not it is on)
    preprocess: Preprocess | None = None  # the variant's input pipeline at input_size (None: none declared)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.in_channels, *self.input_size)

    def walk(self, layers: tuple[Layer, ...] | None = None) -> Iterator[Layer]:
        """Every layer, depth first, containers before their children."""
        for layer in self.layers if layers is None else layers:
            yield layer
            if isinstance(layer, Concat):
                for branch in layer.branches:
                    yield from self.walk(branch.layers)
            elif isinstance(layer, Aux):
                yield from self.walk(layer.layers)

    def layer(self, name: str) -> Layer:
        for layer in self.walk():
            if layer.name == name:
                return layer
        raise KeyError(f"no layer named {name!r} in variant {self.variant!r}")

    @property
    def aux_heads(self) -> tuple[Aux, ...]:
        return tuple(layer for layer in self.layers if isinstance(layer, Aux))

    def weight_shapes(self) -> dict[str, tuple[int, ...]]:
        """The framework-neutral weight keys in spec order, with their shapes.

        conv: ``NAME.conv.weight`` (O, I, kH, kW), ``NAME.conv.bias`` (O),
        ``NAME.bn.{gamma,beta,running_mean,running_var}`` (O; no gamma where the BN has no scale); dense:
        ``NAME.weight`` (out, in) with ``in`` in channels-first flatten order,
        ``NAME.bias`` (out).
        """
        return {key: shape for layer in self.walk() for key, _, _, shape in weight_entries(layer)}


def weight_entries(layer: Layer) -> Iterator[tuple[str, str, str, tuple[int, ...]]]:
    """A conv or dense layer's weights in spec order as ``(key, part, entry, shape)``: ``part`` is ``conv``, ``bn``
    or ``dense``, ``entry`` the weight's own name (``weight``, ``bias``, ``gamma``, ``running_var``, ...), which a
    converter renames under its format's path for the part. Nothing for other layers."""
    if isinstance(layer, Conv):
        yield f"{layer.name}.conv.weight", "conv", "weight", (layer.out_channels, layer.in_channels, *layer.kernel)
        if layer.bias:
            yield f"{layer.name}.conv.bias", "conv", "bias", (layer.out_channels,)
        if layer.norm is not None:
            for key in layer.norm.keys:
                yield f"{layer.name}.bn.{key}", "bn", key, (layer.out_channels,)
    elif isinstance(layer, Dense):
        yield f"{layer.name}.weight", "dense", "weight", (layer.out_features, layer.in_features)
        if layer.bias:
            yield f"{layer.name}.bias", "dense", "bias", (layer.out_features,)


def with_bn_momentum(spec: Spec, momentum: float) -> Spec:
    """The same network with every BatchNorm's momentum replaced (1.0: one training-mode
    forward sets the running statistics to that batch's statistics; used to calibrate)."""

    def swap(layers):
        out = []
        for layer in layers:
            if isinstance(layer, Conv) and layer.norm is not None:
                layer = replace(layer, norm=replace(layer.norm, momentum=momentum))
            elif isinstance(layer, Concat):
                layer = replace(layer, branches=tuple(replace(b, layers=swap(b.layers)) for b in layer.branches))
            elif isinstance(layer, Aux):
                layer = replace(layer, layers=swap(layer.layers))
            out.append(layer)
        return tuple(out)

    return replace(spec, layers=swap(spec.layers))


BN_KEYS = ("gamma", "beta", "running_mean", "running_var")
BUFFER_SUFFIXES = (".bn.running_mean", ".bn.running_var")


def is_buffer(key: str) -> bool:
    return key.endswith(BUFFER_SUFFIXES)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (value[0], value[1])


def _padding(value) -> tuple[int, int, int, int]:
    if isinstance(value, int):
        return (value,) * 4
    if len(value) == 2:
        return (value[0], value[0], value[1], value[1])
    return tuple(value)


def ceil_div(a: int, b: int) -> int:
    return -(-a // b)
