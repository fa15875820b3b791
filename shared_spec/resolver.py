"""Resolve one variant of a schema-valid spec document into :class:`Spec` records.

Block templates (``inception``: a Table 1 row through a block; ``block``) are expanded through
``TEMPLATES``, and every other layer's ``op`` through one table, ``OPS`` (op -> the function that
makes its record), as each builder maps an op to its framework's layer. Per-op defaults and the
(already checked) overrides are applied, channel arithmetic is checked, and dense input sizes and
spatial sizes come from the oracle's shape rules. :func:`shared_spec.load` is the door in.

No deep-learning framework is imported here.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping

from . import oracle
from .jsonfile import MAX_DEPTH
from .spec import (Aux, BatchNorm, Branch, Concat, Conv, Dense, Dropout, Flatten, GlobalAvgPool, AdaptiveAvgPool,
                   Init, Layer, LRN, Pool, Preprocess, Spec, SpecError, TransformInput, _padding, _pair)

MAX_LAYERS = 10_000  # layers after expanding blocks (a block used by a block used by ... grows fast)


@dataclass(frozen=True, slots=True)
class _At:
    """One JSON layer being resolved: the item (``layer_defaults`` for its op merged in), its full name,
    where it is (``path``; ``loc`` adds " (in $.…)" inside a block) and what comes into it."""

    item: Mapping[str, Any]
    name: str
    path: str
    loc: str
    where: str
    args: Mapping[str, int]
    channels: int | None  # the incoming channel count; None once the tensor is flat
    declared_in: int | None  # the item's own "in", references resolved


class Resolver:
    """One variant of a schema-valid document, resolved once by :meth:`resolve` (it keeps the names seen
    and the blocks being expanded as it goes)."""

    def __init__(self, doc: dict, label: str, variant: str, overrides: dict[str, Any]):
        self.doc = doc
        self.label = label
        self.variant = variant
        self.v = doc["variants"][variant]
        self.vpath = f"$.variants.{variant}"
        self.overrides = overrides
        self.defaults = self.v.get("layer_defaults", {})
        self.names: set[str] = set()
        self.blocks: list[str] = []  # the block templates being expanded, outermost first
        self.depth = 0
        self.context: dict[str, int] = {}  # what a "$name" may refer to besides block arguments (num_classes)

    def fail(self, path: str, message: str) -> SpecError:
        return SpecError(f"{self.label}: {path}: {message}")

    def resolve(self) -> Spec:
        o, v = self.overrides, self.v
        num_classes = o.get("num_classes", v["num_classes"])
        in_channels = o.get("in_channels", v["input"]["channels"])
        input_size = tuple(o.get("input_size", v["input"]["size"]))
        self.context = {"num_classes": num_classes}
        declared = v.get("transform_input")
        transform = o.get("transform_input", declared["enabled"] if declared else False)
        if transform and declared is None:
            raise SpecError(f"{self.variant}: override transform_input=True: this variant declares no "
                            f"transform_input")
        layers, _ = self.layers(v["layers"], f"{self.vpath}.layers", "", in_channels)
        has_aux = any(isinstance(layer, Aux) for layer in layers)
        aux_logits = o.get("aux_logits", v["aux_logits"])
        if aux_logits and not has_aux:
            if "aux_logits" in o:
                raise SpecError(f"{self.variant}: override aux_logits=True: this variant has no aux heads")
            raise self.fail(f"{self.vpath}.aux_logits", "true, but this variant has no aux heads "
                                                        "(no 'aux' layer); set it to false")
        if not aux_logits:
            layers = tuple(layer for layer in layers if not isinstance(layer, Aux))
        if transform:
            layers = (self._transform_input(declared, in_channels), *layers)
        layers = _apply_dropout(layers, o.get("dropout"))
        weight = v["init"]["weight"]
        if weight["type"] == "trunc_normal" and not weight["a"] < weight["b"]:
            raise self.fail(f"{self.vpath}.init.weight", f"truncation bounds a={weight['a']} and b={weight['b']}: "
                                                         f"expected a < b")
        stages = tuple(v.get("stages", {}).items())
        spec = Spec(
            variant=self.variant,
            description=v["description"],
            provenance=dict(v["provenance"]),
            expected=copy.deepcopy(v.get("expected", {})),
            in_channels=in_channels,
            input_size=input_size,
            num_classes=num_classes,
            aux_logits=aux_logits,
            has_aux=has_aux,
            init=Init(weight=weight["type"], std=weight.get("std", 0.0), a=weight.get("a", 0.0),
                      b=weight.get("b", 0.0), bias=v["init"]["bias"]),
            stages=stages,
            layers=layers,
            source=self.label,
            overrides=o,
            transform_input=bool(transform),
            has_transform_input=declared is not None,
            preprocess=self._preprocess(in_channels, input_size),
        )
        top = {layer.name for layer in spec.layers}
        for stage, last in stages:
            if last not in top and last not in self.names:
                raise self.fail(f"{self.vpath}.stages.{stage}", f"names no layer: {last!r}")
        if isinstance(o.get("dropout"), Mapping):
            dropouts = {layer.name for layer in spec.walk() if isinstance(layer, Dropout)}
            for name in o["dropout"]:
                if name not in dropouts:
                    raise SpecError(f"{self.variant}: override dropout: no dropout layer named {name!r}; "
                                    f"dropout layers: {', '.join(sorted(dropouts)) or 'none'}")
        return self._resolve_shapes(spec)

    def _resolve_shapes(self, spec: Spec) -> Spec:
        """Dense input sizes and spatial sizes come from the oracle's shape rules."""
        try:
            layers, _ = oracle.resolve_dense(spec.layers, spec.input_shape)
        except oracle.ShapeError as exc:
            where = exc.layer.path if exc.layer is not None else self.vpath
            message = str(exc)
            if "too small" in message:
                low, _ = oracle.min_input_size(spec)
                message = (f"input {spec.input_size[0]}x{spec.input_size[1]} is too small for {self.variant} "
                           f"(the minimum is {low}x{low}): {message}")
            raise self.fail(where, message) from None
        return replace(spec, layers=layers)

    def _preprocess(self, channels: int, size: tuple[int, int]) -> Preprocess | None:
        """The variant's input pipeline, checked, and scaled from its crop to ``size`` (the input size); None
        where it declares none, or where ``in_channels`` is overridden (the per-channel mean and std no longer
        fit)."""
        declared, v = self.v.get("preprocess"), self.v
        if declared is None or channels != v["input"]["channels"]:
            return None
        loc = f"{self.vpath}.preprocess"
        resize, crop = declared["resize"], tuple(_pair(declared["crop"]))
        fits = (max(crop) <= resize if isinstance(resize, int) else all(c <= r for c, r in zip(crop, resize)))
        if not fits:
            after = f"shorter side {resize}" if isinstance(resize, int) else f"{resize[0]}x{resize[1]}"
            raise self.fail(f"{loc}.crop", f"crop {crop[0]}x{crop[1]} is larger than the resized image ({after}, "
                                           f"{loc}.resize)")
        low, high = declared["range"]
        if not low < high:
            raise self.fail(f"{loc}.range", f"[{low}, {high}]: expected low < high")
        for key in ("mean", "std"):
            if len(declared[key]) != channels:
                raise self.fail(f"{loc}.{key}", f"{len(declared[key])} values for {channels} input channels")
        if declared.get("transform_input") and "transform_input" not in v:
            raise self.fail(f"{loc}.transform_input", "true, but this variant declares no transform_input")
        record = Preprocess(resize=resize if isinstance(resize, int) else tuple(resize), crop=crop,
                            interpolation=declared["interpolation"], antialias=declared["antialias"],
                            range=(float(low), float(high)), mean=tuple(map(float, declared["mean"])),
                            std=tuple(map(float, declared["std"])),
                            transform_input=declared.get("transform_input", False), source=declared["source"],
                            notes=declared.get("notes", ""), path=loc)
        return record.at(size)

    def _transform_input(self, declared: Mapping[str, Any], channels: int) -> TransformInput:
        """The variant's ``transform_input``, on: a first layer named ``transform_input``."""
        loc = f"{self.vpath}.transform_input"
        if "transform_input" in self.names:
            raise self.fail(loc, "a layer is already named 'transform_input'")
        values = {key: tuple(float(v) for v in declared[key]) for key in ("mean", "std", "target_mean", "target_std")}
        for key, given in values.items():
            if len(given) != channels:
                raise self.fail(f"{loc}.{key}", f"{len(given)} values for {channels} input channels")
        return TransformInput("transform_input", "transform_input", values["mean"], values["std"],
                              values["target_mean"], values["target_std"], loc)

    def layers(self, items: list, path: str, prefix: str, channels: int | None,
               args: Mapping[str, int] | None = None, where: str = "") -> tuple[tuple[Layer, ...], int | None]:
        """Resolve a list of JSON layers from ``channels`` coming in; returns them and the channels going out."""
        out = []
        for i, item in enumerate(items):
            layer, channels = self.layer(item, f"{path}[{i}]", prefix, channels, args or {}, where)
            out.append(layer)
        return tuple(out), channels

    def value(self, value, loc: str, key: str, args: Mapping[str, int]):
        """A number, or a ``$reference`` to a block argument or to the variant's ``$num_classes``."""
        if isinstance(value, str) and value.startswith("$"):
            ref = value[1:]
            if ref in args:
                return args[ref]
            if ref in self.context:
                return self.context[ref]
            raise self.fail(loc, f"{key}: unknown reference {value!r}; known: "
                                 f"{', '.join('$' + k for k in [*args, *self.context])}")
        return value

    def layer(self, item: dict, path: str, prefix: str, channels: int | None, args, where: str):
        if self.depth >= MAX_DEPTH:
            raise self.fail(path + where, f"layers nested deeper than {MAX_DEPTH} levels "
                                          f"(through blocks: {' -> '.join(self.blocks) or 'none'})")
        self.depth += 1
        try:
            if item["op"] in TEMPLATES:
                return self._expand(item, path, prefix, channels, where)
            return self._resolve_op(item, path, prefix, channels, args, where)
        finally:
            self.depth -= 1

    def _resolve_op(self, item: dict, path: str, prefix: str, channels: int | None, args, where: str):
        op, loc = item["op"], path + where
        if item.get("name") is None:
            raise self.fail(loc, "layer has no name")
        name = prefix + item["name"]
        if name in self.names:
            raise self.fail(loc, f"duplicate layer name {name!r}")
        self.names.add(name)
        if len(self.names) > MAX_LAYERS:
            raise self.fail(loc, f"more than {MAX_LAYERS} layers once blocks are expanded")
        declared_in = self.value(item["in"], loc, "in", args) if "in" in item else None
        if op in NEEDS_MAP and channels is None:
            raise self.fail(loc, f"{op} {name!r} after a flatten: expected a 3-D (C, H, W) input")
        parse = OPS.get(op)
        if parse is None:
            raise self.fail(loc, f"unknown op {op!r}")  # unreachable: the schema lists the ops
        at = _At({**self.defaults.get(op, {}), **item}, name, path, loc, where, args, channels, declared_in)
        return parse(self, at)

    def _expand(self, item: dict, path: str, prefix: str, channels: int | None, where: str):
        """Expand a template op (``inception``: a Table 1 row through a block; ``block``) into its block's layer."""
        block_name, args = TEMPLATES[item["op"]](self, item, path)
        blocks = self.doc.get("blocks", {})
        block = blocks.get(block_name)
        if block is None:
            raise self.fail(path, f"block: unknown block {block_name!r}; known blocks: {', '.join(blocks) or 'none'}")
        missing = [p for p in block["params"] if p not in args]
        extra = [a for a in args if a not in block["params"]]
        if missing or extra:
            raise self.fail(path, f"block {block_name!r} takes {block['params']}; "
                                  f"missing {missing}, unexpected {extra}")
        if "name" not in item:
            raise self.fail(path, "layer has no name")
        body = {**block["layer"], "name": item["name"], **({"in": item["in"]} if "in" in item else {})}
        if block_name in self.blocks:
            cycle = " -> ".join([*self.blocks[self.blocks.index(block_name):], block_name])
            raise self.fail(path + where, f"block {block_name!r} uses itself: {cycle}")
        self.blocks.append(block_name)
        try:
            return self.layer(body, f"$.blocks.{block_name}.layer", prefix, channels, args,
                              f" (in {path})" if not where else where)
        finally:
            self.blocks.pop()


