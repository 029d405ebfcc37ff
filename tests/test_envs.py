"""The conda environments for `snakemake --sdm conda` agree with pyproject.toml.

Every runtime dependency of pyproject (the package's and its ``workflow`` extra's, since the
rules run the workflow) appears in both envs/flexcore-cpu.yaml and envs/flexcore-cuda.yaml
(as a conda package or in the pip section) with the same version bounds, the channels are
conda-forge + nodefaults, and the PyTorch builds are the CPU and the CUDA one. (Building the
environments needs conda, which CI does not have.)
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

ROOT = Path(__file__).resolve().parents[1]
ENVS = {"cpu": ROOT / "envs" / "flexcore-cpu.yaml", "cuda": ROOT / "envs" / "flexcore-cuda.yaml"}
# PyPI name → conda-forge name where they differ
CONDA_NAMES = {"torch": "pytorch"}


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def runtime_requirements() -> dict[str, SpecifierSet]:
    project = pyproject()
    reqs = [Requirement(r) for r in project["dependencies"]
            + project["optional-dependencies"]["workflow"]]
    return {r.name.lower(): r.specifier for r in reqs}


def conda_spec(entry: str) -> tuple[str, SpecifierSet, str]:
    """``"pytorch >=2.4,<2.15 cuda*"`` → name, version specifier, build string."""
    parts = entry.split()
    name = parts[0].lower()
    version = parts[1] if len(parts) > 1 else ""
    build = parts[2] if len(parts) > 2 else ""
    if version and version[0].isdigit():  # conda "0.6.*" means "==0.6.*"
        version = "==" + version
    return name, SpecifierSet(version), build


def env_packages(path: Path) -> tuple[dict, dict, dict]:
    """(conda packages, pip packages, conda build strings) of an environment file."""
    env = yaml.safe_load(path.read_text())
    conda, pip, builds = {}, {}, {}
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for line in dep["pip"]:
                if line.startswith("-"):
                    continue
                r = Requirement(line)
                pip[r.name.lower()] = r.specifier
        else:
            name, spec, build = conda_spec(dep)
            conda[name], builds[name] = spec, build
    return conda, pip, builds


@pytest.mark.parametrize("flavour", sorted(ENVS))
def test_env_lists_every_runtime_dependency_with_the_same_bounds(flavour):
    conda, pip, _ = env_packages(ENVS[flavour])
    for name, spec in runtime_requirements().items():
        conda_name = CONDA_NAMES.get(name, name)
        found = conda.get(conda_name, pip.get(name))
        assert found is not None, f"{ENVS[flavour].name}: {name} ({spec}) from pyproject is missing"
        assert found == spec, (f"{ENVS[flavour].name}: {name} has bounds '{found}', "
                               f"pyproject.toml says '{spec}'")


@pytest.mark.parametrize("flavour", sorted(ENVS))
def test_env_lists_nothing_pyproject_does_not_know(flavour):
    conda, pip, _ = env_packages(ENVS[flavour])
    known = set(runtime_requirements()) | {CONDA_NAMES.get(n, n) for n in runtime_requirements()}
    extra = set(conda) | set(pip)
    # the interpreter, pip itself and the CUDA runtime selector are not Python dependencies
    extra -= known | {"python", "pip", "cuda-version"}
    assert not extra, f"{ENVS[flavour].name}: packages not in pyproject.toml: {sorted(extra)}"


@pytest.mark.parametrize("flavour", sorted(ENVS))
def test_env_python_matches_requires_python_and_channels_are_conda_forge(flavour):
    env = yaml.safe_load(ENVS[flavour].read_text())
    assert env["channels"] == ["conda-forge", "nodefaults"]
    conda, _, _ = env_packages(ENVS[flavour])
    assert conda["python"] == SpecifierSet(pyproject()["requires-python"])


def test_pytorch_builds_are_cpu_and_cuda():
    _, _, cpu_builds = env_packages(ENVS["cpu"])
    _, _, cuda_builds = env_packages(ENVS["cuda"])
    assert cpu_builds["pytorch"] == "cpu*"
    assert cuda_builds["pytorch"] == "cuda*"
    assert "cuda-version" in env_packages(ENVS["cuda"])[0]


def test_envs_install_flexcore_from_the_checkout():
    for path in ENVS.values():
        pip = next(d["pip"] for d in yaml.safe_load(path.read_text())["dependencies"]
                   if isinstance(d, dict))
        assert "-e ../.." in pip, f"{path.name}: flexcore itself is not installed"


def test_rules_use_the_cpu_env_for_cpu_steps_and_the_cuda_env_for_gpu_steps():
    rules = ROOT / "workflow" / "rules"
    for smk in rules.glob("*.smk"):
        text = smk.read_text()
        for block in re.split(r"\n(?=rule |    rule )", text):
            m = re.search(r"rule (\w+):", block)
            if not m or "conda:" not in block:
                continue
            gpu = "gpu=" in block
            env = "flexcore-cuda.yaml" if gpu else "flexcore-cpu.yaml"
            assert env in block, f"{smk.name}: rule {m.group(1)} should use envs/{env}"
            assert (ROOT / "envs" / env).is_file()
