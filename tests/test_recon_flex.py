"""Flexible reconstruction on simulated data with a known hinge motion (40°).

Fixture (module scope, ~35 s on 2 cores): 1200 particles at box 48 (2.5 Å/px, SNR 0.1),
prepared at training box 24, a mesh over the simulation's mask, and a model trained for 8
epochs with default settings (latents learned, not given). Two checks:

* **learned model, end to end** (``run_reconstruct``): each ground-truth conformation is
  compared with the reconstruction deformed to the median latent of the particles nearest
  it (``VolumeDeformer``) and with the rigid baseline (``noflex_map``), by FSC averaged over
  the shells up to the rigid half maps' 0.143 resolution, inside the simulation's moving-
  domain mask and inside its whole mask; and the half-map FSC inside the moving domain.
* **true deformation** (the solver with an oracle displacement function): isolates the
  reconstruction from the quality of the learned flow.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from flexcore.core.deform import VolumeDeformer
from flexcore.core.fourier import fourier_crop
from flexcore.core.fsc import fsc_curve, resolution_at
from flexcore.core.io import read_map, write_map
from flexcore.core.prep_info import PrepInfo
from flexcore.core.rotations import rotation_about_axis
from flexcore.core.trained import load_trained_model
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.reconstruct.flex import FlexOperator, HalfObjective, solve_half, wiener_start
from flexcore.stages.reconstruct.particles import ImageStream, load_recon_particles
from flexcore.stages.reconstruct.step import run_reconstruct
from flexcore.stages.simulate import run_simulate
from flexcore.stages.simulate.phantom import make_phantom
from flexcore.stages.train import run_train

ANGLE, SEED = 40.0, 1


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    # Runs with the operator flexcore picks (the native CPU kernel where it is built). This
    # small training is chaotic: float32 summation order alone moves the moving region's FSC
    # gain by ~0.2 Å. The margins below held with the native kernel for training seeds 0, 1
    # and 2 (with the calibrated prior strengths, 2026-12-07; core −0.12/−0.10/−0.10 Å,
    # local-resolution gain 1.13/1.01/0.94 Å, FSC with the truth 0.830/0.825/0.821).
    return _data(tmp_path_factory)


def _data(tmp_path_factory):
    root = tmp_path_factory.mktemp("recon_flex")
    run_simulate(root / "sim", n_particles=1200, box=48, pixel_size_A=2.5, snr=0.1,
                 max_angle_deg=ANGLE, seed=SEED)
    run_prep(root / "sim/particles.star", root / "sim/consensus.mrc", root / "prep", train_box=24)
    mask, psize = read_map(root / "sim/mask.mrc")
    small = fourier_crop(torch.from_numpy(mask), 24, 3).numpy().clip(0, 1)
    write_map(root / "mask24.mrc", small, psize * 2)
    run_mesh(root / "prep/consensus.mrc", root / "mesh", mask=root / "mask24.mrc", n_cells=8)
    truth = np.loadtxt(root / "sim/ground_truth.csv", delimiter=",", skiprows=1)[:, 1:]
    np.save(root / "truth.npy", truth)
    run_train(root / "prep", root / "mesh/mesh.npz", root / "train",
              {"latent_dim": 1, "epochs": 8, "batch_size": 32})
    ck = root / "train/checkpoints/checkpoint_last.pt"
    summary = run_reconstruct(ck, root / "prep", root / "recon", iterations=6)
    return {"root": root, "checkpoint": ck, "truth": truth[:, 0], "summary": summary}


def _maps(root, names):
    return [read_map(root / "recon" / f"{n}.mrc")[0] for n in names]


def _signal_shells(root) -> int:
    """Last shell before the rigid half maps' FSC falls below 0.143."""
    a, b = _maps(root, ["noflex_map_half_A", "noflex_map_half_B"])
    fsc = fsc_curve(a, b)
    below = np.flatnonzero(fsc[1:] < 0.143)
    return int(below[0]) if len(below) else len(fsc) - 1


