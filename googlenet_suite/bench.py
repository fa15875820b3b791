"""``googlenet-suite bench``: the three frameworks' speed side by side, plain and fast.

Framework-neutral part: warm-up, repeats, statistics, memory, rendering, plot.
Each framework plugs in through ``impl_<key>.bench.runner(...)`` (found through the registry),
which returns an object with:

- ``forward()``: one eval-mode forward of a batch already on the device,
  synchronised (CUDA sync, ``block_until_ready``, ``mx.nd.waitall()``);
- ``train_step()``: forward + backward + plain SGD update, synchronised;
- ``peak_gpu_bytes()``: peak device memory where the framework reports it, else None;
- ``device``: "cpu" or "gpu";
- ``notes``: what "fast" meant there (e.g. "channels_last + torch.compile").

``source="spec"`` builds through the framework's builder; ``source="hand"`` is a
hand-written torchvision-style GoogLeNet in plain framework code, kept inside
the benchmark to show that building from the spec costs nothing at run time.
onnxruntime (forward only) has ``source="spec"`` (``impl_onnx``'s graph) and one
``export:<key>`` row per other framework in the run: that framework's model written by its
exporter (``impl_<key>.onnx_export``), run by onnxruntime.

The limit comes with every row: each framework's ``peak_gflops(device, dtype)`` first times a
large matmul (the machine's reachable rate in that framework, fp32 and bf16 where the hardware has
it), and a row's achieved rate is 2 x the oracle's multiply-adds x images/s (x 3 for a training step:
forward, input gradients, weight gradients), given as GFLOP/s and as a share of that peak.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Callable

import shared_spec
from shared_spec import contract, protocol

from . import frameworks as fw_registry
from . import harness
from . import render

HAND_WRITTEN_VARIANT = "googlenet"  # the hand-written models are torchvision's GoogLeNet
RATIO_LIMIT = 1.02
SOURCES = protocol.BENCH_SOURCES
MODES = protocol.BENCH_MODES
DEVICES = contract.DEVICES


def _reset_peak_rss() -> None:
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass


def peak_rss_bytes() -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _stats(times: list[float]) -> dict:
    times = sorted(times)
    q1, q3 = (statistics.quantiles(times, n=4)[0], statistics.quantiles(times, n=4)[2]) if len(times) >= 2 \
        else (times[0], times[0])
    return {"median_s": statistics.median(times), "min_s": times[0], "max_s": times[-1], "iqr_s": q3 - q1,
            "repeats": len(times)}


def _time(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_interleaved(fns: dict[str, Callable[[], object]], *, repeats: int, warmup: int) -> dict[str, list[float]]:
    """Time several callables in alternation, each repeat once each, the order reversed every other repeat
    (a b, b a, a b, ...): load from other processes, and whatever the first call of a repeat pays, hits
    each alike. Returns each callable's times, repeat by repeat (``times[a][i]`` and ``times[b][i]`` were
    taken back to back)."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    order = list(fns)
    for repeat in range(repeats):
        for name in (order if repeat % 2 == 0 else order[::-1]):
            times[name].append(_time(fns[name]))
    return times


def paired_ratio(numerator: list[float], denominator: list[float]) -> tuple[float, float, float]:
    """Median and quartiles ``(median, q1, q3)`` over repeats of ``numerator[i] / denominator[i]`` (two
    callables timed back to back by ``measure_interleaved``). Drift on a shared machine (both slower for a
    while) cancels in each pair; in the ratio of the two medians it does not, and that moves by a few
    percent from run to run."""
    ratios = sorted(a / b for a, b in zip(numerator, denominator, strict=True))
    q1, _, q3 = statistics.quantiles(ratios, n=4) if len(ratios) >= 2 else (ratios[0],) * 3
    return statistics.median(ratios), q1, q3


EXPORT = "export:"  # an onnxruntime row's source: "export:torch" is PyTorch's exporter's file


