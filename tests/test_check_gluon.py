"""``googlenet-suite check --gluon``: d2l's MXNet code as it is (numpy mode, an uninitialised Block), and the
suite's hand-written torchvision GoogLeNet in Gluon (a HybridBlock with BatchNorm)."""

from __future__ import annotations

from pathlib import Path

import json

import pytest

mx = pytest.importorskip("mxnet")

from googlenet_suite.cli import main  # noqa: E402

pytestmark = pytest.mark.mxnet

FIXTURES = Path(__file__).resolve().parent / "fixtures"


@pytest.fixture
def restore_np_mode():
    """d2l's file calls npx.set_np() for the whole process; the other MXNet tests use the legacy mode."""
    before = mx.util.is_np_array()
    yield
    if mx.util.is_np_array() and not before:
        mx.npx.reset_np()


def check(capsys, *argv):
    code = main(["check", *map(str, argv), "--format", "json"])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if out else None), err


def test_d2l_mxnet_code_agrees_with_the_d2l_variant(capsys, restore_np_mode):
    code, result, err = check(capsys, "d2l", "--input-size", 32, 32, "--gluon", f"{FIXTURES}/d2l_mxnet.py:net")
    assert code == 0, (err, result and result["verdict"])
    assert result["logits"]["max_abs_diff"] <= 1e-4
    assert sum(row["status"] == "agree" for row in result["layers"]) >= 80


@pytest.mark.parametrize("factory", ["hybrid_sequential", "shuffled"])
def test_hybrid_sequential_agrees(capsys, factory):
    code, result, err = check(capsys, "d2l", "--input-size", 32, 32, "--gluon", f"{FIXTURES}/forms_gluon.py:{factory}")
    assert code == 0, (err, result and result["verdict"])
    assert result["logits"]["max_abs_diff"] <= 1e-4 and result["mapping"]["notes"] == []
    assert sum(row["status"] == "agree" for row in result["layers"]) >= 80


def test_not_a_gluon_block(capsys):
    code, _, err = check(capsys, "d2l", "--gluon", "json:JSONDecoder")
    assert code == 2 and "expected a Gluon Block, got json.decoder.JSONDecoder" in err.strip().splitlines()[-1]


@pytest.mark.parametrize("factory,code,trap", [("bn_right_eps", 0, None), ("bn_default_eps", 1, "bn-eps")])
def test_gluon_batchnorm_default_eps_is_named(capsys, factory, code, trap):
    got, result, err = check(capsys, "bn", "--spec", f"{FIXTURES}/traps.json", "--gluon",
                             f"{FIXTURES}/trap_models_gluon.py:{factory}")
    assert got == code, (err, result and result["verdict"])
    if trap:
        assert result["first_divergence"]["diagnosis"]["trap"] == trap
