"""The rank helpers (flexcore.core.utils.distributed) on two gloo processes and in one process,
the torchrun command line, and one training step split over two ranks: the θ/V gradients
summed over ranks are the single-process gradients of the union batch (the rigidity prior
counted once, not once per rank)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from ranks import spawn_ranks

from flexcore.core.errors import ConfigError, FlexcoreError
from flexcore.core.mesh import TetMesh
from flexcore.core.train_config import TrainConfig
from flexcore.core.utils import distributed
from flexcore.core.utils.launch import ranks_to_start, start_ranks, torchrun_command
from flexcore.stages.mesh.step import run_mesh
from flexcore.stages.prep.step import run_prep
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train.data import TrainingData
from flexcore.stages.train.trainer import Trainer


def _fail_on_main():
    raise ConfigError("reconstruct.iterations = -1: must be an integer ≥ 0")


def _helpers():
    r = distributed.rank()
    assert distributed.is_distributed() and distributed.launched() and distributed.world_size() == 2
    assert distributed.is_main() == (r == 0) and distributed.local_rank() == r
    assert distributed.ranks_on_node() == 2
    # each rank's rows, put back in particle order on every rank
    n = 11
    rows = distributed.shard_rows(n, seed=3)
    values = torch.as_tensor(rows, dtype=torch.float64)[:, None] * torch.tensor([[1.0, -2.0]])
    full = distributed.assemble_rows(values, rows, n)
    assert torch.equal(full, torch.arange(n, dtype=torch.float64)[:, None] * torch.tensor([[1.0, -2.0]]))
    with pytest.raises(RuntimeError, match="3 of 3 rows"):  # 0 and 1 held twice, 2 by none
        distributed.assemble_rows(torch.zeros(2, 1), np.array([0, 1]), 3)
    # sums over ranks, in float64 where asked
    assert distributed.sum_floats(1.0 + r, 0.25) == (3.0, 0.5)
    fine = torch.full((3,), 1.0 + r * 2.0**-40, dtype=torch.float64)  # beyond float32
    assert distributed.all_reduce_sum(fine).tolist() == [2.0 + 2.0**-40] * 3
    summed = distributed.all_reduce_sum(torch.full((2,), 0.5 + r, dtype=torch.float32), torch.float64)
    assert summed.dtype == torch.float32 and summed.tolist() == [2.0, 2.0]
    assert distributed.max_int(5 * r) == 5 and distributed.per_rank(10 + r).tolist() == [10, 11]
    acc = torch.full((2, 2), complex(1 + r, -r), dtype=torch.complex64)
    assert distributed.all_reduce_(acc) is acc and acc.tolist() == [[complex(3, -1)] * 2] * 2  # in place
    # gradients: a parameter without one on this rank counts as zero
    p, q = torch.nn.Parameter(torch.zeros(3)), torch.nn.Parameter(torch.zeros(2))
    p.grad = torch.full((3,), 1.0 + r)
    if r == 1:
        q.grad = torch.ones(2)
    distributed.all_reduce_grads([p, q])
    assert p.grad.tolist() == [3.0] * 3 and q.grad.tolist() == [1.0, 1.0]
    assert distributed.broadcast_(torch.tensor([r + 7.0])).item() == 7.0
    assert distributed.broadcast_object({"rank": r}) == {"rank": 0}
    # rank-0-only sections: the result reaches every rank, and so does an error
    assert distributed.on_main_rank(lambda: f"written by {distributed.rank()}") == "written by 0"
    if r == 0:
        with pytest.raises(ConfigError, match="iterations"):
            distributed.on_main_rank(_fail_on_main)
    else:
        with pytest.raises(distributed.OtherRankError, match="rank 0 stopped: reconstruct.iterations"):
            distributed.on_main_rank(_fail_on_main)
    distributed.barrier()


def test_helpers_on_two_ranks(tmp_path):
    spawn_ranks(_helpers, 2, tmp_path)


def test_one_process_keeps_every_value_as_it_is():
    assert not distributed.is_distributed() and distributed.world_size() == 1 and distributed.rank() == 0
    t = torch.arange(4.0)
    assert distributed.all_reduce_sum(t) is t and distributed.broadcast_(t) is t
    assert distributed.all_reduce_(t) is t
    assert t.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert distributed.sum_floats(2.5, 1) == (2.5, 1.0) and distributed.max_int(3) == 3
    assert distributed.per_rank(7).tolist() == [7]
    z = torch.randn(5, 2)
    assert torch.equal(distributed.assemble_rows(z, np.arange(5), 5), z)
    assert torch.equal(distributed.assemble_rows(z[:2], np.array([3, 1]), 4)[[3, 1]], z[:2])
    assert distributed.on_main_rank(lambda: 42) == 42


def test_shards_are_disjoint_cover_every_particle_and_are_seeded():
    for world in (1, 2, 3, 4):
        shards = [distributed.shard_rows(1001, seed=5, world=world, index=i) for i in range(world)]
        assert np.array_equal(np.sort(np.concatenate(shards)), np.arange(1001))
        assert max(map(len, shards)) - min(map(len, shards)) <= 1
        assert all(np.all(np.diff(s) > 0) for s in shards)
    assert np.array_equal(distributed.shard_rows(50, 5, 1, 0), np.arange(50))
    a, b = distributed.shard_rows(50, 5, 2, 0), distributed.shard_rows(50, 6, 2, 0)
    assert np.array_equal(a, distributed.shard_rows(50, 5, 2, 0)) and not np.array_equal(a, b)
    assert [distributed.share(10, 4, i) for i in range(4)] == [3, 3, 2, 2]
    items = np.arange(10)
    assert np.array_equal(np.concatenate([distributed.contiguous_block(items, 3, i) for i in range(3)]),
                          items)


def test_devices_under_torchrun(monkeypatch):
    assert distributed.resolve_device("cpu", "train.device") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert distributed.resolve_device("cuda:1", "train.device") == torch.device("cuda:1")  # no torchrun
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match="train.device = 'cuda:1': with 2 ranks each rank"):
        distributed.resolve_device("cuda:1", "train.device")
    with pytest.raises(ConfigError, match="2 ranks run on this node but only 1 GPU"):
        distributed.resolve_device("auto", "reconstruct.device")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert distributed.resolve_device("cuda", "train.device") == torch.device("cuda", 0)


def test_start_ranks_runs_a_step_of_this_interpreter_and_reports_a_failing_rank(tmp_path):
    cmd = torchrun_command(3, ["flexcore", "train", tmp_path, "--auto"])
    assert cmd[1:] == ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node=3", "-m",
                       "flexcore", "train", str(tmp_path), "--auto"]
    assert os.path.samefile(cmd[0], os.sys.executable)
    with pytest.raises(ConfigError, match="gpus = 0"):
        torchrun_command(0, ["flexcore"])
    with pytest.raises(ConfigError, match="gpus = 0"):
        ranks_to_start(0)
    assert ranks_to_start(1) == 0 and ranks_to_start(2) == 2
    log = tmp_path / "log.txt"
    with open(log, "w") as f, pytest.raises(FlexcoreError, match="train on 1 ranks failed"):
        start_ranks("flexcore.stages.train.step:run_train", 1,
                    dict(prep_dir=str(tmp_path / "missing_prep"), mesh_path=str(tmp_path / "m.npz"),
                         out_dir=str(tmp_path / "o"), config={}, gpus=1), log=f)
    text = log.read_text()
    assert "flexcore train: error:" in text and "prep.json" in text  # one line from the rank


# ----------------------------------------------------------------- one step over two ranks

CFG = dict(latent_dim=1, batch_size=8, rigidity_subsample=8, init_latents="random",
           device="cpu", seed=3, rigidity_lambda=2.0)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("tiny_step")
    sim = run_simulate(root / "sim", n_particles=40, box=24, pixel_size_A=6.0, snr=0.5,
                       max_angle_deg=25.0, seed=2, n_gt_maps=2)
    run_prep(sim.particles, sim.consensus, root / "prep", train_box=24)
    run_mesh(root / "prep" / "consensus.mrc", root / "mesh", mask=sim.mask, n_cells=6)
    return root


def _trainer(root, rows=None):
    from flexcore.core.io import read_map

    data = TrainingData.load(root / "prep", rows=rows)
    vol, _ = read_map(root / "prep" / "consensus.mrc")
    trainer = Trainer(data, TetMesh.load(root / "mesh" / "mesh.npz"), TrainConfig(**CFG),
                      root / "unused", init_volume=vol * data.info.image_scale)
    with torch.no_grad():  # a flow that moves the mesh, so the rigidity prior has a gradient
        trainer.flow.out.weight.mul_(300.0)
    return trainer


def _step_grads(trainer, positions, n_step, n_sub, sub):
    """θ/V gradients (flat) and loss of one step on ``positions`` of the trainer's data."""
    plan = trainer.epoch_plan(3)
    r = trainer.renderer(plan["box"])
    images, rot, shifts, ctf = trainer.data.batch(positions, trainer.device, r.box)
    canon = r.canonical(trainer.volume, plan["k_max"])
    z = trainer.latents[positions]
    loss, _, rig = trainer.step_loss(r, canon, z, r.observed(images), rot, ctf, shifts,
                                     r.model.band(plan["k_max"] / r.scale),
                                     r.noise_var(trainer.noise_var), n_step, n_sub, sub)
    loss.backward()
    params = [*trainer.flow.parameters(), trainer.volume]
    distributed.all_reduce_grads(params)
    return torch.cat([p.grad.reshape(-1) for p in params]), loss.detach(), rig.detach()


