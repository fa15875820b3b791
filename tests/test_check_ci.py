"""``check`` and ``compare`` as a CI gate: JUnit XML (``--junit``), Markdown that renders in GitHub and GitLab
(pipes escaped, blank lines around tables), ``--tolerance``, and misuse (a bad ``--map``, a bad option) as one line
and exit 2, with nothing written."""

from __future__ import annotations

from pathlib import Path

import json
import xml.etree.ElementTree as ET

import pytest

pytest.importorskip("torch")

from googlenet_suite.cli import main  # noqa: E402

pytestmark = pytest.mark.torch

FIXTURES = Path(__file__).resolve().parent / "fixtures"
SPEC = f"{FIXTURES}/traps.json"
MODELS = f"{FIXTURES}/trap_models_torch.py"


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of every table row, split as GitHub does: on pipes not escaped."""
    rows = []
    for line in markdown.splitlines():
        if line.startswith("|") and not line.startswith("|---"):
            cells = line.replace("\\|", "\0").strip("|").split("|")
            rows.append([cell.strip().replace("\0", "|") for cell in cells])
    return rows


def tables_stand_between_blank_lines(markdown: str) -> bool:
    lines = markdown.splitlines()
    for k, line in enumerate(lines):
        inside = line.startswith("|")
        if inside and k and not lines[k - 1].startswith("|") and lines[k - 1].strip():
            return False
        if inside and k + 1 < len(lines) and not lines[k + 1].startswith("|") and lines[k + 1].strip():
            return False
    return True


# --------------------------------------------------------------------------- check


def test_check_markdown_renders_and_junit_names_the_finding(capsys, tmp_path):
    junit = tmp_path / "check.xml"
    code, out, err = run(capsys, "check", "conv_s2", "--spec", SPEC, "--torch", f"{MODELS}:same_padding",
                         "--format", "markdown", "--junit", junit)
    assert code == 1, err
    assert tables_stand_between_blank_lines(out)
    header = ["layer", "status", "your tensor", "max abs diff", "scale"]
    rows = table_rows(out)
    assert rows[0] == header and all(len(row) == len(header) for row in rows[1:rows.index(["trap", "what",
                                                                                            "max abs diff vs yours"])])
    assert out.rstrip().splitlines()[-1].startswith("**conv_s2 vs ") and "DIVERGES" in out.splitlines()[-1]
    root = ET.parse(junit).getroot()
    assert root.tag == "testsuite" and int(root.get("failures")) >= 2  # conv1, the logits, the walk's departures
    failures = {case.get("name"): case.find("failure") for case in root.iter("testcase")
                if case.find("failure") is not None}
    assert "reproduced by: TF/Keras 'same' padding at stride 2" in failures["conv1"].get("message")
    assert "logits" in failures and "walk: conv1" in failures


def test_the_json_report_is_strict_json(capsys):
    """A trap whose output has another shape than any tensor of yours is null, not Infinity."""
    code, out, _ = run(capsys, "check", "conv_s2", "--spec", SPEC, "--torch", f"{MODELS}:same_padding",
                       "--format", "json")

    def refuse(name):
        raise ValueError(f"not strict JSON: {name}")

    result = json.loads(out, parse_constant=refuse)
    assert code == 1 and any(t["max_abs_diff"] is None for t in result["first_divergence"]["traps"])


def test_tolerance_decides_the_verdict(capsys):
    argv = ["check", "conv_s2", "--spec", SPEC, "--torch", f"{MODELS}:off_by_a_percent", "--format", "json"]
    code, out, _ = run(capsys, *argv)
    assert code == 1 and json.loads(out)["tolerance"] == 1e-4
    code, out, _ = run(capsys, *argv, "--tolerance", "0.5")
    result = json.loads(out)
    assert code == 0 and result["agree"] and result["tolerance"] == 0.5


@pytest.mark.parametrize("value", ["0", "-1", "abc", "inf"])
def test_a_bad_tolerance_is_one_line(capsys, value):
    code, out, err = run(capsys, "check", "conv_s2", "--spec", SPEC, "--torch", f"{MODELS}:conv_s2_ok",
                         "--tolerance", value)
    assert code == 2 and out == "" and "--tolerance" in err and "Traceback" not in err


@pytest.mark.parametrize("content,expected", [
    ("{not json", "not JSON"),
    ('{"(unclosed": "conv1.conv.weight"}', "rule 1: bad regex '(unclosed'"),
    ('{"rules": [], "extra": 1}', "unknown key 'extra' beside 'rules'"),
    ('[1, 2]', 'expected {"regex": "spec key", ...} or {"rules"'),
    ('{"^0\\\\.0\\\\.weight$": "conv9.conv.weight"}', "which is no spec key of 'd2l'"),
    ('{"^(0)\\\\.0\\\\.weight$": "\\\\2.conv.weight"}', "invalid group reference 2"),
])
def test_a_bad_map_is_one_line_and_writes_nothing(capsys, tmp_path, content, expected):
    rules, report, junit = tmp_path / "map.json", tmp_path / "check.json", tmp_path / "check.xml"
    rules.write_text(content)
    code, out, err = run(capsys, "check", "d2l", "--input-size", 32, 32, "--torch", f"{FIXTURES}/d2l_torch.py:net",
                         "--map", rules, "--output", report, "--junit", junit)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and "Traceback" not in err
    assert lines[-1].startswith(f"error: --map") and expected in lines[-1], lines[-1]
    assert not report.exists() and not junit.exists()


def test_output_and_junit_must_differ(capsys, tmp_path):
    same = tmp_path / "report"
    code, _, err = run(capsys, "check", "conv_s2", "--spec", SPEC, "--torch", f"{MODELS}:conv_s2_ok",
                       "--output", same, "--junit", same)
    assert code == 2 and "--output and --junit name the same file" in err


# --------------------------------------------------------------------------- compare


@pytest.mark.cross
def test_compare_markdown_and_junit(capsys, tmp_path):
    pytest.importorskip("mxnet")
    junit = tmp_path / "compare.xml"
    code, out, err = run(capsys, "compare", "d2l", "--input-size", 32, 32, "--frameworks", "torch,mxnet",
                         "--format", "markdown", "--junit", junit, "--tolerance", "1e-3")
    assert code == 0, err
    assert tables_stand_between_blank_lines(out)
    rows = table_rows(out)
    width = len(rows[0])
    assert all(len(row) == width for row in rows)  # no row split by a pipe in its text
    assert ["max |logit|"] == [row[0] for row in rows if row[0].startswith("max |")]
    assert out.rstrip().splitlines()[-1] == "**d2l: AGREE: torch, mxnet (max abs diff " + \
        out.rstrip().splitlines()[-1].split("(max abs diff ")[1]
    root = ET.parse(junit).getroot()
    cases = {case.get("name"): case for case in root.iter("testcase")}
    assert set(cases) == {"torch", "mxnet"} and root.get("failures") == "0" and root.get("tests") == "2"


def test_compare_junit_fails_a_missing_framework_with_require_all(capsys, tmp_path, monkeypatch):
    from googlenet_suite import frameworks as fw_registry

    real = fw_registry.load

    def fake(key):
        if key == "mxnet":
            raise fw_registry.FrameworkMissing("MXNet Gluon is not installed")
        return real(key)

    monkeypatch.setattr(fw_registry, "load", fake)
    junit = tmp_path / "compare.xml"
    code, _, err = run(capsys, "compare", "d2l", "--input-size", 32, 32, "--frameworks", "torch,mxnet",
                       "--junit", junit, "--require-all", "--format", "json")
    assert code == 1, err
    failure = next(case for case in ET.parse(junit).getroot().iter("testcase") if case.get("name") == "mxnet")
    assert failure.find("failure") is not None and "INCOMPLETE" in failure.find("failure").get("message")
    code, _, err = run(capsys, "compare", "d2l", "--input-size", 32, 32, "--frameworks", "torch,mxnet",
                       "--junit", junit, "--format", "json")
    assert code == 0, err
    skipped = next(case for case in ET.parse(junit).getroot().iter("testcase") if case.get("name") == "mxnet")
    assert skipped.find("skipped") is not None
