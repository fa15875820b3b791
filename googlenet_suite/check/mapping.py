"""The suite's weights onto the user's parameters.

Both sides are grouped into units (a conv with its BatchNorm, a dense layer) and put in the same order: the spec's
in its own order, the user's in the canonical data-flow order of :mod:`.graph` (for a model whose graph cannot be
read, the order its layers ran in). Then each spec unit takes the next unit of the user's: conv kernels in the
neutral layout, BatchNorm's four tensors, biases present or not. When that fails, shapes decide (in order among
equal shapes, the ambiguous ones named). ``--map`` rules take their tensors first.

A tensor whose shape the variant does not have, or a count that differs, is an architecture finding (a
:class:`Mismatch`), not bad input: the report shows it with both shapes and the user's tensor name.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import shared_spec
from shared_spec.spec import Conv, Dense

from .traps import in_parameters
from .user_code import MappingError, Rule, expand


@dataclass(frozen=True, slots=True)
class Param:
    """One of the user's tensors as the adapter reads it: neutral layout, grouped by the module it belongs to."""

    name: str
    module: str
    role: str  # conv.weight, conv.bias, bn.gamma, bn.beta, bn.running_mean, bn.running_var, dense.weight, dense.bias
    shape: tuple[int, ...]
    ones: bool = False  # a constant of ones the format requires (ONNX's BatchNormalization scale), not a parameter


@dataclass(frozen=True, slots=True)
class Unit:
    """The tensors of one conv unit or dense layer, by role (``conv.weight``, ``bn.gamma``, ``weight``, ...)."""

    name: str
    kind: str  # "conv" | "dense" | "bn" (a user's BatchNorm module on its own)
    tensors: dict[str, tuple[str, tuple[int, ...]]] = field(default_factory=dict)  # role -> (key or name, shape)
    layer: object = None  # the spec's layer (a spec unit)
    ones: set[str] = field(default_factory=set)  # roles whose tensor is a constant of ones (see Param.ones)


@dataclass(frozen=True, slots=True)
class Found:
    """A trap seen in the user's parameters (a BatchNorm with a gamma the spec has not, or without the one it has):
    the tensors that fit are loaded and the check goes on; the result names it."""

    trap: str
    detail: str
    layer: str  # the spec's
    module: str  # the user's


@dataclass(frozen=True, slots=True)
class Mismatch:
    """Where the user's parameters stop fitting the variant's: the spec key and shape, the user's tensor and shape
    (either may be missing: a count that differs), and the whole account in words."""

    text: str
    spec_key: str | None = None
    spec_shape: tuple[int, ...] | None = None
    name: str | None = None
    shape: tuple[int, ...] | None = None

    @property
    def kernel(self) -> str | None:
        """'a 3x3 where the variant has a 5x5' when only the kernel differs."""
        a, b = self.spec_shape, self.shape
        if a and b and len(a) == len(b) == 4 and a[:2] == b[:2] and a[2:] != b[2:]:
            return f"a {b[2]}x{b[3]} where the variant has a {a[2]}x{a[3]}"
        return None


@dataclass(frozen=True, slots=True)
class Mapping:
    """spec key -> the user's tensor name (``!zero:NAME``: the user's bias the spec lacks, set to zero), notes, and
    the mismatch that stopped it (then ``keys`` is empty)."""

    keys: dict[str, str]
    notes: tuple[str, ...] = ()
    mismatch: Mismatch | None = None
    found: tuple[Found, ...] = ()


def spec_units(spec: shared_spec.Spec, *, aux_last: bool = False) -> list[Unit]:
    """The spec's units in its order; ``aux_last``: the aux heads' after the trunk's, as a data-flow order from the
    main output first puts them."""
    shapes = spec.weight_shapes()
    aux = {layer.name for head in spec.aux_heads for layer in spec.walk(head.layers)}
    units = []
    for layer in spec.walk():
        if isinstance(layer, Conv):
            prefixes = (f"{layer.name}.conv.", f"{layer.name}.bn.")
            tensors = {key[len(layer.name) + 1:]: (key, shape) for key, shape in shapes.items()
                       if key.startswith(prefixes)}
            units.append(Unit(layer.name, "conv", tensors, layer))
        elif isinstance(layer, Dense):
            tensors = {role: (f"{layer.name}.{role}", shapes[f"{layer.name}.{role}"]) for role in ("weight", "bias")
                       if f"{layer.name}.{role}" in shapes}
            units.append(Unit(layer.name, "dense", tensors, layer))
    if aux_last:
        units.sort(key=lambda unit: unit.name in aux)
    return units


