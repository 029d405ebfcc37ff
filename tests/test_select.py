"""``flexcore select``: latent regions, and subsets written as the user's original particles
(exact rows, read back by our readers and by ``starfile``; RELION and cryoSPARC inputs, the
real-format samples), the plot, the CLI and bad input.

Selection against the true motion coordinate of a trained model (precision/recall) is in
tests/test_train.py, on the model that file trains.
"""

from __future__ import annotations

import json
import logging
import re
import warnings

import numpy as np
import pandas as pd
import pytest
import starfile

from flexcore.cli.main import main as cli_main
from flexcore.core.errors import ConfigError, InputFileError
from flexcore.core.io import ImageSource, read_particles, write_cs, write_star
from flexcore.core.io.subset import write_source_rows
from flexcore.stages.prep.step import run_prep
from flexcore.stages.select import define_subsets, run_select, subset_names
from flexcore.stages.simulate import run_simulate

N = 160


def star_blocks(path) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return starfile.read(path, always_dict=True)


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    """A small simulated dataset (RELION 3.1 STAR) prepared, with the true motion coordinate as
    latents, and the same particles as a cryoSPARC .cs (uids 1000…) prepared too."""
    root = tmp_path_factory.mktemp("select")
    run_simulate(root / "sim", n_particles=N, box=24, pixel_size_A=160 / 24, snr=1.0, seed=3)
    run_prep(root / "sim/particles.star", root / "sim/consensus.mrc", root / "prep", train_box=16)
    table = read_particles(root / "sim/particles.star")
    write_cs(table, root / "sim/particles.cs")
    arr = np.load(root / "sim/particles.cs")
    arr["uid"] = 1000 + np.arange(N, dtype=np.uint64)[::-1]  # uids unrelated to the row order
    with open(root / "sim/particles.cs", "wb") as fh:
        np.save(fh, arr)
    run_prep(root / "sim/particles.cs", root / "sim/consensus.mrc", root / "prep_cs", train_box=16)
    truth = np.asarray(table.raw["flexTrueCoord1"], dtype=np.float64)
    np.save(root / "z.npy", truth[:, None])
    return root, truth


def test_regions_pick_exactly_the_particles_inside():
    z = np.array([[0.0, 0.0], [0.5, 0.1], [1.0, 1.0], [-0.4, 0.2], [0.6, -0.6]])
    box = define_subsets(z, "box", center=[0.0, 0.0], half_widths=[0.5, 0.25])[0]
    np.testing.assert_array_equal(box.members, [True, True, False, True, False])
    ell = define_subsets(z, "ellipse", center=[0.0, 0.0], half_widths=0.55)[0]
    np.testing.assert_array_equal(ell.members, [True, True, False, True, False])
    pct = define_subsets(z, "percentile", axis=1, percentile_low=50, percentile_high=100)[0]
    np.testing.assert_array_equal(pct.members, [False, True, True, False, True])
    np.testing.assert_allclose(pct.state, np.median(z[pct.members], axis=0))
    pts = define_subsets(z, "points", points=[[1.0, 1.0], [0.0, 0.0]], radius=0.55)
    assert [p.name for p in pts] == ["point1", "point2"] == subset_names("points", n_points=2)
    np.testing.assert_array_equal(pts[0].members, [False, False, True, False, False])
    np.testing.assert_array_equal(pts[1].members, [True, True, False, True, False])


def test_kmeans_partitions_separated_clusters_in_order_and_is_seeded():
    rng = np.random.default_rng(0)
    centres = np.array([[1.0, 0.0], [-1.0, 0.5], [0.0, -1.0]])
    labels = rng.integers(0, 3, 300)
    z = centres[labels] + rng.normal(0, 0.1, (300, 2))
    subsets = define_subsets(z, "kmeans", n_clusters=3, seed=4)
    assert [s.name for s in subsets] == subset_names("kmeans", 3)
    # numbered by the centroid's first coordinate: -1, 0, +1
    np.testing.assert_allclose([s.state for s in subsets], centres[[1, 2, 0]], atol=0.05)
    for s, c in zip(subsets, (1, 2, 0)):
        np.testing.assert_array_equal(s.members, labels == c)
    again = define_subsets(z, "kmeans", n_clusters=3, seed=4)
    assert all(np.array_equal(a.members, b.members) for a, b in zip(subsets, again))


