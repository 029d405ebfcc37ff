"""Particle files inside RELION and cryoSPARC projects: image paths relative to the project
folder are found by searching above the particle file, or through an explicit project_dir
(kept in prep.json, so the reconstruction reads the same stacks)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import InputFileError
from flexcore.core.io import ImageSource, read_particles, write_cs, write_star
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.particles import load_recon_particles
from flexcore.stages.simulate import run_simulate


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("projects")
    run_simulate(out, n_particles=64, box=32, pixel_size_A=4.0, snr=0.5, seed=6, n_gt_maps=2)
    return out


def relion_project(sim, root):
    """RELION's layout: Refine3D/job009/run_data.star naming Extract/job005/p_stack.mrcs."""
    (root / "Extract" / "job005").mkdir(parents=True)
    (root / "Refine3D" / "job009").mkdir(parents=True)
    (root / "default_pipeline.star").write_text("data_pipeline_general\n_rlnPipeLineJobCounter 10\n")
    shutil.copy(sim / "particles.mrcs", root / "Extract" / "job005" / "p_stack.mrcs")
    shutil.copy(sim / "consensus.mrc", root / "Refine3D" / "job009" / "run_class001.mrc")
    table = read_particles(sim / "particles.star")
    table.image_paths = np.array(["Extract/job005/p_stack.mrcs"] * len(table), dtype=object)
    star = root / "Refine3D" / "job009" / "run_data.star"
    write_star(table, star)
    assert "@Extract/job005/p_stack.mrcs" in star.read_text()
    return star


def cryosparc_project(sim, root):
    """cryoSPARC's layout: J24/J24_particles.cs with blob/path '>J1/imported/p_stack.mrc'."""
    (root / "J1" / "imported").mkdir(parents=True)
    (root / "J24").mkdir()
    shutil.copy(sim / "particles.mrcs", root / "J1" / "imported" / "p_stack.mrc")
    table = read_particles(sim / "particles.star")
    table.image_paths = np.array(["J1/imported/p_stack.mrc"] * len(table), dtype=object)
    cs = root / "J24" / "J24_particles.cs"
    write_cs(table, cs)
    arr = np.load(cs)
    wider = [(n, "S64" if n == "blob/path" else arr.dtype[n]) for n in arr.dtype.names]
    arr = arr.astype(wider)
    arr["blob/path"] = b">J1/imported/p_stack.mrc"
    with open(cs, "wb") as f:
        np.save(f, arr)
    return cs


@pytest.mark.parametrize("layout", [relion_project, cryosparc_project])
def test_project_layouts_are_found_from_anywhere(sim, tmp_path, monkeypatch, layout):
    particles = layout(sim, tmp_path / "project")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # not the project folder, as in a Snakemake run
    info = run_prep(particles, sim / "consensus.mrc", tmp_path / "prep", train_box=32)
    assert info.n_particles == 64 and info.map_match_score > 4
    prepared = load_recon_particles(tmp_path / "prep", info)  # the reconstruction's view
    source = ImageSource(prepared.source)
    try:
        stack = source.reader(str(prepared.source.image_paths[0])).path
    finally:
        source.close()
    assert stack.resolve().is_relative_to((tmp_path / "project").resolve())


def test_a_particle_file_copied_out_of_its_project_needs_project_dir(sim, tmp_path):
    star = relion_project(sim, tmp_path / "project")
    copy = tmp_path / "copied" / "run_data.star"
    copy.parent.mkdir()
    shutil.copy(star, copy)
    with pytest.raises(InputFileError, match=r"image stack 'Extract/job005/p_stack\.mrcs' not "
                                             r"found .*give it as project_dir"):
        run_prep(copy, sim / "consensus.mrc", tmp_path / "prep", train_box=32)
    info = run_prep(copy, sim / "consensus.mrc", tmp_path / "prep", train_box=32,
                    project_dir=tmp_path / "project")
    assert info.project_dir == str((tmp_path / "project").resolve())
    assert json.loads((tmp_path / "prep" / "prep.json").read_text())["project_dir"] == \
        info.project_dir
    prepared = load_recon_particles(tmp_path / "prep", info)
    assert prepared.source.project_dir == info.project_dir


def test_reconstruct_rigid_takes_project_dir(sim, tmp_path, capsys):
    star = relion_project(sim, tmp_path / "project")
    copy = tmp_path / "run_data.star"
    shutil.copy(star, copy)
    assert cli_main(["reconstruct-rigid", str(copy), str(tmp_path / "rigid"),
                     "--project-dir", str(tmp_path / "project")]) == 0
    assert (tmp_path / "rigid" / "map.mrc").is_file()
    assert cli_main(["reconstruct-rigid", str(copy), str(tmp_path / "rigid2"),
                     "--project-dir", str(tmp_path / "nowhere")]) == 1
    assert "nowhere: project_dir is not a folder" in capsys.readouterr().err
