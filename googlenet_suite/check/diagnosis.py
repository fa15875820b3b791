"""Why a layer diverges: re-run in numpy from the user's own input to it, plain and with each trap of the
catalogue (:mod:`.traps`), and the one that reproduces the user's tensor named. Three questions:

- :func:`diagnose`: the first layer whose values differ;
- :func:`shape_cause`: the first layer whose output shape is found nowhere (which trap gives the user's shape);
- :func:`walk_on`: from the first divergence on, every layer, so one check lists every departure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from shared_spec import numeric
from shared_spec.spec import LRN, AdaptiveAvgPool, Aux, Concat, Dropout, Flatten, GlobalAvgPool, Pool

from ..harness import layer_agrees
from .graph import Step
from .matching import Match, Record, diff, scale, views
from .report import REPRODUCE, Departure, FirstDivergence, TrapTry
from .traps import At, traps

WINDOW = 80  # records searched after a layer's input for its output
FUNCTIONAL = (Pool, LRN, Dropout, Flatten, GlobalAvgPool, AdaptiveAvgPool)  # no parameters: often a function call


def _unrecorded(step: Step | None, matches: dict[str, Match]) -> bool:
    """A leaf layer inside a branch that the user's model computes functionally (``F.avg_pool2d``): no tensor of
    it is recorded, so the check re-runs it in numpy from the user's input to it."""
    return step is not None and not step.top and isinstance(step.layer, FUNCTIONAL) \
        and matches[step.layer.name].status != "agree"


def _input(step: Step, matches: dict[str, Match], records: list[Record], ref_acts: dict, x: np.ndarray,
           by_name: dict[str, Step] | None = None):
    """(value, where it comes from, record index or -1) of the layer's input in the user's model; through a
    source the user's model does not record (a functional pool), that layer re-run from the user's input to it."""
    source = step.source
    if source is None:
        return x.astype(np.float64), "the input batch", -1
    m = matches[source]
    if m.status == "agree":
        return m.value, f"your model's {records[m.index].name}", m.index
    before = by_name.get(source) if by_name else None
    if _unrecorded(before, matches):
        value, origin, index = _input(before, matches, records, ref_acts, x)
        return numeric.forward(before.layer, value, {}), f"{source} (not recorded) re-run from {origin}", index
    return ref_acts[source], f"the reference's {source} (yours is not recorded)", -1


def _closest(ys, candidates, records, layer) -> tuple[float, str | None]:
    best, where = float("inf"), None
    for k in candidates:
        for _, value in views(records[k], layer, False, None):
            d = diff(value, ys)
            if d < best:
                best, where = d, records[k].name
    return best, where


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
    inp, origin, start = _input(step, matches, records, ref_acts, x, by_name)
    plain = numeric.forward(layer, inp, weights)
    # the user's tensors after its input to the layer, but not that input again (a ReLU module after a
    # pre-activation record): an identity-like trap would "reproduce" it
    candidates = [k for k in range(start + 1, min(len(records), start + 1 + 40))
                  if diff(records[k].value, inp) > REPRODUCE * max(1.0, scale(inp))]
    tried = []
    for trap, text, y in traps(layer, _at(step, by_name, matches, records, inp, weights, flat)):
        best, where = _closest(y, candidates, records, layer)
        tried.append(TrapTry(trap, text, best, where, tuple(y.shape[1:])))
    before = by_name.get(step.source)
    if _unrecorded(before, matches):  # the layer before it, which the user's model does not record: its traps
        src, _, _ = _input(before, matches, records, ref_acts, x, by_name)
        for trap, text, y in traps(before.layer, _at(before, by_name, matches, records, src, weights, flat)):
            if y.shape != inp.shape:
                continue  # (a trap that changes the shape would have changed the consumer's: found elsewhere)
            best, where = _closest(numeric.forward(layer, y, weights), candidates, records, layer)
            tried.append(TrapTry(trap, f"{before.layer.name} (not recorded in your model; seen at {name}): {text}",
                                 best, where, tuple(y.shape[1:])))
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


@dataclass(frozen=True, slots=True)
class Option:
    """One candidate output of a layer in the walk: as the spec, or with a trap at ``where`` (this layer, or one
    before it that the user's model does not record)."""

    value: np.ndarray
    detail: str = ""
    where: str | None = None  # None: as the spec


