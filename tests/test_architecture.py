"""The package's three tiers (docs/architecture.md): core, stages, cli.

* every module lies in one tier: ``flexcore/core/``, ``flexcore/stages/<stage>/`` or
  ``flexcore/cli/`` (besides the package's own ``__init__`` and ``__main__``);
* the core imports only the core; a stage imports the core and itself, never another stage;
  the command line imports anything;
* inside the core, packages and modules import each other without a cycle;
* every stage has ``step.py`` with ``run_<stage>``, a workflow rule of the same name, and every
  command runs a ``run_<command>`` of its stage;
* every module imports; importing flexcore pulls in no workflow tool and leaves matplotlib
  alone.

Modules are found by walking the files (a package that fails to import is still checked).
"""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import flexcore

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "flexcore"
RULES = ROOT / "workflow" / "rules"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    """``{module: file}`` for every ``.py`` file under flexcore/ (found by walking files)."""
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def tier(module: str) -> tuple[str, str | None] | None:
    """``("core", None)``, ``("stage", name)``, ``("cli", None)``, ``("root", None)`` for
    the package itself and ``flexcore.stages``; None for a module outside the tiers."""
    parts = module.split(".")
    if module in ("flexcore", "flexcore.__main__", "flexcore.stages"):
        return ("root", None)
    if parts[1] == "core":
        return ("core", None)
    if parts[1] == "stages":
        return ("stage", parts[2])
    if parts[1] == "cli":
        return ("cli", None)
    return None


def flexcore_imports(name: str, path: Path, source: str | None = None,
                     modules: dict[str, Path] | None = None) -> set[str]:
    """Absolute names of the flexcore modules ``name`` imports anywhere in its source (also
    inside functions); ``from . import x`` counts as importing the package and ``x``."""
    modules = all_modules() if modules is None else modules
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
            found |= {f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in modules}
    return found


def tier_violations(imports: dict[str, set[str]]) -> list[str]:
    """Every import that breaks the tier rule, and every module outside the tiers."""
    bad = []
    for name, targets in sorted(imports.items()):
        own = tier(name)
        if own is None:
            bad.append(f"{name} lies outside the three tiers (flexcore/core, flexcore/stages/<stage>, "
                       "flexcore/cli)")
            continue
        for target in sorted(targets):
            other = tier(target)
            if other is None or target == "flexcore":
                continue  # reported as a module of its own; flexcore itself holds __version__
            if own[0] == "core" and other[0] != "core":
                bad.append(f"{name} (core) imports {target} ({other[0]})")
            elif own[0] == "stage" and other[0] == "stage" and other[1] != own[1]:
                bad.append(f"{name} (stage {own[1]}) imports {target} (stage {other[1]})")
            elif own[0] == "stage" and other[0] in ("cli", "root") and target != "flexcore.stages":
                bad.append(f"{name} (stage {own[1]}) imports {target} ({other[0]})")
    return bad


def package_imports() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: flexcore_imports(name, path, modules=modules) for name, path in modules.items()}


def run_python(code: str) -> str:
    """Run ``code`` in a new interpreter from the checkout (a clean ``sys.modules``); its
    standard output, after checking that it succeeded."""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_no_stage_imports_another_stage_and_the_core_imports_no_stage():
    bad = tier_violations(package_imports())
    assert not bad, "imports across the tiers:\n" + "\n".join(bad)


def test_the_tier_check_sees_a_stage_import_and_a_stray_module():
    # negative controls: the checker reports a stage → stage import (inside a function), a
    # core → stage import and a module outside the tiers
    modules = all_modules()
    path = modules["flexcore.stages.state_maps.step"]
    source = path.read_text() + "\n\ndef late():\n    from ..generate.step import run_generate\n"
    found = flexcore_imports("flexcore.stages.state_maps.step", path, source, modules)
    assert "flexcore.stages.generate.step" in found
    core_path = modules["flexcore.core.fsc"]
    core_source = core_path.read_text() + "\nfrom .. import stages\nfrom ..stages.train import step\n"
    core_found = flexcore_imports("flexcore.core.fsc", core_path, core_source, modules)
    bad = tier_violations({"flexcore.stages.state_maps.step": found,
                           "flexcore.core.fsc": core_found,
                           "flexcore.helpers": set()})
    assert any("state_maps.step (stage state_maps) imports flexcore.stages.generate.step" in b
               for b in bad), bad
    assert any("flexcore.core.fsc (core) imports flexcore.stages.train" in b for b in bad), bad
    assert any("flexcore.helpers lies outside the three tiers" in b for b in bad), bad


