"""Read a JSON spec file safely: bounded size, UTF-8 only, bounded nesting, finite numbers.

Every refusal is a one-line :class:`SpecError` naming the file (and, where there is one, the JSON path
or line): a file over ``MAX_SPEC_BYTES`` (a FIFO or a device is read no further than the limit), a
UTF-16/UTF-32 byte-order mark or other non-UTF-8 bytes, nesting deeper than ``MAX_DEPTH`` (checked on
the text before parsing, since ``json`` and ``jsonschema`` both recurse), malformed JSON, and
``NaN``/``Infinity``/overflowing literals such as ``1e999``. What the document must contain is the
schema's business (:func:`shared_spec.loader.read_document`).

Imports no deep-learning framework.
"""

from __future__ import annotations

import codecs
import json
import re
from pathlib import Path
from typing import Any, Iterable

from .spec import SpecError

MAX_SPEC_BYTES = 4 * 1024 * 1024  # a spec file larger than this is refused before it is read
MAX_DEPTH = 64  # JSON nesting (objects and arrays), checked before parsing; also block/container nesting
MAX_PATH_CHARS = 160  # a JSON path quoted in a message is cut with "…" beyond this


def json_path(parts: Iterable[str | int]) -> str:
    """``$.variants.googlenet.layers[0]`` from ``("variants", "googlenet", "layers", 0)``."""
    out = "$"
    for part in parts:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def clip_path(path: str, limit: int = MAX_PATH_CHARS) -> str:
    return path if len(path) <= limit else path[: limit - 1] + "…"


def read_json(path: str | Path) -> tuple[Any, str]:
    """The parsed document of the JSON file at ``path`` and the file's display name (for messages)."""
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
    return doc, label


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
    return clip_path(json_path(key for kind, key in stack if kind == "[" or key is not None))


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
    return None if found is None else (clip_path(json_path(found[0])), found[1])


__all__ = ["MAX_DEPTH", "MAX_SPEC_BYTES", "clip_path", "json_path", "read_json"]