def test_deformed_flex_map_is_closer_to_the_truth_than_the_rigid_map(data):
    root = data["root"]
    info = json.loads((root / "sim/ground_truth.json").read_text())
    model = load_trained_model(data["checkpoint"])
    flex, psize = read_map(root / "recon/flex_map.mrc")
    (rigid,) = _maps(root, ["noflex_map"])
    moving, _ = read_map(root / "sim/moving_mask.mrc")
    whole, _ = read_map(root / "sim/mask.mrc")
    deformer = VolumeDeformer(model, torch.from_numpy(flex), psize, supersample=2, device="cpu")
    top = _signal_shells(root)
    rows = []
    for path, coord in zip(info["gt_maps"], info["gt_coordinates"]):
        near = np.abs(data["truth"] - coord[0]) <= 0.15
        z = np.median(model.latents[near], axis=0).astype(np.float32)
        truth, _ = read_map(root / "sim" / path)
        frame = deformer.frame(z)
        pairs = ((frame, moving), (rigid, moving), (frame, whole), (rigid, whole))
        rows.append([float(np.mean(fsc_curve(v, truth, mask=m)[1:top + 1])) for v, m in pairs])
    rows = np.array(rows)
    print("FSC with the truth (flex moving, rigid moving, flex whole, rigid whole):\n",
          np.round(rows, 3), "\nmeans", np.round(rows.mean(0), 3))
    gain_moving = rows[:, 0] - rows[:, 1]
    gain_whole = rows[:, 2] - rows[:, 3]
    assert (gain_moving > 0.02).all()
    assert gain_moving.mean() > 0.05
    assert gain_moving.mean() > gain_whole.mean() + 0.05  # most of all inside the moving domain
    assert gain_whole.mean() > 0.0


def test_half_map_resolution_in_the_moving_domain_beats_the_rigid_baseline(data):
    root = data["root"]
    moving, psize = read_map(root / "sim/moving_mask.mrc")
    fa, fb, ra, rb = _maps(root, ["flex_map_half_A", "flex_map_half_B", "noflex_map_half_A",
                                  "noflex_map_half_B"])
    res_flex = resolution_at(fsc_curve(fa, fb, mask=moving), 0.143, psize)
    res_rigid = resolution_at(fsc_curve(ra, rb, mask=moving), 0.143, psize)
    print(f"moving-domain half-map FSC 0.143: flex {res_flex:.2f} Å, rigid {res_rigid:.2f} Å; "
          f"{data['summary']['summary']}")
    assert res_flex < res_rigid


def test_lbfgs_objective_decreases_and_flex_fits_better(data):
    obj = data["summary"]["objective"]
    for name, rec in obj.items():
        assert rec["final"] < rec["start"] and rec["iterations"] == 6, name
    for h in ("A", "B"):
        assert obj[f"flex_{h}"]["final"] < obj[f"noflex_{h}"]["final"]


def test_with_the_true_deformation_only_the_moving_domain_changes(data):
    """An oracle displacement (the simulation's hinge rotation at each particle's true
    coordinate, on the mesh vertices nearest an arm atom) through the same solver: the
    moving domain's half-map resolution improves, the whole map's does not get worse."""
    from scipy.spatial import cKDTree

    root = data["root"]
    info = PrepInfo.read(root / "prep")
    model = load_trained_model(data["checkpoint"])
    particles = load_recon_particles(root / "prep", info)
    box, psize = info.crop_box, info.original_pixel_size_A
    mesh = model.mesh.upscale(box)
    phantom = make_phantom(SEED, n_moving=1)
    verts = mesh.points * psize
    arm = phantom.domain[cKDTree(phantom.positions_A).query(verts)[1]] == 1
    hinge, axis = phantom.hinge_points_A[0], phantom.hinge_axes[0]

    def oracle(idx):
        out = np.zeros((len(idx),) + verts.shape, np.float32)
        for j, i in enumerate(idx):
            rot = rotation_about_axis(axis, np.deg2rad(ANGLE * data["truth"][i]))
            out[j, arm] = ((verts[arm] - hinge) @ rot.T + hinge - verts[arm]) / psize
        return torch.from_numpy(out)

    op = FlexOperator(mesh, psize, info.noise_variance * (box / model.box) ** 2, "cpu")
    halves = {"oracle": [], "rigid": []}
    for h in (0, 1):
        pos = np.flatnonzero(particles.half_set == h)
        stream = ImageStream(particles.source, particles.source_rows[pos], box, 1.0, "cpu")
        x0 = wiener_start(op, particles, pos, stream, 64)
        for name, fn in (("oracle", oracle), ("rigid", None)):
            res = solve_half(HalfObjective(op, particles, pos, stream, fn, 1e-3, 64), x0, 6)
            halves[name].append(op.to_volume(res.x).numpy())
    moving, _ = read_map(root / "sim/moving_mask.mrc")
    whole, _ = read_map(root / "sim/mask.mrc")
    res = {name: [resolution_at(fsc_curve(a, b, mask=m), 0.143, psize) for m in (moving, whole)]
           for name, (a, b) in halves.items()}
    print(f"true deformation: half-map FSC 0.143 moving {res['oracle'][0]:.2f} Å (rigid "
          f"{res['rigid'][0]:.2f} Å), whole {res['oracle'][1]:.2f} Å "
          f"(rigid {res['rigid'][1]:.2f} Å)")
    assert res["oracle"][0] < res["rigid"][0] - 0.2
    assert res["oracle"][1] <= res["rigid"][1] + 0.05


