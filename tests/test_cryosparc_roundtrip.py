"""The cryoSPARC half of the round trip: every ``.cs`` flexcore writes (the latents, subsets of
a ``.cs`` input, a ``.cs`` made from STAR input) loads in cryoSPARC's own reader
(``cryosparc-tools``' ``Dataset.load``), carries the fields cryoSPARC writes for imported
particles with cryoSPARC's dtypes (compared with a real import, ``empiar_10076_7.cs``), has
stable random 64-bit uids shared by every file made from the same input, and comes with a
``.csg`` result group that names it for "Import Result Group".
"""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from flexcore.core.io import read_particles, write_cs
from flexcore.stages.prep.step import run_prep
from flexcore.stages.select import run_select
from flexcore.stages.simulate import run_simulate
from flexcore.stages.train.export import export_latents

dataset = pytest.importorskip("cryosparc.dataset", reason="cryosparc-tools is not installed "
                              "(pip install cryosparc-tools; it is in the dev extra)")
N = 40


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """latents.cs from a STAR input (twice, to compare re-runs), and a select subset of a .cs
    input."""
    root = tmp_path_factory.mktemp("cs")
    run_simulate(root / "sim", n_particles=N, box=16, pixel_size_A=8.0, snr=1.0, seed=2, n_gt_maps=2)
    star = root / "sim" / "particles.star"
    run_prep(star, root / "sim" / "consensus.mrc", root / "prep", train_box=16)
    rows = np.asarray(read_particles(root / "prep" / "particles.star").raw["flexSourceIndex"])
    z = np.linspace(-1, 1, 2 * N).reshape(N, 2)
    first = export_latents(z, star, rows, root / "train")["cs"]
    again = export_latents(z, star, rows, root / "rerun")["cs"]
    write_cs(read_particles(star), root / "sim" / "particles.cs")
    run_prep(root / "sim" / "particles.cs", root / "sim" / "consensus.mrc", root / "prep_cs",
             train_box=16)
    np.save(root / "z.npy", z)
    run_select(root / "z.npy", root / "prep_cs", root / "select", method="kmeans", n_clusters=2)
    return root, first, again, rows


def every_cs(root):
    return sorted(root.rglob("*.cs"))


def test_every_cs_loads_in_cryosparc_tools_and_its_csg_names_it(written):
    root = written[0]
    paths = every_cs(root)
    assert {p.name for p in paths} >= {"latents.cs", "particles.cs", "cluster1.cs", "cluster2.cs"}
    for path in paths:
        ds = dataset.Dataset.load(path)
        arr = np.load(path)
        assert len(ds) == len(arr) and set(ds.fields()) == set(arr.dtype.names), path
        np.testing.assert_array_equal(ds["uid"], arr["uid"])
        group = yaml.safe_load(path.with_suffix(".csg").read_text())
        assert group["group"]["type"] == "particle" and group["group"]["name"] == "particles"
        slots = {f.split("/")[0] for f in arr.dtype.names if "/" in f}
        assert set(group["results"]) == slots, path
        for slot, result in group["results"].items():
            assert result["metafile"] == f">{path.name}" and result["num_items"] == len(arr)
            kind = "components" if slot.startswith("components_mode_") else slot
            assert result["type"] == f"particle.{kind}"


def test_cs_from_star_has_what_cryosparc_writes_and_stable_uids(written, formats_dir):
    root, first, again, rows = written
    ours = np.load(first)
    real = np.load(formats_dir / "empiar_10076_7.cs")  # particles imported by cryoSPARC
    for name in real.dtype.names:
        assert name in ours.dtype.names, name
        assert ours.dtype[name] == real.dtype[name] or name in ("blob/path",), name
    assert (ours["blob/sign"] == -1).all() and (ours["ctf/type"] == b"imported").all()
    assert len(np.unique(ours["blob/import_sig"])) == 1
    uids = ours["uid"]
    assert len(np.unique(uids)) == N and not np.array_equal(np.sort(uids), np.arange(N))
    np.testing.assert_array_equal(np.load(again)["uid"], uids)  # the same on a re-run
    # the same particle has the same uid in a .cs written from the whole input
    whole = np.load(root / "sim" / "particles.cs")["uid"]
    np.testing.assert_array_equal(uids, whole[rows])
    # and a subset of that .cs keeps them
    for name in ("cluster1", "cluster2"):
        assert set(np.load(root / "select" / f"{name}.cs")["uid"].tolist()) <= set(whole.tolist())
