"""Section 4: PyTorch's speed through ``impl_torch.bench``'s runner, the bench command's own.

Two child processes (``python -m googlenet_suite.gpu_check.bench DIR ROLE``), each with a hard timeout:
"plain" turns TF32 off for its whole process (full fp32, eager); "fast" (channels_last + torch.compile +
bf16 autocast: the runner's bf16 mode) touches no precision flag, since on torch 2.9-2.11 a setting made
through the fp32_precision API breaks torch.compile's lowering (pytorch/pytorch#166387). One runner per
cell (pass x batch), the suite's reference weights in it; every cell under the child's time guard.
"""

from __future__ import annotations

import functools
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from shared_spec import protocol

from .. import frameworks as fw_registry
from .common import Case, Guard, Profile, child_env, error_text, log

ROLES = ("plain", "fast")
KINDS = ("forward", "train")
ORDER = tuple((kind, role) for kind in KINDS for role in ROLES)
CHILD_START_S = 15.0  # the child's start, CUDA's initialisation and writing, out of its timeout
COMPILE_GUESS_S = {True: 60.0, False: 150.0}  # on a GPU, on a CPU: until a compilation has been timed


def fast_mode(on_gpu: bool) -> str:
    """The runner mode behind the fast role: bf16 (autocast, its logits against fp32) where the device has a
    bf16 path; a CPU without one (no AVX512_BF16 or AMX) rehearses in fp32."""
    return "bf16" if on_gpu or protocol.cpu_has_bf16() else "fast"


def _describe_fast(prof: Profile, *, on_gpu: bool, quick: bool) -> str:
    precision = " + bf16 autocast" if fast_mode(on_gpu) == "bf16" else " (fp32: this CPU has no bf16 path)"
    if set(prof.compiled) == set(KINDS):
        return f"channels_last + torch.compile{precision}"
    return (f"channels_last{precision}, torch.compile on {' and '.join(prof.compiled) or 'nothing'} "
            f"(--cpu{' --quick' if quick else ''})")


def run(prof: Profile, *, on_gpu: bool, quick: bool, guard: Guard, weights: dict) -> dict:
    case = prof.bench
    section = {"variant": case.variant, "overrides": case.label, "batches": list(prof.bench_batches),
               "input": list(case.spec().input_shape), "warmup": prof.warmup, "repeats": prof.repeats,
               "statistic": "median of timed calls", "plain": "eager fp32 (TF32 off)",
               "fast": _describe_fast(prof, on_gpu=on_gpu, quick=quick), "compiled": list(prof.compiled),
               "runner": f"impl_torch.bench.runner, modes plain and {fast_mode(on_gpu)}",
               "optimizer": "SGD lr=0.01 (no momentum)", "rows": [], "children": {}}
    # GPU: the target batch sizes first, so a time guard drops the small ones
    batches = sorted(prof.bench_batches, reverse=True) if on_gpu else list(prof.bench_batches)
    rows = {}
    with tempfile.TemporaryDirectory(prefix="gpu-check-bench-") as tmp:
        work = Path(tmp)
        np.savez(work / "weights.npz", **weights)
        for role in ROLES:
            left = guard.left()
            timeout = min(left, prof.plain_bench_s) if role == "plain" else left
            section["children"][role] = child = {"timeout_s": round(timeout, 1)}
            if timeout < 20:
                child["status"] = "skipped: time guard"
                log(f"bench {role}: skipped (time guard, {left:.0f} s left)")
                continue
            config = {"case": case.to_json(), "batches": batches, "warmup": prof.warmup, "repeats": prof.repeats,
                      "mode": "plain" if role == "plain" else fast_mode(on_gpu), "on_gpu": on_gpu,
                      "compiled": list(prof.compiled) if role == "fast" else [],
                      "budget_s": timeout - CHILD_START_S, "compile_guess_s": COMPILE_GUESS_S[on_gpu]}
            (work / f"config_{role}.json").write_text(json.dumps(config))
            log(f"bench {role}: child process (timeout {timeout:.0f} s)")
            start = time.monotonic()
            try:
                proc = subprocess.run([sys.executable, "-m", __name__, tmp, role], env=child_env(), cwd=tmp,
                                      stdout=subprocess.PIPE, text=True, timeout=timeout)
                child["status"] = "ok" if proc.returncode == 0 else f"exited {proc.returncode}"
            except subprocess.TimeoutExpired:
                child["status"] = f"killed after {timeout:.0f} s (time guard)"
            child["seconds"] = round(time.monotonic() - start, 1)
            result_file = work / f"bench_{role}.json"
            if result_file.exists():
                result = json.loads(result_file.read_text())
                child["fp32"] = result.get("fp32")
                rows.update({(row["kind"], row["mode"], row["batch"]): row for row in result["rows"]})
    for kind, role in ORDER:
        for batch in prof.bench_batches:
            status = section["children"].get(role, {}).get("status", "did not run")
            section["rows"].append(rows.get((kind, role, batch)) or {
                "kind": kind, "mode": role, "batch": batch, "status": "skipped",
                "reason": f"not run: the {role} child {status}"})
    return section