def user_units(params: list[Param]) -> list[Unit]:
    """The user's parameters grouped by module, in the order given."""
    units: list[Unit] = []
    for p in params:
        kind = p.role.split(".")[0]
        if not units or units[-1].name != p.module or units[-1].kind != kind:
            units.append(Unit(p.module, kind, {}))
        role = p.role if kind != "dense" else p.role.split(".")[-1]
        units[-1].tensors[role] = (p.name, tuple(p.shape))
        if p.ones:
            units[-1].ones.add(role)
    return units


def _pair(su: Unit, conv: Unit | None, bn: Unit | None, spec_values) -> tuple[dict, list[str], Mismatch | None]:
    """One spec unit onto one of the user's conv/dense units (and the BatchNorm that follows it)."""
    key0, shape0 = next(iter(su.tensors.values()))
    if conv is None:
        return {}, [], Mismatch(f"spec key {key0!r} {shape0} found no counterpart", key0, shape0)
    mapping, notes = {}, []
    main, bias = ("conv.weight", "conv.bias") if su.kind == "conv" else ("weight", "bias")
    theirs = {role.replace("conv.", "") if su.kind == "conv" else role: v for role, v in conv.tensors.items()}
    if main in su.tensors:  # (not when a --map rule took it)
        key, shape = su.tensors[main]
        if "weight" not in theirs:
            return {}, [], Mismatch(f"spec key {key!r} {shape} found no counterpart in {conv.name!r}", key, shape)
        name, their_shape = theirs["weight"]
        if their_shape != shape:
            found = Mismatch("", key, tuple(shape), name, tuple(their_shape))
            hint = f" ({found.kernel}: check the variant, e.g. torchvision's 'googlenet' has a 3x3 in its '5x5' " \
                   f"branch)" if found.kernel else ""
            text = f"spec key {key!r} {tuple(shape)} meets {name!r} {tuple(their_shape)} (in the neutral layout){hint}"
            return {}, [], Mismatch(text, key, tuple(shape), name, tuple(their_shape))
        mapping[key] = name
    ours = [role for role in su.tensors if role.startswith("bn.")]
    if su.kind == "conv" and ours and bn is None and "bias" in theirs and main in su.tensors:
        return _folded(su, theirs)
    if bias in su.tensors:
        key, shape = su.tensors[bias]
        if "bias" in theirs:
            mapping[key] = theirs["bias"][0]
        elif not np.any(spec_values[key]):
            notes.append(f"{key}: your {conv.name!r} has no bias; the suite's is all zeros")
        else:
            return {}, [], Mismatch(f"spec key {key!r} found no counterpart: {conv.name!r} has no bias", key, shape)
    elif "bias" in theirs:
        mapping[f"!zero:{theirs['bias'][0]}"] = theirs["bias"][0]
        notes.append(f"{theirs['bias'][0]}: set to zero (the spec's {su.name} has no bias)")
    if su.kind == "conv" and ours:
        if bn is None:
            key, shape = su.tensors[ours[0]]
            return {}, [], Mismatch(f"spec key {key!r} found no counterpart (no BatchNorm after {conv.name!r})",
                                    key, shape)
        got, more, mismatch = _pair_bn(su, ours, bn, spec_values)
        if mismatch:
            return {}, [], mismatch
        mapping.update(got)
        notes += more
    return mapping, notes, None


FOLDED = ("BatchNorm folded into the convolution before it (an eval-mode export: tf2onnx, torch.onnx's default): "
          "the suite's convolution and BatchNorm loaded folded, as one conv with a bias (a model without the "
          "BatchNorm would look the same)")


