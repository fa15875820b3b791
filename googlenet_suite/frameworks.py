"""The registry: the one plug point for a framework or runtime. Import lazily, report what is missing.

A row names the ``impl_X`` package (its builder contract, ``docs/builders.md``), the framework's own
top-level module, the pyproject extra that installs it and what it can do. Everything else in
``googlenet_suite`` reads this table: ``compare``'s columns, the CLI's ``--framework`` choices, ``train``
and ``bench`` (which look for ``impl_X.train`` and ``impl_X.bench``), and the tests.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass, field
from types import ModuleType

from shared_spec.errors import InputError, SuiteError


#: What an implementation can do beyond the inference contract (build, forward, layer_outputs, weights,
#: counts): ``train`` is ``train_step`` and the ``impl_X.train`` loop; ``bench`` is an ``impl_X.bench`` runner
#: (its training step measured only where the framework can also ``train``); ``check`` is an
#: ``impl_X.check`` adapter that loads a user's own model for ``googlenet-suite check``.
CAPABILITIES = ("train", "bench", "check")


@dataclass(frozen=True, slots=True)
class Backends:
    """A framework that computes on a backend an environment variable picks (Keras 3: ``KERAS_BACKEND``):
    each backend's own top-level module and how to install it."""

    env: str
    default: str
    modules: dict[str, tuple[str, str]] = field(hash=False)  # backend -> (module, install hint)


@dataclass(frozen=True, slots=True)
class Framework:
    key: str
    label: str
    module: str  # our builder package
    requires: str  # the framework's own top-level module
    extra: str  # pyproject extra that installs it
    capabilities: frozenset[str] = frozenset(CAPABILITIES)
    import_first: bool = False  # must be imported before the others in a process (see import_order)
    backends: Backends | None = None  # the compute backends it can run on, when it has a choice

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


def _extra_hint(extra: str) -> str:
    return f"pip install -c constraints.txt '.[{extra}]'"


#: Keras 3's backends (impl_tf runs on each); JAX wants numpy 2, so it lives in an environment of its own
KERAS_BACKENDS = Backends("KERAS_BACKEND", "tensorflow", {
    "tensorflow": ("tensorflow", _extra_hint("tf")),
    "jax": ("jax", "pip install 'jax[cpu]' in an environment of its own (see tox -e keras-jax), "
                   "or unset KERAS_BACKEND"),
    "torch": ("torch", _extra_hint("torch")),
})

FRAMEWORKS: dict[str, Framework] = {
    "torch": Framework("torch", "PyTorch", "impl_torch", "torch", "torch"),
    "tf": Framework("tf", "Keras 3 (TF)", "impl_tf", "tensorflow", "tf", backends=KERAS_BACKENDS),
    # MXNet 1.9.1 segfaults when it is imported after TensorFlow in the same process: import it first
    "mxnet": Framework("mxnet", "MXNet Gluon", "impl_mxnet", "mxnet", "mxnet", import_first=True),
    # the spec written straight into an ONNX graph, run by onnxruntime: inference only (check: a user's ONNX file)
    "onnx": Framework("onnx", "ONNX Runtime", "impl_onnx", "onnxruntime", "onnx", frozenset({"bench", "check"})),
}


def with_capability(capability: str) -> list[str]:
    return [key for key, fw in FRAMEWORKS.items() if fw.can(capability)]


def import_order(keys: list[str]) -> list[str]:
    """``keys`` in an order that is safe to import in one process (whatever order the user gave)."""
    return sorted(keys, key=lambda key: not FRAMEWORKS[key].import_first)


class FrameworkMissing(SuiteError, RuntimeError):
    """The framework is not installed in this environment."""


class RegistryError(InputError):
    """A framework name or choice the registry cannot serve (bad input, exit 2)."""


def backend(key: str) -> str | None:
    """The backend ``key`` computes on in this process: the loaded builder's ``BACKEND`` once imported, else
    what the environment variable names (its default when unset); None for a framework without a choice."""
    fw = FRAMEWORKS[key]
    if fw.backends is None:
        return None
    loaded = getattr(sys.modules.get(fw.module), "BACKEND", None)
    return loaded or os.environ.get(fw.backends.env) or fw.backends.default


