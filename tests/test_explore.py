"""The latent explorer page (``flexcore explore``) without a browser: self-contained, every
particle's latent carried exactly, grid images that are projections of the map deformed at
their node, the views for K = 1, 2 and > 2, and the page size for 100 000 particles.

The page driven in a real browser (lasso, hover, save, ``select --from``) is in
tests/test_explorer_browser.py.
"""

from __future__ import annotations

import base64
import io
import json
import re

import numpy as np
import pytest
import torch
from explorer_model import BOX, SHIFT, explorer_model
from PIL import Image

from flexcore.cli.main import main as cli_main
from flexcore.core.checkpoint import load_checkpoint, save_checkpoint
from flexcore.core.deform import VolumeDeformer
from flexcore.core.errors import ConfigError
from flexcore.core.io.selection import latents_sha256
from flexcore.core.trained import load_trained_model
from flexcore.stages.explore import run_explore
from flexcore.stages.explore.images import projections


def with_latents(checkpoint, z, path):
    """A copy of ``checkpoint`` with latents ``z (N, K)``; the flow's first layer is cut or
    zero-padded to K inputs (extra dimensions do not move anything)."""
    state = load_checkpoint(checkpoint)
    k = z.shape[1]
    w = state["flow"]["hidden.0.weight"]
    new = torch.zeros(w.shape[0], k, dtype=w.dtype)
    new[:, :min(k, w.shape[1])] = w[:, :k]
    state["flow"]["hidden.0.weight"] = new
    state["config"]["latent_dim"] = k
    state["latents"] = torch.as_tensor(z, dtype=torch.float32)
    save_checkpoint(path, state)
    return path


def page_data(path) -> dict:
    text = path.read_text()
    match = re.search(r'<script id="flexdata" type="application/json">(.*?)</script>', text, re.S)
    return json.loads(match.group(1))


def decode_png(b64: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(b64))), dtype=np.float64)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return explorer_model(tmp_path_factory.mktemp("explore"))


def test_page_is_self_contained_and_carries_every_particle(model, tmp_path):
    ck, _ = model
    assert cli_main(["explore", str(ck), str(tmp_path), "--grid", "5"]) == 0
    page = tmp_path / "explorer.html"
    text = page.read_text()
    # nothing fetched: no external script, style, image or link
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.I)
    assert "<script src" not in text and "@import" not in text
    data = page_data(page)
    z = load_trained_model(ck).latents
    got = np.frombuffer(base64.b64decode(data["latents"]), dtype="<f4").reshape(data["n"], data["k"])
    np.testing.assert_array_equal(got, z.astype(np.float32))
    assert data["sha256"] == latents_sha256(z) and data["drawn"] is None
    assert [v["id"] for v in data["views"]] == ["z1-z2"]
    grid = data["grid"]
    assert grid["kind"] == "latent" and len(grid["images"]) == 25
    a, b = (np.array(x) for x in grid["axes"])
    np.testing.assert_allclose(a[[0, -1]], np.percentile(z[:, 0], [0.5, 99.5]), rtol=1e-5)
    # row-major: node i·5 + j sits at (a_i, b_j)
    np.testing.assert_allclose(grid["latents"][2 * 5 + 3], [a[2], b[3]], atol=1e-5)


def test_grid_images_are_projections_of_the_map_deformed_at_their_node(model, tmp_path):
    ck, _ = model
    run_explore(ck, tmp_path, grid=3, image_px=64)
    grid = page_data(tmp_path / "explorer.html")["grid"]
    trained = load_trained_model(ck)
    deformer = VolumeDeformer(trained, trained.volume, trained.pixel_size_A, 1, "cpu",
                              keep_outside=False)
    images = [decode_png(b) for b in grid["images"]]
    assert images[0].shape == (BOX, 3 * BOX)  # the box is smaller than image_px
    expected = [projections(deformer.frame(np.array(z, np.float32)), 64) for z in grid["latents"]]
    for im, ex in zip(images, expected):
        assert np.corrcoef(im.ravel(), ex.ravel())[0, 1] > 0.99
    # the flow translates along +x by SHIFT voxels per unit of z1: the projection along z
    # ([y, x], first third) moves right by that much between the first and last z1 nodes,
    # and the projection along x ([z, y], last third) does not move
    def centroid_x(view):
        return (view.sum(0) * np.arange(view.shape[1])).sum() / view.sum()

    a = np.array(grid["axes"][0])
    first, last = (im - np.median(im) for im in (images[0], images[-1]))  # (a_0, b_0), (a_2, b_2)
    moved = centroid_x(last[:, :BOX]) - centroid_x(first[:, :BOX])
    assert moved == pytest.approx(SHIFT * (a[-1] - a[0]), rel=0.15)
    assert abs(centroid_x(last[:, 2 * BOX:]) - centroid_x(first[:, 2 * BOX:])) < 0.15


def test_views_for_one_and_for_many_latent_dimensions(model, tmp_path):
    ck, _ = model
    rng = np.random.default_rng(0)
    one = with_latents(ck, rng.normal(0, 0.5, (200, 1)), tmp_path / "k1.pt")
    run_explore(one, tmp_path / "k1", grid=4)
    data = page_data(tmp_path / "k1" / "explorer.html")
    assert [v["kind"] for v in data["views"]] == ["strip"]
    assert len(data["grid"]["axes"]) == 1 and len(data["grid"]["images"]) == 4
    # K = 3, stretched along a direction that is no latent axis: PCA finds it
    direction = np.array([1.0, 1.0, 0.0]) / np.sqrt(2)
    z3 = rng.normal(0, 0.05, (200, 3)) + rng.normal(0, 1.0, (200, 1)) * direction
    three = with_latents(ck, z3, tmp_path / "k3.pt")
    run_explore(three, tmp_path / "k3", grid=3)
    data = page_data(tmp_path / "k3" / "explorer.html")
    assert [v["id"] for v in data["views"]] == ["pc1-pc2", "z1-z2", "z1-z3", "z2-z3"]
    comps = np.array(data["pca"]["components"])
    np.testing.assert_allclose(comps @ comps.T, np.eye(2), atol=1e-9)
    assert abs(comps[0] @ direction) > 0.99
    nodes = np.array(data["grid"]["latents"]) - np.array(data["pca"]["mean"])
    np.testing.assert_allclose(nodes - (nodes @ comps.T) @ comps, 0, atol=1e-4)  # on the plane


def test_page_for_100k_particles_stays_small_and_selects_on_all(model, tmp_path):
    ck, _ = model
    z = np.random.default_rng(1).normal(0, 0.6, (100_000, 2))
    big = with_latents(ck, z, tmp_path / "big.pt")
    summary = run_explore(big, tmp_path, grid=11, max_points=20000)
    assert summary["bytes"] < 5e6 and summary["grid_nodes"] == 121
    data = page_data(tmp_path / "explorer.html")
    drawn = np.frombuffer(base64.b64decode(data["drawn"]), dtype="<u4")
    assert len(drawn) == 20000 and (np.diff(drawn.astype(np.int64)) > 0).all()
    assert data["n"] == 100_000  # every particle's latent is in the page


@pytest.mark.parametrize("kwargs, key", [({"grid": 1}, "explore.grid"),
                                         ({"max_points": 10}, "explore.max_points"),
                                         ({"image_px": 4}, "explore.image_px")])
def test_bad_parameters_name_the_key(model, tmp_path, kwargs, key):
    ck, _ = model
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        run_explore(ck, tmp_path, **kwargs)
