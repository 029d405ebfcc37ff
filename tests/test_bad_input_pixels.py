"""Pixels are checked before they are used: NaN, constant and all-zero images are refused
naming the stack, the image and the particle's row; maps and masks without structure are
refused; no resolution is read off a non-finite FSC; no NaN map is written."""

from __future__ import annotations

import shutil

import mrcfile
import numpy as np
import pytest

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import FlexcoreError, InputFileError
from flexcore.core.fsc import format_resolution, fsc_curve, resolution_at
from flexcore.core.io import read_mask, write_map, write_stack
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.outputs import write_outputs
from flexcore.stages.simulate import run_simulate

N = 300


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    out = tmp_path_factory.mktemp("pixels")
    run_simulate(out, n_particles=N, box=32, pixel_size_A=4.0, snr=0.5, seed=3, n_gt_maps=2)
    return out


def spoiled_copy(sim, folder, edit):
    """The simulated particles in ``folder`` with ``edit(images)`` applied to the stack."""
    folder.mkdir()
    images = mrcfile.read(sim / "particles.mrcs").copy()
    edit(images)
    write_stack(folder / "particles.mrcs", images, 4.0)
    shutil.copy(sim / "particles.star", folder / "particles.star")
    return folder / "particles.star"


def not_in_prep_sample(n):
    """A particle that prep's contrast sample skips, so only the streamed pass reads it."""
    sample = set(np.linspace(0, n - 1, min(n, 256)).round().astype(int).tolist())
    return next(i for i in range(n // 2, n) if i not in sample)


def test_one_nan_pixel_is_refused_naming_stack_image_and_row(sim, tmp_path):
    bad = not_in_prep_sample(N)

    def edit(images):
        images[bad, 5, 7] = np.nan

    star = spoiled_copy(sim, tmp_path / "data", edit)
    with pytest.raises(InputFileError) as err:
        run_prep(star, sim / "consensus.mrc", tmp_path / "out", train_box=32)
    msg = str(err.value)
    assert msg.startswith(str(tmp_path / "data" / "particles.mrcs"))
    assert f"image {bad + 1} (particle row {bad + 1} of {star})" in msg
    assert "has 1 NaN or infinite pixel(s)" in msg
    # refused in the streamed pass, before anything was written under a final name
    assert not [p.name for p in (tmp_path / "out").iterdir()]


@pytest.mark.parametrize("value, what", [(3.5, r"is constant \(every pixel 3\.5\)"),
                                         (0.0, "is all zero")])
def test_a_constant_image_is_refused(sim, tmp_path, value, what):
    def edit(images):
        images[11] = value

    star = spoiled_copy(sim, tmp_path / "data", edit)
    with pytest.raises(InputFileError, match=rf"particles\.mrcs: image 12 \(particle row 12 .*{what}"):
        run_prep(star, sim / "consensus.mrc", tmp_path / "out", train_box=32)


def test_an_all_zero_stack_is_refused_at_its_first_image(sim, tmp_path):
    """(prep reads a sample of 256 images first: the batch holds 255 more.)"""
    star = spoiled_copy(sim, tmp_path / "data", lambda images: images.fill(0.0))
    with pytest.raises(InputFileError, match=r"image 1 \(particle row 1 .*is all zero.*"
                                             r"255 more such image"):
        run_prep(star, sim / "consensus.mrc", tmp_path / "out", train_box=32)
    assert not (tmp_path / "out" / "prep.json").exists()


def test_reconstruct_rigid_refuses_a_nan_stack_in_one_line(sim, tmp_path, capsys):
    def edit(images):
        images[40, 0, 0] = np.inf

    star = spoiled_copy(sim, tmp_path / "data", edit)
    assert cli_main(["reconstruct-rigid", str(star), str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "particles.mrcs: image 41 (particle row 41" in err and "NaN or infinite" in err
    assert not (tmp_path / "out" / "map.mrc").exists()


def test_a_constant_consensus_map_or_mask_is_refused(sim, tmp_path):
    write_map(tmp_path / "flat.mrc", np.full((32, 32, 32), 0.25, np.float32), 4.0)
    with pytest.raises(InputFileError, match=r"flat\.mrc: consensus map is constant \(0\.25"):
        run_prep(sim / "particles.star", tmp_path / "flat.mrc", tmp_path / "out", train_box=32)
    write_map(tmp_path / "full.mrc", np.ones((32, 32, 32), np.float32), 4.0)
    with pytest.raises(InputFileError, match=r"full\.mrc: mask is constant \(1 everywhere\)"):
        read_mask(tmp_path / "full.mrc", 32, 4.0)


def test_no_resolution_is_read_off_a_non_finite_fsc():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(16, 16, 16))
    b = a + 0.1 * rng.normal(size=a.shape)
    assert resolution_at(fsc_curve(a, b), 0.143, 2.0) == 4.0  # never falls: Nyquist
    a[3, 4, 5] = np.nan
    fsc = fsc_curve(a, b)
    assert np.isnan(fsc[1:]).all()
    res = resolution_at(fsc, 0.143, 2.0)
    assert np.isnan(res) and format_resolution(res) == "undetermined (FSC not finite)"


def test_a_reconstruction_with_nan_voxels_writes_no_maps(tmp_path):
    good = np.ones((8, 8, 8), np.float32)
    bad = good.copy()
    bad[2, 2, 2] = np.nan
    with pytest.raises(FlexcoreError, match="flex reconstruction of half B has NaN"):
        write_outputs(tmp_path, {"flex": [good, bad]}, {}, good, 2.0, None)
    assert not list(tmp_path.iterdir())


def test_each_image_is_checked_once_however_often_it_is_read(sim, tmp_path, monkeypatch):
    """The reconstruction streams every image once per L-BFGS pass: the pixel check runs the
    first time an image is read, not again, and still refuses a bad image met later."""
    import flexcore.core.io.particles as particles_module
    from flexcore.core.io import ImageSource, read_particles

    bad = 150
    star = spoiled_copy(sim, tmp_path / "data", lambda images: images.__setitem__(bad, 0.0))
    checked = []
    real = particles_module.check_images

    def counting(images, *args, **kwargs):
        checked.append(len(images))
        return real(images, *args, **kwargs)

    monkeypatch.setattr(particles_module, "check_images", counting)
    source = ImageSource(read_particles(star))
    first = source.read(np.arange(0, 100))
    again = source.read(np.arange(50, 120))  # 50 already checked, 20 new
    np.testing.assert_array_equal(again[:50], first[50:])
    assert checked == [100, 20]
    source.read(np.arange(0, 120))
    assert checked == [100, 20]  # nothing new: no check
    with pytest.raises(InputFileError, match=f"image {bad + 1} .* is all zero"):
        source.read(np.arange(140, 160))
    source.close()
