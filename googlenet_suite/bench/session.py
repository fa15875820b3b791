"""A bench session: every group measured in a process of its own, the machine-wide limit, and the flags.

:func:`run` takes loaded specs and keyword options and returns one result (a JSON-ready dict) that
:mod:`googlenet_suite.bench.report` renders and plots. This process imports no framework: each
``worker`` process imports one (and onnxruntime's export rows, the exporter's, in a process of its own).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pickle
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import shared_spec

from .. import frameworks as fw_registry
from . import machine
from .timing import Timing, paired_ratio
from .worker import EXPORT, Export, Measure, PeakProtocol, Threads

RATIO_LIMIT = 1.02
#: a part is flagged when the other processes kept more than this many of its cores busy while it was timed
BUSY_CORES = 0.25
#: ... or when its spread (IQR / median) stayed above this
NOISY = 0.10
#: ... or, where /proc/stat cannot be read, when the 1-minute load average before it, less its own threads, was
#: above this (the load average lags by a minute and counts this bench's own compile workers, so where the
#: direct reading exists it is recorded, not judged)
LOAD_MARGIN = 1.0
#: the command line's defaults: about two minutes on 2 cores (one batch, the fast mode, no hand-written models or
#: exports), and ``--long``'s, the full comparison (tens of minutes there); an option given explicitly wins
PRESETS = {
    "quick": {"batch": [8], "mode": "fast", "repeats": 10, "time_budget": 10.0, "handwritten": False,
              "exports": False},
    "long": {"batch": [1, 8], "mode": "all", "repeats": 60, "time_budget": 60.0, "handwritten": True,
             "exports": True},
}
WORKER_TIMEOUT_S = 1800  # one group: imports, builds, compiles and every timed call


def _spawn(job, folder: Path, timeout_s: float) -> dict:
    """Run ``job`` in a fresh ``python -m googlenet_suite.bench.worker``; its result, or why there is none."""
    job_file, result_file = folder / "job.pkl", folder / "result.json"
    job_file.write_bytes(pickle.dumps(job))
    result_file.unlink(missing_ok=True)
    env = {**os.environ, **job.threads.env()}
    command = [sys.executable, "-m", "googlenet_suite.bench.worker", str(job_file), str(result_file)]
    start, cpu = time.perf_counter(), _children_cpu()
    try:
        done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"the measuring process ran past {timeout_s:.0f} s and was stopped"}
    if result_file.exists():
        # its whole life, imports and compilation included: CPU seconds say what it costs on a quiet machine
        process = {"wall_s": round(time.perf_counter() - start, 1), "cpu_s": round(_children_cpu() - cpu, 1)}
        return {**json.loads(result_file.read_text()), "process": process}
    last = (done.stderr.strip().splitlines() or [""])[-1]
    how = f"signal {-done.returncode}" if done.returncode < 0 else f"exit {done.returncode}"
    return {"status": "error", "error": f"the measuring process died ({how}) {last}".strip()}


def _children_cpu() -> float:
    """CPU seconds of this process's finished children (and theirs: a worker's compile processes)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _installed(key: str) -> dict:
    if importlib.util.find_spec(fw_registry.FRAMEWORKS[key].requires) is None:
        return {"status": "missing", "hint": f"{fw_registry.FRAMEWORKS[key].label} is not installed: "
                                             f"{fw_registry.install_hint(key)}"}
    return {"status": "ok"}