def _folded(su: Unit, theirs: dict) -> tuple[dict, list, None]:
    """A conv with a bias and no BatchNorm after it where the spec has conv + BatchNorm: ``!fold:`` keys, which
    :func:`.run._values` fills with the suite's weights folded (``W * s``, ``beta - mean * s``, ``s = gamma /
    sqrt(var + eps)``)."""
    return ({f"!fold:{su.name}.conv.weight": theirs["weight"][0], f"!fold:{su.name}.conv.bias": theirs["bias"][0]},
            [FOLDED], None)


def _pair_bn(su: Unit, ours: list[str], bn: Unit, spec_values) -> tuple[dict, list, Mismatch | None]:
    """A spec unit's BatchNorm tensors onto the user's BatchNorm. Where the two differ by a trap of
    :func:`.traps.in_parameters` (a gamma one has and the other lacks), what fits is loaded, a gamma the spec lacks
    is set to one (the spec's BatchNorm scales by one), and a :class:`Found` says so."""
    mapping, more = {}, []
    if set(ours) != set(bn.tensors):
        trap = in_parameters(su.layer, set(bn.tensors)) if su.layer is not None else None
        if trap is None:
            role = next((r for r in ours if r not in bn.tensors), ours[0])
            key, shape = su.tensors[role]
            return {}, [], Mismatch(f"spec key {key!r} {shape} found no counterpart in {bn.name!r}", key, shape)
        extra = set(bn.tensors) - set(ours)
        if not extra or not extra <= bn.ones:  # (a scale of constant ones where the spec has none computes the same)
            more.append(Found(trap.name, trap.say(su.layer, None), su.name, bn.name))
        for role in extra:
            mapping[f"!one:{bn.tensors[role][0]}"] = bn.tensors[role][0]
    for role in ours:
        key, shape = su.tensors[role]
        if role not in bn.tensors:
            continue  # (a gamma the user's BatchNorm lacks: reported by the trap above)
        if bn.tensors[role][1] != shape:
            return {}, [], Mismatch(f"spec key {key!r} {shape} found no counterpart in {bn.name!r}", key, shape)
        mapping[key] = bn.tensors[role][0]
    return mapping, more, None


def _with_bn(units: list[Unit]) -> list[tuple[Unit, Unit | None]]:
    """Each conv with the BatchNorm that follows it: the first unused BN after it with its channel count. A BN no
    conv takes stands alone (and is left over)."""
    pairs, taken = [], set()
    for k, unit in enumerate(units):
        if unit.kind == "bn":
            continue
        bn = None
        weight = unit.tensors.get("conv.weight")
        if unit.kind == "conv" and weight is not None:
            channels = weight[1][0]
            bn = next((u for u in units[k + 1:] if u.kind == "bn" and id(u) not in taken
                       and all(shape == (channels,) for _, shape in u.tensors.values())), None)
        if bn is not None:
            taken.add(id(bn))
        pairs.append((unit, bn))
    return pairs + [(u, None) for u in units if u.kind == "bn" and id(u) not in taken]


def _names(pairs) -> list[str]:
    return [name for pair in pairs for unit in pair if unit for name, _ in unit.tensors.values()]


def _align(spec_list: list[Unit], units: list[Unit], spec_values) -> tuple[dict, list[str], Mismatch | None]:
    """By order: each spec unit takes the next unit of the user's (with its BatchNorm when the spec has BN)."""
    mapping, notes = {}, []
    pairs = _with_bn(units)
    for i, su in enumerate(spec_list):
        conv, bn = pairs[i] if i < len(pairs) else (None, None)
        if conv is not None and conv.kind != su.kind:
            key, shape = next(iter(su.tensors.values()))
            return mapping, notes, Mismatch(f"spec key {key!r} meets your {conv.kind} {conv.name!r} in order",
                                            key, shape, next(iter(conv.tensors.values()))[0])
        got, more, mismatch = _pair(su, conv, bn, spec_values)
        if mismatch:
            return mapping, notes, mismatch
        if bn is not None and not (su.kind == "conv" and any(r.startswith("bn.") for r in su.tensors)):
            return mapping, notes, Mismatch(f"left over of yours: {bn.name!r} (the spec's {su.name} has no "
                                            f"BatchNorm)", name=bn.name)
        mapping.update(got)
        notes += more
    left = _names(pairs[len(spec_list):])
    if left:
        return mapping, notes, Mismatch(f"left over of yours: {', '.join(left[:4])}{' …' if len(left) > 4 else ''} "
                                        f"({len(left)} tensors)", name=left[0])
    return mapping, notes, None


