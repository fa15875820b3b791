"""Which network a weight file is for, and whether the variant it converts into computes the same thing.

A library's file holds the weights of the network that library's code builds: for Inception v3 torchvision's
``inception_v3`` (``inception-v3``; pytorch-fid's FID network, ``inception-v3-fid``, keeps its names and has
1008 classes), ``keras.applications.InceptionV3`` (``inception-v3-keras``) and MXNet's model-zoo
``inception_v3`` (``inception-v3-gluon``). Their weights have the same names and shapes, or nearly, but the
networks differ: pools that count the padding or not, BatchNorm with or without gamma, a max pool where the
others average, a fixed 8x8 pool for a global one. Weights converted from one into another compute something
else; :func:`compare` says what, from the spec's own layer records, and :func:`adapt` carries the weights over
when the user asks for it anyway (``--allow-mismatch``). GoogLeNet's formats keep their rule of names and shapes
(``googlenet-gluoncv`` takes torchvision's weights, as before).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Mapping

import numpy as np

import shared_spec
from shared_spec import InputError
from shared_spec.spec import Aux, Concat, Conv, Dropout, GlobalAvgPool, Pool

#: format -> the Inception v3 variants its library builds, the first its own (torchvision's file format also
#: holds pytorch-fid's network)
LIBRARY = {"torchvision": ("inception-v3", "inception-v3-fid"), "keras": ("inception-v3-keras",),
           "gluoncv": ("inception-v3-gluon",)}
LABELS = {"inception-v3": "torchvision's inception_v3", "inception-v3-fid": "pytorch-fid's FID Inception",
          "inception-v3-keras": "keras.applications.InceptionV3", "inception-v3-gluon": "MXNet's model-zoo inception_v3"}
FID_CLASSES = 1008  # TensorFlow's FID graph; no torchvision model has them
_IGNORED = (Dropout, Aux, Concat)  # dropout is off in inference; containers are compared through their layers


@lru_cache(maxsize=16)
def _declared_family(source: str) -> str:
    return shared_spec.read_document(source)[0]["family"]


def family(spec: shared_spec.Spec) -> str:
    """``inception-v3`` for a variant of an Inception v3 spec file, else ``googlenet`` (GoogLeNet's names, which
    every GoogLeNet-like spec of the user's has used)."""
    return "inception-v3" if _declared_family(str(spec.source)) == "inception-v3" else "googlenet"


def like(variant: str, spec: shared_spec.Spec) -> shared_spec.Spec:
    """Built-in ``variant`` with ``spec``'s classes, channels, input size and (where it has them) aux head and
    transform_input."""
    base = shared_spec.load(variant)
    overrides = {"num_classes": spec.num_classes, "in_channels": spec.in_channels, "input_size": spec.input_size}
    if base.has_aux:
        overrides["aux_logits"] = spec.aux_logits
    if base.has_transform_input:
        overrides["transform_input"] = spec.transform_input
    return shared_spec.load(variant, **overrides)


def file_variant(fmt: str, classes: int | None) -> str:
    """The variant a library file holds (a torchvision-format file with 1008 classes is pytorch-fid's)."""
    return LIBRARY[fmt][1] if fmt == "torchvision" and classes == FID_CLASSES else LIBRARY[fmt][0]


def library_variant(fmt: str, spec: shared_spec.Spec) -> str:
    """The variant a file of ``fmt`` written for ``spec`` holds: ``spec``'s own where the library builds it."""
    return spec.variant if spec.variant in LIBRARY[fmt] else LIBRARY[fmt][0]


# --------------------------------------------------------------------------- what differs


def _normal(layer):
    """A layer as inference sees it: BatchNorm momentum only matters in training."""
    if isinstance(layer, Conv) and layer.norm is not None:
        return replace(layer, norm=replace(layer.norm, momentum=0.0))
    return layer


def _describe(layer) -> str:
    if isinstance(layer, Pool):
        kind = "max" if layer.op == "maxpool" else "average"
        (kh, kw), (sh, _), pad = layer.kernel, layer.stride, layer.padding[0]
        article = "an" if str(kh).startswith(("8", "11", "18")) else "a"  # "an 8x8", "an 11x11"
        return f"{article} {kh}x{kw}/{sh}/{pad} {kind} pool"
    if isinstance(layer, GlobalAvgPool):
        return "a global average pool"
    if layer is None:
        return "nothing"
    return f"a {layer.op}"


def _kind(name: str, x, y, a: str, b: str) -> str:
    """The sort of difference between layer ``x`` of ``a`` and ``y`` of ``b``: layers that differ alike are
    counted together."""
    if isinstance(x, Conv) and isinstance(y, Conv) and x.norm and y.norm and x.norm.scale != y.norm.scale:
        has = {True: "with a scale (gamma)", False: "without a scale (gamma)"}
        return f"BatchNorm {has[x.norm.scale]} in {a}, {has[y.norm.scale]} in {b}"
    if isinstance(x, Pool) and isinstance(y, Pool) and x.op == y.op and x.count_include_pad != y.count_include_pad:
        counts = {True: "count the padding", False: "do not count the padding"}
        return f"average pools that {counts[x.count_include_pad]} in {a}, {counts[y.count_include_pad]} in {b}"
    return f"{_describe(x)} in {a}, {_describe(y)} in {b}"


def _same_here(x, y, spec: shared_spec.Spec, name: str) -> bool:
    """A fixed pool that covers the whole map at ``spec``'s input size is the global pool there."""
    pools = {type(x), type(y)}
    if pools != {GlobalAvgPool, Pool}:
        return False
    fixed = x if isinstance(x, Pool) else y
    _, h, w = shared_spec.analyze(spec).layer(name).in_shape
    return fixed.op == "avgpool" and fixed.kernel == (h, w) and not any(fixed.padding)


@dataclass(frozen=True, slots=True)
class Comparison:
    """How the network of variant ``target`` differs from ``source``'s with the same weights: ``differs`` (what
    makes it compute something else) and ``same_here`` (differences that vanish at the input size converted
    for, with the size)."""

    source: str
    target: str
    differs: tuple[str, ...] = ()
    same_here: tuple[str, ...] = ()


def compare(source: shared_spec.Spec, target: shared_spec.Spec) -> Comparison:
    """The layers of ``target`` that compute something else than ``source``'s with the same weights."""
    layers_a = {layer.name: _normal(layer) for layer in source.walk() if not isinstance(layer, _IGNORED)}
    layers_b = {layer.name: _normal(layer) for layer in target.walk() if not isinstance(layer, _IGNORED)}
    kinds: dict[str, list[str]] = {}
    same_here = []
    for name in [*layers_a, *(n for n in layers_b if n not in layers_a)]:
        x, y = layers_a.get(name), layers_b.get(name)
        if x == y:
            continue
        if _same_here(x, y, target, name):
            h, w = target.input_size
            same_here.append(f"{name}: {_describe(x)} in {source.variant}, {_describe(y)} in {target.variant}: "
                             f"the same at {h}x{w}, not at every input size")
            continue
        kinds.setdefault(_kind(name, x, y, source.variant, target.variant), []).append(name)
    differs = tuple(f"{kind} ({names[0]})" if len(names) == 1 else
                    f"{kind} ({len(names)} layers: {names[0]} ...)" for kind, names in kinds.items())
    return Comparison(source.variant, target.variant, differs, tuple(same_here))


# --------------------------------------------------------------------------- carrying weights over


def adapt(weights: Mapping[str, np.ndarray], source: shared_spec.Spec,
          target: shared_spec.Spec) -> tuple[dict[str, np.ndarray], list[str]]:
    """``source``'s weights as ``target``'s: a BatchNorm scale ``target`` lacks is folded into the conv kernel and
    the running mean (``gamma * (W x - mean) = (gamma W) x - gamma mean``, exact); one it has and ``source`` lacks
    is 1. Any other key must match by name and shape."""
    out, folded, added = {}, 0, 0
    shapes = target.weight_shapes()
    for layer in target.walk():
        if not (isinstance(layer, Conv) and layer.norm is not None):
            continue
        gamma_key = f"{layer.name}.bn.gamma"
        if gamma_key in weights and gamma_key not in shapes:
            gamma = np.asarray(weights[gamma_key], np.float32)
            kernel = np.asarray(weights[f"{layer.name}.conv.weight"], np.float32)
            out[f"{layer.name}.conv.weight"] = (kernel * gamma.reshape(-1, 1, 1, 1)).astype(np.float32)
            out[f"{layer.name}.bn.running_mean"] = (weights[f"{layer.name}.bn.running_mean"] * gamma).astype(np.float32)
            folded += 1
        elif gamma_key in shapes and gamma_key not in weights:
            out[gamma_key] = np.ones(shapes[gamma_key], np.float32)
            added += 1
    for key, shape in shapes.items():
        if key in out:
            continue
        if key not in weights or tuple(np.shape(weights[key])) != shape:
            got = "no such key" if key not in weights else f"shape {tuple(np.shape(weights[key]))}"
            raise InputError(f"--allow-mismatch: {source.variant}'s weights have {got} for {target.variant}'s "
                             f"{key!r} {shape}: the networks differ in more than their layers' arithmetic")
        out[key] = weights[key]
    notes = [f"gamma folded into the conv kernel and running mean of {folded} BatchNorms"] if folded else []
    notes += [f"gamma set to 1 in {added} BatchNorms"] if added else []
    return out, notes
