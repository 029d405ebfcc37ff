"""The ``report_pages`` step: one small self-contained HTML page per file the Snakemake report
would otherwise only offer as a download (:mod:`flexcore.stages.report_pages.pages`)."""

from __future__ import annotations

from pathlib import Path

from .pages import write_report_page


def run_report_pages(sources: dict, outputs: dict, titles: dict) -> list[Path]:
    """For every page name: write ``outputs[name]`` showing ``sources[name]`` (a ``.gif``, a
    ``.tsv`` or a text file) under the heading ``titles[name]``. Returns the pages written."""
    return [write_report_page(sources[name], outputs[name], title)
            for name, title in titles.items()]