def _measure(make, kind: str, *, batch: int, warmup: int, repeats: int, end: float) -> dict:
    """One cell: the runner made (compiled where asked), warmed up, timed; the median of the timed calls."""
    start = time.monotonic()
    runner = make()
    setup_s = time.monotonic() - start
    call = runner.forward if kind == "forward" else runner.train_step
    value = call()
    row = {"setup_s": round(setup_s, 3), "first_call_s": round(time.monotonic() - start, 3), "notes": runner.notes}
    for _ in range(warmup - 1):
        call()
    times, cap = [], max(2.0, min(60.0, end - time.monotonic() - 5.0))
    begin = time.monotonic()
    for _ in range(repeats):
        tick = time.perf_counter()
        value = call()  # synchronised by the runner
        times.append(time.perf_counter() - tick)
        if time.monotonic() - begin > cap:
            row["note"] = f"stopped after {len(times)} timed calls (time guard)"
            break
    median = statistics.median(times)
    row.update(status="ok", timed_calls=len(times), median_s=median, min_s=min(times), images_per_s=batch / median,
               peak_memory_bytes=runner.peak_gpu_bytes())
    if kind == "forward" and runner.precision is not None:
        row.update(bf16_max_logit_diff=runner.precision["max_abs_diff"],
                   fp32_logit_scale=runner.precision["logit_scale"])
    if kind == "train":
        row["loss"] = float(value)
    return row


def _cell(make, kind: str, compiled: bool, **options) -> dict:
    """A cell compiled where asked; where compiling fails (no C compiler for Triton, say), the failure is
    recorded and the cell measured eager."""
    if not compiled:
        return _measure(lambda: make(compiled=False), kind, **options)
    try:
        return _measure(lambda: make(compiled=True), kind, **options)
    except Exception as exc:  # noqa: BLE001
        failure = error_text(exc)
    log(f"bench {kind}: torch.compile failed, eager from here: {failure}")
    return {**_measure(lambda: make(compiled=False), kind, **options), "compiled": False, "compile_error": failure}


def child(workdir: str, role: str) -> None:
    """One role's cells in this process; the results file rewritten after every cell."""
    work = Path(workdir)
    config = json.loads((work / f"config_{role}.json").read_text())
    end = time.monotonic() + config["budget_s"]
    bench = fw_registry.part("torch", "bench")
    result = {"role": role, "rows": [],
              "fp32": fw_registry.part("torch", "gpu_check").full_fp32() if role == "plain" else "flags untouched"}
    out = work / f"bench_{role}.json"

    def save():
        (work / "bench.tmp").write_text(json.dumps(result))
        (work / "bench.tmp").replace(out)

    spec = Case.from_json(config["case"]).spec()
    arrays = np.load(work / "weights.npz")
    weights = {key: arrays[key] for key in arrays.files}
    compile_s, compile_failed = {}, {}
    for batch in config["batches"]:
        for kind in KINDS:
            compiled = kind in config["compiled"] and kind not in compile_failed
            row = {"kind": kind, "mode": role, "batch": batch, "compiled": compiled}
            result["rows"].append(row)
            # a new shape compiles afresh: expect what the last compilation of this pass took
            need = 5.0 + (compile_s.get(kind, config["compile_guess_s"]) if compiled else 0.0)
            left = end - time.monotonic()
            if left < need:
                row.update(status="skipped", reason=f"time guard: {left:.0f} s left, ~{need:.0f} s needed")
                save()
                log(f"bench {kind}/{role} b={batch}: skipped ({row['reason']})")
                continue

            make = functools.partial(bench.runner, spec, source="spec", mode=config["mode"], batch=batch,
                                     train=kind == "train", device="gpu" if config["on_gpu"] else "cpu",
                                     weights=weights)
            try:
                row.update(_cell(make, kind, compiled, batch=batch, warmup=config["warmup"],
                                 repeats=config["repeats"], end=end))
            except Exception as exc:  # noqa: BLE001 - recorded in the row (out of memory, say)
                row.update(status="error", error=error_text(exc))
            if "compile_error" in row:
                compile_failed[kind] = row["compile_error"]
            elif row["compiled"] and row["status"] == "ok":
                compile_s[kind] = row["setup_s"]
            save()
            log(f"bench {kind}/{role} b={batch}: {row['status']}"
                + (f" {row['images_per_s']:,.0f} img/s (first call {row['first_call_s']} s)"
                   if row["status"] == "ok" else f" {row.get('error', '')}"))
    save()


if __name__ == "__main__":
    child(*sys.argv[1:3])