def _apply_dropout(layers: tuple[Layer, ...], dropout) -> tuple[Layer, ...]:
    """The ``dropout`` override: one rate for every dropout layer, or a rate per dropout layer name."""
    if dropout is None:
        return layers
    out = []
    for layer in layers:
        if isinstance(layer, Dropout):
            rate = dropout.get(layer.name, layer.rate) if isinstance(dropout, Mapping) else dropout
            layer = Dropout(layer.op, layer.name, float(rate), layer.path)
        elif isinstance(layer, Aux):
            layer = Aux(layer.op, layer.name, _apply_dropout(layer.layers, dropout), layer.loss_weight, layer.path)
        elif isinstance(layer, Concat):
            layer = Concat(layer.op, layer.name, tuple(
                Branch(b.name, _apply_dropout(b.layers, dropout)) for b in layer.branches), layer.path)
        out.append(layer)
    return tuple(out)


# --------------------------------------------------------------------------- templates: op -> (block, args)


def _inception_row(r: Resolver, item: dict, path: str) -> tuple[str, dict]:
    """``inception``: a row of a table (Table 1), its columns the block's arguments."""
    opts = {**r.defaults.get("inception", {}), **item}
    block_name = opts.get("block")
    if block_name is None:
        raise r.fail(path, "inception has no 'block' and layer_defaults.inception gives none")
    tables = r.doc.get("tables", {})
    table_name = opts.get("table")
    table = tables.get(table_name)
    if table is None:
        raise r.fail(path, f"table: unknown table {table_name!r}; known: {', '.join(tables) or 'none'}")
    row_name = opts.get("row", item.get("name"))
    row = table["rows"].get(row_name)
    if row is None:
        raise r.fail(path, f"row: table {table_name!r} has no row {row_name!r}")
    if len(row) != len(table["columns"]):
        raise r.fail(f"$.tables.{table_name}.rows.{row_name}",
                     f"has {len(row)} values for {len(table['columns'])} columns")
    return block_name, dict(zip(table["columns"], row))


