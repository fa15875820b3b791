"""The fast-mode A/B scripts (``python -m impl_X.fast_modes``): their shared options and report
(``shared_spec.protocol``), and each script's refusal of an unknown candidate before anything is built."""

from __future__ import annotations

import importlib
import sys

import pytest

from shared_spec import protocol

KNOWN = ["a", "b", "c"]


def test_candidates_are_checked_against_the_known(capsys):
    parser = protocol.ab_parser("demo", known=KNOWN, default="a,b", per_round=3)
    args = parser.parse_args([])
    assert (args.candidates, args.rounds, args.per_round) == ("a,b", 6, 3)
    assert protocol.chosen_candidates(parser, "c,a", KNOWN) == ["c", "a"]
    with pytest.raises(SystemExit) as exit_info:
        protocol.chosen_candidates(parser, "a,zz,yy", KNOWN, where=" for --part train")
    assert exit_info.value.code == 2
    assert "--candidates: unknown yy, zz for --part train; known: a, b, c" in capsys.readouterr().err


def test_ab_compare_reports_every_candidate_against_the_first_and_the_peak():
    work = {"slow": 4_000, "fast": 1_000, "peak": 2_000}
    calls = {name: (lambda n=n: sum(range(n))) for name, n in work.items()}
    text = protocol.ab_compare(calls, header="demo forward", rounds=2, per_round=2, flops=1e6, batch=4)
    lines = text.splitlines()
    assert lines[0].startswith("demo forward, load average ") and "batch 4, 2 rounds x 2 calls" in lines[0]
    for clock in ("wall", "cpu"):
        block = lines[lines.index(next(x for x in lines if x.startswith(f" by {clock} time"))):][:4]
        assert block[1].lstrip().startswith("peak") and "GFLOP/s" in block[1]
        assert block[2].lstrip().startswith("slow") and "1.00x [1.00, 1.00] of slow" in block[2]
        assert block[3].lstrip().startswith("fast") and "of slow" in block[3]


SCRIPTS = [pytest.param(module, marks=getattr(pytest.mark, mark)) for module, mark in
           (("impl_torch.fast_modes", "torch"), ("impl_tf.fast_modes", "tf"), ("impl_mxnet.fast_modes", "mxnet"))]


@pytest.mark.parametrize("module", SCRIPTS)
def test_each_script_refuses_an_unknown_candidate_in_one_line(module, monkeypatch, capsys):
    framework = {"impl_torch": "torch", "impl_tf": "tensorflow", "impl_mxnet": "mxnet"}[module.split(".")[0]]
    pytest.importorskip(framework)
    script = importlib.import_module(module)
    monkeypatch.setattr(sys, "argv", [module, "--candidates", "nope"])
    with pytest.raises(SystemExit) as exit_info:
        script.main()
    assert exit_info.value.code == 2
    assert "--candidates: unknown nope" in capsys.readouterr().err.strip().splitlines()[-1]
