"""The package's layering (docs/architecture.md): no module imports a higher layer; every
module imports; importing flexcore pulls in no workflow tool and leaves matplotlib alone."""

from __future__ import annotations

import ast
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flexcore

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flexcore"
DOC = ROOT / "docs" / "architecture.md"


def layers() -> dict[str, int]:
    """``{module prefix: layer}`` from the ```layers block of docs/architecture.md."""
    block = re.search(r"```layers\n(.*?)```", DOC.read_text(), re.S)
    assert block, f"{DOC} has no ```layers block"
    table = {}
    for line in block.group(1).splitlines():
        level, *names = line.split()
        for name in names:
            assert name not in table, f"{name} is listed twice in {DOC.name}"
            table[name] = int(level)
    return table


def layer_of(module: str, table: dict[str, int]) -> int:
    """Layer of the longest listed prefix of ``module``."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        name = ".".join(parts[:n])
        if name in table:
            return table[name]
    raise AssertionError(f"{module} is in no layer of {DOC.name}: add it there")


def all_modules() -> list[str]:
    names = ["flexcore"]
    for info in pkgutil.walk_packages([str(PACKAGE)], prefix="flexcore."):
        names.append(info.name)
    return sorted(names)


def module_path(name: str) -> Path:
    rel = Path(*name.split(".")[1:])
    pkg = PACKAGE / rel / "__init__.py"
    return pkg if pkg.is_file() else (PACKAGE / rel).with_suffix(".py")


def flexcore_imports(name: str, source: str | None = None) -> set[str]:
    """Absolute names of the flexcore modules ``name`` imports anywhere in its source (also
    inside functions); ``from . import x`` counts as importing the package and ``x``."""
    path = module_path(name)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    source = path.read_text() if source is None else source
    found = set()
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "flexcore"}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "flexcore":
                continue
            found.add(target)
            found |= {f"{target}.{a.name}" for a in node.names
                      if module_path(f"{target}.{a.name}").exists()}
    return found


def test_every_module_has_a_layer_and_imports_no_higher_layer():
    table = layers()
    upward = []
    for name in all_modules():
        own = layer_of(name, table)
        for target in sorted(flexcore_imports(name)):
            if layer_of(target, table) > own:
                upward.append(f"{name} (layer {own}) imports {target} "
                              f"(layer {layer_of(target, table)})")
    assert not upward, "upward imports:\n" + "\n".join(upward)


def test_the_layer_check_sees_an_upward_import():
    # the checker itself: a model module importing train (inside a function) is reported
    table = layers()
    source = (module_path("flexcore.model.flow").read_text()
              + "\n\ndef late():\n    from ..train.checkpoint import load_checkpoint\n")
    found = flexcore_imports("flexcore.model.flow", source)
    assert "flexcore.train.checkpoint" in found
    assert layer_of("flexcore.train.checkpoint", table) > layer_of("flexcore.model.flow", table)


def test_every_module_imports():
    import importlib

    for name in all_modules():
        if name != "flexcore.__main__":  # runs the command line
            importlib.import_module(name)
    assert flexcore.__version__


@pytest.mark.parametrize("probe", ["backend", "workflow tools"])
def test_importing_flexcore_changes_nothing_global(probe):
    """In a fresh interpreter: pick a non-default backend, import every flexcore module,
    and the backend is still the one picked; and no Snakemake or pygments was imported."""
    modules = [m for m in all_modules() if m != "flexcore.__main__"]
    code = "\n".join([
        "import importlib, sys, matplotlib",
        "matplotlib.use('svg')",
        f"for name in {modules!r}:",
        "    importlib.import_module(name)",
        "print(matplotlib.get_backend())",
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'snakemake', 'pygments'}))",
    ])
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    backend, tools = out.stdout.split("\n")[:2]
    if probe == "backend":
        assert backend == "svg", f"importing flexcore switched the matplotlib backend to {backend}"
    else:
        assert tools == "[]", f"importing flexcore imported {tools}"


def test_evaluate_import_leaves_the_backend():
    code = ("import matplotlib; matplotlib.use('pdf'); import flexcore.evaluate; "
            "print(matplotlib.get_backend())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "pdf"