def run(specs: list[shared_spec.Spec], keys: list[str], *, batches: list[int], modes: list[str], device: str,
        train: bool, handwritten: bool = False, exports: bool = False, threads: int | None = None,
        inter_threads: int = 1, timing: Timing = Timing(), peak: PeakProtocol | None = None, progress=None,
        timeout_s: float = WORKER_TIMEOUT_S) -> dict:
    """Every framework x spec x batch x mode, one process each; a ``bad_input`` from a worker (a device the
    framework cannot use) is raised as ``shared_spec.InputError`` before anything is written."""
    say = progress or (lambda message: contextlib.nullcontext())
    fw_registry.check_backends(keys, "bench")  # Keras on another backend: exit 2, not a cell of the table
    peak = peak or PeakProtocol.protocol()
    # the user's OMP_WAIT_POLICY wins; else idle threads sleep (worker.Threads says why)
    chosen = Threads(intra=threads or machine.cores(), inter=inter_threads,
                     wait=os.environ.get("OMP_WAIT_POLICY", "PASSIVE").upper())
    status = {key: _installed(key) for key in keys}
    rows, peaks, versions, notes = [], {}, {}, []
    with tempfile.TemporaryDirectory(prefix="googlenet-bench-") as tmp:
        folder = Path(tmp)
        for key, spec in ((key, spec) for key in keys for spec in specs):
            if status[key]["status"] != "ok":
                continue
            exporters = [k for k in keys if exports and key == "onnx" and k != key and status[k]["status"] == "ok"
                         and fw_registry.has_part(k, "onnx_export")]
            files, failed = _exported(exporters, spec, folder, threads=chosen, say=say, timeout_s=timeout_s)
            # "hand": the worker keeps it where the framework has a hand-written network of the variant
            sources = ("spec",) + (("hand",) if handwritten and key != "onnx" and not spec.aux_logits
                                   else ()) + tuple(files)
            can_train = train and fw_registry.FRAMEWORKS[key].can("train")
            for batch, mode in ((batch, mode) for batch in batches for mode in modes):
                job = Measure(key, spec, sources, mode, batch, device, can_train, chosen, timing, tuple(files.items()),
                              None if key in peaks else peak)
                with say(f"benchmarking {key} {spec.variant} batch {batch} {mode} (a process of its own)"):
                    done = _spawn(job, folder, timeout_s)
                _collect(done, job, status, rows, peaks, versions)
                notes.extend(n for n in done.get("notes", ()) if n not in notes)
                if done["status"] in ("ok", "error"):
                    rows.extend({**row, "mode": mode, "batch": batch} for row in failed)
    limit = _limit(peaks)
    estimate = machine.describe()
    for row in rows:
        _share(row, limit)
        row["warnings"] = _warnings(row)
    return {"suite_version": shared_spec.__version__, "machine": estimate, "versions": versions,
            "threads": chosen.record(),
            "timing": {"min_repeats": timing.min_repeats, "warmup": timing.warmup, "budget_s": timing.budget_s,
                       "settle": timing.settle},
            "peak_protocol": {"matmul": peak.matmul, "conv": list(peak.conv), "repeats": peak.repeats},
            "frameworks": status, "peaks_gflops": peaks, "limit": limit,
            "warnings": _machine_warnings(limit, estimate, peaks), "notes": notes,
            "rows": rows, "speedups": _speedups(rows), "bf16": _bf16(rows), "spec_vs_hand": _ratios(rows)}


def _exported(exporters: list[str], spec: shared_spec.Spec, folder: Path, *, threads: Threads, say,
              timeout_s: float) -> tuple[dict[str, str], list[dict]]:
    """Each exporter's ONNX file of ``spec`` (written in a process of its own): ``{"export:<key>": path}``, and an
    error row (without mode and batch) for each exporter that failed; the other rows still run."""
    files, failed = {}, []
    for other in exporters:
        path = str(folder / f"{other}-{spec.variant}.onnx")
        with say(f"exporting {other} {spec.variant} to ONNX"):
            done = _spawn(Export(other, spec, path, threads), folder, timeout_s)
        if done["status"] == "ok":
            files[EXPORT + other] = path
        else:
            failed.append({"framework": "onnx", "variant": spec.variant, "source": EXPORT + other,
                           "threads": threads.record(), "error": done.get("error") or done.get("hint")})
    return files, failed


def _collect(done: dict, job: Measure, status: dict, rows: list, peaks: dict, versions: dict) -> None:
    if done["status"] == "bad_input":
        raise shared_spec.InputError(done["error"])
    if done["status"] == "missing":
        status[job.framework] = {"status": "missing", "hint": done["hint"]}
    elif done["status"] == "error":
        rows.extend({"framework": job.framework, "variant": job.spec.variant, "source": source, "mode": job.mode,
                     "batch": job.batch, "threads": job.threads.record(),
                     "error": done["error"]} for source in job.sources)
    elif done["status"] == "ok":
        rows.extend({**row, "process": done["process"]} for row in done["rows"])
        versions.update(done["versions"])
        if done["peaks"] is not None:
            peaks[job.framework] = done["peaks"]


# --------------------------------------------------------------------------- the limit and the flags


def _limit(peaks: dict) -> dict:
    """The machine's limit per dtype: the best rate any installed framework reached, and which one."""
    limit = {}
    for dtype in ("float32", "bfloat16"):
        rates = {key: p[dtype] for key, p in peaks.items() if p.get(dtype)}
        if rates:
            best = max(rates, key=rates.get)
            limit[dtype] = {"gflops": rates[best], "framework": best}
    return limit


def _share(row: dict, limit: dict) -> None:
    """A bf16 row's share is of the bf16 limit where there is one, else of fp32's."""
    dtype = "bfloat16" if row.get("mode") == "bf16" and "bfloat16" in limit else "float32"
    for part in ("forward", "train"):
        if part in row and dtype in limit:
            row[part]["limit_share"] = row[part]["gflops"] / limit[dtype]["gflops"]
            row[part]["limit_dtype"] = dtype


