"""Convention round trip: simulate an asymmetric phantom with known poses and shifts, write
STAR (or .cs) + MRCS, read them back, reconstruct rigidly, compare with the truth by FSC.

A transpose of the rotations or a wrong shift sign anywhere between writer, reader and
reconstruction destroys the reconstruction; the negative controls show this test can fail.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from flexcore.core.ctf import calculate_ctf_2d
from flexcore.core.fourier import shift_phase_2d
from flexcore.core.fsc import fsc_curve
from flexcore.core.io import OpticsGroup, ParticleTable, read_particles, write_cs, write_stack, write_star
from flexcore.core.rotations import random_rotations
from flexcore.core.wiener import reconstruct_particles
from flexcore.stages.simulate.phantom import make_phantom
from flexcore.stages.simulate.render import render_projections, render_volume

BOX, PSIZE, N = 48, 3.0, 1200


@pytest.fixture(scope="module")
def phantom_data():
    rng = np.random.default_rng(7)
    ph = make_phantom(seed=3)
    pos = torch.tensor(ph.positions_A / PSIZE, dtype=torch.float32)
    w = torch.ones(len(pos))
    sigma = ph.sigma_A / PSIZE
    truth = render_volume(pos, w, BOX, sigma).numpy()
    rot = random_rotations(N, rng)
    shifts_A = rng.normal(0, 2.0, size=(N, 2)) * PSIZE
    df = rng.uniform(10000, 20000, size=N)
    proj = render_projections(pos, w, torch.tensor(rot, dtype=torch.float32), BOX, sigma)
    pad = BOX // 2
    ctf = calculate_ctf_2d(torch.tensor(df, dtype=torch.float32), torch.tensor(df, dtype=torch.float32),
                           torch.zeros(N), 300.0, 2.7, 0.1, PSIZE, 2 * BOX)
    # observed = projection moved by -origin, CTF-filtered (zero-padded so nothing wraps)
    ft = torch.fft.rfft2(F.pad(proj, [pad] * 4)) * ctf * shift_phase_2d(
        -torch.tensor(shifts_A / PSIZE, dtype=torch.float32), 2 * BOX)
    images = torch.fft.irfft2(ft, s=(2 * BOX, 2 * BOX))[:, pad:pad + BOX, pad:pad + BOX].numpy()
    return truth, rot, shifts_A, df, images


def make_table(rot, shifts_A, df, stack_name):
    n = len(rot)
    return ParticleTable(
        rotations=rot, shifts_A=shifts_A, defocus_u_A=df, defocus_v_A=df.copy(),
        defocus_angle_deg=np.zeros(n), phase_shift_deg=np.zeros(n), bfactor_A2=np.zeros(n),
        ctf_scale=np.ones(n), optics_group=np.zeros(n, dtype=np.int64),
        optics=[OpticsGroup("og1", PSIZE, BOX, 300.0, 2.7, 0.1)],
        image_paths=np.array([stack_name] * n, dtype=object), image_indices=np.arange(n),
        half_set=(np.arange(n) % 2).astype(np.int8))


def resolution_shells(table, truth):
    out = reconstruct_particles(table)
    return fsc_curve(out["full"], truth)


@pytest.mark.parametrize("fmt", ["star", "cs"])
def test_write_read_reconstruct_matches_truth(tmp_path, phantom_data, fmt):
    truth, rot, shifts_A, df, images = phantom_data
    write_stack(tmp_path / "particles.mrcs", images, PSIZE)
    table = make_table(rot, shifts_A, df, "particles.mrcs")
    path = tmp_path / f"particles.{fmt}"
    (write_star if fmt == "star" else write_cs)(table, path)
    back = read_particles(path)
    fsc = resolution_shells(back, truth)
    half_nyquist = BOX // 4
    assert fsc[1:half_nyquist + 1].min() >= 0.9, np.round(fsc, 3)


def test_negative_controls_fail(tmp_path, phantom_data):
    truth, rot, shifts_A, df, images = phantom_data
    write_stack(tmp_path / "particles.mrcs", images, PSIZE)
    half_nyquist = BOX // 4
    transposed = make_table(np.swapaxes(rot, 1, 2), shifts_A, df, "particles.mrcs")
    transposed.source_path = str(tmp_path / "x.star")
    assert resolution_shells(transposed, truth)[1:half_nyquist + 1].min() < 0.9
    flipped = make_table(rot, -shifts_A, df, "particles.mrcs")
    flipped.source_path = str(tmp_path / "x.star")
    assert resolution_shells(flipped, truth)[1:half_nyquist + 1].min() < 0.9


def test_cli_rigid_reconstruction_writes_maps_and_fsc(tmp_path, phantom_data):
    from flexcore.cli.main import main

    truth, rot, shifts_A, df, images = phantom_data
    write_stack(tmp_path / "particles.mrcs", images[:400], PSIZE)
    write_star(make_table(rot[:400], shifts_A[:400], df[:400], "particles.mrcs"),
               tmp_path / "particles.star")
    assert main(["reconstruct-rigid", str(tmp_path / "particles.star"), str(tmp_path / "out")]) == 0
    for name in ("map.mrc", "map_half_A.mrc", "map_half_B.mrc", "fsc.tsv", "fsc.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0
    from flexcore.core.io import read_map

    vol, voxel = read_map(tmp_path / "out" / "map.mrc")
    assert voxel == pytest.approx(PSIZE, abs=1e-4)
    assert fsc_curve(vol, truth)[1:BOX // 4].min() > 0.8


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    from flexcore.cli.main import main

    (tmp_path / "empty.star").write_text("")
    assert main(["reconstruct-rigid", str(tmp_path / "empty.star"), str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "empty.star" in err and "Traceback" not in err