def _block_call(r: Resolver, item: dict, path: str) -> tuple[str, dict]:
    """``block``: a block by name, its arguments given."""
    return item["block"], dict(item.get("args", {}))


TEMPLATES: dict[str, Callable[[Resolver, dict, str], tuple[str, dict]]] = {
    "inception": _inception_row,
    "block": _block_call,
}


# --------------------------------------------------------------------------- ops: op -> (layer, channels out)


def _check_in(r: Resolver, at: _At) -> None:
    if at.declared_in is not None and at.declared_in != at.channels:
        raise r.fail(at.loc, f"in: {at.name!r} declares {at.declared_in} input channels, "
                             f"but the previous layer gives {at.channels}")


def _conv(r: Resolver, at: _At):
    _check_in(r, at)
    item = at.item
    out_channels = r.value(item["out"], at.loc, "out", at.args)
    for key in ("bias", "activation"):
        if key not in item:
            raise r.fail(at.loc, f"conv {at.name!r} has no {key!r} and layer_defaults.conv gives none")
    norm = item.get("norm")
    return Conv("conv", at.name, at.channels, out_channels, _pair(item["kernel"]), _pair(item.get("stride", 1)),
                _padding(item.get("padding", 0)), item["bias"],
                BatchNorm(norm["eps"], norm["momentum"], norm.get("scale", True)) if norm else None,
                item["activation"], at.loc), out_channels


