"""Files for RELION and cryoSPARC open where their users open them: the latents (``latents.star``
/ ``.cs``) and the subsets (``select``) written from a particle file inside a RELION project
(``Refine3D/job010/run_data.star`` naming ``Extract/job005/…``) or a cryoSPARC project
(``J12/J12_particles.cs`` naming ``J10/extract/…``) name their stacks as the input does, so
they resolve from the project folder, the way RELION and cryoSPARC resolve them; with
``absolute`` they name the stacks' absolute paths.
"""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pytest
import starfile

from flexcore.core.io import read_particles, write_cs, write_star
from flexcore.stages.prep.step import run_prep
from flexcore.stages.select import run_select
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train.export import export_latents

N = 48


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("paths")
    run_simulate(out, n_particles=N, box=16, pixel_size_A=8.0, snr=1.0, seed=8, n_gt_maps=2)
    return out


def relion_project(sim, root):
    """``Refine3D/job010/run_data.star`` naming ``Extract/job005/particles.mrcs``."""
    (root / "Extract" / "job005").mkdir(parents=True)
    (root / "Refine3D" / "job010").mkdir(parents=True)
    shutil.copy(sim / "particles.mrcs", root / "Extract" / "job005" / "particles.mrcs")
    table = read_particles(sim / "particles.star")
    table.image_paths = np.array(["Extract/job005/particles.mrcs"] * N, dtype=object)
    star = root / "Refine3D" / "job010" / "run_data.star"
    write_star(table, star, image_paths="original")
    return star


def cryosparc_project(sim, root):
    """``J12/J12_particles.cs`` naming ``J10/extract/particles.mrc`` (cryoSPARC resolves
    ``blob/path`` against the project directory)."""
    (root / "J10" / "extract").mkdir(parents=True)
    (root / "J12").mkdir()
    shutil.copy(sim / "particles.mrcs", root / "J10" / "extract" / "particles.mrc")
    table = read_particles(sim / "particles.star")
    table.image_paths = np.array(["J10/extract/particles.mrc"] * N, dtype=object)
    cs = root / "J12" / "J12_particles.cs"
    write_cs(table, cs, image_paths="original")
    return cs


def stack_names(path) -> list[str]:
    """The stack each particle of a STAR or .cs file names, as written."""
    if str(path).endswith(".cs"):
        return [p.decode().lstrip(">") for p in np.load(path)["blob/path"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = starfile.read(path, always_dict=True)["particles"]["rlnImageName"]
    return [n.split("@", 1)[1] for n in names]


@pytest.mark.parametrize("layout", [relion_project, cryosparc_project])
def test_latents_and_subsets_open_from_the_project_folder(sim, tmp_path, monkeypatch, layout):
    project = tmp_path / "project"
    particles = layout(sim, project)
    elsewhere = tmp_path / "flexcore"  # the workflow runs outside the project
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    info = run_prep(particles, sim / "consensus.mrc", elsewhere / "prep", train_box=16)
    rows = np.asarray(read_particles(elsewhere / "prep" / "particles.star").raw["flexSourceIndex"])
    z = np.linspace(-1, 1, N)[:, None]
    written = export_latents(z, particles, rows, elsewhere / "train", project_dir=info.project_dir)
    np.save(elsewhere / "z.npy", z)
    run_select(elsewhere / "z.npy", elsewhere / "prep", elsewhere / "select", method="percentile",
               axis=1, percentile_low=50, percentile_high=100)
    subset = elsewhere / "select" / f"region{particles.suffix}"
    expected = stack_names(particles)[0]
    for path in (written["star"], written["cs"], subset):
        names = stack_names(path)
        assert set(names) == {expected}, path  # as the input names it, not ../../project/…
        assert (project / expected).is_file()  # RELION / cryoSPARC open it from the project
    # absolute paths, for use outside the project
    absolute = export_latents(z, particles, rows, elsewhere / "abs", project_dir=info.project_dir,
                              image_paths="absolute")
    for path in (absolute["star"], absolute["cs"]):
        (name,) = set(stack_names(path))
        assert name == str((project / expected).resolve())
