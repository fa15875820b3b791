"""The registry: the one plug point for a framework or runtime. Import lazily, report what is missing.

A row names the ``impl_X`` package (its builder contract, ``docs/builders.md``), the framework's own
top-level module, the pyproject extra that installs it and what it can do. Everything else in
``googlenet_suite`` reads this table: ``compare``'s columns, the CLI's ``--framework`` choices, ``train``
and ``bench`` (which look for ``impl_X.train`` and ``impl_X.bench``), and the tests.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from shared_spec.errors import InputError, SuiteError


#: What an implementation can do beyond the inference contract (build, forward, layer_outputs, weights,
#: counts): ``train`` is ``train_step`` and the ``impl_X.train`` loop; ``bench`` is an ``impl_X.bench`` runner
#: (its training step measured only where the framework can also ``train``); ``check`` is an
#: ``impl_X.check`` adapter that loads a user's own model for ``googlenet-suite check``.
CAPABILITIES = ("train", "bench", "check")


@dataclass(frozen=True, slots=True)
class Framework:
    key: str
    label: str
    module: str  # our builder package
    requires: str  # the framework's own top-level module
    extra: str  # pyproject extra that installs it
    capabilities: frozenset[str] = frozenset(CAPABILITIES)
    import_first: bool = False  # must be imported before the others in a process (see import_order)

    def can(self, capability: str) -> bool:
        return capability in self.capabilities


FRAMEWORKS: dict[str, Framework] = {
    "torch": Framework("torch", "PyTorch", "impl_torch", "torch", "torch"),
    "tf": Framework("tf", "Keras 3 (TF)", "impl_tf", "tensorflow", "tf"),
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


def install_hint(key: str) -> str:
    return f"pip install -c constraints.txt '.[{FRAMEWORKS[key].extra}]'"


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
    try:
        importlib.import_module(fw.requires)
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] == fw.requires:
            raise FrameworkMissing(f"{fw.label} is not installed: {install_hint(key)}") from None
        raise
    module = importlib.import_module(fw.module)
    if key == "tf" and tensorflow_backend and module.BACKEND != "tensorflow":
        raise FrameworkMissing(f"Keras runs on TensorFlow here, but KERAS_BACKEND is {module.BACKEND!r}: "
                               f"unset it (compare and the builders run on any Keras backend)")
    return module


def has_part(key: str, name: str) -> bool:
    """Whether ``impl_X.<name>`` exists (without importing it)."""
    return importlib.util.find_spec(f"{FRAMEWORKS[key].module}.{name}") is not None


def part(key: str, name: str) -> ModuleType:
    """``impl_X.<name>`` (``train``, ``bench``, ``handwritten``) of an installed framework."""
    return importlib.import_module(f"{FRAMEWORKS[key].module}.{name}")
