"""The GPU check behind ``scripts/gpu-check`` (run that wrapper: it puts the checkout on PYTHONPATH).

Sections, each with its own time guard so the whole run stays under 8 minutes on one H200:

1. environment: python, numpy, torch, CUDA, cuDNN, the device, jax/keras/onnxruntime if present;
2. the PyTorch builder on CUDA against the same builder on the CPU, in full fp32 (TF32 off): the same
   seeded, BN-calibrated weights, logits and every ``layer_outputs`` entry within 1e-4 (a layer's
   difference relative to max(1, its scale)) for ``googlenet`` at 224 and ``d2l`` at 96, and one
   ``train_step`` (loss and input gradient within 1e-4 relative);
3. the Keras builder (impl_tf) on Keras's JAX and torch backends on the GPU against PyTorch's CUDA
   logits, each in a child process (Keras picks its backend at import), skipped with the reason when
   keras or jax is absent;
4. a torch benchmark: plain (eager fp32) and fast (channels_last + torch.compile + bf16 autocast),
   forward (eval, no_grad) and an SGD training step, images/s, peak memory, bf16-vs-fp32 logits, and
   the H200 targets (bf16 forward >= 20,000 img/s, training >= 5,000 img/s at 224);
5. DIR/gpu_check.json (every figure) and DIR/gpu_check.md (tables for the README), markdown printed.

``--cpu`` runs all of it on the CPU with tiny sizes (the files have the same sections), so the tests
can run it anywhere; ``--quick`` cuts repeats (and, on the CPU, torch.compile). Uses only the builder
contract (docs/builders.md: ``shared_spec.load/analyze``, ``impl_torch.*``, ``impl_tf.*``) and torch.
Exit 0 when every equivalence check passes, 1 when one fails, 2 for a bad option.
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import importlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TOLERANCE = 1e-4
SEED = 0
CALIBRATION_BATCH = 8
TOTAL_BUDGET_S = 450.0  # GPU: 7.5 minutes for everything, leaving margin under 8
CPU_BUDGET_S = 480.0  # --cpu: no target to meet; generous, so a busy shared CPU does not trip the guards
TARGETS = {"forward": 20_000.0, "train": 5_000.0}  # images/s, torch bf16 ("fast") at 224 on the H200
SCHEMA = "googlenet-suite/gpu-check/1"

# Per-mode sizes. GPU: the README's variants at their sizes; CPU: tiny inputs so the tests run it in seconds.
PROFILES = {
    "gpu": {
        "equivalence": [("googlenet", {}, 4), ("d2l", {}, 4)],
        "train_step": ("googlenet", {"aux_logits": True, "dropout": 0.0}, 8),
        "keras": [("googlenet", {}, 2), ("d2l", {}, 2)],
        "bench": ("googlenet", {}, [1, 32, 128, 256]),
        "budgets": {"equivalence": 90.0, "keras": 160.0, "bench": None},  # None: whatever is left
        "keras_child_timeout": 90.0,
        "plain_bench_s": 75.0,
    },
    "cpu": {
        "equivalence": [("googlenet", {"input_size": (64, 64)}, 2), ("d2l", {"input_size": (64, 64)}, 2)],
        "train_step": ("googlenet", {"aux_logits": True, "dropout": 0.0, "input_size": (64, 64)}, 2),
        "keras": [("d2l", {"input_size": (64, 64)}, 2)],
        "bench": ("googlenet", {"input_size": (64, 64)}, [1, 2]),
        "budgets": {"equivalence": 60.0, "keras": 90.0, "bench": None},
        "keras_child_timeout": 90.0,
        "plain_bench_s": 90.0,
    },
}
# (warm-up calls, timed calls); the first warm-up call of a compiled cell includes the compilation.
REPEATS = {("gpu", False): (3, 20), ("gpu", True): (2, 8), ("cpu", False): (1, 5), ("cpu", True): (1, 3)}

_T0 = float(os.environ.get("GPU_CHECK_T0") or time.time())  # children inherit the parent's start


def log(message: str) -> None:
    """Progress on stderr (stdout carries the markdown): wall clock and seconds since start."""
    stamp = dt.datetime.now().strftime("%H:%M:%S")
    print(f"[{stamp} +{time.time() - _T0:6.1f}s] {message}", file=sys.stderr, flush=True)


class Guard:
    """A section's time limit (and the run's): ``left()`` seconds; work that would not fit is skipped."""

    def __init__(self, seconds: float | None, overall: float):
        now = time.monotonic()
        end = overall if seconds is None else min(overall, now + seconds)
        self.end = end

    def left(self) -> float:
        return self.end - time.monotonic()

    def allows(self, needed_s: float) -> bool:
        return self.left() >= needed_s


# --------------------------------------------------------------------------- options


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse prints usage and two lines)
        print(f"gpu-check: error: {message} (usage: scripts/gpu-check [--out DIR] [--cpu] [--quick])",
              file=sys.stderr)
        sys.exit(2)


def parse_args(argv):
    parser = _Parser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check-results", help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--cpu", action="store_true", help="everything on the CPU with tiny sizes (for tests)")
    parser.add_argument("--quick", action="store_true", help="fewer repeats; on the CPU no torch.compile")
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- environment

CARRY = ("on a machine with internet: `pip download {pkg} --only-binary=:all: --python-version 3.12 "
         "--platform manylinux2014_x86_64 -d wheels`; on this one: `pip install --no-index --find-links wheels "
         "--target vendor {pkg}` and rerun with PYTHONPATH=vendor")


def require(module: str, why: str) -> None:
    """Import ``module`` or exit 1 with one line naming what is missing and how to carry it."""
    try:
        importlib.import_module(module)
    except ImportError as exc:
        missing = getattr(exc, "name", None) or module
        detail = "" if missing == module else f" (it needs '{missing}', which is missing)"
        print(f"gpu-check: missing Python package '{module}'{detail}: {why}. Carry it as a wheel: "
              f"{CARRY.format(pkg=module)}", file=sys.stderr)
        sys.exit(1)


def _dist_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def full_fp32(torch) -> dict:
    """TF32 off for cuBLAS matmuls and cuDNN convolutions (the new fp32_precision API where torch has it,
    the allow_tf32 flags otherwise; mixing the two is an error in newer torch). Returns what was set."""
    cudnn, matmul = torch.backends.cudnn, torch.backends.cuda.matmul
    if hasattr(getattr(cudnn, "conv", None), "fp32_precision"):
        cudnn.conv.fp32_precision = "ieee"
        matmul.fp32_precision = "ieee"
        return {"api": "fp32_precision", "cudnn.conv": cudnn.conv.fp32_precision, "cuda.matmul": matmul.fp32_precision}
    matmul.allow_tf32 = False
    cudnn.allow_tf32 = False
    return {"api": "allow_tf32", "cudnn.allow_tf32": cudnn.allow_tf32, "cuda.matmul.allow_tf32": matmul.allow_tf32}


def environment(torch, np, on_gpu: bool, tf32: dict) -> dict:
    env = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_available": torch.cuda.is_available(),
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
        "fp32": tf32,
        "device": "cpu",
        "device_name": _cpu_name(),
    }
    if on_gpu:
        props = torch.cuda.get_device_properties(0)
        env.update(device="cuda:0", device_name=torch.cuda.get_device_name(0),
                   compute_capability=".".join(map(str, torch.cuda.get_device_capability(0))),
                   device_memory_gib=round(props.total_memory / 2**30, 1), device_count=torch.cuda.device_count())
        try:
            smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=15)
            env["driver"] = smi.stdout.strip().splitlines()[0] if smi.returncode == 0 and smi.stdout.strip() else None
        except (OSError, subprocess.SubprocessError):
            env["driver"] = None
    # versions from package metadata: nothing is imported (jax would claim the GPU)
    for dist in ("jax", "jaxlib", "keras", "onnxruntime", "onnxruntime-gpu", "jsonschema", "safetensors",
                 "tensorflow", "mxnet"):
        env[dist.replace("-", "_")] = _dist_version(dist)
    env["keras_importable_path"] = _present("keras")
    env["jax_importable_path"] = _present("jax")
    return env


# --------------------------------------------------------------------------- helpers


def input_batch(np, spec, batch: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((batch, *spec.input_shape)).astype(np.float32)


def calibrated_weights(mod, shared_spec, np, spec, x, seed: int, device: str) -> dict:
    """Seeded initial weights with BN running statistics from one momentum-1 training forward on ``x``
    (the idea of googlenet_suite.harness.calibrated_weights): fresh BN statistics with std-0.01 weights
    shrink logits to ~1e-17, which would make any comparison vacuous; calibrated ones are O(1)."""
    model = mod.build(spec, device=device, seed=seed)
    if not any(isinstance(layer, shared_spec.Conv) and layer.norm is not None for layer in spec.walk()):
        return mod.export_weights(model)
    calib = mod.build(shared_spec.with_bn_momentum(spec, 1.0), device=device, seed=seed)
    mod.import_weights(calib, mod.export_weights(model))
    return mod.train_step(calib, x, np.zeros(x.shape[0], dtype=np.int64), lr=0.0)["weights"]


def _max_abs(np, a, b) -> float:
    return float(np.max(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))))


def _scale(np, a) -> float:
    return float(np.max(np.abs(a))) if np.size(a) else 0.0


def _err(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}".strip()


def _overrides_label(overrides: dict) -> str:
    return ", ".join(f"{k}={'x'.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in overrides.items())


# --------------------------------------------------------------------------- 2. torch CUDA vs CPU


def torch_equivalence(ctx, guard: Guard) -> dict:
    np, shared_spec, impl_torch = ctx["np"], ctx["shared_spec"], ctx["impl_torch"]
    test_device = "gpu" if ctx["on_gpu"] else "cpu"
    section = {"reference": "impl_torch on cpu", "under_test": f"impl_torch on {ctx['env']['device']}",
               "tolerance": TOLERANCE, "note": None if ctx["on_gpu"] else
               "--cpu: the device under test is the CPU too, so this only exercises the code path",
               "variants": [], "train_step": None}
    ctx["weights"] = {}
    for variant, overrides, batch in ctx["profile"]["equivalence"]:
        row = {"variant": variant, "overrides": _overrides_label(overrides), "batch": batch}
        section["variants"].append(row)
        if not guard.allows(5):
            row.update(status="skipped", reason="section time limit reached")
            log(f"equivalence: {variant}: skipped (time limit)")
            continue
        start = time.monotonic()
        try:
            spec = shared_spec.load(variant, **overrides)
            row["input"] = [batch, *spec.input_shape]
            weights = calibrated_weights(impl_torch, shared_spec, np, spec,
                                         input_batch(np, spec, CALIBRATION_BATCH, SEED + 1), SEED, "cpu")
            ctx["weights"][(variant, row["overrides"])] = (spec, weights)
            x = input_batch(np, spec, batch, SEED)
            ref = impl_torch.build(spec, device="cpu", seed=SEED)
            impl_torch.import_weights(ref, weights)
            dut = impl_torch.build(spec, device=test_device, seed=SEED + 99)  # other seed: weights must come in
            impl_torch.import_weights(dut, weights)
            row["device_of"] = impl_torch.device_of(dut)
            ref_logits, dut_logits = impl_torch.forward(ref, x), impl_torch.forward(dut, x)
            ctx.setdefault("torch_logits", {})[(variant, row["overrides"])] = (x, dut_logits)
            row["logit_scale"] = _scale(np, ref_logits)
            row["logits_max_abs_diff"] = _max_abs(np, dut_logits, ref_logits)
            ref_acts, dut_acts = impl_torch.layer_outputs(ref, x), impl_torch.layer_outputs(dut, x)
            worst, failing = None, []
            for name, b in ref_acts.items():
                a = dut_acts.get(name)
                if a is None or a.shape != b.shape:
                    failing.append(name)
                    continue
                diff, scale = _max_abs(np, a, b), _scale(np, b)
                rel = diff / max(1.0, scale)
                if worst is None or rel > worst["relative"]:
                    worst = {"name": name, "max_abs_diff": diff, "scale": scale, "relative": rel}
                if rel > TOLERANCE:
                    failing.append(name)
            row["layers_compared"] = len(ref_acts)
            row["worst_layer"] = worst
            row["first_divergence"] = failing[0] if failing else None
            row["layers_failing"] = len(failing)
            ok = row["logits_max_abs_diff"] <= TOLERANCE and not failing
            row["status"] = "pass" if ok else "fail"
        except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
            row.update(status="error", error=_err(exc))
        row["seconds"] = round(time.monotonic() - start, 2)
        log(f"equivalence: {variant}: {row['status']} (logits diff {row.get('logits_max_abs_diff', 'n/a')}, "
            f"{row['seconds']} s)")

    variant, overrides, batch = ctx["profile"]["train_step"]
    step = {"variant": variant, "overrides": _overrides_label(overrides), "batch": batch, "lr": 0.01}
    section["train_step"] = step
    if not guard.allows(5):
        step.update(status="skipped", reason="section time limit reached")
        log("equivalence: train_step: skipped (time limit)")
        return section
    start = time.monotonic()
    try:
        spec = shared_spec.load(variant, **overrides)  # dropout 0: CPU and CUDA draw different masks
        step["input"] = [batch, *spec.input_shape]
        weights = impl_torch.export_weights(impl_torch.build(spec, device="cpu", seed=SEED))
        x = input_batch(np, spec, batch, SEED + 2)
        y = np.arange(batch) % spec.num_classes
        out = {}
        for key, device in (("ref", "cpu"), ("dut", test_device)):
            model = impl_torch.build(spec, device=device, seed=SEED + 99)
            impl_torch.import_weights(model, weights)
            out[key] = impl_torch.train_step(model, x, y, lr=0.01)
        ref, dut = out["ref"], out["dut"]
        step["loss"] = ref["loss"]
        step["loss_relative_diff"] = abs(dut["loss"] - ref["loss"]) / max(abs(ref["loss"]), 1e-30)
        grad_scale = _scale(np, ref["input_grad"])
        step["input_grad_scale"] = grad_scale
        step["input_grad_max_abs_diff"] = _max_abs(np, dut["input_grad"], ref["input_grad"])
        step["input_grad_relative_diff"] = step["input_grad_max_abs_diff"] / max(grad_scale, 1e-30)
        worst = max(((k, _max_abs(np, dut["weights"][k], v) / max(1.0, _scale(np, v)))
                     for k, v in ref["weights"].items()), key=lambda kv: kv[1])
        step["weights_worst"] = {"name": worst[0], "relative": worst[1]}  # reported, not judged
        ok = step["loss_relative_diff"] <= TOLERANCE and step["input_grad_relative_diff"] <= TOLERANCE
        step["status"] = "pass" if ok else "fail"
    except Exception as exc:  # noqa: BLE001
        step.update(status="error", error=_err(exc))
    step["seconds"] = round(time.monotonic() - start, 2)
    log(f"equivalence: train_step: {step['status']} ({step['seconds']} s)")
    return section


# --------------------------------------------------------------------------- 3. Keras backends


def keras_child(workdir: str) -> None:
    """Runs in a child process with KERAS_BACKEND set: impl_tf's logits for each case in ``workdir``."""
    import numpy as np

    result = {"backend": os.environ.get("KERAS_BACKEND"), "cases": {}}
    out = Path(workdir) / f"result_{result['backend']}.json"
    try:
        import keras
        import impl_tf
        import shared_spec
    except ImportError as exc:
        result.update(status="skipped", reason=f"cannot import keras/impl_tf on this backend: {_err(exc)}; keras "
                      "needs absl-py, namex, optree, h5py, ml-dtypes, rich, packaging too (some compiled): "
                      "`pip install --no-index --find-links wheels --target vendor keras`, PYTHONPATH=vendor")
        out.write_text(json.dumps(result))
        return
    result["keras"] = keras.__version__
    result["framework_version"] = impl_tf.framework_version()
    device = os.environ.get("GPU_CHECK_KERAS_DEVICE", "gpu")
    for case in json.loads((Path(workdir) / "cases.json").read_text()):
        data = np.load(Path(workdir) / case["file"])
        start = time.monotonic()
        try:
            overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in case["overrides"].items()}
            spec = shared_spec.load(case["variant"], **overrides)
            model = impl_tf.build(spec, device=device, seed=SEED + 7)
            impl_tf.import_weights(model, {k[2:]: data[k] for k in data.files if k.startswith("w/")})
            logits = impl_tf.forward(model, data["x"])
            np.save(Path(workdir) / f"logits_{result['backend']}_{case['variant']}.npy", logits)
            result["cases"][case["variant"]] = {"status": "ok", "device_of": impl_tf.device_of(model),
                                                "seconds": round(time.monotonic() - start, 2)}
        except Exception as exc:  # noqa: BLE001
            result["cases"][case["variant"]] = {"status": "error", "error": _err(exc)}
        out.write_text(json.dumps({**result, "status": "running"}))  # a timeout keeps the finished cases
    result["status"] = "ran"
    out.write_text(json.dumps(result))


