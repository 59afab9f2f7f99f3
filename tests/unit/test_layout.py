"""The package's shape: imports flow one way, nothing heavy loads on import, and the wheel
the image installs holds every subpackage."""

from __future__ import annotations

import ast
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.support.paths import REPO

PACKAGES = ("flows", "tasks", "blocks", "deployments", "benchmarks")
# The CLI imports its subcommands' code when they run, so `mlops --help` stays instant.
LAZY_IMPORTS_ALLOWED = {"deployments/cli.py", "deployments/lake_commands.py"}


def modules() -> list[Path]:
    return sorted(p for package in PACKAGES for p in (REPO / package).rglob("*.py"))


def function_level_project_imports(path: Path) -> list[str]:
    """``file:line module`` for every import of a project module inside a function."""
    found = []
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        for inner in ast.walk(node):
            if isinstance(inner, ast.ImportFrom):
                names = [inner.module or ""] if inner.level == 0 else ["." * inner.level]
            elif isinstance(inner, ast.Import):
                names = [alias.name for alias in inner.names]
            else:
                continue
            for name in names:
                if name.startswith(".") or name.split(".")[0] in PACKAGES:
                    found.append(f"{path.relative_to(REPO)}:{inner.lineno} {name}")
    return found


@pytest.mark.timeout(30)
def test_no_project_module_is_imported_inside_a_function() -> None:
    """A cycle hidden by an import inside a function is still a cycle: none outside the CLI."""
    found = [
        hit
        for path in modules()
        if str(path.relative_to(REPO)) not in LAZY_IMPORTS_ALLOWED
        for hit in function_level_project_imports(path)
    ]
    assert found == []


@pytest.mark.timeout(60)
def test_import_linter_contracts_are_kept() -> None:
    """Layers (deployments, flows, stages, runtime, blocks, shared basics) and no cycles."""
    result = subprocess.run(
        [str(Path(sys.executable).with_name("lint-imports"))],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=50,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.timeout(120)
def test_importing_the_pipeline_loads_neither_great_expectations_nor_xgboost() -> None:
    """A warm run never validates or trains: what it imports must not cost GX's or XGBoost's
    seconds (nor scikit-learn's or Bokeh's)."""
    heavy = ["great_expectations", "xgboost", "sklearn", "bokeh.plotting"]
    code = (
        "import sys, flows.pipeline, deployments.cli; "
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=100
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


@pytest.mark.timeout(300)
def test_the_wheel_holds_every_subpackage_and_imports_from_it(tmp_path: Path) -> None:
    """What the Dockerfile installs: a built wheel, importable without the checkout."""
    # Built from a copy, as the Dockerfile copies the tree: the checkout stays clean.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    for package in PACKAGES:
        shutil.copytree(
            REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    pip = [sys.executable, "-m", "pip"]
    subprocess.run(
        [*pip, "wheel", "--no-deps", "--quiet", "--wheel-dir", str(tmp_path), str(source)],
        check=True,
        capture_output=True,
        timeout=240,
    )
    (wheel,) = tmp_path.glob("mlops_pipelines-*.whl")
    packaged = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    sources = {str(p.relative_to(REPO)) for p in modules()}
    assert sources - packaged == set()
    target = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(target)
    names = sorted(
        ".".join(Path(name).with_suffix("").parts).removesuffix(".__init__")
        for name in packaged
        if not name.startswith("benchmarks/")
    )
    # From an empty folder, with the wheel's contents first on the path: the checkout is
    # neither the working directory nor on the path.
    code = (
        "import importlib, sys; "
        f"mods = [importlib.import_module(n) for n in {names!r}]; "
        f"assert all(m.__file__.startswith({str(target)!r}) for m in mods), "
        "[m.__file__ for m in mods]"
    )
    empty = tmp_path / "empty"
    empty.mkdir()
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=empty,
        env={**os.environ, "PYTHONPATH": str(target)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