def export_file(key: str, spec: shared_spec.Spec, folder: str) -> str:
    """``key``'s model of ``spec`` (seeded weights: speed does not depend on them) written by its ONNX
    exporter into ``folder``; the path."""
    mod = fw_registry.load(key)
    path = str(Path(folder) / f"{key}-{spec.variant}.onnx")
    # FrameworkMissing (tf2onnx) becomes the row's error
    harness.export_onnx(key, mod.build(spec, device="cpu", seed=0), path, aux=False)
    return path


def bench_group(key: str, spec: shared_spec.Spec, *, sources: list[str], mode: str, batch: int, device: str,
                repeats: int, warmup: int, train: bool, files: dict[str, str] | None = None) -> list[dict]:
    """One row per source (spec-built, hand-written, or an exporter's file in ``files``), measured
    interleaved in one process."""
    module = fw_registry.part(key, "bench")
    macs = shared_spec.analyze(spec).macs
    _reset_peak_rss()
    runners, rows = {}, {}
    for source in sources:
        base = {"framework": key, "variant": spec.variant, "source": source, "mode": mode, "batch": batch}
        try:
            start = time.perf_counter()
            extra = {"model_file": (files or {})[source]} if source.startswith(EXPORT) else {}
            runner = module.runner(spec, source=source.split(":")[0], mode=mode, device=device, batch=batch,
                                   train=train, **extra)
            rows[source] = {**base, "device": runner.device, "notes": runner.notes,
                            "setup_s": round(time.perf_counter() - start, 3)}
            if getattr(runner, "precision", None) is not None:  # mode bf16: its logits against fp32
                rows[source]["bf16_vs_fp32"] = runner.precision
            runners[source] = runner
        except Exception as exc:  # a row that says what failed; the other rows still run
            rows[source] = {**base, "error": f"{type(exc).__name__}: {exc}".splitlines()[0]}
    try:
        fwd = measure_interleaved({s: r.forward for s, r in runners.items()}, repeats=repeats, warmup=warmup)
        step = measure_interleaved({s: r.train_step for s, r in runners.items()}, repeats=repeats,
                                   warmup=warmup) if train else {}
    except Exception as exc:
        return [{**{k: rows[s][k] for k in ("framework", "variant", "source", "mode", "batch")},
                 "error": f"{type(exc).__name__}: {exc}".splitlines()[0]} for s in rows]
    for source, runner in runners.items():
        row = rows[source]
        f = _stats(fwd[source])
        row["forward"] = {**f, "images_per_s": batch / f["median_s"], "latency_ms": f["median_s"] * 1000,
                          "times_s": fwd[source]}
        if train:
            t = _stats(step[source])
            row["train"] = {**t, "images_per_s": batch / t["median_s"], "times_s": step[source]}
        for part in ("forward", "train"):
            if part in row:  # achieved GFLOP/s from the oracle's multiply-adds
                work = protocol.TRAIN_WORK if part == "train" else 1
                row[part]["gflops"] = 2 * work * macs * row[part]["images_per_s"] / 1e9
        row["peak_gpu_bytes"] = runner.peak_gpu_bytes()
        row["peak_rss_bytes"] = peak_rss_bytes()  # of the group: spec-built and hand-written live together
    return [rows[s] for s in sources]


PEAK_DTYPES = ("float32", "bfloat16")


