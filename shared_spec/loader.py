"""Read a GoogLeNet architecture spec from JSON and resolve it into :class:`Spec` records.

The JSON file (``googlenet.json`` beside this package, or a user's own file) is
validated against ``schema.json`` with ``jsonschema``; then block templates and
per-op defaults are expanded, build-time overrides applied and channel
arithmetic checked; dense input sizes come from the oracle's shape rules.

No deep-learning framework is imported here.
"""

from __future__ import annotations

import codecs
import copy
import json
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping

import jsonschema

from . import oracle
from .spec import (BUILTIN_SPEC, BUILTIN_SPECS, OVERRIDES, SCHEMA_FILE, Aux, BatchNorm, Branch, Concat, Conv, Dense,
                   Dropout, Flatten, GlobalAvgPool, AdaptiveAvgPool, Init, LRN, Pool, Spec, SpecError, TransformInput,
                   _padding, _pair)

MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec file larger than this is refused before it is read
MAX_DEPTH = 64  # JSON nesting (objects and arrays), checked before parsing; also block/container nesting
MAX_LAYERS = 10_000  # layers after expanding blocks (a block used by a block used by ... grows fast)
MAX_MEMORY_BYTES = 16 * 1024 ** 3  # parameters + buffers + activations of one image, float32
MAX_CHANNELS = 65536  # as schema.json's "count"
MAX_INPUT_SIZE = 16384  # as schema.json's input size


def _strict_integer(checker, instance) -> bool:
    # Draft 2020-12 counts 1e12 (a float with no fraction) as an integer; a spec means an int literal.
    return isinstance(instance, int) and not isinstance(instance, bool)


_StrictValidator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.protocols.Validator:
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    return _StrictValidator(schema)


def _json_path(parts) -> str:
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters with "…" (a message quotes the start of a long value)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


class _NonFinite:
    """What ``NaN``, ``Infinity``, ``-Infinity`` and overflowing literals (``1e999``) parse to, so that
    the document walk can name where they are."""

    __slots__ = ("text",)

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _parse_float(text: str):
    value = float(text)
    return value if value - value == 0 else _NonFinite(text)


_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}:,]')


def _check_depth(text: str, label: str, limit: int = MAX_DEPTH) -> None:
    """Refuse nesting deeper than ``limit`` without recursing (json and jsonschema both recurse)."""
    stack: list[list] = []  # [kind, key or index]
    last_string = None
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token[0] == '"':
            last_string = token
        elif token in "[{":
            if len(stack) >= limit:
                raise SpecError(f"{label}: {_stack_path(stack)}: nested deeper than {limit} levels "
                                f"(line {text.count(chr(10), 0, match.start()) + 1})")
            stack.append(["[", 0] if token == "[" else ["{", None])
        elif token in "]}":
            if stack:
                stack.pop()
        elif token == ":":
            if stack and stack[-1][0] == "{":
                try:
                    stack[-1][1] = json.loads(last_string) if last_string else None
                except ValueError:
                    stack[-1][1] = None
        elif token == "," and stack and stack[-1][0] == "[":
            stack[-1][1] += 1


def _stack_path(stack) -> str:
    parts = []
    for kind, key in stack:
        if kind == "[":
            parts.append(key)
        elif key is not None:
            parts.append(key)
    return _clip_path(_json_path(parts))


def _clip_path(path: str, limit: int = 160) -> str:
    return path if len(path) <= limit else path[: limit - 1] + "…"


def _find_non_finite(doc) -> None | tuple[str, _NonFinite]:
    """The first NaN/Infinity in the document and its JSON path (depth is bounded: plain recursion)."""

    def walk(value, parts):
        if isinstance(value, _NonFinite):
            return parts, value
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            found = walk(item, [*parts, key])
            if found:
                return found
        return None

    found = walk(doc, [])
    return None if found is None else (_clip_path(_json_path(found[0])), found[1])