@pytest.mark.parametrize("method, kwargs, key", [
    ("box", {}, "select.center"),
    ("box", {"center": [0.0], "half_widths": [-1.0]}, "select.half_widths"),
    ("ellipse", {"center": [0.0, 1.0], "half_widths": 1.0}, "select.center"),
    ("percentile", {"axis": 2}, "select.axis"),
    ("percentile", {"percentile_low": 80, "percentile_high": 20}, "select.percentile_low"),
    ("kmeans", {"n_clusters": 0}, "select.n_clusters"),
    ("points", {}, "select.points"),
    ("points", {"points": [[0.0]], "radius": 0.0}, "select.radius"),
    ("box", {"center": [5.0], "half_widths": [0.1]}, "holds no particle"),
    ("lasso", {}, "select.method"),
])
def test_bad_region_parameters_name_the_key(method, kwargs, key):
    z = np.linspace(-1, 1, 50)[:, None]
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        define_subsets(z, method, **kwargs)


def test_selected_star_holds_exactly_the_original_rows(sim, tmp_path):
    root, truth = sim
    summary = run_select(root / "z.npy", root / "prep", tmp_path, method="percentile",
                         axis=1, percentile_low=75, percentile_high=100)
    (record,) = summary["subsets"]
    want = np.flatnonzero(truth >= np.percentile(truth, 75))
    assert record["file"] == "region.star" and record["n_particles"] == len(want)
    original = star_blocks(root / "sim/particles.star")
    selected = star_blocks(tmp_path / "region.star")
    assert list(selected) == list(original) == ["optics", "particles"]
    pd.testing.assert_frame_equal(selected["optics"], original["optics"])
    pd.testing.assert_frame_equal(selected["particles"],
                                  original["particles"].iloc[want].reset_index(drop=True))
    ours, full = read_particles(tmp_path / "region.star"), read_particles(root / "sim/particles.star")
    np.testing.assert_array_equal(ours.rotations, full.rotations[want])
    np.testing.assert_array_equal(ours.defocus_u_A, full.defocus_u_A[want])
    np.testing.assert_array_equal(ours.half_set, full.half_set[want])
    assert list(ours.image_paths) == list(full.image_paths[want])  # original stack names
    assert (tmp_path / "region.star").read_text().count("# version 30001") == 2
    assert (tmp_path / "selection.png").read_bytes()[:4] == b"\x89PNG"
    rec = json.loads((tmp_path / "select.json").read_text())
    assert rec["step"] == "select" and rec["parameters"]["method"] == "percentile"
    assert rec["subsets"][0]["state"][0] == pytest.approx(np.median(truth[want]))


def test_rows_follow_the_prepared_link_not_the_prepared_order(sim, tmp_path):
    """A prep whose particles are a permutation of the input's: the subset is still the input
    rows of the particles whose latents were selected."""
    root, truth = sim
    perm = np.random.default_rng(1).permutation(N)
    prep = tmp_path / "prep"
    prep.mkdir()
    (prep / "prep.json").write_text((root / "prep/prep.json").read_text())
    table = read_particles(root / "prep/particles.star")
    src = np.asarray(table.raw["flexSourceIndex"])
    write_star(table.subset(perm), prep / "particles.star",
               extra_columns={"flexSourceIndex": src[perm]})
    np.save(tmp_path / "z.npy", truth[src[perm]][:, None])
    run_select(tmp_path / "z.npy", prep, tmp_path / "out", method="points", points=[[0.5]],
               radius=0.2)
    got = np.asarray(star_blocks(tmp_path / "out/point1.star")["particles"]["flexTrueCoord1"])
    want = np.sort(truth[np.abs(truth - 0.5) <= 0.2])
    np.testing.assert_array_equal(np.sort(got), want)