def keras_backends(ctx, guard: Guard) -> dict:
    np = ctx["np"]
    section = {"reference": f"impl_torch on {ctx['env']['device']}", "tolerance": TOLERANCE, "backends": {}}
    device = "gpu" if ctx["on_gpu"] else "cpu"
    with tempfile.TemporaryDirectory(prefix="gpu-check-keras-") as tmp:
        cases = []
        for variant, overrides, batch in ctx["profile"]["keras"]:
            key = (variant, _overrides_label(overrides))
            if key not in ctx["weights"] or key not in ctx.get("torch_logits", {}):
                spec = ctx["shared_spec"].load(variant, **overrides)
                weights = calibrated_weights(ctx["impl_torch"], ctx["shared_spec"], np, spec,
                                             input_batch(np, spec, CALIBRATION_BATCH, SEED + 1), SEED, "cpu")
                ref = ctx["impl_torch"].build(spec, device=device, seed=SEED)
                ctx["impl_torch"].import_weights(ref, weights)
                x = input_batch(np, spec, batch, SEED + 3)
                logits = ctx["impl_torch"].forward(ref, x)
            else:
                _, weights = ctx["weights"][key]
                x, logits = ctx["torch_logits"][key]
                x, logits = x[:batch], logits[:batch]
            np.savez(Path(tmp) / f"{variant}.npz", x=x, **{f"w/{k}": v for k, v in weights.items()})
            cases.append({"variant": variant, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                            for k, v in overrides.items()},
                          "file": f"{variant}.npz", "batch": batch, "_ref": logits})
        (Path(tmp) / "cases.json").write_text(json.dumps([{k: v for k, v in c.items() if k != "_ref"}
                                                          for c in cases]))
        for backend in ("jax", "torch"):
            entry = {"cases": []}
            section["backends"][backend] = entry
            missing = [m for m in ("keras", backend) if not _present(m)]
            if missing:
                entry.update(status="skipped", reason=f"{' and '.join(missing)} not installed" + (
                    " (keras can be carried as its pure-Python wheel on PYTHONPATH)" if "keras" in missing else ""))
                log(f"keras[{backend}]: skipped ({entry['reason']})")
                continue
            timeout = min(ctx["profile"]["keras_child_timeout"], guard.left())
            if timeout < 20:
                entry.update(status="skipped", reason="section time limit reached")
                log(f"keras[{backend}]: skipped (time limit)")
                continue
            env = {**os.environ, "KERAS_BACKEND": backend, "GPU_CHECK_KERAS_DEVICE": device,
                   "TF_CPP_MIN_LOG_LEVEL": "2", "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
            if not ctx["on_gpu"]:
                env["JAX_PLATFORMS"] = "cpu"
            code = ("import sys; sys.path.insert(0, sys.argv[1]); import gpu_check; "
                    "gpu_check.keras_child(sys.argv[2])")
            start = time.monotonic()
            log(f"keras[{backend}]: child process (timeout {timeout:.0f} s)")
            timed_out = False
            try:
                proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), tmp], env=env,
                                      cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            except subprocess.TimeoutExpired:
                timed_out = True
                entry["note"] = f"child process stopped at the time guard ({timeout:.0f} s)"
                log(f"keras[{backend}]: {entry['note']}")
            entry["seconds"] = round(time.monotonic() - start, 2)
            result_file = Path(tmp) / f"result_{backend}.json"
            if timed_out and not result_file.exists():
                entry.update(status="skipped", reason=f"time guard: nothing finished in {timeout:.0f} s")
                continue
            if not timed_out and (proc.returncode != 0 or not result_file.exists()):
                tail = (proc.stderr or proc.stdout).strip().splitlines()
                entry.update(status="error", error=f"child exited {proc.returncode}: {tail[-1] if tail else ''}")
                log(f"keras[{backend}]: {entry['error']}")
                continue
            result = json.loads(result_file.read_text())
            if result.get("status") == "skipped":
                entry.update(status="skipped", reason=result["reason"])
                log(f"keras[{backend}]: skipped ({entry['reason']})")
                continue
            entry["keras"] = result.get("keras")
            entry["framework_version"] = result.get("framework_version")
            verdicts = []
            for case in cases:
                got = result["cases"].get(case["variant"]) or (
                    {"status": "skipped", "error": "not reached before the time guard"} if timed_out
                    else {"status": "error", "error": "no result"})
                row = {"variant": case["variant"], "overrides": _overrides_label(
                    {k: tuple(v) if isinstance(v, list) else v for k, v in case["overrides"].items()}),
                    "batch": case["batch"], **got}
                if got["status"] == "ok":
                    logits = np.load(Path(tmp) / f"logits_{backend}_{case['variant']}.npy")
                    row["logit_scale"] = _scale(np, case["_ref"])
                    row["logits_max_abs_diff"] = _max_abs(np, logits, case["_ref"])
                    row["status"] = "pass" if row["logits_max_abs_diff"] <= TOLERANCE else "fail"
                entry["cases"].append(row)
                verdicts.append(row["status"])
            ran = [v for v in verdicts if v != "skipped"]
            entry["status"] = ("skipped" if not ran else "pass" if all(v == "pass" for v in ran) else "fail")
            if entry["status"] == "skipped":
                entry["reason"] = "time guard: no case finished"
            log(f"keras[{backend}]: {entry['status']} ({entry['seconds']} s)")
    return section


