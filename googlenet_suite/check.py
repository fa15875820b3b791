"""``googlenet-suite check``: hold a user's own GoogLeNet (an nn.Module, keras.Model, Gluon Block or ONNX file) to a
variant of the spec.

Framework-neutral: the framework's part (loading a model, reading and setting its parameters, recording every
intermediate output) is ``impl_X/check.py``, found through the registry (capability ``check``). Here:

1. the suite's weights for the variant, seeded and BatchNorm-calibrated as ``compare`` makes them, and the
   reference's logits and per-layer activations, from the suite's own builder;
2. the mapping of those weights onto the user's parameters: by the spec's parameter order and shapes (conv kernels
   in the framework's layout, BN's four tensors, dense, biases present or not), then by unique shapes, with
   ``--map`` rules (regex on their names -> spec keys) first; a clear account when it fails;
3. the comparison on one batch: logits, then every recorded intermediate output matched to the spec's layers by
   order, shape and value; the first layer that diverges beyond the tolerance;
4. the diagnosis at that layer: the layer re-run in numpy (``shared_spec.numeric``) from the user's own input to it,
   with each known trap applied, and the one that reproduces the user's output.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

import shared_spec
from shared_spec import numeric
from shared_spec.spec import AdaptiveAvgPool, Aux, Concat, Conv, Dense, Dropout, Flatten, GlobalAvgPool, LRN, Pool

from . import frameworks as fw_registry
from . import harness
from .console import UsageError

TOLERANCE = harness.TOLERANCE  # 1e-4 fp32, as compare
REPRODUCE = 1e-5  # a trap "reproduces" the user's output within this (relative to the scale above 1)
OPTIONS = {"torch": "--torch", "tf": "--keras", "mxnet": "--gluon", "onnx": "--onnx"}
MAX_LINE = 380


def _short(text: str, limit: int = MAX_LINE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CheckInputError(UsageError):
    """A model, factory, mapping or shape the check cannot work with (exit 2, one line)."""

    def __init__(self, message):
        super().__init__(_short(message))


# --------------------------------------------------------------------------- the user's factory


def load_object(target: str, option: str):
    """``path/to/file.py:factory`` or ``pkg.mod:factory``: the attribute, called if it is callable and not
    already a model (the adapter decides that)."""
    if ":" not in target:
        raise CheckInputError(f"{option} {target}: expected MODULE:FACTORY or path/to/file.py:FACTORY")
    source, _, attr = target.rpartition(":")
    if not source or not attr:
        raise CheckInputError(f"{option} {target}: expected MODULE:FACTORY or path/to/file.py:FACTORY")
    try:
        if source.endswith(".py") or "/" in source or "\\" in source:
            path = Path(source)
            if not path.is_file():
                raise CheckInputError(f"{option} {target}: file {source} does not exist")
            name = f"_googlenet_check_{abs(hash(str(path.resolve())))}"
            module_spec = importlib.util.spec_from_file_location(name, path)
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[name] = module
            sys.path.insert(0, str(path.resolve().parent))
            try:
                module_spec.loader.exec_module(module)
            finally:
                sys.path.remove(str(path.resolve().parent))
        else:
            module = importlib.import_module(source)
    except CheckInputError:
        raise
    except BaseException as exc:  # the user's code: any failure is bad input, one line
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CheckInputError(f"{option} {target}: importing {source} failed: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, attr):
        raise CheckInputError(f"{option} {target}: {source} has no attribute {attr!r}")
    return getattr(module, attr)


def call_factory(obj, is_model: Callable[[object], bool], target: str, option: str):
    """A function, class or method is called with no arguments; anything else (a model, of whichever framework) is
    the model itself."""
    if is_model(obj) or not (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)
                             or isinstance(obj, functools.partial)):
        return obj
    try:
        return obj()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise CheckInputError(f"{option} {target}: calling {target.rpartition(':')[2]}() failed: "
                              f"{type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------- the spec's side: units and steps


@dataclass
class Unit:
    """The parameters of one conv unit or dense layer, by role: conv.weight, conv.bias, bn.gamma, ..., weight, bias."""

    name: str
    kind: str  # "conv" | "dense" | "bn" (a user's BN module on its own)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # role -> (key or name, shape)


def spec_units(spec: shared_spec.Spec) -> list[Unit]:
    shapes = spec.weight_shapes()
    units = []
    for layer in spec.walk():
        if isinstance(layer, (Conv, Dense)):
            unit = Unit(layer.name, "conv" if isinstance(layer, Conv) else "dense")
            prefix = f"{layer.name}." if isinstance(layer, Dense) else None
            for key, shape in shapes.items():
                if isinstance(layer, Conv) and key.startswith(f"{layer.name}.conv.") or \
                        isinstance(layer, Conv) and key.startswith(f"{layer.name}.bn."):
                    unit.tensors[key[len(layer.name) + 1:]] = (key, shape)
                elif prefix and key in (f"{prefix}weight", f"{prefix}bias"):
                    unit.tensors[key[len(prefix):]] = (key, shape)
            units.append(unit)
    return units


@dataclass(frozen=True)
class Step:
    layer: object
    top: bool  # a top-level layer of the main path
    source: str | None  # the layer whose output is this one's input (None: the network's input)
    container: str | None  # the enclosing concat or aux head


def steps(spec: shared_spec.Spec) -> list[Step]:
    """Every layer in execution order (children before their container), with the layer that feeds it."""
    out: list[Step] = []

    def walk(layers, source, top, container):
        for layer in layers:
            if isinstance(layer, Concat):
                for branch in layer.branches:
                    walk(branch.layers, source, False, layer.name)
                out.append(Step(layer, top, source, container))
                source = layer.name
            elif isinstance(layer, Aux):
                walk(layer.layers, source, False, layer.name)
                out.append(Step(layer, False, source, container))
            else:
                out.append(Step(layer, top, source, container))
                source = layer.name
        return source

    walk(spec.layers, None, True, None)
    return out


def flatten_sources(spec: shared_spec.Spec) -> dict[str, tuple[int, ...]]:
    """For each dense layer fed by a flatten (through dropouts), the (C, H, W) that was flattened."""
    report = shared_spec.analyze(spec)
    by_name = {step.layer.name: step for step in steps(spec)}
    result = {}
    for step in by_name.values():
        if not isinstance(step.layer, Dense):
            continue
        source = step.source
        while source and isinstance(by_name[source].layer, Dropout):
            source = by_name[source].source
        if source and isinstance(by_name[source].layer, Flatten):
            shape = report.layer(source).in_shape
            if len(shape) == 3 and shape[1] * shape[2] > 1:
                result[step.layer.name] = tuple(shape)
    return result


# --------------------------------------------------------------------------- mapping


def _user_units(params: list[dict]) -> list[Unit]:
    """The adapter's parameter list (each ``{name, module, role, shape}``, neutral layout) grouped by module."""
    units: list[Unit] = []
    for p in params:
        kind = p["role"].split(".")[0] if "." in p["role"] else "dense"
        if not units or units[-1].name != p["module"] or units[-1].kind != kind:
            units.append(Unit(p["module"], kind))
        role = p["role"] if kind != "dense" else p["role"].split(".")[-1]
        units[-1].tensors[role] = (p["name"], tuple(p["shape"]))
    return units


