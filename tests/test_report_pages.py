"""The report's HTML pages: the GIF embedded byte for byte, every table cell shown (long tables
thinned evenly), text escaped, and nothing fetched from outside the page."""

from __future__ import annotations

import base64
import re

import numpy as np
import pytest
from PIL import Image

from flexcore.core.errors import InputFileError
from flexcore.stages.report_pages.pages import write_report_page


def test_gif_page_embeds_the_movie(tmp_path):
    frames = [Image.fromarray((np.full((8, 8), v)).astype(np.uint8)) for v in (0, 128, 255)]
    frames[0].save(tmp_path / "m.gif", save_all=True, append_images=frames[1:], duration=100)
    text = write_report_page(tmp_path / "m.gif", tmp_path / "m.html", "motion along z1").read_text()
    (data,) = re.findall(r'src="data:image/gif;base64,([^"]+)"', text)
    assert base64.b64decode(data) == (tmp_path / "m.gif").read_bytes()
    assert "<h1>motion along z1</h1>" in text and "http" not in text


def test_table_page_shows_every_cell_and_thins_long_tables(tmp_path):
    (tmp_path / "t.tsv").write_text("state\tlatent\tfsc0143_A\ncluster1\t-0.5 <x>\t7.250\n")
    text = write_report_page(tmp_path / "t.tsv", tmp_path / "t.html", "per-state maps").read_text()
    assert "<th>state</th><th>latent</th><th>fsc0143_A</th>" in text
    assert "<td>cluster1</td><td>-0.5 &lt;x&gt;</td><td>7.250</td>" in text
    rows = "\n".join(f"{i}\t{i / 10}" for i in range(1000))
    (tmp_path / "long.tsv").write_text("shell\tfsc\n" + rows + "\n")
    text = write_report_page(tmp_path / "long.tsv", tmp_path / "l.html", "FSC").read_text()
    shown = re.findall(r"<tr><td>(\d+)</td>", text)
    assert shown[:3] == ["0", "3", "6"] and len(shown) == 334 and "one row in 3 of 1000 shown" in text


def test_text_page_escapes_and_missing_source_is_named(tmp_path):
    (tmp_path / "p.yaml").write_text("config:\n  note: <b>&</b>\n")
    text = write_report_page(tmp_path / "p.yaml", tmp_path / "p.html", "provenance").read_text()
    assert "note: &lt;b&gt;&amp;&lt;/b&gt;" in text
    with pytest.raises(InputFileError, match="nope.tsv"):
        write_report_page(tmp_path / "nope.tsv", tmp_path / "x.html", "x")
