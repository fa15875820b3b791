"""The cross-framework comparison behind ``googlenet-suite compare``.

For each variant: the oracle's shapes and counts; each framework's build,
counts, per-layer shapes and timings; then shared weights (made once by the
reference framework, written to a safetensors file and loaded from that file by
the others) and the max abs difference of logits and of every layer's
activation against the reference, on one input batch.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

import shared_spec
from shared_spec import contract
from shared_spec.files import atomic_write

from . import frameworks as fw_registry

TOLERANCE = 1e-4
CALIBRATION_BATCH = 8
BN_SHIFT = 1.0  # every BatchNorm's beta in the reference weights: see calibrated_weights


def input_batch(spec: shared_spec.Spec, batch: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)


def layer_relative_diff(diff: float, scale: float | None) -> float:
    """A layer's max abs difference relative to its scale (max abs value) above 1, absolute below: inner
    activations can be O(10) with calibrated BatchNorm, so the suite's tolerance is relative there."""
    return diff / max(1.0, scale or 0.0)


def layer_agrees(diff: float, scale: float | None, tolerance: float = TOLERANCE) -> bool:
    """The per-layer rule of compare and the GPU check: ``tolerance`` relative to the layer's scale above 1.
    NaN never agrees."""
    return layer_relative_diff(diff, scale) <= tolerance


def has_batchnorm(spec: shared_spec.Spec) -> bool:
    return any(isinstance(layer, shared_spec.Conv) and layer.norm is not None for layer in spec.walk())


def calibrated_weights(mod, spec: shared_spec.Spec, x: np.ndarray, seed: int, device: str) -> dict:
    """Initial weights with every BatchNorm shift (beta) set to :data:`BN_SHIFT` and the running statistics
    set from ``x``.

    Freshly initialised BN statistics (mean 0, variance 1) with torchvision's std-0.01 weights
    shrink activations about fourfold per layer: logits near 1e-17 would make any comparison
    vacuous. One training-mode forward with momentum 1 on a calibration batch (``x``: its own
    batch, not the one compared) gives every BN data statistics, as a trained network would have,
    so logits are O(1).

    The shift keeps the comparison about the frameworks, not fp32 rounding. With beta 0, each BN
    output is N(0, 1) on the calibration data and ReLU clips half of it; a perturbation passes ReLU
    with half its variance, but the next BN divides by the variance of ReLU(N(0, 1)), 1/2 - 1/(2 pi),
    so each conv unit multiplies rounding error's variance by pi/(pi - 1) = 1.47, compounded over the
    ~47 conv units of Inception v3's longest path. With beta 1, ReLU clips 16% and the factor is
    Phi(1)/Var(ReLU(N(1, 1))) = 1.12 (the measurements: docs/inception-v3.md). Beta 1 also lets compare
    see a beta that was dropped.
    """
    model = mod.build(spec, device=device, seed=seed)
    if not has_batchnorm(spec):
        return mod.export_weights(model)
    weights = {key: np.full_like(value, BN_SHIFT) if key.endswith(".bn.beta") else value
               for key, value in mod.export_weights(model).items()}
    calib = mod.build(shared_spec.with_bn_momentum(spec, 1.0), device=device, seed=seed)
    mod.import_weights(calib, weights)
    y = np.zeros(x.shape[0], dtype=np.int64)
    return mod.train_step(calib, x, y, lr=0.0)["weights"]


def reference_weights(spec: shared_spec.Spec, framework: str, *, seed: int, device: str = "cpu") -> dict:
    """The suite's weights for ``spec``: seeded in ``framework``, then BatchNorm-calibrated on a batch of
    its own (seed + 1) where the framework trains. The one recipe behind compare, check, export and the
    GPU check: the same seed gives the same neutral weights wherever they are made."""
    mod = fw_registry.load(framework)
    if not fw_registry.FRAMEWORKS[framework].can("train"):
        return mod.export_weights(mod.build(spec, device=device, seed=seed))
    calib = input_batch(spec, CALIBRATION_BATCH, seed + 1)
    return calibrated_weights(mod, spec, calib, seed, device)