def walk_on(plan: list[Step], matches: dict[str, Match], first: str, records: list[Record], weights: dict,
            x: np.ndarray, flat: dict) -> tuple[list[Departure], int, int]:
    """From the first divergence on, every layer re-run from the user's own input to it: ``as the spec`` (the
    plain layer reproduces the user's next tensor), ``trap`` (a trap does) or ``unexplained`` (the walk stops
    there). A layer the user's model does not record (a functional pool in a branch) is carried as its candidates
    (as the spec, each trap) and told at the layer that consumes it. Returns the departures, the layers walked and
    how many of them are as the spec."""
    by_name = {s.layer.name: s for s in plan}
    local: dict[str, tuple[int, np.ndarray]] = {}  # layer -> (record index, value) the walk found
    pending: dict[str, tuple[int, list[Option]]] = {}  # unrecorded layer -> (index of its input, its candidates)
    start = next(k for k, s in enumerate(plan) if s.layer.name == first)
    while start and _unrecorded(by_name.get(plan[start].source), matches):
        start = next(k for k, s in enumerate(plan) if s.layer.name == plan[start].source)
    rows: list[Departure] = []
    walked = as_spec = 0

    def inputs(source) -> tuple[int, list[Option]] | None:
        """(record index, candidates): the one found, or an unrecorded layer's several."""
        if source is None:
            return -1, [Option(x.astype(np.float64))]
        if source in pending:
            return pending[source]
        if source in local:
            return local[source][0], [Option(local[source][1])]
        m = matches[source]
        return (m.index, [Option(m.value)]) if m.status == "agree" else None

    for step in plan[start:]:
        layer = step.layer
        src = None if isinstance(layer, Aux) else inputs(step.source)
        if src is None:
            continue  # an aux head, or its input is in a branch the walk could not follow (reported there)
        index, candidates = src
        if isinstance(layer, Concat):
            parts = [inputs(b.layers[-1].name) for b in layer.branches]
            if any(part is None for part in parts):
                rows.append(Departure(layer.name, "unexplained", "a branch was not followed"))
                walked += 1
                break
            options = _concat_options(parts)
            index = max(k for k, _ in parts)
        else:
            options = [Option(y, c.detail, c.where) for c in candidates
                       for y in [numeric.forward(layer, c.value, weights)] if y is not None]
            if not options:
                continue
            at = _at(step, by_name, matches, records, candidates[0].value, weights, flat)
            if step.source in local or step.source in pending:
                at = At(at.x, at.weights, at.source_layer, None, at.flat_source)
            options += [Option(y, f"{trap}: {text}", layer.name) for trap, text, y in traps(layer, at)]
        found = _find(records, index, options, layer)
        if found is None and (isinstance(layer, (Dropout, Flatten))
                              or isinstance(layer, (*FUNCTIONAL, Concat)) and not step.top):
            pending[layer.name] = (index, [o for o in options if o.value.shape == options[0].value.shape])
            continue  # not recorded (a function call, a torch.cat inside a branch, a dropout after a flatten):
            # told where it is consumed
        before = [name for name in (step.source, *(b.layers[-1].name for b in getattr(layer, "branches", ())))
                  if name in pending]
        walked += 1 + len(before)
        if found is None:
            rows.append(Departure(layer.name, "unexplained", "no tensor of yours is this layer, as the spec or with "
                                                             "a known trap, given your input to it"))
            break
        k, value, option = found
        local[layer.name] = (k, value)
        as_spec += 1 + len(before) - (option.where is not None)
        if option.where is not None:
            seen = "" if option.where == layer.name else f" (yours does not record it: seen at {layer.name})"
            rows.append(Departure(option.where, "trap", option.detail, records[k].name + seen))
    return rows, walked, as_spec


def _concat_options(parts: list[tuple[int, list[Option]]]) -> list[Option]:
    """A concatenation's candidates: every part as found, and each part's other candidates with the rest as found."""
    first = [candidates[0].value for _, candidates in parts]
    options = [Option(np.concatenate(first, axis=1))]
    for k, (_, candidates) in enumerate(parts):
        for option in candidates[1:]:
            if option.value.shape[2:] != first[k].shape[2:]:
                continue  # (a trap that changes the spatial size cannot be concatenated with the rest)
            options.append(Option(np.concatenate(first[:k] + [option.value] + first[k + 1:], axis=1), option.detail,
                                  option.where))
    return options


def _find(records, index, options: list[Option], layer):
    for k in range(index + 1 if index >= 0 else 0, min(len(records), index + 1 + WINDOW)):
        for option in options:
            for _, value in views(records[k], layer, False, None):
                if value.shape == option.value.shape and layer_agrees(diff(value, option.value), scale(option.value),
                                                                      REPRODUCE):
                    return k, value, option
    return None
