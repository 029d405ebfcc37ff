"""Generator: frame counts, voxel sizes, origins, the z = 0 frame, custom points, high-res."""

import mrcfile
import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from flexcore.core.checkpoint import load_checkpoint, save_checkpoint
from flexcore.core.errors import InputFileError
from flexcore.core.fourier import fourier_crop
from flexcore.core.io import read_map, write_map
from flexcore.core.trained import load_trained_model
from flexcore.stages.generate.step import run_generate
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train

BOX = 32


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("gen")
    sim = run_simulate(root / "sim", n_particles=400, box=BOX, pixel_size_A=5.0, seed=4,
                       n_gt_maps=3)
    run_prep(sim.particles, sim.consensus, root / "prep", train_box=BOX)
    run_mesh(root / "prep" / "consensus.mrc", root / "mesh", mask=sim.mask, n_cells=10)
    run_train(root / "prep", root / "mesh" / "mesh.npz", root / "train",
              {"latent_dim": 2, "epochs": 2, "batch_size": 100, "n_candidates": 2})
    return root, root / "train" / "checkpoints" / "checkpoint_last.pt"


def test_series_frames_voxel_size_and_origin(model, tmp_path):
    _, ck = model
    summary = run_generate(ck, tmp_path, n_frames=5, supersample=1)
    assert set(summary["series"]) == {"z1", "z2"}
    for k in ("z1", "z2"):
        frames = sorted((tmp_path / f"series_{k}").glob("frame_*.mrc"))
        assert len(frames) == 5
        with mrcfile.open(frames[0]) as m:
            assert m.data.shape == (BOX,) * 3
            assert m.voxel_size.x == pytest.approx(5.0, abs=1e-4)
            assert (m.header.origin.x, m.header.origin.y, m.header.origin.z) == (0, 0, 0)
        text = (tmp_path / f"series_{k}.cxc").read_text()
        assert f"open series_{k}/frame_*.mrc vseries true" in text
        with Image.open(tmp_path / f"series_{k}.gif") as gif:  # 5 frames forth, 3 back
            movie = [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(gif)]
        assert len(movie) == 8 and gif.info["loop"] == 0
        assert all(np.array_equal(movie[i], movie[8 - i]) for i in (1, 2, 3))
        z = np.loadtxt(tmp_path / f"series_{k}_latents.txt")
        np.testing.assert_allclose(z[:, int(k[1]) - 1], np.linspace(-1.5, 1.5, 5), atol=1e-5)
        assert np.allclose(z[2], 0)  # odd count: the middle frame is z = 0
    # both series pass through the same z = 0 frame
    np.testing.assert_array_equal(mrcfile.read(tmp_path / "series_z1" / "frame_002.mrc"),
                                  mrcfile.read(tmp_path / "series_z2" / "frame_002.mrc"))


def test_zero_flow_frame_is_the_canonical_map(model, tmp_path):
    root, ck = model
    state = load_checkpoint(ck)
    state["flow"]["out.weight"].zero_()
    state["flow"]["out.bias"].zero_()
    save_checkpoint(tmp_path / "zero.pt", state)
    run_generate(tmp_path / "zero.pt", tmp_path / "g", n_frames=3, supersample=1)
    m = load_trained_model(tmp_path / "zero.pt")
    from flexcore.core.fourier import band_limit_resample_3d

    canonical = band_limit_resample_3d(m.volume.float(), BOX, m.k_max).numpy() * m.mesh.mask_soft
    for i in range(3):  # f ≡ 0: every frame is the canonical map itself (mass stays put)
        frame = mrcfile.read(tmp_path / "g" / "series_z1" / f"frame_{i:03d}.mrc")
        np.testing.assert_allclose(frame, canonical, atol=1e-5)


def test_custom_points_and_their_errors(model, tmp_path):
    _, ck = model
    np.savetxt(tmp_path / "points.csv", [[0.0, 0.0], [0.5, -0.5], [1.0, 1.0]], delimiter=",",
               header="z1,z2")
    run_generate(ck, tmp_path / "out", latents_file=tmp_path / "points.csv", supersample=1)
    frames = sorted((tmp_path / "out" / "series_custom").glob("frame_*.mrc"))
    assert len(frames) == 3
    run_generate(ck, tmp_path / "zero", n_frames=3, supersample=1)
    np.testing.assert_allclose(mrcfile.read(frames[0]),
                               mrcfile.read(tmp_path / "zero" / "series_z1" / "frame_001.mrc"),
                               atol=1e-6)
    np.save(tmp_path / "bad.npy", np.zeros((2, 3), np.float32))
    with pytest.raises(InputFileError, match="bad.npy.*3 dimensions"):
        run_generate(ck, tmp_path / "x", latents_file=tmp_path / "bad.npy")


def test_high_resolution_map_gives_frames_at_its_box(model, tmp_path):
    root, ck = model
    cons, psize = read_map(root / "sim" / "consensus.mrc")
    hi = fourier_crop(torch.from_numpy(cons), 2 * BOX, 3).numpy()
    write_map(tmp_path / "hi.mrc", hi, psize / 2)
    summary = run_generate(ck, tmp_path / "hi", n_frames=3, highres_map=tmp_path / "hi.mrc",
                           supersample=1)
    assert summary["box"] == 2 * BOX
    frame = tmp_path / "hi" / "series_z1" / "frame_000.mrc"
    with mrcfile.open(frame) as m:
        assert m.data.shape == (2 * BOX,) * 3
        assert m.voxel_size.x == pytest.approx(psize / 2, abs=1e-4)
        # mass is conserved: the convected part moves, the rest stays
        assert float(m.data.sum()) == pytest.approx(float(hi.sum()), rel=1e-3)
    write_map(tmp_path / "wrong.mrc", hi[:60, :60, :60], psize / 2)
    with pytest.raises(InputFileError, match="wrong.mrc.*spans"):
        run_generate(ck, tmp_path / "w", highres_map=tmp_path / "wrong.mrc")


def test_cryodrgn_z_pkl_as_latent_points(model, tmp_path):
    from flexcore.cli.main import main
    from flexcore.core.io.cryodrgn import write_latents_pkl

    _, ck = model
    points = np.array([[0.0, 0.0], [0.5, -0.5]], dtype=np.float32)
    write_latents_pkl(points, tmp_path / "z.pkl")
    np.savetxt(tmp_path / "points.csv", points, delimiter=",")
    assert main(["generate", str(ck), str(tmp_path / "pkl"), "--latents", str(tmp_path / "z.pkl"),
                 "--supersample", "1"]) == 0
    run_generate(ck, tmp_path / "csv", latents_file=tmp_path / "points.csv", supersample=1)
    for i in range(2):
        name = f"series_custom/frame_{i:03d}.mrc"
        np.testing.assert_allclose(mrcfile.read(tmp_path / "pkl" / name),
                                   mrcfile.read(tmp_path / "csv" / name), atol=1e-6)