class MappingError(CheckInputError):
    pass


def _kernel_hint(spec_shape, theirs) -> str:
    if len(spec_shape) == 4 and len(theirs) == 4 and spec_shape[:2] == theirs[:2] and spec_shape[2:] != theirs[2:]:
        return (f" (a {theirs[2]}x{theirs[3]} where the variant has a {spec_shape[2]}x{spec_shape[3]}: "
                f"check the variant, e.g. torchvision's 'googlenet' has a 3x3 in its '5x5' branch)")
    return ""


def _pair_units(su: Unit, conv: Unit | None, bn: Unit | None, spec_values) -> tuple[dict, list[str], str | None]:
    """Map one spec unit onto a user's conv/dense unit (and its following BN). Returns (spec key -> user name,
    notes, error or None)."""
    mapping, notes = {}, []
    if conv is None:
        return {}, [], f"spec key {su.tensors[next(iter(su.tensors))][0]!r} found no counterpart"
    main = "conv.weight" if su.kind == "conv" else "weight"
    bias = "conv.bias" if su.kind == "conv" else "bias"
    theirs = {k.replace("conv.", "") if su.kind == "conv" else k: v for k, v in conv.tensors.items()}
    if main in su.tensors:  # (not when a --map rule took it)
        key, shape = su.tensors[main]
        if "weight" not in theirs:
            return {}, [], f"spec key {key!r} {shape} found no counterpart in {conv.name!r}"
        name, their_shape = theirs["weight"]
        if their_shape != shape:
            return {}, [], (f"spec key {key!r} {tuple(shape)} meets {name!r} {tuple(their_shape)} "
                            f"(in the neutral layout){_kernel_hint(shape, their_shape)}")
        mapping[key] = name
    if bias in su.tensors:
        key, shape = su.tensors[bias]
        if "bias" in theirs:
            mapping[key] = theirs["bias"][0]
        elif not np.any(spec_values[key]):
            notes.append(f"{key}: your {conv.name!r} has no bias; the suite's is all zeros")
        else:
            return {}, [], f"spec key {key!r} found no counterpart: {conv.name!r} has no bias"
    elif "bias" in theirs:
        mapping[f"!zero:{theirs['bias'][0]}"] = theirs["bias"][0]
        notes.append(f"{theirs['bias'][0]}: set to zero (the spec's {su.name} has no bias)")
    if su.kind == "conv" and "bn.gamma" in su.tensors:
        if bn is None:
            return {}, [], f"spec key {su.tensors['bn.gamma'][0]!r} found no counterpart (no BatchNorm after {conv.name!r})"
        for role in ("gamma", "beta", "running_mean", "running_var"):
            key, shape = su.tensors[f"bn.{role}"]
            if f"bn.{role}" not in bn.tensors or bn.tensors[f"bn.{role}"][1] != shape:
                return {}, [], f"spec key {key!r} {shape} found no counterpart in {bn.name!r}"
            mapping[key] = bn.tensors[f"bn.{role}"][0]
    return mapping, notes, None


def _with_bn(user_list: list[Unit]) -> list[tuple[Unit, Unit | None]]:
    """Each conv with the BatchNorm that follows it: the first unused BN after it with its channel count (a
    functional Keras model runs a level of branches at a time: conv, conv, BN, BN). A BN no conv takes stands
    alone (and is left over)."""
    pairs, taken = [], set()
    for k, unit in enumerate(user_list):
        if unit.kind == "bn":
            continue
        bn = None
        if unit.kind == "conv" and "weight" in {r.replace("conv.", "") for r in unit.tensors}:
            channels = next(shape for role, (_, shape) in unit.tensors.items() if role.endswith("weight"))[0]
            bn = next((u for u in user_list[k + 1:] if u.kind == "bn" and id(u) not in taken
                       and all(shape == (channels,) for _, shape in u.tensors.values())), None)
        if bn is not None:
            taken.add(id(bn))
        pairs.append((unit, bn))
    pairs += [(u, None) for u in user_list if u.kind == "bn" and id(u) not in taken]
    return pairs