def _signature(unit: Unit) -> tuple:
    return tuple(sorted((role.replace("conv.", ""), shape) for role, (_, shape) in unit.tensors.items()
                        if not role.endswith("bias") and not role.startswith("bn.")))


def _by_shape(spec_list: list[Unit], units: list[Unit], spec_values) -> tuple[dict, list[str]] | None:
    """By shape, in order among equal shapes: each spec unit takes the first unused unit of the user's with its
    shapes (a model whose order the check could not read)."""
    pairs = _with_bn(units)
    mapping, notes, used, ambiguous = {}, [], set(), []
    for su in spec_list:
        found = [(u, bn) for u, bn in pairs if id(u) not in used and u.kind == su.kind
                 and _signature(u) == _signature(su)]
        if not found:
            return None
        if len(found) > 1 and len(ambiguous) < 3:
            ambiguous.append(f"{su.name} -> {found[0][0].name} (also fits {found[1][0].name})")
        got, more, mismatch = _pair(su, *found[0], spec_values)
        if mismatch:
            return None
        used.add(id(found[0][0]))
        mapping.update(got)
        notes += more
    if len(used) != len(pairs):
        return None
    notes.append("mapped by shape, in order among equal shapes (your layers are not in the spec's order)")
    if ambiguous:
        notes.append("ambiguous, equal shapes taken in order: " + "; ".join(ambiguous)
                     + " (if the check diverges there, give --map rules)")
    return mapping, notes


def _by_rules(spec: shared_spec.Spec, params: list[Param], rules: list[Rule]) -> dict[str, str]:
    shapes = spec.weight_shapes()
    mapping = {}
    for p in params:
        for rule in rules:
            key = expand(rule, p.name)
            if key is None:
                continue
            if key not in shapes:
                raise MappingError(f"--map: {p.name!r} -> {key!r}, which is no spec key of {spec.variant!r} "
                                   f"(e.g. {next(iter(shapes))!r})")
            if tuple(shapes[key]) != tuple(p.shape):
                raise MappingError(f"--map: {p.name!r} {tuple(p.shape)} -> {key!r} {shapes[key]}: shapes differ")
            mapping[key] = p.name
            break
    return mapping


def map_weights(spec: shared_spec.Spec, params: list[Param], values: dict, *, rules: list[Rule] = (),
                aux_last: bool = False) -> Mapping:
    """``params`` in the user's canonical order. Raises MappingError only for a ``--map`` rule that is wrong."""
    mapping = _by_rules(spec, params, rules) if rules else {}
    spec_list = []
    for unit in spec_units(spec, aux_last=aux_last):
        rest = {role: v for role, v in unit.tensors.items() if v[0] not in mapping}
        if rest:
            spec_list.append(Unit(unit.name, unit.kind, rest, unit.layer))
    taken = set(mapping.values())
    units = user_units([p for p in params if p.name not in taken])
    got, notes, mismatch = _align(spec_list, units, values)
    if mismatch is not None:
        fallback = _by_shape(spec_list, units, values)
        if fallback is None:
            total = sum(len(u.tensors) for u in units)
            text = (f"cannot map the suite's {spec.variant} weights onto your model by order and shape: "
                    f"{mismatch.text}; spec has {len(spec.weight_shapes())} tensors, yours {len(params)}"
                    f"{f' ({total} left after --map)' if rules else ''}; is your model for another variant? "
                    f"(googlenet-suite list)")
            words = tuple(note for note in notes if not isinstance(note, Found))
            return Mapping({}, words, Mismatch(text, mismatch.spec_key, mismatch.spec_shape, mismatch.name,
                                               mismatch.shape))
        got, notes = fallback
    found = tuple(note for note in notes if isinstance(note, Found))  # (notes and findings travel together)
    words = tuple(dict.fromkeys(note for note in notes if not isinstance(note, Found)))
    return Mapping({**mapping, **got}, words, found=found)
