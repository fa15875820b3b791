"""The result of a check, as records: what ``render`` shows (table, markdown, JSON, JUnit) and what the exit code
is read from. Nothing here computes; :mod:`.run` fills these in, :mod:`googlenet_suite.render` renders them."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

REPRODUCE = 1e-5  # a trap "reproduces" the user's output within this (relative to the scale above 1)


@dataclass(frozen=True, slots=True)
class Input:
    shape: tuple[int, ...]
    seed: int


@dataclass(frozen=True, slots=True)
class Notes:
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Logits:
    max_abs_diff: float
    scale: float
    agree: bool


@dataclass(frozen=True, slots=True)
class LayerRow:
    """One spec layer: how the user's model shows it (``status``: agree, differs, missing, not recorded; or, when
    the weights could not be loaded, shape as the spec / shape differs), in which of its tensors, and how far."""

    name: str
    op: str
    status: str
    record: str | None
    view: str | None
    max_abs_diff: float | None
    scale: float | None


@dataclass(frozen=True, slots=True)
class TrapTry:
    """One trap re-run at a layer: how far its output is from the closest of the user's tensors."""

    trap: str
    detail: str
    max_abs_diff: float
    record: str | None
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class FirstDivergence:
    layer: str
    op: str
    scale: float
    status: str
    max_abs_diff: float | None = None
    record: str | None = None
    their_shapes: tuple[tuple[int, ...], ...] = ()
    input_from: str | None = None
    numpy_vs_reference: float | None = None
    traps: tuple[TrapTry, ...] = ()
    diagnosis: TrapTry | None = None
    note: str | None = None


@dataclass(frozen=True, slots=True)
class Departure:
    layer: str
    status: str  # "trap" | "unexplained"
    detail: str
    record: str | None = None


@dataclass(frozen=True, slots=True)
class Walk:
    layers: int
    as_the_spec: int


@dataclass(frozen=True, slots=True)
class InWeights:
    """A trap seen in the user's parameters, not in values (a BatchNorm with a gamma the spec has not, or without
    the one it has): the tensors that fit were loaded and the check went on. One per trap: at how many of the
    spec's layers, the first of them and the user's module there."""

    trap: str
    detail: str
    layers: int
    first: str
    module: str

    @property
    def text(self) -> str:
        return f"{self.detail} ({self.trap}, {self.layers} layers, first {self.first} at your {self.module})"


@dataclass(frozen=True, slots=True)
class Architecture:
    """The first place the user's model is another architecture than the variant: a weight of another shape
    (``where`` "weights") or a layer output of another shape (``where`` "output"), with both shapes, the user's
    tensor, and the trap that gives the user's shape where one does."""

    where: str
    layer: str | None
    expected: tuple[int, ...] | None
    yours: tuple[int, ...] | None
    tensor: str | None
    trap: str | None
    cause: str | None
    text: str


@dataclass(frozen=True, slots=True)
class CheckResult:
    variant: str
    framework: str
    label: str  # the framework's name in words
    model: str
    reference: str
    input: Input
    tolerance: float
    mapping: Notes
    logits: Logits | None
    layers: tuple[LayerRow, ...]
    first_divergence: FirstDivergence | None
    architecture: Architecture | None = None
    departures: tuple[Departure, ...] = ()
    walk: Walk | None = None
    in_weights: tuple[InWeights, ...] = ()

    @property
    def agree(self) -> bool:
        return self.architecture is None and self.logits is not None and self.logits.agree \
            and self.first_divergence is None and not self.in_weights

    @property
    def verdict(self) -> str:
        return verdict(self)

    def to_dict(self) -> dict:
        """The JSON report: every field, plus ``agree`` and ``verdict``; a difference that is not finite (no tensor
        of that shape, or NaN) is null, so that strict JSON readers take the file."""
        doc = _finite(dataclasses.asdict(self))
        doc.update(agree=self.agree, verdict=self.verdict)
        return doc


def _finite(value):
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(item) for item in value]
    return value


def verdict(result: CheckResult) -> str:
    text = _values_verdict(result)
    if result.in_weights:
        text += "; in your parameters: " + "; ".join(found.text for found in result.in_weights)
    return text


def _relative(logits: Logits) -> str:
    return f" x scale {logits.scale:.3g}" if logits.scale > 1 else ""


def _values_verdict(result: CheckResult) -> str:
    head = f"{result.variant} vs {result.model} ({result.label})"
    logits, first, arch = result.logits, result.first_divergence, result.architecture
    if result.agree:
        return (f"{head}: AGREE: logits max abs diff {logits.max_abs_diff:.2e} <= {result.tolerance:g}"
                f"{_relative(logits)}, every matched layer within")
    if arch is None and first is None and logits is not None and logits.agree:
        return (f"{head}: DIVERGES in its parameters only: logits max abs diff {logits.max_abs_diff:.2e} <= "
                f"{result.tolerance:g}{_relative(logits)}, every matched layer within")
    if arch is not None:
        cause = f"; reproduced by: {arch.cause}" if arch.cause else "; no known trap gives your shape"
        return f"{head}: DIVERGES: another architecture: {arch.text}{cause if arch.where == 'output' else ''}"
    text = f"{head}: DIVERGES: logits max abs diff {logits.max_abs_diff:.2e}"
    if first is None:
        return text + "; no recorded layer diverges before the logits"
    diff = first.max_abs_diff if first.max_abs_diff is not None else float("nan")
    text += f"; first at layer {first.layer} ({first.op}, {diff:.2e}, scale {first.scale:.3g})"
    if first.diagnosis:
        return text + (f"; reproduced by: {first.diagnosis.detail} (max abs diff {first.diagnosis.max_abs_diff:.1e} "
                       f"<= {REPRODUCE:g})")
    if first.traps:
        best = min(first.traps, key=lambda t: t.max_abs_diff)
        return text + (f"; no known trap reproduces it (closest: {best.trap}, {best.max_abs_diff:.2e}; the numpy "
                       f"re-run of the spec's layer is {first.numpy_vs_reference or 0:.1e} from the reference)")
    return text + (f"; {first.note}" if first.note else "")
