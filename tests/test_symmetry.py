"""Symmetry-expanded particles (docs/conventions.md, "Symmetric particles").

flexcore works in C1; a symmetric complex is symmetry-expanded in RELION/cryoSPARC first, so
each image appears once per symmetry copy with poses ``A · S_k``. Such a file must run through
prep, which says it found copies and keeps each image's copies in one half set.
"""

import json
import logging

import numpy as np
import torch
import torch.nn.functional as F

from flexcore.core.ctf import calculate_ctf_2d
from flexcore.core.fourier import shift_phase_2d
from flexcore.core.io import OpticsGroup, ParticleTable, read_particles, write_map, write_stack, write_star
from flexcore.core.rotations import random_rotations, rotation_about_axis
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate.phantom import make_phantom
from flexcore.stages.simulate.render import render_projections, render_volume

BOX, PSIZE, N, ORDER = 48, 3.0, 300, 3


def c3_rotations() -> np.ndarray:
    """The C3 group about z: ``(3, 3, 3)``."""
    return np.stack([rotation_about_axis([0.0, 0.0, 1.0], np.deg2rad(120.0 * k)) for k in range(ORDER)])


def test_symmetry_expanded_star_runs_through_prep_with_copies_in_one_half(tmp_path, caplog):
    rng = np.random.default_rng(4)
    ph = make_phantom(seed=2)
    base = ph.positions_A / PSIZE
    sym = c3_rotations()
    pos = torch.tensor(np.concatenate([base @ s.T for s in sym]), dtype=torch.float32)
    w = torch.ones(len(pos))
    truth = render_volume(pos, w, BOX, ph.sigma_A / PSIZE).numpy()  # a C3-symmetric map
    rot = random_rotations(N, rng)
    shifts_A = rng.normal(0, 1.5, size=(N, 2)) * PSIZE
    df = rng.uniform(12000, 20000, size=N)
    proj = render_projections(pos, w, torch.tensor(rot, dtype=torch.float32), BOX,
                              ph.sigma_A / PSIZE)
    ctf = calculate_ctf_2d(torch.tensor(df, dtype=torch.float32),
                           torch.tensor(df, dtype=torch.float32), torch.zeros(N),
                           300.0, 2.7, 0.1, PSIZE, 2 * BOX)
    pad = BOX // 2
    ft = torch.fft.rfft2(F.pad(proj, [pad] * 4)) * ctf * shift_phase_2d(
        -torch.tensor(shifts_A / PSIZE, dtype=torch.float32), 2 * BOX)
    images = torch.fft.irfft2(ft, s=(2 * BOX, 2 * BOX))[:, pad:pad + BOX, pad:pad + BOX].numpy()
    images += rng.normal(0, 0.5 * images.std(), images.shape).astype(np.float32)
    write_stack(tmp_path / "particles.mrcs", images, PSIZE)
    write_map(tmp_path / "consensus.mrc", truth, PSIZE)

    # relion_particle_symmetry_expand: every image ORDER times, pose A·S_k, same origin/CTF
    idx = np.repeat(np.arange(N), ORDER)
    expanded_rot = np.einsum("nij,njk->nik", rot[idx], sym[np.tile(np.arange(ORDER), N)])
    n = len(idx)
    table = ParticleTable(
        rotations=expanded_rot, shifts_A=shifts_A[idx], defocus_u_A=df[idx],
        defocus_v_A=df[idx].copy(), defocus_angle_deg=np.zeros(n), phase_shift_deg=np.zeros(n),
        bfactor_A2=np.zeros(n), ctf_scale=np.ones(n), optics_group=np.zeros(n, dtype=np.int64),
        optics=[OpticsGroup("og1", PSIZE, BOX, 300.0, 2.7, 0.1)],
        image_paths=np.array(["particles.mrcs"] * n, dtype=object), image_indices=idx,
        half_set=np.full(n, -1, dtype=np.int8), source_path=str(tmp_path / "x.star"))
    write_star(table, tmp_path / "expanded.star")

    with caplog.at_level(logging.INFO):
        info = run_prep(tmp_path / "expanded.star", tmp_path / "consensus.mrc",
                        tmp_path / "prep", train_box=32)
    assert info.n_particles == ORDER * N
    assert info.map_match_score > 4  # every symmetry copy's pose matches the symmetric map
    notes = " ".join(r.getMessage() for r in caplog.records)
    assert "copies" in notes and "symmetry" in notes, notes
    prepared = read_particles(tmp_path / "prep" / "particles.star")
    halves = prepared.half_set.reshape(N, ORDER)
    assert (halves == halves[:, :1]).all()  # an image's copies never straddle the halves
    assert set(np.unique(halves)) == {0, 1}
    record = json.loads((tmp_path / "prep" / "prep.json").read_text())
    assert sum(record["half_counts"]) == ORDER * N