def _align(spec_list: list[Unit], user_list: list[Unit], spec_values) -> tuple[dict, list[str], str | None, list[Unit]]:
    """By order: each spec unit takes the next unit of yours (with its BatchNorm when the spec has BN)."""
    mapping, notes = {}, []
    pairs = _with_bn(user_list)
    for i, su in enumerate(spec_list):
        conv, bn = pairs[i] if i < len(pairs) else (None, None)
        if conv is not None and conv.kind != ("conv" if su.kind == "conv" else "dense"):
            return mapping, notes, (f"spec key {next(iter(su.tensors.values()))[0]!r} meets your {conv.kind} "
                                    f"{conv.name!r} in order"), [u for p in pairs[i:] for u in p if u]
        got, more, error = _pair_units(su, conv, bn, spec_values)
        if error:
            return mapping, notes, error, [u for p in pairs[i:] for u in p if u]
        if bn is not None and not (su.kind == "conv" and "bn.gamma" in su.tensors):
            return mapping, notes, f"left over of yours: {bn.name!r} (the spec's {su.name} has no BatchNorm)", \
                [u for p in pairs[i:] for u in p if u]
        mapping.update(got)
        notes += more
    return mapping, notes, None, [u for p in pairs[len(spec_list):] for u in p if u]


def _signature(unit: Unit) -> tuple:
    return tuple(sorted((role.replace("conv.", ""), shape) for role, (_, shape) in unit.tensors.items()
                        if not role.endswith("bias")))


def _by_shape(spec_list, user_list, spec_values):
    """By shape, in order among equal shapes: each spec unit takes the first unused unit of yours with its shapes (a
    model whose modules are registered, or run, in another order than the spec lists them)."""
    pairs = _with_bn(user_list)
    mapping, notes, used, ambiguous = {}, [], set(), []
    for su in spec_list:
        want = _signature(Unit(su.name, su.kind, {k: v for k, v in su.tensors.items() if not k.startswith("bn.")}))
        found = [(u, bn) for u, bn in pairs if id(u) not in used and _signature(u) == want
                 and u.kind == ("conv" if su.kind == "conv" else "dense")]
        if not found:
            return None, None
        if len(found) > 1 and len(ambiguous) < 3 and any(id(u) not in used and _signature(u) == want for u, _ in found[1:2]):
            ambiguous.append(f"{su.name} -> {found[0][0].name} (also fits {found[1][0].name})")
        got, more, error = _pair_units(su, *found[0], spec_values)
        if error:
            return None, None
        used.add(id(found[0][0]))
        mapping.update(got)
        notes += more
    if len(used) != len(pairs):
        return None, None
    notes.append("mapped by shape, in order among equal shapes (your layers are not in the spec's order)")
    if ambiguous:
        notes.append("ambiguous, equal shapes taken in order: " + "; ".join(ambiguous)
                     + " (if the check diverges there, give --map rules)")
    return mapping, notes


