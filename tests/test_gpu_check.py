"""``googlenet-suite gpu-check`` rehearsed on the CPU: ``--cpu --quick`` writes the same files and sections as
the GPU run, through the command and through ``scripts/gpu-check`` (its thin entry point).

The GPU run itself (CUDA against the CPU, Keras on JAX and torch on the GPU, the H200 targets) needs the
GPU machine; here the check must run end to end, pass its (trivial, CPU-vs-CPU) equivalence checks,
write gpu_check.json with every section and figure and gpu_check.md with its tables, and print that
markdown. A bad option exits 2 with one line.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared_spec.protocol import cpu_has_bf16

pytestmark = [pytest.mark.torch, pytest.mark.slow]
pytest.importorskip("torch", reason="torch is not installed")

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "gpu-check"
# the two doors: the CLI's command, and scripts/gpu-check (the GPU machine's checkout, no pip install)
ENTRIES = {"command": [sys.executable, "-m", "googlenet_suite", "gpu-check"], "script": ["bash", str(SCRIPT)]}
BAD_OPTION_PREFIX = {"command": "error: googlenet-suite", "script": "gpu-check: error:"}
#: a case of the check's own logic (``main``, past its options), run through each door: the command's in the default
#: run; the script's, a few lines in front of the same ``main`` (test_the_script_is_a_thin_entry_point), with the
#: matrix (tox -e matrix): each door costs a child process importing torch, and the script's door is held in the
#: default run by the rehearsal (exit 0), the bad options (exit 2) and the missing jsonschema (exit 1)
DOORS = [pytest.param("command"), pytest.param("script", marks=pytest.mark.matrix)]


def _run(*args: str, entry: str = "script", timeout: float = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHON": sys.executable, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    env.pop("KERAS_BACKEND", None)
    return subprocess.run([*ENTRIES[entry], *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def cpu_run(tmp_path_factory):
    """The whole rehearsal, once, through the GPU machine's door (scripts/gpu-check: the checkout on PYTHONPATH,
    no pip install); the command's door runs the same ``googlenet_suite.gpu_check.main`` and is held to its
    options and exit codes by the tests below, each run through both doors."""
    out = tmp_path_factory.mktemp("gpu-check")
    proc = _run("--cpu", "--quick", "--out", str(out), entry="script")
    return proc, out


def test_cpu_quick_run_passes_and_writes_both_files(cpu_run):
    proc, out = cpu_run
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (out / "gpu_check.json").is_file()
    assert (out / "gpu_check.md").is_file()
    markdown = (out / "gpu_check.md").read_text()
    assert proc.stdout == markdown  # the markdown is what it prints
    assert "PASS in" in proc.stderr  # progress (with timestamps) goes to stderr
    assert "section 4: torch benchmark" in proc.stderr


def test_json_has_every_section_and_figure(cpu_run):
    proc, out = cpu_run
    report = json.loads((out / "gpu_check.json").read_text())
    assert report["schema"] == "googlenet-suite/gpu-check/1"
    assert report["mode"] == {"cpu": True, "quick": True}
    assert report["verdict"] == "PASS" and report["exit_code"] == 0 and report["failures"] == []
    assert report["wall_s"] > 0

    env = report["environment"]
    for key in ("python", "numpy", "torch", "torch_cuda", "device", "device_name", "jax", "keras", "fp32"):
        assert key in env, key
    assert env["device"] == "cpu"

    eq = report["torch_equivalence"]
    assert eq["tolerance"] == 1e-4
    assert [row["variant"] for row in eq["variants"]] == ["googlenet", "d2l"]
    for row in eq["variants"]:
        assert row["status"] == "pass", row
        assert row["logits_max_abs_diff"] <= 1e-4
        assert row["logit_scale"] > 0  # calibrated weights: the logits are not vanishingly small
        assert row["layers_compared"] > 50 and row["layers_failing"] == 0
        assert row["first_divergence"] is None
        assert set(row["worst_layer"]) == {"name", "max_abs_diff", "scale", "relative"}
    step = eq["train_step"]
    assert step["status"] == "pass", step
    for key in ("loss", "loss_relative_diff", "input_grad_relative_diff", "input_grad_scale", "weights_worst"):
        assert key in step, key
    assert step["loss"] > 0 and step["input_grad_scale"] > 0

    backends = report["keras"]["backends"]
    assert set(backends) == {"jax", "torch"}
    for backend, entry in backends.items():
        assert entry["status"] in ("pass", "skipped"), (backend, entry)
        if entry["status"] == "skipped":
            assert entry["reason"]
        else:
            assert entry["cases"] and all(c["logits_max_abs_diff"] <= 1e-4 for c in entry["cases"])

    bench = report["bench"]
    assert bench["batches"] == [1, 2]
    cells = {(r["kind"], r["mode"], r["batch"]) for r in bench["rows"]}
    assert cells == {(k, m, b) for k in ("forward", "train") for m in ("plain", "fast") for b in (1, 2)}
    for row in bench["rows"]:
        assert row["status"] == "ok", row
        assert row["images_per_s"] > 0 and row["median_s"] > 0 and row["timed_calls"] >= 1
        assert row["peak_memory_bytes"] is None  # CPU: no CUDA allocator to ask
        if row["kind"] == "forward" and row["mode"] == "fast" and cpu_has_bf16():
            assert row["bf16_max_logit_diff"] is not None and row["fp32_logit_scale"] > 0
        elif row["kind"] == "forward" and row["mode"] == "fast":  # no bf16 path: the rehearsal runs fp32
            assert "bf16_max_logit_diff" not in row and "no bf16 path" in bench["fast"]
        if row["kind"] == "train":
            assert row["loss"] > 0

    for kind in ("forward", "train"):
        target = report["targets"][kind]
        assert target["status"] == "not applicable"
        assert target["target_images_per_s"] == {"forward": 20_000, "train": 5_000}[kind]
        assert target["best_images_per_s"] > 0


def test_markdown_has_the_tables(cpu_run):
    _, out = cpu_run
    markdown = (out / "gpu_check.md").read_text()
    assert markdown.startswith("### GPU check: CPU")
    for header in ("| environment | |",
                   "| variant | input | logits max abs diff |",
                   "| train_step | input | loss |",
                   "| backend | variant | logits max abs diff |",
                   "| pass | mode | batch | images/s |",
                   "| target (torch bf16, googlenet 224, H200) |"):
        assert header in markdown, header
    assert "| forward | fast | 2 |" in markdown and "| train | plain | 1 |" in markdown
    assert "not applicable" in markdown


@pytest.mark.matrix  # a second whole rehearsal: the default run has the first
@pytest.mark.parametrize("variant", ["inception-v3"])
def test_cpu_quick_run_of_an_inception_v3_variant(variant, tmp_path):
    """``--variant``: every section on that variant, on the CPU at its smallest input (75x75), through the
    command's door; the aux head needs 299x299, so the training step runs without it."""
    proc = _run("--cpu", "--quick", "--variant", variant, "--out", str(tmp_path), entry="command")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert report["mode"] == {"cpu": True, "quick": True, "variant": variant}
    assert report["verdict"] == "PASS" and report["failures"] == []
    eq = report["torch_equivalence"]
    assert [(r["variant"], r["overrides"], r["status"]) for r in eq["variants"]] == [
        (variant, "input_size=75x75", "pass")]
    assert eq["variants"][0]["layers_compared"] > 90 and eq["variants"][0]["logits_max_abs_diff"] <= 1e-4
    step = eq["train_step"]
    assert (step["variant"], step["status"]) == (variant, "pass") and step["input"] == [2, 3, 75, 75]
    assert "aux_logits" not in step["overrides"] and "dropout=0.0" in step["overrides"]
    for backend, entry in report["keras"]["backends"].items():
        assert entry["status"] in ("pass", "skipped"), (backend, entry)
        for case in entry["cases"]:  # calibrated logits of O(100): the harness's rule, relative above 1
            assert case["variant"] == variant and case["logits_relative_diff"] <= 1e-4, case
            assert case["logits_relative_diff"] == case["logits_max_abs_diff"] / max(1.0, case["logit_scale"])
    bench = report["bench"]
    assert bench["variant"] == variant and bench["input"] == [3, 75, 75]
    assert bench["batches"] == [2]  # 1x1 maps at the end: BatchNorm cannot train on one image
    assert bench["rows"] and all(row["status"] == "ok" for row in bench["rows"]), bench["rows"]
    assert all(t["reason"] == "--cpu run" for t in report["targets"].values())
    assert f"--variant {variant}" in (tmp_path / "gpu_check.md").read_text()


