"""The check from end to end: the suite's weights and reference activations, the user's model loaded, its data
flow read, the weights mapped and loaded, both run on one batch, every layer matched, the first divergence
diagnosed and the rest walked. The result is a :class:`.report.CheckResult`."""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import replace

import numpy as np

import shared_spec

from .. import frameworks as fw_registry
from .. import harness
from ..harness import layer_agrees
from . import diagnosis
from .graph import Flow, flatten_sources, rank
from .mapping import Mismatch, Param, map_weights
from .matching import Record, diff, first_divergence, match_layers, scale
from .report import Architecture, CheckResult, InWeights, Input, LayerRow, Logits, Notes, Walk
from .user_code import CheckInputError, call_factory, load_object, read_rules

TOLERANCE = harness.TOLERANCE  # 1e-4 fp32, as compare
OPTIONS = {"torch": "--torch", "tf": "--keras", "mxnet": "--gluon", "onnx": "--onnx"}


def reference(spec, key: str, *, batch: int, seed: int):
    """(x, neutral weights, logits, per-layer activations) from the suite's own builder ``key``."""
    mod = fw_registry.load(key)
    x = harness.input_batch(spec, batch, seed)
    weights = harness.reference_weights(spec, key, seed=seed, device="cpu")
    model = mod.build(spec, device="cpu", seed=seed)
    mod.import_weights(model, weights)
    logits = np.asarray(mod.forward(model, x, training=False))
    return x, weights, logits, mod.layer_outputs(model, x)


def reference_key(key: str) -> str:
    """The builder that makes the weights: the user's framework when it can train (calibration is a training
    step), else the first installed one that can (ONNX)."""
    if fw_registry.FRAMEWORKS[key].can("train"):
        return key
    for other in fw_registry.with_capability("train"):  # torch first; only one is imported
        try:
            fw_registry.load(other)
            return other
        except fw_registry.FrameworkMissing:
            continue
    raise CheckInputError("check --onnx needs one framework that can train for the weights (torch, tf or mxnet)")


def _user_model(adapter, key: str, target: str, spec):
    option = OPTIONS[key]
    try:
        if key == "onnx":
            return adapter.load_model(target, spec)
        obj = call_factory(load_object(target, option), adapter.is_model, target, option)
        return adapter.prepare(obj, spec)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, CheckInputError):
            raise
        raise CheckInputError(str(exc) if key == "onnx" else f"{option} {target}: {exc}") from None


def _records(raw: list[dict]) -> list[Record]:
    return [Record(r["name"], r["kind"], np.asarray(r["value"]), r.get("pre_activation", False)) for r in raw]


def _flow(adapter, model, x, records: list[Record] | None) -> Flow:
    order = tuple(dict.fromkeys(r.name for r in records or ()))
    graph = adapter.flow(model, x) if hasattr(adapter, "flow") else None
    if graph is None:
        return Flow(order=order)
    return Flow({k: tuple(v) for k, v in graph["edges"].items()}, tuple(graph["outputs"]), order)


def run_check(spec: shared_spec.Spec, key: str, target: str, *, batch: int = 1, seed: int = 0,
              map_file: str | None = None, tolerance: float = TOLERANCE, progress=None) -> CheckResult:
    option = OPTIONS[key]
    say = progress or (lambda message: nullcontext())
    try:
        fw_registry.load(key)
    except fw_registry.FrameworkMissing as exc:
        raise CheckInputError(f"{option}: {exc}") from None
    adapter = fw_registry.part(key, "check")
    rules = read_rules(map_file) if map_file else []
    ref_key = reference_key(key)
    label = fw_registry.FRAMEWORKS[ref_key].label
    with say(f"{spec.variant}: the suite's weights and reference activations ({label})"):
        x, weights, ref_logits, ref_acts = reference(spec, ref_key, batch=batch, seed=seed)
    # after the reference: a Gluon file may turn MXNet's numpy mode on for the whole process (d2l's npx.set_np())
    with say(f"loading your model ({target})"):
        model = _user_model(adapter, key, target, spec)
    try:  # with its own weights: the order its layers run in, and its shapes if the weights do not fit
        own = _records(adapter.run(model, x)[1])
    except Exception:
        own = None
    flow = _flow(adapter, model, x, own)
    params = [Param(p["name"], p["module"], p["role"], tuple(p["shape"]), p.get("ones", False))
              for p in adapter.parameters(model)]
    order = rank((p.module for p in params), flow)
    params.sort(key=lambda p: order[p.module])
    mapping = map_weights(spec, params, weights, rules=rules, aux_last=flow.from_graph)
    context = dict(spec=spec, key=key, target=target, x=x, seed=seed, ref_key=ref_key, tolerance=tolerance,
                   channels_last=adapter.CHANNELS_LAST, notes=mapping.notes)
    found = _in_weights(mapping.found)
    if mapping.mismatch is not None:
        return _weights_differ(mapping.mismatch, own or [], ref_acts, weights, **context)
    values = _values(mapping.keys, params, weights, spec, channels_last=adapter.CHANNELS_LAST)
    with say("running your model"):
        adapter.load(model, values)
        try:
            logits, records = adapter.run(model, x)
        except Exception as exc:  # the user's forward: any failure is one line
            raise CheckInputError(f"{option} {target}: running it on {tuple(x.shape)} failed: "
                                  f"{type(exc).__name__}: {exc}") from None
    result = assess(np.asarray(logits), _records(records), ref_logits, ref_acts, weights, **context)
    return replace(result, in_weights=found)