def run(specs: list[shared_spec.Spec], keys: list[str], *, batches: list[int], modes: list[str], device: str,
        repeats: int, warmup: int, train: bool, handwritten: bool, exports: bool = True, progress=None) -> dict:
    say = progress or (lambda message: __import__("contextlib").nullcontext())
    fw_registry.check_backends(keys, "bench")  # Keras on another backend: exit 2, not a cell of the table
    rows, status, peaks = [], {}, {}
    for key in fw_registry.import_order(keys):  # MXNet before TensorFlow, whatever the order asked for
        try:
            fw_registry.load(key, tensorflow_backend=True)
            status[key] = {"status": "ok"}
        except fw_registry.FrameworkMissing as exc:
            status[key] = {"status": "missing", "hint": str(exc)}
    for key in keys:
        if status[key]["status"] != "ok":
            continue
        module = fw_registry.part(key, "bench")
        key_modes = [mode for mode in modes if mode in getattr(module, "MODES", MODES)]  # onnx: no bf16
        if not key_modes:
            continue
        # a device the framework cannot use is bad input (exit 2), checked once before any measurement
        module.resolve_device(device)
        with say(f"measuring {key}'s matmul peak"):
            peaks[key] = {dtype: module.peak_gflops(device, dtype) for dtype in PEAK_DTYPES}
        can_train = train and fw_registry.FRAMEWORKS[key].can("train")
        exporters = [k for k in keys if exports and k != key and status[k]["status"] == "ok"
                     and fw_registry.has_part(k, "onnx_export")] if key == "onnx" else []
        for spec in specs:
            sources = ["spec"] + (["hand"] if handwritten and key != "onnx" and spec.variant == HAND_WRITTEN_VARIANT
                                  and not spec.aux_logits else [])
            with tempfile.TemporaryDirectory(prefix="googlenet-bench-") as folder:
                files, failed = {}, []
                for other in exporters:
                    with say(f"exporting {other} {spec.variant} to ONNX"):
                        try:
                            files[EXPORT + other] = export_file(other, spec, folder)
                        except Exception as exc:  # the row says what failed; the other rows still run
                            failed.append({"framework": key, "variant": spec.variant, "source": EXPORT + other,
                                           "error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
                for batch in batches:
                    for mode in key_modes:
                        with say(f"benchmarking {key} {spec.variant} batch {batch} {mode}"):
                            rows.extend(bench_group(key, spec, sources=sources + list(files), mode=mode,
                                                    batch=batch, device=device, repeats=repeats, warmup=warmup,
                                                    train=can_train, files=files))
                        rows.extend({**row, "mode": mode, "batch": batch} for row in failed)
    for row in rows:  # a bf16 row's share is of the bf16 peak where the framework has one, else of fp32's
        of = peaks.get(row["framework"], {})
        dtype = "bfloat16" if row.get("mode") == "bf16" and of.get("bfloat16") else "float32"
        for part in ("forward", "train"):
            if part in row and of.get(dtype):
                row[part]["peak_share"] = row[part]["gflops"] / of[dtype]
                row[part]["peak_dtype"] = dtype
    return {"suite_version": shared_spec.__version__, "frameworks": status, "peaks_gflops": peaks, "rows": rows,
            "speedups": _speedups(rows), "bf16": _bf16(rows), "spec_vs_hand": _ratios(rows)}


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


def _model(source: str) -> str:
    return {"spec": "spec", "hand": "hand-written"}.get(source, source.replace(EXPORT, "") + " export")


def _work(part: dict | None) -> list[str]:
    if not part:
        return ["-", "-"]
    share = part.get("peak_share")
    return [f"{part['gflops']:.1f}", f"{100 * share:.0f}%" if share is not None else "-"]


def _mb(value) -> str:
    return f"{value / 2**20:.0f} MiB" if value else "-"


def _ratio_cell(entry: dict, part: str) -> str:
    if part not in entry:
        return "-"
    q1, q3 = entry[f"{part}_spread"]
    return f"{entry[part]:.3f} [{q1:.3f}, {q3:.3f}]"


def render_result(result: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    header = ["framework", "variant", "batch", "mode", "model", "device", "fwd img/s", "fwd latency",
              "fwd IQR", "fwd GFLOP/s", "% peak", "train img/s", "train GFLOP/s", "% peak", "peak GPU", "peak RSS"]
    table = []
    blank = [""] * (len(header) - 7)
    for r in result["rows"]:
        if "error" in r:
            table.append([r["framework"], r["variant"], r["batch"], r["mode"], _model(r["source"]), "error",
                          r["error"], *blank])
            continue
        table.append([r["framework"], r["variant"], r["batch"], r["mode"], _model(r["source"]), r["device"],
                      f"{r['forward']['images_per_s']:.1f}", f"{r['forward']['latency_ms']:.1f} ms",
                      f"{r['forward']['iqr_s'] * 1000:.1f} ms", *_work(r.get("forward")),
                      f"{r['train']['images_per_s']:.1f}" if "train" in r else "-", *_work(r.get("train")),
                      _mb(r["peak_gpu_bytes"]), _mb(r["peak_rss_bytes"])])
    for key, st in result["frameworks"].items():
        if st["status"] != "ok":
            table.append([key, "", "", "", "", "missing", st["hint"], *blank])
    text = render.render_table("googlenet-suite bench (median over repeats)", header, table, fmt)
    peaks = result.get("peaks_gflops", {})
    if peaks:
        rows = [[key, f"{p['float32']:.1f}" if p.get("float32") else "-",
                 f"{p['bfloat16']:.1f}" if p.get("bfloat16") else "- (no bf16 path here)"] for key, p in peaks.items()]
        n, conv = protocol.PEAK_MATMUL, "x".join(map(str, protocol.PEAK_CONV))
        text += "\n" + render.render_table(f"peak: the faster of a {n}x{n} matmul and a 3x3 conv {conv} "
                                           f"(batch x channels x side), best of "
                                           f"{protocol.PEAK_REPEATS}, GFLOP/s (% peak above: of fp32; bf16 rows of bf16 where "
                                           f"there is a bf16 peak)",
                                           ["framework", "fp32", "bf16"], rows, fmt)
    if result["speedups"]:
        rows = [[s["framework"], s["variant"], s["batch"], f"{s['forward']:.2f}x",
                 f"{s['train']:.2f}x" if "train" in s else "-"] for s in result["speedups"]]
        text += "\n" + render.render_table("fast / plain speed-up", ["framework", "variant", "batch", "forward",
                                                                    "train step"], rows, fmt)
    if result.get("bf16"):
        rows = [[s["framework"], s["variant"], s["batch"], _model(s["source"]), f"{s['forward']:.2f}x",
                 f"{s['train']:.2f}x" if "train" in s else "-",
                 (f"{s['max_abs_diff']:.2e} / {s['logit_scale']:.2e} = {s['relative']:.2e}"
                  if "relative" in s else "-")]
                for s in result["bf16"]]
        text += "\n" + render.render_table("bf16 against fp32 (fast): speed-up, and the logits' max abs diff from the "
                                           "same model's fp32 logits on the same batch / their scale",
                                           ["framework", "variant", "batch", "model", "forward", "train step",
                                            "logits: diff / scale = relative"], rows, fmt)
    if result["spec_vs_hand"]:
        rows = [[s["framework"], s["batch"], s["mode"], _ratio_cell(s, "forward"), _ratio_cell(s, "train"),
                 " / ".join(f"{s[f'{k}_of_medians']:.3f}" for k in ("forward", "train") if k in s),
                 "yes" if s["within_limit"] else "NO"]
                for s in result["spec_vs_hand"]]
        text += "\n" + render.render_table(f"spec-built / hand-written time, median of back-to-back pairs "
                                           f"[quartiles] (limit {RATIO_LIMIT})",
                                           ["framework", "batch", "mode", "forward", "train step",
                                            "ratio of medians", f"<= {RATIO_LIMIT}"], rows, fmt)
    return text


def plot(result: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "forward" in r and r["source"] == "spec"]
    labels = sorted({f"{r['variant']}\nbatch {r['batch']}" for r in rows})
    series = sorted({(r["framework"], r["mode"]) for r in rows})
    fig, ax = plt.subplots(figsize=(max(6, 1.8 * len(labels) * max(1, len(series)) / 3), 4.5))
    width = 0.8 / max(1, len(series))
    for i, (key, mode) in enumerate(series):
        values = []
        for label in labels:
            match = [r for r in rows if f"{r['variant']}\nbatch {r['batch']}" == label
                     and r["framework"] == key and r["mode"] == mode]
            values.append(match[0]["forward"]["images_per_s"] if match else 0)
        ax.bar([x + i * width for x in range(len(labels))], values, width, label=f"{key} ({mode})")
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))], labels)
    ax.set_ylabel("eval forward, images/s")
    devices = sorted({r["device"] for r in rows})
    ax.set_title(f"googlenet-suite bench on {', '.join(devices)}")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
