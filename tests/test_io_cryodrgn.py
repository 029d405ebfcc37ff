"""cryoDRGN's format (poses.pkl, ctf.pkl, .mrcs / .txt stacks, z.pkl).

The cryoDRGN files here are made as cryoDRGN makes them from a RELION STAR (its
``parse_pose_star`` and ``parse_ctf_star`` commands, formulas copied below), independently of
flexcore's writer. The same simulated particles, read from the STAR and from the cryoDRGN
files, must give the same reconstruction; a transposed rotation or a wrong shift unit must not.
"""

import json
import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexcore.core.ctf import calculate_ctf_2d
from flexcore.core.errors import InputFileError
from flexcore.core.fourier import shift_phase_2d
from flexcore.core.fsc import fsc_curve
from flexcore.core.io import (
    OpticsGroup,
    ParticleTable,
    read_latent_points,
    read_particles,
    write_map,
    write_stack,
    write_star,
)
from flexcore.core.io.cryodrgn import load_array_pickle, write_cryodrgn, write_latents_pkl
from flexcore.core.io.latents import read_init_latents
from flexcore.core.rotations import matrix_to_euler_relion, random_rotations
from flexcore.core.wiener import reconstruct_particles
from flexcore.stages.simulate.phantom import make_phantom
from flexcore.stages.simulate.render import render_projections, render_volume

BOX, PSIZE, N = 48, 3.0, 1000