def _backend_problem(key: str, *, default_only: bool = False) -> str | None:
    """Why ``key`` cannot run on the backend chosen here (an unknown one, or, with ``default_only``, any but
    its default: ``bench`` and ``train`` drive Keras through TensorFlow), or None. Nothing is imported."""
    fw, name = FRAMEWORKS[key], backend(key)
    if name is None:
        return None
    if name not in fw.backends.modules:
        return (f"{fw.backends.env}={name[:40]!r}: {fw.label} runs on the backends {', '.join(fw.backends.modules)}; "
                f"set one of them or unset {fw.backends.env}")
    if default_only and name != fw.backends.default:
        return (f"Keras runs on TensorFlow here, but {fw.backends.env} is {name!r}: unset it "
                f"(compare and the builders run on any Keras backend)")
    return None


def check_backends(keys: list[str], command: str) -> None:
    """``bench``/``train``: refuse (exit 2) a framework set to a backend the command does not drive, before
    any framework is imported."""
    for key in keys:
        problem = _backend_problem(key, default_only=True)
        if problem:
            raise RegistryError(f"{command}: {problem}")


def _backend_module(key: str) -> tuple[str, str] | None:
    """``(module, install hint)`` of the backend ``key`` computes on, where that is not the framework itself."""
    fw, name = FRAMEWORKS[key], backend(key)
    if name is None or name not in fw.backends.modules or fw.backends.modules[name][0] == fw.requires:
        return None
    return fw.backends.modules[name]


def install_hint(key: str) -> str:
    """How to install what ``key`` lacks here: its extra, or the backend its environment variable names."""
    needs = _backend_module(key)
    if needs is not None and importlib.util.find_spec(needs[0]) is None:
        return needs[1]
    return _extra_hint(FRAMEWORKS[key].extra)


def parse_frameworks(text: str | None, *, capability: str | None = None) -> list[str]:
    """``--frameworks a,b``: registered keys, each able to do ``capability`` when one is named. Without a
    list: every framework (that can do ``capability``)."""
    choices = with_capability(capability) if capability else list(FRAMEWORKS)
    if not text:
        return choices
    keys = [part.strip() for part in text.split(",") if part.strip()]
    unknown = [key for key in keys if key not in FRAMEWORKS]
    if unknown or not keys:
        raise RegistryError(f"--frameworks: unknown framework {', '.join(map(repr, unknown)) or '(none)'}; "
                            f"expected a comma-separated list of {', '.join(choices)}")
    unable = [key for key in keys if key not in choices]
    if unable:
        raise RegistryError(f"--frameworks: {', '.join(unable)} cannot {capability} "
                            f"({FRAMEWORKS[unable[0]].label} is inference only); choose from {', '.join(choices)}")
    return keys


def load(key: str, *, tensorflow_backend: bool = False) -> ModuleType:
    """Import a builder. Raises FrameworkMissing when the framework itself is absent, and, with
    ``tensorflow_backend``, when the Keras builder runs on another Keras backend (``bench`` and
    ``train`` drive Keras through TensorFlow; the builder contract, and so ``compare``, runs on any)."""
    fw = FRAMEWORKS[key]
    problem = _backend_problem(key, default_only=tensorflow_backend)
    if problem:
        raise FrameworkMissing(problem)
    _require(fw.requires, f"{fw.label} is not installed: {_extra_hint(fw.extra)}")
    needs = _backend_module(key)
    if needs is not None:  # Keras on JAX or torch: that backend, or Keras fails inside its own import
        _require(needs[0], f"{fw.label} on {fw.backends.env}={backend(key)!r} needs {needs[0]}, which is not "
                           f"installed: {needs[1]}")
    return importlib.import_module(fw.module)


def _require(module: str, missing: str) -> None:
    try:
        importlib.import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == module:
            raise FrameworkMissing(missing) from None
        raise


def has_part(key: str, name: str) -> bool:
    """Whether ``impl_X.<name>`` exists (without importing it)."""
    return importlib.util.find_spec(f"{FRAMEWORKS[key].module}.{name}") is not None


def part(key: str, name: str) -> ModuleType:
    """``impl_X.<name>`` (``train``, ``bench``, ``handwritten``) of an installed framework."""
    return importlib.import_module(f"{FRAMEWORKS[key].module}.{name}")
