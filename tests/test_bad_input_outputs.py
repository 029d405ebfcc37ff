"""A step never replaces its own inputs; output folders that cannot be written are one-line
errors before any work; temporary files of a killed run are cleaned; outputs follow the
umask. In the workflow, an input file under results/<dataset>/ stops the run naming its key."""

from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import yaml

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import OutputPathError
from flexcore.core.io import write_map
from flexcore.core.utils.atomic import atomic_path, write_text_atomic
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate

sys.path.insert(0, str(Path(__file__).parent / "workflow_config"))
from snakemake_cli import ROOT, run_snakemake  # noqa: E402


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("outputs")
    run_simulate(out, n_particles=64, box=32, pixel_size_A=4.0, snr=0.5, seed=5, n_gt_maps=2)
    return out


@pytest.fixture
def data(sim, tmp_path):
    """A user's folder: particles.star + particles.mrcs, consensus.mrc and mask.mrc."""
    d = tmp_path / "d"
    d.mkdir()
    for name in ("particles.star", "particles.mrcs", "consensus.mrc", "mask.mrc"):
        shutil.copy(sim / name, d / name)
    return d


def contents(folder: Path) -> dict:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_prep_into_the_folder_of_its_inputs_is_refused_and_nothing_changes(data, capsys):
    before = contents(data)
    rc = cli_main(["prep", str(data / "particles.star"), str(data / "consensus.mrc"), str(data),
                   "--train-box", "24"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert f"{data / 'particles.star'}: is the particle file given to prep" in err
    assert "choose another output folder" in err
    assert contents(data) == before


def test_an_output_that_is_a_hard_link_to_an_input_is_refused(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.link(data / "particles.mrcs", out / "particles.mrcs")  # same inode, other name
    with pytest.raises(OutputPathError, match=r"particles\.mrcs: is the image stack .* given to "
                                              r"prep, and prep would write its output "
                                              r"particles\.mrcs there"):
        run_prep(data / "particles.star", data / "consensus.mrc", out, train_box=32)


def test_mesh_does_not_overwrite_the_users_mask(data, capsys):
    before = (data / "mask.mrc").read_bytes()
    rc = cli_main(["mesh", str(data / "consensus.mrc"), "-o", str(data), "--mask",
                   str(data / "mask.mrc")])
    assert rc == 1
    assert f"{data / 'mask.mrc'}: is the mask given to mesh" in capsys.readouterr().err
    assert (data / "mask.mrc").read_bytes() == before
    assert not (data / "mesh.npz").exists()


def test_reconstruct_rigid_does_not_overwrite_its_mask(data, capsys):
    shutil.copy(data / "mask.mrc", data / "map.mrc")
    rc = cli_main(["reconstruct-rigid", str(data / "particles.star"), str(data), "--mask",
                   str(data / "map.mrc")])
    assert rc == 1 and "map.mrc: is the mask given to reconstruct-rigid" in capsys.readouterr().err


def test_workflow_refuses_an_input_under_its_results_folder(data, tmp_path):
    inside = tmp_path / "results" / "mine" / "prep"
    inside.mkdir(parents=True)
    shutil.copy(data / "consensus.mrc", inside / "consensus.mrc")
    config = tmp_path / "mine.yaml"
    config.write_text(yaml.safe_dump({"dataset": "mine", "input": {
        "source": "files", "particles": str(data / "particles.star"),
        "consensus_map": "results/mine/prep/consensus.mrc"}}))
    result = run_snakemake(tmp_path, "-n", configfiles=(ROOT / "config" / "config.yaml", config),
                           check=False, timeout=120)
    assert result.returncode != 0
    assert ("config key input.consensus_map: 'results/mine/prep/consensus.mrc' lies in "
            "results/mine/, which this workflow writes") in result.stdout
    assert "Job stats" not in result.stdout


def test_output_folder_under_a_file_is_one_line(data, tmp_path, capsys):
    blocker = tmp_path / "notes.txt"
    blocker.write_text("a file, not a folder\n")
    rc = cli_main(["prep", str(data / "particles.star"), str(data / "consensus.mrc"),
                   str(blocker / "prep"), "--train-box", "32"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert f"{blocker / 'prep'}: cannot be the prep output folder: {blocker} is a file" in err


@pytest.mark.parametrize("code, why", [(errno.EACCES, "permission denied"),
                                       (errno.EROFS, "it is on a read-only file system")])
def test_unwritable_output_folder_is_one_line(data, tmp_path, monkeypatch, capsys, code, why):
    """The operating system's answer (simulated: tests often run as root, which may write
    anywhere, and cannot mount a read-only file system) becomes the message."""
    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("flexcore.core.utils.outputs.tempfile.mkstemp", refuse)
    rc = cli_main(["prep", str(data / "particles.star"), str(data / "consensus.mrc"),
                   str(tmp_path / "out"), "--train-box", "32"])
    err = capsys.readouterr().err.strip()
    assert rc == 1 and len(err.splitlines()) == 1
    assert f"{tmp_path / 'out'}: cannot write the prep outputs here: {why}" in err


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_read_only_folder_is_one_line(data, tmp_path, capsys):
    out = tmp_path / "locked"
    out.mkdir(mode=0o555)
    rc = cli_main(["prep", str(data / "particles.star"), str(data / "consensus.mrc"), str(out),
                   "--train-box", "32"])
    assert rc == 1 and "permission denied" in capsys.readouterr().err


def test_temporary_files_of_a_killed_run_are_removed_on_the_next_start(data, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    stale = [out / ".particles.k2j3h4q1.part.mrcs", out / ".prep.x8x8x8x8.part.json"]
    for p in stale:
        p.write_bytes(b"\0" * 4096)  # what a prep killed while writing leaves
    keep = [out / ".particles.notes", out / "particles.part.mrcs"]  # not our temporary names
    for p in keep:
        p.write_text("user file")
    run_prep(data / "particles.star", data / "consensus.mrc", out, train_box=32)
    assert not any(p.exists() for p in stale)
    assert all(p.read_text() == "user file" for p in keep)


@pytest.mark.parametrize("umask", [0o002, 0o022, 0o077])
def test_outputs_follow_the_umask(data, tmp_path, umask):
    old = os.umask(umask)
    try:
        write_text_atomic(tmp_path / "a.txt", "x")
        with atomic_path(tmp_path / "b.npy") as tmp:
            np.save(tmp, np.zeros(3))
        write_map(tmp_path / "c.mrc", np.zeros((4, 4, 4), np.float32), 1.0)
        run_prep(data / "particles.star", data / "consensus.mrc", tmp_path / "prep", train_box=32)
    finally:
        os.umask(old)
    files = [tmp_path / n for n in ("a.txt", "b.npy", "c.mrc")]
    files += sorted((tmp_path / "prep").iterdir())
    assert len(files) == 7
    for f in files:
        assert f.stat().st_mode & 0o777 == 0o666 & ~umask, f
    assert mrcfile.read(tmp_path / "prep" / "particles.mrcs").shape == (64, 32, 32)
