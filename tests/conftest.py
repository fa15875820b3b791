"""Shared fixtures. Framework tests import their framework with pytest.importorskip,
so an environment without it skips them with the reason."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import importlib.util

import pytest

import shared_spec

# MXNet 1.9.1 segfaults when imported after TensorFlow in one process; a test session may load both, in
# any order, so MXNet comes first (googlenet_suite.frameworks.import_order does the same for the CLI).
if importlib.util.find_spec("mxnet") is not None:
    import mxnet  # noqa: F401


@pytest.fixture(scope="module")
def cache() -> dict:
    """Lives as long as the test module: what its tests build once (a model per variant) and share."""
    return {}


@pytest.fixture(scope="session")
def builtin_doc() -> dict:
    return json.loads(shared_spec.BUILTIN_SPEC.read_text())


@pytest.fixture
def write_spec(tmp_path, builtin_doc):
    """Write a mutated copy of the built-in spec; returns its path."""

    def write(mutate=None, name="spec.json") -> Path:
        doc = copy.deepcopy(builtin_doc)
        if mutate is not None:
            mutate(doc)
        path = tmp_path / name
        path.write_text(json.dumps(doc))
        return path

    return write
