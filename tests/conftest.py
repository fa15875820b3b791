"""Shared fixtures. Framework tests import their framework with pytest.importorskip,
so an environment without it skips them with the reason."""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import fcntl
import gc
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

#: ``-n auto`` (pyproject's addopts) starts one worker per core, at most this many: every worker loads
#: torch, TensorFlow and MXNet (about 2 GiB), and the suite gains nothing past four on the machines we know
MAX_WORKERS = 4


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pytest_xdist_auto_num_workers(config) -> int:
    return max(1, min(_cores(), MAX_WORKERS))


# A worker's share of the cores, set before any framework is imported (torch and MXNet read OMP_NUM_THREADS,
# TensorFlow TF_NUM_*_THREADS, at start-up): with more runnable threads than cores, OpenMP workers spin and
# the run gets slower, not faster (measured: two workers with two threads each, 289 s; with one each, 273 s).
if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
    _share = str(max(1, _cores() // int(os.environ["PYTEST_XDIST_WORKER_COUNT"])))
    for _name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_name, _share)

import shared_spec  # noqa: E402
from googlenet_suite import frameworks, harness  # noqa: E402  (neither imports a framework)

# MXNet 1.9.1 segfaults when imported after TensorFlow in one process; a test session may load both, in
# any order, so MXNet comes first (googlenet_suite.frameworks.import_order does the same for the CLI).
if importlib.util.find_spec("mxnet") is not None:
    import mxnet  # noqa: F401


_LIBC = ctypes.CDLL(ctypes.util.find_library("c")) if sys.platform.startswith("linux") else None


def free_memory() -> None:
    """Give what the tests before built back to the system: Keras's session, cycles between framework objects,
    freed but untrimmed heap pages."""
    if "keras" in sys.modules:
        sys.modules["keras"].backend.clear_session()
    gc.collect()
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


#: a worker holding more than this after a test file gives memory back (``free_memory`` costs 0.5-1.2 s, so
#: the light files, most of the default run, skip it)
FREE_ABOVE_BYTES = 2 << 30


def _resident_bytes() -> int:
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: no /proc, and no malloc_trim either
        return 0


@pytest.fixture(scope="module", autouse=True)
def _free_memory_after_each_file():
    """A worker runs file after file (``--dist loadfile``): without this, what each file built piled up to 10-14 GiB
    per worker in the matrix run (RSS logged after each test), and two workers on a 24 GiB machine met the OOM
    killer."""
    yield
    if _resident_bytes() > FREE_ABOVE_BYTES:
        free_memory()


@pytest.fixture
def memory_heavy(tmp_path_factory):
    """For a test whose peak is gigabytes (tf2onnx converting Inception v3 peaks at 8-9 GiB: its optimizer writes
    the weights into protobuf again on each pass): one such test at a time across the xdist workers (a lock file
    in the directory they share), with the worker's memory given back before and after."""
    lock = tmp_path_factory.getbasetemp().parent / "memory-heavy.lock"
    with open(lock, "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        free_memory()  # what this worker's earlier tests left, before the peak
        try:
            yield
        finally:
            free_memory()
            fcntl.flock(handle, fcntl.LOCK_UN)


@pytest.fixture(scope="module")
def cache() -> dict:
    """Lives as long as the test module: what its tests build once (a model per variant) and share."""
    return {}


@pytest.fixture(scope="session")
def input_batch():
    """``input_batch(spec, n=2, seed=0)``: the suite's input for ``spec``, a standard-normal float32 N x C x H x W
    batch from :func:`googlenet_suite.harness.input_batch`, the one compare and check feed the models, so a test
    sees the numbers the harness sees. A test that needs another input (constants, one op's own shape, an
    image file) makes it where it is used and says why."""

    def make(spec: shared_spec.Spec, n: int = 2, *, seed: int = 0):
        return harness.input_batch(spec, n, seed)

    return make


#: a ModuleNotFoundError naming one of these is a bug of the suite, never a missing framework
OUR_PACKAGES = {"shared_spec", "googlenet_suite", *(fw.module for fw in frameworks.FRAMEWORKS.values())}


def load_builder(key: str) -> ModuleType:
    """The registered framework's builder package (``impl_X``), or a skip naming what is missing and how to
    install it. Importing the package itself (not the registry's ``requires``) is what the builder contract
    needs: the Keras builder runs without TensorFlow on Keras's JAX and torch backends (tox -e keras-jax)."""
    fw = frameworks.FRAMEWORKS[key]
    try:
        return importlib.import_module(fw.module)
    except ModuleNotFoundError as exc:
        if exc.name is None or exc.name.split(".")[0] in OUR_PACKAGES:
            raise
        pytest.skip(f"{fw.label} is not installed ({exc.name} is missing): {frameworks.install_hint(key)}")


@pytest.fixture(scope="session")
def builder():
    """``builder(key)``: :func:`load_builder` for a test parametrized over ``frameworks.FRAMEWORKS``."""
    return load_builder


@pytest.fixture(scope="session")
def installed() -> dict[str, ModuleType]:
    """Every registered framework installed here, key -> builder package, in the registry's order."""
    out = {}
    for key in frameworks.import_order(list(frameworks.FRAMEWORKS)):
        try:
            out[key] = load_builder(key)
        except pytest.skip.Exception:
            continue
    return {key: out[key] for key in frameworks.FRAMEWORKS if key in out}


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


#: the variants every framework test runs on in the default run: the default variant (BatchNorm, ceil-mode pools,
#: aux heads) and d2l's (no BatchNorm, one channel, floor pools); Inception v3's framework tests are matrix too
#: (its oracle tests run in the default run). Each framework test on another built-in variant
#: is marked ``matrix``: the default run leaves the full variant x framework matrix out (the README's test command
#: stays within 300 s on two cores), ``tox -e matrix`` runs it, and CI runs that. Spec-level tests (the oracle,
#: the published figures) run on every variant in the default run.
CORE_VARIANTS = {"googlenet", "d2l"}
FRAMEWORK_MARKS = ("torch", "tf", "mxnet", "onnx", "cross")


@pytest.hookimpl(tryfirst=True)  # before the mark plugin's -m deselection reads the markers
def pytest_collection_modifyitems(config, items):
    """Framework tests on a built-in variant outside ``CORE_VARIANTS`` get the ``matrix`` marker.

    Then: files with a test marked ``slow`` first, in their order; the rest after. With ``--dist loadfile`` the
    workers take whole files in this order, so a long file is never the last one handed out while the other
    worker sits idle (measured on 2 workers: the slow files at the end cost about 30 s of idle worker)."""
    import shared_spec

    builtin = set(shared_spec.list_variants())
    for item in items:
        callspec = getattr(item, "callspec", None)
        # a variant by name, whatever the parameter is called ("variant", or a fixture's own such as "built")
        variants = {v for v in (callspec.params.values() if callspec else ()) if isinstance(v, str) and v in builtin}
        if (variants - CORE_VARIANTS and any(item.get_closest_marker(mark) for mark in FRAMEWORK_MARKS)):
            item.add_marker(pytest.mark.matrix)
    slow_files = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow_files)  # stable: the order within each group stays


# --------------------------------------------------------------------------- the CLI, for the convert tests


def cli_run(capsys, argv) -> str:
    """``googlenet-suite ARGV`` in this process: exit 0; its stderr (the notes and the ``wrote`` line)."""
    from googlenet_suite.cli import main

    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    assert code == 0, err
    return err


def cli_refused(capsys, tmp_path, argv, *expected) -> str:
    """Exit 2, one line naming ``expected``, no traceback, nothing written in ``tmp_path/out``."""
    from googlenet_suite.cli import main

    out_dir = tmp_path / "out"
    out_dir.mkdir(exist_ok=True)
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in lines[0], lines[0]
    assert list(out_dir.iterdir()) == [], "a refused command wrote a file"
    return lines[0]