def test_moving_region_of_the_flow_gains_resolution_and_the_core_does_not_lose(data, tmp_path):
    """`flexcore localres` on this reconstruction: inside the quarter of the mask the learned
    flow moves most, the flexible half maps reach a finer median local resolution than the
    rigid ones by at least 0.5 Å (9.62 vs 10.75 Å when written) and an FSC 0.143 no more than
    0.5 Å coarser, while in the quarter it moves least the flexible map loses at most 0.3 Å (the
    learned flow moves the static core a little, see docs/reconstruction.md).

    The quarter's FSC 0.143 is the noisy one of these: the quarter is chosen from the learned
    flow, and runs of this fixture with the same local-resolution gain (0.9–1.2 Å) and equal
    or better FSC with the truth gave −0.45 … +0.29 Å (2026-12-07: +0.29 with CryoSPARC's
    prior strengths; −0.20, +0.17 and −0.37 with the calibrated defaults at training seeds 0,
    1 and 2, whose FSC with the truth is 0.821–0.830 against 0.778; docs/analysis.md, "How
    close to the limit"). So it is only held to not falling clearly behind."""
    from flexcore.stages.localres import run_localres

    s = run_localres(data["checkpoint"], data["root"] / "recon", tmp_path)
    rows = {r["region"]: r for r in s["regions"]}
    print(s["summary"], {k: round(r["gain_A"], 2) for k, r in rows.items()},
          {k: (round(r["localres_median_flex_A"], 2), round(r["localres_median_noflex_A"], 2))
           for k, r in rows.items()})
    moving, core = rows["moving"], rows["core"]
    assert moving["motion_rms_A"] > 2 * core["motion_rms_A"]
    assert moving["gain_A"] >= -0.5
    assert core["gain_A"] >= -0.3
    assert moving["localres_median_noflex_A"] - moving["localres_median_flex_A"] >= 0.5


def test_reconstruction_evaluation_reports_the_moving_domain_gain(data, tmp_path):
    """The evaluate_reconstruction stage on this reconstruction: against every ground-truth state the
    deformed flexible map beats the rigid map inside the simulation's moving-domain mask, by
    more than 0.1 in mean FSC (0.830 vs 0.696 when written; 0.778 with CryoSPARC's prior
    strengths, docs/analysis.md "How close to the limit")."""
    from flexcore.stages.evaluate_reconstruction.step import (
        evaluate_reconstruction,
        write_reconstruction_evaluation,
    )

    root = data["root"]
    rec = evaluate_reconstruction(root / "sim", root / "prep", data["checkpoint"], root / "recon")
    write_reconstruction_evaluation(rec, tmp_path)
    print("mean FSC with the truth in the moving domain: flex", round(rec["mean_fsc_moving_flex"], 3),
          "rigid", round(rec["mean_fsc_moving_rigid"], 3), rec["half_map_res0143_A"])
    assert rec["n_maps"] == 9 and rec["flex_better_moving"] == 9
    assert rec["mean_fsc_moving_gain"] > 0.1
    header = (tmp_path / "reconstruction.tsv").read_text().splitlines()[0].split("\t")
    assert {"fsc_moving_flex", "fsc_moving_rigid", "halfmap_res0143_flex_moving_A"} <= set(header)
    assert (tmp_path / "moving_fsc.png").read_bytes()[:4] == b"\x89PNG"
