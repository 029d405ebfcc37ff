"""Checkpoints run no code: a crafted ``.pt`` is refused by every reader and nothing in it
runs; our own checkpoints hold only plain values (``weights_only=True`` reads them, RNG
states round-trip); old formats convert once, only with ``--trust``; a full disk is one line.
"""

from __future__ import annotations

import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from flexcore.cli.main import main as cli_main
from flexcore.core.checkpoint import (
    FORMAT,
    convert_checkpoint,
    load_checkpoint,
    plain,
    rng_state,
    save_checkpoint,
    set_rng_state,
)
from flexcore.core.errors import ConfigError, InputFileError, OutputPathError
from flexcore.core.trained import load_trained_model
from flexcore.core.utils import disk
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.resume import SolveStore
from flexcore.stages.simulate import run_simulate


class _TouchOnLoad:
    """Unpickling this creates ``marker``: the stand-in for a shell command."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def crafted(tmp_path, how: str) -> tuple[Path, Path]:
    """A ``model.pt`` that would create ``ran`` when unpickled (``torch.save`` zip or a bare
    pickle), with the keys a flexcore checkpoint has."""
    marker = tmp_path / "ran"
    path = tmp_path / f"model_{how}.pt"
    state = {"format": "flexcore-checkpoint-2", "latents": torch.zeros(4, 2),
             "payload": _TouchOnLoad(marker)}
    if how == "torch":
        torch.save(state, path)
    else:
        with open(path, "wb") as fh:
            pickle.dump(state, fh)
    return path, marker


@pytest.fixture(scope="module")
def prep(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckprep")
    sim = run_simulate(root / "sim", n_particles=4, box=16, pixel_size_A=6.0, seed=1)
    run_prep(sim.particles, sim.consensus, root / "prep", train_box=16)
    return root / "prep"


@pytest.mark.parametrize("how", ["torch", "pickle"])
def test_crafted_checkpoint_runs_nothing_anywhere(tmp_path, prep, capsys, how):
    path, marker = crafted(tmp_path, how)
    with pytest.raises(InputFileError, match="convert-checkpoint --trust"):
        load_checkpoint(path)
    with pytest.raises(InputFileError, match="unpickling"):
        load_trained_model(path)
    assert cli_main(["generate", str(path), str(tmp_path / "gen")]) == 1
    assert cli_main(["select", str(path), str(prep), str(tmp_path / "sel")]) == 1
    err = capsys.readouterr().err
    assert err.count("flexcore convert-checkpoint --trust") == 2
    assert all(len(line) < 600 for line in err.splitlines())  # one line each, no traceback
    store = SolveStore(tmp_path / "partial", {"a": 1}, "cpu")
    (tmp_path / "partial" / "flex_A.pt").write_bytes(path.read_bytes())
    assert store.load("flex_A") is None  # the reconstruction recomputes instead
    assert not marker.exists(), "unpickling the crafted file ran its code"


def test_checkpoint_holds_only_plain_values_and_restores_every_rng(tmp_path):
    torch.manual_seed(3)
    np.random.seed(5)
    random.seed(7)
    np.random.normal()  # a cached Gaussian in numpy's state
    state = {"epoch": 2, "rng": rng_state(), "train_idx": np.arange(5), "val_idx": np.arange(2),
             "latents": torch.ones(3, 2), "history": [{"loss": np.float32(1.5)}]}
    expected = (torch.rand(3), np.random.normal(size=3), [random.random() for _ in range(3)])
    save_checkpoint(tmp_path / "c.pt", state)
    raw = torch.load(tmp_path / "c.pt", weights_only=True)  # plain values only
    assert raw["format"] == FORMAT and isinstance(raw["history"][0]["loss"], float)
    back = load_checkpoint(tmp_path / "c.pt")
    np.testing.assert_array_equal(back["train_idx"], np.arange(5))
    set_rng_state(back["rng"])
    got = (torch.rand(3), np.random.normal(size=3), [random.random() for _ in range(3)])
    torch.testing.assert_close(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert got[2] == expected[2]
    with pytest.raises(TypeError, match="cannot hold a _TouchOnLoad"):
        plain({"x": _TouchOnLoad(tmp_path / "never")})


def old_checkpoint(path: Path) -> dict:
    """A checkpoint as format 2 wrote it: numpy's and Python's RNG states as their own
    objects, the split as numpy arrays (readable only by unpickling)."""
    state = {"format": "flexcore-checkpoint-2", "epoch": 1, "latents": torch.zeros(3, 2),
             "train_idx": np.arange(2), "val_idx": np.arange(2, 3),
             "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
                     "python": random.getstate(), "cuda": None}}
    torch.save(state, path)
    return state


def test_old_checkpoint_is_refused_then_converted_once_with_trust(tmp_path, capsys):
    old = tmp_path / "model.pt"
    state = old_checkpoint(old)
    with pytest.raises(InputFileError, match=r"flexcore convert-checkpoint --trust .*model\.pt"):
        load_checkpoint(old)
    with pytest.raises(ConfigError, match="--trust"):
        convert_checkpoint(old, tmp_path / "new.pt")
    assert cli_main(["convert-checkpoint", str(old), str(tmp_path / "new.pt")]) == 1
    assert not (tmp_path / "new.pt").exists()
    assert cli_main(["convert-checkpoint", "--trust", str(old), str(tmp_path / "new.pt")]) == 0
    assert "converted from flexcore-checkpoint-2" in capsys.readouterr().out
    new = load_checkpoint(tmp_path / "new.pt")
    assert new["format"] == FORMAT
    np.testing.assert_array_equal(new["val_idx"], [2])
    set_rng_state(new["rng"])
    a = np.random.random(2), random.random()
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    assert np.array_equal(a[0], np.random.random(2)) and a[1] == random.random()


def test_checkpoint_refused_when_the_disk_lacks_room(tmp_path, monkeypatch):
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 10 * 2**20)
    with pytest.raises(OutputPathError, match=r"needs 16\.\d MB in .*, 10\.5 MB free"):
        save_checkpoint(tmp_path / "c.pt", {"latents": torch.zeros(100)})
    assert list(tmp_path.iterdir()) == []


def test_full_disk_while_writing_a_checkpoint_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(disk, "free_bytes", lambda folder: 10**12)  # the check passes ...

    def full(obj, fh, *a, **k):  # ... and the write hits a full disk
        fh.write(b"x" * 10)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(OutputPathError, match="disk filled up"):
        save_checkpoint(tmp_path / "c.pt", {"latents": torch.zeros(100)})
    assert list(tmp_path.iterdir()) == []  # no .part file
