"""Why a layer diverges: re-run in numpy from the user's own input to it, plain and with each trap of the
catalogue (:mod:`.traps`), and the one that reproduces the user's tensor named. Three questions:

- :func:`diagnose`: the first layer whose values differ;
- :func:`shape_cause`: the first layer whose output shape is found nowhere (which trap gives the user's shape);
- :func:`walk_on`: from the first divergence on, every layer, so one check lists every departure.
"""

from __future__ import annotations

import numpy as np

from shared_spec import numeric
from shared_spec.spec import Aux, Concat

from ..harness import layer_agrees
from .graph import Step
from .matching import Match, Record, diff, scale, views
from .report import REPRODUCE, Departure, FirstDivergence, TrapTry
from .traps import At, traps

WINDOW = 80  # records searched after a layer's input for its output


def _input(step: Step, matches: dict[str, Match], records: list[Record], ref_acts: dict, x: np.ndarray):
    """(value, where it comes from, record index or -1) of the layer's input in the user's model."""
    source = step.source
    if source is None:
        return x.astype(np.float64), "the input batch", -1
    m = matches[source]
    if m.status == "agree":
        return m.value, f"your model's {records[m.index].name}", m.index
    return ref_acts[source], f"the reference's {source} (yours is not recorded)", -1


def _at(step, by_name, matches, records, inp, weights, flat) -> At:
    source = step.source
    raw = None
    if source and matches[source].status == "agree" and matches[source].view == "with your functional ReLU":
        raw = records[matches[source].index].value
    return At(inp, weights, by_name[source].layer if source else None, raw, flat.get(step.layer.name))


def diagnose(plan: list[Step], matches: dict[str, Match], name: str, records: list[Record], ref_acts: dict,
             weights: dict, x: np.ndarray, flat: dict) -> FirstDivergence:
    """Layer ``name`` re-run from its input in the user's model, plain and with each trap."""
    by_name = {s.layer.name: s for s in plan}
    step, m = by_name[name], matches[name]
    layer, ref = step.layer, ref_acts[name]
    base = dict(layer=name, op=layer.op, scale=scale(ref), status=m.status, max_abs_diff=m.diff,
                record=records[m.index].name if m.index is not None else None,
                their_shapes=tuple(sorted({tuple(records[k].value.shape[1:]) for k in m.candidates}))[:3])
    if isinstance(layer, (Concat, Aux)):
        return FirstDivergence(**base, note=f"{name} is a {layer.op}: its parts agree or are not recorded; "
                                            f"no single-layer trap applies")
    inp, origin, start = _input(step, matches, records, ref_acts, x)
    plain = numeric.forward(layer, inp, weights)
    # the user's tensors after its input to the layer, but not that input again (a ReLU module after a
    # pre-activation record): an identity-like trap would "reproduce" it
    candidates = [k for k in range(start + 1, min(len(records), start + 1 + 40))
                  if diff(records[k].value, inp) > REPRODUCE * max(1.0, scale(inp))]
    tried = []
    for trap, text, y in traps(layer, _at(step, by_name, matches, records, inp, weights, flat)):
        best, where = float("inf"), None
        for k in candidates:
            for _, value in views(records[k], layer, False, None):
                d = diff(value, y)
                if d < best:
                    best, where = d, records[k].name
        tried.append(TrapTry(trap, text, best, where, tuple(y.shape[1:])))
    hits = [t for t in tried if layer_agrees(t.max_abs_diff, scale(ref), REPRODUCE)]
    return FirstDivergence(**base, input_from=origin,
                           numpy_vs_reference=diff(plain, ref) if plain is not None else None,
                           traps=tuple(tried), diagnosis=min(hits, key=lambda t: t.max_abs_diff) if hits else None)


