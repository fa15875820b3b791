"""The package layout the suite promises (docs/builders.md, "Adding a framework"):

- only ``impl_X/`` imports its framework (and no other framework);
- dependencies run one way, ``shared_spec`` <- ``impl_X`` <- ``googlenet_suite``;
- no import cycles between the suite's own modules;
- every registered framework's package exists with the parts its capabilities promise.

Read from the source with ``ast``: nothing is imported, so this runs in every environment.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from googlenet_suite import frameworks as fw_registry

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORK_MODULES = {"torch", "torchvision", "tensorflow", "keras", "mxnet", "gluoncv", "jax", "jaxlib", "onnx",
                     "onnxruntime", "tf2onnx"}
# what each impl package may import besides the standard library and the suite's neutral dependencies
ALLOWED = {"impl_torch": {"torch"}, "impl_tf": {"keras", "tensorflow", "jax", "torch", "tf2onnx", "onnx"},
           "impl_mxnet": {"mxnet", "onnx"}, "impl_onnx": {"onnx", "onnxruntime"}}
PACKAGES = ["shared_spec", "googlenet_suite", *sorted({fw.module for fw in fw_registry.FRAMEWORKS.values()})]


def _modules(package: str) -> dict[str, Path]:
    return {f"{package}.{path.stem}" if path.stem != "__init__" else package: path
            for path in sorted((ROOT / package).glob("*.py"))}


def _imports(path: Path, module: str) -> set[str]:
    """Every module ``path`` imports, absolute, wherever the import statement stands (functions included)."""
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                target = f"{base}.{node.module}" if node.module else base
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in node.names if not node.module)
            else:
                found.add(node.module)
    return found


ALL = {name: path for package in PACKAGES for name, path in _modules(package).items()}


@pytest.mark.parametrize("module", sorted(ALL))
def test_frameworks_are_imported_only_in_their_own_package(module):
    package = module.split(".")[0]
    tops = {name.split(".")[0] for name in _imports(ALL[module], module)}
    frameworks = tops & FRAMEWORK_MODULES
    assert frameworks <= ALLOWED.get(package, set()), f"{module} imports {sorted(frameworks)}"


@pytest.mark.parametrize("module", sorted(ALL))
def test_dependencies_run_one_way(module):
    package = module.split(".")[0]
    tops = {name.split(".")[0] for name in _imports(ALL[module], module)}
    if package == "shared_spec":
        assert not tops & ({"googlenet_suite"} | set(ALLOWED)), module
    elif package.startswith("impl_"):
        assert "googlenet_suite" not in tops, module
        # no impl_X imports an impl_Y: the harness gives every exported file its input and output names
        assert not tops & (set(ALLOWED) - {package}), f"{module} imports another framework's package"


def test_no_import_cycles():
    graph = {}
    for module, path in ALL.items():
        graph[module] = {name for name in _imports(path, module) if name in ALL and name != module}
    # a package's __init__ re-exporting its own modules is not a cycle worth reporting
    for module in graph:
        package = module.split(".")[0]
        graph[module] = {dep for dep in graph[module] if not (dep == package and module.startswith(package + "."))}
    state: dict[str, int] = {}

    def visit(node, stack):
        state[node] = 1
        for dep in sorted(graph[node]):
            if state.get(dep) == 1:
                cycle = stack[stack.index(dep):] + [dep]
                pytest.fail(f"import cycle: {' -> '.join(cycle)}")
            if dep not in state:
                visit(dep, stack + [dep])
        state[node] = 2

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


@pytest.mark.parametrize("key", sorted(fw_registry.FRAMEWORKS))
def test_registered_package_has_the_parts_its_capabilities_promise(key):
    fw = fw_registry.FRAMEWORKS[key]
    parts = {path.stem for path in (ROOT / fw.module).glob("*.py")}
    assert "__init__" in parts, fw.module
    for capability in ("train", "bench", "check"):
        assert (capability in parts) == fw.can(capability), f"{fw.module}: {capability}.py vs capabilities"
    extras = (ROOT / "pyproject.toml").read_text()
    assert f"\n{fw.extra} = [" in extras, f"pyproject.toml has no extra {fw.extra!r} for {key}"
    assert f"[testenv:{key}]" in (ROOT / "tox.ini").read_text(), f"tox.ini has no env for {key}"
