"""The package layering: import-linter contracts and no import cycles, and proof they bite.

The contracts live in pyproject.toml ([tool.importlinter]) and are also run by
``make lint``. Each check here is shown to fail on a known violation: the contracts
on a copy of the package with backward imports injected, the cycle finder on a
synthetic graph.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import grimp
import pytest
from importlinter import api

ROOT = Path(__file__).resolve().parents[1]
PYPROJECT = ROOT / "pyproject.toml"
PACKAGE = "selfdistill"
LINT = ("import sys\nfrom importlinter.cli import lint_imports_command\n"
        "sys.exit(lint_imports_command())\n")

#: per contract, an import that breaks it: (file, line appended, what the report must show)
INJECTED = {
    "no-torch": ("data/columns.py", "import torch",
                 "selfdistill.data.columns -> torch"),
    "models-without-training": ("losses/byot.py", "from selfdistill.training import loop",
                                "selfdistill.losses.byot -> selfdistill.training.loop"),
    "methods-write-nothing": ("methods/base.py", "from selfdistill.rundir import layout",
                              "selfdistill.methods.base -> selfdistill.rundir.layout"),
    "nothing-imports-cli": ("report/tables.py", "from selfdistill.cli import progress",
                            "selfdistill.report.tables -> selfdistill.cli.progress"),
    "layers": ("features/causal.py", "from selfdistill import labels",
               "selfdistill.features.causal -> selfdistill.labels"),
    # data already imports config: config importing data closes a loop
    "acyclic-packages": ("config/schema.py", "from selfdistill.data import intervals",
                         "No cycles are allowed in selfdistill."),
}


def _contracts() -> dict[str, dict[str, Any]]:
    options = api.read_configuration(str(PYPROJECT))["contracts_options"]
    return {str(c["id"]): c for c in options}


def _lint(*args: str, pythonpath: Path | None = None, cwd: Path = ROOT
          ) -> subprocess.CompletedProcess[str]:
    env = None
    if pythonpath is not None:  # a copy of the package, found before the installed one
        env = {**os.environ, "PYTHONPATH": str(pythonpath)}
    return subprocess.run([sys.executable, "-c", LINT, "--config", str(PYPROJECT),
                           "--no-cache", "--no-logo", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _top_level_modules() -> set[str]:
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    return graph.find_children(PACKAGE)


# ------------------------------------------------------------------ the contracts


def test_every_contract_holds() -> None:
    done = _lint()
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout


def test_the_injections_cover_every_contract() -> None:
    assert set(INJECTED) == set(_contracts())


@pytest.mark.parametrize("cid", sorted(INJECTED))
def test_each_contract_breaks_on_its_backward_import(cid: str, tmp_path: Path) -> None:
    copy = tmp_path / "src" / PACKAGE
    shutil.copytree(ROOT / "src" / PACKAGE, copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    rel, line, shown = INJECTED[cid]
    with open(copy / rel, "a", encoding="utf-8") as fh:
        fh.write(f"\n{line}  # injected by the test\n")
    done = _lint("--contract", cid, pythonpath=tmp_path / "src", cwd=tmp_path)
    assert done.returncode == 1, done.stdout[-4000:] + done.stderr[-2000:]
    assert f"{_contracts()[cid]['name']} BROKEN" in done.stdout
    assert shown in done.stdout, done.stdout[-4000:]


def test_the_layers_name_every_top_level_module() -> None:
    layers = _contracts()["layers"]["layers"]
    named = {m.strip() for layer in layers for m in re.split(r"[|:]", layer)}
    assert named == _top_level_modules() - {f"{PACKAGE}.__main__"}


def test_nothing_imports_cli_covers_every_other_top_level_module() -> None:
    sources = set(_contracts()["nothing-imports-cli"]["source_modules"])
    assert sources == _top_level_modules() - {f"{PACKAGE}.cli", f"{PACKAGE}.__main__"}


def test_torch_free_modules_do_not_load_torch_at_runtime() -> None:
    # the contract checks the import graph; this checks that package __init__ files
    # (evaluation's lazy exports, the serving and modelio packages) keep it true
    modules = [*_contracts()["no-torch"]["source_modules"],
               "selfdistill.data.store", "selfdistill.data.bybit", "selfdistill.evaluation",
               "selfdistill.inference", "selfdistill.serving.numpy_runtime",
               "selfdistill.rundir.read", "selfdistill.modelio.bundle"]
    code = ("import importlib, sys\n"
            f"for name in {modules!r}:\n"
            "    importlib.import_module(name)\n"
            "    assert 'torch' not in sys.modules, name + ' imported torch'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


# ------------------------------------------------------------------ import cycles


def import_cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every group of modules that import each other in a loop (strongly connected)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(module: str) -> None:  # Tarjan's algorithm
        index[module] = low[module] = len(index)
        stack.append(module)
        for other in sorted(graph.find_modules_directly_imported_by(module)):
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while True:
                member = stack.pop()
                group.append(member)
                if member == module:
                    break
            if len(group) > 1 or module in graph.find_modules_directly_imported_by(module):
                cycles.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(cycles)


def test_no_import_cycles_in_the_package() -> None:
    # every import counts: module level, inside functions and under TYPE_CHECKING
    graph = grimp.build_graph(PACKAGE, cache_dir=None)
    assert len(graph.modules) > 50
    assert import_cycles(graph) == []


@pytest.mark.parametrize("extra", [[], [("pkg.d", "pkg.d")]])
def test_the_cycle_finder_reports_a_cycle(extra: list[tuple[str, str]]) -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("pkg.a", "pkg.b"), ("pkg.b", "pkg.c"), ("pkg.c", "pkg.a"),
                               ("pkg.e", "pkg.a"), ("pkg.c", "pkg.f"), *extra]:
        graph.add_import(importer=importer, imported=imported)
    expected = [["pkg.a", "pkg.b", "pkg.c"], *([["pkg.d"]] if extra else [])]
    assert import_cycles(graph) == expected
