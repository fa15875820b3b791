"""Render harness, oracle and check results as a rich table, Markdown (GitHub and GitLab), JSON or JUnit XML.

Markdown: a cell's ``|`` is escaped and every table stands between blank lines, so a verdict line after it is a
paragraph of its own. JUnit (``xml.etree``): one test case per framework (compare) or per layer (check), a failure
carrying the finding, for CI systems that read test reports.
"""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET

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
    stat(f"max abs diff vs {report['reference']}", None, "max_abs_diff", _fmt_diff)
    stat("relative to max(1, |logit|)", None, "max_relative_diff", _fmt_diff, lambda v: v is not None and not v <= tol)
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
            out.append(_markdown(title, header, rows) + f"\n**{_cell(report['verdict'])}**\n")
        else:
            out.append(_rich_table(title, header, rows) + report["verdict"] + "\n")
    return "\n".join(out)


def _cell(text) -> str:
    """A Markdown table cell (or a line after one): pipes escaped, on one line."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _markdown(title, header, rows) -> str:
    """A heading, a blank line, the table, a blank line (GitHub and GitLab end a table only at a blank line)."""
    lines = [f"### {_cell(title)}", "", "| " + " | ".join(_cell(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    for row in rows:
        lines.append("| " + " | ".join(f"**{_cell(text)}** :x:" if bad and text else _cell(text)
                                       for text, bad in row) + " |")
    return "\n".join(lines) + "\n"


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


# --------------------------------------------------------------------------- check


def _diff_text(value) -> str:
    return "-" if value is None else f"{value:.2e}"


def render_check(result, fmt: str) -> str:
    """A :class:`googlenet_suite.check.CheckResult` as a table, Markdown or JSON."""
    if fmt == "json":
        return json.dumps(result.to_dict(), indent=2, default=float) + "\n"
    rows = [[row.name, row.status + (f" ({row.view})" if row.view else ""), row.record or "-",
             _diff_text(row.max_abs_diff), "-" if row.scale is None else f"{row.scale:.3g}"] for row in result.layers]
    if result.logits is not None:
        rows.append(["logits", "agree" if result.logits.agree else "differs", "output",
                     _diff_text(result.logits.max_abs_diff), f"{result.logits.scale:.3g}"])
    title = (f"{result.variant}: {result.model} vs the suite's weights (seed {result.input.seed}, from "
             f"{result.reference}), input {tuple(result.input.shape)}")
    if result.architecture is not None and result.architecture.where == "weights":
        title += ": they do not fit, so shapes only, your model with its own weights"
    text = render_table(title, ["layer", "status", "your tensor", "max abs diff", "scale"], rows, fmt)
    arch = result.architecture
    if arch is not None:
        text += render_table(f"another architecture ({arch.where})", ["layer", "the variant", "yours", "your tensor",
                                                                        "cause"],
                             [[arch.layer or "-", shape_text(arch.expected), shape_text(arch.yours), arch.tensor or "-",
                               f"{arch.trap}: {arch.cause}" if arch.trap else "no known trap"]], fmt)
    first = result.first_divergence
    if first is not None and first.traps:
        text += render_table(f"traps re-run at {first.layer} (input: {first.input_from})",
                             ["trap", "what", "max abs diff vs yours"],
                             [[t.trap, t.detail, f"{t.max_abs_diff:.2e}"] for t in first.traps], fmt)
    if result.departures:
        walk = result.walk
        text += render_table(f"every departure from the spec, each layer re-run from your input to it "
                             f"({walk.as_the_spec} of {walk.layers} layers from {first.layer} on are as the spec)",
                             ["layer", "status", "what"], [[d.layer, d.status, d.detail] for d in result.departures],
                             fmt)
    if result.in_weights:
        text += render_table("in your parameters", ["trap", "what", "layers", "first (yours)"],
                             [[f.trap, f.detail, str(f.layers), f"{f.first} ({f.module})"] for f in result.in_weights],
                             fmt)
    if fmt == "markdown":  # notes as a list, the verdict a paragraph of its own
        notes = "".join(f"- note: {_cell(note)}\n" for note in result.mapping.notes)
        return text + (notes + "\n" if notes else "") + f"**{_cell(result.verdict)}**\n"
    return text + "".join(f"note: {note}\n" for note in result.mapping.notes) + result.verdict + "\n"


FAILING = {"differs", "missing", "shape differs"}


def junit_check(result) -> str:
    """JUnit XML: one test case per spec layer the check reached, one for the logits, one for the architecture
    when it differs and one per departure of the walk; the finding in each failure."""
    suite = ET.Element("testsuite", name=f"googlenet-suite check {result.variant}")
    classname = f"check.{result.variant}"
    first = result.first_divergence
    arch = result.architecture
    for row in result.layers:
        case = ET.SubElement(suite, "testcase", classname=classname, name=row.name)
        if row.status == "not recorded":
            ET.SubElement(case, "skipped", message="not recorded: your model does not expose this layer's output")
        elif row.status in FAILING:
            key_layer = (first and first.layer == row.name) or (arch and arch.layer == row.name)
            message = result.verdict if key_layer else f"{row.status} (max abs diff {_diff_text(row.max_abs_diff)})"
            ET.SubElement(case, "failure", message=message, type=row.status).text = message
    if arch is not None:
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"architecture ({arch.where})")
        ET.SubElement(case, "failure", message=result.verdict, type="architecture").text = result.verdict
    for found in result.in_weights:
        case = ET.SubElement(suite, "testcase", classname=classname, name=f"parameters: {found.trap}")
        ET.SubElement(case, "failure", message=found.text, type="parameters").text = found.text
    for departure in result.departures:
        case = ET.SubElement(suite, "testcase", classname=f"{classname}.walk", name=f"walk: {departure.layer}")
        ET.SubElement(case, "failure", message=departure.detail, type=departure.status).text = departure.detail
    case = ET.SubElement(suite, "testcase", classname=classname, name="logits")
    if result.logits is None:
        ET.SubElement(case, "skipped", message="the logits were not compared")
    elif not result.logits.agree:
        ET.SubElement(case, "failure", message=result.verdict, type="logits").text = result.verdict
    return _junit(suite)


def junit_compare(result: dict) -> str:
    """JUnit XML: one test suite per variant, one test case per framework; a framework that disagrees, fails or
    (with --require-all) is missing fails with the variant's verdict; one not installed otherwise is skipped."""
    root = ET.Element("testsuites", name="googlenet-suite compare")
    for report in result["variants"]:
        suite = ET.SubElement(root, "testsuite", name=f"googlenet-suite compare {report['variant']}")
        for key, res in report["frameworks"].items():
            case = ET.SubElement(suite, "testcase", classname=f"compare.{report['variant']}", name=key)
            if res["status"] == "missing" and not report["require_all"]:
                ET.SubElement(case, "skipped", message=f"not installed: {res.get('hint') or res.get('error', '')}")
            elif res["status"] != "ok" or not res.get("agree"):
                ET.SubElement(case, "failure", message=report["verdict"], type=res["status"]).text = report["verdict"]
        _count(suite)
    for name in ("tests", "failures", "skipped"):
        root.set(name, str(sum(int(s.get(name)) for s in root)))
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _count(suite) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(case.find("failure") is not None for case in cases)))
    suite.set("errors", "0")
    suite.set("skipped", str(sum(case.find("skipped") is not None for case in cases)))


def _junit(suite) -> str:
    _count(suite)
    return ET.tostring(suite, encoding="unicode", xml_declaration=True) + "\n"
