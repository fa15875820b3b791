"""The package layout the suite promises (docs/builders.md, "Adding a framework"):

- only ``impl_X/`` imports its framework (and no other framework);
- dependencies run one way, ``shared_spec`` <- ``impl_X`` <- ``googlenet_suite``; ``scripts/*.py`` stand on
  top and reach the frameworks only through ``googlenet_suite`` (they import no framework and no ``impl_X``);
- no import cycles between the suite's own modules;
- every registered framework's package exists with the parts its capabilities promise;
- every exception class the suite defines derives from ``shared_spec.errors.SuiteError``.

Read from the source with ``ast``: nothing is imported, so this runs in every environment.
"""

from __future__ import annotations

import ast
import builtins
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
    """Every module of ``package``, its subpackages' (``googlenet_suite.check``) included."""
    out = {}
    for path in sorted((ROOT / package).rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


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
SCRIPTS = {f"scripts.{path.stem}": path for path in sorted((ROOT / "scripts").glob("*.py"))}
#: scripts that still import frameworks or impl_X packages themselves, until each is a thin entry point over
#: googlenet_suite (issue 19). strict: once a script is clean its test fails here, so its line must go then
NOT_YET_THIN: dict[str, str] = {}


def _checked(modules) -> list:
    return [pytest.param(module, marks=pytest.mark.xfail(strict=True, reason=NOT_YET_THIN[module]))
            if module in NOT_YET_THIN else module for module in sorted(modules)]


def _path(module: str) -> Path:
    return ALL.get(module) or SCRIPTS[module]


def test_scripts_are_found():
    assert SCRIPTS, "no scripts/*.py found: the checks below would cover nothing"
    gone = set(NOT_YET_THIN) - set(SCRIPTS)
    assert not gone, f"NOT_YET_THIN names scripts that are gone: {sorted(gone)}"


@pytest.mark.parametrize("module", _checked([*ALL, *SCRIPTS]))
def test_frameworks_are_imported_only_in_their_own_package(module):
    package = module.split(".")[0]
    tops = {name.split(".")[0] for name in _imports(_path(module), module)}
    frameworks = tops & FRAMEWORK_MODULES
    assert frameworks <= ALLOWED.get(package, set()), f"{module} imports {sorted(frameworks)}"


@pytest.mark.parametrize("module", _checked([*ALL, *SCRIPTS]))
def test_dependencies_run_one_way(module):
    package = module.split(".")[0]
    tops = {name.split(".")[0] for name in _imports(_path(module), module)}
    if package == "scripts":
        # a script is an entry point: shared_spec and googlenet_suite (whose registry imports the frameworks)
        assert not tops & set(ALLOWED), f"{module} imports {sorted(tops & set(ALLOWED))}: go through googlenet_suite"
    elif package == "shared_spec":
        assert not tops & ({"googlenet_suite"} | set(ALLOWED)), module
    elif package.startswith("impl_"):
        assert "googlenet_suite" not in tops, module
        # no impl_X imports an impl_Y: the harness gives every exported file its input and output names
        assert not tops & (set(ALLOWED) - {package}), f"{module} imports another framework's package"


def test_no_import_cycles():
    graph = {}
    for module, path in ALL.items():
        graph[module] = {name for name in _imports(path, module) if name in ALL and name != module}
    # a package's __init__ re-exporting its own modules is not a cycle worth reporting (``from . import x`` names
    # the package too)
    for module in graph:
        graph[module] = {dep for dep in graph[module] if not module.startswith(dep + ".")}
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


# --------------------------------------------------------------------------- one exception root

ROOT_ERROR = "SuiteError"
BUILTIN_EXCEPTIONS = {name for name, value in vars(builtins).items()
                      if isinstance(value, type) and issubclass(value, BaseException) and not issubclass(value, Warning)}


def _base_name(node: ast.expr) -> str:
    """``ValueError`` -> ``ValueError``; ``C.ContractError`` -> ``ContractError``; ``Generic[T]`` -> ``Generic``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    if isinstance(node, (ast.Subscript, ast.Call)):
        return _base_name(node.value if isinstance(node, ast.Subscript) else node.func)
    return ""


def _class_bases() -> dict[str, list[tuple[str, set[str]]]]:
    """Every class the suite and its scripts define, by name: where, and its bases' names."""
    found: dict[str, list[tuple[str, set[str]]]] = {}
    for module, path in {**ALL, **SCRIPTS}.items():
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.ClassDef):
                found.setdefault(node.name, []).append((f"{module}.{node.name}", {_base_name(b) for b in node.bases}))
    return found


def _ancestors(bases: set[str], classes: dict) -> set[str]:
    """``bases`` and, through the suite's own classes, every base of theirs (by name, so it runs without
    importing anything: a name the suite does not define is a leaf, a builtin or another library's)."""
    seen, todo = set(), list(bases)
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(base for _, more in classes.get(name, []) for base in more)
    return seen


def _is_exception(name: str, classes: dict) -> bool:
    return name in BUILTIN_EXCEPTIONS or (name not in classes and name.endswith(("Error", "Exception")))


def _exception_classes() -> dict[str, set[str]]:
    """Each exception class the suite defines (qualified name) and its ancestors' names."""
    classes = _class_bases()
    out = {}
    for definitions in classes.values():
        for where, bases in definitions:
            ancestors = _ancestors(bases, classes)
            if any(_is_exception(name, classes) for name in ancestors):
                out[where] = ancestors
    return out


def test_every_exception_class_derives_from_the_suite_root():
    found = _exception_classes()
    # the scan sees the classes it must (a broken scan would find nothing and pass)
    for known in ("shared_spec.spec.SpecError", "shared_spec.contract.ContractError", "shared_spec.oracle.ShapeError",
                  "googlenet_suite.console.UsageError", "googlenet_suite.check.user_code.MappingError",
                  "googlenet_suite.frameworks.FrameworkMissing", "impl_onnx.builder.OnnxBuildError"):
        assert known in found, f"the ast scan missed {known}"
    outside = sorted(where for where, ancestors in found.items()
                     if ROOT_ERROR not in ancestors and not where.endswith(f".{ROOT_ERROR}"))
    assert not outside, f"exception classes outside shared_spec.errors.{ROOT_ERROR}: {', '.join(outside)}"


def test_the_root_and_its_input_branch():
    """Framework-free, so imported: bad input is a ValueError too (``except ValueError`` keeps working)."""
    from shared_spec import errors

    assert issubclass(errors.InputError, errors.SuiteError) and issubclass(errors.InputError, ValueError)
    assert not issubclass(errors.SuiteError, ValueError)
    found = _exception_classes()
    assert found["shared_spec.errors.InputError"] >= {ROOT_ERROR, "ValueError"}
    assert found["shared_spec.errors.SuiteError"] == {"Exception"}
