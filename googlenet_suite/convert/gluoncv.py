"""GluonCV's and MXNet's model-zoo ``.params`` names for the suite's weight keys, for each family (no framework
needed).

A ``.params`` file comes in two forms (both MXNet 1.x, both read; the first is written):

- parameter names (``collect_params().save()``, or ``save_params``' legacy form without the instance prefix,
  which ``load_parameters`` restores for any instance): MXNet's name scopes, a counter per class and scope.
  Top-level convs, BatchNorms and denses are ``convN``/``batchnormN``/``denseN`` in creation order; each block
  has its own scope counting its branches' convs in order; parameters ``_weight``, ``_gamma``, ``_beta``,
  ``_running_mean``, ``_running_var``, ``_bias``. A file may carry the instance prefix (``googlenetN_``,
  ``inception3N_``; any N, one for all keys) or not.
- block paths (``net.save_parameters()``): ``conv1.0.weight``, ``features.7.3.1.1.gamma``.

GoogLeNet (GluonCV 0.10's ``model_zoo/googlenet.py``): blocks ``Mixed_3a_`` ...; top-level conv1, conv2, conv3,
then aux1's and aux2's conv; aux1 fc1, fc2, aux2 fc1, fc2, then the classifier. Its block paths are attribute
names (``inception3a.1.1.1.gamma``: branch 2, second conv unit, its BN).

Inception v3 (``mxnet.gluon.model_zoo.vision.inception``; GluonCV's ``model_zoo/inception.py`` is the same code):
blocks ``A1_``-``A3_``, ``B_``, ``C1_``-``C4_``, ``D_``, ``E1_``, ``E2_``; InceptionE's split branches are
scope-less (``prefix=''``), so they count on in their block's scope; no aux head. Its block paths index
``features`` (stem units, pools and blocks in order; a branch that splits is [its convs before the split, the
split]) and ``output``.
"""

from __future__ import annotations

import re
from typing import Callable, Mapping

import numpy as np

import shared_spec
from shared_spec import InputError
from shared_spec import weights as W
from shared_spec.spec import Aux, Concat, Conv, Dense, TransformInput, weight_entries

#: family -> the variant of the built-in spec that is GluonCV's / the model zoo's network
VARIANTS = {"googlenet": "googlenet-gluoncv", "inception-v3": "inception-v3-gluon"}
#: family -> the instance prefix of a parameter name (the class name, lowercased, and a counter)
PREFIXES = {"googlenet": "googlenet", "inception-v3": "inception3"}
V3_BLOCKS = {"mixed_5b": "A1_", "mixed_5c": "A2_", "mixed_5d": "A3_", "mixed_6a": "B_", "mixed_6b": "C1_",
             "mixed_6c": "C2_", "mixed_6d": "C3_", "mixed_6e": "C4_", "mixed_7a": "D_", "mixed_7b": "E1_",
             "mixed_7c": "E2_"}


def _googlenet_scope(spec: shared_spec.Spec, name: str) -> str:
    if not name.startswith("inception"):
        raise W.WeightsError(f"{spec.variant}: concat {name!r} has no GluonCV name "
                             f"(GluonCV names inceptionNX blocks Mixed_NX)")
    return f"Mixed_{name[len('inception'):]}_"


def _inception_v3_scope(spec: shared_spec.Spec, name: str) -> str:
    if name not in V3_BLOCKS:
        raise W.WeightsError(f"{spec.variant}: block {name!r} has no MXNet model-zoo name "
                             f"(known: {', '.join(V3_BLOCKS)})")
    return V3_BLOCKS[name]


#: a weight's part -> the kind Gluon's automatic parameter names count (``conv0_``, ``batchnorm0_``, ``dense0_``)
GLUON_KIND = {"conv": "conv", "bn": "batchnorm", "dense": "dense"}