def test_selected_cs_keeps_every_field_and_uid(sim, tmp_path):
    root, truth = sim
    summary = run_select(root / "z.npy", root / "prep_cs", tmp_path, method="kmeans", n_clusters=2)
    arr = np.load(root / "sim/particles.cs")
    seen = []
    for record in summary["subsets"]:
        out = np.load(tmp_path / record["file"])
        rows = np.flatnonzero(np.isin(arr["uid"], out["uid"]))
        assert out.dtype == arr.dtype and record["file"].endswith(".cs")
        np.testing.assert_array_equal(out, arr[np.sort(rows)])
        back = read_particles(tmp_path / record["file"])
        np.testing.assert_array_equal(back.image_indices, arr["blob/idx"][np.sort(rows)])
        seen.append(rows)
    assert sorted(np.concatenate(seen).tolist()) == list(range(N))  # a partition
    lo, hi = (summary["subsets"][i]["state"][0] for i in (0, 1))
    assert lo < 0 < hi


def test_absolute_image_paths_read_the_same_images_from_anywhere(sim, tmp_path, monkeypatch):
    root, _ = sim
    run_select(root / "z.npy", root / "prep", tmp_path, method="box", center=[0.0],
               half_widths=[0.3], image_paths="absolute")
    table = read_particles(tmp_path / "region.star")
    assert all(str(p).startswith("/") for p in table.image_paths)
    full = read_particles(root / "sim/particles.star")
    rows = np.flatnonzero(np.abs(np.asarray(full.raw["flexTrueCoord1"])) <= 0.3)
    monkeypatch.chdir(tmp_path)
    np.testing.assert_array_equal(ImageSource(table).read(np.arange(3)),
                                  ImageSource(full).read(rows[:3]))


SAMPLES = ["relion31.star", "relion31.6opticsgroups.star", "relion5.star", "empiar_10076_7.star",
           "FinalRefinement-OriginalParticles-PfCRT.star", "cryosparc_P12_J24_001_particles.cs",
           "cryosparc_J2_particles_exported.cs", "empiar_10076_7.cs"]


