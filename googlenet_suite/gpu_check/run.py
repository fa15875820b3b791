"""The GPU check's run: the environment, the three sections under their time guards, the report written."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from shared_spec.errors import InputError
from shared_spec.files import atomic_write

from .. import frameworks as fw_registry
from . import bench, equivalence, keras_backends, report
from .common import SCHEMA, T0_ENV, Guard, dist_version, error_text, log, present, profile, reference_weights

# versions from package metadata: nothing is imported (jax would claim the GPU)
DISTRIBUTIONS = ("jax", "jaxlib", "keras", "onnxruntime", "onnxruntime-gpu", "jsonschema", "safetensors",
                 "tensorflow", "mxnet")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} cores"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(torch_side, *, on_gpu: bool, fp32: dict) -> dict:
    env = {"python": platform.python_version(), "platform": platform.platform(), "cpu_count": os.cpu_count(),
           "numpy": np.__version__, "fp32": fp32, "device": "cpu", "device_name": _cpu_name(),
           **torch_side.environment(on_gpu=on_gpu)}
    env.update({name.replace("-", "_"): dist_version(name) for name in DISTRIBUTIONS})
    env["keras_importable_path"] = present("keras")
    env["jax_importable_path"] = present("jax")
    return env


def run(out: Path, *, cpu: bool, quick: bool, variant: str | None = None) -> int:
    """The whole check; writes ``out``/gpu_check.json and gpu_check.md, prints the markdown; 0 on PASS, else 1."""
    prof = profile(cpu=cpu, quick=quick, variant=variant)  # an unknown variant: exit 2 before --out is made
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"--out {out}: cannot create it ({exc.strerror})") from None
    os.environ[T0_ENV] = str(start := time.time())  # the children log against the same start
    on_gpu = not cpu
    overall_end = time.monotonic() + prof.total_s
    torch_side = fw_registry.part("torch", "gpu_check")
    started = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    log(f"gpu-check {'--cpu ' if cpu else ''}{'--quick ' if quick else ''}"
        f"{f'--variant {variant} ' if variant else ''}-> {out}")
    env = environment(torch_side, on_gpu=on_gpu, fp32=torch_side.full_fp32())
    log(f"environment: {env['device_name']}, python {env['python']}, torch {env['torch']} "
        f"(CUDA {env['torch_cuda']}), numpy {env['numpy']}, jax {env['jax']}, keras {env['keras']}")
    notes = []
    if not env.get("safetensors"):
        notes.append("safetensors is not installed: not needed here (weights pass as numpy), but "
                     "save_weights/load_weights need it")
    shared: dict = {}  # what the equivalence section made, for the Keras section

    log("section 2: PyTorch builder, device vs CPU")
    eq = equivalence.run(prof.equivalence, prof.train_step, on_gpu=on_gpu, device_label=env["device"],
                         guard=Guard(prof.equivalence_s, overall_end), shared=shared)
    log("section 3: Keras backends vs PyTorch")
    try:
        ks = keras_backends.run(prof.keras, on_gpu=on_gpu, device_label=env["device"], shared=shared,
                                guard=Guard(prof.keras_s, overall_end), child_s=prof.keras_child_s)
    except Exception as exc:  # noqa: BLE001 - recorded, the run goes on
        ks = {"reference": "impl_torch", "tolerance": eq["tolerance"],
              "backends": {b: {"status": "error", "error": error_text(exc), "cases": []}
                           for b in keras_backends.BACKENDS}}
    log("section 4: torch benchmark")
    try:
        spec = prof.bench.spec()
        made = shared.get(prof.bench.key)
        weights = made["weights"] if made else reference_weights(spec)
        bench_section = bench.run(prof, on_gpu=on_gpu, quick=quick, guard=Guard(None, overall_end), weights=weights)
    except Exception as exc:  # noqa: BLE001
        bench_section = {"variant": prof.bench.variant, "rows": [], "error": error_text(exc), "plain": "",
                         "fast": "", "optimizer": "", "statistic": "", "repeats": 0, "warmup": 0}
    skipped = [f"{r['kind']}/{r['mode']} b={r['batch']}" for r in bench_section["rows"] if r["status"] == "skipped"]
    if skipped:
        notes.append(f"time guard skipped benchmark cells: {', '.join(skipped)}")
    mode = {"cpu": cpu, "quick": quick, **({"variant": variant} if variant else {})}
    result = {"schema": SCHEMA, "mode": mode, "started": started, "environment": env,
              "torch_equivalence": eq, "keras": ks, "bench": bench_section,
              "targets": report.targets(bench_section, on_gpu, env.get("device_name") or ""), "notes": notes,
              "wall_s": round(time.time() - start, 1)}
    result["verdict"], result["failures"] = report.verdict(result)
    result["exit_code"] = 0 if result["verdict"] == "PASS" else 1
    markdown = report.render_markdown(result)
    files = {"gpu_check.json": json.dumps(result, indent=2, default=str) + "\n", "gpu_check.md": markdown}
    for name, text in files.items():
        atomic_write(out / name, lambda tmp, text=text: Path(tmp).write_text(text))
    print(markdown, end="", flush=True)
    log(f"{result['verdict']} in {result['wall_s']} s: {out / 'gpu_check.json'}, {out / 'gpu_check.md'}"
        + (f"; failed: {'; '.join(result['failures'])}" if result["failures"] else ""))
    return result["exit_code"]