def _pool(r: Resolver, at: _At):
    item, op = at.item, at.item["op"]
    if "rounding" not in item:
        raise r.fail(at.loc, f"{op} {at.name!r} has no 'rounding' and layer_defaults.{op} gives none")
    if op == "maxpool" and "count_include_pad" in item:
        raise r.fail(at.loc, f"count_include_pad: maxpool {at.name!r} has no average to count the padding in "
                             f"(padding never wins a max); it is an avgpool's key")
    kernel, padding = _pair(item["kernel"]), _padding(item.get("padding", 0))
    stride = _pair(item.get("stride", item["kernel"]))
    if max(padding[0], padding[1]) > kernel[0] // 2 or max(padding[2], padding[3]) > kernel[1] // 2:
        raise r.fail(at.loc, f"padding: {op} {at.name!r} pads more than half its kernel {kernel}")
    return Pool(op, at.name, kernel, stride, padding, item["rounding"], item.get("count_include_pad", False),
                at.loc), at.channels


def _lrn(r: Resolver, at: _At):
    item = at.item
    if item["size"] % 2 == 0:
        raise r.fail(at.loc, f"size: LRN {at.name!r} needs an odd size to be symmetric, got {item['size']}")
    return LRN("lrn", at.name, item["size"], float(item["alpha"]), float(item["beta"]), float(item["k"]),
               at.loc), at.channels


