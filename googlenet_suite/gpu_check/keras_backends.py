"""Section 3: the Keras builder (impl_tf) on Keras's JAX and torch backends against PyTorch's logits.

Keras picks its backend when it is imported, so each backend runs in a child process of its own
(``python -m googlenet_suite.gpu_check.keras_backends DIR``), which needs no TensorFlow: it imports the
builder package directly, not through the registry's TensorFlow check.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from .. import frameworks as fw_registry
from .. import harness
from .common import (SEED, Case, Guard, child_env, dist_version, error_text, log, max_abs_diff, present,
                     reference_weights, scale)

BACKENDS = ("jax", "torch")
DEVICE_ENV = "GPU_CHECK_KERAS_DEVICE"
KERAS_NEEDS = ("keras needs absl-py, namex, optree, h5py, ml-dtypes, rich, packaging too (some compiled): "
               "`pip install --no-index --find-links wheels --target vendor keras`, PYTHONPATH=vendor")


def run(cases: tuple[Case, ...], *, on_gpu: bool, device_label: str, guard: Guard, child_s: float,
        shared: dict) -> dict:
    section = {"reference": f"impl_torch on {device_label}", "tolerance": harness.TOLERANCE, "backends": {}}
    with tempfile.TemporaryDirectory(prefix="gpu-check-keras-") as tmp:
        work = Path(tmp)
        references = _write_cases(cases, work, "gpu" if on_gpu else "cpu", shared)
        for backend in BACKENDS:
            section["backends"][backend] = entry = _backend(backend, cases, references, work, on_gpu=on_gpu,
                                                            timeout=min(child_s, guard.left()))
            log(f"keras[{backend}]: {entry['status']}" + (f" ({entry['reason']})" if entry.get("reason") else "")
                + (f" ({entry['seconds']} s)" if "seconds" in entry else ""))
    return section


def _write_cases(cases: tuple[Case, ...], work: Path, device: str, shared: dict) -> list[np.ndarray]:
    """Each case's input and weights for the children, and PyTorch's logits to hold them to: those of the
    equivalence section where it ran the case, else made here."""
    references = []
    for index, case in enumerate(cases):
        if case.key in shared:
            made = shared[case.key]
            weights, x, logits = made["weights"], made["x"][:case.batch], made["logits"][:case.batch]
        else:
            torch_mod = fw_registry.load("torch")
            spec = case.spec()
            weights = reference_weights(spec)
            model = torch_mod.build(spec, device=device, seed=SEED)
            torch_mod.import_weights(model, weights)
            x = harness.input_batch(spec, case.batch, SEED + 3)
            logits = torch_mod.forward(model, x)
        np.savez(work / f"case{index}.npz", x=x, **{f"w/{key}": value for key, value in weights.items()})
        references.append(logits)
    (work / "cases.json").write_text(json.dumps([case.to_json() for case in cases]))
    return references


def _backend(backend: str, cases, references, work: Path, *, on_gpu: bool, timeout: float) -> dict:
    entry = {"cases": []}
    missing = [module for module in ("keras", backend) if not present(module)]
    if missing:
        return {**entry, "status": "skipped", "reason": f"{' and '.join(missing)} not installed" + (
            " (keras can be carried as its pure-Python wheel on PYTHONPATH)" if "keras" in missing else "")}
    if timeout < 20:
        return {**entry, "status": "skipped", "reason": "section time limit reached"}
    env = child_env(KERAS_BACKEND=backend, XLA_PYTHON_CLIENT_PREALLOCATE="false",
                    **{DEVICE_ENV: "gpu" if on_gpu else "cpu"}, **({} if on_gpu else {"JAX_PLATFORMS": "cpu"}))
    log(f"keras[{backend}]: child process (timeout {timeout:.0f} s)")
    start, proc = time.monotonic(), None
    try:
        proc = subprocess.run([sys.executable, "-m", __name__, str(work)], env=env, cwd=work, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        entry["note"] = f"child process stopped at the time guard ({timeout:.0f} s)"
    entry["seconds"] = round(time.monotonic() - start, 2)
    result_file = work / f"result_{backend}.json"
    if proc is None and not result_file.exists():
        return {**entry, "status": "skipped", "reason": f"time guard: nothing finished in {timeout:.0f} s"}
    if proc is not None and (proc.returncode != 0 or not result_file.exists()):
        tail = (proc.stderr or proc.stdout).strip().splitlines()
        return {**entry, "status": "error", "error": f"child exited {proc.returncode}: {tail[-1] if tail else ''}"}
    result = json.loads(result_file.read_text())
    if result.get("status") == "skipped":
        return {**entry, "status": "skipped", "reason": result["reason"]}
    entry.update(keras=result.get("keras"), framework_version=result.get("framework_version"))
    for index, (case, reference) in enumerate(zip(cases, references, strict=True)):
        got = result["cases"].get(str(index)) or (
            {"status": "skipped", "error": "not reached before the time guard"} if proc is None
            else {"status": "error", "error": "no result"})
        row = {"variant": case.variant, "overrides": case.label, "batch": case.batch, **got}
        if got["status"] == "ok":
            logits = np.load(work / f"logits_{backend}_{index}.npy")
            row["logit_scale"] = scale(reference)
            row["logits_max_abs_diff"] = max_abs_diff(logits, reference)
            # the harness's rule, as section 2's: relative to the logits' scale above 1 (Inception v3's calibrated
            # logits reach O(100), where float32 sums differ in the fifth digit)
            row["logits_relative_diff"] = harness.layer_relative_diff(row["logits_max_abs_diff"], row["logit_scale"])
            row["status"] = "pass" if harness.layer_agrees(row["logits_max_abs_diff"], row["logit_scale"]) else "fail"
        entry["cases"].append(row)
    ran = [row["status"] for row in entry["cases"] if row["status"] != "skipped"]
    entry["status"] = "skipped" if not ran else "pass" if all(status == "pass" for status in ran) else "fail"
    if entry["status"] == "skipped":
        entry["reason"] = "time guard: no case finished"
    return entry


def child(workdir: str) -> None:
    """In the child, with KERAS_BACKEND set: impl_tf's logits for each case, the results file rewritten after
    each one (a timeout keeps the finished cases)."""
    work = Path(workdir)
    backend = os.environ.get("KERAS_BACKEND")
    result = {"backend": backend, "cases": {}}
    out = work / f"result_{backend}.json"
    try:
        keras_builder = importlib.import_module(fw_registry.FRAMEWORKS["tf"].module)
    except ImportError as exc:
        result.update(status="skipped", reason=f"cannot import keras/impl_tf on this backend: {error_text(exc)}; "
                                               f"{KERAS_NEEDS}")
        out.write_text(json.dumps(result))
        return
    result.update(keras=dist_version("keras"), framework_version=keras_builder.framework_version())
    device = os.environ.get(DEVICE_ENV, "gpu")
    for index, data in enumerate(json.loads((work / "cases.json").read_text())):
        case, arrays = Case.from_json(data), np.load(work / f"case{index}.npz")
        start = time.monotonic()
        try:
            model = keras_builder.build(case.spec(), device=device, seed=SEED + 7)
            keras_builder.import_weights(model, {k[2:]: arrays[k] for k in arrays.files if k.startswith("w/")})
            np.save(work / f"logits_{backend}_{index}.npy", keras_builder.forward(model, arrays["x"]))
            result["cases"][str(index)] = {"status": "ok", "device_of": keras_builder.device_of(model),
                                           "seconds": round(time.monotonic() - start, 2)}
        except Exception as exc:  # noqa: BLE001 - recorded in the case's row
            result["cases"][str(index)] = {"status": "error", "error": error_text(exc)}
        out.write_text(json.dumps({**result, "status": "running"}))
    out.write_text(json.dumps({**result, "status": "ran"}))


if __name__ == "__main__":
    child(sys.argv[1])