@pytest.mark.parametrize("name", SAMPLES)
def test_real_format_samples_round_trip_exactly(formats_dir, tmp_path, name):
    source = formats_dir / name
    n = len(read_particles(source))
    rows = np.array([n - 1, 0, n // 2])
    out = write_source_rows(source, rows, tmp_path / "subset")
    assert out.suffix == source.suffix
    if source.suffix == ".cs":
        arr = np.load(source)
        np.testing.assert_array_equal(np.load(out), arr[rows])
    else:
        original, selected = star_blocks(source), star_blocks(out)
        assert list(selected) == list(original)
        for block, df in original.items():
            if isinstance(df, pd.DataFrame) and len(df) == n:
                df = df.iloc[rows].reset_index(drop=True)
            pd.testing.assert_frame_equal(selected[block], df)
    a, b = read_particles(source).subset(rows), read_particles(out)
    np.testing.assert_array_equal(b.defocus_u_A, a.defocus_u_A)
    np.testing.assert_array_equal(b.image_indices, a.image_indices)
    assert list(b.image_paths) == list(a.image_paths)
    if a.has_poses:
        np.testing.assert_array_equal(b.rotations, a.rotations)
    assert [g.name for g in b.optics] == [g.name for g in a.optics]


def test_cli_and_bad_input(sim, tmp_path, capsys):
    root, _ = sim
    assert cli_main(["select", str(root / "z.npy"), str(root / "prep"), str(tmp_path / "cli"),
                     "--method", "points", "--point", "-0.5", "--point", "0.5",
                     "--radius", "0.1"]) == 0
    assert sorted(p.name for p in (tmp_path / "cli").glob("*.star")) == ["point1.star",
                                                                         "point2.star"]
    np.save(tmp_path / "short.npy", np.zeros((N - 1, 1)))
    with pytest.raises(InputFileError, match="latents for 159 particles"):
        run_select(tmp_path / "short.npy", root / "prep", tmp_path / "bad")
    assert cli_main(["select", str(root / "z.npy"), str(root / "prep"), str(tmp_path / "bad"),
                     "--method", "box"]) == 1
    assert "select.center" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="image_paths"):
        run_select(root / "z.npy", root / "prep", tmp_path / "bad", image_paths="relative")
    five = tmp_path / "five.star"
    write_star(read_particles(root / "sim/particles.star").subset(np.arange(5)), five)
    with pytest.raises(InputFileError, match="row 11 was asked"):
        write_source_rows(five, [10], tmp_path / "x")


def test_a_new_selection_replaces_the_earlier_set(sim, tmp_path, monkeypatch):
    """Two clusters after three: cluster3 goes (it overlaps the new subsets); a select that
    fails while writing leaves the earlier set, select.json included, as it was."""
    import flexcore.stages.select.step as step

    root, _ = sim
    out = tmp_path / "sel"
    run_select(root / "z.npy", root / "prep", out, n_clusters=3)
    assert sorted(p.name for p in out.glob("*.star")) == [f"cluster{i}.star" for i in (1, 2, 3)]
    (tmp_path / "keep.star").write_text("not a subset")
    record = json.loads((out / "select.json").read_text())
    record["subsets"].append({"file": "../keep.star"})  # a record naming a path elsewhere
    (out / "select.json").write_text(json.dumps(record))
    run_select(root / "z.npy", root / "prep", out, n_clusters=2)
    assert sorted(p.name for p in out.glob("*.star")) == ["cluster1.star", "cluster2.star"]
    assert (tmp_path / "keep.star").exists()
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    calls = []

    def fail_on_second(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        return write_source_rows(*args, **kwargs)

    monkeypatch.setattr(step, "write_source_rows", fail_on_second)
    with pytest.raises(OSError):
        run_select(root / "z.npy", root / "prep", out, n_clusters=4)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no .part folder either


def test_select_messages(sim, tmp_path, caplog):
    root, _ = sim
    z2 = np.random.default_rng(0).uniform(-1, 1, size=(50, 2))
    with pytest.raises(ConfigError, match=r"select\.center = \[0\.0\]: expected 2 finite "
                                          r"number\(s\), one per latent dimension \(a point"):
        define_subsets(z2, "box", center=[0.0], half_widths=0.5)  # was read as (0, 0)
    assert define_subsets(z2, "box", center=[0.0, 0.0], half_widths=0.5)[0].count > 0
    with pytest.raises(ConfigError, match=r"select: point1 \(within 0\.3 of \(\+5, \+5\)\) "
                                          "holds no particle"):
        define_subsets(z2, "points", points=[[5.0, 5.0]], radius=0.3)
    bad = np.load(root / "z.npy")
    bad[[3, 7]] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    with pytest.raises(InputFileError, match="2 of 160 particles have NaN or infinite latents "
                                             r"\(first at row 4\)"):
        run_select(tmp_path / "nan.npy", root / "prep", tmp_path / "n")
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        run_select(root / "z.npy", root / "prep", tmp_path / "far", n_clusters=2)
    assert "keep the input's relative image paths (1 stack(s), e.g. particles.mrcs), which " \
           f"resolve from {root / 'sim'}" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="flexcore"):
        run_select(root / "z.npy", root / "prep", tmp_path / "abs", n_clusters=2,
                   image_paths="absolute")
    assert "relative image paths" not in caplog.text


def drawn_selection(z, named, **overrides) -> dict:
    """A selection.json record as the latent explorer saves it."""
    from flexcore.core.io.selection import latents_sha256

    record = {"format": "flexcore-selection", "version": 1, "n_particles": len(z),
              "latent_dim": z.shape[1], "latents_sha256": latents_sha256(z), "checkpoint": "x.pt",
              "pca": None,
              "subsets": [{"name": name, "n_particles": len(idx), "indices": [int(i) for i in idx],
                           "regions": [{"kind": "box", "view": "z1", "axes": ["z1", "jitter"],
                                        "x": [-1.0, 0.0], "y": [-1.0, 1.0]}]}
                          for name, idx in named]}
    record.update(overrides)
    return record


def test_select_from_a_drawn_selection_writes_each_subset(sim, tmp_path):
    """``--from selection.json``: one file per named subset holding exactly the original rows
    of its particles; the state is the members' mean latent, which state-maps reads."""
    from flexcore.stages.state_maps.step import read_states

    root, truth = sim
    z = np.load(root / "z.npy")
    low, some = np.flatnonzero(truth < np.median(truth)), np.arange(0, N, 7)
    sel = tmp_path / "selection.json"
    sel.write_text(json.dumps(drawn_selection(z, [("low", low), ("every_7th", some)])))
    out = tmp_path / "out"
    assert cli_main(["select", str(root / "z.npy"), str(root / "prep"), str(out),
                     "--from", str(sel)]) == 0
    src = np.asarray(read_particles(root / "prep/particles.star").raw["flexSourceIndex"])
    original = star_blocks(root / "sim/particles.star")
    for name, idx in (("low", low), ("every_7th", some)):
        got = star_blocks(out / f"{name}.star")
        pd.testing.assert_frame_equal(got["particles"],
                                      original["particles"].iloc[src[idx]].reset_index(drop=True))
    rec = json.loads((out / "select.json").read_text())
    assert rec["method"] == "file" and rec["parameters"]["selection_file"] == str(sel)
    assert [s["n_particles"] for s in rec["subsets"]] == [len(low), len(some)]
    names, states, counts = read_states(out / "select.json", 1)
    assert names == ["low", "every_7th"] and counts == [len(low), len(some)]
    np.testing.assert_allclose(states[:, 0], [truth[low].mean(), truth[some].mean()], rtol=1e-5)
    # the explorer's file itself is not a state file: state-maps says what to do
    with pytest.raises(InputFileError, match="flexcore select --from"):
        read_states(sel, 1)


@pytest.mark.parametrize("change, message", [
    ({"format": "other"}, "is not a selection saved by the explorer"),
    ({"n_particles": N + 1}, f"was drawn on {N + 1} particles"),
    ({"latents_sha256": "0" * 64}, "was drawn on other latents"),
    ({"subsets": []}, "holds no subset"),
    ({"subsets": [{"name": "a b", "indices": [1]}]}, "has name 'a b'"),
    ({"subsets": [{"name": "a", "indices": [1]}, {"name": "a", "indices": [2]}]},
     "two subsets are named 'a'"),
    ({"subsets": [{"name": "a", "indices": [N]}]}, f"index {N} is outside"),
    ({"subsets": [{"name": "a", "indices": [3, 3]}]}, "lists a particle twice"),
    ({"subsets": [{"name": "a", "indices": []}]}, "holds no particle"),
])
def test_bad_selection_files_name_the_file_and_the_problem(sim, tmp_path, change, message):
    root, _ = sim
    z = np.load(root / "z.npy")
    sel = tmp_path / "selection.json"
    sel.write_text(json.dumps(drawn_selection(z, [("a", [1, 2])], **change)))
    with pytest.raises(InputFileError, match=re.escape(str(sel))) as err:
        run_select(root / "z.npy", root / "prep", tmp_path / "out", method="file",
                   selection_file=sel)
    assert message in str(err.value)
    with pytest.raises(ConfigError, match="select.selection_file is required"):
        run_select(root / "z.npy", root / "prep", tmp_path / "out", method="file")


def test_class_numbers_star_labels_each_particle_with_its_subset(sim, tmp_path):
    """``subsets.star`` (RELION's half of the round trip): every selected particle once, in
    the input's order, every input column kept, ``rlnClassNumber`` its k-means cluster."""
    root, truth = sim
    summary = run_select(root / "z.npy", root / "prep", tmp_path, method="kmeans", n_clusters=3,
                         class_numbers=True)
    src = np.asarray(read_particles(root / "prep/particles.star").raw["flexSourceIndex"])
    z = np.load(root / "z.npy")
    subsets = define_subsets(z, "kmeans", n_clusters=3)
    label = np.zeros(N, int)
    for k, s in enumerate(subsets):
        label[src[s.members]] = k + 1  # by input row
    combined = star_blocks(tmp_path / "subsets.star")
    original = star_blocks(root / "sim/particles.star")
    pd.testing.assert_frame_equal(combined["optics"], original["optics"])
    np.testing.assert_array_equal(combined["particles"]["rlnClassNumber"], label)
    pd.testing.assert_frame_equal(combined["particles"].drop(columns="rlnClassNumber"),
                                  original["particles"].drop(columns="rlnClassNumber",
                                                             errors="ignore"))
    assert [s["n_particles"] for s in summary["subsets"]] == [int((label == k).sum()) for k in (1, 2, 3)]
    with pytest.raises(ConfigError, match="select.class_numbers"):
        run_select(root / "z.npy", root / "prep_cs", tmp_path / "cs", class_numbers=True)
