"""Job resources sized from the data (flexcore.core.resources) and the row counts they use."""

import numpy as np
import pytest

from flexcore.core.io import OpticsGroup, ParticleTable, read_particles, write_cs, write_star
from flexcore.core.io.readers import count_particles
from flexcore.core.resources import (
    CPU_STAGES,
    GPU_STAGES,
    DatasetSize,
    ResourceFactors,
    fit_problems,
    gpu_memory_mb,
    memory_mb,
    runtime_min,
)

SMALL = DatasetSize(n_particles=1500, box=56, train_box=40)
TARGET = DatasetSize(n_particles=100_000, box=256, train_box=128)
LARGE = DatasetSize(n_particles=300_000, box=384, train_box=128)


def test_defaults_fit_a_64_gb_one_gpu_node_up_to_100k_particles_at_box_256():
    for stage in CPU_STAGES + GPU_STAGES:
        assert fit_problems(stage, TARGET) == [], stage
        assert memory_mb(stage, TARGET) <= ResourceFactors().node_memory_mb < 64000


def test_requests_grow_with_the_data():
    for stage in CPU_STAGES + GPU_STAGES:
        assert memory_mb(stage, SMALL) <= memory_mb(stage, TARGET) <= memory_mb(stage, LARGE)
        assert runtime_min(stage, SMALL) <= runtime_min(stage, TARGET) <= runtime_min(stage, LARGE)
    assert memory_mb("train", TARGET) > 4 * memory_mb("train", SMALL)
    assert gpu_memory_mb("reconstruct", LARGE) > 3 * gpu_memory_mb("reconstruct", TARGET)
    assert gpu_memory_mb("prep", LARGE) == 0  # a CPU stage


def test_per_rank_formula_and_factors():
    # docs/training.md: images once over all ranks, metadata + PCA + runtime on every rank
    one, two = memory_mb("train", TARGET), memory_mb("train", TARGET, ranks=2)
    per_rank = 1.5 * (100_000 * 1000 + 8 * 8000 * 3 * 21**3 + 2e9) / 1e6
    assert two - one == pytest.approx(per_rank, abs=200)
    doubled = ResourceFactors(memory_factor=3.0, runtime_factor=6.0)
    assert memory_mb("reconstruct", TARGET, doubled) == pytest.approx(
        2 * memory_mb("reconstruct", TARGET), abs=200)
    assert runtime_min("train", TARGET, doubled) == pytest.approx(
        2 * runtime_min("train", TARGET), abs=1)
    assert ResourceFactors.from_config({"memory_factor": 2.0, "unknown": 1}).memory_factor == 2.0


def test_what_does_not_fit_is_said():
    problems = fit_problems("reconstruct", LARGE)
    assert problems and "GPU memory" in problems[0] and "resources.gpu_memory_mb" in problems[0]
    huge = DatasetSize(n_particles=2_000_000, box=256, train_box=128)
    assert any("resources.node_memory_mb" in p for p in fit_problems("train", huge))


def _table(n):
    return ParticleTable(
        rotations=np.tile(np.eye(3), (n, 1, 1)), shifts_A=np.zeros((n, 2)),
        defocus_u_A=np.full(n, 1e4), defocus_v_A=np.full(n, 1e4), defocus_angle_deg=np.zeros(n),
        phase_shift_deg=np.zeros(n), bfactor_A2=np.zeros(n), ctf_scale=np.ones(n),
        optics_group=np.zeros(n, dtype=np.int64),
        optics=[OpticsGroup("og1", 2.0, 32, 300.0, 2.7, 0.1)],
        image_paths=np.array(["p.mrcs"] * n, dtype=object), image_indices=np.arange(n),
        half_set=np.full(n, -1, dtype=np.int8))


@pytest.mark.parametrize("suffix", [".star", ".cs"])
def test_count_particles_matches_the_reader(tmp_path, suffix):
    path = tmp_path / f"p{suffix}"
    (write_star if suffix == ".star" else write_cs)(_table(37), path)
    assert count_particles(path) == 37
    if suffix == ".star":
        assert len(read_particles(path, pixel_size_A=2.0)) == 37


def test_count_particles_relion30(tmp_path):
    path = tmp_path / "old.star"
    path.write_text("data_\n\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n"
                    + "".join(f"{i + 1:06d}@p.mrcs 10000\n" for i in range(12)) + "\n")
    assert count_particles(path) == 12


def test_map_header_gives_the_box_without_reading_data(tmp_path):
    from flexcore.core.errors import InputFileError
    from flexcore.core.io import write_map
    from flexcore.core.io.mrc import read_map_header

    write_map(tmp_path / "m.mrc", np.zeros((24, 24, 24), np.float32), 2.0)
    assert read_map_header(tmp_path / "m.mrc") == (24, 24, 24)
    (tmp_path / "bad.mrc").write_text("placeholder")
    with pytest.raises(InputFileError, match="bad.mrc"):
        read_map_header(tmp_path / "bad.mrc")
