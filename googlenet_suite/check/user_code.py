"""What ``check`` reads from the user: the model (``MODULE:FACTORY`` importable Python, or an ONNX file) and the
``--map`` rules. Anything wrong here is misuse, one line and exit 2 (:class:`CheckInputError`); a model that loads
but differs from the variant is a finding, reported elsewhere."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from shared_spec.errors import InputError

MAX_LINE = 380


def short(text: str, limit: int = MAX_LINE) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


class CheckInputError(InputError):
    """A model, factory or mapping the check cannot work with (the CLI: one line, exit 2)."""

    def __init__(self, message):
        super().__init__(short(message))


class MappingError(CheckInputError):
    """A ``--map`` rule that names no spec key, or gives a tensor a key of another shape."""


def _user_failure(exc: BaseException) -> bool:
    """Anything the user's code raises is bad input; an interrupt is not."""
    return not isinstance(exc, KeyboardInterrupt)


def load_object(target: str, option: str):
    """``path/to/file.py:factory`` or ``pkg.mod:factory``: the attribute, called if it is callable and not
    already a model (the adapter decides that)."""
    source, _, attr = target.rpartition(":")
    if not source or not attr:
        raise CheckInputError(f"{option} {target}: expected MODULE:FACTORY or path/to/file.py:FACTORY")
    try:
        if source.endswith(".py") or "/" in source or "\\" in source:
            module = _exec_file(Path(source), target, option)
        else:
            module = importlib.import_module(source)
    except CheckInputError:
        raise
    except BaseException as exc:  # the user's code: any failure is bad input, one line
        if not _user_failure(exc):
            raise
        raise CheckInputError(f"{option} {target}: importing {source} failed: {type(exc).__name__}: {exc}") from None
    if not hasattr(module, attr):
        raise CheckInputError(f"{option} {target}: {source} has no attribute {attr!r}")
    return getattr(module, attr)


def _exec_file(path: Path, target: str, option: str):
    if not path.is_file():
        raise CheckInputError(f"{option} {target}: file {path} does not exist")
    name = f"_googlenet_check_{abs(hash(str(path.resolve())))}"
    module_spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    sys.path.insert(0, str(path.resolve().parent))
    try:
        module_spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(path.resolve().parent))
    return module


def call_factory(obj, is_model: Callable[[object], bool], target: str, option: str):
    """A function, class or method is called with no arguments; anything else (a model, of whichever framework) is
    the model itself."""
    callable_factory = (inspect.isfunction(obj) or inspect.isclass(obj) or inspect.ismethod(obj)
                        or isinstance(obj, functools.partial))
    if is_model(obj) or not callable_factory:
        return obj
    try:
        return obj()
    except BaseException as exc:
        if not _user_failure(exc):
            raise
        raise CheckInputError(f"{option} {target}: calling {target.rpartition(':')[2]}() failed: "
                              f"{type(exc).__name__}: {exc}") from None


# --------------------------------------------------------------------------- --map


@dataclass(frozen=True, slots=True)
class Rule:
    """``--map``: a regex on the user's parameter names and the spec key it gives (``\\1`` groups expand)."""

    pattern: re.Pattern
    target: str


MAP_FORMS = '{"regex": "spec key", ...} or {"rules": [["regex", "spec key"], ...]}'


def read_rules(path: str) -> list[Rule]:
    """The rules of a ``--map`` file; one line naming the file and what is wrong (not JSON, not one of the two
    forms, an unknown top-level key, a regex that does not compile)."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise CheckInputError(f"--map {path}: {exc.strerror or exc}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckInputError(f"--map {path}: not JSON: {exc}") from None
    if isinstance(doc, dict) and "rules" in doc:
        unknown = sorted(set(doc) - {"rules"})
        if unknown:
            raise CheckInputError(f"--map {path}: unknown key {unknown[0]!r} beside 'rules' (expected {MAP_FORMS})")
        doc = doc["rules"]
    pairs = doc.items() if isinstance(doc, dict) else doc
    if not isinstance(doc, (dict, list)) or not all(isinstance(p, (list, tuple)) and len(p) == 2
                                                    and all(isinstance(s, str) for s in p) for p in pairs):
        raise CheckInputError(f"--map {path}: expected {MAP_FORMS}")
    rules = []
    for k, (pattern, target) in enumerate(pairs):
        try:
            rules.append(Rule(re.compile(pattern), target))
        except re.error as exc:
            raise CheckInputError(f"--map {path}: rule {k + 1}: bad regex {pattern!r}: {exc}") from None
    return rules


def expand(rule: Rule, name: str) -> str | None:
    """The spec key ``rule`` gives the parameter ``name``, or None if it does not match."""
    found = rule.pattern.fullmatch(name) or rule.pattern.search(name)
    if found is None:
        return None
    try:
        return found.expand(rule.target)
    except (re.error, IndexError) as exc:
        raise CheckInputError(f"--map: rule {rule.pattern.pattern!r} -> {rule.target!r} on {name!r}: {exc}") from None
