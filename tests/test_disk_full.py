"""A full disk is one line naming the folder, never a bus error or a traceback, and leaves
no partial file: the free space is checked before a stack or a checkpoint is written
("needs X in DIR, Y free"), and a disk that fills up meanwhile (``ENOSPC``) is reported the
same way. On a small tmpfs where the sandbox lets us mount one (root), else skipped; the
free-space function is also monkeypatched.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import OutputPathError
from flexcore.core.utils import disk
from flexcore.core.utils.atomic import write_text_atomic
from flexcore.stages.simulate import run_simulate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk")
    run_simulate(root / "sim", n_particles=200, box=24, pixel_size_A=5.0, seed=1, n_gt_maps=3)
    return root / "sim"


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs at ``tmp_path/small`` (skips where mounting is not allowed)."""
    folder = tmp_path / "small"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root; the sandbox runs these tests as a user")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def fill(folder: Path, leave: int) -> None:
    """Fill ``folder``'s file system up to ``leave`` bytes free."""
    with open(folder / "filler", "wb") as fh:
        fh.write(b"\0" * max(0, disk.free_bytes(folder) - leave))


def flexcore_cli(args: list[str], free_bytes: int | None = None) -> subprocess.CompletedProcess:
    """``flexcore ARGS`` in a fresh process (a bus error kills only it), optionally with the
    free-space function reporting ``free_bytes``."""
    patch = ("import flexcore.core.utils.disk as d; d.free_bytes = lambda folder: "
             f"{free_bytes}; " if free_bytes is not None else "")
    code = f"import sys; {patch}from flexcore.cli.main import main; sys.exit(main({args!r}))"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=300)


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".part" in p.name)


def test_prep_refuses_a_disk_without_room_before_any_work(sim, small_disk):
    done = flexcore_cli(["prep", str(sim / "particles.star"), str(sim / "consensus.mrc"),
                         str(small_disk / "prep"), "--train-box", "16"])
    assert done.returncode == 1, done.stderr
    err = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "Traceback" not in done.stderr
    assert re.search(rf"needs 17\.\d MB in {small_disk / 'prep'}, 2\.1 MB free", err[0])
    assert not (small_disk / "prep" / "particles.mrcs").exists()


def test_prep_on_a_disk_that_fills_up_is_one_line_not_a_bus_error(sim, small_disk):
    fill(small_disk, 100_000)  # 200 images of 16² float32 need 205 kB
    done = flexcore_cli(["prep", str(sim / "particles.star"), str(sim / "consensus.mrc"),
                         str(small_disk / "prep"), "--train-box", "16"], free_bytes=10**12)
    assert done.returncode == 1, (done.returncode, done.stderr[-2000:])  # was -7: SIGBUS
    err = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(err) == 1 and "Traceback" not in done.stderr
    assert f"{small_disk / 'prep'}: the disk filled up while writing here" in err[0]
    assert leftovers(small_disk) == []


def test_simulate_refuses_a_disk_without_room(small_disk, capsys):
    assert cli_main(["simulate", str(small_disk / "sim"), "--n-particles", "3000"]) == 1
    err = capsys.readouterr().err
    assert re.search(r"needs \d\d\.\d MB in", err) and "2.1 MB free" in err and "Traceback" not in err
    assert leftovers(small_disk) == [] and not (small_disk / "sim" / "particles.mrcs").exists()


def test_mesh_on_a_full_disk_is_one_line(sim, small_disk, tmp_path, capsys):
    fill(small_disk, 20_000)
    assert cli_main(["mesh", str(sim / "consensus.mrc"), "-o", str(small_disk / "mesh"),
                     "--n-cells", "6"]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert f"{small_disk / 'mesh'}: the disk filled up while writing here" in err
    assert leftovers(small_disk) == []


def test_free_space_check_with_a_patched_free_space_function(sim, tmp_path, monkeypatch,
                                                             capsys):
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 5 * 10**6)
    assert cli_main(["prep", str(sim / "particles.star"), str(sim / "consensus.mrc"),
                     str(tmp_path / "prep"), "--train-box", "16"]) == 1
    err = capsys.readouterr().err
    assert re.search(rf"needs 17\.\d MB in {tmp_path / 'prep'}, 5\.0 MB free", err)
    assert not (tmp_path / "prep" / "particles.mrcs").exists()
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 10**12)

    def full(self, *a, **k):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OutputPathError, match="the disk filled up while writing here"):
        write_text_atomic(tmp_path / "x" / "a.txt", "text")
    assert list((tmp_path / "x").iterdir()) == []