def _dense(r: Resolver, at: _At):
    if at.channels is not None:
        raise r.fail(at.loc, f"dense {at.name!r} needs a flat input: add a flatten layer before it")
    out_features = r.value(at.item["out"], at.loc, "out", at.args)
    # The input feature count depends on the spatial size: the oracle fills it in.
    return Dense("dense", at.name, at.declared_in or 0, out_features, at.item.get("bias", True),
                 at.item.get("activation"), at.loc), None


def _concat(r: Resolver, at: _At):
    _check_in(r, at)
    branches, total = [], 0
    for branch_name, items in at.item["branches"].items():
        path = f"{at.path}.branches.{branch_name}"
        layers, channels = r.layers(items, path, f"{at.name}.{branch_name}.", at.channels, at.args, at.where)
        if channels is None:
            raise r.fail(path + at.where, "a concat branch must end in a (C, H, W) map")
        branches.append(Branch(f"{at.name}.{branch_name}", layers))
        total += channels
    return Concat("concat", at.name, tuple(branches), at.loc), total


def _aux(r: Resolver, at: _At):
    layers, _ = r.layers(at.item["layers"], f"{at.path}.layers", f"{at.name}.", at.channels, at.args, at.where)
    return Aux("aux", at.name, layers, float(at.item["loss_weight"]), at.loc), at.channels


#: every op a spec's layer may have (besides the templates), to the function that resolves it into a record
#: and the channel count it hands on (None: the tensor is flat)
OPS: dict[str, Callable[[Resolver, _At], tuple[Layer, int | None]]] = {
    "conv": _conv,
    "maxpool": _pool,
    "avgpool": _pool,
    "global_avgpool": lambda r, at: (GlobalAvgPool("global_avgpool", at.name, at.loc), at.channels),
    "adaptive_avgpool": lambda r, at: (AdaptiveAvgPool("adaptive_avgpool", at.name, tuple(at.item["output_size"]),
                                                       at.loc), at.channels),
    "lrn": _lrn,
    "dropout": lambda r, at: (Dropout("dropout", at.name, float(at.item["rate"]), at.loc), at.channels),
    "flatten": lambda r, at: (Flatten("flatten", at.name, at.loc), None),
    "dense": _dense,
    "concat": _concat,
    "aux": _aux,
}
#: the ops that take a (C, H, W) map: refused after a flatten
NEEDS_MAP = frozenset({"conv", "maxpool", "avgpool", "global_avgpool", "adaptive_avgpool", "lrn", "concat"})