def cryodrgn_R_from_relion(euler):
    """cryoDRGN ``utils.R_from_relion`` (cryodrgn/utils.py), verbatim in NumPy."""
    a, b, y = (np.deg2rad(euler[:, k]) for k in range(3))
    n = len(euler)
    z, o = np.zeros(n), np.ones(n)
    ra = np.array([[np.cos(a), -np.sin(a), z], [np.sin(a), np.cos(a), z], [z, z, o]])
    rb = np.array([[np.cos(b), z, -np.sin(b)], [z, o, z], [np.sin(b), z, np.cos(b)]])
    ry = np.array([[np.cos(y), -np.sin(y), z], [np.sin(y), np.cos(y), z], [z, z, o]])
    r = np.matmul(np.matmul(ry.T, rb.T), ra.T)
    for i, j in ((0, 2), (2, 0), (1, 2), (2, 1)):
        r[:, i, j] *= -1
    return r


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Simulated particles written as a RELION STAR and as cryoDRGN files, with the truth."""
    d = tmp_path_factory.mktemp("cryodrgn")
    rng = np.random.default_rng(11)
    ph = make_phantom(seed=5)
    pos = torch.tensor(ph.positions_A / PSIZE, dtype=torch.float32)
    w = torch.ones(len(pos))
    truth = render_volume(pos, w, BOX, ph.sigma_A / PSIZE).numpy()
    rot = random_rotations(N, rng)
    shifts_A = rng.normal(0, 2.0, size=(N, 2)) * PSIZE
    dfu = rng.uniform(12000, 20000, size=N)
    dfv = dfu - rng.uniform(0, 1500, size=N)
    ang = rng.uniform(-90, 90, size=N)
    proj = render_projections(pos, w, torch.tensor(rot, dtype=torch.float32), BOX,
                              ph.sigma_A / PSIZE)
    pad = BOX // 2
    ctf = calculate_ctf_2d(torch.tensor(dfu, dtype=torch.float32),
                           torch.tensor(dfv, dtype=torch.float32),
                           torch.tensor(ang, dtype=torch.float32), 300.0, 2.7, 0.1, PSIZE, 2 * BOX)
    ft = torch.fft.rfft2(F.pad(proj, [pad] * 4)) * ctf * shift_phase_2d(
        -torch.tensor(shifts_A / PSIZE, dtype=torch.float32), 2 * BOX)
    images = torch.fft.irfft2(ft, s=(2 * BOX, 2 * BOX))[:, pad:pad + BOX, pad:pad + BOX].numpy()
    images += rng.normal(0, 0.05 * images.std(), images.shape).astype(np.float32)
    half = N // 2
    write_stack(d / "a.mrcs", images[:half], PSIZE)
    write_stack(d / "b.mrcs", images[half:], PSIZE)
    (d / "particles.txt").write_text("a.mrcs\nb.mrcs\n")
    table = ParticleTable(
        rotations=rot, shifts_A=shifts_A, defocus_u_A=dfu, defocus_v_A=dfv,
        defocus_angle_deg=ang, phase_shift_deg=np.zeros(N), bfactor_A2=np.zeros(N),
        ctf_scale=np.ones(N), optics_group=np.zeros(N, dtype=np.int64),
        optics=[OpticsGroup("og1", PSIZE, BOX, 300.0, 2.7, 0.1)],
        image_paths=np.array(["a.mrcs"] * half + ["b.mrcs"] * (N - half), dtype=object),
        image_indices=np.r_[np.arange(half), np.arange(N - half)],
        half_set=np.full(N, -1, dtype=np.int8), source_path=str(d / "x.star"))
    write_star(table, d / "particles.star")
    # cryoDRGN parse_pose_star: rot from RELION angles, trans = rlnOriginX/Y (px) / D
    euler = matrix_to_euler_relion(rot)
    trans = shifts_A / PSIZE / BOX
    with open(d / "poses.pkl", "wb") as f:
        pickle.dump((cryodrgn_R_from_relion(euler), trans), f, protocol=4)
    # cryoDRGN parse_ctf_star: D, Apix, dfu, dfv, dfang, volt, cs, w, phase shift (float32)
    ctf_table = np.column_stack([np.full(N, BOX), np.full(N, PSIZE), dfu, dfv, ang,
                                 np.full(N, 300.0), np.full(N, 2.7), np.full(N, 0.1), np.zeros(N)])
    with open(d / "ctf.pkl", "wb") as f:
        pickle.dump(ctf_table.astype(np.float32), f)
    write_map(d / "truth.mrc", truth, PSIZE)
    return d, truth, euler, trans, ctf_table


def correlation(a, b):
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


def test_cryodrgn_rotation_is_relion_matrix_a():
    e = np.array([[30.0, 60.0, -100.0], [-170.0, 10.0, 45.0]])
    from flexcore.core.rotations import euler_relion_to_matrix

    assert np.allclose(cryodrgn_R_from_relion(e), euler_relion_to_matrix(*e.T), atol=1e-12)


@pytest.fixture(scope="module")
def drgn_map(dataset):
    d = dataset[0]
    drgn = read_particles(d / "particles.txt", poses=d / "poses.pkl", ctf=d / "ctf.pkl")
    return drgn, reconstruct_particles(drgn)["full"]


def test_cryodrgn_files_reconstruct_like_the_star(dataset, drgn_map):
    d, truth, *_ = dataset
    drgn, map_drgn = drgn_map
    star = read_particles(d / "particles.star")
    assert drgn.source_format == "cryodrgn" and len(drgn) == N
    assert np.allclose(drgn.shifts_A, star.shifts_A, atol=1e-3)
    assert np.allclose(drgn.defocus_angle_deg, star.defocus_angle_deg, atol=1e-2)
    map_star = reconstruct_particles(star)["full"]
    assert correlation(map_star, map_drgn) >= 0.99
    assert fsc_curve(map_drgn, truth)[1:BOX // 4 + 1].min() >= 0.9


def test_a_transposed_or_negated_reading_fails_the_comparison(dataset, drgn_map):
    d, truth, *_ = dataset
    drgn, map_drgn = drgn_map
    wrong = drgn.subset(np.arange(N))
    wrong.rotations = np.swapaxes(wrong.rotations, 1, 2)
    assert correlation(reconstruct_particles(wrong)["full"], map_drgn) < 0.9
    wrong = drgn.subset(np.arange(N))
    wrong.shifts_A = -wrong.shifts_A
    assert fsc_curve(reconstruct_particles(wrong)["full"], truth)[1:BOX // 4 + 1].min() < 0.9


def test_writer_matches_cryodrgn_and_a_single_stack_reads(dataset, tmp_path):
    d, _, euler, trans, ctf_table = dataset
    table = read_particles(d / "particles.star")
    write_cryodrgn(table, tmp_path / "poses.pkl", tmp_path / "ctf.pkl")
    rot, tr = load_array_pickle(tmp_path / "poses.pkl")
    assert np.allclose(rot, cryodrgn_R_from_relion(euler), atol=1e-5)
    assert np.allclose(tr, trans, atol=1e-6)
    assert np.allclose(load_array_pickle(tmp_path / "ctf.pkl"), ctf_table, rtol=1e-5)
    first = table.subset(np.arange(N // 2))
    write_cryodrgn(first, tmp_path / "poses_a.pkl", tmp_path / "ctf_a.pkl")
    one = read_particles(d / "a.mrcs", poses=tmp_path / "poses_a.pkl", ctf=tmp_path / "ctf_a.pkl")
    assert len(one) == N // 2 and set(one.image_paths) == {"a.mrcs"}
    assert np.allclose(one.rotations, first.rotations, atol=1e-5)


class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("touch pwned_marker",))


def test_a_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "poses.pkl"
    bad.write_bytes(pickle.dumps((_RunsCode(), np.zeros((2, 2)))))
    with pytest.raises(InputFileError, match=r"poses\.pkl.*(posix|os|nt)\.system.*refused"):
        load_array_pickle(bad)
    evil = tmp_path / "z.pkl"
    evil.write_bytes(pickle.dumps(eval, protocol=4))  # a bare builtin is refused too
    with pytest.raises(InputFileError, match=r"z\.pkl.*builtins\.eval"):
        read_latent_points(evil, 2)
    assert not (tmp_path / "pwned_marker").exists()


def test_z_pkl_round_trip_and_pickle_protocols(tmp_path):
    z = np.random.default_rng(0).normal(size=(7, 2)).astype(np.float32)
    write_latents_pkl(z, tmp_path / "z.pkl")
    assert np.array_equal(read_latent_points(tmp_path / "z.pkl", 2), z)
    assert np.array_equal(read_init_latents(tmp_path / "z.pkl", 7, 2), z)
    for protocol in (2, 3, 5):  # older cryoDRGN files, and Python's newer default
        (tmp_path / "p.pkl").write_bytes(pickle.dumps(z.astype(np.float64), protocol=protocol))
        assert np.allclose(load_array_pickle(tmp_path / "p.pkl"), z)


def test_bad_cryodrgn_inputs_name_the_file(dataset, tmp_path):
    d, _, euler, trans, ctf_table = dataset
    rot = cryodrgn_R_from_relion(euler)
    (tmp_path / "pix.pkl").write_bytes(pickle.dumps((rot, trans * BOX * 10)))
    with pytest.raises(InputFileError, match=r"pix\.pkl.*fractions of the box"):
        read_particles(d / "particles.txt", poses=tmp_path / "pix.pkl", ctf=d / "ctf.pkl")
    (tmp_path / "short.pkl").write_bytes(pickle.dumps(ctf_table[:10]))
    with pytest.raises(InputFileError, match=r"short\.pkl.*\(1000, 9\)"):
        read_particles(d / "particles.txt", poses=d / "poses.pkl", ctf=tmp_path / "short.pkl")
    with pytest.raises(InputFileError, match=r"particles\.txt.*poses\.pkl and ctf\.pkl"):
        read_particles(d / "particles.txt")
    (tmp_path / "junk.pkl").write_bytes(b"not a pickle")
    with pytest.raises(InputFileError, match=r"junk\.pkl.*not a readable pickle"):
        read_particles(d / "particles.txt", poses=tmp_path / "junk.pkl", ctf=d / "ctf.pkl")
    (tmp_path / "list.txt").write_text(f"{d / 'a.mrcs'}\nmissing.mrcs\n")
    with pytest.raises(InputFileError, match=r"list\.txt.*missing\.mrcs.*not found"):
        read_particles(tmp_path / "list.txt", poses=d / "poses.pkl", ctf=d / "ctf.pkl")


def test_prep_converts_cryodrgn_once(dataset, tmp_path):
    from flexcore.cli.main import main

    d, *_ = dataset
    out = tmp_path / "prep"
    assert main(["prep", str(d / "particles.txt"), str(d / "truth.mrc"), str(out),
                 "--train-box", "32", "--poses", str(d / "poses.pkl"),
                 "--ctf", str(d / "ctf.pkl")]) == 0
    info = json.loads((out / "prep.json").read_text())
    assert info["source_particles"] == str((out / "source.star").resolve())
    source = read_particles(out / "source.star")
    star = read_particles(d / "particles.star")
    assert np.allclose(source.rotations, star.rotations, atol=1e-4)
    assert np.allclose(source.shifts_A, star.shifts_A, atol=1e-3)
    assert set(source.half_set.tolist()) == {0, 1}
    assert np.array_equal(source.image_indices, star.image_indices)
