"""Section 2: the PyTorch builder on the device under test against the same builder on the CPU.

Through the builder contract only (``build``, ``import_weights``, ``forward``, ``layer_outputs``,
``train_step``), with the suite's reference weights and input batches, judged by the harness's rule.
"""

from __future__ import annotations

import time

import numpy as np

from .. import frameworks as fw_registry
from .. import harness
from .common import SEED, Case, Guard, error_text, log, max_abs_diff, reference_weights, scale

OTHER_SEED = SEED + 99  # the model under test starts from other weights: the reference weights must come in
TRAIN_LR = 0.01


def run(cases: tuple[Case, ...], train_case: Case, *, on_gpu: bool, device_label: str, guard: Guard,
        shared: dict) -> dict:
    """Every case's logits and layers, then one training step. Fills ``shared[case.key]`` with what the Keras
    section reuses: the weights, the input batch and the logits under test."""
    torch_mod = fw_registry.load("torch")
    section = {"reference": "impl_torch on cpu", "under_test": f"impl_torch on {device_label}",
               "tolerance": harness.TOLERANCE, "note": None if on_gpu else
               "--cpu: the device under test is the CPU too, so this only exercises the code path",
               "variants": [], "train_step": None}
    for case in cases:
        row = {"variant": case.variant, "overrides": case.label, "batch": case.batch}
        section["variants"].append(row)
        if not guard.allows(5):
            row.update(status="skipped", reason="section time limit reached")
            log(f"equivalence: {case.variant}: skipped (time limit)")
            continue
        start = time.monotonic()
        try:
            row.update(_forward(torch_mod, case, "gpu" if on_gpu else "cpu", shared))
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            row.update(status="error", error=error_text(exc))
        row["seconds"] = round(time.monotonic() - start, 2)
        log(f"equivalence: {case.variant}: {row['status']} (logits diff {row.get('logits_max_abs_diff', 'n/a')}, "
            f"{row['seconds']} s)")

    step = {"variant": train_case.variant, "overrides": train_case.label, "batch": train_case.batch, "lr": TRAIN_LR}
    section["train_step"] = step
    if not guard.allows(5):
        step.update(status="skipped", reason="section time limit reached")
        log("equivalence: train_step: skipped (time limit)")
        return section
    start = time.monotonic()
    try:
        step.update(_train_step(torch_mod, train_case, "gpu" if on_gpu else "cpu"))
    except Exception as exc:  # noqa: BLE001
        step.update(status="error", error=error_text(exc))
    step["seconds"] = round(time.monotonic() - start, 2)
    log(f"equivalence: train_step: {step['status']} ({step['seconds']} s)")
    return section


def _forward(mod, case: Case, device: str, shared: dict) -> dict:
    spec = case.spec()
    weights = reference_weights(spec)
    x = harness.input_batch(spec, case.batch, SEED)
    ref = mod.build(spec, device="cpu", seed=SEED)
    mod.import_weights(ref, weights)
    dut = mod.build(spec, device=device, seed=OTHER_SEED)
    mod.import_weights(dut, weights)
    ref_logits, dut_logits = mod.forward(ref, x), mod.forward(dut, x)
    shared[case.key] = {"weights": weights, "x": x, "logits": dut_logits}
    row = {"input": [case.batch, *spec.input_shape], "device_of": mod.device_of(dut),
           "logit_scale": scale(ref_logits), "logits_max_abs_diff": max_abs_diff(dut_logits, ref_logits)}
    ref_acts, dut_acts = mod.layer_outputs(ref, x), mod.layer_outputs(dut, x)
    worst, failing = None, []
    for name, b in ref_acts.items():
        a = dut_acts.get(name)
        if a is None or a.shape != b.shape:
            failing.append(name)
            continue
        diff, layer_scale = max_abs_diff(a, b), scale(b)
        relative = harness.layer_relative_diff(diff, layer_scale)
        if worst is None or relative > worst["relative"]:
            worst = {"name": name, "max_abs_diff": diff, "scale": layer_scale, "relative": relative}
        if not harness.layer_agrees(diff, layer_scale):
            failing.append(name)
    # the logits by the same rule as every layer: relative to their scale above 1 (Inception v3's calibrated
    # logits reach O(100))
    ok = harness.layer_agrees(row["logits_max_abs_diff"], row["logit_scale"]) and not failing
    return {**row, "layers_compared": len(ref_acts), "worst_layer": worst,
            "first_divergence": failing[0] if failing else None, "layers_failing": len(failing),
            "status": "pass" if ok else "fail"}


def _train_step(mod, case: Case, device: str) -> dict:
    """One SGD step from the same seeded weights on both devices: the loss and the input gradient within the
    tolerance, relative; the weights after the step reported, not judged."""
    spec = case.spec()
    weights = mod.export_weights(mod.build(spec, device="cpu", seed=SEED))
    x = harness.input_batch(spec, case.batch, SEED + 2)
    y = np.arange(case.batch) % spec.num_classes
    out = {}
    for key, target in (("ref", "cpu"), ("dut", device)):
        model = mod.build(spec, device=target, seed=OTHER_SEED)
        mod.import_weights(model, weights)
        out[key] = mod.train_step(model, x, y, lr=TRAIN_LR)
    ref, dut = out["ref"], out["dut"]
    grad_scale = scale(ref["input_grad"])
    grad_diff = max_abs_diff(dut["input_grad"], ref["input_grad"])
    step = {"input": [case.batch, *spec.input_shape], "loss": ref["loss"],
            "loss_relative_diff": abs(dut["loss"] - ref["loss"]) / max(abs(ref["loss"]), 1e-30),
            "input_grad_scale": grad_scale, "input_grad_max_abs_diff": grad_diff,
            "input_grad_relative_diff": grad_diff / max(grad_scale, 1e-30)}
    name, worst = max(((key, harness.layer_relative_diff(max_abs_diff(dut["weights"][key], value), scale(value)))
                       for key, value in ref["weights"].items()), key=lambda item: item[1])
    step["weights_worst"] = {"name": name, "relative": worst}
    ok = step["loss_relative_diff"] <= harness.TOLERANCE and step["input_grad_relative_diff"] <= harness.TOLERANCE
    return {**step, "status": "pass" if ok else "fail"}