def _split_step(root, out):
    trainer = _trainer(root, rows=lambda n: distributed.shard_rows(n, CFG["seed"]))
    positions = np.arange(4)  # the first 4 particles this rank holds: the step has 8
    grads, loss, rig = _step_grads(trainer, positions, n_step=8, n_sub=8, sub=4)
    union = distributed.assemble_rows(torch.as_tensor(trainer.rows[positions]),
                              np.arange(4) + 4 * distributed.rank(), 8)
    total, rig_total = distributed.sum_floats(float(loss), float(rig))
    if distributed.is_main():
        torch.save({"grads": grads, "union": union, "loss": total, "rigidity": rig_total}, out)


def test_a_step_on_two_ranks_has_the_gradient_of_the_union_batch(tiny, tmp_path):
    spawn_ranks(_split_step, 2, tmp_path, tiny, tmp_path / "split.pt")
    split = torch.load(tmp_path / "split.pt")
    one = _trainer(tiny)  # one process, every particle, the same union batch of 8
    grads, loss, rig = _step_grads(one, split["union"].numpy(), 8, 8, 8)
    assert rig > 1e-3 and float(grads.norm()) > 0  # the rigidity prior takes part
    assert split["rigidity"] == pytest.approx(float(rig), rel=1e-5)  # counted once, not twice
    assert split["loss"] == pytest.approx(float(loss), rel=1e-5)
    torch.testing.assert_close(split["grads"], grads, rtol=1e-4, atol=1e-5 * float(grads.abs().max()))