def core_graph() -> dict[str, set[str]]:
    """Import graph between the core's top-level modules and packages
    (``flexcore.core.io``, ``flexcore.core.fsc``, …)."""
    def unit(module: str) -> str:
        return ".".join(module.split(".")[:3])

    graph: dict[str, set[str]] = {}
    for name, targets in package_imports().items():
        if tier(name) != ("core", None) or name == "flexcore.core":
            continue
        graph.setdefault(unit(name), set())
        graph[unit(name)] |= {unit(t) for t in targets
                              if tier(t) == ("core", None) and t != "flexcore.core"
                              and unit(t) != unit(name)}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_core_has_no_import_cycle():
    cycle = find_cycle(core_graph())
    assert cycle is None, "import cycle in the core: " + " → ".join(cycle)


def test_the_cycle_check_sees_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def stage_names() -> list[str]:
    return sorted(p.parent.name for p in (PACKAGE / "stages").glob("*/__init__.py"))


def defined_functions(path: Path) -> set[str]:
    return {n.name for n in ast.parse(path.read_text()).body if isinstance(n, ast.FunctionDef)}


def workflow_rules() -> set[str]:
    names = set()
    for smk in RULES.glob("*.smk"):
        names |= set(re.findall(r"^\s*(?:use\s+)?rule\s+(\w+)\s*(?::|as|with)", smk.read_text(), re.M))
        names |= set(re.findall(r"^\s*use rule \w+ as (\w+)", smk.read_text(), re.M))
    return names


@pytest.mark.parametrize("stage", stage_names())
def test_every_stage_is_a_package_with_run_stage_and_a_rule_of_its_name(stage):
    step = PACKAGE / "stages" / stage / "step.py"
    assert step.is_file(), f"stage {stage} has no step.py"
    assert f"run_{stage}" in defined_functions(step), f"{step} defines no run_{stage}"
    assert stage in workflow_rules(), f"no workflow rule is named {stage}"


def test_every_command_runs_its_stage():
    from flexcore.cli.main import COMMANDS

    stages = stage_names()
    for command in COMMANDS:
        name = command.replace("-", "_")
        owner = max((s for s in stages if name == s or name.startswith(s + "_")), key=len,
                    default=None)
        assert owner, f"command {command} belongs to no stage"
        step = PACKAGE / "stages" / owner / "step.py"
        assert f"run_{name}" in defined_functions(step), f"{step} defines no run_{name} for {command}"
        assert f"run_{name}" in (PACKAGE / "cli" / f"{name}.py").read_text(), \
            f"flexcore/cli/{name}.py does not call run_{name}"


def test_only_stages_define_run_functions():
    # ``run_`` names a stage's entry point; helpers are named for what they do
    bad = []
    for name, path in all_modules().items():
        for fn in defined_functions(path):
            if fn.startswith("run_") and not (tier(name) or ("",))[0] == "stage":
                bad.append(f"{name}.{fn}")
            elif fn.startswith("run_") and path.name != "step.py":
                bad.append(f"{name}.{fn} (not in a step.py)")
    assert not bad, "run_ functions outside a stage's step.py: " + ", ".join(sorted(bad))


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
    stdout = run_python(code)
    backend, tools = stdout.split("\n")[:2]
    if probe == "backend":
        assert backend == "svg", f"importing flexcore switched the matplotlib backend to {backend}"
    else:
        assert tools == "[]", f"importing flexcore imported {tools}"


def test_evaluate_import_leaves_the_backend():
    code = ("import matplotlib; matplotlib.use('pdf'); import flexcore.stages.evaluate.step; "
            "print(matplotlib.get_backend())")
    stdout = run_python(code)
    assert stdout.strip() == "pdf"


def test_workflow_scripts_of_torch_free_stages_do_not_import_torch():
    """The report pages and the particle selection need no torch: their rule scripts import
    ``flexcore.cli.main`` and their stage, and importing torch would cost each rule 1.5–2.5 s
    of start-up on the 2-core machine."""
    code = ("import sys, flexcore.cli.main, flexcore.stages.report_pages.step, "
            "flexcore.stages.select.step; print(sorted(m for m in sys.modules "
            "if m == 'torch' or m.startswith('torch.')))")
    stdout = run_python(code)
    assert stdout.strip() == "[]"
    for script in ("report_pages.py", "select.py"):
        imports = re.findall(r"^from (flexcore[\w.]*) import", (ROOT / "workflow" / "scripts" /
                                                                  script).read_text(), re.M)
        assert set(imports) <= {"flexcore.cli.main", "flexcore.stages.report_pages.step",
                                "flexcore.stages.select.step"}, (script, imports)


