"""The user's recorded tensors matched to the spec's layers, and the first layer that diverges.

Each spec layer is searched for among the records after the record of the layer that feeds it (so branches may run
in any order), by shape, then by value: as it is, or in one of the :func:`views` a correct model may show it in.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

import shared_spec
from shared_spec.spec import Dropout, Flatten, GlobalAvgPool, Pool

from ..harness import layer_agrees
from .graph import Step, flatten_shapes, steps


@dataclass(frozen=True, slots=True)
class Record:
    """One tensor the user's model produced: the node's name, its kind and its value (channels-first)."""

    name: str
    kind: str  # "conv" | "bn" | "dense" | "pool" | "concat" | "other"
    value: np.ndarray
    pre_activation: bool = False  # a conv/BN/dense output before a ReLU the framework did not fuse into it


def scale(ref: np.ndarray) -> float:
    return float(np.max(np.abs(ref))) if ref.size else 0.0


def diff(a: np.ndarray, b: np.ndarray) -> float:
    """Max abs difference; inf for different shapes, NaN where either has NaN (never within a tolerance)."""
    if a.shape != b.shape:
        return float("inf")
    d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
    return float(np.max(d)) if d.size else 0.0


def views(record: Record, layer, channels_last: bool, flat_source) -> list[tuple[str, np.ndarray]]:
    """The ways a record can stand for a spec layer's output: as it is; with the ReLU applied that the user's
    code calls functionally; a channels-last framework's flatten put back in channels-first order."""
    out = [("", record.value)]
    if isinstance(layer, GlobalAvgPool) and record.value.ndim == 2:  # Keras's GlobalAveragePooling2D drops 1x1
        out.append(("as (C, 1, 1)", record.value[:, :, None, None]))
    if record.pre_activation and getattr(layer, "activation", None) == "relu":
        out.append(("with your functional ReLU", np.maximum(record.value, 0)))
    if channels_last and flat_source and record.value.ndim == 2 and record.value.shape[1] == int(np.prod(flat_source)):
        c, h, w = flat_source
        out.append(("in channels-first order", record.value.reshape(-1, h, w, c).transpose(0, 3, 1, 2)
                    .reshape(record.value.shape[0], -1)))
    return out


@dataclass(frozen=True, slots=True)
class Match:
    status: str  # "agree" | "differs" | "missing" | "not recorded"
    index: int | None = None
    view: str = ""
    value: np.ndarray | None = None
    diff: float | None = None
    candidates: tuple[int, ...] = ()


def match_layers(spec: shared_spec.Spec, records: list[Record], ref_acts: dict, *, channels_last: bool,
                 tolerance: float) -> tuple[list[Step], dict[str, Match]]:
    """Each step's match among the records (see the module docstring); ``tolerance`` relative to the layer's
    scale above 1, as ``compare``."""
    flat = flatten_shapes(spec)
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
        ref_scale = scale(ref)

        def shown(k):
            return views(records[k], layer, channels_last, flat.get(layer.name))

        same = tuple(k for k in range(start + 1, len(records)) if any(v.shape == ref.shape for _, v in shown(k)))
        found = next((Match("agree", k, view, value, d, same) for k in same for view, value in shown(k)
                      for d in [diff(value, ref)] if layer_agrees(d, ref_scale, tolerance)), None)
        if found is None:
            def closest(k):
                return min(diff(v, ref) for _, v in shown(k))
            best = min(same, key=closest, default=None)
            found = Match("differs" if same else "missing", best, "", None if best is None else records[best].value,
                          None if best is None else closest(best), same)
        matches[layer.name] = found
    return plan, matches


def first_divergence(plan: list[Step], matches: dict[str, Match], *, by_value: bool = True) -> str | None:
    """The first layer that differs, or whose shape is nowhere, that is not just unrecorded (``matches`` is updated:
    such a layer becomes "not recorded"). Unrecorded: a later top-level layer agrees (``by_value``: agreeing in
    values, not only in shape), or (for a shape found nowhere) the layer that consumes it, through dropouts and
    flattens, finds tensors of its own shape (a functional flatten or dropout is never a module's output)."""
    consumers: dict[str | None, list[Step]] = {}
    for step in plan:
        consumers.setdefault(step.source, []).append(step)
        for branch in getattr(step.layer, "branches", ()):  # a concat consumes each branch's last layer
            consumers.setdefault(branch.layers[-1].name, []).append(step)
    for k, step in enumerate(plan):
        m = matches[step.layer.name]
        if m.status in ("agree", "not recorded"):
            continue
        later_agrees = by_value and any(matches[s.layer.name].status == "agree" for s in plan[k + 1:] if s.top)
        if later_agrees or m.status == "missing" and _consumed_by_a_found_shape(step, consumers, matches):
            matches[step.layer.name] = replace(m, status="not recorded")
            continue
        return step.layer.name
    return None


def _consumed_by_a_found_shape(step: Step, consumers, matches) -> bool:
    """A layer whose shape is nowhere but whose consumer agrees; or a flatten or dropout (functional in most code)
    whose consumer finds tensors of its shape."""
    functional = isinstance(step.layer, (Dropout, Flatten)) or not step.top and isinstance(step.layer, Pool)
    for nxt in consumers.get(step.layer.name, []):
        status = matches[nxt.layer.name].status
        if status == "agree" or status == "differs" and functional:
            return True
        if isinstance(nxt.layer, (Dropout, Flatten)) and isinstance(step.layer, (Dropout, Flatten)) \
                and _consumed_by_a_found_shape(nxt, consumers, matches):
            return True
    return False