def _in_weights(found) -> tuple[InWeights, ...]:
    """The mapping's findings, one per trap, in the order first met."""
    by_trap: dict[str, list] = {}
    for item in found:
        by_trap.setdefault(item.trap, []).append(item)
    return tuple(InWeights(trap, items[0].detail, len(items), items[0].layer, items[0].module)
                 for trap, items in by_trap.items())


def _values(keys: dict[str, str], params: list[Param], weights: dict, spec, *, channels_last: bool) -> dict:
    """The user's parameter name -> the suite's value in the user's flatten order."""
    flat = flatten_sources(spec)
    shapes = {p.name: p.shape for p in params}
    values = {}
    for spec_key, name in keys.items():
        if spec_key.startswith(("!zero:", "!one:")):  # a bias the spec lacks: 0; a gamma it lacks: 1
            values[name] = (np.ones if spec_key.startswith("!one:") else np.zeros)(shapes[name], np.float32)
            continue
        if spec_key.startswith("!fold:"):  # a BatchNorm folded into the conv before it
            values[name] = _folded(spec, spec_key[len("!fold:"):], weights)
            continue
        value = np.asarray(weights[spec_key], np.float32)
        layer_name = spec_key.rsplit(".", 1)[0]
        if channels_last and spec_key.endswith(".weight") and layer_name in flat:
            c, h, w = flat[layer_name]  # their flatten is channels-last: permute the input axis to match
            value = value.reshape(-1, c, h, w).transpose(0, 2, 3, 1).reshape(value.shape[0], -1)
        values[name] = value
    return values


def _folded(spec, key: str, weights: dict) -> np.ndarray:
    """The suite's conv ``key`` (``NAME.conv.weight`` or ``.bias``) with its BatchNorm folded in (eval mode)."""
    name, role = key.rsplit(".conv.", 1)
    layer = spec.layer(name)
    gamma = np.asarray(weights[f"{name}.bn.gamma"], np.float64) if layer.norm.scale else 1.0
    s = gamma / np.sqrt(np.asarray(weights[f"{name}.bn.running_var"], np.float64) + layer.norm.eps)
    if role == "weight":
        return (np.asarray(weights[key], np.float64) * s[:, None, None, None]).astype(np.float32)
    bias = np.asarray(weights[key], np.float64) if layer.bias else 0.0
    return ((bias - np.asarray(weights[f"{name}.bn.running_mean"], np.float64)) * s
            + np.asarray(weights[f"{name}.bn.beta"], np.float64)).astype(np.float32)


def _base(spec, key, target, x, seed, ref_key, tolerance, notes) -> dict:
    return dict(variant=spec.variant, framework=key, label=fw_registry.FRAMEWORKS[key].label, model=target,
                reference=ref_key, input=Input(tuple(x.shape), seed), tolerance=tolerance, mapping=Notes(tuple(notes)))


SHAPES_ONLY = {"agree": "shape as the spec", "differs": "shape as the spec", "missing": "shape differs"}


def _rows(plan, matches, records, ref_acts, until: str | None, *, shapes_only: bool = False) -> tuple[LayerRow, ...]:
    """The table up to layer ``until``; ``shapes_only``: the user's model ran with its own weights, so only the
    shapes are compared."""
    rows = []
    for step in plan:
        name = step.layer.name
        m = matches[name]
        status = SHAPES_ONLY.get(m.status, m.status) if shapes_only else m.status
        rows.append(LayerRow(name, step.layer.op, status, records[m.index].name if m.index is not None else None,
                             None if shapes_only else m.view or None, None if shapes_only else m.diff,
                             None if shapes_only or name not in ref_acts else scale(ref_acts[name])))
        if name == until:
            break
    return tuple(rows)


def _at_finding(rows: tuple[LayerRow, ...], finding: Architecture) -> tuple[LayerRow, ...]:
    """The finding's layer row says so, with the user's tensor in its place."""
    return tuple(replace(row, status="shape differs", record=finding.tensor) if row.name == finding.layer else row
                 for row in rows)


def _layer_of(spec_key: str) -> str:
    return spec_key.rsplit(".", 2)[0] if (".conv." in spec_key or ".bn." in spec_key) else spec_key.rsplit(".", 1)[0]