def weights_source(spec: shared_spec.Spec, framework: str, seed: int) -> str:
    """How :func:`reference_weights` made them, in words (``seed 0, BatchNorm calibrated``)."""
    calibrated = has_batchnorm(spec) and fw_registry.FRAMEWORKS[framework].can("train")
    return f"seed {seed}" + (", BatchNorm calibrated" if calibrated else "")


def _timed(fn: Callable, repeats: int = 3) -> tuple[object, float]:
    fn()  # warm-up
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, statistics.median(times)


def _oracle_section(spec: shared_spec.Spec, report: shared_spec.Analysis) -> dict:
    return {
        "params": report.params,
        "buffers": report.buffers,
        "macs": report.macs,
        "min_input_size": list(report.min_input_size),
        "output_shape": list(report.output_shape),
        "layers": [{"name": i.name, "op": i.op, "depth": i.depth, "out_shape": list(i.out_shape), "params": i.params}
                   for i in report.layers],
        "stages": {stage: last for stage, last in spec.stages},
    }


def compare_variant(spec: shared_spec.Spec, keys: list[str], *, batch: int = 2, device: str = "auto", seed: int = 0,
                    tolerance: float = TOLERANCE, require_all: bool = False,
                    progress: Callable[[str], object] | None = None) -> dict:
    """Compare one resolved variant across ``keys``. Returns a JSON-ready dict.

    A framework that is not installed is reported and otherwise left out of the verdict, unless
    ``require_all``: then it makes the variant fail (``agree`` false, verdict INCOMPLETE)."""
    say = progress or (lambda message: nullcontext())
    report = shared_spec.analyze(spec)
    oracle_shapes = {i.name: tuple(i.out_shape) for i in report.layers}
    x = input_batch(spec, batch, seed)
    results: dict[str, dict] = {}
    modules = {}
    for key in fw_registry.import_order(keys):  # MXNet before TensorFlow, whatever the column order
        label = fw_registry.FRAMEWORKS[key].label
        with say(f"importing {label}"):
            try:
                modules[key] = fw_registry.load(key)
            except fw_registry.FrameworkMissing as exc:
                results[key] = {"status": "missing", "hint": fw_registry.install_hint(key), "error": str(exc)}
            except Exception as exc:  # a broken install is a result to report, not a crash
                results[key] = {"status": "error", "error": f"import failed: {type(exc).__name__}: {exc}"}
    results = {key: results[key] for key in keys if key in results}
    available = [key for key in keys if key in modules]
    # the reference makes the shared weights; calibrating BatchNorm needs a training step
    trainable = [key for key in available if fw_registry.FRAMEWORKS[key].can("train")]
    reference = (trainable or available or [None])[0]
    weights_file = None
    with tempfile.TemporaryDirectory(prefix="googlenet-suite-") as tmp:
        for key in sorted(available, key=lambda key: key != reference):  # the reference writes the weights first
            mod = modules[key]
            label = fw_registry.FRAMEWORKS[key].label
            try:
                with say(f"{spec.variant}: building in {label}"):
                    start = time.perf_counter()
                    model = mod.build(spec, device=device, seed=seed)
                    build_s = time.perf_counter() - start
                if key == reference:
                    weights_file = Path(tmp) / f"{spec.variant}.safetensors"
                    with say(f"{spec.variant}: {'calibrating BatchNorm statistics' if has_batchnorm(spec) else 'initialising'} "
                             f"in {label}"):
                        mod.import_weights(model, reference_weights(spec, key, seed=seed, device=device))
                    mod.save_weights(model, weights_file)
                mod.load_weights(model, weights_file)
                with say(f"{spec.variant}: running {label}"):
                    logits, forward_s = _timed(lambda: mod.forward(model, x, training=False))
                    acts = mod.layer_outputs(model, x)
                trainable, buffers = mod.count_params(model)
                results[key] = {
                    "status": "ok",
                    "calibrated": fw_registry.FRAMEWORKS[reference].can("train"),
                    "version": mod.framework_version(),
                    "device": mod.device_of(model),
                    "params": int(trainable),
                    "buffers": int(buffers),
                    "build_s": round(build_s, 4),
                    "forward_s": round(forward_s, 4),
                    "logit_scale": float(np.max(np.abs(logits))),
                    "layers": [{"name": name, "out_shape": list(acts[name].shape[1:]) if name in acts else None}
                               for name in oracle_shapes],
                    "_logits": np.asarray(logits),
                    "_acts": acts,
                }
            except Exception as exc:
                if isinstance(exc, shared_spec.SpecError):
                    raise
                results[key] = {"status": "error", "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    results = {key: results[key] for key in keys if key in results}  # the user's column order
    ref = results.get(reference) if reference else None
    for key, res in results.items():
        if res["status"] != "ok":
            continue
        mismatched = [row["name"] for row in res["layers"] if tuple(row["out_shape"] or ()) != oracle_shapes[row["name"]]]
        res["shape_mismatches"] = mismatched
        res["params_match"] = (res["params"], res["buffers"]) == (report.params, report.buffers)
        # NaN or Inf never agrees with anything, not even with itself
        res["non_finite"] = next((name for name in oracle_shapes if name in res["_acts"]
                                  and not np.isfinite(res["_acts"][name]).all()), None)
        if res["non_finite"] is None and not np.isfinite(res["_logits"]).all():
            res["non_finite"] = "logits"
        if ref is not None and ref["status"] == "ok":
            res["max_abs_diff"] = float(np.max(np.abs(res["_logits"] - ref["_logits"])))
            res["max_relative_diff"] = layer_relative_diff(res["max_abs_diff"], ref["logit_scale"])
            first = None
            for row in res["layers"]:
                a, b = res["_acts"].get(row["name"]), ref["_acts"].get(row["name"])
                same = a is not None and b is not None and a.shape == b.shape
                diff = float(np.max(np.abs(a - b))) if same else None
                row["max_abs_diff"] = diff
                row["scale"] = float(np.max(np.abs(b))) if b is not None and b.size else None
                if first is None and (diff is None or not layer_agrees(diff, row["scale"], tolerance)):
                    first = row["name"]
            res["first_divergence"] = first
        # one rule for the logits and every layer: tolerance relative to the scale above 1 (layer_agrees)
        res["agree"] = (not mismatched and res["params_match"] and res["non_finite"] is None
                        and res.get("max_relative_diff", 0.0) <= tolerance and res.get("first_divergence") is None)
    for res in results.values():
        res.pop("_logits", None)
        res.pop("_acts", None)
    ok = [key for key, res in results.items() if res["status"] == "ok"]
    failing = {"error", "missing"} if require_all else {"error"}
    agree = bool(ok) and all(results[key]["agree"] for key in ok) and all(
        res["status"] not in failing for res in results.values())
    return {
        "variant": spec.variant,
        "input": {"shape": [batch, *spec.input_shape], "seed": seed},
        "num_classes": spec.num_classes,
        "aux_logits": spec.aux_logits,
        "reference": reference,
        "tolerance": tolerance,
        "oracle": _oracle_section(spec, report),
        "frameworks": results,
        "agree": agree,
        "require_all": require_all,
        "verdict": _verdict(spec.variant, results, reference, tolerance, require_all),
    }


def _verdict(variant: str, results: dict, reference: str | None, tolerance: float, require_all: bool = False) -> str:
    ok = [key for key, res in results.items() if res["status"] == "ok"]
    if not ok:
        return f"{variant}: no framework could run"
    problems = []
    for key in ok:
        res = results[key]
        if res["shape_mismatches"]:
            problems.append(f"{key} shapes differ from the oracle at {res['shape_mismatches'][0]}")
        if not res["params_match"]:
            problems.append(f"{key} counts {res['params']:,}/{res['buffers']:,} parameters/buffers")
        if res["non_finite"] is not None:
            problems.append(f"{key} gives non-finite values (NaN or Inf) at {res['non_finite']}")
        elif not res.get("max_relative_diff", 0.0) <= tolerance:
            first = res["first_divergence"]
            problems.append(f"{key} logits differ from {reference} by {res['max_abs_diff']:.2e} "
                            f"(> {tolerance:g} x max(1, {results[reference]['logit_scale']:.3g})), "
                            + (f"first at layer {first}" if first else "every other layer within the tolerance"))
        elif res.get("first_divergence") is not None:
            problems.append(f"{key} differs from {reference} at layer {_layer_text(res, tolerance)}")
    for key, res in results.items():
        if res["status"] == "error":
            problems.append(f"{key} failed: {res['error']}")
    if problems:
        return f"{variant}: DISAGREE: " + "; ".join(problems)
    missing = [key for key, res in results.items() if res["status"] == "missing"]
    if missing and require_all:
        return f"{variant}: INCOMPLETE: not installed: {', '.join(missing)} (--require-all); {', '.join(ok)} ran"
    diffs = [results[key].get("max_abs_diff", 0.0) for key in ok if key != reference]
    tail = (f" (max abs diff {max(diffs):.2e} in logits of scale {results[reference]['logit_scale']:.3g}; "
            f"logits and every layer within {tolerance:g} x max(1, scale))") if diffs else ""
    skipped = f"; not installed: {', '.join(missing)}" if missing else ""
    return f"{variant}: AGREE: {', '.join(ok)}{tail}{skipped}"


def _layer_text(res: dict, tolerance: float) -> str:
    """``mixed_7c (2.1e-04 > 0.0001 x max(1, 5.3))``: the first diverging layer and why."""
    row = next(row for row in res["layers"] if row["name"] == res["first_divergence"])
    if row["max_abs_diff"] is None:
        return f"{row['name']} (no output to compare)"
    return f"{row['name']} ({row['max_abs_diff']:.2e} > {tolerance:g} x max(1, {row['scale'] or 0:.3g}))"


def compare(variants: list[shared_spec.Spec], keys: list[str], **options) -> dict:
    reports = [compare_variant(spec, keys, **options) for spec in variants]
    return {
        "suite_version": shared_spec.__version__,
        "agree": all(r["agree"] for r in reports),
        "variants": reports,
    }


# --------------------------------------------------------------------------- ONNX export


def exporter(framework: str):
    """``framework``'s ONNX exporter module (``OPSET``, ``OPSETS``, ``export_onnx``); a missing framework or
    exporter package (tf2onnx for Keras) is :class:`frameworks.FrameworkMissing` with its install hint."""
    fw_registry.load(framework)
    try:
        return fw_registry.part(framework, "onnx_export")
    except ModuleNotFoundError as exc:
        label = fw_registry.FRAMEWORKS[framework].label
        raise fw_registry.FrameworkMissing(f"the {label} exporter needs {exc.name}: "
                                           f"pip install -c constraints.txt '.[export]'") from None


def export_onnx(framework: str, model, path: str | os.PathLike, *, opset: int | None = None, aux: bool) -> None:
    """Write ``model`` with ``framework``'s exporter, then give the file the suite's interface: input ``x``,
    outputs ``logits`` and each aux head (:func:`shared_spec.contract.onnx_output_names`). The renaming is
    here, not in each exporter, so no ``impl_X`` needs ``impl_onnx``."""
    module = exporter(framework)
    module.export_onnx(model, path, opset=module.OPSET if opset is None else opset, aux=aux)
    spec = contract.check_model_spec(model, fw_registry.FRAMEWORKS[framework].module)
    fw_registry.part("onnx", "verify").rename_io(path, "x", contract.onnx_output_names(spec, aux))


@dataclass(frozen=True, slots=True)
class Export:
    """What :func:`export_verified` wrote (or would have): the file, where its weights came from, and the
    output whose difference between onnxruntime and the framework on the verification batch is largest
    relative to its scale (``worst``: its name, max abs diff and max |value| under the framework)."""

    path: Path
    framework: str
    variant: str
    source: str
    opset: int
    outputs: tuple[str, ...]
    batch: int
    worst: str
    max_abs_diff: float
    scale: float
    tolerance: float

    @property
    def agree(self) -> bool:
        """compare's rule for the logits and every layer: ``tolerance`` relative to the scale above 1."""
        return bool(layer_agrees(self.max_abs_diff, self.scale, self.tolerance))  # NaN never agrees


def _worst_output(verify, path, x, expected: dict) -> tuple[str, float, float]:
    """(name, max abs diff, scale) of the output that differs most relative to its scale; NaN comes first."""
    rows = [(name, verify.verify(path, x, {name: value}), float(np.max(np.abs(value))) if value.size else 0.0)
            for name, value in expected.items()]

    def badness(row):
        relative = layer_relative_diff(row[1], row[2])
        return np.inf if np.isnan(relative) else relative

    return max(rows, key=badness)


def export_verified(spec: shared_spec.Spec, framework: str, output: str | os.PathLike, *,
                    weights: str | os.PathLike | None = None, seed: int = 0, opset: int | None = None,
                    batch: int = 2, tolerance: float = TOLERANCE) -> Export:
    """Export ``framework``'s model of ``spec`` to ``output`` and run the file in onnxruntime against the
    framework on a batch of ``batch``. The file appears only when every output (the logits, each aux head)
    agrees within ``tolerance`` relative to its scale above 1, the rule compare holds every layer to.

    Weights: the file ``weights``, else :func:`reference_weights` (seeded; BatchNorm calibrated where the
    framework trains, as compare makes them: fresh statistics give logits near 0, which prove nothing)."""
    if batch < 1:
        raise shared_spec.InputError(f"batch must be >= 1. Received: batch={batch}")
    for key in fw_registry.import_order([framework, "onnx"]):  # onnxruntime runs every export
        fw_registry.load(key)
    module = exporter(framework)
    opset = module.OPSET if opset is None else opset
    if isinstance(opset, bool) or opset not in module.OPSETS:
        raise shared_spec.InputError(f"the {fw_registry.FRAMEWORKS[framework].label} exporter writes opset "
                                     f"{module.OPSETS.start}..{module.OPSETS[-1]}. Received: opset={opset}")
    mod = fw_registry.load(framework)
    model = mod.build(spec, device="cpu", seed=seed)
    if weights is not None:
        mod.load_weights(model, weights)
        source = str(weights)
    else:
        mod.import_weights(model, reference_weights(spec, framework, seed=seed, device="cpu"))
        source = weights_source(spec, framework, seed)
    x = input_batch(spec, batch, seed)
    expected = {"logits": np.asarray(mod.forward(model, x))}
    if spec.aux_logits:
        outputs = mod.layer_outputs(model, x)
        expected.update({head.name: outputs[head.name] for head in spec.aux_heads})
    verify = fw_registry.part("onnx", "verify")
    found = {}

    def write(tmp):
        export_onnx(framework, model, tmp, opset=opset, aux=spec.aux_logits)
        found["worst"] = _worst_output(verify, tmp, x, expected)
        if not layer_agrees(*found["worst"][1:], tolerance):
            raise _Disagree()

    try:
        atomic_write(Path(output), write)
    except _Disagree:
        pass
    return Export(Path(output), framework, spec.variant, source, opset, tuple(expected), batch, *found["worst"],
                  tolerance)


class _Disagree(shared_spec.SuiteError):
    """The exported file does not reproduce the framework: ``atomic_write`` leaves no file."""