# --------------------------------------------------------------------------- 4. benchmark


# The benchmark runs in two child processes. "plain" turns TF32 off (full fp32, eager); "fast" touches no
# precision flag: on torch 2.9-2.11 a TF32 setting made through the new fp32_precision API (impl_torch's
# forward/layer_outputs/train_step make one on CUDA) breaks torch.compile's lowering with "mix of the legacy and
# new APIs" (pytorch/pytorch#166387), so the compiled runs get a fresh process. A child's timeout is a hard guard.

BENCH_ORDER = (("forward", "plain"), ("forward", "fast"), ("train", "plain"), ("train", "fast"))


def bench_child(workdir: str, role: str) -> None:
    """One benchmark role ("plain" or "fast") in a fresh process; results rewritten after every cell."""
    import numpy as np
    import torch

    import impl_torch
    import shared_spec

    work = Path(workdir)
    cfg = json.loads((work / "bench.json").read_text())
    end = time.monotonic() + cfg["budget_s"]
    on_gpu = cfg["on_gpu"]
    device = torch.device("cuda" if on_gpu else "cpu")
    sync = torch.cuda.synchronize if on_gpu else (lambda: None)
    result = {"role": role, "rows": [], "fp32": full_fp32(torch) if role == "plain" else "flags untouched"}
    out = work / f"bench_{role}.json"

    def save():
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps(result))
        tmp.replace(out)

    overrides = {k: tuple(v) if isinstance(v, list) else v for k, v in cfg["overrides"].items()}
    spec = shared_spec.load(cfg["variant"], **overrides)
    data = np.load(work / "weights.npz")
    base = impl_torch.build(spec, device="gpu" if on_gpu else "cpu", seed=SEED)
    impl_torch.import_weights(base, {k: data[k] for k in data.files})
    aux_weights = [head.loss_weight for head in spec.aux_heads]
    loss_fn = torch.nn.functional.cross_entropy
    fast = role == "fast"
    warmup, repeats = cfg["warmup"], cfg["repeats"]

    def batch_of(batch):  # the same batch in both children: a generator seeded by the batch size
        gen = torch.Generator(device="cpu").manual_seed(1000 + batch)
        x = torch.randn((batch, *spec.input_shape), generator=gen)
        y = torch.randint(0, spec.num_classes, (batch,), generator=gen)
        x, y = x.to(device), y.to(device)
        return (x.contiguous(memory_format=torch.channels_last) if fast else x), y

    def autocast():
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=fast)

    runners, compile_s, compile_failed = {}, {}, {}
    for batch in cfg["batches"]:
        for kind in ("forward", "train"):
            compiled = fast and kind in cfg["compile"] and kind not in compile_failed
            row = {"kind": kind, "mode": role, "batch": batch, "compiled": compiled}
            result["rows"].append(row)
            # a new shape on a compiled model recompiles: expect what the last compile of this kind took
            need = 5.0 + (compile_s.get(kind, cfg["compile_guess_s"]) if compiled else 0.0)
            left = end - time.monotonic()
            if left < need:
                row.update(status="skipped", reason=f"time guard: {left:.0f} s left, ~{need:.0f} s needed")
                save()
                log(f"bench {kind}/{role} b={batch}: skipped ({row['reason']})")
                continue
            try:
                if kind not in runners:
                    model = copy.deepcopy(base).train(kind == "train")
                    if fast:
                        model = model.to(memory_format=torch.channels_last)
                    # torch's default dynamic=None: the first batch size compiles static, the next one
                    # recompiles with a dynamic batch that serves the rest (batch 1 is specialised): 3 compiles
                    # a pass instead of 4, the largest (target) batch static
                    runner = torch.compile(model) if compiled else model
                    opt = torch.optim.SGD(model.parameters(), lr=0.01) if kind == "train" else None
                    runners[kind] = (runner, opt, model)
                runner, opt, model = runners[kind]
                x, y = batch_of(batch)
                if on_gpu:
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                if kind == "forward":
                    def call():
                        with torch.no_grad(), autocast():
                            return runner(x)
                else:
                    def call():
                        opt.zero_grad(set_to_none=True)
                        with autocast():
                            out = runner(x)
                            main, *aux = out if isinstance(out, tuple) else (out,)
                            loss = loss_fn(main, y)
                            for weight, logits in zip(aux_weights, aux):
                                loss = loss + weight * loss_fn(logits, y)
                        loss.backward()
                        opt.step()
                        return loss
                start = time.monotonic()
                try:
                    value = call()
                except Exception as exc:  # noqa: BLE001 - e.g. no C compiler for Triton: measure it eager
                    if not compiled:
                        raise
                    compile_failed[kind] = row["compile_error"] = _err(exc)
                    log(f"bench {kind}/{role}: torch.compile failed, eager from here: {row['compile_error']}")
                    runners[kind] = (model, opt, model)
                    runner, compiled = model, False
                    row["compiled"] = False
                    start = time.monotonic()
                    value = call()
                sync()
                row["first_call_s"] = round(time.monotonic() - start, 3)  # the compilation, for "fast"
                if compiled:
                    compile_s[kind] = row["first_call_s"]
                for _ in range(warmup - 1):
                    call()
                    sync()
                times, cap = [], max(2.0, min(60.0, end - time.monotonic() - 5.0))
                start = time.monotonic()
                for _ in range(repeats):
                    sync()
                    t = time.perf_counter()
                    value = call()
                    sync()
                    times.append(time.perf_counter() - t)
                    if time.monotonic() - start > cap:
                        row["note"] = f"stopped after {len(times)} timed calls (time guard)"
                        break
                median = statistics.median(times)
                row.update(status="ok", timed_calls=len(times), median_s=median, min_s=min(times),
                           images_per_s=batch / median,
                           peak_memory_bytes=int(torch.cuda.max_memory_allocated()) if on_gpu else None)
                if kind == "forward":
                    logits = value.float().cpu().numpy()
                    ref_file = work / f"logits_fp32_b{batch}.npy"
                    if not fast:
                        np.save(ref_file, logits)
                    elif ref_file.exists():
                        ref = np.load(ref_file)
                        row["bf16_max_logit_diff"] = _max_abs(np, logits, ref)
                        row["fp32_logit_scale"] = _scale(np, ref)
                else:
                    row["loss"] = float(value.detach().float())
            except Exception as exc:  # noqa: BLE001
                row.update(status="error", error=_err(exc))
                if on_gpu and "out of memory" in str(exc).lower():
                    runners.clear()
                    torch.cuda.empty_cache()
            save()
            log(f"bench {kind}/{role} b={batch}: {row['status']}"
                + (f" {row['images_per_s']:,.0f} img/s (first call {row['first_call_s']} s)"
                   if row["status"] == "ok" else f" {row.get('error', '')}"))
    save()


