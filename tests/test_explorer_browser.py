"""The latent explorer driven in a real browser (headless Chromium through Playwright): the
page loads offline without a console error, a mouse lasso and a box select exactly the
particles inside (computed here with the same even-odd rule), hovering shows the structure at
the nearest grid node, and the saved ``selection.json`` becomes STAR subsets of the original
particles through ``flexcore select --from``.

Needs the ``chromium`` executable (Debian package ``chromium``; CI installs it) and the
``playwright`` Python package (dev extra). Playwright never downloads a browser here: it
starts the system's.
"""

from __future__ import annotations

import json
import shutil
import warnings

import numpy as np
import pytest
import starfile
from explorer_model import explorer_model

from flexcore.cli.main import main as cli_main
from flexcore.core.io import read_particles
from flexcore.core.trained import load_trained_model
from flexcore.stages.explore import run_explore

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install playwright; "
                                  "it is in the dev extra)")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium executable on PATH (Debian/Ubuntu: apt-get install chromium); the "
                "explorer's browser test needs one", allow_module_level=True)

BROWSER_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run"]


def in_polygon(x: np.ndarray, y: np.ndarray, vertices) -> np.ndarray:
    """Even-odd rule, the same arithmetic as the page's ``inPolygon`` (float64)."""
    inside = np.zeros(len(x), bool)
    v = np.asarray(vertices, dtype=np.float64)
    for i in range(len(v)):
        (xi, yi), (xj, yj) = v[i], v[i - 1]
        crosses = (yi > y) != (yj > y)
        with np.errstate(divide="ignore", invalid="ignore"):
            inside ^= crosses & (x < (xj - xi) * (y - yi) / (yj - yi) + xi)
    return inside


@pytest.fixture(scope="module")
def explorer(tmp_path_factory):
    root = tmp_path_factory.mktemp("browser")
    checkpoint, prep = explorer_model(root, n_particles=300, seed=5)
    run_explore(checkpoint, root / "train", grid=7)
    return root, checkpoint, prep


@pytest.fixture
def page(explorer):
    root = explorer[0]
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=BROWSER_ARGS, headless=True)
        context = browser.new_context(viewport={"width": 1120, "height": 720}, accept_downloads=True)
        pg = context.new_page()
        pg.problems = []
        pg.on("console", lambda m: m.type in ("error", "warning") and pg.problems.append(m.text))
        pg.on("pageerror", lambda e: pg.problems.append(str(e)))
        pg.on("request", lambda r: r.url.startswith(("file:", "data:", "blob:"))
              or pg.problems.append(f"network request {r.url}"))
        pg.goto((root / "train" / "explorer.html").as_uri())
        pg.wait_for_function("window.flexExplorer !== undefined")
        yield pg
        browser.close()


def drag(page, points, steps=8):
    """Press at the first data point, move through the others, release (data coordinates
    of the current view, through the page's own mapping to canvas pixels)."""
    box = page.locator("#plot").bounding_box()
    screen = [page.evaluate(f"window.flexExplorer.toCanvas({x}, {y})") for x, y in points]
    page.mouse.move(box["x"] + screen[0][0], box["y"] + screen[0][1])
    page.mouse.down()
    for sx, sy in screen[1:]:
        page.mouse.move(box["x"] + sx, box["y"] + sy, steps=steps)
    page.mouse.up()


def hover(page, x, y):
    box = page.locator("#plot").bounding_box()
    sx, sy = page.evaluate(f"window.flexExplorer.toCanvas({x}, {y})")
    page.mouse.move(box["x"] + sx, box["y"] + sy)
    return page.locator("#structure-image").get_attribute("src")