def read_rules(path: str) -> list[tuple[re.Pattern, str]]:
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CheckInputError(f"--map {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckInputError(f"--map {path}: not JSON: {exc}") from None
    rules = doc.get("rules", doc) if isinstance(doc, dict) else doc
    items = rules.items() if isinstance(rules, dict) else rules
    out = []
    try:
        for pattern, target in items:
            out.append((re.compile(pattern), str(target)))
    except (TypeError, ValueError) as exc:
        raise CheckInputError(f"--map {path}: expected {{\"regex\": \"spec key\", ...}} or "
                              f"{{\"rules\": [[regex, key], ...]}}: {exc}") from None
    return out


def map_weights(spec: shared_spec.Spec, params: list[dict], values: dict[str, np.ndarray],
                rules: list[tuple[re.Pattern, str]] | None = None,
                order: list[str] | None = None) -> tuple[dict[str, str], list[str]]:
    """spec key -> the user's parameter name (``!zero:NAME`` keys: their bias to set to zero), and notes.
    Raises MappingError with the account."""
    shapes = spec.weight_shapes()
    mapping: dict[str, str] = {}
    if rules:
        for p in params:
            for pattern, target in rules:
                m = pattern.fullmatch(p["name"]) or pattern.search(p["name"])
                if m:
                    key = m.expand(target)
                    if key not in shapes:
                        raise MappingError(f"--map: {p['name']!r} -> {key!r}, which is no spec key of "
                                           f"{spec.variant!r} (e.g. {next(iter(shapes))!r})")
                    if tuple(shapes[key]) != tuple(p["shape"]):
                        raise MappingError(f"--map: {p['name']!r} {tuple(p['shape'])} -> {key!r} {shapes[key]}: "
                                           f"shapes differ{_kernel_hint(shapes[key], tuple(p['shape']))}")
                    mapping[key] = p["name"]
                    break
    taken = set(mapping.values())
    spec_list = []
    for unit in spec_units(spec):
        rest = {role: v for role, v in unit.tensors.items() if v[0] not in mapping}
        if rest:
            spec_list.append(Unit(unit.name, unit.kind, rest))
    user_list = _user_units([p for p in params if p["name"] not in taken])
    if order:  # the order the modules run in (a first forward), where it differs from how they are registered
        first = {}
        for k, name in enumerate(order):
            first.setdefault(name, k)
        user_list = sorted(user_list, key=lambda u: first.get(u.name, len(order)))
    got, notes, error, left = _align(spec_list, user_list, values)
    if error is None and left:
        names = [name for unit in left for name, _ in unit.tensors.values()]
        error = f"left over of yours: {', '.join(names[:4])}{' …' if len(names) > 4 else ''} ({len(names)} tensors)"
    if error is not None:
        fallback, more = _by_shape(spec_list, user_list, values)
        if fallback is None:
            total = sum(len(u.tensors) for u in user_list)
            raise MappingError(f"cannot map the suite's {spec.variant} weights onto your model by order and shape: "
                               f"{error}; spec has {len(shapes)} tensors, yours {len(params)}"
                               f"{f' ({total} left after --map)' if rules else ''}; is your model for another variant? "
                               f"(googlenet-suite list)")
        got, notes = fallback, more
    mapping.update(got)
    return mapping, notes


# --------------------------------------------------------------------------- matching


@dataclass
class Record:
    name: str
    kind: str  # "conv" | "bn" | "dense" | "pool" | "other"
    value: np.ndarray  # channels-first, batch first
    pre_activation: bool = False  # a conv/BN/dense output before a ReLU the framework did not fuse into it


def _scale(ref: np.ndarray) -> float:
    return float(np.max(np.abs(ref))) if ref.size else 0.0


def _diff(a: np.ndarray, b: np.ndarray) -> float:
    if a.shape != b.shape:
        return float("inf")
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(np.max(d)) if d.size else 0.0


def _views(record: Record, layer, channels_last: bool, flat_source) -> list[tuple[str, np.ndarray]]:
    """The ways a record can stand for a spec layer's output: as it is; with the ReLU applied that the user's
    code calls functionally; a channels-last framework's flatten put back in channels-first order."""
    views = [("", record.value)]
    if isinstance(layer, GlobalAvgPool) and record.value.ndim == 2:  # Keras's GlobalAveragePooling2D drops 1x1
        views.append(("as (C, 1, 1)", record.value[:, :, None, None]))
    activation = getattr(layer, "activation", None)
    if record.pre_activation and activation == "relu":
        views.append(("with your functional ReLU", np.maximum(record.value, 0)))
    if channels_last and flat_source and record.value.ndim == 2 and record.value.shape[1] == int(np.prod(flat_source)):
        c, h, w = flat_source
        views.append(("in channels-first order", record.value.reshape(-1, h, w, c).transpose(0, 3, 1, 2)
                      .reshape(record.value.shape[0], -1)))
    return views


@dataclass
class Match:
    status: str  # "agree" | "differs" | "missing"
    index: int | None = None
    view: str = ""
    value: np.ndarray | None = None
    diff: float | None = None
    candidates: list[int] = field(default_factory=list)


def match_layers(spec, records: list[Record], ref_acts: dict, *, channels_last: bool, tolerance: float = TOLERANCE):
    """Each step's match among the records: searched after the record of the layer that feeds it (so branches may
    run in any order), by shape, then by value (as it is, or in the views of :func:`_views`)."""
    report = shared_spec.analyze(spec)
    flat = _flatten_shapes(spec, report)
    plan = steps(spec)
    by_name = {s.layer.name: s for s in plan}
    matches: dict[str, Match] = {}

    def start_of(source):
        while source is not None:
            m = matches.get(source)
            if m is not None and m.status == "agree":
                return m.index
            source = by_name[source].source
        return -1

    for step in plan:
        layer = step.layer
        ref = ref_acts.get(layer.name)
        if ref is None:
            matches[layer.name] = Match("missing")
            continue
        start = start_of(step.source)
        if isinstance(layer, (Dropout, Flatten)) and start >= 0:
            start -= 1  # an identity in eval (or a flatten of 1x1 maps): the same record may stand for both
        limit = tolerance * max(1.0, _scale(ref))
        same = [k for k in range(start + 1, len(records))
                if any(v.shape == ref.shape for _, v in _views(records[k], layer, channels_last, flat.get(layer.name)))]
        found = None
        for k in same:
            for view, value in _views(records[k], layer, channels_last, flat.get(layer.name)):
                d = _diff(value, ref)
                if d <= limit:
                    found = Match("agree", k, view, value, d, same)
                    break
            if found:
                break
        if found is None:
            def closest(k):
                return min(_diff(v, ref) for _, v in _views(records[k], layer, channels_last, flat.get(layer.name)))
            best = min(same, key=closest, default=None)
            found = Match("differs" if same else "missing", best, "", None if best is None else records[best].value,
                          None if best is None else closest(best), same)
        matches[layer.name] = found
    return plan, matches


def _flatten_shapes(spec, report) -> dict[str, tuple]:
    """Flatten (and the dropouts after it): the (C, H, W) it flattens, where H*W > 1."""
    out = {}
    by_name = {s.layer.name: s for s in steps(spec)}
    for s in by_name.values():
        if isinstance(s.layer, Flatten):
            shape = report.layer(s.layer.name).in_shape
            if len(shape) == 3 and shape[1] * shape[2] > 1:
                out[s.layer.name] = tuple(shape)
        elif isinstance(s.layer, Dropout) and s.source in out:
            out[s.layer.name] = out[s.source]
    return out


def first_divergence(plan, matches) -> str | None:
    """The first layer that differs, or whose shape is nowhere, that is not just unrecorded. Unrecorded: a later
    top-level layer agrees, or (for a shape found nowhere) the layer that consumes it, through dropouts and
    flattens, finds tensors of its own shape (a functional flatten or dropout is never a module's output)."""
    consumers = {}
    for step in plan:
        consumers.setdefault(step.source, []).append(step)
    for k, step in enumerate(plan):
        m = matches[step.layer.name]
        if m.status in ("agree", "not recorded"):
            continue
        if any(matches[s.layer.name].status == "agree" for s in plan[k + 1:] if s.top):
            m.status = "not recorded"
            continue
        if m.status == "missing" and _consumed_by_a_found_shape(step, consumers, matches):
            m.status = "not recorded"
            continue
        return step.layer.name
    return None


def _consumed_by_a_found_shape(step, consumers, matches) -> bool:
    """A layer whose shape is nowhere but whose consumer agrees; or a flatten or dropout (functional in most code)
    whose consumer finds tensors of its shape."""
    for nxt in consumers.get(step.layer.name, []):
        status = matches[nxt.layer.name].status
        if status == "agree" or status == "differs" and isinstance(step.layer, (Dropout, Flatten)):
            return True
        if isinstance(nxt.layer, (Dropout, Flatten)) and isinstance(step.layer, (Dropout, Flatten)) \
                and _consumed_by_a_found_shape(nxt, consumers, matches):
            return True
    return False


# --------------------------------------------------------------------------- diagnosis


def traps(layer, x: np.ndarray, weights: dict, *, source_layer=None, source_raw: np.ndarray | None = None,
          flat_source: tuple | None = None) -> list[tuple[str, str, np.ndarray]]:
    """(trap, what it means, the layer's output with it) for every known trap that applies to ``layer``."""
    out = []
    hw = x.shape[2:] if x.ndim == 4 else None
    if isinstance(layer, (Conv, Pool)) and hw is not None and max(layer.stride) > 1:
        same = numeric.keras_same(layer, hw)
        if same != layer.padding:
            text = f"TF/Keras 'same' padding at stride {layer.stride[0]}: pads {same} where the spec pads {layer.padding}"
            if isinstance(layer, Conv):
                out.append(("same-padding-stride-2", text, numeric.conv(layer, x, weights, padding=same)))
            else:
                out.append(("same-padding-stride-2", text,
                            numeric.pool(layer, x, padding=same, rounding="floor", count_include_pad=False)))
    if isinstance(layer, Conv):
        if layer.norm is not None:
            for eps in (1e-3, 1e-5):
                if not np.isclose(eps, layer.norm.eps):
                    out.append(("bn-eps", f"BatchNorm eps {eps:g} where the spec has {layer.norm.eps:g}",
                                numeric.conv(layer, x, weights, eps=eps)))
        if layer.activation == "relu":
            out.append(("missing-relu", f"no ReLU after {layer.name}", numeric.conv(layer, x, weights, activation=False)))
    if isinstance(layer, Pool):
        other = "floor" if layer.rounding == "ceil" else "ceil"
        out.append((f"{other}-rounding", f"{other} rounding where the spec has {layer.rounding}",
                    numeric.pool(layer, x, rounding=other)))
        if layer.op == "maxpool" and (any(layer.padding) or layer.rounding == "ceil"):
            out.append(("zero-pool-padding", "zero padding in a max pool where the spec pads with -inf",
                        numeric.pool(layer, x, pad_value=0.0)))
        if layer.op == "avgpool":
            out.append(("avgpool-count-pad", f"count_include_pad={not layer.count_include_pad}",
                        numeric.pool(layer, x, count_include_pad=not layer.count_include_pad)))
            out.append(("adaptive-pool", f"an adaptive average pool to the same size where the spec pools "
                        f"{layer.kernel[0]}/{layer.stride[0]}", numeric.adaptive_avgpool(x, numeric.pool(layer, x).shape[2:])))
    if isinstance(layer, AdaptiveAvgPool):
        out.append(("fixed-aux-pool", f"a fixed average pool where the spec pools adaptively to {layer.output_size}",
                    numeric.fixed_avgpool(x, layer.output_size)))
    if isinstance(layer, LRN):
        out.append(("lrn-alpha-total", f"LRN alpha {layer.alpha:g} applied whole, where the spec divides it by "
                    f"size {layer.size}", numeric.lrn(layer, x, alpha_per_size=False)))
        out.append(("lrn-radius-size", f"LRN window of {2 * layer.size + 1} channels (size {layer.size} read as a "
                    f"radius)", numeric.lrn(layer, x, window=2 * layer.size + 1)))
        out.append(("lrn-alpha-and-radius", "both: alpha applied whole and size read as a radius",
                    numeric.lrn(layer, x, alpha_per_size=False, window=2 * layer.size + 1)))
    if isinstance(layer, Dense):
        if flat_source:
            out.append(("nhwc-flatten", f"NHWC flatten order before {layer.name} (the spec flattens {flat_source} "
                        f"channels-first)", numeric.dense(layer, x, weights, source_shape=flat_source)))
        if layer.activation == "relu":
            out.append(("missing-relu", f"no ReLU after {layer.name}", numeric.dense(layer, x, weights, activation=False)))
    if isinstance(layer, Flatten) and x.ndim == 4 and x.shape[2] * x.shape[3] > 1:
        out.append(("nhwc-flatten", "NHWC flatten order", numeric.flatten(x, channels_last=True)))
    if source_raw is not None and source_layer is not None:
        y = numeric.forward(layer, source_raw, weights)
        if y is not None:
            out.append(("missing-relu", f"no ReLU after {source_layer.name} (this layer gets its pre-activation "
                        f"output)", y))
    return out


def diagnose(spec, plan, matches, name: str, records: list[Record], ref_acts: dict, weights: dict, x: np.ndarray,
             *, channels_last: bool) -> dict:
    """Re-run layer ``name`` in numpy from its input in the user's model, plain and with each trap."""
    step = next(s for s in plan if s.layer.name == name)
    layer = step.layer
    ref = ref_acts[name]
    scale = _scale(ref)
    limit = REPRODUCE * max(1.0, scale)
    flat = flatten_sources(spec)
    result = {"layer": name, "op": layer.op, "scale": scale}
    if isinstance(layer, (Concat, Aux)):
        result["note"] = f"{name} is a {layer.op}: its parts agree or are not recorded; no single-layer trap applies"
        return result
    source = step.source
    by_name = {s.layer.name: s for s in plan}
    if source is None:
        inp, origin = x.astype(np.float64), "the input batch"
    elif matches[source].status == "agree":
        inp, origin = matches[source].value, f"your model's {records[matches[source].index].name}"
    else:
        inp, origin = ref_acts[source], f"the reference's {source} (yours is not recorded)"
    result["input_from"] = origin
    plain = numeric.forward(layer, inp, weights)
    result["numpy_vs_reference"] = _diff(plain, ref) if plain is not None else None
    # the user's candidates for this layer's output: every record after its input, any shape
    start = matches[source].index if source and matches[source].status == "agree" else -1
    cands = [k for k in range(start + 1, min(len(records), start + 1 + 40))]
    raw = None
    src_layer = by_name[source].layer if source else None
    if source and matches[source].status == "agree" and matches[source].view == "with your functional ReLU":
        raw = records[matches[source].index].value
    tried = []
    for trap, text, y in traps(layer, inp, weights, source_layer=src_layer, source_raw=raw, flat_source=flat.get(name)):
        best, where = float("inf"), None
        for k in cands:
            rec = records[k]
            for view, value in _views(rec, layer, channels_last, None):
                d = _diff(value, y)
                if d < best:
                    best, where = d, rec.name
        tried.append({"trap": trap, "detail": text, "max_abs_diff": best, "record": where,
                      "shape": list(y.shape[1:])})
    result["traps"] = tried
    hits = [t for t in tried if t["max_abs_diff"] <= limit]
    result["diagnosis"] = min(hits, key=lambda t: t["max_abs_diff"]) if hits else None
    return result


def walk_on(spec, plan, matches, first: str, records: list[Record], weights: dict, x: np.ndarray, *,
            channels_last: bool, window: int = 80) -> list[dict]:
    """From the first divergence on, every layer re-run from the user's own input to it: ``as the spec`` (the
    plain layer reproduces the user's next tensor), ``trap`` (a trap does) or ``unexplained`` (the walk stops
    there). So one check finds every place a model departs from the spec, not only the first."""
    by_name = {s.layer.name: s for s in plan}
    flat = flatten_sources(spec)
    local: dict[str, tuple[int, np.ndarray]] = {}  # layer -> (record index, value) the walk found
    start = next(k for k, s in enumerate(plan) if s.layer.name == first)
    rows = []

    def source_value(source):
        if source is None:
            return -1, x.astype(np.float64)
        if source in local:
            return local[source]
        m = matches[source]
        if m.status == "agree":
            return m.index, m.value
        return None

    for step in plan[start:]:
        layer = step.layer
        if isinstance(layer, Aux):
            continue
        src = source_value(step.source)
        if src is None:
            continue  # its input is in a branch the walk could not follow (reported there)
        index, inp = src
        if isinstance(layer, Concat):
            parts = [local.get(b.layers[-1].name) or (matches[b.layers[-1].name].index, matches[b.layers[-1].name].value)
                     for b in layer.branches]
            if any(value is None for _, value in parts):
                rows.append({"layer": layer.name, "status": "unexplained", "detail": "a branch was not followed"})
                break
            options = [("as the spec", "", np.concatenate([value for _, value in parts], axis=1))]
            index = max(k for k, _ in parts)
        else:
            plain = numeric.forward(layer, inp, weights)
            if plain is None:
                continue
            raw = None
            if step.source and step.source in matches and matches[step.source].view == "with your functional ReLU" \
                    and step.source not in local:
                raw = records[matches[step.source].index].value
            options = [("as the spec", "", plain)] + [
                ("trap", f"{trap}: {text}", y) for trap, text, y in
                traps(layer, inp, weights, source_layer=by_name[step.source].layer if step.source else None,
                      source_raw=raw, flat_source=flat.get(layer.name))]
        found = None
        for k in range(index + 1 if index >= 0 else 0, min(len(records), index + 1 + window)):
            for status, detail, y in options:
                for view, value in _views(records[k], layer, channels_last, None):
                    if value.shape == y.shape and _diff(value, y) <= REPRODUCE * max(1.0, _scale(y)):
                        found = (k, value, status, detail, view)
                        break
                if found:
                    break
            if found:
                break
        if found is None:
            rows.append({"layer": layer.name, "status": "unexplained",
                         "detail": "no tensor of yours is this layer, as the spec or with a known trap, "
                                   "given your input to it"})
            break
        k, value, status, detail, view = found
        local[layer.name] = (k, value)
        rows.append({"layer": layer.name, "status": status, "detail": detail, "record": records[k].name})
    return rows


# --------------------------------------------------------------------------- the check


def reference(spec, key: str, *, batch: int, seed: int, progress=None):
    """(x, neutral weights, logits, per-layer activations) from the suite's own builder ``key``."""
    mod = fw_registry.load(key)
    x = harness.input_batch(spec, batch, seed)
    weights = harness.reference_weights(spec, key, seed=seed, device="cpu")
    model = mod.build(spec, device="cpu", seed=seed)
    mod.import_weights(model, weights)
    logits = np.asarray(mod.forward(model, x, training=False))
    acts = mod.layer_outputs(model, x)
    return x, weights, logits, acts


def reference_key(key: str) -> str:
    """The builder that makes the weights: the user's framework when it can train (calibration is a training
    step), else the first installed one that can (ONNX)."""
    if fw_registry.FRAMEWORKS[key].can("train"):
        return key
    for other in fw_registry.with_capability("train"):  # torch first; only one is imported
        try:
            fw_registry.load(other)
            return other
        except fw_registry.FrameworkMissing:
            continue
    raise CheckInputError("check --onnx needs one framework that can train for the weights (torch, tf or mxnet)")


def run_check(spec: shared_spec.Spec, key: str, target: str, *, batch: int = 1, seed: int = 0,
              map_file: str | None = None, progress=None) -> dict:
    option = OPTIONS[key]
    say = progress or (lambda message: __import__("contextlib").nullcontext())
    try:
        fw_registry.load(key)
    except fw_registry.FrameworkMissing as exc:
        raise CheckInputError(f"{option}: {exc}") from None
    adapter = fw_registry.part(key, "check")
    rules = read_rules(map_file) if map_file else None
    ref_key = reference_key(key)
    with say(f"{spec.variant}: the suite's weights and reference activations ({fw_registry.FRAMEWORKS[ref_key].label})"):
        x, weights, ref_logits, ref_acts = reference(spec, ref_key, batch=batch, seed=seed)
    with say(f"loading your model ({target})"):
        if key == "onnx":
            try:
                model = adapter.load_model(target, spec)
            except ValueError as exc:
                raise CheckInputError(str(exc)) from None
        else:
            obj = load_object(target, option)
            obj = call_factory(obj, adapter.is_model, target, option)
            try:
                model = adapter.prepare(obj, spec)
            except (TypeError, ValueError) as exc:
                raise CheckInputError(f"{option} {target}: {exc}") from None
    params = adapter.parameters(model)
    try:  # the order its modules run in, with its own weights
        order = [r["name"] for r in adapter.run(model, x)[1]]
    except Exception:
        order = None
    mapping, notes = map_weights(spec, params, weights, rules, order)
    flat = flatten_sources(spec)
    values = {}
    for spec_key, name in mapping.items():
        if spec_key.startswith("!zero:"):
            shape = next(p["shape"] for p in params if p["name"] == name)
            values[name] = np.zeros(shape, np.float32)
            continue
        value = np.asarray(weights[spec_key], np.float32)
        layer_name = spec_key.rsplit(".", 1)[0]
        if adapter.CHANNELS_LAST and spec_key.endswith(".weight") and layer_name in flat:
            c, h, w = flat[layer_name]  # their flatten is channels-last: permute the input axis to match
            value = value.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(value.shape[0], -1)
        values[name] = value
    unmapped = [p["name"] for p in params if p["name"] not in values]
    if unmapped:
        raise MappingError(f"left over of yours: {', '.join(unmapped[:4])} (no spec key)")
    with say("running your model"):
        adapter.load(model, values)
        try:
            logits, records = adapter.run(model, x)
        except Exception as exc:  # the user's forward: any failure is one line
            raise CheckInputError(f"{option} {target}: running it on {tuple(x.shape)} failed: "
                                  f"{type(exc).__name__}: {exc}") from None
    records = [Record(r["name"], r["kind"], np.asarray(r["value"]), r.get("pre_activation", False)) for r in records]
    logits = np.asarray(logits)
    return assess(spec, key, target, x, weights, ref_logits, ref_acts, logits, records, notes, ref_key,
                  channels_last=adapter.CHANNELS_LAST, seed=seed)


def assess(spec, key, target, x, weights, ref_logits, ref_acts, logits, records, notes, ref_key, *,
           channels_last: bool, seed: int = 0) -> dict:
    result = {"variant": spec.variant, "framework": key, "model": target, "reference": ref_key,
              "input": {"shape": list(x.shape), "seed": seed}, "tolerance": TOLERANCE,
              "mapping": {"notes": notes}}
    plan, matches = match_layers(spec, records, ref_acts, channels_last=channels_last)
    if logits.shape != ref_logits.shape:
        first = first_divergence(plan, matches)
        raise CheckInputError(f"your model's output has shape {logits.shape[1:]}, the {spec.variant} variant's "
                              f"{ref_logits.shape[1:]}{f' (first layer apart: {first})' if first else ''}")
    logit_diff = _diff(logits, ref_logits)
    result["logits"] = {"max_abs_diff": logit_diff, "scale": _scale(ref_logits),
                        "agree": bool(logit_diff <= TOLERANCE)}
    first = first_divergence(plan, matches)
    rows = []
    for step in plan:
        m = matches[step.layer.name]
        rows.append({"name": step.layer.name, "op": step.layer.op, "status": m.status,
                     "record": records[m.index].name if m.index is not None else None,
                     "view": m.view or None, "max_abs_diff": m.diff,
                     "scale": _scale(ref_acts[step.layer.name]) if step.layer.name in ref_acts else None})
        if step.layer.name == first:
            break
    result["layers"] = rows
    result["first_divergence"] = None
    if first is not None:
        m = matches[first]
        diag = diagnose(spec, plan, matches, first, records, ref_acts, weights, x, channels_last=channels_last)
        diag.update({"status": m.status, "max_abs_diff": m.diff,
                     "record": records[m.index].name if m.index is not None else None,
                     "their_shapes": sorted({tuple(records[k].value.shape[1:]) for k in m.candidates})[:3]})
        result["first_divergence"] = diag
        if m.status != "missing":
            walk = walk_on(spec, plan, matches, first, records, weights, x, channels_last=channels_last)
            result["departures"] = [row for row in walk if row["status"] != "as the spec"]
            result["walk"] = {"layers": len(walk), "as_the_spec": sum(r["status"] == "as the spec" for r in walk)}
        if m.status == "missing":
            expected = tuple(ref_acts[first].shape[1:])
            near = _nearest_shape(plan, matches, first, records, expected)
            hint = diag.get("diagnosis")
            raise CheckInputError(
                f"shape differs at layer {first}: the {spec.variant} variant gives {expected}, your model "
                f"{near or 'no tensor of that shape'}"
                + (f"; reproduced by: {hint['detail']}" if hint else "")
                + "; check --variant and the overrides")
    agree = result["logits"]["agree"] and first is None
    result["agree"] = bool(agree)
    result["verdict"] = verdict(result)
    return result


def _nearest_shape(plan, matches, name, records, expected):
    step = next(s for s in plan if s.layer.name == name)
    start = matches[step.source].index if step.source and matches[step.source].status == "agree" else -1
    for k in range(start + 1, len(records)):
        shape = tuple(records[k].value.shape[1:])
        if len(shape) == len(expected) and shape != expected:
            return f"{shape} at {records[k].name}"
    return None


def verdict(result: dict) -> str:
    head = f"{result['variant']} vs {result['model']} ({fw_registry.FRAMEWORKS[result['framework']].label})"
    logits = result["logits"]
    first = result["first_divergence"]
    if result["agree"]:
        return f"{head}: AGREE: logits max abs diff {logits['max_abs_diff']:.2e} <= {TOLERANCE:g}, every matched layer within"
    text = f"{head}: DIVERGES: logits max abs diff {logits['max_abs_diff']:.2e}"
    if first is None:
        return text + "; no recorded layer diverges before the logits"
    text += f"; first at layer {first['layer']} ({first['op']}, {first.get('max_abs_diff') or float('nan'):.2e}, scale " \
            f"{first['scale']:.3g})"
    diag = first.get("diagnosis")
    if diag:
        return text + f"; reproduced by: {diag['detail']} (max abs diff {diag['max_abs_diff']:.1e} <= {REPRODUCE:g})"
    if first.get("traps"):
        best = min(first["traps"], key=lambda t: t["max_abs_diff"])
        return text + (f"; no known trap reproduces it (closest: {best['trap']}, {best['max_abs_diff']:.2e}; "
                       f"the numpy re-run of the spec's layer is {first.get('numpy_vs_reference') or 0:.1e} from the reference)")
    return text + (f"; {first['note']}" if first.get("note") else "")


def render(result: dict, fmt: str) -> str:
    from . import render as rendering

    if fmt == "json":
        return json.dumps(result, indent=2, default=float) + "\n"
    rows = []
    for row in result["layers"]:
        diff = row["max_abs_diff"]
        rows.append([row["name"], row["status"] + (f" ({row['view']})" if row["view"] else ""), row["record"] or "-",
                     "-" if diff is None else f"{diff:.2e}", "-" if row["scale"] is None else f"{row['scale']:.3g}"])
    rows.append(["logits", "agree" if result["logits"]["agree"] else "differs", "output",
                 f"{result['logits']['max_abs_diff']:.2e}", f"{result['logits']['scale']:.3g}"])
    title = (f"{result['variant']}: {result['model']} vs the suite's weights (seed {result['input']['seed']}, "
             f"from {result['reference']}), input {tuple(result['input']['shape'])}")
    text = rendering.render_table(title, ["layer", "status", "your tensor", "max abs diff", "scale"], rows, fmt)
    first = result["first_divergence"]
    if first and first.get("traps"):
        trap_rows = [[t["trap"], t["detail"], f"{t['max_abs_diff']:.2e}"] for t in first["traps"]]
        text += rendering.render_table(f"traps re-run at {first['layer']} (input: {first['input_from']})",
                                       ["trap", "what", "max abs diff vs yours"], trap_rows, fmt)
    if result.get("departures"):
        dep_rows = [[d["layer"], d["status"], d["detail"]] for d in result["departures"]]
        walk = result["walk"]
        text += rendering.render_table(f"every departure from the spec, each layer re-run from your input to it "
                                       f"({walk['as_the_spec']} of {walk['layers']} layers from "
                                       f"{first['layer']} on are as the spec)", ["layer", "status", "what"],
                                       dep_rows, fmt)
    for note in result["mapping"]["notes"]:
        text += f"note: {note}\n"
    return text + (f"**{result['verdict']}**\n" if fmt == "markdown" else result["verdict"] + "\n")