def _weights_differ(mismatch: Mismatch, own: list[Record], ref_acts, weights, *, spec, key, target, x, seed, ref_key,
                    tolerance, channels_last, notes) -> CheckResult:
    """Weights that do not fit: the layers' shapes as the user's model gives them with its own weights (shapes do
    not depend on weights), and the finding: the first layer output of another shape where there is one (a dense
    layer's weights that do not fit after it are its consequence), else the weights that do not fit."""
    plan, matches = match_layers(spec, own, ref_acts, channels_last=channels_last, tolerance=float("inf"))
    first = first_divergence(plan, matches, by_value=False)
    rows = _rows(plan, matches, own, ref_acts, first, shapes_only=True)
    base = _base(spec, key, target, x, seed, ref_key, tolerance, notes + (f"the weights do not fit: {mismatch.text}",))
    if first is not None and matches[first].status == "missing":
        finding = _shape_finding(spec, plan, matches, first, own, ref_acts, weights, x, flatten_sources(spec))
        if finding.tensor is not None:
            return CheckResult(**base, logits=None, layers=_at_finding(rows, finding), first_divergence=None,
                               architecture=finding)
    trap = cause = None
    if mismatch.kernel:
        trap, cause = "kernel-size", mismatch.kernel
    elif mismatch.spec_shape and mismatch.shape and len(mismatch.shape) == 4 \
            and mismatch.spec_shape[1] != mismatch.shape[1]:
        trap = "in-channels"
        cause = f"{mismatch.shape[1]} input channels where the variant has {mismatch.spec_shape[1]}"
    finding = Architecture("weights", _layer_of(mismatch.spec_key) if mismatch.spec_key else None, mismatch.spec_shape,
                           mismatch.shape, mismatch.name, trap, cause, mismatch.text)
    return CheckResult(**{**base, "mapping": Notes(tuple(notes))}, logits=None, layers=rows, first_divergence=None,
                       architecture=finding)


def assess(logits, records: list[Record], ref_logits, ref_acts, weights, *, spec, key, target, x, seed, ref_key,
           tolerance, channels_last, notes) -> CheckResult:
    base = _base(spec, key, target, x, seed, ref_key, tolerance, notes)
    dense_flat = flatten_sources(spec)
    plan, matches = match_layers(spec, records, ref_acts, channels_last=channels_last, tolerance=tolerance)
    first = first_divergence(plan, matches)
    same_shape = logits.shape == ref_logits.shape
    logit_diff = diff(logits, ref_logits) if same_shape else float("inf")
    # the logits are the last layer, held to the same rule (relative to their scale above 1): Inception v3's at
    # 75x75 reach 100 and more, where fp32 order alone moves them 1e-3
    result_logits = Logits(logit_diff, scale(ref_logits), layer_agrees(logit_diff, scale(ref_logits), tolerance)) \
        if same_shape else None
    rows = _rows(plan, matches, records, ref_acts, first)
    if first is not None and matches[first].status == "missing":
        finding = _shape_finding(spec, plan, matches, first, records, ref_acts, weights, x, dense_flat)
        return CheckResult(**base, logits=result_logits, layers=_at_finding(rows, finding), first_divergence=None,
                           architecture=finding)
    if not same_shape:
        finding = Architecture("output", "logits", tuple(ref_logits.shape[1:]), tuple(logits.shape[1:]), "output",
                               None, None, f"your model's output has shape {tuple(logits.shape[1:])}, the "
                                           f"{spec.variant} variant's {tuple(ref_logits.shape[1:])}")
        return CheckResult(**base, logits=result_logits, layers=rows, first_divergence=None, architecture=finding)
    if first is None:
        return CheckResult(**base, logits=result_logits, layers=rows, first_divergence=None)
    found = diagnosis.diagnose(plan, matches, first, records, ref_acts, weights, x, dense_flat)
    departures, walked, as_spec = diagnosis.walk_on(plan, matches, first, records, weights, x, dense_flat)
    return CheckResult(**base, logits=result_logits, layers=rows, first_divergence=found,
                       departures=tuple(departures), walk=Walk(walked, as_spec))


def _shape_finding(spec, plan, matches, first, records, ref_acts, weights, x, flat) -> Architecture:
    """Layer ``first``'s output shape is found nowhere: the user's tensor in its place and the trap that gives its
    shape."""
    step = next(s for s in plan if s.layer.name == first)
    expected = tuple(ref_acts[first].shape[1:])
    kind = {"conv": "conv", "maxpool": "pool", "avgpool": "pool", "dense": "dense"}.get(step.layer.op, "other")
    yours = diagnosis.nearest(step, matches, records, expected, kind)
    cause = diagnosis.shape_cause(plan, matches, first, records, ref_acts, weights, x, flat, yours)
    text = (f"shape differs at layer {first}: the {spec.variant} variant gives {expected}, your model "
            + (f"{tuple(yours.value.shape[1:])} at {yours.name}" if yours else "no tensor of that shape"))
    trap, detail = (cause.trap, cause.detail) if cause else (None, None)
    if cause is None and yours is not None and yours.value.ndim == 2 and expected == (spec.num_classes,):
        classes = yours.value.shape[1]  # the classifier: another class count (pytorch-fid's 1008)
        trap, detail = "num-classes", (f"{classes} classes where the variant has {spec.num_classes} "
                                       f"(--num-classes {classes} checks the rest)")
    return Architecture("output", first, expected, tuple(yours.value.shape[1:]) if yours else None,
                        yours.name if yours else None, trap, detail, text)