def test_what_the_snakefile_imports_leaves_scipy_and_torch_out():
    """The Snakefile imports these modules to check the configuration and size jobs, in every
    snakemake command (and in every job Slurm starts); scipy.spatial and scipy.cluster cost
    ~0.6 s there and torch 2 s. The formats of flexcore.core.io still load on first use."""
    code = ("import sys\n"
            "from flexcore.core.io.mrc import read_map_header\n"
            "from flexcore.core.io.readers import count_particles\n"
            "from flexcore.core.resources import DatasetSize\n"
            "from flexcore.stages.select.regions import check_parameters\n"
            "print(sorted(m for m in ('torch', 'pandas', 'scipy.spatial', 'scipy.cluster') "
            "if m in sys.modules))\n"
            "import flexcore.core.io as io\n"
            "print(io.read_star.__module__, 'scipy.spatial' in sys.modules)\n")
    stdout = run_python(code)
    assert stdout.splitlines() == ["[]", "flexcore.core.io.star True"]
    import flexcore.core.io as io

    assert set(io.__all__) <= set(dir(io))
    with pytest.raises(AttributeError, match="no attribute 'read_nothing'"):
        io.read_nothing  # noqa: B018


def test_provenance_names_torch_without_importing_it():
    """Rules that never use torch (select) write provenance too. It names the installed
    torch and its CUDA build as torch itself does, without the 2-3 s import."""
    code = ("import sys, json\n"
            "from flexcore.core.utils.provenance import provenance\n"
            "record = provenance('select')\n"
            "loaded = 'torch' in sys.modules\n"
            "import torch\n"
            "print(json.dumps([loaded, record['torch'], record['cuda'], torch.__version__, "
            "torch.version.cuda]))\n")
    stdout = run_python(code)
    loaded, version, cuda, torch_version, torch_cuda = json.loads(stdout)
    assert not loaded and version == torch_version and cuda == torch_cuda and version


def import_graph_mermaid() -> str:
    """The package's import graph as a Mermaid flowchart: the command line imports stages,
    each stage imports the core (one arrow per stage that imports anything of it; a stage →
    stage import would show as an arrow between two stages), and inside the core the
    arrows between its modules and packages."""
    def unit(module: str) -> str:
        t = tier(module)
        if t is None or t[0] == "root":
            return ""
        if t[0] == "stage":
            return f"stages.{t[1]}"
        if t[0] == "cli":
            return "cli"
        return ".".join(module.split(".")[1:3])

    outer, inner = set(), set()
    for name, targets in package_imports().items():
        a = unit(name)
        for target in targets:
            b = unit(target)
            if not a or not b or a == b or "core" in (a, b):
                continue
            if a.startswith("core.") and b.startswith("core."):
                inner.add((a, b))
            elif a.startswith("stages.") and b.startswith("core."):
                outer.add((a, "core"))
            else:
                outer.add((a, b))

    def node(name: str) -> str:  # "core" alone is the subgraph
        return name if name == "core" else f"{name.replace('.', '_')}[{name}]"

    lines = ["flowchart TD"]
    lines += [f"    {node(a)} --> {node(b)}" for a, b in sorted(outer)]
    lines += ["    subgraph core"]
    lines += [f"        {node(a)} --> {node(b)}" for a, b in sorted(inner)]
    lines += ["    end"]
    return "\n".join(lines) + "\n"


def test_the_import_graph_in_the_docs_is_the_package_s():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    block = re.search(r"```mermaid\n(.*?)```", doc, re.S)
    assert block, "docs/architecture.md has no ```mermaid import graph"
    assert block.group(1) == import_graph_mermaid(), (
        "docs/architecture.md's import graph is out of date; replace its ```mermaid block with "
        "the output of tests/test_architecture.py::import_graph_mermaid()")
    assert not any(line.split("-->")[0].strip().startswith("stages_")
                   and line.split("-->")[1].strip().startswith("stages_")
                   for line in block.group(1).splitlines() if "-->" in line), \
        "a stage → stage arrow in the import graph"


def test_the_modules_the_suite_starts_first_exist():
    """conftest.py collects the longest test modules first (xdist balance); a renamed one
    would silently lose its place."""
    from conftest import LONGEST_FIRST

    tests = Path(__file__).parent
    missing = [name for name in LONGEST_FIRST if not (tests / f"{name}.py").is_file()]
    assert not missing, f"tests/conftest.py LONGEST_FIRST names no module {missing}"