def _warnings(row: dict) -> list[str]:
    """Why a row's figures cannot be trusted as they stand, one line per part; empty when nothing says so."""
    out = []
    for part in ("forward", "train"):
        figures = row.get(part)
        if not figures:
            continue
        reading, reasons = figures["machine"], []
        others, cores, load = reading["others_cores"], reading["cores"], reading["loadavg"][0]
        if others is not None and others > BUSY_CORES:
            reasons.append(f"others used {others:.1f} of {cores} cores")
        if others is None and load - row["threads"]["intra"] > LOAD_MARGIN:
            reasons.append(f"load average {load:.1f} before")
        if figures["spread"] > NOISY:
            reasons.append(f"spread {100 * figures['spread']:.0f}% after {figures['repeats']} calls")
        if figures.get("limit_share", 0) > 1:
            reasons.append(f"{100 * figures['limit_share']:.0f}% of the limit: the limit is wrong")
        if reasons:
            out.append(f"{part}: {', '.join(reasons)}")
    return out


def _machine_warnings(limit: dict, described: dict, peaks: dict | None = None) -> list[str]:
    out = []
    for key, peak in (peaks or {}).items():
        others = (peak.get("machine") or {}).get("others_cores")
        if others is not None and others > BUSY_CORES:
            out.append(f"{key}'s peak was measured while others used {others:.1f} of "
                       f"{peak['machine']['cores']} cores: it is too low, and the shares of a limit it sets too high")
    estimate = described.get("estimate")
    if not estimate:
        return [*out, "no theoretical peak: /proc/cpuinfo gives no clock or vector flags here"]
    for dtype, measured in limit.items():
        if estimate.get(dtype) and measured["gflops"] > estimate[dtype]:
            out.append(f"{dtype}: {measured['framework']} reached {measured['gflops']:.0f} GFLOP/s, above the "
                       f"estimate of {estimate[dtype]:.0f} from the vector units and /proc/cpuinfo's clock: the "
                       f"estimate is wrong (the cores boost above that clock, or the convolution does fewer "
                       f"multiply-adds than a direct one, as Winograd's do)")
    return out


# --------------------------------------------------------------------------- tables derived from the rows


def _key(row, **change):
    base = {k: row[k] for k in ("framework", "variant", "batch", "mode", "source")}
    base.update(change)
    return tuple(base.values())


def _speedups(rows) -> list[dict]:
    index = {_key(r): r for r in rows if "forward" in r}
    out = []
    for row in rows:
        if row.get("mode") == "plain" and row.get("source") == "spec" and "forward" in row:
            fast = index.get(_key(row, mode="fast"))
            if fast:
                entry = {"framework": row["framework"], "variant": row["variant"], "batch": row["batch"],
                         "forward": row["forward"]["median_s"] / fast["forward"]["median_s"]}
                if "train" in row and "train" in fast:
                    entry["train"] = row["train"]["median_s"] / fast["train"]["median_s"]
                out.append(entry)
    return out


def _bf16(rows) -> list[dict]:
    """Each bf16 row against its fp32 fast row: the speed-up, and how far its logits are from fp32's."""
    index = {_key(r): r for r in rows if "forward" in r}
    out = []
    for row in rows:
        fast = index.get(_key(row, mode="fast")) if row.get("mode") == "bf16" and "forward" in row else None
        if fast:
            entry = {k: row[k] for k in ("framework", "variant", "batch", "source")}
            entry["forward"] = fast["forward"]["median_s"] / row["forward"]["median_s"]
            if "train" in row and "train" in fast:
                entry["train"] = fast["train"]["median_s"] / row["train"]["median_s"]
            entry.update(row.get("bf16_vs_fp32", {}))
            out.append(entry)
    return out


def _ratios(rows) -> list[dict]:
    """spec-built / hand-written time per pair of back-to-back calls, median over the repeats (<= RATIO_LIMIT
    means building from the spec is free); the quartiles and the ratio of the two medians come with it."""
    index = {_key(r): r for r in rows if "forward" in r}
    out = []
    for row in rows:
        if row.get("source") == "hand" and "forward" in row:
            spec_row = index.get(_key(row, source="spec"))
            if spec_row:
                entry = {"framework": row["framework"], "batch": row["batch"], "mode": row["mode"]}
                for part in ("forward", "train"):
                    if part in row and part in spec_row:
                        median, q1, q3 = paired_ratio(spec_row[part]["times_s"], row[part]["times_s"])
                        entry[part] = median
                        entry[f"{part}_spread"] = [q1, q3]
                        entry[f"{part}_of_medians"] = spec_row[part]["median_s"] / row[part]["median_s"]
                entry["within_limit"] = all(entry[k] <= RATIO_LIMIT for k in ("forward", "train") if k in entry)
                out.append(entry)
    return out
