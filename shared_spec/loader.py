"""Load a GoogLeNet architecture spec: ``load(name, spec_file=...)``, the one door to a :class:`Spec`.

The JSON file (``googlenet.json`` beside this package, or a user's own file) is read
safely (:mod:`shared_spec.jsonfile`) and validated against ``schema.json`` with
``jsonschema``; the build-time overrides are checked here; :mod:`shared_spec.resolver`
then expands blocks and per-op defaults, checks the channel arithmetic and makes the
records; the memory a variant needs is checked last.

No deep-learning framework is imported here.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Mapping

import jsonschema

from . import oracle
from .jsonfile import clip_path, json_path, read_json
from .resolver import Resolver
from .spec import BUILTIN_SPEC, BUILTIN_SPECS, OVERRIDES, SCHEMA_FILE, Spec, SpecError
MAX_MEMORY_BYTES = 16 * 1024 ** 3  # parameters + buffers + activations of one image, float32
MAX_CHANNELS = 65536  # as schema.json's "count"
MAX_INPUT_SIZE = 16384  # as schema.json's input size


def short(value: Any, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters with "…" (a message quotes the start of a long value)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- the document


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


def read_document(path: str | Path) -> tuple[dict, str]:
    """Read and schema-validate a spec file. Returns the document and its display name.

    Refused, each with a one-line :class:`SpecError` naming the file: whatever
    :func:`shared_spec.jsonfile.read_json` refuses (more than ``MAX_SPEC_BYTES``, not
    UTF-8, nesting deeper than ``MAX_DEPTH``, malformed JSON, NaN/Infinity), and
    anything the schema rejects (with its JSON path).
    """
    doc, label = read_json(path)
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
        raise SpecError(f"{label}: {clip_path(json_path(error.absolute_path))}: {_schema_message(error)}")
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


def load(name: str | None = None, *, spec_file: str | Path | None = None, **overrides) -> Spec:
    """Load variant ``name`` of ``spec_file`` (the built-in spec by default).

    ``name`` is always a variant name, whatever it ends with (``"x.json"`` is the
    variant named ``x.json``); None loads the file's default variant. An unknown
    name lists the known ones. Overrides: ``num_classes``, ``in_channels``,
    ``input_size`` (H, W), ``aux_logits``, ``transform_input``, ``dropout`` (one
    rate for every dropout layer, or a mapping from layer name to rate).
    """
    builtin = spec_file is None
    if builtin and name:
        spec_file = builtin_file(name)
    doc, label = read_document(spec_file or BUILTIN_SPEC)
    where = "" if name else "$.default_variant: "
    variant = name or doc["default_variant"]
    if variant not in doc["variants"]:
        known = ", ".join(list_variants() if builtin else doc["variants"])
        raise SpecError(f"{label}: {where}unknown variant {short(variant)}; known variants: {known}")
    spec = Resolver(doc, label, variant, _checked_overrides(variant, overrides)).resolve()
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


# --------------------------------------------------------------------------- overrides


def _count(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _expect_count(value, most: int | None = None) -> str | None:
    if not _count(value):
        return "an integer >= 1"
    return f"at most {most}" if most is not None and value > most else None


def _expect_size(size) -> str | None:
    if not isinstance(size, (tuple, list)) or len(size) != 2 or not all(map(_count, size)):
        return "two integers H W >= 1"
    return f"at most {MAX_INPUT_SIZE} per side" if max(size) > MAX_INPUT_SIZE else None


def _expect_flag(flag) -> str | None:
    return None if isinstance(flag, bool) else "true or false"


def _expect_rates(dropout) -> str | None:
    rates = dropout.values() if isinstance(dropout, Mapping) else [dropout]
    if all(isinstance(rate, (int, float)) and not isinstance(rate, bool) and 0 <= rate < 1 for rate in rates):
        return None
    return "a rate in [0, 1)"


#: override -> what a given value must be (None when it is fine), in the order they are checked
_OVERRIDE_RULES: dict[str, Callable[[Any], str | None]] = {
    "num_classes": _expect_count,
    "in_channels": lambda value: _expect_count(value, MAX_CHANNELS),
    "input_size": _expect_size,
    "aux_logits": _expect_flag,
    "transform_input": _expect_flag,
    "dropout": _expect_rates,
}


def _checked_overrides(variant: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """The overrides given (None: not given, dropped), each checked; ``input_size`` as an (H, W) tuple."""
    for key in overrides:
        if key not in OVERRIDES:
            raise SpecError(f"{variant}: unknown override {key!r}; expected one of {', '.join(OVERRIDES)}")
    given = {key: value for key, value in overrides.items() if value is not None}
    if isinstance(given.get("input_size"), int):
        given["input_size"] = (given["input_size"],) * 2
    for key, rule in _OVERRIDE_RULES.items():
        if key in given and (expected := rule(given[key])) is not None:
            raise SpecError(f"{variant}: override {key}={short(given[key])}: expected {expected}")
    if "input_size" in given:
        given["input_size"] = tuple(given["input_size"])
    return given