def test_lasso_box_hover_save_and_select_from(explorer, page, tmp_path):
    root, checkpoint, prep = explorer
    z = load_trained_model(checkpoint).latents.astype(np.float64)
    assert page.problems == []
    lo, hi = np.percentile(z, [20, 80], axis=0)
    mid = (lo + hi) / 2
    # a lasso (a pentagon through the 20th-80th percentile box) into subset1
    pentagon = [(lo[0], mid[1]), (mid[0], lo[1]), (hi[0], lo[1]), (hi[0], hi[1]), (mid[0], hi[1]),
                (lo[0], mid[1])]
    drag(page, pentagon)
    # a box into a second subset, renamed
    page.click("#new-subset")
    page.fill("#subset-name", "upper right")
    page.press("#subset-name", "Enter")
    page.click("[data-tool=box]")
    drag(page, [(mid[0], mid[1]), (z[:, 0].max() + 0.05, z[:, 1].max() + 0.05)], steps=4)
    record = page.evaluate("window.flexExplorer.selectionRecord()")
    lasso, box = record["subsets"]
    assert (lasso["name"], box["name"]) == ("subset1", "upper_right")
    (region,) = lasso["regions"]
    assert region["kind"] == "lasso" and region["axes"] == ["z1", "z2"]
    vertices = np.array(region["vertices"])
    assert len(vertices) > 10  # the mouse path, not just the corners
    # the drawn path follows the pentagon (to a screen pixel or so)
    assert np.abs(vertices[:, 0].min() - lo[0]) < 0.02 and np.abs(vertices[:, 0].max() - hi[0]) < 0.02
    want = np.flatnonzero(in_polygon(z[:, 0], z[:, 1], vertices))
    assert 0.2 * len(z) < len(want) < 0.8 * len(z)
    assert lasso["indices"] == want.tolist() and lasso["n_particles"] == len(want)
    (rect,) = box["regions"]
    (x0, x1), (y0, y1) = rect["x"], rect["y"]
    assert x0 == pytest.approx(mid[0], abs=0.02) and y0 == pytest.approx(mid[1], abs=0.02)
    inside = (z[:, 0] >= x0) & (z[:, 0] <= x1) & (z[:, 1] >= y0) & (z[:, 1] <= y1)
    assert box["indices"] == np.flatnonzero(inside).tolist() and inside.any()
    counts = page.locator("#subset-list li").evaluate_all("els => els.map(e => e.dataset.count)")
    assert counts == [str(len(want)), str(int(inside.sum()))]

    # hovering shows the image of the nearest grid node, and it changes between far nodes
    grid = json.loads(page.locator("#flexdata").text_content())["grid"]
    a, b = (np.array(v) for v in grid["axes"])
    first = hover(page, a[0], b[0])
    assert page.evaluate("window.flexExplorer.shownNode()") == 0
    last = hover(page, a[-1] - 0.01, b[-1] - 0.01)
    assert page.evaluate("window.flexExplorer.shownNode()") == len(a) * len(b) - 1
    assert first != last and last.endswith(grid["images"][-1])

    with page.expect_download() as download:
        page.click("#save")
    saved = tmp_path / "selection.json"
    download.value.save_as(saved)
    assert download.value.suggested_filename == "selection.json"
    assert json.loads(saved.read_text())["subsets"] == record["subsets"]
    assert page.problems == []

    out = tmp_path / "select"
    latents = root / "train" / "latents.npy"
    assert cli_main(["select", str(latents), str(prep), str(out), "--from", str(saved)]) == 0
    source = np.asarray(read_particles(prep / "particles.star").raw["flexSourceIndex"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        original = starfile.read(root / "sim" / "particles.star", always_dict=True)["particles"]
        for name, idx in (("subset1", want), ("upper_right", np.flatnonzero(inside))):
            rows = starfile.read(out / f"{name}.star", always_dict=True)["particles"]
            expected = original.iloc[source[idx]].reset_index(drop=True)
            assert list(rows["rlnImageName"]) == list(expected["rlnImageName"])
    summary = json.loads((out / "select.json").read_text())
    assert [s["n_particles"] for s in summary["subsets"]] == [len(want), int(inside.sum())]
    np.testing.assert_allclose(summary["subsets"][0]["state"], z[want].mean(axis=0), atol=1e-6)