def nearest(step: Step, matches: dict[str, Match], records: list[Record], expected: tuple[int, ...],
            kind: str) -> Record | None:
    """The user's tensor that stands where a layer of ``expected`` shape should: the first after the layer's
    input with as many axes and another shape, one of the layer's kind first."""
    source = matches.get(step.source) if step.source else None
    start = source.index if source is not None and source.status == "agree" else -1
    after = [r for r in records[start + 1:] if r.value.ndim - 1 == len(expected)
             and tuple(r.value.shape[1:]) != expected]
    return next((r for r in after if r.kind == kind), after[0] if after else None)


def shape_cause(plan: list[Step], matches: dict[str, Match], name: str, records: list[Record], ref_acts: dict,
                weights: dict, x: np.ndarray, flat: dict, yours: Record | None) -> TrapTry | None:
    """The trap whose re-run layer gives the user's shape (with the user's values, where one gives those too)."""
    if yours is None:
        return None
    by_name = {s.layer.name: s for s in plan}
    step = by_name[name]
    inp, _, _ = _input(step, matches, records, ref_acts, x)
    found = [TrapTry(trap, text, diff(y, yours.value), yours.name, tuple(y.shape[1:]))
             for trap, text, y in traps(step.layer, _at(step, by_name, matches, records, inp, weights, flat))
             if y.shape[1:] == yours.value.shape[1:]]
    return min(found, key=lambda t: t.max_abs_diff, default=None)


def walk_on(plan: list[Step], matches: dict[str, Match], first: str, records: list[Record], weights: dict,
            x: np.ndarray, flat: dict) -> tuple[list[Departure], int, int]:
    """From the first divergence on, every layer re-run from the user's own input to it: ``as the spec`` (the
    plain layer reproduces the user's next tensor), ``trap`` (a trap does) or ``unexplained`` (the walk stops
    there). Returns the departures, the layers walked and how many of them are as the spec."""
    by_name = {s.layer.name: s for s in plan}
    local: dict[str, tuple[int, np.ndarray]] = {}  # layer -> (record index, value) the walk found
    start = next(k for k, s in enumerate(plan) if s.layer.name == first)
    rows: list[Departure] = []
    walked = as_spec = 0

    def source_value(source):
        if source is None:
            return -1, x.astype(np.float64)
        if source in local:
            return local[source]
        m = matches[source]
        return (m.index, m.value) if m.status == "agree" else None

    for step in plan[start:]:
        layer = step.layer
        src = None if isinstance(layer, Aux) else source_value(step.source)
        if src is None:
            continue  # an aux head, or its input is in a branch the walk could not follow (reported there)
        index, inp = src
        if isinstance(layer, Concat):
            parts = [source_value(b.layers[-1].name) or (None, None) for b in layer.branches]
            if any(value is None for _, value in parts):
                rows.append(Departure(layer.name, "unexplained", "a branch was not followed"))
                walked += 1
                break
            options = [("as the spec", "", np.concatenate([value for _, value in parts], axis=1))]
            index = max(k for k, _ in parts)
        else:
            plain = numeric.forward(layer, inp, weights)
            if plain is None:
                continue
            at = _at(step, by_name, matches, records, inp, weights, flat)
            if step.source in local:
                at = At(at.x, at.weights, at.source_layer, None, at.flat_source)
            options = [("as the spec", "", plain)]
            options += [("trap", f"{trap}: {text}", y) for trap, text, y in traps(layer, at)]
        found = _find(records, index, options, layer)
        walked += 1
        if found is None:
            rows.append(Departure(layer.name, "unexplained", "no tensor of yours is this layer, as the spec or with "
                                                             "a known trap, given your input to it"))
            break
        k, value, status, detail = found
        local[layer.name] = (k, value)
        if status == "as the spec":
            as_spec += 1
        else:
            rows.append(Departure(layer.name, status, detail, records[k].name))
    return rows, walked, as_spec


def _find(records, index, options, layer):
    for k in range(index + 1 if index >= 0 else 0, min(len(records), index + 1 + WINDOW)):
        for status, detail, y in options:
            for _, value in views(records[k], layer, False, None):
                if value.shape == y.shape and layer_agrees(diff(value, y), scale(y), REPRODUCE):
                    return k, value, status, detail
    return None
