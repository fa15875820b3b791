"""Render harness and oracle results as a rich table, Markdown or JSON."""

from __future__ import annotations

import io
import json

from rich.console import Console
from rich.table import Table

from .frameworks import FRAMEWORKS

BAD = "bold red"


def shape_text(shape) -> str:
    if shape is None:
        return "-"
    return "(" + ", ".join(str(d) for d in shape) + ")"


def _fmt_int(value) -> str:
    return f"{value:,}" if isinstance(value, int) else "-"


def _fmt_s(value) -> str:
    return f"{value * 1000:.1f} ms" if isinstance(value, (int, float)) else "-"


def _fmt_diff(value) -> str:
    return f"{value:.2e}" if isinstance(value, float) else "-"


def compare_rows(report: dict, *, stages: bool) -> tuple[list[str], list[list[tuple[str, bool]]]]:
    """Header and rows of one variant's side-by-side table; each cell is (text, mismatch)."""
    oracle = report["oracle"]
    fws = report["frameworks"]
    keys = list(fws)
    header = ["layer", "oracle"] + [FRAMEWORKS[k].label for k in keys]
    by_name = {row["name"]: row for row in oracle["layers"]}
    if stages:
        names = [(f"{stage} ({last})", last) for stage, last in oracle["stages"].items()]
    else:
        names = [(row["name"], row["name"]) for row in oracle["layers"] if row["depth"] == 0]
    fw_layers = {k: {row["name"]: row for row in fws[k].get("layers", [])} for k in keys}
    rows = []
    for label, name in names:
        expected = by_name[name]["out_shape"]
        row = [(label, False), (shape_text(expected), False)]
        for k in keys:
            res = fws[k]
            if res["status"] != "ok":
                row.append((res["status"], False))
                continue
            got = fw_layers[k].get(name, {}).get("out_shape")
            row.append((shape_text(got), got != expected))
        rows.append(row)

    def stat(label, oracle_value, field, fmt, check=None):
        row = [(label, False), (fmt(oracle_value) if oracle_value is not None else "", False)]
        for k in keys:
            res = fws[k]
            value = res.get(field) if res["status"] == "ok" else None
            text = fmt(value) if res["status"] == "ok" else (res.get("hint") or res.get("error", ""))
            row.append((text, bool(check and res["status"] == "ok" and check(value))))
        rows.append(row)

    stat("trainable params", oracle["params"], "params", _fmt_int, lambda v: v != oracle["params"])
    stat("buffers", oracle["buffers"], "buffers", _fmt_int, lambda v: v != oracle["buffers"])
    rows.append([("MACs", False), (_fmt_int(oracle["macs"]), False)] + [("", False)] * len(keys))
    stat("device", None, "device", str)
    stat("version", None, "version", str)
    stat("build time", None, "build_s", _fmt_s)
    stat("forward time", None, "forward_s", _fmt_s)
    stat("max |logit|", None, "logit_scale", lambda v: f"{v:.3g}")
    tol = report["tolerance"]
    stat(f"max abs diff vs {report['reference']}", None, "max_abs_diff", _fmt_diff,
         lambda v: v is not None and v > tol)
    return header, rows


def render_compare(result: dict, fmt: str, *, stages: bool = False) -> str:
    if fmt == "json":
        return json.dumps(result, indent=2) + "\n"
    out = []
    for report in result["variants"]:
        header, rows = compare_rows(report, stages=stages)
        title = (f"{report['variant']}: input {shape_text(report['input']['shape'])}, "
                 f"{report['num_classes']} classes, aux {'on' if report['aux_logits'] else 'off'}, "
                 f"shared weights from {report['reference']}")
        if fmt == "markdown":
            out.append(_markdown(title, header, rows) + f"\n**{report['verdict']}**\n")
        else:
            out.append(_rich_table(title, header, rows) + report["verdict"] + "\n")
    return "\n".join(out)


def _markdown(title, header, rows) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"**{text}** :x:" if bad else text for text, bad in row) + " |")
    return "\n".join(lines)


def _rich_table(title, header, rows, width: int = 140) -> str:
    table = Table(title=title, title_justify="left")
    for i, name in enumerate(header):
        table.add_column(name, justify="left" if i == 0 else "right", overflow="fold")
    for row in rows:
        table.add_row(*[f"[{BAD}]{text} ✗[/]" if bad else text for text, bad in row])
    return to_text(table, width)


COLOR = {"enabled": False}  # the CLI turns colour on when stdout is a terminal


def to_text(renderable, width: int = 140) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, force_terminal=COLOR["enabled"],
            color_system="standard" if COLOR["enabled"] else None).print(renderable)
    return buffer.getvalue()


def render_table(title: str, header: list[str], rows: list[list[str]], fmt: str) -> str:
    if fmt == "markdown":
        return _markdown(title, header, [[(str(c), False) for c in row] for row in rows]) + "\n"
    return _rich_table(title, header, [[(str(c), False) for c in row] for row in rows])
