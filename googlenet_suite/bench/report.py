"""A bench result as a table (rich, Markdown) or JSON, and as a plot: every figure with its spread, its
thread count and its warnings beside it."""

from __future__ import annotations

import json

from .. import render
from .session import BUSY_CORES, RATIO_LIMIT
from .worker import EXPORT


def _model(source: str) -> str:
    return {"spec": "spec", "hand": "hand-written"}.get(source, source.replace(EXPORT, "") + " export")


def _part(figures: dict | None) -> list[str]:
    """img/s, its spread, GFLOP/s and the share of the machine's limit; dashes where the part was not timed."""
    if not figures:
        return ["-"] * 4
    share = figures.get("limit_share")
    return [f"{figures['images_per_s']:.1f}", f"{100 * figures['spread']:.0f}%", f"{figures['gflops']:.1f}",
            f"{100 * share:.0f}%" if share is not None else "-"]


def _mb(value) -> str:
    return f"{value / 2**20:.0f} MiB" if value else "-"


def _threads(row: dict) -> str:
    threads = row.get("threads") or {}
    return f"{threads.get('intra', '?')}/{threads.get('inter', '?')}"


def _ratio_cell(entry: dict, part: str) -> str:
    if part not in entry:
        return "-"
    q1, q3 = entry[f"{part}_spread"]
    return f"{entry[part]:.3f} [{q1:.3f}, {q3:.3f}]"


def machine_line(result: dict) -> str:
    """The CPU, the cores used and the threads: what every figure of the result depends on."""
    described = result.get("machine") or {}
    threads = result.get("threads") or {}
    return (f"{described.get('cpu', '?')}, {described.get('cores', '?')} of {described.get('cpu_count', '?')} cores, "
            f"{threads.get('intra', '?')} intra-op / {threads.get('inter', '?')} inter-op threads, "
            f"{str(threads.get('wait', '?')).lower()} waits")


def versions_line(result: dict) -> str:
    return ", ".join(f"{name} {version}" for name, version in sorted((result.get("versions") or {}).items()))


HEADER = ["framework", "variant", "batch", "mode", "model", "device", "threads", "fwd img/s", "IQR", "GFLOP/s",
          "% limit", "train img/s", "IQR", "GFLOP/s", "% limit", "peak RSS", "warnings"]


def render_result(result: dict, fmt: str) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    gpu = any(r.get("peak_gpu_bytes") for r in result["rows"])
    header = HEADER[:-1] + (["peak GPU"] if gpu else []) + HEADER[-1:]
    table = []
    for r in result["rows"]:
        first = [r["framework"], r["variant"], r["batch"], r["mode"], _model(r["source"])]
        if "error" in r:
            table.append([*first, "error", _threads(r), r["error"], *[""] * (len(header) - 8)])
            continue
        warnings = r.get("warnings", [])
        table.append([*first, r["device"], _threads(r), *_part(r.get("forward")), *_part(r.get("train")),
                      _mb(r.get("peak_rss_bytes")), *([_mb(r.get("peak_gpu_bytes"))] if gpu else []),
                      ("! " + "; ".join(warnings)) if warnings else "ok"])
    for key, st in result["frameworks"].items():
        if st["status"] != "ok":
            table.append([key, "", "", "", "", "missing", "", st["hint"], *[""] * (len(header) - 8)])
    text = render.render_table(f"googlenet-suite bench on {machine_line(result)} (median over repeats; IQR: the "
                               f"interquartile range, of the median; % limit: of the machine's best measured rate)",
                               header, table, fmt)
    text += _limit_table(result, fmt)
    warnings = result.get("warnings") or []
    flagged = sum(1 for r in result["rows"] if r.get("warnings"))
    if flagged:
        warnings = [f"{flagged} of {len(result['rows'])} rows flagged: their figures are not to be trusted as they "
                    f"stand (see each row's warnings; rerun on a quiet machine)", *warnings]
    if warnings:
        text += "\n" + render.render_table("warnings", ["warning"], [[w] for w in warnings], fmt)
    if result.get("notes"):
        text += "\n" + render.render_table("notes", ["note"], [[n] for n in result["notes"]], fmt)
    text += _derived_tables(result, fmt)
    return text


def _limit_table(result: dict, fmt: str) -> str:
    peaks = result.get("peaks_gflops") or {}
    if not peaks:
        return ""

    def cell(value, missing="-"):
        return f"{value:.1f}" if value else missing

    def busy(peak) -> bool:  # measured while others used our cores: flagged in the warnings below
        return ((peak.get("machine") or {}).get("others_cores") or 0) > BUSY_CORES

    rows = [[key + (" (busy: see warnings)" if busy(p) else ""), cell(p.get("float32")),
             cell(p.get("bfloat16"), "- (no bf16 path here)")] for key, p in peaks.items()]
    limit = result.get("limit") or {}
    rows.append(["machine limit (best of the above)", *(cell(limit.get(d, {}).get("gflops")) + (
        f" ({limit[d]['framework']})" if d in limit else "") for d in ("float32", "bfloat16"))])
    estimate = (result.get("machine") or {}).get("estimate")
    if estimate:
        rows.append([f"estimate: {estimate['how']}", cell(estimate.get("float32")), cell(estimate.get("bfloat16"))])
    timing = result.get("peak_protocol") or {}
    what = (f"the faster of a {timing['matmul']}x{timing['matmul']} matmul and a 3x3 convolution "
            f"{'x'.join(map(str, timing['conv']))} (batch x channels x side), best of {timing['repeats']}"
            if timing else "the faster of a matmul and a 3x3 convolution")
    return "\n" + render.render_table(f"peak GFLOP/s per framework: {what}", ["framework", "fp32", "bf16"], rows, fmt)