def _parameter_names(spec: shared_spec.Spec, scope_of: Callable[[shared_spec.Spec, str], str]) -> dict[str, str]:
    names: dict[str, str] = {}

    def take(counters: dict[str, int], scope: str, kind: str) -> str:
        n = counters.get(kind, 0)
        counters[kind] = n + 1
        return f"{scope}{kind}{n}_"

    def visit(layers, scope: str, counters: dict[str, int], top: bool):
        for layer in layers:
            if isinstance(layer, Concat):
                # a block opens its own scope; a split inside a block (prefix='') counts on in the block's
                inner, inner_counters = (scope + scope_of(spec, layer.name), {}) if top else (scope, counters)
                for branch in layer.branches:
                    visit(branch.layers, inner, inner_counters, False)
            elif isinstance(layer, Aux):
                visit(layer.layers, scope, counters, top)
            else:
                prefixes: dict[str, str] = {}  # a part's prefix, its counter taken when the layer has the part
                for key, part, entry, _ in weight_entries(layer):
                    if part not in prefixes:
                        prefixes[part] = take(counters, scope, GLUON_KIND[part])
                    names[key] = prefixes[part] + entry

    visit(spec.layers, "", {}, True)
    return {key: names[key] for key in spec.weight_shapes()}


def _unit(names: dict[str, str], layer: Conv | Dense, path: str) -> None:
    """A conv unit is a HybridSequential [Conv2D, BatchNorm, Activation]; a Dense is its own block."""
    paths = {"conv": f"{path}.0.", "bn": f"{path}.1.", "dense": f"{path}."}
    for key, part, entry, _ in weight_entries(layer):
        names[key] = paths[part] + entry


#: GluonCV's GoogLeNet aux head as a HybridSequential: AvgPool2D, basic conv, Flatten, Dense, Activation, Dropout,
#: Dense
_GLUON_AUX_INDEX = {"conv": 1, "fc1": 3, "fc2": 6}


def _googlenet_blocks(spec: shared_spec.Spec) -> dict[str, str]:
    names: dict[str, str] = {}
    for layer in spec.layers:
        if isinstance(layer, Concat):
            for b, branch in enumerate(layer.branches):
                for i, inner in enumerate(branch.layers):
                    if isinstance(inner, Conv):
                        _unit(names, inner, f"{layer.name}.{b}.{i}")
        elif isinstance(layer, Aux):
            for inner in layer.layers:
                short = inner.name.rpartition(".")[2]
                if isinstance(inner, (Conv, Dense)) and short not in _GLUON_AUX_INDEX:
                    raise W.WeightsError(f"{spec.variant}: aux layer {inner.name!r} has no GluonCV name")
                if isinstance(inner, (Conv, Dense)):
                    _unit(names, inner, f"{layer.name}.{_GLUON_AUX_INDEX[short]}")
        elif isinstance(layer, Conv):
            _unit(names, layer, layer.name)
        elif isinstance(layer, Dense):
            _unit(names, layer, "output" if layer.name == "fc" else layer.name)
    return {key: names[key] for key in spec.weight_shapes()}


def _v3_branch(names: dict[str, str], branch, path: str) -> None:
    """A branch that ends in a split is MXNet's [the convs before the split, the split of one-conv branches]."""
    *before, last = branch.layers
    if isinstance(last, Concat):
        for i, inner in enumerate(before):
            _unit(names, inner, f"{path}.0.{i}")
        for s, sub in enumerate(last.branches):
            _unit(names, sub.layers[0], f"{path}.1.{s}.0")
        return
    for i, inner in enumerate(branch.layers):
        if isinstance(inner, Conv):
            _unit(names, inner, f"{path}.{i}")


def _inception_v3_blocks(spec: shared_spec.Spec) -> dict[str, str]:
    names: dict[str, str] = {}
    features = [layer for layer in spec.layers if not isinstance(layer, (TransformInput, Aux, Dense))]
    for k, layer in enumerate(features):
        if isinstance(layer, Concat):
            for b, branch in enumerate(layer.branches):
                _v3_branch(names, branch, f"features.{k}.{b}")
        elif isinstance(layer, Conv):
            _unit(names, layer, f"features.{k}")
    for layer in spec.layers:
        if isinstance(layer, Dense):
            _unit(names, layer, "output")
    missing = [key for key in spec.weight_shapes() if key not in names]
    if missing:
        raise W.WeightsError(f"{spec.variant}: {missing[0]!r} has no MXNet model-zoo name (the model zoo's "
                             f"inception_v3 has no aux head)")
    return {key: names[key] for key in spec.weight_shapes()}