@pytest.mark.matrix
@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_an_unknown_variant_exits_2_with_one_line_and_writes_nothing(entry, tmp_path):
    proc = _run("--cpu", "--quick", "--variant", "inception-v4", "--out", str(tmp_path / "out"), entry=entry,
                timeout=120)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "unknown variant 'inception-v4'" in lines[0] and "inception-v3" in lines[0], proc.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("args", [["--bogus"], ["--out"], ["--cpu", "extra"]])
def test_bad_option_exits_2_with_one_line(args, entry, tmp_path):
    proc = _run(*args, entry=entry, timeout=120)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(BAD_OPTION_PREFIX[entry]), proc.stderr


@pytest.mark.parametrize("entry", DOORS)
def test_an_out_that_cannot_be_made_exits_2_with_one_line(entry, tmp_path):
    (tmp_path / "file").write_text("")
    proc = _run("--cpu", "--quick", "--out", str(tmp_path / "file" / "results"), entry=entry, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--out" in lines[0] and "cannot create it" in lines[0], proc.stderr
    assert "error" in lines[0] and proc.stdout == ""


@pytest.mark.parametrize("entry", DOORS)
def test_without_cuda_and_without_cpu_flag_says_so(entry, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the plain run would run the real check")
    proc = _run("--out", str(tmp_path), entry=entry, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no CUDA device" in lines[0] and "--cpu" in lines[0]


def test_a_missing_jsonschema_is_one_line_naming_it(tmp_path):
    # a fake jsonschema that fails to import, first on the path: the check must stop before shared_spec
    fake = tmp_path / "fake"
    (fake / "jsonschema").mkdir(parents=True)
    (fake / "jsonschema" / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'rpds'\", "
                                                     "name='rpds')\n")
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(fake)}
    proc = subprocess.run(["bash", str(SCRIPT), "--cpu", "--out", str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "missing Python package 'jsonschema'" in lines[0] and "'rpds'" in lines[0] and "wheel" in lines[0]


def test_the_script_is_a_thin_entry_point():
    """scripts/ holds no harness: the script's code is a few lines calling the package."""
    tree = ast.parse((ROOT / "scripts" / "gpu_check.py").read_text())
    code = [node for node in tree.body if not (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))]
    assert len(code) <= 6 and not any(isinstance(node, (ast.FunctionDef, ast.ClassDef)) for node in code)
    imports = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    assert "googlenet_suite.gpu_check" in imports


def _module():
    from googlenet_suite.gpu_check import report

    return report


def test_gpu_report_renders_targets_and_verdict(cpu_run):
    """The GPU-only branches of the report (device fields, peak memory, met/unmet targets, a failing check,
    skipped cells) on the CPU run's report with GPU figures put in."""
    gc = _module()
    _, out = cpu_run
    report = json.loads((out / "gpu_check.json").read_text())
    report["mode"] = {"cpu": False, "quick": False}
    report["environment"].update(device="cuda:0", device_name="NVIDIA H200", device_memory_gib=139.8,
                                 compute_capability="9.0", driver="570.00")
    bench = report["bench"]
    bench["input"] = [3, 224, 224]
    bench["rows"] = [
        {"kind": "forward", "mode": "fast", "batch": 256, "status": "ok", "images_per_s": 25_000.0, "median_s": 0.01,
         "first_call_s": 40.0, "peak_memory_bytes": 3 * 2**30, "bf16_max_logit_diff": 0.02, "fp32_logit_scale": 4.0},
        {"kind": "train", "mode": "fast", "batch": 256, "status": "ok", "images_per_s": 4_000.0, "median_s": 0.064,
         "first_call_s": 70.0, "peak_memory_bytes": 20 * 2**30, "loss": 6.9},
        {"kind": "train", "mode": "fast", "batch": 1, "status": "skipped", "reason": "time guard: 3 s left"},
    ]
    report["targets"] = gc.targets(bench, True, "NVIDIA H200")
    assert report["targets"]["forward"]["status"] == "met"
    assert report["targets"]["train"]["status"] == "unmet"
    assert report["targets"]["forward"]["best_batch"] == 256
    report["torch_equivalence"]["variants"][0].update(status="fail", logits_max_abs_diff=3e-4)
    report["verdict"], report["failures"] = gc.verdict(report)
    assert report["verdict"] == "FAIL" and report["failures"] == ["torch googlenet: fail"]
    markdown = gc.render_markdown(report)
    assert markdown.startswith("### GPU check: NVIDIA H200")
    assert "| device memory (GiB) | 139.8 |" in markdown
    assert "| forward | fast | 256 | 25,000 |" in markdown and "| 3,072 |" in markdown
    assert "| train | fast | 1 | skipped: time guard: 3 s left |" in markdown
    assert "| forward | >= 20,000 | 25,000 | 256 | met |" in markdown
    assert "| train | >= 5,000 | 4,000 | 256 | unmet |" in markdown
    assert "for an H200" in gc.targets(bench, True, "NVIDIA A100")["forward"]["reason"]  # another GPU: said so