def _derived_tables(result: dict, fmt: str) -> str:
    text = ""
    if result.get("speedups"):
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
    if result.get("spec_vs_hand"):
        rows = [[s["framework"], s["batch"], s["mode"], _ratio_cell(s, "forward"), _ratio_cell(s, "train"),
                 " / ".join(f"{s[f'{k}_of_medians']:.3f}" for k in ("forward", "train") if k in s),
                 "yes" if s["within_limit"] else "NO"]
                for s in result["spec_vs_hand"]]
        text += "\n" + render.render_table(f"spec-built / hand-written time, median of back-to-back pairs "
                                           f"[quartiles] (limit {RATIO_LIMIT})",
                                           ["framework", "batch", "mode", "forward", "train step",
                                            "ratio of medians", f"<= {RATIO_LIMIT}"], rows, fmt)
    return text


# --------------------------------------------------------------------------- the plot


def _bars(ax, rows, labels, series, value, error=None, colors=None) -> None:
    width = 0.8 / max(1, len(series))
    for i, name in enumerate(series):
        heights, low, high, flagged = [], [], [], []
        for label in labels:
            match = [r for r in rows if (r["variant"], r["batch"]) == label and (r["framework"], r["mode"]) == name]
            v = value(match[0]) if match else None
            heights.append(v or 0)
            lo, hi = error(match[0]) if match and v and error else (v or 0, v or 0)
            low.append((v or 0) - lo)
            high.append(hi - (v or 0))
            flagged.append(bool(match and match[0].get("warnings")))
        xs = [x + i * width for x in range(len(labels))]
        bars = ax.bar(xs, heights, width, label=f"{name[0]} ({name[1]})", color=colors[i] if colors else None,
                      yerr=[low, high] if error else None, capsize=3)
        for bar, bad in zip(bars, flagged):
            if bad:
                bar.set_hatch("///")
                bar.set_edgecolor("red")
    ax.set_xticks([x + width * (len(series) - 1) / 2 for x in range(len(labels))],
                  [f"{v}\nbatch {b}" for v, b in labels])


def _images_range(part: str):
    """images/s at the slow (q3 time) and fast (q1 time) quartiles: the error bar."""
    def error(row):
        return row["batch"] / row[part]["q3_s"], row["batch"] / row[part]["q1_s"]
    return error


def plot(result: dict, path: str) -> None:
    """Forward and training-step images/s with their interquartile range, and peak RSS, per framework and
    mode (spec-built rows); flagged bars hatched in red; the machine and versions in the title."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in result["rows"] if "forward" in r and r["source"] == "spec"]
    labels = sorted({(r["variant"], r["batch"]) for r in rows}, key=lambda vb: (vb[0], vb[1]))
    series = sorted({(r["framework"], r["mode"]) for r in rows})
    width = max(12, 1.2 * len(labels) * max(1, len(series)))
    fig, axes = plt.subplots(1, 3, figsize=(width, 5.6))
    palette = plt.get_cmap("tab20").colors  # 20 distinct colours: the default cycle repeats after 10 series
    colors = [palette[i % len(palette)] for i in range(len(series))]
    panels = (("eval forward, images/s", lambda r: r["forward"]["images_per_s"], _images_range("forward")),
              ("training step, images/s", lambda r: r.get("train", {}).get("images_per_s"), None),
              ("peak RSS of its process, MiB", lambda r: (r.get("peak_rss_bytes") or 0) / 2**20, None))
    for ax, (title, value, error) in zip(axes, panels):
        if title.startswith("training"):
            trained = [r for r in rows if "train" in r]
            _bars(ax, trained, labels, series, value, _images_range("train") if trained else None, colors)
        else:
            _bars(ax, rows, labels, series, value, error, colors)
        ax.set_title(title, fontsize=10)
    handles, names = axes[0].get_legend_handles_labels()  # one legend below the panels, over no bar
    fig.legend(handles, names, loc="lower center", ncol=min(6, len(names)), fontsize=8)
    flagged = sum(1 for r in rows if r.get("warnings"))
    note = f"; hatched red: flagged ({flagged} rows, see the warnings)" if flagged else "; no row flagged"
    fig.suptitle(f"googlenet-suite bench: {machine_line(result)}\n{versions_line(result)}\n"
                 f"error bars: interquartile range{note}", fontsize=9)
    fig.tight_layout(rect=(0, 0.1 if len(series) > 6 else 0.06, 1, 1))
    fig.savefig(path, dpi=120, format="png")
    plt.close(fig)
