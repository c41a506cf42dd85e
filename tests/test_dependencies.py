"""Declared dependencies match imports: every third-party package the product imports is declared in
pyproject.toml (else a fresh install fails at that import), and every declared one is imported (else it is dead
weight in every install). The same for the dev extra and the tests and benchmarks (``scripts/`` runs in its own
throw-away environment whose packages ``scripts/build_data.sh`` pins)."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from functools import cache
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRODUCT = ("fm_engine", "workbench", "pages")  # what `pip install .` + `streamlit run` executes
DEVELOPMENT = ("tests", "bench")
OPTIONAL = (ImportError, ModuleNotFoundError)  # an import guarded by these is an optional extra
# Declared without an import of their own, and why.
NOT_IMPORTED = {
    "jsonargparse": "LightningCLI (fm-trainer) needs it, with its [signatures] extra; lightning does not install it",
}
TOOLS = {"ruff": "the linter/formatter `make test` runs"}  # dev extra: command-line tools


def normalise(name: str) -> str:
    """A distribution name as PEP 503 compares them."""
    return re.sub(r"[-_.]+", "-", name).lower()


def declared(group: str | None = None) -> set[str]:
    """Distribution names in ``[project] dependencies`` (or the optional-dependency ``group``)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    requirements = project["dependencies"] if group is None else project["optional-dependencies"][group]
    return {normalise(re.match(r"[A-Za-z0-9._-]+", requirement).group()) for requirement in requirements}


def _guarded(node: ast.AST, parents: dict[ast.AST, ast.AST]) -> bool:
    """Inside ``try: ... except ImportError:`` (an optional import)."""
    while node in parents:
        child, node = node, parents[node]
        if isinstance(node, ast.Try) and child in node.body:
            for handler in node.handlers:
                names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
                if any(isinstance(n, ast.Name) and n.id in {e.__name__ for e in OPTIONAL} for n in names):
                    return True
    return False


def local_modules() -> set[str]:
    """Our own top-level names: the folders scanned, and the modules beside a script (``bench/_common``)."""
    names = set(PRODUCT) | set(DEVELOPMENT) | {"scripts"}
    for folder in (*PRODUCT, *DEVELOPMENT):
        names |= {path.stem for path in (ROOT / folder).glob("*.py")}
    return names


@cache
def third_party_imports(folders: tuple[str, ...]) -> dict[str, str]:
    """Top-level names of the third-party modules imported anywhere in ``folders`` (also lazily, inside
    functions), each with one file that imports it; optional imports (guarded by ImportError) left out."""
    found: dict[str, str] = {}
    first_party = local_modules()
    for folder in folders:
        for path in sorted((ROOT / folder).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            parents = {child: parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                if _guarded(node, parents):
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in first_party and top != "__future__":
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


@cache
def installed() -> dict[str, list[str]]:
    """Top-level module name -> the installed distributions providing it (one scan of site-packages)."""
    return packages_distributions()


def distributions(module: str) -> set[str]:
    """The installed distributions that provide the top-level ``module``."""
    return {normalise(name) for name in installed().get(module, [])}


def test_every_product_import_is_a_declared_dependency():
    imports, runtime = third_party_imports(PRODUCT), declared()
    undeclared = {module: path for module, path in imports.items() if not distributions(module) & runtime}
    assert not undeclared, f"imported but not in [project] dependencies: {undeclared}"


def test_every_declared_dependency_is_imported_by_the_product():
    provided = {dist for module in third_party_imports(PRODUCT) for dist in distributions(module)}
    assert declared() - provided - set(NOT_IMPORTED) == set(), "declared in [project] dependencies but never imported"


def test_tests_benchmarks_and_scripts_import_only_declared_packages():
    imports, available = third_party_imports(DEVELOPMENT), declared() | declared("dev")
    undeclared = {module: path for module, path in imports.items() if not distributions(module) & available}
    assert not undeclared, f"imported but not declared (dependencies or the dev extra): {undeclared}"
    provided = {dist for module in imports for dist in distributions(module)}
    assert declared("dev") - provided - set(TOOLS) == set(), "in the dev extra but never imported"


def test_the_import_scan_sees_lazy_and_skips_optional_imports():
    """The scan itself: a lazy import inside a function counts; an ImportError-guarded one does not."""
    imports = third_party_imports(("fm_engine",))
    assert imports["pyarrow"] == "fm_engine/batch_predict.py"  # imported inside functions only
    assert "threadpoolctl" not in imports  # fm_engine/threads.py: optional, guarded by ImportError
    assert "torch" in imports and "os" not in imports and "fm_engine" not in imports
