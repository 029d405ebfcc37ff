"""Small self-contained HTML pages that let the Snakemake report show what it would otherwise
only offer as a download: a motion GIF, a TSV table (regions, states, FSC, evaluation) or a
text file (``provenance.yaml``). Snakemake's report shows images and HTML inline, not GIF
movies, tables or YAML.

Each page embeds its source (the GIF as a base64 ``data:`` URI, the table as an HTML table,
the text escaped in ``<pre>``); nothing is fetched when it is opened.
"""

from __future__ import annotations

import base64
import csv
import html
from pathlib import Path

from ...core.errors import InputFileError
from ...core.utils.atomic import write_text_atomic

_STYLE = """body{font-family:system-ui,sans-serif;font-size:13px;color:#222;margin:10px}
h1{font-size:15px;margin:0 0 8px}table{border-collapse:collapse}
th,td{border:1px solid #ccc;padding:2px 7px;text-align:right}th{background:#f0f0f0}
td:first-child,th:first-child{text-align:left}pre{font-size:12px;background:#f7f7f7;padding:8px}
.src{color:#666;font-size:11px;margin-top:8px}"""


def _page(title: str, body: str, source: Path) -> str:
    return (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n"
            f"<div class=\"src\">from {html.escape(source.name)}</div>\n</body></html>\n")


def gif_page(source: Path, title: str) -> str:
    """The GIF shown inline (its bytes as a ``data:`` URI)."""
    data = base64.b64encode(source.read_bytes()).decode("ascii")
    return _page(title, f'<img alt="{html.escape(title)}" src="data:image/gif;base64,{data}">',
                 source)


def table_page(source: Path, title: str, max_rows: int = 400) -> str:
    """A TSV (header row first) as an HTML table; at most ``max_rows`` rows, evenly picked,
    with a note when rows were left out (FSC tables hold one row per shell)."""
    with open(source, newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    if not rows:
        raise InputFileError(source, "is empty; expected a table with a header row")
    head, body = rows[0], rows[1:]
    note = ""
    if len(body) > max_rows:
        step = -(-len(body) // max_rows)
        note = f"<p>one row in {step} of {len(body)} shown; the file holds them all</p>"
        body = body[::step]
    cells = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    lines = [f"<table><thead><tr>{cells}</tr></thead><tbody>"]
    for r in body:
        lines.append("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>")
    lines.append("</tbody></table>")
    return _page(title, note + "\n".join(lines), source)


def text_page(source: Path, title: str) -> str:
    """A text file (e.g. YAML) shown as it is."""
    return _page(title, f"<pre>{html.escape(source.read_text(errors='replace'))}</pre>", source)


def write_report_page(source, out, title: str) -> Path:
    """Write the page for ``source`` (``.gif``, ``.tsv`` or any text file) to ``out``."""
    source, out = Path(source), Path(out)
    if not source.is_file():
        raise InputFileError(source, "not found (the report page shows it)")
    suffix = source.suffix.lower()
    page = (gif_page(source, title) if suffix == ".gif" else
            table_page(source, title) if suffix == ".tsv" else text_page(source, title))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out, page)
    return out