def _read_text(path: Path, label: str, limit: int = MAX_SPEC_BYTES) -> str:
    try:
        size = path.stat().st_size
        if size > limit:
            raise SpecError(f"{label}: spec file is {size} bytes; the limit is {limit} ({limit // 1024 ** 2} MiB)")
        with path.open("rb") as handle:
            data = handle.read(limit + 1)  # a FIFO or a device reports no size: read no more than the limit
    except OSError as exc:
        raise SpecError(f"{label}: cannot read spec file: {exc.strerror or exc}") from None
    if len(data) > limit:
        raise SpecError(f"{label}: spec file is larger than the limit of {limit} bytes ({limit // 1024 ** 2} MiB)")
    if data.startswith((codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE)):
        raise SpecError(f"{label}: spec file is UTF-32 (it starts with a byte-order mark); save it as UTF-8")
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise SpecError(f"{label}: spec file is UTF-16 (it starts with a byte-order mark); save it as UTF-8")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise SpecError(f"{label}: not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start} "
                        f"(line {line}); save the spec as UTF-8") from None


def read_document(path: str | Path) -> tuple[dict, str]:
    """Read and schema-validate a spec file. Returns the document and its display name.

    Refused, each with a one-line :class:`SpecError` naming the file: more than
    ``MAX_SPEC_BYTES``, not UTF-8, nesting deeper than ``MAX_DEPTH``, malformed
    JSON, NaN/Infinity, and anything the schema rejects (with its JSON path).
    """
    path = Path(path)
    label = str(path)
    text = _read_text(path, label)
    _check_depth(text, label)
    try:
        doc = json.loads(text, parse_constant=_NonFinite, parse_float=_parse_float)
    except json.JSONDecodeError as exc:
        raise SpecError(f"{label}: line {exc.lineno} column {exc.colno}: malformed JSON: {exc.msg}") from None
    except (ValueError, RecursionError) as exc:  # e.g. an integer literal of more than 4300 digits
        raise SpecError(f"{label}: malformed JSON: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
    found = _find_non_finite(doc)
    if found is not None:
        where, value = found
        raise SpecError(f"{label}: {where}: {value.text[:30]} is not a finite number")
    try:
        errors = sorted(_validator().iter_errors(doc), key=lambda e: (len(e.absolute_path), e.json_path))
    except RecursionError:  # not reached below MAX_DEPTH; a last resort
        raise SpecError(f"{label}: $: nested too deeply to validate") from None
    if errors:
        error = jsonschema.exceptions.best_match(errors)
        # best_match prefers the shallowest error; the deepest one names the field.
        deepest = max(errors, key=lambda e: len(e.absolute_path))
        if len(deepest.absolute_path) > len(error.absolute_path):
            error = deepest
        raise SpecError(f"{label}: {_clip_path(_json_path(error.absolute_path))}: {_schema_message(error)}")
    return doc, label


def _schema_message(error: jsonschema.ValidationError) -> str:
    if error.validator == "additionalProperties":
        return f"unknown key: {error.message.split('(')[-1].rstrip(')')}"
    if error.validator == "enum" and error.absolute_path and error.absolute_path[-1] == "op":
        return f"unknown op {short(error.instance)}; expected one of {', '.join(map(str, error.validator_value))}"
    if error.validator == "type" and isinstance(error.instance, float) and "integer" in str(error.validator_value):
        return f"{short(error.instance)} is not an integer (write it without a decimal point or exponent)"
    message = error.message
    full = repr(error.instance)
    if len(full) > 60:
        message = message.replace(full, short(error.instance))
    return message


def list_variants(spec_file: str | Path | None = None) -> list[str]:
    """The variants of ``spec_file``; without one, of every built-in spec file (``BUILTIN_SPECS``), in order."""
    if spec_file:
        return list(read_document(spec_file)[0]["variants"])
    return [name for _, names in _builtin_variants() for name in names]


@lru_cache(maxsize=1)
def _builtin_variants() -> tuple[tuple[Path, tuple[str, ...]], ...]:
    """(file, its variant names) for each built-in spec file; they ship with the package and do not change."""
    return tuple((path, tuple(read_document(path)[0]["variants"])) for path in BUILTIN_SPECS)


def builtin_file(variant: str) -> Path:
    """The built-in spec file that defines ``variant`` (the first one, ``googlenet.json``, when none does, so
    that an unknown name is reported against it, with every built-in variant as the known ones)."""
    return next((path for path, names in _builtin_variants() if variant in names), BUILTIN_SPEC)


def default_variant(spec_file: str | Path | None = None) -> str:
    doc, _ = read_document(spec_file or BUILTIN_SPEC)
    return doc["default_variant"]


def load(name_or_path: str | Path | None = None, *, spec_file: str | Path | None = None, **overrides) -> Spec:
    """Load one variant.

    ``name_or_path`` is a variant name in ``spec_file`` (the built-in spec by
    default), a path to a spec file (its default variant), or ``FILE:VARIANT``.
    Overrides: ``num_classes``, ``in_channels``, ``input_size`` (H, W),
    ``aux_logits``, ``dropout`` (one rate for every dropout layer, or a
    mapping from layer name to rate).
    """
    variant = None
    if name_or_path is not None and (str(name_or_path).endswith(".json") or ".json:" in str(name_or_path)):
        path_text, _, variant = str(name_or_path).partition(".json")
        spec_file = path_text + ".json"
        variant = variant.lstrip(":") or None
    else:
        variant = name_or_path
    builtin = spec_file is None
    if builtin and variant:
        spec_file = builtin_file(variant)
    doc, label = read_document(spec_file or BUILTIN_SPEC)
    where = "" if variant else "$.default_variant: "
    variant = variant or doc["default_variant"]
    if variant not in doc["variants"]:
        known = ", ".join(list_variants() if builtin else doc["variants"])
        raise SpecError(f"{label}: {where}unknown variant {short(variant)}; known variants: {known}")
    spec = _Resolver(doc, label, variant, overrides).resolve()
    check_memory(spec)
    return spec


def _gib(n: int) -> str:
    return f"{n / 1024 ** 3:.3g} GiB"


def check_memory(spec: Spec, limit: int = MAX_MEMORY_BYTES, *, batch: int = 1) -> None:
    """Refuse a spec whose parameters, buffers and activations for ``batch`` images (float32) exceed
    ``limit`` bytes, naming the layer where the total crosses it. :func:`load` calls it (batch 1)."""
    estimate = oracle.memory_estimate(spec, batch)
    if estimate.bytes <= limit:
        return
    name = estimate.first_over(limit)
    where = spec.layer(name).path if name else ""
    given = ", ".join(f"{k}={short(v, 30)}" for k, v in spec.overrides.items())
    raise SpecError(f"{spec.source}: {where or '$.variants.' + spec.variant}: {spec.variant}"
                    f"{f' ({given})' if given else ''} needs about {_gib(estimate.bytes)} for {batch} image(s) "
                    f"(parameters + activations, float32), over the limit of {_gib(limit)}; layer {name!r} "
                    f"crosses it")


class _Resolver:
    def __init__(self, doc: dict, label: str, variant: str, overrides: Mapping[str, Any]):
        self.doc = doc
        self.label = label
        self.variant = variant
        self.v = doc["variants"][variant]
        self.vpath = f"$.variants.{variant}"
        self.overrides = dict(overrides)
        self.names: set[str] = set()
        self.blocks: list[str] = []  # the block templates being expanded, outermost first
        self.depth = 0

    def fail(self, path: str, message: str) -> SpecError:
        return SpecError(f"{self.label}: {path}: {message}")

    # -- overrides -----------------------------------------------------------------

    def _check_overrides(self) -> None:
        for key in self.overrides:
            if key not in OVERRIDES:
                raise SpecError(f"{self.variant}: unknown override {key!r}; expected one of {', '.join(OVERRIDES)}")
        for key in ("num_classes", "in_channels"):
            value = self.overrides.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise SpecError(f"{self.variant}: override {key}={short(value)}: expected an integer >= 1")
        channels = self.overrides.get("in_channels")
        if channels is not None and channels > MAX_CHANNELS:
            raise SpecError(f"{self.variant}: override in_channels={channels}: expected at most {MAX_CHANNELS}")
        size = self.overrides.get("input_size")
        if size is not None:
            if isinstance(size, int):
                size = (size, size)
            if (not isinstance(size, (tuple, list)) or len(size) != 2
                    or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 1 for s in size)):
                raise SpecError(f"{self.variant}: override input_size={short(size)}: expected two integers H W >= 1")
            if max(size) > MAX_INPUT_SIZE:
                raise SpecError(f"{self.variant}: override input_size={short(size)}: expected at most "
                                f"{MAX_INPUT_SIZE} per side")
            self.overrides["input_size"] = tuple(size)
        for key in ("aux_logits", "transform_input"):
            flag = self.overrides.get(key)
            if flag is not None and not isinstance(flag, bool):
                raise SpecError(f"{self.variant}: override {key}={short(flag)}: expected true or false")
        dropout = self.overrides.get("dropout")
        if dropout is not None:
            rates = dropout.values() if isinstance(dropout, Mapping) else [dropout]
            for rate in rates:
                if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate < 1:
                    raise SpecError(f"{self.variant}: override dropout={short(dropout)}: expected a rate in [0, 1)")

    # -- resolution ----------------------------------------------------------------

    def resolve(self) -> Spec:
        self._check_overrides()
        o = {k: v for k, v in self.overrides.items() if v is not None}
        v = self.v
        num_classes = o.get("num_classes", v["num_classes"])
        in_channels = o.get("in_channels", v["input"]["channels"])
        input_size = tuple(o.get("input_size", v["input"]["size"]))
        self.context = {"num_classes": num_classes}
        defaults = v.get("layer_defaults", {})
        self.defaults = defaults
        declared = v.get("transform_input")
        transform = o.get("transform_input", declared["enabled"] if declared else False)
        if transform and declared is None:
            if "transform_input" in o:
                raise SpecError(f"{self.variant}: override transform_input=True: this variant declares no "
                                f"transform_input")
        layers, channels = self._layers(v["layers"], f"{self.vpath}.layers", "", in_channels)
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
        layers = self._apply_dropout(layers, o.get("dropout"))
        init = v["init"]
        weight = init["weight"]
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
                      b=weight.get("b", 0.0), bias=init["bias"]),
            stages=stages,
            layers=layers,
            source=self.label,
            overrides=o,
            transform_input=bool(transform),
            has_transform_input=declared is not None,
        )
        top = {layer.name for layer in spec.layers}
        for stage, last in stages:
            if last not in top and last not in self.names:
                raise self.fail(f"{self.vpath}.stages.{stage}", f"names no layer: {last!r}")
        if "dropout" in o and isinstance(o["dropout"], Mapping):
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

    def _apply_dropout(self, layers, dropout):
        if dropout is None:
            return layers
        out = []
        for layer in layers:
            if isinstance(layer, Dropout):
                rate = dropout.get(layer.name, layer.rate) if isinstance(dropout, Mapping) else dropout
                layer = Dropout(layer.op, layer.name, float(rate), layer.path)
            elif isinstance(layer, Aux):
                layer = Aux(layer.op, layer.name, self._apply_dropout(layer.layers, dropout), layer.loss_weight, layer.path)
            elif isinstance(layer, Concat):
                layer = Concat(layer.op, layer.name, tuple(
                    Branch(b.name, self._apply_dropout(b.layers, dropout)) for b in layer.branches), layer.path)
            out.append(layer)
        return tuple(out)

    def _layers(self, items: list, path: str, prefix: str, channels: int | None,
                args: Mapping[str, int] | None = None, where: str = ""):
        """Resolve a list of JSON layers. ``channels`` is the incoming channel count
        (None once the tensor is flat, where it is the feature count in ``flat``)."""
        out = []
        state = {"channels": channels, "flat": None}
        for i, item in enumerate(items):
            out.append(self._layer(item, f"{path}[{i}]", prefix, state, args or {}, where))
        return tuple(out), state

    def _value(self, value, path: str, key: str, args: Mapping[str, int], where: str):
        if isinstance(value, str) and value.startswith("$"):
            ref = value[1:]
            if ref in args:
                return args[ref]
            if ref in self.context:
                return self.context[ref]
            raise self.fail(path + where, f"{key}: unknown reference {value!r}; known: "
                            f"{', '.join('$' + k for k in [*args, *self.context])}")
        return value

    def _layer(self, item: dict, path: str, prefix: str, state: dict, args, where: str):
        if self.depth >= MAX_DEPTH:
            raise self.fail(path + where, f"layers nested deeper than {MAX_DEPTH} levels "
                                          f"(through blocks: {' -> '.join(self.blocks) or 'none'})")
        self.depth += 1
        try:
            return self._layer_at_depth(item, path, prefix, state, args, where)
        finally:
            self.depth -= 1

    def _layer_at_depth(self, item: dict, path: str, prefix: str, state: dict, args, where: str):
        op = item["op"]
        if op in ("inception", "block"):
            return self._instantiate(item, path, prefix, state, where)
        raw_name = item.get("name")
        if raw_name is None:
            raise self.fail(path + where, "layer has no name")
        name = prefix + raw_name
        if name in self.names:
            raise self.fail(path + where, f"duplicate layer name {name!r}")
        self.names.add(name)
        if len(self.names) > MAX_LAYERS:
            raise self.fail(path + where, f"more than {MAX_LAYERS} layers once blocks are expanded")
        merged = {**self.defaults.get(op, {}), **item} if op in ("conv", "maxpool", "avgpool") else item
        loc = path + where
        channels = state["channels"]
        declared_in = self._value(item.get("in"), loc, "in", args, "") if "in" in item else None

        if op == "conv":
            if channels is None:
                raise self.fail(loc, f"conv {name!r} after a flatten: expected a 3-D (C, H, W) input")
            if declared_in is not None and declared_in != channels:
                raise self.fail(loc, f"in: {name!r} declares {declared_in} input channels, "
                                     f"but the previous layer gives {channels}")
            out_channels = self._value(merged["out"], loc, "out", args, "")
            for key in ("bias", "activation"):
                if key not in merged:
                    raise self.fail(loc, f"conv {name!r} has no {key!r} and layer_defaults.conv gives none")
            norm = merged.get("norm")
            layer = Conv("conv", name, channels, out_channels, _pair(merged["kernel"]),
                         _pair(merged.get("stride", 1)), _padding(merged.get("padding", 0)), merged["bias"],
                         BatchNorm(norm["eps"], norm["momentum"], norm.get("scale", True)) if norm else None,
                         merged["activation"], loc)
            state["channels"] = out_channels
            return layer
        if op in ("maxpool", "avgpool"):
            self._need_map(op, name, channels, loc)
            if "rounding" not in merged:
                raise self.fail(loc, f"{op} {name!r} has no 'rounding' and layer_defaults.{op} gives none")
            if op == "maxpool" and "count_include_pad" in merged:
                raise self.fail(loc, f"count_include_pad: maxpool {name!r} has no average to count the padding in "
                                     f"(padding never wins a max); it is an avgpool's key")
            kernel, padding = _pair(merged["kernel"]), _padding(merged.get("padding", 0))
            stride = _pair(merged.get("stride", merged["kernel"]))
            if max(padding[0], padding[1]) > kernel[0] // 2 or max(padding[2], padding[3]) > kernel[1] // 2:
                raise self.fail(loc, f"padding: {op} {name!r} pads more than half its kernel {kernel}")
            return Pool(op, name, kernel, stride, padding, merged["rounding"],
                        merged.get("count_include_pad", False), loc)
        if op == "global_avgpool":
            self._need_map(op, name, channels, loc)
            return GlobalAvgPool(op, name, loc)
        if op == "adaptive_avgpool":
            self._need_map(op, name, channels, loc)
            return AdaptiveAvgPool(op, name, tuple(item["output_size"]), loc)
        if op == "lrn":
            self._need_map(op, name, channels, loc)
            if item["size"] % 2 == 0:
                raise self.fail(loc, f"size: LRN {name!r} needs an odd size to be symmetric, got {item['size']}")
            return LRN(op, name, item["size"], float(item["alpha"]), float(item["beta"]), float(item["k"]), loc)
        if op == "dropout":
            return Dropout(op, name, float(item["rate"]), loc)
        if op == "flatten":
            state["channels"], state["flat"] = None, "flatten"
            return Flatten(op, name, loc)
        if op == "dense":
            if channels is not None:
                raise self.fail(loc, f"dense {name!r} needs a flat input: add a flatten layer before it")
            out_features = self._value(item["out"], loc, "out", args, "")
            # The input feature count depends on the spatial size: the oracle fills it in.
            layer = Dense(op, name, declared_in or 0, out_features, item.get("bias", True), item.get("activation"), loc)
            state["flat"] = out_features
            return layer
        if op == "concat":
            self._need_map(op, name, channels, loc)
            if declared_in is not None and declared_in != channels:
                raise self.fail(loc, f"in: {name!r} declares {declared_in} input channels, "
                                     f"but the previous layer gives {channels}")
            branches, total = [], 0
            for branch_name, branch_items in item["branches"].items():
                layers, bstate = self._layers(branch_items, f"{path}.branches.{branch_name}",
                                              f"{name}.{branch_name}.", channels, args, where)
                if bstate["channels"] is None:
                    raise self.fail(f"{path}.branches.{branch_name}{where}", "a concat branch must end in a (C, H, W) map")
                branches.append(Branch(f"{name}.{branch_name}", layers))
                total += bstate["channels"]
            state["channels"] = total
            return Concat(op, name, tuple(branches), loc)
        if op == "aux":
            layers, _ = self._layers(item["layers"], f"{path}.layers", f"{name}.", channels, args, where)
            return Aux(op, name, layers, float(item["loss_weight"]), loc)
        raise self.fail(loc, f"unknown op {op!r}")  # unreachable: the schema lists the ops

    def _need_map(self, op, name, channels, loc):
        if channels is None:
            raise self.fail(loc, f"{op} {name!r} after a flatten: expected a 3-D (C, H, W) input")

    def _instantiate(self, item: dict, path: str, prefix: str, state: dict, where: str):
        """Expand ``inception`` (a Table 1 row through a block template) and ``block``."""
        op = item["op"]
        blocks = self.doc.get("blocks", {})
        if op == "inception":
            opts = {**self.defaults.get("inception", {}), **item}
            block_name = opts.get("block")
            if block_name is None:
                raise self.fail(path, "inception has no 'block' and layer_defaults.inception gives none")
            table_name = opts.get("table")
            table = self.doc.get("tables", {}).get(table_name)
            if table is None:
                raise self.fail(path, f"table: unknown table {table_name!r}; known: "
                                      f"{', '.join(self.doc.get('tables', {})) or 'none'}")
            row_name = opts.get("row", item.get("name"))
            row = table["rows"].get(row_name)
            if row is None:
                raise self.fail(path, f"row: table {table_name!r} has no row {row_name!r}")
            if len(row) != len(table["columns"]):
                raise self.fail(f"$.tables.{table_name}.rows.{row_name}",
                                f"has {len(row)} values for {len(table['columns'])} columns")
            args = dict(zip(table["columns"], row))
        else:
            block_name = item["block"]
            args = dict(item.get("args", {}))
        block = blocks.get(block_name)
        if block is None:
            raise self.fail(path, f"block: unknown block {block_name!r}; known blocks: {', '.join(blocks) or 'none'}")
        missing = [p for p in block["params"] if p not in args]
        extra = [a for a in args if a not in block["params"]]
        if missing or extra:
            raise self.fail(path, f"block {block_name!r} takes {block['params']}; "
                                  f"missing {missing}, unexpected {extra}")
        body = dict(block["layer"])
        if "name" not in item:
            raise self.fail(path, "layer has no name")
        body["name"] = item["name"]
        if "in" in item:
            body["in"] = item["in"]
        if block_name in self.blocks:
            cycle = " -> ".join([*self.blocks[self.blocks.index(block_name):], block_name])
            raise self.fail(path + where, f"block {block_name!r} uses itself: {cycle}")
        self.blocks.append(block_name)
        try:
            return self._layer(body, f"$.blocks.{block_name}.layer", prefix, state, args,
                               f" (in {path})" if not where else where)
        finally:
            self.blocks.pop()
