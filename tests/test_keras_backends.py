"""The Keras builder on Keras's PyTorch backend: the same network, the same numbers.

impl_tf is written with keras.layers / keras.ops only. Keras fixes its backend when it is first
imported, so the cross-framework equivalence and training tests run again in a child process with
KERAS_BACKEND=torch: there Keras computes with torch, and impl_tf must still match impl_torch (and
impl_mxnet) within 1e-4 on every variant, layer by layer and through one training step. The JAX
backend runs the same way (README: Keras backends); CI installs no JAX.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cross, pytest.mark.slow]
ROOT = Path(__file__).resolve().parent.parent


def _run(env_backend: str, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KERAS_BACKEND": env_backend, "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.matrix  # tox -e matrix (CI); the default run has the Keras-on-torch compare below
def test_keras_builder_runs_on_the_torch_backend():
    pytest.importorskip("keras", reason="keras is not installed")
    pytest.importorskip("torch", reason="torch is not installed (it is the backend under test)")
    probe = _run("torch", "-c", "import impl_tf; print(impl_tf.framework_version())")
    assert probe.returncode == 0, probe.stderr[-2000:]
    assert re.search(r"^keras 3\.\S+ \(torch \S+\)$", probe.stdout.strip()), probe.stdout

    # every layer of every variant, and the training steps; the logits from each framework's own weights,
    # the harness's weights per framework and ONNX's ops add nothing about the backend and are left to the parent run
    suites = _run("torch", "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider", "-m", "cross",
                  "-k", "test_every_layer_agrees or test_cross_training",
                  "tests/test_cross_equivalence.py", "tests/test_cross_training.py")
    tail = suites.stdout[-3000:]
    assert suites.returncode == 0, tail
    counts = {word: int(n) for n, word in re.findall(r"(\d+) (passed|xfailed|failed)", tail.splitlines()[-1])}
    assert counts.get("passed", 0) + counts.get("xfailed", 0) >= 16 and "failed" not in counts, tail
    assert "skipped" not in tail.splitlines()[-1], tail  # every test ran: the Keras builder was there


def test_cli_compare_uses_the_keras_backend_and_train_refuses_it(tmp_path):
    pytest.importorskip("keras", reason="keras is not installed")
    pytest.importorskip("torch", reason="torch is not installed (it is the backend under test)")
    report = tmp_path / "report.json"
    compare = _run("torch", "-m", "googlenet_suite", "compare", "d2l", "--frameworks", "torch,tf", "--format", "json",
                   "--output", str(report))
    assert compare.returncode == 0, compare.stderr[-2000:]
    result = json.loads(report.read_text())["variants"][0]
    assert result["agree"] is True
    assert "(torch " in result["frameworks"]["tf"]["version"]

    out = tmp_path / "run"
    train = _run("torch", "-m", "googlenet_suite", "train", "--framework", "tf", "--data", "synthetic", "--quiet",
                 "--out", str(out))
    assert train.returncode == 2
    assert train.stderr.strip().splitlines() == [
        "error: Keras runs on TensorFlow here, but KERAS_BACKEND is 'torch': unset it "
        "(compare and the builders run on any Keras backend)"]
    assert not out.exists()