def benchmark(ctx, guard: Guard) -> dict:
    np, shared_spec, impl_torch = ctx["np"], ctx["shared_spec"], ctx["impl_torch"]
    on_gpu, quick = ctx["on_gpu"], ctx["quick"]
    variant, overrides, batches = ctx["profile"]["bench"]
    warmup, repeats = REPEATS[("gpu" if on_gpu else "cpu", quick)]
    # compiling is minutes on a small CPU: --cpu compiles the forward pass only, --cpu --quick nothing
    compiled = ["forward", "train"] if on_gpu else [] if quick else ["forward"]
    section = {"variant": variant, "overrides": _overrides_label(overrides), "batches": batches,
               "warmup": warmup, "repeats": repeats, "statistic": "median of timed calls",
               "plain": "eager fp32 (TF32 off)",
               "fast": "channels_last + torch.compile + bf16 autocast" if len(compiled) == 2 else
                       f"channels_last + bf16 autocast, torch.compile on {' and '.join(compiled) or 'nothing'} "
                       f"(--cpu{' --quick' if quick else ''})",
               "compiled": compiled,
               "optimizer": "SGD lr=0.01 (no momentum)", "rows": [], "children": {}}
    spec = shared_spec.load(variant, **overrides)
    section["input"] = list(spec.input_shape)
    key = (variant, _overrides_label(overrides))
    weights = ctx["weights"][key][1] if key in ctx["weights"] else calibrated_weights(
        impl_torch, shared_spec, np, spec, input_batch(np, spec, CALIBRATION_BATCH, SEED + 1), SEED, "cpu")
    # GPU: the target batch sizes first, so a time guard drops the small ones
    order = sorted(batches, reverse=True) if on_gpu else list(batches)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-bench-") as tmp:
        work = Path(tmp)
        np.savez(work / "weights.npz", **weights)
        for role in ("plain", "fast"):
            left = guard.left()
            timeout = min(left, ctx["profile"]["plain_bench_s"]) if role == "plain" else left
            child = {"timeout_s": round(timeout, 1)}
            section["children"][role] = child
            if timeout < 20:
                child["status"] = "skipped: time guard"
                log(f"bench {role}: skipped (time guard, {left:.0f} s left)")
                continue
            cfg = {"variant": variant, "overrides": {k: list(v) if isinstance(v, tuple) else v
                                                     for k, v in overrides.items()},
                   "batches": order, "warmup": warmup, "repeats": repeats, "compile": compiled,
                   "on_gpu": on_gpu, "budget_s": timeout - 15.0,  # process start, CUDA init, writing
                   "compile_guess_s": 60.0 if on_gpu else 150.0}
            (work / "bench.json").write_text(json.dumps(cfg))
            env = {**os.environ,
                   "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
            code = "import sys; sys.path.insert(0, sys.argv[1]); import gpu_check; gpu_check.bench_child(*sys.argv[2:])"
            log(f"bench {role}: child process (timeout {timeout:.0f} s)")
            start = time.monotonic()
            try:
                proc = subprocess.run([sys.executable, "-c", code, str(Path(__file__).parent), tmp, role],
                                      env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=None, text=True,
                                      timeout=timeout)
                child["status"] = "ok" if proc.returncode == 0 else f"exited {proc.returncode}"
            except subprocess.TimeoutExpired:
                child["status"] = f"killed after {timeout:.0f} s (time guard)"
            child["seconds"] = round(time.monotonic() - start, 1)
            result_file = work / f"bench_{role}.json"
            if result_file.exists():
                result = json.loads(result_file.read_text())
                child["fp32"] = result.get("fp32")
                for row in result["rows"]:
                    rows[(row["kind"], row["mode"], row["batch"])] = row
    for kind, mode in BENCH_ORDER:
        for batch in batches:
            row = rows.get((kind, mode, batch)) or {
                "kind": kind, "mode": mode, "batch": batch, "status": "skipped",
                "reason": f"not run: the {mode} child {section['children'].get(mode, {}).get('status', 'did not run')}"}
            section["rows"].append(row)
    return section


def targets(bench: dict, on_gpu: bool, device_name: str) -> dict:
    out = {}
    at_224 = bench.get("variant") == "googlenet" and bench.get("input", [None])[1:] == [224, 224]
    for kind, target in TARGETS.items():
        rows = [r for r in bench.get("rows", []) if r["kind"] == kind and r["mode"] == "fast" and r["status"] == "ok"]
        best = max(rows, key=lambda r: r["images_per_s"], default=None)
        entry = {"target_images_per_s": target, "best_images_per_s": best["images_per_s"] if best else None,
                 "best_batch": best["batch"] if best else None}
        if not on_gpu or not at_224:
            entry["status"] = "not applicable"
            entry["reason"] = "--cpu run" if not on_gpu else "not googlenet at 224"
        elif best is None:
            entry["status"] = "not measured"
        else:
            entry["status"] = "met" if best["images_per_s"] >= target else "unmet"
            if "H200" not in device_name:
                entry["reason"] = f"the target is for an H200; this is {device_name}"
        out[kind] = entry
    return out


# --------------------------------------------------------------------------- 5. report


def _fmt(value, spec="{:.2e}") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return spec.format(value)
    return str(value)


def render_markdown(report: dict) -> str:
    env = report["environment"]
    device = env.get("device_name") if env["device"] != "cpu" else f"CPU ({env.get('device_name')}, --cpu)"
    lines = [f"### GPU check: {device}", "",
             f"{report['verdict']}: `scripts/gpu-check{' --cpu' if report['mode']['cpu'] else ''}"
             f"{' --quick' if report['mode']['quick'] else ''}`, {report['started']}, "
             f"{report['wall_s']:.0f} s. Tolerance {TOLERANCE:g} (fp32, TF32 off).", "",
             "| environment | |", "|---|---|"]
    for key, label in (("device_name", "device"), ("device_memory_gib", "device memory (GiB)"),
                       ("compute_capability", "compute capability"), ("driver", "driver"), ("python", "python"),
                       ("numpy", "numpy"), ("torch", "torch"), ("torch_cuda", "CUDA (torch)"), ("cudnn", "cuDNN"),
                       ("jax", "jax"), ("keras", "keras"), ("onnxruntime", "onnxruntime")):
        if key in env:
            lines.append(f"| {label} | {_fmt(env[key], '{:g}')} |")
    eq = report["torch_equivalence"]
    lines += ["", f"PyTorch builder, {eq['under_test']} vs {eq['reference']} (same calibrated weights):", "",
              "| variant | input | logits max abs diff | logit scale | layers | worst layer (diff / max(1, scale)) "
              "| result |", "|---|---|---|---|---|---|---|"]
    for row in eq["variants"]:
        worst = row.get("worst_layer") or {}
        shape = "x".join(map(str, row["input"])) if row.get("input") else "—"
        lines.append(f"| {row['variant']} | {shape} | {_fmt(row.get('logits_max_abs_diff'))} | "
                     f"{_fmt(row.get('logit_scale'), '{:.3g}')} | {_fmt(row.get('layers_compared'))} | "
                     f"{worst.get('name', '—')} {_fmt(worst.get('relative'))} | "
                     f"{row['status']}{': ' + (row.get('error') or row.get('reason') or '') if row['status'] in ('error', 'skipped') else ''} |")
    step = eq.get("train_step") or {}
    if step:
        lines += ["", "| train_step | input | loss | loss rel. diff | input grad rel. diff | worst weight rel. diff "
                  "| result |", "|---|---|---|---|---|---|---|"]
        shape = "x".join(map(str, step["input"])) if step.get("input") else "—"
        lines.append(f"| {step['variant']} ({step['overrides']}) | {shape} | {_fmt(step.get('loss'), '{:.4f}')} | "
                     f"{_fmt(step.get('loss_relative_diff'))} | {_fmt(step.get('input_grad_relative_diff'))} | "
                     f"{_fmt((step.get('weights_worst') or {}).get('relative'))} | {step['status']}"
                     f"{': ' + (step.get('error') or step.get('reason') or '') if step['status'] in ('error', 'skipped') else ''} |")
    if eq.get("note"):
        lines += ["", f"Note: {eq['note']}."]
    ks = report["keras"]
    lines += ["", f"Keras builder (impl_tf) against {ks['reference']}:", "",
              "| backend | variant | logits max abs diff | logit scale | result |", "|---|---|---|---|---|"]
    for backend, entry in ks["backends"].items():
        name = f"{backend} ({entry['framework_version']})" if entry.get("framework_version") else backend
        if not entry.get("cases"):
            lines.append(f"| {name} | — | — | — | {entry['status']}: {entry.get('reason') or entry.get('error')} |")
        for row in entry.get("cases", []):
            lines.append(f"| {name} | {row['variant']} | {_fmt(row.get('logits_max_abs_diff'))} | "
                         f"{_fmt(row.get('logit_scale'), '{:.3g}')} | {row['status']}"
                         f"{': ' + row['error'] if row.get('error') else ''} |")
    bench = report["bench"]
    shape = "x".join(map(str, bench.get("input", []))) or "—"
    lines += ["", f"torch benchmark, {bench['variant']} {shape} ({device}): plain = {bench['plain']}; "
              f"fast = {bench['fast']}; train = {bench['optimizer']}; {bench['statistic']} "
              f"({bench['repeats']} after {bench['warmup']} warm-up).", "",
              "| pass | mode | batch | images/s | median ms | peak memory (MiB) | first call (s) | bf16 vs fp32 max logit diff |",
              "|---|---|---|---|---|---|---|---|"]
    for row in bench.get("rows", []):
        if row["status"] != "ok":
            lines.append(f"| {row['kind']} | {row['mode']} | {row['batch']} | {row['status']}: "
                         f"{row.get('reason') or row.get('error')} | | | | |")
            continue
        mem = row.get("peak_memory_bytes")
        diff = row.get("bf16_max_logit_diff")
        scale = f" (scale {row['fp32_logit_scale']:.3g})" if diff is not None else ""
        lines.append(f"| {row['kind']} | {row['mode']} | {row['batch']} | {row['images_per_s']:,.0f} | "
                     f"{row['median_s'] * 1e3:.2f} | {_fmt(mem / 2**20 if mem is not None else None, '{:,.0f}')} | "
                     f"{row['first_call_s']:.1f} | "
                     f"{_fmt(diff)}{scale} |")
    if bench.get("error"):
        lines.append(f"\nbenchmark error: {bench['error']}")
    lines += ["", "| target (torch bf16, googlenet 224, H200) | images/s | best measured | batch | status |",
              "|---|---|---|---|---|"]
    for kind, entry in report["targets"].items():
        lines.append(f"| {kind} | >= {entry['target_images_per_s']:,.0f} | "
                     f"{_fmt(entry['best_images_per_s'], '{:,.0f}')} | {_fmt(entry['best_batch'])} | "
                     f"{entry['status']}{' (' + entry['reason'] + ')' if entry.get('reason') else ''} |")
    if report["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def verdict(report: dict) -> tuple[str, list[str]]:
    """PASS when every torch equivalence check passed and no Keras backend that ran failed."""
    failures = []
    eq = report["torch_equivalence"]
    for row in eq["variants"] + ([eq["train_step"]] if eq.get("train_step") else []):
        if row["status"] != "pass":
            failures.append(f"torch {row['variant']}{' train_step' if row is eq['train_step'] else ''}: "
                            f"{row['status']}")
    for backend, entry in report["keras"]["backends"].items():
        if entry["status"] not in ("pass", "skipped"):
            failures.append(f"keras[{backend}]: {entry['status']}")
    return ("PASS" if not failures else "FAIL"), failures


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out_dir = Path(args.out)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"gpu-check: error: --out {args.out}: cannot create it ({exc.strerror})", file=sys.stderr)
        return 2
    require("numpy", "the builders take and return numpy arrays")
    require("jsonschema", "shared_spec validates the JSON spec with it when it loads the spec")
    require("torch", "the check runs the PyTorch builder")
    import numpy as np
    import torch

    import impl_torch
    import shared_spec

    os.environ["GPU_CHECK_T0"] = str(_T0)
    on_gpu = not args.cpu
    if on_gpu and not torch.cuda.is_available():
        print("gpu-check: torch sees no CUDA device (torch.cuda.is_available() is False; torch "
              f"{torch.__version__}, built for CUDA {torch.version.cuda}); use --cpu for the CPU rehearsal",
              file=sys.stderr)
        return 1
    overall_end = time.monotonic() + (TOTAL_BUDGET_S if on_gpu else CPU_BUDGET_S)
    profile = dict(PROFILES["gpu" if on_gpu else "cpu"])
    if not on_gpu and args.quick:  # --cpu --quick: 48x48, the smallest with 2x2 last-stage maps (BN at batch 1)
        profile["bench"] = ("googlenet", {"input_size": (48, 48)}, [1, 2])
    torch.manual_seed(SEED)
    tf32 = full_fp32(torch)
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log(f"gpu-check {'--cpu ' if args.cpu else ''}{'--quick ' if args.quick else ''}-> {out_dir}")
    env = environment(torch, np, on_gpu, tf32)
    log(f"environment: {env['device_name']}, python {env['python']}, torch {env['torch']} "
        f"(CUDA {env['torch_cuda']}), numpy {env['numpy']}, jax {env['jax']}, keras {env['keras']}")
    ctx = {"torch": torch, "np": np, "shared_spec": shared_spec, "impl_torch": impl_torch, "on_gpu": on_gpu,
           "quick": args.quick, "profile": profile, "env": env}
    notes = []
    if not env.get("safetensors"):
        notes.append("safetensors is not installed: not needed here (weights pass as numpy), but "
                     "save_weights/load_weights need it")
    budgets = profile["budgets"]

    log("section 2: PyTorch builder, device vs CPU")
    eq = torch_equivalence(ctx, Guard(budgets["equivalence"], overall_end))
    log("section 3: Keras backends vs PyTorch")
    try:
        ks = keras_backends(ctx, Guard(budgets["keras"], overall_end))
    except Exception as exc:  # noqa: BLE001
        ks = {"reference": "impl_torch", "tolerance": TOLERANCE,
              "backends": {b: {"status": "error", "error": _err(exc), "cases": []} for b in ("jax", "torch")}}
    log("section 4: torch benchmark")
    try:
        bench = benchmark(ctx, Guard(budgets["bench"], overall_end))
    except Exception as exc:  # noqa: BLE001
        bench = {"variant": profile["bench"][0], "rows": [], "error": _err(exc), "plain": "", "fast": "",
                 "optimizer": "", "statistic": "", "repeats": 0, "warmup": 0}
    notes += bench.pop("notes", [])
    skipped = [f"{r['kind']}/{r['mode']} b={r['batch']}" for r in bench.get("rows", []) if r["status"] == "skipped"]
    if skipped:
        notes.append(f"time guard skipped benchmark cells: {', '.join(skipped)}")
    report = {
        "schema": SCHEMA,
        "mode": {"cpu": args.cpu, "quick": args.quick},
        "started": started,
        "environment": env,
        "torch_equivalence": eq,
        "keras": ks,
        "bench": bench,
        "targets": targets(bench, on_gpu, env.get("device_name") or ""),
        "notes": notes,
    }
    report["wall_s"] = round(time.time() - _T0, 1)
    report["verdict"], report["failures"] = verdict(report)
    report["exit_code"] = 0 if report["verdict"] == "PASS" else 1
    markdown = render_markdown(report)
    (out_dir / "gpu_check.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    (out_dir / "gpu_check.md").write_text(markdown)
    print(markdown, end="")
    log(f"{report['verdict']} in {report['wall_s']} s: {out_dir / 'gpu_check.json'}, {out_dir / 'gpu_check.md'}"
        + (f"; failed: {'; '.join(report['failures'])}" if report["failures"] else ""))
    return report["exit_code"]


if __name__ == "__main__":
    sys.exit(main())