#: family -> (its block scope for parameter names, its block-path names)
FAMILIES = {"googlenet": (_googlenet_scope, _googlenet_blocks),
            "inception-v3": (_inception_v3_scope, _inception_v3_blocks)}


def names(spec: shared_spec.Spec, family: str) -> dict[str, str]:
    """Suite weight key -> parameter name without the instance prefix (``Mixed_3a_conv0_weight``, ``E1_conv2_weight``)."""
    return _parameter_names(spec, FAMILIES[family][0])


def block_names(spec: shared_spec.Spec, family: str) -> dict[str, str]:
    """Suite weight key -> the block path ``net.save_parameters()`` writes in MXNet 1.x."""
    return FAMILIES[family][1](spec)


# --------------------------------------------------------------------------- reading


def strip_prefix(path, arrays: Mapping[str, np.ndarray], family: str) -> dict[str, np.ndarray]:
    """``arg:``/``aux:`` (mx.model checkpoints) and one instance prefix (``googlenetN_``), if every key has it."""
    pattern = re.compile(rf"^{PREFIXES[family]}\d+_")
    plain = {(k[4:] if k.startswith(("arg:", "aux:")) else k): v for k, v in arrays.items()}
    prefixes = {m.group() if (m := pattern.match(k)) else "" for k in plain}
    if len(prefixes) > 1:
        shown = sorted(prefixes)
        raise W.WeightsError(f"{path}: parameter names mix instance prefixes {', '.join(repr(p) for p in shown[:3])}; "
                             f"expected one {PREFIXES[family]}N_ prefix on every name, or none")
    prefix = prefixes.pop() if prefixes else ""
    return {k[len(prefix):]: v for k, v in plain.items()}


def dedupe_blocks(path, arrays: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``save_parameters``' block paths: GluonCV's GoogLeNet classifier is both ``head.2`` and ``output`` (one
    Dense registered twice), saved under both names unless deduplicated; keep ``output``."""
    out = dict(arrays)
    for suffix in ("weight", "bias"):
        twin = out.pop(f"head.2.{suffix}", None)
        if twin is None:
            continue
        if f"output.{suffix}" not in out:
            out[f"output.{suffix}"] = twin
        elif not np.array_equal(twin, out[f"output.{suffix}"]):
            raise W.WeightsError(f"{path}: 'head.2.{suffix}' and 'output.{suffix}' (one GluonCV layer) differ")
    return out


def check_variant(spec: shared_spec.Spec, family: str, option: str = "--to gluoncv") -> None:
    """GluonCV (and MXNet's model zoo) has one network per family: a variant goes to or from its ``.params`` only
    when its weights are that network's, key for key and shape for shape (for GoogLeNet, ``googlenet`` and
    ``googlenet-gluoncv`` are; for Inception v3, ``inception-v3`` and ``inception-v3-gluon`` without the aux
    head). Whether the two compute the same is :mod:`.networks`' question."""
    variant = VARIANTS[family]

    def gluoncv(**overrides) -> dict[str, tuple[int, ...]]:  # the built-in spec's, whatever --spec names
        return shared_spec.load(variant, **overrides).weight_shapes()

    want = gluoncv(num_classes=spec.num_classes, in_channels=spec.in_channels,
                   **({"aux_logits": spec.aux_logits} if shared_spec.load(variant).has_aux else {}))
    got = spec.weight_shapes()
    if got == want:
        return
    key = next((k for k in got if want.get(k) != got[k]), None) or next(k for k in want if k not in got)
    why = (f"GluonCV's has no key {key!r}" if key not in want else f"it has no key {key!r}" if key not in got
           else f"key {key!r} has shape {got[key]}, GluonCV's {want[key]}")
    builtin = [name for name in shared_spec.list_variants() if shared_spec.load(name).weight_shapes() == gluoncv()]
    label = "GoogLeNet" if family == "googlenet" else "Inception v3"
    raise InputError(f"{option}: GluonCV has no model for variant {spec.variant!r} ({why}); "
                     f"the variants whose weights are GluonCV's {label}: {', '.join(builtin)}")


__all__ = ["FAMILIES", "PREFIXES", "V3_BLOCKS", "VARIANTS", "block_names", "check_variant",
           "dedupe_blocks", "names", "strip_prefix"]
