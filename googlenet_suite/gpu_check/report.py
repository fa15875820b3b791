"""The GPU check's verdict, its targets, and the markdown report (the tables for docs/gpu.md)."""

from __future__ import annotations

from .. import harness
from .common import TARGETS


def targets(bench: dict, on_gpu: bool, device_name: str) -> dict:
    """The best fast (bf16) images/s against the H200 targets; judged only on a GPU, for googlenet at 224."""
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


def _fmt(value, spec="{:.2e}") -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return spec.format(value)
    return str(value)


def _status(row: dict) -> str:
    """A row's result, with its reason where it did not run."""
    why = row.get("error") or row.get("reason") or ""
    return f"{row['status']}: {why}" if row["status"] in ("error", "skipped") else row["status"]


def _shape(values) -> str:
    return "x".join(map(str, values)) if values else "—"


def _environment(env: dict) -> list[str]:
    lines = ["| environment | |", "|---|---|"]
    for key, label in (("device_name", "device"), ("device_memory_gib", "device memory (GiB)"),
                       ("compute_capability", "compute capability"), ("driver", "driver"), ("python", "python"),
                       ("numpy", "numpy"), ("torch", "torch"), ("torch_cuda", "CUDA (torch)"), ("cudnn", "cuDNN"),
                       ("jax", "jax"), ("keras", "keras"), ("onnxruntime", "onnxruntime")):
        if key in env:
            lines.append(f"| {label} | {_fmt(env[key], '{:g}')} |")
    return lines


def _equivalence(eq: dict) -> list[str]:
    lines = ["", f"PyTorch builder, {eq['under_test']} vs {eq['reference']} (same reference weights):", "",
             "| variant | input | logits max abs diff | logit scale | layers | worst layer (diff / max(1, scale)) "
             "| result |", "|---|---|---|---|---|---|---|"]
    for row in eq["variants"]:
        worst = row.get("worst_layer") or {}
        lines.append(f"| {row['variant']} | {_shape(row.get('input'))} | {_fmt(row.get('logits_max_abs_diff'))} | "
                     f"{_fmt(row.get('logit_scale'), '{:.3g}')} | {_fmt(row.get('layers_compared'))} | "
                     f"{worst.get('name', '—')} {_fmt(worst.get('relative'))} | {_status(row)} |")
    step = eq.get("train_step") or {}
    if step:
        lines += ["", "| train_step | input | loss | loss rel. diff | input grad rel. diff | worst weight rel. diff "
                  "| result |", "|---|---|---|---|---|---|---|"]
        lines.append(f"| {step['variant']} ({step['overrides']}) | {_shape(step.get('input'))} | "
                     f"{_fmt(step.get('loss'), '{:.4f}')} | {_fmt(step.get('loss_relative_diff'))} | "
                     f"{_fmt(step.get('input_grad_relative_diff'))} | "
                     f"{_fmt((step.get('weights_worst') or {}).get('relative'))} | {_status(step)} |")
    if eq.get("note"):
        lines += ["", f"Note: {eq['note']}."]
    return lines


def _keras(ks: dict) -> list[str]:
    lines = ["", f"Keras builder (impl_tf) against {ks['reference']}:", "",
             "| backend | variant | logits max abs diff | logit scale | result |", "|---|---|---|---|---|"]
    for backend, entry in ks["backends"].items():
        name = f"{backend} ({entry['framework_version']})" if entry.get("framework_version") else backend
        if not entry.get("cases"):
            why = entry.get("reason") or entry.get("error")
            lines.append(f"| {name} | — | — | — | {entry['status']}: {why} |")
        for row in entry.get("cases", []):
            lines.append(f"| {name} | {row['variant']} | {_fmt(row.get('logits_max_abs_diff'))} | "
                         f"{_fmt(row.get('logit_scale'), '{:.3g}')} | {row['status']}"
                         f"{': ' + row['error'] if row.get('error') else ''} |")
    return lines


def _bench(bench: dict, device: str) -> list[str]:
    lines = ["", f"torch benchmark, {bench['variant']} {_shape(bench.get('input'))} ({device}): "
             f"plain = {bench['plain']}; fast = {bench['fast']}; train = {bench['optimizer']}; {bench['statistic']} "
             f"({bench['repeats']} after {bench['warmup']} warm-up).", "",
             "| pass | mode | batch | images/s | median ms | peak memory (MiB) | first call (s) "
             "| bf16 vs fp32 max logit diff |", "|---|---|---|---|---|---|---|---|"]
    for row in bench.get("rows", []):
        if row["status"] != "ok":
            lines.append(f"| {row['kind']} | {row['mode']} | {row['batch']} | {_status(row)} | | | | |")
            continue
        mem = row.get("peak_memory_bytes")
        diff = row.get("bf16_max_logit_diff")
        scale = f" (scale {row['fp32_logit_scale']:.3g})" if diff is not None else ""
        lines.append(f"| {row['kind']} | {row['mode']} | {row['batch']} | {row['images_per_s']:,.0f} | "
                     f"{row['median_s'] * 1e3:.2f} | {_fmt(mem / 2**20 if mem is not None else None, '{:,.0f}')} | "
                     f"{row['first_call_s']:.1f} | {_fmt(diff)}{scale} |")
    if bench.get("error"):
        lines.append(f"\nbenchmark error: {bench['error']}")
    return lines


def render_markdown(report: dict) -> str:
    env = report["environment"]
    device = env.get("device_name") if env["device"] != "cpu" else f"CPU ({env.get('device_name')}, --cpu)"
    mode = report["mode"]
    lines = [f"### GPU check: {device}", "",
             f"{report['verdict']}: `scripts/gpu-check{' --cpu' if mode['cpu'] else ''}"
             f"{' --quick' if mode['quick'] else ''}{' --variant ' + mode['variant'] if mode.get('variant') else ''}`, "
             f"{report['started']}, "
             f"{report['wall_s']:.0f} s. Tolerance {harness.TOLERANCE:g} (fp32, TF32 off).", ""]
    lines += _environment(env) + _equivalence(report["torch_equivalence"]) + _keras(report["keras"])
    lines += _bench(report["bench"], device)
    lines += ["", "| target (torch bf16, googlenet 224, H200) | images/s | best measured | batch | status |",
              "|---|---|---|---|---|"]
    for kind, entry in report["targets"].items():
        lines.append(f"| {kind} | >= {entry['target_images_per_s']:,.0f} | "
                     f"{_fmt(entry['best_images_per_s'], '{:,.0f}')} | {_fmt(entry['best_batch'])} | "
                     f"{entry['status']}{' (' + entry['reason'] + ')' if entry.get('reason') else ''} |")
    if report["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
