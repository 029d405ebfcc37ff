"""A tiny trained model for the explorer's tests, with a flow whose effect is known exactly."""

from __future__ import annotations

from flexcore.core.checkpoint import load_checkpoint, save_checkpoint
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train import run_train

BOX = 16
SHIFT = 1.0  # voxels of +x translation per unit of z1 (translating_flow)


def translating_flow(state: dict, voxels_per_unit: float = SHIFT) -> None:
    """Make a checkpoint's flow a rigid translation along +x by ``voxels_per_unit · z1``
    (hidden unit 0 carries ``z1 + 2 > 0`` through the ReLUs, the output bias takes the 2 off;
    the rest is silent), so the structure at a latent is known exactly."""
    flow = state["flow"]
    for w in flow.values():
        w.zero_()
    flow["hidden.0.weight"][0, 0] = 1.0
    flow["hidden.0.bias"][0] = 2.0
    for layer in (2, 4, 6, 8):
        flow[f"hidden.{layer}.weight"][0, 0] = 1.0
    flow["out.weight"].view(-1, 3, flow["out.weight"].shape[1])[:, 0, 0] = voxels_per_unit
    flow["out.bias"].view(-1, 3)[:, 0] = -2.0 * voxels_per_unit


def explorer_model(root, n_particles=200, seed=4):
    """A tiny trained model (K = 2) whose flow is replaced by a translation along x that grows
    with z1 (:func:`translating_flow`); returns the checkpoint and the prepared folder."""
    sim = run_simulate(root / "sim", n_particles=n_particles, box=BOX, pixel_size_A=8.0, seed=seed)
    run_prep(sim.particles, sim.consensus, root / "prep", train_box=BOX)
    run_mesh(root / "prep" / "consensus.mrc", root / "mesh", mask=sim.mask, n_cells=6)
    run_train(root / "prep", root / "mesh" / "mesh.npz", root / "train",
              {"latent_dim": 2, "epochs": 1, "batch_size": 100, "n_candidates": 2})
    state = load_checkpoint(root / "train" / "model.pt")
    translating_flow(state)
    save_checkpoint(root / "train" / "model.pt", state)
    return root / "train" / "model.pt", root / "prep"
